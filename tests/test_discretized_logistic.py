"""DiscretizedLogisticMixture: normalization in every regime, reference values, the channel
form's conditionals, sampling from the pmf, shapes and bad input."""

import itertools
import math

import pytest
import torch

from pyro_lgm.distributions import DiscretizedLogisticMixture
from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.testing import assert_normalized

DTYPES = [torch.float32, torch.float64]
MUS = [-20.0, -1.0, 0.0, 0.37, 1.0, 20.0]
LOG_SCALES = [-30.0, -15.0, -7.0, -3.0, 0.0, 3.0, 5.0]  # -30 is below the clamp (-16)


def _regimes(k: int, peaked: bool, dtype, seed: int = 0):
    """A batch over MUS x LOG_SCALES: ``(logits, loc, log_scale)`` of shape ``(R, k)``,
    components spread around the regime's mean and log-scale."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(list(itertools.product(MUS, LOG_SCALES)), dtype=torch.float64)
    r = grid.shape[0]
    spread = float(k > 1)
    loc = grid[:, :1] + 0.3 * spread * torch.randn(r, k, generator=g, dtype=torch.float64)
    log_scale = grid[:, 1:] + 0.5 * spread * torch.randn(r, k, generator=g, dtype=torch.float64)
    logits = (30.0 if peaked else 0.1) * torch.randn(r, k, generator=g, dtype=torch.float64)
    return logits.to(dtype), loc.to(dtype), log_scale.to(dtype)


def _reference_log_pmf(logits, loc, log_scale, bits):
    """``(2^bits, *batch)`` log-pmf in float64 by the plain formula: the logistic CDF
    (a sigmoid) at the bin edges, subtracted, the edge bins taking the tails.

    Independent of the library's code; accurate where a bin's mass is not tiny (the
    subtraction loses ``eps / p`` relative)."""
    logits, loc, log_scale = (t.double() for t in (logits, loc, log_scale))
    n = 2**bits - 1
    v = torch.arange(n + 1, dtype=torch.float64).reshape(-1, *([1] * loc.dim()))
    x = 2 * v / n - 1
    s = log_scale.clamp(min=DiscretizedLogisticMixture.LOG_SCALE_MIN).exp()
    upper = torch.sigmoid((x + 1 / n - loc) / s)
    lower = torch.sigmoid((x - 1 / n - loc) / s)
    upper = torch.where(v == n, torch.ones_like(upper), upper)
    lower = torch.where(v == 0, torch.zeros_like(lower), lower)
    p = ((upper - lower) * torch.softmax(logits, -1)).sum(-1)
    return p.log()


# -- normalization --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("peaked", [False, True], ids=["flat", "peaked"])
def test_normalized_in_every_regime(dtype, k, peaked):
    # |log Z| <= 1e-4 (float32) / 1e-8 (float64) over all 256 values; measured worst over
    # this grid: 2.5e-7 and 1.1e-15
    d = DiscretizedLogisticMixture(*_regimes(k, peaked, dtype), bits=8)
    assert d.batch_shape == (len(MUS) * len(LOG_SCALES),)
    assert_normalized(d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalized_16_bits(dtype):
    mus = torch.tensor([[-20.0], [0.37], [1.0], [20.0]]).repeat(1, 3).flatten()
    log_scales = torch.tensor([-12.0, -7.0, 5.0]).repeat(4)
    d = DiscretizedLogisticMixture(
        torch.zeros(12, 1, dtype=dtype),
        mus[:, None].to(dtype),
        log_scales[:, None].to(dtype),
        bits=16,
    )
    assert_normalized(d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_normalized_few_bits(dtype, bits):
    d = DiscretizedLogisticMixture(*_regimes(3, False, dtype, seed=1), bits=bits)
    assert_normalized(d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("with_coeffs", [True, False], ids=["coeffs", "independent"])
def test_channel_form_normalized_exhaustively(dtype, bits, with_coeffs):
    g = torch.Generator().manual_seed(bits)
    rows = list(itertools.product([-20.0, 0.0, 0.37, 20.0], [-15.0, -3.0, 0.0, 5.0]))
    r, k = len(rows), 3
    centre = torch.tensor(rows, dtype=torch.float64)
    loc = centre[:, 0, None, None] + torch.randn(r, 3, k, generator=g, dtype=torch.float64)
    log_scale = centre[:, 1, None, None] + 0.5 * torch.randn(r, 3, k, generator=g).double()
    logits = 10 * torch.randn(r, k, generator=g, dtype=torch.float64)
    coeffs = 3 * torch.randn(r, 3, k, generator=g, dtype=torch.float64) if with_coeffs else None
    d = DiscretizedLogisticMixture(
        logits.to(dtype),
        loc.to(dtype),
        log_scale.to(dtype),
        coeffs=None if coeffs is None else coeffs.to(dtype),
        bits=bits,
    )
    assert d.event_shape == (3,) and d.batch_shape == (r,)
    assert_normalized(d)  # (2^bits)^3 = 64 or 512 points per batch element


def test_huge_scale_uses_the_tiny_bin_form_and_stays_normalized():
    # log_scale = 100: the standardized bin width 2/N e^-100 underflows in float32, where the
    # bin mass is the density at the centre times the width (exact to w^2 / 24 relative)
    loc = torch.tensor([[0.0], [0.5], [-20.0]])
    log_scale = torch.full((3, 1), 100.0)
    d32 = DiscretizedLogisticMixture(torch.zeros(3, 1), loc, log_scale)
    d64 = DiscretizedLogisticMixture(torch.zeros(3, 1).double(), loc.double(), log_scale.double())
    v = torch.arange(256.0)[:, None]
    lp32, lp64 = d32.log_prob(v), d64.log_prob(v.double())
    assert torch.isfinite(lp32).all()
    # interior bins: about -106.2, float32 vs the float64 exact form
    torch.testing.assert_close(lp32[1:-1].double(), lp64[1:-1], atol=1e-4, rtol=1e-6)
    assert_normalized(d32)


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5])
def test_log_prob_matches_plain_float64_formula(dtype, k):
    """Against the subtraction of sigmoids in float64, where the bin mass is >= 1e-6.

    Error budget, ``u`` the unit roundoff of the dtype: both sides compute the standardized
    bin edges ``(x - mu) / s``, rounded to about ``u (1 + |mu|) / s``, and an edge moved by
    ``d`` moves a log-mass by at most ``d``; a log-mass ``l`` carries ``u (1 + |l|)`` of
    rounding; the reference's subtraction of sigmoids loses ``2^-53 / p``. The tolerance is
    8 times the sum (the worst measured ratio error / budget over these regimes is 2.5)."""
    logits, loc, log_scale = _regimes(k, False, dtype, seed=2)
    d = DiscretizedLogisticMixture(logits, loc, log_scale, bits=8)
    v = torch.arange(256, dtype=dtype)[:, None]
    lp = d.log_prob(v).double()
    ref = _reference_log_pmf(logits, loc, log_scale, 8)
    keep = ref > math.log(1e-6)
    assert keep.sum() > 1000
    u = torch.finfo(dtype).eps / 2
    s = log_scale.double().clamp(min=DiscretizedLogisticMixture.LOG_SCALE_MIN).exp()
    edges = u * ((1 + loc.double().abs()) / s).max(-1).values
    tol = 8 * (edges + u * (1 + ref.abs()) + 2**-53 / ref.exp())
    err = (lp - ref).abs()
    assert (err[keep] <= tol[keep]).all(), (err[keep] / tol[keep]).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_bins_are_the_tail_masses(dtype):
    loc = torch.tensor([-20.0, -1.0, 0.0, 0.37, 1.0, 20.0], dtype=torch.float64)
    log_scale = torch.tensor([5.0, -3.0, 0.0, -7.0, 3.0, -1.0], dtype=torch.float64)
    d = DiscretizedLogisticMixture(
        torch.zeros(6, 1, dtype=dtype), loc[:, None].to(dtype), log_scale[:, None].to(dtype)
    )
    s = log_scale.exp()
    h = 1 / 255
    # P(v = 0) = P(y < -1 + h); P(v = 255) = P(y > 1 - h), y ~ Logistic(loc, s); in logs
    # via log(sigmoid) = -softplus(-.), exact in float64 in both tails
    low = -torch.nn.functional.softplus(-((-1 + h - loc) / s))
    high = -torch.nn.functional.softplus((1 - h - loc) / s)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(d.log_prob(torch.zeros(6, dtype=dtype)).double(), low, **tol)
    torch.testing.assert_close(
        d.log_prob(torch.full((6,), 255.0, dtype=dtype)).double(), high, **tol
    )


def test_log_scale_is_clamped_at_the_minimum():
    m = DiscretizedLogisticMixture.LOG_SCALE_MIN
    assert m == -16.0
    v = torch.arange(256.0, dtype=torch.float64)
    loc = torch.tensor([[0.123]], dtype=torch.float64)
    low = DiscretizedLogisticMixture(
        torch.zeros(1, 1).double(), loc, torch.full((1, 1), -40.0).double()
    )
    at = DiscretizedLogisticMixture(torch.zeros(1, 1).double(), loc, torch.full((1, 1), m).double())
    assert torch.equal(low.log_prob(v[:, None]), at.log_prob(v[:, None]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite_in_extreme_regimes(dtype):
    logits, loc, log_scale = _regimes(5, True, dtype, seed=3)
    extra = torch.tensor([[100.0] * 5], dtype=dtype)  # the tiny-bin form
    loc = torch.cat([loc, torch.zeros(1, 5, dtype=dtype)]).requires_grad_()
    log_scale = torch.cat([log_scale, extra]).requires_grad_()
    logits = torch.cat([logits, torch.zeros(1, 5, dtype=dtype)]).requires_grad_()
    d = DiscretizedLogisticMixture(logits, loc, log_scale)
    d.log_prob(torch.arange(256, dtype=dtype)[:, None]).sum().backward()
    for t in (logits, loc, log_scale):
        assert torch.isfinite(t.grad).all()


def test_log_prob_accepts_integer_and_any_real_dtype():
    d = DiscretizedLogisticMixture(torch.zeros(2), torch.zeros(2), torch.zeros(2))
    v = torch.tensor([0, 17, 255])
    ref = d.log_prob(v.float())
    for x in (v, v.double(), v.to(torch.int16), v.half()):
        assert torch.equal(d.log_prob(x), ref)


# -- channel form -------------------------------------------------------------------------


def _channel_dist(dtype, batch=(4,), k=3, bits=8, seed=0, coeffs=True, validate_args=None):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*batch, *s, generator=g, dtype=torch.float64).to(dtype)
    return DiscretizedLogisticMixture(
        3 * r(k),
        0.5 * r(3, k),
        r(3, k) - 3,
        coeffs=r(3, k) if coeffs else None,
        bits=bits,
        validate_args=validate_args,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coeffs", [True, False])
def test_channel_conditionals_telescope(dtype, coeffs):
    d = _channel_dist(dtype, coeffs=coeffs)
    x = torch.randint(0, 256, (5, 1, 3), generator=torch.Generator().manual_seed(1)).to(dtype)
    cond = d.channel_conditionals(x)
    assert cond.event_shape == () and cond.batch_shape == (5, 4, 3)
    assert cond.num_components == 3 and cond.bits == 8
    tol = dict(atol=1e-4, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(cond.log_prob(x).sum(-1), d.log_prob(x), **tol)
    # the first channel's conditional is the marginal mixture of channel 0
    torch.testing.assert_close(
        torch.log_softmax(cond.logits[..., 0, :], -1),
        torch.log_softmax(d.logits, -1).expand(5, 4, 3),
        **tol,
    )


def test_channel_conditionals_are_normalized():
    d = _channel_dist(torch.float64, bits=3)
    x = torch.tensor([[3.0, 0.0, 7.0], [1.0, 5.0, 2.0]])[:, None].double()
    assert_normalized(d.channel_conditionals(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_channel_dependence(dtype):
    """Changing x_R by D moves G's mean by coeffs[0] * 2D/N and B's by coeffs[1] * 2D/N in
    every component; G's own value moves B's by coeffs[2] * 2D/N."""
    d = _channel_dist(dtype, batch=(), k=4)
    n = 255
    x = torch.tensor([10.0, 100.0, 200.0], dtype=dtype)
    x_r = x + torch.tensor([90.0, 0.0, 0.0], dtype=dtype)
    x_g = x + torch.tensor([0.0, -60.0, 0.0], dtype=dtype)
    base, moved_r, moved_g = (d.channel_conditionals(v).loc for v in (x, x_r, x_g))
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-14, rtol=1e-14)
    torch.testing.assert_close(moved_r[0] - base[0], torch.zeros_like(base[0]))
    torch.testing.assert_close(moved_r[1] - base[1], d.coeffs[0] * (2 * 90 / n), **tol)
    torch.testing.assert_close(moved_r[2] - base[2], d.coeffs[1] * (2 * 90 / n), **tol)
    torch.testing.assert_close(moved_g[:2], base[:2])
    torch.testing.assert_close(moved_g[2] - base[2], d.coeffs[2] * (2 * -60 / n), **tol)
    # the absolute means: loc + sum of coeffs times the values rescaled to [-1, 1]
    xs = 2 * x / n - 1
    torch.testing.assert_close(base[1], d.loc[1] + d.coeffs[0] * xs[0], **tol)
    torch.testing.assert_close(base[2], d.loc[2] + d.coeffs[1] * xs[0] + d.coeffs[2] * xs[1], **tol)


def test_channel_form_log_prob_is_the_component_sum():
    """log p(x) = logsumexp_k (log pi_k + sum_c log P_k(x_c | mean shifted by earlier x))."""
    base = _channel_dist(torch.float64, batch=(2,), k=2, seed=4)
    # scales around e^-1: every bin of x keeps a mass the plain reference resolves
    d = DiscretizedLogisticMixture(
        base.logits, base.loc, 0.3 * base.log_scale, coeffs=base.coeffs, bits=8
    )
    x = torch.tensor([[30.0, 140.0, 250.0], [0.0, 255.0, 128.0]], dtype=torch.float64)
    xs = 2 * x / 255 - 1
    mean = d.loc.clone()
    mean[:, 1] = d.loc[:, 1] + d.coeffs[:, 0] * xs[:, :1]
    mean[:, 2] = d.loc[:, 2] + d.coeffs[:, 1] * xs[:, :1] + d.coeffs[:, 2] * xs[:, 1:2]
    per = torch.stack(
        [
            _reference_log_pmf(
                torch.zeros(2, 1), mean[:, c, :, None], d.log_scale[:, c, :, None], 8
            )
            for c in range(3)
        ],
        1,
    )  # (256, 3, batch 2, K 2)
    picked = per.gather(0, x.long().T[None, :, :, None].expand(1, 3, 2, 2))[0]  # (3, 2, 2)
    ref = torch.logsumexp(torch.log_softmax(d.logits, -1) + picked.sum(0), -1)
    torch.testing.assert_close(d.log_prob(x), ref, atol=1e-10, rtol=1e-10)


# -- sampling -----------------------------------------------------------------------------


def _chi_square_ok(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """Pearson's statistic over cells with >= 5 expected counts (the rest pooled) and its
    1e-5 upper quantile by Wilson-Hilferty: a correct sampler with a fixed seed fails with
    probability 1e-5, a wrong one (a mean shifted by a bin, a mis-sized edge bin) is off by
    far more at 20000 draws."""
    n = counts.sum()
    expected = probs * n
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    stat = ((obs - exp)[keep] ** 2 / exp[keep]).sum().item()
    df = int(keep.sum()) - 1
    z = 4.265  # standard normal 1 - 1e-5 quantile
    q = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat, q


@pytest.mark.parametrize("dtype", DTYPES)
def test_samples_follow_the_pmf_scalar(dtype):
    torch.manual_seed(0)
    logits = torch.tensor([0.0, -1.0, 0.5], dtype=dtype)
    loc = torch.tensor([-0.8, 0.3, 1.4], dtype=dtype)  # the last one piles onto the top bin
    log_scale = torch.tensor([-1.5, -2.5, -1.0], dtype=dtype)
    d = DiscretizedLogisticMixture(logits, loc, log_scale, bits=3)
    x = d.sample((20000,))
    assert x.dtype == dtype and x.shape == (20000,)
    counts = torch.bincount(x.long(), minlength=8).double()
    probs = d.log_prob(torch.arange(8, dtype=dtype)).double().exp()
    stat, q = _chi_square_ok(counts, probs)
    assert stat < q, (stat, q)


def test_samples_follow_the_pmf_channels():
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(5)
    d = DiscretizedLogisticMixture(
        torch.tensor([0.0, 1.0]),
        0.6 * torch.randn(3, 2, generator=g),
        torch.full((3, 2), -1.0),
        coeffs=torch.tensor([[1.5, -1.0], [-0.7, 0.4], [0.9, 1.2]]),
        bits=2,
    )
    x = d.sample((20000,))
    assert x.shape == (20000, 3)
    idx = (x[:, 0] * 16 + x[:, 1] * 4 + x[:, 2]).long()
    counts = torch.bincount(idx, minlength=64).double()
    grid = torch.cartesian_prod(*[torch.arange(4.0)] * 3)  # same order as idx
    probs = d.log_prob(grid).double().exp()
    assert abs(probs.sum().item() - 1) < 1e-5
    stat, q = _chi_square_ok(counts, probs)
    assert stat < q, (stat, q)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 3)])
def test_sample_shapes_and_support(dtype, sample_shape):
    scalar = DiscretizedLogisticMixture(
        torch.zeros(2, 3, 4, dtype=dtype),
        torch.zeros(2, 3, 4, dtype=dtype),
        torch.full((2, 3, 4), 5.0, dtype=dtype),
        bits=5,
    )
    channels = _channel_dist(dtype, batch=(2,), bits=8)
    for d in (scalar, channels):
        x = d.sample(torch.Size(sample_shape))
        assert x.shape == (*sample_shape, *d.batch_shape, *d.event_shape)
        assert x.dtype == dtype
        assert bool(d.support.check(x).all())
        assert d.log_prob(x).shape == (*sample_shape, *d.batch_shape)


def test_extreme_samples_land_in_the_edge_bins():
    torch.manual_seed(2)
    d = DiscretizedLogisticMixture(
        torch.zeros(3, 1), torch.tensor([[-20.0], [20.0], [0.37]]), torch.full((3, 1), -15.0)
    )
    x = d.sample((100,))
    assert (x[:, 0] == 0).all() and (x[:, 1] == 255).all()
    assert (x[:, 2] == round((0.37 + 1) * 255 / 2)).all()  # a point mass on the nearest bin


# -- shapes, support, expand --------------------------------------------------------------


def test_support_and_constraints():
    scalar = DiscretizedLogisticMixture(torch.zeros(2), torch.zeros(2), torch.zeros(2), bits=4)
    assert scalar.event_shape == () and scalar.batch_shape == ()
    assert scalar.support.lower_bound == 0 and scalar.support.upper_bound == 15
    assert scalar.channels is None and scalar.num_values == 16
    assert "coeffs" not in scalar.arg_constraints
    channels = _channel_dist(torch.float64)
    sup = channels.support
    assert sup.reinterpreted_batch_ndims == 1
    assert sup.base_constraint.upper_bound == 255
    assert set(channels.arg_constraints) == {"logits", "loc", "log_scale", "coeffs"}
    assert not channels.has_rsample


def test_parameters_broadcast_over_batch():
    d = DiscretizedLogisticMixture(torch.zeros(1, 2), torch.zeros(3, 2), torch.zeros(1, 2))
    assert d.batch_shape == (3,) and d.loc.shape == (3, 2) and d.logits.shape == (3, 2)


@pytest.mark.parametrize("form", ["scalar", "channels"])
def test_expand(form):
    if form == "scalar":
        d = DiscretizedLogisticMixture(torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2))
        x = torch.randint(0, 256, (4, 1, 3)).float()
    else:
        d = _channel_dist(torch.float32, batch=(3,))
        x = torch.randint(0, 256, (4, 1, 3, 3)).float()
    e = d.expand((2, 3))
    assert e.batch_shape == (2, 3) and e.event_shape == d.event_shape
    assert e.log_prob(x).shape == (4, 2, 3)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x).expand(4, 2, 3))
    assert e.sample((5,)).shape == (5, 2, 3, *d.event_shape)
    with pytest.raises(ValueError, match="batch_shape"):
        d.expand((4,))


# -- bad input ----------------------------------------------------------------------------


def _ok(k=2):
    return torch.zeros(k), torch.zeros(k), torch.zeros(k)


@pytest.mark.parametrize("bits", [0, 17, 8.0, True, "8"])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits: expected an integer in 1..16"):
        DiscretizedLogisticMixture(*_ok(), bits=bits)


def test_bad_parameter_shapes():
    z = torch.zeros
    with pytest.raises(ValueError, match="loc: expected 2 components"):
        DiscretizedLogisticMixture(z(2), z(3), z(3))
    with pytest.raises(ValueError, match="log_scale: expected shape"):
        DiscretizedLogisticMixture(z(2), z(2), z(3))
    with pytest.raises(ValueError, match="log_scale: expected shape"):
        DiscretizedLogisticMixture(z(4, 2), z(4, 3, 2), z(4, 2))
    with pytest.raises(ValueError, match="loc: expected rank"):
        DiscretizedLogisticMixture(z(2), z(1, 3, 2), z(1, 3, 2))
    with pytest.raises(ValueError, match="logits: expected shape"):
        DiscretizedLogisticMixture(z(()), z(()), z(()))
    with pytest.raises(ValueError, match="coeffs: only the channel form"):
        DiscretizedLogisticMixture(z(2), z(2), z(2), coeffs=z(2))
    with pytest.raises(ValueError, match=r"coeffs: expected shape .*\(\.\.\., 3, 2\)"):
        DiscretizedLogisticMixture(z(2), z(3, 2), z(3, 2), coeffs=z(2, 2))
    with pytest.raises(ValueError, match="coeffs: expected shape"):
        DiscretizedLogisticMixture(z(2), z(3, 2), z(3, 2), coeffs=z(3, 3))
    with pytest.raises(ValueError, match="loc: batch dimensions"):
        DiscretizedLogisticMixture(z(4, 2), z(3, 2), z(3, 2))
    with pytest.raises(ValueError, match="logits: expected a floating-point tensor"):
        DiscretizedLogisticMixture([0.0, 0.0], z(2), z(2))
    with pytest.raises(ValueError, match="log_scale: expected dtype torch.float32"):
        DiscretizedLogisticMixture(z(2), z(2), z(2, dtype=torch.float64))


@pytest.mark.parametrize("name", ["logits", "loc", "log_scale", "coeffs"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_parameters_rejected_when_validating(name, bad):
    params = dict(logits=torch.zeros(2), loc=torch.zeros(3, 2), log_scale=torch.zeros(3, 2))
    params["coeffs"] = torch.zeros(3, 2)
    params[name] = params[name].clone()
    params[name][0] = bad
    with pytest.raises(NonFiniteValueError, match=f"^{name}: expected finite values"):
        DiscretizedLogisticMixture(**params, validate_args=True)
    DiscretizedLogisticMixture(**params, validate_args=False)  # not checked when off


@pytest.mark.parametrize(
    "value, message",
    [
        (1.5, r"value: expected integer pixel values in \[0, 255\] \(bits=8\), got 1.5"),
        (256.0, "got 256.0"),
        (-1.0, "got -1.0"),
        (float("nan"), "got NaN"),
        (float("inf"), "got inf"),
    ],
)
def test_bad_values_rejected(value, message):
    d = DiscretizedLogisticMixture(*_ok(), validate_args=True)
    with pytest.raises(ValueError, match=message):
        d.log_prob(torch.tensor([0.0, value]))
    c = _channel_dist(torch.float32, validate_args=True)
    with pytest.raises(ValueError, match="value: expected integer pixel values"):
        c.log_prob(torch.tensor([0.0, 3.0, value]))
    with pytest.raises(ValueError, match="value: expected integer pixel values"):
        c.channel_conditionals(torch.tensor([value, 3.0, 0.0]))


def test_bad_value_shapes():
    c = _channel_dist(torch.float32)
    with pytest.raises(ValueError, match=r"value: expected shape \(\.\.\., 3\)"):
        c.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="value: batch shape"):
        c.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="value: expected a tensor"):
        c.log_prob([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="channel_conditionals: only the channel form"):
        DiscretizedLogisticMixture(*_ok()).channel_conditionals(torch.zeros(3))
