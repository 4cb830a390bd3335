"""PixelSNAIL over tiny images: binary 3x3 (Bernoulli), a grey 3-bit and an RGB 1-bit
logistic mixture, an RGB categorical; every earlier element reaches every output (the
attention closes the convolutions' blind spots), checked with ``no_blind_spot=True``."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import pyro_lgm.distributions as ld
import pyro_lgm.nn as lnn
from tests.cases import ContextCheck, DistributionCase
from tests.cases.pixelcnn import _autoregressive, _context_check, _ready


def _net(shape, **kwargs):
    args = dict(hidden_channels=4, num_blocks=1, num_resnets=1, key_channels=4, value_channels=4)
    args.update(kwargs)
    return lnn.PixelSNAIL(shape, **args)


def _binary(draw, dtype, device):
    net = _net((1, 3, 3), output="bernoulli", heads=draw(st.sampled_from([1, 2])))
    return ld.PixelSNAIL(_ready(net, draw, dtype, device))


def _binary_class(draw, dtype, device):
    net = _net((1, 3, 3), output="bernoulli", num_classes=3)
    labels = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)), device=device)
    return ld.PixelSNAIL(_ready(net, draw, dtype, device), labels)


def _grey_mixture(draw, dtype, device):
    net = _net((1, 2, 2), bits=3, num_mixtures=draw(st.integers(1, 3)))
    return ld.PixelSNAIL(_ready(net, draw, dtype, device))


def _rgb_mixture(draw, dtype, device):
    net = _net((3, 1, 2), bits=1, num_mixtures=2)
    return ld.PixelSNAIL(_ready(net, draw, dtype, device))


def _rgb_categorical(draw, dtype, device):
    net = _net((3, 1, 2), output="categorical", bits=1)
    return ld.PixelSNAIL(_ready(net, draw, dtype, device))


DISTRIBUTION_CASES = [
    DistributionCase(
        name="pixelsnail_binary_3x3",
        covers=(ld.PixelSNAIL,),
        make=_binary,
        autoregressive=_autoregressive(
            lambda: _net((1, 3, 5), output="bernoulli", num_blocks=2, heads=2), ld.PixelSNAIL
        ),
        context_checks=[
            ContextCheck(
                "vector",
                (ld.PixelSNAIL,),
                _context_check(
                    lambda: _net((1, 3, 3), output="bernoulli", context_dim=3),
                    ld.PixelSNAIL,
                    "vector",
                ),
            )
        ],
    ),
    DistributionCase(
        name="pixelsnail_binary_class",
        covers=(ld.PixelSNAIL,),
        make=_binary_class,
        autoregressive=_autoregressive(
            lambda: _net((1, 3, 3), output="bernoulli", num_classes=3),
            ld.PixelSNAIL,
            context=lambda device: torch.tensor([0, 1, 2, 1], device=device),
        ),
    ),
    DistributionCase(
        name="pixelsnail_grey_mixture",
        covers=(ld.PixelSNAIL,),
        make=_grey_mixture,
        autoregressive=_autoregressive(
            lambda: _net((1, 3, 4), bits=3, num_mixtures=2), ld.PixelSNAIL
        ),
    ),
    DistributionCase(
        name="pixelsnail_rgb_mixture",
        covers=(ld.PixelSNAIL,),
        make=_rgb_mixture,
        autoregressive=_autoregressive(
            lambda: _net((3, 2, 3), num_mixtures=2, bits=2), ld.PixelSNAIL
        ),
    ),
    DistributionCase(
        name="pixelsnail_rgb_categorical",
        covers=(ld.PixelSNAIL,),
        make=_rgb_categorical,
        autoregressive=_autoregressive(
            lambda: _net((3, 2, 3), output="categorical", bits=2), ld.PixelSNAIL
        ),
    ),
]
