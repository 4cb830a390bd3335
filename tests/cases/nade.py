"""Property-suite cases for NADE, RNADE, order-agnostic DeepNADE and the EoNADE ensemble."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from pyro_lgm import distributions as ld
from pyro_lgm import models as lm
from pyro_lgm.testing import strategies as lst
from tests.cases import CONTEXT_BATCH, ContextCheck, DistributionCase, draw_context_pair, live_units


def _gen(draw):
    return torch.Generator().manual_seed(draw(lst.seeds()))


def _perm(draw, d):
    return torch.randperm(d, generator=_gen(draw))


def _context(draw, context_dim, dtype, device, batch=None):
    """A context with a drawn batch shape, or ``(batch, context_dim)`` when given."""
    if not context_dim:
        return None
    if batch is None:
        batch = draw(lst.batch_shapes(min_dims=1, max_dims=1, max_size=3))
    else:
        batch = (batch,)
    return draw(lst.tensors((*batch, context_dim), dtype=dtype, device=device))


@torch.no_grad()
def _perturb(module, g, scale=1.0):
    """Randomize every parameter (biases start at zero: test away from that point)."""
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))


def _maybe_expand(draw, d):
    if d.context is None and draw(st.booleans()):
        return d.expand(draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=3)))
    return d


# ----------------------------------------------------------------------------- NADE
def _nade(draw, dtype, device, max_d=8, activation=None, ctx_batch=None):
    d = draw(st.integers(1, max_d))
    context_dim = draw(st.sampled_from([0, 0, 2]))
    activation = activation or draw(st.sampled_from(["sigmoid", "relu"]))
    model = lm.NADE(
        d,
        hidden=draw(st.integers(1, 8)),
        activation=activation,
        order=_perm(draw, d),
        context_dim=context_dim,
        seed=draw(lst.seeds()),
    )
    _perturb(model, _gen(draw), 0.5)
    model = model.to(dtype=dtype, device=device)
    dist = model(_context(draw, context_dim, dtype, device, ctx_batch))
    dist.block_size = draw(st.sampled_from([1, 3, 16]))  # several blocks of the running sum
    return dist


def make_nade(draw, dtype, device):
    return _maybe_expand(draw, _nade(draw, dtype, device))


_B = 8  # batch of the autoregressive checks (x is (B, D); a context is (B, C))


def _binary_batch(draw, dist, dtype, device):
    return draw(lst.binary_tensors((_B, dist.event_shape[0]), dtype, device))


def nade_autoregressive(draw, dtype, device):
    activation = draw(st.sampled_from(["sigmoid", "relu"]))
    d = _nade(draw, dtype, device, activation=activation, ctx_batch=_B)
    x = _binary_batch(draw, d, dtype, device)
    # With sigmoid units every earlier input reaches every conditional (no blind spot).
    return (
        lambda v: d.conditionals(v).logits,
        x,
        d.order,
        dict(no_blind_spot=activation == "sigmoid"),
    )


# ----------------------------------------------------------------------------- RNADE
def _rnade(draw, dtype, device, d, activation="sigmoid", ctx_batch=None):
    context_dim = draw(st.sampled_from([0, 0, 2]))
    model = lm.RNADE(
        d,
        hidden=draw(st.integers(1, 4)),
        num_components=draw(st.integers(1, 3)),
        activation=activation,
        order=_perm(draw, d),
        context_dim=context_dim,
        seed=draw(lst.seeds()),
    )
    g = _gen(draw)
    with torch.no_grad():
        # Keep the density well inside the integration box: means within a few units,
        # standard deviations in about [0.2, 1.7] (sigmoid units).
        model.bias_loc.uniform_(-2.0, 2.0, generator=g)
        model.bias_logits.normal_(generator=g)
        model.bias_log_scale.uniform_(-1.0, 0.0, generator=g)
        model.weight_log_scale.mul_(0.25)
        model.bias_in.normal_(generator=g)
        model.rho.uniform_(0.5, 1.5, generator=g)
        if context_dim:
            model.context_net.weight.mul_(0.5)
    model = model.to(dtype=dtype, device=device)
    return model(_context(draw, context_dim, dtype, device, ctx_batch))


def make_rnade_1d(draw, dtype, device):
    return _maybe_expand(draw, _rnade(draw, dtype, device, 1))


def make_rnade_2d(draw, dtype, device):
    return _rnade(draw, dtype, device, 2)


def make_rnade_relu(draw, dtype, device):
    return _maybe_expand(draw, _rnade(draw, dtype, device, draw(st.integers(1, 6)), "relu"))


def rnade_autoregressive(draw, dtype, device):
    activation = draw(st.sampled_from(["sigmoid", "relu"]))
    d = _rnade(draw, dtype, device, draw(st.integers(1, 6)), activation, ctx_batch=_B)
    x = draw(lst.tensors((_B, d.event_shape[0]), dtype=dtype, device=device))

    def fn(v):
        c = d.conditionals(v)
        mix, comp = c.mixture_distribution, c.component_distribution
        return torch.stack([mix.logits, comp.loc, comp.scale], -1)  # (B, D, K, 3)

    return fn, x, d.order, {}


# ------------------------------------------------------------------------- DeepNADE
def _deepnade_model(draw, dtype, device, d, activation=None, ctx_batch=None):
    context_dim = draw(st.sampled_from([0, 0, 2]))
    width = draw(st.integers(2, 8))
    depth = draw(st.integers(1, 2))
    model = lm.DeepNADE(
        d,
        hidden_dims=(width,) * depth,
        activation=activation or draw(st.sampled_from(["relu", "tanh", "sigmoid"])),
        context_dim=context_dim,
        seed=draw(lst.seeds()),
    )
    _perturb(model, _gen(draw), 0.3)
    model = model.to(dtype=dtype, device=device)
    return model, _context(draw, context_dim, dtype, device, ctx_batch)


def make_deepnade(draw, dtype, device):
    d = draw(st.integers(1, 8))
    model, context = _deepnade_model(draw, dtype, device, d)
    return _maybe_expand(draw, model(context, order=_perm(draw, d)))


def deepnade_autoregressive(draw, dtype, device):
    d = draw(st.integers(1, 8))
    activation = draw(st.sampled_from(["relu", "tanh"]))
    model, context = _deepnade_model(draw, dtype, device, d, activation, ctx_batch=_B)
    dist = model(context, order=_perm(draw, d))
    x = _binary_batch(draw, dist, dtype, device)
    return (
        lambda v: dist.conditionals(v).logits,
        x,
        dist.order,
        dict(no_blind_spot=activation == "tanh"),
    )


def make_eonade(draw, dtype, device):
    d = draw(st.integers(1, 7))
    model, context = _deepnade_model(draw, dtype, device, d)
    k = draw(st.integers(1, 4))
    dist = model.ensemble(num_orderings=k, context=context, generator=_gen(draw))
    assert isinstance(dist, ld.EoNADE)
    return _maybe_expand(draw, dist)


# ----------------------------------------------------------------- context checks
_C = 2  # context size of the context checks


def _x_binary(draw, d, dtype, device):
    return draw(lst.binary_tensors((CONTEXT_BATCH, d), dtype, device))


def nade_context(draw, dtype, device):
    d = draw(st.integers(1, 8))
    model = lm.NADE(
        d,
        hidden=draw(st.integers(1, 8)),
        activation=draw(st.sampled_from(["sigmoid", "relu"])),
        context_dim=_C,
        seed=draw(lst.seeds()),
    )
    _perturb(model, _gen(draw), 0.5)
    live_units(model)
    model = model.to(dtype=dtype, device=device)
    return (model, _x_binary(draw, d, dtype, device), *draw_context_pair(draw, _C, dtype, device))


def rnade_context(draw, dtype, device):
    d = draw(st.integers(1, 6))
    model = lm.RNADE(
        d,
        hidden=draw(st.integers(1, 4)),
        num_components=draw(st.integers(1, 3)),
        activation=draw(st.sampled_from(["sigmoid", "relu"])),
        context_dim=_C,
        seed=draw(lst.seeds()),
    )
    _perturb(model, _gen(draw), 0.5)
    live_units(model)
    with torch.no_grad():  # rho near 0 makes every hidden unit sigma(0): flat, legitimately
        model.rho.abs_().add_(0.5)
    model = model.to(dtype=dtype, device=device)
    x = draw(lst.tensors((CONTEXT_BATCH, d), dtype=dtype, device=device))
    return (model, x, *draw_context_pair(draw, _C, dtype, device))


def deepnade_context(draw, dtype, device):
    """A DeepNADE with a fixed order, or an EoNADE ensemble whose orderings come from a
    seeded generator (the same for both contexts)."""
    d = draw(st.integers(1, 8))
    model = lm.DeepNADE(
        d,
        hidden_dims=(draw(st.integers(2, 8)),) * draw(st.integers(1, 2)),
        activation=draw(st.sampled_from(["relu", "tanh", "sigmoid"])),
        context_dim=_C,
        seed=draw(lst.seeds()),
    )
    _perturb(model, _gen(draw), 0.3)
    live_units(model)
    model = model.to(dtype=dtype, device=device)
    if draw(st.booleans()):
        order = _perm(draw, d)
        obj = lambda c: model(c, order=order)
    else:
        k, seed = draw(st.integers(1, 3)), draw(lst.seeds())
        obj = lambda c: model.ensemble(k, c, torch.Generator().manual_seed(seed))
    return (obj, _x_binary(draw, d, dtype, device), *draw_context_pair(draw, _C, dtype, device))


DISTRIBUTION_CASES = [
    DistributionCase(
        name="nade",
        covers=(ld.NADE,),
        make=make_nade,
        autoregressive=nade_autoregressive,
        context_checks=[ContextCheck("model", (ld.NADE, lm.NADE), nade_context)],
    ),
    DistributionCase(
        name="rnade_1d",
        covers=(ld.RNADE,),
        make=make_rnade_1d,
        normalized_kwargs=dict(bounds=[(-12.0, 12.0)], num_points=2001),
        autoregressive=rnade_autoregressive,
        context_checks=[ContextCheck("model", (ld.RNADE, lm.RNADE), rnade_context)],
    ),
    DistributionCase(
        name="rnade_2d",
        covers=(ld.RNADE,),
        make=make_rnade_2d,
        # |mean| <= 4 and std in [0.2, 1.7]: the box holds all but ~1e-6 of the mass and
        # the grid step (0.1) is well below the smallest std (trapezoid rule converges
        # geometrically for such smooth, fast-decaying densities).
        normalized_kwargs=dict(bounds=[(-12.0, 12.0), (-12.0, 12.0)], num_points=241),
        max_examples=3,
    ),
    DistributionCase(
        name="rnade_relu",
        covers=(ld.RNADE,),
        make=make_rnade_relu,
        normalized=False,  # D up to 6: shapes/support only; 1-D/2-D cases integrate
    ),
    DistributionCase(
        name="deepnade_fixed_order",
        covers=(ld.DeepNADE,),
        make=make_deepnade,
        autoregressive=deepnade_autoregressive,
        context_checks=[
            ContextCheck("model", (ld.DeepNADE, ld.EoNADE, lm.DeepNADE), deepnade_context)
        ],
    ),
    DistributionCase(
        name="eonade_ensemble",
        covers=(ld.EoNADE,),
        make=make_eonade,
    ),
]
