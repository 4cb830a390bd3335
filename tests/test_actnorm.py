"""Family tests for ActNorm: data-dependent initialisation in both directions, inside a
density-estimation flow, state_dict round trips, bad inputs."""

from __future__ import annotations

import io

import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_lgm.models import Flow, realnvp
from pyro_lgm.testing import assert_bijective, assert_log_abs_det_jacobian
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import ActNorm, actnorm
from tests.cases import examples
from tests.cases.coupling import perturb_last_layer


def _data(batch, d, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = 5 * torch.randn(d, generator=g, dtype=torch.float64)
    scale = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    x = loc + scale * torch.randn(*batch, d, generator=g, dtype=torch.float64)
    return x.to(dtype=dtype, device=device)


def _assert_standardised(z, atol):
    flat = z.reshape(-1, z.shape[-1]).double()
    assert torch.allclose(flat.mean(0), torch.zeros_like(flat[0]), atol=atol), flat.mean(0)
    assert torch.allclose(flat.var(0, unbiased=False), torch.ones_like(flat[0]), atol=atol)


@settings(max_examples=examples(10), deadline=None)
@given(
    batch=lst.batch_shapes(min_dims=1, max_dims=3, min_size=2, max_size=5),
    d=st.integers(1, 8),
    seed=lst.seeds(),
    direction=st.sampled_from(["forward", "inverse"]),
)
def test_first_call_standardises_its_output(batch, d, seed, direction):
    t = ActNorm(d, eps=0.0).double()  # eps=0: exactly unit variance
    x = _data(batch, d, seed=seed)
    assert not bool(t.initialized)
    out = t(x) if direction == "forward" else t.inv(x)
    assert bool(t.initialized)
    assert out.shape == x.shape
    # statistics over all batch dimensions together
    _assert_standardised(out, atol=1e-6)
    # the initialised layer is an ordinary bijection afterwards
    assert_bijective(t, x)
    assert_log_abs_det_jacobian(t, x)


def test_first_call_initialises_on_device(device, dtype):
    t = ActNorm(3).to(device=device, dtype=dtype)
    x = _data((200,), 3, dtype=dtype, device=device)
    z = t.inv(x)
    assert z.device.type == device.type and z.dtype == dtype
    # the default eps=1e-6 added to the variance leaves a relative error below 1e-4 here
    _assert_standardised(z, atol=1e-4)


def test_later_calls_do_not_reinitialise():
    t = ActNorm(2).double()
    t.inv(_data((50,), 2, seed=1))
    loc, log_scale = t.loc.detach().clone(), t.log_scale.detach().clone()
    t.inv(_data((50,), 2, seed=2))
    t(_data((50,), 2, seed=3))
    assert torch.equal(t.loc, loc) and torch.equal(t.log_scale, log_scale)


def test_single_point_only_centres():
    t = ActNorm(3).double()
    x = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    assert torch.equal(t.inv(x), torch.zeros_like(x))
    assert torch.equal(t.log_scale.detach(), torch.zeros(3, dtype=torch.float64))


def test_log_det_and_gradients_after_init():
    t = ActNorm(3).double()
    x = _data((40,), 3)
    z = t.inv(x)
    ladj = t.log_abs_det_jacobian(z, x)
    assert ladj.shape == (40,)
    assert torch.allclose(ladj, t.log_scale.sum().expand(40))
    # the initialised parameters are trainable leaves
    (z.sum() + ladj.sum()).backward()
    assert t.loc.grad is not None and t.log_scale.grad is not None


def test_actnorm_flow_is_the_gaussian_mle():
    # A flow made of one ActNorm is N(mean, std) with the batch's (biased) moments.
    x = _data((500,), 2)
    flow = Flow((2,), [actnorm(2)]).double()
    lp = flow().log_prob(x)
    mle = dist.Normal(x.mean(0), x.std(0, unbiased=False)).log_prob(x).sum(-1)
    assert torch.allclose(lp, mle, atol=1e-6)


def test_density_estimation_standardises_every_intermediate_feature():
    torch.manual_seed(0)
    flow = realnvp(4, num_layers=3, hidden_dims=[16], permutation="random", seed=0).double()
    # non-trivial couplings, so that each ActNorm sees features that are not standardised
    for t in flow.transforms:
        if hasattr(t, "conditioner"):
            perturb_last_layer(t.conditioner, scale=2.0)
    x = _data((300,), 4)
    lp = flow().log_prob(x)  # the first call initialises every ActNorm on the data
    assert torch.isfinite(lp).all()
    norms = [t for t in flow.transforms if isinstance(t, ActNorm)]
    assert len(norms) == 3 and all(bool(t.initialized) for t in norms)
    # walk from the data to the base and look at the features leaving each ActNorm
    h = x
    seen = 0
    with torch.no_grad():
        for t in reversed(flow.transforms):
            before = h
            h = t.inv(h)
            if isinstance(t, ActNorm):
                seen += 1
                _assert_standardised(h, atol=1e-6)
                assert not torch.allclose(before.mean(0), torch.zeros(4, dtype=h.dtype), atol=0.1)
    assert seen == 3


def test_state_dict_round_trip_keeps_initialisation():
    t = ActNorm(3).double()
    t.inv(_data((100,), 3))
    state = t.state_dict()
    assert "initialized" in state and bool(state["initialized"])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = ActNorm(3).double()
    loaded.load_state_dict(torch.load(buffer))
    assert bool(loaded.initialized)
    other = _data((100,), 3, seed=5)
    # not re-initialised by the first call after loading
    assert torch.allclose(loaded.inv(other), t.inv(other))
    assert torch.equal(loaded.loc, t.loc)


def test_loaded_flow_is_not_reinitialised():
    torch.manual_seed(1)
    flow = realnvp(3, num_layers=2, hidden_dims=[8]).double()
    x = _data((200,), 3)
    expected = flow().log_prob(x).detach()
    fresh = realnvp(3, num_layers=2, hidden_dims=[8]).double()
    fresh.load_state_dict(flow.state_dict())
    shifted = x + 10.0  # would move every ActNorm if it initialised again
    assert torch.allclose(fresh().log_prob(shifted), flow().log_prob(shifted))
    assert torch.allclose(fresh().log_prob(x), expected)


def test_bad_inputs():
    with pytest.raises(ValueError, match="input_dim: expected a positive integer"):
        ActNorm(0)
    with pytest.raises(ValueError, match="eps: expected a non-negative number"):
        ActNorm(2, eps=-1.0)
    t = ActNorm(3)
    with pytest.raises(ValueError, match=r"y: expected shape \(\.\.\., 3\), got \(4, 2\)"):
        t.inv(torch.randn(4, 2))
    assert not bool(t.initialized)  # a rejected batch does not initialise the layer
    with pytest.raises(ValueError, match="direction: expected 'forward' or 'inverse'"):
        t.initialize(torch.randn(4, 3), direction="sideways")
    nan = torch.randn(4, 3)
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="y: expected finite values, got NaN"):
        t.inv(nan)
    with pytest.raises(ValueError, match="x: expected dtype torch.float32"):
        t(torch.randn(4, 3, dtype=torch.float64))
    assert not bool(t.initialized)


# --------------------------------------------------------------------------------------
# Images: ActNorm(C, event_dim=3) on (..., C, H, W)
# --------------------------------------------------------------------------------------
def _images(batch, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = 5 * torch.randn(c, 1, 1, generator=g, dtype=torch.float64)
    scale = torch.rand(c, 1, 1, generator=g, dtype=torch.float64) * 3 + 0.1
    return loc + scale * torch.randn(*batch, c, h, w, generator=g, dtype=torch.float64)


def _assert_channels_standardised(z, atol):
    per_channel = z.movedim(-3, -1).reshape(-1, z.shape[-3])
    _assert_standardised(per_channel, atol)


@settings(max_examples=examples(10), deadline=None)
@given(
    batch=lst.batch_shapes(min_dims=1, max_dims=2, min_size=1, max_size=4),
    shape=st.sampled_from([(1, 4, 4), (3, 8, 8), (2, 4, 8)]),
    seed=lst.seeds(),
    direction=st.sampled_from(["forward", "inverse"]),
)
def test_image_first_call_standardises_each_channel(batch, shape, seed, direction):
    c, h, w = shape
    t = ActNorm(c, eps=0.0, event_dim=3).double()
    x = _images(batch, c, h, w, seed=seed)
    out = t(x) if direction == "forward" else t.inv(x)
    assert bool(t.initialized) and out.shape == x.shape
    assert t.loc.shape == (c,) and t.log_scale.shape == (c,)
    # statistics over the batch dimensions and the pixels together, per channel
    _assert_channels_standardised(out, atol=1e-6)
    ladj = t.log_abs_det_jacobian(x, out)
    assert ladj.shape == batch
    assert torch.allclose(ladj, (h * w * t.log_scale.sum()).expand(batch))
    assert_bijective(t, x)
    assert_log_abs_det_jacobian(t, x[(0,) * len(batch)])  # one image: a 16..192-dim Jacobian


def test_image_domain_is_per_instance():
    images, vectors = ActNorm(2, event_dim=3), ActNorm(2)
    assert images.domain.event_dim == images.codomain.event_dim == 3
    assert vectors.domain.event_dim == vectors.codomain.event_dim == 1
    assert actnorm(2, event_dim=3).event_dim == 3 and actnorm(2).event_dim == 1


def test_image_state_dict_round_trip_and_no_reinitialisation():
    t = ActNorm(3, event_dim=3).double()
    t.inv(_images((6,), 3, 4, 4))
    state = t.state_dict()
    assert set(state) == {"loc", "log_scale", "initialized"} and bool(state["initialized"])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = ActNorm(3, event_dim=3).double()
    loaded.load_state_dict(torch.load(buffer))
    assert bool(loaded.initialized)
    assert torch.equal(loaded.loc, t.loc) and torch.equal(loaded.log_scale, t.log_scale)
    shifted = _images((6,), 3, 4, 4, seed=3) + 10.0  # would move the layer if it initialised
    assert torch.equal(loaded.inv(shifted), t.inv(shifted))
    assert torch.equal(loaded.loc, t.loc) and torch.equal(loaded(shifted), t(shifted))


def test_image_bad_inputs():
    with pytest.raises(ValueError, match="event_dim: expected 1 .* or 3"):
        ActNorm(3, event_dim=2)
    t = ActNorm(3, event_dim=3)
    with pytest.raises(
        ValueError, match=r"y: expected shape \(\.\.\., 3, \*, \*\), got \(4, 2, 5, 5\)"
    ):
        t.inv(torch.randn(4, 2, 5, 5))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3, \*, \*\), got \(3, 5\)"):
        t(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"data: expected shape \(\.\.\., 3, \*, \*\)"):
        t.initialize(torch.randn(4, 3))
    assert not bool(t.initialized)  # rejected batches do not initialise the layer
    with pytest.raises(ValueError, match="x: expected dtype torch.float32"):
        t(torch.randn(2, 3, 4, 4, dtype=torch.float64))
    nan = torch.randn(2, 3, 4, 4)
    nan[1, 2, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="y: expected finite values, got NaN"):
        t.inv(nan)
    assert not bool(t.initialized)
