r"""MADE as a distribution: Bernoulli, categorical or Gaussian-mixture conditionals.

A masked autoencoder :math:`f` (:class:`pyro_lgm.nn.MADE`) maps ``x`` to parameters
whose row ``i`` only depends on the positions before ``i`` in the network's order
(Germain et al., 2015), so one forward pass gives every conditional of

.. math::
    p(x) = \prod_{d=1}^{D} p\big(x_{o_d} \mid f(x)_{o_d}\big).
"""

from __future__ import annotations

import contextlib

import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyro_lgm.distributions.nade import (
    _Autoregressive,
    _check_binary,
    _check_order,
    mixture_of_gaussians,
)
from pyro_lgm.errors import NonFiniteValueError, _describe, check_finite
from pyro_lgm.nn.masked import MADE as MADENet
from pyro_lgm.nn.nade import NADE as NADENet
from pyro_lgm.nn.nade import RNADE, DeepNADE, _positive_finite, bounded_log_scale

__all__ = ["MADE"]

_CONDITIONALS = ("bernoulli", "categorical", "mog")

#: networks that have an ``order`` but are not masked autoencoders -> their distribution
_NADE_FAMILY = {NADENet: "NADE", RNADE: "RNADE", DeepNADE: "DeepNADE"}


def _check_net(net: object) -> None:
    for cls, name in _NADE_FAMILY.items():
        if isinstance(net, cls):
            raise ValueError(
                f"net: got a {type(net).__name__} network, not a masked autoencoder; use "
                f"pyro_lgm.distributions.{name} for it (MADE needs a pyro_lgm.nn.MADE)"
            )
    if not isinstance(net, MADENet) and isinstance(getattr(net, "net", None), MADENet):
        raise ValueError(
            f"net: got a {type(net).__name__} model; pass its network (model.net), or call "
            "the model, model(context), for its distribution"
        )
    order = getattr(net, "order", None)
    if not callable(net) or not isinstance(order, torch.Tensor) or order.dim() != 1:
        raise ValueError(
            f"net: expected a pyro_lgm.nn.MADE with an `order` buffer, got {type(net).__name__}"
        )


def _check_param_dims(net: object, conditional: str, num_classes: int | None) -> None:
    """The net's ``param_dims`` (when it says them) fit the conditionals."""
    pd = getattr(net, "param_dims", None)
    if not isinstance(pd, (list, tuple)) or not all(isinstance(p, int) for p in pd):
        return
    pd = list(pd)
    if conditional == "bernoulli":
        want, ok = "[1]", sum(pd) == 1
    elif conditional == "categorical":
        want, ok = f"[{num_classes}] (num_classes={num_classes})", sum(pd) == num_classes
    else:
        want, ok = "[K, K, K]", len(pd) == 3 and pd[0] == pd[1] == pd[2]
    if not ok:
        raise ValueError(
            f"net: param_dims={pd} does not fit conditional={conditional!r}; expected {want}"
        )


class MADE(_Autoregressive):
    r"""The distribution of a masked autoencoder for distribution estimation (MADE).

    .. math::
        p(x) = \prod_{d=1}^{D} p(x_{o_d} \mid \theta_{o_d}), \qquad
        \theta = f(x) \ \text{with}\ \partial \theta_{o_d} / \partial x_{o_{\ge d}} = 0

    with, per position, a Bernoulli (``theta`` one logit), a categorical over ``K`` classes
    (``K`` logits) or a mixture of ``K`` Gaussians (``K`` logits, ``K`` means and ``K``
    log-scales :math:`B \tanh(\cdot / B)`). ``log_prob`` is one network pass; ``sample``
    takes ``D`` passes along the order.

    References:
        M. Germain, K. Gregor, I. Murray, H. Larochelle. *MADE: Masked Autoencoder for
        Distribution Estimation*. ICML 2015.

    Args:
        net: a :class:`pyro_lgm.nn.MADE` with ``input_dim = D`` and ``param_dims`` 1
            (Bernoulli), ``K`` (categorical) or ``[K, K, K]`` (mixture).
        context: ``(..., context_dim)`` when the net is conditional.
        conditional: ``"bernoulli"``, ``"categorical"`` or ``"mog"``.
        num_classes: ``K`` for ``"categorical"`` (default: the net's output width).
        log_scale_bound: :math:`B` of the mixture's log-scales, a finite positive number.
        validate_args: check values against the support and the context for NaN and
            infinities (default: the global validation switch).

    Shapes:
        ``event_shape == (D,)``. Bernoulli values are ``{0, 1}`` (any real dtype),
        categorical values integers in ``[0, K)`` (any real dtype; samples are ``long``),
        mixture values floating in the net's dtype. The network sees categorical values
        rescaled to ``[-1, 1]``.

    Example:
        >>> import torch
        >>> from pyro_lgm.nn.masked import MADE as MADENet
        >>> d = MADE(MADENet(3, [16], param_dims=4, seed=0), conditional="categorical")
        >>> x = d.sample((2,))
        >>> x.shape, x.dtype
        (torch.Size([2, 3]), torch.int64)
        >>> torch.allclose(d.conditionals(x).log_prob(x).sum(-1), d.log_prob(x))
        True
    """

    def __init__(
        self,
        net: torch.nn.Module,
        context: torch.Tensor | None = None,
        conditional: str = "bernoulli",
        num_classes: int | None = None,
        log_scale_bound: float = 7.0,
        validate_args: bool | None = None,
    ) -> None:
        if conditional not in _CONDITIONALS:
            raise ValueError(
                f"conditional: expected one of {list(_CONDITIONALS)}, got {conditional!r}"
            )
        _check_net(net)
        order = net.order
        features = order.numel()
        self._order = _check_order(order, features)
        self.conditional = conditional
        if conditional == "categorical":
            if num_classes is None:
                pd = getattr(net, "param_dims", None)
                num_classes = int(sum(pd)) if isinstance(pd, (list, tuple)) else pd
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        elif num_classes is not None:
            raise ValueError(
                f"num_classes: only used with conditional='categorical', got {num_classes}"
            )
        self.num_classes = num_classes
        _check_param_dims(net, conditional, num_classes)
        self.log_scale_bound = _positive_finite(log_scale_bound, "log_scale_bound")
        self._setup(net, features, context, int(getattr(net, "context_dim", 0)), validate_args)

    @property
    def support(self) -> constraints.Constraint:
        if self.conditional == "bernoulli":
            return constraints.independent(constraints.boolean, 1)
        if self.conditional == "categorical":
            return constraints.independent(constraints.integer_interval(0, self.num_classes - 1), 1)
        return constraints.independent(constraints.real, 1)

    def _value_dtype(self, value: torch.Tensor) -> torch.dtype:
        if self.conditional == "mog" and value.dtype != self._dtype:
            raise ValueError(f"value: expected dtype {self._dtype}, got {value.dtype}")
        return self._dtype

    def _check_support(self, value: torch.Tensor) -> None:
        if self.conditional == "bernoulli":
            _check_binary(value)
        elif self.conditional == "categorical":
            v = value.double()
            bad = ~((v == v.round()) & (v >= 0) & (v <= self.num_classes - 1))
            if bool(bad.any()):
                expected = f"value: expected integer class labels in [0, {self.num_classes - 1}]"
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise NonFiniteValueError(f"{expected}, got {_describe(value)}")
                raise ValueError(f"{expected}, got {v[bad].flatten()[0].item()!r}")
        else:
            check_finite("value", value, always=True)

    def _net_input(self, value: torch.Tensor) -> torch.Tensor:
        if self.conditional == "categorical":
            return value * (2.0 / (self.num_classes - 1)) - 1.0
        return value

    def _target(self, value: torch.Tensor) -> torch.Tensor:
        return value.round().long() if self.conditional == "categorical" else value

    def _make_conditional(self, out: torch.Tensor) -> torch.distributions.Distribution:
        """Per-position conditionals from network outputs ``(..., D', P)``."""
        p = out.shape[-1]
        if self.conditional == "bernoulli":
            if p != 1:
                raise ValueError(f"net: expected param_dims=1 for Bernoulli conditionals, got {p}")
            return dist.Bernoulli(logits=out[..., 0], validate_args=False)
        if self.conditional == "categorical":
            if p != self.num_classes:
                raise ValueError(
                    f"net: expected param_dims={self.num_classes} (num_classes), got {p}"
                )
            return dist.Categorical(logits=out, validate_args=False)
        if p % 3:
            raise ValueError(f"net: expected param_dims=[K, K, K] for a Gaussian mixture, got {p}")
        split = getattr(self.net, "split", None)
        parts = split(out) if split is not None else out.chunk(3, -1)
        logits, loc, raw = parts
        return mixture_of_gaussians(logits, loc, bounded_log_scale(raw, self.log_scale_bound))

    def _conditionals(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> torch.distributions.Distribution:
        return self._make_conditional(self._net_out(self._net_input(value), context))

    def _net_out(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The net's output ``(..., D, P)`` for ``x``, checked to have one row per position."""
        out = self.net(x, context)
        d = self.event_shape[0]
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[-2] != d:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"net: expected an output of shape (..., {d}, P), got {got}")
        return out

    def _sample_flat(self, n: int, context: torch.Tensor | None) -> torch.Tensor:
        d = self.event_shape[0]
        x = torch.zeros(n, d, dtype=self._dtype, device=self._device)
        # D passes with the same parameters: build the masked weights once (pyro_lgm.nn.MADE)
        with getattr(self.net, "reuse_weights", contextlib.nullcontext)():
            for k in range(d):
                i = self._order[k : k + 1]
                out = self._net_out(self._net_input(x), context)
                x[:, i] = self._make_conditional(out[:, i]).sample().to(self._dtype)
        if self.conditional == "categorical":
            return x.long()
        return x
