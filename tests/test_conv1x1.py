"""Family tests for InvertibleConv1x1: the map and its log-determinant against the
assembled matrix, the LU and full parametrisations against each other, a deep float32
stack, the log-det cache, and bad input."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.transforms import ActNorm, InvertibleConv1x1, invertible_conv1x1

SHAPES = [(1, 4, 4), (3, 8, 8), (2, 4, 8)]


@torch.no_grad()
def _perturbed(channels: int, lu: bool, seed: int = 0, scale: float = 0.3) -> InvertibleConv1x1:
    """A float64 layer moved away from its orthogonal start (all parameters)."""
    torch.manual_seed(seed)
    t = invertible_conv1x1(channels, lu=lu).double()
    for p in t.parameters():
        p.add_(scale * torch.randn_like(p))
    return t


def _per_pixel(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", w, x)


@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_map_and_log_det_against_the_assembled_matrix(shape, lu):
    c, h, w = shape
    t = _perturbed(c, lu, seed=c + h)
    x = torch.randn(2, 3, c, h, w, dtype=torch.float64)  # two batch dimensions
    y = t(x)
    weight = t.weight_matrix()
    assert torch.allclose(y, _per_pixel(weight, x), atol=1e-12)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == (2, 3)
    expected = h * w * torch.linalg.slogdet(weight)[1]
    assert torch.allclose(ladj, expected.expand(2, 3), atol=1e-10)
    # the inverse, with no batch dimension at all
    assert torch.allclose(t.inv(y[1, 2].clone()), x[1, 2], atol=1e-12)


def test_lu_factors_have_their_structure():
    t = _perturbed(4, lu=True)
    lower, upper = t._factors()
    assert torch.equal(lower.diagonal(), torch.ones(4, dtype=torch.float64))
    assert torch.equal(lower.triu(1), torch.zeros_like(lower))
    assert torch.equal(upper.tril(-1), torch.zeros_like(upper))
    assert torch.allclose(upper.diagonal().abs().log(), t.log_abs_s)
    p = t.perm
    assert torch.equal(p @ p.T, torch.eye(4, dtype=torch.float64))  # a permutation
    # the masked entries get no gradient
    (t.weight_matrix() ** 2).sum().backward()
    assert torch.equal(t.lower.grad.triu(), torch.zeros(4, 4, dtype=torch.float64))
    assert torch.equal(t.upper.grad.tril(), torch.zeros(4, 4, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_lu_and_full_agree_for_the_same_matrix(shape):
    c, h, w = shape
    lu = _perturbed(c, lu=True, seed=1)
    full = invertible_conv1x1(c, lu=False).double()
    with torch.no_grad():
        full.weight.copy_(lu.weight_matrix())
    x = torch.randn(5, c, h, w, dtype=torch.float64)
    y_lu, y_full = lu(x), full(x)
    assert torch.allclose(y_lu, y_full, atol=1e-12)
    assert torch.allclose(lu.inv(y_lu.clone()), full.inv(y_full.clone()), atol=1e-10)
    assert torch.allclose(lu.log_abs_det_jacobian(x, y_lu), full.log_abs_det_jacobian(x, y_full))


@pytest.mark.parametrize("lu", [True, False])
def test_initialisation_is_orthogonal_from_the_global_generator(lu):
    torch.manual_seed(3)
    t = InvertibleConv1x1(5, lu=lu)
    torch.manual_seed(3)
    again = InvertibleConv1x1(5, lu=lu)
    w = t.weight_matrix().detach()
    assert torch.equal(w, again.weight_matrix().detach())
    assert torch.allclose(w.T @ w, torch.eye(5), atol=1e-5)
    assert abs(t.log_abs_det_weight().item()) < 1e-5
    assert t.domain.event_dim == t.codomain.event_dim == 3


def test_deep_lu_stack_round_trip_float32():
    # 64 float32 LU layers whose log|s| are perturbed away from the orthogonal start: the
    # inverse is built from the triangular factors, so the round trip loses a few ulps per
    # layer times the stack's conditioning. Measured: max error 5.0e-6 relative (cond of the
    # composed 8x8 matrix 47 in float64); the bound leaves a margin of 20.
    torch.manual_seed(0)
    layers = [InvertibleConv1x1(8) for _ in range(64)]
    with torch.no_grad():
        for t in layers:
            t.log_abs_s.add_(0.1 * torch.randn(8))
    x = torch.randn(4, 8, 8, 8)
    with torch.no_grad():
        h = x
        for t in layers:
            h = t(h)
        for t in reversed(layers):
            h = t.inv(h)
    assert (h - x).abs().max() / x.abs().max() < 1e-4


def test_log_det_is_remembered_from_the_call(monkeypatch):
    t = _perturbed(3, lu=False)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    calls = []
    slogdet = torch.linalg.slogdet

    def counting(a):
        calls.append(1)
        return slogdet(a)

    monkeypatch.setattr(torch.linalg, "slogdet", counting)
    y = t(x)
    assert len(calls) == 1
    ladj = t.log_abs_det_jacobian(x, y)  # the pair just computed: no second slogdet
    assert len(calls) == 1
    x_back = t.inv(y)
    assert torch.allclose(t.log_abs_det_jacobian(x_back, y), ladj)
    assert len(calls) == 2
    with torch.no_grad():
        t.weight.mul_(2.0)  # an in-place edit invalidates the remembered value
    assert torch.allclose(
        t.log_abs_det_jacobian(x_back, y), ladj + 16 * 3 * torch.log(torch.tensor(2.0))
    )
    assert len(calls) == 3


def test_in_a_density_flow_with_image_actnorm():
    torch.manual_seed(0)
    shape = (3, 4, 4)
    layers = [ActNorm(3, event_dim=3), InvertibleConv1x1(3), InvertibleConv1x1(3, lu=False)]
    base = dist.Normal(torch.zeros(shape), 1.0).to_event(3)
    flow = dist.TransformedDistribution(base, layers)
    data = 2.0 + 3.0 * torch.randn(10, *shape)
    lp = flow.log_prob(data)
    assert lp.shape == (10,) and torch.isfinite(lp).all()
    lp.sum().backward()
    assert all(p.grad is not None for t in layers for p in t.parameters())
    assert flow.sample((2,)).shape == (2, *shape)


def test_bad_inputs():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="channels: expected a positive integer"):
            InvertibleConv1x1(bad)
    with pytest.raises(ValueError, match="lu: expected True or False"):
        InvertibleConv1x1(3, lu=1)
    t = InvertibleConv1x1(3)
    with pytest.raises(
        ValueError, match=r"x: expected shape \(\.\.\., 3, \*, \*\), got \(2, 4, 5, 5\)"
    ):
        t(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"y: expected shape \(\.\.\., 3, \*, \*\), got \(3, 5\)"):
        t.inv(torch.randn(3, 5))
    with pytest.raises(ValueError, match="x: expected dtype torch.float32"):
        t(torch.randn(3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: expected a floating-point tensor"):
        t(torch.ones(3, 4, 4, dtype=torch.long))
    nan = torch.randn(3, 4, 4)
    nan[0, 1, 1] = float("nan")
    with pytest.raises(NonFiniteValueError, match="y: expected finite values, got NaN"):
        t.inv(nan)
    with pyro.validation_enabled(False):
        t.inv(nan)  # the value check follows the global switch
