r"""One training loop for maximum likelihood and for Pyro's stochastic variational inference.

:func:`fit` minimizes, over mini-batches of ``data``, one of

* ``loss="mle"`` - the negative log-likelihood of a model whose call returns a distribution
  (:class:`pyro_lgm.models.Flow`, ``NADE``, ...):
  :math:`\mathcal L(\theta) = -\frac1B \sum_{b} \log p_\theta(x_b \mid c_b)`;
* ``loss="elbo"`` (or any :class:`pyro.infer.ELBO`) - the negative ELBO of a Pyro program
  with ``model`` and ``guide`` methods (a ``PyroModule``), by ``elbo.differentiable_loss``
  and a PyTorch optimizer;
* a callable ``loss(model, *batch) -> scalar tensor``;
* or it drives a ready :class:`pyro.infer.SVI` (``svi=...``) with Pyro's own optimizer.

It shows a ``tqdm`` progress bar on a terminal (elsewhere a plain line every few seconds),
evaluates periodically, stops with :class:`TrainingDivergedError` at the first non-finite loss
or gradient, or when a layer meets the non-finite output of the layer before it (naming the
step), writes atomic, resumable checkpoints (model, optimizer, step, RNG states, data position
and history; never one holding non-finite values) and, when launched by ``torchrun`` with
``WORLD_SIZE > 1``, trains with ``DistributedDataParallel`` (rank 0 writes checkpoints).

Example:
    >>> import torch
    >>> from pyro.distributions.transforms import AffineTransform
    >>> from pyro_lgm.models import Flow
    >>> class Shift(torch.nn.Module):  # a learnable location, for the example
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.loc = torch.nn.Parameter(torch.zeros(2))
    ...     def forward(self, context=None):
    ...         return Flow((2,), [AffineTransform(self.loc, 1.0, event_dim=1)])()
    >>> data = torch.randn(512, 2, generator=torch.Generator().manual_seed(0)) + 3.0
    >>> result = fit(Shift(), data, steps=200, batch_size=64, lr=0.1, seed=0, progress=False)
    >>> result.steps, result.train_loss[-1] < result.train_loss[0]
    (200, True)
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.infer
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pyro_lgm.errors import NonFiniteValueError, check_finite

__all__ = [
    "FitResult",
    "TrainingDivergedError",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "pyro_lgm.train/1"


class TrainingDivergedError(FloatingPointError):
    """Raised when a loss, a gradient or a parameter becomes NaN or infinite.

    Attributes:
        step: the 1-based optimization step at which the non-finite value appeared.
    """

    def __init__(self, step: int, what: str) -> None:
        self.step = step
        super().__init__(f"training diverged at step {step}: {what}")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        steps: optimization steps done in total (including those before a resume).
        train_loss: the training loss of every step; ``train_loss[i]`` is step ``i + 1``
            (in a distributed run, the mean over the ranks).
        eval_steps: the steps after which ``eval_data`` was evaluated.
        eval_loss: the mean evaluation loss at each of ``eval_steps``.
        best_eval: the lowest evaluation loss (``None`` without ``eval_data``).
        best_step: the step of ``best_eval``.
        resumed_from: the step loaded from the checkpoint, or ``None``.
        wall_time: seconds spent in this call.
    """

    steps: int = 0
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    best_eval: float | None = None
    best_step: int | None = None
    resumed_from: int | None = None
    wall_time: float = 0.0

    def _history(self) -> dict[str, Any]:
        return {
            "train_loss": list(self.train_loss),
            "eval_steps": list(self.eval_steps),
            "eval_loss": list(self.eval_loss),
            "best_eval": self.best_eval,
            "best_step": self.best_step,
        }

    def _load_history(self, h: dict[str, Any]) -> None:
        self.train_loss = list(h["train_loss"])
        self.eval_steps = list(h["eval_steps"])
        self.eval_loss = list(h["eval_loss"])
        self.best_eval = h["best_eval"]
        self.best_step = h["best_step"]


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` with ``torch.save`` atomically.

    The file is written to a temporary file in the same directory, flushed and
    ``fsync`` -ed, then renamed over ``path`` with ``os.replace``: a crash leaves either the
    old checkpoint or the new one, never a torn file.

    Args:
        state: a picklable dict (tensors, numbers, strings, containers of these).
        path: the checkpoint file.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_checkpoint({"step": 3}, os.path.join(d, "ckpt.pt"))
        ...     load_checkpoint(os.path.join(d, "ckpt.pt"))["step"]
        3
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # make the rename itself durable (not possible on every platform / file system)
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` / :func:`fit`.

    Checkpoints of ``svi=`` runs hold Pyro constraint objects and are read with
    ``weights_only=False``: only load such checkpoints from a source you trust.

    Args:
        path: the checkpoint file.
        map_location: where to put its tensors (default CPU).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # an SVI checkpoint holds Pyro constraint objects
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise
        return torch.load(path, map_location=map_location, weights_only=False)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )


def _all_finite(tensors: Any) -> bool:
    """Whether every floating tensor inside a (nested) container is finite."""
    if isinstance(tensors, torch.Tensor):
        return not tensors.is_floating_point() or bool(torch.isfinite(tensors).all())
    if isinstance(tensors, dict):
        return all(_all_finite(v) for v in tensors.values())
    if isinstance(tensors, (list, tuple)):
        return all(_all_finite(v) for v in tensors)
    return True


# --------------------------------------------------------------------------------- data


def _as_tensors(name: str, data: Any) -> tuple[torch.Tensor, ...]:
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError(
            f"{name}: expected a tensor, a tuple of tensors (x, context, ...) or a "
            f"DataLoader, got {type(data).__name__}"
        )
    n = tensors[0].shape[0] if tensors[0].dim() else 0
    if n == 0 or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            f"{name}: expected non-empty tensors sharing their first (batch) dimension, got "
            f"shapes {[tuple(t.shape) for t in tensors]}"
        )
    return tensors


class _TensorBatches:
    """Shuffled mini-batches of in-memory tensors, reproducible from a generator state.

    With ``world`` processes, every epoch draws one permutation shared by all ranks (the
    same generator state), keeps its first ``world * (N // world)`` entries and gives rank
    ``r`` every ``world``-th of them from the ``r``-th: all ranks hold ``N // world``
    examples, hence the same number of batches of the same sizes, and the ranks' ``i``-th
    batches together are the ``i``-th batch of ``world * batch_size`` of the kept
    permutation (up to ``world - 1`` examples, different in each epoch, sit an epoch out).
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.generator = generator
        self.rank, self.world = rank, world
        self.num_local = tensors[0].shape[0] // world

    def __len__(self) -> int:
        return math.ceil(self.num_local / self.batch_size)

    def epoch_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_epoch_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def iterate(self, epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of one epoch after the first ``skip``; the permutation is drawn now."""
        n = self.tensors[0].shape[0]
        perm = torch.randperm(n, generator=self.generator)
        perm = perm[: self.num_local * self.world][self.rank :: self.world]
        bs = self.batch_size
        starts = range(skip * bs, len(perm), bs)
        return (tuple(t[perm[i : i + bs].to(t.device)] for t in self.tensors) for i in starts)


class _LoaderBatches:
    """Batches of a user ``DataLoader``; its shuffling RNG is captured at each epoch start."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def _generators(self) -> list[torch.Generator]:
        gens = [getattr(self.loader, "generator", None)]
        gens.append(getattr(self.loader.sampler, "generator", None))
        batch_sampler = getattr(self.loader, "batch_sampler", None)
        gens.append(getattr(getattr(batch_sampler, "sampler", None), "generator", None))
        return [g for g in gens if isinstance(g, torch.Generator)]

    def epoch_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "generators": [g.get_state() for g in self._generators()],
        }

    def set_epoch_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        for g, s in zip(self._generators(), state["generators"]):
            g.set_state(s.cpu())

    def iterate(self, epoch: int, skip: int) -> Iterator[Any]:
        """The batches of one epoch after the first ``skip``; the iterator is created now."""
        set_epoch = getattr(self.loader.sampler, "set_epoch", None)
        if callable(set_epoch):  # DistributedSampler
            set_epoch(epoch)
        it = iter(self.loader)
        for _ in range(skip):
            next(it, None)
        return it


def _as_batch(batch: Any) -> tuple[Any, ...]:
    if isinstance(batch, (list, tuple)):
        return tuple(batch)
    return (batch,)


def _to_device(batch: tuple[Any, ...], device: torch.device | None) -> tuple[Any, ...]:
    if device is None:
        return batch
    return tuple(b.to(device) if isinstance(b, torch.Tensor) else b for b in batch)


def _check_batch(name: str, batch: tuple[Any, ...]) -> None:
    """Raise :class:`~pyro_lgm.errors.NonFiniteValueError` (a ``ValueError``) naming ``name``
    if a tensor of ``batch`` holds NaN or inf (checked whatever the validation switch says)."""
    for t in batch:
        if isinstance(t, torch.Tensor):
            check_finite(name, t, always=True)


# -------------------------------------------------------------------------------- losses


def _mle_loss(
    model: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None
) -> torch.Tensor:
    return -model(context).log_prob(x).mean()


def _elbo_loss(elbo: pyro.infer.ELBO) -> Callable[..., torch.Tensor]:
    def loss(model: nn.Module, *batch: Any) -> torch.Tensor:
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        return elbo.differentiable_loss(inner.model, inner.guide, *batch)

    return loss


def _resolve_loss(loss: Any, model: nn.Module | None) -> Callable[..., torch.Tensor]:
    if loss == "mle":
        return _mle_loss
    if loss == "elbo" or isinstance(loss, pyro.infer.ELBO):
        elbo = pyro.infer.Trace_ELBO() if loss == "elbo" else loss
        has = [callable(getattr(model, name, None)) for name in ("model", "guide")]
        if not all(has):
            raise ValueError(
                "model: loss='elbo' needs a module with callable `model` and `guide` methods"
            )
        return _elbo_loss(elbo)
    if callable(loss) and not isinstance(loss, str):
        return loss
    raise ValueError(
        f"loss: expected 'mle', 'elbo', a pyro.infer.ELBO or a callable(model, *batch), got "
        f"{loss!r}"
    )


def _params_finite(params: list[torch.nn.Parameter]) -> bool:
    """One synchronizing check that every parameter is finite."""
    if not params:
        return True
    dev = params[0].device
    sums = torch.stack([p.detach().sum().to(dev, torch.float32) for p in params])
    return bool(torch.isfinite(sums.sum()))


def _grad_norm_and_clip(params: list[torch.nn.Parameter], max_norm: float | None) -> float:
    """The global L2 norm of the gradients; scales them down to ``max_norm`` when given."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    dev = grads[0].device
    norms = [torch.linalg.vector_norm(g.detach().float()).to(dev) for g in grads]
    norm = torch.linalg.vector_norm(torch.stack(norms))
    value = float(norm)
    if max_norm is not None and math.isfinite(value) and value > max_norm:
        coef = max_norm / (value + 1e-6)
        for g in grads:
            g.detach().mul_(coef)
    return value


def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` with its fused kernel where this torch and these parameters allow.

    The fused update is one kernel per step instead of several per parameter tensor: for
    flows of many small layers on a CPU the optimizer step is then several times cheaper. Same
    algorithm, results equal up to rounding.
    """
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or an unsupported device
        return torch.optim.Adam(params, lr=lr)


# ------------------------------------------------------------------------ argument checks


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _check_fit_args(
    *,
    model: Any,
    svi: Any,
    steps: Any,
    epochs: Any,
    batch_size: Any,
    lr: Any,
    clip_grad_norm: Any,
    eval_every: Any,
    eval_batch_size: Any,
    checkpoint: Any,
    checkpoint_every: Any,
    resume: bool,
    seed: Any,
) -> None:
    """Raise ``ValueError`` naming the first bad argument of :func:`fit`."""
    if svi is not None and not isinstance(svi, pyro.infer.SVI):
        raise ValueError(f"svi: expected a pyro.infer.SVI, got {type(svi).__name__}")
    if model is not None and not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if model is None and svi is None:
        raise ValueError("model: expected a torch.nn.Module (None is only allowed with svi=)")
    if (steps is None) == (epochs is None):
        raise ValueError(f"steps/epochs: give exactly one of them, got {steps=} and {epochs=}")
    _check_positive_int("steps", steps, allow_none=True)
    _check_positive_int("epochs", epochs, allow_none=True)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("eval_every", eval_every, allow_none=True)
    _check_positive_int("eval_batch_size", eval_batch_size, allow_none=True)
    _check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive float, got {lr!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm: expected a positive float, got {clip_grad_norm!r}")
    if resume and checkpoint is None:
        raise ValueError("resume: resume=True needs a checkpoint path")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")


# ---------------------------------------------------------------------------- distributed


def _distributed() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when launched by torchrun with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


@dataclass(frozen=True)
class _Process:
    """Where this process stands in a (possibly distributed) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    distributed: bool = False


def _setup_process() -> _Process:
    """Join the process group when launched by ``torchrun`` with ``WORLD_SIZE > 1``."""
    info = _distributed()
    if info is None:
        return _Process()
    rank, world, local_rank = info
    return _Process(rank, world, local_rank, distributed=True)


def _place_model(
    model: nn.Module | None, device: str | torch.device | None, proc: _Process
) -> torch.device | None:
    """The device of the batches; moves ``model`` there when ``device`` is given.

    Default: ``cuda:LOCAL_RANK`` in a distributed run on a CUDA machine, else the device of
    the model's first parameter (``None`` without parameters).
    """
    if device is None and proc.distributed and torch.cuda.is_available():
        device = torch.device("cuda", proc.local_rank)
    if device is not None:
        device = torch.device(device)
        if model is not None:
            model.to(device)
        return device
    if model is not None:
        first = next(iter(model.parameters()), None)
        return first.device if first is not None else None
    return None


def _seed_everything(seed: int | None, proc: _Process) -> int:
    """Seed the global RNGs (when ``seed`` is given); return the seed of the data shuffling.

    Without ``seed`` the shuffling seed is drawn from torch's global RNG. Every rank of a
    distributed run gets rank 0's, so that all shuffle with the same permutation.
    """
    if seed is not None:
        pyro.set_rng_seed(seed)
    if seed is not None:
        shuffle_seed = seed
    else:
        shuffle_seed = int(torch.randint(2**62, (1,)).item())
    if proc.distributed:
        import torch.distributed as dist

        box = [shuffle_seed]
        dist.broadcast_object_list(box, src=0)
        shuffle_seed = box[0]
    return shuffle_seed


def _wrap_for_training(
    model: nn.Module, loss: Any, device: torch.device | None, proc: _Process
) -> nn.Module:
    """``model`` itself, or wrapped in ``DistributedDataParallel`` in a distributed run."""
    if not proc.distributed:
        return model
    if (isinstance(loss, str) and loss != "mle") or isinstance(loss, pyro.infer.ELBO):
        raise ValueError("loss: distributed training supports 'mle' and callables")
    ddp_ids = [device.index] if device is not None and device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)


# ----------------------------------------------------------------------------- optimizer


def _build_optimizer(
    model: nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer,
    lr: float,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None,
) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer, Any]:
    """``(trainable parameters, optimizer, scheduler or None)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        if not params:
            raise ValueError("model: it has no trainable parameters")
        opt = _adam(params, lr) if optimizer is torch.optim.Adam else optimizer(params, lr=lr)
    sched = scheduler(opt) if scheduler is not None else None
    return params, opt, sched


# ------------------------------------------------------------------------------ progress

#: Seconds between two progress lines of :func:`fit` when stderr is not a terminal.
PROGRESS_INTERVAL = 5.0

_clock = time.monotonic


class _Progress:
    """The progress of :func:`fit` on stderr.

    On a terminal, a ``tqdm`` bar. Elsewhere (a pipe, a CI log) a plain line at most every
    :data:`PROGRESS_INTERVAL` seconds, ``fit: step 120/3000 (4%), loss 1.234, eval loss 1.301
    (step 100), 24.1 steps/s, 1m59s left``, and, when a line was written, a last one for the
    last step done. Nothing when ``enabled`` is false.
    """

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.stream = sys.stderr
        on_tty = _isatty(self.stream)
        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not (enabled and on_tty),
            desc="fit",
            dynamic_ncols=True,
        )
        self.show_bar = enabled and on_tty
        self.show_lines = enabled and not on_tty
        self.total, self.initial = total, initial
        self.start = self.last = _clock()
        self.step, self.loss = initial, math.nan
        self.eval_loss: float | None = None
        self.eval_step = 0
        self.written: int | None = None  # the step of the last line

    def update(self, step: int, loss: float, evaluated: float | None) -> None:
        """Step ``step`` is done with training loss ``loss`` (evaluation loss ``evaluated``
        when it evaluated)."""
        self.step, self.loss = step, loss
        if evaluated is not None:
            self.eval_loss, self.eval_step = evaluated, step
        if self.show_bar:
            self.bar.update(1)
            if evaluated is None:
                self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            else:
                self.bar.set_postfix(loss=f"{loss:.4g}", eval=f"{evaluated:.4g}")
        elif self.show_lines:
            now = _clock()
            if now - self.last >= PROGRESS_INTERVAL:
                self._write(now)

    def _write(self, now: float) -> None:
        parts = [f"fit: step {self.step}/{self.total} ({100 * self.step // self.total}%)"]
        parts.append(f"loss {self.loss:.4g}")
        if self.eval_loss is not None:
            parts.append(f"eval loss {self.eval_loss:.4g} (step {self.eval_step})")
        elapsed = now - self.start
        if elapsed > 0 and self.step > self.initial:
            rate = (self.step - self.initial) / elapsed
            left = round((self.total - self.step) / rate)
            parts.append(f"{rate:.3g} steps/s, {left // 60}m{left % 60:02d}s left")
        print(", ".join(parts), file=self.stream, flush=True)
        self.last, self.written = now, self.step

    def close(self) -> None:
        self.bar.close()
        if self.show_lines and self.written is not None and self.written != self.step:
            self._write(_clock())


# ---------------------------------------------------------------------------------- a run


class _Run:
    """One call of :func:`fit`: its settings, its position, and the steps that move it.

    The position (``step``, ``epoch``, ``batch_in_epoch``, ``epoch_state`` - the data
    source's RNG state at the start of the current epoch - and ``result``'s history) is
    what a checkpoint holds besides the model, the optimizer and the global RNG states.
    """

    def __init__(
        self,
        *,
        model: nn.Module | None,
        train_model: nn.Module | None,
        svi: pyro.infer.SVI | None,
        loss_fn: Callable[..., torch.Tensor] | None,
        params: list[torch.nn.Parameter],
        opt: torch.optim.Optimizer | None,
        sched: Any,
        clip_grad_norm: float | None,
        source: _TensorBatches | _LoaderBatches,
        steps: int,
        batch_size: int,
        eval_data: tuple[torch.Tensor, ...] | DataLoader | None,
        eval_every: int,
        eval_batch_size: int | None,
        checkpoint: str | os.PathLike | None,
        checkpoint_every: int | None,
        device: torch.device | None,
        proc: _Process,
        time_limit: float | None = None,
    ) -> None:
        self.time_limit = time_limit
        self.model, self.train_model, self.svi, self.loss_fn = model, train_model, svi, loss_fn
        self.params, self.opt, self.sched = params, opt, sched
        self.clip_grad_norm = clip_grad_norm
        self.source, self.steps, self.batch_size = source, steps, batch_size
        self.eval_data, self.eval_every, self.eval_batch_size = (
            eval_data,
            eval_every,
            eval_batch_size,
        )
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.device, self.proc = device, proc
        self.result = FitResult()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.epoch_state: dict[str, Any] = {}

    # ---------------------------------------------------------------- checkpointing

    def _config(self) -> dict[str, int]:
        return {"batch_size": self.batch_size, "world_size": self.proc.world}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (format ``CHECKPOINT_FORMAT``)."""
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_state": self.epoch_state,
            "rng": _rng_state(),
            "history": self.result._history(),
            "config": self._config(),
            "model": self.model.state_dict() if self.model is not None else None,
        }
        if self.svi is None:
            assert self.opt is not None
            state["optimizer"] = self.opt.state_dict()
            state["scheduler"] = self.sched.state_dict() if self.sched is not None else None
        else:
            state["param_store"] = pyro.get_param_store().get_state()
            state["svi_optim"] = self.svi.optim.get_state()
        return state

    def write_checkpoint(self) -> None:
        """Write :meth:`state_dict` (rank 0 only); never a state holding NaN/inf."""
        state = self.state_dict()
        trained = list(self.model.parameters()) if self.model is not None else []
        if not _all_finite([trained, state.get("optimizer"), state.get("param_store")]):
            raise TrainingDivergedError(
                self.step, "parameters or optimizer state hold NaN/inf; checkpoint not written"
            )
        if self.proc.rank == 0:
            assert self.checkpoint is not None
            save_checkpoint(state, self.checkpoint)
        self.result.steps = self.step

    def load(self, ckpt: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
        """Restore a :meth:`state_dict`; return its RNG states, to be set by :meth:`train`
        once the current epoch's batches are re-created."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint: {path} is not a pyro_lgm.train checkpoint")
        if ckpt["config"] != self._config():
            warnings.warn(
                f"checkpoint: saved with {ckpt['config']}, resumed with "
                f"batch_size={self.batch_size}, world_size={self.proc.world}; the run will "
                f"differ from an uninterrupted one",
                stacklevel=3,
            )
        if self.model is not None and ckpt["model"] is not None:
            self.model.load_state_dict(ckpt["model"])
        if self.svi is None:
            assert self.opt is not None
            self.opt.load_state_dict(ckpt["optimizer"])
            if self.sched is not None and ckpt["scheduler"] is not None:
                self.sched.load_state_dict(ckpt["scheduler"])
        else:
            pyro.get_param_store().set_state(ckpt["param_store"])
            self.svi.optim.set_state(ckpt["svi_optim"])
        self.step, self.epoch = ckpt["step"], ckpt["epoch"]
        self.batch_in_epoch = ckpt["batch_in_epoch"]
        self.epoch_state = ckpt["epoch_state"]
        self.source.set_epoch_state(self.epoch_state)
        self.result._load_history(ckpt["history"])
        self.result.resumed_from = self.step
        return ckpt["rng"]

    # ------------------------------------------------------------------- evaluation

    def _eval_batches(self) -> Iterator[tuple[Any, ...]]:
        if isinstance(self.eval_data, DataLoader):
            return (_as_batch(b) for b in self.eval_data)
        assert self.eval_data is not None
        ebs = self.eval_batch_size or max(self.batch_size, 1024)
        tensors = self.eval_data
        n = tensors[0].shape[0]
        return (tuple(t[i : i + ebs] for t in tensors) for i in range(0, n, ebs))

    def evaluate(self) -> float:
        """The mean loss over ``eval_data`` (NaN without it), in eval mode, without gradients."""
        if self.eval_data is None:
            return math.nan
        total, count = 0.0, 0
        model = self.model
        was_training = model.training if model is not None else False
        if model is not None:
            model.eval()
        try:
            with torch.no_grad():
                for b in self._eval_batches():
                    b = _to_device(b, self.device)
                    size = b[0].shape[0] if isinstance(b[0], torch.Tensor) and b[0].dim() else 1
                    value = self._eval_loss(b)
                    total += value * size
                    count += size
        finally:
            if model is not None:
                model.train(was_training)
        return total / max(count, 1)

    def _eval_loss(self, batch: tuple[Any, ...]) -> float:
        """The loss of one evaluation batch; a non-finite batch is the user's error."""
        try:
            if self.svi is not None:
                value = float(self.svi.evaluate_loss(*batch))
            else:
                assert self.loss_fn is not None
                value = float(self.loss_fn(self.train_model, *batch))
        except NonFiniteValueError as e:
            _check_batch("eval_data", batch)
            raise TrainingDivergedError(
                self.step, f"evaluating the model met non-finite values ({e})"
            ) from e
        if not math.isfinite(value):
            _check_batch("eval_data", batch)
        return value

    def record_eval(self) -> None:
        """Evaluate now; append to the history and update the best evaluation."""
        value = self.evaluate()
        r = self.result
        r.eval_steps.append(self.step)
        r.eval_loss.append(value)
        if math.isfinite(value) and (r.best_eval is None or value < r.best_eval):
            r.best_eval, r.best_step = value, self.step

    # ----------------------------------------------------------------- optimization

    def _diverged(self, batch: tuple[Any, ...], what: str) -> TrainingDivergedError:
        """The error for a non-finite loss, unless the batch itself is not finite."""
        _check_batch("data", batch)
        return TrainingDivergedError(self.step, what)

    def _svi_step(self, batch: tuple[Any, ...]) -> float:
        assert self.svi is not None
        try:
            value = float(self.svi.step(*batch))
        except NonFiniteValueError as e:
            raise self._diverged(batch, f"the model met non-finite values ({e})") from e
        if not math.isfinite(value):
            raise self._diverged(batch, f"the loss is {value}")
        return value

    def _mean_over_ranks(self, value: float) -> float:
        """The mean of ``value`` over the ranks: the loss of the global batch when every rank
        returns the mean loss of its (equally sized) share of it. A NaN on one rank is a NaN
        on all, so that all stop at the same step."""
        import torch.distributed as dist

        on = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor([value], dtype=torch.float64, device=on)
        dist.all_reduce(t)
        return float(t) / self.proc.world

    def _torch_step(self, batch: tuple[Any, ...]) -> float:
        """Loss, backward, clipping, optimizer and scheduler step, with the divergence guards."""
        assert self.opt is not None and self.loss_fn is not None
        step = self.step
        self.opt.zero_grad(set_to_none=True)
        failure: NonFiniteValueError | None = None
        try:
            loss_t = self.loss_fn(self.train_model, *batch)
        except NonFiniteValueError as e:  # a layer got the non-finite output of the one before
            if not self.proc.distributed:
                raise self._diverged(batch, f"the model met non-finite values ({e})") from e
            failure, value = e, math.nan  # the other ranks must learn it before backward
        else:
            if not isinstance(loss_t, torch.Tensor) or loss_t.numel() != 1:
                raise ValueError(
                    f"loss: expected a scalar tensor from the loss, got "
                    f"{type(loss_t).__name__} {getattr(loss_t, 'shape', '')}"
                )
            value = float(loss_t.detach())
        if self.proc.distributed:
            value = self._mean_over_ranks(value)
        if failure is not None:
            raise self._diverged(batch, f"the model met non-finite values ({failure})") from failure
        if not math.isfinite(value):
            raise self._diverged(batch, f"the loss is {value}")
        loss_t.backward()
        norm = _grad_norm_and_clip(self.params, self.clip_grad_norm)
        if not math.isfinite(norm):
            raise TrainingDivergedError(step, f"the gradient norm is {norm}")
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        if not _params_finite(self.params):
            raise TrainingDivergedError(step, "a parameter is NaN/inf after the optimizer step")
        return value

    # ------------------------------------------------------------------------- loop

    def _next_batch(self, it: Iterator[Any]) -> tuple[Iterator[Any], Any]:
        """The next batch, starting the next epoch when this one is done."""
        batch = next(it, None)
        while batch is None:  # end of epoch
            if self.batch_in_epoch == 0:
                raise ValueError("data: it yielded no batch")
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.epoch_state = self.source.epoch_state()
            it = self.source.iterate(self.epoch, 0)
            batch = next(it, None)
        return it, batch

    def train(self, progress: bool, resumed_rng: dict[str, Any] | None) -> None:
        """Step until ``steps``, evaluating and checkpointing on schedule."""
        result = self.result
        shown = _Progress(progress and self.proc.rank == 0, self.steps, self.step)
        if resumed_rng is None:
            self.epoch_state = self.source.epoch_state()
        skip = self.batch_in_epoch
        it = self.source.iterate(self.epoch, skip) if self.step < self.steps else iter(())
        if resumed_rng is not None:  # after re-creating the epoch's iterator from its start state
            _set_rng_state(resumed_rng)
        if self.model is not None:
            self.model.train()
        deadline = None if self.time_limit is None else time.monotonic() + self.time_limit
        try:
            while self.step < self.steps:
                it, batch = self._next_batch(it)
                batch = _to_device(_as_batch(batch), self.device)
                self.batch_in_epoch += 1
                self.step += 1
                value = self._svi_step(batch) if self.svi is not None else self._torch_step(batch)
                result.train_loss.append(value)
                evaluated = None
                if self.eval_data is not None and self.step % self.eval_every == 0:
                    self.record_eval()
                    evaluated = result.eval_loss[-1]
                shown.update(self.step, value, evaluated)
                if self.checkpoint is not None and self.checkpoint_every is not None:
                    if self.step % self.checkpoint_every == 0 and self.step < self.steps:
                        self.write_checkpoint()
                if deadline is not None and self._time_is_up(deadline):
                    break
        finally:
            shown.close()

    def _time_is_up(self, deadline: float) -> bool:
        """Whether ``deadline`` has passed, by rank 0's clock on every rank."""
        up = time.monotonic() >= deadline
        if not self.proc.distributed:
            return up
        import torch.distributed as dist

        on = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([float(up)], device=on)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def finish(self) -> None:
        """The final checkpoint and evaluation.

        The checkpoint comes before an off-schedule final evaluation, so that extending the
        run later with ``resume=True`` follows exactly the path of a longer uninterrupted run.
        """
        if self.checkpoint is not None:
            self.write_checkpoint()
        r = self.result
        if self.eval_data is not None and (not r.eval_steps or r.eval_steps[-1] != self.step):
            self.record_eval()
        r.steps = self.step


# ------------------------------------------------------------------------------------ fit


def fit(
    model: nn.Module | None,
    data: torch.Tensor | Sequence[torch.Tensor] | DataLoader,
    *,
    loss: str | pyro.infer.ELBO | Callable[..., torch.Tensor] = "mle",
    svi: pyro.infer.SVI | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    optimizer: Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer = torch.optim.Adam,
    lr: float = 1e-3,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    clip_grad_norm: float | None = None,
    eval_data: torch.Tensor | Sequence[torch.Tensor] | DataLoader | None = None,
    eval_every: int | None = None,
    eval_batch_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    seed: int | None = None,
    device: str | torch.device | None = None,
    time_limit: float | None = None,
) -> FitResult:
    r"""Train ``model`` on ``data`` by maximum likelihood, by the ELBO, or with Pyro's SVI.

    With ``loss="mle"`` each step minimizes
    :math:`-\frac1B\sum_{b=1}^B \log p_\theta(x_b \mid c_b)` where ``model(context)`` returns
    :math:`p_\theta(\cdot \mid c)` (``context=None`` for unconditional models).

    Args:
        model: an ``nn.Module``. For ``"mle"`` its call ``model(context=None)`` returns a
            distribution; for ``"elbo"`` it has ``model(*batch)`` / ``guide(*batch)``
            methods; with ``svi`` it may be ``None`` (or a module saved in checkpoints).
        data: a tensor ``x`` of shape ``(N, *event_shape)``, a tuple ``(x, context)`` of
            tensors sharing ``N``, or a ``torch.utils.data.DataLoader`` yielding ``x`` or
            ``(x, context)`` batches.
        loss: ``"mle"``, ``"elbo"`` (``Trace_ELBO``), a :class:`pyro.infer.ELBO`, or a
            callable ``loss(model, *batch) -> scalar tensor``.
        svi: a :class:`pyro.infer.SVI`; each step is ``svi.step(*batch)`` and ``optimizer``,
            ``lr``, ``scheduler``, ``clip_grad_norm`` and ``loss`` are not used.
        steps: number of optimization steps in total (a resumed run continues up to it).
        epochs: alternatively, passes over ``data`` (exactly one of ``steps``/``epochs``).
        batch_size: mini-batch size for tensor data (a DataLoader has its own).
        optimizer: a ``torch.optim.Optimizer`` class or factory called as
            ``optimizer(params, lr=lr)``, or a ready optimizer (default ``Adam``, with
            torch's fused kernel where the parameters' device and dtype support it).
        lr: learning rate passed to the factory.
        scheduler: optional ``scheduler(optimizer)`` returning an LR scheduler stepped after
            every optimization step (saved in checkpoints).
        clip_grad_norm: clip the global gradient norm to this value.
        eval_data: held-out data, same forms as ``data``; its mean loss is evaluated every
            ``eval_every`` steps (default: every ``max(1, steps // 10)``) and at the end.
        eval_batch_size: batch size of the evaluation (default ``max(batch_size, 1024)``).
        checkpoint: path of the checkpoint file, written atomically every
            ``checkpoint_every`` steps (default: only at the end) and at the end.
        resume: continue from ``checkpoint`` if that file exists (from scratch otherwise).
            For a deterministic setup the result equals an uninterrupted run's.
        progress: show the progress on stderr: a ``tqdm`` bar on a terminal; elsewhere
            (a pipe, a CI log) a plain line every :data:`PROGRESS_INTERVAL` seconds (step,
            loss, last evaluation loss, rate, time left).
        seed: seeds Pyro/PyTorch/NumPy/Python RNGs (``pyro.set_rng_seed``) and the
            shuffling of tensor data; ``None`` leaves the global RNGs alone.
        device: device of the batches (default: the device of the model's parameters).
        time_limit: seconds of wall time for the training loop (evaluations and checkpoints
            included): the run stops after the first step that ends past it, with its final
            checkpoint and evaluation, even if ``steps`` is not reached (``result.steps``
            says where it stopped; ``resume=True`` later continues towards ``steps``).
            Under ``torchrun`` rank 0's clock decides, so that every rank stops at the same
            step.

    Distributed training: when launched by ``torchrun`` (``WORLD_SIZE > 1``) the model is
    wrapped in ``DistributedDataParallel`` (``"mle"`` and callable losses), tensor data is
    sharded across ranks (each rank takes every ``world_size``-th example of a shared
    permutation, cut to a multiple of ``world_size`` so that all ranks hold
    ``N // world_size`` examples and take the same number of steps per epoch; give a
    DataLoader a ``DistributedSampler`` yourself), and only rank 0 writes checkpoints and
    shows progress. With ``batch_size=b`` on each of ``W`` ranks, a step is the step of one
    process with ``batch_size=W * b`` on the same examples: the loss recorded is the mean of
    the ranks' losses and DDP averages their gradients. A non-finite loss (or a layer meeting
    non-finite values) on one rank stops every rank at the same step.

    References:
        Diederik P. Kingma, Jimmy Ba. Adam: A Method for Stochastic Optimization.
        ICLR 2015. https://arxiv.org/abs/1412.6980

        Matthew D. Hoffman, David M. Blei, Chong Wang, John Paisley. Stochastic
        Variational Inference. JMLR 14, 2013. https://arxiv.org/abs/1206.7051

    Returns:
        :class:`FitResult` with the loss history.

    Raises:
        TrainingDivergedError: (a ``FloatingPointError``) at the first NaN/inf loss,
            gradient norm or parameter, or when a layer of the model raises
            :class:`~pyro_lgm.errors.NonFiniteValueError` on a finite batch (the error is
            chained from it), naming the step; no checkpoint with non-finite values is
            written.
        ValueError: on bad arguments; :class:`~pyro_lgm.errors.NonFiniteValueError` naming
            ``data`` (or ``eval_data``) when the loss is non-finite, or a layer rejects its
            input, because the batch itself holds NaN or inf.

    Example:
        >>> import torch
        >>> from pyro.distributions.transforms import AffineTransform
        >>> from pyro_lgm.models import Flow
        >>> class Scale(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.log_scale = torch.nn.Parameter(torch.zeros(1))
        ...     def forward(self, context=None):
        ...         t = AffineTransform(0.0, self.log_scale.exp(), event_dim=1)
        ...         return Flow((1,), [t])()
        >>> x = 3.0 * torch.randn(2000, 1, generator=torch.Generator().manual_seed(0))
        >>> m = Scale()
        >>> r = fit(m, x, steps=300, batch_size=200, lr=0.05, seed=0, progress=False)
        >>> # the maximum-likelihood scale is the root mean square of x
        >>> round((m.log_scale.exp() / x.pow(2).mean().sqrt()).item(), 2)
        1.0
    """
    t0 = time.perf_counter()
    _check_fit_args(
        model=model,
        svi=svi,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        clip_grad_norm=clip_grad_norm,
        eval_every=eval_every,
        eval_batch_size=eval_batch_size,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        seed=seed,
    )
    if time_limit is not None and (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, int | float)
        or not 0 < time_limit < math.inf
    ):
        raise ValueError(f"time_limit: expected a positive number of seconds, got {time_limit!r}")
    loss_fn = None if svi is not None else _resolve_loss(loss, model)

    proc = _setup_process()
    device = _place_model(model, device, proc)
    shuffle_seed = _seed_everything(seed, proc)

    if isinstance(data, DataLoader):
        source: _TensorBatches | _LoaderBatches = _LoaderBatches(data)
    else:
        gen = torch.Generator().manual_seed(shuffle_seed)
        tensors = _as_tensors("data", data)
        if tensors[0].shape[0] < proc.world:
            raise ValueError(
                f"data: expected at least one example for each of the {proc.world} "
                f"processes, got {tensors[0].shape[0]}"
            )
        source = _TensorBatches(tensors, batch_size, gen, proc.rank, proc.world)
    if epochs is not None:
        try:
            steps = epochs * len(source)
        except TypeError:
            raise ValueError("epochs: the DataLoader has no length; pass steps instead") from None
    assert steps is not None
    if eval_data is not None and not isinstance(eval_data, DataLoader):
        eval_data = _as_tensors("eval_data", eval_data)

    train_model, params, opt, sched = model, [], None, None
    if svi is None:
        assert model is not None
        train_model = _wrap_for_training(model, loss, device, proc)
        params, opt, sched = _build_optimizer(model, optimizer, lr, scheduler)
    elif proc.distributed:
        raise ValueError("svi: distributed training with a pyro.infer.SVI is not supported")

    run = _Run(
        model=model,
        train_model=train_model,
        svi=svi,
        loss_fn=loss_fn,
        params=params,
        opt=opt,
        sched=sched,
        clip_grad_norm=clip_grad_norm,
        source=source,
        steps=steps,
        batch_size=batch_size,
        eval_data=eval_data,
        eval_every=eval_every if eval_every is not None else max(1, steps // 10),
        eval_batch_size=eval_batch_size,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        device=device,
        proc=proc,
        time_limit=time_limit,
    )
    resumed_rng = None
    if resume and os.path.exists(checkpoint):
        ckpt = load_checkpoint(checkpoint, map_location=device if device is not None else "cpu")
        resumed_rng = run.load(ckpt, checkpoint)
    run.train(progress, resumed_rng)
    run.finish()
    run.result.wall_time = time.perf_counter() - t0
    return run.result


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
