"""PixelSNAIL: the causal attention op (values, causality, the runner's plan), the network's
receptive field, cached vs naive generation, log_prob vs conditionals, errors, training."""

from __future__ import annotations

import math

import pytest
import torch

import pyro_lgm.distributions as ld
import pyro_lgm.models as lm
import pyro_lgm.nn as lnn
from pyro_lgm.nn.causal import CausalAttention, CausalNet, IncrementalRunner, MaskedConv2d, Shift
from pyro_lgm.nn.pixelcnn import Rescale
from pyro_lgm.testing import assert_autoregressive, image_order
from tests.cases import live_units, perturb_all


def _random(net: torch.nn.Module, seed: int = 0, scale: float = 1.0) -> torch.nn.Module:
    perturb_all(net, seed, scale=scale)
    live_units(net)
    return net.double().eval()


def _small(shape, **kwargs) -> lnn.PixelSNAIL:
    args = dict(hidden_channels=4, num_blocks=1, num_resnets=1, key_channels=4, value_channels=4)
    args.update(kwargs)
    return lnn.PixelSNAIL(shape, **args)


# ------------------------------------------------------------------------ the op


def _by_hand(q, k, v, heads, strict=True):
    """The attention of each position over the earlier ones, one loop per head and position."""
    b, cq, h, w = q.shape
    cv = v.shape[1]
    dq, dv = cq // heads, cv // heads
    qf, kf, vf = q.flatten(2), k.flatten(2), v.flatten(2)
    out = torch.zeros(b, cv, h * w, dtype=q.dtype)
    for m in range(heads):
        qs, ks, vs = (t[:, m * d : (m + 1) * d] for t, d in ((qf, dq), (kf, dq), (vf, dv)))
        for p in range(h * w):
            n = p if strict else p + 1
            if n == 0:
                continue
            scores = (qs[:, :, p : p + 1] * ks[:, :, :n]).sum(1) / math.sqrt(dq)  # (B, n)
            weights = torch.softmax(scores, -1)
            out[:, m * dv : (m + 1) * dv, p] = (weights[:, None, :] * vs[:, :, :n]).sum(-1)
    return out.reshape(b, cv, h, w)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("strict", [True, False])
def test_causal_attention_is_a_softmax_over_the_earlier_positions(heads, strict):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 4, 3, 4, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64)
    out = CausalAttention(heads, strict=strict)(q, k, v)
    assert out.shape == (2, 6, 3, 4)
    assert torch.allclose(out, _by_hand(q, k, v, heads, strict), atol=1e-12)
    if strict:
        assert torch.equal(out[:, :, 0, 0], torch.zeros(2, 6, dtype=torch.float64))
        # position 1 sees position 0 alone: its value, whatever the query
        assert torch.allclose(out[:, :, 0, 1], v[:, :, 0, 0])


def test_causal_attention_reads_no_key_or_value_at_or_after_its_position():
    g = torch.Generator().manual_seed(1)
    h, w = 2, 3
    q, k, v = (
        torch.randn(1, 4, h, w, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3)
    )
    att = CausalAttention(2)
    for p in range(h * w):
        out = att(q, k, v).flatten(2)[0, :, p].sum()
        gq, gk, gv = torch.autograd.grad(out, (q, k, v))
        gq, gk, gv = (t.flatten(2)[0].abs().sum(0) for t in (gq, gk, gv))
        later = torch.arange(h * w) >= p
        assert bool((gk[later] == 0).all()) and bool((gv[later] == 0).all())
        assert bool((gv[~later] != 0).all())  # every earlier value is read
        if p >= 2:  # with two or more keys the weights depend on them
            assert bool((gk[~later] != 0).all())
        others = torch.arange(h * w) != p
        assert bool((gq[others] == 0).all())  # the query only at p


def test_causal_attention_ready_is_a_running_maximum():
    """ready(p) = max(query at p, keys / values at every p' < p); with strict=False p' <= p."""
    rq = torch.tensor([[[0, 5, 1, 0]]])
    rk = torch.tensor([[[3, 0, 0, 9]]])
    rv = torch.tensor([[[1, 4, 0, 0]], [[0, 0, 2, 0]]])
    assert CausalAttention(1).ready(rq, rk, rv).tolist() == [[[0, 5, 4, 4]]] * 2
    assert CausalAttention(1, strict=False).ready(rq, rk, rv).tolist() == [[[3, 5, 4, 9]]] * 2


class _TinyAttentionNet(CausalNet):
    """Keys and values read the image at their own pixel; queries a strictly causal map."""

    image_shape = (1, 2, 3)
    per_channel_output = False

    def __init__(self, strict: bool) -> None:
        super().__init__()
        self.add("xs", Rescale(2, ones=True), "x")
        self.add("k", MaskedConv2d(2, 2, 1), "xs")
        self.add("v", MaskedConv2d(2, 3, 1), "xs")
        self.add("q0", MaskedConv2d(2, 2, (1, 2), padding=(0, 0, 1, 0)), "xs")
        self.add("q", Shift(right=1), "q0")
        self.add("out", CausalAttention(1, strict=strict), "q", "k", "v")


def test_the_runner_proves_attention_causal_and_refuses_the_non_strict_variant():
    net = _TinyAttentionNet(strict=True).double()
    runner = IncrementalRunner(net, net.image_shape)
    # pixel p (element p) is final at step p + 1; the output at p needs pixels < p
    assert runner.ready["out"][0].flatten().tolist() == [0, 1, 2, 3, 4, 5]
    x = torch.tensor([[[[1.0, 0, 1], [1, 1, 0]]]], dtype=torch.float64)
    session = net.incremental(1)
    full = net(x)
    for t in range(6):
        out = session.step(t)
        assert torch.allclose(out[0], full[0, :, t // 3, t % 3], atol=1e-12)
        session.x[0, 0, t] = x.flatten()[t]
    with pytest.raises(ValueError, match="not autoregressive"):
        IncrementalRunner(_TinyAttentionNet(strict=False).double(), (1, 2, 3))


# --------------------------------------------------------------- receptive field


def test_attention_closes_the_receptive_field_of_the_convolutions():
    """Output pixel (2, 0) of a 3x8 image: without attention the shifted convolutions reach
    only a column or two to the right in the rows above (never (0, 7) or (1, 7)); with
    attention every earlier pixel reaches every output, and no later one does."""
    order = image_order(1, 3, 8)
    x = torch.rand(3, 1, 3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = [2 * 8 + 0]
    for attention in (False, True):
        net = _random(_small((1, 3, 8), output="bernoulli", num_blocks=2, attention=attention))
        fn = ld.PixelSNAIL(net, validate_args=False).conditional_params
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xg)[:, 0, 2, 0].sum(), xg)
        reached = grad.abs().sum(0)[0] != 0
        assert bool(reached[:2, :2].all())  # the nearest rows above, either way
        assert bool(reached[:2, 7].all()) == attention  # the far upper right: attention only
        assert_autoregressive(fn, x, order, outputs=out)
        if attention:
            assert_autoregressive(fn, x, order, no_blind_spot=True)
        else:
            with pytest.raises(AssertionError, match=r"blind spot: output at position 16"):
                assert_autoregressive(fn, x, order, outputs=out, no_blind_spot=True)


# ------------------------------------------------------------------- generation

FAMILIES = [
    ("binary", lambda: _small((1, 3, 4), output="bernoulli", num_blocks=2, heads=2), None),
    ("rgb_mixture", lambda: _small((3, 2, 3), num_mixtures=2, bits=4), None),
    (
        "rgb_categorical_class",
        lambda: _small((3, 2, 2), output="categorical", bits=2, num_classes=3),
        "class",
    ),
    ("grey_mixture_vector", lambda: _small((1, 3, 3), bits=3, context_dim=2), "vector"),
]


def _dist(make, kind, seed=0):
    net = _random(make(), seed, scale=0.5)
    ctx = None
    if kind == "class":
        ctx = torch.tensor([0, 2, 1])
    elif kind == "vector":
        ctx = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return ld.PixelSNAIL(net, ctx)


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_cached_and_naive_sampling_give_identical_images(name, make, kind):
    d = _dist(make, kind)
    shape = (3,) if kind is None else ()
    a = d.sample(shape, generator=torch.Generator().manual_seed(5))
    b = d.sample(shape, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert bool(d.support.check(a).all())
    c = d.sample(shape, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_conditionals_sum_to_log_prob(name, make, kind):
    d = _dist(make, kind)
    x = d.sample((2,))
    cond = d.conditionals(x)
    assert cond.batch_shape == (2, *d.batch_shape, *d.event_shape)
    target = x.long() if d.output == "categorical" else x
    lp = cond.log_prob(target).sum((-3, -2, -1))
    assert torch.allclose(lp, d.log_prob(x), atol=1e-10)


def test_binary_probabilities_sum_to_one_over_every_image():
    d = _dist(FAMILIES[0][1], None)
    codes = torch.arange(2**12)
    x = ((codes[:, None] >> torch.arange(12)) & 1).double().reshape(-1, 1, 3, 4)
    assert abs(float(d.log_prob(x).detach().logsumexp(0))) < 1e-10


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, heads=3, key_channels=4), "heads"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, heads=2, value_channels=5), "heads"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, key_channels=0), "key_channels"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 0), "hidden_channels"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, num_blocks=-1), "num_blocks"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, output="normal"), "output"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, output="bernoulli", bits=2), "bits"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, dropout=1.0), "dropout"),
        (lambda: lnn.PixelSNAIL((1, 3, 3), 4, attention=1), "attention"),
        (lambda: lnn.PixelSNAIL((3, 3), 4), "image_shape"),
        (lambda: CausalAttention(0), "heads"),
        (lambda: CausalAttention(1, strict=None), "strict"),
        (lambda: ld.PixelSNAIL(lnn.PixelCNN((1, 3, 3), 2, 1)), "PixelSNAIL"),
        (lambda: ld.PixelSNAIL(lm.PixelSNAIL((1, 3, 3), 4)), "model.net"),
    ],
)
def test_constructors_reject_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_causal_attention_rejects_bad_maps():
    att = CausalAttention(2)
    q = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match="heads"):
        att(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), q)
    with pytest.raises(ValueError, match="q, k, v"):
        att(q, torch.zeros(1, 4, 2, 3), q)
    with pytest.raises(ValueError, match="k: expected a map"):
        att(q, torch.zeros(4, 2, 2), q)


def test_values_and_contexts_are_checked():
    d = ld.PixelSNAIL(_small((1, 2, 2), bits=2), validate_args=True)
    with pytest.raises(ValueError, match=r"integer levels in \[0, 3\]"):
        d.log_prob(torch.full((1, 2, 2), 4.0))
    net = _small((1, 2, 2), output="bernoulli", num_classes=3)
    with pytest.raises(ValueError, match=r"class labels in \[0, 2\]"):
        ld.PixelSNAIL(net, torch.tensor([3]))


# ------------------------------------------------------------------------ training


def test_adam_lowers_the_negative_log_likelihood():
    torch.manual_seed(0)
    model = lm.PixelSNAIL((1, 3, 4), hidden_channels=8, num_blocks=1, output="bernoulli")
    x = (torch.rand(16, 1, 3, 4) < 0.3).float()
    x[:, :, :, 2:] = x[:, :, :, :2]  # the right half copies the left: attention can use it
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(25):
        loss = -model().log_prob(x).mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 1.0


def test_dropout_is_active_in_training_mode_only():
    net = _small((1, 2, 2), bits=3, dropout=0.5).double()
    d = ld.PixelSNAIL(net)
    x = torch.randint(0, 8, (2, 1, 2, 2)).double()
    assert not torch.equal(d.log_prob(x), d.log_prob(x))
    net.eval()
    assert torch.equal(d.log_prob(x), d.log_prob(x))
