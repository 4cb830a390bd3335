r"""Radial flows (Rezende & Mohamed, 2015) with a closed-form inverse.

Same layout as :mod:`pyro_lgm.transforms.planar`: the math as functions of tensors
(:func:`radial_constrain`, :func:`radial_forward`, :func:`radial_log_abs_det_jacobian`,
:func:`radial_inverse`), then :class:`ConditionedRadial` (given parameter tensors),
:class:`Radial` (learnable), :class:`ConditionalRadial` (amortized) and the helpers
:func:`radial` and :func:`conditional_radial`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pyro.distributions import ConditionalTransformModule, TransformModule
from torch import nn
from torch.distributions import Transform, constraints

from pyro_lgm.errors import all_finite, validation_enabled
from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import (
    VectorParamTransform,
    _check_context,
    _check_hidden_dims,
    _check_net,
    _check_param_tensor,
    _check_params_finite,
    _check_positive_int,
    _check_vector_input,
    _default_hidden_dims,
    _last_linear,
    broadcast_shapes,
)

__all__ = [
    "ConditionalRadial",
    "ConditionedRadial",
    "Radial",
    "conditional_radial",
    "radial",
    "radial_constrain",
    "radial_forward",
    "radial_inverse",
    "radial_log_abs_det_jacobian",
]

_SOFTPLUS_INV_ONE = math.log(math.expm1(1.0))


def radial_constrain(
    alpha_prime: torch.Tensor, beta_prime: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Constrain the raw radial parameters so that the map is invertible.

    .. math::
        \alpha = \operatorname{softplus}(\alpha') > 0, \qquad
        \beta = -\alpha + \operatorname{softplus}(\beta') \ge -\alpha.

    Args:
        alpha_prime: ``(...)``.
        beta_prime: ``(...)``.

    Returns:
        ``(alpha, beta, alpha_plus_beta)``, where ``alpha_plus_beta = softplus(beta')`` is
        returned separately because it is accurate even when :math:`\beta \approx -\alpha`.

    Example:
        >>> alpha, beta, apb = radial_constrain(torch.tensor(0.0), torch.tensor(-30.0))
        >>> bool(beta >= -alpha), bool(apb >= 0)
        (True, True)
    """
    alpha = F.softplus(alpha_prime)
    apb = F.softplus(beta_prime)
    return alpha, apb - alpha, apb


def radial_forward(
    z: torch.Tensor, z0: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    r"""The radial map :math:`f(z) = z + \beta h(\alpha, r)(z - z_0)`.

    .. math::
        r = \|z - z_0\|, \qquad h(\alpha, r) = \frac{1}{\alpha + r}.

    Args:
        z: ``(..., D)``.
        z0: ``(..., D)`` reference point.
        alpha, beta: ``(...)`` from :func:`radial_constrain`.

    Returns:
        ``(..., D)``.

    Example:
        >>> radial_forward(torch.ones(2), torch.zeros(2), torch.tensor(1.0), torch.tensor(0.0))
        tensor([1., 1.])
    """
    diff, r, s = _radial_terms(z, z0, alpha)
    return _radial_map(z, diff, beta, s.reciprocal())


def _radial_terms(
    z: torch.Tensor, z0: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``diff = z - z0``, ``r = |diff|`` and ``s = alpha + r``, shared by the map and its
    log-det."""
    diff = z - z0
    r = torch.linalg.vector_norm(diff, dim=-1)
    return diff, r, alpha + r


def _radial_map(
    z: torch.Tensor, diff: torch.Tensor, beta: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    """``z + beta h diff`` with ``h = 1 / (alpha + r)`` (a multiply and an add: their
    backward is cheaper than ``addcmul``'s here, measured)."""
    return z + (beta * h).unsqueeze(-1) * diff


def radial_log_abs_det_jacobian(
    z: torch.Tensor,
    z0: torch.Tensor,
    alpha: torch.Tensor,
    alpha_plus_beta: torch.Tensor,
) -> torch.Tensor:
    r"""Log-determinant of the radial map's Jacobian.

    .. math::
        \log|\det J| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r),
        \qquad h' = -\frac{1}{(\alpha + r)^2}.

    Both factors are evaluated as ratios of sums of non-negative terms,
    :math:`1 + \beta h = (\alpha + \beta + r)/(\alpha + r)` and
    :math:`1 + \beta h + \beta h' r = (\alpha(\alpha + \beta) + 2\alpha r + r^2)/(\alpha + r)^2`,
    so they keep full relative accuracy near the boundary :math:`\beta \to -\alpha`.

    Args:
        z: ``(..., D)``.
        z0: ``(..., D)``.
        alpha, alpha_plus_beta: ``(...)`` from :func:`radial_constrain`.

    Returns:
        ``(...)``.

    Example:
        >>> alpha, beta, apb = radial_constrain(torch.tensor(0.0), torch.tensor(2.0))
        >>> radial_log_abs_det_jacobian(torch.ones(1, 3), torch.zeros(3), alpha, apb).shape
        torch.Size([1])
    """
    _, r, s = _radial_terms(z, z0, alpha)
    return _radial_ldj(r, s, s.reciprocal(), alpha, alpha_plus_beta, z.shape[-1])


def _radial_ldj(
    r: torch.Tensor,
    s: torch.Tensor,
    h: torch.Tensor,
    alpha: torch.Tensor,
    alpha_plus_beta: torch.Tensor,
    d: int,
) -> torch.Tensor:
    """:func:`radial_log_abs_det_jacobian` from ``r = |z - z0|``, ``s = alpha + r`` and
    ``h = 1 / s``: ``(d - 1) log((a + b + r) h) + log((a (a + b) + r (a + s)) h^2)``."""
    log_radial = torch.log((alpha_plus_beta + r) * h)
    log_last = torch.log(torch.addcmul(alpha * alpha_plus_beta, r, alpha + s) * (h * h))
    return torch.add(log_last, log_radial, alpha=d - 1)


def radial_inverse(
    y: torch.Tensor,
    z0: torch.Tensor,
    alpha: torch.Tensor,
    alpha_plus_beta: torch.Tensor,
) -> torch.Tensor:
    r"""Closed-form inverse of :func:`radial_forward`.

    :math:`y - z_0 = (z - z_0)(1 + \beta/(\alpha + r))` with a non-negative factor, so with
    :math:`\rho = \|y - z_0\|`, :math:`r` is the non-negative root of

    .. math::
        r^2 + (\alpha + \beta - \rho)\, r - \alpha\rho = 0,

    taken as :math:`r = 2\alpha\rho / (B + \sqrt{B^2 + 4\alpha\rho})` when
    :math:`B = \alpha + \beta - \rho \ge 0` and :math:`r = (\sqrt{B^2 + 4\alpha\rho} - B)/2`
    otherwise (no cancellation either way); then
    :math:`z = z_0 + (y - z_0)\,(\alpha + r)/(\alpha + \beta + r)`.

    Args:
        y: ``(..., D)``.
        z0: ``(..., D)``.
        alpha, alpha_plus_beta: ``(...)`` from :func:`radial_constrain`.

    Returns:
        ``z`` of shape ``(..., D)``.

    Example:
        >>> alpha, beta, apb = radial_constrain(torch.tensor(0.5), torch.tensor(-1.0))
        >>> z0, z = torch.zeros(2), torch.tensor([0.3, -0.4])
        >>> y = radial_forward(z, z0, alpha, beta)
        >>> torch.allclose(radial_inverse(y, z0, alpha, apb), z, atol=1e-6)
        True
    """
    diff = y - z0
    rho = torch.linalg.vector_norm(diff, dim=-1)
    big_b = alpha_plus_beta - rho
    disc = torch.sqrt(big_b * big_b + 4 * alpha * rho)
    r = torch.where(
        big_b >= 0,
        2 * alpha * rho / (big_b + disc).clamp_min(torch.finfo(y.dtype).tiny),
        0.5 * (disc - big_b),
    )
    scale = (alpha + r) / (alpha_plus_beta + r)
    scale = torch.where(rho > 0, scale, torch.ones_like(scale))  # y == z0 maps back to z0
    return z0 + diff * scale.unsqueeze(-1)


class _RadialBase(VectorParamTransform):
    """Shared radial-transform logic; subclasses provide the raw parameters."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = 1  # both factors of the determinant are non-negative when beta >= -alpha
    input_dim: int

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - provided by every subclass

    # ``params``: the raw parameters when the caller already holds them (one read of a
    # module's attributes per call instead of three)
    def _param_batch_shape(self, params: tuple | None = None) -> torch.Size:
        z0, a, b = params or self._raw_params()
        return broadcast_shapes(z0.shape[:-1], a.shape, b.shape)

    def _check(self, name: str, x: torch.Tensor, params: tuple | None = None) -> None:
        params = params or self._raw_params()
        _check_vector_input(name, x, self.input_dim, params[0], self._param_batch_shape(params))

    def _constrained(
        self, params: tuple | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z0, alpha_prime, beta_prime = params or self._raw_params()
        alpha, beta, apb = radial_constrain(alpha_prime, beta_prime)
        return z0, alpha, beta, apb

    @property
    def alpha(self) -> torch.Tensor:
        r""":math:`\alpha = \operatorname{softplus}(\alpha') > 0`."""
        return self._constrained()[1]

    @property
    def beta(self) -> torch.Tensor:
        r""":math:`\beta = -\alpha + \operatorname{softplus}(\beta') \ge -\alpha`."""
        return self._constrained()[2]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        params = self._raw_params()
        self._check("x", x, params)
        z0, alpha, beta, apb = self._constrained(params)
        # the map and its log-det share r = |x - z0| and 1 / (alpha + r): both are computed
        # here and log_abs_det_jacobian(x, y) of this very pair recalls the log-det (same
        # helpers as radial_forward and radial_log_abs_det_jacobian: the same values)
        diff, r, s = _radial_terms(x, z0, alpha)
        h = s.reciprocal()
        y = _radial_map(x, diff, beta, h)
        self._remember_ldj(x, y, _radial_ldj(r, s, h, alpha, apb, x.shape[-1]))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        z0, alpha, _, apb = self._constrained()
        return radial_inverse(y, z0, alpha, apb)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(x, y)  # type: ignore[attr-defined]
        if ldj is not None:
            return ldj
        self._check("x", x)
        z0, alpha, _, apb = self._constrained()
        return radial_log_abs_det_jacobian(x, z0, alpha, apb)


class ConditionedRadial(CachedTransform, _RadialBase):
    r"""A radial transform with given (possibly batched) raw parameters.

    .. math::
        f(z) = z + \beta h(\alpha, r)(z - z_0), \quad r = \|z - z_0\|,\quad
        h = \frac{1}{\alpha + r},

    with :math:`\alpha = \operatorname{softplus}(\alpha')`,
    :math:`\beta = -\alpha + \operatorname{softplus}(\beta')`. This is what
    :meth:`ConditionalRadial.condition` returns. The inverse is in closed form
    (:func:`radial_inverse`).

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        x0: ``(..., D)`` reference point :math:`z_0`.
        alpha_prime: ``(...)`` raw :math:`\alpha'`.
        beta_prime: ``(...)`` raw :math:`\beta'`.
        cache_size: 0 or 1 (default): with 1, the inverse of the last output returns the
            input, while none of the parameters changed (validated cache of
            :class:`~pyro_lgm.transforms._cached.CachedTransform`).

    Example:
        >>> t = ConditionedRadial(torch.zeros(5, 3), torch.zeros(5), torch.ones(5))
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(t.inv(t(x).clone()), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        x0: torch.Tensor,
        alpha_prime: torch.Tensor,
        beta_prime: torch.Tensor,
        *,
        cache_size: int = 1,
        _checked: bool = False,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if not _checked:  # else: slices of a network's output, checked whole by condition()
            _check_param_tensor("x0", x0, 1)
            _check_param_tensor("alpha_prime", alpha_prime, 0)
            _check_param_tensor("beta_prime", beta_prime, 0)
            _check_params_finite(x0=x0, alpha_prime=alpha_prime, beta_prime=beta_prime)
            for name, p in (("alpha_prime", alpha_prime), ("beta_prime", beta_prime)):
                if p.dtype != x0.dtype or p.device != x0.device:
                    raise ValueError(f"{name}: expected the dtype and device of x0")
            try:
                broadcast_shapes(x0.shape[:-1], alpha_prime.shape, beta_prime.shape)
            except RuntimeError:
                raise ValueError(
                    f"alpha_prime: batch shapes {tuple(x0.shape[:-1])} (x0), "
                    f"{tuple(alpha_prime.shape)}, {tuple(beta_prime.shape)} (beta_prime) "
                    "do not broadcast"
                ) from None
        self.input_dim = x0.shape[-1]
        self._params = (x0, alpha_prime, beta_prime)

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._params

    def _cache_tensors(self) -> list[torch.Tensor]:
        """The parameter tensors (plain tensors, not module parameters): the validated
        cache serves a value only while none of them changed."""
        return list(self._params)

    def with_cache(self, cache_size: int = 1) -> ConditionedRadial:
        if cache_size == self._cache_size:
            return self
        return ConditionedRadial(*self._params, cache_size=cache_size)


class Radial(CachedTransform, _RadialBase, TransformModule):
    r"""A radial flow layer with learnable parameters (Rezende & Mohamed, 2015).

    .. math::
        f(z) = z + \beta h(\alpha, r)(z - z_0), \qquad r = \|z - z_0\|,\
        h(\alpha, r) = \frac{1}{\alpha + r},

    .. math::
        \log|\det J_f| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h'(\alpha, r)\, r),

    with :math:`\alpha = \operatorname{softplus}(\alpha') > 0` and
    :math:`\beta = -\alpha + \operatorname{softplus}(\beta') \ge -\alpha` (invertibility). The
    inverse is in closed form: :math:`\|y - z_0\|` is a quadratic in :math:`r`
    (:func:`radial_inverse`).

    Initialisation: ``x0 ~ N(0, I)``, :math:`\alpha = 1` and :math:`\beta \approx 0`
    (``softplus(beta')`` is ``1`` up to ``0.1``-scale noise), so a new layer is close to,
    but not exactly, the identity.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event.
        cache_size: 0 or 1 (default, as Pyro's ``Radial``): with 1, the inverse of the
            last output returns the input while no parameter changed (validated cache,
            :class:`~pyro_lgm.transforms._cached.CachedTransform`); with 0 every inverse
            is computed.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> t = Radial(3)
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(t.inv(t(x).clone()), x, atol=1e-5)
        True
    """

    def __init__(self, input_dim: int, *, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.x0 = nn.Parameter(torch.zeros(input_dim))
        self.alpha_prime = nn.Parameter(torch.zeros(()))
        self.beta_prime = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw the near-identity initialisation described in the class docstring."""
        self.x0.normal_()
        self.alpha_prime.fill_(_SOFTPLUS_INV_ONE)
        self.beta_prime.fill_(_SOFTPLUS_INV_ONE).add_(0.1 * torch.randn(()).item())

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self._parameters  # what self.x0 etc. return, without Module.__getattr__
        if "x0" in p and "alpha_prime" in p and "beta_prime" in p:
            return p["x0"], p["alpha_prime"], p["beta_prime"]  # type: ignore[return-value]
        return self.x0, self.alpha_prime, self.beta_prime  # e.g. under torch.nn.utils.parametrize

    def with_cache(self, cache_size: int = 1) -> Transform:
        """A :class:`ConditionedRadial` view sharing this module's parameters."""
        if cache_size == self._cache_size:
            return self
        return ConditionedRadial(self.x0, self.alpha_prime, self.beta_prime, cache_size=cache_size)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"


class ConditionalRadial(ConditionalTransformModule):
    r"""An amortized radial flow: :math:`(z_0, \alpha', \beta')` are a function of a context.

    .. math::
        (z_0, \alpha', \beta') = \mathrm{NN}(s), \qquad
        f(z; s) = z + \beta h(\alpha, r)(z - z_0).

    ``condition(context)`` returns a :class:`ConditionedRadial` whose parameters have the
    context's batch shape and broadcast against ``x``. The constructor sets the network's
    last-layer bias to a near-identity :class:`Radial` initialisation.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        net: a :class:`~pyro_lgm.nn.DenseNN` with ``in_dim = C`` (the context size),
            ``context_dim = 0`` and ``out_dim = D + 2``: the output is ``[x0, alpha', beta']``.
        input_dim: ``D``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> t = conditional_radial(3, context_dim=2)
        >>> ct = t.condition(torch.randn(5, 2))
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(ct.inv(ct(x).clone()), x, atol=1e-5)
        True
    """

    def __init__(self, net: DenseNN, input_dim: int) -> None:
        super().__init__()
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.nn = _check_net(net, getattr(net, "in_dim", 0), input_dim + 2, "x0, alpha', beta'")
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Set the last layer's bias to a near-identity :class:`Radial` initialisation."""
        bias = _last_linear(self.nn).bias
        ref = Radial(self.input_dim).to(bias)
        bias.copy_(torch.cat([ref.x0, ref.alpha_prime.reshape(1), ref.beta_prime.reshape(1)]))

    def condition(self, context: torch.Tensor) -> ConditionedRadial:
        _check_context(context, self.nn)
        out = self.nn(context)
        d = self.input_dim
        # the slices have the right shapes, dtype and device by construction: one
        # finiteness check of the whole output (the constructor's checks, which name the
        # parameter, run only when it fails)
        checked = not validation_enabled() or all_finite(out)
        x0, alpha_prime, beta_prime = out.split([d, 1, 1], dim=-1)  # one node in backward
        return ConditionedRadial(
            x0, alpha_prime.squeeze(-1), beta_prime.squeeze(-1), _checked=checked
        )

    @property
    def context_dim(self) -> int:
        """Size ``C`` of the context."""
        return self.nn.in_dim


def radial(input_dim: int, **kwargs: object) -> Radial:
    r"""Build a :class:`Radial` layer :math:`f(z) = z + \beta (z - z_0) / (\alpha + r)`.

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows, ICML 2015.

    Args:
        input_dim: size ``D`` of the event.
        kwargs: forwarded to :class:`Radial` (``cache_size``).

    Example:
        >>> radial(4).x0.shape
        torch.Size([4])
    """
    return Radial(input_dim, **kwargs)


def conditional_radial(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
) -> ConditionalRadial:
    r"""Build a :class:`ConditionalRadial` whose parameters are a ``DenseNN`` of the context.

    .. math::
        (z_0, \alpha', \beta') = \mathrm{NN}(s), \qquad
        f(z; s) = z + \beta (z - z_0) / (\alpha + \|z - z_0\|).

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows, ICML 2015.

    Args:
        input_dim: size ``D`` of the event.
        context_dim: size ``C`` of the context.
        hidden_dims: hidden widths of the network; default ``[10 D, 10 D]`` (Pyro's
            default). ``[]`` makes the parameters a linear read-out of the context,
            the amortization of Rezende & Mohamed (2015).

    Example:
        >>> t = conditional_radial(4, 2, hidden_dims=[16])
        >>> t.condition(torch.zeros(7, 2)).alpha.shape
        torch.Size([7])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    context_dim = _check_positive_int("context_dim", context_dim)
    if hidden_dims is None:
        hidden_dims = _default_hidden_dims(input_dim)
    net = DenseNN(context_dim, _check_hidden_dims(hidden_dims), input_dim + 2)
    return ConditionalRadial(net, input_dim)
