r"""Planar flows (Rezende & Mohamed, 2015) with an exact numerical inverse.

The file holds, in order:

* the math as plain functions of tensors (:func:`planar_constrain`, :func:`planar_forward`,
  :func:`planar_log_abs_det_jacobian`, :func:`planar_solve`, :func:`planar_inverse`), shared by
  every variant below;
* :class:`ConditionedPlanar`, a plain :class:`~torch.distributions.Transform` built from given
  (possibly batched) raw parameter tensors;
* :class:`Planar`, the :class:`~pyro.distributions.TransformModule` with learnable parameters;
* :class:`ConditionalPlanar`, the amortized
  :class:`~pyro.distributions.ConditionalTransformModule` whose parameters come from a context
  vector through a small MLP (:class:`~pyro_lgm.nn.DenseNN`);
* the Pyro-style helpers :func:`planar` and :func:`conditional_planar`.

The inverse reduces to a monotone scalar equation along ``w`` (see :func:`planar_solve`), solved
by Newton's method with a bisection safeguard, so ``t.inv(y)`` works on fresh tensors without
relying on a cache.
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
    "ConditionalPlanar",
    "ConditionedPlanar",
    "Planar",
    "conditional_planar",
    "planar",
    "planar_constrain",
    "planar_forward",
    "planar_inverse",
    "planar_log_abs_det_jacobian",
    "planar_solve",
]

# softplus^{-1}(1) = log(e - 1): raw value of ``w.u`` for which ``w.u_hat = 0``.
_SOFTPLUS_INV_ONE = math.log(math.expm1(1.0))


def planar_constrain(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Map a raw ``u`` to :math:`\hat u` so that the planar map is invertible.

    .. math::
        \hat u = u + \big(m(w^\top u) - w^\top u\big) \frac{w}{\|w\|^2},
        \qquad m(a) = -1 + \operatorname{softplus}(a),

    hence :math:`w^\top \hat u = m(w^\top u) \ge -1`.

    Args:
        u: ``(..., D)`` raw vector.
        w: ``(..., D)`` normal vector of the hyperplane.

    Returns:
        ``(u_hat, c)`` with ``u_hat`` of shape ``(..., D)`` and ``c = w . u_hat`` of shape
        ``(...)``, computed from ``u_hat`` itself (so it matches the map exactly) and clamped
        to ``c >= -1`` against rounding.

    Example:
        >>> u_hat, c = planar_constrain(torch.tensor([-10.0, 0.0]), torch.tensor([1.0, 0.0]))
        >>> bool(c >= -1)
        True
    """
    wu = (w * u).sum(-1)
    w_norm2 = (w * w).sum(-1).clamp_min(torch.finfo(w.dtype).tiny)
    m = F.softplus(wu) - 1
    u_hat = torch.addcmul(u, ((m - wu) / w_norm2).unsqueeze(-1), w)
    c = (w * u_hat).sum(-1).clamp_min(-1.0)
    return u_hat, c


def planar_forward(
    z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    r"""The planar map :math:`f(z) = z + \hat u \tanh(w^\top z + b)`.

    Args:
        z: ``(..., D)`` input.
        u_hat: ``(..., D)`` constrained ``u`` (see :func:`planar_constrain`).
        w: ``(..., D)``.
        b: ``(...)`` bias.

    Returns:
        ``(..., D)``, the broadcast of the arguments.

    Example:
        >>> planar_forward(torch.zeros(2), torch.ones(2), torch.ones(2), torch.tensor(0.0))
        tensor([0., 0.])
    """
    return _planar_map(z, u_hat, torch.tanh((w * z).sum(-1) + b))


def _planar_map(z: torch.Tensor, u_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``z + u_hat t`` with ``t = tanh(w . z + b)``."""
    return torch.addcmul(z, u_hat, t.unsqueeze(-1))


def _planar_ldj(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``log((1 + c) - c t^2)`` with ``t = tanh(w . z + b)``."""
    return torch.log(torch.addcmul(1 + c, c * t, t, value=-1))


def planar_log_abs_det_jacobian(
    z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    r"""The log-determinant of the planar map's Jacobian.

    .. math::
        \log |\det J| = \log |1 + \hat u^\top \psi(z)|
        = \log\big(1 + c\,(1 - \tanh^2(w^\top z + b))\big),
        \qquad \psi(z) = (1 - \tanh^2(w^\top z + b))\, w,\ c = w^\top \hat u.

    It is evaluated as :math:`\log\big((1 + c) - c \tanh^2(a)\big)`, a sum of two non-negative
    terms when :math:`c < 0`, so it stays accurate near the invertibility boundary
    :math:`c \to -1`.

    Args:
        z: ``(..., D)`` input of the forward map.
        w: ``(..., D)``.
        b: ``(...)``.
        c: ``(...)`` with ``c >= -1`` (from :func:`planar_constrain`).

    Returns:
        ``(...)``.

    Example:
        >>> planar_log_abs_det_jacobian(torch.zeros(2), torch.ones(2), torch.tensor(0.0),
        ...                             torch.tensor(1.0))
        tensor(0.6931)
    """
    return _planar_ldj(torch.tanh((w * z).sum(-1) + b), c)


def _solve_start(k_abs: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A lower bound of the root ``A >= 0`` of ``A + c tanh(A) = K`` (``K >= 0``) from which
    Newton's method converges monotonically (after at most one step), and an upper bound."""
    eps = torch.finfo(k_abs.dtype).eps
    # c >= 0: A + c tanh(A) is concave on A >= 0 and A* >= max(K / (1 + c), K - c).
    lower_pos = torch.maximum(k_abs / (1 + c.clamp_min(0)), k_abs - c)
    # c < 0: convex on A >= 0, A* >= K, and tanh(A) >= A - A^3 / 3 makes the root of the
    # cubic (1 + c) A + |c| A^3 / 3 = K a lower bound that is sharp where A is small, i.e.
    # exactly where the derivative 1 + c sech^2(A) vanishes as c -> -1.
    m = (-c).clamp_min(eps)
    p = 3 * (1 + c) / m
    q = 3 * k_abs / m
    u = (0.5 * q + torch.sqrt(0.25 * q * q + p * p * p / 27)).pow(1.0 / 3.0)
    v = p / (3 * u)
    cubic = q / (u * u + p / 3 + v * v)  # = u - v, without the cancellation
    cubic = torch.nan_to_num(cubic, nan=0.0)  # 0 / 0 at K = 0
    lower_neg = torch.maximum(k_abs, cubic)
    lower = torch.where(c < 0, lower_neg, lower_pos)
    upper = k_abs + (-c).clamp_min(0)
    return lower, upper


def planar_solve(
    kappa: torch.Tensor,
    c: torch.Tensor,
    *,
    max_iter: int = 100,
) -> torch.Tensor:
    r"""Solve the scalar equation :math:`a + c \tanh(a) = \kappa` for :math:`a`, elementwise.

    For :math:`c \ge -1` the left side :math:`g(a) + \kappa` is odd and non-decreasing in
    :math:`a` (:math:`g'(a) = 1 + c\,\mathrm{sech}^2(a) \ge 0`), so the root is unique, has the
    sign of :math:`\kappa`, and :math:`|a - \kappa| = |c \tanh a| \le |c|` brackets it. The
    solver works on :math:`A = |a|`, :math:`K = |\kappa|`, where :math:`g` is concave
    (:math:`c \ge 0`) or convex (:math:`c < 0`), and starts Newton's method from a lower bound
    of the root, so the iterates converge monotonically (after at most one step). For
    :math:`c < 0` the bound is the root of the cubic
    :math:`(1 + c) A + |c| A^3 / 3 = K` (from :math:`\tanh A \ge A - A^3/3`), sharp where the
    derivative vanishes as :math:`c \to -1`. As a safeguard against rounding, any Newton step
    that leaves the current bracket is replaced by bisection. At most ``max_iter`` iterations;
    it stops once every element's residual is at the rounding level of its terms.

    The iterations run without autograd; when ``kappa`` or ``c`` require gradients the result
    carries the implicit-function gradient
    :math:`\partial a / \partial \kappa = 1 / (1 + c\,\mathrm{sech}^2 a)`,
    :math:`\partial a / \partial c = -\tanh(a) / (1 + c\,\mathrm{sech}^2 a)`,
    while its value stays the converged root.

    Args:
        kappa: ``(...)`` right-hand side.
        c: ``(...)`` with ``c >= -1`` (broadcasts with ``kappa``).
        max_iter: iteration cap.

    Returns:
        ``a`` with the broadcast shape of ``kappa`` and ``c``.

    Example:
        >>> a = planar_solve(torch.tensor([0.5, -3.0], dtype=torch.float64),
        ...                  torch.tensor([-0.999, 2.0], dtype=torch.float64))
        >>> res = a + torch.tensor([-0.999, 2.0], dtype=torch.float64) * torch.tanh(a)
        >>> torch.allclose(res, torch.tensor([0.5, -3.0], dtype=torch.float64), atol=1e-14)
        True
    """
    eps = torch.finfo(kappa.dtype).eps
    tiny = torch.finfo(kappa.dtype).tiny
    with torch.no_grad():
        k, cc = torch.broadcast_tensors(kappa.detach(), c.detach())
        sign = torch.sign(k)
        big_k = k.abs()
        lo, hi = _solve_start(big_k, cc)
        one_plus_c = 1 + cc
        # |g| below 8 eps (|A| + |K|) + tiny is rounding noise of A + c tanh(A) - K, since
        # |c tanh A| <= |A| + |K| + |g|
        noise_k = (8 * eps) * big_k + tiny
        a = lo
        for _ in range(max_iter):
            t = torch.tanh(a)
            ct = cc * t
            g = (a - big_k).add_(ct)
            if bool((g.abs() <= torch.add(noise_k, a, alpha=8 * eps)).all()):  # A >= 0
                break
            # derivative 1 + c sech^2(A), a sum of non-negative terms when c < 0
            gp = torch.addcmul(one_plus_c, ct, t, value=-1).clamp_min_(tiny)
            below = g < 0
            lo = torch.where(below, a, lo)
            hi = torch.where(below, hi, a)
            a_new = torch.addcdiv(a, g, gp, value=-1)
            # keep Newton inside the bracket (ends included: a zero step is fine), else bisect
            inside = (a_new >= lo) & (a_new <= hi)
            a = torch.where(inside, a_new, 0.5 * (lo + hi))
        a = sign * a
    if torch.is_grad_enabled() and (kappa.requires_grad or c.requires_grad):
        # Value: the root a; gradient: one Newton step's, i.e. the implicit-function gradient.
        a0 = a
        t0 = torch.tanh(a0)
        gp0 = (1 + c) - c * t0 * t0
        corr = -(a0 + c * t0 - kappa) / gp0
        a = a0 + (corr - corr.detach())
    return a


def _wide_dtype(t: torch.Tensor) -> torch.dtype:
    """The precision the planar inverse solves its scalar equation in: float64, except on
    devices without it (Apple MPS), where the input's own dtype is kept."""
    return t.dtype if t.device.type == "mps" else torch.float64


def planar_inverse(
    y: torch.Tensor,
    u_hat: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None = None,
    *,
    max_iter: int = 100,
) -> torch.Tensor:
    r"""Exact inverse of :func:`planar_forward`.

    With :math:`a = w^\top z + b` and :math:`c = w^\top \hat u`, taking :math:`w^\top` of
    :math:`y = z + \hat u \tanh a` gives the monotone scalar equation

    .. math::
        w^\top y + b = a + c \tanh(a),

    solved by :func:`planar_solve`; then :math:`z = y - \hat u \tanh a`.

    Accuracy: the scalar part - :math:`\kappa = w^\top y + b`, :math:`c = w^\top \hat u` and
    the root :math:`a` - is computed in float64 whatever the dtype of ``y`` (on Apple MPS,
    which has no float64, in ``y``'s dtype); only :math:`z = y - \hat u \tanh a` is
    evaluated in ``y``'s dtype. The root's sensitivity to :math:`\kappa` and :math:`c` is
    :math:`1/g'(a)`, :math:`g'(a) = 1 + c\,\mathrm{sech}^2 a`, which is large near the
    invertibility boundary :math:`c \to -1`: in float32 the rounding of the dot products
    (about :math:`\epsilon_{32} \sum_i |w_i y_i|`) and of the solver's own residual,
    divided by :math:`g'(a)`, add errors of the same order as those the rounding of ``y``
    itself causes, with no fixed ratio to them (up to 66 times the budget below, measured).
    Computed in float64 these terms vanish, and the float32 inverse is
    within :math:`\epsilon_{32}(2 \max_i|\hat u_i| + \max_i |z_i|)` of the exact inverse
    of the same float32 ``y`` (``tests/test_planar_radial.py``). This costs one float64
    pass over ``y`` plus scalar iterations per batch element.

    Args:
        y: ``(..., D)`` output of the forward map.
        u_hat, w: ``(..., D)``.
        b: ``(...)``.
        c: ``(...)`` :math:`w^\top \hat u`; default: computed from ``u_hat`` and ``w`` in
            float64 (recommended: a ``c`` rounded to float32 moves the root by
            :math:`\epsilon_{32} |w| |\hat u| / g'(a)`). A given ``c`` is used as is.
        max_iter: Newton / bisection iteration cap.

    Returns:
        ``z`` of shape ``(..., D)``, in ``y``'s dtype.

    Example:
        >>> u_hat, c = planar_constrain(torch.tensor([0.3, -2.0]), torch.tensor([1.0, 1.0]))
        >>> z = torch.tensor([[0.2, -0.7]])
        >>> y = planar_forward(z, u_hat, torch.tensor([1.0, 1.0]), torch.tensor(0.1))
        >>> zz = planar_inverse(y, u_hat, torch.tensor([1.0, 1.0]), torch.tensor(0.1))
        >>> torch.allclose(zz, z, atol=1e-6)
        True
    """
    wide = _wide_dtype(y)
    w_wide = w.to(wide)
    kappa = (w_wide * y.to(wide)).sum(-1) + b.to(wide)
    if c is None:
        c_wide = (w_wide * u_hat.to(wide)).sum(-1).clamp_min(-1.0)
    else:
        c_wide = c.to(wide)
    a = planar_solve(kappa, c_wide, max_iter=max_iter)
    return y - u_hat * torch.tanh(a).to(y.dtype).unsqueeze(-1)


# --------------------------------------------------------------------------------------------
# Transforms.
# --------------------------------------------------------------------------------------------
class _PlanarBase(VectorParamTransform):
    """Shared planar-transform logic; subclasses provide the raw parameters."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = 1  # 1 + c sech^2 >= 0: the Jacobian determinant is never negative
    input_dim: int
    max_iter: int

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - provided by every subclass

    # ``params``: the raw parameters when the caller already holds them (one read of a
    # module's attributes per call instead of three)
    def _param_batch_shape(self, params: tuple | None = None) -> torch.Size:
        b, u, w = params or self._raw_params()
        return broadcast_shapes(b.shape, u.shape[:-1], w.shape[:-1])

    def _constrained(
        self, params: tuple | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b, u, w = params or self._raw_params()
        u_hat, c = planar_constrain(u, w)
        return u_hat, w, b, c

    def _check(self, name: str, x: torch.Tensor, params: tuple | None = None) -> None:
        params = params or self._raw_params()
        _check_vector_input(name, x, self.input_dim, params[2], self._param_batch_shape(params))

    @property
    def u_hat(self) -> torch.Tensor:
        """The constrained ``u`` (``w . u_hat >= -1``), shape ``(..., input_dim)``."""
        return self._constrained()[0]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        params = self._raw_params()
        self._check("x", x, params)
        u_hat, w, b, c = self._constrained(params)
        # the forward map and its log-det share tanh(w.x + b) and the constraint: both are
        # computed here, and log_abs_det_jacobian(x, y) of this very pair recalls the log-det
        # (the helpers of planar_forward and planar_log_abs_det_jacobian: the same values)
        t = torch.tanh((w * x).sum(-1) + b)
        y = _planar_map(x, u_hat, t)
        self._remember_ldj(x, y, _planar_ldj(t, c))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        u_hat, w, b, _ = self._constrained()
        # c = w . u_hat is recomputed in float64 from the u_hat the forward map uses
        return planar_inverse(y, u_hat, w, b, max_iter=self.max_iter)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(x, y)  # type: ignore[attr-defined]
        if ldj is not None:
            return ldj
        self._check("x", x)
        _, w, b, c = self._constrained()
        return planar_log_abs_det_jacobian(x, w, b, c)


class ConditionedPlanar(CachedTransform, _PlanarBase):
    r"""A planar transform with given (possibly batched) raw parameters.

    .. math::
        f(z) = z + \hat u \tanh(w^\top z + b), \qquad
        \log|\det J_f(z)| = \log|1 + \hat u^\top (1 - \tanh^2(w^\top z + b))\, w|,

    with :math:`\hat u` from :func:`planar_constrain`. This is what
    :meth:`ConditionalPlanar.condition` returns; it also lets a user drive a planar map with
    parameters from any network. The inverse is exact (:func:`planar_inverse`).

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        bias: ``(...)`` raw ``b``.
        u: ``(..., D)`` raw ``u``.
        w: ``(..., D)``.
        max_iter: iteration cap of the inverse's Newton / bisection solver.
        cache_size: 0 or 1 (default): with 1, the inverse of the last output returns the
            input without a Newton solve, while none of ``bias``, ``u``, ``w`` changed (the
            validated cache of :class:`~pyro_lgm.transforms._cached.CachedTransform`).

    The leading dims of the parameters are a batch shape that broadcasts against ``x``'s.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> u, w = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
        >>> t = ConditionedPlanar(torch.zeros(5, dtype=torch.float64), u, w)
        >>> x = torch.randn(5, 3, generator=g, dtype=torch.float64)
        >>> torch.allclose(t.inv(t(x).clone()), x, atol=1e-10)  # fresh tensor: no cache
        True
        >>> t.log_abs_det_jacobian(x, t(x)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        bias: torch.Tensor,
        u: torch.Tensor,
        w: torch.Tensor,
        *,
        max_iter: int = 100,
        cache_size: int = 1,
        _checked: bool = False,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.max_iter = _check_positive_int("max_iter", max_iter)
        if not _checked:  # else: slices of a network's output, checked whole by condition()
            _check_param_tensor("bias", bias, 0)
            _check_param_tensor("u", u, 1)
            _check_param_tensor("w", w, 1)
            _check_params_finite(bias=bias, u=u, w=w)  # under validation, like every input
            if u.shape[-1] != w.shape[-1]:
                raise ValueError(
                    f"u: expected the last dimension of w ({w.shape[-1]}), got {tuple(u.shape)}"
                )
            for name, p in (("bias", bias), ("u", u)):
                if p.dtype != w.dtype or p.device != w.device:
                    raise ValueError(f"{name}: expected the dtype and device of w")
            try:
                broadcast_shapes(bias.shape, u.shape[:-1], w.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"bias: batch shapes {tuple(bias.shape)}, {tuple(u.shape[:-1])} (u), "
                    f"{tuple(w.shape[:-1])} (w) do not broadcast"
                ) from None
        self.input_dim = w.shape[-1]
        self._params = (bias, u, w)

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._params

    def _cache_tensors(self) -> list[torch.Tensor]:
        """The parameter tensors (plain tensors, not module parameters): the validated
        cache serves a value only while none of them changed."""
        return list(self._params)

    def with_cache(self, cache_size: int = 1) -> ConditionedPlanar:
        if cache_size == self._cache_size:
            return self
        return ConditionedPlanar(*self._params, max_iter=self.max_iter, cache_size=cache_size)


class Planar(CachedTransform, _PlanarBase, TransformModule):
    r"""A planar flow layer with learnable parameters (Rezende & Mohamed, 2015).

    .. math::
        f(z) = z + \hat u \tanh(w^\top z + b), \qquad
        \log|\det J_f(z)| = \log|1 + \hat u^\top \psi(z)|,\quad
        \psi(z) = (1 - \tanh^2(w^\top z + b))\, w,

    where :math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \|w\|^2`,
    :math:`m(a) = -1 + \operatorname{softplus}(a)`, guarantees :math:`w^\top \hat u \ge -1` and
    hence invertibility. The inverse is exact: along :math:`w` the map reduces to the monotone
    scalar equation :math:`w^\top y + b = a + w^\top \hat u \tanh a`, solved by Newton's method
    with a bisection safeguard (:func:`planar_inverse`); no cache is needed.

    Initialisation: ``w ~ N(0, I/D)``, ``b = 0`` and ``u`` such that :math:`w^\top \hat u = 0`
    with a small orthogonal part :math:`\hat u \sim 0.1 N(0, I/D)`, so a new layer is close to,
    but not exactly, the identity.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        input_dim: size ``D`` of the event; inputs are ``(..., D)``.
        max_iter: iteration cap of the inverse's solver.
        cache_size: 0 or 1 (default, as Pyro's ``Planar``): with 1, ``t.inv(t(x))``
            returns ``x`` without a Newton solve (``log_prob`` of a sample just drawn, as
            in ``AutoNormalizingFlow``), served only while no parameter changed (validated
            cache, :class:`~pyro_lgm.transforms._cached.CachedTransform`); with 0 every
            inverse is solved.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> t = Planar(3)
        >>> x = torch.randn(4, 3)
        >>> y = t(x)
        >>> torch.allclose(t.inv(y.clone()), x, atol=1e-5)
        True
        >>> t.log_abs_det_jacobian(x, y).shape
        torch.Size([4])
    """

    def __init__(self, input_dim: int, *, max_iter: int = 100, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.max_iter = _check_positive_int("max_iter", max_iter)
        self.bias = nn.Parameter(torch.zeros(()))
        self.u = nn.Parameter(torch.zeros(input_dim))
        self.w = nn.Parameter(torch.zeros(input_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw the near-identity initialisation described in the class docstring."""
        d = self.input_dim
        self.w.normal_(0.0, d**-0.5)
        self.bias.zero_()
        perp = torch.randn_like(self.u) * (0.1 * d**-0.5)
        w_norm2 = self.w.pow(2).sum().clamp_min(torch.finfo(self.w.dtype).tiny)
        perp -= (perp @ self.w) / w_norm2 * self.w
        self.u.copy_(perp + _SOFTPLUS_INV_ONE * self.w / w_norm2)

    def _raw_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self._parameters  # what self.bias etc. return, without Module.__getattr__
        if "bias" in p and "u" in p and "w" in p:
            return p["bias"], p["u"], p["w"]  # type: ignore[return-value]
        return self.bias, self.u, self.w  # e.g. under torch.nn.utils.parametrize

    def with_cache(self, cache_size: int = 1) -> Transform:
        """A :class:`ConditionedPlanar` view sharing this module's parameters."""
        if cache_size == self._cache_size:
            return self
        return ConditionedPlanar(
            self.bias, self.u, self.w, max_iter=self.max_iter, cache_size=cache_size
        )

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"


# --------------------------------------------------------------------------------------------
# The amortized variant.
# --------------------------------------------------------------------------------------------
class ConditionalPlanar(ConditionalTransformModule):
    r"""An amortized planar flow: the parameters :math:`(b, u, w)` are a function of a context.

    .. math::
        (b, u, w) = \mathrm{NN}(s), \qquad
        f(z; s) = z + \hat u \tanh(w^\top z + b),

    with :math:`\hat u` constrained as in :class:`Planar`. ``condition(context)`` returns a
    :class:`ConditionedPlanar` whose parameters have the context's batch shape and broadcast
    against ``x``; its inverse is exact.

    The constructor sets the network's last-layer bias to a near-identity :class:`Planar`
    initialisation (the :class:`~pyro_lgm.nn.DenseNN` last-layer weights start at zero), so a
    new conditional flow is close to the identity for every context.

    References:
        Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770

    Args:
        net: a :class:`~pyro_lgm.nn.DenseNN` with ``in_dim = C`` (the context size),
            ``context_dim = 0`` and ``out_dim = 1 + 2 D``: the output is ``[b, u, w]``.
        input_dim: ``D``.
        max_iter: iteration cap of the inverse's solver.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> t = conditional_planar(3, context_dim=2)
        >>> ct = t.condition(torch.randn(5, 2))
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(ct.inv(ct(x).clone()), x, atol=1e-5)
        True
    """

    def __init__(self, net: DenseNN, input_dim: int, *, max_iter: int = 100) -> None:
        super().__init__()
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.nn = _check_net(net, getattr(net, "in_dim", 0), 1 + 2 * input_dim, "b, u, w")
        self.max_iter = _check_positive_int("max_iter", max_iter)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Set the last layer's bias to a near-identity :class:`Planar` initialisation."""
        bias = _last_linear(self.nn).bias
        ref = Planar(self.input_dim).to(bias)
        bias.copy_(torch.cat([ref.bias.reshape(1), ref.u, ref.w]))

    def condition(self, context: torch.Tensor) -> ConditionedPlanar:
        _check_context(context, self.nn)
        out = self.nn(context)
        d = self.input_dim
        # the slices have the right shapes, dtype and device by construction: one
        # finiteness check of the whole output (the constructor's checks, which name the
        # parameter, run only when it fails)
        checked = not validation_enabled() or all_finite(out)
        bias, u, w = out.split([1, d, d], dim=-1)  # one node in backward
        return ConditionedPlanar(bias.squeeze(-1), u, w, max_iter=self.max_iter, _checked=checked)

    @property
    def context_dim(self) -> int:
        """Size ``C`` of the context."""
        return self.nn.in_dim


def planar(input_dim: int, **kwargs: object) -> Planar:
    r"""Build a :class:`Planar` layer :math:`f(z) = z + \hat u \tanh(w^\top z + b)`.

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows, ICML 2015.

    Args:
        input_dim: size ``D`` of the event.
        kwargs: forwarded to :class:`Planar` (``max_iter``, ``cache_size``).

    Example:
        >>> planar(4).u.shape
        torch.Size([4])
    """
    return Planar(input_dim, **kwargs)


def conditional_planar(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    **kwargs: object,
) -> ConditionalPlanar:
    r"""Build a :class:`ConditionalPlanar` whose parameters are a ``DenseNN`` of the context.

    .. math::
        (b, u, w) = \mathrm{NN}(s), \qquad f(z; s) = z + \hat u \tanh(w^\top z + b).

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows, ICML 2015.

    Args:
        input_dim: size ``D`` of the event.
        context_dim: size ``C`` of the context.
        hidden_dims: hidden widths of the network; default ``[10 D, 10 D]`` (Pyro's
            default). ``[]`` makes the parameters a linear read-out of the context,
            the amortization of Rezende & Mohamed (2015).
        kwargs: forwarded to :class:`ConditionalPlanar` (``max_iter``).

    Example:
        >>> t = conditional_planar(4, 2, hidden_dims=[16])
        >>> t.condition(torch.zeros(7, 2)).u_hat.shape
        torch.Size([7, 4])
    """
    input_dim = _check_positive_int("input_dim", input_dim)
    context_dim = _check_positive_int("context_dim", context_dim)
    if hidden_dims is None:
        hidden_dims = _default_hidden_dims(input_dim)
    net = DenseNN(context_dim, _check_hidden_dims(hidden_dims), 1 + 2 * input_dim)
    return ConditionalPlanar(net, input_dim, **kwargs)
