r"""The PixelCNN++ network (Salimans et al., 2017).

PixelCNN++ predicts every pixel with a discretized logistic mixture
(:class:`pyro_lgm.distributions.DiscretizedLogisticMixture`) and replaces masked kernels by
two *shifted* streams: ``u`` sees only the rows above the current pixel (``2 x 3`` kernels
over the row above and the current row, applied to maps already shifted down by one row),
``ul`` sees the rows above and the pixels to the left (``2 x 2`` kernels, the first layer
shifted right by one column). Both go through gated residual blocks
:math:`x + a \odot \sigma(b)`, :math:`[a, b] = W_2 * \mathrm{celu}(W_1 * \mathrm{celu}(x)
+ N\, \mathrm{celu}(s))` with the concatenated ELU :math:`\mathrm{celu}(x) = [\mathrm{elu}(x),
\mathrm{elu}(-x)]`, dropout before :math:`W_2`, and a shortcut input :math:`s` (``u`` for
``ul``; in the second half, the map saved at the same depth of the first half). The first
half downsamples twice with stride-2 shifted convolutions, the second half upsamples with
zero insertion followed by a shifted convolution (a stride-2 transposed convolution) and
consumes the saved maps in reverse, as in a U-Net. Every shift and stride keeps the model
causal: the output at a pixel depends only on the pixels before it in raster order, which
:class:`pyro_lgm.nn.causal.IncrementalRunner` checks when it plans cached generation.

References:
    T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. *PixelCNN++: Improving the PixelCNN
    with Discretized Logistic Mixture Likelihood and Other Modifications*. ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.causal import (
    Concat,
    ConcatELU,
    Elementwise,
    Gate,
    MaskedConv2d,
    Shift,
    ZeroInsert,
)
from pyro_lgm.nn.pixelcnn import ImageNet, Rescale, _add, _int

__all__ = ["PixelCNNPP"]

# the shifted kernels: (kernel, padding (top, bottom, left, right))
_DOWN = ((2, 3), (1, 0, 1, 1))  # rows above and the current row, one column either side
_DOWN_RIGHT = ((2, 2), (1, 0, 1, 0))  # rows above and the current row, the column to the left


class PixelCNNPP(ImageNet):
    r"""PixelCNN++: shifted ``u`` / ``ul`` streams, gated residual blocks, three resolutions.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2 ** (num_scales - 1)``.
        hidden_channels: ``F``, channels of both streams.
        num_resnets: gated residual blocks per resolution in the first half (the second half
            has one more at the lower resolutions, to consume the downsampled maps).
        num_mixtures: ``K`` logistic components per pixel.
        bits: bits per channel (default 8).
        dropout: dropout probability inside the residual blocks.
        num_scales: resolutions (1: none below the image's).
        num_classes, context_dim, context_channels: at most one condition, added to every
            gated block.

    Shapes: ``forward(x, context)`` takes ``x`` ``(B, C, H, W)`` of levels (floats) and returns
    ``(B, K (1 + 2C) + K C (C - 1) / 2, H, W)``: mixture logits, means, log-scales and the
    channel coefficients of each pixel.

    Example:
        >>> import torch
        >>> net = PixelCNNPP((3, 4, 4), hidden_channels=8, num_resnets=1, num_mixtures=2)
        >>> net(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 20, 4, 4])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 80,
        num_resnets: int = 5,
        num_mixtures: int = 10,
        bits: int | None = 8,
        dropout: float = 0.5,
        num_scales: int = 3,
        *,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self._setup_image(
            image_shape,
            "logistic_mixture",
            bits,
            num_mixtures,
            num_classes,
            context_dim,
            context_channels,
        )
        c, h, w = self.image_shape
        f = _int("hidden_channels", hidden_channels, 1)
        r = _int("num_resnets", num_resnets, 0)
        s = _int("num_scales", num_scales, 1)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        step = 2 ** (s - 1)
        if h % step or w % step:
            raise ValueError(
                f"image_shape: height and width must be divisible by 2**(num_scales - 1) = {step} "
                f"for {s} scales, got {h}x{w}"
            )
        self.hidden_channels, self.dropout = f, float(dropout)
        self._n = 0
        self.add("xs", Rescale(self.levels, ones=True), "x")
        # first layer: u sees the rows above; ul also the pixels to the left
        a = self.add("u.in", MaskedConv2d(c + 1, f, (2, 3), padding=(1, 0, 1, 1)), "xs")
        u = self.add("u0", Shift(down=1), a)
        b = self.add("ul.a", MaskedConv2d(c + 1, f, (1, 3), padding=(0, 0, 1, 1)), "xs")
        b = self.add("ul.b", Shift(down=1), b)
        d = self.add("ul.c", MaskedConv2d(c + 1, f, (2, 1), padding=(1, 0, 0, 0)), "xs")
        d = self.add("ul.d", Shift(right=1), d)
        ul = self.add("ul0", Elementwise(_add), b, d)
        saved_u, saved_ul = [u], [ul]
        for level in range(s):
            scale = 2**level
            if level:
                u = self.add(f"down{level}.u", self._conv(_DOWN, f, f, stride=2), u)
                ul = self.add(f"down{level}.ul", self._conv(_DOWN_RIGHT, f, f, stride=2), ul)
                saved_u.append(u)
                saved_ul.append(ul)
            for _ in range(r):
                u = self._resnet(u, None, _DOWN, scale)
                ul = self._resnet(ul, [u], _DOWN_RIGHT, scale)
                saved_u.append(u)
                saved_ul.append(ul)
        u, ul = saved_u.pop(), saved_ul.pop()
        for level in reversed(range(s)):
            scale = 2**level
            for _ in range(r + (1 if level < s - 1 else 0)):
                u = self._resnet(u, [saved_u.pop()], _DOWN, scale)
                ul = self._resnet(ul, [u, saved_ul.pop()], _DOWN_RIGHT, scale)
            if level:
                u = self.add(f"up{level}.zu", ZeroInsert(), u)
                u = self.add(f"up{level}.u", self._conv(_DOWN, f, f), u)
                ul = self.add(f"up{level}.zul", ZeroInsert(), ul)
                ul = self.add(f"up{level}.ul", self._conv(_DOWN_RIGHT, f, f), ul)
        assert not saved_u and not saved_ul
        self.add("o0", Elementwise(F.elu), ul)
        self.add("out", MaskedConv2d(f, self.param_channels, 1), "o0")

    @staticmethod
    def _conv(kind: tuple, cin: int, cout: int, stride: int = 1) -> MaskedConv2d:
        kernel, pads = kind
        return MaskedConv2d(cin, cout, kernel, padding=pads, stride=stride)

    def _resnet(self, x: str, shortcuts: list[str] | None, kind: tuple, scale: int) -> str:
        r"""A gated residual block :math:`x + a \odot \sigma(b)` on map ``x``."""
        f = self.hidden_channels
        n = f"g{self._n}"
        self._n += 1
        e = self.add(f"{n}.e1", ConcatELU(), x)
        h = self.add(f"{n}.c1", self._conv(kind, 2 * f, f), e)
        if shortcuts:
            s = shortcuts[0] if len(shortcuts) == 1 else self.add(f"{n}.cat", Concat(), *shortcuts)
            es = self.add(f"{n}.es", ConcatELU(), s)
            ns = self.add(f"{n}.nin", MaskedConv2d(2 * f * len(shortcuts), f, 1), es)
            h = self.add(f"{n}.sum", Elementwise(_add), h, ns)
        h = self.add(f"{n}.e2", ConcatELU(), h)
        if self.dropout:
            h = self.add(f"{n}.drop", Elementwise(nn.Dropout(self.dropout)), h)
        h = self.add(f"{n}.c2", self._conv(kind, 2 * f, 2 * f), h)
        ctx = self.condition(n, 2 * f, scale)
        if ctx is not None:
            h = self.add(f"{n}.ctx", Elementwise(_add), h, ctx)
        g = self.add(f"{n}.gate", Gate(tanh=False), h)
        return self.add(n, Elementwise(_add), x, g)
