"""Device, dtype and clock options shared by the benchmark scripts (not part of the library).

Every script in ``benchmarks/`` takes ``--device`` (``cpu``, ``cuda``, ``cuda:N``) and, where
the floating dtype changes what is measured, ``--dtype`` (``float32`` / ``float64``), and
prints :func:`describe` of the device next to its results.

Timing on a GPU: CUDA kernels run asynchronously, so a timer read without
:func:`synchronize` measures the launch, not the work; and a CPU-time clock
(``time.process_time``) counts the host thread only, which says nothing about the GPU's
work. On ``cuda`` the scripts therefore time with wall-clock time around synchronized
regions (:func:`check_clock` refuses ``--clock cpu`` there).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable

import torch

from pyro_lgm.cli import parse_device  # the library's own --device parser

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(text: str) -> torch.dtype:
    """``argparse`` type of ``--dtype``: ``float32`` or ``float64``."""
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DTYPES)}, got {text!r}")
    return DTYPES[text]


def add_device_args(
    parser: argparse.ArgumentParser, dtype: bool = True, default_dtype: str = "float32"
) -> None:
    """Add ``--device`` (default ``cpu``) and, if ``dtype``, ``--dtype`` to ``parser``."""
    parser.add_argument(
        "--device",
        type=parse_device,
        default=torch.device("cpu"),
        help="torch device: cpu (default), cuda or cuda:N (an error if CUDA is not visible)",
    )
    if dtype:
        parser.add_argument(
            "--dtype",
            type=parse_dtype,
            default=DTYPES[default_dtype],
            help=f"floating dtype of models and data: float32 or float64 (default {default_dtype})",
        )


def check_clock(parser: argparse.ArgumentParser, clock: str | None, device: torch.device) -> str:
    """The clock a time budget counts on ``device``.

    On CUDA: ``"wall"`` (``clock`` ``None`` or ``"wall"``); ``"cpu"`` is a usage error, since
    CPU time counts only the host thread, not the GPU's work. On the CPU: ``clock`` unchanged
    (``None`` leaves the choice to the script's own default).
    """
    if device.type == "cuda":
        if clock == "cpu":
            parser.error(
                "--clock cpu: CPU time counts only the host thread, not the GPU's work; "
                "use --clock wall (the default) with --device cuda"
            )
        return "wall"
    return clock


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def describe(device: torch.device) -> str:
    """One line naming the device: the GPU's name, or the CPU, cores and torch threads."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return (
            f"cuda:{index} ({torch.cuda.get_device_name(index)}, CUDA {torch.version.cuda}, "
            f"torch {torch.__version__})"
        )
    cpu = platform.processor() or platform.machine()
    return (
        f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__})"
    )


def info(device: torch.device, dtype: torch.dtype | None = None) -> dict:
    """Device facts for a report file (JSON-serializable)."""
    out = {
        "device": str(device),
        "device_name": describe(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }
    if dtype is not None:
        out["dtype"] = dtype_name(dtype)
    return out


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): call before reading a timer."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """A training-budget clock: CPU time (``cpu``, by default of this process; pass
    ``time.thread_time`` to count one thread) or synchronized wall time (``wall``)."""

    def __init__(
        self, kind: str, device: torch.device, cpu_time: Callable[[], float] | None = None
    ) -> None:
        self.kind, self.device = kind, device
        self._cpu = cpu_time or time.process_time
        self._wall = time.perf_counter

    def now(self) -> float:
        synchronize(self.device)
        return self._cpu() if self.kind == "cpu" else self._wall()


def git_commit() -> str:
    """The short hash of the checkout's HEAD (``"unknown"`` outside git), for result files."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
