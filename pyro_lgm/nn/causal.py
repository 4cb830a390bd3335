r"""Causal image networks: masked convolutions, the ops they are built from, cached sampling.

An autoregressive image model predicts element :math:`(c, i, j)` of a ``(C, H, W)`` image
from the elements before it in raster order (rows top to bottom, pixels left to right) and,
inside a pixel, channel order (R, then G, then B). Its networks here are small graphs of
*causal ops* over named feature maps:

* :class:`MaskedConv2d`: a convolution with explicit (possibly asymmetric) zero padding, a
  stride, and an optional mask on its weight: mask ``"A"`` hides the current pixel, mask
  ``"B"`` lets a position see itself, and with ``data_channels = C > 1`` the channels are
  split into ``C`` contiguous groups so that at the current pixel group ``g`` sees only the
  groups before it (``"A"``) or up to itself (``"B"``): R sees nothing of the pixel, G sees
  R, B sees R and G (van den Oord et al., 2016a). ``out_splits=2`` applies the grouping to
  each half of the output separately (a gated activation splits it in two).
* :class:`Shift` (move a map down / right by whole rows / columns) and :class:`ZeroInsert`
  (stride-2 upsampling by inserting zeros; followed by a convolution it is a transposed
  convolution).
* pointwise ops (:class:`Pointwise` and subclasses): the same function at every position,
  with a declared channel dependence.
* :class:`CausalAttention`: multi-head dot-product attention of the query at each position
  over the keys and values of the positions strictly before it in raster order (PixelSNAIL,
  Chen et al., 2018): one op that reaches every earlier pixel.

:class:`CausalNet` runs such a graph in one parallel pass (``forward``, for ``log_prob``) and
plans *cached incremental generation* (Ramachandran et al., 2017): from the masks, paddings
and strides alone it derives for every feature-map position the first generation step at
which its value is final, and :class:`IncrementalRunner` then computes each position of each
map exactly at those steps from cached neighbours, so a new element costs a few small
products instead of a full pass. Because the plan comes from the structure and not from the
weights, it holds for any parameter values; the same analysis proves the network causal (a
prediction that would need an element at or after its own raises ``ValueError``).

References:
    A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
    ICML 2016.

    X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. *PixelSNAIL: An Improved Autoregressive
    Generative Model*. ICML 2018.

    P. Ramachandran, T. L. Paine, P. Khorrami, M. Babaeizadeh, S. Chang, Y. Zhang,
    M. Hasegawa-Johnson, R. H. Campbell, T. S. Huang. *Fast Generation for Convolutional
    Autoregressive Models*. ICLR 2017 workshop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.dot_attention import multi_head_attention

__all__ = [
    "CausalAttention",
    "CausalNet",
    "Concat",
    "ConcatELU",
    "Elementwise",
    "Gate",
    "IncrementalRunner",
    "IncrementalSession",
    "MaskedConv2d",
    "Pointwise",
    "Shift",
    "ZeroInsert",
    "conv_mask",
]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"{name}: expected a positive int or a pair of them, got {value!r}")
    return int(value[0]), int(value[1])


def _groups_of(channels: int, groups: int, splits: int, name: str) -> torch.Tensor:
    """Channel -> group index: ``splits`` equal parts, each cut into ``groups`` blocks."""
    if channels % (groups * splits):
        raise ValueError(
            f"{name}: {channels} channels cannot be split into {splits} part(s) of "
            f"{groups} equal channel group(s) (data_channels={groups})"
        )
    part = channels // splits
    return (torch.arange(channels) % part) * groups // part


def conv_mask(
    out_channels: int,
    in_channels: int,
    kernel_size: tuple[int, int],
    mask_type: str,
    center: tuple[int, int],
    data_channels: int = 1,
    out_splits: int = 1,
    in_splits: int = 1,
) -> torch.Tensor:
    r"""The 0/1 mask ``(out, in, kh, kw)`` of a causal convolution.

    Kernel taps before ``center`` in raster order are ones, taps after it zeros. At the
    centre, output group :math:`g` sees input group :math:`h` when :math:`h < g` (mask
    ``"A"``) or :math:`h \le g` (mask ``"B"``), with channels split into ``data_channels``
    contiguous groups (inside each of ``out_splits`` / ``in_splits`` equal parts).

    Example:
        >>> conv_mask(1, 1, (3, 3), "A", (1, 1))[0, 0]
        tensor([[1., 1., 1.],
                [1., 0., 0.],
                [0., 0., 0.]])
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A', 'B' or None, got {mask_type!r}")
    kh, kw = kernel_size
    cy, cx = center
    if not (0 <= cy < kh and 0 <= cx < kw):
        raise ValueError(f"center: expected a tap inside the {kh}x{kw} kernel, got {center}")
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    mask[:, :, :cy, :] = 1.0
    mask[:, :, cy, :cx] = 1.0
    g_out = _groups_of(out_channels, data_channels, out_splits, "out_channels")
    g_in = _groups_of(in_channels, data_channels, in_splits, "in_channels")
    sees = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, cy, cx] = sees.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    r"""A 2-D convolution with explicit zero padding, a stride and an optional causal mask.

    .. math::
        y = b + (W \odot M) \star \operatorname{pad}(x)

    ``padding = (top, bottom, left, right)`` zeros are added before the (unpadded)
    convolution, so causal kernels need no cropping: a ``(2, 3)`` kernel with padding
    ``(1, 0, 1, 1)`` sees the row above and the current row, three columns wide.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: ``k`` or ``(kh, kw)``.
        mask_type: ``None`` (no mask), ``"A"`` (the centre pixel hidden; the first layer) or
            ``"B"`` (the centre visible; later layers). See :func:`conv_mask`.
        data_channels: channel groups of the image (``C``; 1 for a grey image or when the
            model predicts whole pixels at once).
        out_splits, in_splits: equal parts of the output / input that are each grouped
            (``out_splits=2`` for the two halves of a gated activation).
        padding: ``(top, bottom, left, right)``; default ``kh // 2`` / ``kw // 2`` on every
            side ("same" size for odd kernels).
        center: the kernel tap of the current position (default ``(kh // 2, kw // 2)``).
        stride: ``s`` or ``(sh, sw)``.
        bias: learn an additive bias.

    Shapes: input ``(B, in_channels, H, W)``; output ``(B, out_channels, H', W')``.

    Example:
        >>> conv = MaskedConv2d(3, 6, 7, mask_type="A", data_channels=3)
        >>> conv(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 6, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        mask_type: str | None = None,
        *,
        data_channels: int = 1,
        out_splits: int = 1,
        in_splits: int = 1,
        padding: Sequence[int] | None = None,
        center: Sequence[int] | None = None,
        stride: int | Sequence[int] = 1,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size, "kernel_size")
        super().__init__(
            in_channels, out_channels, (kh, kw), stride=_pair(stride, "stride"), bias=bias
        )
        if padding is None:
            padding = (kh // 2, kh // 2, kw // 2, kw // 2)
        if (
            not isinstance(padding, (tuple, list))
            or len(padding) != 4
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding)
        ):
            raise ValueError(
                f"padding: expected (top, bottom, left, right) non-negative ints, got {padding!r}"
            )
        self.pads = tuple(int(p) for p in padding)
        self.mask_type = mask_type
        if mask_type is None:
            mask = torch.ones(out_channels, in_channels, kh, kw)
        else:
            c = (kh // 2, kw // 2) if center is None else tuple(center)
            mask = conv_mask(
                out_channels,
                in_channels,
                (kh, kw),
                mask_type,
                c,  # type: ignore[arg-type]
                data_channels,
                out_splits,
                in_splits,
            )
        self.register_buffer("mask", mask)

    def masked_weight(self) -> torch.Tensor:
        """``W * M``, the weight the convolution uses."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.masked_weight(), self.bias, self.stride)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}, mask_type={self.mask_type}"


class Shift(nn.Module):
    """Move a map ``down`` rows and ``right`` columns, filling with zeros (size kept).

    Example:
        >>> Shift(down=1)(torch.ones(1, 1, 2, 2))[0, 0]
        tensor([[0., 0.],
                [1., 1.]])
    """

    def __init__(self, down: int = 0, right: int = 0) -> None:
        super().__init__()
        if down < 0 or right < 0:
            raise ValueError(f"down, right: expected non-negative shifts, got {down}, {right}")
        self.down, self.right = int(down), int(right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (self.right, 0, self.down, 0))
        return x[..., :h, :w]

    def source(self, h: int, w: int) -> tuple[int, int, torch.Tensor]:
        """Output size and, per output position, the flat input position (``-1``: zero)."""
        i = torch.arange(h)[:, None] - self.down
        j = torch.arange(w)[None, :] - self.right
        ok = (i >= 0) & (j >= 0)
        return h, w, torch.where(ok, i * w + j, torch.full_like(i * j, -1)).flatten()


class ZeroInsert(nn.Module):
    """Stride-2 upsampling by inserting zeros: ``y[2a, 2b] = x[a, b]``, zero elsewhere.

    Followed by a convolution it is a transposed convolution with stride 2.

    Example:
        >>> ZeroInsert()(torch.ones(1, 1, 1, 2))[0, 0]
        tensor([[1., 0., 1., 0.],
                [0., 0., 0., 0.]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.new_zeros(b, c, 2 * h, 2 * w)
        y[..., ::2, ::2] = x
        return y

    def source(self, h: int, w: int) -> tuple[int, int, torch.Tensor]:
        i = torch.arange(2 * h)[:, None]
        j = torch.arange(2 * w)[None, :]
        ok = (i % 2 == 0) & (j % 2 == 0)
        src = (i // 2) * w + j // 2
        return 2 * h, 2 * w, torch.where(ok, src, torch.full_like(src, -1)).flatten()


class Pointwise(nn.Module):
    """The same function at every position; base class of the pointwise causal ops.

    ``forward(*inputs)`` maps maps ``(B, C_k, H, W)`` (or ``(B, C_k, 1, 1)`` context
    vectors, broadcast) to ``(B, C_out, H, W)`` without mixing positions, so it also runs on
    ``(B, C_k, n, 1)`` gathers of ``n`` positions. ``ready(*ready)`` says from which input
    channels each output channel is computed: given each input's per-channel step maps
    ``(C_k, H, W)`` (the step from which each value can be final) it returns the output's.
    A subclass must say it: the plan of cached generation is derived from it, and a
    dependence left out would let a value be computed too early.
    """

    def ready(self, *ready: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}.ready: declare the channel dependence")


class Elementwise(Pointwise):
    """``fn(*inputs)`` acting channel by channel: output channel ``k`` reads channel ``k`` of
    each input (inputs of one channel count, or broadcast context vectors).

    Example:
        >>> Elementwise(torch.add)(torch.ones(1, 2, 1, 1), torch.ones(1, 2, 1, 1)).flatten()
        tensor([2., 2.])
    """

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(*inputs)

    def ready(self, *ready: torch.Tensor) -> torch.Tensor:
        return torch.stack(torch.broadcast_tensors(*ready)).amax(0)


class Gate(Pointwise):
    r"""The gated activation :math:`\tanh(a) \odot \sigma(b)` of the two halves ``[a, b]``
    (:math:`a \odot \sigma(b)` with ``tanh=False``, PixelCNN++'s gated residual).

    Example:
        >>> Gate()(torch.zeros(1, 4, 1, 1)).shape
        torch.Size([1, 2, 1, 1])
    """

    def __init__(self, tanh: bool = True) -> None:
        super().__init__()
        self.tanh = bool(tanh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return (torch.tanh(a) if self.tanh else a) * torch.sigmoid(b)

    def ready(self, r: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a, b = r.chunk(2, dim=0)
        return torch.maximum(a, b)


class Concat(Pointwise):
    """Channel concatenation of the inputs.

    Example:
        >>> Concat()(torch.zeros(1, 2, 3, 3), torch.ones(1, 1, 3, 3)).shape
        torch.Size([1, 3, 3, 3])
    """

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, 1)

    def ready(self, *ready: torch.Tensor) -> torch.Tensor:
        return torch.cat(ready, 0)


class ConcatELU(Pointwise):
    r"""The concatenated ELU :math:`[\mathrm{elu}(x), \mathrm{elu}(-x)]` (PixelCNN++).

    Example:
        >>> ConcatELU()(torch.tensor([1.0]).reshape(1, 1, 1, 1)).flatten()
        tensor([ 1.0000, -0.6321])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(torch.cat([x, -x], 1))

    def ready(self, r: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([r, r], 0)


class CausalAttention(nn.Module):
    r"""Causal multi-head attention over the raster order of three maps ``q``, ``k``, ``v``.

    With positions :math:`p = i W + j` in raster order and channels cut into ``heads``
    contiguous groups (:func:`pyro_lgm.nn.dot_attention.multi_head_attention`), head
    :math:`m` at position :math:`p` returns

    .. math::
        o^{m}_p = \sum_{p' < p} \frac{\exp(q^{m}_p \cdot k^{m}_{p'} / \sqrt{d})}
        {\sum_{p'' < p} \exp(q^{m}_p \cdot k^{m}_{p''} / \sqrt{d})} \, v^{m}_{p'},

    :math:`d` the channels of a query head, and zeros at :math:`p = 0` (nothing before it).
    The query is read at :math:`p` itself, keys and values only at earlier positions, so the
    output at :math:`p` may be fed keys and values computed from the pixels up to and
    including their own position (PixelSNAIL feeds them the image). ``strict=False`` lets
    :math:`p` also attend to itself (:math:`p' \le p`); with keys that read the current
    pixel that variant is not causal, and :class:`IncrementalRunner` refuses it.

    ``ready(rq, rk, rv)`` gives the plan of cached generation: every output channel at
    :math:`p` is ready at the latest of the query's channels at :math:`p` and of the key and
    value channels at every :math:`p' < p` (a running maximum over the raster order).

    Args:
        heads: number of heads; divides the channels of ``q`` / ``k`` and of ``v``.
        strict: attend to earlier positions only (``True``) or also to the current one.

    Shapes: ``q`` and ``k`` ``(B, Cq, H, W)``, ``v`` ``(B, Cv, H, W)``; output
    ``(B, Cv, H, W)``.

    Example:
        >>> att = CausalAttention(heads=2)
        >>> out = att(torch.randn(1, 4, 2, 3), torch.randn(1, 4, 2, 3), torch.randn(1, 6, 2, 3))
        >>> out.shape, out[0, :, 0, 0].abs().max().item()
        (torch.Size([1, 6, 2, 3]), 0.0)
    """

    def __init__(self, heads: int = 1, strict: bool = True) -> None:
        super().__init__()
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads: expected an int >= 1, got {heads!r}")
        if not isinstance(strict, bool):
            raise ValueError(f"strict: expected True or False, got {strict!r}")
        self.heads, self.strict = heads, strict

    def mask(self, queries: torch.Tensor, length: int) -> torch.Tensor:
        """``(n, length)`` bool: which key positions each query position (flat) may read."""
        keys = torch.arange(length, device=queries.device)
        return keys[None, :] < queries[:, None] + (0 if self.strict else 1)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Channels-last attention: ``q`` ``(B, n, Cq)``, ``k`` ``(B, L, Cq)``, ``v``
        ``(B, L, Cv)``, ``mask`` ``(n, L)`` -> ``(B, n, Cv)``."""
        return multi_head_attention(q, k, v, self.heads, mask)

    def _check(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t.dim() != 4:
                raise ValueError(f"{name}: expected a map (B, C, H, W), got {tuple(t.shape)}")
        if k.shape != q.shape or v.shape[0] != q.shape[0] or v.shape[2:] != q.shape[2:]:
            raise ValueError(
                f"q, k, v: expected q and k of one shape (B, Cq, H, W) and v (B, Cv, H, W), got "
                f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
            )
        for name, c in (("q", q.shape[1]), ("v", v.shape[1])):
            if c % self.heads:
                raise ValueError(
                    f"heads: {self.heads} heads do not divide the {c} channels of {name}"
                )

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self._check(q, k, v)
        b, cv, h, w = v.shape
        length = h * w
        pos = torch.arange(length, device=q.device)
        o = self.attend(
            q.flatten(2).transpose(1, 2),
            k.flatten(2).transpose(1, 2),
            v.flatten(2).transpose(1, 2),
            self.mask(pos, length),
        )
        return o.transpose(1, 2).reshape(b, cv, h, w)

    def ready(self, rq: torch.Tensor, rk: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
        """The output's step map ``(Cv, H, W)`` from those of ``q``, ``k``, ``v``."""
        cv, h, w = rv.shape
        at_q = rq.flatten(1).amax(0)  # (L,)
        kv = torch.maximum(rk.flatten(1).amax(0), rv.flatten(1).amax(0))
        seen = kv.cummax(0).values  # the latest key / value at positions <= p
        if self.strict:  # positions < p; none before p = 0
            seen = torch.cat([seen.new_zeros(1), seen[:-1]])
        return torch.maximum(at_q, seen).reshape(1, h, w).expand(cv, h, w).clone()

    def extra_repr(self) -> str:
        return f"heads={self.heads}, strict={self.strict}"


def _unique_rows(dep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, inverse = torch.unique(dep.flatten(1), dim=0, return_inverse=True)
    return rows, inverse


class CausalNet(nn.Module):
    """A graph of causal ops over named maps; base class of the PixelCNN networks.

    Subclasses register ops in execution order with :meth:`add` (``add(out, op, *inputs)``
    stores ``op(*[maps[k] for k in inputs])`` as ``maps[out]``), name the map holding the
    parameters in ``self.output_map`` and define ``context_maps(context, batch, h, w)``, the
    maps derived from the context (constant during generation). The image enters as
    ``"x"``: raw values, floats holding the integers ``0 .. levels - 1`` (real values for a
    network with ``output="normal"``, e.g. a latent map).
    """

    #: the map holding the parameters
    output_map: str = "out"

    def __init__(self) -> None:
        super().__init__()
        self.graph: list[tuple[str, str, tuple[str, ...]]] = []
        self.ops = nn.ModuleDict()

    def add(self, out: str, op: nn.Module, *inputs: str) -> str:
        key = f"op{len(self.graph)}"
        self.ops[key] = op
        self.graph.append((out, key, tuple(inputs)))
        return out

    def context_maps(
        self, context: Any, batch: int, height: int, width: int
    ) -> dict[str, torch.Tensor]:
        return {}

    def run(self, x: torch.Tensor, context: Any = None) -> dict[str, torch.Tensor]:
        """Every map of the graph for images ``x`` ``(B, C, H, W)``."""
        b, _, h, w = x.shape
        maps = dict(self.context_maps(context, b, h, w))
        maps["x"] = x
        for out, key, inputs in self.graph:
            maps[out] = self.ops[key](*[maps[k] for k in inputs])
        return maps

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.run(x, context)[self.output_map]

    def incremental(
        self, batch: int, context: Any = None, image_shape: Sequence[int] | None = None
    ) -> IncrementalSession:
        """A cached generation session for ``batch`` images (see
        :class:`IncrementalSession`), planned by :class:`IncrementalRunner`.

        ``image_shape`` defaults to the network's ``image_shape`` attribute; ``context`` is
        the flattened condition of the ``batch`` images (``None`` if none).
        """
        shape = getattr(self, "image_shape", None) if image_shape is None else image_shape
        if shape is None:
            raise ValueError("image_shape: the network has no image_shape; pass (C, H, W)")
        example = None if context is None else context[:1]
        return _RunnerSession(IncrementalRunner(self, shape, example), batch, context)


class IncrementalSession:
    r"""Generation of ``batch`` images element by element with cached network state.

    The protocol between an autoregressive image distribution and its network
    (``net.incremental(batch, context)`` returns one):

    * ``x``: a ``(batch, C, H W)`` tensor, the image being generated, zero at first. The
      caller writes element :math:`t = p C + c` (pixel :math:`p = i W + j`, channel
      :math:`c`) into ``x[:, c, p]`` after drawing it.
    * ``step(t)``: called for :math:`t = 0, 1, \dots, C H W - 1` in order, each time after
      every element before :math:`t` has been written; returns the network's output
      ``(batch, P)`` at pixel :math:`p` - the same numbers a full forward pass over ``x``
      would give there (the parameters of element :math:`t`'s conditional).

    Implementations: :class:`IncrementalRunner`'s plan for :class:`CausalNet` graphs; the
    recurrent networks of :mod:`pyro_lgm.nn.pixelrnn` carry their LSTM states.
    """

    x: torch.Tensor

    def step(self, t: int) -> torch.Tensor:
        raise NotImplementedError


class _RunnerSession(IncrementalSession):
    def __init__(self, runner: IncrementalRunner, batch: int, context: Any) -> None:
        c, h, w = runner.image_shape
        self.runner, self.width = runner, h * w
        self.caches = runner.start(batch, context)
        self.channels = c
        # a view of the graph's input map (B, H W + 1, C): writes reach the caches
        self.x = self.caches["x"].transpose(1, 2)[:, :, : h * w]
        self.out = self.caches[runner.net.output_map]

    def step(self, t: int) -> torch.Tensor:
        self.runner.step(self.caches, t)
        return self.out[:, t // self.channels]


# ------------------------------------------------------------------------ cached sampling


def _gather_index(op: MaskedConv2d, h: int, w: int) -> tuple[int, int, torch.Tensor]:
    """Output size and, per output position and kernel tap, the flat input position (-1: pad)."""
    top, bottom, left, right = op.pads
    kh, kw = op.kernel_size
    sh, sw = op.stride
    ho = (h + top + bottom - kh) // sh + 1
    wo = (w + left + right - kw) // sw + 1
    oi = torch.arange(ho)[:, None, None, None] * sh - top
    oj = torch.arange(wo)[None, :, None, None] * sw - left
    i = oi + torch.arange(kh)[None, None, :, None]
    j = oj + torch.arange(kw)[None, None, None, :]
    ok = (i >= 0) & (i < h) & (j >= 0) & (j < w)
    flat = torch.where(ok, i * w + j, torch.full_like(i * j, -1))
    return ho, wo, flat.reshape(ho * wo, kh * kw)


class IncrementalRunner:
    r"""Cached incremental evaluation of a :class:`CausalNet` during generation.

    Element :math:`t = (i W + j) C + c` of the image is generated at step :math:`t`. The
    plan gives every position of every map its *ready steps*: a map position is computed at
    step :math:`s` for each distinct :math:`s` among the steps at which its channels become
    computable (the largest step of any element, padding excluded, that the channel reads
    through the masks, paddings, strides and declared pointwise dependences, plus one).
    Values computed at a ready step are final for the channels ready then; later channels
    are recomputed at their own step. The output must be ready at step :math:`t` for
    element :math:`t`, which proves the network autoregressive.

    A :class:`CausalAttention` position is ready once its query and the keys and values of
    every earlier position are (:meth:`CausalAttention.ready`); at that step the gathered
    queries attend to the cached keys and values under the op's mask.

    The plan depends on the graph, the image size and the channel count only; the weights
    are read at each step, so one plan serves every parameter value.

    Args:
        net: the network.
        image_shape: ``(C, H, W)``.
        context_example: a context of batch 1 (or ``None``) used to shape the plan.
    """

    def __init__(
        self, net: CausalNet, image_shape: Sequence[int], context_example: Any = None
    ) -> None:
        c, h, w = (int(v) for v in image_shape)
        self.net, self.image_shape = net, (c, h, w)
        param = next(net.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, c, h, w, dtype=param.dtype, device=param.device)
            shapes = {k: v.shape for k, v in net.run(probe, context_example).items()}
        self.shapes = shapes
        ready: dict[str, torch.Tensor] = {}
        elem = torch.arange(c * h * w).reshape(h, w, c).permute(2, 0, 1) + 1
        ready["x"] = elem
        constants = [k for k in shapes if k != "x" and k not in {g[0] for g in net.graph}]
        for k in constants:
            s = shapes[k]
            ready[k] = torch.zeros(s[1], s[2], s[3], dtype=torch.long)
        # per node: the input position of each output position (and kernel tap); padding
        # reads the zero position at the end of the input's cache
        gathers: list[torch.Tensor | None] = []
        for out, key, inputs in net.graph:
            op = net.ops[key]
            rin = [ready[k] for k in inputs]
            pad = int(rin[0].shape[1] * rin[0].shape[2])
            if isinstance(op, MaskedConv2d):
                (r,) = rin
                ho, wo, idx = _gather_index(op, r.shape[1], r.shape[2])
                gathers.append(torch.where(idx < 0, pad, idx))
                # the step of each (in channel, tap) per output position; padding: step 0
                rflat = torch.cat([r.flatten(1), torch.zeros(r.shape[0], 1, dtype=r.dtype)], 1)
                taps = rflat[:, idx]  # (Cin, L, k)
                rows, inverse = _unique_rows(op.mask.detach().cpu() != 0)
                taps = taps.permute(1, 0, 2).reshape(taps.shape[1], -1)  # (L, Cin * k)
                per_row = torch.stack(
                    [
                        torch.where(row[None, :], taps, torch.zeros_like(taps)).amax(1)
                        if bool(row.any())
                        else torch.zeros(taps.shape[0], dtype=taps.dtype)
                        for row in rows
                    ]
                )  # (U, L)
                ready[out] = per_row[inverse].reshape(-1, ho, wo)
            elif isinstance(op, (Shift, ZeroInsert)):
                (r,) = rin
                ho, wo, src = op.source(r.shape[1], r.shape[2])
                gathers.append(torch.where(src < 0, pad, src))
                rflat = torch.cat([r.flatten(1), torch.zeros(r.shape[0], 1, dtype=r.dtype)], 1)
                ready[out] = rflat[:, src].reshape(-1, ho, wo)
            elif isinstance(op, (Pointwise, CausalAttention)):
                gathers.append(None)
                ready[out] = op.ready(*rin)
            else:
                raise ValueError(
                    f"net: op {key} ({type(op).__name__}) is not a causal op (MaskedConv2d, "
                    "Shift, ZeroInsert, CausalAttention or a Pointwise subclass)"
                )
            if tuple(ready[out].shape) != tuple(shapes[out][1:]):
                raise ValueError(
                    f"net: the plan of map {out!r} has shape {tuple(ready[out].shape)}, the map "
                    f"{tuple(shapes[out][1:])}"
                )
        self.ready = ready
        self._check_output(ready[net.output_map])
        total = c * h * w
        dev = param.device
        #: per step, node index -> (positions, gather index of those positions or None)
        self.steps: list[dict[int, tuple]] = [{} for _ in range(total)]
        for n, (out, _, _) in enumerate(net.graph):
            r = ready[out].flatten(1)  # (C, L)
            rs = r.sort(0).values
            keep = torch.ones_like(rs, dtype=torch.bool)
            keep[1:] = rs[1:] != rs[:-1]
            steps, pos = rs[keep], torch.arange(r.shape[1]).expand_as(rs)[keep]
            order = torch.argsort(steps, stable=True)
            steps, pos = steps[order], pos[order]
            counts = torch.bincount(steps, minlength=total + 1)[:total]
            pos = pos[: int(counts.sum())]  # steps >= total: never needed
            g = gathers[n]
            idx = (
                None if g is None else g[pos].reshape(pos.shape[0], math.prod(g.shape[1:])).to(dev)
            )
            pos = pos.to(dev)
            sizes = counts.tolist()
            pieces = pos.split(sizes)
            ipieces = idx.split(sizes) if idx is not None else [None] * total
            for t, (size, pp, ii) in enumerate(zip(sizes, pieces, ipieces)):
                if size:
                    self.steps[t][n] = (pp, None if ii is None else ii.flatten())

    def _check_output(self, r: torch.Tensor) -> None:
        c, h, w = self.image_shape
        channels = r.shape[0]
        own = torch.arange(c * h * w).reshape(h, w, c).permute(2, 0, 1)  # each element's step
        if getattr(self.net, "per_channel_output", True):
            if channels % c:
                raise ValueError(
                    f"net: {channels} output channels cannot be split into {c} image channels"
                )
            need = r.reshape(c, channels // c, h, w).amax(1)  # (C, H, W)
        else:  # whole pixels: every parameter ready before the pixel's first channel
            need = r.amax(0, keepdim=True).expand(c, h, w)
            own = own[:1].expand(c, h, w)
        bad = need > own
        if bool(bad.any()):
            ch, i, j = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"net: not autoregressive: the prediction for channel {ch} of pixel ({i}, {j}) "
                "reads elements at or after its own in the raster/channel order"
            )

    def start(self, batch: int, context: Any = None) -> dict[str, torch.Tensor]:
        """Empty caches for ``batch`` images: position-major maps ``(B, L + 1, C)`` (the extra
        position is a zero, read for padding); ``"x"`` is the image being generated."""
        param = next(self.net.parameters())
        c, h, w = self.image_shape
        const = self.net.context_maps(context, batch, h, w)
        caches: dict[str, torch.Tensor] = {}
        for k, s in self.shapes.items():
            if k in const:
                v = const[k]
                caches[k] = v if v.shape[-2:] == (1, 1) else _flat(v)
            else:
                caches[k] = torch.zeros(
                    batch, s[2] * s[3] + 1, s[1], dtype=param.dtype, device=param.device
                )
        weights = {}  # (kh kw Cin, O): the masked weight read once per generation
        for key, op in self.net.ops.items():
            if isinstance(op, MaskedConv2d):
                w = op.masked_weight()
                weights[key] = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])
        self._plan = [self._compile(t, caches, weights) for t in range(len(self.steps))]
        return caches

    def _compile(
        self, t: int, caches: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]
    ) -> list[tuple]:
        """The work of step ``t`` as ``(kind, out, inputs, op, index, pos, weight, bias)``."""
        work = []
        for n, (pos, index) in self.steps[t].items():
            out, key, inputs = self.net.graph[n]
            op = self.net.ops[key]
            weight = bias = None
            if isinstance(op, MaskedConv2d):
                kind = "conv"  # index: (n k) input positions, tap-major per output position
                weight, bias = weights[key], op.bias
            elif isinstance(op, (Shift, ZeroInsert)):
                kind = "index"
            elif isinstance(op, CausalAttention):
                kind = "attention"  # index: the mask of the scheduled queries over the keys
                index = op.mask(pos, caches[out].shape[1] - 1)
            else:
                kind = "pointwise"
            work.append(
                (kind, caches[out], [caches[k] for k in inputs], op, index, pos, weight, bias)
            )
        return work

    def step(self, caches: dict[str, torch.Tensor], t: int) -> None:
        """Compute every map position scheduled at step ``t`` (inputs up to ``t - 1`` set)."""
        for kind, out, inputs, op, index, pos, weight, bias in self._plan[t]:
            n = pos.shape[0]
            if kind == "conv":
                patches = inputs[0].index_select(1, index)  # (B, n k, Cin)
                val = patches.reshape(patches.shape[0], n, -1) @ weight
                if bias is not None:
                    val = val + bias
            elif kind == "index":
                val = inputs[0].index_select(1, index)
            elif kind == "attention":  # queries at pos; keys / values final before them
                q, k, v = inputs
                length = index.shape[1]
                val = op.attend(q.index_select(1, pos), k[:, :length], v[:, :length], index)
            else:
                args = [
                    v if v.dim() == 4 else v.index_select(1, pos).transpose(1, 2).unsqueeze(-1)
                    for v in inputs
                ]
                val = op.forward(*args).squeeze(-1).transpose(1, 2)
            out.index_copy_(1, pos, val)


def _flat(v: torch.Tensor) -> torch.Tensor:
    """A map ``(B, C, H, W)`` as a cache ``(B, H W + 1, C)`` with a zero last position."""
    flat = v.flatten(2).transpose(1, 2)
    return torch.cat([flat, flat.new_zeros(flat.shape[0], 1, flat.shape[2])], 1)
