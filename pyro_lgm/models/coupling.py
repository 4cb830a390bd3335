r"""Coupling flows for vectors: NICE and RealNVP builders returning a :class:`Flow`.

Both are written from the standard-normal base to the data, :math:`x = f_K \circ \dots
\circ f_1(z)`, like every :class:`~pyro_lgm.models.Flow`; density estimation evaluates
the closed-form inverses on the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Transform

from pyro_lgm.models.flow import BaseLike, Flow
from pyro_lgm.transforms.actnorm import ActNorm
from pyro_lgm.transforms.coupling import (
    MaskLike,
    additive_coupling,
    affine_coupling,
    conditional_affine_coupling,
    diagonal_scale,
)
from pyro_lgm.transforms.permute import Permute, Reverse

__all__ = ["nice", "realnvp"]


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def coupling_stack(
    input_dim: int,
    num_layers: int,
    make: Callable[[int], Transform],
    actnorm: bool,
    permutation: str | None = None,
    seed: int | None = None,
) -> list[Transform]:
    """The base-to-data transforms of a vector coupling flow: for each layer ``k``, the
    coupling ``make(k)``, then (except after the last) a fixed permutation (``"reverse"``
    or ``"random"``, drawn from ``seed``), then an optional ActNorm next to the data."""
    if permutation not in (None, "reverse", "random"):
        raise ValueError(f"permutation: expected None, 'reverse' or 'random', got {permutation!r}")
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    transforms: list[Transform] = []
    for k in range(num_layers):
        transforms.append(make(k))
        if permutation is not None and k < num_layers - 1:
            if permutation == "reverse":
                transforms.append(Reverse(input_dim))
            else:
                transforms.append(Permute(torch.randperm(input_dim, generator=generator)))
        if actnorm:
            transforms.append(ActNorm(input_dim))
    return transforms


def nice(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "alternating",
    activation: type[nn.Module] = nn.ReLU,
    base: BaseLike = None,
) -> Flow:
    r"""NICE (Dinh et al., 2015): additive couplings and a final diagonal scaling.

    .. math::
        x = g_K \circ \dots \circ g_1(S z), \qquad z \sim N(0, I), \qquad
        \log p(x) = \log N(z; 0, I) - \sum_i \log S_{ii},

    where each :math:`g_k` is an :class:`~pyro_lgm.transforms.AdditiveCoupling` (unit
    Jacobian) whose mask is inverted on every other layer, and :math:`S` a learnable
    :class:`~pyro_lgm.transforms.DiagonalScale` next to the base (NICE's last layer in
    the data-to-latent direction).

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        input_dim: ``D >= 2``.
        num_layers: number of coupling layers (``>= 1``; use ``>= 2`` so every feature is
            transformed).
        hidden_dims: hidden sizes of each coupling's MLP (default two of ``max(64, 4 D)``).
        mask: ``"alternating"`` (the paper's odd/even split), ``"half"`` or a bool mask.
        activation: the MLPs' non-linearity.

    Returns:
        A :class:`~pyro_lgm.models.Flow`; ``flow()`` is a distribution with event shape
        ``(D,)``.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> flow = nice(2, num_layers=2, hidden_dims=[8])
        >>> flow().log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    _check_int("input_dim", input_dim, 2)
    _check_int("num_layers", num_layers, 1)
    transforms: list[Transform] = [diagonal_scale(input_dim)]
    for k in range(num_layers):
        transforms.append(
            additive_coupling(input_dim, hidden_dims, mask, k % 2 == 1, activation=activation)
        )
    return Flow((input_dim,), transforms, base=base)


def realnvp(
    input_dim: int,
    num_layers: int = 8,
    hidden_dims: Sequence[int] | None = None,
    actnorm: bool = True,
    context_dim: int = 0,
    mask: MaskLike = "alternating",
    permutation: str | None = None,
    log_scale_bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
    seed: int | None = None,
    base: BaseLike = None,
) -> Flow:
    r"""RealNVP for vectors (Dinh et al., 2017): affine couplings, ActNorm, permutations.

    .. math::
        x = f_K \circ \dots \circ f_1(z), \qquad
        f_k = \mathrm{ActNorm}_k \circ P_k \circ c_k, \qquad
        \log p(x) = \log N(z; 0, I) - \sum_k \log|\det J_{f_k}|,

    each :math:`c_k` an :class:`~pyro_lgm.transforms.AffineCoupling` (conditional on a
    context when ``context_dim > 0``) with its mask inverted on every other layer,
    :math:`P_k` an optional fixed permutation and :math:`\mathrm{ActNorm}_k` (Kingma &
    Dhariwal, 2018) an optional per-feature normalization next to the data, which the first
    ``flow().log_prob(x)`` initialises so that ``x`` is standardised on its way in.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017. D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        input_dim: ``D >= 2``.
        num_layers: number of coupling layers (``>= 1``).
        hidden_dims: hidden sizes of each coupling's MLP (default two of ``max(64, 4 D)``).
        actnorm: add an :class:`~pyro_lgm.transforms.ActNorm` after every coupling.
        context_dim: ``C``; ``> 0`` makes the flow conditional, ``flow(context)`` with a
            context of shape ``(..., C)``.
        mask: ``"alternating"``, ``"half"`` or a bool mask for the first layer.
        permutation: ``None``, ``"reverse"`` or ``"random"`` (fixed, drawn from ``seed``)
            between layers.
        log_scale_bound: bound of each coupling's per-feature log-scale.
        activation: the MLPs' non-linearity.
        seed: seed of the random permutations.

    Returns:
        A :class:`~pyro_lgm.models.Flow` with event shape ``(D,)``.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> flow = realnvp(3, num_layers=2, hidden_dims=[8], context_dim=2)
        >>> flow(torch.randn(4, 2)).log_prob(torch.randn(4, 3)).shape
        torch.Size([4])
    """
    _check_int("input_dim", input_dim, 2)
    _check_int("num_layers", num_layers, 1)
    _check_int("context_dim", context_dim, 0)

    def make(k: int) -> Transform:
        invert = k % 2 == 1
        if context_dim > 0:
            return conditional_affine_coupling(
                input_dim, context_dim, hidden_dims, mask, invert, log_scale_bound, activation
            )
        return affine_coupling(input_dim, hidden_dims, mask, invert, log_scale_bound, activation)

    transforms = coupling_stack(input_dim, num_layers, make, actnorm, permutation, seed)
    return Flow((input_dim,), transforms, conditional=context_dim > 0, base=base)
