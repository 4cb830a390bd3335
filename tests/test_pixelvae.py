"""pyro_lgm.models.PixelVAE: the decoder is autoregressive in x and depends on z, the
hierarchical prior depends on the upper map, the ELBO's terms by hand, flow guides through
the map's reshape, generation, the command line, bad input (issue 14)."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.cli import main
from pyro_lgm.metrics import elbo, iwae
from pyro_lgm.models import PixelVAE
from pyro_lgm.testing import assert_autoregressive, image_order
from tests.cases import live_units, perturb_all

TINY = {
    "encoder_channels": 4,
    "pixel_channels": 3,
    "pixel_layers": 2,
    "upsample_channels": 3,
    "prior_channels": 3,
    "prior_layers": 2,
}


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _model(shape=(1, 8, 8), channels=(2, 2), bits=1, seed=0, **kw):
    m = PixelVAE(shape, channels, bits=bits, **{**TINY, **kw})
    with torch.no_grad():
        perturb_all(m, seed, scale=0.5)
        live_units(m)
    return m.double()


def _binary(n, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.4), generator=g).double()


def test_latent_shapes_follow_the_image():
    m = PixelVAE((1, 28, 28), (4, 3), **TINY)
    assert [tuple(m.latent_shape(i)) for i in range(2)] == [(4, 7, 7), (3, 4, 4)]
    m = PixelVAE((3, 5, 6), (2,), **TINY)
    assert tuple(m.latent_shape(0)) == (2, 2, 2)


def test_decoder_is_autoregressive_in_x_with_no_blind_spot():
    """The image property of the PixelCNN work on the decoder p(x | z1), z1 fixed: no
    dependence on the current or later pixels, every earlier pixel reaches each output."""
    m = _model(shape=(1, 4, 4), channels=(2,), pixel_layers=3)
    z = torch.randn(3, *m.latent_shape(0), dtype=torch.float64)
    x = _binary(3, (1, 4, 4))
    d = m.decode(z)
    assert isinstance(d, lgm_dist.GatedPixelCNN) and d.batch_shape == (3,)
    assert_autoregressive(d.conditional_params, x, image_order(1, 4, 4), no_blind_spot=True)


def test_decoder_is_autoregressive_for_rgb_levels():
    m = _model(shape=(3, 4, 4), channels=(2,), bits=2, pixel_layers=3)
    z = torch.randn(2, *m.latent_shape(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 4, (2, 3, 4, 4), generator=g).double()
    assert_autoregressive(m.decode(z).conditional_params, x, image_order(3, 4, 4))


def test_decoder_and_prior_depend_on_every_latent_element():
    m = _model(channels=(2, 2))
    x = _binary(4)
    z1 = torch.randn(4, *m.latent_shape(0), dtype=torch.float64, requires_grad=True)
    m.decode(z1).log_prob(x).sum().backward()
    assert (z1.grad.abs() > 0).all()
    # the hierarchical prior p(z1 | z2): autoregressive over z1, conditioned on all of z2
    z2 = torch.randn(4, *m.latent_shape(1), dtype=torch.float64, requires_grad=True)
    prior = m._prior(0, z2, 4)
    assert isinstance(prior, lgm_dist.AutoregressiveNormalMap)
    assert prior.batch_shape == (4,) and prior.event_shape == m.latent_shape(0)
    prior.log_prob(z1.detach()).sum().backward()
    assert (z2.grad.abs() > 0).all()
    assert_autoregressive(
        lambda v: prior.conditional_params(v), z1.detach(), image_order(*m.latent_shape(0))
    )


def test_elbo_terms_match_a_manual_computation_and_the_pyro_traces():
    torch.manual_seed(0)
    m = _model(channels=(2, 2))
    x = _binary(3)
    terms = m.elbo_terms(x)
    z1, z2 = terms["z"]
    assert z1.shape == (3, 2, 2, 2) and z2.shape == (3, 2, 1, 1)
    # by hand: the Gated PixelCNN on the upsampled z1; the guide's Gaussians from the heads
    ctx = m.decoder_up(z1)
    torch.testing.assert_close(terms["log_px"], lgm_dist.GatedPixelCNN(m.pixelcnn, ctx).log_prob(x))
    h = m.encoder[0](m._as_input(x))
    maps = [h, m.encoder[1](h)]
    log_q = []
    for i, z in enumerate((z1, z2)):
        c = m.latent_shape(i)[0]
        params = m.heads[i](maps[i])
        loc, rho = params[:, :c], params[:, c:]
        scale = torch.nn.functional.softplus(rho) + m.min_scale
        log_q.append(torch.distributions.Normal(loc, scale).log_prob(z).sum((-3, -2, -1)))
    prior1 = lgm_dist.AutoregressiveNormalMap(
        m.priors[0], m.prior_ups[0](z2), min_scale=m.min_scale
    )
    log_p = [prior1.log_prob(z1), torch.distributions.Normal(0.0, 1.0).log_prob(z2).sum((1, 2, 3))]
    for i in range(2):
        torch.testing.assert_close(terms["kl"][i], log_q[i] - log_p[i])
    values = {"z1": z1.detach(), "z2": z2.detach()}
    guide_tr = poutine.trace(poutine.condition(m.guide, data=values)).get_trace(x)
    model_tr = poutine.trace(poutine.condition(m.model, data=values)).get_trace(x)
    want = (terms["log_px"] - sum(terms["kl"])).sum().detach()
    torch.testing.assert_close(model_tr.log_prob_sum() - guide_tr.log_prob_sum(), want)


@pytest.mark.parametrize("flow", ["iaf", "planar"])
def test_flow_guide_density_is_base_minus_log_dets_through_the_reshape(flow):
    torch.manual_seed(2)
    m = _model(channels=(2,), flow=flow, num_flows=2)
    q = m.posterior(_binary(3))[0]
    assert q.event_shape == m.latent_shape(0)
    inner = q.base_dist  # the flow over the flattened map
    z = inner.base_dist.sample()
    log_q = inner.base_dist.log_prob(z)
    for t in inner.transforms:
        y = t(z)
        log_q = log_q - t.log_abs_det_jacobian(z, y)
        z = y
    zmap = z.reshape(3, *m.latent_shape(0))
    torch.testing.assert_close(q.log_prob(zmap), log_q, atol=1e-6, rtol=1e-6)


def test_svi_trains_and_iwae_runs_through_the_particle_plate():
    pyro.set_rng_seed(0)
    m = PixelVAE((1, 8, 8), (2, 2), **TINY)
    protos = _binary(2, seed=3).float()
    g = torch.Generator().manual_seed(4)
    x = protos[torch.randint(0, 2, (32,), generator=g)]
    before = elbo(m.model, m.guide, x, num_samples=4).mean()
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    for _ in range(40):
        svi.step(x)
    with torch.no_grad():
        lb = elbo(m.model, m.guide, x[:4], num_samples=50)
        iw = iwae(m.model, m.guide, x[:4], num_samples=50, progress=False)
    assert lb.mean() > before + 5.0, (before, lb.mean())
    # the importance-weighted bound runs through the particle plate (maps of shape
    # (S, N, c, h, w) through the decoder and the autoregressive prior); it and the ELBO
    # agree to within the guide's mismatch (a few nats at most here)
    assert iw.shape == (4,) and torch.isfinite(iw).all() and (iw - lb).abs().max() < 3.0


def test_sampling_panels_and_shapes():
    m = _model(channels=(2, 2)).float()
    x = m.sample(3)
    assert x.shape == (3, 1, 8, 8) and set(x.unique().tolist()) <= {0.0, 1.0}
    noise = m.noise(2, torch.Generator().manual_seed(0))
    assert [tuple(e.shape) for e in noise] == [(2, 2, 2, 2), (2, 2, 1, 1)]
    a = m.generate(noise, torch.Generator().manual_seed(5))
    b = m.generate(noise, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    panels = m.hierarchy_panels(rows=2, cols=2, seed=1)
    assert list(panels) == ["z2", "z1", "pixels"]
    assert all(v.shape == (4, 1, 8, 8) for v in panels.values())
    m8 = _model(channels=(2,), bits=3).float()
    y = m8.sample(2)
    assert y.shape == (2, 1, 8, 8) and y.max() <= 7 and y.min() >= 0
    (count,) = m8.active_units(y, num_samples=4)
    assert 0 <= count <= m8.latent_shape(0).numel()


def test_bad_input_raises_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="image_shape"):
        PixelVAE((8, 8), (2,))
    with pytest.raises(ValueError, match="bits"):
        PixelVAE((1, 8, 8), (2,), bits=0)
    with pytest.raises(ValueError, match="latent_channels"):
        PixelVAE((1, 8, 8), ())
    with pytest.raises(ValueError, match="flow"):
        PixelVAE((1, 8, 8), (2,), flow="sylvester")
    with pytest.raises(ValueError, match="min_scale"):
        PixelVAE((1, 8, 8), (2,), min_scale=-1.0)
    m = PixelVAE((1, 8, 8), (2,), **TINY)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 8, 8\)"):
        m.loss(torch.zeros(2, 1, 8, 7))
    with pytest.raises(ValueError, match="x: expected integer levels in \\[0, 1\\]"):
        m.loss(torch.full((2, 1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="x: expected dtype"):
        m.loss(torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="x"):
        m.loss(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="noise"):
        m.generate([torch.zeros(2, 2, 2, 3)])


def test_cli_trains_pixelvae_and_writes_the_hierarchy_panels(tmp_path, capsys):
    ckpt = tmp_path / "pv.pt"
    opts = [f"{k}={v}" for k, v in TINY.items()]
    argv = ["train", "pixelvae", "--steps", "3", "--checkpoint", str(ckpt), "--quiet"]
    for o in opts:
        argv += ["--option", o]
    assert main(argv) == 0
    assert "test -ELBO (a bound on the NLL)" in capsys.readouterr().out
    out = tmp_path / "pv.png"
    assert main(["sample", "--checkpoint", str(ckpt), "--num", "4", "--nrow", "2",
                 "--out", str(out), "--panels"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    for name in ("z2", "z1", "pixels"):
        assert (tmp_path / f"pv-{name}.png").stat().st_size > 0
        assert f"pv-{name}.png: 2 x 2" in text
    assert out.stat().st_size > 0


def test_cli_panels_need_a_latent_model(tmp_path, capsys):
    ckpt = tmp_path / "p.pt"
    argv = ["train", "pixelcnn", "--steps", "1", "--checkpoint", str(ckpt), "--quiet"]
    assert main([*argv, "--option", "hidden_channels=2", "--option", "num_layers=1"]) == 0
    capsys.readouterr()
    out = tmp_path / "p.png"
    assert main(["sample", "--checkpoint", str(ckpt), "--out", str(out), "--panels"]) == 2
    assert "--panels" in capsys.readouterr().err
    assert not out.exists()


def test_cli_trains_the_hierarchical_vae_on_8_bit_digits(tmp_path, capsys):
    ckpt = tmp_path / "h.pt"
    argv = ["train", "hvae", "--steps", "3", "--checkpoint", str(ckpt), "--quiet"]
    argv += ["--option", "latent_dims=4,2", "--option", "hidden=16", "--option", "flow=iaf"]
    assert main(argv) == 0
    assert "bits/dim" in capsys.readouterr().out
    out = tmp_path / "h.png"
    assert main(["sample", "--checkpoint", str(ckpt), "--out", str(out), "--panels",
                 "--num", "4", "--nrow", "2"]) == 0  # fmt: skip
    assert (tmp_path / "h-z2.png").exists() and (tmp_path / "h-pixels.png").exists()
    assert main(["train", "hvae", "--steps", "1", "--option", "flow=none", "--option",
                 "num_flows=2", "--checkpoint", str(tmp_path / "x.pt")]) == 2  # fmt: skip
