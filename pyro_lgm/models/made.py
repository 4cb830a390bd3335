r"""A trainable MADE density model (Germain et al., 2015) with mask-ensemble evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.nn.masked import MADE as MADENet
from pyro_lgm.nn.nade import _hidden_dims, _positive_finite, _seed

__all__ = ["MADE"]


class MADE(nn.Module):
    r"""A masked autoencoder for distribution estimation, trained by maximum likelihood.

    .. math::
        p(x) = \prod_{d=1}^{D} p(x_{o_d} \mid \theta_{o_d}(x_{o_{<d}})), \qquad
        \log p_{\text{ens}}(x) = \operatorname{logsumexp}_{k=1}^{K}
            \log p(x \mid M^{(k)}) - \log K

    The network is a :class:`pyro_lgm.nn.MADE`; calling the module returns a
    :class:`pyro_lgm.distributions.MADE` bound to the current masks and parameters.
    :meth:`resample_masks` draws new connectivity (and a new order when ``order="random"``)
    for connectivity-agnostic training; :meth:`ensemble_log_prob` evaluates the uniform
    mixture over ``K`` random mask sets :math:`M^{(k)}` and restores the masks afterwards.

    References:
        M. Germain, K. Gregor, I. Murray, H. Larochelle. *MADE: Masked Autoencoder for
        Distribution Estimation*. ICML 2015.

    Args:
        features: ``D``.
        hidden_dims: widths of the masked hidden layers.
        conditional: ``"bernoulli"`` (binary data), ``"categorical"`` (integers in
            ``[0, num_classes)``) or ``"mog"`` (real values, mixture of Gaussians).
        num_classes: ``K`` for ``"categorical"``.
        num_components: ``K`` for ``"mog"`` (default 5).
        context_dim: size of an optional context (0: none).
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation.
        skip_connections: direct masked input-to-output connections.
        activation: the hidden non-linearity class.
        log_scale_bound: bound :math:`B` of the mixture log-scales, a finite positive number.
        seed: seed of the masks (and a random order); ``None`` or an int. The weights are
            drawn from the global generator.

    Example:
        >>> import torch
        >>> model = MADE(4, hidden_dims=(16, 16), seed=0)
        >>> x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
        >>> model().log_prob(x).shape, model.ensemble_log_prob(x, num_masks=3).shape
        (torch.Size([1]), torch.Size([1]))
    """

    def __init__(
        self,
        features: int,
        hidden_dims: Sequence[int] = (500, 500),
        conditional: str = "bernoulli",
        num_classes: int | None = None,
        num_components: int | None = None,
        *,
        context_dim: int = 0,
        order: str | Sequence[int] = "natural",
        skip_connections: bool = False,
        activation: type[nn.Module] = nn.ReLU,
        log_scale_bound: float = 7.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features: expected a positive integer, got {features!r}")
        if conditional == "bernoulli":
            param_dims: int | list[int] = 1
        elif conditional == "categorical":
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(
                    f"num_classes: expected an integer >= 2 for conditional='categorical', "
                    f"got {num_classes!r}"
                )
            param_dims = num_classes
        elif conditional == "mog":
            num_components = 5 if num_components is None else num_components
            if (
                isinstance(num_components, bool)
                or not isinstance(num_components, int)
                or num_components < 1
            ):
                raise ValueError(
                    f"num_components: expected a positive integer, got {num_components!r}"
                )
            param_dims = [num_components] * 3
        else:
            raise ValueError(
                f"conditional: expected 'bernoulli', 'categorical' or 'mog', got {conditional!r}"
            )
        if conditional != "categorical" and num_classes is not None:
            raise ValueError("num_classes: only used with conditional='categorical'")
        if conditional != "mog" and num_components is not None:
            raise ValueError("num_components: only used with conditional='mog'")
        self.features = features
        self.conditional = conditional
        self.num_classes = num_classes
        self.num_components = num_components
        self.context_dim = context_dim
        self.log_scale_bound = _positive_finite(log_scale_bound, "log_scale_bound")
        self.net = MADENet(
            features,
            list(_hidden_dims(hidden_dims)),
            param_dims,
            context_dim=context_dim,
            order=order,
            skip_connections=skip_connections,
            activation=activation,
            seed=_seed(seed),
        )
        self.forward_kwargs = {
            "conditional": conditional,
            "num_classes": num_classes,
            "log_scale_bound": self.log_scale_bound,
        }

    @property
    def order(self) -> torch.Tensor:
        """``(D,)`` the current autoregressive order of the network."""
        return self.net.order

    def forward(self, context: torch.Tensor | None = None) -> lgm_dist.MADE:
        """Return :math:`p(x \\mid \\text{context})` as a :class:`pyro_lgm.distributions.MADE`."""
        return lgm_dist.MADE(self.net, context, **self.forward_kwargs)

    def resample_masks(
        self, generator: torch.Generator | None = None, resample_order: bool | None = None
    ) -> None:
        """Draw new masks (connectivity-agnostic training); see ``pyro_lgm.nn.MADE``."""
        self.net.resample_masks(generator=generator, resample_order=resample_order)

    def ensemble_log_prob(
        self,
        x: torch.Tensor,
        num_masks: int = 8,
        context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        resample_order: bool | None = None,
    ) -> torch.Tensor:
        r""":math:`\log \frac1K \sum_k p(x \mid M^{(k)})` over ``K`` freshly drawn mask sets.

        The network's masks (and order) are restored afterwards, also on error.

        Args:
            x: ``(..., D)`` values in the support.
            num_masks: ``K``.
            context: ``(..., context_dim)`` when conditional.
            generator: generator for the masks (``None``: the global one).
            resample_order: forwarded to ``resample_masks``.

        Returns:
            ``(...)`` log-likelihoods of the mixture.
        """
        if isinstance(num_masks, bool) or not isinstance(num_masks, int) or num_masks < 1:
            raise ValueError(f"num_masks: expected a positive integer, got {num_masks!r}")
        saved = {name: b.clone() for name, b in self.net.named_buffers()}
        lps = []
        try:
            for _ in range(num_masks):
                self.resample_masks(generator=generator, resample_order=resample_order)
                lps.append(self(context).log_prob(x))
        finally:
            with torch.no_grad():
                for name, b in self.net.named_buffers():
                    b.copy_(saved[name])
        return torch.stack(lps).logsumexp(0) - math.log(num_masks)
