r"""PixelRNN networks: the Row LSTM and the Diagonal BiLSTM.

Pixel Recurrent Neural Networks (van den Oord et al., 2016) model an image in raster and
channel order, :math:`p(x) = \prod_{i,j} \prod_c p(x_{c,i,j} \mid x_{<(i,j)}, x_{<c,(i,j)})`,
with two-dimensional LSTM layers whose input-to-state part is a masked convolution computed
for the whole image at once and whose state-to-state part is a recurrence.

Every LSTM layer turns gates :math:`[o, f, i, g]` into states

.. math::
    c = \sigma(f) \odot c_{\mathrm{prev}} + \sigma(i) \odot \tanh(g), \qquad
    h = \sigma(o) \odot \tanh(c),

with :math:`[o, f, i, g] = K^{is} \circledast x + K^{ss} \circledast h_{\mathrm{prev}}` (+ a
condition). The stack is ``7 x 7`` mask-A convolution, ``num_layers`` residual LSTM layers
(:math:`x_{l+1} = x_l + W^{r}_l h_l`, a ``1 x 1`` mask-B convolution), and the head
``relu -> 1 x 1 -> relu -> 1 x 1`` (mask B) to the parameters.

* **Row LSTM** processes the image row by row: :math:`K^{is}` is a ``1 x 3`` mask-B
  convolution along the row (it sees the pixel to the left and the pixel itself),
  :math:`K^{ss}` a ``1 x 3`` convolution of the previous row's hidden state, and
  :math:`c_{\mathrm{prev}}` is the cell of the same column in the previous row. Its receptive
  field is a *triangle* above the pixel: it misses pixels of earlier rows far to the right.
* **Diagonal BiLSTM** *skews* the map (row :math:`i` shifted right by :math:`i`) so that the
  diagonals become columns, and runs over the skewed columns with :math:`K^{is}` a
  ``1 x 1`` mask-B convolution and :math:`K^{ss}` a ``2 x 1`` convolution of the previous
  skewed column: the state at :math:`(i, j)` reads the states at :math:`(i - 1, j)` and
  :math:`(i, j - 1)`. A second direction does the same from right to left (its own
  weights on the mirrored map); its output is shifted down one row before the two are
  summed, so that a pixel never sees itself or later pixels. The receptive field is the
  whole past but for one pixel (the last of the previous row, far from the current
  column); by default the first right-to-left direction also reads its row's pixels, which
  closes that gap (``full_context``; see :class:`DiagonalBiLSTM`).

With ``C > 1`` image channels every map is split into ``C`` channel groups as in PixelCNN
(mask A in the first layer, B later; each of the four gates carries the groups), so channel
:math:`c` of a pixel is predicted from the channels :math:`< c` of that pixel.

Both networks serve :class:`pyro_lgm.nn.causal.IncrementalSession` for cached generation:
the session keeps every layer's maps and LSTM states and computes only the current position
of each layer per step.

References:
    A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
    ICML 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.causal import IncrementalSession, MaskedConv2d
from pyro_lgm.nn.pixelcnn import ImageNet, Rescale, _int

__all__ = ["DiagonalBiLSTM", "RowLSTM", "skew", "unskew"]

_RNN_OUTPUTS = ("bernoulli", "categorical", "logistic_mixture")


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row ``i`` of ``(B, C, H, W)`` right by ``i``: ``(B, C, H, H + W - 1)``, zeros
    elsewhere; ``x[..., i, j]`` lands in column ``i + j``.

    Example:
        >>> skew(torch.arange(1.0, 5.0).reshape(1, 1, 2, 2))[0, 0]
        tensor([[1., 2., 0.],
                [0., 3., 4.]])
    """
    *lead, h, w = x.shape
    # rows padded to H + W and read back with a stride one shorter: row i moves i to the right
    flat = F.pad(x, (0, h)).flatten(-2)[..., : h * (h + w - 1)]
    return flat.reshape(*lead, h, h + w - 1)


def unskew(y: torch.Tensor, width: int) -> torch.Tensor:
    """The inverse of :func:`skew`: ``(B, C, H, H + W - 1)`` back to ``(B, C, H, W)``.

    Example:
        >>> x = torch.randn(2, 3, 4, 5)
        >>> torch.equal(unskew(skew(x), 5), x)
        True
    """
    *lead, h, s = y.shape
    if s != h + width - 1:
        raise ValueError(f"y: expected {h + width - 1} skewed columns for width {width}, got {s}")
    flat = F.pad(y.flatten(-2), (0, h)).reshape(*lead, h, h + width)
    return flat[..., :width]


def _lstm(gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, c)`` from gates ``[o, f, i, g]`` (channel dimension 1) and the previous cell."""
    o, f, i, g = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _mm(weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(B, O)`` = ``v (B, I) @ weight (O, I)^T``."""
    return v @ weight.T


class _PixelRNN(ImageNet):
    """Shared set-up: arguments, the first mask-A convolution, the residual convolutions,
    the head, the condition; the one-position helpers of the incremental sessions."""

    def _setup_rnn(
        self,
        image_shape: Sequence[int],
        hidden_channels: int,
        num_layers: int,
        output: str,
        bits: int | None,
        num_mixtures: int,
        first_kernel: int,
        num_classes: int | None,
        context_dim: int | None,
        context_channels: int | None,
    ) -> None:
        if output not in _RNN_OUTPUTS:
            raise ValueError(
                f"output: expected one of {list(_RNN_OUTPUTS)} for {type(self).__name__}, "
                f"got {output!r}"
            )
        self._setup_image(
            image_shape, output, bits, num_mixtures, num_classes, context_dim, context_channels
        )
        if _int("first_kernel", first_kernel, 1) % 2 == 0:
            raise ValueError(f"first_kernel: expected an odd kernel size, got {first_kernel}")
        g = self.data_groups
        self.hidden = _int("hidden_channels", hidden_channels, 1) * g
        self.num_layers = _int("num_layers", num_layers, 1)
        h, c = self.hidden, self.image_shape[0]
        self.rescale = Rescale(self.levels)
        self.first = MaskedConv2d(c, 2 * h, first_kernel, "A", data_channels=g)
        self.residual = nn.ModuleList(
            MaskedConv2d(h, 2 * h, 1, "B", data_channels=g) for _ in range(self.num_layers)
        )
        self.head1 = MaskedConv2d(2 * h, 2 * h, 1, "B", data_channels=g)
        self.head2 = MaskedConv2d(2 * h, self.param_channels, 1, "B", data_channels=g)

    def _check_x(self, x: torch.Tensor) -> None:
        if (
            not isinstance(x, torch.Tensor)
            or x.dim() != 4
            or tuple(x.shape[1:]) != self.image_shape
        ):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x: expected shape (B, {', '.join(map(str, self.image_shape))}), got {shape}"
            )

    def _head(self, s: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(s))))

    def _conds(self, context: Any, batch: int, names: Sequence[str]) -> list[torch.Tensor | None]:
        """Per name, the condition's gate bias ``(B, 4h, H, W)`` (a broadcast view), or
        ``None`` without a condition."""
        _, hh, ww = self.image_shape
        maps = self.context_maps(context, batch, hh, ww)
        out: list[torch.Tensor | None] = []
        for name in names:
            m = maps.get(f"ctx_{name}")
            out.append(None if m is None else m.expand(batch, -1, hh, ww))
        return out

    # -- one position (incremental sessions) ----------------------------------------------
    @staticmethod
    def _w1(conv: nn.Conv2d) -> torch.Tensor:
        """The (masked) weight of a ``1 x 1`` convolution as ``(O, I)``."""
        w = conv.masked_weight() if isinstance(conv, MaskedConv2d) else conv.weight
        return w[:, :, 0, 0]

    def _first_at(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The first layer's output ``(B, 2h)`` at ``(i, j)`` from images ``(B, C, H, W)``
        (levels; rescaled here)."""
        k = self.first.kernel_size[0]
        p = k // 2
        _, _, hh, ww = x.shape
        r0, r1, c0, c1 = max(i - p, 0), min(i + p + 1, hh), max(j - p, 0), min(j + p + 1, ww)
        patch = self.rescale(x[:, :, r0:r1, c0:c1])  # the window, then its zero padding
        pads = (c0 - (j - p), (j + p + 1) - c1, r0 - (i - p), (i + p + 1) - r1)
        patch = F.pad(patch, pads)
        out = torch.einsum("bcyx,ocyx->bo", patch, self.first.masked_weight())
        return out + self.first.bias

    def _head_at(self, s: torch.Tensor) -> torch.Tensor:
        y = _mm(self._w1(self.head1), F.relu(s)) + self.head1.bias
        return _mm(self._w1(self.head2), F.relu(y)) + self.head2.bias


class RowLSTM(_PixelRNN):
    r"""The Row LSTM (van den Oord et al., 2016): an LSTM over rows with ``1 x 3`` kernels.

    Layer :math:`l` computes for row :math:`i` (all of its pixels at once)

    .. math::
        [o, f, i, g]_i = K^{is}_l \circledast x_{l,i} + K^{ss}_l \circledast h_{l,i-1} + V_l y,
        \quad (h_{l,i}, c_{l,i}) = \mathrm{LSTM}([o, f, i, g]_i, c_{l,i-1}),

    with :math:`K^{is}` a ``1 x 3`` mask-B convolution along the row (computed for the whole
    map in one call), :math:`K^{ss}` a ``1 x 3`` convolution of the previous row's hidden state
    (zero padded), :math:`y` the optional condition, and the residual
    :math:`x_{l+1} = x_l + W^r_l h_l` (``1 x 1``, mask B). The receptive field is triangular:
    with ``L`` layers and a ``k x k`` first kernel (:math:`r = k // 2 \ge 1`), the output at
    :math:`(i, j)` reads the pixels :math:`(i - m, j + d)` with :math:`-m - L - r \le d \le -1`
    for :math:`m = 0` and :math:`-m - L - r \le d \le m + r - 1` for :math:`m \ge 1` (and the
    earlier channels of the pixel itself) - not the pixels of the rows above further right.

    Args:
        image_shape: ``(C, H, W)``.
        hidden_channels: ``h``, the LSTM state per channel group (the residual stream has
            ``2h``).
        num_layers: Row LSTM layers (at least 1).
        output: ``"bernoulli"``, ``"categorical"`` (:math:`2^{bits}`-way softmax per channel)
            or ``"logistic_mixture"`` (a discretized logistic mixture per pixel).
        bits: bits per channel (1 for Bernoulli; default 8 otherwise).
        num_mixtures: ``K`` of the logistic mixture.
        first_kernel: odd size of the first (mask A) convolution.
        num_classes, context_dim, context_channels: at most one condition, added to the gates
            of every layer (a feature map is resized to the image).

    Shapes: ``forward(x, context)`` takes ``x`` ``(B, C, H, W)`` of levels (floats) and returns
    ``(B, param_channels, H, W)`` laid out as :class:`pyro_lgm.nn.GatedPixelCNN`'s.

    Example:
        >>> net = RowLSTM((1, 4, 5), hidden_channels=3, num_layers=2)
        >>> net(torch.zeros(2, 1, 4, 5)).shape
        torch.Size([2, 1, 4, 5])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 16,
        num_layers: int = 2,
        output: str = "bernoulli",
        bits: int | None = None,
        num_mixtures: int = 5,
        *,
        first_kernel: int = 7,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self._setup_rnn(
            image_shape,
            hidden_channels,
            num_layers,
            output,
            bits,
            num_mixtures,
            first_kernel,
            num_classes,
            context_dim,
            context_channels,
        )
        h, g = self.hidden, self.data_groups
        self.input_to_state = nn.ModuleList(
            MaskedConv2d(
                2 * h,
                4 * h,
                (1, 3),
                "B",
                data_channels=g,
                out_splits=4,
                padding=(0, 0, 1, 1),
                center=(0, 1),
            )
            for _ in range(self.num_layers)
        )
        self.state_to_state = nn.ModuleList(
            nn.Conv1d(h, 4 * h, 3, padding=1, bias=False) for _ in range(self.num_layers)
        )
        self._cond_names = [f"row{layer}" for layer in range(self.num_layers)]
        for name in self._cond_names:
            self.condition(name, 4 * h)

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_x(x)
        b, _, hh, _ = x.shape
        s = self.first(self.rescale(x))
        conds = self._conds(context, b, self._cond_names)
        for layer in range(self.num_layers):
            pre = self.input_to_state[layer](s)
            if conds[layer] is not None:
                pre = pre + conds[layer]
            ss = self.state_to_state[layer]
            h_prev = c_prev = pre.new_zeros(b, self.hidden, pre.shape[-1])
            rows = []
            # unbind, not pre[:, :, i]: a slice's backward would write a full-size zero map
            # per row; unbind's is one stack
            for pre_i in pre.unbind(2):
                h_prev, c_prev = _lstm(pre_i + ss(h_prev), c_prev)
                rows.append(h_prev)
            s = s + self.residual[layer](torch.stack(rows, 2))
        return self._head(s)

    def incremental(
        self, batch: int, context: Any = None, image_shape: Sequence[int] | None = None
    ) -> IncrementalSession:
        """A cached generation session (:class:`RowLSTMSession`) for ``batch`` images."""
        _check_session_shape(self, image_shape)
        return RowLSTMSession(self, batch, context)


class DiagonalBiLSTM(_PixelRNN):
    r"""The Diagonal BiLSTM (van den Oord et al., 2016): LSTMs along the diagonals, both ways.

    Layer :math:`l` skews its input-to-state map :math:`K^{is}_l \circledast x_l` (``1 x 1``,
    mask B) and runs over the skewed columns :math:`s = 0 .. H + W - 2`:

    .. math::
        [o, f, i, g]_s = \mathrm{skew}(K^{is}_l \circledast x_l)_s + K^{ss}_l \circledast
        h_{s-1} + V_l y, \quad (h_s, c_s) = \mathrm{LSTM}([o, f, i, g]_s, c_{s-1}),

    :math:`K^{ss}` a ``2 x 1`` convolution over rows :math:`i - 1` and :math:`i` of the previous
    skewed column, i.e. the states at :math:`(i - 1, j)` and :math:`(i, j - 1)`; states outside
    the image are zero. The right-to-left direction is the same (its own weights) on the
    mirrored map, mirrored back and shifted down one row; the layer's output is
    :math:`x_{l+1} = x_l + W^r_l (h^{\rightarrow}_l + \mathrm{shift}_\downarrow
    h^{\leftarrow}_l)`.

    The receptive field: with the paper's layers (``full_context=False``: mask A in the
    first convolution, mask B in every input-to-state convolution) the pixel
    :math:`(i - 1, W - 1)` that ends a row enters the stream only at positions of row
    :math:`i` within the first kernel's reach (columns :math:`\ge W - 1 - r`, ``r =
    first_kernel // 2``), and a position of row :math:`i` reaches the outputs to its left
    only through the right-to-left direction, which sees row :math:`i` only from row
    :math:`i + 1` on. So the outputs :math:`(i, j)` with :math:`j < W - 1 - r` miss exactly
    that one pixel (images up to ``r + 1`` wide have no gap). With ``full_context=True``
    (default) the first layer's right-to-left gates also read the pixels of their own row (an
    unmasked ``1 x 1`` convolution of the image; causal because that direction is shifted
    down a row), and every earlier pixel reaches every output: no blind spot.

    Args:
        image_shape, hidden_channels, num_layers, output, bits, num_mixtures, first_kernel,
        num_classes, context_dim, context_channels: as :class:`RowLSTM`.
        full_context: let the first right-to-left direction read its row's pixels (see
            above); ``False`` is the paper's layer exactly.

    Example:
        >>> net = DiagonalBiLSTM((3, 2, 3), 2, 1, output="categorical", bits=2, num_classes=4)
        >>> net(torch.zeros(5, 3, 2, 3), torch.arange(5) % 4).shape
        torch.Size([5, 12, 2, 3])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden_channels: int = 16,
        num_layers: int = 2,
        output: str = "bernoulli",
        bits: int | None = None,
        num_mixtures: int = 5,
        *,
        first_kernel: int = 7,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_channels: int | None = None,
        full_context: bool = True,
    ) -> None:
        super().__init__()
        self._setup_rnn(
            image_shape,
            hidden_channels,
            num_layers,
            output,
            bits,
            num_mixtures,
            first_kernel,
            num_classes,
            context_dim,
            context_channels,
        )
        h, g = self.hidden, self.data_groups
        n = self.num_layers

        def is_conv() -> MaskedConv2d:
            return MaskedConv2d(2 * h, 4 * h, 1, "B", data_channels=g, out_splits=4)

        self.is_left = nn.ModuleList(is_conv() for _ in range(n))
        self.is_right = nn.ModuleList(is_conv() for _ in range(n))
        self.ss_left = nn.ModuleList(nn.Conv1d(h, 4 * h, 2, bias=False) for _ in range(n))
        self.ss_right = nn.ModuleList(nn.Conv1d(h, 4 * h, 2, bias=False) for _ in range(n))
        if not isinstance(full_context, bool):
            raise ValueError(f"full_context: expected a bool, got {full_context!r}")
        self.full_context = full_context
        # the first right-to-left direction's view of the pixels of its own row
        self.row_input = (
            MaskedConv2d(self.image_shape[0], 4 * h, 1, bias=False) if full_context else None
        )
        self._cond_names = [f"{d}{layer}" for layer in range(n) for d in ("left", "right")]
        for name in self._cond_names:
            self.condition(name, 4 * h)
        # the right-to-left output moves down one row; switched off only by a test that shows
        # the unshifted direction would read the future
        self._shift_right = True

    def _scan(self, pre: torch.Tensor, ss: nn.Conv1d) -> torch.Tensor:
        """Hidden states ``(B, h, H, W)`` of the left-to-right diagonal LSTM with gate inputs
        ``pre`` ``(B, 4h, H, W)``."""
        b, _, hh, ww = pre.shape
        sk = skew(pre)
        valid = skew(pre.new_ones(1, 1, hh, ww))[0, 0]  # (H, S): inside the image
        h_col = c_col = pre.new_zeros(b, self.hidden, hh)
        cols = []
        # unbind, not sk[..., s]: one stacked gradient instead of a full-size one per column
        for sk_s, valid_s in zip(sk.unbind(-1), valid.unbind(-1)):
            gates = sk_s + ss(F.pad(h_col, (1, 0)))  # rows i - 1 and i of column s - 1
            h_col, c_col = _lstm(gates, c_col)
            h_col, c_col = h_col * valid_s, c_col * valid_s
            cols.append(h_col)
        return unskew(torch.stack(cols, -1), ww)

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_x(x)
        b = x.shape[0]
        xs = self.rescale(x)
        s = self.first(xs)
        conds = self._conds(context, b, self._cond_names)
        for layer in range(self.num_layers):
            pre_l = self.is_left[layer](s)
            pre_r = self.is_right[layer](s)
            if layer == 0 and self.row_input is not None:
                pre_r = pre_r + self.row_input(xs)
            if conds[2 * layer] is not None:
                pre_l = pre_l + conds[2 * layer]
                pre_r = pre_r + conds[2 * layer + 1]
            left = self._scan(pre_l, self.ss_left[layer])
            right = self._scan(pre_r.flip(-1), self.ss_right[layer]).flip(-1)
            if self._shift_right:
                right = F.pad(right, (0, 0, 1, 0))[..., :-1, :]
            s = s + self.residual[layer](left + right)
        return self._head(s)

    def incremental(
        self, batch: int, context: Any = None, image_shape: Sequence[int] | None = None
    ) -> IncrementalSession:
        """A cached generation session (:class:`DiagonalBiLSTMSession`) for ``batch`` images."""
        _check_session_shape(self, image_shape)
        if not self._shift_right:
            raise ValueError("net: the right-to-left direction is unshifted (not causal)")
        return DiagonalBiLSTMSession(self, batch, context)


def _check_session_shape(net: _PixelRNN, image_shape: Sequence[int] | None) -> None:
    if image_shape is not None and tuple(image_shape) != net.image_shape:
        raise ValueError(
            f"image_shape: the network models {net.image_shape} images, got {tuple(image_shape)}"
        )


# ------------------------------------------------------------------------ cached sessions


class _RNNSession(IncrementalSession):
    """Common state: the image, the residual streams of every layer, the conditions."""

    def __init__(self, net: _PixelRNN, batch: int, context: Any) -> None:
        param = next(net.parameters())
        c, hh, ww = net.image_shape
        self.net, self.channels, self.height, self.width = net, c, hh, ww
        self.x = torch.zeros(batch, c, hh * ww, dtype=param.dtype, device=param.device)
        # streams[l]: the input of layer l (streams[0]: the first convolution; the last:
        # the head's input), (B, 2h, H, W)
        self.streams = [
            param.new_zeros(batch, 2 * net.hidden, hh, ww) for _ in range(net.num_layers + 1)
        ]
        self.conds = net._conds(context, batch, net._cond_names)

    def _states(self, batch: int) -> list[torch.Tensor]:
        """Zero ``(B, h, H + 2, W + 2)`` maps, one per layer: position ``(i, j)`` is stored at
        ``(i + 1, j + 1)``, the border is the zero padding."""
        hh, ww, n = self.height, self.width, self.net.num_layers
        param = self.x
        return [param.new_zeros(batch, self.net.hidden, hh + 2, ww + 2) for _ in range(n)]

    def _cond_at(self, k: int, i: int, j: int) -> torch.Tensor | float:
        m = self.conds[k]
        return 0.0 if m is None else m[:, :, i, j]

    def step(self, t: int) -> torch.Tensor:
        p = t // self.channels
        i, j = divmod(p, self.width)
        self._before(t, i, j)
        net = self.net
        image = self.x.reshape(-1, self.channels, self.height, self.width)
        s = net._first_at(image, i, j)
        self.streams[0][:, :, i, j] = s
        for layer in range(net.num_layers):
            h = self._layer_at(layer, i, j)
            s = s + _mm(net._w1(net.residual[layer]), h) + net.residual[layer].bias
            self.streams[layer + 1][:, :, i, j] = s
        return net._head_at(s)

    def _before(self, t: int, i: int, j: int) -> None:
        """Work due before position ``(i, j)`` (none by default)."""

    def _layer_at(self, layer: int, i: int, j: int) -> torch.Tensor:
        raise NotImplementedError


class RowLSTMSession(_RNNSession):
    """Cached generation for :class:`RowLSTM`: per step and layer, the gates of the current
    position from the stream at ``(i, j - 1)`` and ``(i, j)`` and the hidden states of row
    ``i - 1`` at columns ``j - 1 .. j + 1``."""

    def __init__(self, net: RowLSTM, batch: int, context: Any) -> None:
        super().__init__(net, batch, context)
        self.h, self.c = self._states(batch), self._states(batch)

    def _layer_at(self, layer: int, i: int, j: int) -> torch.Tensor:
        net = self.net
        conv = net.input_to_state[layer]
        w = conv.masked_weight()  # (4h, 2h, 1, 3); the right tap is masked out
        s = self.streams[layer]
        gates = _mm(w[:, :, 0, 1], s[:, :, i, j]) + conv.bias
        if j > 0:
            gates = gates + _mm(w[:, :, 0, 0], s[:, :, i, j - 1])
        above = self.h[layer][:, :, i, j : j + 3]  # row i - 1, columns j - 1 .. j + 1
        ss = net.state_to_state[layer].weight  # (4h, h, 3)
        gates = gates + torch.einsum("bck,ock->bo", above, ss) + self._cond_at(layer, i, j)
        h, c = _lstm(gates, self.c[layer][:, :, i, j + 1])
        self.h[layer][:, :, i + 1, j + 1] = h
        self.c[layer][:, :, i + 1, j + 1] = c
        return h


class DiagonalBiLSTMSession(_RNNSession):
    """Cached generation for :class:`DiagonalBiLSTM`: per step and layer, the left-to-right
    state of the current position from the states at ``(i - 1, j)`` and ``(i, j - 1)``; at the
    first step of row ``i + 1`` the right-to-left states of the completed row ``i`` (a scan from
    right to left per layer), which reach row ``i + 1`` through the one-row shift."""

    def __init__(self, net: DiagonalBiLSTM, batch: int, context: Any) -> None:
        super().__init__(net, batch, context)
        self.hl, self.cl = self._states(batch), self._states(batch)
        self.hr, self.cr = self._states(batch), self._states(batch)
        self._done_rows = 0  # right-to-left states are computed for rows < _done_rows

    def _before(self, t: int, i: int, j: int) -> None:
        while self._done_rows < i:
            self._right_row(self._done_rows)
            self._done_rows += 1

    @staticmethod
    def _gates(
        conv: MaskedConv2d, ss: nn.Conv1d, s: torch.Tensor, up: torch.Tensor, side: torch.Tensor
    ) -> torch.Tensor:
        k = ss.weight  # (4h, h, 2): tap 0 the row above, tap 1 the neighbour in the row
        return _mm(_PixelRNN._w1(conv), s) + conv.bias + _mm(k[:, :, 0], up) + _mm(k[:, :, 1], side)

    def _right_row(self, i: int) -> None:
        net = self.net
        for layer in range(net.num_layers):
            hr, cr, s = self.hr[layer], self.cr[layer], self.streams[layer]
            for j in range(self.width - 1, -1, -1):
                gates = self._gates(
                    net.is_right[layer],
                    net.ss_right[layer],
                    s[:, :, i, j],
                    hr[:, :, i, j + 1],
                    hr[:, :, i + 1, j + 2],
                )
                gates = gates + self._cond_at(2 * layer + 1, i, j)
                if layer == 0 and net.row_input is not None:
                    pixel = net.rescale(self.x[:, :, i * self.width + j])
                    gates = gates + _mm(net._w1(net.row_input), pixel)
                h, c = _lstm(gates, cr[:, :, i + 1, j + 2])
                hr[:, :, i + 1, j + 1], cr[:, :, i + 1, j + 1] = h, c

    def _layer_at(self, layer: int, i: int, j: int) -> torch.Tensor:
        net = self.net
        hl, cl = self.hl[layer], self.cl[layer]
        gates = self._gates(
            net.is_left[layer],
            net.ss_left[layer],
            self.streams[layer][:, :, i, j],
            hl[:, :, i, j + 1],
            hl[:, :, i + 1, j],
        )
        gates = gates + self._cond_at(2 * layer, i, j)
        h, c = _lstm(gates, cl[:, :, i + 1, j])
        hl[:, :, i + 1, j + 1], cl[:, :, i + 1, j + 1] = h, c
        # plus the right-to-left state of the row above (padded row index i)
        return h + self.hr[layer][:, :, i, j + 1]
