r"""Trainable NADE-family models: :class:`NADE`, :class:`RNADE` and :class:`DeepNADE`.

Each is an ``nn.Module`` holding the parameters; calling it returns the distribution of the
same name in :mod:`pyro_lgm.distributions`, bound to the current parameters::

    model = NADE(784, hidden=500)
    loss = -model().log_prob(x).mean()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.distributions.nade import _inverse_permutation

__all__ = ["NADE", "RNADE", "DeepNADE"]

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu}


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _nonneg_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def _activation_name(activation: object, allowed: Sequence[str]) -> str:
    if activation not in allowed:
        raise ValueError(f"activation: expected one of {list(allowed)}, got {activation!r}")
    return str(activation)


def parse_order(
    order: str | Sequence[int] | torch.Tensor | None, features: int, seed: int | None = None
) -> torch.Tensor:
    """An ordering of ``features`` positions as a ``(features,)`` LongTensor.

    Args:
        order: ``None`` or ``"natural"``, ``"reversed"``, ``"random"`` (a permutation drawn
            with ``seed``), or an explicit permutation of ``range(features)``.
        features: ``D``.
        seed: seed of the random permutation (``None``: the global generator).

    Example:
        >>> parse_order("reversed", 3)
        tensor([2, 1, 0])
    """
    if order is None or (isinstance(order, str) and order == "natural"):
        return torch.arange(features)
    if isinstance(order, str):
        if order == "reversed":
            return torch.arange(features).flip(0)
        if order == "random":
            g = None
            if seed is not None:
                g = torch.Generator().manual_seed(seed)
            return torch.randperm(features, generator=g)
        raise ValueError(
            f"order: expected 'natural', 'reversed', 'random' or a permutation, got {order!r}"
        )
    try:
        t = torch.as_tensor(order)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"order: expected a permutation of range({features}), got {order!r}"
        ) from None
    if (
        t.dim() != 1
        or t.numel() != features
        or t.is_floating_point()
        or not torch.equal(t.long().sort().values.cpu(), torch.arange(features))
    ):
        raise ValueError(f"order: expected a permutation of range({features}), got {order!r}")
    return t.long().cpu().clone()


def _uniform(shape: Sequence[int], bound: float, g: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(*shape, generator=g) * 2 - 1) * bound


class _RunningNADEModule(nn.Module):
    """Parameters and the network pieces shared by :class:`NADE` and :class:`RNADE`."""

    def __init__(
        self,
        features: int,
        hidden: int,
        activation: str,
        order: str | Sequence[int] | torch.Tensor | None,
        context_dim: int,
        seed: int | None,
    ) -> None:
        super().__init__()
        self.features = _positive_int(features, "features")
        self.hidden_size = _positive_int(hidden, "hidden")
        self.activation = _activation_name(activation, tuple(_ACTIVATIONS))
        self.context_dim = _nonneg_int(context_dim, "context_dim")
        g = None if seed is None else torch.Generator().manual_seed(seed)
        self._generator = g
        self.register_buffer("order", parse_order(order, features, seed))
        self.weight_in = nn.Parameter(_uniform((hidden, features), 1 / math.sqrt(features), g))
        self.bias_in = nn.Parameter(torch.zeros(hidden))
        self.context_net = nn.Linear(context_dim, hidden) if context_dim else None

    def input_bias(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden bias :math:`c`, shifted by a linear map of the context: ``(..., H)``."""
        if context is None or self.context_net is None:
            return self.bias_in
        return self.bias_in + self.context_net(context)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, hidden={self.hidden_size}, "
            f"activation={self.activation!r}, context_dim={self.context_dim}"
        )


class NADE(_RunningNADEModule):
    r"""A trainable NADE for binary vectors (Larochelle & Murray, 2011).

    .. math::
        p(x) = \prod_{d} \operatorname{sigm}(V_{o_d} \cdot h_d + b_{o_d})^{x_{o_d}}
            \big(1 - \operatorname{sigm}(V_{o_d} \cdot h_d + b_{o_d})\big)^{1 - x_{o_d}},
        \qquad h_d = \sigma(c + W_{:, o_{<d}} x_{o_{<d}})

    Calling the module returns a :class:`pyro_lgm.distributions.NADE`.

    References:
        H. Larochelle, I. Murray. *The Neural Autoregressive Distribution Estimator*.
        AISTATS 2011.

    Args:
        features: ``D``, the length of the binary vectors.
        hidden: ``H``, the number of hidden units.
        activation: ``"sigmoid"`` (the paper) or ``"relu"``.
        order: ``None``/``"natural"``, ``"reversed"``, ``"random"`` or a permutation.
        context_dim: size of an optional context that shifts the hidden bias (0: none).
        seed: seed of the initial weights and of a ``"random"`` order.

    Parameters:
        ``weight_in`` :math:`W` ``(H, D)``, ``bias_in`` :math:`c` ``(H,)``, ``weight_out``
        :math:`V` ``(D, H)``, ``bias_out`` :math:`b` ``(D,)``; buffer ``order`` ``(D,)``.

    Example:
        >>> import torch
        >>> model = NADE(5, hidden=16, seed=0)
        >>> x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
        >>> model().log_prob(x).shape
        torch.Size([1])
    """

    def __init__(
        self,
        features: int,
        hidden: int = 500,
        activation: str = "sigmoid",
        order: str | Sequence[int] | torch.Tensor | None = None,
        *,
        context_dim: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__(features, hidden, activation, order, context_dim, seed)
        g = self._generator
        self.weight_out = nn.Parameter(_uniform((features, hidden), 1 / math.sqrt(hidden), g))
        self.bias_out = nn.Parameter(torch.zeros(features))
        del self._generator

    def hidden(self, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Hidden units ``(..., len(index), H)`` from pre-activations of the same shape."""
        return _ACTIVATIONS[self.activation](a)

    def heads(self, h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(..., len(index))`` of the positions ``index``."""
        return torch.einsum("...dh,dh->...d", h, self.weight_out[index]) + self.bias_out[index]

    def forward(self, context: torch.Tensor | None = None) -> lgm_dist.NADE:
        """Return :math:`p(x \\mid \\text{context})` as a :class:`pyro_lgm.distributions.NADE`."""
        return lgm_dist.NADE(self, context)


class RNADE(_RunningNADEModule):
    r"""A trainable real-valued NADE with mixture-of-Gaussian conditionals (Uria et al., 2013).

    .. math::
        p(x_{o_d} \mid x_{o_{<d}}) = \sum_{k=1}^{K} \pi_{o_d k}\,
            N(x_{o_d}; \mu_{o_d k}, \sigma_{o_d k}^2), \qquad
        h_d = \sigma\big(\rho_{o_d} (c + W_{:, o_{<d}} x_{o_{<d}})\big)

    Calling the module returns a :class:`pyro_lgm.distributions.RNADE`.

    References:
        B. Uria, I. Murray, H. Larochelle. *RNADE: The real-valued neural autoregressive
        density-estimator*. NeurIPS 2013.

    Args:
        features: ``D``.
        hidden: ``H``.
        num_components: ``K`` Gaussians per conditional.
        activation: ``"sigmoid"`` or ``"relu"``.
        order: ``None``/``"natural"``, ``"reversed"``, ``"random"`` or a permutation.
        context_dim: size of an optional context that shifts the hidden bias (0: none).
        log_scale_bound: :math:`B`, the log standard deviations are
            :math:`B \tanh(\cdot / B)`.
        seed: seed of the initial weights and of a ``"random"`` order.

    Parameters:
        ``weight_in`` ``(H, D)``, ``bias_in`` ``(H,)``, ``rho`` ``(D,)``, and per position
        ``weight_logits``/``weight_loc``/``weight_log_scale`` ``(D, K, H)`` with biases
        ``(D, K)``.

    Example:
        >>> import torch
        >>> model = RNADE(2, hidden=8, num_components=3, seed=0)
        >>> model().sample((4,)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        features: int,
        hidden: int = 100,
        num_components: int = 10,
        activation: str = "sigmoid",
        order: str | Sequence[int] | torch.Tensor | None = None,
        *,
        context_dim: int = 0,
        log_scale_bound: float = 7.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(features, hidden, activation, order, context_dim, seed)
        k = self.num_components = _positive_int(num_components, "num_components")
        if not (isinstance(log_scale_bound, (int, float)) and log_scale_bound > 0):
            raise ValueError(f"log_scale_bound: expected a positive number, got {log_scale_bound}")
        self.log_scale_bound = float(log_scale_bound)
        g = self._generator
        bound = 1 / math.sqrt(hidden)
        self.rho = nn.Parameter(torch.ones(features))
        self.weight_logits = nn.Parameter(_uniform((features, k, hidden), bound, g))
        self.bias_logits = nn.Parameter(torch.zeros(features, k))
        self.weight_loc = nn.Parameter(_uniform((features, k, hidden), bound, g))
        # Spread the initial means so that the components are distinguishable.
        spread = torch.linspace(-1.0, 1.0, k) if k > 1 else torch.zeros(1)
        self.bias_loc = nn.Parameter(spread.expand(features, k).clone())
        self.weight_log_scale = nn.Parameter(_uniform((features, k, hidden), bound, g))
        self.bias_log_scale = nn.Parameter(torch.zeros(features, k))
        del self._generator

    def hidden(self, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Hidden units :math:`\\sigma(\\rho_{o_d} a_d)`, ``(..., len(index), H)``."""
        return _ACTIVATIONS[self.activation](self.rho[index].unsqueeze(-1) * a)

    def heads(
        self, h: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture logits, means and log-scales, each ``(..., len(index), K)``."""

        def lin(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.einsum("...dh,dkh->...dk", h, w[index]) + b[index]

        logits = lin(self.weight_logits, self.bias_logits)
        loc = lin(self.weight_loc, self.bias_loc)
        raw = lin(self.weight_log_scale, self.bias_log_scale)
        return logits, loc, lgm_dist.nade.bounded_log_scale(raw, self.log_scale_bound)

    def forward(self, context: torch.Tensor | None = None) -> lgm_dist.RNADE:
        """Return :math:`p(x \\mid \\text{context})` as a :class:`pyro_lgm.distributions.RNADE`."""
        return lgm_dist.RNADE(self, context)


class DeepNADE(nn.Module):
    r"""An order-agnostic deep NADE for binary vectors (Uria, Murray & Larochelle, 2014).

    A multilayer perceptron :math:`f` maps :math:`(x \odot m, m)` (and a context, when
    ``context_dim > 0``) to one logit per position; every ordering :math:`o` then defines a
    distribution :math:`p(x \mid o)` (see :class:`pyro_lgm.distributions.DeepNADE`).
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

    Args:
        features: ``D``.
        hidden_dims: widths of the hidden layers.
        activation: ``"relu"`` (the paper), ``"sigmoid"`` or ``"tanh"``.
        order: default ordering of ``model()``: ``None``/``"natural"``, ``"reversed"``,
            ``"random"`` or a permutation.
        context_dim: size of an optional context appended to the input (0: none).
        seed: seed of the initial weights and of a ``"random"`` order.

    Example:
        >>> import torch
        >>> model = DeepNADE(4, hidden_dims=(16,), seed=0)
        >>> x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
        >>> model().log_prob(x).shape, model.order_agnostic_loss(x).shape
        (torch.Size([1]), torch.Size([1]))
        >>> model.ensemble_log_prob(x, num_orderings=3).shape
        torch.Size([1])
    """

    def __init__(
        self,
        features: int,
        hidden_dims: Sequence[int] = (500, 500),
        activation: str = "relu",
        order: str | Sequence[int] | torch.Tensor | None = None,
        *,
        context_dim: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.features = _positive_int(features, "features")
        self.context_dim = _nonneg_int(context_dim, "context_dim")
        act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
        self.activation = _activation_name(activation, tuple(act))
        try:
            hidden_dims = [_positive_int(h, "hidden_dims") for h in hidden_dims]
        except TypeError:
            raise ValueError(
                f"hidden_dims: expected a sequence of ints, got {hidden_dims!r}"
            ) from None
        self.hidden_dims = tuple(hidden_dims)
        self.register_buffer("order", parse_order(order, features, seed))
        dims = [2 * features + context_dim, *hidden_dims, features]
        layers: list[nn.Module] = []
        if seed is not None:
            state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        try:
            for i in range(len(dims) - 1):
                layers.append(nn.Linear(dims[i], dims[i + 1]))
                if i < len(dims) - 2:
                    layers.append(act[self.activation]())
        finally:
            if seed is not None:
                torch.random.set_rng_state(state)
        self.net = nn.Sequential(*layers)

    def conditional_logits(
        self, x_masked: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(..., D)`` of every position given the observed ones.

        Args:
            x_masked: ``(..., D)`` values with unobserved positions set to zero.
            mask: ``(..., D)`` 1 for observed positions, 0 otherwise.
            context: ``(..., context_dim)`` when the model is conditional.
        """
        parts = [x_masked, mask]
        if self.context_dim:
            if context is None:
                raise ValueError("context: the model is conditional; pass a context tensor")
            parts.append(context)
        shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return self.net(torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1))

    def ordered_logits(
        self, value: torch.Tensor, order: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Logit of every position given the positions before it in ``order``: ``(..., D)``.

        The same numbers as running the network on the ``D`` prefix-masked copies of each
        example and reading output ``o_k`` of copy ``k``, but cheaper: the first layer's
        pre-activation of copy ``k`` is a running sum along the ordering,

        .. math::
            a^{(1)}_k = b_1 + W_c\,c + \sum_{j<k} ig(W_x[:, o_j]\, x_{o_j} + W_m[:, o_j]ig),

        and only output ``o_k`` of copy ``k`` is computed. For 784 inputs and two layers of
        500 units that is about a sixth of the multiply-adds of the masked-copies pass.

        Args:
            value: ``(..., D)`` values; ``context``: ``(..., context_dim)`` when conditional
                (broadcast with ``value``); ``order``: ``(D,)`` permutation.
        """
        d = self.features
        layers = list(self.net)
        first, last = layers[0], layers[-1]
        shape = value.shape[:-1]
        if self.context_dim:
            if context is None:
                raise ValueError("context: the model is conditional; pass a context tensor")
            shape = torch.broadcast_shapes(shape, context.shape[:-1])
            context = context.expand(*shape, self.context_dim)
        x = value.expand(*shape, d)[..., order]
        w_x = first.weight[:, :d][:, order].t()  # (D, H1) in generation order
        w_m = first.weight[:, d : 2 * d][:, order].t()
        bias = first.bias
        if self.context_dim:
            bias = bias + context @ first.weight[:, 2 * d :].t()  # (..., H1)
        step = x.unsqueeze(-1) * w_x + w_m  # (..., D, H1): what observing o_j adds
        h = bias.unsqueeze(-2) + (torch.cumsum(step, -2) - step)  # exclusive running sum
        for layer in layers[1:-1]:
            h = layer(h)
        w_out = last.weight[order]  # (D, H_L): the output row of o_k
        by_step = (h * w_out).sum(-1) + last.bias[order]  # (..., D), generation order
        return by_step.index_select(by_step.dim() - 1, _inverse_permutation(order))

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
        if not ((x == 0) | (x == 1)).all():
            raise ValueError("x: expected binary values in {0, 1}")
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
