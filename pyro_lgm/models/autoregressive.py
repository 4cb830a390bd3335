r"""Affine autoregressive flows: MAF (Papamakarios et al., 2017) and IAF (Kingma et al., 2016).

Both stack :class:`~pyro_lgm.transforms.AffineAutoregressive` layers whose forward map
(one MADE pass) is cheap and whose inverse is sequential. They differ in which way round
the layers are used:

* :func:`maf` uses the cheap direction from the data to the base: ``log_prob`` is one MADE
  pass per layer, ``sample`` is sequential (up to ``D`` passes per layer);
* :func:`iaf` uses it from the base to the data: ``sample``/``rsample`` is one pass per
  layer, ``log_prob`` of fresh data is sequential - but ``log_prob`` of a tensor the flow
  has just produced with ``rsample`` reuses the transforms' cache and costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_lgm.models.flow import BaseLike, Flow
from pyro_lgm.nn.masked import MADE
from pyro_lgm.transforms.autoregressive import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    _default_hidden,
)

__all__ = ["iaf", "maf"]


class _InverseConditional(dist.ConditionalTransform):
    """``condition(c)`` returns the inverse of ``base.condition(c)``."""

    def __init__(self, base: ConditionalAffineAutoregressive) -> None:
        self.base = base

    def condition(self, context: torch.Tensor) -> torch.distributions.Transform:
        return self.base.condition(context).inv


def _layer_order(order: str | Sequence[Sequence[int]], k: int) -> str | Sequence[int]:
    if isinstance(order, str):
        if order == "alternate":
            return "natural" if k % 2 == 0 else "reversed"
        if order in ("natural", "reversed", "random"):
            return order
        raise ValueError(
            f"order: expected 'alternate', 'natural', 'reversed', 'random' or one permutation "
            f"per layer, got {order!r}"
        )
    return order[k]


def _layers(
    input_dim: int,
    hidden_dims: Sequence[int] | None,
    num_layers: int,
    context_dim: int,
    order: str | Sequence[Sequence[int]],
    skip_connections: bool,
    activation: type[nn.Module],
    log_scale_bound: float,
    seed: int | None,
) -> list[nn.Module]:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
    if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 0:
        raise ValueError(f"context_dim: expected an int >= 0, got {context_dim!r}")
    if not isinstance(order, str) and len(order) != num_layers:
        raise ValueError(
            f"order: expected one permutation per layer ({num_layers}), got {len(order)}"
        )
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim: expected an int >= 1, got {input_dim!r}")
    hidden = _default_hidden(input_dim, hidden_dims)
    layers: list[nn.Module] = []
    for k in range(num_layers):
        made = MADE(
            input_dim,
            hidden,
            param_dims=[1, 1],
            context_dim=context_dim,
            order=_layer_order(order, k),
            skip_connections=skip_connections,
            activation=activation,
            seed=None if seed is None else seed + k,
            zero_init_last=True,
        )
        if context_dim:
            layers.append(ConditionalAffineAutoregressive(made, log_scale_bound))
        else:
            layers.append(AffineAutoregressive(made, log_scale_bound=log_scale_bound))
    return layers


def maf(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    num_layers: int = 5,
    context_dim: int = 0,
    *,
    order: str | Sequence[Sequence[int]] = "alternate",
    skip_connections: bool = False,
    activation: type[nn.Module] = nn.ReLU,
    log_scale_bound: float = 3.0,
    seed: int | None = None,
    base: BaseLike = None,
) -> Flow:
    r"""Masked autoregressive flow (Papamakarios et al., 2017): cheap density, sequential sampling.

    Each layer ``T_k`` is an :class:`~pyro_lgm.transforms.AffineAutoregressive` mapping the
    data towards the base in one MADE pass, :math:`u = T_K \circ \dots \circ T_1(x)`:

    .. math::
        \log p(x) = \log N(u; 0, I) + \sum_k \sum_i \log \sigma^{(k)}_i,

    so ``log_prob`` costs one MADE pass per layer; the flow's transforms (base to data) are
    the inverses ``T_k^{-1}``, so ``sample`` is sequential (up to ``D`` passes per layer).
    Orders alternate between layers (natural, reversed, ...) by default.

    Args:
        input_dim: ``D``.
        hidden_dims: MADE hidden widths (default one layer of ``max(64, 4 D)`` units).
        num_layers: number of autoregressive layers ``K``.
        context_dim: size of a conditioning vector (0: unconditional); the flow is then
            called as ``flow(context)``.
        order: ``"alternate"`` (natural / reversed), ``"natural"``, ``"reversed"``,
            ``"random"`` (a new random order per layer) or one permutation per layer.
        skip_connections, activation: passed to :class:`~pyro_lgm.nn.MADE`.
        log_scale_bound: bound of the soft-clamped log-scale of every layer.
        seed: seeds the random orders (layer ``k`` uses ``seed + k``).

    Returns:
        a :class:`~pyro_lgm.models.Flow` over events of shape ``(D,)``.

    References:
        G. Papamakarios, T. Pavlakou, I. Murray. *Masked Autoregressive Flow for Density
        Estimation*. NeurIPS 2017.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> flow = maf(3, hidden_dims=[16], num_layers=2)
        >>> x = torch.randn(10, 3)
        >>> torch.allclose(flow().log_prob(x), flow.base().log_prob(x))  # identity at init
        True
        >>> flow().sample((4,)).shape
        torch.Size([4, 3])
    """
    layers = _layers(
        input_dim,
        hidden_dims,
        num_layers,
        context_dim,
        order,
        skip_connections,
        activation,
        log_scale_bound,
        seed,
    )
    if context_dim:
        transforms = [_InverseConditional(t) for t in reversed(layers)]
    else:
        transforms = [t.inv for t in reversed(layers)]
    flow = Flow((input_dim,), transforms, conditional=bool(context_dim), base=base)
    flow.add_module("autoregressive_layers", nn.ModuleList(layers))
    return flow


def iaf(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    num_layers: int = 5,
    context_dim: int = 0,
    *,
    order: str | Sequence[Sequence[int]] = "alternate",
    skip_connections: bool = False,
    activation: type[nn.Module] = nn.ReLU,
    log_scale_bound: float = 3.0,
    seed: int | None = None,
    base: BaseLike = None,
) -> Flow:
    r"""Inverse autoregressive flow (Kingma et al., 2016): cheap sampling, sequential density.

    Each layer is an :class:`~pyro_lgm.transforms.AffineAutoregressive` used from the base
    to the data, :math:`x = T_K \circ \dots \circ T_1(z)`, :math:`z \sim N(0, I)`:

    .. math::
        z^{(k)}_i = z^{(k-1)}_i \sigma^{(k)}_i(z^{(k-1)}_{<i}) + \mu^{(k)}_i(z^{(k-1)}_{<i}),
        \qquad \log q(x) = \log N(z; 0, I) - \sum_k \sum_i \log \sigma^{(k)}_i,

    so ``sample``/``rsample`` cost one MADE pass per layer. ``log_prob`` of fresh data must
    invert every layer (sequential, up to ``D`` passes per layer); ``log_prob`` of a tensor
    just returned by ``rsample`` (or by ``sample`` when gradients are disabled) reuses the
    transforms' cached inputs and log-scales - the usual use as a variational posterior.
    Orders alternate between layers by default.

    Args:
        input_dim: ``D``.
        hidden_dims: MADE hidden widths (default one layer of ``max(64, 4 D)`` units).
        num_layers: number of autoregressive layers ``K``.
        context_dim: size of a conditioning vector (0: unconditional), e.g. the encoder
            features of a VAE guide; the flow is then called as ``flow(context)``.
        order: ``"alternate"``, ``"natural"``, ``"reversed"``, ``"random"`` or one
            permutation per layer.
        skip_connections, activation: passed to :class:`~pyro_lgm.nn.MADE`.
        log_scale_bound: bound of the soft-clamped log-scale of every layer.
        seed: seeds the random orders (layer ``k`` uses ``seed + k``).

    Returns:
        a :class:`~pyro_lgm.models.Flow` over events of shape ``(D,)``.

    References:
        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
        *Improved Variational Inference with Inverse Autoregressive Flow*. NeurIPS 2016.

        base: the base distribution (default :math:`N(0, I)`): a distribution or a module
            returning one, e.g. :class:`~pyro_lgm.models.ConditionalNormal` (see
            :class:`~pyro_lgm.models.Flow`).
    Example:
        >>> import torch
        >>> flow = iaf(3, hidden_dims=[16], num_layers=2, context_dim=2)
        >>> d = flow(torch.randn(2))
        >>> x = d.rsample((5,))
        >>> d.log_prob(x).shape  # reuses the cache: no inversion
        torch.Size([5])
    """
    layers = _layers(
        input_dim,
        hidden_dims,
        num_layers,
        context_dim,
        order,
        skip_connections,
        activation,
        log_scale_bound,
        seed,
    )
    return Flow((input_dim,), layers, conditional=bool(context_dim), base=base)
