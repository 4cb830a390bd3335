"""Affine autoregressive transforms and the MAF / IAF flows built from them."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_lgm.models import Flow, conditional_planar_flow, iaf, maf, realnvp
from pyro_lgm.nn import MADE
from pyro_lgm.testing import assert_autoregressive
from pyro_lgm.transforms import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    affine_autoregressive,
    conditional_affine_autoregressive,
)
from tests.cases import examples
from tests.cases.autoregressive import perturb


def _normal_log_prob(u: torch.Tensor) -> torch.Tensor:
    return -0.5 * (u**2).sum(-1) - 0.5 * u.shape[-1] * math.log(2 * math.pi)


def _manual_forward(t: AffineAutoregressive, x: torch.Tensor, context=None):
    """y and log|det J| of one layer, recomputed from the MADE's plain masked path."""
    out = t.made.forward_reference(x, context)
    b = t.log_scale_bound
    log_scale = b * torch.tanh(out[..., 1] / b)
    return x * log_scale.exp() + out[..., 0], log_scale.sum(-1)


@settings(max_examples=examples(10), deadline=None)
@given(
    d=st.integers(1, 10),
    width=st.integers(1, 24),
    order=st.sampled_from(["natural", "reversed", "random"]),
    skip=st.booleans(),
    context_dim=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_triangular_jacobian_and_exact_sequential_inverse(d, width, order, skip, context_dim, seed):
    torch.manual_seed(seed)
    if context_dim:
        ct = conditional_affine_autoregressive(
            d, context_dim, [width], order=order, skip_connections=skip
        ).double()
        perturb(ct.made)
        t = ct.condition(torch.randn(context_dim, dtype=torch.float64))
    else:
        t = affine_autoregressive(d, [width], order=order, skip_connections=skip).double()
        perturb(t.made)
    x = torch.randn(5, d, dtype=torch.float64)
    assert_autoregressive(t, x, order=t.made.order, include_self=True)
    # the diagonal is the scale: y_i depends on x_i
    xg = x.clone().requires_grad_(True)
    y = t(xg)
    for i in range(d):
        (g,) = torch.autograd.grad(y[:, i].sum(), xg, retain_graph=True)
        assert torch.all(g[:, i] > 0)
    # sequential inverse, exact on a fresh tensor (no cache), within the structural bound
    y = t(x).detach().clone()
    x_rec = t.inv(y)
    torch.testing.assert_close(x_rec, x, atol=1e-10, rtol=1e-10)
    assert 1 <= t.last_num_passes <= t.num_passes() <= d
    # the log-det of the forward pass equals the manual one
    y_man, ld_man = _manual_forward(t, x, t.context)
    torch.testing.assert_close(t(x), y_man)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, t(x)), ld_man)


def test_inverse_pass_count_and_early_exit():
    torch.manual_seed(0)
    d = 7
    # identity at init: the second pass changes nothing, the loop stops
    t = affine_autoregressive(d, [20]).double()
    y = torch.randn(4, d, dtype=torch.float64)
    torch.testing.assert_close(t.inv(y), y)
    assert t.num_passes() == d and t.last_num_passes == 2
    # zero output weights but non-zero biases: no dependency on x either
    with torch.no_grad():
        t.made.output_layer.bias.normal_()
    x = t.inv(y.clone())
    torch.testing.assert_close(t(x), y, atol=1e-12, rtol=0)
    assert t.last_num_passes == 2
    # generic weights and full connectivity: D passes, exact
    perturb(t.made)
    x = t.inv(y.clone())
    torch.testing.assert_close(t(x), y, atol=1e-10, rtol=1e-10)
    assert t.last_num_passes == d
    # one hidden unit: at most two dependency levels, so at most 3 passes whatever D
    t1 = affine_autoregressive(d, [1]).double()
    perturb(t1.made)
    assert t1.num_passes() == 2
    x = t1.inv(y.clone())
    torch.testing.assert_close(t1(x), y, atol=1e-12, rtol=1e-12)
    assert t1.last_num_passes <= 2


def test_inverse_on_fast_path():
    torch.manual_seed(1)
    t = affine_autoregressive(140, [280], order="reversed").double()
    perturb(t.made, scale=0.3)
    assert t.made._large_enough()
    x = torch.randn(3, 140, dtype=torch.float64)
    y = t(x).detach().clone()
    torch.testing.assert_close(t.inv(y), x, atol=1e-9, rtol=1e-9)
    # small weights: the iteration contracts and reaches a floating-point fixed point long
    # before the structural bound of D passes
    assert t.num_passes() == 140 and t.last_num_passes < 140
    torch.testing.assert_close(t(t.inv(y)), y, atol=1e-12, rtol=1e-12)


def test_cache_is_not_stale_after_parameter_update():
    torch.manual_seed(0)
    t = affine_autoregressive(3, [8])
    x = torch.randn(5, 3)
    y0 = t(x)
    assert t.inv(y0) is x  # the reverse lookup is served from the cache
    # a second call in the same direction recomputes (training loops reuse their data)
    y_again = t(x)
    assert y_again is not y0 and torch.equal(y_again, y0)
    with torch.no_grad():
        t.made.output_layer.bias.add_(1.0)
    y1 = t(x)
    assert y1 is not y0
    torch.testing.assert_close(y1, _manual_forward(t, x)[0])
    ld = t.log_abs_det_jacobian(x, y1)
    torch.testing.assert_close(ld, _manual_forward(t, x)[1])


def test_iaf_log_prob_of_rsample_uses_cache(monkeypatch):
    torch.manual_seed(0)
    flow = iaf(4, [12], num_layers=3)
    perturb_all(flow)
    calls = []
    monkeypatch.setattr(AffineAutoregressive, "_inverse", lambda self, y: calls.append(1) or 1 / 0)
    d = flow()
    x = d.rsample((6,))
    lp = d.log_prob(x)  # served by the cache: no inversion
    assert not calls and lp.shape == (6,)
    monkeypatch.undo()
    # the same value on a fresh tensor goes through the sequential inverse
    torch.testing.assert_close(flow().log_prob(x.detach().clone()), lp.detach())


def test_log_prob_of_no_grad_sample_has_correct_gradient():
    torch.manual_seed(0)
    flow = iaf(3, [10], num_layers=2).double()
    perturb_all(flow)
    d = flow()
    x = d.sample((5,))  # computed under no_grad: not reused when gradients are needed
    lp = d.log_prob(x).sum()
    params = list(flow.parameters())
    g = torch.autograd.grad(lp, params, allow_unused=True)
    lp_ref = flow().log_prob(x.clone()).sum()
    g_ref = torch.autograd.grad(lp_ref, params, allow_unused=True)
    for a, b in zip(g, g_ref):
        if b is None:
            assert a is None or torch.all(a == 0)
        else:
            torch.testing.assert_close(a, b)


def perturb_all(flow: Flow, scale: float = 0.5) -> None:
    for m in flow.modules():
        if isinstance(m, MADE):
            perturb(m, scale)


@pytest.mark.parametrize("builder", [maf, iaf])
@pytest.mark.parametrize("context_dim", [0, 2])
def test_flow_log_prob_matches_change_of_variables(builder, context_dim):
    torch.manual_seed(0)
    flow = builder(4, [16], num_layers=3, context_dim=context_dim).double()
    perturb_all(flow)
    layers = [
        m
        for m in flow.modules()
        if isinstance(m, AffineAutoregressive | ConditionalAffineAutoregressive)
    ]
    assert len(layers) == 3
    ctx = torch.randn(context_dim, dtype=torch.float64) if context_dim else None
    bound = [t.condition(ctx) if context_dim else t for t in layers]
    x = torch.randn(6, 4, dtype=torch.float64)
    d = flow(ctx) if context_dim else flow()
    if builder is maf:
        # data -> base is the one-pass direction of each layer, in order
        u, ld = x, 0.0
        for t in bound:
            u, l_k = _manual_forward(t, u, t.context)
            ld = ld + l_k
        expected = _normal_log_prob(u) + ld
    else:
        # base -> data is the one-pass direction: invert the layers from the last one
        z, ld = x, 0.0
        for t in reversed(bound):
            z = t.inv(z.clone())
            _, l_k = _manual_forward(t, z, t.context)
            ld = ld + l_k
        expected = _normal_log_prob(z) - ld
    torch.testing.assert_close(d.log_prob(x), expected)
    # orders alternate between layers
    orders = [t.made.order.tolist() for t in layers]
    assert orders[0] == [0, 1, 2, 3] and orders[1] == [3, 2, 1, 0]
    # samples have the right shape and a finite density
    s = d.sample((5,))
    assert s.shape == (5, 4) and torch.isfinite(d.log_prob(s)).all()


def test_maf_sample_inverts_density_direction():
    torch.manual_seed(0)
    flow = maf(3, [12], num_layers=2).double()
    perturb_all(flow)
    torch.manual_seed(1)
    z = flow.base().sample((4,))
    torch.manual_seed(1)
    x = flow().sample((4,))  # sequential: inverts every layer
    # pushing the sample back through the one-pass direction recovers the base draw
    u = x
    for t in flow.autoregressive_layers:
        u = t(u.clone())
    torch.testing.assert_close(u, z, atol=1e-10, rtol=1e-10)


def test_pyro_sample_obs():
    torch.manual_seed(0)
    flow = maf(3, [12], num_layers=2)
    perturb_all(flow)
    data = torch.randn(7, 3)

    def model():
        pyro.module("flow", flow)
        with pyro.plate("data", 7):
            pyro.sample("x", flow(), obs=data)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    torch.testing.assert_close(tr.nodes["x"]["log_prob"].sum(), flow().log_prob(data).sum())


@pytest.mark.parametrize("builder", [maf, iaf])
def test_state_dict_round_trip(builder):
    torch.manual_seed(0)
    src = builder(5, [16], num_layers=3, order="random", seed=1)
    perturb_all(src)
    dst = builder(5, [16], num_layers=3, order="random", seed=2)
    dst.load_state_dict(src.state_dict())
    x = torch.randn(8, 5)
    torch.testing.assert_close(dst().log_prob(x), src().log_prob(x.clone()), rtol=0, atol=0)


def test_short_fit_lowers_nll():
    torch.manual_seed(0)
    # a correlated, skewed 2-D target
    z = torch.randn(512, 2)
    data = torch.stack([z[:, 0], 0.5 * z[:, 0] ** 2 + 0.3 * z[:, 1]], -1)
    flow = maf(2, [32], num_layers=3)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    with torch.no_grad():
        before = -flow().log_prob(data).mean().item()
    for _ in range(200):  # the same data tensor every step: no stale cache
        opt.zero_grad()
        loss = -flow().log_prob(data).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = -flow().log_prob(data).mean().item()
    assert after < before - 0.5, (before, after)


def test_bad_inputs():
    t = affine_autoregressive(3, [8])
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(\.\.\., 3\)"):
        t(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"y: expected a tensor of shape \(\.\.\., 3\)"):
        t.inv(torch.randn(4, 2))
    with pytest.raises(ValueError, match="x: expected dtype"):
        t(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        t(torch.full((2, 3), float("nan")))
    ct = conditional_affine_autoregressive(3, 2, [8])
    with pytest.raises(ValueError, match=r"context: expected a tensor of shape \(\.\.\., 2\)"):
        ct.condition(torch.randn(4, 3))
    with pytest.raises(ValueError, match="context: batch shape"):
        ct.condition(torch.randn(5, 2))(torch.randn(4, 3))
    with pytest.raises(ValueError, match="autoregressive_nn"):
        AffineAutoregressive(MADE(3, [8], param_dims=3))
    with pytest.raises(ValueError, match="autoregressive_nn"):
        ConditionalAffineAutoregressive(MADE(3, [8], param_dims=[1, 1]))
    with pytest.raises(ValueError, match="context: the network is conditional"):
        AffineAutoregressive(MADE(3, [8], param_dims=[1, 1], context_dim=2))
    with pytest.raises(ValueError, match="log_scale_bound"):
        affine_autoregressive(3, [8], log_scale_bound=0.0)
    with pytest.raises(ValueError, match="context_dim"):
        conditional_affine_autoregressive(3, 0)
    with pytest.raises(ValueError, match="num_layers"):
        maf(3, num_layers=0)
    with pytest.raises(ValueError, match="order"):
        iaf(3, order="zigzag")
    with pytest.raises(ValueError, match="context: this flow is conditional"):
        maf(3, [8], context_dim=2)()


def test_transform_attributes():
    t = affine_autoregressive(3, [8])
    assert t.bijective and t.sign == 1
    assert t.domain.event_dim == 1 and t.codomain.event_dim == 1
    assert t.inv.inv is t
    assert t.with_cache(0)._cache_size == 0 and t.with_cache(0).made is t.made


@pytest.mark.parametrize(
    "make",
    [
        lambda: maf(3, [8], num_layers=2, context_dim=2),
        lambda: iaf(3, [8], num_layers=2, context_dim=2),
        lambda: realnvp(3, num_layers=2, hidden_dims=[8], context_dim=2),
        lambda: conditional_planar_flow(3, 2, num_layers=2),
    ],
    ids=["maf", "iaf", "realnvp", "planar"],
)
def test_conditional_flow_batch_shape_follows_context(make):
    """flow(context) has the context's batch shape: one sample per context row."""
    torch.manual_seed(0)
    flow = make()
    ctx = torch.randn(4, 2)
    d = flow(ctx)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    x = d.sample()
    assert x.shape == (4, 3)
    xs = d.sample((5,))
    assert xs.shape == (5, 4, 3)
    lp = d.log_prob(xs)
    assert lp.shape == (5, 4)
    # row i of the batch is the flow conditioned on context row i alone
    for i in range(4):
        torch.testing.assert_close(lp[:, i], flow(ctx[i]).log_prob(xs[:, i]))
    with pytest.raises(ValueError, match="context"):
        flow(torch.tensor(1.0))
