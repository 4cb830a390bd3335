"""Tests of the training loop (pyro_lgm.train)."""

import math
import os
import subprocess
import sys
import time
import warnings

import pyro
import pyro.distributions as dist
import pyro.infer
import pyro.optim
import pytest
import torch
from pyro.distributions.transforms import AffineTransform
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pyro_lgm import train
from pyro_lgm.errors import NonFiniteValueError, check_finite
from pyro_lgm.models import Flow, maf
from pyro_lgm.train import FitResult, TrainingDivergedError, fit, load_checkpoint, save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread is fastest (and avoids contention on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class AffineFlow(nn.Module):
    """x = loc + exp(log_scale) * z: the MLE is the sample mean and standard deviation."""

    def __init__(self, dim=2, init=0.0):
        super().__init__()
        self.loc = nn.Parameter(torch.full((dim,), float(init)))
        self.log_scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, context=None):
        t = AffineTransform(self.loc, self.log_scale.exp(), event_dim=1)
        return Flow(self.loc.shape, [t])()


class LinearGaussian(nn.Module):
    """p(x | c) = N(x; W c + b, I): a conditional model called as model(context)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 2)

    def forward(self, context=None):
        return dist.Normal(self.lin(context), 1.0).to_event(1)


def _gaussian_data(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -3.0])


def test_mle_reaches_the_closed_form_optimum():
    x = _gaussian_data()
    m = AffineFlow()
    r = fit(m, x, steps=300, batch_size=250, lr=0.1, seed=0, progress=False)
    assert isinstance(r, FitResult) and r.steps == 300 and len(r.train_loss) == 300
    torch.testing.assert_close(m.loc.detach(), x.mean(0), atol=0.03, rtol=0)
    sd = x.std(0, unbiased=False)
    torch.testing.assert_close(m.log_scale.detach().exp(), sd, atol=0, rtol=0.03)
    # the final loss is close to the minimal NLL (the Gaussian's entropy at the MLE)
    nll_opt = float(torch.log(sd).sum() + math.log(2 * math.pi * math.e))
    final = -m().log_prob(x).mean().item()
    assert nll_opt <= final + 1e-5 and final - nll_opt < 0.01
    assert r.train_loss[0] > final + 1.0


def test_real_flow_trains_and_context_batches_are_supported():
    x = _gaussian_data(512)
    flow = maf(2, hidden_dims=[16], num_layers=2, seed=0)
    before = -flow().log_prob(x).mean().item()
    fit(flow, x, steps=30, batch_size=128, lr=2e-2, seed=0, progress=False)
    assert -flow().log_prob(x).mean().item() < before - 0.5

    g = torch.Generator().manual_seed(1)
    c = torch.randn(800, 1, generator=g)
    y = c * torch.tensor([2.0, -1.0]) + torch.tensor([0.5, 0.0]) + torch.randn(800, 2, generator=g)
    m = LinearGaussian()
    fit(m, (y, c), steps=200, batch_size=100, lr=0.1, seed=0, progress=False)
    torch.testing.assert_close(
        m.lin.weight.detach().flatten(), torch.tensor([2.0, -1.0]), atol=0.15, rtol=0
    )


def test_default_adam_is_fused_and_follows_plain_adams_trajectory():
    # fit() builds torch's fused Adam by default; it must be the same algorithm as the
    # per-tensor Adam a user would pass, step for step (float64, so rounding stays tiny)
    x = _gaussian_data(512).double()
    runs = []
    for optimizer in (torch.optim.Adam, lambda ps, lr: torch.optim.Adam(ps, lr=lr)):
        flow = maf(2, hidden_dims=[16], num_layers=2, seed=0).double()
        r = fit(
            flow, x, steps=40, batch_size=64, lr=1e-2, seed=0, progress=False, optimizer=optimizer
        )
        runs.append((r.train_loss, [p.detach().clone() for p in flow.parameters()]))
    assert runs[0][0][-1] < runs[0][0][0] - 0.2  # it trained
    torch.testing.assert_close(torch.tensor(runs[0][0]), torch.tensor(runs[1][0]))
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    params = [nn.Parameter(torch.zeros(3))]
    assert train._adam(params, 1e-3).defaults["fused"] is True


def test_dataloader_epochs_and_eval_schedule():
    x = _gaussian_data(200)
    loader = DataLoader(TensorDataset(x), batch_size=32, shuffle=True)
    r = fit(
        AffineFlow(), loader, epochs=3, lr=0.05, eval_data=x[:100], eval_every=5, progress=False
    )
    assert r.steps == 3 * len(loader) == 21
    assert r.eval_steps == [5, 10, 15, 20, 21]  # plus a final evaluation
    assert (
        r.best_eval == min(r.eval_loss)
        and r.best_step == r.eval_steps[r.eval_loss.index(r.best_eval)]
    )
    r = fit(AffineFlow(), x, epochs=2, batch_size=64, progress=False)
    assert r.steps == 2 * 4


def test_eval_loss_is_the_mean_nll_over_all_eval_batches():
    x, ev = _gaussian_data(100), _gaussian_data(777, seed=5)
    m = AffineFlow()
    r = fit(m, x, steps=3, lr=0.1, eval_data=ev, eval_every=3, eval_batch_size=100, progress=False)
    assert r.eval_loss[-1] == pytest.approx(-m().log_prob(ev).mean().item(), rel=1e-6)


def test_callable_loss_and_clip_grad_norm():
    x = _gaussian_data(64)
    seen = []

    def loss(model, xb):
        seen.append(xb.shape)
        return ((model.loc - xb.mean(0)) ** 2).sum()

    m = AffineFlow()
    fit(m, x, loss=loss, steps=5, batch_size=16, lr=0.1, progress=False, seed=0)
    assert seen == [torch.Size([16, 2])] * 5
    m = AffineFlow()
    fit(
        m,
        x,
        loss=loss,
        steps=5,
        batch_size=16,
        lr=0.1,
        clip_grad_norm=1e-12,
        optimizer=torch.optim.SGD,
        progress=False,
    )
    assert m.loc.detach().abs().max() < 1e-9  # the clipped SGD steps move nothing


class NormalMean(PyroModule):
    """z ~ N(0, 1), x_i ~ N(z, 1), guide q(z) = N(m, s).

    The exact posterior is N(sum(x) / (n + 1), 1 / (n + 1)).
    """

    def __init__(self):
        super().__init__()
        self.m = PyroParam(torch.tensor(0.0))
        self.s = PyroParam(torch.tensor(1.0), constraint=dist.constraints.positive)

    def model(self, x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(self, x):
        pyro.sample("z", dist.Normal(self.m, self.s))


def test_elbo_loss_fits_the_conjugate_posterior():
    pyro.clear_param_store()
    x = torch.randn(20, generator=torch.Generator().manual_seed(0)) + 1.5
    m = NormalMean()
    fit(m, x, loss="elbo", steps=300, batch_size=20, lr=0.05, seed=0, progress=False)
    assert abs(m.m.item() - float(x.sum() / 21)) < 0.08
    assert abs(m.s.item() - 1 / math.sqrt(21)) < 0.08


def _svi_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _svi_guide(x):
    m = pyro.param("m", torch.tensor(0.0))
    s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(m, s))


def _new_svi():
    return pyro.infer.SVI(
        _svi_model, _svi_guide, pyro.optim.Adam({"lr": 0.03}), pyro.infer.Trace_ELBO()
    )


def test_svi_object_and_its_resume_equals_an_uninterrupted_run(tmp_path):
    x = torch.randn(40, generator=torch.Generator().manual_seed(0)) + 1.5
    pyro.clear_param_store()
    full = fit(
        None,
        x,
        svi=_new_svi(),
        steps=200,
        batch_size=40,
        seed=0,
        progress=False,
        eval_data=x,
        eval_every=50,
    )
    m_full = float(pyro.param("m").detach())
    assert abs(m_full - float(x.sum() / 41)) < 0.1

    ckpt = tmp_path / "svi.pt"
    pyro.clear_param_store()
    fit(
        None,
        x,
        svi=_new_svi(),
        steps=80,
        batch_size=40,
        seed=0,
        progress=False,
        eval_data=x,
        eval_every=50,
        checkpoint=ckpt,
    )
    pyro.clear_param_store()
    pyro.set_rng_seed(123)  # the resumed run must not depend on the RNG state before it
    rest = fit(
        None,
        x,
        svi=_new_svi(),
        steps=200,
        batch_size=40,
        seed=0,
        progress=False,
        eval_data=x,
        eval_every=50,
        checkpoint=ckpt,
        resume=True,
    )
    assert rest.resumed_from == 80
    assert float(pyro.param("m").detach()) == m_full
    assert rest.train_loss == full.train_loss and rest.eval_loss == full.eval_loss


def _stochastic_loss(model, xb):
    """MLE on noisy data: uses the global RNG, so resuming must restore it."""
    return -model().log_prob(xb + 0.1 * torch.randn_like(xb)).mean()


class Crash(Exception):
    pass


def _crashing(at):
    calls = {"n": 0}

    def loss(model, xb):
        if torch.is_grad_enabled():  # count training steps, not evaluations
            calls["n"] += 1
        if calls["n"] == at:
            raise Crash
        return _stochastic_loss(model, xb)

    return loss


def _kw(**extra):
    kw = dict(
        batch_size=16,
        lr=0.05,
        seed=0,
        progress=False,
        eval_every=4,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 6, gamma=0.5),
    )
    kw.update(extra)
    return kw


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, kind):
    x = _gaussian_data(100)  # 7 batches of 16 per epoch: the crash is mid-epoch
    ev = _gaussian_data(50, seed=3)

    def data():
        if kind == "tensor":
            return x
        return DataLoader(TensorDataset(x), batch_size=16, shuffle=True)

    m_full = AffineFlow()
    full = fit(m_full, data(), loss=_stochastic_loss, steps=23, eval_data=ev, **_kw())

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Crash):
        fit(
            AffineFlow(),
            data(),
            loss=_crashing(at=18),
            steps=23,
            eval_data=ev,
            checkpoint=ckpt,
            checkpoint_every=5,
            **_kw(),
        )
    assert load_checkpoint(ckpt)["step"] == 15
    m = AffineFlow(init=0.7)  # different initial values: the checkpoint must overwrite them
    torch.manual_seed(999)
    rest = fit(
        m,
        data(),
        loss=_stochastic_loss,
        steps=23,
        eval_data=ev,
        checkpoint=ckpt,
        checkpoint_every=5,
        resume=True,
        **_kw(),
    )
    assert rest.resumed_from == 15 and rest.steps == 23
    assert rest.train_loss == full.train_loss
    assert rest.eval_steps == full.eval_steps and rest.eval_loss == full.eval_loss
    for p, q in zip(m.parameters(), m_full.parameters()):
        assert torch.equal(p, q)
    assert load_checkpoint(ckpt)["step"] == 23


def test_extending_a_finished_run_equals_a_longer_run(tmp_path):
    x, ev = _gaussian_data(100), _gaussian_data(50, seed=3)
    m_full = AffineFlow()
    full = fit(m_full, x, loss=_stochastic_loss, steps=20, eval_data=ev, **_kw(eval_every=3))
    ckpt = tmp_path / "run.pt"
    short = fit(
        AffineFlow(),
        x,
        loss=_stochastic_loss,
        steps=10,
        eval_data=ev,
        checkpoint=ckpt,
        **_kw(eval_every=3),
    )
    assert short.eval_steps == [3, 6, 9, 10]  # the final off-schedule evaluation ...
    m = AffineFlow()
    rest = fit(
        m,
        x,
        loss=_stochastic_loss,
        steps=20,
        eval_data=ev,
        checkpoint=ckpt,
        resume=True,
        **_kw(eval_every=3),
    )
    assert rest.eval_steps == full.eval_steps  # ... is not in the checkpoint's history
    assert rest.train_loss == full.train_loss and rest.eval_loss == full.eval_loss
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m_full.parameters()))


def test_resume_without_a_checkpoint_file_starts_fresh(tmp_path):
    r = fit(
        AffineFlow(),
        _gaussian_data(64),
        steps=3,
        checkpoint=tmp_path / "none.pt",
        resume=True,
        progress=False,
    )
    assert r.resumed_from is None and r.steps == 3
    assert load_checkpoint(tmp_path / "none.pt")["step"] == 3


def test_checkpoint_contents_and_no_temporary_files(tmp_path):
    ckpt = tmp_path / "sub" / "c.pt"
    fit(
        AffineFlow(),
        _gaussian_data(64),
        steps=6,
        checkpoint=ckpt,
        checkpoint_every=2,
        progress=False,
        seed=0,
    )
    state = load_checkpoint(ckpt)
    assert {"model", "optimizer", "step", "rng", "history", "epoch_state"} <= set(state)
    assert state["step"] == 6 and len(state["history"]["train_loss"]) == 6
    assert os.listdir(tmp_path / "sub") == ["c.pt"]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def loss(model, xb):
        calls["n"] += 1
        value = -model().log_prob(xb).mean()
        return value * math.nan if calls["n"] == 7 else value

    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDivergedError, match="step 7") as info:
        fit(
            AffineFlow(),
            _gaussian_data(64),
            loss=loss,
            steps=10,
            batch_size=8,
            checkpoint=ckpt,
            checkpoint_every=5,
            progress=False,
        )
    assert info.value.step == 7 and isinstance(info.value, FloatingPointError)
    state = load_checkpoint(ckpt)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_gradient_with_a_finite_loss_is_detected():
    def loss(model, xb):  # value 0, gradient 0 * inf = nan
        return (model.loc - model.loc.detach()).abs().sqrt().sum()

    with pytest.raises(TrainingDivergedError, match="step 1: the gradient norm is nan"):
        fit(AffineFlow(), _gaussian_data(8), loss=loss, steps=3, progress=False)


class PoisonAt(torch.optim.SGD):
    """An optimizer that writes NaN into the parameters at its ``at``-th step."""

    def __init__(self, params, lr, at=3):
        super().__init__(params, lr=lr)
        self.n, self.at = 0, at

    def step(self, closure=None):
        self.n += 1
        super().step(closure)
        if self.n == self.at:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(math.nan)


class PoisonStateAt(torch.optim.SGD):
    """An optimizer that writes NaN into its own state (not the parameters) at step ``at``."""

    def __init__(self, params, lr, at=3):
        super().__init__(params, lr=lr)
        self.n, self.at = 0, at

    def step(self, closure=None):
        self.n += 1
        super().step(closure)
        if self.n == self.at:
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["poison"] = torch.full_like(p, math.nan)


def test_a_parameter_turning_nan_stops_training_before_any_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDivergedError, match="step 3: a parameter is NaN"):
        fit(
            AffineFlow(),
            _gaussian_data(16),
            steps=5,
            batch_size=4,
            optimizer=PoisonAt,
            checkpoint=ckpt,
            checkpoint_every=1,
            progress=False,
        )
    assert load_checkpoint(ckpt)["step"] == 2


def test_a_checkpoint_with_non_finite_optimizer_state_is_never_written(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDivergedError, match="step 3: .*checkpoint not written"):
        fit(
            AffineFlow(),
            _gaussian_data(16),
            steps=5,
            batch_size=4,
            optimizer=PoisonStateAt,
            checkpoint=ckpt,
            checkpoint_every=1,
            progress=False,
        )
    state = load_checkpoint(ckpt)
    assert state["step"] == 2 and torch.isfinite(state["model"]["loc"]).all()
    assert os.listdir(tmp_path) == ["c.pt"]


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def torn_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.pt"]


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    x = _gaussian_data(32)
    fit(AffineFlow(), x, steps=3, batch_size=8, progress=True)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under capsys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    fit(AffineFlow(), x, steps=3, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "fit" in err and "3/3" in err
    fit(AffineFlow(), x, steps=3, batch_size=8, progress=False)
    assert capsys.readouterr().err == ""


def test_single_process_ignores_world_size_one(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert train._distributed() is None
    assert fit(AffineFlow(), _gaussian_data(8), steps=2, progress=False).steps == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=3, epochs=1), "steps/epochs"),
        (dict(), "steps/epochs"),
        (dict(steps=0), "steps"),
        (dict(steps=2, batch_size=0), "batch_size"),
        (dict(steps=2, lr=-1.0), "lr"),
        (dict(steps=2, lr=math.nan), "lr"),
        (dict(steps=2, resume=True), "resume"),
        (dict(steps=2, loss="kl"), "loss"),
        (dict(steps=2, eval_every=0), "eval_every"),
        (dict(steps=2, clip_grad_norm=0.0), "clip_grad_norm"),
        (dict(steps=2, seed=-1), "seed"),
        (dict(steps=2, svi="svi"), "svi"),
        (dict(steps=2, eval_data=[1, 2]), "eval_data"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(AffineFlow(), _gaussian_data(8), progress=False, **kwargs)


def test_bad_data_and_model():
    with pytest.raises(ValueError, match="data"):
        fit(AffineFlow(), [1.0, 2.0], steps=1)
    with pytest.raises(ValueError, match="data"):
        fit(AffineFlow(), (torch.zeros(4, 2), torch.zeros(3, 1)), steps=1)
    with pytest.raises(ValueError, match="data"):
        fit(AffineFlow(), torch.zeros(0, 2), steps=1)
    with pytest.raises(ValueError, match="model"):
        fit(lambda c=None: None, torch.zeros(4, 2), steps=1)
    with pytest.raises(ValueError, match="model"):
        fit(AffineFlow(), torch.zeros(4), loss="elbo", steps=1)
    with pytest.raises(ValueError, match="loss: expected a scalar"):
        fit(AffineFlow(), torch.zeros(4, 2), loss=lambda m, x: m.loc * x, steps=1, progress=False)


class _NonFiniteLogProbAt(nn.Module):
    """An ``AffineFlow`` whose log-density gets a constant ``value`` added at training step ``at``.

    The constant carries no gradient: the loss is non-finite while every gradient is finite,
    so only the loss guard of ``fit`` can stop the run.
    """

    def __init__(self, at, value):
        super().__init__()
        self.flow, self.at, self.value, self.calls = AffineFlow(), at, value, 0

    def forward(self, context=None):
        q = self.flow(context)
        if torch.is_grad_enabled():  # count training steps, not evaluations
            self.calls += 1
        if self.calls != self.at:
            return q
        value = self.value

        class Shifted:
            def log_prob(self, x):
                return q.log_prob(x) + value

        return Shifted()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_mle_loss_guard_alone_stops_a_non_finite_loss_with_finite_gradients(tmp_path, value):
    m = _NonFiniteLogProbAt(at=3, value=value)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDivergedError, match=r"step 3: the loss is (nan|-inf)$") as info:
        fit(
            m,
            _gaussian_data(64),
            steps=6,
            batch_size=8,
            checkpoint=ckpt,
            checkpoint_every=1,
            progress=False,
        )
    assert info.value.step == 3 and m.calls == 3
    assert load_checkpoint(ckpt)["step"] == 2


class _NonFiniteFactorAt(PyroModule):
    """``NormalMean`` plus ``pyro.factor(value)`` at training step ``at``: a constant term of
    the ELBO, so the loss is non-finite while the gradients stay finite."""

    def __init__(self, at, value):
        super().__init__()
        self.inner, self.at, self.value, self.calls = NormalMean(), at, value, 0

    def model(self, x):
        self.inner.model(x)
        if torch.is_grad_enabled():
            self.calls += 1
        if self.calls == self.at:
            with pyro.validation_enabled(False):  # a NaN factor is otherwise rejected
                pyro.factor("poison", torch.tensor(self.value))

    def guide(self, x):
        self.inner.guide(x)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_elbo_loss_guard_stops_a_non_finite_elbo(value):
    pyro.clear_param_store()
    m = _NonFiniteFactorAt(at=4, value=value)
    x = torch.randn(20, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDivergedError, match=r"step 4: the loss is (nan|inf)$") as info:
        fit(m, x, loss="elbo", steps=8, batch_size=20, lr=0.01, seed=0, progress=False)
    assert info.value.step == 4 and m.calls == 4


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_svi_loss_guard_stops_a_non_finite_loss(value):
    calls = {"n": 0}

    def model(x):
        _svi_model(x)
        calls["n"] += 1
        if calls["n"] == 5:
            with pyro.validation_enabled(False):  # a NaN factor is otherwise rejected
                pyro.factor("poison", torch.tensor(value))

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, _svi_guide, pyro.optim.Adam({"lr": 0.03}), pyro.infer.Trace_ELBO())
    x = torch.randn(40, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDivergedError, match=r"step 5: the loss is (nan|inf)$") as info:
        fit(None, x, svi=svi, steps=9, batch_size=40, seed=0, progress=False)
    assert info.value.step == 5 and calls["n"] == 5


class _LayerFailsAt(nn.Module):
    """An ``AffineFlow`` whose inner layer raises ``NonFiniteValueError`` at training step
    ``at`` (or at evaluation number ``eval_at``), as a transform checking its input does when
    the layer before it produced NaN. Its own input check names ``x``, like a transform's."""

    def __init__(self, at=None, eval_at=None):
        super().__init__()
        self.flow, self.at, self.eval_at = AffineFlow(), at, eval_at
        self.calls, self.evals = 0, 0

    def forward(self, context=None):
        q = self.flow(context)
        if torch.is_grad_enabled():
            self.calls += 1
        else:
            self.evals += 1
        fail = self.calls == self.at if torch.is_grad_enabled() else self.evals == self.eval_at

        class Checked:
            def log_prob(self, x):
                check_finite("x", x)
                if fail:
                    raise NonFiniteValueError("x: expected finite values, got NaN")
                return q.log_prob(x)

        return Checked()


def test_a_layer_meeting_non_finite_values_is_a_divergence_chained_from_it(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDivergedError, match="step 3: .*got NaN") as info:
        fit(
            _LayerFailsAt(at=3),
            _gaussian_data(64),
            steps=6,
            batch_size=8,
            checkpoint=ckpt,
            checkpoint_every=1,
            progress=False,
        )
    assert info.value.step == 3 and not isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, NonFiniteValueError)
    assert load_checkpoint(ckpt)["step"] == 2


def test_a_layer_meeting_non_finite_values_during_evaluation_is_a_divergence():
    with pytest.raises(TrainingDivergedError, match="step 4: .*got NaN") as info:
        fit(
            _LayerFailsAt(eval_at=2),
            _gaussian_data(64),
            steps=6,
            batch_size=8,
            eval_data=_gaussian_data(16, seed=1),
            eval_every=2,
            progress=False,
        )
    assert info.value.step == 4 and isinstance(info.value.__cause__, NonFiniteValueError)


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_batch_is_a_value_error_naming_data_not_a_divergence(validate, bad):
    x = _gaussian_data(64)
    x[37, 1] = bad  # in the 2nd batch of 32 of the shuffled data, or the 1st
    with pyro.validation_enabled(validate), pytest.raises(ValueError, match="^data") as info:
        fit(_LayerFailsAt(), x, steps=4, batch_size=32, seed=0, progress=False)
    assert not isinstance(info.value, TrainingDivergedError)
    assert ("NaN" if math.isnan(bad) else "inf") in str(info.value)
    with pyro.validation_enabled(validate), pytest.raises(ValueError, match="^eval_data"):
        fit(_LayerFailsAt(), x[:8], eval_data=x, steps=1, progress=False)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_svi_model_meeting_non_finite_values_is_a_divergence():
    calls = {"n": 0}

    def model(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise NonFiniteValueError("x: expected finite values, got inf")
        _svi_model(x)

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, _svi_guide, pyro.optim.Adam({"lr": 0.03}), pyro.infer.Trace_ELBO())
    x = torch.randn(40, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDivergedError, match="step 3: .*got inf") as info:
        fit(None, x, svi=svi, steps=5, batch_size=40, seed=0, progress=False)
    assert isinstance(info.value.__cause__, NonFiniteValueError)
    x[3] = math.nan
    pyro.clear_param_store()
    svi = pyro.infer.SVI(
        _svi_model, _svi_guide, pyro.optim.Adam({"lr": 0.03}), pyro.infer.Trace_ELBO()
    )
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="^data"):
        fit(None, x, svi=svi, steps=5, batch_size=40, seed=0, progress=False)


def test_progress_lines_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(train, "PROGRESS_INTERVAL", 0.0)  # a line after every step
    x, ev = _gaussian_data(32), _gaussian_data(16, seed=1)
    r = fit(AffineFlow(), x, steps=4, batch_size=8, eval_data=ev, eval_every=2, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    for step, line in enumerate(lines, 1):
        assert line.startswith(f"fit: step {step}/4 ({25 * step}%), ")
        assert f"loss {r.train_loss[step - 1]:.4g}" in line and "steps/s" in line
    assert "eval" not in lines[0]
    assert f"eval loss {r.eval_loss[0]:.4g} (step 2)" in lines[1] + lines[2]
    assert f"eval loss {r.eval_loss[1]:.4g} (step 4)" in lines[3]
    fit(AffineFlow(), x, steps=4, batch_size=8, progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar only
    fit(AffineFlow(), x, steps=4, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "fit: step" not in err


def test_progress_lines_every_interval_and_a_last_one(capsys, monkeypatch):
    ticks = iter(range(1000))  # a clock advancing one second per reading
    monkeypatch.setattr(train, "_clock", lambda: float(next(ticks)))
    monkeypatch.setattr(train, "PROGRESS_INTERVAL", 2.5)
    fit(AffineFlow(), _gaussian_data(32), steps=7, batch_size=8, progress=True)
    lines = capsys.readouterr().err.splitlines()
    # readings: 0 at the start, then step s at s; lines at 3 and 6, the last step at the end
    assert [line.split(",")[0] for line in lines] == [
        "fit: step 3/7 (42%)",
        "fit: step 6/7 (85%)",
        "fit: step 7/7 (100%)",
    ]
    assert lines[0].endswith("1 steps/s, 0m04s left")


_DDP_SCRIPT = """
import gc
import sys

import torch
import torch.distributed as dist

from pyro_lgm.models import maf
from pyro_lgm.errors import NonFiniteValueError
from pyro_lgm.train import TrainingDivergedError, fit

torch.set_num_threads(1)
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
x = torch.randn(88, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0]).double()
ev = torch.randn(40, 2, generator=g, dtype=torch.float64)
torch.manual_seed(0)  # the initial weights (maf's seed fixes its orders)
flow = maf(2, hidden_dims=[8], num_layers=2, seed=0).double()
kw = dict(lr=1e-2, seed=0, eval_data=ev, eval_every=5, progress=False)
r = fit(flow, x, steps=12, batch_size=16, **kw)
# 65 examples: 33 on one rank, 32 on the other; epochs must still agree across ranks
seen = []


def mle(model, xb):
    seen.append(xb.clone())
    return -model().log_prob(xb).mean()


odd = maf(2, hidden_dims=[8], num_layers=2, seed=1).double()
r_odd = fit(odd, x[:65], loss=mle, epochs=2, batch_size=16, lr=1e-2, seed=0, progress=False)


class FailsOnRank1(torch.nn.Module):
    # a layer of rank 1's replica meets a NaN at step 2; rank 0's does not

    def __init__(self):
        super().__init__()
        self.flow, self.calls = maf(2, hidden_dims=[8], num_layers=2, seed=0).double(), 0

    def forward(self, context=None):
        self.calls += 1
        if self.calls == 2 and dist.get_rank() == 1:
            raise NonFiniteValueError("x: expected finite values, got NaN")
        return self.flow(context)


try:
    fit(FailsOnRank1(), x, steps=4, batch_size=16, seed=0, progress=False)
    diverged_at = None
except TrainingDivergedError as e:  # on every rank, at the same step: no rank waits forever
    diverged_at = e.step
try:
    fit(maf(2, num_layers=1), x[:1], steps=1, progress=False)
    too_few = None
except ValueError as e:
    too_few = str(e)
torch.save(
    {
        "diverged_at": diverged_at,
        "too_few": too_few,
        "params": [p.detach() for p in flow.parameters()],
        "train_loss": r.train_loss,
        "eval_loss": r.eval_loss,
        "odd_params": [p.detach() for p in odd.parameters()],
        "odd_steps": r_odd.steps,
        "odd_batches": seen,
    },
    f"{out}/rank{dist.get_rank()}.pt",
)
gc.collect()  # the DDP wrappers of the failed fits go before their process group does
dist.barrier()
dist.destroy_process_group()
"""


_TEARDOWN_ABORT = "terminate called without an active exception"


def test_fit_under_torchrun_two_cpu_processes_equals_one_process_at_the_global_batch(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(_DDP_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["OMP_NUM_THREADS"] = "1"
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--standalone", str(script), str(tmp_path)]
    for attempt in range(2):
        run = dict(capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
        proc = subprocess.run(cmd, **run)
        if proc.returncode == 0 or _TEARDOWN_ABORT not in proc.stderr or attempt == 1:
            break
        # Seen twice in about 20 full-suite runs on 2026-12-01 (never in 50 launches of the
        # script alone, with or without load): a rank dies with a bare C++ std::terminate and
        # no Python traceback. Unexplained; one relaunch, and the results must still hold.
        warnings.warn(f"torchrun: {_TEARDOWN_ABORT!r}; relaunching once", stacklevel=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    # both ranks hold the same parameters, bit for bit, and report the same (global) losses
    for key in ("params", "odd_params"):
        for p, q in zip(ranks[0][key], ranks[1][key], strict=True):
            assert torch.equal(p, q), key
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]
    assert ranks[0]["eval_loss"] == ranks[1]["eval_loss"]
    assert ranks[0]["diverged_at"] == ranks[1]["diverged_at"] == 2
    for r in ranks:
        assert r["too_few"].startswith("data: expected at least one example for each of the 2")
    assert ranks[0]["odd_steps"] == ranks[1]["odd_steps"] == 2 * 2  # 32 examples a rank
    # at each step the ranks hold equal shares; in each epoch they see 64 distinct examples
    batches = [ranks[0]["odd_batches"], ranks[1]["odd_batches"]]
    assert [len(b) for b in batches[0]] == [len(b) for b in batches[1]] == [16] * 4
    for epoch in range(2):
        rows = torch.cat([b for bs in batches for b in bs[2 * epoch : 2 * epoch + 2]])
        assert len({tuple(row) for row in rows.tolist()}) == 64

    # one process with the global batch (2 x 16) sees the same examples at every step: the
    # mean loss over 32 examples is the average of the ranks' means over 16, and DDP averages
    # the ranks' gradients; equal up to float64 rounding
    g = torch.Generator().manual_seed(0)
    x = torch.randn(88, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0]).double()
    ev = torch.randn(40, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    flow = maf(2, hidden_dims=[8], num_layers=2, seed=0).double()
    initial = [p.detach().clone() for p in flow.parameters()]
    r = fit(
        flow,
        x,
        steps=12,
        batch_size=32,
        lr=1e-2,
        seed=0,
        eval_data=ev,
        eval_every=5,
        progress=False,
    )
    assert r.train_loss[-1] < r.train_loss[0] - 0.1  # it trained
    for p, q, p0 in zip(flow.parameters(), ranks[0]["params"], initial, strict=True):
        torch.testing.assert_close(q, p.detach(), rtol=1e-12, atol=1e-12)
        assert not torch.equal(p.detach(), p0)
    torch.testing.assert_close(
        torch.tensor(ranks[0]["train_loss"]), torch.tensor(r.train_loss), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(
        torch.tensor(ranks[0]["eval_loss"]), torch.tensor(r.eval_loss), rtol=1e-12, atol=0
    )


def test_time_limit_stops_the_loop_with_a_final_checkpoint_and_resume_continues(tmp_path):
    """A run of a million steps under ``time_limit`` stops early at a step recorded in the
    result and the checkpoint; ``resume`` carries on from that step."""

    def slow(model, xb):  # a step that takes a while, so the limit is reached within a few
        time.sleep(0.02)
        return -model().log_prob(xb).mean()

    ckpt = tmp_path / "t.pt"
    x = _gaussian_data(64)
    r = fit(
        AffineFlow(),
        x,
        loss=slow,
        steps=10**6,
        time_limit=0.2,
        checkpoint=ckpt,
        progress=False,
        eval_data=x,
    )
    assert 1 <= r.steps < 10**6 and len(r.train_loss) == r.steps
    assert load_checkpoint(ckpt)["step"] == r.steps
    assert r.eval_steps[-1] == r.steps  # the final evaluation ran at the stopping step
    again = fit(
        AffineFlow(), x, loss=slow, steps=r.steps + 2, checkpoint=ckpt, resume=True, progress=False
    )
    assert again.resumed_from == r.steps and again.steps == r.steps + 2


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "1"])
def test_time_limit_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="time_limit"):
        fit(AffineFlow(), _gaussian_data(8), steps=1, time_limit=bad, progress=False)
