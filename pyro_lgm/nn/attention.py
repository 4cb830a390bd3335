r"""Flow++'s coupling conditioner: gated residual convolutions and gated self-attention.

Ho et al. (2019, Sec. 3.3) replace the plain CNN of a coupling layer's conditioner by a stack
of blocks, each a *gated residual convolution* and a *gated multi-head self-attention* over
all spatial positions, both followed by layer normalization over the channels of each
position. The attention gives every output position a view of the whole conditioning image
within one block, where a stack of 3x3 convolutions widens its view by one pixel per layer.
It is one of the three changes Flow++ makes to RealNVP / Glow, with the
mixture-of-logistics coupling and variational dequantization; the paper's ablations remove
each of them in turn.

* :class:`GatedResidualConv`: :math:`\mathrm{LN}(x + \mathrm{Gate}(\mathrm{CELU}(
  \mathrm{Conv}_{3\times3}(\mathrm{CELU}(x)))))`, with the concatenated ELU
  (:class:`~pyro_lgm.nn.causal.ConcatELU`) as nonlinearity.
* :class:`MultiHeadSelfAttention`: a 1x1 convolution to queries, keys and values, then
  non-causal scaled dot-product attention of every position over every position, per head.
* :class:`GatedAttention`: :math:`\mathrm{LN}(x + \mathrm{Gate}(\mathrm{MHSA}(x)))`.
* :class:`AttentionConvNet`: a 3x3 stem, ``blocks`` of the two above, a zero-initialised 3x3
  head (:class:`~pyro_lgm.nn.resnet.ZeroConv2d`); the interface of the other coupling
  conditioners (:class:`~pyro_lgm.nn.resnet.GlowConvNet`), context map included.

Here :math:`\mathrm{Gate}(h) = a \odot \sigma(b)` with :math:`[a, b] =
\mathrm{Conv}_{1\times1}(h)` of twice the channels (a gated linear unit, Dauphin et al.,
2017), and :math:`\mathrm{LN}` normalizes the channel vector of each position (with a learned
gain and bias), never across the batch or the positions, so an image's output does not
depend on the rest of its batch.

Departures from the paper's code: no learned positional embedding is added before the
attention (it would fix the image size; the zero-padded convolutions before the attention
already tell positions apart near the border), and the weights use PyTorch's default
initialization rather than weight normalization with data-dependent initialization.
"""

from __future__ import annotations

import torch
from torch import nn

from pyro_lgm.nn.causal import ConcatELU, Gate
from pyro_lgm.nn.dot_attention import multi_head_attention
from pyro_lgm.nn.resnet import ZeroConv2d, _check_int, _ConvNet

__all__ = [
    "AttentionConvNet",
    "GatedAttention",
    "GatedResidualConv",
    "MultiHeadSelfAttention",
]


def _check_dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {value!r}")
    return float(value)


def _check_map(x: torch.Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"x: expected shape (N, {channels}, H, W), got {tuple(x.shape)}")


class _ChannelLayerNorm(nn.LayerNorm):
    """Layer normalization of the channel vector at each position of an ``(N, C, H, W)`` map.

    The map is normalized in its channels-last view (free for a channels-last tensor, the
    layout the conditioners run in) and returned in the same layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedResidualConv(nn.Module):
    r"""Flow++'s convolutional layer: a gated residual 3x3 convolution, then layer norm.

    .. math::
        h = \mathrm{CELU}(\mathrm{Conv}_{3\times3}(\mathrm{CELU}(x))), \quad
        [a, b] = \mathrm{Conv}_{1\times1}(\mathrm{Dropout}(h)), \quad
        y = \mathrm{LN}(x + a \odot \sigma(b)),

    with :math:`\mathrm{CELU}(x) = [\mathrm{elu}(x), \mathrm{elu}(-x)]` (channels doubled),
    :math:`a, b` of ``channels`` channels each and :math:`\mathrm{LN}` the layer norm of the
    channels at each position. The receptive field grows by one pixel on every side.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019. T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. *PixelCNN++*. ICLR 2017
        (the concatenated ELU and the gated residual).

    Args:
        channels: channels of the residual stream.
        dropout: dropout probability on the hidden activation, in ``[0, 1)``.

    Shapes:
        input and output ``(N, channels, H, W)``.

    Example:
        >>> import torch
        >>> GatedResidualConv(8)(torch.randn(2, 8, 3, 5)).shape
        torch.Size([2, 8, 3, 5])
    """

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels = _check_int("channels", channels, 1)
        self.dropout = _check_dropout(dropout)
        self.nonlinearity = ConcatELU()
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.drop = nn.Dropout(self.dropout)
        self.gate_conv = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.gate = Gate(tanh=False)
        self.norm = _ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.channels)
        h = self.nonlinearity(self.conv(self.nonlinearity(x)))
        return self.norm(x + self.gate(self.gate_conv(self.drop(h))))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dropout={self.dropout}"


class MultiHeadSelfAttention(nn.Module):
    r"""Non-causal multi-head self-attention over the ``H W`` positions of an image map.

    A 1x1 convolution gives every position :math:`p` a query, key and value,
    :math:`[q_p, k_p, v_p] = W x_p + b`, each cut into ``heads`` pieces of
    :math:`d = C / \text{heads}` channels; head :math:`m` at position :math:`p` returns

    .. math::
        o^{m}_p = \sum_{p'} \frac{\exp(q^{m}_p \cdot k^{m}_{p'} / \sqrt{d})}
        {\sum_{p''} \exp(q^{m}_p \cdot k^{m}_{p''} / \sqrt{d})} \, v^{m}_{p'},

    and the output at :math:`p` is the concatenation :math:`[o^1_p, \dots, o^{\text{heads}}_p]`
    (the output projection is left to the caller: :class:`GatedAttention` follows it with its
    gate's 1x1 convolution). There is no positional encoding, so the layer is equivariant to
    any permutation of the positions, and every output position reads every input position.

    References:
        A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, L. Kaiser,
        I. Polosukhin. *Attention Is All You Need*. NeurIPS 2017. J. Ho et al. *Flow++*.
        ICML 2019.

    Args:
        channels: channels of the input, the queries, keys, values and the output.
        heads: number of heads; must divide ``channels``.
        dropout: dropout probability on the attention weights (in training), in ``[0, 1)``.

    Shapes:
        input and output ``(N, channels, H, W)``.

    Example:
        >>> import torch
        >>> MultiHeadSelfAttention(8, heads=2)(torch.randn(2, 8, 3, 5)).shape
        torch.Size([2, 8, 3, 5])
    """

    def __init__(self, channels: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels = _check_int("channels", channels, 1)
        self.heads = _check_int("heads", heads, 1)
        if channels % heads:
            raise ValueError(f"heads: expected a divisor of channels={channels}, got heads={heads}")
        self.dropout = _check_dropout(dropout)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.channels)
        n, c, h, w = x.shape
        # (N, 3C, H, W) -> (N, H W, 3C) -> 3 x (N, H W, C); the first step is a free view
        # when the map is channels-last
        q, k, v = self.qkv(x).permute(0, 2, 3, 1).reshape(n, h * w, 3 * c).chunk(3, -1)
        p = self.dropout if self.training else 0.0
        o = multi_head_attention(q, k, v, self.heads, dropout_p=p)  # (N, H W, C)
        # back to a channels-last (N, C, H, W) map, channel = head * d + j
        return o.reshape(n, h, w, c).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, dropout={self.dropout}"


class GatedAttention(nn.Module):
    r"""Flow++'s attention layer: gated residual multi-head self-attention, then layer norm.

    .. math::
        [a, b] = \mathrm{Conv}_{1\times1}(\mathrm{MHSA}(x)), \quad
        y = \mathrm{LN}(x + a \odot \sigma(b)),

    with :math:`\mathrm{MHSA}` the :class:`MultiHeadSelfAttention` (its own 1x1 convolution
    to queries, keys and values included) and :math:`\mathrm{LN}` the layer norm of the
    channels at each position.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        channels: channels of the residual stream.
        heads: attention heads; must divide ``channels``.
        dropout: dropout probability on the attention weights, in ``[0, 1)``.

    Shapes:
        input and output ``(N, channels, H, W)``.

    Example:
        >>> import torch
        >>> GatedAttention(8, heads=4)(torch.randn(2, 8, 1, 1)).shape
        torch.Size([2, 8, 1, 1])
    """

    def __init__(self, channels: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(channels, heads, dropout)
        self.channels = channels
        self.gate_conv = nn.Conv2d(channels, 2 * channels, 1)
        self.gate = Gate(tanh=False)
        self.norm = _ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.gate(self.gate_conv(self.attention(x))))


class AttentionConvNet(_ConvNet):
    r"""Flow++'s coupling network: a 3x3 stem, gated conv / attention blocks, a zero 3x3 head.

    .. math::
        h_0 = \mathrm{Conv}_{3\times3}([x, c]), \quad
        h_k = \mathrm{Attn}(\mathrm{Conv}(h_{k-1})), \quad
        \mathrm{NN}(x) = \mathrm{Conv}^{0}_{3\times3}(h_B),

    with :math:`\mathrm{Conv}` the :class:`GatedResidualConv`, :math:`\mathrm{Attn}` the
    :class:`GatedAttention` (left out with ``attention=False``) and
    :math:`\mathrm{Conv}^{0}` a :class:`~pyro_lgm.nn.resnet.ZeroConv2d`, so the network
    outputs zeros until trained and a coupling built on it starts as the identity. Each
    image is processed on its own (layer norm, no batch statistics); with attention every
    output position depends on every input position after one block.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019, Sec. 3.3.

    Args:
        in_channels: channels of the conditioning part.
        out_channels: channels of the parameters it outputs.
        hidden: channels of the residual stream (96 for CIFAR-10 in the paper).
        blocks: number of conv / attention blocks (``>= 0``; 10 per coupling in the paper).
        heads: attention heads; must divide ``hidden`` when ``attention`` is on.
        attention: include the attention layer of each block.
        dropout: dropout probability in the conv and attention layers, in ``[0, 1)``.
        context_channels: channels of a context map read alongside the input (0: none).

    Shapes:
        ``x``: ``(N, in_channels, H, W)``; ``context``: ``(N, context_channels, H, W)``;
        output ``(N, out_channels, H, W)``.

    Example:
        >>> import torch
        >>> net = AttentionConvNet(2, 4, hidden=8, blocks=1, heads=2)
        >>> y = net(torch.randn(3, 2, 5, 6))
        >>> y.shape, y.abs().max().item()
        (torch.Size([3, 4, 5, 6]), 0.0)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 96,
        blocks: int = 2,
        heads: int = 4,
        attention: bool = True,
        dropout: float = 0.0,
        context_channels: int = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, context_channels)
        self.hidden = _check_int("hidden", hidden, 1)
        self.blocks = _check_int("blocks", blocks, 0)
        self.heads = _check_int("heads", heads, 1)
        if not isinstance(attention, bool):
            raise ValueError(f"attention: expected True or False, got {attention!r}")
        self.attention = attention
        self.dropout = _check_dropout(dropout)
        if attention and hidden % heads:
            raise ValueError(f"heads: expected a divisor of hidden={hidden}, got heads={heads}")
        self.stem = nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1)
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers.append(GatedResidualConv(hidden, dropout))
            if attention:
                layers.append(GatedAttention(hidden, heads, dropout))
        self.body = nn.Sequential(*layers)
        self.head = ZeroConv2d(hidden, out_channels)
        self._channels_last()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(self.stem(self._input(x, context)))
        return self.head(h).contiguous()

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden={self.hidden}, blocks={self.blocks}, "
            f"heads={self.heads}, attention={self.attention}, dropout={self.dropout}"
        )
