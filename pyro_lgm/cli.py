r"""The ``pyro-lgm`` command line (also ``python -m pyro_lgm``).

Subcommands:

* ``demo`` - fit a normalizing flow to a 2-D toy density by maximum likelihood, print the
  test negative log-likelihood and :math:`\mathrm{KL}(p \,\|\, q)` (estimated from target
  samples: :math:`\frac1N \sum_n \log p(x_n) - \log q(x_n)`, :math:`x_n \sim p`), and write
  a PNG with the target and learned densities side by side;
* ``train`` - train an image model of :data:`pyro_lgm.image_models.IMAGE_MODELS` on an
  image data set (8x8 digits by default, no files needed) with :func:`pyro_lgm.train.fit`,
  write an atomic, resumable checkpoint that also names the model, its options and the
  data, and print the test NLL in nats per image and bits/dim;
* ``sample`` - rebuild the model of such a checkpoint and write a PNG grid of samples;
* ``train-wavenet`` - train a WaveNet (:class:`pyro_lgm.audio_models.TrainedWaveNet`) on
  segments of the espeak-ng speech corpus (built on first use), checkpoint it like
  ``train`` and print the test NLL in nats and bits per sample;
* ``sample-audio`` - rebuild such a WaveNet, generate audio of any length and write WAV
  files (and optionally a PNG of the waveforms);
* ``info`` - versions, devices, available flows and targets, image models and data sets,
  audio models.

A bad option value exits with status 2 and a one-line message on stderr.

Example:
    >>> main(["info"]) == 0  # doctest: +ELLIPSIS
    pyro-lgm ...
    True
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

__all__ = ["FLOWS", "TARGETS", "main", "parse_device", "register_flow"]


# ------------------------------------------------------------------------- flow registry


def _builder(attr: str) -> Callable[[int, int], torch.nn.Module]:
    def build(input_dim: int, num_layers: int) -> torch.nn.Module:
        from pyro_lgm import models

        return getattr(models, attr)(input_dim, num_layers=num_layers)

    build.__name__ = attr
    return build


#: ``name -> builder(input_dim, num_layers) -> pyro_lgm.models.Flow`` used by ``demo --flow``.
FLOWS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "planar": _builder("planar_flow"),
    "radial": _builder("radial_flow"),
    "maf": _builder("maf"),
    "realnvp": _builder("realnvp"),
    "nice": _builder("nice"),
}


def register_flow(name: str, builder: Callable[[int, int], torch.nn.Module]) -> None:
    """Make ``pyro-lgm demo --flow NAME`` build ``builder(input_dim, num_layers)``.

    Args:
        name: the option value.
        builder: returns a module whose call gives a distribution over ``(input_dim,)``.

    Example:
        >>> from pyro_lgm.models import planar_flow
        >>> register_flow("planar-again", lambda d, k: planar_flow(d, num_layers=k))
        >>> "planar-again" in FLOWS
        True
        >>> del FLOWS["planar-again"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder: expected a callable(input_dim, num_layers), got {builder!r}")
    FLOWS[name] = builder


def _targets() -> dict[str, Callable[[], torch.distributions.Distribution]]:
    from pyro_lgm.data.toy import TARGETS as toy

    return dict(toy)


#: Target names of ``demo --target`` (see :mod:`pyro_lgm.data.toy`).
TARGETS = tuple(_targets())


# --------------------------------------------------------------------------- argparse


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (status 2), no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _int_at_least(minimum: int, what: str, why: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, described as ``what`` in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}{why}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")
_at_least_two = _int_at_least(2, "an integer >= 2", " (a standard error needs two samples)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _bits(text: str) -> int:
    value = _int_at_least(1, "an integer in 1..16")(text)
    if value > 16:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..16, got {text!r}")
    return value


def parse_device(text: str) -> torch.device:
    """``argparse`` type of a ``--device`` option: ``cpu``, ``cuda`` or ``cuda:N``, checked now.

    Raises ``argparse.ArgumentTypeError`` (exit status 2 with its message) for another device
    type, a CPU index other than 0, CUDA asked for where it is not available, or a CUDA index
    that is not visible. ``cuda`` without an index resolves to the current CUDA device. The
    benchmark scripts use the same parser.

    Example:
        >>> parse_device("cpu")
        device(type='cpu')
    """
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected 'cpu', 'cuda' or 'cuda:N', got {text!r}"
        ) from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise argparse.ArgumentTypeError(f"expected 'cpu' (no index), got {text!r}")
        return dev
    if dev.type != "cuda":
        raise argparse.ArgumentTypeError(f"expected 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    if not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = f"built with CUDA {cuda}" if cuda else "a CPU-only build"
        raise argparse.ArgumentTypeError(
            f"{text!r}: CUDA is not available on this machine (torch {torch.__version__}, "
            f"{build}); use --device cpu"
        )
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise argparse.ArgumentTypeError(f"{text!r}: only {count} CUDA device(s) are visible")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def _png_path(text: str) -> str:
    return _output_path(text, ".png")


def _wav_path(text: str) -> str:
    return _output_path(text, ".wav")


def _output_path(text: str, suffix: str) -> str:
    """An argparse check of an output file: ``suffix`` (any case), an existing directory,
    and a file this process can write."""
    if not text.lower().endswith(suffix):
        raise argparse.ArgumentTypeError(f"expected a path ending in {suffix}, got {text!r}")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    # checked before any work, by opening the file as the writer will: an existing file is
    # opened for appending (its bytes are kept), a new one is created and removed again
    existed = os.path.exists(text)
    try:
        with open(text, "ab" if existed else "xb"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {reason}") from None
    if not existed:
        os.remove(text)
    return text


def _parser() -> _Parser:
    from pyro_lgm import __version__

    parser = _Parser(
        prog="pyro-lgm",
        description="pyro-lgm: exact-likelihood generative models for Pyro.",
    )
    parser.add_argument("--version", action="version", version=f"pyro-lgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="fit a flow to a 2-D toy density and plot it",
        description=(
            "Fit a normalizing flow to a 2-D toy density by maximum likelihood, print the "
            "test NLL and KL(target || model) in nats, and write a PNG of the target and "
            "learned densities."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--target",
        choices=TARGETS,
        default="moons",
        help="the 2-D target density (pyro_lgm.data.toy)",
    )
    demo.add_argument(
        "--flow",
        choices=sorted(FLOWS),
        default="maf",
        help="the flow to fit (pyro_lgm.cli.FLOWS)",
    )
    demo.add_argument("--layers", type=_positive_int, default=8, help="number of flow layers")
    demo.add_argument("--steps", type=_positive_int, default=3000, help="optimization steps (Adam)")
    demo.add_argument("--batch-size", type=_positive_int, default=256, help="mini-batch size")
    demo.add_argument("--lr", type=_positive_float, default=3e-3, help="Adam learning rate")
    demo.add_argument("--seed", type=_nonneg_int, default=0, help="random seed")
    demo.add_argument(
        "--train-size",
        type=_positive_int,
        default=50_000,
        help="number of target samples to train on",
    )
    demo.add_argument(
        "--test-size",
        type=_at_least_two,
        default=20_000,
        help="number of fresh target samples for the test NLL and the KL estimate",
    )
    demo.add_argument(
        "--out",
        type=_png_path,
        default="demo.png",
        help="where to write the PNG (target density | learned density | samples)",
    )
    demo.add_argument(
        "--device", type=parse_device, default="cpu", help="torch device: cpu, cuda, cuda:N"
    )
    demo.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads for torch (small 2-D models run fastest on one)",
    )
    demo.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no header: print only the results",
    )
    _add_train_parser(sub)
    _add_sample_parser(sub)
    _add_train_wavenet_parser(sub)
    _add_sample_audio_parser(sub)
    sub.add_parser(
        "info",
        help="print versions, devices, flows, targets, image models, data sets, audio models",
        description=(
            "Print versions, devices, available flows and toy targets, image models, "
            "image data sets and the audio models (WaveNet)."
        ),
    )
    return parser


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from pyro_lgm.image_models import IMAGE_DATASETS, IMAGE_MODELS

    train = sub.add_parser(
        "train",
        help="train an image model (PixelCNN family, ...) and checkpoint it",
        description=(
            "Train an image model by maximum likelihood with pyro_lgm.train.fit, write a "
            "resumable checkpoint (which also names the model, its options and the data set, "
            "so `pyro-lgm sample` can rebuild it) and print the test NLL in nats per image "
            "and bits/dim (nats only for binary data). Models: "
            + ", ".join(sorted(IMAGE_MODELS))
            + "; see `pyro-lgm info` for their options."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("model", metavar="MODEL", help="the image model (pyro-lgm info lists them)")
    train.add_argument(
        "--data",
        choices=sorted(IMAGE_DATASETS),
        default="digits",
        help="the image data set (digits is bundled; the others need --data-dir)",
    )
    train.add_argument(
        "--data-dir",
        help=f"directory of the data files (default: ${_data_env()}; not needed for digits)",
    )
    length = train.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=_positive_int,
        help="optimization steps in total (a --resume run continues up to it; default 1000)",
    )
    length.add_argument(
        "--minutes",
        type=_positive_float,
        help="train for at most this many minutes of wall time, evaluation included (the "
        "step count is set from the speed of the first steps and the run stops early if "
        "the time is up; with --resume: more minutes)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=64, help="mini-batch size")
    train.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    train.add_argument(
        "--device", type=parse_device, default="cpu", help="torch device: cpu, cuda, cuda:N"
    )
    train.add_argument("--seed", type=_nonneg_int, default=0, help="random seed")
    train.add_argument(
        "--checkpoint",
        help="checkpoint file, written atomically at every evaluation and at the end "
        "(default: MODEL-DATA.pt)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint if it exists (its model options are kept)",
    )
    train.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option (repeatable); pyro-lgm info lists each model's options",
    )
    train.add_argument(
        "--eval-every",
        type=_positive_int,
        help="evaluate the test NLL (and checkpoint) every this many steps (default: a tenth "
        "of the steps)",
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress and no header: only the results"
    )


def _add_sample_parser(sub: argparse._SubParsersAction) -> None:
    sample = sub.add_parser(
        "sample",
        help="draw images from a `pyro-lgm train` checkpoint into a PNG grid",
        description=(
            "Rebuild the model of a `pyro-lgm train` checkpoint, draw images and write them "
            "as a PNG grid."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sample.add_argument("--checkpoint", required=True, help="a `pyro-lgm train` checkpoint")
    sample.add_argument("--num", type=_positive_int, default=64, help="number of images")
    sample.add_argument(
        "--temperature",
        type=_positive_float,
        help="sampling temperature (default: the model's, 1 for the PixelCNN family; models "
        "without temperature support accept only 1)",
    )
    sample.add_argument("--out", type=_png_path, default="samples.png", help="the PNG to write")
    sample.add_argument(
        "--nrow", type=_positive_int, help="images per grid row (default: ceil(sqrt(num)))"
    )
    sample.add_argument(
        "--device", type=parse_device, default="cpu", help="torch device: cpu, cuda, cuda:N"
    )
    sample.add_argument("--seed", type=_nonneg_int, default=0, help="random seed")
    sample.add_argument(
        "--panels",
        action="store_true",
        help="also write the hierarchy panels of a VAE (hvae, pixelvae): OUT-z<l>.png varies "
        "latent layer l only along each row, OUT-pixels.png the pixel-level noise only "
        "(--nrow images per row, default 8; ceil(num / nrow) rows)",
    )


# ``train-wavenet --clip`` / ``--cosine``: no clipping unless asked for, for both outputs.
# The gradient of the loss (nats per sample) of the default 16-bit mixture had norms of 30 to
# 300 in its first 80 steps (the categorical's: 0.2 to 3). Clipping at 1 did not cure the
# mixture's instability at a constant lr 1e-3 (benchmarks/results/wavenet.md section 1, same
# corpus, seed and 10 CPU-minutes; 2026-12-01, 2-core CPU): its curve rose again at the end
# (all test segments 9.043 against 9.126 unclipped), nor did a constant lr 3e-4. What did: lr
# 1e-3 decayed to 0 by a cosine over the budget (benchmarks/wavenet.py --cosine; 15
# CPU-minutes): a steadily falling curve and 7.309 nats per sample, below the i.i.d.
# histogram's 7.606. ``--cosine`` is the same schedule over the run's steps.


def _add_train_wavenet_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train-wavenet",
        help="train a WaveNet on the espeak-ng speech corpus and checkpoint it",
        description=(
            "Train a WaveNet by maximum likelihood on segments of the espeak-ng speech corpus "
            "(pyro_lgm.data.build_speech_corpus; built into --corpus with a progress bar when "
            "it holds no manifest.json, which needs the espeak-ng program), write a resumable "
            "checkpoint that also holds the model's options (so `pyro-lgm sample-audio` can "
            "rebuild it) and print the test NLL over every segment of the test split in "
            "nats per sample and bits per sample. The model options (--output, --bits, "
            "--speaker, --segment, --channels, --layers, --stacks, --mixtures) default to "
            "the checkpoint's with --resume, and must match it if given."
        ),
    )
    train.add_argument(
        "--corpus",
        metavar="DIR",
        help="the speech corpus folder, built there if it has no manifest.json (required; "
        "with --resume the checkpoint's by default)",
    )
    train.add_argument(
        "--output",
        choices=["categorical", "logistic_mixture"],
        help="categorical: a softmax over mu-law companded levels (WaveNet's); "
        "logistic_mixture: a discretized logistic mixture over linear levels (Parallel "
        "WaveNet's teacher) (default: categorical)",
    )
    train.add_argument(
        "--bits",
        type=_bits,
        help="levels are 0 .. 2^bits - 1 (default: 8 for categorical, 16 for logistic_mixture)",
    )
    train.add_argument(
        "--speaker",
        action="store_true",
        default=None,
        help="condition on the speaker (the corpus's voice; global conditioning): "
        "`sample-audio` then needs --speaker ID",
    )
    train.add_argument(
        "--segment",
        type=_positive_int,
        help="training segment length in samples; the test split is cut the same way "
        "(default: 4096)",
    )
    train.add_argument(
        "--channels",
        type=_positive_int,
        help="residual and dilation channels; the skip channels are twice this (default: 32)",
    )
    train.add_argument(
        "--layers",
        type=_positive_int,
        help="layers per stack, dilations 1, 2, ..., 2^(layers-1) (default: 10)",
    )
    train.add_argument(
        "--stacks", type=_positive_int, help="how often the dilations repeat (default: 1)"
    )
    train.add_argument(
        "--mixtures",
        type=_positive_int,
        help="mixture components of logistic_mixture (default: 5)",
    )
    length = train.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=_positive_int,
        help="optimization steps in total (a --resume run continues up to it; default 1000)",
    )
    length.add_argument(
        "--minutes",
        type=_positive_float,
        help="train for at most this many minutes of wall time, evaluation included (the "
        "step count is set from the speed of the first steps and the run stops early if "
        "the time is up; with --resume: more minutes)",
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=8, help="segments per batch (default: 8)"
    )
    train.add_argument(
        "--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)"
    )
    train.add_argument(
        "--clip",
        type=_positive_float,
        help="clip the gradient's global norm (of the loss in nats per sample) at this "
        "value (default: no clipping)",
    )
    train.add_argument(
        "--cosine",
        action="store_true",
        help="decay the learning rate from --lr to 0 by a cosine over the run's steps (with "
        "--resume: over the steps of the run that started it). The 16-bit logistic_mixture "
        "needs it: at a constant lr 1e-3 its test NLL rises again after 6-8 CPU-minutes",
    )
    train.add_argument(
        "--checkpoint",
        default="wavenet.pt",
        help="checkpoint file, written atomically at every evaluation and at the end "
        "(default: wavenet.pt)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint if it exists (its model options are kept)",
    )
    train.add_argument(
        "--device",
        type=parse_device,
        default="cpu",
        help="torch device: cpu, cuda, cuda:N (default: cpu)",
    )
    train.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default: 0)")
    train.add_argument(
        "--eval-every",
        type=_positive_int,
        help="evaluate the test NLL (and checkpoint) every this many steps (default: a tenth "
        "of the steps)",
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress and no header: only the results"
    )


def _add_sample_audio_parser(sub: argparse._SubParsersAction) -> None:
    sample = sub.add_parser(
        "sample-audio",
        help="generate audio from a `pyro-lgm train-wavenet` checkpoint into WAV files",
        description=(
            "Rebuild the WaveNet of a `pyro-lgm train-wavenet` checkpoint, generate audio "
            "sample by sample (any length, not only the training segment's), write it as "
            "16-bit PCM mono WAV files at the corpus's sample rate and, with --plot, a PNG "
            "with one waveform panel per sample; print the generation speed."
        ),
    )
    sample.add_argument(
        "--checkpoint",
        default="wavenet.pt",
        help="a `pyro-lgm train-wavenet` checkpoint (default: wavenet.pt)",
    )
    length = sample.add_mutually_exclusive_group()
    length.add_argument(
        "--seconds",
        type=_positive_float,
        help="duration of each sample in seconds (default: 1.0)",
    )
    length.add_argument("--length", type=_positive_int, help="or its length in audio samples")
    sample.add_argument(
        "--num", type=_positive_int, default=1, help="how many samples (default: 1)"
    )
    sample.add_argument(
        "--speaker",
        type=_nonneg_int,
        metavar="ID",
        help="the speaker (voice) id: required for a speaker-conditioned model (0 .. "
        "speakers - 1), refused for an unconditional one",
    )
    sample.add_argument(
        "--method",
        choices=["cached", "naive"],
        default="cached",
        help="cached: per-layer queues, O(layers) work per sample (fast); naive: a full "
        "network pass per sample. Both give the same audio for the same --seed "
        "(default: cached)",
    )
    sample.add_argument(
        "--out",
        type=_wav_path,
        default="samples.wav",
        help="the WAV file to write; with --num N > 1: STEM-0.wav ... STEM-(N-1).wav "
        "instead (default: samples.wav)",
    )
    sample.add_argument(
        "--plot",
        type=_png_path,
        metavar="PNG",
        help="also write a PNG with one waveform panel per sample (time in seconds)",
    )
    sample.add_argument(
        "--device",
        type=parse_device,
        default="cpu",
        help="torch device: cpu, cuda, cuda:N (default: cpu)",
    )
    sample.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default: 0)")
    sample.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (one is shown on stderr from 1000 samples on)",
    )


# ------------------------------------------------------------------------------- demo


class _Grid:
    """Densities on a square plotting window around the target samples.

    The window is centred on the 0.1% - 99.9% quantile box of the samples, 1.25 times its
    larger side; ``p`` and ``q`` are the target and model densities at the ``resolution``
    x ``resolution`` grid points (rows: y, columns: x).
    """

    def __init__(
        self,
        target: torch.distributions.Distribution,
        model_dist: torch.distributions.Distribution,
        target_samples: torch.Tensor,
        resolution: int = 200,
    ) -> None:
        xs = target_samples.detach().cpu().double()
        lo = torch.quantile(xs, 0.001, dim=0)
        hi = torch.quantile(xs, 0.999, dim=0)
        centre, half = (lo + hi) / 2, ((hi - lo).max() / 2) * 1.25  # a square view
        lo, hi = (centre - half).tolist(), (centre + half).tolist()
        gx = torch.linspace(lo[0], hi[0], resolution, dtype=torch.float64)
        gy = torch.linspace(lo[1], hi[1], resolution, dtype=torch.float64)
        yy, xx = torch.meshgrid(gy, gx, indexing="ij")
        grid = torch.stack([xx.flatten(), yy.flatten()], -1)
        ref = target_samples
        with torch.no_grad():
            pts = grid.to(dtype=ref.dtype, device=ref.device)
            self.p = target.log_prob(pts).exp().reshape(resolution, resolution).cpu()
            q = torch.cat([model_dist.log_prob(c).exp() for c in pts.split(8192)])
            self.q = q.reshape(resolution, resolution).cpu()
        self.extent = (lo[0], hi[0], lo[1], hi[1])
        self.cell_area = float((gx[1] - gx[0]) * (gy[1] - gy[0]))

    def model_mass(self) -> float:
        """The model's probability of the window, by the midpoint rule (NaN counted as 0).

        At most 1 for a normalized density, up to the rule's error: the grid's cells are far
        smaller than the toy targets' features, and 200 x 200 cells resolve them.
        """
        return float(self.q.double().nan_to_num(0.0, posinf=math.inf).sum()) * self.cell_area


def _plot(
    path: str,
    grid: _Grid,
    target_samples: torch.Tensor,
    model_samples: torch.Tensor,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    p, q, extent = grid.p, grid.q, grid.extent
    vmax = float(p.max())
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), constrained_layout=True)
    opts = dict(origin="lower", extent=extent, cmap="magma", vmin=0.0, vmax=vmax)
    axes[0].imshow(p.numpy(), **opts)
    axes[0].set_title("target density p(x)")
    axes[1].imshow(q.nan_to_num(0.0).numpy(), **opts)
    axes[1].set_title("learned density q(x)")
    ms = model_samples.detach().cpu()[:3000]
    ts = target_samples.detach().cpu()[:3000]
    axes[2].scatter(ts[:, 0], ts[:, 1], s=2, alpha=0.4, color="tab:gray", label="target")
    axes[2].scatter(ms[:, 0], ms[:, 1], s=2, alpha=0.5, color="tab:orange", label="model")
    axes[2].set_xlim(extent[0], extent[1])
    axes[2].set_ylim(extent[2], extent[3])
    axes[2].set_title("samples")
    axes[2].legend(loc="upper right", markerscale=4)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _demo(args: argparse.Namespace) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_demo(args)
    finally:
        torch.set_num_threads(threads)


def _run_demo(args: argparse.Namespace) -> int:
    from pyro_lgm.train import TrainingDivergedError, fit

    start = time.perf_counter()
    say = (lambda *a: None) if args.quiet else print
    dev = args.device
    torch.manual_seed(args.seed)
    # on the CPU (samples are moved to the device); no validation: the sharp checkerboard
    # is evaluated on a plotting grid outside its support (log-density -inf there)
    target = _targets()[args.target](validate_args=False)
    g = torch.Generator().manual_seed(args.seed)
    train_x = target.sample((args.train_size,), generator=g).to(dev)
    test_x = target.sample((args.test_size,), generator=g).to(dev)
    flow = FLOWS[args.flow](2, args.layers).to(dev)
    say(
        f"pyro-lgm demo: target={args.target} flow={args.flow} layers={args.layers} "
        f"steps={args.steps} batch_size={args.batch_size} lr={args.lr:g} seed={args.seed} "
        f"device={dev}"
    )
    eval_x = test_x[:4096]
    with torch.no_grad():
        log_q0 = flow().log_prob(eval_x).double().cpu()  # the untrained model, for the check
    try:
        fit(
            flow,
            train_x,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            eval_data=eval_x,
            progress=not args.quiet,
            seed=args.seed,
            device=dev,
        )
    except TrainingDivergedError as e:
        print(f"pyro-lgm demo: error: {e} (try a smaller --lr)", file=sys.stderr)
        return 1
    flow.eval()
    with torch.no_grad():
        q = flow()
        log_q = torch.cat([q.log_prob(c) for c in test_x.split(8192)]).double().cpu()
        log_p = target.log_prob(test_x.cpu()).double()
        model_samples = q.sample((3000,))
    nll = -log_q.mean().item()
    nll_se = log_q.std().item() / math.sqrt(len(log_q))
    diff = log_p - log_q
    kl, kl_se = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
    entropy = -log_p.mean().item()
    title = f"{args.flow} ({args.layers} layers) on {args.target}: KL(p||q) = {kl:.3f} nats"
    grid = _Grid(target, _CPUView(q, dev), test_x.cpu())
    problem = _degenerate(log_q0, log_q[: len(log_q0)], grid.model_mass())
    if problem is not None:
        print(f"pyro-lgm demo: error: {problem} (try a smaller --lr)", file=sys.stderr)
        return 1
    _plot(args.out, grid, test_x.cpu(), model_samples.cpu(), title)
    elapsed = time.perf_counter() - start
    print(f"test NLL: {nll:.4f} nats (+- {nll_se:.4f} s.e., {len(log_q)} target samples)")
    print(f"KL(target || model): {kl:.4f} nats (+- {kl_se:.4f} s.e.)")
    say(f"target entropy: {entropy:.4f} nats (NLL = entropy + KL)")
    say(f"wrote {args.out}")
    say(f"wall time: {elapsed:.1f} s")
    return 0


def _degenerate(log_q0: torch.Tensor, log_q: torch.Tensor, mass: float) -> str | None:
    """Why a finished run's model is unusable, or ``None``.

    Training can end without a non-finite value and still be broken, e.g. after a huge
    learning rate: parameters so large that the log-density rounds to nonsense. Three
    checks: the test log-densities are finite; the trained model is not significantly
    worse than the untrained one on the same test points (paired difference above three
    standard errors); its density integrates to at most 1 over the plotting window (the
    midpoint rule on 200 x 200 cells, 10% allowed for the rule's error).

    Args:
        log_q0: ``(N,)`` log-densities of the untrained model at the evaluation points.
        log_q: ``(N,)`` log-densities of the trained model at the same points.
        mass: the trained model's integral over the plotting window.
    """
    if not bool(torch.isfinite(log_q).all()):
        return "the trained model's test log-density is NaN or infinite"
    d = log_q0 - log_q  # > 0 where the trained model is worse
    se = d.std().item() / math.sqrt(len(d)) if len(d) > 1 else math.inf
    if torch.isfinite(log_q0).all() and d.mean().item() > 3 * se:
        return (
            f"the trained model is worse than the untrained one: test NLL "
            f"{-log_q.mean().item():.4f} against {-log_q0.mean().item():.4f} nats"
        )
    if not mass <= 1.1:
        return (
            f"the learned density integrates to {mass:.3g} over the plot window: not a "
            f"normalized density (numerical breakdown)"
        )
    return None


class _CPUView:
    """``log_prob`` of a distribution on ``device`` for CPU points (for plotting)."""

    def __init__(self, d: torch.distributions.Distribution, device: torch.device) -> None:
        self.d, self.device = d, device

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.d.log_prob(x.to(self.device)).cpu()


def _info() -> int:
    import pyro

    from pyro_lgm import __version__

    print(f"pyro-lgm {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}")
    devs = ["cpu"]
    for i in range(torch.cuda.device_count()):
        devs.append(f"cuda:{i} ({torch.cuda.get_device_name(i)})")
    print(f"devices: {', '.join(devs)}")
    print(f"flows: {', '.join(sorted(FLOWS))}")
    print(f"targets: {', '.join(TARGETS)}")
    from pyro_lgm.image_models import IMAGE_DATASETS, IMAGE_MODELS

    print("image models (pyro-lgm train MODEL --option KEY=VALUE):")
    for name in sorted(IMAGE_MODELS):
        spec = IMAGE_MODELS[name]
        opts = " ".join(f"{k}={v}" for k, v in spec.defaults.items())
        print(f"  {name}: {spec.description}" if spec.description else f"  {name}")
        print(f"      options: {opts}" if opts else "      options: none")
    print("image data sets (pyro-lgm train --data NAME):")
    for name in sorted(IMAGE_DATASETS):
        d = IMAGE_DATASETS[name]
        where = "bundled" if not d.needs_data_dir else "needs --data-dir"
        c, h, w = d.shape
        print(f"  {name}: {c}x{h}x{w}, {d.bits}-bit, {where}; {d.description}")
    import shutil

    espeak = "found" if shutil.which("espeak-ng") else "not found: needed to build a corpus"
    print("audio models (pyro-lgm train-wavenet, then pyro-lgm sample-audio):")
    print("  wavenet: output categorical (8-bit mu-law levels) or logistic_mixture (16-bit")
    print("      linear levels), optionally speaker-conditioned (--speaker)")
    print(f"  data: the espeak-ng speech corpus, --corpus DIR (espeak-ng {espeak})")
    return 0


# ------------------------------------------------------------------------ image models


def _data_env() -> str:
    from pyro_lgm.data._paths import ENV_VAR

    return ENV_VAR


class _UsageError(Exception):
    """A bad option found after parsing: exit status 2 with the message (before training)."""


def _load_image_data(name: str, data_dir: str | None) -> Any:
    """The data set ``name`` (``--data-dir``, else the data environment variable)."""
    from pyro_lgm.image_models import dataset_spec

    spec = dataset_spec(name)
    if not spec.needs_data_dir:
        return spec.load(None)
    env = _data_env()
    if data_dir is None:
        data_dir = os.environ.get(env) or None
    if data_dir is None:
        raise _UsageError(
            f"--data {name} reads its files from a directory: pass --data-dir DIR (or set "
            f"{env}); only digits is bundled"
        )
    if not os.path.exists(data_dir):
        raise _UsageError(f"--data-dir {data_dir!r} does not exist")
    try:
        return spec.load(data_dir)
    except FileNotFoundError as e:
        raise _UsageError(f"--data {name} --data-dir {data_dir!r}: {e}") from None


def _steps_for_minutes(
    model: torch.nn.Module,
    train_x: torch.Tensor | tuple[torch.Tensor, ...],
    test_x: torch.Tensor | tuple[torch.Tensor, ...],
    batch_size: int,
    lr: float,
    seconds: float,
    eval_every: int | None,
    device: torch.device,
    eval_part: int = 256,
) -> int:
    """How many steps fit in ``seconds``: a copy of ``model`` is timed on a few training
    steps and on part of an evaluation pass (the calibration time is part of the budget).

    ``train_x`` / ``test_x``: a tensor, or a tuple ``(x, context)`` of tensors sharing their
    first dimension (the model is called as ``model(*batch)``); ``eval_part``: at most this
    many test examples are timed."""
    import copy

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train = train_x if isinstance(train_x, tuple) else (train_x,)
    test = test_x if isinstance(test_x, tuple) else (test_x,)
    start = time.perf_counter()
    probe = copy.deepcopy(model).to(device)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    n = train[0].shape[0]
    budget = min(10.0, 0.05 * seconds)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        index = torch.randint(n, (min(batch_size, n),))
        batch = tuple(t[index].to(device) for t in train)
        times = []
        while len(times) < 3 or (sum(times[1:]) < budget and len(times) < 200):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            probe(*batch).backward()
            opt.step()
            sync()
            times.append(time.perf_counter() - t)
        per_step = sum(times[1:]) / (len(times) - 1)
        n_test = test[0].shape[0]
        part = tuple(t[: min(eval_part, n_test)].to(device) for t in test)
        t = time.perf_counter()
        with torch.no_grad():
            probe.eval()
            probe(*part)
        sync()
        per_eval = (time.perf_counter() - t) * n_test / part[0].shape[0]
    del probe, opt
    left = seconds - (time.perf_counter() - start)
    # evaluations: one every eval_every steps (default: 10) and one at the end
    if eval_every is None:
        steps = (left - 11 * per_eval) / per_step
    else:
        steps = (left - per_eval) / (per_step + per_eval / eval_every)
    return max(1, int(steps))


def _train(args: argparse.Namespace) -> int:
    try:
        return _run_train(args)
    except _UsageError as e:
        print(f"pyro-lgm train: error: {e}", file=sys.stderr)
        return 2


def _run_train(args: argparse.Namespace) -> int:
    from pyro_lgm.image_models import (
        OptionError,
        TrainedImageModel,
        dataset_spec,
        model_spec,
        read_metadata,
        resolve_options,
    )
    from pyro_lgm.train import TrainingDivergedError, fit, load_checkpoint

    start = time.perf_counter()
    say = (lambda *a: None) if args.quiet else print
    checkpoint = args.checkpoint or f"{args.model}-{args.data}.pt"
    try:
        model_spec(args.model)  # an unknown model fails first
        data_spec = dataset_spec(args.data)
        given = dict(args.option)
        base, saved_step = None, 0
        if args.resume and os.path.exists(checkpoint):
            try:
                ckpt = load_checkpoint(checkpoint)
                meta = read_metadata(ckpt, checkpoint)
            except Exception as e:  # not a checkpoint of ours, unreadable, ...
                raise _UsageError(f"--resume: cannot resume from {checkpoint}: {e}") from None
            if (meta["model"], meta["dataset"]) != (args.model, args.data):
                raise _UsageError(
                    f"--resume: {checkpoint} holds {meta['model']} trained on "
                    f"{meta['dataset']}, not {args.model} on {args.data}"
                )
            base, saved_step = meta["options"], int(ckpt["step"])
            options = resolve_options(args.model, given, base)
            changed = sorted(k for k in options if options[k] != base.get(k))
            if changed:
                got = ", ".join(f"{k}={options[k]!r} (saved {base.get(k)!r})" for k in changed)
                raise _UsageError(f"--resume keeps the model's options; --option {got}")
            del ckpt
        options = resolve_options(args.model, given, base)
        # the binary check and the builder's own checks, before any data is read
        model = TrainedImageModel(args.model, args.data, data_spec.shape, data_spec.bits, options)
    except OptionError as e:
        raise _UsageError(str(e)) from None
    if not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint))):
        raise _UsageError(f"--checkpoint {checkpoint!r}: its directory does not exist")
    data = _load_image_data(args.data, args.data_dir)
    shape = tuple(data.train.shape[1:])
    if shape != data_spec.shape or data.bits != data_spec.bits:
        raise _UsageError(
            f"--data {args.data}: expected {data_spec.bits}-bit images {data_spec.shape}, the "
            f"files hold {data.bits}-bit {shape}"
        )
    dev = args.device
    dims = math.prod(shape)
    n_params = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    if args.minutes is not None:
        torch.manual_seed(args.seed)
        steps = saved_step + _steps_for_minutes(
            model,
            data.train,
            data.test,
            args.batch_size,
            args.lr,
            60.0 * args.minutes,
            args.eval_every,
            dev,
        )
    else:
        steps = args.steps if args.steps is not None else 1000
    eval_every = args.eval_every or max(1, steps // 10)
    opts = "".join(f"; {k}={v}" for k, v in options.items())
    c, h, w = shape
    say(
        f"pyro-lgm train: model={args.model} ({n_params} parameters{opts}) data={args.data} "
        f"({c}x{h}x{w}, {data.bits}-bit, {len(data.train)} train / {len(data.test)} test)"
    )
    resumed = f" (resuming at step {saved_step})" if saved_step else ""
    say(
        f"steps={steps}{resumed} batch_size={args.batch_size} lr={args.lr:g} seed={args.seed} "
        f"device={dev} checkpoint={checkpoint}"
    )
    try:
        result = fit(
            model,
            data.train,
            loss=lambda m, x: m(x),
            steps=steps,
            batch_size=args.batch_size,
            lr=args.lr,
            eval_data=data.test,
            eval_every=eval_every,
            eval_batch_size=max(args.batch_size, 256),
            checkpoint=checkpoint,
            checkpoint_every=eval_every,
            resume=args.resume,
            progress=not args.quiet,
            # a hard cap: the step estimate above ends the run unless the machine slows down
            time_limit=None
            if args.minutes is None
            else max(1.0, 60.0 * args.minutes - (time.perf_counter() - started)),
            seed=args.seed,
            device=dev,
        )
    except TrainingDivergedError as e:
        print(f"pyro-lgm train: error: {e} (try a smaller --lr)", file=sys.stderr)
        return 1
    nll = result.eval_loss[-1]
    what = "test -ELBO (a bound on the NLL)" if model.spec.nll_is_bound else "test NLL"
    if data.bits == 1:
        figure = f"{what}: {nll:.4f} nats/image"
    else:
        figure = f"{what}: {nll:.4f} nats/image, {nll / (dims * math.log(2)):.4f} bits/dim"
    print(f"{figure} ({len(data.test)} test images, step {result.steps})")
    say(f"wrote {checkpoint}")
    say(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from pyro_lgm.data import save_image_grid
    from pyro_lgm.image_models import load_trained, read_metadata

    def fail(message: str) -> int:
        print(f"pyro-lgm sample: error: {message}", file=sys.stderr)
        return 2

    path = args.checkpoint
    if not os.path.isfile(path):
        return fail(f"--checkpoint {path!r}: no such file")
    try:
        model, ckpt = load_trained(path)
    except Exception as e:  # not a checkpoint, an unregistered model, a mismatch
        return fail(f"--checkpoint {path!r}: {e}")
    meta, spec = read_metadata(ckpt, path), model.spec
    temperature = args.temperature if args.temperature is not None else spec.default_temperature
    if temperature != 1.0 and not spec.supports_temperature:
        return fail(
            f"--temperature {temperature:g}: model {meta['model']} does not support a "
            f"sampling temperature (only 1)"
        )
    if args.panels and spec.panels is None:
        return fail(f"--panels: model {meta['model']} has no latent hierarchy to show")
    torch.manual_seed(args.seed)
    model.to(args.device).eval()
    t = time.perf_counter()
    with torch.no_grad():
        images = model.sample(args.num, temperature).cpu()
    elapsed = time.perf_counter() - t
    _write_png_atomically(images, args.out, 2 ** int(meta["bits"]), args.nrow, save_image_grid)
    print(
        f"wrote {args.out}: {args.num} samples of {meta['model']} ({meta['dataset']}, step "
        f"{ckpt['step']}, temperature {temperature:g}) in {elapsed:.1f} s"
    )
    if args.panels:
        cols = args.nrow or 8
        rows = -(-args.num // cols)
        t = time.perf_counter()
        with torch.no_grad():
            panels = model.panels(rows, cols, args.seed)
        stem = args.out[: -len(".png")]
        for name, grid in panels.items():
            path = f"{stem}-{name}.png"
            _write_png_atomically(grid.cpu(), path, 2 ** int(meta["bits"]), cols, save_image_grid)
            what = "pixel-level noise" if name == "pixels" else f"latent layer {name}"
            print(f"wrote {path}: {rows} x {cols}, each row varies the {what} only")
        print(f"panels in {time.perf_counter() - t:.1f} s")
    return 0


def _write_png_atomically(
    images: torch.Tensor, path: str, levels: int, nrow: int | None, save: Callable[..., Any]
) -> None:
    """``save(images, tmp, ...)`` into a temporary file next to ``path``, then renamed."""
    _write_atomically(path, lambda tmp: save(images, tmp, levels=levels, nrow=nrow))


def _write_atomically(path: str, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` into a temporary file next to ``path`` (same suffix), then renamed
    over ``path``: a reader never sees a half-written file."""
    import contextlib
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; a PNG or WAV is not
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------ audio models

#: ``train-wavenet`` option -> (default, how the checkpoint's metadata holds it)
_WAVENET_DEFAULTS: dict[str, Any] = {
    "output": "categorical",
    "bits": None,  # 8 for categorical, 16 for logistic_mixture
    "speaker": False,
    "segment": 4096,
    "channels": 32,
    "layers": 10,
    "stacks": 1,
    "mixtures": 5,
}


def _wavenet_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``train-wavenet`` options of a checkpoint's metadata."""
    o = meta["options"]
    return {
        "output": o["output"],
        "bits": o["bits"],
        "speaker": o["num_classes"] is not None,
        "segment": meta["segment"],
        "channels": o["residual_channels"],
        "layers": o["layers_per_stack"],
        "stacks": o["stacks"],
        "mixtures": o["num_mixtures"],
    }


def _read_manifest(corpus: str) -> dict[str, Any]:
    import json

    with open(os.path.join(corpus, "manifest.json")) as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
        raise _UsageError(f"--corpus {corpus!r}: manifest.json is not a speech corpus manifest")
    return manifest


def _speech_split(corpus: str, split: str, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(segments (N, segment) in [-1, 1], speaker ids (N,))`` of one split (hop = segment;
    an utterance shorter than a segment is zero-padded to one)."""
    from pyro_lgm.data.speech import load_speech_corpus, speech_segments

    waves, speakers = load_speech_corpus(corpus, split)
    if not waves:
        raise _UsageError(f"--corpus {corpus!r}: the {split} split holds no utterances")
    pieces, ids = [], []
    for w, who in zip(waves, speakers.tolist()):
        piece = speech_segments([w], segment)
        pieces.append(piece)
        ids.append(torch.full((piece.shape[0],), who, dtype=torch.long))
    return torch.cat(pieces), torch.cat(ids)


def _train_wavenet(args: argparse.Namespace) -> int:
    try:
        return _run_train_wavenet(args)
    except _UsageError as e:
        print(f"pyro-lgm train-wavenet: error: {e}", file=sys.stderr)
        return 2


def _run_train_wavenet(args: argparse.Namespace) -> int:
    import subprocess

    from pyro_lgm.audio_models import TrainedWaveNet, read_wavenet_metadata
    from pyro_lgm.data import speech
    from pyro_lgm.train import TrainingDivergedError, fit

    start = time.perf_counter()
    say = (lambda *a: None) if args.quiet else print
    checkpoint = args.checkpoint
    given = {k: getattr(args, k) for k in _WAVENET_DEFAULTS if getattr(args, k) is not None}
    settings = dict(_WAVENET_DEFAULTS)
    corpus, saved_step, meta = args.corpus, 0, None
    if args.resume and os.path.exists(checkpoint):
        try:
            ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
            meta = read_wavenet_metadata(ckpt, checkpoint)
            saved_step = int(ckpt["step"])
        except Exception as e:  # not a checkpoint of ours, unreadable, ...
            raise _UsageError(f"--resume: cannot resume from {checkpoint}: {e}") from None
        saved = _wavenet_settings(meta)
        changed = sorted(k for k in given if given[k] != saved[k])
        if changed:
            got = ", ".join(f"--{k} {given[k]!r} (saved {saved[k]!r})" for k in changed)
            raise _UsageError(f"--resume keeps the model's options; {got}")
        settings.update(saved)
        if corpus is None:
            corpus = meta.get("corpus")
        del ckpt
    else:
        settings.update(given)
    if corpus is None:
        raise _UsageError("--corpus DIR is required (the speech corpus folder)")
    if settings["output"] == "categorical" and "mixtures" in given:
        raise _UsageError("--mixtures: only with --output logistic_mixture")
    if not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint))):
        raise _UsageError(f"--checkpoint {checkpoint!r}: its directory does not exist")
    if os.path.isdir(checkpoint):
        raise _UsageError(f"--checkpoint {checkpoint!r} is a directory, expected a file path")
    clip = args.clip
    ch = settings["channels"]
    options = {
        "residual_channels": ch,
        "dilation_channels": ch,
        "skip_channels": 2 * ch,
        "layers_per_stack": settings["layers"],
        "stacks": settings["stacks"],
        "output": settings["output"],
        "bits": settings["bits"],
        "num_mixtures": settings["mixtures"],
    }
    try:  # the options' own checks, before the corpus is built or read
        TrainedWaveNet(settings["segment"], **options)
    except ValueError as e:
        raise _UsageError(str(e)) from None

    # the corpus: built when it has no manifest (needs espeak-ng)
    if os.path.exists(corpus) and not os.path.isdir(corpus):
        raise _UsageError(f"--corpus {corpus!r} is a file, expected a folder")
    if not os.path.exists(os.path.join(corpus, "manifest.json")):
        t = time.perf_counter()
        try:
            speech.build_speech_corpus(corpus, progress=not args.quiet)
        except FileNotFoundError as e:
            raise _UsageError(
                f"--corpus {corpus!r} holds no corpus (no manifest.json): {e}"
            ) from None
        except (OSError, subprocess.CalledProcessError) as e:
            message = f"building the corpus in {corpus!r} failed: {e}"
            print(f"pyro-lgm train-wavenet: error: {message}", file=sys.stderr)
            return 1
        took = time.perf_counter() - t
        say(f"built the speech corpus in {corpus} with espeak-ng in {took:.1f} s")
    manifest = _read_manifest(corpus)
    rate = int(manifest["settings"].get("sample_rate", 16000))
    voices = list(manifest["settings"].get("voices", []))
    try:
        train_x, train_s = _speech_split(corpus, "train", settings["segment"])
        test_x, test_s = _speech_split(corpus, "test", settings["segment"])
    except (FileNotFoundError, ValueError) as e:
        raise _UsageError(f"--corpus {corpus!r}: {e}") from None
    if settings["speaker"]:
        options["num_classes"] = len(voices)
    torch.manual_seed(args.seed)  # the initial weights depend on --seed only
    model = TrainedWaveNet(
        settings["segment"],
        sample_rate=rate,
        corpus=os.path.abspath(corpus),
        voices=voices if settings["speaker"] else None,
        **options,
    )
    if meta is not None and (model.speakers, rate) != (meta["speakers"], meta["sample_rate"]):
        raise _UsageError(
            f"--corpus {corpus!r}: {model.speakers or 'no'} speakers at {rate} Hz, the "
            f"checkpoint's model has {meta['speakers'] or 'no'} speakers at "
            f"{meta['sample_rate']} Hz"
        )
    train_q, test_q = model.audio_to_levels(train_x), model.audio_to_levels(test_x)
    train = (train_q, train_s) if model.speakers else train_q
    test = (test_q, test_s) if model.speakers else test_q
    dev = args.device
    seg = settings["segment"]
    started = time.perf_counter()
    if args.minutes is not None:
        torch.manual_seed(args.seed)
        steps = saved_step + _steps_for_minutes(
            model,
            train,
            test,
            args.batch_size,
            args.lr,
            60.0 * args.minutes,
            args.eval_every,
            dev,
            eval_part=32,
        )
    else:
        steps = args.steps if args.steps is not None else 1000
    eval_every = args.eval_every or max(1, steps // 10)
    n_params = sum(p.numel() for p in model.parameters())
    coding = "mu-law" if model.output == "categorical" else "linear"
    who = f", conditioned on {model.speakers} speakers" if model.speakers else ""
    say(
        f"pyro-lgm train-wavenet: WaveNet {model.output} ({model.bits}-bit {coding} levels"
        f"{who}; {n_params} parameters, receptive field {model.receptive_field} samples)"
    )
    say(
        f"corpus={corpus} ({rate} Hz; {len(train_q)} train / {len(test_q)} test segments of "
        f"{seg} samples)"
    )
    resumed = f" (resuming at step {saved_step})" if saved_step else ""
    say(
        f"steps={steps}{resumed} batch_size={args.batch_size} lr={args.lr:g} "
        f"clip={'none' if clip is None else f'{clip:g}'}{' cosine' if args.cosine else ''} "
        f"seed={args.seed} device={dev} "
        f"checkpoint={checkpoint}"
    )
    try:
        result = fit(
            model,
            train,
            loss=lambda m, *batch: m(*batch),
            steps=steps,
            batch_size=args.batch_size,
            lr=args.lr,
            clip_grad_norm=clip,
            scheduler=(
                (lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps))
                if args.cosine
                else None
            ),
            eval_data=test,
            eval_every=eval_every,
            eval_batch_size=max(args.batch_size, 32),
            checkpoint=checkpoint,
            checkpoint_every=eval_every,
            resume=args.resume,
            progress=not args.quiet,
            time_limit=None
            if args.minutes is None
            else max(1.0, 60.0 * args.minutes - (time.perf_counter() - started)),
            seed=args.seed,
            device=dev,
        )
    except TrainingDivergedError as e:
        hint = "a smaller --lr" + (" or a --clip" if clip is None else " or a smaller --clip")
        print(f"pyro-lgm train-wavenet: error: {e} (try {hint})", file=sys.stderr)
        return 1
    nll = result.eval_loss[-1]  # the loss is in nats per sample
    print(
        f"test NLL: {nll:.4f} nats/sample, {nll / math.log(2):.4f} bits/sample "
        f"({len(test_q)} test segments of {seg} samples, step {result.steps})"
    )
    say(f"wrote {checkpoint}")
    say(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _sample_audio(args: argparse.Namespace) -> int:
    from pyro_lgm.audio_models import load_trained_wavenet
    from pyro_lgm.data.audio import write_wav

    def fail(message: str) -> int:
        print(f"pyro-lgm sample-audio: error: {message}", file=sys.stderr)
        return 2

    path = args.checkpoint
    if not os.path.isfile(path):
        return fail(f"--checkpoint {path!r}: no such file")
    try:
        model, ckpt = load_trained_wavenet(path)
    except ValueError as e:  # the message starts with the path
        return fail(f"--checkpoint {e}")
    n = model.speakers
    names = ""
    if model.voices:
        names = f" ({', '.join(f'{i}: {v}' for i, v in enumerate(model.voices))})"
    if n is None and args.speaker is not None:
        return fail(f"--speaker {args.speaker}: the model of {path} is not speaker-conditioned")
    if n is not None and args.speaker is None:
        return fail(f"--speaker ID is required: the model is conditioned on {n} speakers{names}")
    if n is not None and args.speaker >= n:
        return fail(f"--speaker {args.speaker}: expected an id in 0..{n - 1}{names}")
    rate = model.sample_rate
    length = args.length
    if length is None:
        length = max(1, round((args.seconds if args.seconds is not None else 1.0) * rate))
    stem = args.out[: -len(".wav")]
    files = [args.out] if args.num == 1 else [f"{stem}-{i}.wav" for i in range(args.num)]
    dev = args.device
    model.to(dev).eval()
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    t = time.perf_counter()
    audio = model.sample(
        args.num,
        length=length,
        speaker=args.speaker,
        method=args.method,
        generator=gen,
        progress=not args.quiet and length >= 1000,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t
    audio = audio.cpu()
    voice = ""
    if args.speaker is not None:
        voice = f", speaker {args.speaker}"
        if model.voices:
            voice += f" ({model.voices[args.speaker]})"
    for file, x in zip(files, audio):
        _write_atomically(file, lambda tmp, x=x: write_wav(tmp, x, rate))
        print(f"wrote {file}: {length} samples ({length / rate:.3f} s at {rate} Hz{voice})")
    if args.plot:
        titles = [f"{os.path.basename(f)}{voice}" for f in files]
        _write_atomically(args.plot, lambda tmp: _plot_waveforms(tmp, audio, rate, titles))
        print(f"wrote {args.plot}: {args.num} waveform panel{'s' if args.num > 1 else ''}")
    total = args.num * length
    print(
        f"generated {args.num} x {length} = {total} samples in {elapsed:.2f} s: "
        f"{total / max(elapsed, 1e-9):.0f} samples/s ({args.method}; checkpoint step "
        f"{ckpt['step']})"
    )
    return 0


def _plot_waveforms(path: str, audio: torch.Tensor, rate: int, titles: list[str]) -> None:
    """A PNG with one panel per waveform of ``audio`` ``(N, T)``; time axis in seconds."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    num, length = audio.shape
    t = torch.arange(length, dtype=torch.float64) / rate
    fig, axes = plt.subplots(
        num, 1, figsize=(10, 1.8 + 1.6 * num), sharex=True, squeeze=False, constrained_layout=True
    )
    for ax, x, title in zip(axes[:, 0], audio, titles):
        ax.plot(t.numpy(), x.double().numpy(), lw=0.5, color="tab:blue")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlim(0, length / rate)
        ax.set_ylabel("amplitude")
        ax.set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyro-lgm`` command line and return its exit status.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a bad option value (one line on stderr, before any training),
        1 when training diverged or ended with an unusable model (one line on stderr, no
        PNG written).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad option (already reported)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command == "demo":
        return _demo(args)
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "train-wavenet":
        return _train_wavenet(args)
    if args.command == "sample-audio":
        return _sample_audio(args)
    return _info()
