"""Property-suite cases for Flow++: the logistic-mixture CDF transform (given parameters,
both directions), the mixture couplings on vectors and images (plain and conditional, both
directions), and whole vector and image ``flowpp`` models.

The call of these transforms runs the bracketed Newton solver, so every case checks the
solver's round trip and its implicit-function gradients (the log-det check differentiates
through it). Parameters are drawn where float32 can resolve the map: component log-scales
in ``[-1.5, 1]``, locations in ``[-1.5, 1.5]``, inputs within a few scales of the
components (tails and extreme mixtures have their own tests in tests/test_flowpp.py, with
tolerances derived from the slope)."""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st
from torch.distributions import ComposeTransform

from pyro_lgm.models import flowpp
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    ConditionalImageMixtureLogisticCoupling,
    ConditionalMixtureLogisticCoupling,
    ImageMixtureLogisticCoupling,
    MixtureLogisticCDF,
    MixtureLogisticCoupling,
    conditional_image_mixture_logistic_coupling,
    conditional_mixture_logistic_coupling,
    image_mixture_logistic_coupling,
    mixture_logistic_coupling,
)
from tests.cases import (
    ContextCheck,
    TransformCase,
    perturbed_context_case,
)
from tests.cases.coupling import draw_context, draw_mask, draw_x, perturb_last_layer
from tests.cases.image_flows import (
    _context_check,
    _finish,
    draw_images,
    draw_shape,
)

EXAMPLES = 5


def _uniform(draw, shape, low, high, label):
    seed = draw(lst.seeds(), label=f"{label} seed")
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def make_cdf(draw, dtype, device, inverse=False):
    k = draw(st.integers(1, 6), label="K")
    batch = tuple(draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=4), label="params"))
    event_dim = draw(st.integers(0, min(1, len(batch))), label="event_dim")
    logits = _uniform(draw, (*batch, k), -2, 2, "logits")
    # overlapping components: between two far-apart narrow ones the map is flat and its
    # inverse ill-conditioned beyond what float32 can judge (the tail tests cover that)
    loc = _uniform(draw, (*batch, k), -1.5, 1.5, "loc")
    log_scale = _uniform(draw, (*batch, k), -1.5, 1, "log_scale")
    log_a = _uniform(draw, batch, -1, 1, "a")
    b = _uniform(draw, batch, -1, 1, "b")
    p = [v.to(dtype=dtype, device=device) for v in (logits, loc, log_scale, log_a, b)]
    t = MixtureLogisticCDF(*p, event_dim=event_dim)
    outer = draw(st.sampled_from([(), (2,)]), label="outer batch")
    x = draw(lst.tensors((*outer, *batch), dtype=dtype, device=device), label="x")
    if inverse:  # data-side points: within the components' reach
        return t.inv, 2 * x
    return t, x


def _make_vector(conditional: bool, inverse: bool):
    def make(draw, dtype, device):
        d = draw(st.integers(2, 8), label="D")
        k = draw(st.integers(1, 5), label="K")
        hidden = [draw(st.integers(4, 16), label="hidden")]
        mask, invert = draw_mask(draw, d), draw(st.booleans(), label="invert")
        x = draw_x(draw, d, dtype, device)
        if conditional:
            c = draw(st.integers(1, 3), label="context_dim")
            m = conditional_mixture_logistic_coupling(d, c, hidden, mask, invert, k)
            assert isinstance(m, ConditionalMixtureLogisticCoupling)
            perturb_last_layer(m.conditioner)
            m = m.to(dtype=dtype, device=device)
            t = m.condition(draw_context(draw, x, c, dtype, device))
        else:
            t = mixture_logistic_coupling(d, hidden, mask, invert, k)
            perturb_last_layer(t.conditioner)
            t = t.to(dtype=dtype, device=device)
        assert isinstance(t, MixtureLogisticCoupling)
        return (t.inv, x) if inverse else (t, x)

    return make


def _conditional_image(c, context_shape, mask, invert, net, hidden, blocks, k=3):
    return conditional_image_mixture_logistic_coupling(
        c, context_shape, mask, invert, k, net, hidden, blocks
    )


def _make_image(conditional: bool, inverse: bool):
    def make(draw, dtype, device):
        c, h, w = shape = draw_shape(draw)
        mask = draw(st.sampled_from(["checkerboard", "channel"] if c >= 2 else ["checkerboard"]))
        invert = draw(st.booleans(), label="invert")
        net = draw(st.sampled_from(["glow", "resnet", "attention"]), label="net")
        hidden = draw(st.sampled_from([4, 8]), label="hidden")
        k = draw(st.integers(1, 4), label="K")
        x = draw_images(draw, shape, dtype, device)
        if conditional:
            kind = draw(st.sampled_from(["vector", "image"]), label="context kind")
            cshape = (draw(st.integers(1, 3)),) if kind == "vector" else (1, h, w)
            m = _conditional_image(
                c, cshape if kind == "image" else cshape[0], mask, invert, net, hidden, 1, k
            )
            assert isinstance(m, ConditionalImageMixtureLogisticCoupling)
            m = _finish(draw, m, dtype, device)
            ctx = draw(lst.tensors(cshape, dtype=dtype, device=device), label="context")
            t = m.condition(ctx)
        else:
            t = image_mixture_logistic_coupling(c, mask, invert, k, net, hidden, 1)
            t = _finish(draw, t, dtype, device)
        assert isinstance(t, ImageMixtureLogisticCoupling)
        return (t.inv, x) if inverse else (t, x)

    return make


def make_vector_flow(draw, dtype, device):
    d = draw(st.integers(2, 4), label="D")
    flow = flowpp(d, num_layers=draw(st.integers(1, 3)), num_components=3, hidden=[8])
    _finish(draw, flow, dtype, device)
    return ComposeTransform(list(flow.transforms)), draw_x(draw, d, dtype, device)


def make_image_flow(draw, dtype, device):
    flow = flowpp((1, 4, 4), num_components=2, hidden=4, net="glow", blocks=1)
    flow = _finish(draw, flow, dtype, device)
    # the coupling part only (the preprocessing has its own cases)
    core = ComposeTransform(list(flow.transforms)[:-2])
    return core, draw_images(draw, (1, 4, 4), dtype, device, batch=(2,))


def _vector_context(draw, dtype, device):
    d, c = draw(st.integers(2, 5), label="D"), draw(st.integers(1, 3), label="C")
    k = draw(st.integers(1, 4), label="K")
    hidden = [draw(st.integers(4, 12), label="hidden")]
    m = conditional_mixture_logistic_coupling(d, c, hidden, "half", False, k)
    return perturbed_context_case(draw, m, d, c, dtype, device)


def _flow_context(draw, dtype, device):
    d, c = draw(st.integers(2, 4), label="D"), draw(st.integers(1, 3), label="C")
    flow = flowpp(d, num_layers=2, num_components=2, hidden=[8], context_dim=c)
    return perturbed_context_case(draw, flow, d, c, dtype, device)


TRANSFORM_CASES = [
    TransformCase(
        "mixture-cdf",
        (MixtureLogisticCDF,),
        make_cdf,
        max_examples=EXAMPLES,
    ),
    TransformCase(
        "mixture-cdf-inverse",
        (MixtureLogisticCDF,),
        functools.partial(make_cdf, inverse=True),
        max_examples=EXAMPLES,
    ),
    TransformCase(
        "mixture-coupling",
        (MixtureLogisticCoupling,),
        _make_vector(False, False),
        max_examples=EXAMPLES,
        context_checks=[
            ContextCheck(
                "conditional-mixture-coupling",
                (ConditionalMixtureLogisticCoupling, conditional_mixture_logistic_coupling),
                _vector_context,
            ),
            ContextCheck("flowpp-vector", (flowpp,), _flow_context),
        ],
    ),
    TransformCase(
        "mixture-coupling-inverse",
        (MixtureLogisticCoupling,),
        _make_vector(False, True),
        max_examples=EXAMPLES,
    ),
    TransformCase(
        "conditional-mixture-coupling",
        (ConditionalMixtureLogisticCoupling,),
        _make_vector(True, False),
        max_examples=EXAMPLES,
    ),
    TransformCase(
        "image-mixture-coupling",
        (ImageMixtureLogisticCoupling,),
        _make_image(False, False),
        max_examples=3,
        context_checks=[
            ContextCheck(
                "conditional-image-mixture-coupling",
                # condition() returns an ImageMixtureLogisticCoupling holding the context
                (
                    ConditionalImageMixtureLogisticCoupling,
                    conditional_image_mixture_logistic_coupling,
                    ImageMixtureLogisticCoupling,
                ),
                _context_check(_conditional_image),
                max_examples=3,
            )
        ],
    ),
    TransformCase(
        "image-mixture-coupling-inverse",
        (ImageMixtureLogisticCoupling,),
        _make_image(False, True),
        max_examples=3,
    ),
    TransformCase(
        "conditional-image-mixture-coupling",
        (ConditionalImageMixtureLogisticCoupling,),
        _make_image(True, False),
        max_examples=3,
    ),
    TransformCase("flowpp-vector", (), make_vector_flow, max_examples=3),
    TransformCase("flowpp-image", (), make_image_flow, max_examples=2),
]
