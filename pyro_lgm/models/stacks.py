r"""Stacks of planar and radial layers as :class:`~pyro_lgm.models.Flow` s.

Builders in the style of :func:`pyro_lgm.models.realnvp`: :func:`planar_flow`,
:func:`radial_flow` and their amortized variants :func:`conditional_planar_flow`,
:func:`conditional_radial_flow`. Every layer starts close to (not exactly) the identity, so a
new flow is close to its standard-normal base and training starts stable.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro_lgm.models.flow import BaseLike, Flow
from pyro_lgm.transforms._common import _check_positive_int
from pyro_lgm.transforms.planar import conditional_planar, planar
from pyro_lgm.transforms.radial import conditional_radial, radial

__all__ = [
    "conditional_planar_flow",
    "conditional_radial_flow",
    "planar_flow",
    "radial_flow",
]


def planar_flow(input_dim: int, num_layers: int = 8, *, base: BaseLike = None) -> Flow:
    r"""A stack of ``num_layers`` :class:`~pyro_lgm.transforms.Planar` layers over N(0, I).

    .. math::
        x = f_K \circ \dots \circ f_1(z),\quad z \sim N(0, I_D),\quad
        f_k(z) = z + \hat u_k \tanh(w_k^\top z + b_k),

    .. math::
        \log p(x) = \log N(z; 0, I) - \sum_k \log|1 + \hat u_k^\top \psi_k(z_{k-1})|.

    ``log_prob`` inverts every layer exactly (Newton with bisection safeguard, see
    :func:`~pyro_lgm.transforms.planar.planar_inverse`).

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event; samples are ``(..., D)``.
        num_layers: number ``K`` of planar layers.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> flow = planar_flow(2, num_layers=4)
        >>> flow().log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    num_layers = _check_positive_int("num_layers", num_layers)
    return Flow((input_dim,), [planar(input_dim) for _ in range(num_layers)], base=base)


def radial_flow(input_dim: int, num_layers: int = 8, *, base: BaseLike = None) -> Flow:
    r"""A stack of ``num_layers`` :class:`~pyro_lgm.transforms.Radial` layers over N(0, I).

    .. math::
        x = f_K \circ \dots \circ f_1(z),\quad z \sim N(0, I_D),\quad
        f_k(z) = z + \frac{\beta_k}{\alpha_k + \|z - z_{0,k}\|}(z - z_{0,k}).

    ``log_prob`` inverts every layer in closed form.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event.
        num_layers: number ``K`` of radial layers.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> flow = radial_flow(2, num_layers=4)
        >>> flow().sample((5,)).shape
        torch.Size([5, 2])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    num_layers = _check_positive_int("num_layers", num_layers)
    return Flow((input_dim,), [radial(input_dim) for _ in range(num_layers)], base=base)


def conditional_planar_flow(
    input_dim: int,
    context_dim: int,
    num_layers: int = 8,
    hidden_dims: Sequence[int] | None = None,
    *,
    base: BaseLike = None,
) -> Flow:
    r"""A stack of :class:`~pyro_lgm.transforms.ConditionalPlanar` layers: :math:`p(x \mid s)`.

    .. math::
        x = f_K(\cdot; s) \circ \dots \circ f_1(z; s),\quad z \sim N(0, I_D),\quad
        (b_k, u_k, w_k) = \mathrm{NN}_k(s).

    Call the flow with a context: ``flow(context)``; the distribution's batch shape is the
    context's.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event.
        context_dim: size ``C`` of the context.
        num_layers: number ``K`` of layers.
        hidden_dims: hidden widths of each layer's network (see
            :func:`~pyro_lgm.transforms.conditional_planar`).

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> flow = conditional_planar_flow(2, context_dim=3, num_layers=2)
        >>> flow(torch.zeros(4, 3)).log_prob(torch.zeros(4, 2)).shape
        torch.Size([4])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    num_layers = _check_positive_int("num_layers", num_layers)
    layers = [conditional_planar(input_dim, context_dim, hidden_dims) for _ in range(num_layers)]
    return Flow((input_dim,), layers, conditional=True, base=base)


def conditional_radial_flow(
    input_dim: int,
    context_dim: int,
    num_layers: int = 8,
    hidden_dims: Sequence[int] | None = None,
    *,
    base: BaseLike = None,
) -> Flow:
    r"""A stack of :class:`~pyro_lgm.transforms.ConditionalRadial` layers: :math:`p(x \mid s)`.

    .. math::
        x = f_K(\cdot; s) \circ \dots \circ f_1(z; s),\quad z \sim N(0, I_D),\quad
        (z_{0,k}, \alpha'_k, \beta'_k) = \mathrm{NN}_k(s).

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event.
        context_dim: size ``C`` of the context.
        num_layers: number ``K`` of layers.
        hidden_dims: hidden widths of each layer's network.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> flow = conditional_radial_flow(2, context_dim=3, num_layers=2)
        >>> flow(torch.zeros(4, 3)).sample().shape
        torch.Size([4, 2])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    num_layers = _check_positive_int("num_layers", num_layers)
    layers = [conditional_radial(input_dim, context_dim, hidden_dims) for _ in range(num_layers)]
    return Flow((input_dim,), layers, conditional=True, base=base)
