"""The training loop of the likelihood benchmarks that train for a CPU (or wall) budget.

Shared by ``vae_flows.py`` and ``hvae.py`` (not part of the library): Adam on mini-batches
of a shuffled training set, the budget counted by a :class:`bench_device.Clock` around the
training steps only, a learning-curve point every ``curve_every`` budget-minutes (and at
the start and the end), a non-finite loss stops the run.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from bench_device import Clock


def train_for_budget(
    model: torch.nn.Module,
    loss: Callable[[torch.Tensor], torch.Tensor],
    train_x: torch.Tensor,
    curve_ll: Callable[[], torch.Tensor],
    *,
    label: dict,
    batch: int,
    lr: float,
    minutes: float,
    curve_every: float,
    clock: Clock,
    seed: int,
    log: Callable[[str], None],
    curve_path: str | None = None,
    clip: float = 0.0,
) -> list[dict]:
    """Train ``model`` on ``loss(batch)`` for ``minutes`` of ``clock``; the learning curve.

    Each curve row holds ``label``, the budget used, steps, epoch, the mean training loss
    since the last point and ``curve_nll = -mean(curve_ll())`` (evaluated in eval mode,
    outside the budget); rows are logged as JSON and appended to ``curve_path``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    budget, next_curve = 60.0 * minutes, 60.0 * curve_every
    used, steps, epoch = 0.0, 0, 0
    curve: list[dict] = []
    recent: list[float] = []
    g = torch.Generator().manual_seed(seed)

    def point() -> None:
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            ll = curve_ll()
        model.train()
        row = {
            **label,
            "budget_min": round(used / 60, 3),
            "steps": steps,
            "epoch": epoch,
            "train_loss": round(statistics.fmean(recent), 3) if recent else None,
            "curve_nll": round(-float(ll.mean()), 3),
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        recent.clear()
        curve.append(row)
        log(json.dumps(row))
        if curve_path:
            with open(curve_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    point()
    done = False
    while not done:
        perm = torch.randperm(train_x.shape[0], generator=g).to(train_x.device)
        for i in range(0, train_x.shape[0] - batch + 1, batch):
            t0 = clock.now()
            opt.zero_grad(set_to_none=True)
            value = loss(train_x[perm[i : i + batch]])
            value.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            lv = float(value.detach())
            used += clock.now() - t0
            steps += 1
            recent.append(lv)
            if not math.isfinite(lv):
                raise FloatingPointError(f"{label}: non-finite loss at step {steps}")
            if used >= next_curve:
                point()
                next_curve += 60.0 * curve_every
            if used >= budget:
                done = True
                break
        epoch += 1
    if curve[-1]["steps"] != steps:
        point()
    return curve


def num_params(model: torch.nn.Module) -> int:
    """The number of parameters (elements) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def save_state(model: torch.nn.Module, config: dict, path: str, prefix: str) -> None:
    """``{"state_dict", "config"}`` written atomically (a temporary file ``.PREFIX-*.pt``
    beside ``path``, then a rename): an interrupted run never leaves half a checkpoint."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{prefix}-", suffix=".pt", dir=directory)
    os.close(fd)
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "config": config}, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_state(path: str, make: Callable[[dict], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """The model ``make(config)`` of a :func:`save_state` file with its weights, and the
    config."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = make(saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model, saved["config"]
