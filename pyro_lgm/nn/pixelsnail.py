r"""The PixelSNAIL network (Chen et al., 2018): gated causal convolutions plus causal attention.

A convolutional autoregressive model sees a pixel's past through a receptive field that
grows a few pixels per layer, and PixelCNN++'s down-right shifted convolutions never reach
the pixels above and to the right beyond the first layer's kernel. PixelSNAIL interleaves
its stack of gated residual blocks with *causal self-attention*: each position sends a
query, and every earlier position (raster order) offers a key and a value computed from its
features and the image itself, so after one attention layer every earlier pixel reaches every
prediction, whatever the image width. The paper's blocks are residual blocks with
down-right shifted convolutions, concatenated ELUs and gates (as PixelCNN++), followed by an
attention layer whose keys and values read the block's features, the input image and a fixed
*background* of pixel coordinates (the attention itself is blind to position), whose queries
read the features and the background, and whose output is mixed back into the stream by a
``1 x 1`` gated residual block. A discretized logistic mixture head (PixelCNN++) gives the
parameters of each pixel.

Everything is built from the causal ops of :mod:`pyro_lgm.nn.causal` (the attention is
:class:`~pyro_lgm.nn.causal.CausalAttention`), so
:class:`~pyro_lgm.nn.causal.IncrementalRunner` proves the network causal and samples it with
cached incremental generation.

Departures from the paper: one resolution and no weight normalization; the background is two
coordinate maps in :math:`(-1, 1)` (given by :meth:`PixelSNAIL.context_maps`, so images of
any size share the weights); keys, values and queries are single ``1 x 1`` convolutions of
the concatenated ELU of their inputs (the paper puts a ``1 x 1`` gated residual block before
them). Besides the mixture, per-channel Bernoulli and categorical outputs are offered; for
``C > 1`` they add a small head in which channel :math:`c` of the current pixel reads its
channels before :math:`c` (mask A, as PixelCNN).

References:
    X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. *PixelSNAIL: An Improved Autoregressive
    Generative Model*. ICML 2018.

    T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. *PixelCNN++: Improving the PixelCNN
    with Discretized Logistic Mixture Likelihood and Other Modifications*. ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.causal import (
    CausalAttention,
    Concat,
    ConcatELU,
    Elementwise,
    Gate,
    MaskedConv2d,
    Shift,
)
from pyro_lgm.nn.pixelcnn import ImageNet, Rescale, _add, _int

__all__ = ["PixelSNAIL"]

# (kernel, padding (top, bottom, left, right)): rows above and the current row, the column
# to the left and the current one
_DOWN_RIGHT = ((2, 2), (1, 0, 1, 0))
_POINT = ((1, 1), (0, 0, 0, 0))

#: the constant map of pixel coordinates (the paper's "background")
BACKGROUND = "background"


class PixelSNAIL(ImageNet):
    r"""PixelSNAIL: gated residual blocks of down-right shifted convolutions and causal attention.

    The image (levels rescaled to :math:`[-1, 1]`, plus a channel of ones) enters through a
    strictly causal pair of shifted convolutions, a ``1 x 3`` convolution over the row above
    and a ``2 x 1`` one over the column to the left, added (PixelCNN++'s first ``ul`` map).
    Then ``num_blocks`` blocks, each:

    * ``num_resnets`` gated residual blocks :math:`h + a \odot \sigma(b)`,
      :math:`[a, b] = W_2 * \mathrm{celu}(W_1 * \mathrm{celu}(h)) + V c` with ``2 x 2``
      down-right shifted kernels, the concatenated ELU ``celu`` and the condition :math:`c`
      (if any) added inside the gate;
    * attention (unless ``attention=False``): keys :math:`k = W_k\,\mathrm{celu}([h, x,
      \beta])` and values :math:`v = W_v\,\mathrm{celu}([h, x, \beta])` from the features,
      the rescaled image and the background :math:`\beta` (two coordinate maps), queries
      :math:`q = W_q\,\mathrm{celu}([h, \beta])`, all ``1 x 1``;
      :math:`o = \mathrm{CausalAttention}(q, k, v)` attends to the strictly earlier
      positions, and a ``1 x 1`` gated residual block whose inner sum also receives
      :math:`W_o\,\mathrm{celu}(o)` mixes it into :math:`h`.

    The head is ``elu -> 1 x 1`` to the parameters. Keys may read the image at their own
    pixel because a query only reads earlier keys; every earlier pixel reaches every output
    through the attention (no blind spot), nothing at or after it does.

    Args:
        image_shape: ``(C, H, W)``.
        hidden_channels: ``F``, channels of the residual stream (paper: 256).
        num_blocks: blocks of residual blocks + attention (paper: 12).
        num_resnets: gated residual blocks per block (paper: 4).
        heads: attention heads; divides ``key_channels`` and ``value_channels`` (paper: 1).
        key_channels: channels of queries and keys (paper: 16).
        value_channels: channels of the values (paper: 128).
        output: ``"logistic_mixture"`` (whole pixels, any ``C``), ``"bernoulli"`` (binary
            images) or ``"categorical"`` (:math:`2^{bits}` levels per channel).
        bits: bits per channel (default 8; 1 for Bernoulli).
        num_mixtures: ``K`` logistic components per pixel.
        dropout: dropout probability inside the residual blocks (paper: 0.5 on CIFAR-10).
        attention: include the attention layers (``False`` leaves the convolutional stack
            alone, for comparison).
        num_classes, context_dim, context_channels: at most one condition, added inside every
            gate (and in the ``1 x 1`` blocks that mix the attention in).

    Shapes: ``forward(x, context)`` takes ``x`` ``(B, C, H, W)`` of levels (floats) and
    returns ``(B, param_channels, H, W)`` (:class:`~pyro_lgm.nn.pixelcnn.ImageNet`).

    Example:
        >>> import torch
        >>> net = PixelSNAIL((3, 4, 4), hidden_channels=8, num_blocks=1, num_mixtures=2)
        >>> net(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 20, 4, 4])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 32,
        num_blocks: int = 2,
        num_resnets: int = 2,
        heads: int = 1,
        key_channels: int = 16,
        value_channels: int = 32,
        output: str = "logistic_mixture",
        bits: int | None = None,
        num_mixtures: int = 5,
        dropout: float = 0.0,
        attention: bool = True,
        *,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        if output == "normal":
            raise ValueError(
                "output: PixelSNAIL models discrete images; expected 'logistic_mixture', "
                "'bernoulli' or 'categorical', got 'normal'"
            )
        self._setup_image(
            image_shape, output, bits, num_mixtures, num_classes, context_dim, context_channels
        )
        c = self.image_shape[0]
        f = _int("hidden_channels", hidden_channels, 1)
        nb = _int("num_blocks", num_blocks, 0)
        nr = _int("num_resnets", num_resnets, 0)
        self.heads = _int("heads", heads, 1)
        dk = _int("key_channels", key_channels, 1)
        dv = _int("value_channels", value_channels, 1)
        if not isinstance(attention, bool):
            raise ValueError(f"attention: expected True or False, got {attention!r}")
        if attention and (dk % self.heads or dv % self.heads):
            raise ValueError(
                f"heads: expected a divisor of key_channels={dk} and value_channels={dv}, got "
                f"heads={self.heads}"
            )
        if isinstance(dropout, bool) or not (
            isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.hidden_channels, self.dropout, self.attention = f, float(dropout), attention
        self.key_channels, self.value_channels = dk, dv
        self.num_blocks, self.num_resnets = nb, nr
        self._n = 0
        xs = self.add("xs", Rescale(self.levels, ones=True), "x")
        # strictly causal first map: the row above (three columns) + the pixel to the left
        a = self.add("in.a", MaskedConv2d(c + 1, f, (1, 3), padding=(0, 0, 1, 1)), xs)
        a = self.add("in.a.shift", Shift(down=1), a)
        b = self.add("in.b", MaskedConv2d(c + 1, f, (2, 1), padding=(1, 0, 0, 0)), xs)
        b = self.add("in.b.shift", Shift(right=1), b)
        h = self.add("in", Elementwise(_add), a, b)
        for block in range(nb):
            for _ in range(nr):
                h = self._resnet(h, _DOWN_RIGHT)
            if attention:
                h = self._attention(block, h, xs)
        hidden = self.add("o0", Elementwise(F.elu), h)
        if self.per_channel_output and c > 1:
            # channel c of the current pixel reads its channels before c (mask A)
            m = f * c
            top = self.add("o1", MaskedConv2d(f, m, 1), hidden)
            xr = self.add("xr", Rescale(self.levels), "x")
            own = self.add("o2", MaskedConv2d(c, m, 1, "A", data_channels=c), xr)
            mixed = self.add("o3", Elementwise(_add), top, own)
            hidden = self.add("o4", Elementwise(F.elu), mixed)
            last = MaskedConv2d(m, self.param_channels, 1, "B", data_channels=c)
        else:
            last = MaskedConv2d(f, self.param_channels, 1)
        self.add("out", last, hidden)

    def _attention(self, block: int, h: str, xs: str) -> str:
        """Keys / values from ``[h, x, background]``, queries from ``[h, background]``; the
        attention's output mixed into ``h`` by a ``1 x 1`` gated residual block."""
        c, f = self.image_shape[0], self.hidden_channels
        n = f"att{block}"
        kv_in = self.add(f"{n}.kv_in", Concat(), h, xs, BACKGROUND)
        kv_e = self.add(f"{n}.kv_e", ConcatELU(), kv_in)
        width = 2 * (f + c + 1 + 2)
        k = self.add(f"{n}.k", MaskedConv2d(width, self.key_channels, 1), kv_e)
        v = self.add(f"{n}.v", MaskedConv2d(width, self.value_channels, 1), kv_e)
        q_in = self.add(f"{n}.q_in", Concat(), h, BACKGROUND)
        q_e = self.add(f"{n}.q_e", ConcatELU(), q_in)
        q = self.add(f"{n}.q", MaskedConv2d(2 * (f + 2), self.key_channels, 1), q_e)
        o = self.add(n, CausalAttention(self.heads), q, k, v)
        return self._resnet(h, _POINT, shortcut=(o, self.value_channels))

    def _resnet(self, x: str, kind: tuple, shortcut: tuple[str, int] | None = None) -> str:
        r"""A gated residual block :math:`x + a \odot \sigma(b)` on map ``x``; ``shortcut``
        ``(map, channels)`` is added (through ``celu`` and a ``1 x 1`` convolution) to the
        inner sum."""
        f = self.hidden_channels
        kernel, pads = kind
        n = f"g{self._n}"
        self._n += 1
        e = self.add(f"{n}.e1", ConcatELU(), x)
        h = self.add(f"{n}.c1", MaskedConv2d(2 * f, f, kernel, padding=pads), e)
        if shortcut is not None:
            s, width = shortcut
            es = self.add(f"{n}.es", ConcatELU(), s)
            ns = self.add(f"{n}.nin", MaskedConv2d(2 * width, f, 1), es)
            h = self.add(f"{n}.sum", Elementwise(_add), h, ns)
        h = self.add(f"{n}.e2", ConcatELU(), h)
        if self.dropout:
            h = self.add(f"{n}.drop", Elementwise(nn.Dropout(self.dropout)), h)
        h = self.add(f"{n}.c2", MaskedConv2d(2 * f, 2 * f, kernel, padding=pads), h)
        ctx = self.condition(n, 2 * f)
        if ctx is not None:
            h = self.add(f"{n}.ctx", Elementwise(_add), h, ctx)
        g = self.add(f"{n}.gate", Gate(tanh=False), h)
        return self.add(n, Elementwise(_add), x, g)

    def context_maps(self, context: Any, batch: int, height: int, width: int) -> dict:
        """The condition's maps and the background: row and column coordinates of each
        pixel centre in :math:`(-1, 1)`, ``(batch, 2, H, W)``."""
        maps = super().context_maps(context, batch, height, width)
        param = next(self.parameters())
        kw = dict(dtype=param.dtype, device=param.device)
        rows = (2 * torch.arange(height, **kw) + 1) / height - 1
        cols = (2 * torch.arange(width, **kw) + 1) / width - 1
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
        maps[BACKGROUND] = grid.expand(batch, 2, height, width)
        return maps

    def extra_repr(self) -> str:
        return (
            f"image_shape={self.image_shape}, output={self.output_kind!r}, "
            f"hidden_channels={self.hidden_channels}, num_blocks={self.num_blocks}, "
            f"num_resnets={self.num_resnets}, heads={self.heads}, "
            f"key_channels={self.key_channels}, value_channels={self.value_channels}, "
            f"attention={self.attention}"
        )
