"""A small fully-connected conditioner network shared by the flows.

:class:`DenseNN` maps an input vector (optionally concatenated with a context vector) to a
vector of parameters. Coupling layers use it as their conditioner ``m(x_A)`` / ``(s, t)(x_A)``;
other flows may use it as a hyper-network of a context.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DenseNN"]


class DenseNN(nn.Module):
    r"""A multi-layer perceptron :math:`h \mapsto W_L \sigma(\dots \sigma(W_1 h + b_1)) + b_L`.

    The input is :math:`h = [x, c]`, the concatenation of ``x`` and (when ``context_dim > 0``)
    the context ``c``; batch dimensions of ``x`` and ``c`` broadcast against each other.

    .. math::
        h_0 = [x, c], \qquad h_k = \sigma(W_k h_{k-1} + b_k), \qquad
        \mathrm{out} = W_{L} h_{L-1} + b_{L}

    With ``zero_init_last=True`` (the default) the last layer's weight and bias start at zero,
    so the network outputs zeros at initialisation and a flow that uses it starts as the
    identity (Dinh et al., 2017; Kingma & Dhariwal, 2018).

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*. ICLR 2017.

    Args:
        in_dim: size of ``x``'s last dimension (``>= 1``).
        hidden_dims: sizes of the hidden layers (may be empty: a single affine map).
        out_dim: size of the output's last dimension (``>= 1``).
        context_dim: size of the context's last dimension; ``0`` for no context.
        zero_init_last: start the last layer at zero.
        activation: the non-linearity class, instantiated between layers.

    Shapes:
        ``forward(x, context=None)``: ``x`` is ``(..., in_dim)``, ``context`` is
        ``(..., context_dim)``; the output is ``(broadcast batch, out_dim)``.

    Example:
        >>> import torch
        >>> net = DenseNN(3, [16, 16], 4, context_dim=2)
        >>> net(torch.randn(5, 3), torch.randn(2, 1, 2)).shape
        torch.Size([2, 5, 4])
        >>> bool((net(torch.randn(1, 3), torch.randn(2)) == 0).all())  # zero-initialised
        True
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        context_dim: int = 0,
        zero_init_last: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        for name, value, low in (("in_dim", in_dim, 1), ("out_dim", out_dim, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 0:
            raise ValueError(f"context_dim: expected an integer >= 0, got {context_dim!r}")
        hidden_dims = list(hidden_dims)
        if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden_dims):
            raise ValueError(f"hidden_dims: expected positive integers, got {hidden_dims!r}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.context_dim = context_dim
        self.hidden_dims = tuple(hidden_dims)
        sizes = [in_dim + context_dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for k in range(len(sizes) - 1):
            if k > 0:
                layers.append(activation())
            layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        self.layers = nn.Sequential(*layers)
        if zero_init_last:
            last = self.layers[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate on ``x`` ``(..., in_dim)`` and ``context`` ``(..., context_dim)``."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (..., {self.in_dim}), got {shape}")
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("context: this network has context_dim=0; pass context=None")
            return self.layers(x)
        if context is None:
            raise ValueError(f"context: expected shape (..., {self.context_dim}), got None")
        if not isinstance(context, torch.Tensor) or context.dim() < 1:
            raise ValueError(f"context: expected shape (..., {self.context_dim}), got {context!r}")
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context: expected shape (..., {self.context_dim}), got {tuple(context.shape)}"
            )
        try:
            batch = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"context: batch shape {tuple(context.shape[:-1])} does not broadcast against "
                f"x's batch shape {tuple(x.shape[:-1])}"
            ) from None
        h = torch.cat([x.expand(*batch, -1), context.expand(*batch, -1)], dim=-1)
        return self.layers(h)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, hidden_dims={list(self.hidden_dims)}, "
            f"out_dim={self.out_dim}, context_dim={self.context_dim}"
        )
