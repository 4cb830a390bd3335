"""pyro_lgm.models.HierarchicalVAE: the ELBO's terms by hand, flow guides, the bounds against
the exact likelihood by quadrature, warm-up and free bits, generation and the hierarchy
panels, bad input (issue 14)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_lgm.metrics import elbo, iwae
from pyro_lgm.models import HierarchicalVAE

FLOWS = [None, "planar", "radial", "iaf"]
INFERENCE = ["top-down", "bottom-up"]


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@torch.no_grad()
def _perturb(module, seed=1, scale=0.3):
    """Noise on every parameter: the zero-initialised read-outs would make q = p = N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))


def _data(n=32, d=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((3, d), 0.5), generator=g)
    which = torch.randint(0, 3, (n,), generator=g)
    flip = torch.bernoulli(torch.full((n, d), 0.05), generator=g)
    return ((protos[which] + flip) % 2).to(dtype)


def _hvae(inference="top-down", flow=None, dims=(3, 2), d=12, **kw):
    kw.setdefault("hidden_dims", [16])
    kw.setdefault("stage_dims", [8])
    kw.setdefault("num_flows", None if flow is None else 2)
    m = HierarchicalVAE((d,), list(dims), inference=inference, flow=flow, **kw).double()
    _perturb(m)
    return m


def _normal_logpdf(z, loc, rho, min_scale=0.0):
    scale = F.softplus(rho) + min_scale
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def _readout(head, context):
    """loc, rho of a ConditionalNormal ``head`` at ``context``, through its raw network."""
    return head.net(context).split(head.event_dim, -1)


@pytest.mark.parametrize("inference", INFERENCE)
def test_elbo_terms_match_a_manual_computation_and_the_pyro_traces(inference):
    torch.manual_seed(0)
    m = _hvae(inference, dims=(3, 2, 2))
    x = _data(5)
    terms = m.elbo_terms(x)
    z1, z2, z3 = terms["z"]
    # by hand: the encoder's features, the guide's Gaussians, the priors, the decoder
    h = m.encoder(x)
    if inference == "top-down":
        d2 = m.up_nets[0](h)
        d3 = m.up_nets[1](d2)
        t2 = m.prior_nets[1](z3)
        t1 = m.prior_nets[0](z2)
        ctx = [torch.cat([h, t1], -1), torch.cat([d2, t2], -1), d3]
    else:
        ctx = [h, m.up_nets[0](z1), m.up_nets[1](z2)]
    log_q = [
        _normal_logpdf(z, *_readout(m.flows[i].base_net, ctx[i])) for i, z in enumerate(terms["z"])
    ]
    log_p = [
        _normal_logpdf(z1, *_readout(m.prior_heads[0], m.prior_nets[0](z2))),
        _normal_logpdf(z2, *_readout(m.prior_heads[1], m.prior_nets[1](z3))),
        (-0.5 * z3**2 - 0.5 * math.log(2 * math.pi)).sum(-1),
    ]
    logits = m.decoder(z1)
    log_px = (x * logits - F.softplus(logits)).sum(-1)
    torch.testing.assert_close(terms["log_px"], log_px)
    for i in range(3):
        torch.testing.assert_close(terms["kl"][i], log_q[i] - log_p[i])
    # the same numbers from the Pyro program, conditioned on these z
    values = {f"z{i + 1}": z.detach() for i, z in enumerate(terms["z"])}
    guide_tr = poutine.trace(poutine.condition(m.guide, data=values)).get_trace(x)
    model_tr = poutine.trace(poutine.condition(m.model, data=values)).get_trace(x)
    want = (terms["log_px"] - sum(terms["kl"])).sum()
    torch.testing.assert_close(model_tr.log_prob_sum() - guide_tr.log_prob_sum(), want.detach())
    # the sites: zL first in the model, the order of inference in the guide
    model_sites = [n for n, s in model_tr.nodes.items() if s["type"] == "sample"]
    guide_sites = [n for n, s in guide_tr.nodes.items() if s["type"] == "sample"]
    assert model_sites[-4:] == ["z3", "z2", "z1", "x"]
    want_guide = ["z3", "z2", "z1"] if inference == "top-down" else ["z1", "z2", "z3"]
    assert guide_sites[-3:] == want_guide


@pytest.mark.parametrize("inference", INFERENCE)
@pytest.mark.parametrize("flow", ["planar", "radial", "iaf"])
def test_guide_log_density_is_base_minus_log_dets(inference, flow):
    torch.manual_seed(1)
    m = _hvae(inference, flow)
    x = _data(6)
    ctx = m.encoder(x) if inference == "bottom-up" else m.up_nets[0](m.encoder(x))
    i = 0 if inference == "bottom-up" else 1  # a factor whose context depends on x alone
    q = m.flows[i](ctx)
    z = q.base_dist.sample()
    log_q = q.base_dist.log_prob(z)
    for t in q.transforms:
        y = t(z)
        log_q = log_q - t.log_abs_det_jacobian(z, y)
        z = y
    assert len(q.transforms) == 2
    torch.testing.assert_close(q.log_prob(z), log_q, atol=1e-6, rtol=1e-6)
    # and the ELBO terms use the flow's density: the guide's factor is not its Gaussian base
    base_only = q.base_dist.log_prob(z)
    assert not torch.allclose(base_only, log_q)


def _log_px_by_quadrature(m, x):
    """log p(x) of a model with latent_dims (1, 1) on a grid over (z2, z1)."""
    z2 = torch.linspace(-9, 9, 721, dtype=torch.float64)
    z1 = torch.linspace(-14, 14, 1121, dtype=torch.float64)
    with torch.no_grad():
        prior1 = m._prior(0, z2[:, None], len(z2))  # batch (G2,)
        lp1 = prior1.log_prob(z1[:, None, None]).T  # (G2, G1)
        lp2 = dist.Normal(0.0, 1.0).log_prob(z2)[:, None]
        lx = m.decode(z1[:, None]).log_prob(x[:, None, :])  # (N, G1)
    joint = lp2[None] + lp1[None] + lx[:, None, :]  # (N, G2, G1)
    dz = (z2[1] - z2[0]) * (z1[1] - z1[0])
    return torch.logsumexp(joint.flatten(1), -1) + dz.log()


@pytest.mark.slow
@pytest.mark.parametrize(("inference", "flow"), [("top-down", None), ("bottom-up", "iaf")])
def test_trained_bounds_order_against_the_exact_likelihood(inference, flow):
    """ELBO <= IWAE_S <= log p(x) with log p(x) by quadrature, after SVI training; the
    model's p(x) sums to one over the four binary images."""
    pyro.set_rng_seed(0)
    m = _hvae(inference, flow, dims=(1, 1), d=2, hidden_dims=[8], stage_dims=[8])
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.tensor([0.8, 0.3]).expand(256, 2), generator=g).double()
    x[:128, 1] = x[:128, 0]  # correlated pixels: the latents have something to explain
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    for _ in range(150):
        svi.step(x)
    grid = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    exact = _log_px_by_quadrature(m, grid)
    torch.testing.assert_close(
        exact.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0
    )
    with torch.no_grad():
        lb = elbo(m.model, m.guide, grid, num_samples=4000, chunk_size=1000)
        iw = iwae(m.model, m.guide, grid, num_samples=4000, chunk_size=1000, progress=False)
    assert (lb < iw).all()
    # IWAE's bias is >= 0; its Monte Carlo error at S = 4000 here is below 0.01 nats
    assert (iw <= exact + 0.01).all(), (iw, exact)
    if inference == "top-down":  # its ELBO is within 0.02 of log p(x) after this training
        assert (exact - iw < 0.05).all(), (iw, exact)
    else:  # the bottom-up guide leaves 0.3 - 0.6 nats; S = 4000 recovers 0.1 - 0.3 of them
        assert (iw - lb > 0.05).all(), (lb, iw, exact)


def test_svi_improves_both_guides_and_every_flow():
    x = _data(48, dtype=torch.float32)
    for inference in INFERENCE:
        for flow in FLOWS:
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            m = HierarchicalVAE(
                (12,), [3, 2], hidden_dims=[32], stage_dims=[16], inference=inference,
                flow=flow, num_flows=None if flow is None else 2,
            )  # fmt: skip
            before = elbo(m.model, m.guide, x, num_samples=20).mean()
            svi = pyro.infer.SVI(
                m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO()
            )
            for _ in range(80):
                svi.step(x)
            after = elbo(m.model, m.guide, x, num_samples=20).mean()
            # about -8.3 nats -> -4 to -6 in 80 steps; 1.5 nats is far above the noise
            assert after > before + 1.5, (inference, flow, before, after)


def test_loss_is_the_negative_elbo_with_warmup_and_free_bits_per_layer():
    m = _hvae(free_bits=0.0, kl_warmup_steps=4, kl_warmup_start=0.2)
    x = _data(8)
    torch.manual_seed(5)
    terms = m.elbo_terms(x)
    torch.manual_seed(5)
    m.train()
    loss = m.loss(x)
    want = -terms["log_px"].mean() + 0.2 * sum(k.mean() for k in terms["kl"])
    torch.testing.assert_close(loss, want)
    assert int(m.num_steps) == 1 and m.kl_weight == pytest.approx(0.4)
    with torch.no_grad():
        m.loss(x)  # no gradient: the schedule does not move
    assert int(m.num_steps) == 1
    # free bits: each layer's batch-mean KL is floored separately
    kl_means = [float(k.detach().mean()) for k in terms["kl"]]
    lam = (min(kl_means) + max(kl_means)) / 2
    m2 = _hvae(free_bits=lam)
    torch.manual_seed(5)
    t2 = m2.elbo_terms(x)
    torch.manual_seed(5)
    loss2 = m2.loss(x)
    want2 = -t2["log_px"].mean() + sum(k.mean().clamp_min(lam) for k in t2["kl"])
    torch.testing.assert_close(loss2, want2)
    floored = [float(k.detach().mean()) < lam for k in t2["kl"]]
    assert any(floored) and not all(floored)
    # with free bits the floored layer passes no gradient to its guide through the KL
    m2.zero_grad()
    torch.manual_seed(5)
    m2.loss(x).backward()
    assert all(p.grad is not None for p in m2.parameters() if p.requires_grad)


def test_warmup_scales_the_latent_sites_of_both_programs():
    m = _hvae(kl_warmup_steps=10)
    x = _data(4)
    guide_tr = poutine.trace(m.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x)
    for tr in (guide_tr, model_tr):
        for name in ("z1", "z2"):
            assert tr.nodes[name]["scale"] == pytest.approx(0.01)
    assert model_tr.nodes["x"]["scale"] == 1.0


@pytest.mark.parametrize("likelihood", ["bernoulli", "normal", "categorical"])
def test_sampling_shapes_and_generation_from_given_noise(likelihood):
    m = HierarchicalVAE(
        (1, 4, 3), [3, 2, 2], hidden_dims=[8], stage_dims=[8], likelihood=likelihood,
        num_levels=5,
    )  # fmt: skip
    _perturb(m)
    assert m.sample(7).shape == (7, 1, 4, 3)
    noise = m.noise(3, torch.Generator().manual_seed(0))
    assert [tuple(e.shape) for e in noise] == [(3, 3), (3, 2), (3, 2)]
    a = m.generate(noise, torch.Generator().manual_seed(1))
    b = m.generate(noise, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    if likelihood == "categorical":
        assert a.dtype == torch.long and int(a.min()) >= 0 and int(a.max()) <= 4
    else:
        c = m.generate(noise, torch.Generator().manual_seed(2))
        assert not torch.equal(a, c)
    if likelihood == "normal":  # the top layer's noise reaches the images through the chain
        noise2 = [noise[0], noise[1], noise[2] + 3.0]
        d = m.generate(noise2, torch.Generator().manual_seed(1))
        assert not torch.equal(a, d)


def test_hierarchy_panels_vary_one_source_of_noise_per_panel(monkeypatch):
    m = _hvae(dims=(3, 2)).float()
    calls = []
    real = HierarchicalVAE.generate

    def spy(self, noise, generator=None):
        calls.append(([e.clone() for e in noise], generator.initial_seed()))
        return real(self, noise, generator)

    monkeypatch.setattr(HierarchicalVAE, "generate", spy)
    panels = m.hierarchy_panels(rows=2, cols=3, seed=4)
    assert list(panels) == ["z2", "z1", "pixels"]
    assert all(v.shape == (6, 12) for v in panels.values())
    by_panel = [calls[0:3], calls[3:6], calls[6:9]]
    for varied, cols in zip([1, 0, None], by_panel, strict=True):
        for layer in range(2):
            same = all(torch.equal(cols[0][0][layer], c[0][layer]) for c in cols)
            assert same == (layer != varied), (varied, layer)
        seeds = {c[1] for c in cols}
        assert (len(seeds) == 3) == (varied is None)
    # the rows of a panel use different noise: each row is its own example
    assert not torch.equal(by_panel[0][0][0][0][0], by_panel[0][0][0][0][1])


def test_active_units_per_layer():
    m = _hvae(dims=(3, 2))
    counts = m.active_units(_data(40), num_samples=20)
    assert len(counts) == 2 and all(0 <= c <= d for c, d in zip(counts, (3, 2), strict=True))


def test_bad_input_raises_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="latent_dims"):
        HierarchicalVAE((4,), [])
    with pytest.raises(ValueError, match="latent_dims"):
        HierarchicalVAE((4,), [2, 0])
    with pytest.raises(ValueError, match="inference"):
        HierarchicalVAE((4,), [2], inference="sideways")
    with pytest.raises(ValueError, match="flow"):
        HierarchicalVAE((4,), [2], flow="sylvester")
    with pytest.raises(ValueError, match="flow"):
        HierarchicalVAE((4,), [2], flow=3)
    with pytest.raises(ValueError, match="stage_dims"):
        HierarchicalVAE((4,), [2], stage_dims=[])
    with pytest.raises(ValueError, match="free_bits"):
        HierarchicalVAE((4,), [2], free_bits=-1.0)
    m = HierarchicalVAE((4,), [2, 2], hidden_dims=[8], stage_dims=[8])
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 4\)"):
        m.loss(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="x: expected dtype"):
        m.loss(torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x"):
        m.loss(torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="x"):
        pyro.infer.Trace_ELBO().loss(m.model, m.guide, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="noise: expected 2"):
        m.generate([torch.zeros(2, 2)])
    with pytest.raises(ValueError, match="noise: layer 2"):
        m.generate([torch.zeros(2, 2), torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="rows"):
        m.hierarchy_panels(rows=0)
    with pytest.raises(ValueError, match="num"):
        m.sample(0)


def test_a_callable_flow_builds_each_layers_transforms():
    from pyro_lgm.transforms.planar import conditional_planar

    seen = []

    def flows(layer, latent_dim, context_dim):
        seen.append((layer, latent_dim, context_dim))
        return [conditional_planar(latent_dim, context_dim, []) for _ in range(layer + 1)]

    m = HierarchicalVAE((12,), [3, 2], hidden_dims=[16], stage_dims=[8], flow=flows)
    assert seen == [(0, 3, 16 + 8), (1, 2, 8)]  # top-down: [d_1, t_1] and d_2
    assert [len(f.transforms) for f in m.flows] == [1, 2] and m.flow_kind == "custom"
    assert m.loss(_data(4, dtype=torch.float32)).isfinite()
