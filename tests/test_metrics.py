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


# ------------------------------------------------------------------ model / guide metrics
def _conjugate():
    """z ~ N(0, 1), x | z ~ N(z, 1); the exact posterior is N(x / 2, 1 / 2)."""
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, spread=0.5**0.5):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, spread))

    return model, guide


def test_iwae_is_exact_for_the_exact_posterior_whatever_the_chunks_and_batches():
    import pyro.distributions as dist

    from pyro_lgm.metrics import iwae

    model, guide = _conjugate()
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)
    exact = dist.Normal(0.0, 2.0**0.5).log_prob(x)
    for chunk, batch in ((1, None), (3, 4), (50, 1)):
        got = iwae(model, guide, x, num_samples=7, chunk_size=chunk, batch_size=batch)
        assert torch.allclose(got, exact, atol=1e-12)


def test_iwae_combines_chunks_into_one_logsumexp(monkeypatch):
    import pyro_lgm.metrics as m

    calls = []

    def fake(model, guide, x, num_samples):
        start = sum(calls)
        calls.append(num_samples)
        s = torch.arange(start, start + num_samples, dtype=torch.float64)
        return (s.unsqueeze(1) * x).sin() * 30  # (S, N), far from uniform

    monkeypatch.setattr(m, "log_importance_weights", fake)
    x = torch.tensor([0.3, 1.7], dtype=torch.float64)
    got = m.iwae(None, None, x, num_samples=23, chunk_size=5)
    assert calls == [5, 5, 5, 5, 3]
    s = torch.arange(23, dtype=torch.float64)
    want = torch.logsumexp((s.unsqueeze(1) * x).sin() * 30, 0) - math.log(23)
    assert torch.allclose(got, want, atol=1e-12)


def test_elbo_of_a_wider_guide_is_below_log_p():
    import pyro.distributions as dist

    from pyro_lgm.metrics import elbo, iwae

    torch.manual_seed(0)
    model, guide = _conjugate()

    def wide(x):
        return guide(x, spread=1.5)

    x = torch.linspace(-2, 2, 200, dtype=torch.float64)
    exact = dist.Normal(0.0, 2.0**0.5).log_prob(x)
    # KL(N(m, 1.5^2) || N(m, 1/2)) = 0.5 (4.5 - 1 - log 4.5) = 0.997: the ELBO's gap
    gap = exact - elbo(model, wide, x, num_samples=400)
    assert abs(float(gap.mean()) - 0.5 * (4.5 - 1 - math.log(4.5))) < 0.02
    assert float((exact - iwae(model, wide, x, num_samples=400)).mean()) < 0.1


def test_active_units_finds_the_units_that_follow_x():
    import pyro
    import pyro.distributions as dist

    from pyro_lgm.metrics import active_units

    def guide(x):  # unit 0 follows x, unit 1 does not
        loc = torch.stack([x, torch.zeros_like(x)], -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 1000)
    # 20 samples: the raw variance of unit 1's means would be 1 / S = 0.05, five times the
    # threshold; the noise correction brings it to 0 within ~0.05 sqrt(2 / 1000) = 0.002
    count, activity = active_units(guide, x, num_samples=20)
    assert count == 1, activity
    assert abs(float(activity[0]) - float(x.var())) < 0.02 and abs(float(activity[1])) < 0.008
    with pytest.raises(ValueError, match="site: the guide has no sample site 'w'"):
        active_units(guide, torch.zeros(5), site="w")
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(guide, torch.zeros(1))
