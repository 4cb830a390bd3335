"""Property-suite cases for the MADE distribution (Bernoulli, categorical, Gaussian mixture)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from pyro_lgm import distributions as ld
from pyro_lgm import models as lm
from pyro_lgm.testing import strategies as lst
from tests.cases import CONTEXT_BATCH, ContextCheck, DistributionCase, draw_context_pair, live_units

_B = 8  # batch of the autoregressive checks: x is (B, D), a context (B, C)


def _gen(draw):
    return torch.Generator().manual_seed(draw(lst.seeds()))


def _context(draw, context_dim, dtype, device, batch=None):
    if not context_dim:
        return None
    if batch is None:
        batch = tuple(draw(lst.batch_shapes(min_dims=1, max_dims=1, max_size=3)))
    else:
        batch = (batch,)
    return draw(lst.tensors((*batch, context_dim), dtype=dtype, device=device))


def _model(
    draw,
    dtype,
    device,
    d,
    conditional,
    activation=None,
    output_scale=1.0,
    skip=None,
    min_hidden=0,
    **kw,
):
    """A random MADE model: random order, widths, skip connections, resampled masks."""
    num_hidden = draw(st.integers(min_hidden, 2))
    hidden_dims = tuple(draw(st.integers(1, 10)) for _ in range(num_hidden))
    order = draw(st.sampled_from(["natural", "reversed", "random", "explicit"]))
    if order == "explicit":
        order = torch.randperm(d, generator=_gen(draw)).tolist()
    activation = activation or draw(st.sampled_from([nn.ReLU, nn.Tanh]))
    context_dim = draw(st.sampled_from([0, 0, 3]))
    model = lm.MADE(
        d,
        hidden_dims=hidden_dims,
        conditional=conditional,
        context_dim=context_dim,
        order=order,
        skip_connections=draw(st.booleans()) if skip is None else skip,
        activation=activation,
        seed=draw(lst.seeds()),
        **kw,
    )
    if draw(st.booleans()):  # connectivity-agnostic training state
        model.resample_masks(_gen(draw), resample_order=draw(st.booleans()))
    with torch.no_grad():
        out = model.net.output_layer
        out.weight.mul_(output_scale)
        out.bias.uniform_(-output_scale, output_scale, generator=_gen(draw))
    return model.to(dtype=dtype, device=device), context_dim


def _maybe_expand(draw, dist):
    if dist.context is None and draw(st.booleans()):
        return dist.expand(draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=3)))
    return dist


def make_bernoulli(draw, dtype, device):
    model, cdim = _model(draw, dtype, device, draw(st.integers(1, 8)), "bernoulli")
    return _maybe_expand(draw, model(_context(draw, cdim, dtype, device)))


def make_categorical(draw, dtype, device):
    k = draw(st.integers(2, 4))
    d = draw(st.integers(1, 4))
    model, cdim = _model(draw, dtype, device, d, "categorical", num_classes=k)
    return _maybe_expand(draw, model(_context(draw, cdim, dtype, device)))


def _mog(draw, dtype, device, d, batch=None):
    # tanh units and a scaled output layer keep |mean| <~ 1.2 and log-scale in about [-1, 1]
    # whatever the conditioning value (>= 1 hidden layer and no skip connection: a direct
    # input-to-output map would be linear in x)
    model, cdim = _model(
        draw,
        dtype,
        device,
        d,
        "mog",
        activation=nn.Tanh,
        output_scale=0.25,
        skip=False,
        min_hidden=1,
        num_components=draw(st.integers(1, 3)),
    )
    return model(_context(draw, cdim, dtype, device, batch))


def make_mog_1d(draw, dtype, device):
    return _maybe_expand(draw, _mog(draw, dtype, device, 1))


def make_mog_2d(draw, dtype, device):
    return _mog(draw, dtype, device, 2)


def _no_blind_spot(model):
    """Every earlier input reaches every output when each hidden layer holds every degree
    (width >= D covers the context's degree 0 too) and the units cannot die (tanh)."""
    d = model.features
    widths = model.net.hidden_dims
    return isinstance(model.net.activation, nn.Tanh) and all(w >= d for w in widths)


def _discrete_ar(conditional):
    def build(draw, dtype, device):
        d = draw(st.integers(1, 6))
        k = draw(st.integers(2, 4)) if conditional == "categorical" else None
        model, cdim = _model(draw, dtype, device, d, conditional, num_classes=k)
        dist = model(_context(draw, cdim, dtype, device, _B))
        g = _gen(draw)
        x = torch.randint(k or 2, (_B, d), generator=g).to(dtype=dtype, device=device)
        return (
            lambda v: dist.conditionals(v).logits,
            x,
            dist.order,
            dict(no_blind_spot=_no_blind_spot(model)),
        )

    return build


def mog_autoregressive(draw, dtype, device):
    dist = _mog(draw, dtype, device, draw(st.integers(1, 6)), _B)
    x = draw(lst.tensors((_B, dist.event_shape[0]), dtype=dtype, device=device))

    def fn(v):
        c = dist.conditionals(v)
        mix, comp = c.mixture_distribution, c.component_distribution
        return torch.stack([mix.logits, comp.loc, comp.scale], -1)  # (B, D, K, 3)

    return fn, x, dist.order, {}


def made_context(draw, dtype, device):
    """A conditional MADE model (Bernoulli, categorical or mixture of Gaussians) whose
    context enters its first layer."""
    d = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["bernoulli", "categorical", "mog"]))
    k = draw(st.integers(2, 4))
    kw = {"categorical": dict(num_classes=k), "mog": dict(num_components=k)}.get(kind, {})
    model = lm.MADE(
        d,
        # width >= 4: a chain of width-1 layers can pass the context on arbitrarily weakly
        hidden_dims=tuple(draw(st.integers(4, 10)) for _ in range(draw(st.integers(0, 2)))),
        conditional=kind,
        context_dim=3,
        skip_connections=draw(st.booleans()),
        activation=torch.nn.Tanh,  # a narrow ReLU layer can be dead for every context
        seed=draw(lst.seeds()),
        **kw,
    )
    with torch.no_grad():  # the output layer starts at zero: the context would not show
        g = _gen(draw)
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))
    live_units(model)
    model = model.to(dtype=dtype, device=device)
    g = _gen(draw)
    if kind == "mog":
        x = torch.randn(CONTEXT_BATCH, d, generator=g, dtype=torch.float64)
    else:
        x = torch.randint(k if kind == "categorical" else 2, (CONTEXT_BATCH, d), generator=g)
    x = x.to(dtype=dtype, device=device)
    return (model, x, *draw_context_pair(draw, 3, dtype, device))


DISTRIBUTION_CASES = [
    DistributionCase(
        name="made_bernoulli",
        covers=(ld.MADE,),
        make=make_bernoulli,
        autoregressive=_discrete_ar("bernoulli"),
        context_checks=[ContextCheck("model", (ld.MADE, lm.MADE), made_context)],
    ),
    DistributionCase(
        name="made_categorical",
        covers=(ld.MADE,),
        make=make_categorical,
        autoregressive=_discrete_ar("categorical"),
    ),
    DistributionCase(
        name="made_mog_1d",
        covers=(ld.MADE,),
        make=make_mog_1d,
        normalized_kwargs=dict(bounds=[(-15.0, 15.0)], num_points=2001),
        autoregressive=mog_autoregressive,
    ),
    DistributionCase(
        name="made_mog_2d",
        covers=(ld.MADE,),
        make=make_mog_2d,
        # std in about [0.37, 2.7], |mean| <~ 1.2: the box misses < 1e-6 of the mass and the
        # grid step (0.125) is far below the smallest std.
        normalized_kwargs=dict(bounds=[(-15.0, 15.0), (-15.0, 15.0)], num_points=241),
        max_examples=3,
    ),
]
