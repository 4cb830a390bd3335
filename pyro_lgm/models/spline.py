r"""Neural Spline Flows for vectors: rational-quadratic spline couplings, ActNorm and
permutations, as a :class:`~pyro_lgm.models.Flow`.

Written from the standard-normal base to the data, :math:`x = f_K \circ \dots \circ
f_1(z)`, like every flow of the library; density estimation evaluates the closed-form
spline inverses on the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.distributions import Transform

from pyro_lgm.models.coupling import _check_int, coupling_stack
from pyro_lgm.models.flow import BaseLike, Flow
from pyro_lgm.transforms.spline import conditional_spline_coupling, spline_coupling

__all__ = ["nsf"]


def nsf(
    input_dim: int,
    num_layers: int = 8,
    hidden_dims: Sequence[int] | None = None,
    bins: int = 8,
    bound: float = 3.0,
    context_dim: int = 0,
    actnorm: bool = True,
    permutation: str | None = "reverse",
    seed: int | None = None,
    base: BaseLike = None,
) -> Flow:
    r"""A Neural Spline Flow (Durkan et al., 2019) with coupling layers, for vectors.

    .. math::
        x = f_K \circ \dots \circ f_1(z), \qquad
        f_k = \mathrm{ActNorm}_k \circ P_k \circ c_k, \qquad
        \log p(x) = \log N(z; 0, I) - \sum_k \log|\det J_{f_k}|,

    each :math:`c_k` a :class:`~pyro_lgm.transforms.SplineCoupling` (a
    :class:`~pyro_lgm.transforms.ConditionalSplineCoupling` when ``context_dim > 0``) whose
    ``bins``-bin monotone rational-quadratic splines act on :math:`[-B, B]` (identity
    outside), :math:`P_k` a fixed permutation between layers and :math:`\mathrm{ActNorm}_k`
    (Kingma & Dhariwal, 2018) an optional per-feature normalization, initialised by the
    first ``flow().log_prob(x)`` so that the data are standardised on the way in (and so
    fall inside :math:`[-B, B]` where the splines act).

    Which features a layer transforms alternates from layer to layer: with
    ``permutation="reverse"`` the reversal does it (every coupling uses the ``"half"`` mask,
    so in 2-D the two coordinates take turns); with ``None`` or ``"random"`` the mask is
    inverted on every other layer. All conditioners start at zero, so a new flow is the
    identity on the base.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows*.
        NeurIPS 2019. D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible
        1x1 Convolutions*. NeurIPS 2018.

    Args:
        input_dim: ``D >= 2``.
        num_layers: number of coupling layers (``>= 1``).
        hidden_dims: hidden sizes of each coupling's MLP (default two of ``max(64, 4 D)``).
        bins: ``K >= 2``, bins of each spline.
        bound: :math:`B > 0`.
        context_dim: ``C``; ``> 0`` makes the flow conditional, ``flow(context)`` with a
            context of shape ``(..., C)``.
        actnorm: add an :class:`~pyro_lgm.transforms.ActNorm` after every coupling.
        permutation: ``"reverse"`` (default), ``"random"`` (fixed, drawn from ``seed``) or
            ``None``, between layers.
        seed: seed of the random permutations.
        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one (see :class:`~pyro_lgm.models.Flow`).

    Returns:
        A :class:`~pyro_lgm.models.Flow` with event shape ``(D,)``.

    Example:
        >>> import torch
        >>> flow = nsf(2, num_layers=2, hidden_dims=[8])
        >>> flow().log_prob(torch.randn(4, 2)).shape
        torch.Size([4])
        >>> flow = nsf(3, num_layers=2, hidden_dims=[8], context_dim=2)
        >>> flow(torch.randn(4, 2)).sample().shape
        torch.Size([4, 3])
    """
    _check_int("input_dim", input_dim, 2)
    _check_int("num_layers", num_layers, 1)
    _check_int("context_dim", context_dim, 0)

    def make(k: int) -> Transform:
        invert = permutation != "reverse" and k % 2 == 1
        if context_dim > 0:
            return conditional_spline_coupling(
                input_dim, context_dim, hidden_dims, "half", invert, bins, bound
            )
        return spline_coupling(input_dim, hidden_dims, "half", invert, bins, bound)

    transforms = coupling_stack(input_dim, num_layers, make, actnorm, permutation, seed)
    return Flow((input_dim,), transforms, conditional=context_dim > 0, base=base)
