import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pyro_lgm.metrics import (
    bits_per_dim,
    dequantized_log_likelihood,
    importance_weighted_log_likelihood,
    nats_to_bits_per_dim,
)


@given(st.floats(0.0, 1e4), st.integers(1, 4096))
def test_bits_per_dim_is_nats_over_d_log2(nll, d):
    assert nats_to_bits_per_dim(nll, d) == pytest.approx(nll / (d * math.log(2)))


def test_bits_per_dim_of_uniform_8bit_density_is_8():
    # The uniform density on [0,1)^D assigns each of the 256^D bins mass 256^-D: 8 bits/dim.
    assert float(bits_per_dim(torch.zeros(3), num_dims=3072).max()) == pytest.approx(8.0)
    # A density twice as high everywhere it matters saves exactly 1/D bits per dim.
    d = 100
    assert float(bits_per_dim(torch.tensor(math.log(2.0)), num_dims=d)) == pytest.approx(
        8.0 - 1.0 / d
    )


def test_dequantized_log_likelihood_subtracts_d_log_levels():
    out = dequantized_log_likelihood(torch.tensor([1.0]), num_dims=10, num_levels=4)
    assert float(out) == pytest.approx(1.0 - 10 * math.log(4))


def test_iwae_estimate_matches_log_mean_exp():
    w = torch.randn(7, 3, dtype=torch.float64)
    expected = w.exp().mean(0).log()
    assert torch.allclose(importance_weighted_log_likelihood(w, dim=0), expected)


def test_bad_num_dims():
    with pytest.raises(ValueError, match="num_dims"):
        nats_to_bits_per_dim(1.0, 0)
