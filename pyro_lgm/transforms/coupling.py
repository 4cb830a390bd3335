r"""Coupling layers for vectors: NICE (additive) and RealNVP (affine), and NICE's scaling.

A coupling layer splits the features with a boolean ``mask`` into a conditioning part
:math:`A` (``mask[i] == True``: copied unchanged) and a transformed part :math:`B`
(``mask[i] == False``), and transforms :math:`x_B` with parameters computed from
:math:`x_A` by an arbitrary network (the *conditioner*). The Jacobian is block triangular,
so its log-determinant is a sum over :math:`B` and the inverse is closed-form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions import ConditionalTransformModule, TransformModule
from torch import nn
from torch.distributions import constraints

from pyro_lgm.errors import check_finite
from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.transforms._cached import CachedTransform

__all__ = [
    "AdditiveCoupling",
    "AffineCoupling",
    "ConditionalAdditiveCoupling",
    "ConditionalAffineCoupling",
    "DiagonalScale",
    "additive_coupling",
    "affine_coupling",
    "conditional_additive_coupling",
    "conditional_affine_coupling",
    "coupling_mask",
    "diagonal_scale",
]

MaskLike = str | torch.Tensor | Sequence[bool]


# --------------------------------------------------------------------------------------
# Input checks shared by the vector transforms of this package (also used by actnorm.py
# and permute.py).
# --------------------------------------------------------------------------------------
def _check_input(
    name: str, x: object, size: int, ref: torch.Tensor | None = None, dim: int = -1
) -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor with ``x.shape[dim] == size``.

    When ``ref`` is given, ``x`` must share its dtype and device. NaN and infinite values
    are rejected while validation is on (:func:`pyro_lgm.errors.check_finite`).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape (..., {size}), got {type(x)}")
    if x.dim() < -dim or x.shape[dim] != size:
        expected = "(..., " + ", ".join([str(size)] + ["*"] * (-dim - 1)) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(x.shape)}")
    _check_float_like(name, x, ref)
    check_finite(name, x)


def _check_float_like(name: str, x: torch.Tensor, ref: torch.Tensor | None) -> None:
    """A floating-point ``x`` with the dtype and device of ``ref`` (when given)."""
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if ref is not None:
        if x.dtype != ref.dtype:
            raise ValueError(f"{name}: expected dtype {ref.dtype} (the transform's), got {x.dtype}")
        if x.device != ref.device:
            raise ValueError(
                f"{name}: expected device {ref.device} (the transform's), got {x.device}"
            )


def _batch_of(*tensors: torch.Tensor) -> torch.Size:
    return torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------
def coupling_mask(input_dim: int, kind: str = "half", invert: bool = False) -> torch.Tensor:
    r"""A boolean coupling mask of length ``input_dim``; ``True`` marks the conditioning part.

    * ``"half"``: the first :math:`\lfloor D/2 \rfloor` features condition the others;
    * ``"alternating"`` (alias ``"checkerboard"``): even-indexed features condition the odd.

    ``invert=True`` swaps the roles (use it on every other layer so all features change).

    Args:
        input_dim: ``D >= 2``.
        kind: ``"half"``, ``"alternating"`` or ``"checkerboard"``.
        invert: swap conditioning and transformed parts.

    Returns:
        A ``(D,)`` bool tensor.

    Example:
        >>> coupling_mask(5, "alternating").tolist()
        [True, False, True, False, True]
        >>> coupling_mask(5, "half", invert=True).tolist()
        [False, False, True, True, True]
    """
    if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 2:
        raise ValueError(f"input_dim: expected an integer >= 2 for a coupling, got {input_dim!r}")
    index = torch.arange(input_dim)
    if kind == "half":
        mask = index < input_dim // 2
    elif kind in ("alternating", "checkerboard"):
        mask = index % 2 == 0
    else:
        raise ValueError(f"kind: expected 'half', 'alternating' or 'checkerboard', got {kind!r}")
    return ~mask if invert else mask


def _as_mask(mask: MaskLike, input_dim: int | None = None, invert: bool = False) -> torch.Tensor:
    """Validate a mask given as a kind name, a bool tensor or a sequence of bools."""
    if isinstance(mask, str):
        if input_dim is None:
            raise ValueError("input_dim: required when mask is given by name")
        return coupling_mask(input_dim, mask, invert)
    if isinstance(mask, torch.Tensor):
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool tensor, got dtype {mask.dtype}")
        m = mask.detach().clone()
    else:
        try:
            values = list(mask)
        except TypeError:
            raise ValueError(
                f"mask: expected 'half', 'alternating', a bool tensor or a sequence of bools, "
                f"got {mask!r}"
            ) from None
        if not all(isinstance(v, bool) for v in values):
            raise ValueError(f"mask: expected a sequence of bools, got {values!r}")
        m = torch.tensor(values, dtype=torch.bool)
    if m.dim() != 1:
        raise ValueError(f"mask: expected a 1-D mask, got shape {tuple(m.shape)}")
    if input_dim is not None and m.numel() != input_dim:
        raise ValueError(f"mask: expected length {input_dim} (input_dim), got {m.numel()}")
    if bool(m.all()) or not bool(m.any()):
        raise ValueError(
            "mask: expected both True (conditioning) and False (transformed) entries, "
            f"got {m.int().tolist()}"
        )
    return ~m if invert else m


def _check_bound(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name}: expected a finite positive number, got inf")
    return float(value)


def _default_hidden(input_dim: int, hidden_dims: Sequence[int] | None) -> list[int]:
    if hidden_dims is None:
        width = max(64, 4 * input_dim)
        return [width, width]
    if isinstance(hidden_dims, int | str) or not isinstance(hidden_dims, Sequence):
        raise ValueError(
            f"hidden_dims: expected a sequence of positive ints (e.g. [64, 64]), "
            f"got {hidden_dims!r}"
        )
    return list(hidden_dims)


class _BoundConditioner(nn.Module):
    """The conditioner of a conditional coupling with its context bound (kept as a buffer)."""

    def __init__(self, net: nn.Module | Callable, context: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("context", context, persistent=False)

    def forward(self, x_a: torch.Tensor) -> torch.Tensor:
        try:
            torch.broadcast_shapes(x_a.shape[:-1], self.context.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"context: batch shape {tuple(self.context.shape[:-1])} does not broadcast "
                f"against x's batch shape {tuple(x_a.shape[:-1])}"
            ) from None
        return self.net(x_a, self.context)


# --------------------------------------------------------------------------------------
# Couplings
# --------------------------------------------------------------------------------------
class _Coupling(CachedTransform, TransformModule):
    """Shared mask bookkeeping, checks and caching of the coupling layers."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    _params_per_feature = 1

    def __init__(
        self, mask: MaskLike, conditioner: nn.Module | Callable, cache_size: int = 0
    ) -> None:
        super().__init__(cache_size=cache_size)
        m = _as_mask(mask)
        if not callable(conditioner):
            raise ValueError(f"conditioner: expected a callable network, got {conditioner!r}")
        self.input_dim = m.numel()
        self.register_buffer("mask", m)
        self.register_buffer("idx_a", m.nonzero().squeeze(-1), persistent=False)
        self.register_buffer("idx_b", (~m).nonzero().squeeze(-1), persistent=False)
        self.conditioner = conditioner

    def _ref(self) -> torch.Tensor | None:
        p = next(iter(self.parameters()), None)
        return p

    def _conditioner_out(self, x_a: torch.Tensor) -> torch.Tensor:
        out = self.conditioner(x_a)
        width = self._params_per_feature * self.idx_b.numel()
        if not isinstance(out, torch.Tensor) or out.shape[-1] != width:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            raise ValueError(f"conditioner: expected an output of shape (..., {width}), got {got}")
        return out

    def _merge(self, x: torch.Tensor, new_b: torch.Tensor) -> torch.Tensor:
        batch = _batch_of(x, new_b)
        x = x.expand(*batch, self.input_dim)
        return x.index_copy(-1, self.idx_b, new_b.expand(*batch, new_b.shape[-1]))

    def _check(self, name: str, x: object) -> None:
        _check_input(name, x, self.input_dim, self._ref())

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, mask={self.mask.int().tolist()}"


class AdditiveCoupling(_Coupling):
    r"""NICE's additive coupling layer (Dinh et al., 2015), a volume-preserving bijection.

    .. math::
        y_A = x_A, \qquad y_B = x_B + m(x_A), \qquad \log|\det J| = 0,

    where :math:`A = \{i : \mathrm{mask}_i\}`, :math:`B` its complement and :math:`m` an
    arbitrary network (``conditioner``) mapping ``(..., |A|)`` to ``(..., |B|)``. The inverse
    is :math:`x_B = y_B - m(y_A)`.

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        mask: ``(D,)`` bool tensor or sequence of bools; ``True`` marks the conditioning
            features. Neither all ``True`` nor all ``False``.
        conditioner: network ``(..., |A|) -> (..., |B|)``, e.g. :class:`~pyro_lgm.nn.DenseNN`.
        cache_size: 0 or 1; with 1, ``t.inv(y)`` of the ``y`` that ``t(x)`` just returned is
            ``x`` without recomputation (validated: never served after a parameter change,
            see :mod:`pyro_lgm.transforms._cached`).

    Shapes:
        ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> t = additive_coupling(4, hidden_dims=[8])
        >>> x = torch.randn(3, 4)
        >>> torch.equal(t(x), x)  # the conditioner starts at zero: identity at init
        True
        >>> t.log_abs_det_jacobian(x, t(x)).shape
        torch.Size([3])
    """

    volume_preserving = True

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        shift = self._conditioner_out(x[..., self.idx_a])
        return self._merge(x, x[..., self.idx_b] + shift)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        shift = self._conditioner_out(y[..., self.idx_a])
        return self._merge(y, y[..., self.idx_b] - shift)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(_batch_of(x, y))


class AffineCoupling(_Coupling):
    r"""RealNVP's affine coupling layer (Dinh et al., 2017) with a bounded log-scale.

    .. math::
        y_A = x_A, \qquad y_B = x_B \odot \exp(s(x_A)) + t(x_A), \qquad
        \log|\det J| = \sum_{i \in B} s_i(x_A),

    with the stable log-scale :math:`s = c \tanh(\tilde s / c)` (a soft clamp to
    :math:`(-c, c)`, the identity near zero), where the conditioner outputs
    :math:`[\tilde s, t]` of shape ``(..., 2|B|)``. The inverse is
    :math:`x_B = (y_B - t(y_A)) \odot \exp(-s(y_A))`.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        mask: ``(D,)`` bool tensor or sequence of bools; ``True`` marks the conditioning
            features. Neither all ``True`` nor all ``False``.
        conditioner: network ``(..., |A|) -> (..., 2 |B|)`` (log-scales first, then shifts).
        log_scale_bound: :math:`c > 0`, the bound of the per-feature log-scale.
        cache_size: 0 or 1; with 1, ``t.inv(y)`` of the ``y`` that ``t(x)`` just returned is
            ``x`` without recomputation (validated: never served after a parameter change,
            see :mod:`pyro_lgm.transforms._cached`).

    Shapes:
        ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = affine_coupling(4, hidden_dims=[8], mask="alternating")
        >>> x = torch.randn(3, 4)
        >>> torch.equal(t(x), x)  # identity at init
        True
        >>> with torch.no_grad():
        ...     _ = t.conditioner.layers[-1].bias.normal_()
        >>> torch.allclose(t.inv(t(x.clone())), x, atol=1e-5)
        True
    """

    _params_per_feature = 2

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        log_scale_bound: float = 3.0,
        cache_size: int = 0,
    ) -> None:
        super().__init__(mask, conditioner, cache_size=cache_size)
        self.log_scale_bound = _check_bound("log_scale_bound", log_scale_bound)

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._conditioner_out(x_a)
        raw, shift = out.chunk(2, dim=-1)
        c = self.log_scale_bound
        return c * torch.tanh(raw / c), shift

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        log_s, shift = self._scale_shift(x[..., self.idx_a])
        y = self._merge(x, x[..., self.idx_b] * log_s.exp() + shift)
        self._remember_ldj(x, y, log_s.sum(-1))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        log_s, shift = self._scale_shift(y[..., self.idx_a])
        x = self._merge(y, (y[..., self.idx_b] - shift) * torch.exp(-log_s))
        self._remember_ldj(x, y, log_s.sum(-1))
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ladj = self._recall_ldj(x, y)  # the pair (x, y) just computed, nothing changed since
        if ladj is None:
            self._check("x", x)
            ladj = self._scale_shift(x[..., self.idx_a])[0].sum(-1)
        return ladj.expand(torch.broadcast_shapes(ladj.shape, _batch_of(x, y)))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", log_scale_bound={self.log_scale_bound}"


class _ConditionalCoupling(ConditionalTransformModule):
    """Shared code of the conditional couplings: keep mask + conditioner, bind a context."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(
        self, mask: MaskLike, conditioner: nn.Module | Callable, context_dim: int | None = None
    ) -> None:
        super().__init__()
        m = _as_mask(mask)
        if not callable(conditioner):
            raise ValueError(f"conditioner: expected a callable network, got {conditioner!r}")
        if context_dim is None:
            context_dim = getattr(conditioner, "context_dim", None)
        if context_dim is not None and (
            not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1
        ):
            raise ValueError(f"context_dim: expected a positive integer, got {context_dim!r}")
        self.input_dim = m.numel()
        self.context_dim = context_dim
        self.register_buffer("mask", m)
        self.conditioner = conditioner

    def _bind(self, context: torch.Tensor) -> _BoundConditioner:
        size = self.context_dim
        if not isinstance(context, torch.Tensor) or context.dim() < 1:
            raise ValueError(f"context: expected a tensor of shape (..., {size}), got {context!r}")
        if size is not None:
            ref = next(iter(self.parameters()), None)
            _check_input("context", context, size, ref)
        else:
            check_finite("context", context)
        return _BoundConditioner(self.conditioner, context)

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, context_dim={self.context_dim}, "
            f"mask={self.mask.int().tolist()}"
        )


class ConditionalAdditiveCoupling(_ConditionalCoupling):
    r"""An :class:`AdditiveCoupling` whose shift network also reads a context :math:`c`.

    .. math::
        y_A = x_A, \qquad y_B = x_B + m(x_A, c), \qquad \log|\det J| = 0.

    ``condition(context)`` returns an :class:`AdditiveCoupling` bound to ``context``; the
    context's batch dimensions broadcast against those of ``x``.

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        mask: ``(D,)`` bool mask, ``True`` marks the conditioning features.
        conditioner: network ``(x_A: (..., |A|), context: (..., C)) -> (..., |B|)``.
        context_dim: ``C``; read from ``conditioner.context_dim`` when omitted.

    Example:
        >>> import torch
        >>> t = conditional_additive_coupling(4, context_dim=2, hidden_dims=[8])
        >>> t.condition(torch.randn(5, 1, 2))(torch.randn(3, 4)).shape
        torch.Size([5, 3, 4])
    """

    volume_preserving = True

    def condition(self, context: torch.Tensor) -> AdditiveCoupling:
        """Bind ``context`` ``(..., C)`` and return the resulting :class:`AdditiveCoupling`."""
        return AdditiveCoupling(self.mask, self._bind(context))


class ConditionalAffineCoupling(_ConditionalCoupling):
    r"""An :class:`AffineCoupling` whose conditioner also reads a context :math:`c`.

    .. math::
        y_A = x_A, \qquad y_B = x_B \odot \exp(s(x_A, c)) + t(x_A, c), \qquad
        \log|\det J| = \sum_{i \in B} s_i(x_A, c),

    with the bounded log-scale :math:`s = c_{\max} \tanh(\tilde s / c_{\max})`.
    ``condition(context)`` returns an :class:`AffineCoupling` bound to ``context``; the
    context's batch dimensions broadcast against those of ``x``.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        mask: ``(D,)`` bool mask, ``True`` marks the conditioning features.
        conditioner: network ``(x_A: (..., |A|), context: (..., C)) -> (..., 2|B|)``.
        context_dim: ``C``; read from ``conditioner.context_dim`` when omitted.
        log_scale_bound: :math:`c_{\max} > 0`.

    Example:
        >>> import torch
        >>> t = conditional_affine_coupling(4, context_dim=2, hidden_dims=[8])
        >>> x = torch.randn(3, 4)
        >>> torch.equal(t.condition(torch.randn(2))(x), x)  # identity at init
        True
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | Callable,
        context_dim: int | None = None,
        log_scale_bound: float = 3.0,
    ) -> None:
        super().__init__(mask, conditioner, context_dim)
        self.log_scale_bound = _check_bound("log_scale_bound", log_scale_bound)

    def condition(self, context: torch.Tensor) -> AffineCoupling:
        """Bind ``context`` ``(..., C)`` and return the resulting :class:`AffineCoupling`."""
        return AffineCoupling(self.mask, self._bind(context), self.log_scale_bound)


# --------------------------------------------------------------------------------------
# NICE's diagonal scaling
# --------------------------------------------------------------------------------------
class DiagonalScale(CachedTransform, TransformModule):
    r"""A learnable diagonal scaling, NICE's last layer (Dinh et al., 2015).

    .. math::
        y = x \odot \exp(\log s), \qquad \log|\det J| = \sum_i \log s_i.

    The log-scale starts at zero (identity).

    References:
        L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components
        Estimation*. ICLR 2015 workshop.

    Args:
        input_dim: ``D``.

    Shapes:
        ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> t = diagonal_scale(2)
        >>> with torch.no_grad():
        ...     _ = t.log_scale.fill_(0.5)
        >>> t(torch.ones(1, 2)).tolist()
        [[1.6487212181091309, 1.6487212181091309]]
        >>> t.log_abs_det_jacobian(torch.zeros(3, 2), torch.zeros(3, 2)).tolist()
        [1.0, 1.0, 1.0]
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(self, input_dim: int, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
        self.input_dim = input_dim
        self.log_scale = nn.Parameter(torch.zeros(input_dim))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("x", x, self.input_dim, self.log_scale)
        return x * self.log_scale.exp()

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        _check_input("y", y, self.input_dim, self.log_scale)
        return y * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(_batch_of(x, y))

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"


# --------------------------------------------------------------------------------------
# Helpers in Pyro's style
# --------------------------------------------------------------------------------------
def _mask_and_conditioner(
    input_dim: int,
    hidden_dims: Sequence[int] | None,
    mask: MaskLike,
    invert_mask: bool,
    params_per_feature: int,
    context_dim: int,
    activation: type[nn.Module],
) -> tuple[torch.Tensor, DenseNN]:
    """The boolean mask and a zero-initialised conditioner mapping the conditioning part
    (and the context) to ``params_per_feature`` numbers per transformed feature."""
    m = _as_mask(mask, input_dim, invert_mask)
    na, nb = int(m.sum()), int((~m).sum())
    hidden = _default_hidden(input_dim, hidden_dims)
    net = DenseNN(
        na, hidden, params_per_feature * nb, context_dim=context_dim, activation=activation
    )
    return m, net


def additive_coupling(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    activation: type[nn.Module] = nn.ReLU,
) -> AdditiveCoupling:
    """An :class:`AdditiveCoupling` with a zero-initialised :class:`~pyro_lgm.nn.DenseNN`.

    Args:
        input_dim: ``D >= 2``.
        hidden_dims: hidden sizes of the conditioner (default two layers of
            ``max(64, 4 D)``).
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        activation: non-linearity of the conditioner.

    Example:
        >>> additive_coupling(3, [8]).mask.tolist()
        [True, False, False]
    """
    m, net = _mask_and_conditioner(input_dim, hidden_dims, mask, invert_mask, 1, 0, activation)
    return AdditiveCoupling(m, net)


def affine_coupling(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    log_scale_bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> AffineCoupling:
    """An :class:`AffineCoupling` with a zero-initialised :class:`~pyro_lgm.nn.DenseNN`.

    Args:
        input_dim: ``D >= 2``.
        hidden_dims: hidden sizes of the conditioner (default two layers of
            ``max(64, 4 D)``).
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        log_scale_bound: bound of the per-feature log-scale.
        activation: non-linearity of the conditioner.

    Example:
        >>> affine_coupling(4, [8], mask="alternating", invert_mask=True).mask.tolist()
        [False, True, False, True]
    """
    m, net = _mask_and_conditioner(input_dim, hidden_dims, mask, invert_mask, 2, 0, activation)
    return AffineCoupling(m, net, log_scale_bound)


def conditional_additive_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    activation: type[nn.Module] = nn.ReLU,
) -> ConditionalAdditiveCoupling:
    """A :class:`ConditionalAdditiveCoupling` with a zero-initialised conditioner.

    Args:
        input_dim: ``D >= 2``.
        context_dim: ``C >= 1``.
        hidden_dims: hidden sizes of the conditioner.
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        activation: non-linearity of the conditioner.

    Example:
        >>> conditional_additive_coupling(3, 2, [8]).context_dim
        2
    """
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 1, context_dim, activation
    )
    return ConditionalAdditiveCoupling(m, net, context_dim)


def conditional_affine_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    mask: MaskLike = "half",
    invert_mask: bool = False,
    log_scale_bound: float = 3.0,
    activation: type[nn.Module] = nn.ReLU,
) -> ConditionalAffineCoupling:
    """A :class:`ConditionalAffineCoupling` with a zero-initialised conditioner.

    Args:
        input_dim: ``D >= 2``.
        context_dim: ``C >= 1``.
        hidden_dims: hidden sizes of the conditioner.
        mask: ``"half"``, ``"alternating"``/``"checkerboard"`` or an explicit bool mask.
        invert_mask: swap the conditioning and transformed parts.
        log_scale_bound: bound of the per-feature log-scale.
        activation: non-linearity of the conditioner.

    Example:
        >>> conditional_affine_coupling(3, 2, [8]).condition(torch.zeros(2)).input_dim
        3
    """
    m, net = _mask_and_conditioner(
        input_dim, hidden_dims, mask, invert_mask, 2, context_dim, activation
    )
    return ConditionalAffineCoupling(m, net, context_dim, log_scale_bound)


def diagonal_scale(input_dim: int) -> DiagonalScale:
    """A :class:`DiagonalScale` over ``input_dim`` features, starting at the identity.

    Example:
        >>> diagonal_scale(3).log_scale.shape
        torch.Size([3])
    """
    return DiagonalScale(input_dim)
