r"""Coupling layers on images: RealNVP's affine and NICE's additive couplings with a CNN.

A mask splits the image ``(C, H, W)`` into a conditioning part :math:`A` (copied) and a
transformed part :math:`B`. Two masks, as in RealNVP (Dinh et al., 2017, Sec. 3.4):

* ``"checkerboard"``: :math:`A` the squares with :math:`i + j` even, in every channel. The
  conditioner reads the masked image :math:`x \odot m` (all ``C`` channels) and returns
  parameters for every position, of which those in :math:`B` are used;
* ``"channel"``: :math:`A` the first ``C // 2`` channels. The conditioner reads those
  channels only and returns parameters for the others.

``invert=True`` swaps the two parts. The conditioner is a convolutional network whose last
layer starts at zero (:class:`~pyro_lgm.nn.GlowConvNet`, :class:`~pyro_lgm.nn.ResNetConvNet`),
so a new layer is the identity.

The layers are parametrized in the density direction, data :math:`x` to latent :math:`z`,
as the papers write them: :math:`z_B = x_B \odot s(x_A) + t(x_A)`. As every transform of
the library, the layer's call maps base to data (:math:`x_B = (z_B - t) / s`), its inverse
data to base, and ``log_abs_det_jacobian`` is that of the call, :math:`-\sum_B \log s`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pyro.distributions import ConditionalTransformModule, TransformModule
from torch import nn
from torch.distributions import constraints

from pyro_lgm.errors import check_finite
from pyro_lgm.nn.attention import AttentionConvNet
from pyro_lgm.nn.resnet import GlowConvNet, ResNetConvNet
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import broadcast_shapes
from pyro_lgm.transforms._image import (
    check_image,
    check_int,
    flatten_batch,
)

__all__ = [
    "ConditionalImageAdditiveCoupling",
    "ConditionalImageAffineCoupling",
    "ImageAdditiveCoupling",
    "ImageAffineCoupling",
    "conditional_image_additive_coupling",
    "conditional_image_affine_coupling",
    "image_additive_coupling",
    "image_affine_coupling",
]

_IMAGE = constraints.independent(constraints.real, 3)
_LOGSIGMOID_2 = -math.log1p(math.exp(-2.0))  # log sigmoid(2)


def _check_mask_kind(mask: object) -> str:
    if mask not in ("checkerboard", "channel"):
        raise ValueError(f"mask: expected 'checkerboard' or 'channel', got {mask!r}")
    return mask  # type: ignore[return-value]


def _parts(channels: int, mask: str, invert: bool) -> tuple[int, int]:
    """Input and per-parameter output channels of the conditioner."""
    if mask == "checkerboard":
        return channels, channels
    if channels < 2:
        raise ValueError(
            f"channels: a channel mask needs at least 2 channels, got {channels} (use "
            f"mask='checkerboard', or squeeze first)"
        )
    first = channels // 2
    a = channels - first if invert else first
    return a, channels - a


def _check_context_shape(context_shape: object) -> tuple[int, ...]:
    """``D`` -> ``(D,)`` (a vector context); ``(C, H, W)`` (a context image) as it is."""
    shape = (context_shape,) if isinstance(context_shape, int) else context_shape
    if (
        isinstance(shape, Sequence)
        and len(shape) in (1, 3)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    ):
        return tuple(shape)
    raise ValueError(
        f"context_shape: expected D (a vector context) or (C, H, W) (a context image), "
        f"got {context_shape!r}"
    )


@functools.lru_cache(maxsize=64)
def _checker(
    h: int, w: int, invert: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``(1, H, W)`` float mask, 1 on the conditioning squares: a pure function of its
    arguments, built once per image size, dtype and device rather than at every call (the
    tensor is only read, never written)."""
    i = torch.arange(h, device=device).unsqueeze(-1)
    j = torch.arange(w, device=device)
    m = (i + j) % 2 == (1 if invert else 0)
    return m.to(dtype).unsqueeze(0)


def _build_net(
    channels: int,
    mask: str,
    invert: bool,
    params: int,
    net: str,
    hidden: int,
    blocks: int,
    context_shape: int | Sequence[int] | None = None,
) -> nn.Module:
    """The conditioner of a coupling: ``params`` parameter maps per transformed channel."""
    a, b = _parts(channels, _check_mask_kind(mask), invert)
    context = 0 if context_shape is None else _check_context_shape(context_shape)[0]
    if net == "glow":
        return GlowConvNet(a, params * b, hidden, context)
    if net == "resnet":
        return ResNetConvNet(a, params * b, hidden, blocks, context)
    if net == "attention":
        heads = 4 if hidden % 4 == 0 else 1
        return AttentionConvNet(a, params * b, hidden, blocks, heads, context_channels=context)
    raise ValueError(f"net: expected 'glow', 'resnet' or 'attention', got {net!r}")


class _ImageCoupling(CachedTransform, TransformModule):
    """Masks, context binding, shape checks and the log-det cache of the image couplings."""

    domain = _IMAGE
    codomain = _IMAGE
    bijective = True
    _params = 1

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        invert: bool = False,
        context: torch.Tensor | None = None,
        context_kind: str | None = None,
        cache_size: int = 0,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.channels = check_int("channels", channels)
        self.mask_kind = _check_mask_kind(mask)
        if not isinstance(invert, bool):
            raise ValueError(f"invert: expected True or False, got {invert!r}")
        self.invert = invert
        self.in_channels, self.out_part = _parts(channels, mask, invert)
        # channel mask: the conditioning part A and the transformed part B, as slices
        split = channels - self.in_channels if invert else self.in_channels
        self._a = slice(split, None) if invert else slice(None, split)
        self._b = slice(None, split) if invert else slice(split, None)
        if not isinstance(conditioner, nn.Module):
            raise ValueError(f"conditioner: expected an nn.Module, got {conditioner!r}")
        want_in, want_out = self.in_channels, self._params * self.out_part
        got_in = getattr(conditioner, "in_channels", want_in)
        got_out = getattr(conditioner, "out_channels", want_out)
        if (got_in, got_out) != (want_in, want_out):
            raise ValueError(
                f"conditioner: expected {want_in} input and {want_out} output channels for "
                f"{channels} channels with a {mask} mask, got {got_in} and {got_out}"
            )
        self.conditioner = conditioner
        # a bound context (a conditioned layer): a plain tensor, covered by the caches' stamp
        self._context = context
        self._context_kind = context_kind

    def _cache_tensors(self) -> list[torch.Tensor]:
        out = super()._cache_tensors()
        if self._context is not None:
            out.append(self._context)
        return out

    def _ref(self) -> torch.Tensor | None:
        return next(iter(self.conditioner.parameters()), None)

    def _params_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conditioner output ``(..., k * |B|, H, W)`` and, for a checkerboard, the mask."""
        if self.mask_kind == "channel":
            x_a = x[..., self._a, :, :]
            m = None
        else:
            m = _checker(x.shape[-2], x.shape[-1], self.invert, x.dtype, x.device)
            x_a = x * m
        ctx = self._context
        if ctx is not None:
            h, w = x.shape[-2:]
            if self._context_kind == "vector":
                ctx = ctx[..., None, None].expand(*ctx.shape, h, w)
            elif ctx.shape[-2:] != (h, w):
                raise ValueError(
                    f"context: expected a map of the image's height and width ({h}, {w}), "
                    f"got shape {tuple(self._context.shape)}"
                )
            try:
                batch = broadcast_shapes(x_a.shape[:-3], ctx.shape[:-3])
            except RuntimeError:
                raise ValueError(
                    f"context: batch shape {tuple(ctx.shape[:-3])} does not broadcast against "
                    f"x's batch shape {tuple(x_a.shape[:-3])}"
                ) from None
            x_a = x_a.expand(*batch, *x_a.shape[-3:])
            flat_ctx, _ = flatten_batch(ctx.expand(*batch, *ctx.shape[-3:]))
            flat, batch = flatten_batch(x_a)
            out = self.conditioner(flat, flat_ctx)
        else:
            flat, batch = flatten_batch(x_a)
            out = self.conditioner(flat)
        return out.reshape(*batch, *out.shape[-3:]), m

    def _merge(self, x: torch.Tensor, new_b: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        batch = broadcast_shapes(x.shape[:-3], new_b.shape[:-3])
        x = x.expand(*batch, *x.shape[-3:])
        new_b = new_b.expand(*batch, *new_b.shape[-3:])
        if m is not None:
            return torch.where(m.bool(), x, new_b)
        parts = [x[..., self._a, :, :], new_b]
        return torch.cat(parts[::-1] if self.invert else parts, dim=-3)

    def _part_b(self, x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        return x if m is not None else x[..., self._b, :, :]

    def _check(self, name: str, x: object) -> torch.Tensor:
        return check_image(name, x, self.channels, self._ref())

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mask={self.mask_kind!r}, invert={self.invert}"


class ImageAdditiveCoupling(_ImageCoupling):
    r"""NICE's additive coupling on images (Dinh et al., 2015), volume preserving.

    .. math::
        z_A = x_A, \qquad z_B = x_B + t(x_A), \qquad \log|\det J| = 0,

    from data :math:`x` to latent :math:`z` (the layer's inverse); its call is
    :math:`x_B = z_B - t(z_A)`. Masks as in :mod:`pyro_lgm.transforms.image_coupling`.

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(N, C_A, H, W) -> (N, C_B, H, W)`` (``C_A = C_B = C`` for a
            checkerboard, the two channel halves for a channel mask), e.g.
            :class:`~pyro_lgm.nn.GlowConvNet`.
        invert: swap the conditioning and transformed parts.

    Shapes:
        ``x``, ``y``: ``(..., C, H, W)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> t = image_additive_coupling(2, mask="channel", hidden=8)
        >>> x = torch.randn(3, 2, 4, 4)
        >>> torch.equal(t(x), x)  # zero-initialised last layer: the identity at first
        True
    """

    volume_preserving = True
    sign = +1

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("x", z)
        shift, m = self._params_of(z)
        return self._merge(z, self._part_b(z, m) - shift, m)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        self._check("y", x)
        shift, m = self._params_of(x)
        return self._merge(x, self._part_b(x, m) + shift, m)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(broadcast_shapes(x.shape[:-3], y.shape[:-3]))


class ImageAffineCoupling(_ImageCoupling):
    r"""RealNVP's affine coupling on images (Dinh et al., 2017) with a stable scale.

    .. math::
        z_A = x_A, \qquad z_B = x_B \odot s(x_A) + t(x_A), \qquad
        \log|\det J_{x \to z}| = \sum_{B} \log s(x_A),

    from data :math:`x` to latent :math:`z` (the layer's inverse; its call
    :math:`x_B = (z_B - t) / s` has log-det :math:`-\sum_B \log s`). The conditioner outputs
    :math:`[h, t]` and the scale is kept in a safe range:

    * ``scale="tanh"`` (RealNVP): :math:`\log s = c \tanh(h / c)`, bounded by
      ``log_scale_bound``;
    * ``scale="sigmoid"`` (Glow): :math:`s = \mathrm{sigmoid}(h + 2) / \mathrm{sigmoid}(2)`,
      Glow's :math:`\mathrm{sigmoid}(h + 2)` divided by its value at :math:`h = 0` so that a
      new layer is the identity; :math:`s \in (0, 1.135)`.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017. D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(N, C_A, H, W) -> (N, 2 C_B, H, W)`` (``h`` first, then
            ``t``).
        invert: swap the conditioning and transformed parts.
        scale: ``"tanh"`` or ``"sigmoid"``.
        log_scale_bound: :math:`c` of ``scale="tanh"``.

    Shapes:
        ``x``, ``y``: ``(..., C, H, W)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = image_affine_coupling(1, mask="checkerboard", hidden=8)
        >>> with torch.no_grad():
        ...     _ = t.conditioner.net[-1].weight.normal_(0, 0.1)
        >>> x = torch.randn(2, 1, 4, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5), t.log_abs_det_jacobian(x, t(x)).shape
        (True, torch.Size([2]))
    """

    _params = 2
    sign = +1

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        invert: bool = False,
        scale: str = "tanh",
        log_scale_bound: float = 3.0,
        context: torch.Tensor | None = None,
        context_kind: str | None = None,
    ) -> None:
        super().__init__(channels, mask, conditioner, invert, context, context_kind)
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale: expected 'tanh' or 'sigmoid', got {scale!r}")
        if not (isinstance(log_scale_bound, int | float) and 0 < log_scale_bound < math.inf):
            raise ValueError(
                f"log_scale_bound: expected a positive number, got {log_scale_bound!r}"
            )
        self.scale = scale
        self.log_scale_bound = float(log_scale_bound)

    def _log_scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, object]:
        out, m = self._params_of(x)
        raw, shift = out.chunk(2, dim=-3)
        if self.scale == "tanh":
            c = self.log_scale_bound
            log_s = c * torch.tanh(raw / c)
        else:
            log_s = F.logsigmoid(raw + 2.0) - _LOGSIGMOID_2
        if m is not None:
            log_s = log_s * (1 - m)  # the conditioning squares are copied: log s = 0 there
        return log_s, shift, m

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("x", z)
        log_s, shift, m = self._log_scale_shift(z)
        x = self._merge(z, (self._part_b(z, m) - shift) * torch.exp(-log_s), m)
        self._remember_ldj(z, x, -log_s.sum((-3, -2, -1)))
        return x

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        self._check("y", x)
        log_s, shift, m = self._log_scale_shift(x)
        z = self._merge(x, self._part_b(x, m) * log_s.exp() + shift, m)
        self._remember_ldj(z, x, -log_s.sum((-3, -2, -1)))
        return z

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(x, y)
        if ldj is None:
            self._check("x", x)
            ldj = -self._log_scale_shift(x)[0].sum((-3, -2, -1))
        return ldj.expand(broadcast_shapes(ldj.shape, x.shape[:-3], y.shape[:-3]))

    def extra_repr(self) -> str:
        bound = f", log_scale_bound={self.log_scale_bound}" if self.scale == "tanh" else ""
        return super().extra_repr() + f", scale={self.scale!r}" + bound


# ------------------------------------------------------------------------------ conditional
class _ConditionalImageCoupling(ConditionalTransformModule):
    """A coupling whose conditioner also reads a context vector or a context image."""

    domain = _IMAGE
    codomain = _IMAGE
    bijective = True
    _bound_cls: type[_ImageCoupling]

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        context_shape: int | Sequence[int],
        invert: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__()
        if isinstance(context_shape, int) and not isinstance(context_shape, bool):
            self.context_shape: tuple[int, ...] = (check_int("context_shape", context_shape),)
        elif (
            isinstance(context_shape, Sequence)
            and len(context_shape) in (1, 3)
            and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in context_shape
            )
        ):
            self.context_shape = tuple(context_shape)
        else:
            raise ValueError(
                f"context_shape: expected D (a vector context) or (C, H, W) (a context image), "
                f"got {context_shape!r}"
            )
        self.context_kind = "vector" if len(self.context_shape) == 1 else "image"
        want = self.context_shape[0]
        got = getattr(conditioner, "context_channels", want)
        if got != want:
            raise ValueError(
                f"conditioner: expected context_channels={want} for a context of shape "
                f"{self.context_shape}, got {got}"
            )
        # a template layer: checks the arguments once and owns the conditioner's parameters
        self.layer = self._bound_cls(channels, mask, conditioner, invert, **kwargs)
        self._kwargs = kwargs

    def condition(self, context: torch.Tensor) -> _ImageCoupling:
        """Bind ``context`` (``(..., D)`` or ``(..., C, H, W)``) and return the coupling."""
        shape = self.context_shape
        n = len(shape)
        ref = self.layer._ref()
        if (
            not isinstance(context, torch.Tensor)
            or context.dim() < n
            or tuple(context.shape[-n:]) != shape
        ):
            got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context)
            raise ValueError(
                f"context: expected shape (..., {', '.join(map(str, shape))}), got {got}"
            )
        if ref is not None and (context.dtype != ref.dtype or context.device != ref.device):
            raise ValueError(
                f"context: expected dtype {ref.dtype} on {ref.device} (the transform's), got "
                f"{context.dtype} on {context.device}"
            )
        check_finite("context", context)
        t = self.layer
        return self._bound_cls(
            t.channels,
            t.mask_kind,
            t.conditioner,
            t.invert,
            context=context,
            context_kind=self.context_kind,
            **self._kwargs,
        )

    def extra_repr(self) -> str:
        return f"context_shape={self.context_shape}"


class ConditionalImageAdditiveCoupling(_ConditionalImageCoupling):
    r"""An :class:`ImageAdditiveCoupling` whose conditioner also reads a context :math:`c`.

    .. math::
        z_A = x_A, \qquad z_B = x_B + t(x_A, c).

    A context vector ``(..., D)`` is broadcast to a ``(D, H, W)`` map, a context image
    ``(..., C_c, H, W)`` (the image's height and width) is used as it is; either is
    concatenated to the conditioner's input channels. ``condition(context)`` returns the
    :class:`ImageAdditiveCoupling` bound to it; batch dimensions broadcast against ``x``'s.

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(x_A, context_map) -> (N, C_B, H, W)`` with
            ``context_channels`` the context's ``D`` or ``C_c``.
        context_shape: ``D`` or ``(C_c, H, W)``.
        invert: swap the two parts.

    Example:
        >>> import torch
        >>> t = conditional_image_additive_coupling(2, 3, mask="channel", hidden=8)
        >>> t.condition(torch.randn(5, 3))(torch.randn(5, 2, 4, 4)).shape
        torch.Size([5, 2, 4, 4])
    """

    _bound_cls = ImageAdditiveCoupling

    def condition(self, context: torch.Tensor) -> ImageAdditiveCoupling:
        return super().condition(context)  # type: ignore[return-value]


class ConditionalImageAffineCoupling(_ConditionalImageCoupling):
    r"""An :class:`ImageAffineCoupling` whose conditioner also reads a context :math:`c`.

    .. math::
        z_A = x_A, \qquad z_B = x_B \odot s(x_A, c) + t(x_A, c).

    Context handling as in :class:`ConditionalImageAdditiveCoupling`.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(x_A, context_map) -> (N, 2 C_B, H, W)``.
        context_shape: ``D`` or ``(C_c, H, W)``.
        invert: swap the two parts.
        scale: ``"tanh"`` or ``"sigmoid"`` (see :class:`ImageAffineCoupling`).
        log_scale_bound: :math:`c` of ``scale="tanh"``.

    Example:
        >>> import torch
        >>> t = conditional_image_affine_coupling(1, (2, 4, 4), hidden=8)
        >>> t.condition(torch.randn(2, 4, 4))(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
    """

    _bound_cls = ImageAffineCoupling

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        context_shape: int | Sequence[int],
        invert: bool = False,
        scale: str = "tanh",
        log_scale_bound: float = 3.0,
    ) -> None:
        super().__init__(
            channels,
            mask,
            conditioner,
            context_shape,
            invert,
            scale=scale,
            log_scale_bound=log_scale_bound,
        )

    def condition(self, context: torch.Tensor) -> ImageAffineCoupling:
        return super().condition(context)  # type: ignore[return-value]


# ------------------------------------------------------------------------------ helpers
def image_additive_coupling(
    channels: int,
    mask: str = "checkerboard",
    invert: bool = False,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
) -> ImageAdditiveCoupling:
    """An :class:`ImageAdditiveCoupling` with a Glow (``net="glow"``) or ResNet conditioner.

    Example:
        >>> image_additive_coupling(4, "channel", net="resnet", hidden=8).conditioner.hidden
        8
    """
    conditioner = _build_net(channels, mask, invert, 1, net, hidden, blocks)
    return ImageAdditiveCoupling(channels, mask, conditioner, invert)


def image_affine_coupling(
    channels: int,
    mask: str = "checkerboard",
    invert: bool = False,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
    scale: str = "tanh",
    log_scale_bound: float = 3.0,
) -> ImageAffineCoupling:
    """An :class:`ImageAffineCoupling` with a Glow (``net="glow"``) or ResNet conditioner.

    Example:
        >>> image_affine_coupling(4, "channel", scale="sigmoid", hidden=8).scale
        'sigmoid'
    """
    conditioner = _build_net(channels, mask, invert, 2, net, hidden, blocks)
    return ImageAffineCoupling(channels, mask, conditioner, invert, scale, log_scale_bound)


def conditional_image_additive_coupling(
    channels: int,
    context_shape: int | Sequence[int],
    mask: str = "checkerboard",
    invert: bool = False,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
) -> ConditionalImageAdditiveCoupling:
    """A :class:`ConditionalImageAdditiveCoupling` with a Glow or ResNet conditioner.

    Example:
        >>> conditional_image_additive_coupling(2, 5, "channel", hidden=8).context_kind
        'vector'
    """
    conditioner = _build_net(channels, mask, invert, 1, net, hidden, blocks, context_shape)
    return ConditionalImageAdditiveCoupling(channels, mask, conditioner, context_shape, invert)


def conditional_image_affine_coupling(
    channels: int,
    context_shape: int | Sequence[int],
    mask: str = "checkerboard",
    invert: bool = False,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
    scale: str = "tanh",
    log_scale_bound: float = 3.0,
) -> ConditionalImageAffineCoupling:
    """A :class:`ConditionalImageAffineCoupling` with a Glow or ResNet conditioner.

    Example:
        >>> conditional_image_affine_coupling(1, (3, 8, 8), hidden=8).context_kind
        'image'
    """
    conditioner = _build_net(channels, mask, invert, 2, net, hidden, blocks, context_shape)
    return ConditionalImageAffineCoupling(
        channels, mask, conditioner, context_shape, invert, scale, log_scale_bound
    )
