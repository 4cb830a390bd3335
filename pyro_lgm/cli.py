r"""The ``pyro-lgm`` command line (also ``python -m pyro_lgm``).

Subcommands:

* ``demo`` - fit a normalizing flow to a 2-D toy density by maximum likelihood, print the
  test negative log-likelihood and :math:`\mathrm{KL}(p \,\|\, q)` (estimated from target
  samples: :math:`\frac1N \sum_n \log p(x_n) - \log q(x_n)`, :math:`x_n \sim p`), and write
  a PNG with the target and learned densities side by side;
* ``info`` - versions, devices, available flows and targets.

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
from typing import NoReturn

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
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"expected a path ending in .png, got {text!r}")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    # checked before training, by opening the file as the plot will: an existing file is
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
    sub.add_parser(
        "info",
        help="print versions, devices, flows and targets",
        description="Print versions, devices, available flows and toy targets.",
    )
    return parser


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
    return 0


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
    return _info()
