r"""Two-dimensional toy densities with exact log-densities.

These are the targets density-estimation papers use to show what a flow can and cannot
fit. Every one is a :class:`~pyro.distributions.TorchDistribution` with
``event_shape == (2,)`` whose ``log_prob`` is *exact* in closed form, so the
Kullback-Leibler divergence of a fitted model can be estimated without bias from target
samples:

.. math::
    \mathrm{KL}(p \,\|\, q) = \mathbb{E}_{x \sim p}[\log p(x) - \log q(x)].

* :class:`TwoMoons`, :class:`EightGaussians` and :class:`Rings` are *finite* mixtures of
  isotropic Gaussians with equal weights whose centres lie on curves (two half-circles, eight
  points on a circle, concentric circles). With centres closer together than the noise
  scale the mixture is indistinguishable from Gaussian noise around the continuous curve,
  but its density is a finite sum, exact in closed form.
* :class:`Checkerboard` is uniform on the black squares of a board: ``log_prob`` is
  :math:`-\log(\text{black area})` on the (closed) black squares and :math:`-\infty`
  elsewhere. With ``smoothing > 0`` it is convolved with Gaussian noise, still in closed form
  (products of differences of normal CDFs), and positive everywhere.

Parameters are tensors that broadcast to the ``batch_shape`` and fix the dtype and device.

References:
    Will Grathwohl, Ricky T. Q. Chen, Jesse Bettencourt, Ilya Sutskever, David Duvenaud.
    FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models.
    ICLR 2019. https://arxiv.org/abs/1810.01367 (the 2-D toy targets: moons, eight
    Gaussians, rings, checkerboard; our parametrizations are our own and exact).

Example:
    >>> import torch
    >>> p = TwoMoons()
    >>> x = p.sample((5,), generator=torch.Generator().manual_seed(0))
    >>> x.shape, p.log_prob(x).shape
    (torch.Size([5, 2]), torch.Size([5]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

__all__ = ["Checkerboard", "EightGaussians", "Rings", "TwoMoons", "TARGETS"]

_LOG_2PI = math.log(2 * math.pi)


def _positive_param(name: str, value: torch.Tensor) -> None:
    if not value.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if not bool(torch.all(torch.isfinite(value) & (value > 0))):
        raise ValueError(f"{name}: expected positive finite values, got {value}")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _sample_shape(sample_shape: int | Sequence[int] | torch.Size) -> torch.Size:
    if isinstance(sample_shape, int) and not isinstance(sample_shape, bool):
        sample_shape = (sample_shape,)
    try:
        shape = torch.Size(sample_shape)
    except TypeError:
        raise ValueError(
            f"sample_shape: expected an int or a sequence of ints, got {sample_shape!r}"
        ) from None
    if any(s < 0 for s in shape):
        raise ValueError(f"sample_shape: expected non-negative sizes, got {tuple(shape)}")
    return shape


class _ToyDistribution(TorchDistribution):
    """Shared value checks of the 2-D toy densities."""

    has_rsample = False

    def _param(self) -> torch.Tensor:  # a tensor parameter fixing dtype and device
        raise NotImplementedError

    def _check_value(self, value: torch.Tensor) -> None:
        p = self._param()
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"value: expected a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise ValueError(f"value: expected a floating-point tensor, got dtype {value.dtype}")
        if value.device != p.device:
            raise ValueError(f"value: expected a tensor on {p.device}, got one on {value.device}")
        if value.dim() < 1 or value.shape[-1] != 2:
            raise ValueError(f"value: expected shape (..., 2), got {tuple(value.shape)}")
        if self._validate_args:
            self._validate_sample(value)


class _IsotropicMixture(_ToyDistribution):
    r"""Equal-weight mixture of :math:`K` isotropic Gaussians with centres :math:`c_k`.

    .. math::
        p(x) = \frac1K \sum_{k=1}^K \mathcal N(x;\, c_k,\, \sigma^2 I_2)
    """

    arg_constraints = {"noise": constraints.positive}
    support = constraints.real_vector

    def _param(self) -> torch.Tensor:
        return self.noise

    def _centers(self) -> torch.Tensor:
        """Centres ``(*batch_shape, K, 2)``."""
        raise NotImplementedError

    def sample(
        self,
        sample_shape: int | Sequence[int] | torch.Size = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw samples of shape ``(*sample_shape, *batch_shape, 2)``.

        Args:
            sample_shape: an int ``n`` or a shape.
            generator: optional ``torch.Generator`` on this distribution's device.
        """
        shape = _sample_shape(sample_shape) + self.batch_shape
        c = self._centers()
        k = c.shape[-2]
        with torch.no_grad():
            idx = torch.randint(k, shape, generator=generator, device=c.device)
            c = c.expand(shape + c.shape[-2:])
            centre = torch.gather(c, -2, idx[..., None, None].expand(shape + (1, 2)))[..., 0, :]
            eps = torch.randn(shape + (2,), generator=generator, dtype=c.dtype, device=c.device)
            return centre + self.noise[..., None] * eps

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-density, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        self._check_value(value)
        c = self._centers()  # (*batch, K, 2)
        sigma = self.noise[..., None]  # (*batch, 1)
        d2 = (value[..., None, :] - c).pow(2).sum(-1)  # (..., K)
        log_n = -0.5 * d2 / sigma**2 - _LOG_2PI - 2 * torch.log(sigma)
        return torch.logsumexp(log_n, -1) - math.log(c.shape[-2])

    def _expand_params(self, new: _IsotropicMixture, batch_shape: torch.Size) -> None:
        new.noise = self.noise.expand(batch_shape)


class TwoMoons(_IsotropicMixture):
    r"""Two interleaved half-circles ("two moons") blurred by isotropic Gaussian noise.

    The centres lie on the two arcs of scikit-learn's ``make_moons``, shifted so that the
    mixture has mean zero: :math:`(\cos t - \frac12, \sin t - \frac14)` and
    :math:`(\frac12 - \cos t, \frac14 - \sin t)` for ``points_per_moon`` equally spaced
    :math:`t \in [0, \pi]`. The density is the finite mixture

    .. math::
        p(x) = \frac{1}{2M} \sum_{m=1}^{2M} \mathcal N(x;\, c_m,\, \sigma^2 I_2),

    exact in closed form (it is *defined* as this finite mixture; with the default 100
    centres per arc, 0.03 apart, it is numerically the same as noise around the continuous
    arcs).

    Args:
        noise: :math:`\sigma`, float or tensor of shape ``batch_shape`` (default 0.1).
        points_per_moon: :math:`M`, number of mixture centres on each arc (default 100).

    Example:
        >>> p = TwoMoons(noise=0.1)
        >>> p.batch_shape, p.event_shape
        (torch.Size([]), torch.Size([2]))
        >>> bool(p.log_prob(torch.tensor([-0.5, 0.75])) > p.log_prob(torch.tensor([0.0, 0.0])))
        True
    """

    def __init__(
        self,
        noise: float | torch.Tensor = 0.1,
        points_per_moon: int = 100,
        validate_args: bool | None = None,
    ) -> None:
        (self.noise,) = broadcast_all(noise)
        _positive_param("noise", self.noise)
        self.points_per_moon = _positive_int("points_per_moon", points_per_moon)
        super().__init__(self.noise.shape, torch.Size((2,)), validate_args=validate_args)

    def _centers(self) -> torch.Tensor:
        p = self.noise
        t = torch.linspace(0, math.pi, self.points_per_moon, dtype=p.dtype, device=p.device)
        upper = torch.stack([torch.cos(t) - 0.5, torch.sin(t) - 0.25], -1)
        return torch.cat([upper, -upper], 0).expand(self.batch_shape + (2 * len(t), 2))

    def expand(self, batch_shape: Sequence[int], _instance: TwoMoons | None = None) -> TwoMoons:
        new = self._get_checked_instance(TwoMoons, _instance)
        batch_shape = torch.Size(batch_shape)
        self._expand_params(new, batch_shape)
        new.points_per_moon = self.points_per_moon
        super(TwoMoons, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class EightGaussians(_IsotropicMixture):
    r"""Eight equally weighted Gaussians on a circle.

    .. math::
        p(x) = \frac18 \sum_{k=0}^{7} \mathcal N\!\left(x;\, r(\cos\tfrac{2\pi k}{8},
        \sin\tfrac{2\pi k}{8}),\, \sigma^2 I_2\right)

    Args:
        radius: :math:`r`, float or tensor (default 2.0).
        noise: :math:`\sigma`, float or tensor (default 0.2). ``radius`` and ``noise``
            broadcast to the ``batch_shape``.

    Example:
        >>> p = EightGaussians(radius=2.0, noise=0.2)
        >>> round(float(p.log_prob(torch.tensor([2.0, 0.0]))), 4)
        -0.6984
    """

    arg_constraints = {"radius": constraints.positive, "noise": constraints.positive}

    def __init__(
        self,
        radius: float | torch.Tensor = 2.0,
        noise: float | torch.Tensor = 0.2,
        validate_args: bool | None = None,
    ) -> None:
        self.radius, self.noise = broadcast_all(radius, noise)
        _positive_param("radius", self.radius)
        _positive_param("noise", self.noise)
        super().__init__(self.noise.shape, torch.Size((2,)), validate_args=validate_args)

    def _centers(self) -> torch.Tensor:
        p = self.noise
        a = torch.arange(8, dtype=p.dtype, device=p.device) * (2 * math.pi / 8)
        unit = torch.stack([torch.cos(a), torch.sin(a)], -1)  # (8, 2)
        return self.radius[..., None, None] * unit

    def expand(
        self, batch_shape: Sequence[int], _instance: EightGaussians | None = None
    ) -> EightGaussians:
        new = self._get_checked_instance(EightGaussians, _instance)
        batch_shape = torch.Size(batch_shape)
        self._expand_params(new, batch_shape)
        new.radius = self.radius.expand(batch_shape)
        super(EightGaussians, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class Rings(_IsotropicMixture):
    r"""Concentric rings of radii :math:`r, 2r, \dots, Rr` blurred by Gaussian noise.

    Ring :math:`j` carries :math:`jM` equally spaced centres, so every centre has the same
    weight and the mass of a ring is proportional to its length:

    .. math::
        p(x) = \frac1K \sum_{j=1}^{R} \sum_{m=0}^{jM-1}
        \mathcal N\!\left(x;\, jr(\cos\tfrac{2\pi m}{jM}, \sin\tfrac{2\pi m}{jM}),\,
        \sigma^2 I_2\right), \qquad K = M \frac{R(R+1)}{2},

    a finite mixture, exact in closed form.

    Args:
        radius: :math:`r`, radius of the inner ring and spacing of the rings (default 1.0).
        noise: :math:`\sigma` (default 0.08). ``radius`` and ``noise`` broadcast to the
            ``batch_shape``.
        num_rings: :math:`R` (default 3).
        points_per_ring: :math:`M`, centres on the inner ring (default 64).

    Example:
        >>> p = Rings(num_rings=2)
        >>> x = p.sample((1000,), generator=torch.Generator().manual_seed(0))
        >>> r = x.norm(dim=-1)
        >>> bool(((r - 1).abs() < 0.5).float().mean().sub(1 / 3).abs() < 0.05)
        True
    """

    arg_constraints = {"radius": constraints.positive, "noise": constraints.positive}

    def __init__(
        self,
        radius: float | torch.Tensor = 1.0,
        noise: float | torch.Tensor = 0.08,
        num_rings: int = 3,
        points_per_ring: int = 64,
        validate_args: bool | None = None,
    ) -> None:
        self.radius, self.noise = broadcast_all(radius, noise)
        _positive_param("radius", self.radius)
        _positive_param("noise", self.noise)
        self.num_rings = _positive_int("num_rings", num_rings)
        self.points_per_ring = _positive_int("points_per_ring", points_per_ring)
        super().__init__(self.noise.shape, torch.Size((2,)), validate_args=validate_args)

    def _centers(self) -> torch.Tensor:
        p = self.noise
        pts = []
        for j in range(1, self.num_rings + 1):
            n = j * self.points_per_ring
            a = torch.arange(n, dtype=p.dtype, device=p.device) * (2 * math.pi / n)
            pts.append(j * torch.stack([torch.cos(a), torch.sin(a)], -1))
        return self.radius[..., None, None] * torch.cat(pts, 0)

    def expand(self, batch_shape: Sequence[int], _instance: Rings | None = None) -> Rings:
        new = self._get_checked_instance(Rings, _instance)
        batch_shape = torch.Size(batch_shape)
        self._expand_params(new, batch_shape)
        new.radius = self.radius.expand(batch_shape)
        new.num_rings = self.num_rings
        new.points_per_ring = self.points_per_ring
        super(Rings, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class _BlackSquares(constraints.Constraint):
    """Support of a sharp :class:`Checkerboard`: the union of its closed black squares."""

    is_discrete = False
    event_dim = 1

    def __init__(self, board: Checkerboard) -> None:
        self._board = board
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return self._board._inside(value)

    def __repr__(self) -> str:
        return f"BlackSquares(num_squares={self._board.num_squares})"


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(d))`` for ``d <= 0``, accurate near both ends."""
    return torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))


def _log_ndtr_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a < b`` without cancellation in either tail."""
    flip = a > 0  # then Phi(b) - Phi(a) = Phi(-a) - Phi(-b), both in the lower tail
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    l_hi = torch.special.log_ndtr(hi)
    return l_hi + _log1mexp(torch.special.log_ndtr(lo) - l_hi)


class Checkerboard(_ToyDistribution):
    r"""Uniform density on the black squares of an :math:`n \times n` board.

    The board is :math:`[-\frac{ns}{2}, \frac{ns}{2}]^2` split into squares of side
    :math:`s`; square :math:`(i, j)` (column :math:`i` from the left, row :math:`j` from
    the bottom) is black when :math:`i + j` is even. With :math:`B = \lceil n^2/2 \rceil`
    black squares,

    .. math::
        p(x) = \frac{1}{B s^2}\, \mathbb 1[x \in \text{black squares}],

    so ``log_prob`` is :math:`-\log(Bs^2)` on the closed black squares and :math:`-\infty`
    elsewhere, and the support is the union of the black squares. With
    ``smoothing`` :math:`= \tau > 0` the density is convolved with
    :math:`\mathcal N(0, \tau^2 I_2)`:

    .. math::
        p_\tau(x) = \frac{1}{Bs^2} \sum_{\text{black } [a_1, b_1] \times [a_2, b_2]}
        \prod_{d=1}^{2} \left[\Phi\!\left(\frac{b_d - x_d}{\tau}\right)
        - \Phi\!\left(\frac{a_d - x_d}{\tau}\right)\right],

    positive everywhere (support: the whole plane), e.g. to evaluate
    :math:`\log p` at samples of a model.

    Args:
        num_squares: :math:`n`, squares per side (default 4).
        side: :math:`s`, float or tensor of shape ``batch_shape`` (default 1.0).
        smoothing: :math:`\tau \ge 0`, a float (default 0: the sharp board).

    Example:
        >>> p = Checkerboard(num_squares=4, side=1.0, validate_args=False)
        >>> p.log_prob(torch.tensor([[-1.5, -1.5], [-0.5, -1.5]]))
        tensor([-2.0794,    -inf])
    """

    arg_constraints = {"side": constraints.positive}

    def __init__(
        self,
        num_squares: int = 4,
        side: float | torch.Tensor = 1.0,
        smoothing: float = 0.0,
        validate_args: bool | None = None,
    ) -> None:
        self.num_squares = _positive_int("num_squares", num_squares)
        (self.side,) = broadcast_all(side)
        _positive_param("side", self.side)
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
            raise ValueError(f"smoothing: expected a non-negative float, got {smoothing!r}")
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"smoothing: expected a non-negative float, got {smoothing!r}")
        self.smoothing = float(smoothing)
        super().__init__(self.side.shape, torch.Size((2,)), validate_args=validate_args)

    def _param(self) -> torch.Tensor:
        return self.side

    @property
    def support(self) -> constraints.Constraint:
        if self.smoothing > 0:
            return constraints.real_vector
        return _BlackSquares(self)

    def _black_cells(self) -> torch.Tensor:
        """Integer cell indices ``(B, 2)`` of the black squares."""
        n = self.num_squares
        cells = [(i, j) for i in range(n) for j in range(n) if (i + j) % 2 == 0]
        return torch.tensor(cells, dtype=torch.long, device=self.side.device)

    @property
    def area(self) -> torch.Tensor:
        """Total area of the black squares, shape ``batch_shape``."""
        return self._black_cells().shape[0] * self.side**2

    def _half(self) -> torch.Tensor:
        return (0.5 * self.num_squares) * self.side[..., None]

    def _inside(self, value: torch.Tensor) -> torch.Tensor:
        """Whether ``value`` lies on a closed black square; shape ``value.shape[:-1]``."""
        u = (value + self._half()) / self.side[..., None]
        n = self.num_squares
        cands = []
        for c in (torch.floor(u), torch.ceil(u) - 1):  # the two cells a grid line touches
            ok = (c >= 0) & (c <= n - 1)
            cands.append((c, ok))
        inside = torch.zeros(u.shape[:-1], dtype=torch.bool, device=u.device)
        for cx, okx in cands:
            for cy, oky in cands:
                black = torch.remainder(cx[..., 0] + cy[..., 1], 2) == 0
                inside = inside | (okx[..., 0] & oky[..., 1] & black)
        return inside

    def sample(
        self,
        sample_shape: int | Sequence[int] | torch.Size = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw samples of shape ``(*sample_shape, *batch_shape, 2)``.

        Args:
            sample_shape: an int ``n`` or a shape.
            generator: optional ``torch.Generator`` on this distribution's device.
        """
        shape = _sample_shape(sample_shape) + self.batch_shape
        s = self.side
        with torch.no_grad():
            cells = self._black_cells().to(s.dtype)
            idx = torch.randint(cells.shape[0], shape, generator=generator, device=s.device)
            u = torch.rand(shape + (2,), generator=generator, dtype=s.dtype, device=s.device)
            x = (cells[idx] + u) * s[..., None] - self._half()
            if self.smoothing > 0:
                eps = torch.randn(shape + (2,), generator=generator, dtype=s.dtype, device=s.device)
                x = x + self.smoothing * eps
            return x

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-density, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        self._check_value(value)
        log_norm = -torch.log(self.area)
        if self.smoothing == 0:
            inside = self._inside(value)
            return torch.where(inside, log_norm, torch.full_like(log_norm, -math.inf))
        s = self.side[..., None, None]  # (*batch, 1, 1)
        lo = self._black_cells().to(s.dtype) * s - self._half()[..., None, :]  # (*batch, B, 2)
        x = value[..., None, :]
        a = (lo - x) / self.smoothing
        b = (lo + s - x) / self.smoothing
        return log_norm + torch.logsumexp(_log_ndtr_diff(a, b).sum(-1), -1)

    def expand(
        self, batch_shape: Sequence[int], _instance: Checkerboard | None = None
    ) -> Checkerboard:
        new = self._get_checked_instance(Checkerboard, _instance)
        batch_shape = torch.Size(batch_shape)
        new.side = self.side.expand(batch_shape)
        new.num_squares = self.num_squares
        new.smoothing = self.smoothing
        super(Checkerboard, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


#: Named default targets (used by ``pyro-lgm demo --target``).
TARGETS = {
    "moons": TwoMoons,
    "8gaussians": EightGaussians,
    "rings": Rings,
    "checkerboard": Checkerboard,
}
