r"""Order-agnostic deep NADE (Uria, Murray & Larochelle, 2014) and its ensemble, EoNADE.

One feed-forward network :math:`f` reads an observed subset of a binary vector, given as
:math:`(x \odot m, m)` with the mask :math:`m \in \{0, 1\}^D` of observed positions, and
outputs a logit for every position. For any ordering :math:`o`,

.. math::
    p(x \mid o) = \prod_{d=1}^{D} \operatorname{Bernoulli}\big(x_{o_d};\
        \operatorname{sigm} f(x \odot m_{o_{<d}}, m_{o_{<d}})_{o_d}\big)

is a normalized distribution (:class:`DeepNADE`); its exact ``log_prob`` needs the ``D``
network evaluations with masks :math:`m_{o_{<1}}, \dots, m_{o_{<D}}`, run here as one
batched pass of size ``D * batch``. :class:`EoNADE` is the uniform mixture over ``K``
orderings, :math:`p(x) = \frac1K \sum_k p(x \mid o^{(k)})`, evaluated by ``logsumexp``.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyro_lgm.distributions.nade import (
    _Autoregressive,
    _check_binary,
    _check_order,
    _net_param,
    _NetDistribution,
    _unmodified,
)
from pyro_lgm.nn.nade import DeepNADE as DeepNADENet
from pyro_lgm.nn.nade import _inverse_permutation, parse_order

__all__ = ["DeepNADE", "EoNADE"]


def _prefix_masks(order: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(D, D)`` masks: row ``k`` marks the positions ``order[:k]`` as observed."""
    d = order.numel()
    rank = _inverse_permutation(order)  # rank[i] = step at which position i is generated
    steps = torch.arange(d, device=order.device)
    return (rank.unsqueeze(0) < steps.unsqueeze(1)).to(dtype)


def _check_net(net: object) -> None:
    for attr in ("features", "conditional_logits"):
        if not hasattr(net, attr):
            raise ValueError(
                f"net: expected an order-agnostic NADE module with attribute {attr!r} "
                f"(e.g. pyro_lgm.nn.DeepNADE), got {type(net).__name__}"
            )


def _checked_logits(
    net: object, x_masked: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None
) -> torch.Tensor:
    """``net.conditional_logits(...)``, checked to be one logit per position: ``(..., D)``."""
    out = net.conditional_logits(x_masked, mask, context)
    if not isinstance(out, torch.Tensor) or out.shape != x_masked.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"net: conditional_logits returned {got} for inputs of shape "
            f"{tuple(x_masked.shape)}; expected one logit per position, the same shape"
        )
    return out


#: examples per chunk of the batched exact pass hold at most this many masked copies
_MAX_ROWS = 2**16


def _ordered_logits(
    net: object, value: torch.Tensor, context: torch.Tensor | None, order: torch.Tensor
) -> torch.Tensor:
    """Logits of every position given the positions before it in ``order``; ``(..., D)``.

    The ``D`` masked copies of each example go through the network as one batch; large
    batches are split into chunks of at most ``_MAX_ROWS`` copies to bound memory.
    """
    d = order.numel()
    per_chunk = max(1, _MAX_ROWS // d)
    n = math.prod(value.shape[:-1])
    if n > per_chunk:
        flat = value.reshape(n, d)
        ctx = None if context is None else context.reshape(n, context.shape[-1])
        parts = [
            _ordered_logits_chunk(
                net,
                flat[i : i + per_chunk],
                None if ctx is None else ctx[i : i + per_chunk],
                order,
            )
            for i in range(0, n, per_chunk)
        ]
        return torch.cat(parts).reshape(value.shape)
    return _ordered_logits_chunk(net, value, context, order)


def _ordered_logits_chunk(
    net: object, value: torch.Tensor, context: torch.Tensor | None, order: torch.Tensor
) -> torch.Tensor:
    if _unmodified(net, DeepNADENet, "conditional_logits"):  # the module's cheaper exact pass
        return net.ordered_logits(value, order, context)
    d = order.numel()
    masks = _prefix_masks(order, value.dtype)  # (D, D)
    xm = value.unsqueeze(-2) * masks  # (..., D, D): one masked copy per step
    ctx = None if context is None else context.unsqueeze(-2).expand(*xm.shape[:-1], -1)
    logits_all = _checked_logits(net, xm, masks.expand_as(xm), ctx)  # (..., D, D)
    steps = torch.arange(d, device=order.device)
    by_step = logits_all[..., steps, order]  # (..., D): step k -> logit of position order[k]
    return by_step.index_select(by_step.dim() - 1, _inverse_permutation(order))


def _ordered_sample(
    net: object, n: int, context: torch.Tensor | None, order: torch.Tensor, like: torch.Tensor
) -> torch.Tensor:
    d = order.numel()
    masks = _prefix_masks(order, like.dtype)
    x = torch.zeros(n, d, dtype=like.dtype, device=like.device)
    for k in range(d):
        m = masks[k].expand(n, d)
        logits = _checked_logits(net, x * m, m, context)
        i = order[k]
        x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]))
    return x


class DeepNADE(_Autoregressive):
    r"""An order-agnostic deep NADE evaluated for one fixed ordering (Uria et al., 2014).

    .. math::
        p(x \mid o) = \prod_{d=1}^{D} \operatorname{sigm}(\ell_{o_d})^{x_{o_d}}
            \big(1 - \operatorname{sigm}(\ell_{o_d})\big)^{1 - x_{o_d}}, \qquad
        \ell = f\big(x \odot m_{o_{<d}},\ m_{o_{<d}}\big)

    ``log_prob`` is exact: the ``D`` masked evaluations run as one batched pass.

    References:
        B. Uria, I. Murray, H. Larochelle. *A Deep and Tractable Density Estimator*.
        ICML 2014.

    Args:
        net: a :class:`pyro_lgm.nn.DeepNADE` (any module with ``features`` and
            ``conditional_logits(x_masked, mask, context) -> (..., D)`` works).
        order: a permutation of ``range(D)`` (tensor or sequence), or ``"natural"``,
            ``"reversed"``, ``"random"``; default ``net.order`` if present, else natural.
        context: ``(..., context_dim)`` when the net is conditional.
        validate_args: check that values are binary and the context finite (default:
            the global validation switch).

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import DeepNADE as DeepNADENet
        >>> net = DeepNADENet(3, hidden_dims=(8,))
        >>> d = DeepNADE(net, order=torch.tensor([2, 0, 1]))
        >>> x = torch.tensor([[1.0, 0.0, 1.0]])
        >>> torch.allclose(d.conditionals(x).log_prob(x).sum(-1), d.log_prob(x))
        True
    """

    support = constraints.independent(constraints.boolean, 1)

    def __init__(
        self,
        net: object,
        order: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        _check_net(net)
        features = int(net.features)
        param = _net_param(net)
        if order is None:
            order = getattr(net, "order", None)
        if order is None:
            order = torch.arange(features, device=param.device)
        elif isinstance(order, torch.Tensor):
            order = _check_order(order, features, "order")
        else:
            order = parse_order(order, features)
        self._order = order.to(param.device)
        self._setup(net, features, context, int(getattr(net, "context_dim", 0)), validate_args)

    def _check_support(self, value: torch.Tensor) -> None:
        _check_binary(value)

    def _conditionals(self, value: torch.Tensor, context: torch.Tensor | None) -> dist.Bernoulli:
        logits = _ordered_logits(self.net, value, context, self._order)
        return dist.Bernoulli(logits=logits, validate_args=False)

    def _sample_flat(self, n: int, context: torch.Tensor | None) -> torch.Tensor:
        like = torch.empty((), dtype=self._dtype, device=self._device)
        return _ordered_sample(self.net, n, context, self._order, like)


class EoNADE(_NetDistribution):
    r"""An ensemble of order-agnostic NADEs: the uniform mixture over ``K`` orderings.

    .. math::
        p(x) = \frac{1}{K} \sum_{k=1}^{K} p(x \mid o^{(k)}), \qquad
        \log p(x) = \operatorname{logsumexp}_k \log p(x \mid o^{(k)}) - \log K

    This is a normalized likelihood (a mixture). Averaging the *logits* of the orderings
    instead would not be one, and is not what this class computes.

    References:
        B. Uria, I. Murray, H. Larochelle. *A Deep and Tractable Density Estimator*.
        ICML 2014.

    Args:
        net: a :class:`pyro_lgm.nn.DeepNADE`.
        orders: ``(K, D)`` LongTensor, one permutation per row.
        context: ``(..., context_dim)`` when the net is conditional.
        validate_args: check that values are binary and the context finite (default:
            the global validation switch).

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import DeepNADE as DeepNADENet
        >>> net = DeepNADENet(3, hidden_dims=(8,))
        >>> d = EoNADE(net, torch.tensor([[0, 1, 2], [2, 1, 0]]))
        >>> x = torch.tensor([[1.0, 0.0, 1.0]])
        >>> lp = torch.stack([c.log_prob(x) for c in d.components])
        >>> torch.allclose(d.log_prob(x), lp.logsumexp(0) - torch.log(torch.tensor(2.0)))
        True
    """

    support = constraints.independent(constraints.boolean, 1)

    def __init__(
        self,
        net: object,
        orders: torch.Tensor,
        context: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        _check_net(net)
        features = int(net.features)
        param = _net_param(net)
        try:
            orders = torch.as_tensor(orders, device=param.device)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"orders: expected a (K, {features}) tensor of permutations, got {orders!r}"
            ) from None
        if orders.dim() != 2 or orders.shape[0] < 1 or orders.shape[1] != features:
            raise ValueError(
                f"orders: expected a (K, {features}) tensor of permutations with K >= 1, got "
                f"shape {tuple(orders.shape)}"
            )
        self.orders = torch.stack([_check_order(o, features, "orders") for o in orders])
        self._setup(net, features, context, int(getattr(net, "context_dim", 0)), validate_args)

    @property
    def num_orderings(self) -> int:
        """``K``, the number of orderings in the mixture."""
        return self.orders.shape[0]

    @property
    def components(self) -> list[DeepNADE]:
        """The ``K`` :class:`DeepNADE` mixture components (same batch shape as this)."""
        return [
            DeepNADE(self.net, o, self.context, validate_args=False).expand(self.batch_shape)
            for o in self.orders
        ]

    def _check_support(self, value: torch.Tensor) -> None:
        _check_binary(value)

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        r"""``(K, ...)`` exact :math:`\log p(x \mid o^{(k)})` of every ordering."""
        value, context, shape = self._prepare(value)
        return self._component_log_probs(value, context).expand((self.num_orderings, *shape))

    def _component_log_probs(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        out = []
        for o in self.orders:
            logits = _ordered_logits(self.net, value, context, o)
            cond = dist.Bernoulli(logits=logits, validate_args=False)
            out.append(cond.log_prob(value).sum(-1))
        return torch.stack(out)

    def _log_prob(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        lp = self._component_log_probs(value, context)
        return lp.logsumexp(0) - math.log(self.num_orderings)

    def _sample_flat(self, n: int, context: torch.Tensor | None) -> torch.Tensor:
        like = torch.empty((), dtype=self._dtype, device=self._device)
        d = self.event_shape[0]
        comp = torch.randint(self.num_orderings, (n,), device=self._device)
        x = torch.empty(n, d, dtype=self._dtype, device=self._device)
        for k in range(self.num_orderings):
            sel = (comp == k).nonzero().flatten()
            if sel.numel() == 0:
                continue
            ctx = None if context is None else context[sel]
            x[sel] = _ordered_sample(self.net, sel.numel(), ctx, self.orders[k], like)
        return x
