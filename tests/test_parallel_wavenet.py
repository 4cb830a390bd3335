"""Parallel WaveNet: the causal 1-D network, the sequence IAF, the student and distillation."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_lgm.models import (
    DensityDistillation,
    ParallelWaveNet,
    TeacherDensity,
    distillation_loss,
    power_loss,
)
from pyro_lgm.nn import CausalConvNet1d
from pyro_lgm.testing import (
    assert_autoregressive,
    assert_bijective,
    assert_log_abs_det_jacobian,
)
from pyro_lgm.transforms import SequenceIAF, conditional_sequence_iaf, sequence_iaf
from tests.cases import parallel_wavenet as cases
from tests.cases import perturb_all


class AR1Teacher:
    """Stationary Gaussian AR(1): x_1 ~ N(0, s^2 / (1 - phi^2)), x_t = phi x_{t-1} + s e_t."""

    def __init__(self, phi: float = 0.8, sigma: float = 0.5) -> None:
        self.phi, self.sigma = phi, sigma

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        var0 = self.sigma**2 / (1 - self.phi**2)
        first = -0.5 * (x[..., 0] ** 2 / var0 + math.log(2 * math.pi * var0))
        r = x[..., 1:] - self.phi * x[..., :-1]
        rest = -0.5 * (r**2 / self.sigma**2 + math.log(2 * math.pi * self.sigma**2))
        return first + rest.sum(-1)


def _perturbed(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    perturb_all(net, seed)
    return net


# ---------------------------------------------------------------- the causal network
@pytest.mark.parametrize("kernel_size,layers", [(2, 3), (3, 2), (1, 2), (2, 0)])
def test_causal_net_reads_exactly_its_past_receptive_field(kernel_size, layers):
    torch.manual_seed(0)
    net = _perturbed(CausalConvNet1d(hidden=6, layers=layers, kernel_size=kernel_size)).double()
    T = 24
    R = net.receptive_field
    assert R == kernel_size + (kernel_size - 1) * sum(2**i for i in range(layers))
    x = torch.randn(3, 1, T, dtype=torch.float64, requires_grad=True)
    out = net(x)
    for t in range(T):
        (g,) = torch.autograd.grad(out[:, :, t].sum(), x, retain_graph=True)
        reach = (g.abs().sum((0, 1)) != 0).nonzero().flatten().tolist()
        assert reach == list(range(max(0, t - R), t)), (t, reach)


def test_causal_net_context_kinds_and_bad_inputs():
    net = CausalConvNet1d(hidden=4, layers=2, global_dim=3, local_channels=2)
    x = torch.randn(5, 1, 8)
    assert net(x, (torch.randn(5, 3), torch.randn(5, 2, 8))).shape == (5, 2, 8)
    with pytest.raises(ValueError, match="context"):
        net(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="context"):
        net(x)
    labels = CausalConvNet1d(hidden=4, layers=1, num_classes=3)
    assert labels(x, torch.tensor([0, 1, 2, 0, 1])).shape == (5, 2, 8)
    with pytest.raises(ValueError, match="context"):
        labels(x, torch.tensor([0, 1, 3, 0, 1]))
    with pytest.raises(ValueError, match="x"):
        net(torch.randn(5, 8), (torch.randn(5, 3), torch.randn(5, 2, 8)))
    for kwargs, name in [
        (dict(hidden=0), "hidden"),
        (dict(kernel_size=0), "kernel_size"),
        (dict(layers=2, dilations=[1]), "dilations"),
        (dict(global_dim=2, num_classes=3), "global_dim"),
        (dict(local_channels=-1), "local_channels"),
    ]:
        with pytest.raises(ValueError, match=name):
            CausalConvNet1d(**kwargs)


# ---------------------------------------------------------------- the sequence IAF
def _iaf64(seed: int = 0, **kwargs) -> SequenceIAF:
    torch.manual_seed(seed)
    t = sequence_iaf(hidden=6, layers=2, **kwargs)
    _perturbed(t.net, seed)
    return t.double()


def test_sequence_iaf_properties_float64():
    t = _iaf64()
    z = torch.randn(4, 12, dtype=torch.float64)
    assert_bijective(t, z)
    assert_log_abs_det_jacobian(t, z)
    assert_autoregressive(t, z, include_self=True)
    # y_t reads z_t itself and every earlier step of its receptive field
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(t(zz)[:, 11].sum(), zz)
    R = t.net.receptive_field
    assert (g[:, 11 - R : 12].abs().sum(0) != 0).all()


def test_sequence_iaf_inverse_passes_and_cache():
    t = _iaf64(1)
    z = torch.randn(3, 10, dtype=torch.float64)
    y = t(z)
    assert t.inv(y) is z  # served from the pair cache
    z2 = t.inv(y.clone())
    assert t.last_num_passes <= 10
    torch.testing.assert_close(z2, z)


def test_conditional_sequence_iaf_uses_context_and_broadcasts():
    torch.manual_seed(0)
    ct = conditional_sequence_iaf(global_dim=3, hidden=6, layers=2)
    _perturbed(ct.net, 2)
    c1, c2 = torch.randn(4, 3), torch.randn(4, 3)
    z = torch.randn(5, 4, 9)  # samples first, then the context's batch
    y1, y2 = ct.condition(c1)(z), ct.condition(c2)(z)
    assert y1.shape == (5, 4, 9) and not torch.allclose(y1, y2)
    torch.testing.assert_close(ct.condition(c1)(z[2]), y1[2])
    with pytest.raises(ValueError, match="context"):
        ct.condition(torch.randn(3, 3))(z)
    with pytest.raises(ValueError, match="net"):
        SequenceIAF(CausalConvNet1d(out_channels=3))


@pytest.mark.parametrize("maker", ["unconditional", "conditional"])
def test_sequence_iaf_is_autoregressive_on_every_device(maker, device, dtype):
    """y_t reads z_<=t only (include_self), for the property cases' random layers."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    make = cases.make_unconditional if maker == "unconditional" else cases.make_conditional

    @settings(max_examples=6, deadline=None)
    @given(st.data())
    def inner(data):
        torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="torch seed"))
        t, z = make(data.draw, dtype, device)
        T = z.shape[-1]
        flat = z.reshape(-1, T)
        assert_autoregressive(lambda v: t(v.reshape(z.shape)).reshape(-1, T), flat,
                              include_self=True)  # fmt: skip

    inner()


# ---------------------------------------------------------------- the student
def test_student_log_prob_matches_sampling_pass():
    torch.manual_seed(0)
    student = ParallelWaveNet(16, flows=3, hidden=6, layers=2)
    _perturbed(student, 3)
    x, log_q = student.sample_with_log_prob(5)
    assert x.shape == (5, 16) and log_q.shape == (5,)
    # a fresh tensor: the density comes from the sequential inverse, not a cache
    torch.testing.assert_close(student().log_prob(x.detach().clone()), log_q.detach())
    torch.testing.assert_close(student().log_prob(x), log_q)


def test_student_bounded_and_conditional():
    torch.manual_seed(0)
    student = ParallelWaveNet(8, flows=2, hidden=4, layers=1, bounded=True, num_classes=2)
    perturb_all(student, 4, scale=0.1)  # moderate scales: tanh does not round to 1
    student = student.double()  # atanh near +-1 loses float32 precision in the inverse
    labels = torch.tensor([0, 1, 1])
    x, log_q = student.sample_with_log_prob(4, labels)
    assert x.shape == (4, 3, 8) and log_q.shape == (4, 3) and x.abs().max() < 1
    assert torch.isfinite(log_q).all()
    torch.testing.assert_close(student(labels).log_prob(x.detach().clone()), log_q.detach())
    with pytest.raises(ValueError, match="context"):
        student()


def test_sampling_is_one_pass_per_flow_whatever_the_length():
    calls = []
    for T in (8, 64):
        calls.clear()
        student = ParallelWaveNet(T, flows=3, hidden=4, layers=2)
        for net in student.nets:
            net.register_forward_hook(lambda *a: calls.append(1))
        student.sample_with_log_prob(2)
        assert len(calls) == 3
        calls.clear()
        student().rsample((2,))
        assert len(calls) == 3


def test_entropy_estimate_at_identity():
    student = ParallelWaveNet(10, flows=2, hidden=4, layers=1)
    # identity flows: the entropy of 10 standard logistic steps, 2 nats each
    torch.testing.assert_close(student.entropy_estimate(3), torch.tensor(20.0))


def test_student_bad_inputs():
    for kwargs, name in [
        (dict(length=0), "length"),
        (dict(length=4, flows=0), "flows"),
        (dict(length=4, flows=2, layers=[1]), "layers"),
        (dict(length=4, base="cauchy"), "base"),
        (dict(length=4, bounded=1), "bounded"),
    ]:
        with pytest.raises(ValueError, match=name):
            ParallelWaveNet(**kwargs)
    with pytest.raises(ValueError, match="num_samples"):
        ParallelWaveNet(4).sample_with_log_prob(0)


# ---------------------------------------------------------------- distillation
def test_distillation_lowers_kl_to_ar1_teacher():
    torch.manual_seed(0)
    teacher = AR1Teacher()
    student = ParallelWaveNet(16, flows=2, hidden=8, layers=2)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)

    def fixed_estimate() -> float:
        with torch.random.fork_rng():
            torch.manual_seed(123)
            with torch.no_grad():
                return distillation_loss(student, teacher, 512).kl.item()

    before = fixed_estimate()
    losses = []
    for _ in range(200):
        loss = distillation_loss(student, teacher, 32)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(loss.kl.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    after = fixed_estimate()
    print(f"KL first-20 {first:.3f} last-20 {last:.3f}; fixed-seed {before:.3f} -> {after:.3f}")
    assert last < 0.1 * first, (first, last)
    assert after < 0.05 * before, (before, after)
    assert after > -0.5  # a KL: nonnegative up to Monte Carlo error


def test_parts_add_up_and_power_weight():
    torch.manual_seed(0)
    student = ParallelWaveNet(32, flows=2, hidden=4, layers=2)
    ref = torch.randn(6, 64)
    out = distillation_loss(student, AR1Teacher(), 8, power_weight=0.5, reference=ref, n_fft=16)
    torch.testing.assert_close(out.kl, out.cross_entropy - out.entropy)
    torch.testing.assert_close(out.total, out.kl + 0.5 * out.power)
    assert out.power > 0
    out.total.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_svi_form_equals_distillation_loss():
    torch.manual_seed(0)
    teacher = AR1Teacher()
    student = ParallelWaveNet(12, flows=2, hidden=4, layers=2)
    _perturbed(student, 5)
    pyro.clear_param_store()
    dd = DensityDistillation(student, teacher, num_samples=6)
    svi = SVI(dd.model, dd.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    torch.manual_seed(7)
    svi_loss = svi.evaluate_loss()
    torch.manual_seed(7)
    ours = distillation_loss(student, teacher, 6, entropy="sample").kl.item()
    assert svi_loss == pytest.approx(ours, rel=1e-5, abs=1e-5)
    # and one SVI step trains the student
    before = [p.detach().clone() for p in student.parameters()]
    svi.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, student.parameters(), strict=True))


def test_svi_form_with_context():
    torch.manual_seed(0)
    student = ParallelWaveNet(8, flows=1, hidden=4, layers=1, global_dim=2)
    _perturbed(student, 6)
    ctx = torch.randn(3, 2)
    dd = DensityDistillation(student, AR1Teacher(), num_samples=4, context=ctx)
    pyro.clear_param_store()
    torch.manual_seed(1)
    svi_loss = Trace_ELBO().loss(dd.model, dd.guide)
    torch.manual_seed(1)
    ours = distillation_loss(student, AR1Teacher(), 4, context=ctx, entropy="sample").kl.item()
    assert svi_loss == pytest.approx(ours, rel=1e-5, abs=1e-5)


def test_power_loss():
    torch.manual_seed(0)
    y = torch.randn(4, 64)
    assert power_loss(y, y).item() == 0.0
    assert power_loss(y, y.flip(0), n_fft=16).item() == pytest.approx(0.0, abs=1e-10)
    x = torch.randn(4, 64, requires_grad=True)
    p = power_loss(x, 2 * y, n_fft=16)
    assert p > 0
    p.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n_fft"):
        power_loss(y, y, n_fft=128)
    with pytest.raises(ValueError, match="reference"):
        power_loss(y, None)


def test_distillation_bad_inputs():
    student = ParallelWaveNet(8, flows=1, hidden=4, layers=1)
    teacher = AR1Teacher()
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(student, object(), 4)
    with pytest.raises(ValueError, match="student"):
        distillation_loss(teacher, teacher, 4)
    with pytest.raises(ValueError, match="num_samples"):
        distillation_loss(student, teacher, 0)
    with pytest.raises(ValueError, match="power_weight"):
        distillation_loss(student, teacher, 4, power_weight=-1.0)
    with pytest.raises(ValueError, match="reference"):
        distillation_loss(student, teacher, 4, power_weight=1.0)
    with pytest.raises(ValueError, match="entropy"):
        distillation_loss(student, teacher, 4, entropy="exact")

    class Wrong:
        def log_prob(self, x):
            return x

    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(student, Wrong(), 4)
    with pytest.raises(NotImplementedError, match="teacher"):
        TeacherDensity(teacher, 8).sample()


@pytest.mark.parametrize("fused", [False, True])
def test_student_cache_never_outlives_a_parameter_update(fused):
    torch.manual_seed(0)
    student = ParallelWaveNet(8, flows=2, hidden=4, layers=1)
    _perturbed(student, 8)
    opt = torch.optim.Adam(student.parameters(), lr=0.1, fused=fused)
    x, log_q = student.sample_with_log_prob(3)
    torch.testing.assert_close(student().log_prob(x), log_q)  # served from the caches
    (-log_q.mean()).backward()
    opt.step()
    fresh = student().log_prob(x.detach().clone())
    torch.testing.assert_close(student().log_prob(x).detach(), fresh.detach())
    assert not torch.allclose(fresh, log_q.detach())
