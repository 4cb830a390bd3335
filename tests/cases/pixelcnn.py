"""PixelCNN family: PixelCNN, Gated PixelCNN, PixelCNN++ over tiny images.

The images are small enough to enumerate (``assert_normalized`` sums over every image:
2^9 binary 3x3 images, 4^6 two-bit RGB 1x2 images, ...) and the networks deep enough that
every earlier element lies in the receptive field of every output, so the Gated PixelCNN and
PixelCNN++ are checked for no blind spot everywhere. Plain PixelCNN's blind spot is a
documented property, tested in tests/test_pixelcnn.py.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import pyro_lgm.distributions as ld
import pyro_lgm.nn as lnn
from pyro_lgm.testing import image_order
from tests.cases import CONTEXT_BATCH, ContextCheck, DistributionCase, live_units, perturb_all


def _ready(net: torch.nn.Module, draw, dtype, device, live: bool = False) -> torch.nn.Module:
    """Random weights everywhere (last layers are not left at their initialisation), eval
    mode (PixelCNN++'s dropout), moved to ``dtype`` / ``device``. ``live``: positive biases,
    so that no ReLU unit is dead at every test point (a dependence check needs live paths)."""
    seed = draw(st.integers(0, 2**31 - 1), label="weights seed")
    # live: weights at half scale and positive biases (|b| + 0.5), so that the biases keep
    # the ReLU units of the head alive at every point (with unit-scale weights Hypothesis
    # found a head whose every unit was dead at one pixel: a degenerate network that has
    # no dependence to check)
    perturb_all(net, seed, scale=0.5 if live else 1.0)
    if live:
        live_units(net)
    return net.to(dtype=dtype, device=device).eval()


def _pixelcnn_binary(draw, dtype, device):
    net = lnn.PixelCNN((1, 3, 3), hidden_channels=draw(st.integers(1, 3)), num_layers=1)
    return ld.PixelCNN(_ready(net, draw, dtype, device))


def _pixelcnn_rgb(draw, dtype, device):
    net = lnn.PixelCNN((3, 1, 2), 2, 1, output="categorical", bits=2)
    return ld.PixelCNN(_ready(net, draw, dtype, device))


def _gated_binary_class(draw, dtype, device):
    net = lnn.GatedPixelCNN((1, 3, 3), 2, draw(st.integers(1, 2)), num_classes=3)
    labels = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)), device=device)
    return ld.GatedPixelCNN(_ready(net, draw, dtype, device), labels)


def _gated_rgb(draw, dtype, device):
    net = lnn.GatedPixelCNN((3, 2, 2), 1, 2, output="categorical", bits=1, kernel=3)
    return ld.GatedPixelCNN(_ready(net, draw, dtype, device))


def _pp_grey(draw, dtype, device):
    net = lnn.PixelCNNPP(
        (1, 2, 2), 4, 1, num_mixtures=draw(st.integers(1, 3)), bits=3, num_scales=2
    )
    return ld.PixelCNNPP(_ready(net, draw, dtype, device))


def _pp_rgb(draw, dtype, device):
    net = lnn.PixelCNNPP((3, 2, 2), 4, 1, num_mixtures=2, bits=1, num_scales=2)
    return ld.PixelCNNPP(_ready(net, draw, dtype, device))


def _autoregressive(make_net, dist_cls, context=None, no_blind_spot=True):
    """``(fn, x, order, kwargs)``: the conditionals' parameters as a function of real-valued
    images (generic values, so no dependence hides behind a zero gradient)."""

    def case(draw, dtype, device):
        net = _ready(make_net(), draw, dtype, device, live=True)
        ctx = None if context is None else context(device)
        d = dist_cls(net, ctx, validate_args=False)
        c, h, w = net.image_shape
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1), label="x seed"))
        top = net.levels - 1
        x = (torch.rand(4, c, h, w, generator=g, dtype=torch.float64) * top).to(dtype).to(device)
        return d.conditional_params, x, image_order(c, h, w), dict(no_blind_spot=no_blind_spot)

    return case


def _context_check(net_fn, dist_cls, kind):
    def make(draw, dtype, device):
        net = _ready(net_fn(), draw, dtype, device, live=True)
        c, h, w = net.image_shape
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1), label="seed"))
        x = torch.randint(0, net.levels, (CONTEXT_BATCH, c, h, w), generator=g).to(dtype).to(device)
        shape = (CONTEXT_BATCH, 3) if kind == "vector" else (CONTEXT_BATCH, 2, 2, 3)
        ctx = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
        other = ctx + torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
        return (lambda context: dist_cls(net, context)), x, ctx, other

    return make


DISTRIBUTION_CASES = [
    DistributionCase(
        name="pixelcnn_binary_3x3",
        covers=(ld.PixelCNN,),
        make=_pixelcnn_binary,
        autoregressive=_autoregressive(
            lambda: lnn.PixelCNN((1, 3, 3), 2, 2), ld.PixelCNN, no_blind_spot=False
        ),
        context_checks=[
            ContextCheck(
                "vector",
                (ld.PixelCNN,),
                _context_check(
                    lambda: lnn.PixelCNN((1, 3, 3), 4, 1, context_dim=3), ld.PixelCNN, "vector"
                ),
            )
        ],
    ),
    DistributionCase(
        name="pixelcnn_rgb_categorical",
        covers=(ld.PixelCNN,),
        make=_pixelcnn_rgb,
        autoregressive=_autoregressive(
            lambda: lnn.PixelCNN((3, 2, 2), 2, 1, output="categorical", bits=2),
            ld.PixelCNN,
            no_blind_spot=False,
        ),
    ),
    DistributionCase(
        name="gated_pixelcnn_binary_class",
        covers=(ld.GatedPixelCNN,),
        make=_gated_binary_class,
        autoregressive=_autoregressive(
            lambda: lnn.GatedPixelCNN((1, 4, 4), 4, 3, first_kernel=5, num_classes=3),
            ld.GatedPixelCNN,
            context=lambda device: torch.tensor([0, 1, 2, 1], device=device),
        ),
        context_checks=[
            ContextCheck(
                "vector",
                (ld.GatedPixelCNN,),
                _context_check(
                    lambda: lnn.GatedPixelCNN((1, 3, 3), 4, 1, context_dim=3),
                    ld.GatedPixelCNN,
                    "vector",
                ),
            ),
            ContextCheck(
                "map",
                (ld.GatedPixelCNN,),
                _context_check(
                    lambda: lnn.GatedPixelCNN((1, 3, 3), 4, 1, context_channels=2),
                    ld.GatedPixelCNN,
                    "map",
                ),
            ),
        ],
    ),
    DistributionCase(
        name="gated_pixelcnn_rgb_categorical",
        covers=(ld.GatedPixelCNN,),
        make=_gated_rgb,
        autoregressive=_autoregressive(
            lambda: lnn.GatedPixelCNN((3, 3, 3), 4, 3, output="categorical", bits=2),
            ld.GatedPixelCNN,
        ),
    ),
    DistributionCase(
        name="pixelcnnpp_grey_3bit",
        covers=(ld.PixelCNNPP,),
        make=_pp_grey,
        autoregressive=_autoregressive(
            lambda: lnn.PixelCNNPP((1, 4, 4), 4, 1, num_mixtures=2, bits=3, num_scales=2),
            ld.PixelCNNPP,
        ),
        context_checks=[
            ContextCheck(
                "map",
                (ld.PixelCNNPP,),
                _context_check(
                    lambda: lnn.PixelCNNPP(
                        (1, 2, 2), 4, 1, num_mixtures=2, bits=2, num_scales=2, context_channels=2
                    ),
                    ld.PixelCNNPP,
                    "map",
                ),
            ),
        ],
    ),
    DistributionCase(
        name="pixelcnnpp_rgb",
        covers=(ld.PixelCNNPP,),
        make=_pp_rgb,
        autoregressive=_autoregressive(
            lambda: lnn.PixelCNNPP((3, 2, 2), 4, 1, num_mixtures=2, num_scales=2),
            ld.PixelCNNPP,
        ),
    ),
]
