r"""The four 2-D unnormalized densities of Rezende & Mohamed (2015), Table 1.

A target here is known only through its *potential* :math:`U`:
:math:`p(z) = e^{-U(z)} / Z` with an unknown normalizer :math:`Z = \int e^{-U(z)}\,dz`.
A model :math:`q` is fitted by minimizing the reverse Kullback-Leibler divergence, which
needs samples of :math:`q` only:

.. math::
    \mathrm{KL}(q \,\|\, p) = \mathbb E_{z \sim q}\big[\log q(z) + U(z)\big] + \log Z
    \;\ge\; 0.

The expectation is the variational free energy; :math:`\log Z` is a constant, computed here
on a grid (:func:`log_normalizer`) so that the divergence itself can be reported in nats.

The potentials, with :math:`z = (z_1, z_2)`:

.. math::
    w_1(z) &= \sin\!\big(\tfrac{2\pi z_1}{4}\big), \qquad
    w_2(z) = 3\, e^{-\frac12 \left(\frac{z_1 - 1}{0.6}\right)^2}, \qquad
    w_3(z) = 3\, \sigma\!\big(\tfrac{z_1 - 1}{0.3}\big), \\
    U_1(z) &= \tfrac12 \Big(\frac{\|z\| - 2}{0.4}\Big)^2
        - \log\!\Big(e^{-\frac12 \left(\frac{z_1 - 2}{0.6}\right)^2}
        + e^{-\frac12 \left(\frac{z_1 + 2}{0.6}\right)^2}\Big), \\
    U_2(z) &= \tfrac12 \Big(\frac{z_2 - w_1(z)}{0.4}\Big)^2, \\
    U_3(z) &= -\log\!\Big(e^{-\frac12 \left(\frac{z_2 - w_1(z)}{0.35}\right)^2}
        + e^{-\frac12 \left(\frac{z_2 - w_1(z) + w_2(z)}{0.35}\right)^2}\Big), \\
    U_4(z) &= -\log\!\Big(e^{-\frac12 \left(\frac{z_2 - w_1(z)}{0.4}\right)^2}
        + e^{-\frac12 \left(\frac{z_2 - w_1(z) + w_3(z)}{0.35}\right)^2}\Big),

with :math:`\sigma` the logistic sigmoid; sums of exponentials are evaluated with
``logsumexp``.

**U2-U4 need a confinement in** :math:`z_1`. They depend on :math:`z_1` only through the
bounded :math:`w_k`, so :math:`\int e^{-U}` diverges along :math:`z_1` and neither
:math:`Z` nor the divergence exists (the reverse-KL objective has no minimum: ``q`` can
always lower it by spreading along :math:`z_1`). The paper shows these densities on
:math:`[-4, 4]^2`. We make them proper with a Gaussian envelope in :math:`z_1`,

.. math::
    U_k^{(s)}(z) = U_k(z) + \tfrac12 (z_1 / s)^2,

with ``z1_scale`` :math:`s = 2` by default for U2-U4 (95% of the :math:`z_1` mass of U2
inside :math:`|z_1| \le 4`, the paper's window) and no envelope for U1, which is proper as
it is. ``z1_scale=None`` gives the paper's raw potential (fine to plot or to evaluate, but
:func:`log_normalizer` then refuses: its grid cannot hold the mass).

References:
    Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
    ICML 2015, Table 1 and Figure 3. https://arxiv.org/abs/1505.05770

Example:
    >>> import torch
    >>> U = energy("U1")
    >>> U(torch.tensor([[0.0, 0.0], [0.0, 2.0]]))
    tensor([17.3624,  4.8624])
    >>> round(log_normalizer(U), 4)
    1.8775
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.distributions import Distribution, TransformedDistribution

from pyro_lgm.errors import check_finite

__all__ = [
    "ENERGIES",
    "Energy",
    "KLEstimate",
    "edge_mass",
    "energy",
    "log_normalizer",
    "reverse_kl",
    "rsample_with_log_prob",
]

#: Names of the potentials, in the paper's order.
ENERGIES = ("U1", "U2", "U3", "U4")

#: Default ``z1_scale`` of each potential (see the module docstring).
DEFAULT_Z1_SCALE = {"U1": None, "U2": 2.0, "U3": 2.0, "U4": 2.0}

#: Default grid of :func:`log_normalizer`: the box ``[-12, 12]^2`` in 1200 x 1200 cells
#: (cell side 0.02, 1/17 of the narrowest width 0.35 of the potentials).
DEFAULT_BOUND = 12.0
DEFAULT_RESOLUTION = 1200


def _check_z(z: object) -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z: expected a torch.Tensor of shape (..., 2), got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"z: expected a floating-point tensor, got dtype {z.dtype}")
    if z.dim() < 1 or z.shape[-1] != 2:
        raise ValueError(f"z: expected shape (..., 2), got {tuple(z.shape)}")
    return z


def _half_square(x: torch.Tensor, scale: float) -> torch.Tensor:
    return 0.5 * (x / scale) ** 2


def _w1(z1: torch.Tensor) -> torch.Tensor:
    return torch.sin(0.5 * math.pi * z1)


def _w2(z1: torch.Tensor) -> torch.Tensor:
    return 3.0 * torch.exp(-_half_square(z1 - 1.0, 0.6))


def _w3(z1: torch.Tensor) -> torch.Tensor:
    return 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)


def _neg_log_sum_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``-log(exp(-a) + exp(-b))``, stable for large ``a`` and ``b``."""
    return -torch.logaddexp(-a, -b)


def _u1(z: torch.Tensor) -> torch.Tensor:
    z1 = z[..., 0]
    ring = _half_square(torch.linalg.vector_norm(z, dim=-1) - 2.0, 0.4)
    return ring + _neg_log_sum_exp(_half_square(z1 - 2.0, 0.6), _half_square(z1 + 2.0, 0.6))


def _u2(z: torch.Tensor) -> torch.Tensor:
    return _half_square(z[..., 1] - _w1(z[..., 0]), 0.4)


def _u3(z: torch.Tensor) -> torch.Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    return _neg_log_sum_exp(_half_square(d, 0.35), _half_square(d + _w2(z1), 0.35))


def _u4(z: torch.Tensor) -> torch.Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    d = z2 - _w1(z1)
    return _neg_log_sum_exp(_half_square(d, 0.4), _half_square(d + _w3(z1), 0.35))


_POTENTIALS = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}

_DEFAULT = object()  # sentinel: "the potential's default z1_scale"


class Energy:
    r"""A potential :math:`U` of Rezende & Mohamed (2015), Table 1, as a callable.

    ``U(z)`` maps ``(..., 2)`` points to ``(...)`` energies; the target density is
    :math:`p(z) \propto e^{-U(z)}`. See the module docstring for the four formulas and for
    the envelope :math:`\frac12 (z_1/s)^2` that makes U2-U4 normalizable.

    Args:
        name: ``"U1"``, ``"U2"``, ``"U3"`` or ``"U4"``.
        z1_scale: :math:`s > 0` of the envelope, or ``None`` for none (the paper's raw
            potential). Default: ``None`` for U1 and 2.0 for U2-U4.

    Example:
        >>> import torch
        >>> U = Energy("U2")
        >>> U(torch.zeros(3, 2))
        tensor([0., 0., 0.])
        >>> U(torch.tensor([4.0, 0.0]))  # the envelope: (4 / 2)^2 / 2
        tensor(2.)
    """

    def __init__(self, name: str, z1_scale: float | None | object = _DEFAULT) -> None:
        if not isinstance(name, str) or name not in _POTENTIALS:
            raise ValueError(f"name: expected one of {', '.join(ENERGIES)}, got {name!r}")
        if z1_scale is _DEFAULT:
            z1_scale = DEFAULT_Z1_SCALE[name]
        if z1_scale is not None:
            if isinstance(z1_scale, bool) or not isinstance(z1_scale, (int, float)):
                raise ValueError(f"z1_scale: expected a positive float or None, got {z1_scale!r}")
            if not (math.isfinite(z1_scale) and z1_scale > 0):
                raise ValueError(f"z1_scale: expected a positive float or None, got {z1_scale!r}")
            z1_scale = float(z1_scale)
        self.name = name
        self.z1_scale = z1_scale
        self._potential = _POTENTIALS[name]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """The energy :math:`U(z)`, shape ``z.shape[:-1]``, same dtype and device as ``z``."""
        z = _check_z(z)
        u = self._potential(z)
        if self.z1_scale is not None:
            u = u + _half_square(z[..., 0], self.z1_scale)
        return u

    def log_prob_unnormalized(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`-U(z)`, the target's log-density up to the constant :math:`\\log Z`."""
        return -self(z)

    def __repr__(self) -> str:
        return f"Energy({self.name!r}, z1_scale={self.z1_scale!r})"


def energy(name: str, z1_scale: float | None | object = _DEFAULT) -> Energy:
    """The potential ``name`` (``"U1"`` ... ``"U4"``) as an :class:`Energy`.

    Example:
        >>> energy("U3")
        Energy('U3', z1_scale=2.0)
    """
    return Energy(name, z1_scale)


# ----------------------------------------------------------------------------- the grid
def _check_grid_args(bound: object, resolution: object) -> tuple[float, int]:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise ValueError(f"bound: expected a positive float, got {bound!r}")
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound: expected a positive float, got {bound!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 10:
        raise ValueError(f"resolution: expected an int >= 10, got {resolution!r}")
    return float(bound), resolution


def _check_energy(U: object) -> None:
    if not callable(U):
        raise ValueError(f"U: expected a callable mapping (..., 2) tensors to energies, got {U!r}")


def _grid_log_mass(U: object, bound: float, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint rule on ``[-bound, bound]^2``: log of each cell's mass and cell centres.

    Returns ``(log_mass, centres)`` of shapes ``(n, n)`` and ``(n,)``, in float64 on the CPU;
    ``log_mass[i, j] = -U(c_i, c_j) + 2 log h`` with cell side ``h = 2 bound / n``.
    """
    _check_energy(U)
    bound, n = _check_grid_args(bound, resolution)
    h = 2 * bound / n
    c = -bound + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    rows = []
    with torch.no_grad():
        for block in c.split(max(1, 2**18 // n)):  # a few MB of points at a time
            z = torch.stack(torch.meshgrid(block, c, indexing="ij"), -1)
            u = U(z)
            if not isinstance(u, torch.Tensor) or u.shape != z.shape[:-1]:
                got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
                raise ValueError(f"U: expected energies of shape {tuple(z.shape[:-1])}, got {got}")
            rows.append(-u.double())
    log_mass = torch.cat(rows) + 2 * math.log(h)
    if bool(torch.isnan(log_mass).any()) or bool(torch.isposinf(log_mass).any()):
        raise ValueError("U: returned NaN or -inf energies on the grid")
    return log_mass, c


def edge_mass(
    U: object, bound: float = DEFAULT_BOUND, resolution: int = DEFAULT_RESOLUTION
) -> float:
    r"""Fraction of the grid's mass in the band :math:`\max(|z_1|, |z_2|) > 0.9\,` ``bound``.

    A check that the box ``[-bound, bound]^2`` holds essentially all of
    :math:`e^{-U}`: for a density that decays away from the origin, the mass *outside* the
    box is smaller than the mass of this band inside it. The default box leaves less than
    1e-6 in the band for every default potential (U1: below 1e-30).

    Args:
        U: a callable mapping ``(..., 2)`` float64 tensors to ``(...)`` energies.
        bound: half-width of the box.
        resolution: cells per side.

    Example:
        >>> edge_mass(energy("U1")) < 1e-12
        True
        >>> edge_mass(energy("U2", z1_scale=None), bound=4.0) > 0.05  # the raw U2 is improper
        True
    """
    log_mass, c = _grid_log_mass(U, bound, resolution)
    band = c.abs() > 0.9 * bound
    outer = band[:, None] | band[None, :]
    total = torch.logsumexp(log_mass.flatten(), 0)
    if not bool(outer.any()):
        return 0.0
    return math.exp(float(torch.logsumexp(log_mass[outer], 0) - total))


def log_normalizer(
    U: object,
    bound: float = DEFAULT_BOUND,
    resolution: int = DEFAULT_RESOLUTION,
    max_edge_mass: float | None = 1e-6,
) -> float:
    r""":math:`\log Z = \log \int e^{-U(z)}\,dz` by the midpoint rule on a grid.

    The box is ``[-bound, bound]^2`` split into ``resolution`` x ``resolution`` square
    cells; :math:`Z \approx h^2 \sum_{ij} e^{-U(c_i, c_j)}` with cell side
    :math:`h = 2\,\text{bound} / \text{resolution}` and cell centres :math:`c_i`, summed with
    ``logsumexp`` in float64. For the smooth potentials here the rule converges fast:
    the default grid (``[-12, 12]^2``, 1200 cells per side, :math:`h = 0.02`) agrees with a
    grid twice as fine to about 1e-12 (``tests/test_energies.py``).

    Args:
        U: a callable mapping ``(..., 2)`` float64 tensors to ``(...)`` energies, e.g.
            :func:`energy` ``("U1")``.
        bound: half-width of the box (default 10).
        resolution: cells per side (default 1000).
        max_edge_mass: raise when more than this fraction of the grid's mass lies in the
            band near the box's edge (:func:`edge_mass`), i.e. when the box cannot hold the
            density; ``None`` skips the check.

    Returns:
        :math:`\log Z` as a Python float.

    Example:
        >>> round(log_normalizer(energy("U2")), 4)
        1.6147
    """
    log_mass, c = _grid_log_mass(U, bound, resolution)
    log_z = float(torch.logsumexp(log_mass.flatten(), 0))
    if max_edge_mass is not None:
        band = c.abs() > 0.9 * bound
        outer = band[:, None] | band[None, :]
        frac = math.exp(float(torch.logsumexp(log_mass[outer], 0)) - log_z)
        if frac > max_edge_mass:
            raise ValueError(
                f"bound: the box [-{bound:g}, {bound:g}]^2 does not hold the density: "
                f"{frac:.3g} of its mass lies within 10% of the edge (max_edge_mass="
                f"{max_edge_mass:g}); use a larger bound, or confine U (e.g. z1_scale)"
            )
    return log_z


# ------------------------------------------------------------------------ reverse KL
def _sum_rightmost(x: torch.Tensor, dims: int) -> torch.Tensor:
    return x.sum(tuple(range(-dims, 0))) if dims > 0 else x


def _check_num_samples(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{name}: expected an int >= 2, got {n!r}")
    return n


def rsample_with_log_prob(
    q: Distribution, sample_shape: Sequence[int] | torch.Size = torch.Size()
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Reparametrized samples of ``q`` and their log-densities, in one forward pass.

    For a :class:`~torch.distributions.TransformedDistribution` (every
    :class:`~pyro_lgm.models.Flow`'s distribution) the log-density is accumulated along the
    forward pass, :math:`\log q(x) = \log q_0(z) - \sum_k \log|\det J_{f_k}|`, so no
    transform is inverted (planar layers have no closed-form inverse). Otherwise it is
    ``q.rsample`` then ``q.log_prob``. Gradients flow to ``q``'s parameters through both.

    Args:
        q: a distribution with ``rsample``.
        sample_shape: shape of the sample batch.

    Returns:
        ``(x, log_q)`` of shapes ``sample_shape + batch_shape + event_shape`` and
        ``sample_shape + batch_shape``.

    Example:
        >>> import torch
        >>> from pyro_lgm.models import planar_flow
        >>> _ = torch.manual_seed(0)
        >>> q = planar_flow(2, num_layers=2)()
        >>> x, log_q = rsample_with_log_prob(q, (4,))
        >>> torch.allclose(log_q, q.log_prob(x), atol=1e-5)
        True
    """
    if not isinstance(q, Distribution):
        raise ValueError(f"q: expected a torch Distribution, got {type(q).__name__}")
    if not q.has_rsample:
        raise ValueError(f"q: {type(q).__name__} has no reparametrized sampler (rsample)")
    sample_shape = torch.Size(sample_shape)
    if not isinstance(q, TransformedDistribution):
        x = q.rsample(sample_shape)
        return x, q.log_prob(x)
    # event dims on the input side of every transform, walking back from q's event shape
    dims = []
    d = len(q.event_shape)
    for t in reversed(q.transforms):
        d += t.domain.event_dim - t.codomain.event_dim
        dims.append(d)
    dims.reverse()
    base = q.base_dist
    x = base.rsample(sample_shape)
    log_q = _sum_rightmost(base.log_prob(x), d - len(base.event_shape))
    for t, d_in in zip(q.transforms, dims):
        y = t(x)
        log_q = log_q - _sum_rightmost(t.log_abs_det_jacobian(x, y), d_in - t.domain.event_dim)
        x = y
    return x, log_q


class KLEstimate(NamedTuple):
    """A Monte Carlo estimate of KL(q || p) in nats."""

    kl: float  #: the estimate
    stderr: float  #: its standard error (of the mean over the samples)
    log_z: float  #: the log-normalizer used
    free_energy: float  #: the estimate of E_q[log q + U] (= kl - log_z)


def reverse_kl(
    q: Distribution,
    U: object,
    num_samples: int = 100_000,
    log_z: float | None = None,
    batch_size: int = 65_536,
) -> KLEstimate:
    r"""Estimate :math:`\mathrm{KL}(q \,\|\, p)` for :math:`p = e^{-U}/Z` from samples of ``q``.

    .. math::
        \widehat{\mathrm{KL}} = \frac1N \sum_{n=1}^N \big[\log q(z_n) + U(z_n)\big] + \log Z,
        \qquad z_n \sim q,

    unbiased, with standard error :math:`\mathrm{sd}/\sqrt N` of the summands. It is zero
    with zero variance when :math:`q = p`. Computed without gradients, in chunks of
    ``batch_size`` samples, summed in float64.

    Args:
        q: a distribution over ``(2,)`` events with ``rsample`` (e.g. ``flow()``) and an
            empty batch shape.
        U: the potential, a callable mapping ``(..., 2)`` tensors to energies.
        num_samples: :math:`N`.
        log_z: :math:`\log Z`; default: :func:`log_normalizer` ``(U)`` on its default grid.
        batch_size: samples per chunk.

    Returns:
        a :class:`KLEstimate` ``(kl, stderr, log_z, free_energy)``.

    Example:
        >>> import math, torch
        >>> from torch.distributions import MultivariateNormal
        >>> q = MultivariateNormal(torch.zeros(2), torch.eye(2))
        >>> U = lambda z: 0.5 * (z**2).sum(-1)  # the same Gaussian, unnormalized
        >>> est = reverse_kl(q, U, num_samples=1000, log_z=math.log(2 * math.pi))
        >>> abs(est.kl) < 1e-6 and est.stderr < 1e-6
        True
    """
    _check_energy(U)
    num_samples = _check_num_samples("num_samples", num_samples)
    batch_size = _check_num_samples("batch_size", batch_size)
    if not isinstance(q, Distribution) or tuple(q.event_shape) != (2,) or q.batch_shape:
        shape = (tuple(q.batch_shape), tuple(q.event_shape)) if isinstance(q, Distribution) else q
        raise ValueError(
            "q: expected a Distribution with batch_shape () and event_shape (2,), got "
            f"{type(q).__name__} {shape}"
        )
    if log_z is None:
        log_z = log_normalizer(U)
    if isinstance(log_z, bool) or not isinstance(log_z, (int, float)) or not math.isfinite(log_z):
        raise ValueError(f"log_z: expected a finite float, got {log_z!r}")
    parts = []
    with torch.no_grad():
        left = num_samples
        while left > 0:
            n = min(left, batch_size)
            z, log_q = rsample_with_log_prob(q, (n,))
            parts.append((log_q + U(z)).double())
            left -= n
    terms = torch.cat(parts)
    check_finite("log q + U", terms, always=True)
    free = float(terms.mean())
    se = float(terms.std()) / math.sqrt(num_samples)
    return KLEstimate(free + float(log_z), se, float(log_z), free)
