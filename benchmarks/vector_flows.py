"""Speed of our MAF (pyro_lgm.models.maf) against Pyro, zuko and an unmasked MLP.

Same architecture for everyone: 5 affine autoregressive layers over D features, each with
ONE hidden layer of width 4D (Pyro's default structure is one hidden layer, of width 3D+1;
only the width is changed), ReLU, no skip connections, batch 512. Orders alternate
(natural / reversed) for ours and zuko; Pyro's default is a random permutation per layer.
All weights are drawn at random, N(0, 0.01^2) (no zero-initialised identity layers).

(a) density: ``-log_prob(x).mean()`` + ``backward()``, one network pass per layer for every
    implementation: Pyro's transforms are stacked "the MAF way" (inverted, so ``log_prob``
    runs their one-pass direction); the dense baseline runs the same affine-flow arithmetic
    with unmasked ``nn.Linear`` layers of the same shapes.
(b) sampling: ``sample((n,))``, sequential for all three. Pyro and zuko always make D
    network passes per layer. Ours stops at a bitwise fixed point (often earlier with
    random weights); ``ours-D`` disables that early exit and makes D passes like the others.

Every timed call gets a freshly drawn tensor (Pyro's transforms have ``cache_size=1`` and
would return a stale cached result for a repeated input tensor). Implementations are timed
round-robin (one call each per repeat, in a shuffled order) after a warm-up and we report
medians, so load from other processes on a shared machine hits all of them alike. All
figures are measured in this run; nothing is hard-coded.

    python benchmarks/vector_flows.py                 # D in 8, 64, 784
    python benchmarks/vector_flows.py --quick         # D in 8, 64, few repeats
    python benchmarks/vector_flows.py --dims 784 --repeats 9 --blocks 8,4
    python benchmarks/vector_flows.py --device cuda     # on a GPU (synchronized wall time)

``--device`` (cpu, cuda, cuda:N) and ``--dtype`` (float32, float64) place every
implementation and its inputs; the device is printed with the results. Times are wall-clock
(``time.perf_counter``); on CUDA each timed call is bracketed by ``torch.cuda.synchronize``
so that it counts the kernels' work, not their launch.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from bench_device import add_device_args, describe, dtype_name, synchronize
from torch import nn

from pyro_lgm.models import maf
from pyro_lgm.nn import MADE

try:  # optional
    import zuko
except ImportError:  # pragma: no cover
    zuko = None


def perturb(module: nn.Module, scale: float = 0.01) -> None:
    """Random (non-zero) weights everywhere: no identity shortcuts.

    The scale is small so that sequential sampling stays finite at D=784 (with N(0, 0.05)
    weights the random 784-step recursions of every implementation overflow); the cost of
    a network pass does not depend on the weight values.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)


class DenseMAF(nn.Module):
    """The same flow arithmetic with unmasked MLPs of the same shapes (cost baseline)."""

    def __init__(self, d: int, hidden: list[int], layers: int) -> None:
        super().__init__()
        self.d = d
        nets = []
        for _ in range(layers):
            widths = [d, *hidden]
            mods: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:]):
                mods += [nn.Linear(a, b), nn.ReLU()]
            mods.append(nn.Linear(widths[-1], 2 * d))
            nets.append(nn.Sequential(*mods))
        self.nets = nn.ModuleList(nets)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        ldj = 0.0
        for net in self.nets:
            out = net(x).unflatten(-1, (self.d, 2))
            log_scale = 3.0 * torch.tanh(out[..., 1] / 3.0)
            x = x * torch.exp(log_scale) + out[..., 0]
            ldj = ldj + log_scale.sum(-1)
        return -0.5 * (x**2).sum(-1) - 0.5 * self.d * math.log(2 * math.pi) + ldj


def _ours(flow, early_exit: bool = True):
    def sample(n):
        for t in flow.autoregressive_layers:
            t.early_exit = early_exit
        return flow().sample((n,))

    return dict(
        params=list(flow.parameters()),
        log_prob=lambda x: flow().log_prob(x),
        sample=sample,
        passes=lambda: [t.last_num_passes for t in flow.autoregressive_layers],
    )


def build(
    d: int,
    hidden: list[int],
    layers: int,
    blocks: list[int],
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict:
    torch.manual_seed(seed)
    impls = {}
    for i, k in enumerate(blocks):
        flow = maf(d, hidden, num_layers=layers)
        perturb(flow)
        flow.to(device=device, dtype=dtype)
        if k > 0:
            for m in flow.modules():
                if isinstance(m, MADE):
                    m.max_blocks = k
        impls["ours" if i == 0 else f"ours[k={k}]"] = _ours(flow)
        if i == 0:
            impls["ours-D"] = dict(_ours(flow, early_exit=False), log_prob=None)

    pyro_layers = [T.affine_autoregressive(d, hidden_dims=hidden) for _ in range(layers)]
    for t in pyro_layers:
        perturb(t)
        t.to(device=device, dtype=dtype)
    zeros = torch.zeros(d, device=device, dtype=dtype)
    base = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
    # the MAF way: the one-pass direction maps data -> base
    pyro_flow = dist.TransformedDistribution(base, [t.inv for t in reversed(pyro_layers)])

    def pyro_sample(n):
        # Pyro's sequential inverse builds its buffer in the default dtype
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return pyro_flow.sample((n,))
        finally:
            torch.set_default_dtype(default)

    impls["pyro"] = dict(
        params=[p for t in pyro_layers for p in t.parameters()],
        log_prob=pyro_flow.log_prob,
        sample=pyro_sample,
    )

    if zuko is not None:
        zflow = zuko.flows.MAF(d, transforms=layers, hidden_features=hidden)
        perturb(zflow)
        zflow.to(device=device, dtype=dtype)
        impls["zuko"] = dict(
            params=list(zflow.parameters()),
            log_prob=lambda x: zflow().log_prob(x),
            sample=lambda n: zflow().sample((n,)),
        )

    dense = DenseMAF(d, hidden, layers)
    perturb(dense)
    dense.to(device=device, dtype=dtype)
    impls["dense"] = dict(params=list(dense.parameters()), log_prob=dense.log_prob, sample=None)
    return impls


def time_density(
    impls: dict,
    d: int,
    batch: int,
    repeats: int,
    warmup: int,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> dict:
    names = [k for k, v in impls.items() if v.get("log_prob") is not None]
    times: dict[str, list[float]] = {k: [] for k in names}
    rng = random.Random(0)
    for r in range(warmup + repeats):
        rng.shuffle(names)  # no implementation always runs first / after the same one
        for name in names:
            impl = impls[name]
            # fresh tensor every call: no transform cache hit
            x = torch.randn(batch, d, device=device, dtype=dtype)
            for p in impl["params"]:
                p.grad = None
            synchronize(device)
            t0 = time.perf_counter()
            loss = -impl["log_prob"](x).mean()
            loss.backward()
            synchronize(device)
            dt = time.perf_counter() - t0
            if not torch.isfinite(loss):
                raise RuntimeError(f"{name}: non-finite loss at D={d}")
            if r >= warmup:
                times[name].append(dt)
    return {k: statistics.median(times[k]) for k in impls if k in times}


def time_sample(
    impls: dict, n: int, repeats: int, warmup: int, device: torch.device = torch.device("cpu")
) -> tuple[dict, list]:
    names = [k for k, v in impls.items() if v.get("sample") is not None and "[k=" not in k]
    times: dict[str, list[float]] = {k: [] for k in names}
    passes = []
    rng = random.Random(1)
    for r in range(warmup + repeats):
        rng.shuffle(names)
        for name in names:
            synchronize(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                s = impls[name]["sample"](n)
            synchronize(device)
            dt = time.perf_counter() - t0
            if s.shape[0] != n:
                raise RuntimeError(f"{name}: bad sample shape {tuple(s.shape)}")
            if not torch.isfinite(s).all():
                print(f"warning: {name} returned non-finite samples", flush=True)
            if name == "ours":
                passes = impls[name]["passes"]()
            if r >= warmup:
                times[name].append(dt)
    return {k: statistics.median(times[k]) for k in impls if k in times}, passes


def ratio(times: dict, a: str, b: str) -> str:
    return f"{times[a] / times[b]:.2f}" if a in times and b in times else "n/a"


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", type=str, default="8,64,784")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--hidden-layers", type=int, default=1)
    ap.add_argument("--hidden-mult", type=int, default=4)
    ap.add_argument(
        "--sample-batch",
        type=int,
        default=0,
        help="samples per sample() call (default: 512 for D <= 64, 16 above)",
    )
    ap.add_argument("--sample-repeats", type=int, default=3)
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--blocks",
        type=str,
        default="0",
        help="row blocks of our MADE's blocked products (0: library default); several "
        "values time one variant each, the first is reported as 'ours'",
    )
    ap.add_argument("--quick", action="store_true", help="D in 8, 64 and 3 repeats")
    ap.add_argument("--out", default=None, help="also write the table as markdown here")
    add_device_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.dims, args.repeats, args.warmup, args.sample_repeats = "8,64", 3, 1, 1
    dims = [int(s) for s in args.dims.split(",")]
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    print(
        f"torch {torch.__version__}, pyro {pyro.__version__}, "
        f"zuko {getattr(zuko, '__version__', 'not installed')}, threads {args.threads}, "
        f"{platform.processor() or platform.machine()}, "
        f"load average at start {open('/proc/loadavg').read().split()[:3]}"
    )
    print(
        f"device {describe(args.device)}, dtype {dtype_name(args.dtype)}; wall-clock times"
        + (", each timed call synchronized" if args.device.type == "cuda" else "")
    )
    print(
        f"{args.layers} layers, {args.hidden_layers} hidden layer(s) of {args.hidden_mult}*D, "
        f"batch {args.batch}, median of {args.repeats} (warm-up {args.warmup})",
        flush=True,
    )
    rows = []
    for d in dims:
        hidden = [args.hidden_mult * d] * args.hidden_layers
        blocks = [int(k) for k in args.blocks.split(",")]
        impls = build(d, hidden, args.layers, blocks, device=args.device, dtype=args.dtype)
        dens = time_density(
            impls, d, args.batch, args.repeats, args.warmup, args.device, args.dtype
        )
        print(
            f"D={d:4d} log_prob+backward [ms]: "
            + "  ".join(f"{k} {1e3 * v:.2f}" for k, v in dens.items())
            + " | "
            + "  ".join(
                f"{a}/{b} {ratio(dens, a, b)}"
                for a, b in [
                    ("ours", "pyro"),
                    ("ours", "zuko"),
                    ("ours", "dense"),
                    ("pyro", "dense"),
                    ("zuko", "dense"),
                ]
            ),
            flush=True,
        )
        n = args.sample_batch or (512 if d <= 64 else 16)
        samp, passes = {}, []
        if not args.no_sample:
            samp, passes = time_sample(impls, n, args.sample_repeats, 1, args.device)
            print(
                f"D={d:4d} sample({n}) [ms]: "
                + "  ".join(f"{k} {1e3 * v:.1f}" for k, v in samp.items())
                + " | "
                + "  ".join(
                    f"{a}/{b} {ratio(samp, a, b)}"
                    for a, b in [
                        ("ours", "pyro"),
                        ("ours", "zuko"),
                        ("ours-D", "pyro"),
                        ("ours-D", "zuko"),
                    ]
                )
                + f" | our passes per layer with early exit: {passes} (others: {d})",
                flush=True,
            )
        rows.append((d, n, dens, samp, passes))

    table = [
        "| D | ours ms | pyro ms | zuko ms | dense ms | ours/pyro | ours/zuko | ours/dense "
        "| pyro/dense | sample n | sample ours/pyro | sample ours-D/pyro | sample ours-D/zuko |",
        "|" + "---|" * 13,
    ]
    for d, n, dens, samp, _ in rows:
        ms = {k: f"{1e3 * v:.1f}" for k, v in dens.items()}
        table.append(
            f"| {d} | {ms.get('ours', 'n/a')} | {ms.get('pyro', 'n/a')} | "
            f"{ms.get('zuko', 'n/a')} | {ms.get('dense', 'n/a')} | "
            f"{ratio(dens, 'ours', 'pyro')} | {ratio(dens, 'ours', 'zuko')} | "
            f"{ratio(dens, 'ours', 'dense')} | {ratio(dens, 'pyro', 'dense')} | "
            f"{n if samp else '-'} | {ratio(samp, 'ours', 'pyro')} | "
            f"{ratio(samp, 'ours-D', 'pyro')} | {ratio(samp, 'ours-D', 'zuko')} |"
        )
    command = " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    header = [
        f"device: {describe(args.device)}, dtype {dtype_name(args.dtype)}",
        f"command: python {command}",
        f"date: {time.strftime('%Y-%m-%d %H:%M')}; {args.layers} layers, "
        f"{args.hidden_layers} hidden layer(s) of {args.hidden_mult}*D, batch {args.batch}, "
        f"median of {args.repeats} (warm-up {args.warmup}); wall-clock ms of log_prob + "
        "backward" + (", each call synchronized" if args.device.type == "cuda" else ""),
    ]
    print("\n" + "\n".join(header) + "\n\n" + "\n".join(table))
    if args.out:
        text = "# MAF speed (benchmarks/vector_flows.py)\n\n" + "\n\n".join(header)
        Path(args.out).write_text(text + "\n\n" + "\n".join(table) + "\n")
    return rows


if __name__ == "__main__":
    main()
