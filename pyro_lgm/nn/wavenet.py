r"""WaveNet: a stack of dilated causal convolutions over 1-D sequences (audio).

WaveNet (van den Oord et al., 2016) models a waveform :math:`x_1, \dots, x_T` as

.. math::
    p(x) = \prod_{t=1}^{T} p(x_t \mid x_1, \dots, x_{t-1}),

each factor read from one parallel pass of a network built only from *causal* convolutions:
the output at step :math:`t` sees inputs before :math:`t` and nothing else. Dilated
convolutions (dilations :math:`1, 2, 4, \dots, 2^{L-1}`, the stack repeated) make the
receptive field grow exponentially with depth. Every residual block applies the gated
activation

.. math::
    z = \tanh(W_f * h + V_f c) \odot \sigma(W_g * h + V_g c),

with :math:`c` the conditioning (a global class embedding / vector, and a local feature
sequence upsampled to the sample rate by a transposed convolution), then a 1x1 residual
convolution back into the stream and a 1x1 skip convolution into the head; the summed skips
go through ReLU, 1x1, ReLU, 1x1 to the parameters of each step's distribution: a softmax
over :math:`2^{bits}` (mu-law) levels, or a discretized logistic mixture (Salimans et al.,
2017), the output of Parallel WaveNet's teacher.

Generation uses the fast algorithm of Paine et al. (2016): :meth:`WaveNet.generation`
returns a session that keeps, for every layer, a queue (ring buffer) of that layer's past
inputs, so each new sample costs one kernel application per layer instead of a pass over the
whole sequence.

References:
    A. van den Oord, S. Dieleman, H. Zen, K. Simonyan, O. Vinyals, A. Graves,
    N. Kalchbrenner, A. Senior, K. Kavukcuoglu. *WaveNet: A Generative Model for Raw Audio*.
    arXiv:1609.03499, 2016.

    T. L. Paine, P. Khorrami, S. Chang, Y. Zhang, P. Ramachandran, M. A. Hasegawa-Johnson,
    T. S. Huang. *Fast Wavenet Generation Algorithm*. arXiv:1611.09482, 2016.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_lgm.nn.pixelcnn import _int

__all__ = ["WaveNet"]

OUTPUTS = ("categorical", "logistic_mixture")


class WaveNet(nn.Module):
    r"""The WaveNet network: integer levels ``(B, T)`` to per-step parameters ``(B, P, T)``.

    Args:
        residual_channels: channels of the residual stream.
        skip_channels: channels of the skip connections and of the head.
        dilation_channels: channels of the gated activation.
        layers_per_stack: layers per stack; dilations ``1, 2, ..., 2^(layers_per_stack-1)``.
        stacks: how many times the dilation pattern repeats.
        kernel_size: taps of the causal first convolution and of each dilated convolution.
        output: ``"categorical"`` (``2^bits`` logits per step) or ``"logistic_mixture"``
            (``3 K`` numbers per step: ``K`` mixture logits, ``K`` means on the ``[-1, 1]``
            scale, ``K`` log-scales).
        bits: levels are ``0 .. 2^bits - 1``; default 8 (categorical, mu-law) or 16 (mixture).
        num_mixtures: ``K`` for the logistic mixture.
        num_classes: global conditioning by a class label (an embedding per layer).
        global_dim: global conditioning by a vector of this size (at most one of the two).
        local_channels: channels of a local conditioning sequence ``(B, C_l, T / u)``.
        local_upsample: ``u``, the stride of the transposed convolution that upsamples the
            local features to the sample rate (default 1).

    Input values are levels ``0 .. 2^bits - 1`` (any real dtype), mapped to ``[-1, 1]`` by
    :math:`2 x / (2^{bits} - 1) - 1` before the first convolution.

    Example:
        >>> net = WaveNet(residual_channels=4, skip_channels=4, dilation_channels=4,
        ...               layers_per_stack=3, bits=2)
        >>> net.receptive_field
        9
        >>> net(torch.zeros(2, 16)).shape
        torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        residual_channels: int = 32,
        skip_channels: int = 64,
        dilation_channels: int = 32,
        layers_per_stack: int = 10,
        stacks: int = 1,
        kernel_size: int = 2,
        output: str = "categorical",
        bits: int | None = None,
        num_mixtures: int = 5,
        num_classes: int | None = None,
        global_dim: int | None = None,
        local_channels: int | None = None,
        local_upsample: int | None = None,
    ) -> None:
        super().__init__()
        r = _int("residual_channels", residual_channels, 1)
        s = _int("skip_channels", skip_channels, 1)
        dc = _int("dilation_channels", dilation_channels, 1)
        self.layers_per_stack = _int("layers_per_stack", layers_per_stack, 1)
        self.stacks = _int("stacks", stacks, 1)
        self.kernel_size = _int("kernel_size", kernel_size, 2)
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {list(OUTPUTS)}, got {output!r}")
        self.output_kind = output
        if bits is None:
            bits = 8 if output == "categorical" else 16
        self.bits = _int("bits", bits, 1, 16)
        self.num_mixtures = _int("num_mixtures", num_mixtures, 1)
        if num_classes is not None and global_dim is not None:
            raise ValueError("num_classes, global_dim: give at most one global condition")
        self.num_classes = None if num_classes is None else _int("num_classes", num_classes, 1)
        self.global_dim = None if global_dim is None else _int("global_dim", global_dim, 1)
        if local_channels is None and local_upsample is not None:
            raise ValueError("local_upsample: only with local_channels")
        self.local_channels = (
            None if local_channels is None else _int("local_channels", local_channels, 1)
        )
        self.local_upsample = (
            1 if local_upsample is None else _int("local_upsample", local_upsample, 1)
        )
        self.dilations = [2**i for i in range(self.layers_per_stack)] * self.stacks
        self.dilation_channels = dc
        k = self.kernel_size
        self.first = nn.Conv1d(1, r, k)
        self.gates = nn.ModuleList(nn.Conv1d(r, 2 * dc, k, dilation=d) for d in self.dilations)
        self.residuals = nn.ModuleList(nn.Conv1d(dc, r, 1) for _ in self.dilations)
        self.skips = nn.ModuleList(nn.Conv1d(dc, s, 1) for _ in self.dilations)
        n = len(self.dilations)
        self.global_proj: nn.ModuleList | None = None
        if self.num_classes is not None:
            self.global_proj = nn.ModuleList(
                nn.Embedding(self.num_classes, 2 * dc) for _ in range(n)
            )
        elif self.global_dim is not None:
            self.global_proj = nn.ModuleList(
                nn.Linear(self.global_dim, 2 * dc, bias=False) for _ in range(n)
            )
        self.upsample: nn.ConvTranspose1d | None = None
        self.local_proj: nn.ModuleList | None = None
        if self.local_channels is not None:
            c, u = self.local_channels, self.local_upsample
            self.upsample = nn.ConvTranspose1d(c, c, u, stride=u)
            self.local_proj = nn.ModuleList(nn.Conv1d(c, 2 * dc, 1, bias=False) for _ in range(n))
        self.head1 = nn.Conv1d(s, s, 1)
        self.head2 = nn.Conv1d(s, self.num_params, 1)

    # -- structure ----------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def num_params(self) -> int:
        """``P``: parameters per step."""
        return self.levels if self.output_kind == "categorical" else 3 * self.num_mixtures

    @property
    def receptive_field(self) -> int:
        r"""``R``: the parameters of step :math:`t` depend on :math:`x_{t-R}, \dots, x_{t-1}`
        and on no other sample (exactly these ``R`` predecessors, none of
        :math:`x_t, x_{t+1}, \dots`).

        :math:`R = k + (k - 1)\, S\, (2^{L} - 1)`: ``k`` taps of the first (strictly causal)
        convolution plus ``(k - 1) d`` for each dilated layer (``k = kernel_size``,
        ``S = stacks``, ``L = layers_per_stack``).
        """
        k = self.kernel_size
        return k + (k - 1) * sum(self.dilations)

    @property
    def context_kind(self) -> str | None:
        if self.num_classes is not None:
            return "class"
        if self.global_dim is not None:
            return "vector"
        return None

    # -- conditioning -------------------------------------------------------------------
    def _check_global(self, g: Any, batch: int) -> torch.Tensor | None:
        kind = self.context_kind
        if kind is None:
            if g is not None:
                raise ValueError("global_context: this network takes no global condition")
            return None
        if not isinstance(g, torch.Tensor):
            raise ValueError(f"global_context: expected a tensor, got {type(g).__name__}")
        if kind == "class":
            if g.shape != (batch,) or g.is_floating_point() or g.dtype == torch.bool:
                raise ValueError(
                    f"global_context: expected integer labels of shape ({batch},), got "
                    f"{tuple(g.shape)} of dtype {g.dtype}"
                )
            if bool(((g < 0) | (g >= self.num_classes)).any()):
                raise ValueError(f"global_context: labels must lie in 0..{self.num_classes - 1}")
        elif g.shape != (batch, self.global_dim):
            raise ValueError(
                f"global_context: expected shape ({batch}, {self.global_dim}), got {tuple(g.shape)}"
            )
        return g

    def _check_local(self, loc: Any, batch: int, length: int) -> torch.Tensor | None:
        if self.local_channels is None:
            if loc is not None:
                raise ValueError("local_context: this network takes no local condition")
            return None
        if not isinstance(loc, torch.Tensor):
            raise ValueError(f"local_context: expected a tensor, got {type(loc).__name__}")
        u = self.local_upsample
        want = (batch, self.local_channels, length // u)
        if length % u or loc.shape != want:
            raise ValueError(
                f"local_context: expected shape {want} (length {length} / local_upsample {u}), "
                f"got {tuple(loc.shape)}"
            )
        return loc

    def upsampled(self, local_context: torch.Tensor) -> torch.Tensor:
        """The local features at the sample rate: ``(B, C_l, T_l)`` to ``(B, C_l, T_l u)``."""
        assert self.upsample is not None
        return self.upsample(local_context)

    def _conditions(
        self, global_context: Any, local_context: Any, batch: int, length: int
    ) -> list[torch.Tensor | None]:
        """Per layer, the conditioning term of the gates: ``(B, 2 D, 1)``, ``(B, 2 D, T)`` or
        ``None``."""
        g = self._check_global(global_context, batch)
        loc = self._check_local(local_context, batch, length)
        up = None if loc is None else self.upsampled(loc)
        out: list[torch.Tensor | None] = []
        for i in range(len(self.dilations)):
            c = None
            if g is not None:
                assert self.global_proj is not None
                c = self.global_proj[i](g).unsqueeze(-1)
            if up is not None:
                assert self.local_proj is not None
                lc = self.local_proj[i](up)
                c = lc if c is None else c + lc
            out.append(c)
        return out

    # -- forward ------------------------------------------------------------------------
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Levels to the ``[-1, 1]`` input scale."""
        return x * (2.0 / (self.levels - 1)) - 1.0

    def _check_x(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected a floating tensor of shape (B, T), got {got}")

    def forward(
        self,
        x: torch.Tensor,
        global_context: Any = None,
        local_context: Any = None,
        *,
        scaled: bool = False,
    ) -> torch.Tensor:
        """Parameters ``(B, P, T)``: column ``t`` from ``x[:, :t]`` (and the conditions).

        ``x``: ``(B, T)`` levels, or values already on the ``[-1, 1]`` scale with
        ``scaled=True`` (real audio, for :meth:`WaveNet.continuous_log_prob` of the
        distribution)."""
        self._check_x(x)
        b, t = x.shape
        conds = self._conditions(global_context, local_context, b, t)
        y = x if scaled else self.scale(x)
        k = self.kernel_size
        # strictly causal: pad k on the left, drop the last output; step t reads x[t-k:t]
        h = self.first(F.pad(y.unsqueeze(1), (k, 0)))[..., :t]
        skip = 0.0
        dc = self.dilation_channels
        for i, d in enumerate(self.dilations):
            a = self.gates[i](F.pad(h, ((k - 1) * d, 0)))
            if conds[i] is not None:
                a = a + conds[i]
            z = torch.tanh(a[:, :dc]) * torch.sigmoid(a[:, dc:])
            h = h + self.residuals[i](z)
            skip = skip + self.skips[i](z)
        return self.head2(F.relu(self.head1(F.relu(skip))))

    def generation(
        self, batch: int, length: int, global_context: Any = None, local_context: Any = None
    ) -> WaveNetSession:
        """A fast-generation session (Paine et al., 2016) for ``batch`` sequences of
        ``length`` steps; see :class:`WaveNetSession`."""
        return WaveNetSession(self, batch, length, global_context, local_context)


class WaveNetSession:
    r"""Incremental generation with per-layer queues (Paine et al., 2016).

    Layer ``i`` (dilation ``d``) keeps a ring buffer of its last :math:`(k - 1) d + 1`
    inputs; the first convolution keeps the last ``k`` samples. :meth:`step` pushes the
    newest sample, and for each layer reads the ``k`` taps at offsets
    :math:`0, d, \dots, (k - 1) d` from its queue and applies the layer once: ``O(layers)``
    kernel applications per sample. The result is the column of :meth:`WaveNet.forward` at
    that step (the same weights on the same values; zero-initialized queues are the forward
    pass's zero padding).

    Example:
        >>> net = WaveNet(4, 4, 4, layers_per_stack=2, bits=2).double()
        >>> x = torch.tensor([[0.0, 3.0, 1.0]], dtype=torch.float64)
        >>> s = net.generation(1, 3)
        >>> cols = [s.step(None), s.step(x[:, 0]), s.step(x[:, 1])]
        >>> torch.allclose(torch.stack(cols, -1), net(x))
        True
    """

    def __init__(
        self,
        net: WaveNet,
        batch: int,
        length: int,
        global_context: Any = None,
        local_context: Any = None,
    ) -> None:
        self.net = net
        self.length = _int("length", length, 1)
        p = next(net.parameters())
        with torch.no_grad():
            self.conds = net._conditions(global_context, local_context, batch, length)
        k = net.kernel_size
        r = net.first.out_channels
        self.inputs = torch.zeros(batch, 1, k, dtype=p.dtype, device=p.device)
        self.queues = [
            torch.zeros(batch, r, (k - 1) * d + 1, dtype=p.dtype, device=p.device)
            for d in net.dilations
        ]
        self.t = 0

    @torch.no_grad()
    def step(self, previous: torch.Tensor | None, *, scaled: bool = False) -> torch.Tensor:
        """The parameters ``(B, P)`` of the next step given the previous sample ``(B,)``
        (levels, or ``[-1, 1]`` values with ``scaled=True``; ignored at the first step)."""
        net, t = self.net, self.t
        if t >= self.length:
            raise ValueError(f"step: all {self.length} steps have been generated")
        k = net.kernel_size
        if t > 0:
            if previous is None:
                raise ValueError("previous: required after the first step")
            y = previous if scaled else net.scale(previous)
            self.inputs = torch.cat([self.inputs[:, :, 1:], y.reshape(-1, 1, 1)], -1)
        h = net.first(self.inputs)  # (B, R, 1)
        dc = net.dilation_channels
        skip = 0.0
        for i, d in enumerate(net.dilations):
            q = self.queues[i]
            size = q.shape[-1]
            q[:, :, t % size] = h[:, :, 0]
            taps = [(t - (k - 1 - j) * d) % size for j in range(k)]
            a = F.conv1d(q[:, :, taps], net.gates[i].weight, net.gates[i].bias)
            c = self.conds[i]
            if c is not None:
                a = a + (c if c.shape[-1] == 1 else c[:, :, t : t + 1])
            z = torch.tanh(a[:, :dc]) * torch.sigmoid(a[:, dc:])
            h = h + net.residuals[i](z)
            skip = skip + net.skips[i](z)
        self.t = t + 1
        return net.head2(F.relu(net.head1(F.relu(skip))))[:, :, 0]
