"""Caches are correct by construction: a cached value is returned only when a fresh
computation would give the same value.

Every way parameters change is exercised: plain, foreach and fused optimizers (Adam,
AdamW, SGD; torch's fused kernels do not bump ``Tensor._version`` on the CPU), Pyro's SVI,
in-place edits under ``no_grad``, ``load_state_dict``, ``.to()``, ``resample_masks``, and the
same input tensor reused across training steps. The reference for every check is a
never-called copy of the model (built afresh and loaded with the same parameters), so no
cache can hide in it.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_lgm.data import TwoMoons
from pyro_lgm.models import MADE as MADEModel
from pyro_lgm.models import Flow, iaf, maf, nice, planar_flow, radial_flow, realnvp
from pyro_lgm.nn import MADE
from pyro_lgm.train import fit
from pyro_lgm.transforms import (
    ActNorm,
    AffineCoupling,
    DiagonalScale,
    Permute,
    affine_autoregressive,
    affine_coupling,
    invalidate_caches,
)


def _cached_coupling_flow() -> Flow:
    """Couplings, a permutation, a scale and ActNorm, all with the pair cache on."""
    layers = []
    for k in range(2):
        c = affine_coupling(2, [16], invert_mask=bool(k % 2))
        layers.append(AffineCoupling(c.mask, c.conditioner, cache_size=1))
    layers += [Permute(torch.tensor([1, 0]), cache_size=1), DiagonalScale(2, cache_size=1)]
    layers.append(ActNorm(2))
    return Flow((2,), layers)


# name -> (builder, conditional)
BUILDERS = {
    "maf": (lambda: maf(2, hidden_dims=[16], num_layers=2), False),
    "iaf": (lambda: iaf(2, hidden_dims=[16], num_layers=2), False),
    "maf_context": (lambda: maf(2, hidden_dims=[16], num_layers=2, context_dim=1), True),
    "realnvp": (lambda: realnvp(2, num_layers=2, hidden_dims=[16]), False),
    "realnvp_context": (lambda: realnvp(2, num_layers=2, hidden_dims=[16], context_dim=1), True),
    "nice": (lambda: nice(2, num_layers=2, hidden_dims=[16]), False),
    "planar": (lambda: planar_flow(2, num_layers=2), False),
    "radial": (lambda: radial_flow(2, num_layers=2), False),
    "couplings_cached": (_cached_coupling_flow, False),
}

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.05, foreach=False),
    "adam_foreach": lambda p: torch.optim.Adam(p, lr=0.05, foreach=True),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=0.05, fused=True),
    "adamw_fused": lambda p: torch.optim.AdamW(p, lr=0.05, fused=True),
    "sgd_foreach": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=True),
    "sgd_fused": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, fused=True),
}


def _build(name: str, seed: int = 0) -> tuple[Flow, bool]:
    builder, conditional = BUILDERS[name]
    torch.manual_seed(seed)
    return builder().double(), conditional


def _data(n: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return TwoMoons().sample((n,), generator=g).double()


def _context(x: torch.Tensor) -> torch.Tensor:
    return x[:, :1].sin()


def _fresh_log_prob(name: str, model: Flow, x: torch.Tensor, ctx: torch.Tensor | None):
    """log p(x) from a never-called copy of ``model`` on fresh tensors: no cache anywhere."""
    ref, _ = _build(name, seed=123)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        return ref(None if ctx is None else ctx.clone()).log_prob(x.clone())


def _log_prob(model: Flow, x: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
    return model(ctx).log_prob(x)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_same_data_tensor_across_optimizer_steps(name, opt_name):
    """The pattern of every training loop: the same ``x`` every step, any optimizer.

    Before the fix, fused optimizers left ``_version`` unchanged, the caches served the
    previous step's values (and graph: "backward through the graph a second time").
    """
    model, conditional = _build(name)
    x = _data()
    ctx = _context(x) if conditional else None
    opt = OPTIMIZERS[opt_name](list(model.parameters()))
    for _ in range(3):
        opt.zero_grad()
        loss = -_log_prob(model, x, ctx).mean()
        loss.backward()
        opt.step()
        expected = _fresh_log_prob(name, model, x, ctx)
        with torch.no_grad():
            torch.testing.assert_close(_log_prob(model, x, ctx), expected)
        torch.testing.assert_close(_log_prob(model, x, ctx).detach(), expected)
        # the value in the loss of the next step is the fresh one too
        assert not torch.equal(expected, loss.new_full(expected.shape, -loss.item()))


@pytest.mark.parametrize("name", ["maf", "iaf", "couplings_cached"])
def test_fused_and_plain_adam_follow_the_same_trajectory(name):
    """Stale values change the gradients: a fused run then leaves the plain run's path."""
    x = _data()
    finals = []
    for fused in (False, True):
        model, _ = _build(name)
        opt = torch.optim.Adam(model.parameters(), lr=0.02, fused=fused, foreach=False)
        for _ in range(5):
            opt.zero_grad()
            (-model().log_prob(x).mean()).backward()
            opt.step()
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-9, atol=1e-9)


def test_svi_same_data_tensor():
    pyro.clear_param_store()
    model_flow, _ = _build("maf")
    x = _data()

    def model(x):
        pyro.module("flow", model_flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", model_flow(), obs=x)

    svi = SVI(model, lambda x: None, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step(x)
        expected = _fresh_log_prob("maf", model_flow, x, None)
        with torch.no_grad():
            torch.testing.assert_close(model_flow().log_prob(x), expected)
    pyro.clear_param_store()


def _edit(model: Flow) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_in_place_edit_load_state_dict_and_to(name):
    model, conditional = _build(name)
    x = _data()
    ctx = _context(x) if conditional else None
    with torch.no_grad():
        _log_prob(model, x, ctx)  # fill every cache
    _log_prob(model, x, ctx)
    _edit(model)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got = _log_prob(model, x, ctx).detach()
        torch.testing.assert_close(got, _fresh_log_prob(name, model, x, ctx))
    other, _ = _build(name, seed=7)
    _edit(other)
    with torch.no_grad():
        _log_prob(other, x, ctx)  # initialises a data-dependent layer (ActNorm)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_log_prob(model, x, ctx), _fresh_log_prob(name, other, x, ctx))
    # a round trip through another dtype, then the same (float64) input tensor again
    model.float()
    xf = x.float()
    with torch.no_grad():
        _log_prob(model, xf, None if ctx is None else ctx.float())
        model.double()
        _edit(model)
        torch.testing.assert_close(_log_prob(model, x, ctx), _fresh_log_prob(name, model, x, ctx))


def test_resample_masks_invalidates():
    torch.manual_seed(0)
    model = maf(5, hidden_dims=[12, 12], num_layers=2, order="random").double()
    _edit(model)
    x = torch.randn(16, 5, dtype=torch.float64)
    with torch.no_grad():
        before = model().log_prob(x)
        for layer in model.autoregressive_layers:
            layer.made.resample_masks()
        after = model().log_prob(x)
    fresh = maf(5, hidden_dims=[12, 12], num_layers=2, order="random").double()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = fresh().log_prob(x.clone())
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(after, expected)


def test_made_network_no_grad_after_fused_step():
    torch.manual_seed(0)
    for fast in (False, True):
        net = MADE(6, [32, 32], param_dims=2).double()
        net.fast = fast
        x = torch.randn(8, 6, dtype=torch.float64)
        opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
        for _ in range(3):
            with torch.no_grad():
                out = net(x)
            torch.testing.assert_close(out, net.forward_reference(x).detach())
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()


def test_made_density_no_grad_after_fused_training():
    torch.manual_seed(0)
    model = MADEModel(6, hidden_dims=(32, 32)).double()
    x = torch.randint(0, 2, (64, 6)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)
    for _ in range(4):
        with torch.no_grad():
            model().log_prob(x)
        opt.zero_grad()
        (-model().log_prob(x).mean()).backward()
        opt.step()
    with torch.no_grad():
        nograd = model().log_prob(x)
    torch.testing.assert_close(nograd, model().log_prob(x).detach())


def test_log_prob_with_and_without_grad_agree_after_fit():
    torch.manual_seed(0)
    x = TwoMoons().sample((2048,))
    flow = maf(2, num_layers=4)
    fit(flow, x, steps=60, batch_size=256, lr=5e-3, progress=False, seed=0, eval_data=x[:256])
    with torch.no_grad():
        a = flow().log_prob(x)
    b = flow().log_prob(x).detach()
    torch.testing.assert_close(a, b)
    c = fit(flow, x, steps=5, batch_size=256, lr=5e-3, progress=False, seed=1)
    assert c.steps == 5  # training continues: no "backward through the graph a second time"


# ------------------------------------------------------------------- single transforms


def _perturbed_coupling(cache_size: int) -> AffineCoupling:
    torch.manual_seed(0)
    c = affine_coupling(4, [8]).double()
    with torch.no_grad():
        for p in c.parameters():
            p.normal_()
    return AffineCoupling(c.mask, c.conditioner, cache_size=cache_size)


@pytest.mark.parametrize("cache_size", [0, 1])
def test_coupling_log_det_after_in_place_change(cache_size):
    t = _perturbed_coupling(cache_size)
    x = torch.randn(3, 4, dtype=torch.float64)
    y = t(x)
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(1.5)
    expected = t._scale_shift(x[..., t.idx_a])[0].sum(-1)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), expected)


@pytest.mark.parametrize("cache_size", [0, 1])
def test_coupling_log_det_of_an_earlier_pair(cache_size):
    t = _perturbed_coupling(cache_size)
    x1, x2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    fresh = [t._scale_shift(v[..., t.idx_a])[0].sum(-1) for v in (x1, x2)]
    y1 = t(x1)
    y2 = t(x2)
    # a pair sharing one tensor with the last computed pair is not that pair
    torch.testing.assert_close(t.log_abs_det_jacobian(x1, y2), fresh[0])
    y2 = t(x2)
    torch.testing.assert_close(t.log_abs_det_jacobian(x1, y1), fresh[0])
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y2), fresh[1])
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y1), fresh[1])


def test_input_edited_in_place_is_recomputed():
    t = affine_autoregressive(3, [8]).double()
    _edit(t)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = t(x)
    with torch.no_grad():
        y.add_(1.0)
    x_new = t.inv(y)
    torch.testing.assert_close(t(x_new.clone()), y)


def test_reverse_cache_is_used_until_parameters_change(monkeypatch):
    """``rsample`` then ``log_prob`` of that sample costs no inversion - until a step."""
    torch.manual_seed(0)
    flow = iaf(3, hidden_dims=[12], num_layers=2).double()
    _edit(flow)
    opt = torch.optim.Adam(flow.parameters(), lr=0.01, fused=True)
    calls = []
    assert len(flow.layers) == 2
    for layer in flow.layers:
        original = layer._inverse
        monkeypatch.setattr(layer, "_inverse", lambda y, f=original: calls.append(1) or f(y))
    d = flow()
    z = d.rsample((5,))
    lp = d.log_prob(z)
    assert calls == []  # served by the cache
    lp.mean().backward()
    opt.step()
    lp2 = flow().log_prob(z)
    assert len(calls) == 2  # one inversion per layer after the step
    torch.testing.assert_close(lp2.detach(), _fresh_iaf_log_prob(flow, z))
    z2 = flow().rsample((5,))
    invalidate_caches()
    flow().log_prob(z2)
    assert len(calls) == 4  # invalidate_caches() forces a recomputation


def _fresh_iaf_log_prob(flow: Flow, z: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(5)
    ref = iaf(3, hidden_dims=[12], num_layers=2).double()
    ref.load_state_dict(flow.state_dict())
    with torch.no_grad():
        return ref().log_prob(z.detach().clone())


def test_no_grad_cache_is_not_served_under_grad():
    torch.manual_seed(0)
    flow = iaf(3, hidden_dims=[12], num_layers=2).double()
    _edit(flow)
    z = flow().sample((4,))  # under no_grad
    lp = flow().log_prob(z)
    assert lp.requires_grad
    lp.sum().backward()
    grads = [p.grad for p in flow.parameters()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)
