"""Rational-quadratic splines, spline couplings and NSF: identity at initialisation,
agreement with an independent implementation (zuko), monotonicity and smoothness at the
knots and at the tails, round trips at extreme parameters, bad input, and training."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lgm.data.toy import TwoMoons
from pyro_lgm.models.spline import nsf
from pyro_lgm.transforms.spline import (
    ConditionalSplineCoupling,
    RationalQuadraticSpline,
    SplineCoupling,
    conditional_spline_coupling,
    spline_coupling,
)
from tests.cases import live_units, perturb_all

DTYPES = [torch.float32, torch.float64]


def _random_spline(bins=8, batch=(), bound=3.0, scale=1.5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def raw(n):
        return (scale * torch.randn(*batch, n, generator=g, dtype=torch.float64)).to(dtype)

    return RationalQuadraticSpline(raw(bins), raw(bins), raw(bins - 1), bound=bound)


# ----------------------------------------------------------------------------- identity
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_parameters_are_the_identity(dtype):
    eps = torch.finfo(dtype).eps
    t = RationalQuadraticSpline(
        torch.zeros(5, dtype=dtype), torch.zeros(5, dtype=dtype), torch.zeros(4, dtype=dtype)
    )
    # uniform knots, unit derivatives (the softplus shift gives 1 to within an ulp)
    grid = torch.linspace(-3, 3, 6, dtype=dtype)
    assert torch.allclose(t.x_knots, grid, atol=8 * eps, rtol=0)
    assert torch.allclose(t.y_knots, grid, atol=8 * eps, rtol=0)
    assert torch.allclose(t.knot_derivatives, torch.ones(6, dtype=dtype), atol=2 * eps, rtol=0)
    x = torch.linspace(-5, 5, 1001, dtype=dtype)
    y = t(x)
    assert (y - x).abs().max() <= 16 * eps * 3
    assert t.log_abs_det_jacobian(x, y).abs().max() <= 16 * eps
    assert (t.inv(x) - x).abs().max() <= 16 * eps * 3


def test_couplings_and_nsf_start_as_the_identity():
    torch.manual_seed(0)
    x = 2.0 * torch.randn(64, 5)  # inside and outside [-3, 3]
    t = spline_coupling(5, [16], mask="alternating", bins=6)
    y = t(x)
    assert (y - x).abs().max() < 1e-5
    assert t.log_abs_det_jacobian(x, y).abs().max() < 1e-5
    ct = conditional_spline_coupling(5, 3, [16]).condition(torch.randn(64, 3))
    assert (ct(x) - x).abs().max() < 1e-5
    flow = nsf(5, num_layers=3, hidden_dims=[16], actnorm=False)
    base = dist.Normal(torch.zeros(5), 1.0).to_event(1)
    assert torch.allclose(flow().log_prob(x), base.log_prob(x), atol=1e-4)


# ----------------------------------------------------------------------------- zuko
def _import_zuko():
    """zuko, imported without its side effect: its import sets
    ``torch.distributions.Distribution._validate_args = False`` for the whole process,
    which would switch off the library's input checks in every later test."""
    validate = torch.distributions.Distribution._validate_args
    try:
        return pytest.importorskip("zuko")
    finally:
        torch.distributions.Distribution._validate_args = validate


def _zuko_twin(t: RationalQuadraticSpline):
    """A zuko spline with the same knots and derivatives as ``t``.

    zuko maps its raw numbers through ``u / (1 + |2u / log(slope)|)`` (widths, heights,
    then a softmax, no minimum width) and ``exp(u / (1 + |u / log(slope)|))``
    (derivatives); with a tiny ``slope`` both maps are invertible on the values needed, so
    the raw numbers below reproduce ``t``'s normalised spline exactly (up to rounding).
    """
    zuko = _import_zuko()
    slope = 1e-30
    big = -math.log(slope)

    def soft_inv(v, c):
        return v / (1 - c * v.abs() / big)

    def logits(knots):
        lw = knots.diff(dim=-1).log()
        return soft_inv(lw - lw.mean(-1, keepdim=True), 2.0)

    log_d = t.knot_derivatives[..., 1:-1].log()
    return zuko.transforms.MonotonicRQSTransform(
        logits(t.x_knots), logits(t.y_knots), soft_inv(log_d, 1.0), bound=t.bound, slope=slope
    )


def test_agrees_with_zuko_float64():
    t = _random_spline(bins=8, batch=(6,), scale=1.5)
    z = _zuko_twin(t)
    assert (t.x_knots - z.horizontal).abs().max() < 1e-13
    x = torch.linspace(-4.5, 4.5, 2001, dtype=torch.float64)[:, None].expand(2001, 6)
    y = t(x)
    # measured: 3e-14 (forward), 5e-12 (inverse), 2e-13 (log-det)
    assert (y - z(x)).abs().max() < 1e-12
    assert (t.inv(y) - z.inv(y)).abs().max() < 1e-10
    assert (t.log_abs_det_jacobian(x, y) - z.log_abs_det_jacobian(x, y)).abs().max() < 1e-11


def test_float32_forward_is_at_least_as_accurate_as_zuko():
    t64 = _random_spline(bins=8, batch=(6,), scale=1.5)
    t32 = _random_spline(bins=8, batch=(6,), scale=1.5, dtype=torch.float32)
    z32 = _zuko_twin(t32)
    x = torch.linspace(-4.5, 4.5, 2001, dtype=torch.float64)[:, None].expand(2001, 6)
    ref = t64(x)
    ours = (t32(x.float()).double() - ref).abs().max()
    theirs = (z32(x.float()).double() - ref).abs().max()
    assert ours < 1e-4 and ours <= theirs * 1.01


# ----------------------------------------------------------------------------- shape
@pytest.mark.parametrize("dtype", DTYPES)
def test_monotone_and_continuous_at_knots_and_bounds(dtype):
    t = _random_spline(bins=7, scale=2.0, dtype=dtype, seed=3)
    eps = torch.finfo(dtype).eps
    x = torch.linspace(-6, 6, 20001, dtype=dtype)
    y = t(x)
    assert bool((y.diff() > 0).all())  # strictly increasing
    # at each knot (the bounds included) the two neighbours of the knot map close together
    knots = t.x_knots
    below = torch.nextafter(knots, knots - 1)
    above = torch.nextafter(knots, knots + 1)
    gap = t(above) - t(below)
    assert bool((gap >= 0).all())
    assert gap.max() <= 64 * eps * 3
    assert torch.allclose(t(knots), t.y_knots, atol=16 * eps * 3, rtol=0)
    b = torch.tensor([-3.0, 3.0], dtype=dtype)
    assert torch.equal(t(b), b)  # the spline's end knots are the bounds themselves


def test_derivative_is_continuous_at_the_knots_and_the_tails():
    t = _random_spline(bins=6, scale=2.0, seed=5)
    h = 1e-12
    knots = t.x_knots
    for k, (xk, dk) in enumerate(zip(knots.tolist(), t.knot_derivatives.tolist())):
        pts = torch.tensor([xk - h, xk + h], dtype=torch.float64)
        ladj = t.log_abs_det_jacobian(pts, t(pts))
        # left and right derivatives agree, and equal the knot's derivative
        assert torch.allclose(ladj.exp(), torch.tensor([dk, dk], dtype=torch.float64), rtol=1e-6)
        if k in (0, len(knots) - 1):
            assert dk == 1.0  # the identity tails join with slope 1
    outside = torch.tensor([-7.0, -3.0 - 1e-12, 3.0 + 1e-12, 9.0], dtype=torch.float64)
    assert torch.equal(t.log_abs_det_jacobian(outside, t(outside)), torch.zeros(4).double())


def test_gradients_are_finite_at_and_beyond_the_bounds():
    w = torch.randn(4, requires_grad=True)
    h = torch.randn(4, requires_grad=True)
    d = torch.randn(3, requires_grad=True)
    t = RationalQuadraticSpline(w, h, d, bound=1.0)
    x = torch.tensor([-5.0, -1.0, -0.3, 0.0, 1.0, 5.0], requires_grad=True)
    y = t(x)
    loss = y.sum() + t.log_abs_det_jacobian(x, y).sum() + t.inv(y).sum()
    grads = torch.autograd.grad(loss, [x, w, h, d])
    assert all(bool(torch.isfinite(g).all()) for g in grads)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_near_knots_with_very_narrow_bins(dtype):
    eps = torch.finfo(dtype).eps
    bins, bound = 8, 3.0
    # one huge raw width / height: the other bins shrink to the minimum (1e-3 of 2B); a
    # tiny and a large interior derivative
    widths = torch.zeros(bins, dtype=dtype)
    widths[2] = 30.0
    heights = torch.zeros(bins, dtype=dtype)
    heights[5] = 30.0
    derivs = torch.tensor([-30.0, 30.0, 0.0, -5.0, 5.0, -30.0, 30.0], dtype=dtype)
    t = RationalQuadraticSpline(widths, heights, derivs, bound=bound)
    assert t.x_knots.diff().min() < 2 * 6.1e-3  # the narrow bins are at their minimum
    knots = torch.cat([t.x_knots, t.y_knots])
    offsets = torch.tensor([-1e-3, -1e-6, 0.0, 1e-6, 1e-3], dtype=dtype)
    x = torch.cat([(knots[:, None] + offsets).flatten(), torch.linspace(-4, 4, 801, dtype=dtype)])
    y = t(x)
    x_rec = t.inv(y)
    # an inverse loses about kappa = 1 / g'(x) ulps of y (measured: within 6 kappa eps)
    kappa = torch.exp(-t.log_abs_det_jacobian(x, y))
    assert bool(((x_rec - x).abs() <= 16 * eps * bound * (1 + kappa)).all())
    # the other way round the forward map amplifies the rounding of x' = inv(y) by g'(x')
    x_inv = t.inv(x)
    slope = torch.exp(t.log_abs_det_jacobian(x_inv, x))
    assert bool(((t(x_inv) - x).abs() <= 16 * eps * bound * (1 + slope)).all())
    assert bool(torch.isfinite(t.log_abs_det_jacobian(x, y)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_is_accurate_to_the_conditioning(dtype):
    # random splines with strongly varying bins: the inverse error stays within a few
    # kappa ulps everywhere (the form of the quadratic root matters here: the single
    # 2c / (-b - sqrt(disc)) cancels when b < 0, losing ~800 kappa ulps in float32)
    eps = torch.finfo(dtype).eps
    for seed in range(20):
        t = _random_spline(bins=2 + seed % 7, batch=(4,), bound=1.0, scale=3.0, dtype=dtype)
        t64 = _random_spline(bins=2 + seed % 7, batch=(4,), bound=1.0, scale=3.0)
        x = torch.linspace(-1, 1, 501, dtype=dtype)[:, None].expand(501, 4)
        y = t(x)
        # reference: the float64 inverse of the same (float32-rounded) knots
        t64.x_knots, t64.y_knots = t.x_knots.double(), t.y_knots.double()
        t64.knot_derivatives = t.knot_derivatives.double()
        ref = t64.inv(y.double())
        kappa = torch.exp(-t64.log_abs_det_jacobian(ref, y.double()))
        err = (t.inv(y).double() - ref).abs()
        assert bool((err <= 16 * eps * (1 + kappa)).all()), seed


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error_naming_the_argument():
    z = torch.zeros
    with pytest.raises(ValueError, match="widths"):
        RationalQuadraticSpline(z(1), z(1), z(0))  # a single bin
    with pytest.raises(ValueError, match="heights"):
        RationalQuadraticSpline(z(4), z(5), z(3))
    with pytest.raises(ValueError, match="derivatives"):
        RationalQuadraticSpline(z(4), z(4), z(4))
    with pytest.raises(ValueError, match="derivatives"):
        RationalQuadraticSpline(z(2, 4), z(2, 4), z(3, 3))  # batch shapes do not broadcast
    with pytest.raises(ValueError, match="widths"):
        RationalQuadraticSpline(torch.tensor([0.0, float("nan")]), z(2), z(1))
    with pytest.raises(ValueError, match="heights"):
        RationalQuadraticSpline(z(4), z(4, dtype=torch.float64), z(3))
    for bad in (0.0, -1.0, float("inf"), "3"):
        with pytest.raises(ValueError, match="bound"):
            RationalQuadraticSpline(z(4), z(4), z(3), bound=bad)
    with pytest.raises(ValueError, match="min_bin_width"):
        RationalQuadraticSpline(z(4), z(4), z(3), min_bin_width=0.3)
    with pytest.raises(ValueError, match="event_dim"):
        RationalQuadraticSpline(z(4), z(4), z(3), event_dim=-1)
    t = RationalQuadraticSpline(z(3, 4), z(3, 4), z(3, 3))
    with pytest.raises(ValueError, match="x"):
        t(torch.zeros(2))  # (2,) does not broadcast with the parameters' (3,)
    with pytest.raises(ValueError, match="x"):
        t(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="y"):
        t.inv(torch.zeros(3, dtype=torch.float64))
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="bins"):
            spline_coupling(4, [8], bins=bad)
        with pytest.raises(ValueError, match="bins"):
            conditional_spline_coupling(4, 2, [8], bins=bad)
    with pytest.raises(ValueError, match="bound"):
        spline_coupling(4, [8], bound=0.0)
    with pytest.raises(ValueError, match="bound"):
        nsf(2, bound=-1.0)
    with pytest.raises(ValueError, match="context_dim"):
        conditional_spline_coupling(4, 0, [8])
    c = spline_coupling(4, [8])
    with pytest.raises(ValueError, match="x"):
        c(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="y"):
        c.inv(torch.tensor([[0.0, 1.0, float("nan"), 2.0]]))
    with pytest.raises(ValueError, match="conditioner"):
        SplineCoupling([True, False], torch.nn.Linear(1, 5), bins=4)(torch.zeros(2))  # 11 needed
    with pytest.raises(ValueError, match="context"):
        conditional_spline_coupling(4, 2, [8]).condition(torch.zeros(3))
    for name, kwargs in (
        ("num_layers", dict(num_layers=0)),
        ("permutation", dict(permutation="x")),
    ):
        with pytest.raises(ValueError, match=name):
            nsf(2, **kwargs)
    with pytest.raises(ValueError, match="input_dim"):
        nsf(1)


# ----------------------------------------------------------------------------- models
def test_conditional_coupling_binds_its_context():
    module = conditional_spline_coupling(3, 2, [8], bins=4)
    assert isinstance(module, ConditionalSplineCoupling)
    perturb_all(module, 0, scale=0.5)
    live_units(module)
    x = torch.randn(5, 3)
    t1, t2 = module.condition(torch.zeros(2)), module.condition(torch.ones(2))
    assert isinstance(t1, SplineCoupling)
    assert not torch.allclose(t1(x), t2(x))
    assert torch.allclose(t1.inv(t1(x)), x, atol=1e-5)


def test_nsf_2d_transforms_both_coordinates():
    # with the reverse permutation both coordinates must be transformed (an inverted mask
    # on top of the reversal would transform the same coordinate twice, the other never)
    flow = nsf(2, num_layers=2, hidden_dims=[8], actnorm=False)
    perturb_all(flow, 1, scale=1.0)
    live_units(flow)
    d = flow()

    def to_base(v):
        for t in reversed(d.transforms):
            v = t.inv(v)
        return v

    full = torch.autograd.functional.jacobian(to_base, torch.tensor([0.3, -0.2]))
    assert bool((full.abs() > 1e-6).all()), full  # every output depends on every input


def test_nsf_learns_two_moons():
    torch.manual_seed(0)
    p = TwoMoons()
    data, test = p.sample((2048,)), p.sample((2048,))
    true_nll = -p.log_prob(test).mean().item()
    flow = nsf(2, num_layers=4, hidden_dims=[32, 32], seed=0)
    with torch.no_grad():
        before = -flow().log_prob(test).mean().item()  # ActNorm fits a Gaussian here
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = data[torch.randint(0, 2048, (256,), generator=g)]
        loss = -flow().log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = -flow().log_prob(test).mean().item()
    # measured over 4 seeds: 2.01 -> 1.11-1.12 nats, 0.09-0.10 above the true 1.02
    assert before - after > 0.75, (before, after)
    assert after - true_nll < 0.2, (after, true_nll)


def test_nsf_in_pyro_sample_and_transformed_distribution():
    flow = nsf(2, num_layers=2, hidden_dims=[8], seed=0)
    perturb_all(flow, 2, scale=0.5)
    x = torch.randn(7, 2)

    def model(obs):
        with pyro.plate("data", obs.shape[0]):
            return pyro.sample("x", flow(), obs=obs)

    tr = pyro.poutine.trace(model).get_trace(x)
    tr.compute_log_prob()
    assert torch.allclose(tr.nodes["x"]["log_prob"], flow().log_prob(x))
    # composition: an extra affine map on the data side of the flow's distribution
    d = flow()
    outer = dist.TransformedDistribution(d, [dist.transforms.AffineTransform(1.0, 2.0)])
    s = outer.rsample((5,))
    assert s.shape == (5, 2)
    expected = d.log_prob((s - 1.0) / 2.0) - 2 * math.log(2.0)
    assert torch.allclose(outer.log_prob(s), expected, atol=1e-5)
    cond = nsf(2, num_layers=2, hidden_dims=[8], context_dim=3)
    assert cond(torch.randn(4, 3)).log_prob(torch.randn(4, 2)).shape == (4,)
