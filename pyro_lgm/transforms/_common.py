"""Plumbing shared by the transforms whose parameters are (batched) vectors.

Input checks that name the offending argument, and the shape logic of a transform whose
parameters may carry a batch shape (a conditioned transform) that broadcasts against ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Transform

from pyro_lgm.errors import all_finite, check_finite, validation_enabled
from pyro_lgm.nn.dense import DenseNN


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """``torch.broadcast_shapes`` for concrete shapes, in plain Python.

    Same result, and the same ``RuntimeError`` when the shapes do not broadcast, at a
    fraction of the cost (``torch.broadcast_shapes`` goes through its symbolic-shape
    machinery, about 15 microseconds a call, several calls per layer and step).
    """
    out = tuple(shapes[0]) if shapes else ()
    for shape in shapes[1:]:
        if shape == out:
            continue
        short, long_ = (shape, out) if len(shape) <= len(out) else (out, shape)
        offset = len(long_) - len(short)
        result = list(long_)
        for i, n in enumerate(short):
            m = long_[offset + i]
            if n == m or n == 1:
                continue
            if m == 1:
                result[offset + i] = n
            else:
                raise RuntimeError(
                    f"Shape mismatch: objects cannot be broadcast to a single shape: "
                    f"{[tuple(s) for s in shapes]}"
                )
        out = tuple(result)
    return torch.Size(out)


class VectorParamTransform(Transform):
    """A transform on vectors of size ``input_dim`` whose parameters have a batch shape.

    Subclasses define ``input_dim`` and ``_param_batch_shape()``.
    """

    input_dim: int

    def _param_batch_shape(self) -> torch.Size:
        raise NotImplementedError  # pragma: no cover - provided by every subclass

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        shape = torch.Size(shape)
        if len(shape) < 1:
            raise ValueError(f"shape: expected at least one dimension, got {tuple(shape)}")
        batch = self._param_batch_shape()
        if not batch and shape[-1] == self.input_dim:  # unbatched parameters: shape itself
            return shape
        return broadcast_shapes(shape, batch + (self.input_dim,))

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return self.forward_shape(shape)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _check_hidden_dims(hidden_dims: object) -> list[int]:
    try:
        dims = list(hidden_dims)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(
            f"hidden_dims: expected a sequence of positive ints, got {hidden_dims!r}"
        ) from None
    for h in dims:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"hidden_dims: expected a sequence of positive ints, got {dims!r}")
    return dims


def _check_vector_input(
    name: str,
    x: object,
    dim: int,
    like: torch.Tensor,
    batch_shape: torch.Size,
    dim_name: str = "input_dim",
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x`` is a usable ``(..., dim)`` tensor.

    Non-finite values raise :class:`~pyro_lgm.errors.NonFiniteValueError` (a ``ValueError``)
    under validation, as everywhere in the library (:func:`pyro_lgm.errors.check_finite`).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(
            f"{name}: expected shape (..., {dim}) with last dimension {dim} ({dim_name}), "
            f"got {tuple(x.shape)}"
        )
    if x.dtype != like.dtype:
        raise ValueError(f"{name}: expected dtype {like.dtype} (the parameters'), got {x.dtype}")
    if x.device != like.device:
        raise ValueError(f"{name}: expected device {like.device} (the parameters'), got {x.device}")
    try:
        broadcast_shapes(x.shape[:-1], batch_shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: batch shape {tuple(x.shape[:-1])} does not broadcast with the "
            f"parameters' batch shape {tuple(batch_shape)}"
        ) from None
    check_finite(name, x)  # under validation: NonFiniteValueError saying NaN / inf / -inf


def _check_param_tensor(name: str, p: object, min_dim: int) -> torch.Tensor:
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point torch.Tensor, got {p!r}")
    if p.dim() < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dimension(s), got {p.dim()}")
    return p


def _check_params_finite(**params: torch.Tensor) -> None:
    """Under validation, raise ``NonFiniteValueError`` naming the first non-finite parameter.

    One fused check (:func:`~pyro_lgm.errors.all_finite`) for all of them; the per-tensor
    check that names the culprit runs only when it fails.
    """
    if validation_enabled() and not all_finite(*params.values()):
        for name, p in params.items():
            check_finite(name, p)


# --------------------------------------------------------------------------------------------
# The math.
# --------------------------------------------------------------------------------------------
def _last_linear(net: DenseNN) -> nn.Linear:
    return net.layers[-1]


def _check_net(net: object, context_dim: int, out_dim: int, what: str) -> DenseNN:
    if not isinstance(net, DenseNN):
        raise ValueError(f"net: expected a pyro_lgm.nn.DenseNN, got {type(net).__name__}")
    if net.in_dim != context_dim or net.context_dim != 0 or net.out_dim != out_dim:
        raise ValueError(
            f"net: expected DenseNN(in_dim={context_dim}, ..., out_dim={out_dim}, "
            f"context_dim=0) ({what}), got in_dim={net.in_dim}, out_dim={net.out_dim}, "
            f"context_dim={net.context_dim}"
        )
    return net


def _check_context(context: object, net: DenseNN) -> None:
    _check_vector_input(
        "context", context, net.in_dim, _last_linear(net).weight, torch.Size(), "context_dim"
    )


def _default_hidden_dims(input_dim: int) -> list[int]:
    """The hypernetwork of a conditional planar / radial layer: ``[10 D, 10 D]``, Pyro's
    default for the same layers (its size follows the event, not the context)."""
    return [10 * input_dim, 10 * input_dim]
