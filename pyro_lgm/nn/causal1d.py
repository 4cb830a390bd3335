r"""A small WaveNet-like network over sequences whose output at step ``t`` reads only ``x_{<t}``.

:class:`CausalConvNet1d` is the conditioner of the Parallel WaveNet student's flows
(:class:`pyro_lgm.transforms.SequenceIAF`): it maps a noise sequence ``z`` of shape
``(N, C_in, T)`` to per-step parameters ``(N, C_out, T)`` with output ``t`` a function of
``z_{t-R}, ..., z_{t-1}`` only (``R`` = :attr:`CausalConvNet1d.receptive_field`). Strict
causality (no access to ``z_t``) comes from the first convolution, which is shifted one step
to the right; the dilated layers after it are ordinary causal convolutions (left padding).

Layers (van den Oord et al., 2016, Sec. 2.3-2.5, at a small scale): an input convolution of
width ``kernel_size`` over ``z_{t-k..t-1}``; ``layers`` residual blocks, each a dilated causal
convolution (dilations ``1, 2, 4, ...``) into gated units ``tanh(f) * sigmoid(g)`` (plus the
projections of a global / local context, when given), a 1x1 residual (none in the last
block, whose residual output nothing reads) and a 1x1 skip projection;
``ReLU -> 1x1 -> ReLU -> 1x1`` on the sum of the skips. The last 1x1 starts at zero
(``zero_init_last``), so a flow built on the network starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CausalConvNet1d"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class CausalConvNet1d(nn.Module):
    r"""Strictly causal gated dilated convolutions over ``(N, C_in, T)`` sequences.

    Output ``t`` depends on inputs ``t - R, ..., t - 1`` only, every one of them inside the
    receptive field ``R = k + (k - 1) \sum_l d_l`` (``k`` = ``kernel_size``, ``d_l`` the
    dilations); output ``0`` depends on no input (only on the biases and the context).

    Args:
        in_channels: channels of the input sequence.
        hidden: residual (and skip) channels.
        layers: gated residual blocks.
        kernel_size: width of every convolution, ``>= 1``.
        out_channels: channels of the output.
        dilations: one per block; default ``1, 2, 4, ..., 2**(layers - 1)``.
        global_dim: size of a global context vector ``(N, global_dim)`` added to the gates.
        num_classes: a class label ``(N,)`` (long) embedded and added to the gates.
            ``global_dim`` and ``num_classes`` exclude each other.
        local_channels: channels of a local context ``(N, local_channels, T)`` at the
            sequence's own rate (upsample it first), mixed into the gates with a 1x1
            convolution: output ``t`` then reads local features at every step (they are
            context, not input).
        zero_init_last: start the last 1x1 convolution at zero.

    The context goes to :meth:`forward` as ``context``: the global (or label) tensor, the
    local tensor, or the pair ``(global, local)`` when the network has both.

    Example:
        >>> import torch
        >>> net = CausalConvNet1d(hidden=8, layers=3, kernel_size=2, zero_init_last=False)
        >>> net.receptive_field
        9
        >>> net(torch.randn(4, 1, 16)).shape
        torch.Size([4, 2, 16])
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 32,
        layers: int = 4,
        kernel_size: int = 2,
        out_channels: int = 2,
        dilations: Sequence[int] | None = None,
        global_dim: int | None = None,
        num_classes: int | None = None,
        local_channels: int | None = None,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.hidden = _check_int("hidden", hidden, 1)
        self.layers = _check_int("layers", layers, 0)
        self.kernel_size = _check_int("kernel_size", kernel_size, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        if dilations is None:
            dilations = [2**i for i in range(layers)]
        if isinstance(dilations, str | bytes) or not isinstance(dilations, Sequence):
            raise ValueError(f"dilations: expected a sequence of ints, got {dilations!r}")
        dilations = [_check_int("dilations", d, 1) for d in dilations]
        if len(dilations) != layers:
            raise ValueError(f"dilations: expected {layers} values (one a layer), got {dilations}")
        self.dilations = tuple(dilations)
        if global_dim is not None and num_classes is not None:
            raise ValueError("global_dim: give global_dim or num_classes, not both")
        self.global_dim = None if global_dim is None else _check_int("global_dim", global_dim, 1)
        self.num_classes = (
            None if num_classes is None else _check_int("num_classes", num_classes, 1)
        )
        self.local_channels = (
            None if local_channels is None else _check_int("local_channels", local_channels, 1)
        )
        k, h = kernel_size, hidden
        self.input_conv = nn.Conv1d(in_channels, h, k)
        self.filters = nn.ModuleList(nn.Conv1d(h, 2 * h, k, dilation=d) for d in self.dilations)
        # the last block's residual output would feed nothing: it has none
        self.residuals = nn.ModuleList(nn.Conv1d(h, h, 1) for _ in self.dilations[1:])
        self.skips = nn.ModuleList(nn.Conv1d(h, h, 1) for _ in self.dilations)
        gate = 2 * h * max(layers, 1)
        self.global_proj: nn.Module | None = None
        if self.global_dim is not None:
            self.global_proj = nn.Linear(self.global_dim, gate)
        elif self.num_classes is not None:
            self.global_proj = nn.Embedding(self.num_classes, gate)
        self.local_proj = None
        if self.local_channels is not None:
            self.local_proj = nn.Conv1d(self.local_channels, gate, 1)
        self.head = nn.Conv1d(h, h, 1)
        self.output = nn.Conv1d(h, out_channels, 1)
        if zero_init_last:
            with torch.no_grad():
                self.output.weight.zero_()
                self.output.bias.zero_()

    @property
    def receptive_field(self) -> int:
        """How many past steps reach an output: ``k + (k - 1) * sum(dilations)``."""
        return self.kernel_size + (self.kernel_size - 1) * sum(self.dilations)

    @property
    def has_global(self) -> bool:
        return self.global_proj is not None

    @property
    def has_local(self) -> bool:
        return self.local_proj is not None

    def split_context(self, context: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(global, local)`` from what :meth:`forward` accepts as ``context``."""
        if not self.has_global and not self.has_local:
            if context is not None:
                raise ValueError("context: the network takes no context; pass context=None")
            return None, None
        if context is None:
            raise ValueError("context: the network is conditional; a context is required")
        if self.has_global and self.has_local:
            if not isinstance(context, tuple | list) or len(context) != 2:
                raise ValueError("context: expected a pair (global, local) for this network")
            return context[0], context[1]
        if not isinstance(context, torch.Tensor):
            raise ValueError(f"context: expected a tensor, got {type(context).__name__}")
        return (context, None) if self.has_global else (None, context)

    def _check_input(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (N, {self.in_channels}, T), got {got}")
        w = self.input_conv.weight
        if x.dtype != w.dtype or x.device != w.device:
            raise ValueError(
                f"x: expected dtype {w.dtype} on {w.device} (the network's), "
                f"got {x.dtype} on {x.device}"
            )
        return x

    def _gate_bias(self, context: object, n: int, T: int) -> torch.Tensor | None:
        g, loc = self.split_context(context)
        out = None
        if g is not None:
            if self.num_classes is not None:
                if g.dtype != torch.long or g.shape != (n,):
                    raise ValueError(f"context: expected labels of shape ({n},), long")
                if g.numel() and (g.min() < 0 or g.max() >= self.num_classes):
                    raise ValueError(f"context: labels outside [0, {self.num_classes})")
            elif g.shape != (n, self.global_dim):
                raise ValueError(
                    f"context: expected a global context of shape ({n}, {self.global_dim}), "
                    f"got {tuple(g.shape)}"
                )
            out = self.global_proj(g).unsqueeze(-1)  # type: ignore[misc]
        if loc is not None:
            if loc.shape != (n, self.local_channels, T):
                raise ValueError(
                    f"context: expected a local context of shape ({n}, {self.local_channels}, "
                    f"{T}), got {tuple(loc.shape)}"
                )
            lp = self.local_proj(loc)  # type: ignore[misc]
            out = lp if out is None else out + lp
        return out

    def forward(self, x: torch.Tensor, context: object = None) -> torch.Tensor:
        """``(N, C_in, T) -> (N, C_out, T)``; output ``t`` reads ``x[..., t-R:t]`` only."""
        x = self._check_input(x)
        n, _, T = x.shape
        bias = self._gate_bias(context, n, T)
        k = self.kernel_size
        # shift by one: output t reads x_{t-k}, ..., x_{t-1}
        h = self.input_conv(F.pad(x, (k, 0))[..., : T + k - 1])
        skip = torch.zeros_like(h)
        hd = self.hidden
        for i, (d, conv) in enumerate(zip(self.dilations, self.filters, strict=True)):
            a = conv(F.pad(h, ((k - 1) * d, 0)))
            if bias is not None:
                a = a + bias[:, 2 * hd * i : 2 * hd * (i + 1)]
            f, g = a.chunk(2, dim=1)
            u = torch.tanh(f) * torch.sigmoid(g)
            skip = skip + self.skips[i](u)
            if i < len(self.residuals):
                h = h + self.residuals[i](u)
        if not self.layers:
            skip = h
        return self.output(F.relu(self.head(F.relu(skip))))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, hidden={self.hidden}, dilations={self.dilations}, "
            f"kernel_size={self.kernel_size}, out_channels={self.out_channels}"
        )
