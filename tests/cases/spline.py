"""Property-suite cases for the spline family: the rational-quadratic spline itself, the
spline couplings (both directions) and their conditional variant, and conditional NSF."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from pyro_lgm.models.spline import nsf
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms.spline import (
    ConditionalSplineCoupling,
    RationalQuadraticSpline,
    SplineCoupling,
    conditional_spline_coupling,
    spline_coupling,
)
from tests.cases import (
    ContextCheck,
    TransformCase,
    live_units,
    perturb_all,
    perturbed_context_case,
)
from tests.cases.coupling import draw_context, draw_mask, draw_x


def _draw_spline(draw, dtype, device):
    """A spline with random parameters (event_dim 0 or 1, batched or not) and points both
    inside and outside ``[-B, B]`` (``x`` has scale ``B`` times 0.1, 1 or 2)."""
    bins = draw(st.integers(2, 10), label="bins")
    bound = draw(st.sampled_from([0.5, 1.0, 3.0]), label="bound")
    event_dim = draw(st.sampled_from([0, 1]), label="event_dim")
    batch = draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=4), label="x batch")
    if event_dim == 1:
        d = draw(st.integers(1, 5), label="D")
        x_shape = (*batch, d)
        # parameters per feature, shared over the batch or batched like x
        shared = draw(st.booleans(), label="shared parameters")
        p_batch = (d,) if shared else x_shape
    else:
        x_shape = tuple(batch)
        how = draw(st.sampled_from(["scalar", "last", "full"]), label="parameter batch")
        p_batch = {"scalar": (), "last": x_shape[-1:], "full": x_shape}[how]

    def params(n, label):
        return draw(lst.tensors((*p_batch, n), dtype=dtype, device=device), label=label)

    t = RationalQuadraticSpline(
        params(bins, "widths"),
        params(bins, "heights"),
        params(bins - 1, "derivatives"),
        bound=bound,
        event_dim=event_dim,
    )
    x = draw(lst.tensors(x_shape, dtype=dtype, device=device, scale=bound), label="x")
    return t, x


def make_spline(draw, dtype, device):
    return _draw_spline(draw, dtype, device)


def make_spline_inverse(draw, dtype, device):
    """The inverse direction: ``t.inv`` as a transform in its own right."""
    t, x = _draw_spline(draw, dtype, device)
    return t.inv, x


def _perturbed_coupling(draw, d: int, dtype, helper, *args):
    invert = draw(st.booleans(), label="invert")
    hidden = [draw(st.integers(4, 16), label="hidden")]
    bins = draw(st.integers(2, 8), label="bins")
    bound = draw(st.sampled_from([1.0, 3.0]), label="bound")
    module = helper(d, *args, hidden, draw_mask(draw, d), invert, bins, bound)
    # Random weights of a scale that bends the splines away from the identity. At scales 1
    # and 2 some splines come out nearly flat (derivatives of 1e-5 and below: an inverse
    # with condition number kappa up to ~1e6). Float64 round trips still hold to its
    # default tolerance; float32 ones lose about kappa ulps (measured: within 6 kappa eps,
    # as the conditioning allows, not an error of the formulas), so float32 keeps scale 0.5.
    choices = [0.5, 2.0] if dtype == torch.float64 else [0.5]
    scale = draw(st.sampled_from(choices), label="weights scale")
    perturb_all(module, draw(lst.seeds(), label="weights seed"), scale=scale)
    live_units(module)
    return module


def make_coupling(draw, dtype, device):
    d = draw(st.integers(2, 12), label="D")
    t = _perturbed_coupling(draw, d, dtype, spline_coupling)
    assert isinstance(t, SplineCoupling)
    t = t.to(dtype=dtype, device=device)
    return t, draw_x(draw, d, dtype, device)


def make_coupling_inverse(draw, dtype, device):
    t, x = make_coupling(draw, dtype, device)
    return t.inv, x


def make_conditional(draw, dtype, device):
    d = draw(st.integers(2, 12), label="D")
    c = draw(st.integers(1, 4), label="context_dim")
    module = _perturbed_coupling(draw, d, dtype, conditional_spline_coupling, c)
    assert isinstance(module, ConditionalSplineCoupling)
    module = module.to(dtype=dtype, device=device)
    x = draw_x(draw, d, dtype, device)
    context = draw_context(draw, x, c, dtype, device)
    return module.condition(context), x


def _context_check(kind: str):
    """A perturbed conditional spline coupling, or a conditional NSF, on 8 contexts."""

    def make(draw, dtype, device):
        d = draw(st.integers(2, 6), label="D")
        c = draw(st.integers(1, 4), label="context_dim")
        hidden = [draw(st.integers(4, 16), label="hidden")]
        if kind == "nsf":
            module = nsf(d, num_layers=2, hidden_dims=hidden, bins=4, context_dim=c)
        else:
            invert = draw(st.booleans(), label="invert")
            module = conditional_spline_coupling(d, c, hidden, draw_mask(draw, d), invert, 4)
        return perturbed_context_case(draw, module, d, c, dtype, device)

    return make


TRANSFORM_CASES = [
    TransformCase("rq_spline", (RationalQuadraticSpline,), make_spline),
    TransformCase(
        "rq_spline_inverse", (RationalQuadraticSpline,), make_spline_inverse, max_examples=5
    ),
    TransformCase("spline_coupling", (SplineCoupling,), make_coupling),
    TransformCase(
        "spline_coupling_inverse", (SplineCoupling,), make_coupling_inverse, max_examples=5
    ),
    TransformCase(
        "conditional_spline_coupling",
        (ConditionalSplineCoupling, SplineCoupling),
        make_conditional,
        context_checks=[
            ContextCheck(
                "layer",
                (ConditionalSplineCoupling, conditional_spline_coupling),
                _context_check("layer"),
            ),
            ContextCheck("nsf", (nsf,), _context_check("nsf")),
        ],
    ),
]
