r"""PixelCNN networks: the masked-convolution PixelCNN and the Gated PixelCNN.

PixelCNN (van den Oord et al., 2016a) models an image as a product of per-element
conditionals in raster and channel order and computes all of them in one pass of masked
convolutions: a first ``7 x 7`` convolution with mask A (the current pixel hidden),
residual blocks around a ``3 x 3`` mask-B convolution, and ``1 x 1`` mask-B output layers.
Its receptive field has a *blind spot*: stacked ``3 x 3`` masks never reach the pixels up
and to the right beyond the first layer's reach.

Gated PixelCNN (van den Oord et al., 2016b) removes the blind spot with two stacks: a
*vertical* stack whose convolutions see the rows above (all columns within the kernel) and
a *horizontal* stack that sees the current row to the left; the vertical stack feeds the
horizontal one through a ``1 x 1`` convolution of its map shifted down by one row, which
keeps the model causal. Both use the gated activation
:math:`\tanh(W_f * x + V_f h) \odot \sigma(W_g * x + V_g h)`, where :math:`h` is an optional
condition: a class label, a vector, or a feature map (PixelVAE's decoder; resized to the
image by nearest-neighbour interpolation and mapped by ``1 x 1`` convolutions).

The networks only compute parameters; :mod:`pyro_lgm.distributions.pixelcnn` turns them into
distributions over discrete images, and
:mod:`pyro_lgm.distributions.autoregressive_normal` turns a network with ``output="normal"``
into an autoregressive Gaussian over a real-valued map (PixelVAE's prior over a latent
map). They are :class:`pyro_lgm.nn.causal.CausalNet` graphs, so the distributions can sample
with cached incremental generation.

References:
    A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
    ICML 2016.

    A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu.
    *Conditional Image Generation with PixelCNN Decoders*. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.causal import CausalNet, Elementwise, Gate, MaskedConv2d, Pointwise, Shift

__all__ = ["GatedPixelCNN", "ImageNet", "PixelCNN"]

OUTPUTS = ("bernoulli", "categorical", "logistic_mixture", "normal")


def _int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        rng = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name}: expected an int {rng}, got {value!r}")
    return value


class Rescale(Pointwise):
    """Integer levels ``0 .. L-1`` to ``[-1, 1]``; with ``levels=None`` (real-valued maps)
    the values pass unchanged. With ``ones=True`` also a channel of ones (it tells the first
    convolutions where the zero padding of the border starts)."""

    def __init__(self, levels: int | None, ones: bool = False) -> None:
        super().__init__()
        self.levels = None if levels is None else int(levels)
        self.ones = bool(ones)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.levels is None else x * (2.0 / (self.levels - 1)) - 1.0
        if self.ones:
            y = torch.cat([y, torch.ones_like(y[:, :1])], 1)
        return y

    def ready(self, r: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.ones:
            return torch.cat([r, torch.zeros_like(r[:1])], 0)
        return r.clone()


class ImageNet(CausalNet):
    r"""Shared set-up of the image networks: the output head and the condition.

    Attributes read by :mod:`pyro_lgm.distributions.pixelcnn` and
    :mod:`pyro_lgm.distributions.autoregressive_normal`: ``image_shape`` ``(C, H, W)``,
    ``output_kind`` (``"bernoulli"``, ``"categorical"``, ``"logistic_mixture"`` or
    ``"normal"``), ``bits`` (levels :math:`2^{bits}`; ``None`` for ``"normal"``, whose
    values are real), ``levels`` (:math:`2^{bits}`, or ``None``), ``num_mixtures``,
    ``context_kind`` (``None``, ``"class"``, ``"vector"``, ``"map"``) with
    ``num_classes`` / ``context_dim`` / ``context_channels``, and ``param_channels`` (the
    width of the output map: ``C`` groups of 1 or :math:`2^{bits}` logits, ``C`` groups of
    two numbers - a location and an unconstrained scale parameter - for ``"normal"``, or the
    mixture's :math:`K (1 + 2C) + K C (C - 1) / 2` numbers per pixel). ``per_channel_output``
    is ``False`` for the mixture (whole pixels are predicted from earlier pixels only).

    The input of a discrete output holds levels ``0 .. 2^{bits} - 1`` and is rescaled to
    ``[-1, 1]``; the input of a ``"normal"`` output is real and enters unchanged.
    """

    def _setup_image(
        self,
        image_shape: Sequence[int],
        output: str,
        bits: int | None,
        num_mixtures: int,
        num_classes: int | None,
        context_dim: int | None,
        context_channels: int | None,
    ) -> None:
        if (
            not isinstance(image_shape, (tuple, list, torch.Size))
            or len(image_shape) != 3
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in image_shape
            )
        ):
            raise ValueError(f"image_shape: expected (C, H, W) positive ints, got {image_shape!r}")
        self.image_shape = tuple(int(v) for v in image_shape)
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {list(OUTPUTS)}, got {output!r}")
        self.output_kind = output
        c = self.image_shape[0]
        self.bits: int | None
        if output == "bernoulli":
            if bits not in (None, 1):
                raise ValueError(
                    f"bits: Bernoulli outputs model binary images (bits=1), got {bits!r}"
                )
            self.bits, per = 1, 1
        elif output == "normal":
            if bits is not None:
                raise ValueError(
                    f"bits: a 'normal' output models real values and has no levels; pass "
                    f"bits=None, got {bits!r}"
                )
            self.bits, per = None, 2  # a location and an unconstrained scale per channel
        else:
            self.bits = _int("bits", 8 if bits is None else bits, 1, 16)
            per = 2**self.bits
        self.num_mixtures = _int("num_mixtures", num_mixtures, 1)
        k = self.num_mixtures
        if output == "logistic_mixture":
            self.per_channel_output = False
            self.param_channels = k * (1 + 2 * c) + k * (c * (c - 1) // 2)
            self.data_groups = 1
        else:
            self.per_channel_output = True
            self.param_channels = c * per
            self.data_groups = c
        given = [
            (n, v)
            for n, v in (
                ("num_classes", num_classes),
                ("context_dim", context_dim),
                ("context_channels", context_channels),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"{given[1][0]}: give one condition (num_classes, context_dim or "
                f"context_channels), got {', '.join(n for n, _ in given)}"
            )
        self.num_classes = self.context_dim = self.context_channels = None
        self.context_kind: str | None = None
        if given:
            name, value = given[0]
            minimum = 2 if name == "num_classes" else 1
            setattr(self, name, _int(name, value, minimum))
            self.context_kind = {
                "num_classes": "class",
                "context_dim": "vector",
                "context_channels": "map",
            }[name]
        self.conditioners = nn.ModuleDict()
        self._cond_scale: dict[str, int] = {}

    @property
    def levels(self) -> int | None:
        """The number of levels :math:`2^{bits}` of a discrete output; ``None`` for
        ``"normal"`` (real values)."""
        return None if self.bits is None else 2**self.bits

    def condition(self, name: str, width: int, scale: int = 1) -> str | None:
        """Register a projection of the condition to ``width`` channels at ``1 / scale`` of
        the image size; returns the name of the constant map it fills (``None``: none)."""
        if self.context_kind is None:
            return None
        if self.context_kind == "map":
            proj: nn.Module = nn.Conv2d(self.context_channels, width, 1, bias=False)  # type: ignore[arg-type]
        else:
            n_in = self.num_classes if self.context_kind == "class" else self.context_dim
            proj = nn.Linear(n_in, width, bias=False)  # type: ignore[arg-type]
        key = f"ctx_{name}"
        self.conditioners[key] = proj
        self._cond_scale[key] = scale
        return key

    def context_batch_shape(self, context: Any) -> torch.Size:
        """Check a context; its batch shape (``()`` without a condition)."""
        kind = self.context_kind
        if kind is None:
            if context is not None:
                raise ValueError("context: the network is not conditional; pass context=None")
            return torch.Size()
        if not isinstance(context, torch.Tensor):
            raise ValueError(f"context: the network is conditional ({kind}); pass a tensor")
        param = next(self.parameters())
        if context.device != param.device:
            raise ValueError(f"context: expected a tensor on {param.device}, got {context.device}")
        if kind == "class":
            if context.is_floating_point() or context.is_complex() or context.dtype == torch.bool:
                raise ValueError(
                    f"context: expected integer class labels, got dtype {context.dtype}"
                )
            if context.numel() and (
                int(context.min()) < 0 or int(context.max()) >= self.num_classes
            ):
                raise ValueError(
                    f"context: expected class labels in [0, {self.num_classes - 1}], got values in "
                    f"[{int(context.min())}, {int(context.max())}]"
                )
            return context.shape
        if context.dtype != param.dtype:
            raise ValueError(f"context: expected dtype {param.dtype}, got {context.dtype}")
        if not bool(torch.isfinite(context).all()):
            raise ValueError("context: expected finite values, got NaN or infinity")
        if kind == "vector":
            if context.dim() < 1 or context.shape[-1] != self.context_dim:
                raise ValueError(
                    f"context: expected shape (..., {self.context_dim}), got {tuple(context.shape)}"
                )
            return context.shape[:-1]
        if context.dim() < 3 or context.shape[-3] != self.context_channels:
            raise ValueError(
                f"context: expected a feature map (..., {self.context_channels}, h, w), got "
                f"{tuple(context.shape)}"
            )
        return context.shape[:-3]

    def context_maps(self, context: Any, batch: int, height: int, width: int) -> dict:
        if self.context_kind is None:
            return {}
        if self.context_kind == "class":
            feats = F.one_hot(context.long(), self.num_classes).to(next(self.parameters()).dtype)
        else:
            feats = context
        out = {}
        for key, proj in self.conditioners.items():
            s = self._cond_scale[key]
            size = (-(-height // s), -(-width // s))
            if self.context_kind == "map":
                m = F.interpolate(feats, size=size, mode="nearest")
                out[key] = proj(m)
            else:
                out[key] = proj(feats)[:, :, None, None]
        return out


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


class PixelCNN(ImageNet):
    r"""The masked-convolution PixelCNN (van den Oord et al., 2016a).

    ``7 x 7`` mask-A convolution to ``2h`` channels, then ``num_layers`` residual blocks
    :math:`x + W_3(\mathrm{relu}(W_2 * \mathrm{relu}(W_1 \mathrm{relu}(x))))` (``1 x 1``
    down to ``h``, ``3 x 3`` mask B, ``1 x 1`` back to ``2h``), then
    ``relu -> 1 x 1 -> relu -> 1 x 1`` to the parameters; every layer carries the channel
    groups of the image. The receptive field has the blind spot of stacked masks (tested as
    a documented property).

    Args:
        image_shape: ``(C, H, W)``.
        hidden_channels: ``h``.
        num_layers: residual blocks.
        output: ``"bernoulli"`` (binary images), ``"categorical"`` (:math:`2^{bits}`-way
            softmax per channel), ``"logistic_mixture"`` (PixelCNN++'s discretized
            logistic mixture per pixel) or ``"normal"`` (real-valued maps: a location and
            an unconstrained scale parameter per channel, laid out as ``(C, 2)``; see
            :class:`pyro_lgm.distributions.AutoregressiveNormalMap`).
        bits: bits per channel (1 for Bernoulli; default 8 for the categorical and the
            mixture; ``None`` for ``"normal"``).
        num_mixtures: ``K`` of the logistic mixture.
        first_kernel, kernel: kernel sizes of the first and the residual convolutions.
        num_classes, context_dim, context_channels: at most one condition (added to the
            input of every residual block).

    Shapes: ``forward(x, context)`` takes ``x`` ``(B, C, H, W)`` of levels (floats; real
    values for ``"normal"``) and returns ``(B, param_channels, H, W)``.

    Example:
        >>> net = PixelCNN((1, 5, 5), hidden_channels=8, num_layers=2)
        >>> net(torch.zeros(3, 1, 5, 5)).shape
        torch.Size([3, 1, 5, 5])
        >>> real = PixelCNN((2, 5, 5), 8, 2, output="normal")  # (loc, scale param) per channel
        >>> real(torch.randn(3, 2, 5, 5)).reshape(3, 2, 2, 5, 5).shape
        torch.Size([3, 2, 2, 5, 5])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 64,
        num_layers: int = 7,
        output: str = "bernoulli",
        bits: int | None = None,
        num_mixtures: int = 5,
        *,
        first_kernel: int = 7,
        kernel: int = 3,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self._setup_image(
            image_shape, output, bits, num_mixtures, num_classes, context_dim, context_channels
        )
        c, g = self.image_shape[0], self.data_groups
        h = _int("hidden_channels", hidden_channels, 1) * g
        _int("num_layers", num_layers, 0)
        relu = Elementwise(F.relu)
        self.add("xs", Rescale(self.levels), "x")
        self.add("a", MaskedConv2d(c, 2 * h, first_kernel, "A", data_channels=g), "xs")
        cur = "a"
        for layer in range(num_layers):
            self.add(f"r{layer}.0", relu, cur)
            self.add(f"r{layer}.1", MaskedConv2d(2 * h, h, 1, "B", data_channels=g), f"r{layer}.0")
            self.add(f"r{layer}.2", relu, f"r{layer}.1")
            self.add(f"r{layer}.3", MaskedConv2d(h, h, kernel, "B", data_channels=g), f"r{layer}.2")
            self.add(f"r{layer}.4", relu, f"r{layer}.3")
            self.add(f"r{layer}.5", MaskedConv2d(h, 2 * h, 1, "B", data_channels=g), f"r{layer}.4")
            nxt = self.add(f"r{layer}", Elementwise(_add), cur, f"r{layer}.5")
            ctx = self.condition(f"r{layer}", 2 * h)
            if ctx is not None:
                nxt = self.add(f"r{layer}.c", Elementwise(_add), nxt, ctx)
            cur = nxt
        self.add("o0", relu, cur)
        self.add("o1", MaskedConv2d(2 * h, 2 * h, 1, "B", data_channels=g), "o0")
        self.add("o2", relu, "o1")
        self.add("out", MaskedConv2d(2 * h, self.param_channels, 1, "B", data_channels=g), "o2")


class GatedPixelCNN(ImageNet):
    r"""The Gated PixelCNN (van den Oord et al., 2016b): no blind spot, conditional.

    Layer :math:`l` of the vertical stack is
    :math:`v_{l+1} = g(W^v_l * v_l + V^v_l h)` with a ``(k//2 + 1) x k`` kernel over the rows
    above and the current row; the horizontal stack is
    :math:`x_{l+1} = x_l + U_l\, g(W^h_l * x_l + L_l\,\mathrm{shift}_{\downarrow}(W^v_l * v_l) +
    V^h_l h)` with a ``1 x (k//2 + 1)`` kernel over the current row up to the current
    position (mask A in the first layer, B later, with the channel groups), where
    :math:`g([a, b]) = \tanh(a) \odot \sigma(b)` and :math:`\mathrm{shift}_{\downarrow}`
    moves the vertical map one row down (so row :math:`i` of the horizontal stack sees only
    rows :math:`< i` through it). The first layer has kernel ``first_kernel``, later layers
    ``kernel``; the head is ``relu -> 1 x 1 -> relu -> 1 x 1`` (mask B).

    Args:
        image_shape: ``(C, H, W)``.
        hidden_channels: channels of both stacks (per image channel group).
        num_layers: gated layers (at least 1).
        output, bits, num_mixtures: as :class:`PixelCNN`.
        first_kernel, kernel: odd kernel sizes.
        num_classes: condition on a class label (``context`` integer labels ``(...)``).
        context_dim: condition on a vector ``h`` (``context`` ``(..., context_dim)``).
        context_channels: condition on a feature map ``h`` (``context``
            ``(..., context_channels, h, w)``, any ``h, w``; resized to the image).

    Example:
        >>> net = GatedPixelCNN((3, 4, 4), hidden_channels=2, num_layers=2, output="categorical",
        ...                     bits=2, num_classes=10)
        >>> net(torch.zeros(5, 3, 4, 4), torch.arange(5)).shape
        torch.Size([5, 12, 4, 4])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 64,
        num_layers: int = 8,
        output: str = "bernoulli",
        bits: int | None = None,
        num_mixtures: int = 5,
        *,
        first_kernel: int = 7,
        kernel: int = 3,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self._setup_image(
            image_shape, output, bits, num_mixtures, num_classes, context_dim, context_channels
        )
        for name, k in (("first_kernel", first_kernel), ("kernel", kernel)):
            if _int(name, k, 1) % 2 == 0:
                raise ValueError(f"{name}: expected an odd kernel size, got {k}")
        c, g = self.image_shape[0], self.data_groups
        n = _int("hidden_channels", hidden_channels, 1) * g
        _int("num_layers", num_layers, 1)
        gate, relu = Gate(), Elementwise(F.relu)
        down = Shift(down=1)
        self.add("xs", Rescale(self.levels), "x")
        v, hcur = "xs", "xs"
        for layer in range(num_layers):
            k = first_kernel if layer == 0 else kernel
            cin = c if layer == 0 else n
            p = k // 2
            vconv = MaskedConv2d(cin, 2 * n, (p + 1, k), padding=(p, 0, p, p))
            hconv = MaskedConv2d(
                cin,
                2 * n,
                (1, p + 1),
                "A" if layer == 0 else "B",
                data_channels=g,
                out_splits=2,
                padding=(0, 0, p, 0),
                center=(0, p),
            )
            pre_v = self.add(f"v{layer}.pre", vconv, v)
            self.add(f"v{layer}.shift", down, pre_v)
            self.add(f"v{layer}.link", MaskedConv2d(2 * n, 2 * n, 1), f"v{layer}.shift")
            pre_h = self.add(f"h{layer}.conv", hconv, hcur)
            pre_h = self.add(f"h{layer}.pre", Elementwise(_add), pre_h, f"v{layer}.link")
            ctx_v = self.condition(f"v{layer}", 2 * n)
            ctx_h = self.condition(f"h{layer}", 2 * n)
            if ctx_v is not None:
                pre_v = self.add(f"v{layer}.ctx", Elementwise(_add), pre_v, ctx_v)
                pre_h = self.add(f"h{layer}.ctx", Elementwise(_add), pre_h, ctx_h)
            v = self.add(f"v{layer}", gate, pre_v)
            gated = self.add(f"h{layer}.gate", gate, pre_h)
            res = self.add(
                f"h{layer}.res",
                MaskedConv2d(n, n, 1, "B", data_channels=g),
                gated,
            )
            hcur = res if layer == 0 else self.add(f"h{layer}", Elementwise(_add), hcur, res)
        self.add("o0", relu, hcur)
        self.add("o1", MaskedConv2d(n, 2 * n, 1, "B", data_channels=g), "o0")
        self.add("o2", relu, "o1")
        self.add("out", MaskedConv2d(2 * n, self.param_channels, 1, "B", data_channels=g), "o2")
