"""Input checks shared by the transforms on images ``(..., C, H, W)``."""

from __future__ import annotations

import math

import torch

from pyro_lgm.errors import check_finite
from pyro_lgm.transforms.coupling import _check_float_like


def check_image(
    name: str,
    x: object,
    channels: int | None = None,
    ref: torch.Tensor | None = None,
    even: bool = False,
) -> torch.Tensor:
    """Raise ``ValueError`` naming ``name`` unless ``x`` is a usable image batch.

    ``x`` must be a floating-point tensor of shape ``(..., C, H, W)``, with ``C ==
    channels`` when given, the dtype and device of ``ref`` when given, and even ``H`` and
    ``W`` when ``even``. Non-finite values raise under validation
    (:func:`pyro_lgm.errors.check_finite`).
    """
    c = "C" if channels is None else str(channels)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape (..., {c}, H, W), got {type(x)}")
    if x.dim() < 3 or (channels is not None and x.shape[-3] != channels):
        raise ValueError(f"{name}: expected shape (..., {c}, H, W), got {tuple(x.shape)}")
    _check_float_like(name, x, ref)
    if even and (x.shape[-1] % 2 or x.shape[-2] % 2):
        raise ValueError(
            f"{name}: expected even height and width to squeeze 2x2 blocks, got shape "
            f"{tuple(x.shape)} (H={x.shape[-2]}, W={x.shape[-1]})"
        )
    check_finite(name, x)
    return x


def check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_bound(name: str, value: object) -> float:
    """A finite positive number (a bound on a log-scale)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
    return float(value)


def flatten_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """``(..., C, H, W)`` -> ``(N, C, H, W)`` and the batch shape ``...`` to restore."""
    batch = x.shape[:-3]
    return x.reshape(-1, *x.shape[-3:]), batch


def unflatten_batch(x: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    return x.reshape(*batch, *x.shape[-3:])
