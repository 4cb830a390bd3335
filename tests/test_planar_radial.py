"""Family-specific properties of the planar and radial flows (beyond the generic suite)."""

from __future__ import annotations

import math
import sys

import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.models import (
    Flow,
    conditional_planar_flow,
    conditional_radial_flow,
    planar_flow,
    radial_flow,
)
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    ConditionalPlanar,
    ConditionalRadial,
    ConditionedPlanar,
    ConditionedRadial,
    Planar,
    Radial,
    conditional_planar,
    conditional_radial,
    planar,
    radial,
)
from tests.cases import examples

# ``pyro_lgm.transforms.planar`` is also the name of the helper function, so take the modules
# from sys.modules (as Pyro's own ``transforms.planar`` module / function pair).
P = sys.modules["pyro_lgm.transforms.planar"]
R = sys.modules["pyro_lgm.transforms.radial"]

F64 = torch.float64


def softplus_inv(y: float) -> float:
    return math.log(math.expm1(y))


def near_boundary_params(d: int, margin: float, seed: int, dtype=F64):
    """Raw (b, u, w) with w . u_hat = -1 + margin and unit-scale u, w."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=F64) / d**0.5
    u = torch.randn(d, generator=g, dtype=F64) / d**0.5
    w2 = w @ w
    u = u - (u @ w) / w2 * w + softplus_inv(margin) * w / w2
    b = torch.randn((), generator=g, dtype=F64)
    return b.to(dtype), u.to(dtype), w.to(dtype)


def bisect_reference(kappa: torch.Tensor, c: torch.Tensor, iters: int = 2000) -> torch.Tensor:
    """A plain bisection for a + c tanh(a) = kappa (independent of the Newton solver)."""
    lo = kappa - c.abs() - 1.0
    hi = kappa + c.abs() + 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        g = mid + c * torch.tanh(mid) - kappa
        lo = torch.where(g < 0, mid, lo)
        hi = torch.where(g < 0, hi, mid)
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------
# Constraints
# ------------------------------------------------------------------------------------------
@settings(max_examples=examples(40), deadline=None)
@given(
    d=st.integers(1, 16),
    u_scale=st.sampled_from([1e-3, 1.0, 30.0]),
    w_scale=st.sampled_from([1e-3, 1.0, 30.0]),
    seed=lst.seeds(),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_planar_constraint_w_dot_u_hat_at_least_minus_one(d, u_scale, w_scale, seed, sign):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=F64) * w_scale
    u = torch.randn(d, generator=g, dtype=F64) * u_scale
    u = u + sign * 50.0 * w / (w @ w)  # push w.u far into both tails too
    u_hat, c = P.planar_constrain(u, w)
    assert bool(c >= -1)
    wu = w @ u
    dot = w @ u_hat
    # mathematically w.u_hat = softplus(w.u) - 1 >= -1; numerically up to rounding of the sum
    rounding = 16 * torch.finfo(F64).eps * (1 + wu.abs() + (w.abs() @ u.abs()))
    assert float(dot) >= -1 - float(rounding)
    expected = torch.nn.functional.softplus(wu) - 1
    assert abs(float(dot - expected)) <= float(rounding)
    # the component of u orthogonal to w is untouched
    perp = lambda v: v - (v @ w) / (w @ w) * w
    assert torch.allclose(perp(u_hat), perp(u), atol=float(rounding) * (1 + u.abs().max()))


@settings(max_examples=examples(30), deadline=None)
@given(
    alpha_prime=st.floats(-30, 30),
    beta_prime=st.floats(-60, 60),
    dtype=st.sampled_from([torch.float32, F64]),
)
def test_radial_constraint_beta_at_least_minus_alpha(alpha_prime, beta_prime, dtype):
    alpha, beta, apb = R.radial_constrain(
        torch.tensor(alpha_prime, dtype=dtype), torch.tensor(beta_prime, dtype=dtype)
    )
    assert bool(alpha > 0)
    assert bool(apb >= 0)
    assert torch.equal(apb, torch.nn.functional.softplus(torch.tensor(beta_prime, dtype=dtype)))
    eps = torch.finfo(dtype).eps
    assert float(beta + alpha) >= -2 * eps * float(alpha)  # beta >= -alpha up to one rounding
    t = ConditionedRadial(
        torch.zeros(2, dtype=dtype),
        torch.tensor(alpha_prime, dtype=dtype),
        torch.tensor(beta_prime, dtype=dtype),
    )
    assert bool(t.beta >= -t.alpha - 2 * eps * t.alpha)


# ------------------------------------------------------------------------------------------
# Planar inverse: accuracy near the boundary, robustness of the solver
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("margin", [1e-1, 1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("d", [1, 5, 64])
def test_planar_inverse_converges_near_boundary_float64(margin, d):
    b, u, w = near_boundary_params(d, margin, seed=d)
    t = ConditionedPlanar(b, u, w, cache_size=0)
    assert abs(float(w @ t.u_hat) - (-1 + margin)) < 1e-12
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, d, generator=g, dtype=F64)
    # put part of the batch where the Jacobian is nearly singular: a = w.x + b ~ 0
    x[:128] -= (((x[:128] @ w) + b) / (w @ w)).unsqueeze(-1) * w
    x[:128] += 1e-3 * torch.randn(128, 1, generator=g, dtype=F64) * w
    y = t(x)
    x_back = t.inv(y.clone())
    # forward direction: f(inv(y)) == y to rounding
    assert (t(x_back) - y).abs().max() < 1e-13
    # the scalar equation is solved to its rounding level
    u_hat, c = P.planar_constrain(u, w)
    a = x_back @ w + b
    kappa = y @ w + b
    assert ((a + c * torch.tanh(a) - kappa).abs() <= 1e-14 * (1 + kappa.abs())).all()
    # inverse direction: the error is bounded by the conditioning 1 / (1 + c sech^2 a)
    gp = 1 + c * (1 - torch.tanh(x @ w + b) ** 2)
    eps = torch.finfo(F64).eps
    bound = 16 * eps * (1 + y.abs().sum(-1)) * u_hat.abs().max() * w.abs().sum() / gp + 8 * eps
    err = (x_back - x).abs().amax(-1)
    assert (err <= bound).all()
    if margin >= 1e-3:
        assert err.max() < 1e-12  # the benchmark's float64 target, unit-scale parameters


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_planar_solve_exact_boundary_and_extremes(dtype):
    # c = -1 exactly (derivative 0 at a = 0: Newton alone fails, bisection must take over),
    # large kappa, c >> 1, and c = 0
    kappa = torch.tensor([0.0, 1e-12, -1e-6, 0.3, -5.0, 80.0, 1e-3, -2.0, 0.7], dtype=dtype)
    c = torch.tensor([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 200.0, 50.0, 0.0], dtype=dtype)
    a = P.planar_solve(kappa, c)
    ref = bisect_reference(kappa.double(), c.double())
    assert torch.isfinite(a).all()
    # compare the residual rather than a, whose conditioning is 1 / g'(a) (infinite at c = -1)
    res = a.double() + c.double() * torch.tanh(a.double()) - kappa.double()
    eps = torch.finfo(dtype).eps
    assert (res.abs() <= 8 * eps * (1 + kappa.double().abs() + c.double().abs())).all()
    well_posed = (1 + c.double() * (1 - torch.tanh(ref) ** 2)) > 1e-2
    assert torch.allclose(a.double()[well_posed], ref[well_posed], atol=16 * eps, rtol=16 * eps)
    # iteration cap is honoured and still returns a point inside the bracket
    a1 = P.planar_solve(kappa, c, max_iter=1)
    assert ((a1 - kappa).abs() <= c.abs() * (1 + 4 * eps) + 4 * eps).all()


@settings(max_examples=examples(25), deadline=None)
@given(
    seed=lst.seeds(),
    log_margin=st.one_of(st.floats(-12, 1), st.just(-float("inf"))),
    kappa_scale=st.sampled_from([1e-9, 1e-3, 1.0, 30.0]),
    dtype=st.sampled_from([torch.float32, F64]),
)
def test_planar_solve_matches_bisection(seed, log_margin, kappa_scale, dtype):
    g = torch.Generator().manual_seed(seed)
    c = torch.full((64,), -1 + 10.0**log_margin, dtype=F64)
    c[32:] = -1 + 10.0 ** (log_margin + 3 * torch.rand(32, generator=g, dtype=F64))
    kappa = kappa_scale * torch.randn(64, generator=g, dtype=F64)
    kappa, c = kappa.to(dtype), c.to(dtype)
    a = P.planar_solve(kappa, c).double()
    k64, c64 = kappa.double(), c.double()
    ref = bisect_reference(k64, c64, iters=300)
    eps = torch.finfo(dtype).eps
    res = a + c64 * torch.tanh(a) - k64
    assert (res.abs() <= 16 * eps * (1 + k64.abs() + c64.abs())).all()
    # where g' = 1 + c sech^2(a) is not tiny the root itself is accurate
    slope = 1 + c64 * (1 - torch.tanh(ref) ** 2)
    err = (a - ref).abs()
    bound = 32 * eps * (ref.abs() + k64.abs()) / slope
    worst = int((err - bound).argmax())
    assert err[worst] <= bound[worst], (float(err[worst]), float(bound[worst]))


@settings(max_examples=examples(10), deadline=None)
@given(d=st.integers(1, 32), seed=lst.seeds(), log_margin=st.floats(-3, -1))
@example(d=1, seed=1230798, log_margin=-1.6875)  # failed the thorough profile (issue 9)
@example(d=17, seed=4818129, log_margin=-2.5)  # idem
def test_planar_float32_inverse_is_at_the_conditioning_floor(d, seed, log_margin):
    r"""In float32 near the boundary the inverse is as accurate as the float32 ``y`` allows.

    Analysis. ``y = t32(x)`` is the float32 forward. Let ``z*`` be the exact inverse of the
    *same* float32 map (the float32 values of ``u_hat``, ``w``, ``b``) at the *same* float32
    ``y``, computed in float64. Then ``|x_back - x| <= |z* - x| + |x_back - z*|``:

    * the floor ``|z* - x|`` is the problem's: the forward's rounding of ``y`` (a few
      ``eps32 |y|``), amplified along ``w`` by the conditioning ``1 / g'(a)``,
      ``g'(a) = 1 + c sech^2(a)``, which near ``c = -1`` is large. No solver does better;
      it is bounded per point by the conditioning bound asserted first below.
    * the solver's own error ``|x_back - z*|``. A float32 solver rounds
      ``kappa = w . y + b`` (about ``eps32 sum_i |w_i y_i|``), ``c = w . u_hat`` and its
      residual (it stops at ``|g| <= 8 eps32 (|a| + |kappa|)``); each moves the root by that
      amount divided by ``g'(a)``, and ``z`` by ``|u_hat| sech^2(a)`` times it: the same
      order as the floor, with a constant set by summation order and residual rounding, so
      no fixed multiple of the floor bounds it. That is why the earlier assertion
      ``max err <= 4 max floor`` failed on fresh seeds (the two examples above: err 9.30e-5
      against a floor of 1.59e-5, and 3.19e-5 against 2.92e-6), and why widening the
      factor would only have moved the next failure.

    The solver was tightened instead (``planar_inverse``): ``kappa``, ``c`` and the root are
    computed in float64, so the only float32 roundings left are ``tanh(a)`` cast to float32
    (half an ulp), the product ``u_hat tanh(a)`` (half an ulp of it) and the subtraction
    ``y - u_hat tanh(a)`` (half an ulp of ``z``): ``|x_back - z*| <= eps32 (|u_hat|_max +
    |z*|/2)`` up to float64 terms. The test allows twice that,
    ``eps32 (2 |u_hat|_max + |z*|_max)`` per point; over 300 random draws the excess over
    the floor used at most 0.40 of it, where the float32 solver used up to 66 times it.
    """
    b, u, w = near_boundary_params(d, 10.0**log_margin, seed, dtype=torch.float32)
    t32 = ConditionedPlanar(b, u, w, cache_size=0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, d, generator=g)
    y = t32(x)
    x_back = t32.inv(y.clone())
    x64 = x.double()
    err = (x_back.double() - x64).abs().amax(-1)
    u_hat, c = P.planar_constrain(u, w)  # the float32 values the forward map used
    w64, b64, y64, u64 = w.double(), b.double(), y.double(), u_hat.double()
    z_star = P.planar_inverse(y64, u64, w64, b64)
    floor = (z_star - x64).abs().amax(-1)
    # 1. the conditioning bound: rounding of the scalar equation divided by its slope
    a = x64 @ w64 + b64
    slope = 1 + c.double() * (1 - torch.tanh(a) ** 2)
    eps32 = torch.finfo(torch.float32).eps
    terms = (y64.abs() @ w64.abs()) + b64.abs() + 2 * a.abs()
    bound = 8 * eps32 * terms * u64.abs().max() / slope + 8 * eps32 * (1 + y64.abs().amax(-1))
    worst = int((err - bound).argmax())
    assert err[worst] <= bound[worst], (worst, float(err[worst]), float(bound[worst]))
    # 2. the solver adds at most a few float32 roundings to the floor, at every point
    solver = eps32 * (2 * u64.abs().max() + z_star.abs().amax(-1))
    worst = int((err - floor - solver).argmax())
    assert err[worst] <= floor[worst] + solver[worst], (
        worst,
        float(err[worst]),
        float(floor[worst]),
        float(solver[worst]),
    )


def test_inverse_works_on_fresh_tensors_not_cache():
    torch.manual_seed(0)
    for t in (Planar(4), Radial(4), Planar(4, cache_size=0), Radial(4, cache_size=0)):
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.5 * torch.randn_like(p))
        x1, x2 = torch.randn(2, 6, 4, dtype=torch.float32)
        y2 = t(x2).detach().clone()  # a different tensor object from anything seen before
        t(x1)
        assert torch.allclose(t.inv(y2), x2, atol=1e-5)
    # a cache_size=1 ConditionedPlanar also solves fresh tensors (it does not only replay
    # the cache); the cached path returns the very tensor it saw
    b, u, w = near_boundary_params(3, 0.1, seed=3)
    t = ConditionedPlanar(b, u, w, cache_size=1)
    x1, x2 = torch.randn(2, 5, 3, dtype=F64)
    y1 = t(x1)
    assert t.inv(y1) is x1
    assert torch.allclose(t.inv(t(x2).clone()), x2, atol=1e-12)


@pytest.mark.parametrize("make", [planar, radial])
def test_inverse_is_differentiable_with_implicit_gradient(make):
    torch.manual_seed(1)
    t = make(3).double()
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.3 * torch.randn_like(p))
    y = torch.randn(4, 3, dtype=F64, requires_grad=True)
    params = tuple(t.parameters())
    assert torch.autograd.gradcheck(lambda yy, *ps: t.inv(yy), (y, *params))
    # the gradient of the inverse is the inverse Jacobian
    yy = y.detach()[0]
    j_inv = torch.autograd.functional.jacobian(lambda v: t.inv(v), yy)
    j_fwd = torch.autograd.functional.jacobian(lambda v: t(v), t.inv(yy).detach())
    assert torch.allclose(j_inv @ j_fwd, torch.eye(3, dtype=F64), atol=1e-10)


# ------------------------------------------------------------------------------------------
# Radial inverse in closed form
# ------------------------------------------------------------------------------------------
def radial_r_reference(rho, alpha, alpha_plus_beta, iters=200):
    """Bisection for r >= 0 with r (1 + beta / (alpha + r)) = rho, the factor written as
    (alpha + beta + r) / (alpha + r) so that it has no cancellation when beta ~ -alpha."""
    lo = torch.zeros_like(rho)
    hi = rho + alpha.abs() + alpha_plus_beta.abs() + 1
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        val = mid * (alpha_plus_beta + mid) / (alpha + mid) - rho
        lo = torch.where(val < 0, mid, lo)
        hi = torch.where(val < 0, hi, mid)
    return 0.5 * (lo + hi)


@settings(max_examples=examples(20), deadline=None)
@given(
    d=st.integers(1, 16),
    seed=lst.seeds(),
    alpha_prime=st.floats(-5, 5),
    beta_prime=st.one_of(st.floats(-30, 5), st.just(-700.0)),
    centred=st.booleans(),
)
def test_radial_inverse_closed_form_matches(d, seed, alpha_prime, beta_prime, centred):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.zeros(d, dtype=F64) if centred else torch.randn(d, generator=g, dtype=F64)
    ap, bp = torch.tensor(alpha_prime, dtype=F64), torch.tensor(beta_prime, dtype=F64)
    alpha, beta, apb = R.radial_constrain(ap, bp)
    # radii from 0 to 1e3: both branches of the stable quadratic formula (B >= 0 and B < 0)
    scales = torch.tensor([0.0, 1e-8, 1e-3, 0.1, 1.0, 10.0, 1e3], dtype=F64)
    y = z0 + scales.unsqueeze(-1) * torch.randn(7, d, generator=g, dtype=F64)
    z = R.radial_inverse(y, z0, alpha, apb)
    rho = (y - z0).norm(dim=-1)
    r_ref = radial_r_reference(rho, alpha, apb)
    # z - z0 = (y - z0) (alpha + r) / (alpha + beta + r) with the reference root r
    z_ref = z0 + (y - z0) * ((alpha + r_ref) / (apb + r_ref)).unsqueeze(-1)
    eps = torch.finfo(F64).eps
    assert torch.isfinite(z).all()
    assert torch.allclose(z, z_ref, rtol=1e-12, atol=4 * eps * float(z0.abs().max() + 1e-300))
    if centred:  # no cancellation in z - z0: the radius itself to 1e-12 relative
        r = z.norm(dim=-1)
        assert torch.allclose(r, r_ref, rtol=1e-12, atol=1e-50)  # bisection stops near 1e-60
    assert torch.allclose(R.radial_forward(z, z0, alpha, beta), y, rtol=1e-12, atol=1e-12)
    assert torch.equal(z[0], z0)  # y == z0 maps back to z0 exactly


def test_radial_exact_boundary_is_still_invertible_away_from_centre():
    # beta = -alpha exactly (softplus(beta') underflows to 0): the centre collapses, yet every
    # other point has a unique preimage
    t = ConditionedRadial(
        torch.zeros(3, dtype=F64),
        torch.tensor(0.0, dtype=F64),
        torch.tensor(-800.0, dtype=F64),
        cache_size=0,
    )
    assert float(t.alpha + t.beta) == 0.0
    x = torch.randn(50, 3, dtype=F64)
    assert torch.allclose(t.inv(t(x).clone()), x, atol=1e-12)
    assert torch.isfinite(t.log_abs_det_jacobian(x, t(x))).all()


# ------------------------------------------------------------------------------------------
# Flows: Pyro integration, change of variables, conditional broadcasting
# ------------------------------------------------------------------------------------------
def _randomize(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("builder", [planar_flow, radial_flow])
def test_flow_log_prob_matches_change_of_variables_and_pyro_sample(builder):
    torch.manual_seed(2)
    flow = builder(3, num_layers=4).double()
    _randomize(flow)
    assert isinstance(flow, Flow) and len(flow.layers) == 4
    x = torch.randn(10, 3, dtype=F64)
    # manual: z_K = x, z_{k-1} = f_k^{-1}(z_k); log p = log N(z_0) - sum log|det J_k(z_{k-1})|
    z = x
    log_det = torch.zeros(10, dtype=F64)
    for t in reversed(flow.transforms):
        z_prev = t.inv(z)
        log_det = log_det + t.log_abs_det_jacobian(z_prev, z)
        z = z_prev
    manual = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) - log_det
    assert torch.allclose(flow().log_prob(x), manual, atol=1e-12)

    def model(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", flow(), obs=data)

    tr = poutine.trace(model).get_trace(x)
    assert torch.allclose(tr.log_prob_sum(), manual.sum(), atol=1e-10)
    s = flow().sample((6,))
    assert s.shape == (6, 3)
    # log_prob of samples (no cache: computed through the exact inverses) is finite
    assert torch.isfinite(flow().log_prob(s.clone())).all()


@pytest.mark.parametrize("builder", [conditional_planar_flow, conditional_radial_flow])
def test_conditional_flow_context_batches_broadcast(builder):
    torch.manual_seed(3)
    flow = builder(2, context_dim=3, num_layers=3, hidden_dims=[8]).double()
    _randomize(flow)
    context = torch.randn(4, 1, 3, dtype=F64)
    x = torch.randn(5, 2, dtype=F64)
    lp = flow(context).log_prob(x)
    assert lp.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            single = flow(context[i, 0]).log_prob(x[j])
            assert torch.allclose(lp[i, j], single, atol=1e-12)
    d = flow(torch.randn(6, 3, dtype=F64))
    assert d.batch_shape == (6,) and d.event_shape == (2,)
    assert d.sample().shape == (6, 2)
    assert d.sample((2,)).shape == (2, 6, 2)
    # conditioned transforms carry the context's batch shape
    for layer in flow.layers:
        ct = layer.condition(context)
        assert isinstance(ct, (ConditionedPlanar, ConditionedRadial))
        assert ct.forward_shape((5, 2)) == (4, 5, 2)
    with pytest.raises(ValueError, match="context"):
        flow()
    # training signal reaches every network parameter through the exact inverses
    flow(context).log_prob(x).sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(bool(p.grad.abs().sum() > 0) for p in flow.parameters())


@pytest.mark.parametrize(
    "module", [Planar(3), Radial(3), conditional_planar(3, 2), conditional_radial(3, 2)]
)
def test_transform_metadata(module):
    if isinstance(module, (ConditionalPlanar, ConditionalRadial)):
        assert module.context_dim == 2
        module = module.condition(torch.zeros(7, 2))
        assert module.forward_shape((3,)) == (7, 3)
    assert module.domain.event_dim == 1 and module.codomain.event_dim == 1
    assert module.bijective and module.sign == 1
    assert module.inv.inv is module


# ------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Planar(3), lambda: Radial(3)])
def test_bad_inputs_name_the_argument(make):
    t = make()
    with pytest.raises(ValueError, match=r"x: .*last dimension 3"):
        t(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"y: .*last dimension 3"):
        t.inv(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"x: .*\(\.\.\., 3\)"):
        t(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x: expected finite"):
        t(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="y: expected finite"):
        t.inv(torch.tensor([[0.0, float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="x: expected dtype"):
        t(torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="x: expected dtype"):
        t(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected a torch.Tensor"):
        t([0.0, 0.0, 0.0])


@pytest.mark.parametrize("helper", [conditional_planar, conditional_radial])
def test_bad_context_names_the_argument(helper):
    t = helper(3, 2, hidden_dims=[4])
    with pytest.raises(ValueError, match=r"context: .*last dimension 2 \(context_dim\)"):
        t.condition(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="context: expected finite"):
        t.condition(torch.tensor([float("nan"), 0.0]))
    with pytest.raises(ValueError, match="context: expected dtype"):
        t.condition(torch.zeros(2, dtype=F64))
    ct = t.condition(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x: batch shape"):
        ct(torch.zeros(3, 3))  # (3,) does not broadcast with the context batch (4,)


def test_bad_hyper_parameters_name_the_argument():
    with pytest.raises(ValueError, match="input_dim"):
        planar(0)
    with pytest.raises(ValueError, match="input_dim"):
        Radial(2.5)
    with pytest.raises(ValueError, match="context_dim"):
        conditional_planar(2, 0)
    with pytest.raises(ValueError, match="hidden_dims"):
        conditional_radial(2, 2, hidden_dims=[4, 0])
    with pytest.raises(ValueError, match="num_layers"):
        planar_flow(2, num_layers=0)
    with pytest.raises(ValueError, match="max_iter"):
        Planar(2, max_iter=0)
    with pytest.raises(ValueError, match="u: expected the last dimension"):
        ConditionedPlanar(torch.zeros(()), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="bias: batch shapes"):
        ConditionedPlanar(torch.zeros(4), torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x0"):
        ConditionedRadial(torch.zeros(()), torch.zeros(()), torch.zeros(()))
    with pytest.raises(ValueError, match="beta_prime: expected the dtype"):
        ConditionedRadial(torch.zeros(2), torch.zeros(()), torch.zeros((), dtype=F64))
    with pytest.raises(ValueError, match="net"):
        ConditionalPlanar(torch.nn.Linear(2, 7), 3)


BAD = {"NaN": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _conditioned(kind: str, cache_size: int = 0):
    g = torch.Generator().manual_seed(0)
    if kind == "planar":
        b, u, w = near_boundary_params(3, 0.3, seed=1)
        return ConditionedPlanar(b.float(), u.float(), w.float(), cache_size=cache_size)
    x0 = torch.randn(3, generator=g)
    return ConditionedRadial(x0, torch.tensor(0.2), torch.tensor(-0.1), cache_size=cache_size)


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize(
    "make",
    [
        lambda: Planar(3),
        lambda: Radial(3),
        lambda: _conditioned("planar"),
        lambda: _conditioned("radial"),
    ],
    ids=["Planar", "Radial", "ConditionedPlanar", "ConditionedRadial"],
)
def test_non_finite_input_names_the_argument_and_the_kind(make, kind):
    t = make()
    bad = torch.randn(4, 3)
    bad[1, 2] = BAD[kind]
    with pytest.raises(NonFiniteValueError, match=rf"^x: expected finite values, got {kind}$"):
        t(bad)
    with pytest.raises(NonFiniteValueError, match=rf"^y: expected finite values, got {kind}$"):
        t.inv(bad)
    with pytest.raises(NonFiniteValueError, match=rf"^x: expected finite values, got {kind}$"):
        t.log_abs_det_jacobian(bad, torch.randn(4, 3))


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("helper", [conditional_planar, conditional_radial])
def test_non_finite_context_names_the_context_and_the_kind(helper, kind):
    with pytest.raises(
        NonFiniteValueError, match=rf"^context: expected finite values, got {kind}$"
    ):
        helper(3, 2, hidden_dims=[4]).condition(torch.tensor([[0.0, BAD[kind]]]))


def _params_with(cls, name: str, value: float):
    if cls is ConditionedPlanar:
        params = dict(zip(("bias", "u", "w"), near_boundary_params(3, 0.3, seed=2)))
    else:
        params = dict(x0=torch.randn(3), alpha_prime=torch.tensor(0.1), beta_prime=torch.zeros(()))
    p = params[name].clone()
    p.reshape(-1)[-1] = value
    params[name] = p
    return params


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize(
    "cls, name",
    [
        (ConditionedPlanar, "bias"),
        (ConditionedPlanar, "u"),
        (ConditionedPlanar, "w"),
        (ConditionedRadial, "x0"),
        (ConditionedRadial, "alpha_prime"),
        (ConditionedRadial, "beta_prime"),
    ],
)
def test_conditioned_transforms_reject_non_finite_parameters(cls, name, kind):
    params = _params_with(cls, name, BAD[kind])
    with pytest.raises(NonFiniteValueError, match=rf"^{name}: expected finite values, got {kind}$"):
        cls(**params)
    with pyro.validation_enabled(False):  # the value checks follow the global switch
        cls(**params)


# ------------------------------------------------------------------------------------------
# Validated caches (tests/test_caches.py's rules, for planar and radial)
# ------------------------------------------------------------------------------------------
def _fresh(t):
    """A never-called copy of t's map (no cache), on the same parameter values."""
    if isinstance(t, (Planar, Radial)):
        ref = type(t)(t.input_dim).to(next(t.parameters()).dtype)
        ref.load_state_dict(t.state_dict())
        return ref
    return type(t)(*(p.detach().clone() for p in t._raw_params()), cache_size=0)


@pytest.mark.parametrize("opt", ["adam_fused", "adam", "sgd_fused"])
@pytest.mark.parametrize("cls", [Planar, Radial])
def test_cache_is_fresh_after_fused_optimizer_steps_on_the_same_input(cls, opt):
    torch.manual_seed(0)
    t = cls(3, cache_size=1).double()
    _randomize(t)
    make_opt = {
        "adam_fused": lambda p: torch.optim.Adam(p, lr=0.05, fused=True),
        "adam": lambda p: torch.optim.Adam(p, lr=0.05, foreach=False),
        "sgd_fused": lambda p: torch.optim.SGD(p, lr=0.05, fused=True),
    }[opt]
    optimizer = make_opt(list(t.parameters()))
    x = torch.randn(16, 3, dtype=F64)
    for _ in range(3):
        optimizer.zero_grad()
        y = t(x)  # the same x tensor every step
        loss = -(t.log_abs_det_jacobian(x, y) - 0.5 * (y * y).sum(-1)).mean()
        loss.backward()
        optimizer.step()  # fused kernels do not bump Tensor._version on the CPU
        ref = _fresh(t)
        with torch.no_grad():
            torch.testing.assert_close(t(x), ref(x), rtol=0, atol=0)
            # the pair cache's reverse lookup (this very y) is void too: inv(y) is recomputed
            torch.testing.assert_close(t.inv(y), ref.inv(y.detach().clone()))
    # while nothing changes, the pair cache still answers the reverse lookup
    with torch.no_grad():
        y = t(x)
        assert t.inv(y) is x


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_conditioned_cache_sees_in_place_edits_of_its_parameters(kind):
    t = _conditioned(kind, cache_size=1)
    x = torch.randn(8, 3)
    y = t(x)
    assert t.inv(y) is x  # served by the pair cache
    with torch.no_grad():
        for p in t._raw_params():
            p.add_(0.25)
    ref = _fresh(t)
    torch.testing.assert_close(t.inv(y), ref.inv(y.clone()), rtol=0, atol=0)  # not x
    torch.testing.assert_close(t(x), ref(x), rtol=0, atol=0)
    y2 = t(x)
    assert t.inv(y2) is x  # the new pair is served again


def test_validation_can_be_switched_off_for_speed():
    t = Planar(2)
    x = torch.tensor([[float("nan"), 0.0]])
    pyro.enable_validation(False)
    try:
        assert torch.isnan(t(x)).any()  # no check, no error
    finally:
        pyro.enable_validation(True)
    with pytest.raises(ValueError, match="x: expected finite"):
        t(x)


# ------------------------------------------------------------------------------------------
# Defaults (Pyro's) and the per-call fast paths
# ------------------------------------------------------------------------------------------
def test_defaults_follow_pyro():
    """``cache_size=1`` (Pyro's Planar / Radial) and a ``[10 D, 10 D]`` hypernetwork, the
    size of Pyro's ``conditional_planar`` / ``conditional_radial`` for the same D and C."""
    import pyro.distributions.transforms as T

    assert Planar(3)._cache_size == 1 and Radial(3)._cache_size == 1
    assert planar(3)._cache_size == 1 and radial(3)._cache_size == 1
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    for ours, theirs in ((conditional_planar, T.conditional_planar),
                         (conditional_radial, T.conditional_radial)):  # fmt: skip
        t = ours(32, 256)
        assert t.nn.hidden_dims == (320, 320)
        assert count(t) == count(theirs(32, 256))
    assert conditional_planar_flow(5, 7).layers[0].nn.hidden_dims == (50, 50)


@pytest.mark.parametrize("helper", [conditional_planar, conditional_radial])
def test_linear_read_out_of_the_context(helper):
    """``hidden_dims=[]``: the parameters are an affine map of the context (Rezende &
    Mohamed's amortization); the layer works and depends on the context."""
    torch.manual_seed(0)
    t = helper(3, 4, hidden_dims=[]).double()
    (linear,) = t.nn.layers
    assert isinstance(linear, torch.nn.Linear) and linear.in_features == 4
    with torch.no_grad():
        linear.weight.normal_(0.0, 0.3)
    h = torch.randn(5, 4, dtype=F64)
    x = torch.randn(5, 3, dtype=F64)
    ct = t.condition(h)
    torch.testing.assert_close(ct.inv(ct(x).clone()), x)
    assert not torch.allclose(ct(x), t.condition(h + 1)(x))
    assert sum(p.numel() for p in t.parameters()) == 4 * t.nn.out_dim + t.nn.out_dim


def _pair(kind: str, module: bool):
    torch.manual_seed(3)
    if module:
        t = (Planar(3) if kind == "planar" else Radial(3)).double()
        _randomize(t)
        return t
    t = _conditioned(kind, cache_size=1)
    return type(t)(*(p.double() for p in t._raw_params()))


def _fresh_ldj(t, x):
    if isinstance(t, (Planar, ConditionedPlanar)):
        _, w, b, c = t._constrained()
        return P.planar_log_abs_det_jacobian(x, w, b, c)
    z0, alpha, _, apb = t._constrained()
    return R.radial_log_abs_det_jacobian(x, z0, alpha, apb)


@pytest.mark.parametrize("module", [True, False], ids=["module", "conditioned"])
@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_log_det_computed_with_the_forward_map(kind, module):
    """The forward pass remembers its log-det; ``log_abs_det_jacobian`` of that very pair
    returns it (the value of the stand-alone formula, bitwise), any other pair or a changed
    parameter is recomputed."""
    t = _pair(kind, module)
    x1, x2 = torch.randn(2, 6, 3, dtype=F64)
    y1 = t(x1)
    assert torch.equal(t.log_abs_det_jacobian(x1, y1), _fresh_ldj(t, x1))
    assert t.log_abs_det_jacobian(x1, y1) is t.log_abs_det_jacobian(x1, y1)  # remembered
    y2 = t(x2)
    torch.testing.assert_close(t.log_abs_det_jacobian(x1, y1), _fresh_ldj(t, x1))
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y2), _fresh_ldj(t, x2))
    with torch.no_grad():
        for p in t.parameters() if module else t._raw_params():
            p.mul_(1.5)
    changed = t.log_abs_det_jacobian(x2, y2)
    torch.testing.assert_close(changed, _fresh_ldj(t, x2), rtol=0, atol=0)
    assert not torch.allclose(changed, t.log_abs_det_jacobian(x1, y1))


@pytest.mark.parametrize("cls, name", [(Planar, "u"), (Radial, "x0")])
def test_parameters_read_through_parametrize_and_functional_call(cls, name):
    """The layers read their parameters from ``_parameters`` (fast) unless a parameter was
    moved out of it, as ``torch.nn.utils.parametrize`` does; ``torch.func.functional_call``
    swaps them in place."""
    from torch.func import functional_call
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    t, ref = cls(3).double(), cls(3).double()
    _randomize(ref)
    x = torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(functional_call(t, dict(ref.named_parameters()), (x,)), ref(x))

    class Double(torch.nn.Module):
        def forward(self, p: torch.Tensor) -> torch.Tensor:
            return 2 * p

    parametrize.register_parametrization(ref, name, Double())
    plain = type(ref)(3).double()
    state = {k: v for k, v in ref.named_parameters() if "parametrizations" not in k}
    plain.load_state_dict({**state, name: 2 * getattr(ref.parametrizations, name).original})
    x2 = torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(ref(x2), plain(x2.clone()))
    torch.testing.assert_close(ref.inv(ref(x2).clone()), x2)


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize(
    "helper, slot, name",
    [
        (conditional_planar, 0, "bias"),
        (conditional_planar, 2, "u"),
        (conditional_planar, -1, "w"),
        (conditional_radial, 0, "x0"),
        (conditional_radial, -2, "alpha_prime"),
        (conditional_radial, -1, "beta_prime"),
    ],
)
def test_non_finite_network_output_names_the_parameter(helper, slot, name, kind):
    """``condition`` checks the network's whole output once; when that fails, the error
    names the parameter as the constructor's own checks do."""
    t = helper(3, 2, hidden_dims=[])
    with torch.no_grad():
        t.nn.layers[-1].bias[slot] = BAD[kind]
    with pytest.raises(NonFiniteValueError, match=rf"^{name}: expected finite values, got {kind}$"):
        t.condition(torch.zeros(4, 2))
    with pyro.validation_enabled(False):
        t.condition(torch.zeros(4, 2))


# ------------------------------------------------------------------------------------------
# Training and serialization
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder", [planar_flow, radial_flow])
def test_short_fit_lowers_nll(builder):
    torch.manual_seed(4)
    mean = torch.tensor([2.0, -1.0])
    chol = torch.tensor([[1.0, 0.0], [0.6, 0.5]])
    target = torch.distributions.MultivariateNormal(mean, scale_tril=chol)
    data = target.sample((256,))
    flow = builder(2, num_layers=4)

    def nll():
        return -flow().log_prob(data).mean()

    with torch.no_grad():
        before = float(nll())
    opt = torch.optim.Adam(flow.parameters(), lr=3e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = nll()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(nll())
    best = float(-target.log_prob(data).mean())  # the data's own NLL: the floor
    assert math.isfinite(after)
    # at least 75% of the gap to the true density is closed
    assert after < best + 0.25 * (before - best), (before, after, best)


@pytest.mark.parametrize(
    "builder, kwargs",
    [
        (planar_flow, {}),
        (radial_flow, {}),
        (conditional_planar_flow, {"context_dim": 2}),
        (conditional_radial_flow, {"context_dim": 2}),
    ],
)
def test_state_dict_round_trip(builder, kwargs):
    torch.manual_seed(5)
    flow = builder(3, num_layers=3, **kwargs)
    _randomize(flow)
    other = builder(3, num_layers=3, **kwargs)
    x = torch.randn(8, 3)
    ctx = torch.randn(8, 2) if kwargs else None
    assert not torch.allclose(flow(ctx).log_prob(x), other(ctx).log_prob(x))
    other.load_state_dict(flow.state_dict())
    assert torch.equal(flow(ctx).log_prob(x), other(ctx).log_prob(x))


def test_new_flows_start_near_but_not_at_identity():
    torch.manual_seed(6)
    x = torch.randn(256, 4)
    for flow, ctx in (
        (planar_flow(4, num_layers=4), None),
        (radial_flow(4, num_layers=4), None),
        (conditional_planar_flow(4, 2, num_layers=4), torch.randn(256, 2)),
        (conditional_radial_flow(4, 2, num_layers=4), torch.randn(256, 2)),
    ):
        d = flow(ctx)
        std = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
        gap = (d.log_prob(x) - std).abs()
        assert gap.max() > 0  # not exactly the identity
        assert gap.mean() < 0.5  # but close to the standard-normal base
