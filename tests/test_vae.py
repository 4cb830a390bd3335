"""pyro_lgm.models.VAE: flow guides in a Pyro program (issue 10)."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import ComposeTransform

from pyro_lgm.metrics import elbo, iwae
from pyro_lgm.models import VAE
from pyro_lgm.testing import assert_depends_on_context

FLOWS = [None, "planar", "radial", "iaf"]


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _data(n=64, d=20, seed=0, dtype=torch.float32):
    """Binary data from two noisy prototypes: a VAE with a 2-d latent learns it quickly."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((2, d), 0.5), generator=g)
    which = torch.randint(0, 2, (n,), generator=g)
    flip = torch.bernoulli(torch.full((n, d), 0.05), generator=g)
    return ((protos[which] + flip) % 2).to(dtype)


def _vae(flow, dtype=torch.float32, **kw):
    kw.setdefault("hidden_dims", [32])
    kw.setdefault("num_flows", None if flow is None else 2)
    return VAE((20,), 2, flow=flow, **kw).to(dtype)


@torch.no_grad()
def _perturb(module, seed=1, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("elbo_cls", [pyro.infer.Trace_ELBO, pyro.infer.TraceMeanField_ELBO])
def test_svi_trains_without_warnings_and_the_elbo_improves(flow, elbo_cls):
    pyro.set_rng_seed(0)
    x = _data()
    vae = _vae(flow)
    before = elbo(vae.model, vae.guide, x, num_samples=20).mean()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), elbo_cls())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(60):
            svi.step(x)
    after = elbo(vae.model, vae.guide, x, num_samples=20).mean()
    # 60 steps on 20-d binary data: from about -14 nats to about -9 (a gain of > 2 nats
    # is far beyond the Monte Carlo error of 20 x 64 samples)
    assert after > before + 2.0, (float(before), float(after))


@pytest.mark.parametrize("flow", ["planar", "radial", "iaf"])
def test_guide_log_prob_is_base_minus_summed_log_dets(flow):
    """q_K(z_K | x) = q_0(z_0 | x) - sum_k log|det J_k|, computed by hand layer by layer,
    equals the guide's log_prob of its own sample (cache) and of a fresh copy (inverse)."""
    torch.manual_seed(0)
    vae = _vae(flow, torch.float64, num_flows=3)
    _perturb(vae)
    x = _data(8, dtype=torch.float64)
    h = vae.features(x)
    q0 = vae.flow.base_net(h)
    z = q0.rsample()
    log_q = q0.log_prob(z)
    for t in vae.flow.transforms:
        ct = t.condition(h)
        z_next = ct(z)
        log_q = log_q - ct.log_abs_det_jacobian(z, z_next)
        z = z_next
    q = vae.flow(h)
    fresh = z.detach().clone()
    assert torch.allclose(q.log_prob(fresh), log_q, atol=1e-8)
    # the library's own path: rsample then log_prob of the same tensor (served by the cache)
    torch.manual_seed(5)
    q = vae.posterior(x)
    zs = q.rsample()
    cached = q.log_prob(zs)
    assert torch.allclose(cached, vae.posterior(x).log_prob(zs.detach().clone()), atol=1e-8)


def test_loss_is_trace_elbo_per_example_and_warmup_scales_the_kl():
    x = _data(16)
    vae = _vae("planar", kl_warmup_steps=10)
    _perturb(vae)
    vae.num_steps.fill_(10)  # warm-up over: beta = 1
    pyro.set_rng_seed(3)
    want = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x) / 16
    pyro.set_rng_seed(3)
    assert torch.allclose(vae.loss(x), want, rtol=1e-5)
    vae.num_steps.fill_(5)
    assert vae.kl_weight == pytest.approx(0.01 + 0.99 * 0.5)
    pyro.set_rng_seed(3)
    want = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x) / 16
    pyro.set_rng_seed(3)
    got = vae.loss(x)
    assert torch.allclose(got, want, rtol=1e-5)
    assert int(vae.num_steps) == 6  # loss() advanced the schedule (training mode, grad on)
    vae.eval()
    vae.loss(x)
    assert int(vae.num_steps) == 6


def test_free_bits_stop_the_kl_gradient_below_the_threshold():
    x = _data(16)
    vae = _vae("iaf", free_bits=1e4)
    _perturb(vae)
    pyro.set_rng_seed(4)
    loss = vae.loss(x)
    loss.backward()
    g_free = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad()
    pyro.set_rng_seed(4)
    z = vae.posterior(x).rsample()
    nll = -vae.decode(z).log_prob(x).mean()
    nll.backward()
    assert torch.allclose(loss, nll + 1e4)
    for a, p in zip(g_free, vae.parameters(), strict=True):
        b = torch.zeros_like(a) if p.grad is None else p.grad
        assert torch.allclose(a, b, atol=1e-6)


def test_iwae_rises_with_s_and_bounds_the_elbo():
    pyro.set_rng_seed(0)
    vae = _vae("planar", torch.float64)
    _perturb(vae)
    x = _data(256, dtype=torch.float64)
    l1 = elbo(vae.model, vae.guide, x, num_samples=50)
    l10 = iwae(vae.model, vae.guide, x, num_samples=10, chunk_size=4)
    l100 = iwae(vae.model, vae.guide, x, num_samples=100)
    # means over 256 examples; the gaps (about 1 and 0.5 nats here) are many standard
    # errors wide
    assert l1.mean() < l10.mean() < l100.mean(), (l1.mean(), l10.mean(), l100.mean())


@pytest.mark.parametrize("flow", ["planar", "radial", "iaf"])
def test_amortized_flow_parameters_depend_on_x_and_global_ones_do_not(flow):
    torch.manual_seed(0)
    x = _data(8, dtype=torch.float64)
    x2 = _data(8, seed=1, dtype=torch.float64)
    z = torch.randn(8, 2, dtype=torch.float64)
    for amortized in (True, False):
        vae = _vae(flow, torch.float64, amortized=amortized)
        _perturb(vae)

        def flow_of(data, vae=vae):
            h = vae.features(data)
            return ComposeTransform(
                [t.condition(h) if hasattr(t, "condition") else t for t in vae.flow.transforms]
            )

        if amortized:
            assert_depends_on_context(flow_of, z, x, x2)
        else:
            with pytest.raises(AssertionError):
                assert_depends_on_context(flow_of, z, x, x2)
        # the whole guide depends on x either way (the encoder's Gaussian)
        assert_depends_on_context(vae.posterior, z, x, x2)


@pytest.mark.parametrize(
    ("likelihood", "make"),
    [
        ("normal", lambda g: torch.randn(6, 1, 8, 8, generator=g)),
        ("categorical", lambda g: torch.randint(0, 16, (6, 1, 8, 8), generator=g)),
        ("bernoulli", lambda g: torch.bernoulli(torch.full((6, 1, 8, 8), 0.5), generator=g)),
    ],
)
@pytest.mark.parametrize("nets", ["mlp", "conv"])
def test_likelihoods_and_networks(likelihood, make, nets):
    x = make(torch.Generator().manual_seed(0))
    vae = VAE(
        (1, 8, 8),
        4,
        encoder=nets,
        decoder=nets,
        hidden_dims=[16],
        likelihood=likelihood,
        num_levels=16,
        flow="planar",
        num_flows=2,
    )
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in vae.decoder.parameters())
    assert vae.sample(3).shape == (3, 1, 8, 8)
    assert vae.reconstruct(x).shape == (6, 1, 8, 8)
    assert vae.decode(torch.zeros(5, 6, 4)).batch_shape == (5, 6)
    assert iwae(vae.model, vae.guide, x, num_samples=4).shape == (6,)


def test_a_list_of_transforms_is_a_flow_and_pyros_own_fit():
    from pyro.distributions.transforms import conditional_planar

    vae = VAE((20,), 2, hidden_dims=[32], flow=[conditional_planar(2, 32) for _ in range(2)])
    assert vae.flow_kind == "custom"
    assert torch.isfinite(vae.loss(_data(8)))


def test_bad_input_is_named():
    vae = _vae("planar")
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 20\)"):
        vae.loss(torch.zeros(4, 21))
    with pytest.raises(ValueError, match="x: expected dtype"):
        vae.loss(torch.zeros(4, 20, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: expected finite"):
        vae.loss(torch.full((4, 20), float("nan")))
    with pytest.raises(ValueError, match="x: the categorical likelihood needs integer"):
        VAE((20,), 2, hidden_dims=[8], likelihood="categorical").loss(torch.zeros(4, 20))
    with pytest.raises(ValueError, match="flow: expected None"):
        VAE((20,), 2, flow="sylvester")
    with pytest.raises(ValueError, match="num_flows"):
        VAE((20,), 2, num_flows=3)
    with pytest.raises(ValueError, match="likelihood"):
        VAE((20,), 2, likelihood="poisson")
    with pytest.raises(ValueError, match="decoder: expected"):
        VAE((20,), 2, decoder=torch.nn.Linear(2, 19))
    with pytest.raises(ValueError, match="encoder: expected"):
        VAE((20,), 2, encoder=torch.nn.Flatten(0))
    with pytest.raises(ValueError, match="data_shape"):
        VAE((20,), 2, encoder="conv")
    with pytest.raises(ValueError, match="kl_warmup_start"):
        VAE((20,), 2, kl_warmup_start=0.0)
    with pytest.raises(ValueError, match="free_bits"):
        VAE((20,), 2, free_bits=-1.0)


def test_two_vaes_with_one_name_are_refused_under_svi():
    x = _data(8)
    a, b = _vae(None), _vae(None)
    a.model(x)
    with pytest.raises(ValueError, match="name: Pyro's parameter store already holds"):
        b.model(x)
    c = _vae(None, name="second")
    c.model(x)


def test_iwae_refuses_a_global_latent():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="site 'mu' is not local to the data"):
        iwae(model, guide, torch.zeros(3), num_samples=2)
