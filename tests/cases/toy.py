"""Property-suite cases for the 2-D toy densities of ``pyro_lgm.data.toy``."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from pyro_lgm.data.toy import Checkerboard, EightGaussians, Rings, TwoMoons
from pyro_lgm.testing import strategies as lst
from tests.cases import DistributionCase


def _uniform(draw, shape, low, high, dtype, device):
    """A tensor of ``shape`` uniform in ``[low, high)``, from a drawn seed."""
    g = torch.Generator().manual_seed(draw(lst.seeds()))
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return (low + (high - low) * u).to(dtype=dtype, device=device)


def _batch(draw):
    return draw(lst.batch_shapes(min_dims=0, max_dims=1, max_size=3))


def make_moons(draw, dtype, device):
    noise = _uniform(draw, _batch(draw), 0.05, 0.3, dtype, device)
    return TwoMoons(noise, points_per_moon=draw(st.integers(2, 20)))


def make_eight(draw, dtype, device):
    shape = _batch(draw)
    radius = _uniform(draw, shape, 0.5, 3.0, dtype, device)
    noise = radius * _uniform(draw, shape, 0.05, 0.3, dtype, device)
    return EightGaussians(radius, noise)


def make_rings(draw, dtype, device):
    shape = _batch(draw)
    radius = _uniform(draw, shape, 0.3, 1.5, dtype, device)
    noise = radius * _uniform(draw, shape, 0.08, 0.3, dtype, device)
    return Rings(
        radius,
        noise,
        num_rings=draw(st.integers(1, 2)),
        points_per_ring=draw(st.integers(4, 16)),
    )


def make_checkerboard(draw, dtype, device):
    shape = _batch(draw)
    g = torch.Generator().manual_seed(draw(lst.seeds()))
    # sides of 0.5 or 1.0 keep every edge half-way between the points of the grid below,
    # where the trapezoid rule integrates the discontinuous density exactly
    side = 0.5 + 0.5 * torch.randint(2, shape, generator=g).to(dtype)
    return Checkerboard(
        num_squares=draw(st.integers(1, 4)),
        side=side.to(device),
        smoothing=draw(st.sampled_from([0.0, 0.05, 0.1])),
    )


_H = 0.05  # grid step: the board's edges (multiples of 0.25) fall half-way between points

DISTRIBUTION_CASES = [
    DistributionCase(
        name="toy_two_moons",
        covers=(TwoMoons,),
        make=make_moons,
        normalized_kwargs=dict(num_points=201),
    ),
    DistributionCase(
        name="toy_eight_gaussians",
        covers=(EightGaussians,),
        make=make_eight,
        normalized_kwargs=dict(num_points=201),
    ),
    DistributionCase(
        name="toy_rings",
        covers=(Rings,),
        make=make_rings,
        normalized_kwargs=dict(num_points=201),
    ),
    DistributionCase(
        name="toy_checkerboard",
        covers=(Checkerboard,),
        make=make_checkerboard,
        normalized_kwargs=dict(bounds=[(-2.5 - _H / 2, 2.5 + _H / 2)] * 2, num_points=102),
    ),
]
