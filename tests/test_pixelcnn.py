"""PixelCNN family: masks, blind spot, cached vs naive generation, completion, errors."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

import pyro_lgm.distributions as ld
import pyro_lgm.models as lm
import pyro_lgm.nn as lnn
from pyro_lgm.nn.causal import IncrementalRunner, conv_mask
from pyro_lgm.testing import assert_autoregressive, image_order
from tests.cases import live_units, perturb_all


def _random(net: torch.nn.Module, seed: int = 0, dtype=torch.float64) -> torch.nn.Module:
    perturb_all(net, seed, scale=1.0)
    live_units(net)
    return net.to(dtype).eval()


# ----------------------------------------------------------------------------- masks


def test_mask_a_and_b_for_rgb_channel_groups():
    m_a = conv_mask(6, 3, (3, 3), "A", (1, 1), data_channels=3)
    m_b = conv_mask(6, 6, (3, 3), "B", (1, 1), data_channels=3)
    # above and to the left: every channel; below and to the right: none
    for m in (m_a, m_b):
        assert bool((m[:, :, 0, :] == 1).all()) and bool((m[:, :, 1, 0] == 1).all())
        assert bool((m[:, :, 1, 2] == 0).all()) and bool((m[:, :, 2, :] == 0).all())
    # centre: output groups R (0, 1), G (2, 3), B (4, 5); inputs R, G, B
    assert m_a[:, :, 1, 1].tolist() == [
        [0, 0, 0],
        [0, 0, 0],
        [1, 0, 0],
        [1, 0, 0],
        [1, 1, 0],
        [1, 1, 0],
    ]
    centre_b = m_b[:, :, 1, 1]
    groups = torch.arange(6) // 2
    assert torch.equal(centre_b, (groups[None, :] <= groups[:, None]).float())


def test_mask_groups_each_half_of_a_gated_output():
    m = conv_mask(12, 3, (1, 2), "A", (0, 1), data_channels=3, out_splits=2)
    centre = m[:, :, 0, 1]
    # each half of 6 channels is [R R G G B B]: R sees nothing, G sees R, B sees R and G
    half = [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert centre.tolist() == half + half
    assert bool((m[:, :, 0, 0] == 1).all())


def test_masked_conv_matches_a_dense_conv_with_the_masked_weight():
    conv = lnn.MaskedConv2d(3, 6, 5, "B", data_channels=3).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, conv.weight * conv.mask, conv.bias, padding=2)
    assert torch.allclose(conv(x), ref)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask_type="C"), "mask_type"),
        (dict(mask_type="A", data_channels=2), "channel group"),
        (dict(padding=(1, 1)), "padding"),
        (dict(kernel_size=0), "kernel_size"),
        (dict(mask_type="A", center=(5, 0)), "center"),
    ],
)
def test_masked_conv_rejects_bad_arguments(kwargs, match):
    args = dict(in_channels=3, out_channels=6, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lnn.MaskedConv2d(**args)


# ------------------------------------------------------------------ receptive fields


def _dependence_fn(net):
    d = {
        lnn.PixelCNN: ld.PixelCNN,
        lnn.GatedPixelCNN: ld.GatedPixelCNN,
        lnn.PixelCNNPP: ld.PixelCNNPP,
    }[type(net)](net, validate_args=False)
    return d.conditional_params


def _x(c, h, w, top=1.0, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * top


def test_pixelcnn_has_the_documented_blind_spot_and_gated_pixelcnn_none():
    """Output pixel (5, 3) of an 8x8 image: PixelCNN's stacked masks never reach the pixels up
    and to the right beyond the first 7x7 kernel's reach ((4, 7) is 4 columns right of the
    output, one row up); the Gated PixelCNN reaches every earlier pixel."""
    order = image_order(1, 8, 8)
    out = [5 * 8 + 3]
    pixelcnn = _random(lnn.PixelCNN((1, 8, 8), 4, 4))
    x = _x(1, 8, 8)
    assert_autoregressive(_dependence_fn(pixelcnn), x, order, outputs=out)
    with pytest.raises(AssertionError, match=r"blind spot.*\[39\]"):  # 39 = (4, 7)
        assert_autoregressive(_dependence_fn(pixelcnn), x, order, outputs=out, no_blind_spot=True)
    gated = _random(lnn.GatedPixelCNN((1, 8, 8), 4, 4))
    assert_autoregressive(_dependence_fn(gated), x, order, outputs=out, no_blind_spot=True)


def test_blind_spot_is_exactly_the_up_right_wedge():
    """Which earlier pixels PixelCNN (7x7 A, three 3x3 B blocks) fails to reach from output
    (5, 3): exactly those at row 5 - r, column >= 3 + 3 + r for r >= 1 (none in the current
    row)."""
    net = _random(lnn.PixelCNN((1, 8, 8), 4, 3))
    x = _x(1, 8, 8).requires_grad_(True)
    params = ld.PixelCNN(net, validate_args=False).conditional_params(x)
    (g,) = torch.autograd.grad(params[:, 0, 5, 3].sum(), x)
    reached = g.abs().sum(0)[0] != 0
    blind = {(i, j) for i in range(8) for j in range(8) if (i, j) < (5, 3) and not reached[i, j]}
    wedge = {(5 - r, j) for r in range(1, 6) for j in range(8) if j >= 3 + 3 + r}
    assert blind == wedge


def test_not_autoregressive_network_is_refused_by_the_planner():
    net = lnn.PixelCNN((1, 4, 4), 2, 1)
    first = net.ops["op1"]
    first.mask.copy_(conv_mask(first.out_channels, 1, (7, 7), "B", (3, 3)))  # sees itself
    with pytest.raises(ValueError, match="not autoregressive"):
        IncrementalRunner(net, (1, 4, 4))


# ------------------------------------------------------------------ cached == naive

FAMILIES = [
    ("pixelcnn_bin", lambda: lnn.PixelCNN((1, 5, 5), 4, 2), None),
    ("pixelcnn_rgb", lambda: lnn.PixelCNN((3, 3, 3), 2, 2, output="categorical", bits=3), None),
    (
        "pixelcnn_mix",
        lambda: lnn.PixelCNN((3, 3, 3), 2, 1, output="logistic_mixture", bits=4),
        None,
    ),
    ("gated_class", lambda: lnn.GatedPixelCNN((1, 5, 5), 4, 3, num_classes=4), "class"),
    (
        "gated_vector",
        lambda: lnn.GatedPixelCNN((3, 3, 3), 2, 2, output="categorical", bits=2, context_dim=3),
        "vector",
    ),
    ("gated_map", lambda: lnn.GatedPixelCNN((1, 4, 4), 4, 2, context_channels=2), "map"),
    (
        "pp_grey",
        lambda: lnn.PixelCNNPP((1, 4, 4), 4, 1, num_mixtures=2, bits=8, num_scales=3),
        None,
    ),
    (
        "pp_rgb_class",
        lambda: lnn.PixelCNNPP((3, 4, 4), 4, 1, num_mixtures=2, num_scales=2, num_classes=3),
        "class",
    ),
]


def _context(kind, n):
    g = torch.Generator().manual_seed(1)
    if kind is None:
        return None
    if kind == "class":
        return torch.arange(n) % 3
    if kind == "vector":
        return torch.randn(n, 3, generator=g, dtype=torch.float64)
    return torch.randn(n, 2, 2, 3, generator=g, dtype=torch.float64)


def _dist(make, kind, n=4, dtype=torch.float64, seed=0):
    net = _random(make(), seed, dtype)
    ctx = _context(kind, n)
    if ctx is not None and ctx.is_floating_point():
        ctx = ctx.to(dtype)
    return {
        lnn.PixelCNN: ld.PixelCNN,
        lnn.GatedPixelCNN: ld.GatedPixelCNN,
        lnn.PixelCNNPP: ld.PixelCNNPP,
    }[type(net)](net, ctx)


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_cached_and_naive_sampling_give_identical_images(name, make, kind):
    d = _dist(make, kind)
    shape = (2,) if kind is None else ()
    a = d.sample(shape, generator=torch.Generator().manual_seed(5))
    b = d.sample(shape, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert bool(d.support.check(a).all())
    # the stream matters: another seed gives other images
    c = d.sample(shape, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_conditionals_sum_to_log_prob(name, make, kind):
    d = _dist(make, kind)
    x = d.sample((3,))
    cond = d.conditionals(x)
    assert cond.batch_shape == (3, *d.batch_shape, *d.event_shape)
    target = x.long() if d.output == "categorical" else x
    lp = cond.log_prob(target).sum((-3, -2, -1))
    assert torch.allclose(lp, d.log_prob(x), atol=1e-10)


def test_cached_sampling_identical_in_float32_for_a_mnist_sized_model():
    d = _dist(lambda: lnn.GatedPixelCNN((1, 12, 12), 8, 3), None, dtype=torch.float32)
    a = d.sample((3,), generator=torch.Generator().manual_seed(0))
    b = d.sample((3,), method="naive", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_samples_follow_log_prob():
    """All 16 binary 2x2 images: empirical frequencies of 20000 samples against exp(log_prob),
    within 5 standard errors each."""
    d = _dist(lambda: lnn.GatedPixelCNN((1, 2, 2), 4, 2, first_kernel=3), None)
    n = 20000
    x = d.sample((n,), generator=torch.Generator().manual_seed(0))
    codes = (x.reshape(n, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=x.dtype)).sum(-1).long()
    freq = torch.bincount(codes, minlength=16).double() / n
    grid = torch.tensor(
        [[(k >> s) & 1 for s in (3, 2, 1, 0)] for k in range(16)], dtype=torch.float64
    )
    p = d.log_prob(grid.reshape(16, 1, 2, 2)).exp().detach()
    assert abs(float(p.sum()) - 1) < 1e-10
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-12).all()), (freq, p)


# ----------------------------------------------------------------------- completion


@pytest.mark.parametrize("name, make, kind", FAMILIES[:2] + FAMILIES[6:7], ids=["bin", "rgb", "pp"])
def test_completion_keeps_observed_pixels_and_is_the_same_cached_or_naive(name, make, kind):
    d = _dist(make, kind)
    c, h, w = d.event_shape
    obs = d.sample((2,), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, h, w, dtype=torch.bool)
    mask[..., : h // 2, :] = True  # top half observed
    a = d.sample(observed=obs, mask=mask, generator=torch.Generator().manual_seed(1))
    b = d.sample(
        observed=obs, mask=mask, method="naive", generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b)
    keep = mask.expand_as(obs)
    assert torch.equal(a[keep], obs[keep])
    everything = d.sample(observed=obs, mask=torch.ones_like(keep))
    assert torch.equal(everything, obs)


def test_completion_draws_the_model_conditional():
    """All pixels observed but the last: the last pixel of 4000 completions is Bernoulli with
    the model's conditional probability (within 5 standard errors)."""
    d = _dist(lambda: lnn.PixelCNN((1, 3, 3), 4, 1), None)
    obs = torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=torch.float64).reshape(1, 3, 3)
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    mask[0, 2, 2] = False
    n = 4000
    x = d.sample((n,), observed=obs, mask=mask, generator=torch.Generator().manual_seed(0))
    p = d.conditionals(obs).probs[0, 2, 2].item()
    freq = x[:, 0, 2, 2].mean().item()
    assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------- Pyro, training


def test_pyro_sample_and_maximum_likelihood_training():
    torch.manual_seed(0)
    model = lm.GatedPixelCNN((1, 4, 4), hidden_channels=8, num_layers=2)
    x = (torch.rand(32, 1, 4, 4) < 0.3).float()

    def program():
        pyro.module("pixelcnn", model)
        with pyro.plate("data", 32):
            pyro.sample("x", model(), obs=x)

    trace = pyro.poutine.trace(program).get_trace()
    assert torch.allclose(trace.log_prob_sum(), model().log_prob(x).sum())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = -model().log_prob(x).mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 1.0


def test_pixelcnnpp_dropout_is_active_in_training_mode_only():
    net = lnn.PixelCNNPP((1, 4, 4), 4, 1, num_mixtures=2, dropout=0.5, num_scales=2).double()
    d = ld.PixelCNNPP(net)
    x = torch.randint(0, 256, (2, 1, 4, 4)).double()
    assert not torch.equal(d.log_prob(x), d.log_prob(x))
    net.eval()
    assert torch.equal(d.log_prob(x), d.log_prob(x))


# ------------------------------------------------------------------------ bad input


def test_values_are_validated():
    d = ld.PixelCNN(lnn.PixelCNN((3, 2, 2), 2, 1, output="categorical", bits=2), validate_args=True)
    with pytest.raises(ValueError, match=r"value: expected shape \(\.\.\., 3, 2, 2\)"):
        d.log_prob(torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match=r"integer levels in \[0, 3\]"):
        d.log_prob(torch.full((3, 2, 2), 4.0))
    with pytest.raises(ValueError, match="NaN"):
        d.log_prob(torch.full((3, 2, 2), math.nan))
    b = ld.PixelCNN(lnn.PixelCNN((1, 2, 2), 2, 1), validate_args=True)
    with pytest.raises(ValueError, match="binary values"):
        b.log_prob(torch.full((1, 2, 2), 0.5))


def test_contexts_are_checked():
    net = lnn.GatedPixelCNN((1, 3, 3), 2, 1, num_classes=3)
    with pytest.raises(ValueError, match="conditional"):
        ld.GatedPixelCNN(net)
    with pytest.raises(ValueError, match=r"class labels in \[0, 2\]"):
        ld.GatedPixelCNN(net, torch.tensor([3]))
    with pytest.raises(ValueError, match="integer class labels"):
        ld.GatedPixelCNN(net, torch.tensor([1.0]))
    vec = lnn.GatedPixelCNN((1, 3, 3), 2, 1, context_dim=4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        ld.GatedPixelCNN(vec, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="not conditional"):
        ld.PixelCNN(lnn.PixelCNN((1, 3, 3), 2, 1), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="give one condition"):
        lnn.GatedPixelCNN((1, 3, 3), 2, 1, num_classes=3, context_dim=2)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: lnn.PixelCNN((1, 3), 2, 1), "image_shape"),
        (lambda: lnn.PixelCNN((1, 3, 3), 2, 1, output="gaussian"), "output"),
        (lambda: lnn.PixelCNN((1, 3, 3), 2, 1, bits=8), "bits"),
        (lambda: lnn.GatedPixelCNN((1, 3, 3), 2, 1, kernel=4), "odd"),
        (lambda: lnn.PixelCNNPP((1, 6, 6), 2, 1, num_scales=3), "divisible"),
        (lambda: lnn.PixelCNNPP((1, 4, 4), 2, 1, dropout=1.0), "dropout"),
        (lambda: ld.GatedPixelCNN(lnn.PixelCNN((1, 3, 3), 2, 1)), "GatedPixelCNN"),
        (lambda: ld.PixelCNN(lm.PixelCNN((1, 3, 3), 2, 1)), "model.net"),
    ],
)
def test_constructors_reject_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_sample_arguments_are_checked():
    d = ld.PixelCNN(lnn.PixelCNN((1, 2, 2), 2, 1))
    with pytest.raises(ValueError, match="method"):
        d.sample(method="fast")
    with pytest.raises(ValueError, match="observed, mask"):
        d.sample(observed=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="mask: expected a bool"):
        d.sample(observed=torch.zeros(1, 2, 2), mask=torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="observed: expected binary"):
        d.sample(observed=torch.full((1, 2, 2), 2.0), mask=torch.ones(1, 2, 2, dtype=torch.bool))
