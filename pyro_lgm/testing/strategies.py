"""Hypothesis strategies for shapes, tensors and parameters.

Tensors are drawn from a seed rather than element by element: a property over a
``(4, 3, 8, 8)`` image batch stays fast, and a failure still reproduces exactly because
Hypothesis records the seed.

Example:
    >>> import torch
    >>> from hypothesis import given, settings
    >>> from pyro_lgm.testing import strategies as lst
    >>> @settings(max_examples=5)
    ... @given(lst.tensors((3, 2), dtype=torch.float64))
    ... def check(x):
    ...     assert x.shape == (3, 2) and x.dtype == torch.float64
    >>> check()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

__all__ = [
    "batch_shapes",
    "binary_tensors",
    "image_event_shapes",
    "positive_tensors",
    "seeds",
    "tensors",
    "vector_event_shapes",
    "well_conditioned_matrices",
]

_MAX_SEED = 2**31 - 1


def seeds() -> st.SearchStrategy[int]:
    """Integer seeds for ``torch.Generator.manual_seed``."""
    return st.integers(min_value=0, max_value=_MAX_SEED)


def batch_shapes(
    min_dims: int = 0, max_dims: int = 2, min_size: int = 1, max_size: int = 4
) -> st.SearchStrategy[torch.Size]:
    """Batch shapes such as ``()``, ``(3,)``, ``(2, 4)``.

    Args:
        min_dims / max_dims: number of batch dimensions.
        min_size / max_size: size of each dimension.
    """
    if not 0 <= min_dims <= max_dims:
        raise ValueError(
            f"min_dims/max_dims: need 0 <= min_dims <= max_dims, got {min_dims}, {max_dims}"
        )
    return st.lists(st.integers(min_size, max_size), min_size=min_dims, max_size=max_dims).map(
        torch.Size
    )


def vector_event_shapes(min_dim: int = 1, max_dim: int = 32) -> st.SearchStrategy[torch.Size]:
    """Event shapes ``(d,)`` of vector-valued transforms and distributions."""
    return st.integers(min_dim, max_dim).map(lambda d: torch.Size((d,)))


def image_event_shapes(
    channels: Sequence[int] = (1, 3), min_size: int = 2, max_size: int = 8, square: bool = False
) -> st.SearchStrategy[torch.Size]:
    """Image event shapes ``(C, H, W)``.

    Args:
        channels: the channel counts to choose from.
        min_size / max_size: range of the height and width.
        square: draw ``H == W``.
    """
    side = st.integers(min_size, max_size)
    if square:
        hw = side.map(lambda s: (s, s))
    else:
        hw = st.tuples(side, side)
    return st.tuples(st.sampled_from(list(channels)), hw).map(
        lambda c_hw: torch.Size((c_hw[0], *c_hw[1]))
    )


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def tensors(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    scale: float = 1.0,
    loc: float = 0.0,
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors of the given shape with ``loc + scale * N(0, 1)`` entries.

    The scale itself is drawn from ``{scale/10, scale, 2 scale}`` so properties also see
    small and large inputs. The tensor is generated on the CPU from a drawn seed and moved
    to ``device``.
    """
    shape = torch.Size(shape)

    def build(args: tuple[int, float]) -> torch.Tensor:
        seed, mult = args
        x = torch.randn(shape, generator=_generator(seed), dtype=torch.float64)
        return (loc + scale * mult * x).to(dtype=dtype, device=device)

    return st.tuples(seeds(), st.sampled_from([0.1, 1.0, 2.0])).map(build)


def positive_tensors(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    low: float = 0.1,
    high: float = 10.0,
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors with entries log-uniform in ``[low, high]`` (scales, rates, variances)."""
    if not 0 < low < high:
        raise ValueError(f"low/high: need 0 < low < high, got {low}, {high}")
    shape = torch.Size(shape)

    def build(seed: int) -> torch.Tensor:
        u = torch.rand(shape, generator=_generator(seed), dtype=torch.float64)
        lo, hi = torch.tensor(low).log(), torch.tensor(high).log()
        return (lo + (hi - lo) * u).exp().to(dtype=dtype, device=device)

    return seeds().map(build)


def binary_tensors(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors of zeros and ones, with the fraction of ones itself drawn."""
    shape = torch.Size(shape)

    def build(args: tuple[int, float]) -> torch.Tensor:
        seed, p = args
        u = torch.rand(shape, generator=_generator(seed))
        return (u < p).to(dtype=dtype, device=device)

    return st.tuples(seeds(), st.sampled_from([0.1, 0.5, 0.9])).map(build)


def well_conditioned_matrices(
    n: int,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    max_condition: float = 10.0,
) -> st.SearchStrategy[torch.Tensor]:
    """Invertible ``(n, n)`` matrices ``Q diag(s) R`` with singular values in
    ``[1, max_condition]`` (``Q``, ``R`` random orthogonal), with a random sign pattern."""
    if max_condition < 1:
        raise ValueError(f"max_condition: expected >= 1, got {max_condition}")

    def build(seed: int) -> torch.Tensor:
        g = _generator(seed)
        q1, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        s = 1 + (max_condition - 1) * torch.rand(n, generator=g, dtype=torch.float64)
        return (q1 @ torch.diag(s) @ q2).to(dtype=dtype, device=device)

    return seeds().map(build)
