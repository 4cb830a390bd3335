"""AutoregressiveNormalMap: one-pass log_prob against sequential passes, the noise <-> map
bijection, cached == naive generation, reparametrized gradients, normalization, context
dependence, the "normal" output of the PixelCNN networks, and bad input."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
import torch.nn.functional as F

import pyro_lgm.distributions as ld
import pyro_lgm.models as lm
import pyro_lgm.nn as lnn
from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.testing import image_order
from tests.cases import live_units, perturb_all

LOG_2PI = math.log(2 * math.pi)


def _random(net: torch.nn.Module, seed: int = 0, dtype=torch.float64) -> torch.nn.Module:
    perturb_all(net, seed, scale=0.5)
    live_units(net)
    return net.to(dtype).eval()


def _context(kind, n, dtype=torch.float64, size=(2, 2)):
    g = torch.Generator().manual_seed(1)
    if kind is None:
        return None
    if kind == "class":
        return torch.arange(n) % 3
    if kind == "vector":
        return torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype)
    return torch.randn(n, 2, *size, generator=g, dtype=torch.float64).to(dtype)


FAMILIES = [
    ("gated_map", lambda: lnn.GatedPixelCNN((2, 3, 3), 4, 2, output="normal", context_channels=2)),
    ("gated_class", lambda: lnn.GatedPixelCNN((1, 4, 3), 3, 2, output="normal", num_classes=3)),
    ("pixelcnn_vector", lambda: lnn.PixelCNN((3, 2, 3), 2, 2, output="normal", context_dim=3)),
    ("pixelcnn_plain", lambda: lnn.PixelCNN((1, 3, 3), 4, 1, output="normal")),
]


def _dist(make, n=3, dtype=torch.float64, seed=0, **kwargs):
    net = _random(make(), seed, dtype)
    return ld.AutoregressiveNormalMap(net, _context(net.context_kind, n, dtype), **kwargs)


def _gated_map(**kwargs):
    return _dist(FAMILIES[0][1], **kwargs)


# ------------------------------------------------------------------------- densities


@pytest.mark.parametrize("name, make", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_log_prob_is_the_sum_of_conditionals_and_of_sequential_passes(name, make):
    """One teacher-forced pass equals the product of per-element conditionals computed by
    hand, each from a pass that sees only the elements before it (the rest zeroed)."""
    d = _dist(make)
    c, h, w = d.event_shape
    z = torch.randn(2, *d.batch_shape, c, h, w, dtype=torch.float64)
    lp = d.log_prob(z)
    assert lp.shape == (2, *d.batch_shape)
    cond = d.conditionals(z)
    assert isinstance(cond, torch.distributions.Normal)
    assert cond.batch_shape == z.shape
    assert torch.allclose(cond.log_prob(z).sum((-3, -2, -1)), lp, atol=1e-12)
    flat = z.reshape(-1, c, h, w)
    ctx = d._context_flat(z.shape[:-3])
    rank = image_order(c, h, w).argsort().reshape(c, h, w)  # rank of each element
    hand = torch.zeros(flat.shape[0], dtype=torch.float64)
    for t in range(c * h * w):
        ch, i, j = (int(v) for v in (rank == t).nonzero()[0])
        seen = torch.where(rank < t, flat, torch.zeros_like(flat))
        params = d.net(seen, ctx).reshape(-1, c, 2, h, w)[:, ch, :, i, j]
        mu, sigma = params[:, 0], F.softplus(params[:, 1]) + d.min_scale
        hand += -0.5 * ((flat[:, ch, i, j] - mu) / sigma) ** 2 - sigma.log() - 0.5 * LOG_2PI
    assert torch.allclose(hand.reshape(lp.shape), lp, atol=1e-10)
    params = d.conditional_params(z)
    assert params.shape == (*z.shape, 2)
    assert torch.allclose(params[..., 0], cond.loc) and torch.allclose(params[..., 1], cond.scale)


def test_log_prob_is_the_change_of_variables_of_transform():
    """log p(transform(eps)) = log N(eps) - log |det d transform / d eps| (the Jacobian by
    autograd, float64): the samples of ``transform`` follow ``log_prob``."""
    d = _dist(lambda: lnn.GatedPixelCNN((2, 2, 2), 3, 2, output="normal", first_kernel=3))
    eps = torch.randn(d.event_shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda e: d.transform(e).flatten(), eps)
    jac = jac.reshape(8, 8)
    # triangular in generation order, with the scales on the diagonal
    order = image_order(2, 2, 2)
    tri = jac[order][:, order]
    assert torch.equal(tri, torch.tril(tri))
    z = d.transform(eps)
    log_det = torch.linalg.slogdet(jac).logabsdet
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum() - log_det
    assert torch.allclose(d.log_prob(z), expected, atol=1e-10)
    assert torch.allclose(jac.diagonal(), d.conditionals(z).scale.flatten(), atol=1e-12)


def test_density_integrates_to_one():
    """(1, 1, 2) and (2, 1, 1) maps, float64: the trapezoid rule over [-10, 10]^2 (step
    0.1; scales of about 0.5 .. 1.2) of exp(log_prob) gives 1, and integrating out the
    second element leaves the first element's Gaussian."""
    for shape in ((1, 1, 2), (2, 1, 1)):
        net = _random(lnn.PixelCNN(shape, 3, 1, output="normal", num_classes=3), seed=3)
        head = next(net.ops[k] for out, k, _ in net.graph if out == net.output_map)
        with torch.no_grad():
            head.weight.mul_(0.25)
            bias = head.bias.view(shape[0], 2)  # per channel: (loc, scale parameter)
            bias.copy_(torch.tensor([[0.5, 0.3], [-1.0, 0.1]], dtype=torch.float64)[: shape[0]])
        d = ld.AutoregressiveNormalMap(net, torch.tensor([0, 2]))
        u = torch.linspace(-10.0, 10.0, 201, dtype=torch.float64)
        a, b = torch.meshgrid(u, u, indexing="ij")
        z = torch.stack([a, b], -1).reshape(201, 201, 1, *shape)  # batch (201, 201, 1)
        with torch.no_grad():
            p = d.log_prob(z).exp()  # (201, 201, 2)
            scale = d.conditionals(z).scale
        assert 0.4 < float(scale.min()) and float(scale.max()) < 1.5
        weights = torch.full((201,), 0.1, dtype=torch.float64)
        weights[0] = weights[-1] = 0.05
        marginal = (p * weights[None, :, None]).sum(1)  # over the second element: (201, 2)
        total = (marginal * weights[:, None]).sum(0)
        assert torch.allclose(total, torch.ones(2, dtype=torch.float64), atol=1e-8), total
        first = d.conditionals(z[:, 0]).log_prob(z[:, 0])[..., 0, 0, 0].exp()  # (201, 2)
        assert torch.allclose(marginal, first, atol=1e-8)


# --------------------------------------------------------------- noise <-> map, sampling


def test_transform_and_inverse_are_inverse():
    d = _gated_map()
    eps = torch.randn(4, 1, *d.event_shape, dtype=torch.float64)  # broadcasts with batch (3,)
    z = d.transform(eps)
    assert z.shape == (4, 3, *d.event_shape)
    assert torch.allclose(d.inverse(z), eps.expand_as(z), atol=1e-12)
    z2 = torch.randn(5, 3, *d.event_shape, dtype=torch.float64)
    assert torch.allclose(d.transform(d.inverse(z2)), z2, atol=1e-12)
    # log p(z) = sum log N(eps) - sum log sigma
    cond = d.conditionals(z2)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(d.inverse(z2)) - cond.scale.log()
    assert torch.allclose(d.log_prob(z2), ref.sum((-3, -2, -1)), atol=1e-12)


@pytest.mark.parametrize("name, make", FAMILIES, ids=[f[0] for f in FAMILIES])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_cached_and_naive_generation_agree(name, make, dtype, atol):
    d = _dist(make, dtype=dtype)
    a = d.sample((2,), generator=torch.Generator().manual_seed(5))
    b = d.sample((2,), method="naive", generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, *d.batch_shape, *d.event_shape) and a.dtype == dtype
    assert torch.allclose(a, b, atol=atol, rtol=atol)
    eps = torch.randn(a.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    assert torch.equal(d.transform(eps), b)  # sample = transform of the generator's noise
    assert torch.allclose(d.transform(eps, method="cached"), a, atol=0, rtol=0)
    c = d.sample((2,), generator=torch.Generator().manual_seed(6))
    assert not torch.allclose(a, c)


def test_cached_generation_of_a_one_row_gated_network():
    """On a (1, 1, 2) image every position of the Gated network's 3-wide vertical kernel
    reads the last element, so no position of that map is needed before the last step: the
    plan once reshaped an empty gather index with -1 and crashed (the discrete GatedPixelCNN
    too)."""
    d = _dist(lambda: lnn.GatedPixelCNN((1, 1, 2), 2, 1, output="normal", first_kernel=3))
    naive = d.sample((2,), method="naive", generator=torch.Generator().manual_seed(0))
    cached = d.sample((2,), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(cached, naive, atol=1e-12)


def test_rsample_is_differentiable_and_sample_is_not():
    d = _gated_map()
    context = d.context.clone().requires_grad_(True)
    d = ld.AutoregressiveNormalMap(d.net, context)
    z = d.rsample((2,), generator=torch.Generator().manual_seed(0))
    assert z.requires_grad
    named = dict(d.net.named_parameters())
    # the head, the first layer's vertical and horizontal convolutions, the context
    wrt = [named[f"ops.{k}.weight"] for k in (_head_key(d.net), "op1", "op4")] + [context]
    for g in torch.autograd.grad(z.square().sum(), wrt):
        assert float(g.abs().sum()) > 0
    # the same noise: rsample is transform's naive path
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(0), dtype=z.dtype)
    assert torch.equal(z, d.transform(eps))
    assert not d.sample((2,)).requires_grad
    assert not d.transform(eps, method="cached").requires_grad


def _head_key(net) -> str:
    return next(k for out, k, _ in net.graph if out == net.output_map)


def test_reparametrized_gradient_matches_finite_differences():
    """d/d theta of sum(transform(eps)) for one head bias, against a central difference."""
    d = _dist(lambda: lnn.GatedPixelCNN((1, 2, 2), 2, 1, output="normal", first_kernel=3))
    eps = torch.randn(3, *d.event_shape, dtype=torch.float64)
    bias = d.net.ops[_head_key(d.net)].bias
    (g,) = torch.autograd.grad(d.transform(eps).sum(), bias)
    h = 1e-6
    for k in range(bias.numel()):
        with torch.no_grad():
            bias[k] += h
            up = d.transform(eps).sum()
            bias[k] -= 2 * h
            down = d.transform(eps).sum()
            bias[k] += h
        assert abs(float(g[k]) - float(up - down) / (2 * h)) < 1e-6


def test_pyro_sample_is_reparametrized_and_scores_with_log_prob():
    d = _gated_map()

    def program():
        with pyro.plate("batch", 3):
            return pyro.sample("z", d)

    trace = pyro.poutine.trace(program).get_trace()
    z = trace.nodes["z"]["value"]
    assert z.shape == (3, *d.event_shape) and z.requires_grad  # rsample
    assert torch.allclose(trace.log_prob_sum(), d.log_prob(z).sum())


def test_min_scale_bounds_the_scales():
    d = _dist(FAMILIES[3][1], min_scale=0.25)
    with torch.no_grad():
        d.net.ops[_head_key(d.net)].bias[1] = -1e4  # the scale parameter of channel 0
    z = torch.randn(2, *d.event_shape, dtype=torch.float64)
    scale = d.conditionals(z).scale
    assert torch.allclose(scale, torch.full_like(scale, 0.25), rtol=1e-6)
    assert torch.isfinite(d.log_prob(z)).all()


# -------------------------------------------------------------------------- context


def test_a_feature_map_context_of_any_size_changes_the_distribution():
    for size in ((2, 2), (5, 7), (3, 3)):
        d = _gated_map()
        ctx = _context("map", 3, size=size).requires_grad_(True)
        other = ctx.detach() + 1.0
        first = ld.AutoregressiveNormalMap(d.net, ctx)
        second = ld.AutoregressiveNormalMap(d.net, other)
        z = torch.randn(3, *d.event_shape, dtype=torch.float64)
        lp = first.log_prob(z)
        assert (lp - second.log_prob(z)).abs().min() > 1e-6  # every batch element
        eps = torch.randn(3, *d.event_shape, dtype=torch.float64)
        assert not torch.allclose(first.transform(eps), second.transform(eps))
        (g,) = torch.autograd.grad(lp.sum(), ctx)
        assert bool((g.flatten(1).abs().sum(1) > 0).all())
        assert first.batch_shape == (3,)


def test_context_is_broadcast_with_sample_shape_and_expand():
    d = _gated_map()  # batch (3,)
    e = d.expand((2, 3))
    z = e.sample()
    assert z.shape == (2, 3, *d.event_shape)
    assert torch.allclose(e.log_prob(z), d.log_prob(z))
    assert d.rsample((4,)).shape == (4, 3, *d.event_shape)


# ------------------------------------------------------------------ the "normal" nets


def test_normal_nets_have_no_levels_and_take_real_input_unchanged():
    for net in (
        lnn.PixelCNN((2, 3, 3), 2, 1, output="normal"),
        lnn.GatedPixelCNN((2, 3, 3), 2, 1, output="normal"),
    ):
        assert net.bits is None and net.levels is None
        assert net.param_channels == 4 and net.data_groups == 2 and net.per_channel_output
        x = torch.randn(2, 2, 3, 3)
        assert torch.equal(net.run(x)["xs"], x)
        assert net(x).shape == (2, 4, 3, 3)
    # the discrete outputs are rescaled as before: levels 0 .. L - 1 to [-1, 1]
    cat = lnn.PixelCNN((1, 2, 2), 2, 1, output="categorical", bits=2)
    x = torch.tensor([0.0, 1, 2, 3]).reshape(1, 1, 2, 2)
    assert cat.levels == 4
    assert torch.allclose(cat.run(x)["xs"], x * 2 / 3 - 1)


@pytest.mark.parametrize("net_cls", [lnn.PixelCNN, lnn.GatedPixelCNN])
@pytest.mark.parametrize("bits", [1, 8])
def test_normal_nets_refuse_bits(net_cls, bits):
    with pytest.raises(ValueError, match=r"bits: .*'normal'.*bits=None"):
        net_cls((1, 3, 3), 2, 1, output="normal", bits=bits)


def test_discrete_distributions_refuse_normal_nets_and_vice_versa():
    with pytest.raises(ValueError, match=r"net: .*output='normal'.*AutoregressiveNormalMap"):
        ld.PixelCNN(lnn.PixelCNN((1, 3, 3), 2, 1, output="normal"))
    with pytest.raises(ValueError, match=r"net: .*output='normal'.*AutoregressiveNormalMap"):
        ld.GatedPixelCNN(lnn.GatedPixelCNN((1, 3, 3), 2, 1, output="normal"))
    with pytest.raises(ValueError, match=r"net: expected a network built with output='normal'"):
        ld.AutoregressiveNormalMap(lnn.GatedPixelCNN((1, 3, 3), 2, 1, output="categorical"))
    with pytest.raises(ValueError, match=r"net: expected a pyro_lgm.nn.PixelCNN or"):
        ld.AutoregressiveNormalMap(lnn.PixelCNNPP((1, 2, 2), 2, 1, num_scales=1))
    with pytest.raises(ValueError, match="model.net"):
        ld.AutoregressiveNormalMap(lm.PixelCNN((1, 3, 3), 2, 1, output="normal"))


# ------------------------------------------------------------------------ bad input


def test_bad_values_are_refused():
    d = _gated_map()
    good = torch.zeros(3, *d.event_shape, dtype=torch.float64)
    for method in ("log_prob", "conditionals", "conditional_params", "inverse", "transform"):
        fn = getattr(d, method)
        name = {"inverse": "z", "transform": "eps"}.get(method, "value")
        with pytest.raises(ValueError, match=rf"{name}: expected shape \(\.\.\., 2, 3, 3\)"):
            fn(torch.zeros(3, 2, 3, 4, dtype=torch.float64))
        with pytest.raises(ValueError, match=rf"{name}: expected dtype torch.float64"):
            fn(good.float())
        with pytest.raises(ValueError, match=rf"{name}: expected a tensor on cpu"):
            fn(torch.zeros(3, *d.event_shape, dtype=torch.float64, device="meta"))
        with pytest.raises(ValueError, match=rf"{name}: batch shape \(2,\) does not broadcast"):
            fn(torch.zeros(2, *d.event_shape, dtype=torch.float64))
        with pytest.raises(ValueError, match=rf"{name}: expected a tensor"):
            fn(good.tolist())
        for bad in (math.nan, math.inf):
            x = good.clone()
            x[1, 0, 2, 2] = bad
            with pytest.raises(NonFiniteValueError, match=rf"{name}: expected finite values"):
                fn(x)
    # without validation, non-finite values are not looked for (no synchronisation)
    quiet = ld.AutoregressiveNormalMap(d.net, d.context, validate_args=False)
    x = good.clone()
    x[0, 0, 0, 0] = math.nan
    assert torch.isnan(quiet.log_prob(x)[0])


def test_bad_arguments_are_refused():
    d = _gated_map()
    with pytest.raises(ValueError, match="method"):
        d.sample(method="fast")
    with pytest.raises(ValueError, match="method"):
        d.transform(torch.zeros(d.event_shape, dtype=torch.float64), method="fast")
    with pytest.raises(ValueError, match="sample_shape"):
        d.rsample(3)
    for bad in (0.0, -1.0, math.nan, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match="min_scale"):
            ld.AutoregressiveNormalMap(d.net, d.context, min_scale=bad)
    with pytest.raises(ValueError, match=r"context: expected a feature map \(\.\.\., 2, h, w\)"):
        ld.AutoregressiveNormalMap(d.net, torch.zeros(3, 4, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="context: the network is conditional"):
        ld.AutoregressiveNormalMap(d.net)
    with pytest.raises(ValueError, match="context: expected finite"):
        ld.AutoregressiveNormalMap(d.net, torch.full((3, 2, 2, 2), math.nan, dtype=torch.float64))
