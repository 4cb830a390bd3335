"""Tests of the 2-D toy densities (pyro_lgm.data.toy)."""

import math

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.datasets import make_moons

from pyro_lgm.data import Checkerboard, EightGaussians, Rings, TwoMoons
from pyro_lgm.data.toy import TARGETS, _log_ndtr_diff
from pyro_lgm.testing import assert_normalized
from tests.cases import examples

F64 = torch.float64


def _defaults():
    """The default targets in float64, without validation (densities are evaluated on grids
    that leave the support of the sharp checkerboard)."""
    kw = dict(validate_args=False)
    return {
        "moons": TwoMoons(torch.tensor(0.1, dtype=F64), **kw),
        "8gaussians": EightGaussians(torch.tensor(2.0, dtype=F64), 0.2, **kw),
        "rings": Rings(torch.tensor(1.0, dtype=F64), 0.08, **kw),
        "checkerboard": Checkerboard(4, torch.tensor(1.0, dtype=F64), **kw),
        "checkerboard_smooth": Checkerboard(4, torch.tensor(1.0, dtype=F64), smoothing=0.1, **kw),
    }


# Boxes holding all but a negligible mass, with edges on multiples of 0.5 (the board's
# square edges fall on bin edges, so the sharp board's bin probabilities are exact).
BOXES = {
    "moons": (-2.0, 2.0),
    "8gaussians": (-3.5, 3.5),
    "rings": (-3.5, 3.5),
    "checkerboard": (-2.5, 2.5),
    "checkerboard_smooth": (-2.5, 2.5),
}


# (the default Rings, 384 components, is integrated with fewer components by tests/cases/toy.py)
@pytest.mark.parametrize("name", [n for n in BOXES if n != "rings"])
def test_default_targets_integrate_to_one(name):
    d = _defaults()[name]
    lo, hi = BOXES[name]
    h = 0.02
    # grid points half a step away from every multiple of 0.25 (the board's edges)
    n = round((hi - lo) / h) + 2
    b = (lo - h / 2, lo - h / 2 + (n - 1) * h)
    assert_normalized(d, bounds=[b, b], num_points=n, atol=1e-4)


def _bin_probabilities(d, lo, hi, bins, sub=16):
    """P(bin) for a bins x bins histogram on [lo, hi]^2, by a sub x sub midpoint rule."""
    w = (hi - lo) / (bins * sub)
    c = lo + w * (torch.arange(bins * sub, dtype=F64) + 0.5)
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], -1)
    dens = d.log_prob(pts).exp().reshape(bins, sub, bins, sub)
    return dens.sum((1, 3)) * w * w


def _chi_square_pvalue(d_density, samples, lo, hi, bins=10):
    """p-value of a histogram of ``samples`` under ``d_density``.

    Bins with an expected count below 5 (and the outside of the box) are pooled; when the
    pool expects fewer than 5 counts, its count is tested against a Poisson tail instead,
    and the smaller p-value is returned.
    """
    probs = _bin_probabilities(d_density, lo, hi, bins)
    x = samples.double()
    counts = torch.histogramdd(x, bins=[bins, bins], range=[lo, hi, lo, hi]).hist
    n = x.shape[0]
    observed = torch.cat([counts.flatten(), torch.tensor([n - counts.sum()])])
    p_out = max(0.0, 1.0 - float(probs.sum()))
    expected = torch.cat([probs.flatten(), torch.tensor([p_out])]) * n
    low = expected < 5
    rest_o, rest_e = float(observed[low].sum()), float(expected[low].sum())
    obs, exp = observed[~low], expected[~low]
    p_rest = 1.0
    if rest_e >= 5:
        obs = torch.cat([obs, torch.tensor([rest_o])])
        exp = torch.cat([exp, torch.tensor([rest_e])])
    elif rest_o > 0:
        p_rest = float(stats.poisson.sf(rest_o - 1, rest_e)) if rest_e > 0 else 0.0
    exp = exp * obs.sum() / exp.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    return min(float(stats.chi2.sf(chi2, len(obs) - 1)), p_rest)


@pytest.mark.parametrize("name", list(BOXES))
def test_samples_follow_the_density(name):
    d = _defaults()[name]
    lo, hi = BOXES[name]
    x = d.sample((20000,), generator=torch.Generator().manual_seed(1))
    assert _chi_square_pvalue(d, x, lo, hi) > 1e-4


def test_chi_square_detects_a_wrong_density():
    # the histogram test is sensitive: samples with 30% more noise are rejected
    x = TwoMoons(torch.tensor(0.13, dtype=F64)).sample(
        (20000,), generator=torch.Generator().manual_seed(1)
    )
    assert _chi_square_pvalue(_defaults()["moons"], x, -2.0, 2.0) < 1e-6


def test_two_moons_centres_are_sklearn_moons_and_log_prob_is_the_mixture():
    m = 50
    d = TwoMoons(torch.tensor(0.15, dtype=F64), points_per_moon=m)
    centres, _ = make_moons(n_samples=2 * m, shuffle=False, noise=None)
    centres = torch.from_numpy(centres) - torch.tensor([0.5, 0.25], dtype=F64)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(2 * m, dtype=F64)),
        torch.distributions.Independent(torch.distributions.Normal(centres, 0.15), 1),
    )
    x = torch.randn(100, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-12)


def test_eight_gaussians_and_rings_log_prob_closed_form():
    r, s = 1.7, 0.3
    d = EightGaussians(torch.tensor(r, dtype=F64), s)
    a = torch.arange(8, dtype=F64) * math.pi / 4
    c = r * torch.stack([a.cos(), a.sin()], -1)
    x = torch.randn(50, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2
    dens = torch.exp(-((x[:, None] - c) ** 2).sum(-1) / (2 * s * s)) / (2 * math.pi * s * s)
    torch.testing.assert_close(d.log_prob(x), dens.mean(-1).log(), rtol=1e-12, atol=1e-12)

    rings = Rings(torch.tensor(0.5, dtype=F64), 0.1, num_rings=2, points_per_ring=3)
    cs = []
    for j, n in ((1, 3), (2, 6)):
        a = torch.arange(n, dtype=F64) * 2 * math.pi / n
        cs.append(0.5 * j * torch.stack([a.cos(), a.sin()], -1))
    c = torch.cat(cs)
    log_n = -((x[:, None] - c) ** 2).sum(-1) / 0.02 - math.log(2 * math.pi * 0.01)
    ref = torch.logsumexp(log_n, -1) - math.log(9)
    torch.testing.assert_close(rings.log_prob(x), ref, rtol=1e-12, atol=1e-12)


def test_checkerboard_sharp_values_and_support():
    d = Checkerboard(4, torch.tensor(0.5, dtype=F64), validate_args=False)
    # board [-1, 1]^2, squares of side 0.5; (i + j) even is black; area 8 * 0.25 = 2
    black = torch.tensor([[-0.75, -0.75], [-0.25, -0.25], [0.75, 0.75], [0.25, -0.75]], dtype=F64)
    white = torch.tensor([[-0.25, -0.75], [0.75, -0.75], [1.5, 0.0], [0.0, -3.0]], dtype=F64)
    torch.testing.assert_close(d.log_prob(black), torch.full((4,), -math.log(2.0), dtype=F64))
    assert torch.all(d.log_prob(white) == -math.inf)
    # the support is the closed black squares: edges and corners belong to it
    edges = torch.tensor([[-1.0, -1.0], [-0.5, -0.75], [0.0, 0.0], [1.0, 1.0]], dtype=F64)
    assert d.support.check(edges).all()
    assert not d.support.check(white).any()
    strict = Checkerboard(4, torch.tensor(0.5, dtype=F64), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        strict.log_prob(white)


def _mp_ndtr_diff(a, b):
    """Phi(b) - Phi(a) in multiprecision; upper-tail differences use Phi(-a) - Phi(-b)
    (60 digits cannot resolve 1 - Phi(270))."""
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a > 0:
        return mpmath.ncdf(-a) - mpmath.ncdf(-b)
    return mpmath.ncdf(b) - mpmath.ncdf(a)


def _mp_log_ndtr_diff(a, b):
    """High-precision reference of log(Phi(b) - Phi(a))."""
    with mpmath.workdps(60):
        return float(mpmath.log(_mp_ndtr_diff(a, b)))


def _mp_checkerboard_log_prob(x, n, side, tau):
    """High-precision reference of the smoothed board's log-density at one point."""
    with mpmath.workdps(60):
        half = mpmath.mpf(n) * side / 2
        total = mpmath.mpf(0)
        blacks = 0
        for i in range(n):
            for j in range(n):
                if (i + j) % 2:
                    continue
                blacks += 1
                term = mpmath.mpf(1)
                for c, k in ((x[0], i), (x[1], j)):
                    lo = -half + k * mpmath.mpf(side)
                    hi = lo + side
                    term *= _mp_ndtr_diff((lo - c) / tau, (hi - c) / tau)
                total += term
        return float(mpmath.log(total / (blacks * mpmath.mpf(side) ** 2)))


def test_checkerboard_smoothing_converges_and_is_exact_in_the_tails():
    x = torch.tensor([[-1.5, -1.5], [0.5, 0.5], [-0.5, -1.5]], dtype=F64)
    sharp = Checkerboard(4, torch.tensor(1.0, dtype=F64), validate_args=False).log_prob(x)
    smooth = Checkerboard(4, torch.tensor(1.0, dtype=F64), smoothing=1e-3).log_prob(x)
    torch.testing.assert_close(smooth[:2], sharp[:2], rtol=0, atol=1e-12)
    assert smooth[2] < -1e5  # a white square's centre: essentially zero density
    pts = [(3.0, 0.0), (10.0, 0.3), (40.0, -2.0), (-25.0, 25.0), (0.5, 0.5), (1.99, -0.01)]
    d = Checkerboard(4, torch.tensor(1.0, dtype=F64), smoothing=0.1)
    got = d.log_prob(torch.tensor(pts, dtype=F64))
    ref = torch.tensor([_mp_checkerboard_log_prob(p, 4, 1.0, 0.1) for p in pts], dtype=F64)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(25), deadline=None)
@given(st.floats(-40, 40), st.floats(1e-3, 30))
def test_log_ndtr_diff_is_accurate_in_both_tails(a, width):
    b = a + width
    got = _log_ndtr_diff(torch.tensor([a], dtype=F64), torch.tensor([b], dtype=F64)).item()
    ref = _mp_log_ndtr_diff(a, b)
    assert math.isfinite(got)
    assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref))


def test_shapes_dtype_device_and_expand():
    d = TwoMoons(torch.tensor([[0.1], [0.2]], dtype=F64))
    assert d.batch_shape == (2, 1) and d.event_shape == (2,)
    assert d.sample(5).shape == (5, 2, 1, 2)
    assert d.sample((3, 4)).dtype == F64
    x = torch.zeros(7, 1, 3, 2, dtype=F64)
    assert d.log_prob(x).shape == (7, 2, 3)
    e = d.expand((4, 2, 3))
    assert e.batch_shape == (4, 2, 3) and e.sample().shape == (4, 2, 3, 2)
    for dist in (
        EightGaussians(torch.ones(3), 0.3),
        Rings(torch.ones(3), 0.1),
        Checkerboard(2, torch.ones(3)),
        Checkerboard(2, torch.ones(3), smoothing=0.2),
    ):
        assert dist.batch_shape == (3,)
        s = dist.sample((5,))
        assert s.shape == (5, 3, 2) and s.dtype == torch.float32
        assert torch.isfinite(dist.log_prob(s)).all()
        assert dist.expand((2, 3)).log_prob(s[:, None]).shape == (5, 2, 3)


def test_generator_makes_sampling_reproducible():
    for cls in TARGETS.values():
        d = cls()
        a = d.sample(100, generator=torch.Generator().manual_seed(3))
        b = d.sample(100, generator=torch.Generator().manual_seed(3))
        c = d.sample(100, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: TwoMoons(0.0), "noise"),
        (lambda: TwoMoons(float("nan")), "noise"),
        (lambda: TwoMoons(0.1, points_per_moon=0), "points_per_moon"),
        (lambda: TwoMoons(0.1, points_per_moon=True), "points_per_moon"),
        (lambda: EightGaussians(-1.0), "radius"),
        (lambda: EightGaussians(1.0, torch.tensor([0.1, -0.1])), "noise"),
        (lambda: Rings(num_rings=0), "num_rings"),
        (lambda: Rings(radius=float("inf")), "radius"),
        (lambda: Checkerboard(0), "num_squares"),
        (lambda: Checkerboard(4, side=torch.tensor(1)), "side"),
        (lambda: Checkerboard(4, smoothing=-0.1), "smoothing"),
        (lambda: Checkerboard(4, smoothing="0.1"), "smoothing"),
    ],
)
def test_bad_hyper_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("cls", list(TARGETS.values()))
def test_bad_values(cls):
    d = cls(validate_args=True)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="value"):
        d.log_prob([[0.0, 0.0]])
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="sample_shape"):
        d.sample(-1)
