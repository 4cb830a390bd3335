"""Speed of the flow layers alone as a VAE guide uses them: ours against Pyro's.

One training step of an amortized flow posterior, at the same sizes on both sides:

    cts = [layer.condition(h) for layer in layers]           # K conditioned transforms
    q = TransformedDistribution(Normal(loc, scale).to_event(1), cts)
    z = q.rsample(); q.log_prob(z).sum().backward()

with one context ``h`` of shape ``(B, C)`` (what an encoder would output; a leaf that
requires gradients, so the backward pass reaches it), ``loc`` / ``log_scale`` of shape
``(B, D)``. Flow types, each against Pyro's helper of the same name
(``pyro.distributions.transforms``):

* ``planar``, ``radial``: ``K`` conditional layers with each library's default hidden widths
  (ours now ``[10 D, 10 D]``, Pyro's ``[10 D, 10 D]``) and with a linear read-out of the
  context (ours ``hidden_dims=[]``; Pyro's ``DenseNN`` cannot take an empty list, so its
  conditional transform is given a ``Linear(C, ...)`` split into the same parameters);
* ``iaf``: ``--iaf-layers`` conditional affine autoregressive layers, hidden widths
  ``--iaf-hidden`` (default Pyro's default ``[10 D]``) on both sides, no permutations;
* ``uncond planar`` / ``uncond radial``: ``AutoNormalizingFlow``-style unconditional stacks of
  ``K`` ``Planar`` / ``Radial`` modules with each library's *default* ``cache_size``
  (``rsample`` of ``--uncond-batch`` draws + ``log_prob`` + backward).

Pyro's planar and radial transforms cannot invert: they work here only because their cache
(``cache_size=1``) returns the sample just drawn. All weights are drawn at random,
N(0, 0.01^2) (no identity shortcuts; the cost does not depend on the values).

Timing: CPU time of the calling thread (``time.thread_time``) with ``torch.set_num_threads``
(default 1), robust to other processes on a shared machine; on CUDA, wall time around
synchronized regions. Ours and Pyro's alternate (shuffled order per repeat) after a warm-up;
each sample times ``--inner`` steps; the table gives medians per step.

    python benchmarks/flow_layers_speed.py                      # B 100, D 32, C 256, K 8
    python benchmarks/flow_layers_speed.py --K 10 --repeats 30
    python benchmarks/flow_layers_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import time

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from bench_device import add_device_args, describe, dtype_name, synchronize
from torch import nn

import pyro_lgm.transforms as L


class _LinearSplit(nn.Module):
    """Pyro's conditional planar / radial with a linear read-out: ``Linear(C, sum(sizes))``
    split into the parameter tuple its transform expects."""

    def __init__(self, context_dim: int, sizes: list[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, sum(sizes))
        self.sizes = sizes

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(context).split(self.sizes, dim=-1)


def _pyro_linear(kind: str, d: int, c: int) -> nn.Module:
    # shapes as Pyro's DenseNN gives them: scalars keep a trailing dimension of 1
    if kind == "planar":  # (bias, u, w)
        return T.ConditionalPlanar(_LinearSplit(c, [1, d, d]))
    return T.ConditionalRadial(_LinearSplit(c, [d, 1, 1]))  # (x0, alpha', beta')


def build(flow: str, impl: str, args) -> list[nn.Module]:
    """The ``K`` (or ``--iaf-layers``) layers of one flow type for one implementation."""
    d, c, k = args.latent, args.context, args.K
    if flow in ("planar", "radial", "planar linear", "radial linear"):
        kind, linear = flow.split()[0], flow.endswith("linear")
        if impl == "ours":
            make = L.conditional_planar if kind == "planar" else L.conditional_radial
            return [make(d, c, [] if linear else None) for _ in range(k)]
        if linear:
            return [_pyro_linear(kind, d, c) for _ in range(k)]
        make = T.conditional_planar if kind == "planar" else T.conditional_radial
        return [make(d, c) for _ in range(k)]
    if flow == "iaf":
        make = (
            L.conditional_affine_autoregressive
            if impl == "ours"
            else T.conditional_affine_autoregressive
        )
        hidden = args.iaf_hidden or [10 * d]
        return [make(d, c, hidden) for _ in range(args.iaf_layers)]
    if flow in ("uncond planar", "uncond radial"):
        kind = flow.split()[1]
        lib = L if impl == "ours" else T
        cls = lib.Planar if kind == "planar" else lib.Radial
        return [cls(d) for _ in range(k)]
    raise ValueError(flow)


def param_count(layers: list[nn.Module]) -> int:
    return sum(p.numel() for m in layers for p in m.parameters())


def perturb(layers: list[nn.Module], scale: float = 0.01) -> None:
    with torch.no_grad():
        for m in layers:
            for p in m.parameters():
                p.normal_(0.0, scale)


class Case:
    """One flow type of one implementation, with its own inputs (same values both sides)."""

    def __init__(self, flow: str, impl: str, args, seed: int) -> None:
        torch.manual_seed(seed)
        self.layers = build(flow, impl, args)
        for m in self.layers:
            m.to(device=args.device, dtype=args.dtype)
        torch.manual_seed(seed + 1)
        perturb(self.layers)
        g = torch.Generator().manual_seed(seed + 2)
        kw = {"device": args.device, "dtype": args.dtype}
        self.conditional = not flow.startswith("uncond")
        b = args.batch if self.conditional else 1
        self.h = torch.randn(args.batch, args.context, generator=g).to(**kw).requires_grad_()
        self.loc = (0.1 * torch.randn(b, args.latent, generator=g)).to(**kw).requires_grad_()
        self.log_scale = (0.1 * torch.randn(b, args.latent, generator=g)).to(**kw)
        self.log_scale.requires_grad_()
        self.sample_shape = () if self.conditional else (args.uncond_batch,)
        self.params = [p for m in self.layers for p in m.parameters()]
        self.leaves = [self.h, self.loc, self.log_scale, *self.params]

    def step(self) -> None:
        for p in self.leaves:
            p.grad = None
        if self.conditional:
            transforms = [m.condition(self.h) for m in self.layers]
        else:
            transforms = self.layers
        base = dist.Normal(self.loc, self.log_scale.exp()).to_event(1)
        q = dist.TransformedDistribution(base, transforms)
        z = q.rsample(self.sample_shape)
        q.log_prob(z).sum().backward()


def time_steps(case: Case, n: int, device: torch.device) -> float:
    """Seconds per step: thread CPU time on the CPU, synchronized wall time on CUDA."""
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    synchronize(device)
    t0 = clock()
    for _ in range(n):
        case.step()
    synchronize(device)
    return (clock() - t0) / n


FLOWS = ["planar", "planar linear", "radial", "radial linear", "iaf", "uncond planar",
         "uncond radial"]  # fmt: skip


def run(args) -> list[dict]:
    rows = []
    for i, flow in enumerate(args.flows):
        cases = {impl: Case(flow, impl, args, seed=1000 * i) for impl in ("ours", "pyro")}
        for case in cases.values():  # warm-up
            for _ in range(args.warmup):
                case.step()
        times: dict[str, list[float]] = {"ours": [], "pyro": []}
        order = ["ours", "pyro"]
        for _ in range(args.repeats):
            random.shuffle(order)
            for impl in order:
                times[impl].append(time_steps(cases[impl], args.inner, args.device))
        ours, theirs = statistics.median(times["ours"]), statistics.median(times["pyro"])
        # the ratio's spread: median of the per-repeat ratios, and its quartiles
        per = sorted(o / p for o, p in zip(times["ours"], times["pyro"]))
        q1, q3 = per[len(per) // 4], per[(3 * len(per)) // 4]
        rows.append(
            {
                "flow": flow,
                "ours_ms": 1e3 * ours,
                "pyro_ms": 1e3 * theirs,
                "ratio": ours / theirs,
                "ratio_iqr": (q1, q3),
                "ours_params": param_count(cases["ours"].layers),
                "pyro_params": param_count(cases["pyro"].layers),
            }
        )
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    q1, q3 = r["ratio_iqr"]
    return (
        f"| {r['flow']} | {r['ours_ms']:.2f} | {r['pyro_ms']:.2f} | **{r['ratio']:.2f}** "
        f"({q1:.2f}-{q3:.2f}) | {r['ours_params']:,} | {r['pyro_params']:,} |"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100, help="B: rows of the context")
    parser.add_argument("--latent", type=int, default=32, help="D: latent size")
    parser.add_argument("--context", type=int, default=256, help="C: context size")
    parser.add_argument("--K", type=int, default=8, help="planar / radial layers")
    parser.add_argument("--iaf-layers", type=int, default=2)
    parser.add_argument(
        "--iaf-hidden", type=int, nargs="*", default=None,
        help="IAF hidden widths (default Pyro's default [10 D])",
    )  # fmt: skip
    parser.add_argument(
        "--uncond-batch", type=int, default=1,
        help="draws per step of the unconditional stacks (AutoNormalizingFlow: 1)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=5, help="steps per timed sample")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--flows", nargs="+", default=FLOWS, choices=FLOWS, metavar="FLOW",
        help=f"subset of {FLOWS}",
    )  # fmt: skip
    parser.add_argument(
        "--no-validation", action="store_true",
        help="turn off torch / Pyro validation (default: on, as for users)",
    )  # fmt: skip
    add_device_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(0)
    pyro.enable_validation(not args.no_validation)
    torch.distributions.Distribution.set_default_validate_args(not args.no_validation)
    cmd = " ".join(
        ["python benchmarks/flow_layers_speed.py", *map(shlex.quote, argv or sys.argv[1:])]
    )
    print(f"command: {cmd}")
    print(f"device: {describe(args.device)}, dtype {dtype_name(args.dtype)}")
    print(f"pyro {pyro.__version__}; load average {os.getloadavg()[0]:.2f} at start")
    print(
        f"B={args.batch} D={args.latent} C={args.context} K={args.K} "
        f"iaf={args.iaf_layers}x{args.iaf_hidden or [10 * args.latent]} "
        f"validation={'off' if args.no_validation else 'on'}; "
        f"medians over {args.repeats} x {args.inner} steps"
    )
    print("| flow | ours ms/step | pyro ms/step | ours/pyro (IQR) | ours params | pyro params |")
    print("|---|---|---|---|---|---|")
    return run(args)


if __name__ == "__main__":
    main()
