"""Planar and radial flows fitted to the energies U1-U4 of Rezende & Mohamed (2015).

For every energy (``--energies``), flow (``--flows``: ``planar``, ``radial``) and number of
layers K (``--K``, default 2 8 32), a flow ``planar_flow(2, K)`` / ``radial_flow(2, K)`` of
:mod:`pyro_lgm.models` is fitted to ``p(z) = exp(-U(z)) / Z`` by minimizing the reverse KL,
i.e. the Monte Carlo free energy

    F(q) = mean over z_1..z_B ~ q of [log q(z_b) + beta_t U(z_b)]

with reparametrized samples (``pyro_lgm.data.rsample_with_log_prob``: one forward pass, no
inversion) of ``--batch`` points per step, ``--steps`` Adam steps at peak learning rate
``--lr`` with a cosine decay to zero. ``--anneal T`` multiplies U by the inverse temperature
``beta_t = min(1, 0.01 + t / T)`` as the paper does (T = 10000 there); 0 (the default)
switches it off.

Reported: KL(q || p) in nats = mean of ``log q + U`` over ``--eval-samples`` fresh samples
plus log Z, with its standard error; log Z by the midpoint rule on a grid
(``pyro_lgm.data.log_normalizer``: ``[-12, 12]^2``, 1200 x 1200 cells), checked against a grid
twice as fine and with the mass near the box's edge (``edge_mass``) printed. U2-U4 carry the
library's default envelope ``(z1 / 2)^2 / 2`` (they are not normalizable without one; see
``pyro_lgm/data/energies.py``). The target: planar K = 32 within 0.05 nats of zero on U1 and
U2.

    python benchmarks/energies.py                          # everything (24 fits)
    python benchmarks/energies.py --energies U1 U2 --flows planar --K 32
    python benchmarks/energies.py --quick                  # smoke run (seconds)
    python benchmarks/energies.py --out curves.json        # also save per-fit curves

``--device`` (cpu, cuda, cuda:N) and ``--dtype`` (float32, float64) place the flows; the
report names both. One torch thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_device import add_device_args, describe, dtype_name, info, synchronize

from pyro_lgm.data import (
    ENERGIES,
    edge_mass,
    energy,
    log_normalizer,
    reverse_kl,
    rsample_with_log_prob,
)
from pyro_lgm.models import planar_flow, radial_flow

FLOWS = {"planar": planar_flow, "radial": radial_flow}
KL_TARGET = 0.05


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def fit_reverse_kl(flow, U, log_z, steps, batch, lr, anneal=0, log_every=50):
    """Minimize E_q[log q + beta_t U] by Adam with a cosine decay; return the curve.

    The curve holds, every ``log_every`` steps, the step, beta_t and ``loss + log Z``: the
    mini-batch estimate of KL(q || p) once beta_t = 1.
    """
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    curve = {"step": [], "beta": [], "loss_plus_log_z": []}
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        beta = min(1.0, 0.01 + t / anneal) if anneal else 1.0
        z, log_q = rsample_with_log_prob(flow(), (batch,))
        loss = (log_q + beta * U(z)).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {t}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if t % log_every == 0 or t == steps - 1:
            curve["step"].append(t)
            curve["beta"].append(beta)
            curve["loss_plus_log_z"].append(loss.item() + log_z)
    return curve


def run(args) -> list[dict]:
    rows = []
    for name in args.energies:
        U = energy(name)
        log_z = log_normalizer(U)
        log_z_fine = log_normalizer(U, resolution=2400)
        edge = edge_mass(U)
        print(
            f"{name}: log Z = {log_z:.10f} (grid twice as fine: {log_z_fine:.10f}), "
            f"mass near the box's edge {edge:.2e}",
            flush=True,
        )
        for flow_name in args.flows:
            for K in args.K:
                torch.manual_seed(args.seed)
                flow = FLOWS[flow_name](2, K).to(device=args.device, dtype=args.dtype)
                synchronize(args.device)
                t0, c0 = time.perf_counter(), time.process_time()
                status = "ok"
                try:
                    curve = fit_reverse_kl(
                        flow, U, log_z, args.steps, args.batch, args.lr, args.anneal
                    )
                except FloatingPointError as e:
                    status, curve = str(e), {}
                synchronize(args.device)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                torch.manual_seed(10_000 + args.seed)
                est = reverse_kl(flow(), U, num_samples=args.eval_samples, log_z=log_z)
                row = dict(
                    energy=name,
                    flow=flow_name,
                    K=K,
                    kl=est.kl,
                    se=est.stderr,
                    log_z=log_z,
                    wall=wall,
                    cpu=cpu,
                    status=status,
                    curve=curve,
                )
                rows.append(row)
                print(
                    f"{name} {flow_name:6s} K={K:2d}: KL = {est.kl:.4f} +- {est.stderr:.4f} "
                    f"nats  ({args.steps} steps, {cpu:.0f} CPU-s, {wall:.0f} s wall) {status}",
                    flush=True,
                )
    return rows


def report(args, rows) -> None:
    print()
    print(
        f"# energies ({datetime.date.today()}, {platform.platform()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), commit {commit()})"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(f"device {describe(args.device)}, dtype {dtype_name(args.dtype)}")
    anneal = f"beta_t = min(1, 0.01 + t/{args.anneal})" if args.anneal else "no annealing"
    print(
        f"training: {args.steps} Adam steps, batch {args.batch}, lr {args.lr:g} with cosine "
        f"decay, {anneal}, seed {args.seed}; evaluation: {args.eval_samples} samples"
    )
    print("\n## KL(q || p) in nats (Monte Carlo estimate +- standard error)\n")
    print("| energy | flow | " + " | ".join(f"K = {k}" for k in args.K) + " |")
    print("| --- | --- |" + " ---: |" * len(args.K))
    for name in args.energies:
        for flow_name in args.flows:
            cells = []
            for k in args.K:
                r = next(
                    r for r in rows if (r["energy"], r["flow"], r["K"]) == (name, flow_name, k)
                )
                cells.append(f"{r['kl']:.4f} ± {r['se']:.4f}")
            print(f"| {name} | {flow_name} | " + " | ".join(cells) + " |")
    print()
    for name in ("U1", "U2"):
        r = [
            r
            for r in rows
            if (r["energy"], r["flow"], r["K"]) == (name, "planar", 32) and math.isfinite(r["kl"])
        ]
        if r:
            ok = "met" if r[0]["kl"] <= KL_TARGET else "NOT met"
            print(f"target planar K=32 on {name} <= {KL_TARGET}: {ok} (KL {r[0]['kl']:.4f})")
    total = sum(r["cpu"] for r in rows)
    print(f"total training time: {total:.0f} CPU-s over {len(rows)} fits")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--energies", nargs="+", choices=ENERGIES, default=list(ENERGIES))
    p.add_argument("--flows", nargs="+", choices=sorted(FLOWS), default=["planar", "radial"])
    p.add_argument("--K", nargs="+", type=int, default=[2, 8, 32], help="numbers of layers")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate")
    p.add_argument(
        "--anneal",
        type=int,
        default=0,
        metavar="T",
        help="inverse temperature beta_t = min(1, 0.01 + t / T) on U; 0: none (default)",
    )
    p.add_argument("--eval-samples", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="save the per-fit training curves and results as JSON")
    p.add_argument("--quick", action="store_true", help="smoke run: 20 steps, few samples")
    add_device_args(p)
    args = p.parse_args(argv)
    if any(k < 1 for k in args.K):
        p.error(f"--K: expected positive numbers of layers, got {args.K}")
    if args.steps < 1 or args.batch < 2 or args.eval_samples < 2 or args.anneal < 0:
        p.error("--steps >= 1, --batch >= 2, --eval-samples >= 2 and --anneal >= 0 required")
    if args.quick:
        args.steps, args.eval_samples = 20, 2000
    torch.set_num_threads(args.threads)
    rows = run(args)
    report(args, rows)
    if args.out:
        payload = {
            "command": sys.argv,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": commit(),
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("device", "dtype", "out", "quick")
            },
            **info(args.device, args.dtype),
            "fits": rows,
        }
        Path(args.out).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
