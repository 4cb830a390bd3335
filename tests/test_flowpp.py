"""Flow++ family tests: the mixture-CDF solver in the tails and at extreme parameters, its
implicit gradients, the couplings' start, the ``flowpp`` builder on vectors and images, and
bad input. The generic properties (bijective, log-det against autograd, inverse log-det,
context) run on every device and dtype in tests/cases/flowpp.py."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyro_lgm.models import ImageFlow, flowpp
from pyro_lgm.nn import AttentionConvNet
from pyro_lgm.transforms import (
    MixtureLogisticCDF,
    MixtureLogisticCoupling,
    image_mixture_logistic_coupling,
    mixture_cdf_solve,
    mixture_logistic_coupling,
)
from pyro_lgm.transforms.mixture_cdf import LOG_SCALE_MIN, mixture_cdf_forward

DTYPES = [torch.float32, torch.float64]


def _reference_solve(ell, log_pi, loc, log_scale, iters=200):
    """Plain bisection in float64 on the bracket, 200 halvings: the exact root to float64."""
    ell, log_pi, loc, log_scale = (v.double() for v in (ell, log_pi, loc, log_scale))
    ends = loc + log_scale.exp() * ell.unsqueeze(-1)
    lo, hi = ends.amin(-1), ends.amax(-1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        z, _ = mixture_cdf_forward(mid, log_pi, loc, log_scale, torch.zeros(()), torch.zeros(()))
        below = z < ell
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _params(k, n, dtype, seed, loc_spread=2.0, log_scale=(-2.0, 1.0), dominant=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    if dominant:
        logits[:, 0] += 25.0  # pi_0 = 1 - O(e^-25)
    loc = loc_spread * torch.randn(n, k, generator=g, dtype=torch.float64)
    lo, hi = log_scale
    ls = lo + (hi - lo) * torch.rand(n, k, generator=g, dtype=torch.float64)
    return [v.to(dtype) for v in (torch.log_softmax(logits, -1), loc, ls)]


def _roundtrip_bound(x, z, slope, scale_min, dtype):
    """What a correct solver can promise: its stopping width ``4 eps (|x| + s_min)`` (with a
    factor 4 of margin), plus the rounding of ``z`` (``eps |z|``, a few ulps of the
    forward map) carried back through the slope."""
    eps = torch.finfo(dtype).eps
    return 16 * eps * (x.abs() + scale_min) + 16 * eps * (z.abs() + 1) / slope


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["tails", "dominant", "tiny-scales", "far-apart"])
def test_solver_round_trip_at_extremes(dtype, where):
    """x -> z -> x within the conditioning-derived bound, for inputs at +-30 scales from a
    component, a dominant component, scales at the clamp, and components 1e3 apart."""
    n, k = 512, 5
    kw = {}
    if where == "dominant":
        kw = dict(dominant=True)
    elif where == "tiny-scales":
        kw = dict(log_scale=(LOG_SCALE_MIN, LOG_SCALE_MIN + 0.5))
    elif where == "far-apart":
        kw = dict(loc_spread=1e3, log_scale=(-3.0, 0.0))
    log_pi, loc, log_scale = _params(k, n, dtype, seed=3, **kw)
    g = torch.Generator().manual_seed(4)
    comp = torch.randint(0, k, (n,), generator=g)
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    std = 30.0 if where == "tails" else 3.0 * torch.rand(n, generator=g).to(dtype)
    rows = torch.arange(n)
    x = loc[rows, comp] + side * std * log_scale[rows, comp].exp()
    zero = torch.zeros((), dtype=dtype)
    z, ldj = mixture_cdf_forward(x, log_pi, loc, log_scale, zero, zero)
    assert torch.isfinite(z).all() and torch.isfinite(ldj).all()
    x_back = mixture_cdf_solve(z, log_pi, loc, log_scale)
    bound = _roundtrip_bound(x, z, ldj.exp(), log_scale.exp().amin(-1), dtype)
    err = (x_back - x).abs()
    assert (err <= bound).all(), f"worst error / bound {(err / bound).max().item():.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_solver_matches_reference_root(dtype):
    """The solver's root of logit F(x) = ell agrees with 200 float64 bisections to its stated
    stopping width, 4 eps (|x| + s_min), times 4 (no fixed iteration count stops short)."""
    log_pi, loc, log_scale = _params(6, 400, dtype, seed=7, loc_spread=50.0)
    ell = 12 * torch.randn(400, generator=torch.Generator().manual_seed(8)).to(dtype)
    x = mixture_cdf_solve(ell, log_pi, loc, log_scale)
    ref = _reference_solve(ell, log_pi, loc, log_scale)
    eps = torch.finfo(dtype).eps
    # solving the float-rounded problem: ell's own rounding moves the root by eps|ell|/g'
    zero = torch.zeros((), dtype=torch.float64)
    _, ldj = mixture_cdf_forward(ref, *(v.double() for v in (log_pi, loc, log_scale)), zero, zero)
    slack = 16 * eps * (ref.abs() + log_scale.double().exp().amin(-1))
    slack = slack + 16 * eps * (ell.double().abs() + 1) / ldj.exp()
    assert ((x.double() - ref).abs() <= slack).all()


def test_solver_gradients_are_the_implicit_function_gradients():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    loc = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ls = (0.5 * torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    ell = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(logits, loc, ls, ell):
        return mixture_cdf_solve(ell, torch.log_softmax(logits, -1), loc, ls)

    assert torch.autograd.gradcheck(fn, (logits, loc, ls, ell))


def test_solver_limits_and_nan():
    """+-inf map to +-inf (the map's limits, e.g. a density evaluated at the faces of the
    dequantizer's cube); NaN raises even with validation off."""
    log_pi, loc, log_scale = _params(3, 3, torch.float64, seed=0)
    ell = torch.tensor([-math.inf, 0.3, math.inf], dtype=torch.float64)
    x = mixture_cdf_solve(ell, log_pi, loc, log_scale)
    assert x[0] == -math.inf and x[2] == math.inf and torch.isfinite(x[1])
    ref = mixture_cdf_solve(ell[1:2], log_pi[1:2], loc[1:2], log_scale[1:2])
    assert torch.equal(x[1:2], ref)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="NaN"):
        mixture_cdf_solve(torch.full((3,), math.nan, dtype=torch.float64), log_pi, loc, log_scale)


def test_mixture_cdf_is_logistic_for_one_component():
    """K = 1, unit scale, a = b = 0: logit(sigmoid(x - mu)) = x - mu, a shift."""
    t = MixtureLogisticCDF(torch.zeros(1), torch.tensor([0.7]), torch.zeros(1))
    x = torch.linspace(-20, 20, 41)
    assert torch.allclose(t.inv(x), x - 0.7, atol=1e-5)
    assert torch.allclose(t.log_abs_det_jacobian(t.inv(x), x), torch.zeros(41), atol=1e-6)


def test_mixture_cdf_bad_arguments():
    with pytest.raises(ValueError, match="logits"):
        MixtureLogisticCDF(torch.zeros(()), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="do not broadcast"):
        MixtureLogisticCDF(torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="event_dim"):
        MixtureLogisticCDF(torch.zeros(2), torch.zeros(2), torch.zeros(2), event_dim=-1)
    t = MixtureLogisticCDF(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="does not broadcast"):
        t(torch.zeros(4))
    with pytest.raises(ValueError, match="dtype"):
        t(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        t.inv(torch.tensor([0.0, math.nan, 0.0]))


def test_coupling_start_and_symmetry_breaking():
    """A new coupling is a smooth monotone map of equal-weight unit logistics whose fixed
    locations differ, so the components get different gradients from the first step."""
    t = mixture_logistic_coupling(2, [8], mask="alternating", num_components=4)
    x = torch.randn(64, 2)
    z = t.inv(x)
    assert torch.equal(z[:, 0], x[:, 0])
    assert (
        torch.diff(t.inv(torch.stack([torch.zeros(9), torch.linspace(-4, 4, 9)], -1))[:, 1]) > 0
    ).all()
    z[:, 1].sum().backward()
    grad = t.conditioner.layers[-1].bias.grad.reshape(1, 3 * 4 + 2)
    loc_grads = grad[0, 4:8]
    assert loc_grads.unique().numel() == 4


def test_coupling_bad_arguments():
    with pytest.raises(ValueError, match="num_components"):
        mixture_logistic_coupling(2, [8], num_components=0)
    with pytest.raises(ValueError, match="log_scale_bound"):
        mixture_logistic_coupling(2, [8], log_scale_bound=-1.0)
    with pytest.raises(ValueError, match="conditioner"):
        MixtureLogisticCoupling([True, False], lambda x: x, num_components=2)(torch.zeros(3, 2))
    t = mixture_logistic_coupling(3, [8])
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        t.inv(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="net"):
        image_mixture_logistic_coupling(2, "channel", net="mlp")


def test_image_coupling_with_attention_conditioner():
    torch.manual_seed(0)
    t = image_mixture_logistic_coupling(
        2, "checkerboard", num_components=3, net="attention", hidden=8
    )
    assert isinstance(t.conditioner, AttentionConvNet)
    with torch.no_grad():
        t.conditioner.head.weight.normal_(0, 0.05)
    x = torch.randn(3, 2, 4, 6, dtype=torch.float32)
    z = t.inv(x)
    mask = (torch.arange(4)[:, None] + torch.arange(6)) % 2 == 0
    assert torch.equal(z[..., mask], x[..., mask])  # the conditioning squares are copied
    assert not torch.allclose(z[..., ~mask], x[..., ~mask])
    assert torch.allclose(t(z), x, atol=1e-5)


def test_vector_flowpp_trains_on_the_checkerboard():
    """200 Adam steps lower the NLL of the sharp checkerboard by more than 0.5 nats (the
    start is about 3.2 nats, the target's entropy 2.08; measured drop 0.9)."""
    from pyro_lgm.data.toy import Checkerboard

    torch.manual_seed(0)
    target = Checkerboard()
    data = target.sample((4096,), generator=torch.Generator().manual_seed(0))
    flow = flowpp(2, num_layers=4, num_components=16, hidden=[32, 32])
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    with torch.no_grad():
        start = -flow().log_prob(data).mean().item()
    for _ in range(200):
        batch = data[torch.randint(0, 4096, (256,))]
        loss = -flow().log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = -flow().log_prob(data).mean().item()
    assert end < start - 0.5, (start, end)
    # samples come from the root finder and land on the board's black squares mostly
    s = flow().sample((2000,))
    assert torch.isfinite(s).all()
    inside = target.support.check(s).float().mean().item()
    assert inside > 0.6, inside


def test_vector_flowpp_in_pyro_and_conditional():
    flow = flowpp(3, num_layers=2, num_components=2, hidden=[8], context_dim=2)
    ctx = torch.randn(5, 2)

    def model():
        with pyro.plate("data", 5):
            return pyro.sample("x", flow(ctx))

    tr = pyro.poutine.trace(model).get_trace()
    assert tr.nodes["x"]["value"].shape == (5, 3)
    assert tr.log_prob_sum().isfinite()


def test_image_flowpp_shapes_and_sampling():
    torch.manual_seed(0)
    flow = flowpp((1, 8, 8), num_components=2, hidden=8, net="attention", num_scales=2)
    assert isinstance(flow, ImageFlow)
    x = torch.randint(0, 256, (2, 1, 8, 8)).float()
    bpd = flow.bits_per_dim(x)
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()
    s = flow.sample((3,), temperature=0.7)
    assert s.shape == (3, 1, 8, 8) and (s >= 0).all() and (s <= 255).all()
    with pytest.raises(ValueError, match="hidden"):
        flowpp((1, 8, 8), hidden=[8])
    with pytest.raises(ValueError, match="context_dim"):
        flowpp((1, 8, 8), context_dim=2)
    with pytest.raises(ValueError, match="divisible"):
        flowpp((1, 6, 6), num_scales=3)
