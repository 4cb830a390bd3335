"""Family tests for the elementwise image transforms: UniformDequantize and LogitPreprocess
(exact log-dets against closed forms, a preprocessing flow's density, dequantize/quantize)."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.metrics import nats_to_bits_per_dim
from pyro_lgm.transforms import (
    LogitPreprocess,
    UniformDequantize,
    logit_preprocess,
    uniform_dequantize,
)


# ------------------------------------------------------------------ UniformDequantize
@pytest.mark.parametrize("bits", [1, 5, 8])
@pytest.mark.parametrize(
    "event_dim, shape, batch", [(3, (3, 4, 5), (2, 6)), (1, (7,), (4,)), (0, (), (3, 2))]
)
def test_dequantize_scaling_and_exact_log_det(bits, event_dim, shape, batch):
    t = UniformDequantize(bits, event_dim=event_dim)
    u = torch.rand(*batch, *shape, dtype=torch.float64)
    v = t(u)
    assert torch.equal(v, u * 2**bits) and torch.equal(t.inv(v), u)  # powers of two: exact
    d = math.prod(shape)
    ladj = t.log_abs_det_jacobian(u, v)
    assert ladj.shape == batch and ladj.dtype == torch.float64
    assert torch.equal(ladj, torch.full(batch, d * bits * math.log(2.0), dtype=torch.float64))
    assert torch.equal(t.inv.log_abs_det_jacobian(v, u), -ladj)
    assert t.domain.event_dim == t.codomain.event_dim == event_dim


def test_dequantize_constraints():
    t = uniform_dequantize(8)
    assert t.domain.event_dim == 3 and t.codomain.event_dim == 3
    assert bool(t.codomain.check(torch.full((1, 2, 2), 255.9)))
    assert not bool(t.codomain.check(torch.full((1, 2, 2), 256.0)))
    assert not bool(t.domain.check(torch.full((1, 2, 2), 1.0)))
    assert t == UniformDequantize(8) and t != UniformDequantize(8, event_dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dequantize_range_and_quantize_inverts_it(dtype):
    t = UniformDequantize(bits=8)
    x = torch.randint(0, 256, (50, 3, 4, 4)).to(dtype)
    x[0] = 0.0
    x[1] = 255.0
    g = torch.Generator().manual_seed(0)
    v = t.dequantize(x, generator=g)
    assert v.dtype == dtype and v.shape == x.shape
    assert bool((v >= x).all()) and bool((v < x + 1).all())
    assert bool(t.codomain.check(v).all())
    assert torch.equal(t.quantize(v), x)
    # the generator decides the noise; the noise is not constant
    again = t.dequantize(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v, again) and (v - x).std() > 0.2


def test_dequantize_never_rounds_up_to_the_next_level(monkeypatch):
    # float32: 255 + (1 - 2^-24) rounds to 256, 3 + (1 - 2^-24) to 4
    t = UniformDequantize(bits=8)
    x = torch.tensor([0.0, 3.0, 254.0, 255.0])

    def largest_uniform(shape, generator=None, **kw):
        return torch.full(shape, 1 - 2**-24, **kw)  # the largest float32 torch.rand returns

    monkeypatch.setattr(torch, "rand", largest_uniform)
    naive = x + torch.rand(x.shape)
    assert naive[0] < 1 and torch.equal(naive[1:], x[1:] + 1)  # what a plain sum gives
    v = t.dequantize(x)
    assert bool((v < x + 1).all()) and torch.equal(t.quantize(v), x)
    assert bool(t.codomain.check(v.reshape(1, 1, 4)).all())


def test_dequantize_accepts_integer_tensors():
    x = torch.randint(0, 32, (2, 1, 3, 3), dtype=torch.uint8)
    v = UniformDequantize(bits=5).dequantize(x)
    assert v.dtype == torch.get_default_dtype()
    assert torch.equal(UniformDequantize(bits=5).quantize(v), x.float())


def test_quantize_clamps_to_the_levels():
    t = UniformDequantize(bits=3)
    v = torch.tensor([-0.5, 0.0, 3.99, 7.5, 8.0, 100.0])
    assert t.quantize(v).tolist() == [0.0, 0.0, 3.0, 7.0, 7.0, 7.0]


@pytest.mark.parametrize("bad", [256.0, -1.0, 1.5, float("nan")])
def test_dequantize_rejects_values_that_are_not_levels(bad):
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 1, 0] = bad
    with pytest.raises(ValueError, match=r"x: expected integer levels in \{0, \.\.\., 255\}"):
        UniformDequantize(bits=8).dequantize(x)


def test_dequantize_bad_arguments():
    for bad in (0, 2.5, True, 53):
        with pytest.raises(ValueError, match="bits: expected an integer"):
            UniformDequantize(bad)
    with pytest.raises(ValueError, match="event_dim: expected a non-negative integer"):
        UniformDequantize(8, event_dim=-1)
    t = UniformDequantize(8)
    with pytest.raises(ValueError, match="x: expected a tensor"):
        t.dequantize([1, 2])
    with pytest.raises(ValueError, match=r"u: expected at least 3 dimensions .*got shape \(4, 4\)"):
        t(torch.rand(4, 4))
    with pytest.raises(ValueError, match="v: expected a floating-point tensor"):
        t.inv(torch.ones(1, 2, 2, dtype=torch.long))
    with pytest.raises(NonFiniteValueError, match="v: expected finite values, got inf"):
        t.inv(torch.full((1, 2, 2), float("inf")))


# ------------------------------------------------------------------ LogitPreprocess
@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.2])
def test_logit_log_dets_against_closed_forms(alpha):
    t = LogitPreprocess(alpha)
    x = torch.rand(4, 2, 3, 3, dtype=torch.float64) * 0.98 + 0.01
    y = t.inv(x)
    p = alpha + (1 - 2 * alpha) * x
    assert torch.allclose(y, torch.log(p / (1 - p)), atol=1e-12)
    assert torch.allclose(t(y), x, atol=1e-12)
    # d y / d x = (1 - 2 alpha) / (p (1 - p)); t's log-det is that of x = t(y): its negative
    inverse = torch.log((1 - 2 * alpha) / (p * (1 - p))).sum((-3, -2, -1))
    assert torch.allclose(t.inv.log_abs_det_jacobian(x, y), inverse, atol=1e-12)
    s = torch.sigmoid(y)
    forward = torch.log(s * (1 - s) / (1 - 2 * alpha)).sum((-3, -2, -1))
    assert torch.allclose(t.log_abs_det_jacobian(y, x), forward, atol=1e-12)
    assert torch.allclose(forward, -inverse, atol=1e-12)


def test_logit_log_det_is_finite_far_in_the_tails():
    t = LogitPreprocess(0.05, event_dim=1)
    y = torch.tensor([[-80.0, 80.0, 0.0]])
    ladj = t.log_abs_det_jacobian(y, t(y))
    # log sigmoid(y) + log sigmoid(-y) = -|y| - 2 log(1 + e^-|y|)
    expected = -80.0 - 80.0 - 2 * math.log(2.0) - 3 * math.log(0.9)
    assert torch.isfinite(ladj).all() and abs(ladj.item() - expected) < 1e-4


def test_logit_constraints_and_helpers():
    t = logit_preprocess(0.05)
    assert t.domain.event_dim == t.codomain.event_dim == 3
    lo, hi = t.codomain.base_constraint.lower_bound, t.codomain.base_constraint.upper_bound
    assert math.isclose(lo, -0.05 / 0.9) and math.isclose(hi, 0.95 / 0.9)
    y = torch.tensor([-40.0, 40.0], dtype=torch.float64).reshape(1, 1, 2)
    assert bool(t.codomain.check(t(y)).all())
    assert t == LogitPreprocess(0.05) and t != LogitPreprocess(0.1)


def test_logit_bad_arguments():
    for bad in (0.5, -0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 0.5\)"):
            LogitPreprocess(bad)
    with pytest.raises(ValueError, match="event_dim: expected a non-negative integer"):
        LogitPreprocess(event_dim=1.0)
    t = LogitPreprocess()
    with pytest.raises(ValueError, match=r"x: expected at least 3 dimensions"):
        t.inv(torch.rand(2, 2))
    with pytest.raises(NonFiniteValueError, match="y: expected finite values, got NaN"):
        t(torch.full((1, 2, 2), float("nan")))


# ------------------------------------------------------------------ the preprocessing flow
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_preprocessing_flow_density_is_base_minus_the_analytical_log_dets(alpha):
    shape = (1, 2, 2)
    d = 4
    base = dist.Normal(torch.zeros(shape, dtype=torch.float64), 1.0).to_event(3)
    dequantize = UniformDequantize(bits=8)
    flow = dist.TransformedDistribution(base, [LogitPreprocess(alpha), dequantize])
    assert flow.event_shape == shape
    x = torch.randint(0, 256, (6, *shape)).double()
    v = dequantize.dequantize(x, generator=torch.Generator().manual_seed(1))
    lp = flow.log_prob(v)
    # by hand: u = v / 256, p = alpha + (1 - 2 alpha) u, y = logit(p)
    u = v / 256
    p = alpha + (1 - 2 * alpha) * u
    y = torch.log(p) - torch.log1p(-p)
    log_dy_du = torch.log((1 - 2 * alpha) / (p * (1 - p))).sum((-3, -2, -1))
    expected = base.log_prob(y) + log_dy_du - d * math.log(256.0)
    assert lp.shape == (6,)
    assert torch.allclose(lp, expected, atol=1e-10)
    # bits/dim of the dequantized data: -log p(v) / (D log 2), no further correction
    bpd = nats_to_bits_per_dim(-lp, d)
    assert torch.allclose(bpd, -expected / (d * math.log(2.0)))
    # samples are on the data side
    assert flow.sample((3,)).shape == (3, *shape)
