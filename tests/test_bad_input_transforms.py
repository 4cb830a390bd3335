"""Bad input to the vector transforms, the MADE network and ``Flow``: a clear ValueError.

One rule for non-finite values (``pyro_lgm.errors``): under validation, NaN, inf and -inf
in a value or a context raise ``NonFiniteValueError`` naming the argument and the kind of
value; with validation off the value checks are skipped.
"""

from __future__ import annotations

import pyro
import pytest
import torch

from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.models import Flow, maf, realnvp
from pyro_lgm.nn import MADE
from pyro_lgm.transforms import (
    ActNorm,
    DiagonalScale,
    Permute,
    Planar,
    additive_coupling,
    affine_autoregressive,
    affine_coupling,
    conditional_additive_coupling,
    conditional_affine_autoregressive,
    conditional_affine_coupling,
)

BAD = {"NaN": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _with(value: float, shape=(4, 3), where=(1, 2)) -> torch.Tensor:
    x = torch.randn(*shape)
    x[where] = value
    return x


def _initialised_actnorm() -> ActNorm:
    t = ActNorm(3)
    t.initialize(torch.randn(16, 3))
    return t


TRANSFORMS = {
    "affine_autoregressive": lambda: affine_autoregressive(3, [8]),
    "affine_coupling": lambda: affine_coupling(3, [8]),
    "additive_coupling": lambda: additive_coupling(3, [8]),
    "diagonal_scale": lambda: DiagonalScale(3),
    "actnorm": _initialised_actnorm,
    "permute": lambda: Permute(torch.tensor([2, 0, 1])),
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_non_finite_values_are_rejected_in_every_direction(name, kind):
    t = TRANSFORMS[name]()
    bad = _with(BAD[kind])
    good = torch.randn(4, 3)
    with pytest.raises(NonFiniteValueError, match=rf"^x: expected finite values, got {kind}$"):
        t(bad)
    with pytest.raises(NonFiniteValueError, match=rf"^y: expected finite values, got {kind}$"):
        t.inv(bad)
    if name in ("affine_autoregressive", "affine_coupling"):  # log-dets that read x
        with pytest.raises(NonFiniteValueError, match=rf"^x: .* got {kind}$"):
            t.log_abs_det_jacobian(bad, good)
    with pyro.validation_enabled(False):  # the value checks follow the global switch
        t(bad)


CONDITIONAL = {
    "conditional_affine_autoregressive": lambda: conditional_affine_autoregressive(3, 2, [8]),
    "conditional_affine_coupling": lambda: conditional_affine_coupling(3, 2, [8]),
    "conditional_additive_coupling": lambda: conditional_additive_coupling(3, 2, [8]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_non_finite_context_is_blamed_on_the_context(name, kind):
    ct = CONDITIONAL[name]()
    with pytest.raises(NonFiniteValueError, match=rf"^context: expected finite values, got {kind}"):
        ct.condition(_with(BAD[kind], shape=(4, 2), where=(0, 1)))


def test_message_lists_every_kind_present():
    x = torch.tensor([[float("nan"), float("inf"), 0.0]])
    with pytest.raises(NonFiniteValueError, match="got NaN and inf$"):
        affine_autoregressive(3, [8])(x)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_made_network_rejects_non_finite_x_and_context(kind):
    net = MADE(3, [8], param_dims=2, context_dim=2)
    ctx = torch.randn(4, 2)
    with pytest.raises(NonFiniteValueError, match=rf"^x: .* got {kind}$"):
        net(_with(BAD[kind]), ctx)
    with pytest.raises(NonFiniteValueError, match=rf"^context: .* got {kind}$"):
        net(torch.randn(4, 3), _with(BAD[kind], shape=(4, 2), where=(0, 0)))


@pytest.mark.parametrize("validate", [True, False])
def test_actnorm_init_rejects_a_non_finite_batch_and_stays_usable(validate):
    t = ActNorm(3)
    bad = _with(float("inf"), shape=(16, 3))
    with pyro.validation_enabled(validate):
        # under validation the input check names the argument (y), else the init does (data)
        with pytest.raises(NonFiniteValueError, match="^(y|data): expected finite values, got inf"):
            t.inv(bad)
    assert not bool(t.initialized)
    assert torch.isfinite(t.loc).all() and torch.isfinite(t.log_scale).all()
    z = t.inv(torch.randn(16, 3) * 3 + 1)  # a clean batch then initialises it
    assert bool(t.initialized) and torch.isfinite(z).all()


@pytest.mark.parametrize(
    "build",
    [
        lambda: affine_autoregressive(3, hidden_dims=16),
        lambda: affine_autoregressive(3, hidden_dims="16"),
        lambda: conditional_affine_autoregressive(3, 2, hidden_dims=16),
        lambda: affine_coupling(3, hidden_dims=16),
        lambda: conditional_affine_coupling(3, 2, hidden_dims=16),
        lambda: maf(3, hidden_dims=16),
        lambda: realnvp(3, hidden_dims=16),
    ],
)
def test_hidden_dims_must_be_a_sequence(build):
    with pytest.raises(ValueError, match="^hidden_dims: expected a sequence"):
        build()


@pytest.mark.parametrize(
    "args, match",
    [
        (((-1,), []), "^event_shape: "),
        (((), []), "^event_shape: "),
        ((3, []), "^event_shape: "),
        (((2.0,), []), "^event_shape: "),
        (((3,), [Planar(2)]), r"^transforms\[0\]: Planar acts on vectors of size 2"),
        (((3,), [affine_autoregressive(3, [4]), Planar(2)]), r"^transforms\[1\]: "),
        (((3,), [affine_autoregressive(2, [4]).inv]), r"^transforms\[0\]: "),
        (((3,), ["planar"]), r"^transforms\[0\]: expected a torch.distributions.Transform"),
        (((3,), Planar(3)), "^transforms: expected a sequence"),
    ],
)
def test_flow_rejects_bad_shapes_and_transforms(args, match):
    with pytest.raises(ValueError, match=match):
        Flow(*args)
