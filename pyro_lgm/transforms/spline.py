r"""Monotone rational-quadratic splines (Durkan et al., 2019) and the coupling layers built
on them: Neural Spline Flows for vectors.

A spline with :math:`K` bins maps :math:`[-B, B]` onto itself through :math:`K + 1`
increasing knots :math:`(x^{(k)}, y^{(k)})` and positive derivatives :math:`\delta^{(k)}`
at the knots. Inside bin :math:`k`, with :math:`s_k = (y^{(k+1)} - y^{(k)}) /
(x^{(k+1)} - x^{(k)})` and :math:`\xi = (x - x^{(k)}) / (x^{(k+1)} - x^{(k)}) \in [0, 1]`,

.. math::
    g(x) = y^{(k)} + \frac{(y^{(k+1)} - y^{(k)})\,[s_k \xi^2 + \delta^{(k)} \xi (1 - \xi)]}
    {s_k + [\delta^{(k+1)} + \delta^{(k)} - 2 s_k]\, \xi (1 - \xi)},

a ratio of two quadratics, strictly increasing for positive :math:`\delta`, with the
closed-form derivative

.. math::
    \frac{d g}{d x} = \frac{s_k^2\, [\delta^{(k+1)} \xi^2 + 2 s_k \xi (1 - \xi)
    + \delta^{(k)} (1 - \xi)^2]}{[s_k + (\delta^{(k+1)} + \delta^{(k)} - 2 s_k)
    \xi (1 - \xi)]^2}

and an inverse that is the root in :math:`[0, 1]` of a quadratic in :math:`\xi`. Outside
:math:`[-B, B]` the spline is the identity; the boundary derivatives
:math:`\delta^{(0)} = \delta^{(K)} = 1` make the joins continuously differentiable.

The bins and derivatives come from unconstrained numbers (a network's outputs):

.. math::
    w = w_{\min} + (1 - K w_{\min})\, \mathrm{softmax}(\tilde w), \qquad
    h = h_{\min} + (1 - K h_{\min})\, \mathrm{softmax}(\tilde h), \qquad
    \delta = \delta_{\min} + \mathrm{softplus}(\tilde\delta + c), \quad
    c = \log(e^{1 - \delta_{\min}} - 1),

bin widths and heights :math:`2 B w`, :math:`2 B h`. The shift :math:`c` makes
:math:`\tilde w = \tilde h = \tilde\delta = 0` the identity (uniform bins, unit
derivatives), which is where a zero-initialised conditioner starts a flow.
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
from pyro_lgm.transforms.coupling import (
    MaskLike,
    _check_bound,
    _ConditionalCoupling,
    _Coupling,
    _mask_and_conditioner,
)

__all__ = [
    "ConditionalSplineCoupling",
    "RationalQuadraticSpline",
    "SplineCoupling",
    "conditional_spline_coupling",
    "spline_coupling",
]

#: Defaults of the smallest bin width and height (fractions of :math:`2B`) and derivative.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


# --------------------------------------------------------------------------------------
# The spline itself, on normalised parameters
# --------------------------------------------------------------------------------------
def _check_bins(bins: object) -> int:
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins: expected an integer >= 2, got {bins!r}")
    return bins


def _check_minimums(
    bins: int, min_bin_width: float, min_bin_height: float, min_derivative: float
) -> None:
    for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if value * bins >= 1:
            raise ValueError(f"{name}: expected {name} * bins < 1 (bins={bins}), got {value!r}")
    if (
        not isinstance(min_derivative, int | float)
        or isinstance(min_derivative, bool)
        or not 0 < min_derivative < 1
    ):
        raise ValueError(f"min_derivative: expected a number in (0, 1), got {min_derivative!r}")


def _knots(raw: torch.Tensor, bound: float, minimum: float) -> torch.Tensor:
    """``K + 1`` increasing knots from ``-bound`` to ``bound`` out of ``K`` raw bin sizes."""
    k = raw.shape[-1]
    frac = minimum + (1.0 - minimum * k) * torch.softmax(raw, dim=-1)
    inner = (2.0 * bound) * torch.cumsum(frac[..., :-1], dim=-1) - bound
    return F.pad(F.pad(inner, (1, 0), value=-bound), (0, 1), value=bound)


def _knot_derivatives(raw: torch.Tensor, minimum: float) -> torch.Tensor:
    """Positive interior derivatives (1 at ``raw == 0``), padded with the boundary 1's."""
    shift = math.log(math.expm1(1.0 - minimum))
    inner = minimum + F.softplus(raw + shift)
    return F.pad(inner, (1, 1), value=1.0)


def _normalise(
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        _knots(widths, bound, min_bin_width),
        _knots(heights, bound, min_bin_height),
        _knot_derivatives(derivatives, min_derivative),
    )


def _rqs(
    v: torch.Tensor,
    xk: torch.Tensor,
    yk: torch.Tensor,
    dk: torch.Tensor,
    bound: float,
    inverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The spline (or its inverse) at ``v`` and the log-derivative of the *forward* map.

    ``xk``, ``yk``, ``dk``: ``(..., K + 1)`` knots and knot derivatives whose batch shape
    broadcasts against ``v.shape``. Returns two tensors of the broadcast shape.
    """
    inside = (v >= -bound) & (v <= bound)
    vc = v.clamp(-bound, bound)  # outside points take the finite in-range branch, then
    # the identity through ``where`` (so no NaN reaches the gradient)
    search = yk if inverse else xk
    idx = (vc.unsqueeze(-1) >= search[..., 1:-1]).sum(dim=-1, keepdim=True)
    batch = broadcast_shapes(v.shape, xk.shape[:-1])
    n = xk.shape[-1]
    if tuple(idx.shape[:-1]) != tuple(batch):
        idx = idx.expand(*batch, 1)
    idx1 = idx + 1
    xk, yk, dk = (t.expand(*batch, n) for t in (xk, yk, dk))
    x0 = xk.gather(-1, idx).squeeze(-1)
    x1 = xk.gather(-1, idx1).squeeze(-1)
    y0 = yk.gather(-1, idx).squeeze(-1)
    y1 = yk.gather(-1, idx1).squeeze(-1)
    d0 = dk.gather(-1, idx).squeeze(-1)
    d1 = dk.gather(-1, idx1).squeeze(-1)
    w = x1 - x0
    h = y1 - y0
    s = h / w
    bend = d0 + d1 - 2.0 * s
    if inverse:
        dy = vc - y0
        a = h * (s - d0) + dy * bend
        b = h * d0 - dy * bend
        c = -s * dy
        root = (b * b - 4.0 * a * c).clamp_min(0.0).sqrt()
        # The root in [0, 1], in whichever of its two forms adds terms of one sign: the
        # paper's 2c / (-b - root) for b >= 0, and (root - b) / 2a for b < 0 (where -b and
        # -root nearly cancel; there a > s > 0). The unused branch gets a safe denominator.
        positive = b >= 0
        ones = torch.ones((), dtype=b.dtype, device=b.device)
        xi = torch.where(
            positive,
            (2.0 * c) / torch.where(positive, -b - root, -ones),
            (root - b) / torch.where(positive, ones, 2.0 * a),
        ).clamp(0.0, 1.0)
        out = x0 + xi * w
    else:
        xi = (vc - x0) / w
    t = xi * (1.0 - xi)
    denom = s + bend * t
    if not inverse:
        out = y0 + h * (s * xi * xi + d0 * t) / denom
    numer = d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) * (1.0 - xi)
    ladj = 2.0 * torch.log(s) + torch.log(numer) - 2.0 * torch.log(denom)
    out = torch.where(inside, out, v)
    ladj = torch.where(inside, ladj, torch.zeros((), dtype=ladj.dtype, device=ladj.device))
    return out, ladj


def _check_param(name: str, p: object, size: int | None, ref: torch.Tensor | None) -> None:
    if not isinstance(p, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape (..., K), got {type(p).__name__}")
    if p.dim() < 1:
        raise ValueError(f"{name}: expected at least one dimension (..., K), got shape ()")
    if size is not None and p.shape[-1] != size:
        raise ValueError(f"{name}: expected last dimension {size}, got shape {tuple(p.shape)}")
    if not p.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {p.dtype}")
    if ref is not None and (p.dtype != ref.dtype or p.device != ref.device):
        raise ValueError(
            f"{name}: expected dtype {ref.dtype} on {ref.device} (the widths'), "
            f"got {p.dtype} on {p.device}"
        )
    check_finite(name, p)


class RationalQuadraticSpline(CachedTransform, Transform):
    r"""An elementwise monotone rational-quadratic spline with identity tails.

    .. math::
        y = g(x) \text{ on } [-B, B], \qquad y = x \text{ outside}, \qquad
        \log|\det J| = \sum_{\text{event}} \log g'(x),

    with :math:`g` the rational-quadratic spline of :mod:`pyro_lgm.transforms.spline`
    (Durkan et al., 2019, eqs. 4-6), whose :math:`K + 1` knots and knot derivatives come from
    the unconstrained ``widths``, ``heights`` and ``derivatives`` through

    .. math::
        w = w_{\min} + (1 - K w_{\min}) \mathrm{softmax}(\tilde w), \quad
        \delta = \delta_{\min} + \mathrm{softplus}(\tilde\delta + c), \quad
        \delta^{(0)} = \delta^{(K)} = 1,

    (heights as widths), :math:`c = \log(e^{1 - \delta_{\min}} - 1)`, so that all-zero
    parameters give the identity. The inverse solves the quadratic
    :math:`a \xi^2 + b \xi + c = 0` of the paper (eqs. 6-8) in the stable form
    :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows*.
        NeurIPS 2019.

    Args:
        widths: ``(..., K)`` unnormalised bin widths, ``K >= 2``.
        heights: ``(..., K)`` unnormalised bin heights.
        derivatives: ``(..., K - 1)`` unnormalised derivatives at the interior knots.
        bound: :math:`B > 0`; the spline acts on :math:`[-B, B]`.
        event_dim: ``0`` (elementwise log-determinant) or more (summed over the last
            ``event_dim`` dimensions).
        min_bin_width, min_bin_height: smallest bin size as a fraction of :math:`2B`
            (``K * min < 1``).
        min_derivative: smallest interior derivative, in ``(0, 1)``.
        cache_size: 0 or 1 (validated pair cache, :mod:`pyro_lgm.transforms._cached`).

    Shapes:
        The parameters' batch shape ``widths.shape[:-1]`` broadcasts against ``x.shape``;
        ``y`` has the broadcast shape; ``log_abs_det_jacobian`` drops ``event_dim`` dims.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = RationalQuadraticSpline(torch.randn(8), torch.randn(8), torch.randn(7))
        >>> x = torch.tensor([-4.0, -1.0, 0.5, 2.9, 5.0])
        >>> y = t(x)
        >>> y[0].item(), y[-1].item()  # the identity outside [-3, 3]
        (-4.0, 5.0)
        >>> torch.allclose(t.inv(y), x, atol=1e-5)
        True
        >>> zero = RationalQuadraticSpline(torch.zeros(4), torch.zeros(4), torch.zeros(3))
        >>> torch.allclose(zero(x), x, atol=1e-6)  # zero parameters: the identity
        True
    """

    bijective = True
    sign = +1

    def __init__(
        self,
        widths: torch.Tensor,
        heights: torch.Tensor,
        derivatives: torch.Tensor,
        bound: float = 3.0,
        event_dim: int = 0,
        min_bin_width: float = MIN_BIN_WIDTH,
        min_bin_height: float = MIN_BIN_HEIGHT,
        min_derivative: float = MIN_DERIVATIVE,
        cache_size: int = 0,
    ) -> None:
        _check_param("widths", widths, None, None)
        bins = widths.shape[-1]
        if bins < 2:
            raise ValueError(
                f"widths: expected at least 2 bins in the last dimension, got shape "
                f"{tuple(widths.shape)}"
            )
        _check_param("heights", heights, bins, widths)
        _check_param("derivatives", derivatives, bins - 1, widths)
        for name, p in (("heights", heights), ("derivatives", derivatives)):
            try:
                broadcast_shapes(widths.shape[:-1], p.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"{name}: batch shape {tuple(p.shape[:-1])} does not broadcast with the "
                    f"widths' batch shape {tuple(widths.shape[:-1])}"
                ) from None
        bound = _check_bound("bound", bound)
        if not isinstance(event_dim, int) or isinstance(event_dim, bool) or event_dim < 0:
            raise ValueError(f"event_dim: expected a non-negative integer, got {event_dim!r}")
        _check_minimums(bins, min_bin_width, min_bin_height, min_derivative)
        super().__init__(cache_size=cache_size)
        self.widths, self.heights, self.derivatives = widths, heights, derivatives
        self.bins = bins
        self.bound = bound
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self.domain = constraints.independent(constraints.real, event_dim)
        self.codomain = constraints.independent(constraints.real, event_dim)
        self.x_knots, self.y_knots, self.knot_derivatives = _normalise(
            widths,
            heights,
            derivatives,
            bound,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
        )
        self._param_batch = broadcast_shapes(
            widths.shape[:-1], heights.shape[:-1], derivatives.shape[:-1]
        )

    def _cache_tensors(self) -> list[torch.Tensor]:
        return [self.widths, self.heights, self.derivatives]

    def with_cache(self, cache_size: int = 1) -> RationalQuadraticSpline:
        if self._cache_size == cache_size:
            return self
        return RationalQuadraticSpline(
            self.widths,
            self.heights,
            self.derivatives,
            self.bound,
            self.event_dim,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
            cache_size=cache_size,
        )

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return broadcast_shapes(tuple(shape), tuple(self._param_batch))

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return self.forward_shape(shape)

    def _check_value(self, name: str, v: object) -> None:
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(v).__name__}")
        if v.dim() < self.event_dim:
            raise ValueError(
                f"{name}: expected at least {self.event_dim} dimensions "
                f"(event_dim={self.event_dim}), got shape {tuple(v.shape)}"
            )
        if v.dtype != self.widths.dtype or v.device != self.widths.device:
            raise ValueError(
                f"{name}: expected dtype {self.widths.dtype} on {self.widths.device} (the "
                f"parameters'), got {v.dtype} on {v.device}"
            )
        try:
            broadcast_shapes(tuple(v.shape), tuple(self._param_batch))
        except RuntimeError:
            raise ValueError(
                f"{name}: shape {tuple(v.shape)} does not broadcast with the parameters' "
                f"batch shape {tuple(self._param_batch)}"
            ) from None
        check_finite(name, v)

    def _sum_event(self, ladj: torch.Tensor) -> torch.Tensor:
        if self.event_dim == 0:
            return ladj
        return ladj.sum(tuple(range(-self.event_dim, 0)))

    def _apply(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return _rqs(v, self.x_knots, self.y_knots, self.knot_derivatives, self.bound, inverse)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check_value("x", x)
        y, ladj = self._apply(x, inverse=False)
        self._remember_ldj(x, y, self._sum_event(ladj))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check_value("y", y)
        x, ladj = self._apply(y, inverse=True)
        self._remember_ldj(x, y, self._sum_event(ladj))
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ladj = self._recall_ldj(x, y)
        if ladj is None:
            self._check_value("x", x)
            ladj = self._sum_event(self._apply(x, inverse=False)[1])
        return ladj

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(bins={self.bins}, bound={self.bound}, "
            f"event_dim={self.event_dim})"
        )


# --------------------------------------------------------------------------------------
# Coupling layers
# --------------------------------------------------------------------------------------
class SplineCoupling(_Coupling):
    r"""A rational-quadratic spline coupling layer (Durkan et al., 2019), for vectors.

    .. math::
        y_A = x_A, \qquad y_{B,i} = g_{\theta_i(x_A)}(x_{B,i}), \qquad
        \log|\det J| = \sum_{i \in B} \log g'_{\theta_i(x_A)}(x_{B,i}),

    where each :math:`g_{\theta}` is a monotone rational-quadratic spline on
    :math:`[-B, B]` with ``bins`` bins and identity tails (see
    :class:`RationalQuadraticSpline` for the parametrization), and the conditioner maps
    :math:`x_A` to the :math:`3K - 1` unconstrained numbers :math:`\theta_i = [\tilde w_i,
    \tilde h_i, \tilde\delta_i]` of every transformed feature. Both directions are closed
    form: ``t(x)`` evaluates the splines, ``t.inv(y)`` their inverses (one root of a
    quadratic per feature). A zero conditioner output is the identity.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows*.
        NeurIPS 2019.

    Args:
        mask: ``(D,)`` bool tensor or sequence of bools; ``True`` marks the conditioning
            features. Neither all ``True`` nor all ``False``.
        conditioner: network ``(..., |A|) -> (..., |B| (3K - 1))``; the numbers of each
            transformed feature are contiguous: ``K`` widths, ``K`` heights, ``K - 1``
            derivatives.
        bins: ``K >= 2``.
        bound: :math:`B > 0`.
        min_bin_width, min_bin_height, min_derivative: see :class:`RationalQuadraticSpline`.
        cache_size: 0 or 1; with 1, ``t.inv(y)`` of the ``y`` that ``t(x)`` just returned is
            ``x`` without recomputation (validated, see :mod:`pyro_lgm.transforms._cached`).

    Shapes:
        ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = spline_coupling(4, hidden_dims=[8], bins=4)
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(t(x), x, atol=1e-6)  # the conditioner starts at zero: identity
        True
        >>> with torch.no_grad():
        ...     _ = t.conditioner.layers[-1].bias.normal_()
        >>> y = t(x)
        >>> torch.allclose(t.inv(y), x, atol=1e-5), t.log_abs_det_jacobian(x, y).shape
        (True, torch.Size([3]))
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        bins: int = 8,
        bound: float = 3.0,
        min_bin_width: float = MIN_BIN_WIDTH,
        min_bin_height: float = MIN_BIN_HEIGHT,
        min_derivative: float = MIN_DERIVATIVE,
        cache_size: int = 0,
    ) -> None:
        bins = _check_bins(bins)
        bound = _check_bound("bound", bound)
        _check_minimums(bins, min_bin_width, min_bin_height, min_derivative)
        super().__init__(mask, conditioner, cache_size=cache_size)
        self.bins = bins
        self.bound = bound
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self._params_per_feature = 3 * bins - 1

    def _splines(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self._conditioner_out(x_a)
        out = out.reshape(*out.shape[:-1], self.idx_b.numel(), self._params_per_feature)
        k = self.bins
        return _normalise(
            out[..., :k],
            out[..., k : 2 * k],
            out[..., 2 * k :],
            self.bound,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
        )

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        xk, yk, dk = self._splines(x[..., self.idx_a])
        y_b, ladj = _rqs(x[..., self.idx_b], xk, yk, dk, self.bound, inverse=False)
        y = self._merge(x, y_b)
        self._remember_ldj(x, y, ladj.sum(-1))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        xk, yk, dk = self._splines(y[..., self.idx_a])
        x_b, ladj = _rqs(y[..., self.idx_b], xk, yk, dk, self.bound, inverse=True)
        x = self._merge(y, x_b)
        self._remember_ldj(x, y, ladj.sum(-1))
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ladj = self._recall_ldj(x, y)  # the pair (x, y) just computed, nothing changed since
        if ladj is None:
            self._check("x", x)
            xk, yk, dk = self._splines(x[..., self.idx_a])
            ladj = _rqs(x[..., self.idx_b], xk, yk, dk, self.bound, inverse=False)[1].sum(-1)
        return ladj.expand(broadcast_shapes(ladj.shape, x.shape[:-1], y.shape[:-1]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bins={self.bins}, bound={self.bound}"


class ConditionalSplineCoupling(_ConditionalCoupling):
    r"""A :class:`SplineCoupling` whose conditioner also reads a context :math:`c`.

    .. math::
        y_A = x_A, \qquad y_{B,i} = g_{\theta_i(x_A, c)}(x_{B,i}), \qquad
        \log|\det J| = \sum_{i \in B} \log g'_{\theta_i(x_A, c)}(x_{B,i}).

    ``condition(context)`` returns a :class:`SplineCoupling` bound to ``context``; the
    context's batch dimensions broadcast against those of ``x``.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows*.
        NeurIPS 2019.

    Args:
        mask: ``(D,)`` bool mask, ``True`` marks the conditioning features.
        conditioner: network ``(x_A: (..., |A|), context: (..., C)) -> (..., |B| (3K - 1))``.
        context_dim: ``C``; read from ``conditioner.context_dim`` when omitted.
        bins: ``K >= 2``.
        bound: :math:`B > 0`.
        min_bin_width, min_bin_height, min_derivative: see :class:`RationalQuadraticSpline`.

    Example:
        >>> import torch
        >>> t = conditional_spline_coupling(4, context_dim=2, hidden_dims=[8])
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(t.condition(torch.randn(2))(x), x, atol=1e-6)  # identity at init
        True
        >>> t.condition(torch.randn(5, 1, 2))(x).shape
        torch.Size([5, 3, 4])
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        context_dim: int | None = None,
        bins: int = 8,
        bound: float = 3.0,
        min_bin_width: float = MIN_BIN_WIDTH,
        min_bin_height: float = MIN_BIN_HEIGHT,
        min_derivative: float = MIN_DERIVATIVE,
    ) -> None:
        bins = _check_bins(bins)
        bound = _check_bound("bound", bound)
        _check_minimums(bins, min_bin_width, min_bin_height, min_derivative)
        super().__init__(mask, conditioner, context_dim)
        self.bins = bins
        self.bound = bound
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)

    def condition(self, context: torch.Tensor) -> SplineCoupling:
        """Bind ``context`` ``(..., C)`` and return the resulting :class:`SplineCoupling`."""
        return SplineCoupling(
            self.mask,
            self._bind(context),
            self.bins,
            self.bound,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bins={self.bins}, bound={self.bound}"


# --------------------------------------------------------------------------------------
# Helpers in Pyro's style
# --------------------------------------------------------------------------------------
def spline_coupling(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    bins: int = 8,
    bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> SplineCoupling:
    """A :class:`SplineCoupling` with a zero-initialised :class:`~pyro_lgm.nn.DenseNN`
    (the identity at initialisation: uniform bins, unit derivatives).

    Args:
        input_dim: ``D >= 2``.
        hidden_dims: hidden sizes of the conditioner (default two layers of
            ``max(64, 4 D)``).
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        bins: ``K >= 2``, bins of each spline.
        bound: :math:`B > 0`; the splines act on :math:`[-B, B]`, identity outside.
        activation: non-linearity of the conditioner.

    Example:
        >>> t = spline_coupling(3, [8], bins=5)
        >>> t.mask.tolist(), t.conditioner.out_dim  # 2 features x (3 * 5 - 1) numbers
        ([True, False, False], 28)
    """
    bins = _check_bins(bins)
    _check_bound("bound", bound)
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 3 * bins - 1, 0, activation
    )
    return SplineCoupling(m, net, bins, bound)


def conditional_spline_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    bins: int = 8,
    bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> ConditionalSplineCoupling:
    """A :class:`ConditionalSplineCoupling` with a zero-initialised conditioner.

    Args:
        input_dim: ``D >= 2``.
        context_dim: ``C >= 1``.
        hidden_dims: hidden sizes of the conditioner.
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        bins: ``K >= 2``.
        bound: :math:`B > 0`.
        activation: non-linearity of the conditioner.

    Example:
        >>> conditional_spline_coupling(3, 2, [8]).context_dim
        2
    """
    bins = _check_bins(bins)
    _check_bound("bound", bound)
    if not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1:
        raise ValueError(f"context_dim: expected a positive integer, got {context_dim!r}")
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 3 * bins - 1, context_dim, activation
    )
    return ConditionalSplineCoupling(m, net, context_dim, bins, bound)
