"""Planar / radial flows: exactness of the inverse and its cost relative to the forward pass.

For D in (2, 64, 1024), a batch of N points x ~ N(0, I) and several random parameter draws
(interior ones, and ones at distance ``--margin`` from the invertibility boundary:
``w . u_hat = -1 + margin`` for planar, ``beta = -alpha + margin`` for radial), prints a markdown
table of

* the max round-trip error ``|inv(f(x)) - x|`` over the batch and draws, in float32 and
  float64, on fresh tensors (``cache_size=0``: the inverse is always computed);
* for float32, the "floor": the same error for an exact (float64) inverse of the same float32
  ``y = f(x)``, i.e. what the rounding of ``y`` alone costs (the conditioning of the problem);
* the max ``|f(inv(y)) - y|`` in float64;
* the inverse / forward time ratio (median over ``--repeats`` timed runs after ``--warmup``
  runs, fresh input tensors each run, ``torch.no_grad()``), in both dtypes, by CPU time of the
  calling thread (with one intra-op thread, the default here, this is robust to other
  processes sharing the machine) and by wall time.

Both dtypes are always measured (the comparison is the point), so there is no ``--dtype``.
``--device cuda`` runs everything on a GPU; there the CPU time of the calling thread says
nothing about the kernels' work, so the ratios and the verdict use **wall time** around
``torch.cuda.synchronize`` (the CPU-time column reads "n/a").

Usage::

    python benchmarks/planar_radial.py [--batch 1024] [--draws 5] [--repeats 25] [--threads 1]
    python benchmarks/planar_radial.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from bench_device import add_device_args, describe, synchronize

from pyro_lgm.transforms import ConditionedPlanar, ConditionedRadial

F64 = torch.float64


def softplus_inv(y: float) -> float:
    return math.log(math.expm1(y))


def planar_params(d: int, near: bool, margin: float, g: torch.Generator):
    w = torch.randn(d, generator=g, dtype=F64) / d**0.5
    u = torch.randn(d, generator=g, dtype=F64) / d**0.5
    b = torch.randn((), generator=g, dtype=F64)
    if near:
        w2 = w @ w
        u = u - (u @ w) / w2 * w + softplus_inv(margin) * w / w2
    return b, u, w


def radial_params(d: int, near: bool, margin: float, g: torch.Generator):
    x0 = torch.randn(d, generator=g, dtype=F64)
    alpha_prime = torch.randn((), generator=g, dtype=F64)
    if near:
        beta_prime = torch.tensor(softplus_inv(margin), dtype=F64)
    else:
        beta_prime = 2 * torch.randn((), generator=g, dtype=F64)
    return x0, alpha_prime, beta_prime


def build(kind: str, params, dtype, device: torch.device | str = "cpu"):
    cls = ConditionedPlanar if kind == "planar" else ConditionedRadial
    return cls(*(p.to(device=device, dtype=dtype) for p in params), cache_size=0)


def median_time(fn, arg: torch.Tensor, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this thread (robust to other processes on a
    loaded machine when torch uses one thread) of ``fn(fresh copy of arg)``. On CUDA the
    call is synchronized before both clocks are read (the CPU time is then meaningless)."""
    wall, cpu = [], []
    for i in range(warmup + repeats):
        fresh = arg.clone()
        synchronize(arg.device)
        w0, c0 = time.perf_counter(), time.thread_time()
        fn(fresh)
        synchronize(arg.device)
        w1, c1 = time.perf_counter(), time.thread_time()
        if i >= warmup:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
    return statistics.median(wall), statistics.median(cpu)


def run(kind: str, d: int, near: bool, args) -> dict:
    dev = args.device
    seed = 1000 * d + (1 if near else 0) + (7 if kind == "radial" else 0)
    g = torch.Generator().manual_seed(seed)
    make_params = planar_params if kind == "planar" else radial_params
    err = {torch.float32: 0.0, F64: 0.0}
    floor32 = 0.0
    fwd_err64 = 0.0
    ratios = {torch.float32: [], F64: []}
    wall_ratios = {torch.float32: [], F64: []}
    fwd_ms = {torch.float32: [], F64: []}
    with torch.no_grad():
        for _ in range(args.draws):
            params = make_params(d, near, args.margin, g)
            x64 = torch.randn(args.batch, d, generator=g, dtype=F64)
            if kind == "planar" and near:
                # a quarter of the batch where the Jacobian is closest to singular (a ~ 0)
                b, _, w = params
                q = args.batch // 4
                x64[:q] -= ((x64[:q] @ w + b) / (w @ w)).unsqueeze(-1) * w
                x64[:q] += 0.05 * torch.randn(q, 1, generator=g, dtype=F64) * w
            for dtype in (torch.float32, F64):
                t = build(kind, params, dtype, dev)
                x = x64.to(device=dev, dtype=dtype)
                y = t(x.clone())
                x_back = t.inv(y.clone())
                err[dtype] = max(err[dtype], float((x_back - x).abs().max()))
                if dtype == torch.float32:
                    exact = build(kind, [p.to(torch.float32) for p in params], F64, dev)
                    floor32 = max(floor32, float((exact.inv(y.double()) - x.double()).abs().max()))
                else:
                    fwd_err64 = max(fwd_err64, float((t(x_back.clone()) - y).abs().max()))
                wf, cf = median_time(t, x, args.warmup, args.repeats)
                wi, ci = median_time(t.inv, y, args.warmup, args.repeats)
                ratios[dtype].append(ci / cf)
                wall_ratios[dtype].append(wi / wf)
                fwd_ms[dtype].append((wf if dev.type == "cuda" else cf) * 1e3)
    return {
        "err32": err[torch.float32],
        "floor32": floor32,
        "err64": err[F64],
        "fwd_err64": fwd_err64,
        "ratio32": statistics.median(ratios[torch.float32]),
        "ratio64": statistics.median(ratios[F64]),
        "wall32": statistics.median(wall_ratios[torch.float32]),
        "wall64": statistics.median(wall_ratios[F64]),
        "fwd_ms32": statistics.median(fwd_ms[torch.float32]),
        "fwd_ms64": statistics.median(fwd_ms[F64]),
    }


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64, 1024])
    parser.add_argument("--draws", type=int, default=5, help="random parameter draws per row")
    parser.add_argument("--margin", type=float, default=1e-3, help="distance to the boundary")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    add_device_args(parser, dtype=False)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gpu = args.device.type == "cuda"

    print(
        f"batch={args.batch} draws={args.draws} margin={args.margin:g} "
        f"warmup={args.warmup} repeats={args.repeats} threads={torch.get_num_threads()} "
        f"torch={torch.__version__}\n"
        f"device {describe(args.device)}; float32 and float64 both measured"
        + ("; timing: wall time, synchronized (CPU time does not count GPU work)" if gpu else "")
        + "\n"
    )
    print(
        "| flow | D | parameters | f32 max abs(inv(f(x))-x) | f32 floor (exact inverse of f32 y) "
        "| f64 max abs(inv(f(x))-x) | f64 max abs(f(inv(y))-y) | inv/fwd CPU time f32 / f64 "
        "| inv/fwd wall time f32 / f64 "
        + ("| fwd wall ms f32 / f64 |" if gpu else "| fwd CPU ms f32 / f64 |")
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for kind in ("planar", "radial"):
        for d in args.dims:
            for near in (False, True):
                r = run(kind, d, near, args)
                rows.append((kind, d, near, r))
                where = f"near boundary ({args.margin:g})" if near else "interior"
                cpu_ratio = "n/a" if gpu else f"{r['ratio32']:.1f}x / {r['ratio64']:.1f}x"
                print(
                    f"| {kind} | {d} | {where} | {r['err32']:.2e} | {r['floor32']:.2e} "
                    f"| {r['err64']:.2e} | {r['fwd_err64']:.2e} "
                    f"| {cpu_ratio} "
                    f"| {r['wall32']:.1f}x / {r['wall64']:.1f}x "
                    f"| {r['fwd_ms32']:.3f} / {r['fwd_ms64']:.3f} |",
                    flush=True,
                )
    print()
    ok64 = all(r["err64"] <= 1e-12 for *_, r in rows)
    ok32 = [(k, d, n) for k, d, n, r in rows if r["err32"] > 1e-5]
    ratio = max(max(r["ratio32"], r["ratio64"]) for *_, r in rows)
    wall = max(max(r["wall32"], r["wall64"]) for *_, r in rows)
    print(f"target f64 round trip <= 1e-12: {'met' if ok64 else 'NOT met'}")
    print(
        "target f32 round trip <= 1e-5: "
        + ("met" if not ok32 else f"NOT met for {ok32} (compare the f32 floor column)")
    )
    if gpu:
        verdict = "met" if wall <= 10 else "NOT met"
        print(
            f"target inverse <= 10x forward (wall time on {args.device}): {verdict} "
            f"(max {wall:.1f}x)"
        )
    else:
        verdict = "met" if ratio <= 10 else "NOT met"
        print(
            f"target inverse <= 10x forward (CPU time): {verdict} (max {ratio:.1f}x; "
            f"wall-time max {wall:.1f}x)"
        )
    return rows


if __name__ == "__main__":
    main()
