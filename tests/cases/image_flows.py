"""Property-suite cases for the image flows: squeeze, image couplings (checkerboard and
channel masks, conditional on a vector or an image), multi-scale factor-out with and without
Glow's learned prior, and whole multi-scale Glow and RealNVP flows."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch.distributions import ComposeTransform

from pyro_lgm.models import glow, realnvp_image
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    ConditionalImageAdditiveCoupling,
    ConditionalImageAffineCoupling,
    FactorOut,
    ImageAdditiveCoupling,
    ImageAffineCoupling,
    InvertibleConv1x1,
    Squeeze,
    conditional_image_additive_coupling,
    conditional_image_affine_coupling,
    image_additive_coupling,
    image_affine_coupling,
)
from tests.cases import (
    CONTEXT_BATCH,
    ContextCheck,
    TransformCase,
    draw_context_pair,
    live_units,
    perturb_all,
)

# The image shapes of the issue: one channel, RGB, and a non-square two-channel image.
SHAPES = [(1, 4, 4), (3, 8, 8), (2, 4, 8)]


def draw_shape(draw, min_channels: int = 1):
    return draw(st.sampled_from([s for s in SHAPES if s[0] >= min_channels]), label="shape")


def draw_images(draw, shape, dtype, device, batch=None):
    if batch is None:
        batch = draw(lst.batch_shapes(min_dims=0, max_dims=2, max_size=3), label="batch")
    return draw(lst.tensors((*batch, *shape), dtype=dtype, device=device), label="x")


def _finish(draw, t, dtype, device):
    perturb_all(t, draw(lst.seeds(), label="weights seed"))
    live_units(t)
    return t.to(dtype=dtype, device=device)


def _coupling_args(draw, c: int):
    mask = draw(st.sampled_from(["checkerboard", "channel"] if c >= 2 else ["checkerboard"]))
    invert = draw(st.booleans(), label="invert")
    net = draw(st.sampled_from(["glow", "resnet"]), label="net")
    hidden = draw(st.integers(4, 12), label="hidden")
    return mask, invert, net, hidden


def make_squeeze(draw, dtype, device):
    shape = draw_shape(draw)
    order = draw(st.sampled_from(["checkerboard", "raster"]), label="order")
    inverse = draw(st.booleans(), label="depth-to-space")
    if inverse:  # Squeeze().inv acts on (4C, H/2, W/2)
        c, h, w = shape
        return Squeeze(order).inv, draw_images(draw, (4 * c, h // 2, w // 2), dtype, device)
    return Squeeze(order), draw_images(draw, shape, dtype, device)


def make_affine(draw, dtype, device):
    c, h, w = draw_shape(draw)
    mask, invert, net, hidden = _coupling_args(draw, c)
    scale = draw(st.sampled_from(["tanh", "sigmoid"]), label="scale")
    t = image_affine_coupling(c, mask, invert, net, hidden, blocks=1, scale=scale)
    assert isinstance(t, ImageAffineCoupling)
    return _finish(draw, t, dtype, device), draw_images(draw, (c, h, w), dtype, device)


def make_additive(draw, dtype, device):
    c, h, w = draw_shape(draw)
    mask, invert, net, hidden = _coupling_args(draw, c)
    t = image_additive_coupling(c, mask, invert, net, hidden, blocks=1)
    assert isinstance(t, ImageAdditiveCoupling)
    return _finish(draw, t, dtype, device), draw_images(draw, (c, h, w), dtype, device)


def _conditional_module(draw, helper, shape):
    c, h, w = shape
    mask, invert, net, hidden = _coupling_args(draw, c)
    kind = draw(st.sampled_from(["vector", "image"]), label="context kind")
    context_shape = draw(st.integers(1, 4)) if kind == "vector" else (draw(st.integers(1, 2)), h, w)
    return helper(c, context_shape, mask, invert, net, hidden, 1), context_shape


def _make_conditional(helper, cls):
    def make(draw, dtype, device):
        shape = draw_shape(draw)
        module, context_shape = _conditional_module(draw, helper, shape)
        assert isinstance(module, cls)
        module = _finish(draw, module, dtype, device)
        x = draw_images(draw, shape, dtype, device)
        cshape = (context_shape,) if isinstance(context_shape, int) else context_shape
        how = draw(st.sampled_from(["unbatched", "same"]), label="context batch")
        cbatch = () if how == "unbatched" else x.shape[:-3]
        context = draw(lst.tensors((*cbatch, *cshape), dtype=dtype, device=device), label="ctx")
        return module.condition(context), x

    return make


def _context_check(helper):
    def make(draw, dtype, device):
        shape = draw_shape(draw)
        module, context_shape = _conditional_module(draw, helper, shape)
        module = _finish(draw, module, dtype, device)
        x = draw_images(draw, shape, dtype, device, batch=(CONTEXT_BATCH,))
        if isinstance(context_shape, int):
            return (module, x, *draw_context_pair(draw, context_shape, dtype, device))
        flat = context_shape[0] * shape[1] * shape[2]
        first, other = draw_context_pair(draw, flat, dtype, device)
        return (
            module,
            x,
            first.reshape(CONTEXT_BATCH, *context_shape),
            other.reshape(CONTEXT_BATCH, *context_shape),
        )

    return make


def make_factor_out(draw, dtype, device):
    c, h, w = draw_shape(draw, min_channels=2)
    keep = draw(st.integers(1, c - 1), label="keep")
    prior = draw(st.booleans(), label="prior")
    inner = draw(st.sampled_from(["none", "coupling", "squeezed"]), label="inner")
    if inner == "none":
        ts = []
    elif inner == "coupling":
        ts = [image_affine_coupling(keep, "checkerboard", hidden=6)]
    else:  # a coarser scale inside: squeeze, channel coupling, back
        ts = [Squeeze(), image_affine_coupling(4 * keep, "channel", hidden=6), Squeeze().inv]
    t = _finish(draw, FactorOut(c, keep, ts, prior=prior), dtype, device)
    return t, draw_images(draw, (c, h, w), dtype, device)


def _finish_flow(draw, model, dtype, device):
    """:func:`_finish` for a whole flow, keeping the 1x1 convolutions' random rotations.

    ``perturb_all`` replaces every matrix by small Gaussian noise; for a 1x1 convolution
    that is a random 4x4 or 8x8 matrix, often nearly singular, and a stack of a few of them
    loses float32 round trips to the problem's conditioning (a drawn Glow missed by 4e-3).
    A trained Glow's convolutions are well-conditioned; the rotations of initialisation
    stand for them, and everything else is perturbed.
    """
    convs = [m for m in model.modules() if isinstance(m, InvertibleConv1x1)]
    kept = [{k: v.clone() for k, v in m.named_parameters() if v.dim() == 2} for m in convs]
    perturb_all(model, draw(lst.seeds(), label="weights seed"))
    live_units(model)
    with torch.no_grad():
        for m, params in zip(convs, kept):
            for k, v in params.items():
                getattr(m, k).copy_(v)
    return model.to(dtype=dtype, device=device)


def _initialise(model, dtype, device, shape):
    """Run the data-dependent ActNorm initialisation on a batch of random images."""
    x = torch.randint(0, 256, (8, *shape), dtype=torch.float64).to(dtype=dtype, device=device)
    with torch.no_grad():
        model.log_likelihood(x)


def make_glow(draw, dtype, device):
    shape = draw(st.sampled_from([(1, 4, 4), (2, 4, 8)]), label="shape")
    coupling = draw(st.sampled_from(["affine", "additive"]), label="coupling")
    lu = draw(st.booleans(), label="lu")
    model = glow(shape, levels=2, steps=2, hidden=6, coupling=coupling, lu=lu)
    model = _finish_flow(draw, model, dtype, device)
    _initialise(model, dtype, device, shape)
    # the whole flow but the preprocessing: a bijection of R^D in both directions
    t = ComposeTransform(list(model.transforms)[:-2])
    return t, draw_images(draw, shape, dtype, device)


def make_realnvp(draw, dtype, device):
    shape = draw(st.sampled_from([(1, 4, 4), (2, 4, 8)]), label="shape")
    model = realnvp_image(shape, num_scales=2, hidden=6, blocks=1)
    model = _finish_flow(draw, model, dtype, device)
    _initialise(model, dtype, device, shape)
    t = ComposeTransform(list(model.transforms)[:-2])
    return t, draw_images(draw, shape, dtype, device)


# float32 through several convolutions: the kit's sqrt(eps) (3.5e-4) holds for one layer; a
# composed multi-scale flow on values of scale 2 loses a little more (measured below 2e-4).
_DEEP = {torch.float32: dict(atol=1e-3, rtol=1e-3)}

TRANSFORM_CASES = [
    TransformCase("squeeze", (Squeeze,), make_squeeze, max_examples=6),
    TransformCase("image_affine_coupling", (ImageAffineCoupling,), make_affine, max_examples=6),
    TransformCase(
        "image_additive_coupling", (ImageAdditiveCoupling,), make_additive, max_examples=4
    ),
    TransformCase(
        "conditional_image_affine_coupling",
        (ConditionalImageAffineCoupling, ImageAffineCoupling),
        _make_conditional(conditional_image_affine_coupling, ConditionalImageAffineCoupling),
        max_examples=4,
        context_checks=[
            ContextCheck(
                "layer",
                # condition() returns an ImageAffineCoupling holding the context
                (
                    ConditionalImageAffineCoupling,
                    conditional_image_affine_coupling,
                    ImageAffineCoupling,
                ),
                _context_check(conditional_image_affine_coupling),
                max_examples=3,
            )
        ],
    ),
    TransformCase(
        "conditional_image_additive_coupling",
        (ConditionalImageAdditiveCoupling, ImageAdditiveCoupling),
        _make_conditional(conditional_image_additive_coupling, ConditionalImageAdditiveCoupling),
        max_examples=4,
        context_checks=[
            ContextCheck(
                "layer",
                (
                    ConditionalImageAdditiveCoupling,
                    conditional_image_additive_coupling,
                    ImageAdditiveCoupling,
                ),
                _context_check(conditional_image_additive_coupling),
                max_examples=3,
            )
        ],
    ),
    TransformCase("factor_out", (FactorOut,), make_factor_out, max_examples=6),
    TransformCase("glow", (FactorOut, Squeeze), make_glow, tolerances=_DEEP, max_examples=3),
    TransformCase(
        "realnvp_image", (FactorOut, Squeeze), make_realnvp, tolerances=_DEEP, max_examples=3
    ),
]
