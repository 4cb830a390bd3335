r"""Masked linear layers and the MADE autoregressive network (Germain et al., 2015).

:class:`MaskedLinear` is a linear layer whose weight is multiplied by a fixed 0/1 mask
(a registered buffer) at every call. :class:`MADE` stacks such layers with masks chosen from
*degrees* so that output ``i`` depends only on inputs that come before ``i`` in an
autoregressive order.

Fast path. Hidden units are stored sorted by degree, so in natural coordinates (natural or
reversed order) or after gathering the inputs into the autoregressive order (any other
order) every mask of a MADE is a *staircase*: the ones of row ``r`` form an interval of
columns whose ends move monotonically with ``r``, and about half of the entries are
structurally zero. :class:`MADE` cuts each masked matrix into a few row blocks, each
restricted to the column range its rows use, and runs the forward product, the input
gradient and the weight gradient block by block (a custom autograd function), so the
all-zero blocks are never multiplied: with 8 blocks about 56% of the dense work. The plain
masked product ``F.linear(x, weight * mask, bias)`` is kept as the reference path
(:meth:`MADE.forward_reference`); both give the same result up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from pyro_lgm._cache import Stamp
from pyro_lgm.errors import check_finite

__all__ = ["MADE", "MaskedLinear"]


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


class MaskedLinear(nn.Linear):
    r"""A linear layer with a fixed binary mask on its weight.

    .. math::
        y = x (W \odot M)^\top + b

    The mask ``M`` is a registered buffer (saved in ``state_dict``); it is applied at every
    call and the weight itself is never edited, so masked entries keep their (unused) values
    and receive zero gradient.

    Args:
        in_features: size of the last dimension of the input.
        out_features: size of the last dimension of the output.
        mask: ``(out_features, in_features)`` tensor of zeros and ones (default all ones).
        bias: whether to learn an additive bias.

    Shapes: input ``(..., in_features)``, output ``(..., out_features)``.

    References:
        Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for Distribution
        Estimation. ICML 2015.

    Example:
        >>> import torch
        >>> layer = MaskedLinear(3, 2, mask=torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
        >>> layer(torch.randn(4, 3)).shape
        torch.Size([4, 2])
        >>> x = torch.randn(3, requires_grad=True)
        >>> layer(x)[0].backward()
        >>> x.grad[1:].tolist()
        [0.0, 0.0]
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mask: torch.Tensor | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_positive_int("in_features", in_features, 0)
        _check_positive_int("out_features", out_features, 0)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("mask", torch.ones_like(self.weight))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Copy a new ``(out_features, in_features)`` 0/1 mask into the buffer."""
        if not isinstance(mask, torch.Tensor) or mask.shape != self.weight.shape:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask: expected a tensor of shape {tuple(self.weight.shape)}, got {shape}"
            )
        with torch.no_grad():
            self.mask.copy_(mask != 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


# --------------------------------------------------------------------------------------------
# Staircase (block-triangular) products
# --------------------------------------------------------------------------------------------


class _Blocks(NamedTuple):
    """Row blocks of a masked matrix and the column range each one touches."""

    # (first row, end row, first column, end column): outside these column ranges the
    # rows of the block are masked out entirely
    blocks: tuple[tuple[int, int, int, int], ...]
    # fraction of the matrix covered by the blocks (the work done relative to dense)
    coverage: float


def _split(n: int, min_block: int, max_blocks: int) -> list[int]:
    k = max(1, min(max_blocks, n // max(1, min_block)))
    return [round(i * n / k) for i in range(k + 1)]


def _block_plan(mask: torch.Tensor, min_block: int, max_blocks: int) -> _Blocks:
    """Cut ``mask`` into row blocks, each with the smallest column range holding its ones.

    Correct for any mask (blocks cover every non-zero entry); it saves work when the mask
    is a staircase, i.e. each row's ones form an interval whose ends move monotonically.
    """
    rows, cols = mask.shape
    bounds = _split(rows, min_block, max_blocks)
    blocks = []
    area = 0
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        # the columns any row of the block uses: one reduction over the block's rows, on the
        # mask's device, with no (rows, cols) index temporaries (5x faster at 8000 x 8000)
        used = (mask[r0:r1] != 0).any(0).nonzero().flatten().tolist() if r1 > r0 else []
        lo, hi = (used[0], used[-1] + 1) if used else (0, 0)
        blocks.append((r0, r1, lo, hi))
        area += (r1 - r0) * (hi - lo)
    return _Blocks(tuple(blocks), area / max(1, rows * cols))


def _blocked_linear(
    x: torch.Tensor, wm: torch.Tensor, bias: torch.Tensor | None, plan: _Blocks
) -> torch.Tensor:
    """``x @ wm.T + bias`` reading only the blocks of ``plan`` (``x``: ``(N, cols)``).

    Few kernel launches: one product per block, one bias addition (every parallel region
    is a synchronisation point, which costs most on a busy machine).
    """
    out = x.new_empty(x.shape[0], wm.shape[0])
    for r0, r1, lo, hi in plan.blocks:
        if hi == lo:
            out[:, r0:r1].zero_()
        else:
            torch.mm(x[:, lo:hi], wm[r0:r1, lo:hi].t(), out=out[:, r0:r1])
    if bias is not None:
        out.add_(bias)
    return out


class _BlockedMaskedLinear(torch.autograd.Function):
    """``F.linear(x, weight * mask, bias)`` computed block by block, skipping zero blocks.

    ``x`` is ``(N, cols)``. Forward, input gradient and weight gradient each run one matrix
    product per row block restricted to the block's column range; the gradients are exact
    (masked weights get zero gradient). ``wm``, when given, is ``weight * mask``.
    """

    @staticmethod
    def forward(ctx, x, weight, mask, bias, plan, wm=None):  # noqa: ANN001, ANN205
        if wm is None:
            wm = weight * mask
        out = _blocked_linear(x, wm, bias, plan)
        ctx.save_for_backward(x, wm, mask)
        ctx.plan = plan
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # noqa: ANN001, ANN205
        x, wm, mask = ctx.saved_tensors
        g = g.contiguous()
        plan = ctx.plan
        grad_x = grad_w = grad_b = None
        cols = x.shape[1]
        if ctx.needs_input_grad[0]:
            # a block spanning all columns initialises the result (no separate zero fill)
            full = [b for b in plan.blocks if b[2] == 0 and b[3] == cols]
            if full:
                r0, r1 = full[-1][:2]
                grad_x = torch.mm(g[:, r0:r1], wm[r0:r1])
            else:
                grad_x = torch.zeros_like(x)
            for b in plan.blocks:
                r0, r1, lo, hi = b
                if hi > lo and not (full and b == full[-1]):
                    grad_x[:, lo:hi].addmm_(g[:, r0:r1], wm[r0:r1, lo:hi])
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(wm)
            for r0, r1, lo, hi in plan.blocks:
                if hi > lo:
                    torch.mm(g[:, r0:r1].t(), x[:, lo:hi], out=grad_w[r0:r1, lo:hi])
            grad_w.mul_(mask)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = g.sum(0)
        return grad_x, grad_w, None, grad_b, None, None


# --------------------------------------------------------------------------------------------
# MADE
# --------------------------------------------------------------------------------------------


class _Plan(NamedTuple):
    stamp: Stamp  # the masks and order it was built from (see MADE.structure_tensors)
    permute: bool  # compute in the autoregressive order (gathers) or in natural coordinates
    order: torch.Tensor  # (D,) input permutation into the autoregressive order
    inv: torch.Tensor  # (D,) inverse permutation (degrees - 1)
    masks: tuple[torch.Tensor, ...]  # masks in the computing coordinates, per layer (+ skip)
    blocks: tuple[_Blocks, ...]
    coverage: float  # work relative to dense products, weighted by matrix size


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation (Germain et al., 2015).

    Every input ``x_i`` gets a degree :math:`d(i) \in \{1..D\}` (its 1-based position in
    ``order``); every hidden unit gets a degree :math:`m`. Hidden unit ``k`` of layer ``l`` is
    connected to unit ``j`` of the layer below iff :math:`m^l_k \ge m^{l-1}_j`, and the
    outputs of input ``i`` see hidden unit ``k`` of the last layer iff :math:`d(i) > m^L_k`:

    .. math::
        M^{l}_{kj} = [m^l_k \ge m^{l-1}_j], \qquad M^{out}_{ik} = [d(i) > m^L_k],

    so the output block ``out[..., i, :]`` is a function of :math:`x_{<i}` (in the order)
    only: the network is autoregressive and ``out[..., i, :]`` parametrizes
    :math:`p(x_i \mid x_{<i})`.

    Hidden degrees are spread evenly (sorted) over ``1..D-1``; with a context they range
    over ``0..D-1`` where degree-0 units see the context only, so that the first output in
    the order also depends on the context. When a hidden layer is narrower than the number of
    degree values, some degrees are missing and then not every earlier input reaches every
    output (the network stays autoregressive, it just has blind spots); with every hidden
    width ``>= D - 1`` (``>= D`` for the context to reach the first output) every earlier
    input reaches every output. With ``D = 1`` and no context the output depends on nothing:
    it is a learnable constant (hidden units of degree 0 feed it through their biases).

    The context (``context_dim > 0``) feeds every unit of the first hidden layer through an
    unmasked linear map (the output layer directly when ``hidden_dims`` is empty).
    ``skip_connections`` adds a direct masked input-to-output linear map.

    Args:
        input_dim: ``D``, the number of autoregressive variables.
        hidden_dims: widths of the hidden layers (may be empty).
        param_dims: number of parameters per variable, or a sequence of such numbers
            (e.g. ``[1, 1]`` for a location and a scale); ``P = sum(param_dims)``.
        context_dim: size of the conditioning vector (0 for none).
        order: ``"natural"``, ``"reversed"``, ``"random"`` or an explicit permutation of
            ``range(D)`` giving the inputs in generation order.
        skip_connections: add direct masked connections from the inputs to the outputs.
        activation: hidden non-linearity class (instantiated once).
        seed: seed of the private generator used for ``order="random"`` and
            :meth:`resample_masks` (global RNG when ``None``).
        zero_init_last: initialise the output layer (and skip connections) to zero, so the
            network outputs zeros at initialisation (e.g. a flow starts at the identity).

    Shapes: ``forward(x, context)`` takes ``x`` of shape ``(..., D)`` and ``context`` of
    shape ``(..., context_dim)`` (batch dimensions broadcast) and returns ``(..., D, P)``.

    Buffers saved in ``state_dict``: ``order`` (``order[k]`` is the index of the ``k``-th
    input in the order), ``degrees`` (degree ``1..D`` of each input), ``hidden_degrees_<l>``
    and every layer's ``mask``; loading a state dict restores the same connectivity.

    Speed: with ``fast=None`` (default) the blocked products of the module docstring are
    used when the matrices are large (``input_dim >= 2 * min_block`` and a matrix of at
    least ``fast_threshold`` entries) and the blocks cover at most ``max_coverage`` of the
    masks; ``fast=True``/``False`` force them on/off. For many passes with the same
    parameters (e.g. those of a sequential inversion) wrap the calls in
    :meth:`reuse_weights`: the masked weights are then computed once for the whole block
    instead of once per call. The blocked path supports first-order gradients (double
    backward raises; set ``fast=False`` for higher-order derivatives).
    :meth:`forward_reference` always uses the plain masked products.

    References:
        Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for Distribution
        Estimation. ICML 2015.

    Example:
        >>> import torch
        >>> made = MADE(4, [16, 16], param_dims=[1, 1], order="reversed")
        >>> out = made(torch.randn(8, 4))
        >>> out.shape
        torch.Size([8, 4, 2])
        >>> [p.shape for p in made.split(out)]
        [torch.Size([8, 4, 1]), torch.Size([8, 4, 1])]
        >>> made.order.tolist()
        [3, 2, 1, 0]
    """

    #: automatic fast-path threshold: use blocked products when the largest masked matrix
    #: has at least this many entries.
    fast_threshold: int = 128 * 128

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        param_dims: int | Sequence[int] = 1,
        *,
        context_dim: int = 0,
        order: str | Sequence[int] | torch.Tensor = "natural",
        skip_connections: bool = False,
        activation: type[nn.Module] = nn.ReLU,
        seed: int | None = None,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        self.input_dim = _check_positive_int("input_dim", input_dim)
        if isinstance(hidden_dims, int | str) or not isinstance(hidden_dims, Sequence):
            raise ValueError(f"hidden_dims: expected a sequence of ints, got {hidden_dims!r}")
        self.hidden_dims = tuple(
            _check_positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims)
        )
        if isinstance(param_dims, int) and not isinstance(param_dims, bool):
            param_dims = (param_dims,)
        if not isinstance(param_dims, Sequence) or len(param_dims) == 0:
            raise ValueError(
                f"param_dims: expected a positive int or a non-empty sequence of them, "
                f"got {param_dims!r}"
            )
        self.param_dims = tuple(
            _check_positive_int(f"param_dims[{i}]", p) for i, p in enumerate(param_dims)
        )
        self.num_params = sum(self.param_dims)
        self.context_dim = _check_positive_int("context_dim", context_dim, 0)
        if not isinstance(skip_connections, bool):
            raise ValueError(f"skip_connections: expected a bool, got {skip_connections!r}")
        self.skip_connections = skip_connections
        if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
            raise ValueError(
                f"activation: expected an nn.Module class such as nn.ReLU, got {activation!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.fast: bool | None = None
        self.min_block = 64
        self.max_blocks = 8
        self.max_coverage = 0.8

        D, P = self.input_dim, self.num_params
        self._order_kind, order_t = self._make_order(order)
        self.register_buffer("order", order_t)
        self.register_buffer("degrees", torch.empty(D, dtype=torch.long))
        for i, h in enumerate(self.hidden_dims):
            self.register_buffer(f"hidden_degrees_{i}", torch.zeros(h, dtype=torch.long))

        widths = (D, *self.hidden_dims)
        self.layers = nn.ModuleList(
            MaskedLinear(widths[i], widths[i + 1]) for i in range(len(self.hidden_dims))
        )
        self.output_layer = MaskedLinear(widths[-1], D * P)
        self.skip_layer = MaskedLinear(D, D * P, bias=False) if skip_connections else None
        first = self.hidden_dims[0] if self.hidden_dims else D * P
        self.context_layer = nn.Linear(self.context_dim, first, bias=False) if context_dim else None
        self.activation = activation()
        self.zero_init_last = bool(zero_init_last)
        if self.zero_init_last:
            with torch.no_grad():
                self.output_layer.weight.zero_()
                self.output_layer.bias.zero_()
                if self.skip_layer is not None:
                    self.skip_layer.weight.zero_()
        self._plan: _Plan | None = None
        self._set_masks(self.order, [self._even_degrees(h) for h in self.hidden_dims])

    # ------------------------------------------------------------------ degrees and masks
    def _make_order(self, order: object) -> tuple[str, torch.Tensor]:
        D = self.input_dim
        if isinstance(order, str):
            if order == "natural":
                return order, torch.arange(D)
            if order == "reversed":
                return order, torch.arange(D - 1, -1, -1)
            if order == "random":
                return order, torch.randperm(D, generator=self._generator)
            raise ValueError(
                f"order: expected 'natural', 'reversed', 'random' or a permutation of "
                f"range({D}), got {order!r}"
            )
        try:
            t = torch.as_tensor(order)
        except (TypeError, ValueError, RuntimeError):
            t = None
        if (
            t is None
            or t.dim() != 1
            or t.dtype.is_floating_point
            or t.dtype == torch.bool
            or t.numel() != D
            or not torch.equal(t.sort().values.long(), torch.arange(D))
        ):
            raise ValueError(
                f"order: expected 'natural', 'reversed', 'random' or a permutation of "
                f"range({D}), got {order!r}"
            )
        return "explicit", t.long().clone()

    def _degree_values(self, width: int) -> torch.Tensor:
        D = self.input_dim
        if D == 1:
            return torch.zeros(1, dtype=torch.long)
        if self.context_dim > 0 and width >= D:
            return torch.arange(0, D)
        return torch.arange(1, D)

    def _even_degrees(self, width: int) -> torch.Tensor:
        values = self._degree_values(width)
        idx = (torch.arange(width) * len(values)) // width
        return values[idx]

    def _random_degrees(self, width: int, generator: torch.Generator | None) -> torch.Tensor:
        values = self._degree_values(width)
        R = len(values)
        if width >= R:  # every value at least once, the rest uniformly
            extra = values[torch.randint(R, (width - R,), generator=generator)]
            deg = torch.cat([values, extra])
        else:
            deg = values[torch.randperm(R, generator=generator)[:width]]
        return deg.sort().values

    @torch.no_grad()
    def _set_masks(self, order: torch.Tensor, hidden_degrees: Sequence[torch.Tensor]) -> None:
        D, P = self.input_dim, self.num_params
        dev = self.order.device
        order = order.to(dev)
        degrees = torch.empty(D, dtype=torch.long, device=dev)
        degrees[order] = torch.arange(1, D + 1, device=dev)
        self.order.copy_(order)
        self.degrees.copy_(degrees)
        prev = degrees
        for i, (layer, deg) in enumerate(zip(self.layers, hidden_degrees, strict=True)):
            deg = deg.to(dev)
            getattr(self, f"hidden_degrees_{i}").copy_(deg)
            layer.set_mask(deg[:, None] >= prev[None, :])
            prev = deg
        out_deg = degrees.repeat_interleave(P)
        if self.hidden_dims:
            self.output_layer.set_mask(out_deg[:, None] > prev[None, :])
        else:
            self.output_layer.set_mask(out_deg[:, None] > degrees[None, :])
        if self.skip_layer is not None:
            self.skip_layer.set_mask(out_deg[:, None] > degrees[None, :])
        self._plan = None

    @torch.no_grad()
    def resample_masks(
        self, generator: torch.Generator | None = None, resample_order: bool | None = None
    ) -> None:
        """Draw new connectivity (connectivity-agnostic training, Germain et al. Sec. 4.2).

        Hidden degrees are redrawn at random (every degree value still appears in a layer
        wide enough to hold them all, so such layers keep no blind spot; each layer's
        degrees are kept sorted, which is what the fast path relies on). The input order is
        redrawn uniformly when ``resample_order`` is true (default: only if the order was
        built with ``order="random"``). Weights are untouched.

        Args:
            generator: random generator (default: the one seeded by ``seed``, else global).
            resample_order: whether to draw a new input order.
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator: expected a torch.Generator or None, got {generator!r}")
        if resample_order is not None and not isinstance(resample_order, bool):
            raise ValueError(f"resample_order: expected a bool or None, got {resample_order!r}")
        gen = generator if generator is not None else self._generator
        if resample_order is None:
            resample_order = self._order_kind == "random"
        order = torch.randperm(self.input_dim, generator=gen) if resample_order else self.order
        hidden = [self._random_degrees(h, gen) for h in self.hidden_dims]
        self._set_masks(order.cpu() if resample_order else order, hidden)

    def hidden_degrees(self) -> list[torch.Tensor]:
        """Degrees of the hidden units, one ``(H_l,)`` tensor per hidden layer."""
        return [getattr(self, f"hidden_degrees_{i}") for i in range(len(self.hidden_dims))]

    @torch.no_grad()
    def connectivity(self) -> torch.Tensor:
        """``(D, D)`` bool matrix: ``[i, j]`` is true iff output ``i`` is connected to input ``j``.

        Structural (from the masks, whatever the weights): a path of non-masked connections
        exists from input ``j`` to the outputs of variable ``i``.
        """
        D, P = self.input_dim, self.num_params
        reach = torch.eye(D, device=self.order.device)
        for layer in self.layers:
            reach = ((layer.mask.float() @ reach) > 0).float()
        out_mask = self.output_layer.mask.float().view(D, P, -1)[:, 0]
        conn = (out_mask @ reach) > 0
        if self.skip_layer is not None:
            conn |= self.skip_layer.mask.view(D, P, D)[:, 0] > 0
        return conn

    # ------------------------------------------------------------------ forward passes
    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Split ``(..., D, P)`` outputs into ``(..., D, p_k)`` tensors, one per ``param_dims``."""
        return tuple(torch.split(out, self.param_dims, dim=-1))

    def _validate(self, x: torch.Tensor, context: torch.Tensor | None) -> None:
        w = self.output_layer.weight
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x: expected a tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x: expected shape (..., {self.input_dim}), got {tuple(x.shape)}")
        if x.dtype != w.dtype:
            raise ValueError(f"x: expected dtype {w.dtype} (the network's), got {x.dtype}")
        if x.device != w.device:
            raise ValueError(f"x: expected device {w.device} (the network's), got {x.device}")
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("context: this network has context_dim=0; pass context=None")
            return
        if context is None:
            raise ValueError(
                f"context: this network needs a context of shape (..., {self.context_dim})"
            )
        if (
            not isinstance(context, torch.Tensor)
            or context.dim() == 0
            or (context.shape[-1] != self.context_dim)
        ):
            shape = tuple(context.shape) if isinstance(context, torch.Tensor) else context
            raise ValueError(f"context: expected shape (..., {self.context_dim}), got {shape}")
        if context.dtype != w.dtype or context.device != w.device:
            raise ValueError(
                f"context: expected dtype {w.dtype} on {w.device}, "
                f"got {context.dtype} on {context.device}"
            )
        try:
            torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"context: batch shape {tuple(context.shape[:-1])} does not broadcast with "
                f"the batch shape {tuple(x.shape[:-1])} of x"
            ) from None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Autoregressive parameters ``(..., D, P)`` of ``x`` ``(..., D)``."""
        self._validate(x, context)
        check_finite("x", x)
        if context is not None:
            check_finite("context", context)
        return self._forward(x, context)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # unchecked forward (used in the inner loop of sequential inversions)
        if self.fast is False or not self._large_enough():
            return self._forward_masked(x, context, scoped=True)
        plan = self._get_plan()
        if self.fast is None and plan.coverage > self.max_coverage:
            return self._forward_masked(x, context, scoped=True)
        return self._forward_fast(x, context, plan)

    def forward_reference(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same as :meth:`forward` with plain masked products ``F.linear(x, W * M, b)``."""
        self._validate(x, context)
        return self._forward_masked(x, context)

    def _large_enough(self) -> bool:
        if self.fast:
            return True
        largest = max(
            [layer.weight.numel() for layer in self.layers] + [self.output_layer.weight.numel()]
        )
        return largest >= self.fast_threshold and self.input_dim >= 2 * self.min_block

    def _forward_masked(
        self, x: torch.Tensor, context: torch.Tensor | None, scoped: bool = False
    ) -> torch.Tensor:
        # plain masked products; with ``scoped``, inside reuse_weights() the products W * M
        # are computed once for the whole block
        layers = [*self.layers, self.output_layer]
        if self.skip_layer is not None:
            layers.append(self.skip_layer)
        build = lambda: [m.weight * m.mask for m in layers]
        ws = self._scoped(("masked",), build) if scoped else build()
        L = len(self.layers)
        h = x
        for i in range(L):
            h = F.linear(h, ws[i], layers[i].bias)
            if i == 0 and self.context_layer is not None:
                h = h + self.context_layer(context)
            h = self.activation(h)
        out = F.linear(h, ws[L], self.output_layer.bias)
        if not self.layers and self.context_layer is not None:
            out = out + self.context_layer(context)
        if self.skip_layer is not None:
            out = out + F.linear(x, ws[L + 1])
        return out.unflatten(-1, (self.input_dim, self.num_params))

    @contextlib.contextmanager
    def reuse_weights(self) -> Iterator[None]:
        """Within this block, compute the masked (and permuted) weights once and reuse them.

        For many passes with the same parameters, such as the ``D`` passes of a sequential
        inversion or of sampling: the products ``W * M`` are formed at the first pass and
        reused by the next ones, per grad mode. The cache lives only as long as the block,
        so no later call can see weights of parameters that have changed since. Do not
        change parameters or masks inside the block. Nested blocks share the outer one.

        Example:
            >>> import torch
            >>> made = MADE(3, [8])
            >>> x = torch.zeros(2, 3)
            >>> with torch.no_grad(), made.reuse_weights():
            ...     for _ in range(3):  # one product W * M per layer, not three
            ...         x = made(x)[..., 0]
        """
        if self.__dict__.get("_weight_scope") is not None:
            yield
            return
        self.__dict__["_weight_scope"] = {}
        try:
            yield
        finally:
            self.__dict__["_weight_scope"] = None

    def _scoped(self, tag: tuple, build: Callable[[], Any]) -> Any:
        """``build()``, reused inside the enclosing :meth:`reuse_weights` block (if any)."""
        scope = self.__dict__.get("_weight_scope")
        if scope is None:
            return build()
        key = (*tag, torch.is_grad_enabled())
        if key not in scope:
            scope[key] = build()
        return scope[key]

    def structure_tensors(self) -> list[torch.Tensor]:
        """The buffers that fix the connectivity: the order, degrees and every mask."""
        ts = [self.order, self.degrees, self.output_layer.mask]
        ts += [layer.mask for layer in self.layers]
        if self.skip_layer is not None:
            ts.append(self.skip_layer.mask)
        return ts

    def _masks_in(self, permute: bool) -> list[torch.Tensor]:
        """Masks in natural coordinates, or with inputs/outputs in the autoregressive order."""
        masks = [layer.mask for layer in self.layers] + [self.output_layer.mask]
        if self.skip_layer is not None:
            masks.append(self.skip_layer.mask)
        if not permute:
            return masks
        D, P, order, L = self.input_dim, self.num_params, self.order, len(self.layers)
        out = []
        for i, m in enumerate(masks):
            if i >= L:  # output rows (i, p) -> order
                m = m.view(D, P, -1)[order].reshape(D * P, -1)
            if i == 0 or i == L + 1 or (i == L and L == 0):  # input columns -> order
                m = m[:, order]
            out.append(m.contiguous())
        return out

    @torch.no_grad()
    def _get_plan(self) -> _Plan:
        """Block plans of every masked matrix, rebuilt when the masks or order change.

        Natural coordinates are used when the masks are already staircases there (natural
        and reversed orders); otherwise inputs and outputs are gathered into the
        autoregressive order, where they always are.
        """
        structure = self.structure_tensors()
        if self._plan is not None and self._plan.stamp.valid(structure):
            return self._plan
        stamp = Stamp(structure, generation=False)
        best = None
        for permute in (False, True):
            masks = self._masks_in(permute)
            blocks = [_block_plan(m, self.min_block, self.max_blocks) for m in masks]
            total = sum(m.numel() for m in masks)
            coverage = sum(b.coverage * m.numel() for b, m in zip(blocks, masks)) / max(1, total)
            if best is None or coverage < 0.95 * best[2]:
                best = (permute, masks, coverage, blocks)
        permute, masks, coverage, blocks = best
        self._plan = _Plan(
            stamp, permute, self.order, self.degrees - 1, tuple(masks), tuple(blocks), coverage
        )
        return self._plan

    def _masked_weights_in(self, plan: _Plan) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Masked (and permuted) weights and biases of ``plan``, for use without autograd."""
        ws, bs = self._weights_in(plan)
        return [w * m for w, m in zip(ws, plan.masks)], bs

    def _weights_in(self, plan: _Plan) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Weights and biases in the plan's coordinates (differentiable gathers)."""
        D, P, L = self.input_dim, self.num_params, len(self.layers)
        layers = [*self.layers, self.output_layer]
        if self.skip_layer is not None:
            layers.append(self.skip_layer)
        ws = [m.weight for m in layers]
        bs = [m.bias for m in layers]
        if plan.permute:
            order = plan.order
            for i in range(len(ws)):
                w, b = ws[i], bs[i]
                if i >= L:
                    w = w.view(D, P, -1).index_select(0, order).reshape(D * P, -1)
                    if b is not None:
                        b = b.view(D, P).index_select(0, order).reshape(D * P)
                if i == 0 or i == L + 1 or (i == L and L == 0):
                    w = w.index_select(1, order)
                ws[i], bs[i] = w, b
        return ws, bs

    def _forward_fast(
        self, x: torch.Tensor, context: torch.Tensor | None, plan: _Plan
    ) -> torch.Tensor:
        D, P, L = self.input_dim, self.num_params, len(self.layers)
        if torch.is_grad_enabled():
            ws, bs = self._scoped(("blocked", id(plan)), lambda: self._weights_in(plan))
            wms: list = [None] * len(ws)
        else:
            wms, bs = self._scoped(("blocked", id(plan)), lambda: self._masked_weights_in(plan))
            ws = wms

        def linear(i: int, h: torch.Tensor) -> torch.Tensor:
            return _BlockedMaskedLinear.apply(
                h, ws[i], plan.masks[i], bs[i], plan.blocks[i], wms[i]
            )

        batch_x = x.shape[:-1]
        xs = x.reshape(-1, D)
        if plan.permute:
            xs = xs.index_select(1, plan.order)
        xs = xs.contiguous()
        batch = batch_x
        h = xs
        for i in range(L):
            h = linear(i, h)
            if i == 0 and self.context_layer is not None:
                hc = h.reshape(*batch_x, h.shape[-1]) + self.context_layer(context)
                batch = hc.shape[:-1]
                h = hc.reshape(-1, hc.shape[-1])
            h = self.activation(h)
        out = linear(L, h)
        if self.skip_layer is not None:
            skip = linear(L + 1, xs)
            if batch != batch_x:
                out = out.reshape(*batch, D * P) + skip.reshape(*batch_x, D * P)
                out = out.reshape(-1, D * P)
            else:
                out = out + skip
        out = out.view(out.shape[0], D, P)
        if plan.permute:
            out = out.index_select(1, plan.inv)
        out = out.reshape(*batch, D, P)
        if L == 0 and self.context_layer is not None:
            out = out + self.context_layer(context).unflatten(-1, (D, P))
        return out

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, hidden_dims={list(self.hidden_dims)}, "
            f"param_dims={list(self.param_dims)}, context_dim={self.context_dim}, "
            f"order={self._order_kind!r}, skip_connections={self.skip_connections}"
        )
