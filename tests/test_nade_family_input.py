"""Bad input to the NADE family and MADE gets a ValueError naming the argument.

Constructors of the networks, models and distributions (NADE, RNADE, DeepNADE / EoNADE,
MADE), their ``log_prob`` / ``sample`` / ``expand``, the wrong network given to a
distribution, and non-finite values and contexts (a
:class:`pyro_lgm.errors.NonFiniteValueError` that names ``value`` or ``context`` and says
NaN, inf or -inf).
"""

from __future__ import annotations

import re

import pytest
import torch

from pyro_lgm import distributions as ld
from pyro_lgm import models as lm
from pyro_lgm import nn as lnn
from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.nn.masked import MADE as MADENet
from pyro_lgm.testing import assert_normalized

INF, NAN = float("inf"), float("nan")

# ------------------------------------------------------------------------ constructors


BAD_BOUNDS = [INF, -INF, NAN, 0.0, -1.0, True, "7", None, torch.tensor(7.0)]


@pytest.mark.parametrize("bound", BAD_BOUNDS, ids=repr)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: lnn.RNADE(3, hidden=4, num_components=2, log_scale_bound=b),
        lambda b: lm.RNADE(3, hidden=4, num_components=2, log_scale_bound=b),
        lambda b: lm.MADE(3, (8,), "mog", num_components=2, log_scale_bound=b),
        lambda b: ld.MADE(MADENet(3, [8], [2, 2, 2]), conditional="mog", log_scale_bound=b),
    ],
    ids=["nn.RNADE", "models.RNADE", "models.MADE", "distributions.MADE"],
)
def test_log_scale_bound_must_be_a_finite_positive_number(make, bound):
    with pytest.raises(ValueError, match="log_scale_bound"):
        make(bound)


def test_a_finite_log_scale_bound_gives_finite_log_probs():
    x = torch.randn(4, 3)
    for d in (
        lm.RNADE(3, hidden=4, num_components=2, log_scale_bound=3)(),
        lm.MADE(3, (8,), "mog", num_components=2, log_scale_bound=1e3)(),
    ):
        assert torch.isfinite(d.log_prob(x)).all()


BAD_HIDDEN_DIMS = [8, None, "ab", (0,), (-2,), (True,), (4.0,), ("4",), [[4]]]


@pytest.mark.parametrize("hidden_dims", BAD_HIDDEN_DIMS, ids=repr)
@pytest.mark.parametrize("cls", [lm.MADE, lm.DeepNADE, lnn.DeepNADE])
def test_hidden_dims_errors_are_value_errors_naming_the_argument(cls, hidden_dims):
    with pytest.raises(ValueError, match=r"^hidden_dims\b"):
        cls(5, hidden_dims=hidden_dims)


def test_deepnade_without_hidden_layers_is_a_normalized_linear_model():
    """``hidden_dims=()``: the logits are an affine map of ``(x * m, m)``; the fast pass,
    the generic masked-copies pass, sampling and the order-agnostic loss all work."""
    from pyro_lgm.distributions.deepnade import _ordered_logits_chunk

    class Generic:  # only the generic interface: the masked-copies pass
        def __init__(self, net):
            self.features, self.conditional_logits = net.features, net.conditional_logits

    model = lm.DeepNADE(4, hidden_dims=(), context_dim=2, seed=0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)).double())
    assert len(list(model.net)) == 1  # one linear layer
    ctx = torch.randn(3, 2, dtype=torch.float64)
    x = torch.bernoulli(torch.full((3, 4), 0.5, dtype=torch.float64))
    order = torch.tensor([2, 0, 3, 1])
    fast = model.ordered_logits(x, order, ctx)
    torch.testing.assert_close(fast, _ordered_logits_chunk(Generic(model), x, ctx, order))
    d = model(ctx, order=order)
    assert_normalized(d)
    assert d.sample((5,)).shape == (5, 3, 4)
    assert torch.isfinite(model.order_agnostic_loss(x, ctx)).all()
    assert torch.isfinite(model.ensemble_log_prob(x, 3, ctx)).all()


BAD_SEEDS = ["a", 1.5, True, 2**70, -(2**70), [1], torch.tensor(1)]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
@pytest.mark.parametrize(
    "cls", [lnn.NADE, lnn.RNADE, lnn.DeepNADE, lm.NADE, lm.RNADE, lm.DeepNADE, lm.MADE]
)
def test_bad_seeds_raise_value_error(cls, seed):
    with pytest.raises(ValueError, match=r"^seed\b"):
        cls(5, seed=seed)


@pytest.mark.parametrize("cls", [lm.NADE, lm.RNADE, lm.DeepNADE, lm.MADE])
def test_good_seeds_are_reproducible(cls):
    """Every int torch takes is a seed: the same seed gives the same weights (for MADE,
    whose seed only draws the masks and order, the same buffers)."""
    for seed in (0, -1, 2**40, 2**64 - 1, -(2**63)):
        a, b = cls(5, seed=seed, order="random"), cls(5, seed=seed, order="random")
        if cls is lm.MADE:
            pairs = zip(a.named_buffers(), b.buffers())
        else:
            pairs = zip(a.state_dict().items(), b.state_dict().values())
        for (name, p), q in pairs:
            assert torch.equal(p, q), name


@pytest.mark.parametrize("cls", [lnn.NADE, lnn.RNADE, lnn.DeepNADE, lm.MADE])
def test_bools_are_not_integers(cls):
    for name, kwargs in (
        ("features", {"features": True}),
        ("context_dim", {"features": 3, "context_dim": True}),
        ("order", {"features": 2, "order": [True, False]}),
        ("order", {"features": 2, "order": torch.tensor([True, False])}),
    ):
        with pytest.raises(ValueError, match=name):
            cls(**kwargs)
    if cls in (lnn.NADE, lnn.RNADE):
        with pytest.raises(ValueError, match="hidden"):
            cls(3, hidden=True)
    if cls is lnn.RNADE:
        with pytest.raises(ValueError, match="num_components"):
            cls(3, num_components=True)


# ---------------------------------------------------------------------- the wrong net


def _value(d):
    return torch.zeros(d.event_shape)


@pytest.mark.parametrize(
    ("dist", "net"),
    [
        (ld.NADE, lnn.RNADE(3, hidden=4, num_components=2)),
        (ld.NADE, lm.RNADE(3, hidden=4, num_components=2)),
        (ld.NADE, lnn.DeepNADE(3, (4,))),
        (ld.NADE, MADENet(3, [4])),
        (ld.NADE, lm.MADE(3, (4,))),
        (ld.RNADE, lnn.NADE(3, hidden=4)),
        (ld.RNADE, lm.NADE(3, hidden=4)),
        (ld.RNADE, lnn.DeepNADE(3, (4,))),
        (ld.DeepNADE, lnn.NADE(3, hidden=4)),
        (ld.DeepNADE, lnn.RNADE(3, hidden=4)),
        (ld.DeepNADE, MADENet(3, [4])),
        (ld.DeepNADE, torch.nn.Linear(3, 3)),
        (ld.DeepNADE, None),
        (ld.MADE, lnn.NADE(3, hidden=4)),
        (ld.MADE, lm.NADE(3, hidden=4)),
        (ld.MADE, lm.RNADE(3, hidden=4)),
        (ld.MADE, lm.DeepNADE(3, (4,))),
        (ld.MADE, lm.MADE(3, (4,))),
        (ld.MADE, torch.nn.Linear(3, 3)),
        (ld.MADE, None),
        (ld.NADE, None),
        (ld.NADE, torch.nn.Linear(3, 3)),
    ],
    ids=lambda v: getattr(v, "__name__", type(v).__name__),
)
def test_the_wrong_network_is_rejected_at_construction(dist, net):
    with pytest.raises(ValueError, match=r"^net\b"):
        dist(net)


@pytest.mark.parametrize("net", [lnn.NADE(3, hidden=4), lnn.RNADE(3, hidden=4), MADENet(3, [4])])
def test_eonade_rejects_a_network_that_is_not_order_agnostic(net):
    with pytest.raises(ValueError, match=r"^net\b"):
        ld.EoNADE(net, torch.tensor([[0, 1, 2]]))


def test_the_error_for_the_other_nade_names_the_right_distribution():
    with pytest.raises(ValueError, match="RNADE"):
        ld.NADE(lnn.RNADE(3, hidden=4))
    with pytest.raises(ValueError, match=r"distributions\.NADE"):
        ld.RNADE(lnn.NADE(3, hidden=4))
    with pytest.raises(ValueError, match=r"\.net"):
        ld.MADE(lm.MADE(3, (4,)))  # the model: pass model.net, or call the model


def test_a_duck_typed_net_with_the_wrong_heads_is_named():
    """A NADE-style module outside the library whose ``heads`` return the other family's
    parameters gets a ValueError at ``log_prob`` and at ``sample``, not a shape error."""

    class Wrapped(torch.nn.Module):  # not a subclass: the distribution cannot tell by type
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.features, self.order, self.weight_in = inner.features, inner.order, inner.weight_in
            self.context_dim = 0

        def input_bias(self, context=None):
            return self.inner.input_bias(context)

        def hidden(self, a, index):
            return self.inner.hidden(a, index)

        def heads(self, h, index):
            return self.inner.heads(h, index)

    for dist, inner, x in (
        (ld.NADE, lnn.RNADE(3, hidden=4, num_components=2), torch.zeros(2, 3)),
        (ld.RNADE, lnn.NADE(3, hidden=4), torch.zeros(2, 3)),
    ):
        d = dist(Wrapped(inner))
        with pytest.raises(ValueError, match=r"^net: .*heads"):
            d.log_prob(x)
        with pytest.raises(ValueError, match=r"^net: .*heads"):
            d.sample((2,))


def test_duck_typed_order_agnostic_and_made_nets_with_the_wrong_output_are_named():
    class TwoLogitsPerPosition(torch.nn.Module):  # conditional_logits of the wrong width
        def __init__(self):
            super().__init__()
            self.inner, self.features = lnn.DeepNADE(3, (4,), seed=0), 3

        def conditional_logits(self, x_masked, mask, context=None):
            out = self.inner.conditional_logits(x_masked, mask, context)
            return torch.cat([out, out], -1)

    class FlatMADE(torch.nn.Module):  # a MADE-like net whose output lacks the (D, P) rows
        def __init__(self):
            super().__init__()
            self.inner = MADENet(3, [8], 1)
            self.order, self.param_dims = self.inner.order, self.inner.param_dims

        def forward(self, x, context=None):
            return self.inner(x, context).flatten(-2)

    x = torch.zeros(2, 3)
    for d in (
        ld.DeepNADE(TwoLogitsPerPosition()),
        ld.EoNADE(TwoLogitsPerPosition(), [[0, 1, 2]]),
        ld.MADE(FlatMADE()),
    ):
        for call in (lambda d=d: d.log_prob(x), lambda d=d: d.sample((2,))):
            with pytest.raises(ValueError, match=r"^net: .*(logit|shape)"):
                call()


def test_made_param_dims_are_checked_against_the_conditional_at_construction():
    with pytest.raises(ValueError, match="param_dims"):
        ld.MADE(MADENet(3, [8], [2, 2, 2]))  # bernoulli needs 1
    with pytest.raises(ValueError, match="param_dims"):
        ld.MADE(MADENet(3, [8], 1), conditional="mog")
    with pytest.raises(ValueError, match="param_dims"):
        ld.MADE(MADENet(3, [8], [2, 3, 2]), conditional="mog")


# ------------------------------------------------------------------------ non-finite


def _kinds(t):
    return [k for k, f in (("NaN", torch.isnan), ("-inf", torch.isneginf)) if f(t).any()] + (
        ["inf"] if torch.isposinf(t).any() else []
    )


def _assert_names(err, name, t):
    """The message starts with ``name:`` and names exactly the non-finite kinds in ``t``."""
    msg = str(err.value)
    assert isinstance(err.value, NonFiniteValueError), msg
    assert msg.startswith(f"{name}:"), msg
    said = set(re.findall(r"-inf|\binf\b|NaN", msg))
    assert said == set(_kinds(t)), (msg, _kinds(t))


NON_FINITE = [
    torch.tensor([0.0, INF, 1.0]),
    torch.tensor([0.0, -INF, 1.0]),
    torch.tensor([NAN, 0.0, 1.0]),
    torch.tensor([INF, -INF, 1.0]),
]


def _real_dists():
    return {
        "RNADE": lm.RNADE(3, hidden=4, num_components=2, seed=0)(),
        "MADE-mog": lm.MADE(3, (8,), "mog", num_components=2, seed=0)(),
    }


def _discrete_dists():
    model = lm.DeepNADE(3, (4,), seed=0)
    return {
        "NADE": lm.NADE(3, hidden=4, seed=0)(),
        "DeepNADE": model(),
        "EoNADE": model.ensemble(2),
        "MADE": lm.MADE(3, (8,), seed=0)(),
        "MADE-categorical": lm.MADE(3, (8,), "categorical", num_classes=3, seed=0)(),
    }


@pytest.mark.parametrize("x", NON_FINITE, ids=lambda t: str(t.tolist()))
@pytest.mark.parametrize("kind", ["RNADE", "MADE-mog"])
def test_non_finite_values_of_real_valued_distributions(kind, x):
    d = _real_dists()[kind]
    for method in (d.log_prob, d.conditionals):
        with pytest.raises(NonFiniteValueError) as err:
            method(x)
        _assert_names(err, "value", x)


@pytest.mark.parametrize("x", NON_FINITE, ids=lambda t: str(t.tolist()))
@pytest.mark.parametrize("kind", ["NADE", "DeepNADE", "EoNADE", "MADE", "MADE-categorical"])
def test_non_finite_values_of_discrete_distributions_say_what_they_held(kind, x):
    d = _discrete_dists()[kind]
    with pytest.raises(NonFiniteValueError) as err:
        d.log_prob(x)
    _assert_names(err, "value", x)


def _conditional_builders():
    """name -> (model, call(model, context) -> distribution, value)."""
    binary, real = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.3, -1.0, 2.0])
    deep = lm.DeepNADE(3, (4,), context_dim=2, seed=0)
    return {
        "NADE": (lm.NADE(3, hidden=4, context_dim=2, seed=0), None, binary),
        "RNADE": (lm.RNADE(3, hidden=4, num_components=2, context_dim=2, seed=0), None, real),
        "DeepNADE": (deep, None, binary),
        "EoNADE": (deep, lambda m, c: m.ensemble(2, context=c), binary),
        "MADE": (lm.MADE(3, (8,), context_dim=2, seed=0), None, binary),
        "MADE-categorical": (
            lm.MADE(3, (8,), "categorical", num_classes=3, context_dim=2, seed=0),
            None,
            torch.tensor([2.0, 0.0, 1.0]),
        ),
        "MADE-mog": (lm.MADE(3, (8,), "mog", num_components=2, context_dim=2, seed=0), None, real),
    }


BAD_CONTEXTS = [
    torch.tensor([0.0, INF]),
    torch.tensor([-INF, 0.0]),
    torch.tensor([NAN, 0.0]),
    torch.tensor([[0.0, 1.0], [INF, NAN]]),
]


@pytest.mark.parametrize("context", BAD_CONTEXTS, ids=lambda t: str(t.tolist()))
@pytest.mark.parametrize("kind", list(_conditional_builders()))
def test_a_non_finite_context_is_blamed_on_the_context(kind, context):
    model, call, x = _conditional_builders()[kind]
    call = call or (lambda m, c: m(c))
    with pytest.raises(NonFiniteValueError) as err:
        call(model, context)
    _assert_names(err, "context", context)
    # also when the value is fine and given through the models' own helpers
    helpers = []
    if isinstance(model, lm.DeepNADE):
        helpers += [lambda: model.order_agnostic_loss(x, context)]
        helpers += [lambda: model.ensemble_log_prob(x, 2, context)]
    if isinstance(model, lm.MADE):
        helpers += [lambda: model.ensemble_log_prob(x, 2, context)]
    for helper in helpers:
        with pytest.raises(NonFiniteValueError) as err:
            helper()
        _assert_names(err, "context", context)


def test_without_validation_a_non_finite_context_is_not_checked():
    model = lm.NADE(3, hidden=4, context_dim=2, seed=0)
    d = ld.NADE(model, torch.tensor([0.0, NAN]), validate_args=False)
    assert torch.isnan(d.log_prob(torch.zeros(3))).all()


# ------------------------------------------------------------------ shapes and sizes


def _all_dists():
    return {**_real_dists(), **_discrete_dists()}


@pytest.mark.parametrize("kind", list(_all_dists()))
def test_sample_shape_must_be_non_negative_ints(kind):
    d = _all_dists()[kind]
    for bad in ((-1,), 3, (2.5,), (True,), "ab", (2, -3), None):
        with pytest.raises(ValueError, match=r"^sample_shape\b"):
            d.sample(bad)
    assert d.sample((0,)).shape == (0, 3)
    assert d.sample(torch.Size([2, 1])).shape == (2, 1, 3)
    assert d.sample([2]).shape == (2, 3)


@pytest.mark.parametrize("kind", list(_all_dists()))
def test_expand_checks_its_batch_shape(kind):
    d = _all_dists()[kind]
    for bad in ((-1,), "a", (2.5,), (True,), 4, None):
        with pytest.raises(ValueError, match=r"^batch_shape\b"):
            d.expand(bad)
    assert d.expand((2,)).sample().shape == (2, 3)


@pytest.mark.parametrize("kind", list(_conditional_builders()))
def test_an_empty_batch_of_contexts_gives_empty_results(kind):
    model, call, x = _conditional_builders()[kind]
    call = call or (lambda m, c: m(c))
    d = call(model, torch.zeros(0, 2))
    assert d.batch_shape == (0,)
    assert d.sample().shape == (0, 3)
    assert d.sample((2,)).shape == (2, 0, 3)
    assert d.log_prob(x).shape == (0,)


def test_deepnade_distribution_orders_are_checked_like_the_models():
    net = lnn.DeepNADE(3, (4,), seed=0)
    for bad in ([0.0, 1.0, 2.0], [0, 0, 1], "sideways", [True, False, True], 5):
        with pytest.raises(ValueError, match=r"^order\b"):
            ld.DeepNADE(net, order=bad)
    assert ld.DeepNADE(net, order="reversed").order.tolist() == [2, 1, 0]
    for bad in ("x", torch.tensor([[0.0, 1.0, 2.0]]), [[0, 1, 1]], [[True, False, True]]):
        with pytest.raises(ValueError, match=r"^orders\b"):
            ld.EoNADE(net, bad)


def test_order_agnostic_loss_checks_its_context_and_generator():
    model = lm.DeepNADE(3, (4,), context_dim=2, seed=0)
    x = torch.zeros(4, 3)
    for bad in (
        torch.zeros(4, 3),  # wrong width
        torch.zeros(4, 2, dtype=torch.float64),  # wrong dtype
        torch.zeros(5, 2),  # batch does not broadcast with x
        [0.0, 1.0],
        None,
    ):
        with pytest.raises(ValueError, match=r"^context\b"):
            model.order_agnostic_loss(x, bad)
    with pytest.raises(ValueError, match=r"^context\b"):
        lm.DeepNADE(3, (4,), seed=0).order_agnostic_loss(x, torch.zeros(4, 2))
    for bad in (5, "g", torch.zeros(1)):
        with pytest.raises(ValueError, match=r"^generator\b"):
            model.order_agnostic_loss(x, torch.zeros(4, 2), generator=bad)
        with pytest.raises(ValueError, match=r"^generator\b"):
            model.random_orders(2, generator=bad)
    assert model.order_agnostic_loss(x, torch.zeros(1, 2)).shape == (4,)


def test_nade_block_size_is_checked():
    net = lnn.NADE(3, hidden=4, seed=0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"^block_size\b"):
            net.ordered_logits(torch.zeros(3), block_size=bad)
    d = ld.NADE(net)
    d.block_size = 0
    with pytest.raises(ValueError, match=r"^block_size\b"):
        d.log_prob(torch.zeros(3))


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_made_resample_order_must_be_a_bool_or_none(value):
    for made in (lnn.MADE(5, hidden_dims=[8]), lm.MADE(5, hidden_dims=[8])):
        before = [b.clone() for b in made.buffers()]
        with pytest.raises(ValueError, match="resample_order"):
            made.resample_masks(resample_order=value)
        assert all(torch.equal(a, b) for a, b in zip(before, made.buffers()))
    with pytest.raises(ValueError, match="resample_order"):
        lm.MADE(5, hidden_dims=[8]).ensemble_log_prob(
            torch.zeros(2, 5), num_masks=2, resample_order=value
        )
