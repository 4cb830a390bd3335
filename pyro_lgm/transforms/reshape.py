r"""Reshaping image transforms: 2x2 squeezing, coupling masks, and multi-scale factor-out.

Images are ``(C, H, W)`` events (``event_dim = 3``) with any batch shape in front. As
everywhere in the library, transforms are written from the base to the data,
:math:`x = f(z)`; density estimation evaluates :math:`f^{-1}` on the data.

* :class:`Squeeze` trades space for channels (RealNVP's squeezing operation, Glow's
  ``squeeze2d``): every 2x2 block of a channel becomes four channels at half the
  resolution. Its ``order="checkerboard"`` (the default) puts the two squares of a 2x2
  block that a checkerboard mask marks ``True`` in the first half of the channels, so that
  the channel mask after a squeeze continues the checkerboard mask before it (RealNVP,
  Fig. 3).
* :func:`checkerboard_mask` and :func:`channel_mask` are the two masks of RealNVP's
  couplings.
* :class:`FactorOut` is one scale of a multi-scale architecture written as a bijection on
  the *whole* tensor: the kept channels go through the rest of the flow, the factored
  channels are passed through unchanged - so the base stays :math:`N(0, I)` on one tensor -
  or, with Glow's learned prior, through an affine map conditioned on the kept half.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import TransformModule
from torch import nn
from torch.distributions import Transform, constraints

from pyro_lgm.nn.resnet import ZeroConv2d
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import broadcast_shapes
from pyro_lgm.transforms._image import (
    check_image,
    check_int,
    flatten_batch,
    unflatten_batch,
)

__all__ = [
    "FactorOut",
    "Squeeze",
    "channel_mask",
    "checkerboard_mask",
    "factor_out",
    "squeeze",
]

_IMAGE = constraints.independent(constraints.real, 3)

# Position (i, j) of the 2x2 block that each group of C output channels holds.
_ORDERS = {
    # the two squares with i + j even first: a channel mask after the squeeze is the
    # checkerboard mask before it
    "checkerboard": ((0, 0), (1, 1), (0, 1), (1, 0)),
    # raster order within the block
    "raster": ((0, 0), (0, 1), (1, 0), (1, 1)),
}


def _check_shape(shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    ):
        raise ValueError(f"shape: expected (C, H, W) of positive ints, got {shape!r}")
    return tuple(shape)  # type: ignore[return-value]


def checkerboard_mask(shape: Sequence[int], invert: bool = False) -> torch.Tensor:
    """RealNVP's checkerboard mask: ``True`` (conditioning) where ``i + j`` is even.

    Args:
        shape: ``(C, H, W)``; every channel gets the same spatial pattern.
        invert: swap the two colours (use it on every other layer).

    Returns:
        A ``(C, H, W)`` bool tensor.

    Example:
        >>> checkerboard_mask((1, 2, 3))[0].int().tolist()
        [[1, 0, 1], [0, 1, 0]]
    """
    c, h, w = _check_shape(shape)
    i = torch.arange(h).unsqueeze(-1)
    j = torch.arange(w)
    mask = ((i + j) % 2 == 0).expand(c, h, w)
    return (~mask if invert else mask).clone()


def channel_mask(shape: Sequence[int], invert: bool = False) -> torch.Tensor:
    """RealNVP's channel-wise mask: the first ``C // 2`` channels condition the others.

    Args:
        shape: ``(C, H, W)`` with ``C >= 2``.
        invert: swap the roles of the two halves.

    Returns:
        A ``(C, H, W)`` bool tensor.

    Example:
        >>> channel_mask((3, 1, 1)).flatten().tolist()
        [True, False, False]
    """
    c, h, w = _check_shape(shape)
    if c < 2:
        raise ValueError(f"shape: a channel mask needs at least 2 channels, got {tuple(shape)}")
    mask = (torch.arange(c) < c // 2).view(c, 1, 1).expand(c, h, w)
    return (~mask if invert else mask).clone()


class Squeeze(Transform):
    r"""2x2 space-to-depth: ``(..., C, H, W)`` to ``(..., 4C, H/2, W/2)`` (Dinh et al., 2017).

    .. math::
        y_{k C + c,\ i,\ j} = x_{c,\ 2i + a_k,\ 2j + b_k}, \qquad \log|\det J| = 0,

    where :math:`(a_k, b_k)`, :math:`k = 0..3`, are the four positions of a 2x2 block in
    the order ``order``: ``"checkerboard"`` (the default) lists :math:`(0,0), (1,1), (0,1),
    (1,0)`, so the first ``2C`` output channels hold the squares a
    :func:`checkerboard_mask` marks ``True``; ``"raster"`` lists them in raster order. It
    is a permutation of the entries, so the inverse (``Squeeze().inv``, depth-to-space) is
    exact and the log-determinant is zero.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        order: ``"checkerboard"`` or ``"raster"``.

    Shapes:
        ``x``: ``(..., C, H, W)`` with even ``H`` and ``W``; ``y``: ``(..., 4C, H/2, W/2)``;
        ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> x = torch.arange(4.0).view(1, 2, 2)
        >>> Squeeze()(x).flatten().tolist()  # (0,0), (1,1), (0,1), (1,0)
        [0.0, 3.0, 1.0, 2.0]
        >>> torch.equal(Squeeze().inv(Squeeze()(x)), x)
        True
    """

    domain = _IMAGE
    codomain = _IMAGE
    bijective = True
    sign = +1
    volume_preserving = True

    def __init__(self, order: str = "checkerboard", cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        if order not in _ORDERS:
            raise ValueError(f"order: expected 'checkerboard' or 'raster', got {order!r}")
        self.order = order

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Squeeze) and other.order == self.order

    def __hash__(self) -> int:
        return hash((Squeeze, self.order))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        check_image("x", x, even=True)
        *batch, c, h, w = x.shape
        blocks = x.reshape(*batch, c, h // 2, 2, w // 2, 2)
        parts = [blocks[..., a, :, b] for a, b in _ORDERS[self.order]]
        return torch.cat(parts, dim=-3)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_image("y", y)
        *batch, c4, h, w = y.shape
        if c4 % 4:
            raise ValueError(
                f"y: expected a channel count divisible by 4 to undo a squeeze, got shape "
                f"{tuple(y.shape)}"
            )
        c = c4 // 4
        x = y.new_empty(*batch, c, h, 2, w, 2)
        for k, (a, b) in enumerate(_ORDERS[self.order]):
            x[..., a, :, b] = y[..., k * c : (k + 1) * c, :, :]
        return x.reshape(*batch, c, 2 * h, 2 * w)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-3])

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        if len(shape) < 3 or shape[-1] % 2 or shape[-2] % 2:
            raise ValueError(
                f"shape: expected (..., C, H, W) with even H and W to squeeze, got {tuple(shape)}"
            )
        *batch, c, h, w = shape
        return torch.Size((*batch, 4 * c, h // 2, w // 2))

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        if len(shape) < 3 or shape[-3] % 4:
            raise ValueError(
                f"shape: expected (..., 4C, H, W) to undo a squeeze, got {tuple(shape)}"
            )
        *batch, c4, h, w = shape
        return torch.Size((*batch, c4 // 4, 2 * h, 2 * w))

    def __repr__(self) -> str:
        return f"Squeeze(order={self.order!r})"


def squeeze(order: str = "checkerboard") -> Squeeze:
    """A :class:`Squeeze` (2x2 space-to-depth) in the given block ``order``.

    Example:
        >>> squeeze().forward_shape((3, 8, 8))
        torch.Size([12, 4, 4])
    """
    return Squeeze(order)


def _sum_image(t: torch.Tensor) -> torch.Tensor:
    return t.sum((-3, -2, -1))


class FactorOut(CachedTransform, TransformModule):
    r"""One scale of a multi-scale flow, as a bijection on the whole ``(C, H, W)`` tensor.

    The input is split along channels into the kept part :math:`u_1` (the first ``keep``
    channels) and the factored part :math:`u_2`. The kept part goes through the inner
    transforms :math:`g` (the rest of the flow, at this and coarser scales); the factored
    part either passes through unchanged (RealNVP: it is read by the standard-normal base
    directly) or, with ``prior=True``, through Glow's learned prior written as an affine map
    conditioned on the kept half:

    .. math::
        z_1 = g(u_1), \qquad z_2 = \mu(z_1) + \sigma(z_1) \odot u_2, \qquad
        \log|\det J| = \log|\det J_g(u_1)| + \sum \log \sigma(z_1),

    so that under the base :math:`u_2 \sim N(0, I)` the factored half has Glow's prior
    :math:`z_2 \mid z_1 \sim N(\mu(z_1), \sigma(z_1)^2)`, and ``log_prob`` and ``sample``
    of the whole flow stay one ``TransformedDistribution``. :math:`[\mu, \log\tilde\sigma]`
    come from a zero-initialised 3x3 convolution of :math:`z_1` (so a new layer passes
    :math:`u_2` through unchanged) and :math:`\log\sigma = c \tanh(\log\tilde\sigma / c)`
    is bounded by ``log_scale_bound``.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017 (multi-scale architecture, Sec. 3.6). D. P. Kingma, P. Dhariwal.
        *Glow: Generative Flow with Invertible 1x1 Convolutions*. NeurIPS 2018 (learned
        prior of the split, ``split2d`` in openai/glow).

    Args:
        channels: ``C``, the channels of the whole input.
        keep: channels kept (``1 <= keep < C``); the last ``C - keep`` are factored out.
        transforms: the inner transforms applied to the kept part, in the base-to-data
            order of :class:`~pyro_lgm.models.Flow` (each with ``event_dim == 3``; they
            may change the kept part's shape on the way as long as it comes back to
            ``(keep, H, W)``).
        prior: ``True`` for Glow's learned conditional prior, ``False`` to pass the
            factored part through.
        log_scale_bound: bound :math:`c` of the prior's log-scale.

    Shapes:
        ``x``, ``y``: ``(..., C, H, W)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> from pyro_lgm.transforms import ActNorm
        >>> t = FactorOut(4, 2, [ActNorm(2, event_dim=3)], prior=True)
        >>> y = torch.randn(5, 4, 2, 2)
        >>> x = t.inv(y)  # initialises the inner ActNorm on the kept half
        >>> torch.allclose(t(x), y, atol=1e-5), t.log_abs_det_jacobian(x, y).shape
        (True, torch.Size([5]))
    """

    domain = _IMAGE
    codomain = _IMAGE
    bijective = True

    def __init__(
        self,
        channels: int,
        keep: int,
        transforms: Sequence[Transform] = (),
        prior: bool = False,
        log_scale_bound: float = 3.0,
    ) -> None:
        super().__init__(cache_size=0)
        self.channels = check_int("channels", channels, 2)
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep < channels:
            raise ValueError(f"keep: expected an integer in [1, {channels - 1}], got {keep!r}")
        self.keep = keep
        if isinstance(transforms, Transform) or not isinstance(transforms, Sequence):
            raise ValueError(f"transforms: expected a sequence of transforms, got {transforms!r}")
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform) or t.codomain.event_dim != 3:
                raise ValueError(
                    f"transforms[{i}]: expected a Transform on images (event_dim 3), got {t!r}"
                )
        self.transforms = list(transforms)
        self.inner = nn.ModuleList([t for t in self.transforms if isinstance(t, nn.Module)])
        if not isinstance(prior, bool):
            raise ValueError(f"prior: expected True or False, got {prior!r}")
        if not (isinstance(log_scale_bound, int | float) and 0 < log_scale_bound < float("inf")):
            raise ValueError(
                f"log_scale_bound: expected a positive number, got {log_scale_bound!r}"
            )
        self.log_scale_bound = float(log_scale_bound)
        factored = channels - keep
        self.prior = ZeroConv2d(keep, 2 * factored) if prior else None

    def _ref(self) -> torch.Tensor | None:
        return next(iter(self.parameters()), None)

    def _prior(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat, batch = flatten_batch(z1)
        out = unflatten_batch(self.prior(flat), batch)  # type: ignore[misc]
        loc, raw = out.chunk(2, dim=-3)
        c = self.log_scale_bound
        return loc, c * torch.tanh(raw / c)

    def _inner_forward(self, u1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ldj = u1.new_zeros(u1.shape[:-3])
        for t in self.transforms:
            v = t(u1)
            ldj = ldj + t.log_abs_det_jacobian(u1, v)
            u1 = v
        return u1, ldj

    def _inner_inverse(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ldj = z1.new_zeros(z1.shape[:-3])
        for t in reversed(self.transforms):
            v = t.inv(z1)
            ldj = ldj + t.log_abs_det_jacobian(v, z1)
            z1 = v
        return z1, ldj

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., : self.keep, :, :], x[..., self.keep :, :, :]

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        check_image("x", u, self.channels, self._ref())
        u1, u2 = self._split(u)
        z1, ldj = self._inner_forward(u1)
        if z1.shape[-3:] != u1.shape[-3:]:
            raise ValueError(
                f"transforms: expected them to return the kept part's shape "
                f"{tuple(u1.shape[-3:])}, got {tuple(z1.shape[-3:])}"
            )
        z2 = u2
        if self.prior is not None:
            loc, log_s = self._prior(z1)
            z2 = loc + u2 * log_s.exp()
            ldj = ldj + _sum_image(log_s)
        batch = broadcast_shapes(z1.shape[:-3], z2.shape[:-3])
        y = torch.cat([z1.expand(*batch, *z1.shape[-3:]), z2.expand(*batch, *z2.shape[-3:])], -3)
        self._remember_ldj(u, y, ldj)
        return y

    def _inverse_with_ldj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("y", y, self.channels, self._ref())
        z1, z2 = self._split(y)
        u1, ldj = self._inner_inverse(z1)
        u2 = z2
        if self.prior is not None:
            loc, log_s = self._prior(z1)
            u2 = (z2 - loc) * torch.exp(-log_s)
            ldj = ldj + _sum_image(log_s)
        batch = broadcast_shapes(u1.shape[:-3], u2.shape[:-3])
        x = torch.cat([u1.expand(*batch, *u1.shape[-3:]), u2.expand(*batch, *u2.shape[-3:])], -3)
        return x, ldj

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x, ldj = self._inverse_with_ldj(y)
        self._remember_ldj(x, y, ldj)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(x, y)
        if ldj is None:
            ldj = self._inverse_with_ldj(y)[1]
        return ldj.expand(broadcast_shapes(ldj.shape, x.shape[:-3], y.shape[:-3]))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, keep={self.keep}, prior={self.prior is not None}, "
            f"inner={len(self.transforms)} transforms"
        )


def factor_out(
    channels: int, transforms: Sequence[Transform] = (), prior: bool = False
) -> FactorOut:
    """A :class:`FactorOut` that keeps the first half of ``channels`` (``C // 2``).

    Example:
        >>> import torch
        >>> t = factor_out(4)
        >>> y = torch.randn(2, 4, 3, 3)
        >>> torch.equal(t.inv(y), y)  # no inner transforms, no prior: the identity
        True
    """
    return FactorOut(channels, channels // 2, transforms, prior)
