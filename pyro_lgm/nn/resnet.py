r"""Convolutional conditioners of image coupling layers: Glow's 3-layer CNN and RealNVP's ResNet.

A coupling layer on images computes the parameters of the transformed part from the
conditioning part with an arbitrary convolutional network. Both networks here end in a
zero-initialised convolution (:class:`ZeroConv2d`), so a new coupling is the identity, and
both may read a context map concatenated to their input channels (a conditional coupling
broadcasts a context vector to such a map).

* :class:`GlowConvNet`: 3x3 conv, ReLU, 1x1 conv, ReLU, zero 3x3 conv (Kingma & Dhariwal,
  2018, Sec. 3.3 and Table 1: "NN()" with 512 hidden channels in the paper).
* :class:`ResNetConvNet`: a 3x3 stem, residual blocks of two 3x3 convolutions, a zero 3x3
  head (Dinh et al., 2017, Sec. 4.1 use a deep ResNet with batch normalization; batch
  statistics would make the layer's output depend on the rest of the batch, so this one has
  none and relies on ActNorm between the flow's steps).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GlowConvNet", "ResNetConvNet", "ZeroConv2d"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class ZeroConv2d(nn.Conv2d):
    """A 3x3 (or ``kernel_size``) same-padded convolution whose weight and bias start at zero.

    Example:
        >>> import torch
        >>> ZeroConv2d(2, 3)(torch.randn(1, 2, 4, 4)).abs().max().item()
        0.0
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        _check_int("in_channels", in_channels, 1)
        _check_int("out_channels", out_channels, 1)
        _check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()


class _ConvNet(nn.Module):
    """Input concatenation with an optional context map, and the shape checks."""

    def __init__(self, in_channels: int, out_channels: int, context_channels: int) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        self.context_channels = _check_int("context_channels", context_channels, 0)

    def _channels_last(self) -> None:
        """Keep the convolutions' weights channels-last: with inputs in the same layout the
        CPU convolutions (oneDNN) ran 1.25-1.7x faster, forward and backward, at the sizes of
        a small Glow on MNIST."""
        self.to(memory_format=torch.channels_last)

    def _input(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x: expected shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if self.context_channels == 0:
            if context is not None:
                raise ValueError("context: this network takes no context (context_channels=0)")
            return x.contiguous(memory_format=torch.channels_last)
        want = (x.shape[0], self.context_channels, *x.shape[2:])
        if context is None or tuple(context.shape) != want:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context: expected a map of shape {want}, got {got}")
        return torch.cat([x, context], dim=1).contiguous(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"context_channels={self.context_channels}"
        )


class GlowConvNet(_ConvNet):
    r"""Glow's coupling network: conv 3x3, ReLU, conv 1x1, ReLU, zero-initialised conv 3x3.

    .. math::
        \mathrm{NN}(x) = \mathrm{Conv}^{0}_{3\times3}\big(\mathrm{ReLU}(\mathrm{Conv}_{1
        \times 1}(\mathrm{ReLU}(\mathrm{Conv}_{3\times3}([x, c]))))\big)

    References:
        D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        in_channels: channels of the conditioning part.
        out_channels: channels of the parameters it outputs.
        hidden: hidden channels (512 in the paper).
        context_channels: channels of a context map read alongside the input (0: none).

    Shapes:
        ``x``: ``(N, in_channels, H, W)``; ``context``: ``(N, context_channels, H, W)``;
        output ``(N, out_channels, H, W)``.

    Example:
        >>> import torch
        >>> GlowConvNet(2, 4, hidden=8)(torch.randn(3, 2, 5, 5)).shape
        torch.Size([3, 4, 5, 5])
    """

    def __init__(
        self, in_channels: int, out_channels: int, hidden: int = 512, context_channels: int = 0
    ) -> None:
        super().__init__(in_channels, out_channels, context_channels)
        self.hidden = _check_int("hidden", hidden, 1)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            ZeroConv2d(hidden, out_channels),
        )
        self._channels_last()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self._input(x, context)).contiguous()


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(torch.relu(self.conv1(torch.relu(h))))


class ResNetConvNet(_ConvNet):
    r"""RealNVP's coupling network: a 3x3 stem, residual blocks, a zero-initialised 3x3 head.

    .. math::
        h_0 = \mathrm{Conv}_{3\times3}([x, c]), \quad
        h_{k} = h_{k-1} + \mathrm{Conv}_{3\times3}(\mathrm{ReLU}(\mathrm{Conv}_{3\times3}
        (\mathrm{ReLU}(h_{k-1})))), \quad
        \mathrm{NN}(x) = \mathrm{Conv}^{0}_{3\times3}(\mathrm{ReLU}(h_B)).

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017. K. He et al. *Deep Residual Learning for Image Recognition*. CVPR 2016.

    Args:
        in_channels: channels of the conditioning part.
        out_channels: channels of the parameters it outputs.
        hidden: channels of the residual stream.
        blocks: number of residual blocks (``>= 0``).
        context_channels: channels of a context map read alongside the input (0: none).

    Shapes:
        ``x``: ``(N, in_channels, H, W)``; ``context``: ``(N, context_channels, H, W)``;
        output ``(N, out_channels, H, W)``.

    Example:
        >>> import torch
        >>> ResNetConvNet(1, 2, hidden=8, blocks=2)(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 2, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 64,
        blocks: int = 2,
        context_channels: int = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, context_channels)
        self.hidden = _check_int("hidden", hidden, 1)
        self.blocks = _check_int("blocks", blocks, 0)
        self.stem = nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1)
        self.body = nn.Sequential(*[_ResidualBlock(hidden) for _ in range(blocks)])
        self.head = ZeroConv2d(hidden, out_channels)
        self._channels_last()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(self.stem(self._input(x, context)))
        return self.head(torch.relu(h)).contiguous()
