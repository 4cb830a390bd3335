"""Family-specific properties of the MADE distribution and the trainable MADE model."""

from __future__ import annotations

import contextlib
import itertools
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from torch import nn

from pyro_lgm import distributions as ld
from pyro_lgm import models as lm
from pyro_lgm.nn.masked import MADE as MADENet
from pyro_lgm.testing import assert_normalized, tolerance
from tests.test_nade import all_binary, chi_square_pvalue, ks_uniform, prototype_data


def all_points(d, k, dtype=torch.float64):
    return torch.tensor(list(itertools.product(range(k), repeat=d)), dtype=dtype)


def buffers(module):
    return {name: b.clone() for name, b in module.named_buffers()}


@pytest.mark.parametrize("conditional", ["bernoulli", "categorical", "mog"])
def test_conditionals_sum_to_log_prob(conditional, device, dtype):
    torch.manual_seed(0)
    kw = {"categorical": dict(num_classes=3), "mog": dict(num_components=2)}.get(conditional, {})
    model = lm.MADE(5, (16, 16), conditional, order="random", seed=0, **kw)
    model = model.to(device=device, dtype=dtype)
    d = model()
    if conditional == "mog":
        x = torch.randn(4, 2, 5, dtype=dtype, device=device)
    else:
        x = torch.randint(kw.get("num_classes", 2), (4, 2, 5), device=device).to(dtype)
    cond = d.conditionals(x)
    assert cond.batch_shape == (4, 2, 5)
    torch.testing.assert_close(
        cond.log_prob(d._target(x)).sum(-1), d.log_prob(x), **tolerance(dtype)
    )


def test_made_distribution_from_a_bare_network():
    net = MADENet(3, [8], param_dims=1, seed=0)
    d = ld.MADE(net)
    assert d.event_shape == (3,) and d.batch_shape == ()
    assert_normalized(d)
    with pytest.raises(ValueError, match="conditional"):
        ld.MADE(net, conditional="poisson")
    with pytest.raises(ValueError, match="num_classes"):
        ld.MADE(net, num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        ld.MADE(MADENet(3, [8], param_dims=4), conditional="categorical", num_classes=3).log_prob(
            torch.zeros(3)
        )
    with pytest.raises(ValueError, match="param_dims"):
        ld.MADE(MADENet(3, [8], param_dims=2)).log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="net"):
        ld.MADE(nn.Linear(3, 3))


@pytest.mark.parametrize("fast", [False, True])
def test_sampling_builds_the_masked_weights_once(fast):
    """The D network passes of ``sample`` run inside ``net.reuse_weights()``: the masked
    (or blocked) weights are built once per sample call, not once per position, and the
    samples are the same as with one build per pass."""
    net = MADENet(5, [8, 8], param_dims=1, seed=0)
    net.fast, net.min_block = fast, 1  # also the blocked path, on a small net
    builds = []
    scoped = net._scoped

    def counting(tag, build):
        return scoped(tag, lambda: builds.append(tag) or build())

    net._scoped = counting
    d = ld.MADE(net)
    torch.manual_seed(3)
    x = d.sample((4,))
    assert len(builds) == 1, builds
    builds.clear()
    net.reuse_weights = contextlib.nullcontext  # one build per pass
    torch.manual_seed(3)
    assert torch.equal(d.sample((4,)), x)
    assert len(builds) == 5


@pytest.mark.parametrize("conditional", ["bernoulli", "categorical"])
def test_sampling_frequencies_match_pmf(conditional):
    torch.manual_seed(0)
    k = 3 if conditional == "categorical" else 2
    kw = dict(num_classes=3) if conditional == "categorical" else {}
    model = lm.MADE(3, (12,), conditional, order="random", seed=1, **kw)
    with torch.no_grad():
        model.net.output_layer.bias.normal_()
    d = model()
    pts = all_points(3, k, torch.float32)
    samples = d.sample((20000,))
    assert samples.dtype == (torch.int64 if conditional == "categorical" else torch.float32)
    assert chi_square_pvalue(samples.float(), pts, d.log_prob(pts).detach()) > 1e-3


def test_mog_sampling_probability_integral_transform():
    torch.manual_seed(0)
    model = lm.MADE(3, (16,), "mog", num_components=3, order="reversed", seed=0).double()
    d = model()
    x = d.sample((4000,))
    u = d.conditionals(x).cdf(x)
    crit = 1.95 / math.sqrt(4000) * 1.1
    for i in range(3):
        assert ks_uniform(u[:, i]) < crit, f"position {i}"
    shifted = d.conditionals(x).cdf(x + 0.3)
    assert max(ks_uniform(shifted[:, i]) for i in range(3)) > crit


def test_mask_resampling_gives_new_normalized_models():
    model = lm.MADE(4, (6, 6), seed=0).double()
    pts = all_binary(4)
    before, masks = model().log_prob(pts), buffers(model.net)
    model.resample_masks(torch.Generator().manual_seed(1), resample_order=True)
    after = model().log_prob(pts)
    assert any(not torch.equal(masks[n], b) for n, b in model.net.named_buffers())
    assert not torch.allclose(before, after)
    assert_normalized(model())


def test_ensemble_is_a_normalized_mixture_and_restores_masks():
    model = lm.MADE(4, (6, 6), order="random", seed=0).double()
    pts = all_binary(4)
    saved = buffers(model.net)
    single = model().log_prob(pts)
    lp = model.ensemble_log_prob(pts, num_masks=4, generator=torch.Generator().manual_seed(3))
    for name, b in model.net.named_buffers():
        assert torch.equal(b, saved[name]), f"buffer {name} not restored"
    torch.testing.assert_close(model().log_prob(pts), single, atol=0, rtol=0)
    # a mixture over mask sets: normalized, and equal to logsumexp of the members - log K
    assert abs(lp.logsumexp(0).item()) < 1e-10
    g = torch.Generator().manual_seed(3)
    members = []
    for _ in range(4):
        model.resample_masks(g)
        members.append(model().log_prob(pts))
    torch.testing.assert_close(lp, torch.stack(members).logsumexp(0) - math.log(4))
    assert not torch.allclose(lp, single)


def test_ensemble_restores_masks_on_error():
    model = lm.MADE(3, (5,), seed=0)
    saved = buffers(model.net)
    with pytest.raises(ValueError, match="binary"):
        model.ensemble_log_prob(torch.full((2, 3), 0.5), num_masks=3)
    for name, b in model.net.named_buffers():
        assert torch.equal(b, saved[name])
    with pytest.raises(ValueError, match="num_masks"):
        model.ensemble_log_prob(torch.zeros(3), num_masks=0)


def test_bad_inputs_raise_value_error():
    b = lm.MADE(3, (8,), seed=0)()
    c = lm.MADE(3, (8,), "categorical", num_classes=4, seed=0)()
    m = lm.MADE(3, (8,), "mog", seed=0)()
    cases = [
        (b, torch.tensor([0.0, 0.5, 1.0]), "binary"),
        (b, torch.tensor([0.0, float("nan"), 1.0]), "binary"),
        (b, torch.zeros(2), r"\(\.\.\., 3\)"),
        (c, torch.tensor([0, 4, 1]), "class"),
        (c, torch.tensor([0.0, 1.5, 1.0]), "class"),
        (c, torch.tensor([0, -1, 1]), "class"),
        (c, torch.tensor([0.0, float("nan"), 1.0]), "class"),
        (m, torch.tensor([0.0, float("nan"), 1.0]), "finite"),
        (m, torch.zeros(3, dtype=torch.float64), "dtype"),
    ]
    for dist, x, msg in cases:
        with pytest.raises(ValueError, match=msg):
            dist.log_prob(x)
    bad = [
        lambda: lm.MADE(0),
        lambda: lm.MADE(3, conditional="poisson"),
        lambda: lm.MADE(3, conditional="categorical"),
        lambda: lm.MADE(3, conditional="categorical", num_classes=1),
        lambda: lm.MADE(3, num_classes=3),
        lambda: lm.MADE(3, conditional="mog", num_components=0),
        lambda: lm.MADE(3, num_components=2),
        lambda: lm.MADE(3, conditional="mog", log_scale_bound=0.0),
        lambda: lm.MADE(3, order=[0, 0, 1]),
        lambda: lm.MADE(3, context_dim=2)(),
        lambda: lm.MADE(3)(torch.zeros(2)),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()


def test_context_batch_shapes_and_expand():
    model = lm.MADE(3, (8,), "categorical", num_classes=3, context_dim=2, seed=0).double()
    context = torch.randn(4, 2, dtype=torch.float64)
    d = model(context)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    assert d.sample((5,)).shape == (5, 4, 3)
    assert d.log_prob(torch.zeros(6, 1, 3)).shape == (6, 4)
    assert d.conditionals(torch.zeros(3)).batch_shape == (4, 3)
    assert_normalized(d)
    e = d.expand((2, 4))
    assert e.batch_shape == (2, 4) and e.sample().shape == (2, 4, 3)
    lp = d.log_prob(all_points(3, 3)[:, None])
    assert not torch.allclose(lp[:, 0], lp[:, 1])  # the context matters
    with pytest.raises(ValueError, match="batch_shape"):
        d.expand((3,))


def test_state_dict_round_trip_keeps_resampled_masks():
    a = lm.MADE(5, (10, 10), order="random", seed=1)
    a.resample_masks(torch.Generator().manual_seed(5))
    b = lm.MADE(5, (10, 10), order="random", seed=2)
    x = all_binary(5, torch.float32)
    assert not torch.allclose(a().log_prob(x), b().log_prob(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.order, b.order)
    torch.testing.assert_close(a().log_prob(x), b().log_prob(x), atol=0, rtol=0)


def test_pyro_sample_observes_log_prob():
    model = lm.MADE(4, (8,), seed=0)
    x = all_binary(4, torch.float32)

    def program():
        pyro.module("made", model)
        return pyro.sample("x", model().expand((16,)).to_event(1), obs=x)

    trace = poutine.trace(program).get_trace()
    torch.testing.assert_close(trace.log_prob_sum(), model().log_prob(x).sum())


def test_connectivity_agnostic_fit_lowers_nll():
    torch.manual_seed(0)
    train, test = prototype_data(512, 8, 0), prototype_data(512, 8, 1)
    model = lm.MADE(8, (32, 32), order="random", seed=0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with torch.no_grad():
        before = -model.ensemble_log_prob(test, num_masks=4, generator=g).mean().item()
    for _ in range(150):
        model.resample_masks(g)
        opt.zero_grad()
        (-model().log_prob(train).mean()).backward()
        opt.step()
    with torch.no_grad():
        single = -model().log_prob(test).mean().item()
        ens = -model.ensemble_log_prob(test, num_masks=4, generator=g).mean().item()
    assert single < before - 1.5
    assert ens < before - 1.5
