r"""Fixed permutations of the features, placed between coupling or autoregressive layers.

Pyro ships :class:`pyro.distributions.transforms.Permute`; ours differs where a flow needs
it to: the permutation is a registered buffer (saved in ``state_dict`` and moved by
``.to(device)`` together with the flow), it is validated, and ``with_cache`` keeps ``dim``.
"""

from __future__ import annotations

import torch
from pyro.distributions import TransformModule
from torch.distributions import constraints

from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms.coupling import _check_input

__all__ = ["Permute", "Reverse", "permute", "reverse"]


class Permute(CachedTransform, TransformModule):
    r"""Reorder the features: :math:`y_i = x_{\pi(i)}`, a volume-preserving bijection.

    .. math::
        y = P_\pi x, \qquad x_{\pi(i)} = y_i, \qquad \log|\det J| = 0.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017 (permutations between coupling layers); G. Papamakarios, T. Pavlakou,
        I. Murray. *Masked Autoregressive Flow for Density Estimation*. NeurIPS 2017.

    Args:
        permutation: ``(D,)`` integer tensor holding each of ``0..D-1`` once.
        dim: the (negative) dimension to permute; the event has ``-dim`` dimensions.

    Shapes:
        ``x``, ``y``: ``(..., D)`` for ``dim=-1`` (``(..., D, *rest)`` in general);
        ``log_abs_det_jacobian``: the batch shape.

    Example:
        >>> import torch
        >>> t = Permute(torch.tensor([2, 0, 1]))
        >>> t(torch.tensor([10.0, 20.0, 30.0])).tolist()
        [30.0, 10.0, 20.0]
        >>> t.inv(torch.tensor([30.0, 10.0, 20.0])).tolist()
        [10.0, 20.0, 30.0]
    """

    bijective = True
    volume_preserving = True

    def __init__(self, permutation: torch.Tensor, *, dim: int = -1, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim >= 0:
            raise ValueError(f"dim: expected a negative integer, got {dim!r}")
        if not isinstance(permutation, torch.Tensor):
            permutation = torch.as_tensor(permutation)
        if permutation.dim() != 1 or permutation.numel() < 1:
            raise ValueError(
                f"permutation: expected a non-empty 1-D tensor, got shape "
                f"{tuple(permutation.shape)}"
            )
        if permutation.is_floating_point() or permutation.is_complex():
            raise ValueError(f"permutation: expected an integer tensor, got {permutation.dtype}")
        permutation = permutation.long()
        n = permutation.numel()
        if not torch.equal(permutation.sort().values.cpu(), torch.arange(n)):
            raise ValueError(
                f"permutation: expected each of 0..{n - 1} exactly once, got {permutation.tolist()}"
            )
        self.dim = dim
        self.input_dim = n
        inverse = torch.empty_like(permutation)
        inverse[permutation] = torch.arange(n, device=permutation.device)
        self.register_buffer("permutation", permutation)
        self.register_buffer("inv_permutation", inverse)

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, -self.dim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, -self.dim)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("x", x, self.input_dim, dim=self.dim)
        return x.index_select(self.dim, self.permutation)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        _check_input("y", y, self.input_dim, dim=self.dim)
        return y.index_select(self.dim, self.inv_permutation)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = -self.dim
        batch = torch.broadcast_shapes(x.shape[: x.dim() - k], y.shape[: y.dim() - k])
        return x.new_zeros(batch)

    def with_cache(self, cache_size: int = 1) -> Permute:
        if cache_size == self._cache_size:
            return self
        return Permute(self.permutation, dim=self.dim, cache_size=cache_size)

    def extra_repr(self) -> str:
        return f"permutation={self.permutation.tolist()}, dim={self.dim}"


class Reverse(Permute):
    r"""Reverse the order of the features, :math:`y_i = x_{D-1-i}` (its own inverse).

    .. math::
        y = (x_{D-1}, \dots, x_0), \qquad \log|\det J| = 0.

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop (alternating the roles of the two halves).

    Args:
        input_dim: ``D``.
        dim: the (negative) dimension to reverse.

    Example:
        >>> Reverse(3)(torch.tensor([1.0, 2.0, 3.0])).tolist()
        [3.0, 2.0, 1.0]
    """

    def __init__(self, input_dim: int, *, dim: int = -1, cache_size: int = 0) -> None:
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
        super().__init__(torch.arange(input_dim - 1, -1, -1), dim=dim, cache_size=cache_size)

    def with_cache(self, cache_size: int = 1) -> Reverse:
        if cache_size == self._cache_size:
            return self
        return Reverse(self.input_dim, dim=self.dim, cache_size=cache_size)


def permute(
    input_dim: int,
    permutation: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Permute:
    """A :class:`Permute` of ``input_dim`` features, random (from ``generator``) by default.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sorted(permute(4, generator=g).permutation.tolist())
        [0, 1, 2, 3]
    """
    if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
        raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
    if permutation is None:
        permutation = torch.randperm(input_dim, generator=generator)
    elif len(permutation) != input_dim:
        raise ValueError(
            f"permutation: expected length {input_dim} (input_dim), got {len(permutation)}"
        )
    return Permute(permutation)


def reverse(input_dim: int) -> Reverse:
    """A :class:`Reverse` of ``input_dim`` features.

    Example:
        >>> reverse(3).permutation.tolist()
        [2, 1, 0]
    """
    return Reverse(input_dim)
