"""Variational dequantization (Flow++, Sec. 3.1): the dequantizer's density, its caches,
the bounds and their order, the uniform special case, SVI training, input checks."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions.transforms import SigmoidTransform

from pyro_lgm.data.digits import load_digits_images
from pyro_lgm.metrics import elbo as metrics_elbo
from pyro_lgm.models.dequantization import (
    DEQUANTIZER_COUPLINGS,
    Dequantizer,
    UniformDequantizer,
    VariationalDequantization,
    variational_dequantizer,
)
from pyro_lgm.models.glow import glow, realnvp_image
from pyro_lgm.testing import assert_normalized
from pyro_lgm.transforms.image_coupling import ImageAffineCoupling


@pytest.fixture(autouse=True)
def _clear_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _perturb(*modules: torch.nn.Module, scale: float = 0.3) -> None:
    """Noise on every parameter, the zero-initialised last layers included (a new
    dequantizer is the identity, which would make several checks trivial)."""
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(scale * torch.randn_like(p))


def _images(n: int, shape: tuple[int, ...], bits: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**bits, (n, *shape), generator=g).float()


# ------------------------------------------------------------------------------ uniform case
def test_uniform_dequantizer_matches_the_flows_uniform_path():
    torch.manual_seed(0)
    flow = glow((1, 4, 4), levels=1, steps=1, hidden=8)
    _perturb(flow, scale=0.1)
    vd = VariationalDequantization(flow, UniformDequantizer((1, 4, 4)))
    x = _images(5, (1, 4, 4))
    for s in (1, 7):
        torch.manual_seed(123)
        ref = flow.log_likelihood(x, num_samples=s)  # S draws of torch.rand(x.shape)
        torch.manual_seed(123)
        got = vd.iwae(x, num_samples=s) if s > 1 else vd.elbo(x)  # one rand((S, N, ...))
        # the same uniform numbers reach the same flow: equal up to summation order
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    torch.manual_seed(5)
    ref_bpd = flow.bits_per_dim(x)
    torch.manual_seed(5)
    torch.testing.assert_close(vd.bits_per_dim(x), ref_bpd, rtol=0, atol=1e-6)


def test_methods_agree_with_the_pyro_program():
    """``vd.elbo`` (direct) against ``pyro_lgm.metrics.elbo`` run on ``model`` / ``guide``:
    the same normal draws, so the same weights (metrics evaluates ``log_prob`` outside
    ``no_grad``, so the dequantizer's inverse is recomputed there: float32 rounding)."""
    torch.manual_seed(1)
    flow = realnvp_image((1, 4, 4), num_scales=1, hidden=4, blocks=1)
    dq = variational_dequantizer((1, 4, 4), steps=2, hidden=8)
    _perturb(flow, dq, scale=0.05)
    vd = VariationalDequantization(flow, dq)
    x = _images(4, (1, 4, 4), seed=1)
    torch.manual_seed(7)
    direct = vd.elbo(x, num_samples=3)
    torch.manual_seed(7)
    program = metrics_elbo(vd.model, vd.guide, x, num_samples=3)
    torch.testing.assert_close(direct, program, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------------ the density
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 2)])
@pytest.mark.parametrize("base", ["normal", "logistic"])
@pytest.mark.parametrize("coupling", ["affine", "mixture"])
def test_dequantizer_density_integrates_to_one(shape, base, coupling):
    torch.manual_seed(2)
    dq = variational_dequantizer(shape, steps=2, hidden=8, base=base, coupling=coupling)
    dq = dq.double()
    d = math.prod(shape)
    # perturbed well away from the identity; in 2-D less strongly, since noise of 0.5 piles
    # mass within 1e-4 of a face, narrower than a 2-D grid's step (the integral then creeps
    # towards 1 as the grid refines: 0.85 at 401 points, 0.90 at 801)
    _perturb(dq, scale=0.5 if d == 1 else 0.2)
    x = torch.tensor([0.0, 77.0, 255.0], dtype=torch.float64).reshape(3, 1, 1, 1).expand(3, *shape)
    q = dq(x)
    assert q.batch_shape == (3,) and q.event_shape == shape
    # the box is the whole support (0, 1)^D; the density vanishes at its faces (Gaussian or
    # logistic tails in logit space), so the trapezoid rule converges at its usual h^2 rate:
    # with 20001 (1-D) / 401 (2-D) points the quadrature error is far below the defaults
    # 1e-4 (1-D) and 2e-3 (2-D) of assert_normalized
    assert_normalized(q, bounds=[(0.0, 1.0)] * d, num_points=20001 if d == 1 else 401)


def test_logistic_base_starts_as_uniform_dequantization():
    dq = variational_dequantizer((1, 2, 2), steps=2, hidden=8, base="logistic").double()
    x = _images(3, (1, 2, 2)).double()
    q = dq(x)
    u = q.sample((100,))
    # a new dequantizer's couplings are the identity: sigmoid(logistic) is U(0, 1)
    torch.testing.assert_close(q.log_prob(u), torch.zeros(100, 3, dtype=torch.float64))


def test_samples_in_open_unit_cube_and_reparametrized_gradients():
    torch.manual_seed(3)
    dq = variational_dequantizer((2, 4, 4), steps=4, hidden=8)
    _perturb(dq, scale=0.3)
    x = torch.cat([torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 255.0), _images(2, (2, 4, 4))])
    q = dq(x.long())  # integer dtype accepted
    u = q.rsample((50,))
    assert u.shape == (50, 4, 2, 4, 4)
    assert bool(((u > 0) & (u < 1)).all())
    (u * torch.linspace(-1, 1, u.numel()).reshape(u.shape)).sum().backward()
    for name, p in dq.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


# ------------------------------------------------------------------------------ the bounds
def test_elbo_below_iwae_below_log_likelihood():
    torch.manual_seed(0)
    flow = glow((1, 2, 2), levels=1, steps=1, hidden=8).double()
    dq = variational_dequantizer((1, 2, 2), steps=2, hidden=8).double()
    _perturb(flow, dq, scale=0.3)
    vd = VariationalDequantization(flow, dq)
    x = torch.tensor([[[[0, 255], [128, 3]]], [[[10, 10], [10, 10]]], [[[200, 50], [255, 0]]]])
    torch.manual_seed(1)
    reps, s = 200, 16
    lw = vd.log_weights(x, reps * s)  # (reps * S, N)
    elbo = lw.mean(0)
    se_elbo = lw.std(0) / math.sqrt(lw.shape[0])
    iw = torch.logsumexp(lw.reshape(reps, s, -1), 1) - math.log(s)  # reps draws of L_16
    iwae, se_iwae = iw.mean(0), iw.std(0) / math.sqrt(reps)
    l_big = vd.iwae(x, num_samples=20000, chunk_size=5000)  # L_20000 of the same q
    # log P(x) by importance sampling with the uniform proposal, which suits a density
    # that is smooth inside a cell far better than the perturbed q does
    torch.manual_seed(2)
    uni = VariationalDequantization(flow, UniformDequantizer((1, 2, 2)), name="u")
    lw_p = uni.log_weights(x, 20000)
    log_p = torch.logsumexp(lw_p, 0) - math.log(lw_p.shape[0])
    # Measured (float64, these seeds), nats: ELBO -48.4, -32.3, -71.7; L_16 -26.5, -25.0,
    # -32.5; L_20000 -20.0, -23.9, -26.0; log P -18.2, -22.1, -23.8. The standard errors
    # are 0.17 - 0.77 (ELBO) and 0.08 - 0.35 (L_16): every gap is over 1.7 nats, and the
    # order is asserted with a margin of 5 standard errors of the estimates compared
    assert bool((elbo + 5 * (se_elbo + se_iwae) < iwae).all()), (elbo, iwae)
    assert bool((iwae + 5 * se_iwae < l_big).all()), (iwae, l_big)
    assert bool((iwae + 5 * se_iwae < log_p).all()), (iwae, log_p)
    assert bool((l_big < log_p).all()), (l_big, log_p)  # measured gaps 1.8 - 2.2 nats


# ------------------------------------------------------------------------------ training
def _train(kind: str, base: str, x: torch.Tensor, steps: int = 40) -> tuple[float, float]:
    pyro.clear_param_store()
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=1, steps=2, hidden=16, bits=1)
    torch.manual_seed(1)
    if kind == "var":
        dq = variational_dequantizer((1, 8, 8), bits=1, steps=4, hidden=16, base=base)
    else:
        dq = UniformDequantizer((1, 8, 8), bits=1)
    vd = VariationalDequantization(flow, dq, name=kind)
    torch.manual_seed(2)
    start = float(vd.elbo(x, num_samples=8).mean()) / 64
    svi = pyro.infer.SVI(vd.model, vd.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        svi.step(x[torch.randint(0, x.shape[0], (32,), generator=g)])
    torch.manual_seed(2)
    return start, float(vd.elbo(x, num_samples=8).mean()) / 64


def test_svi_trains_flow_and_dequantizer_and_beats_uniform():
    # binarized 8x8 digits (bits=1): the unit cells are wide against the data's scale, so
    # where the noise goes matters; on 8-bit digits 40 steps left the two within noise
    x = load_digits_images("train", bits=1)[:128].float()
    uni_start, uni_end = _train("uni", "normal", x)
    log_start, log_end = _train("var", "logistic", x)
    nor_start, nor_end = _train("var", "normal", x)
    # nats/dim measured: uniform -0.686 -> -0.527; logistic base -0.686 (= uniform: it
    # starts as uniform dequantization) -> -0.504; normal base -0.807 -> -0.517. The
    # evaluation (128 images x 8 draws) has a standard error near 0.003 nats/dim.
    assert abs(log_start - uni_start) < 1e-3
    assert nor_end > nor_start + 0.1 and log_end > log_start + 0.1
    assert log_end > uni_end + 0.01  # measured margin 0.023 (0.025 with other seeds)
    assert nor_end > uni_end  # measured margin 0.010 (0.008 with other seeds)


# ------------------------------------------------------------------------------ caches
class _Counts:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = {"call": 0, "inverse": 0, "logit": 0}
        call, inverse = ImageAffineCoupling._call, ImageAffineCoupling._inverse
        sig_inverse = SigmoidTransform._inverse

        def counted(key, fn):
            def wrapper(*args, **kwargs):
                self.n[key] += 1
                return fn(*args, **kwargs)

            return wrapper

        monkeypatch.setattr(ImageAffineCoupling, "_call", counted("call", call))
        monkeypatch.setattr(ImageAffineCoupling, "_inverse", counted("inverse", inverse))
        monkeypatch.setattr(SigmoidTransform, "_inverse", counted("logit", sig_inverse))


@pytest.mark.parametrize("inverse", [False, True])
def test_log_prob_after_rsample_runs_no_inverse(monkeypatch, inverse):
    torch.manual_seed(4)
    steps = 3
    dq = variational_dequantizer((2, 4, 4), steps=steps, hidden=8, inverse=inverse)
    _perturb(dq, scale=0.2)
    x = _images(3, (2, 4, 4))
    counts = _Counts(monkeypatch)
    sampling, other = ("inverse", "call") if inverse else ("call", "inverse")
    q = dq(x)
    u = q.rsample((2,))
    assert counts.n == {sampling: steps, other: 0, "logit": 0}
    q.log_prob(u).sum().backward()
    assert counts.n == {sampling: steps, other: 0, "logit": 0}  # every layer from the cache
    # the guide under Pyro (plate, expanded distribution) and Trace_ELBO's log_prob; the
    # flow's couplings are additive, so the counts are the dequantizer's alone
    flow = glow((2, 4, 4), levels=1, steps=1, hidden=4, coupling="additive")
    vd = VariationalDequantization(flow, dq)
    tr = poutine.trace(vd.guide).get_trace(x)
    tr.compute_log_prob()
    assert counts.n == {sampling: 2 * steps, other: 0, "logit": 0}
    # the bounds' own sample -> log_prob pass, under no_grad
    vd.log_weights(x, 2)
    assert counts.n[other] == 0 and counts.n["logit"] == 0
    # control: a value it did not sample is inverted, layer by layer
    q.log_prob(u.detach().clone())
    assert counts.n[other] == steps and counts.n["logit"] == 1


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_errors_naming_the_argument():
    flow = glow((1, 4, 4), levels=1, steps=1, hidden=4)
    dq = variational_dequantizer((1, 4, 4), steps=1, hidden=4)
    vd = VariationalDequantization(flow, dq)
    good = _images(2, (1, 4, 4))
    bad = {
        "non-integer": good + 0.5,
        "negative": good - 300,
        "too large": good + 256,
        "nan": good.masked_fill(good > 100, float("nan")),
        "wrong shape": good[..., :2],
        "no batch": good[0],
        "bool": good > 3,
    }
    for why, x in bad.items():
        for fn in (vd.model, vd.guide, vd.elbo, vd.iwae, vd.bits_per_dim):
            with pytest.raises(ValueError, match="^x: "):
                fn(x)
        if why not in ("no batch",):
            for deq in (dq, UniformDequantizer((1, 4, 4))):
                with pytest.raises(ValueError, match="^x: "):
                    deq(x)
    with pytest.raises(ValueError, match="^x: "):
        dq([[0]])
    with pytest.raises(ValueError, match="^bound: "):
        vd.bits_per_dim(good, bound="tight")
    with pytest.raises(ValueError, match="^num_samples: "):
        vd.iwae(good, num_samples=0)
    with pytest.raises(ValueError, match="^chunk_size: "):
        vd.elbo(good, chunk_size=0)
    with pytest.raises(ValueError, match="^dequantizer: "):
        VariationalDequantization(flow, UniformDequantizer((1, 2, 2)))
    with pytest.raises(ValueError, match="^dequantizer: "):
        VariationalDequantization(flow, UniformDequantizer((1, 4, 4), bits=5))
    with pytest.raises(ValueError, match="^dequantizer: "):
        VariationalDequantization(flow, flow)
    with pytest.raises(ValueError, match="^coupling: "):
        variational_dequantizer((1, 4, 4), coupling="mixture-of-everything")
    with pytest.raises(ValueError, match="^base: "):
        variational_dequantizer((1, 4, 4), base="cauchy")
    with pytest.raises(ValueError, match="^inverse: "):
        Dequantizer((1, 4, 4), [], inverse=1)
    with pytest.raises(ValueError, match=r"^transforms\[0\]: "):
        Dequantizer((1, 4, 4), [object()])
    with pytest.raises(ValueError, match="^bits: "):
        UniformDequantizer((1, 4, 4), bits=0)


def test_coupling_registry_is_pluggable(monkeypatch):
    built = []

    def spy(channels, context_shape, mask, invert, hidden, **options):
        built.append((mask, invert, context_shape))
        return DEQUANTIZER_COUPLINGS["affine"](
            channels, context_shape, mask, invert, hidden, **options
        )

    monkeypatch.setitem(DEQUANTIZER_COUPLINGS, "spy", spy)
    dq = variational_dequantizer((1, 4, 4), steps=2, hidden=4, coupling="spy", context_channels=3)
    assert built == [("checkerboard", False, (3, 4, 4)), ("checkerboard", True, (3, 4, 4))]
    assert dq(_images(2, (1, 4, 4))).rsample().shape == (2, 1, 4, 4)


# ------------------------------------------------------------------------------ Flow++ couplings
def test_mixture_dequantizer_samples_without_the_root_finder(monkeypatch):
    """The mixture couplings sample through their closed-form direction (``.inv``, the
    builder's default for ``coupling="mixture"``) and ``log_prob`` of the sample reads the
    caches: the solver of their other direction never runs, under Pyro's guide either."""
    import pyro_lgm.transforms.mixture_cdf as mc

    calls = []
    solve = mc.mixture_cdf_solve
    monkeypatch.setattr(mc, "mixture_cdf_solve", lambda *a: calls.append(1) or solve(*a))
    torch.manual_seed(5)
    dq = variational_dequantizer((2, 4, 4), steps=4, hidden=8, coupling="mixture")
    assert dq.inverse
    _perturb(dq, scale=0.2)
    x = _images(3, (2, 4, 4))
    q = dq(x)
    u = q.rsample()
    assert ((u > 0) & (u < 1)).all()
    q.log_prob(u).sum().backward()
    vd = VariationalDequantization(glow((2, 4, 4), levels=1, steps=1, hidden=4), dq)
    tr = poutine.trace(vd.guide).get_trace(x)
    tr.compute_log_prob()
    vd.iwae(x, num_samples=3)
    vd.loss(x).sum().backward()
    assert calls == []
    q.log_prob(u.detach().clone())  # control: a value it did not draw is inverted
    assert len(calls) == 4


def test_loss_is_the_negative_log_weight_of_its_draw():
    """``loss(x)`` is ``-(log p(x + u) - log q(u | x))`` for the ``u`` it drew (same seed as
    ``log_weights``), and it carries gradients to both the flow and the dequantizer."""
    torch.manual_seed(6)
    flow = glow((1, 4, 4), levels=1, steps=1, hidden=4)
    dq = variational_dequantizer((1, 4, 4), steps=2, hidden=4, coupling="mixture")
    _perturb(dq, flow, scale=0.2)
    vd = VariationalDequantization(flow, dq)
    x = _images(2, (1, 4, 4))
    torch.manual_seed(7)
    loss = vd.loss(x)
    torch.manual_seed(7)
    expected = -vd.log_weights(x, 1)[0]
    assert torch.allclose(loss.detach(), expected, atol=1e-4, rtol=1e-5)
    loss.sum().backward()
    for name, module in (("flow", flow), ("dequantizer", dq)):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_trained_mixture_pipeline_bounds_the_exact_likelihood():
    """A Flow++ flow and mixture dequantizer trained by SVI on pairs of digit pixels
    (``(1, 1, 2)`` images): ELBO <= IWAE <= log P(x), with log P(x) = log of the flow's
    density integrated over the unit square by the midpoint rule (400 x 400 points).

    Validity after training, where a wrong log-det would let the two parts collude. In a
    300-step run the gaps were 0.00-0.31 nats (ELBO to IWAE) and IWAE to log P within
    0.02 nats either side (the IWAE's Monte Carlo error at S = 2000); the margins below are
    those, not tolerances that could hide an error of the size of a log-det."""
    from pyro_lgm.data import load_digits_images
    from pyro_lgm.models import flowpp

    torch.manual_seed(0)
    x = load_digits_images("train", bits=8).float()[:, :, 3, 2:4].reshape(-1, 1, 1, 2)
    flow = flowpp((1, 1, 2), num_components=4, hidden=8, net="glow", num_scales=1)
    dq = variational_dequantizer((1, 1, 2), steps=2, hidden=8, coupling="mixture")
    vd = VariationalDequantization(flow, dq)
    with torch.no_grad():
        flow.log_likelihood(x[:64])
    svi = pyro.infer.SVI(vd.model, vd.guide, pyro.optim.Adam({"lr": 3e-3}), pyro.infer.Trace_ELBO())
    for _ in range(40):
        svi.step(x[torch.randint(len(x), (64,))])
    xs = x[:6]
    with torch.no_grad():
        elbo = vd.elbo(xs, num_samples=2000)
        iw = vd.iwae(xs, num_samples=2000)
        n = 400
        g = (torch.arange(n) + 0.5) / n
        grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 1, 2)
        log_p = torch.stack(
            [torch.logsumexp(flow().log_prob(xi + grid), 0) - 2 * math.log(n) for xi in xs]
        )
    assert (elbo <= iw + 1e-3).all(), (elbo, iw)
    assert (iw <= log_p + 0.05).all(), (iw, log_p)
