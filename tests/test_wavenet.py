"""WaveNet: mu-law companding, WAV files, the network's receptive field and fast generation,
the distribution's log_prob / conditionals / sampling, the continuous density, training."""

from __future__ import annotations

import math

import pytest
import torch

import pyro_lgm.distributions as ld
import pyro_lgm.models as lm
import pyro_lgm.nn as lnn
from pyro_lgm.data import mu_law_decode, mu_law_encode, read_wav, tones, write_wav
from pyro_lgm.testing import assert_autoregressive
from tests.cases import live_units, perturb_all
from tests.cases.wavenet import band

F64 = torch.float64


def _net(seed: int = 0, **kw) -> lnn.WaveNet:
    torch.manual_seed(seed)
    args = dict(residual_channels=4, skip_channels=4, dilation_channels=4, layers_per_stack=3)
    args.update(kw)
    net = lnn.WaveNet(**args)
    perturb_all(net, seed, scale=1.0)
    return net.double().eval()


# -- mu-law ------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 16, 256, 65536])
def test_mu_law_round_trip_on_the_grid_and_monotone(levels):
    q = torch.arange(levels)
    x = mu_law_decode(q, levels, dtype=F64)
    assert bool((mu_law_encode(x, levels) == q).all())
    assert bool((x.diff() > 0).all())
    assert x[0] == -1 and x[-1] == 1


def test_mu_law_quantizes_within_half_a_bin():
    x = torch.linspace(-1, 1, 20001, dtype=F64)
    q = mu_law_encode(x)
    mu = 255
    comp = lambda v: torch.sign(v) * torch.log1p(mu * v.abs()) / math.log1p(mu)  # noqa: E731
    err = (comp(mu_law_decode(q, dtype=F64)) - comp(x)).abs()
    assert float(err.max()) <= 1 / mu + 1e-12
    assert bool((q.diff() >= 0).all())


def test_mu_law_and_audio_bad_inputs():
    with pytest.raises(ValueError, match="x:"):
        mu_law_encode(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="levels"):
        mu_law_encode(torch.tensor([0.5]), levels=1)
    with pytest.raises(ValueError, match="q:"):
        mu_law_decode(torch.tensor([256]))
    with pytest.raises(ValueError, match="length"):
        tones(1, 0)


def test_wav_round_trip(tmp_path):
    x = tones(1, 400, seed=3, dtype=F64)[0]
    assert float(x.abs().max()) <= 0.9 + 1e-12
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav", dtype=F64)
    assert rate == 8000 and y.shape == x.shape
    assert float((y - x).abs().max()) <= 0.5 / 32767 + 1e-12
    with pytest.raises(ValueError, match="x:"):
        write_wav(tmp_path / "b.wav", torch.ones(2, 3))
    with pytest.raises(ValueError, match="x:"):
        write_wav(tmp_path / "b.wav", torch.tensor([2.0]))
    (tmp_path / "c.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="path"):
        read_wav(tmp_path / "c.wav")
    import wave

    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0" * 8)
    with pytest.raises(ValueError, match="mono"):
        read_wav(tmp_path / "s.wav")


# -- the network -------------------------------------------------------------------------
@pytest.mark.parametrize("k, layers, stacks", [(2, 3, 1), (3, 2, 2), (2, 1, 3)])
def test_receptive_field_formula_and_exact_band(k, layers, stacks):
    net = _net(kernel_size=k, layers_per_stack=layers, stacks=stacks, bits=3)
    with torch.no_grad():
        live_units(net)
        net.head1.weight.abs_()
    r = net.receptive_field
    assert r == k + (k - 1) * stacks * (2**layers - 1)
    t = r + 6
    x = torch.rand(3, t, dtype=F64) * 7
    d = ld.WaveNet(net, t, validate_args=False)
    # zero from current / later samples and from beyond the field; nonzero inside it
    assert_autoregressive(d.conditional_params, x, no_blind_spot=True, within=band(t, r))
    xg = x.clone().requires_grad_(True)
    g = torch.autograd.grad(net(xg)[:, :, -1].sum(), xg)[0]
    assert bool((g[:, : t - 1 - r] == 0).all()) and bool((g[:, t - 1 - r : -1] != 0).any(0).all())


@pytest.mark.parametrize(
    "kw",
    [
        dict(bits=3),
        dict(output="logistic_mixture", bits=4, num_mixtures=2, kernel_size=3),
        dict(bits=2, num_classes=3, local_channels=2, local_upsample=4),
        dict(bits=2, global_dim=2, stacks=2),
    ],
)
def test_every_cached_step_equals_the_forward_pass(kw):
    net = _net(**kw)
    t, b = 16, 3
    x = torch.randint(0, net.levels, (b, t)).to(F64)
    g = None
    if net.num_classes:
        g = torch.tensor([0, 2, 1])
    elif net.global_dim:
        g = torch.randn(b, 2, dtype=F64)
    loc = torch.randn(b, 2, t // 4, dtype=F64) if net.local_channels else None
    with torch.no_grad():
        full = net(x, g, loc)
    s = net.generation(b, t, g, loc)
    for i in range(t):
        col = s.step(x[:, i - 1] if i else None)
        torch.testing.assert_close(col, full[:, :, i], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="step"):
        s.step(x[:, -1])


def test_local_conditioning_is_upsampled_and_changes_the_output():
    net = _net(bits=2, local_channels=2, local_upsample=4)
    loc = torch.randn(2, 2, 3, dtype=F64)
    assert net.upsampled(loc).shape == (2, 2, 12)
    x = torch.randint(0, 4, (2, 12)).to(F64)
    a, b = net(x, local_context=loc), net(x, local_context=loc + 1)
    assert not torch.allclose(a, b)
    # the local feature of frame j acts on steps 4j .. 4j + 3 only (through the gates)
    changed = loc.clone()
    changed[:, :, 2] += 1
    diff = (net(x, local_context=changed) - a).abs().sum((0, 1))
    assert bool((diff[:8] == 0).all()) and bool((diff[8:] > 0).all())
    with pytest.raises(ValueError, match="local_context"):
        net(x, local_context=torch.randn(2, 2, 4, dtype=F64))
    with pytest.raises(ValueError, match="local_context"):
        ld.WaveNet(net, 12)


# -- the distribution --------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, gl",
    [
        (dict(bits=3), None),
        (dict(output="logistic_mixture", bits=5, num_mixtures=3), None),
        (dict(bits=2, num_classes=3), "class"),
        (dict(bits=2, local_channels=2, local_upsample=2), "local"),
    ],
)
def test_cached_sampling_equals_naive_and_log_prob_sums_conditionals(kw, gl):
    net = _net(**kw)
    t = 12
    g = torch.tensor([0, 2]) if gl == "class" else None
    loc = torch.randn(2, 2, t // 2, dtype=F64) if gl == "local" else None
    d = ld.WaveNet(net, t, global_context=g, local_context=loc, validate_args=True)
    a = d.sample((3,), generator=torch.Generator().manual_seed(5))
    b = d.sample((3,), method="naive", generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, *d.batch_shape, t)
    assert torch.equal(a, b)
    assert bool(d.support.check(a).all())
    lp = d.log_prob(a)
    cond = d.conditionals(a)
    assert cond.batch_shape == a.shape
    torch.testing.assert_close(cond.log_prob(a).sum(-1), lp)
    assert torch.isfinite(lp).all()


def test_distribution_bad_inputs_name_the_argument():
    net = _net(bits=2)
    d = ld.WaveNet(net, 6, validate_args=True)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.full((6,), 4.0, dtype=F64))
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="method"):
        d.sample(method="fast")
    with pytest.raises(ValueError, match="net"):
        ld.WaveNet(torch.nn.Linear(2, 2), 6)
    with pytest.raises(ValueError, match="length"):
        ld.WaveNet(net, 0)
    with pytest.raises(ValueError, match="global_context"):
        ld.WaveNet(net, 6, global_context=torch.tensor([1]))
    with pytest.raises(ValueError, match="continuous_log_prob"):
        d.continuous_log_prob(torch.zeros(6, dtype=F64))
    with pytest.raises(ValueError, match="output"):
        lnn.WaveNet(output="gaussian")
    with pytest.raises(ValueError, match="bits"):
        lnn.WaveNet(bits=17)
    with pytest.raises(ValueError, match="num_classes, global_dim"):
        lnn.WaveNet(num_classes=2, global_dim=2)
    with pytest.raises(ValueError, match="dilation_channels"):
        lnn.WaveNet(dilation_channels=0)


def test_continuous_log_prob_matches_a_mixture_density_by_hand():
    net = _net(output="logistic_mixture", bits=8, num_mixtures=2)
    t = 7
    d = ld.WaveNet(net, t, validate_args=True)
    y = torch.rand(3, t, dtype=F64) * 2 - 1
    got = d.continuous_log_prob(y)
    p = net(y, scaled=True).transpose(1, 2)  # (3, T, 6)
    pi = torch.softmax(p[..., :2], -1)
    mu, s = p[..., 2:4], torch.exp(p[..., 4:].clamp(min=-16))
    z = (y[..., None] - mu) / s
    dens = torch.exp(-z) / (s * (1 + torch.exp(-z)) ** 2)
    torch.testing.assert_close(got, torch.log((pi * dens).sum(-1)).sum(-1))
    # through the network's input scale: the same as feeding levels on the [-1, 1] grid
    q = torch.randint(0, 256, (2, t)).to(F64)
    torch.testing.assert_close(net(q), net(net.scale(q), scaled=True))
    c = d.as_continuous()
    assert c.event_shape == (t,) and bool(c.support.check(y).all())
    torch.testing.assert_close(c.log_prob(y), got)
    z = c.sample((4,))
    assert z.shape == (4, t) and bool((z.abs() <= 1).all())
    assert torch.isfinite(c.log_prob(z)).all()
    with pytest.raises(ValueError, match="x"):
        d.continuous_log_prob(torch.full((t,), 2.0, dtype=F64))


def test_model_and_adam_lower_the_nll_on_tones():
    torch.manual_seed(0)
    model = lm.wavenet(
        32, residual_channels=8, skip_channels=8, dilation_channels=8, layers_per_stack=3, bits=4
    )
    x = mu_law_encode(tones(8, 32, sample_rate=4000, seed=1), levels=16).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = -model().log_prob(x).mean() / 32
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, (losses[0], losses[-1])
    assert model.receptive_field == model.net.receptive_field == 9


def test_sixteen_bit_mixture_samples_by_enumeration_cached_equals_naive():
    net = _net(output="logistic_mixture", num_mixtures=2, layers_per_stack=2)
    assert net.bits == 16 and net.num_params == 6
    d = ld.WaveNet(net, 3, validate_args=True)
    a = d.sample((2,), generator=torch.Generator().manual_seed(1), progress=True)
    b = d.sample((2,), method="naive", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and bool(d.support.check(a).all())
    assert torch.isfinite(d.log_prob(a)).all()


def test_expand_carries_the_contexts():
    net = _net(bits=2, global_dim=2, local_channels=1, local_upsample=2)
    d = ld.WaveNet(net, 4, torch.randn(1, 2, dtype=F64), torch.randn(3, 1, 2, dtype=F64))
    assert d.batch_shape == (3,)
    e = d.expand((5, 3))
    x = e.sample()
    assert x.shape == (5, 3, 4)
    torch.testing.assert_close(e.log_prob(x)[0], d.log_prob(x[0]))


def test_linear_levels_keep_every_16_bit_pcm_value_apart():
    """16-bit WAV values k / 32767 map to 65535 distinct linear levels, and back exactly.

    The benchmark once rounded ``(x + 1) (2^16 - 1) / 2`` in float32, which merged
    neighbouring PCM values near zero (k = 0 and k = 1 both to level 32768)."""
    from pyro_lgm.data import linear_decode, linear_encode

    k = torch.arange(-32767, 32768)
    x = (k.double() / 32767).float()  # what read_wav returns
    q = linear_encode(x, 2**16)
    assert q.dtype == torch.int64 and q.unique().numel() == k.numel()
    assert bool((q[1:] > q[:-1]).all())
    levels = torch.arange(2**16)
    assert bool((linear_encode(linear_decode(levels, 2**16, torch.float64), 2**16) == levels).all())
    assert bool((linear_encode(linear_decode(levels, 2**16), 2**16) == levels).all())  # float32
    assert linear_decode(torch.tensor([0, 2**16 - 1]), 2**16).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="x: expected finite values in"):
        linear_encode(torch.tensor([1.5]), 256)
    with pytest.raises(ValueError, match="q: expected integer levels"):
        linear_decode(torch.tensor([256]), 256)


def test_the_benchmark_levels_keep_every_16_bit_pcm_value_apart():
    from tests.test_benchmarks_cli import _load

    x = (torch.arange(-32767, 32768).double() / 32767).float()
    q = _load("wavenet").to_levels(x, "logistic_mixture", 16)
    assert q.unique().numel() == x.numel()


@pytest.mark.parametrize(
    "kw, g",
    [
        (dict(bits=2), None),
        (dict(bits=2, num_classes=2), torch.tensor([1])),
        (dict(output="logistic_mixture", bits=2, num_mixtures=2), None),
    ],
)
def test_samples_follow_log_prob(kw, g):
    """The empirical law of 20 000 cached samples of every 4-level sequence of length 3
    against ``exp(log_prob)`` (which sums to one): total variation below 0.04 (about 0.02
    expected from sampling noise for 64 cells). A draw from the wrong step's conditional
    or the wrong context would not pass: the network's weights are scaled up so the
    conditionals depend strongly on the past."""
    net = _net(seed=3, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    d = ld.WaveNet(net, 3, global_context=g)
    grid = torch.cartesian_prod(*[torch.arange(4, dtype=F64)] * 3)
    with torch.no_grad():
        exact = d.log_prob(grid.reshape(64, *d.batch_shape, 3)).exp().reshape(64)
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-9)
    assert float(exact.max()) > 0.05  # not near-uniform (1/64 = 0.016)
    n = 20_000
    x = d.sample((n,), generator=torch.Generator().manual_seed(11)).reshape(n, 3).long()
    counts = torch.bincount(x[:, 0] * 16 + x[:, 1] * 4 + x[:, 2], minlength=64)
    tv = 0.5 * float((counts.double() / n - exact).abs().sum())
    assert tv < 0.04, tv
