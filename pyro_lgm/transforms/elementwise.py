r"""Elementwise preprocessing bijections for images: dequantization scaling and RealNVP's
logit transform.

Both are written, like every flow of the library, from the base to the data, so a flow for
8-bit images ends (on its data side) with

.. code-block:: python

    [..., LogitPreprocess(alpha), UniformDequantize(bits=8)]

whose density is over the *dequantized* data :math:`v = x + u \in [0, 256)^D` itself: the
log-determinants of the logit and of the scaling by :math:`2^{-8}` are inside ``log_prob``,
and bits per dimension are :math:`-\log p(v) / (D \log 2)` with no further correction
(:func:`pyro_lgm.metrics.nats_to_bits_per_dim`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Transform, constraints

from pyro_lgm.errors import check_finite

__all__ = ["LogitPreprocess", "UniformDequantize", "logit_preprocess", "uniform_dequantize"]


def _check_event_dim(event_dim: object) -> int:
    if not isinstance(event_dim, int) or isinstance(event_dim, bool) or event_dim < 0:
        raise ValueError(f"event_dim: expected a non-negative integer, got {event_dim!r}")
    return event_dim


def _check_value(name: str, x: object, event_dim: int) -> None:
    """A floating tensor with at least ``event_dim`` dimensions, finite under validation."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(x)}")
    if x.dim() < event_dim:
        raise ValueError(
            f"{name}: expected at least {event_dim} dimensions (event_dim={event_dim}), "
            f"got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    check_finite(name, x)


def _sum_event(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    return t.sum(tuple(range(-event_dim, 0))) if event_dim else t


def _batch(x: torch.Tensor, y: torch.Tensor, event_dim: int) -> torch.Size:
    return torch.broadcast_shapes(x.shape[: x.dim() - event_dim], y.shape[: y.dim() - event_dim])


class UniformDequantize(Transform):
    r"""The scaling between the unit cube and uniformly dequantized ``bits``-bit data.

    .. math::
        v = 2^{b} u, \qquad u = 2^{-b} v, \qquad \log|\det J| = D\, b \log 2,

    for :math:`u \in [0, 1)^D` (the base side) and :math:`v \in [0, 2^b)^D` (the data
    side), :math:`D` the number of elements of an event. The log-determinant is exact, so a
    flow that ends with this transform has its density over the dequantized data
    :math:`v = x + \epsilon`, :math:`\epsilon \sim U[0, 1)^D`, of integer data
    :math:`x \in \{0, \dots, 2^b - 1\}^D` (Theis et al., 2016; the RealNVP / Glow protocol):
    :math:`-\mathbb{E}\log p(v)` bounds the discrete negative log-likelihood from above and
    bits per dimension are :math:`-\log p(v) / (D \log 2)`, no further correction.
    :meth:`dequantize` draws :math:`v` from :math:`x`, :meth:`quantize` recovers :math:`x`.

    References:
        L. Theis, A. van den Oord, M. Bethge. *A note on the evaluation of generative
        models*. ICLR 2016.
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        bits: ``b``, the bit depth of the data (a positive integer; 8 for 8-bit images).
        event_dim: the number of rightmost dimensions forming an event (3 for ``(C, H, W)``).

    Shapes:
        ``u``, ``v``: ``(..., *event)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import math, torch
        >>> from torch.distributions import TransformedDistribution, Uniform, Independent
        >>> from pyro_lgm.metrics import nats_to_bits_per_dim
        >>> t = UniformDequantize(bits=8)
        >>> x = torch.randint(0, 256, (5, 3, 4, 4)).float()  # integer levels
        >>> v = t.dequantize(x, generator=torch.Generator().manual_seed(0))
        >>> bool((t.quantize(v) == x).all())
        True
        >>> # the uniform density on the unit cube, carried to [0, 256)^D: exactly 8 bits/dim
        >>> base = Independent(Uniform(torch.zeros(3, 4, 4), torch.ones(3, 4, 4)), 3)
        >>> flow = TransformedDistribution(base, [t])
        >>> nll = -flow.log_prob(v)  # nats per image, over the dequantized data
        >>> torch.allclose(nats_to_bits_per_dim(nll, 3 * 4 * 4), torch.full((5,), 8.0))
        True
    """

    bijective = True
    sign = +1

    def __init__(self, bits: int = 8, event_dim: int = 3, cache_size: int = 0) -> None:
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 52:
            raise ValueError(f"bits: expected an integer in [1, 52], got {bits!r}")
        event_dim = _check_event_dim(event_dim)
        super().__init__(cache_size=cache_size)
        self.bits = bits
        self.levels = 2**bits
        self.domain = constraints.independent(constraints.half_open_interval(0.0, 1.0), event_dim)
        self.codomain = constraints.independent(
            constraints.half_open_interval(0.0, float(self.levels)), event_dim
        )

    def with_cache(self, cache_size: int = 1) -> UniformDequantize:
        if self._cache_size == cache_size:
            return self
        return UniformDequantize(self.bits, self.domain.event_dim, cache_size)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UniformDequantize)
            and other.bits == self.bits
            and other.domain.event_dim == self.domain.event_dim
        )

    def __hash__(self) -> int:
        return hash((UniformDequantize, self.bits, self.domain.event_dim))

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        _check_value("u", u, self.domain.event_dim)
        return u * self.levels  # exact: a power of two

    def _inverse(self, v: torch.Tensor) -> torch.Tensor:
        _check_value("v", v, self.domain.event_dim)
        return v / self.levels

    def log_abs_det_jacobian(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        event_dim = self.domain.event_dim
        d = math.prod(u.shape[u.dim() - event_dim :])
        value = d * self.bits * math.log(2.0)
        return torch.full(_batch(u, v, event_dim), value, dtype=u.dtype, device=u.device)

    def dequantize(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        r""":math:`v = x + \epsilon`, :math:`\epsilon \sim U[0, 1)` elementwise.

        Args:
            x: integer levels in :math:`\{0, \dots, 2^b - 1\}`, as a floating tensor (its
                dtype is kept) or an integer one (returned in the default dtype).
            generator: the source of :math:`\epsilon` (torch's global one by default).

        Returns:
            ``v`` of ``x``'s shape with ``floor(v) == x``: a sum that rounds up to
            :math:`x + 1` in floating point is moved to the largest number below it.
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x: expected a tensor of integer levels, got {type(x)}")
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"x: expected a real tensor of integer levels, got dtype {x.dtype}")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        top = self.levels - 1
        if x.numel() and not bool(((x >= 0) & (x <= top) & (x == torch.floor(x))).all()):
            bad = x[~((x >= 0) & (x <= top) & (x == torch.floor(x)))][0].item()
            raise ValueError(
                f"x: expected integer levels in {{0, ..., {top}}} ({self.bits} bits), got {bad!r}"
            )
        eps = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return torch.minimum(x + eps, torch.nextafter(x + 1, x))

    def quantize(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\lfloor v \rfloor`, clamped to :math:`\{0, \dots, 2^b - 1\}` (the inverse
        of :meth:`dequantize`)."""
        _check_value("v", v, 0)
        return torch.floor(v).clamp(0, self.levels - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, event_dim={self.domain.event_dim})"


class LogitPreprocess(Transform):
    r"""RealNVP's logit transform between data in :math:`(0, 1)` and the real line.

    .. math::
        y = \mathrm{logit}\bigl(\alpha + (1 - 2\alpha) x\bigr), \qquad
        x = \frac{\sigma(y) - \alpha}{1 - 2\alpha},

    written base to data: ``t(y)`` returns :math:`x`, ``t.inv(x)`` returns :math:`y`, and

    .. math::
        \log\Bigl|\frac{\partial x}{\partial y}\Bigr|
        = \sum_i \bigl[\log\sigma(y_i) + \log\sigma(-y_i)\bigr] - D \log(1 - 2\alpha),

    summed over the event (computed with ``logsigmoid``, finite for any finite :math:`y`).
    The margin :math:`\alpha` keeps :math:`y` finite at :math:`x = 0` and :math:`x = 1`; the
    codomain is the whole image, the open interval :math:`\bigl(-\frac{\alpha}{1-2\alpha},
    \frac{1-\alpha}{1-2\alpha}\bigr)` (checked as ``constraints.interval``), which contains
    :math:`[0, 1]`. A flow ending in ``[LogitPreprocess, UniformDequantize]`` therefore puts
    a little mass outside :math:`[0, 2^b)^D`; its density on the data is still exact, and
    the bits per dimension it gives remain an upper bound.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017, section 4.1.

    Args:
        alpha: the margin :math:`\alpha \in [0, 0.5)` (RealNVP: 0.05 for CIFAR-10, 1e-6 for
            MNIST-like data in other implementations).
        event_dim: the number of rightmost dimensions forming an event (3 for ``(C, H, W)``).

    Shapes:
        ``y``, ``x``: ``(..., *event)``; ``log_abs_det_jacobian``: ``(...)``.

    Example:
        >>> import torch
        >>> t = LogitPreprocess(alpha=0.05)
        >>> x = torch.rand(2, 1, 3, 3)
        >>> y = t.inv(x)  # data -> latent
        >>> torch.allclose(t(y), x, atol=1e-6)
        True
        >>> t.log_abs_det_jacobian(y, x).shape
        torch.Size([2])
    """

    bijective = True
    sign = +1

    def __init__(self, alpha: float = 0.05, event_dim: int = 3, cache_size: int = 0) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha: expected a number in [0, 0.5), got {alpha!r}")
        event_dim = _check_event_dim(event_dim)
        super().__init__(cache_size=cache_size)
        self.alpha = float(alpha)
        self._log_width = math.log1p(-2.0 * self.alpha)
        width = 1.0 - 2.0 * self.alpha
        self.domain = constraints.independent(constraints.real, event_dim)
        self.codomain = constraints.independent(
            constraints.interval(-self.alpha / width, (1.0 - self.alpha) / width), event_dim
        )

    def with_cache(self, cache_size: int = 1) -> LogitPreprocess:
        if self._cache_size == cache_size:
            return self
        return LogitPreprocess(self.alpha, self.domain.event_dim, cache_size)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LogitPreprocess)
            and other.alpha == self.alpha
            and other.domain.event_dim == self.domain.event_dim
        )

    def __hash__(self) -> int:
        return hash((LogitPreprocess, self.alpha, self.domain.event_dim))

    def _call(self, y: torch.Tensor) -> torch.Tensor:
        _check_value("y", y, self.domain.event_dim)
        return (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        _check_value("x", x, self.domain.event_dim)
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x
        return torch.log(p) - torch.log1p(-p)

    def log_abs_det_jacobian(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        event_dim = self.domain.event_dim
        per_element = F.logsigmoid(y) + F.logsigmoid(-y) - self._log_width
        ldj = _sum_event(per_element, event_dim)
        batch = _batch(y, x, event_dim)
        return ldj if ldj.shape == batch else ldj.expand(batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, event_dim={self.domain.event_dim})"


def uniform_dequantize(bits: int = 8) -> UniformDequantize:
    """A :class:`UniformDequantize` for ``(C, H, W)`` images of ``bits``-bit data.

    Example:
        >>> uniform_dequantize(5).codomain.base_constraint.upper_bound
        32.0
    """
    return UniformDequantize(bits)


def logit_preprocess(alpha: float = 0.05) -> LogitPreprocess:
    """A :class:`LogitPreprocess` for ``(C, H, W)`` images with margin ``alpha``.

    Example:
        >>> logit_preprocess(0.05).inv(torch.tensor([0.5] * 12).reshape(3, 2, 2)).abs().max()
        tensor(0.)
    """
    return LogitPreprocess(alpha)
