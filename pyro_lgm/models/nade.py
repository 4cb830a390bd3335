r"""Trainable NADE-family models: :class:`NADE`, :class:`RNADE` and :class:`DeepNADE`.

Each model is the network of the same name in :mod:`pyro_lgm.nn` (a subclass: the same
parameters, the same ``state_dict`` keys) with a ``forward(context=None)`` that returns the
distribution of the same name in :mod:`pyro_lgm.distributions`, bound to the current
parameters::

    model = NADE(784, hidden=500)
    loss = -model().log_prob(x).mean()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.distributions.nade import _check_binary, _check_context
from pyro_lgm.nn import nade as nets
from pyro_lgm.nn.nade import _generator, _positive_int, parse_order

__all__ = ["NADE", "RNADE", "DeepNADE", "parse_order"]


class NADE(nets.NADE):
    r"""A trainable NADE for binary vectors (Larochelle & Murray, 2011).

    .. math::
        p(x) = \prod_{d} \operatorname{sigm}(V_{o_d} \cdot h_d + b_{o_d})^{x_{o_d}}
            \big(1 - \operatorname{sigm}(V_{o_d} \cdot h_d + b_{o_d})\big)^{1 - x_{o_d}},
        \qquad h_d = \sigma(c + W_{:, o_{<d}} x_{o_{<d}})

    The network :class:`pyro_lgm.nn.NADE` (its arguments and parameters are documented
    there); calling the module returns a :class:`pyro_lgm.distributions.NADE`.

    References:
        H. Larochelle, I. Murray. *The Neural Autoregressive Distribution Estimator*.
        AISTATS 2011.

    Example:
        >>> import torch
        >>> model = NADE(5, hidden=16, seed=0)
        >>> x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
        >>> model().log_prob(x).shape
        torch.Size([1])
    """

    def forward(self, context: torch.Tensor | None = None) -> lgm_dist.NADE:
        """Return :math:`p(x \\mid \\text{context})` as a :class:`pyro_lgm.distributions.NADE`."""
        return lgm_dist.NADE(self, context)


class RNADE(nets.RNADE):
    r"""A trainable real-valued NADE with mixture-of-Gaussian conditionals (Uria et al., 2013).

    .. math::
        p(x_{o_d} \mid x_{o_{<d}}) = \sum_{k=1}^{K} \pi_{o_d k}\,
            N(x_{o_d}; \mu_{o_d k}, \sigma_{o_d k}^2), \qquad
        h_d = \sigma\big(\rho_{o_d} (c + W_{:, o_{<d}} x_{o_{<d}})\big)

    The network :class:`pyro_lgm.nn.RNADE` (its arguments and parameters are documented
    there); calling the module returns a :class:`pyro_lgm.distributions.RNADE`.

    References:
        B. Uria, I. Murray, H. Larochelle. *RNADE: The real-valued neural autoregressive
        density-estimator*. NeurIPS 2013.

    Example:
        >>> import torch
        >>> model = RNADE(2, hidden=8, num_components=3, seed=0)
        >>> model().sample((4,)).shape
        torch.Size([4, 2])
    """

    def forward(self, context: torch.Tensor | None = None) -> lgm_dist.RNADE:
        """Return :math:`p(x \\mid \\text{context})` as a :class:`pyro_lgm.distributions.RNADE`."""
        return lgm_dist.RNADE(self, context)


class DeepNADE(nets.DeepNADE):
    r"""A trainable order-agnostic deep NADE for binary vectors (Uria, Murray & Larochelle, 2014).

    The network :class:`pyro_lgm.nn.DeepNADE` (its arguments are documented there) maps
    :math:`(x \odot m, m)` to one logit per position; every ordering :math:`o` then defines
    a distribution :math:`p(x \mid o)` (see :class:`pyro_lgm.distributions.DeepNADE`).
    Training uses the paper's unbiased estimator of :math:`E_o[\log p(x \mid o)]`: draw
    :math:`d \sim U\{0, \dots, D-1\}` and a random set :math:`o_{<d}` of :math:`d`
    observed positions, then

    .. math::
        \widehat{\mathcal L}(x) = \frac{D}{D - d}
            \sum_{j \notin o_{<d}} \log p(x_j \mid x_{o_{<d}})

    (:meth:`order_agnostic_loss` returns :math:`-\widehat{\mathcal L}`). At test time,
    ``model(order=o)`` gives the exact likelihood of one ordering and
    :meth:`ensemble_log_prob` the EoNADE mixture over several.

    References:
        B. Uria, I. Murray, H. Larochelle. *A Deep and Tractable Density Estimator*.
        ICML 2014.

    Example:
        >>> import torch
        >>> model = DeepNADE(4, hidden_dims=(16,), seed=0)
        >>> x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
        >>> model().log_prob(x).shape, model.order_agnostic_loss(x).shape
        (torch.Size([1]), torch.Size([1]))
        >>> model.ensemble_log_prob(x, num_orderings=3).shape
        torch.Size([1])
    """

    def forward(
        self,
        context: torch.Tensor | None = None,
        order: str | Sequence[int] | torch.Tensor | None = None,
    ) -> lgm_dist.DeepNADE:
        """:math:`p(x \\mid o)` for ``order`` (default: the module's ``order`` buffer)."""
        o = self.order if order is None else parse_order(order, self.features)
        return lgm_dist.DeepNADE(self, o.to(self.order.device), context)

    def random_orders(
        self, num_orderings: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(K, D)`` uniformly random orderings (drawn on the CPU with ``generator``)."""
        k = _positive_int(num_orderings, "num_orderings")
        generator = _generator(generator)
        rows = [torch.randperm(self.features, generator=generator) for _ in range(k)]
        return torch.stack(rows).to(self.order.device)

    def ensemble(
        self,
        num_orderings: int = 16,
        context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        orders: torch.Tensor | None = None,
    ) -> lgm_dist.EoNADE:
        """The EoNADE mixture over ``num_orderings`` random orderings (or the given ``orders``)."""
        if orders is None:
            orders = self.random_orders(num_orderings, generator)
        return lgm_dist.EoNADE(self, orders, context)

    def ensemble_log_prob(
        self,
        x: torch.Tensor,
        num_orderings: int = 16,
        context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r""":math:`\log \frac1K \sum_k p(x \mid o^{(k)})` over ``K`` random orderings; ``(...)``."""
        return self.ensemble(num_orderings, context, generator).log_prob(x)

    def order_agnostic_loss(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Per-example :math:`-\widehat{\mathcal L}(x)`, an unbiased estimate of
        :math:`-E_o[\log p(x \mid o)]` with one random ordering prefix per example.

        Args:
            x: ``(..., D)`` binary values.
            context: ``(..., context_dim)`` when the model is conditional.
            generator: a CPU generator for the random subsets (``None``: global RNG).

        Returns:
            ``(...)`` loss; minimize its mean.
        """
        d = self.features
        ref = next(iter(self.parameters()))
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != d:
            raise ValueError(f"x: expected a tensor of shape (..., {d}), got {x!r:.80}")
        if x.device != ref.device:
            raise ValueError(f"x: expected a tensor on {ref.device}, got {x.device}")
        if x.is_complex():
            raise ValueError(f"x: expected a real tensor, got dtype {x.dtype}")
        validate = lgm_dist.DeepNADE._validate_args  # the global validation switch
        ctx_batch = _check_context(context, self.context_dim, ref.dtype, ref.device, validate)
        try:
            torch.broadcast_shapes(x.shape[:-1], ctx_batch)
        except RuntimeError:
            raise ValueError(
                f"context: batch shape {tuple(ctx_batch)} does not broadcast with the batch "
                f"shape {tuple(x.shape[:-1])} of x"
            ) from None
        generator = _generator(generator)
        _check_binary(x, "x")
        x = x.to(ref.dtype)
        batch = x.shape[:-1]
        n = math.prod(batch)
        num_obs = torch.randint(0, d, (n,), generator=generator)  # d ~ U{0..D-1}
        ranks = torch.rand(n, d, generator=generator).argsort(-1).argsort(-1)
        mask = (ranks < num_obs.unsqueeze(-1)).to(dtype=ref.dtype, device=ref.device)
        mask = mask.reshape(*batch, d)
        logits = self.conditional_logits(x * mask, mask, context)
        ll = -nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        )
        ll = (ll * (1 - mask)).sum(-1)
        weight = (d / (d - num_obs.to(ref.dtype))).to(ref.device).reshape(batch)
        return -(weight * ll)
