"""Tests of the energies U1-U4 and the reverse KL (pyro_lgm.data.energies)."""

import math
import os
import runpy

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from pyro_lgm.data import (
    ENERGIES,
    Energy,
    edge_mass,
    energy,
    log_normalizer,
    reverse_kl,
    rsample_with_log_prob,
)
from pyro_lgm.models import planar_flow, radial_flow

F64 = torch.float64


def _reference(name, z1, z2):
    """Table 1 of Rezende & Mohamed (2015), written out in numpy without logsumexp."""

    def sq(x, s):
        return 0.5 * (x / s) ** 2

    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-sq(z1 - 1, 0.6))
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        r = np.sqrt(z1**2 + z2**2)
        return sq(r - 2, 0.4) - np.log(np.exp(-sq(z1 - 2, 0.6)) + np.exp(-sq(z1 + 2, 0.6)))
    if name == "U2":
        return sq(z2 - w1, 0.4)
    if name == "U3":
        return -np.log(np.exp(-sq(z2 - w1, 0.35)) + np.exp(-sq(z2 - w1 + w2, 0.35)))
    return -np.log(np.exp(-sq(z2 - w1, 0.4)) + np.exp(-sq(z2 - w1 + w3, 0.35)))


# (name, z, U without envelope) worked out by hand
HAND = [
    ("U1", (0.0, 0.0), 12.5 + 0.5 * (2 / 0.6) ** 2 - math.log(2)),  # 17.3624
    ("U1", (2.0, 0.0), -math.log(1 + math.exp(-0.5 * (4 / 0.6) ** 2))),  # ring, one mode
    ("U1", (0.0, 2.0), 0.5 * (2 / 0.6) ** 2 - math.log(2)),  # ring, between the modes
    ("U2", (0.0, 0.0), 0.0),
    ("U2", (1.0, 0.0), 0.5 / 0.4**2),  # w1(1) = 1
    ("U2", (3.0, 0.0), 0.5 / 0.4**2),  # w1(3) = -1
    ("U3", (1.0, 1.0), -math.log(1 + math.exp(-0.5 * (3 / 0.35) ** 2))),  # w2(1) = 3
    ("U3", (1.0, -2.0), -math.log(math.exp(-0.5 * (3 / 0.35) ** 2) + 1)),  # second branch
    ("U4", (1.0, 1.0), -math.log(1 + math.exp(-0.5 * (1.5 / 0.35) ** 2))),  # w3(1) = 3/2
    ("U4", (0.0, 0.0), -math.log(1 + math.exp(-0.5 * (3 / (1 + math.exp(10 / 3)) / 0.35) ** 2))),
]


@pytest.mark.parametrize("name, z, expected", HAND)
def test_values_at_hand_computed_points(name, z, expected):
    raw = energy(name, z1_scale=None)
    got = raw(torch.tensor(z, dtype=F64))
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # the default envelope adds (z1 / 2)^2 / 2 to U2-U4 and nothing to U1
    env = 0.0 if name == "U1" else 0.5 * (z[0] / 2.0) ** 2
    assert float(energy(name)(torch.tensor(z, dtype=F64))) == pytest.approx(
        expected + env, rel=1e-12, abs=1e-12
    )


@pytest.mark.parametrize("name", ENERGIES)
def test_values_match_the_formula_on_random_points(name):
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(500, 2, generator=g, dtype=F64)
    got = energy(name, z1_scale=None)(z).numpy()
    ref = _reference(name, z[:, 0].numpy(), z[:, 1].numpy())
    ok = np.isfinite(ref)  # the naive formula overflows far out; ours does not
    assert ok.mean() > 0.9
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-10, atol=1e-10)
    # float32 and batch shapes: same values, shape z.shape[:-1]
    got32 = energy(name, z1_scale=None)(z.float().reshape(5, 100, 2))
    assert got32.shape == (5, 100) and got32.dtype == torch.float32
    np.testing.assert_allclose(got32.reshape(-1).double().numpy(), got, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ENERGIES)
def test_stable_far_from_the_mass(name):
    z = torch.tensor([[40.0, 0.0], [0.0, 40.0], [-40.0, -40.0], [1.0, 100.0]])
    u = energy(name)(z)
    assert bool(torch.isfinite(u).all()) and bool((u > 50).all()), u


def test_symmetries():
    g = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(200, 2, generator=g, dtype=F64)
    flip1 = z * torch.tensor([-1.0, 1.0], dtype=F64)
    flip2 = z * torch.tensor([1.0, -1.0], dtype=F64)
    U1 = energy("U1")
    torch.testing.assert_close(U1(flip1), U1(z))  # z1 -> -z1
    torch.testing.assert_close(U1(flip2), U1(z))  # z2 -> -z2
    torch.testing.assert_close(U1(-z), U1(z))  # z -> -z
    # U2: w1 is odd, so z -> -z leaves it unchanged; w1 has period 4 in z1 (no envelope)
    for U2 in (energy("U2"), energy("U2", z1_scale=None)):
        torch.testing.assert_close(U2(-z), U2(z))
    raw = energy("U2", z1_scale=None)
    shift = torch.tensor([4.0, 0.0], dtype=F64)
    torch.testing.assert_close(raw(z + shift), raw(z))


@pytest.mark.parametrize("name", ENERGIES)
def test_log_normalizer_converges_and_the_box_holds_the_mass(name):
    U = energy(name)
    coarse = log_normalizer(U, resolution=600)  # cell side 0.04
    default = log_normalizer(U)  # cell side 0.02
    assert default == pytest.approx(coarse, abs=1e-9)
    wider = log_normalizer(U, bound=16.0, resolution=1600)  # same cell, larger box
    assert default == pytest.approx(wider, abs=1e-7)
    assert edge_mass(U) < 1e-6


def test_log_normalizer_of_u2_is_analytic():
    # exp(-U2) = exp(-(z1/2)^2/2) exp(-((z2 - w1(z1))/0.4)^2/2): Z = 2 sqrt(2 pi) 0.4 sqrt(2 pi);
    # the box [-12, 12]^2 cuts off |z1| > 6 sd, a relative 2.0e-9 of the mass
    exact = math.log(1.6 * math.pi) + math.log(math.erf(6 / math.sqrt(2)))
    assert log_normalizer(energy("U2")) == pytest.approx(exact, abs=1e-12)
    assert log_normalizer(energy("U2")) == pytest.approx(math.log(1.6 * math.pi), abs=3e-9)
    # a Gaussian of known normalizer
    U = lambda z: 0.5 * ((z / 0.5) ** 2).sum(-1)
    assert log_normalizer(U, bound=5.0, resolution=200) == pytest.approx(
        math.log(2 * math.pi * 0.25), abs=1e-12
    )


def test_log_normalizer_refuses_an_improper_energy():
    raw = energy("U2", z1_scale=None)
    assert edge_mass(raw, bound=4.0, resolution=200) > 0.05
    with pytest.raises(ValueError, match="bound"):
        log_normalizer(raw, bound=4.0, resolution=200)
    # the check can be switched off (the caller then owns the box)
    assert math.isfinite(log_normalizer(raw, bound=4.0, resolution=200, max_edge_mass=None))


def test_reverse_kl_is_zero_for_the_target_itself():
    q = MultivariateNormal(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    U = lambda z: 0.5 * (z**2).sum(-1)
    est = reverse_kl(q, U, num_samples=5000, log_z=math.log(2 * math.pi))
    assert abs(est.kl) < 1e-12 and est.stderr < 1e-12
    # with log Z from the grid: zero to the grid's accuracy
    est = reverse_kl(q, U, num_samples=5000)
    assert abs(est.kl) < 1e-10
    assert est.free_energy == pytest.approx(est.kl - est.log_z)


def test_reverse_kl_matches_the_gaussian_formula():
    # KL(N(0, s^2 I) || N(0, I)) = s^2 - 1 - log s^2 in two dimensions
    s2 = 2.0
    q = MultivariateNormal(torch.zeros(2, dtype=F64), s2 * torch.eye(2, dtype=F64))
    U = lambda z: 0.5 * (z**2).sum(-1)
    torch.manual_seed(0)
    est = reverse_kl(q, U, num_samples=200_000, batch_size=30_000)
    exact = s2 - 1 - math.log(s2)
    assert est.kl >= 0
    assert abs(est.kl - exact) < 4 * est.stderr, (est, exact)


@pytest.mark.parametrize("make", [planar_flow, radial_flow])
def test_rsample_with_log_prob_matches_log_prob(make):
    torch.manual_seed(0)
    flow = make(2, 4).double()
    x, log_q = rsample_with_log_prob(flow(), (7, 3))
    assert x.shape == (7, 3, 2) and log_q.shape == (7, 3)
    torch.testing.assert_close(log_q, flow().log_prob(x), atol=1e-9, rtol=1e-9)
    # gradients reach the flow's parameters through both outputs
    (log_q.sum() + x.sum()).backward()
    assert all(p.grad is not None for p in flow.parameters())
    # a plain distribution: rsample then log_prob
    q = MultivariateNormal(torch.zeros(2), torch.eye(2))
    x, log_q = rsample_with_log_prob(q, (5,))
    torch.testing.assert_close(log_q, q.log_prob(x))


def test_a_short_fit_lowers_the_kl():
    torch.manual_seed(0)
    U = energy("U1")
    log_z = log_normalizer(U)
    flow = planar_flow(2, 4)
    before = reverse_kl(flow(), U, num_samples=20_000, log_z=log_z)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(120):
        z, log_q = rsample_with_log_prob(flow(), (128,))
        loss = (log_q + U(z)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = reverse_kl(flow(), U, num_samples=20_000, log_z=log_z)
    assert after.kl > -4 * after.stderr  # a KL: non-negative within its error
    assert after.kl < before.kl - 1.0, (before, after)


def test_bad_input_raises():
    U = energy("U1")
    with pytest.raises(ValueError, match="name"):
        energy("U5")
    with pytest.raises(ValueError, match="name"):
        Energy(1)
    for bad in (-1.0, 0.0, math.inf, "2", True):
        with pytest.raises(ValueError, match="z1_scale"):
            energy("U2", z1_scale=bad)
    with pytest.raises(ValueError, match="z"):
        U(torch.zeros(3))
    with pytest.raises(ValueError, match="z"):
        U(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="z"):
        U(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="z"):
        U([0.0, 0.0])
    for kw in (dict(bound=-1.0), dict(bound=math.nan), dict(bound="4")):
        with pytest.raises(ValueError, match="bound"):
            log_normalizer(U, **kw)
    for res in (5, 100.0, True):
        with pytest.raises(ValueError, match="resolution"):
            log_normalizer(U, resolution=res)
    with pytest.raises(ValueError, match="U"):
        log_normalizer("U1")
    with pytest.raises(ValueError, match="U"):
        log_normalizer(lambda z: z.sum(), bound=2.0, resolution=20)  # wrong shape
    q = MultivariateNormal(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="num_samples"):
        reverse_kl(q, U, num_samples=1, log_z=0.0)
    with pytest.raises(ValueError, match="log_z"):
        reverse_kl(q, U, num_samples=10, log_z=math.nan)
    with pytest.raises(ValueError, match="q"):
        reverse_kl(MultivariateNormal(torch.zeros(3), torch.eye(3)), U, 10, log_z=0.0)
    with pytest.raises(ValueError, match="q"):
        reverse_kl(MultivariateNormal(torch.zeros(4, 2), torch.eye(2)), U, 10, log_z=0.0)
    with pytest.raises(ValueError, match="q"):
        rsample_with_log_prob("q", (3,))
    with pytest.raises(ValueError, match="q"):
        rsample_with_log_prob(torch.distributions.Poisson(torch.ones(2)), (3,))


def test_tutorial_runs(tmp_path):
    path = os.path.join(os.path.dirname(__file__), "..", "tutorials", "04_energies.py")
    tutorial = runpy.run_path(path, run_name="tutorial")
    threads = torch.get_num_threads()
    try:
        out = tmp_path / "energies.png"
        kls = tutorial["main"](out=str(out), steps=5, layers=2, grid=40, eval_samples=500)
    finally:
        torch.set_num_threads(threads)
    assert set(kls) == {(n, f) for n in ENERGIES for f in ("planar", "radial")}
    assert all(math.isfinite(v) for v in kls.values())
    assert out.stat().st_size > 0
