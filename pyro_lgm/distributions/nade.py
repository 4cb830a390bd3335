r"""Neural autoregressive distribution estimators: :class:`NADE` (binary) and :class:`RNADE`.

Both factorize a vector along a fixed ordering :math:`o` of its ``D`` positions,

.. math::
    p(x) = \prod_{d=1}^{D} p(x_{o_d} \mid x_{o_{<d}}),

and share one hidden layer across all conditionals: the pre-activation of the ``d``-th
conditional is :math:`a_d = c + W_{:, o_{<d}}\, x_{o_{<d}}`, which satisfies
:math:`a_{d+1} = a_d + W_{:, o_d} x_{o_d}`. ``log_prob`` therefore needs one running sum,
``O(D H)`` per example, computed in one vectorized teacher-forcing pass (in blocks of
positions, see ``_RunningNADE._params``); ``sample`` walks the ordering.

The distributions hold no parameters: they read them from a *net*, a
:class:`pyro_lgm.nn.NADE` / :class:`pyro_lgm.nn.RNADE` network (or the trainable
:class:`pyro_lgm.models.NADE` / :class:`pyro_lgm.models.RNADE`, the same networks whose call
returns these distributions).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_lgm.errors import NonFiniteValueError, _describe, check_finite
from pyro_lgm.nn.nade import NADE as NADENet
from pyro_lgm.nn.nade import RNADE as RNADENet
from pyro_lgm.nn.nade import (
    _inverse_permutation,
    _positive_int,
    bounded_log_scale,  # noqa: F401  (its home was this module)
)

__all__ = ["NADE", "RNADE"]


def _net_param(net: object, name: str = "net") -> torch.Tensor:
    try:
        return next(iter(net.parameters()))  # type: ignore[attr-defined]
    except (AttributeError, StopIteration):
        raise ValueError(f"{name}: expected an nn.Module with parameters, got {net!r}") from None


def _shape(value: object, name: str) -> torch.Size:
    """A shape of non-negative ints (a ``torch.Size``, tuple or list; bools are not ints)."""
    if isinstance(value, (list, tuple)) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        return torch.Size(value)
    raise ValueError(f"{name}: expected a tuple of non-negative ints, got {value!r}")


def _check_context(
    context: object,
    context_dim: int,
    dtype: torch.dtype,
    device: torch.device,
    validate: bool,
) -> torch.Size:
    """Check a context against a net's ``context_dim``, dtype and device; its batch shape.

    ``validate``: also reject NaN and infinities (:class:`pyro_lgm.errors.NonFiniteValueError`).
    """
    if context is None:
        if context_dim:
            raise ValueError(
                f"context: the net is conditional (context_dim={context_dim}); "
                "pass a context tensor of shape (..., context_dim)"
            )
        return torch.Size()
    if not context_dim:
        raise ValueError("context: the net is not conditional; pass context=None")
    if not isinstance(context, torch.Tensor):
        raise ValueError(f"context: expected a tensor, got {type(context).__name__}")
    if context.dim() < 1 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context: expected shape (..., {context_dim}), got {tuple(context.shape)}"
        )
    if context.dtype != dtype or context.device != device:
        raise ValueError(
            f"context: expected dtype {dtype} on {device}, got {context.dtype} on {context.device}"
        )
    if validate:
        check_finite("context", context, always=True)
    return context.shape[:-1]


def _check_binary(value: torch.Tensor, name: str = "value") -> None:
    """``value`` holds only 0 and 1 (any real dtype); NaN and infinities are named."""
    if value.dtype == torch.bool:
        return
    bad = ~((value == 0) | (value == 1))
    if not bool(bad.any()):
        return
    expected = f"{name}: expected binary values in {{0, 1}}"
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise NonFiniteValueError(f"{expected}, got {_describe(value)}")
    raise ValueError(f"{expected}, got {value[bad].flatten()[0].item()!r}")


def mixture_of_gaussians(
    logits: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> dist.MixtureSameFamily:
    r"""A batch of one-dimensional Gaussian mixtures :math:`\sum_k \pi_k N(\mu_k, \sigma_k^2)`.

    Args:
        logits: ``(..., K)`` unnormalized mixture log-weights.
        loc: ``(..., K)`` component means.
        log_scale: ``(..., K)`` component log standard deviations.

    Returns:
        a ``MixtureSameFamily`` with batch shape ``(...)``.

    Example:
        >>> d = mixture_of_gaussians(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2))
        >>> d.batch_shape, round(d.log_prob(torch.zeros(3))[0].item(), 4)
        (torch.Size([3]), -0.9189)
    """
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits, validate_args=False),
        dist.Normal(loc, log_scale.exp(), validate_args=False),
        validate_args=False,
    )


def _expanded(d: TorchDistribution, batch_shape: object, instance: object) -> TorchDistribution:
    """A copy of ``d`` (into ``instance`` when given) with the larger ``batch_shape``; the
    caller expands what depends on it (the context)."""
    batch_shape = _shape(batch_shape, "batch_shape")
    try:
        ok = torch.broadcast_shapes(d.batch_shape, batch_shape) == batch_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"batch_shape: cannot expand batch shape {tuple(d.batch_shape)} to {tuple(batch_shape)}"
        )
    new = d.__new__(type(d)) if instance is None else instance
    new.__dict__.update(d.__dict__)
    new._batch_shape = batch_shape
    return new


class _NetDistribution(TorchDistribution):
    """Shared plumbing: event/batch shapes from the context, value checks, expand, sample.

    Subclasses set ``self.net`` and implement ``_log_prob(value, context)`` and
    ``_sample_flat(n, context)``; ``value`` is already checked, cast and broadcast.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def _setup(
        self,
        net: object,
        features: int,
        context: torch.Tensor | None,
        context_dim: int,
        validate_args: bool | None,
    ) -> None:
        self.net = net
        param = _net_param(net)
        self._dtype, self._device = param.dtype, param.device
        validate = self._validate_args if validate_args is None else bool(validate_args)
        batch_shape = _check_context(context, context_dim, self._dtype, self._device, validate)
        self.context = context
        self._context_dim = context_dim
        super().__init__(batch_shape, torch.Size((features,)), validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: object = None) -> _NetDistribution:
        new = _expanded(self, batch_shape, _instance)
        batch_shape = new.batch_shape
        if self.context is not None:
            new.context = self.context.expand(batch_shape + self.context.shape[-1:])
        return new

    # -- values -----------------------------------------------------------------------
    def _value_dtype(self, value: torch.Tensor) -> torch.dtype:
        """Dtype the computation runs in; continuous subclasses require an exact match."""
        return self._dtype

    def _check_support(self, value: torch.Tensor) -> None:
        raise NotImplementedError

    def _prepare(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Size]:
        """Check ``value``; return it cast, the broadcast context and the output shape."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"value: expected a tensor, got {type(value).__name__}")
        d = self.event_shape[0]
        if value.dim() < 1 or value.shape[-1] != d:
            raise ValueError(f"value: expected shape (..., {d}), got {tuple(value.shape)}")
        if value.device != self._device:
            raise ValueError(f"value: expected a tensor on {self._device}, got {value.device}")
        if value.is_complex():
            raise ValueError(f"value: expected a real tensor, got dtype {value.dtype}")
        try:
            shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: batch shape {tuple(value.shape[:-1])} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None
        if self._validate_args:
            self._check_support(value)
        value = value.to(self._value_dtype(value))
        context = self.context
        if context is not None:
            value = value.expand(shape + value.shape[-1:])
            context = context.expand(shape + context.shape[-1:])
        return value, context, shape

    # -- public API -----------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value, context, shape = self._prepare(value)
        return self._log_prob(value, context).expand(shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = _shape(sample_shape, "sample_shape") + self.batch_shape
        n = math.prod(shape)
        context = self.context
        if context is not None:
            c = context.shape[-1]
            context = context.expand(shape + (c,)).reshape(n, c)
        with torch.no_grad():
            x = self._sample_flat(n, context)
        return x.reshape(shape + self.event_shape)

    def _log_prob(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _sample_flat(self, n: int, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class _Autoregressive(_NetDistribution):
    """An autoregressive distribution with per-position conditionals (see ``conditionals``)."""

    @property
    def order(self) -> torch.Tensor:
        """``(D,)`` LongTensor: ``order[k]`` is the position generated ``k``-th."""
        return self._order

    def conditionals(self, value: torch.Tensor) -> torch.distributions.Distribution:
        """The per-position conditionals :math:`p(x_i \\mid x_{o_{<r(i)}})` given ``value``.

        Returns a distribution with batch shape ``(..., D)`` (``...`` the broadcast of
        ``value``'s and this distribution's batch shapes) whose ``log_prob(value)``, summed
        over the last dimension, is ``self.log_prob(value)``. Entry ``i`` is the conditional
        of position ``i`` given the positions before it in :attr:`order`.
        """
        value, context, shape = self._prepare(value)
        d = self._conditionals(value, context)
        if d.batch_shape != shape + self.event_shape:
            d = d.expand(shape + self.event_shape)
        return d

    def _conditionals(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> torch.distributions.Distribution:
        raise NotImplementedError

    def _target(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def _log_prob(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return self._conditionals(value, context).log_prob(self._target(value)).sum(-1)


def _check_order(order: torch.Tensor, features: int, name: str = "net.order") -> torch.Tensor:
    if (
        not isinstance(order, torch.Tensor)
        or order.shape != (features,)
        or order.is_floating_point()
        or order.is_complex()
        or order.dtype == torch.bool
        or not torch.equal(order.sort().values.cpu(), torch.arange(features))
    ):
        raise ValueError(f"{name}: expected a permutation of range({features}), got {order!r}")
    return order.long()


def _unmodified(net: object, cls: type, *methods: str) -> bool:
    """Whether ``net`` is a ``cls`` that keeps ``cls``'s own ``methods``.

    A fast path written for one of the library's modules may only replace the generic pass
    when the methods that pass would call are not overridden by a subclass.
    """
    return isinstance(net, cls) and all(getattr(type(net), m) is getattr(cls, m) for m in methods)


class _RunningNADE(_Autoregressive):
    """The NADE recursion shared by :class:`NADE` and :class:`RNADE`.

    The net provides ``features``, ``context_dim``, ``order`` (``(D,)``), ``weight_in``
    (``(H, D)``), ``input_bias(context) -> (..., H)``, ``hidden(a, index) -> h`` (the
    activation of pre-activations ``a`` of shape ``(..., len(index), H)`` for the positions
    ``index``) and ``heads(h, index)``, the output parameters of those positions.
    """

    def __init__(
        self,
        net: object,
        context: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        wrong, hint = self._other_family
        if isinstance(net, wrong):
            raise ValueError(f"net: got a {type(net).__name__} network, {hint}")
        for attr in ("features", "order", "weight_in", "input_bias", "hidden", "heads"):
            if not hasattr(net, attr):
                raise ValueError(
                    f"net: expected a NADE-style module with attribute {attr!r} "
                    f"(e.g. pyro_lgm.nn.{type(self).__name__}), got {type(net).__name__}"
                )
        features = int(net.features)
        self._order = _check_order(net.order, features)
        self._setup(net, features, context, int(getattr(net, "context_dim", 0)), validate_args)

    #: positions per block of the teacher-forcing pass (see :meth:`_params`)
    block_size: int = 16

    #: the network class of the other distribution, and what to say when it is given
    _other_family: tuple[type, str]
    #: what ``net.heads(h, index)`` must return, in words
    _heads_expected: str

    def _heads_fit(self, out: tuple[torch.Tensor, ...], shape: torch.Size) -> bool:
        raise NotImplementedError

    def _heads(self, h: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``net.heads(h, index)`` as a tuple, checked against what this distribution reads."""
        raw = self.net.heads(h, index)
        if isinstance(raw, torch.Tensor):
            out: tuple = (raw,)
        elif isinstance(raw, (tuple, list)):
            out = tuple(raw)
        else:
            out = ()
        if not (
            all(isinstance(t, torch.Tensor) for t in out) and self._heads_fit(out, h.shape[:-1])
        ):
            got = ", ".join(
                f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                for t in out
            )
            raise ValueError(
                f"net: heads(h, index) returned ({got or type(raw).__name__}) for h of shape "
                f"{tuple(h.shape)}; {type(self).__name__} expects {self._heads_expected}"
            )
        return out

    def _params(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        r"""Conditional parameters of every position, in natural position order.

        The pre-activations :math:`a_k = c + \sum_{j<k} W_{:, o_j} x_{o_j}` are a running
        sum along the order. It is carried across blocks of ``block_size`` positions
        (``a += x_blk @ W_blk``); inside a block the prefix sums are one small
        strictly-lower-triangular product. Per example the work is ``O(D H block_size)``
        and the memory ``O(D H)``, i.e. ``O(D H)`` for the fixed block size, in
        ``ceil(D / block_size)`` vectorized steps (never ``D`` network passes).
        """
        d = self.event_shape[0]
        x_ord = value[..., self._order]
        w_ord = self.net.weight_in[:, self._order].transpose(0, 1)  # (D, H)
        running = self.net.input_bias(context)  # (H,) or (..., H): a_0 = c
        bs = _positive_int(self.block_size, "block_size")
        tril = torch.ones(bs, bs, dtype=value.dtype, device=value.device).tril(-1)
        pos_dim = value.dim() - 1
        outs: list[tuple[torch.Tensor, ...]] = []
        for start in range(0, d, bs):
            stop = min(d, start + bs)
            n = stop - start
            xb, wb = x_ord[..., start:stop], w_ord[start:stop]
            # a[..., k, :] = running + sum_{j < k in block} x_j W_j
            a = running.unsqueeze(-2) + (tril[:n, :n] * xb.unsqueeze(-2)) @ wb
            idx = self._order[start:stop]
            outs.append(self._heads(self.net.hidden(a, idx), idx))
            if stop < d:
                running = running + xb @ wb
        inv = _inverse_permutation(self._order)
        return tuple(torch.cat(parts, pos_dim).index_select(pos_dim, inv) for parts in zip(*outs))

    def _make_conditional(self, params: tuple[torch.Tensor, ...]) -> dist.TorchDistribution:
        raise NotImplementedError

    def _conditionals(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> torch.distributions.Distribution:
        return self._make_conditional(self._params(value, context))

    def _sample_flat(self, n: int, context: torch.Tensor | None) -> torch.Tensor:
        net = self.net
        d = self.event_shape[0]
        bias = net.input_bias(context)
        a = bias.expand(n, bias.shape[-1]).clone()
        x = torch.zeros(n, d, dtype=self._dtype, device=self._device)
        for k in range(d):
            idx = self._order[k : k + 1]
            h = net.hidden(a.unsqueeze(-2), idx)
            xi = self._make_conditional(self._heads(h, idx)).sample()  # (n, 1)
            xi = xi.to(self._dtype)
            x[:, idx] = xi
            a = a + xi * net.weight_in[:, idx].transpose(0, 1)
        return x


class NADE(_RunningNADE):
    r"""The neural autoregressive distribution estimator for binary vectors.

    For an ordering :math:`o` of the ``D`` positions (Larochelle & Murray, 2011):

    .. math::
        h_d = \sigma\big(c + W_{:, o_{<d}}\, x_{o_{<d}}\big), \qquad
        p(x_{o_d} = 1 \mid x_{o_{<d}}) = \operatorname{sigm}\big(V_{o_d} \cdot h_d + b_{o_d}\big),

    with :math:`W \in \mathbb{R}^{H \times D}`, :math:`V \in \mathbb{R}^{D \times H}` and the
    biases shared by all conditionals; :math:`\sigma` is the logistic sigmoid of the paper
    or a ReLU (Uria et al., 2016). ``log_prob`` runs the recursion
    :math:`a_{d+1} = a_d + W_{:, o_d} x_{o_d}` as a running sum (carried across blocks of
    ``block_size`` positions, with the prefix sums inside a block as one small triangular
    product): ``O(D H)`` per example, vectorized over the batch, never ``D`` network passes.
    ``sample`` is ancestral along :math:`o`.

    References:
        H. Larochelle, I. Murray. *The Neural Autoregressive Distribution Estimator*.
        AISTATS 2011.

        B. Uria, M.-A. Côté, K. Gregor, I. Murray, H. Larochelle. *Neural Autoregressive
        Distribution Estimation*. JMLR 17(205), 2016.

    Args:
        net: the parameter holder, a :class:`pyro_lgm.nn.NADE` (any module with the
            attributes described in ``_RunningNADE`` works; the trainable
            :class:`pyro_lgm.models.NADE` is one).
        context: ``(..., context_dim)`` tensor when the net is conditional (it shifts the
            hidden bias ``c``); its leading dimensions are the batch shape.
        validate_args: check that values are binary and the context finite (default:
            the global validation switch).

    Shapes:
        ``event_shape == (D,)``; ``log_prob(x)`` takes ``x`` of shape ``(..., D)`` with
        values in ``{0, 1}`` (any real or bool dtype) and returns ``(...)``.

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import NADE as NADENet
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> d = NADE(NADENet(4, hidden=8))
        >>> d.sample((3,)).shape
        torch.Size([3, 4])
        >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
        >>> torch.allclose(d.conditionals(x).log_prob(x).sum(-1), d.log_prob(x))
        True
    """

    support = constraints.independent(constraints.boolean, 1)
    _other_family = (
        RNADENet,
        "a real-valued NADE with mixture-of-Gaussian heads: use pyro_lgm.distributions.RNADE",
    )
    _heads_expected = "one tensor of Bernoulli logits of shape (..., len(index))"

    def _heads_fit(self, out: tuple[torch.Tensor, ...], shape: torch.Size) -> bool:
        return len(out) == 1 and out[0].shape == shape

    def _check_support(self, value: torch.Tensor) -> None:
        _check_binary(value)

    def _make_conditional(self, params: tuple[torch.Tensor, ...]) -> dist.Bernoulli:
        return dist.Bernoulli(logits=params[0], validate_args=False)

    def _params(
        self, value: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        """Logits of every position; a :class:`pyro_lgm.nn.NADE` whose generic methods are
        not overridden takes its fast blocked pass (:meth:`pyro_lgm.nn.NADE.ordered_logits`,
        with a hand-written ``O(N H)``-memory backward)."""
        net = self.net
        if not _unmodified(net, NADENet, "hidden", "heads", "input_bias"):
            return super()._params(value, context)
        return (net.ordered_logits(value, context, self.block_size),)


class RNADE(_RunningNADE):
    r"""The real-valued NADE with a mixture of Gaussians per conditional (Uria et al., 2013).

    .. math::
        a_d = c + W_{:, o_{<d}}\, x_{o_{<d}}, \qquad h_d = \sigma(\rho_{o_d} a_d), \qquad
        p(x_{o_d} \mid x_{o_{<d}}) = \sum_{k=1}^{K} \pi_{o_d, k}\,
            N\big(x_{o_d};\ \mu_{o_d, k},\ \sigma_{o_d, k}^2\big),

    where :math:`\pi_{o_d} = \operatorname{softmax}(V^{\pi}_{o_d} h_d + b^{\pi}_{o_d})`,
    :math:`\mu_{o_d} = V^{\mu}_{o_d} h_d + b^{\mu}_{o_d}` and
    :math:`\log\sigma_{o_d} = B \tanh\big((V^{\sigma}_{o_d} h_d + b^{\sigma}_{o_d}) / B\big)`
    (a softly bounded version of the paper's :math:`\exp` parametrization). The hidden
    pre-activation is shared across dimensions and updated by the same running sum as
    :class:`NADE`.

    References:
        B. Uria, I. Murray, H. Larochelle. *RNADE: The real-valued neural autoregressive
        density-estimator*. NeurIPS 2013.

    Args:
        net: the parameter holder, a :class:`pyro_lgm.nn.RNADE`.
        context: ``(..., context_dim)`` tensor when the net is conditional.
        validate_args: check that values and the context are finite (default: the
            global validation switch).

    Shapes:
        ``event_shape == (D,)``; ``log_prob(x)`` takes a floating ``x`` of shape
        ``(..., D)`` in the net's dtype and returns ``(...)``.

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import RNADE as RNADENet
        >>> d = RNADE(RNADENet(3, hidden=8, num_components=2))
        >>> d.log_prob(torch.zeros(5, 3)).shape
        torch.Size([5])
        >>> d.conditionals(torch.zeros(5, 3)).batch_shape
        torch.Size([5, 3])
    """

    support = constraints.independent(constraints.real, 1)
    _other_family = (
        NADENet,
        "a binary NADE with Bernoulli heads: use pyro_lgm.distributions.NADE",
    )
    _heads_expected = "a tuple (logits, loc, log_scale) of tensors of shape (..., len(index), K)"

    def _heads_fit(self, out: tuple[torch.Tensor, ...], shape: torch.Size) -> bool:
        return (
            len(out) == 3
            and all(t.dim() == len(shape) + 1 and t.shape[:-1] == shape for t in out)
            and out[0].shape == out[1].shape == out[2].shape
        )

    def _value_dtype(self, value: torch.Tensor) -> torch.dtype:
        if value.dtype != self._dtype:
            raise ValueError(f"value: expected dtype {self._dtype}, got {value.dtype}")
        return self._dtype

    def _check_support(self, value: torch.Tensor) -> None:
        check_finite("value", value, always=True)

    def _make_conditional(self, params: tuple[torch.Tensor, ...]) -> dist.MixtureSameFamily:
        logits, loc, log_scale = params
        return mixture_of_gaussians(logits, loc, log_scale)
