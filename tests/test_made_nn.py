"""MADE and MaskedLinear: autoregressive property, connectivity, fast path, state, bad args."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pyro_lgm.nn import MADE, MaskedLinear
from pyro_lgm.testing import assert_autoregressive
from tests.cases import examples


def _perturb(made: MADE, generator: torch.Generator | None = None) -> None:
    with torch.no_grad():
        for p in made.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


@st.composite
def made_configs(draw):
    d = draw(st.integers(1, 12), label="D")
    depth = draw(st.integers(1, 3), label="depth")
    # widths from 1 (much narrower than D) to wider than D
    hidden = [draw(st.integers(1, 2 * d + 3), label="width") for _ in range(depth)]
    kind = draw(st.sampled_from(["natural", "reversed", "random", "explicit"]), label="order")
    order = draw(st.permutations(list(range(d)))) if kind == "explicit" else kind
    param_dims = draw(
        st.one_of(st.integers(1, 3), st.lists(st.integers(1, 2), min_size=1, max_size=3)),
        label="param_dims",
    )
    return dict(
        input_dim=d,
        hidden_dims=hidden,
        param_dims=param_dims,
        order=order,
        context_dim=draw(st.integers(0, 3), label="context_dim"),
        skip_connections=draw(st.booleans(), label="skip"),
        seed=draw(st.integers(0, 1000), label="seed"),
    )


@settings(max_examples=examples(15), deadline=None)
@given(cfg=made_configs(), resamples=st.integers(0, 2), fast=st.booleans())
def test_made_is_autoregressive(cfg, resamples, fast):
    d = cfg["input_dim"]
    # Tanh: no dead units, so a structural path always carries a nonzero gradient
    made = MADE(**cfg, activation=nn.Tanh).double()
    made.fast, made.min_block = fast, 1
    gen = torch.Generator().manual_seed(cfg["seed"])
    _perturb(made, gen)
    x = torch.randn(6, d, generator=gen, dtype=torch.float64)
    ctx = None
    if cfg["context_dim"]:
        ctx = torch.randn(6, cfg["context_dim"], generator=gen, dtype=torch.float64)
    full = all(h >= d - 1 for h in cfg["hidden_dims"])
    for step in range(resamples + 1):
        if step:
            made.resample_masks()
        out = made(x, ctx)
        assert out.shape == (6, d, made.num_params)
        assert_autoregressive(lambda v: made(v, ctx), x, order=made.order, no_blind_spot=full)
        # structural connectivity agrees: strictly lower in the order; full when wide enough
        conn = made.connectivity()
        earlier = made.degrees[None, :] < made.degrees[:, None]
        assert not (conn & ~earlier).any()
        if full:
            assert torch.equal(conn, earlier)
        # blocked path == plain masked path (values and gradients), float64
        made.fast = True
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        a, b = made(xa, ctx), made.forward_reference(xb, ctx)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
        w = torch.randn_like(a)
        params = list(made.parameters())
        ga = torch.autograd.grad((a * w).sum(), [xa, *params])
        gb = torch.autograd.grad((b * w).sum(), [xb, *params])
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v, atol=1e-12, rtol=1e-12)
        made.fast = fast


@settings(max_examples=examples(10), deadline=None)
@given(cfg=made_configs())
def test_relu_made_autoregressive_after_resampling(cfg):
    made = MADE(**cfg).double()
    _perturb(made, torch.Generator().manual_seed(cfg["seed"]))
    x = torch.randn(5, cfg["input_dim"], dtype=torch.float64)
    ctx = torch.randn(cfg["context_dim"], dtype=torch.float64) if cfg["context_dim"] else None
    for _ in range(3):
        assert_autoregressive(lambda v: made(v, ctx), x, order=made.order)
        made.resample_masks(resample_order=True)


def test_fast_path_large_natural_and_random_orders():
    torch.manual_seed(0)
    for order in ["natural", "reversed", "random"]:
        made = MADE(160, [300, 200], [1, 1], order=order, skip_connections=True, context_dim=2)
        made = made.to(torch.float64)
        assert made.fast is None and made._large_enough()
        plan = made._get_plan()
        assert plan.coverage < 0.7  # the blocks skip a large part of every mask
        assert plan.permute == (order == "random")
        x = torch.randn(7, 160, dtype=torch.float64)
        c = torch.randn(7, 2, dtype=torch.float64)
        torch.testing.assert_close(made(x, c), made.forward_reference(x, c), atol=1e-12, rtol=0)
        with torch.no_grad():  # cached masked weights
            torch.testing.assert_close(made(x, c), made.forward_reference(x, c))
        made.resample_masks()
        with torch.no_grad():  # cache invalidated by new masks
            torch.testing.assert_close(made(x, c), made.forward_reference(x, c))
        with torch.no_grad():  # ... and by a parameter update
            made.output_layer.weight.add_(1.0)
            torch.testing.assert_close(made(x, c), made.forward_reference(x, c))


def test_orders_and_degrees():
    made = MADE(5, [8], order="reversed")
    assert made.order.tolist() == [4, 3, 2, 1, 0]
    assert made.degrees.tolist() == [5, 4, 3, 2, 1]
    made = MADE(4, [6], order=[2, 0, 3, 1])
    assert made.degrees.tolist() == [2, 4, 1, 3]
    a = MADE(6, [10], order="random", seed=3)
    b = MADE(6, [10], order="random", seed=3)
    assert torch.equal(a.order, b.order)
    # hidden degrees are sorted and cover 1..D-1 when wide enough
    (deg,) = MADE(6, [10]).hidden_degrees()
    assert deg.tolist() == sorted(deg.tolist()) and set(deg.tolist()) == {1, 2, 3, 4, 5}
    # narrower than D - 1: some degrees missing, still valid
    (deg,) = MADE(10, [3]).hidden_degrees()
    assert len(set(deg.tolist())) == 3 and deg.min() >= 1 and deg.max() <= 9
    # with a context and width >= D, degree-0 units read the context only
    (deg,) = MADE(4, [8], context_dim=2).hidden_degrees()
    assert deg.min() == 0


def test_resample_masks_reproducible_and_keeps_order_by_default():
    a = MADE(7, [12, 12], order="natural", seed=1)
    b = MADE(7, [12, 12], order="natural", seed=1)
    a.resample_masks()
    b.resample_masks()
    assert torch.equal(a.order, torch.arange(7))
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.mask, lb.mask)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1 = MADE(7, [12], order="random")
    r2 = MADE(7, [12], order="random")
    r1.resample_masks(generator=g1)
    r2.resample_masks(generator=g2)
    assert torch.equal(r1.order, r2.order)
    assert torch.equal(r1.output_layer.mask, r2.output_layer.mask)
    # wide layers keep every degree after resampling (no blind spot)
    for deg in r1.hidden_degrees():
        assert set(deg.tolist()) == set(range(1, 7))


def test_state_dict_round_trip_restores_connectivity():
    src = MADE(6, [9, 7], [1, 2], order="random", seed=0, skip_connections=True, context_dim=2)
    src.resample_masks()
    dst = MADE(6, [9, 7], [1, 2], order="random", seed=99, skip_connections=True, context_dim=2)
    assert not torch.equal(src.order, dst.order)
    sd = src.state_dict()
    for key in ["order", "degrees", "hidden_degrees_0", "layers.0.mask", "output_layer.mask"]:
        assert key in sd
    dst.fast, dst.min_block = True, 1
    dst(torch.randn(2, 6), torch.randn(2))  # builds a plan for the old masks
    dst.load_state_dict(sd)
    assert torch.equal(dst.order, src.order)
    for a, b in zip(src.buffers(), dst.buffers()):
        assert torch.equal(a, b)
    x, c = torch.randn(4, 6), torch.randn(4, 2)
    torch.testing.assert_close(dst(x, c), src(x, c))
    torch.testing.assert_close(dst.forward_reference(x, c), src(x, c))


def test_single_variable_has_learnable_constant_output():
    made = MADE(1, [4], [1, 1])
    x = torch.randn(3, 1, requires_grad=True)
    out = made(x)
    assert out.shape == (3, 1, 2)
    out.sum().backward()
    assert torch.all(x.grad == 0)
    assert made.output_layer.bias.grad.abs().sum() > 0
    assert torch.allclose(out, out[:1].expand_as(out))


def test_context_reaches_every_output():
    torch.manual_seed(0)
    made = MADE(4, [8], [1], context_dim=3, order="reversed", activation=nn.Tanh)
    _perturb(made)
    c = torch.randn(5, 3, requires_grad=True)
    out = made(torch.randn(5, 4), c)
    for i in range(4):
        (g,) = torch.autograd.grad(out[:, i].sum(), c, retain_graph=True)
        assert g.abs().sum() > 0, f"output {i} does not see the context"


def test_context_broadcasts():
    made = MADE(3, [7], [2], context_dim=2)
    out = made(torch.randn(4, 3), torch.randn(5, 1, 2))
    assert out.shape == (5, 4, 3, 2)
    out = made(torch.randn(3), torch.randn(2))
    assert out.shape == (3, 2)


def test_zero_init_last_and_split():
    made = MADE(4, [8], [1, 2], zero_init_last=True, skip_connections=True)
    out = made(torch.randn(2, 4))
    assert torch.equal(out, torch.zeros(2, 4, 3))
    a, b = made.split(out)
    assert a.shape == (2, 4, 1) and b.shape == (2, 4, 2)


def test_masks_applied_without_editing_weights():
    made = MADE(5, [9], order="random", seed=0)
    before = [layer.weight.detach().clone() for layer in made.layers]
    out = made(torch.randn(3, 5))
    out.sum().backward()
    for layer, w in zip(made.layers, before):
        assert torch.equal(layer.weight, w)
        assert torch.all(layer.weight.grad[layer.mask == 0] == 0)
    assert torch.all(made.output_layer.weight.grad[made.output_layer.mask == 0] == 0)


def test_masked_linear():
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    layer = MaskedLinear(2, 3, mask=mask)
    x = torch.randn(4, 2)
    expected = x @ (layer.weight * mask).T + layer.bias
    torch.testing.assert_close(layer(x), expected)
    assert "mask" in layer.state_dict()
    with pytest.raises(ValueError, match=r"mask: expected a tensor of shape \(3, 2\)"):
        layer.set_mask(torch.ones(2, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_dim=0, hidden_dims=[4]), "input_dim"),
        (dict(input_dim=3, hidden_dims=4), "hidden_dims"),
        (dict(input_dim=3, hidden_dims=[4, 0]), r"hidden_dims\[1\]"),
        (dict(input_dim=3, hidden_dims=[4], param_dims=0), r"param_dims\[0\]"),
        (dict(input_dim=3, hidden_dims=[4], param_dims=[]), "param_dims"),
        (dict(input_dim=3, hidden_dims=[4], order="sideways"), "order"),
        (dict(input_dim=3, hidden_dims=[4], order=[0, 1]), "order"),
        (dict(input_dim=3, hidden_dims=[4], order=[0, 0, 1]), "order"),
        (dict(input_dim=3, hidden_dims=[4], context_dim=-1), "context_dim"),
        (dict(input_dim=3, hidden_dims=[4], activation=torch.relu), "activation"),
        (dict(input_dim=3, hidden_dims=[4], seed=1.5), "seed"),
    ],
)
def test_bad_constructor_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MADE(**kwargs)


def test_bad_inputs():
    made = MADE(3, [6], context_dim=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\)"):
        made(torch.randn(4, 5), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"context: this network needs a context"):
        made(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"context: expected shape \(\.\.\., 2\)"):
        made(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="context: batch shape"):
        made(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="x: expected dtype"):
        made(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        made(torch.full((4, 3), float("nan")), torch.randn(4, 2))
    with pytest.raises(ValueError, match="context_dim=0"):
        MADE(3, [6])(torch.randn(3), torch.randn(2))
    with pytest.raises(ValueError, match="generator"):
        made.resample_masks(generator=3)


@pytest.mark.parametrize("fast", [False, True])
def test_nograd_weight_cache_follows_parameters_and_masks(fast):
    torch.manual_seed(0)
    made = MADE(6, [10], [1, 1], order="random", seed=0, context_dim=2).double()
    made.fast, made.min_block = fast, 1
    _perturb(made)
    x, c = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(made(x, c), made.forward_reference(x, c))
        made.layers[0].weight.mul_(2.0)  # optimizer-style in-place update
        torch.testing.assert_close(made(x, c), made.forward_reference(x, c))
        made.resample_masks()
        torch.testing.assert_close(made(x, c), made.forward_reference(x, c))
        made.load_state_dict(MADE(6, [10], [1, 1], context_dim=2).double().state_dict())
        torch.testing.assert_close(made(x, c), made.forward_reference(x, c))


@settings(max_examples=examples(40), deadline=None)
@given(
    rows=st.integers(1, 70),
    cols=st.integers(0, 40),
    density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    min_block=st.integers(1, 20),
    max_blocks=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_plan_is_the_tightest_cover_of_any_mask(
    rows, cols, density, min_block, max_blocks, seed
):
    """Each row block's column range holds every non-zero of its rows and no more."""
    from pyro_lgm.nn.masked import _block_plan

    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(rows, cols, generator=g) < density).float()
    plan = _block_plan(mask, min_block, max_blocks)
    assert plan.blocks[0][0] == 0 and plan.blocks[-1][1] == rows
    area = 0
    for (r0, r1, lo, hi), nxt in zip(plan.blocks, plan.blocks[1:] + ((rows,),)):
        assert r1 == nxt[0] and r0 < r1
        block = mask[r0:r1]
        assert block[:, :lo].sum() == 0 and block[:, hi:].sum() == 0  # covers every one
        if hi > lo:  # tight: the first and last columns of the range are used
            assert block[:, lo].sum() > 0 and block[:, hi - 1].sum() > 0
        else:
            assert (lo, hi) == (0, 0) and block.sum() == 0
        area += (r1 - r0) * (hi - lo)
    assert plan.coverage == area / max(1, rows * cols)
