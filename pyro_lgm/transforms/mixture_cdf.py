r"""Flow++'s logistic-mixture CDF transform and the couplings built on it.

Flow++ (Ho et al., 2019, Sec. 3.2) replaces the affine map of a coupling layer by the
cumulative distribution function of a mixture of :math:`K` logistics, passed through the
logit (inverse sigmoid) and an affine map:

.. math::
    z = \sigma^{-1}\Big(\sum_{k=1}^K \pi_k\,
        \sigma\big(\tfrac{x - \mu_k}{s_k}\big)\Big) \cdot e^{a} + b ,

an increasing bijection of the real line onto itself whose slope can change sharply where a
narrow component sits, which is what an affine coupling cannot do. Its log-derivative is
closed-form,

.. math::
    \log \frac{dz}{dx} = \log f(x) - \log F(x) - \log\big(1 - F(x)\big) + a,

with :math:`F` the mixture CDF and :math:`f` its density, all three evaluated in log space
(``logsigmoid`` and ``logsumexp``, never ``log(sigmoid(.))``), so the tails at many scales
from every component stay finite. The inverse has no closed form: :func:`mixture_cdf_solve`
finds it by a bracketed Newton iteration (below).

Direction: every transform of the library maps base to data. The map above is written from
data :math:`x` to latent :math:`z` (the density direction, closed form), so it is the
*inverse* of these transforms; their call (sampling) runs the root finder. Flow++'s
variational dequantizer, which samples and never inverts, uses their ``.inv``.

References:
    J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
    Generative Models with Variational Dequantization and Architecture Design*. ICML 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform, constraints

from pyro_lgm.errors import check_finite
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import broadcast_shapes
from pyro_lgm.transforms._image import check_bound, check_int
from pyro_lgm.transforms.coupling import (
    MaskLike,
    _ConditionalCoupling,
    _Coupling,
    _mask_and_conditioner,
)
from pyro_lgm.transforms.image_coupling import (
    _build_net,
    _ConditionalImageCoupling,
    _ImageCoupling,
)

__all__ = [
    "ConditionalImageMixtureLogisticCoupling",
    "ConditionalMixtureLogisticCoupling",
    "ImageMixtureLogisticCoupling",
    "MixtureLogisticCDF",
    "MixtureLogisticCoupling",
    "conditional_image_mixture_logistic_coupling",
    "conditional_mixture_logistic_coupling",
    "image_mixture_logistic_coupling",
    "mixture_cdf_solve",
    "mixture_logistic_coupling",
]

#: Lower bound of a component's log-scale (Flow++ clamps at -7 as well): below it, a
#: float32 slope would exceed ~1e3 per unit of x and the root finder's tolerance with it.
LOG_SCALE_MIN = -7.0
#: Upper bound of a component's log-scale: a conditioner fed extreme inputs (a density
#: evaluated at the faces of the dequantizer's cube, logit 0 = -inf) would otherwise
#: overflow ``exp``; scales of e^7 ~ 1100 are far wider than any data the couplings see.
LOG_SCALE_MAX = 7.0


# --------------------------------------------------------------------------------------
# The math
# --------------------------------------------------------------------------------------
def _log_terms(
    x: torch.Tensor, log_pi: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log F(x)``, ``log(1 - F(x))`` and ``log f(x)`` of the mixture, elementwise.

    ``x`` is ``(...)``, the parameters ``(..., K)`` (``log_pi`` normalized).
    """
    u = (x.unsqueeze(-1) - loc) * torch.exp(-log_scale)
    up, down = F.logsigmoid(u), F.logsigmoid(-u)
    log_cdf = torch.logsumexp(log_pi + up, -1)
    log_sf = torch.logsumexp(log_pi + down, -1)
    log_pdf = torch.logsumexp(log_pi + up + down - log_scale, -1)
    return log_cdf, log_sf, log_pdf


def mixture_cdf_forward(
    x: torch.Tensor,
    log_pi: torch.Tensor,
    loc: torch.Tensor,
    log_scale: torch.Tensor,
    log_a: torch.Tensor,
    b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The data-to-latent map :math:`z = \mathrm{logit}(F(x)) e^a + b` and its elementwise
    log-derivative :math:`\log dz/dx`, both of ``x``'s broadcast shape."""
    log_cdf, log_sf, log_pdf = _log_terms(x, log_pi, loc, log_scale)
    z = (log_cdf - log_sf) * log_a.exp() + b
    return z, log_pdf - log_cdf - log_sf + log_a


def _tolerance(x: torch.Tensor, scale_min: torch.Tensor) -> torch.Tensor:
    """The solver's stopping width: ``4 eps (|x| + min_k s_k)``."""
    return 4 * torch.finfo(x.dtype).eps * (x.abs() + scale_min)


def mixture_cdf_solve(
    ell: torch.Tensor, log_pi: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    r"""Solve :math:`\mathrm{logit}(F(x)) = \ell` for ``x``, elementwise; differentiable.

    The root lies in the bracket :math:`[\min_k (\mu_k + s_k \ell), \max_k (\mu_k + s_k
    \ell)]`: at each end every component's CDF is on one side of :math:`\sigma(\ell)`, and
    :math:`F` is their convex combination. From the :math:`\pi`-weighted mean of those
    points, each step takes Newton's step on :math:`g(x) = \mathrm{logit} F(x) - \ell`
    (increasing, :math:`g' = f / (F (1 - F))`) when it stays inside the bracket and shrinks
    faster than half the step before last, and bisects the bracket otherwise (Numerical
    Recipes' ``rtsafe`` rule, vectorized over all elements); every evaluation of :math:`g`
    moves one end of the bracket. An element stops when its step or bracket is below
    ``4 eps (|x| + min_k s_k)`` (``eps`` of the dtype), so float32 and float64 each reach
    their own precision; the loop runs until every element has stopped. Its cap,
    ``3 log2(width / tolerance) + 16`` iterations, is the cost of pure bisection with a
    margin: reaching it raises ``RuntimeError`` rather than return an unconverged value.
    Targets :math:`\pm\infty` give :math:`\pm\infty` (the map's limits); NaN raises
    ``ValueError``.

    Gradients with respect to ``ell`` and the parameters are those of the implicit function
    (:math:`dx = -\partial g / g'`), attached by one Newton correction whose value is zero.

    Args:
        ell: ``(...)`` targets :math:`\ell` in logit space.
        log_pi: ``(..., K)`` normalized log-weights.
        loc: ``(..., K)`` component locations :math:`\mu_k`.
        log_scale: ``(..., K)`` component log-scales :math:`\log s_k`.

    Returns:
        ``x`` of the broadcast shape of ``ell`` and the parameters' batch shape.

    Example:
        >>> import torch
        >>> log_pi = torch.log(torch.tensor([0.3, 0.7], dtype=torch.float64))
        >>> loc = torch.tensor([-2.0, 1.0], dtype=torch.float64)
        >>> log_scale = torch.tensor([0.0, -3.0], dtype=torch.float64)
        >>> x = mixture_cdf_solve(torch.tensor(0.5, dtype=torch.float64), log_pi, loc, log_scale)
        >>> F = (log_pi.exp() * torch.sigmoid((x - loc) / log_scale.exp())).sum()
        >>> bool(torch.isclose(torch.logit(F), torch.tensor(0.5, dtype=torch.float64)))
        True
    """
    shape = broadcast_shapes(ell.shape, log_pi.shape[:-1], loc.shape[:-1], log_scale.shape[:-1])
    k = max(log_pi.shape[-1], loc.shape[-1], log_scale.shape[-1])
    with torch.no_grad():
        e = ell.expand(shape).reshape(-1)
        lp = log_pi.expand(*shape, k).reshape(-1, k)
        mu = loc.expand(*shape, k).reshape(-1, k)
        ls = log_scale.expand(*shape, k).reshape(-1, k)
        x0 = _solve_flat(e, lp, mu, ls).reshape(shape)
    # implicit-function gradient: x = x0 - g(x0) / g'(x0), the correction's value removed
    # (at the limits +-inf, where the map is flat in its parameters, there is none)
    finite = torch.isfinite(x0)
    x_safe = torch.where(finite, x0, torch.zeros_like(x0))
    ell_safe = torch.where(finite, ell, torch.zeros_like(ell))
    log_cdf, log_sf, log_pdf = _log_terms(x_safe, log_pi, loc, log_scale)
    g = log_cdf - log_sf - ell_safe
    slope = torch.exp(log_pdf - log_cdf - log_sf).detach()
    correction = torch.where(finite, -g / slope, torch.zeros_like(g))
    return x0 + (correction - correction.detach())


def _solve_flat(
    ell: torch.Tensor, log_pi: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """:func:`mixture_cdf_solve` on flat ``(N,)`` targets and ``(N, K)`` parameters."""
    if bool(torch.isnan(ell).any()):
        raise ValueError("x: the inverse of a mixture CDF got NaN")
    # the map sends -inf / +inf to themselves (its limits): solve the finite targets only
    infinite = torch.isinf(ell)
    if bool(infinite.any()):
        x = ell.clone()
        finite = ~infinite
        x[finite] = _solve_flat(ell[finite], log_pi[finite], loc[finite], log_scale[finite])
        return x
    scale = log_scale.exp()
    ends = loc + scale * ell.unsqueeze(-1)
    lo, hi = ends.amin(-1), ends.amax(-1)
    scale_min = scale.amin(-1)
    x = (log_pi.exp() * ends).sum(-1).clamp(lo, hi)
    if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
        raise ValueError("x: the inverse of a mixture CDF needs finite parameters")
    width = (hi - lo).amax() if lo.numel() else lo.new_zeros(())
    tol_min = _tolerance(lo.new_zeros(()), scale_min.amin() if lo.numel() else lo.new_ones(()))
    cap = 3 * max(0, math.ceil(math.log2(max(float(width) / float(tol_min), 1.0)))) + 16
    step_old = hi - lo  # step before last (rtsafe's dxold)
    step = hi - lo
    active = torch.arange(x.numel(), device=x.device)
    for _ in range(cap):
        if active.numel() == 0:
            return x
        xa, la, ha = x[active], lo[active], hi[active]
        log_cdf, log_sf, log_pdf = _log_terms(xa, log_pi[active], loc[active], log_scale[active])
        g = log_cdf - log_sf - ell[active]
        la = torch.where(g <= 0, xa, la)
        ha = torch.where(g >= 0, xa, ha)
        newton = g / torch.exp(log_pdf - log_cdf - log_sf)
        target = xa - newton
        bisect = ~((target > la) & (target < ha)) | (2 * newton.abs() > step_old[active].abs())
        mid = 0.5 * (la + ha)
        new_step = torch.where(bisect, xa - mid, newton)
        xn = torch.where(bisect, mid, target)
        tol = _tolerance(xn, scale_min[active])
        done = (new_step.abs() <= tol) | (ha - la <= tol) | (g == 0)
        x[active], lo[active], hi[active] = xn, la, ha
        step_old[active], step[active] = step[active], new_step
        active = active[~done]
    if active.numel():
        raise RuntimeError(
            f"mixture CDF inverse: {active.numel()} element(s) did not converge in {cap} "
            "iterations (please report this with the parameters)"
        )
    return x


def _unpack(
    raw: torch.Tensor, k: int, loc_offset: torch.Tensor, log_scale_bound: float
) -> tuple[torch.Tensor, ...]:
    """``(..., 3K + 2)`` raw parameters -> ``log_pi, loc, log_scale`` ``(..., K)`` and
    ``log_a, b`` ``(...)``.

    The log-scales are soft-clamped into ``(LOG_SCALE_MIN, LOG_SCALE_MAX)`` (about 0 for
    a raw 0), ``a`` is bounded by
    ``c tanh(. / c)``, and ``loc_offset`` (fixed, spread over ``[-1, 1]``) is added to the
    locations: with a zero-initialised conditioner all components would otherwise be equal
    and receive equal gradients forever.
    """
    logits, loc, log_scale = raw[..., :k], raw[..., k : 2 * k], raw[..., 2 * k : 3 * k]
    log_pi = torch.log_softmax(logits, -1)
    log_scale = LOG_SCALE_MIN + F.softplus(log_scale - LOG_SCALE_MIN)
    log_scale = LOG_SCALE_MAX - F.softplus(LOG_SCALE_MAX - log_scale)
    c = log_scale_bound
    log_a = c * torch.tanh(raw[..., 3 * k] / c)
    return log_pi, loc + loc_offset, log_scale, log_a, raw[..., 3 * k + 1]


def _loc_offsets(k: int) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, k) if k > 1 else torch.zeros(1)


# --------------------------------------------------------------------------------------
# The elementwise transform
# --------------------------------------------------------------------------------------
class MixtureLogisticCDF(CachedTransform, Transform):
    r"""Flow++'s elementwise logistic-mixture CDF bijection, for given parameters.

    .. math::
        z = \sigma^{-1}\Big(\sum_{k=1}^K \pi_k\,\sigma\big(\tfrac{x - \mu_k}{s_k}\big)\Big)
        \cdot e^{a} + b

    maps data :math:`x` to latent :math:`z` (closed form, the transform's inverse); the call
    maps :math:`z` to :math:`x` with :func:`mixture_cdf_solve`. ``log_abs_det_jacobian(z,
    x)`` is :math:`-\sum \log dz/dx` over the last ``event_dim`` dimensions, computed in log
    space (see :mod:`pyro_lgm.transforms.mixture_cdf`).

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019, eq. (3).

    Args:
        logits: ``(..., K)`` unnormalized mixture weights (:math:`\pi = \mathrm{softmax}`).
        loc: ``(..., K)`` locations :math:`\mu_k`.
        log_scale: ``(..., K)`` log-scales :math:`\log s_k`.
        log_a: ``(...)`` log of the output scale :math:`a` (default 0).
        b: ``(...)`` output shift (default 0).
        event_dim: dimensions summed by the log-det (0: one value per element).
        cache_size: 0 or 1 (the library's validated pair cache, see
            :mod:`pyro_lgm.transforms._cached`).

    Shapes:
        ``z``, ``x``: any shape broadcasting with the parameters' batch shape ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = MixtureLogisticCDF(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4) - 1)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(t(t.inv(x)), x, atol=1e-5), t.log_abs_det_jacobian(t.inv(x), x).shape
        (True, torch.Size([5, 3]))
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(
        self,
        logits: torch.Tensor,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        log_a: torch.Tensor | float = 0.0,
        b: torch.Tensor | float = 0.0,
        event_dim: int = 0,
        cache_size: int = 0,
    ) -> None:
        super().__init__(cache_size=cache_size)
        tensors = {"logits": logits, "loc": loc, "log_scale": log_scale}
        for name, p in tensors.items():
            if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.dim() < 1:
                raise ValueError(
                    f"{name}: expected a floating-point tensor of shape (..., K), got {p!r}"
                )
            check_finite(name, p)
        try:
            shape = broadcast_shapes(logits.shape, loc.shape, log_scale.shape)
        except RuntimeError:
            raise ValueError(
                f"logits, loc, log_scale: shapes {tuple(logits.shape)}, {tuple(loc.shape)}, "
                f"{tuple(log_scale.shape)} do not broadcast"
            ) from None
        self.event_dim_ = check_int("event_dim", event_dim, 0)
        self.domain = constraints.independent(constraints.real, event_dim)
        self.codomain = constraints.independent(constraints.real, event_dim)
        self.num_components = shape[-1]
        self.logits, self.loc, self.log_scale = logits, loc, log_scale
        self.log_a = torch.as_tensor(log_a, dtype=loc.dtype, device=loc.device)
        self.b = torch.as_tensor(b, dtype=loc.dtype, device=loc.device)
        check_finite("log_a", self.log_a)
        check_finite("b", self.b)

    def _cache_tensors(self) -> list[torch.Tensor]:
        return [self.logits, self.loc, self.log_scale, self.log_a, self.b]

    def _params(self) -> tuple[torch.Tensor, ...]:
        # normalized at every use: weights normalized once in float32 and then cast to
        # float64 (a copy for checking) sum to 1 +- 1e-7, and the log-det assumes exactly 1
        log_pi = torch.log_softmax(self.logits, -1)
        return log_pi, self.loc, self.log_scale, self.log_a, self.b

    def _check(self, name: str, v: object) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {v!r}")
        if v.dtype != self.loc.dtype or v.device != self.loc.device:
            raise ValueError(
                f"{name}: expected dtype {self.loc.dtype} on {self.loc.device} (the "
                f"parameters'), got {v.dtype} on {v.device}"
            )
        try:
            broadcast_shapes(v.shape, self.loc.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"{name}: shape {tuple(v.shape)} does not broadcast with the parameters' "
                f"batch shape {tuple(self.loc.shape[:-1])}"
            ) from None
        check_finite(name, v)
        return v

    def _sum(self, v: torch.Tensor) -> torch.Tensor:
        return v.sum(tuple(range(-self.event_dim_, 0))) if self.event_dim_ else v

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("z", z)
        log_pi, loc, log_scale, log_a, b = self._params()
        x = mixture_cdf_solve((z - b) * torch.exp(-log_a), log_pi, loc, log_scale)
        return x

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        z, ldj = mixture_cdf_forward(x, *self._params())
        self._remember_ldj(z, x, -self._sum(ldj))
        return z

    def log_abs_det_jacobian(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(z, x)
        if ldj is None:
            self._check("x", x)
            ldj = -self._sum(mixture_cdf_forward(x, *self._params())[1])
        return ldj

    def with_cache(self, cache_size: int = 1) -> MixtureLogisticCDF:
        if self._cache_size == cache_size:
            return self
        return MixtureLogisticCDF(
            self.logits, self.loc, self.log_scale, self.log_a, self.b, self.event_dim_, cache_size
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_components={self.num_components}, "
            f"batch_shape={tuple(self.loc.shape[:-1])}, event_dim={self.event_dim_})"
        )


# --------------------------------------------------------------------------------------
# Couplings on vectors
# --------------------------------------------------------------------------------------
def _check_components(num_components: object) -> int:
    return check_int("num_components", num_components, 1)


class MixtureLogisticCoupling(_Coupling):
    r"""Flow++'s logistic-mixture CDF coupling on vectors (Ho et al., 2019, Sec. 3.2).

    .. math::
        z_A = x_A, \qquad z_B = \sigma^{-1}\big(\mathrm{MixLogCDF}(x_B; \pi, \mu, s)\big)
        \cdot e^{a} + b, \qquad (\pi, \mu, s, a, b) = \mathrm{NN}(x_A),

    from data :math:`x` to latent :math:`z` (closed form: the layer's inverse, as for every
    transform of the library, whose call maps base to data by the bracketed Newton solver
    :func:`mixture_cdf_solve`). The conditioner outputs :math:`3K + 2` numbers per transformed
    feature (logits, locations, log-scales, :math:`a`, :math:`b`); log-scales are soft-clamped
    into :math:`(-7, 7)` (:data:`LOG_SCALE_MIN`, :data:`LOG_SCALE_MAX`), :math:`a` bounded
    by :math:`c \tanh(\cdot / c)`. With a
    zero-initialised conditioner the layer starts as the smooth monotone map of equal-weight,
    unit-scale components at fixed locations spread over :math:`[-1, 1]` (equal components
    would receive equal gradients and never separate).

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        mask: ``(D,)`` bool mask; ``True`` marks the conditioning features.
        conditioner: network ``(..., |A|) -> (..., (3K + 2) |B|)`` (for each transformed
            feature, its ``3K + 2`` numbers are contiguous).
        num_components: :math:`K`.
        log_scale_bound: :math:`c`, the bound of :math:`a`.
        cache_size: 0 or 1 (the validated pair cache).

    Shapes:
        ``x``, ``z``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = mixture_logistic_coupling(2, hidden_dims=[16], num_components=4)
        >>> x = torch.randn(5, 2)
        >>> torch.allclose(t(t.inv(x)), x, atol=1e-5), t.log_abs_det_jacobian(t.inv(x), x).shape
        (True, torch.Size([5]))
    """

    sign = +1

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        num_components: int = 8,
        log_scale_bound: float = 3.0,
        cache_size: int = 0,
    ) -> None:
        super().__init__(mask, conditioner, cache_size=cache_size)
        self.num_components = _check_components(num_components)
        self._params_per_feature = 3 * self.num_components + 2
        self.log_scale_bound = check_bound("log_scale_bound", log_scale_bound)
        self.register_buffer("loc_offset", _loc_offsets(self.num_components), persistent=False)

    def _params_of(self, x_a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self._conditioner_out(x_a)
        raw = out.reshape(*out.shape[:-1], self.idx_b.numel(), self._params_per_feature)
        offset = self.loc_offset.to(raw.dtype)
        return _unpack(raw, self.num_components, offset, self.log_scale_bound)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        self._check("y", x)
        params = self._params_of(x[..., self.idx_a])
        z_b, ldj = mixture_cdf_forward(x[..., self.idx_b], *params)
        z = self._merge(x, z_b)
        self._remember_ldj(z, x, -ldj.sum(-1))
        return z

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("x", z)
        log_pi, loc, log_scale, log_a, b = self._params_of(z[..., self.idx_a])
        ell = (z[..., self.idx_b] - b) * torch.exp(-log_a)
        x_b = mixture_cdf_solve(ell, log_pi, loc, log_scale)
        return self._merge(z, x_b)

    def log_abs_det_jacobian(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(z, x)
        if ldj is None:
            self._check("y", x)
            params = self._params_of(x[..., self.idx_a])
            ldj = -mixture_cdf_forward(x[..., self.idx_b], *params)[1].sum(-1)
        return ldj.expand(broadcast_shapes(ldj.shape, z.shape[:-1], x.shape[:-1]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_components={self.num_components}"


class ConditionalMixtureLogisticCoupling(_ConditionalCoupling):
    r"""A :class:`MixtureLogisticCoupling` whose conditioner also reads a context :math:`c`.

    .. math::
        z_A = x_A, \qquad z_B = \sigma^{-1}\big(\mathrm{MixLogCDF}(x_B; \pi, \mu, s)\big)
        \cdot e^{a} + b, \qquad (\pi, \mu, s, a, b) = \mathrm{NN}(x_A, c).

    ``condition(context)`` returns the :class:`MixtureLogisticCoupling` bound to ``context``
    ``(..., C)``, whose batch dimensions broadcast against those of ``x``.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        mask: ``(D,)`` bool mask, ``True`` marks the conditioning features.
        conditioner: network ``(x_A, context) -> (..., (3K + 2) |B|)``.
        context_dim: ``C``; read from ``conditioner.context_dim`` when omitted.
        num_components: :math:`K`.
        log_scale_bound: bound of :math:`a`.

    Example:
        >>> import torch
        >>> t = conditional_mixture_logistic_coupling(3, 2, [8], num_components=2)
        >>> t.condition(torch.randn(4, 2))(torch.randn(4, 3)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        context_dim: int | None = None,
        num_components: int = 8,
        log_scale_bound: float = 3.0,
    ) -> None:
        super().__init__(mask, conditioner, context_dim)
        self.num_components = _check_components(num_components)
        self.log_scale_bound = check_bound("log_scale_bound", log_scale_bound)

    def condition(self, context: torch.Tensor) -> MixtureLogisticCoupling:
        """Bind ``context`` ``(..., C)``; returns a :class:`MixtureLogisticCoupling`."""
        return MixtureLogisticCoupling(
            self.mask, self._bind(context), self.num_components, self.log_scale_bound
        )


# --------------------------------------------------------------------------------------
# Couplings on images
# --------------------------------------------------------------------------------------
class ImageMixtureLogisticCoupling(_ImageCoupling):
    r"""Flow++'s logistic-mixture CDF coupling on images ``(C, H, W)``.

    .. math::
        z_A = x_A, \qquad z_B = \sigma^{-1}\big(\mathrm{MixLogCDF}(x_B; \pi, \mu, s)\big)
        \cdot e^{a} + b, \qquad (\pi, \mu, s, a, b) = \mathrm{NN}(x_A),

    elementwise on the transformed part, with checkerboard or channel masks as in
    :mod:`pyro_lgm.transforms.image_coupling`; parameters as in
    :class:`MixtureLogisticCoupling`. Data to latent is closed form (the layer's inverse);
    the call (sampling) runs :func:`mixture_cdf_solve` on every transformed element.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(N, C_A, H, W) -> (N, (3K + 2) C_B, H, W)``; its output
            channels are ``3K + 2`` groups of ``C_B`` (logits, locations, log-scales, then
            :math:`a` and :math:`b`).
        invert: swap the two parts.
        num_components: :math:`K`.
        log_scale_bound: bound of :math:`a`.
        context, context_kind: a bound context and ``"vector"`` / ``"image"`` (set by
            :meth:`ConditionalImageMixtureLogisticCoupling.condition`).
        cache_size: 0 or 1 (the validated pair cache).

    Shapes:
        ``x``, ``z``: ``(..., C, H, W)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = image_mixture_logistic_coupling(2, "channel", num_components=3, hidden=8)
        >>> x = torch.randn(2, 2, 4, 4)
        >>> torch.allclose(t(t.inv(x)), x, atol=1e-5)
        True
    """

    sign = +1

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        invert: bool = False,
        num_components: int = 8,
        log_scale_bound: float = 3.0,
        context: torch.Tensor | None = None,
        context_kind: str | None = None,
        cache_size: int = 0,
    ) -> None:
        self.num_components = _check_components(num_components)
        super().__init__(channels, mask, conditioner, invert, context, context_kind, cache_size)
        self.log_scale_bound = check_bound("log_scale_bound", log_scale_bound)
        self.register_buffer("loc_offset", _loc_offsets(self.num_components), persistent=False)

    @property
    def _params(self) -> int:  # type: ignore[override]
        return 3 * self.num_components + 2

    def _mixture_params(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], object]:
        out, m = self._params_of(x)
        raw = out.reshape(*out.shape[:-3], self._params, self.out_part, *out.shape[-2:])
        raw = raw.movedim(-4, -1)  # (..., C_B, H, W, 3K + 2)
        offset = self.loc_offset.to(raw.dtype)
        return _unpack(raw, self.num_components, offset, self.log_scale_bound), m

    def _ldj_sum(self, ldj: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        if m is not None:
            ldj = ldj * (1 - m)  # the conditioning squares are copied
        return ldj.sum((-3, -2, -1))

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        self._check("y", x)
        params, m = self._mixture_params(x)
        z_b, ldj = mixture_cdf_forward(self._part_b(x, m), *params)
        z = self._merge(x, z_b, m)
        self._remember_ldj(z, x, -self._ldj_sum(ldj, m))
        return z

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("x", z)
        (log_pi, loc, log_scale, log_a, b), m = self._mixture_params(z)
        ell = (self._part_b(z, m) - b) * torch.exp(-log_a)
        if m is None:
            return self._merge(z, mixture_cdf_solve(ell, log_pi, loc, log_scale), m)
        # checkerboard: solve only on the transformed squares (half of the elements); the
        # conditioning squares keep z
        k = log_pi.shape[-1]
        shape = broadcast_shapes(ell.shape, log_pi.shape[:-1])
        ell = ell.expand(shape)
        sel = (m == 0).expand(shape)
        params = [p.expand(*shape, k)[sel] for p in (log_pi, loc, log_scale)]
        x_b = ell.index_put((sel,), mixture_cdf_solve(ell[sel], *params))
        return self._merge(z, x_b, m)

    def log_abs_det_jacobian(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(z, x)
        if ldj is None:
            self._check("y", x)
            params, m = self._mixture_params(x)
            ldj = -self._ldj_sum(mixture_cdf_forward(self._part_b(x, m), *params)[1], m)
        return ldj.expand(broadcast_shapes(ldj.shape, z.shape[:-3], x.shape[:-3]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_components={self.num_components}"


class ConditionalImageMixtureLogisticCoupling(_ConditionalImageCoupling):
    r"""An :class:`ImageMixtureLogisticCoupling` whose conditioner also reads a context.

    .. math::
        z_A = x_A, \qquad z_B = \sigma^{-1}\big(\mathrm{MixLogCDF}(x_B; \pi, \mu, s)\big)
        \cdot e^{a} + b, \qquad (\pi, \mu, s, a, b) = \mathrm{NN}(x_A, c).

    A context vector ``(..., D)`` is broadcast to a map, a context image ``(..., C_c, H, W)``
    is used as it is (Flow++'s dequantizer conditions on features of the data image this
    way). ``condition(context)`` returns the bound :class:`ImageMixtureLogisticCoupling`.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        channels: ``C``.
        mask: ``"checkerboard"`` or ``"channel"``.
        conditioner: network ``(x_A, context_map) -> (N, (3K + 2) C_B, H, W)``.
        context_shape: ``D`` or ``(C_c, H, W)``.
        num_components: :math:`K`.
        invert: swap the two parts.
        log_scale_bound: bound of :math:`a`.
        cache_size: 0 or 1, passed to the bound layers.

    Example:
        >>> import torch
        >>> t = conditional_image_mixture_logistic_coupling(1, (2, 4, 4), hidden=8)
        >>> t.condition(torch.randn(2, 4, 4))(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
    """

    _bound_cls = ImageMixtureLogisticCoupling

    def __init__(
        self,
        channels: int,
        mask: str,
        conditioner: nn.Module,
        context_shape: int | Sequence[int],
        num_components: int = 8,
        invert: bool = False,
        log_scale_bound: float = 3.0,
        cache_size: int = 0,
    ) -> None:
        super().__init__(
            channels,
            mask,
            conditioner,
            context_shape,
            invert,
            num_components=num_components,
            log_scale_bound=log_scale_bound,
            cache_size=cache_size,
        )

    def condition(self, context: torch.Tensor) -> ImageMixtureLogisticCoupling:
        return super().condition(context)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def mixture_logistic_coupling(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    num_components: int = 8,
    log_scale_bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> MixtureLogisticCoupling:
    """A :class:`MixtureLogisticCoupling` with a zero-initialised :class:`~pyro_lgm.nn.DenseNN`.

    Example:
        >>> mixture_logistic_coupling(4, [8], mask="alternating").num_components
        8
    """
    k = _check_components(num_components)
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 3 * k + 2, 0, activation
    )
    return MixtureLogisticCoupling(m, net, k, log_scale_bound)


def conditional_mixture_logistic_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    num_components: int = 8,
    log_scale_bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> ConditionalMixtureLogisticCoupling:
    """A :class:`ConditionalMixtureLogisticCoupling` with a zero-initialised conditioner.

    Example:
        >>> conditional_mixture_logistic_coupling(3, 2, [8]).context_dim
        2
    """
    k = _check_components(num_components)
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 3 * k + 2, context_dim, activation
    )
    return ConditionalMixtureLogisticCoupling(m, net, context_dim, k, log_scale_bound)


def image_mixture_logistic_coupling(
    channels: int,
    mask: str = "checkerboard",
    invert: bool = False,
    num_components: int = 8,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
    log_scale_bound: float = 3.0,
) -> ImageMixtureLogisticCoupling:
    """An :class:`ImageMixtureLogisticCoupling` with a zero-initialised conditioner
    (``net``: ``"glow"``, ``"resnet"``).

    Example:
        >>> image_mixture_logistic_coupling(2, "channel", num_components=4, hidden=8).out_part
        1
    """
    k = _check_components(num_components)
    conditioner = _build_net(channels, mask, invert, 3 * k + 2, net, hidden, blocks)
    return ImageMixtureLogisticCoupling(channels, mask, conditioner, invert, k, log_scale_bound)


def conditional_image_mixture_logistic_coupling(
    channels: int,
    context_shape: int | Sequence[int],
    mask: str = "checkerboard",
    invert: bool = False,
    num_components: int = 8,
    net: str = "glow",
    hidden: int = 64,
    blocks: int = 2,
    log_scale_bound: float = 3.0,
    cache_size: int = 0,
) -> ConditionalImageMixtureLogisticCoupling:
    """A :class:`ConditionalImageMixtureLogisticCoupling` with a zero-initialised conditioner.

    Example:
        >>> conditional_image_mixture_logistic_coupling(2, 5, "channel", hidden=8).context_kind
        'vector'
    """
    k = _check_components(num_components)
    conditioner = _build_net(channels, mask, invert, 3 * k + 2, net, hidden, blocks, context_shape)
    return ConditionalImageMixtureLogisticCoupling(
        channels, mask, conditioner, context_shape, k, invert, log_scale_bound, cache_size
    )
