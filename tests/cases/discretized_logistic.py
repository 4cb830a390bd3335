"""Property-suite cases for the discretized logistic mixture (PixelCNN++'s pixel likelihood).

Parameters come from regimes chosen to be hard for the numerics: means inside ``[-1, 1]``
and far outside it (``±20``), scales from below the clamp (``log_scale = -20``) to wide
(``+5``), flat and very peaked mixture weights.
"""

from __future__ import annotations

from hypothesis import strategies as st

from pyro_lgm import distributions as ld
from pyro_lgm.testing import strategies as lst
from tests.cases import DistributionCase

_LOC_CENTRES = [-20.0, -1.0, 0.0, 0.37, 1.0, 20.0]
_LOG_SCALE_CENTRES = [-20.0, -12.0, -7.0, -3.0, 0.0, 3.0, 5.0]
_LOGIT_SCALES = [0.1, 1.0, 30.0]  # flat .. very peaked weights


def _params(draw, shape, dtype, device):
    """``(loc, log_scale)`` of ``shape`` around a drawn regime, and a logit scale."""
    loc = draw(
        lst.tensors(shape, dtype=dtype, device=device, loc=draw(st.sampled_from(_LOC_CENTRES)))
    )
    log_scale = draw(
        lst.tensors(
            shape,
            dtype=dtype,
            device=device,
            loc=draw(st.sampled_from(_LOG_SCALE_CENTRES)),
            scale=0.5,
        )
    )
    return loc, log_scale, draw(st.sampled_from(_LOGIT_SCALES))


def make_scalar(draw, dtype, device):
    """Scalar form, 8 bits (also 1 bit: two edge bins only, and 4 bits)."""
    batch = tuple(draw(lst.batch_shapes(min_dims=0, max_dims=2, max_size=3)))
    k = draw(st.integers(1, 4))
    loc, log_scale, logit_scale = _params(draw, (*batch, k), dtype, device)
    logits = draw(lst.tensors((*batch, k), dtype=dtype, device=device, scale=logit_scale))
    bits = draw(st.sampled_from([8, 8, 1, 4]))
    return ld.DiscretizedLogisticMixture(logits, loc, log_scale, bits=bits)


def make_channels(draw, dtype, device):
    """Channel form: C = 3 with 2 or 3 bits (<= 512 points), or C = 1, 2 with up to 4 bits;
    linear channel coefficients (or none) up to several units."""
    c = draw(st.sampled_from([3, 3, 2, 1]))
    bits = draw(st.sampled_from({3: [2, 3], 2: [2, 4], 1: [3, 4]}[c]))
    batch = tuple(draw(lst.batch_shapes(min_dims=0, max_dims=1, max_size=3)))
    k = draw(st.integers(1, 3))
    loc, log_scale, logit_scale = _params(draw, (*batch, c, k), dtype, device)
    logits = draw(lst.tensors((*batch, k), dtype=dtype, device=device, scale=logit_scale))
    coeffs = None
    if draw(st.booleans()):
        pairs = c * (c - 1) // 2
        coeffs = draw(lst.tensors((*batch, pairs, k), dtype=dtype, device=device, scale=2.0))
    return ld.DiscretizedLogisticMixture(logits, loc, log_scale, coeffs=coeffs, bits=bits)


DISTRIBUTION_CASES = [
    DistributionCase(
        name="discretized_logistic_scalar",
        covers=(ld.DiscretizedLogisticMixture,),
        make=make_scalar,
        max_examples=5,
    ),
    DistributionCase(
        name="discretized_logistic_channels",
        covers=(ld.DiscretizedLogisticMixture,),
        make=make_channels,
        max_examples=5,
    ),
]
