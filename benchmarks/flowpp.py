"""Flow++ benchmarks: sharp 2-D densities, and uniform vs variational dequantization.

Two sections (``--sections``), every figure measured in this run.

``toy``      KL(target || model) on the 2-D toy densities of :mod:`pyro_lgm.data.toy`
             (two moons, 8 Gaussians, rings, the sharp 4x4 checkerboard) after ``--budget``
             seconds of this process's CPU time (one thread) per flow and target, side by
             side: our Flow++ vector flow (logistic-mixture couplings), our neural spline
             flow (``nsf``), our MAF (the affine yardstick of issue 10) and zuko's ``NSF``
             (optional: ``pip install zuko``). Training is
             ``benchmarks/vector_flows_fit.py``'s ``train_for`` (fresh target samples every
             chunk, Adam with cosine decay, divergence roll-back), the KL is
             ``mean(log p(x) - log q(x))`` over ``--eval-size`` fresh target samples with its
             standard error. Configs: :data:`TOY_FLOWS`.

``dequant``  bits/dim of 8-bit images under the same Flow++ image flow trained with uniform
             dequantization and with a variational dequantizer (Flow++ Sec. 3.1; a
             conditional flow of mixture couplings), each for ``--minutes`` CPU-minutes
             (``--device cuda``: wall-clock minutes) through Pyro's ``SVI`` and
             ``Trace_ELBO`` (the uniform run is the same program with
             :class:`~pyro_lgm.models.UniformDequantizer`). Reported on the test set: the
             variational bound (one draw of u per image) and the importance-weighted bound
             with ``--iw-samples`` draws. Data: ``--data digits`` (scikit-learn's 8x8
             digits as 8-bit images, bundled) or ``--data mnist`` (``--data-dir``, e.g.
             ``../shared/data``), or ``cifar10`` (GPU-sized).

    python benchmarks/flowpp.py --sections toy       # 4 targets x 4 flows, 120 CPU-s each
    python benchmarks/flowpp.py --sections toy --targets checkerboard --budget 30
    python benchmarks/flowpp.py --sections dequant --data digits --minutes 4
    python benchmarks/flowpp.py --sections dequant --data mnist --data-dir ../shared/data \\
        --net resnet --minutes 12
    python benchmarks/flowpp.py --sections dequant --data cifar10 --data-dir ../shared/data \\
        --device cuda --minutes 2.5 --net attention --hidden 64 --batch-size 64 \\
        --test-size 1000   # two 2.5-minute runs and their evaluation: under 8 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import pyro
import torch
from bench_device import add_device_args, check_clock, describe, synchronize
from vector_flows_fit import TOY_DEFAULTS, num_params, train_for

from pyro_lgm.data.toy import TARGETS
from pyro_lgm.models import (
    UniformDequantizer,
    VariationalDequantization,
    flowpp,
    maf,
    nsf,
    variational_dequantizer,
)

KL_TARGET = 0.02

# name -> (builder, peak lr, description); the same config on every target. Screened on the
# checkerboard (benchmarks/results/flowpp.md, "Screening"): Flow++ with 60-120 CPU-s runs
# (4 couplings of K = 32 beat 6-8 couplings of K = 16-32; K = 64-128 gained little), NSF
# with 120 CPU-s runs (16 bins beat 8); larger batches beat 256 for both (Flow++ K = 64:
# 0.032 at 256, 0.025 at 1024; NSF 16 bins: 0.020 at 256, 0.015 at 512), so 512, the batch
# of vector_flows_fit.py. zuko's NSF gets the same size as ours.
TOY_FLOWS = {
    "flowpp": (
        lambda: flowpp(2, num_layers=4, num_components=32, hidden=[64, 64]),
        5e-3,
        "Flow++: 4 mixture couplings K=32 [64, 64] + ActNorm",
    ),
    "nsf": (
        lambda: nsf(2, num_layers=8, hidden_dims=[64, 64], bins=16),
        5e-3,
        "ours NSF: 8 RQ-spline couplings, 16 bins [64, 64] + ActNorm",
    ),
    "maf": (
        lambda: maf(2, hidden_dims=[64, 64], num_layers=16, seed=0),
        TOY_DEFAULTS["maf"]["lr"],
        "MAF: 16 MADE layers [64, 64]",
    ),
    "zuko-nsf": (
        None,  # built lazily: zuko is optional
        5e-3,
        "zuko NSF: 8 autoregressive RQ-spline transforms, 16 bins [64, 64]",
    ),
}


@contextlib.contextmanager
def _zuko_import_guard():
    """Import zuko without its side effect on the whole process: it switches
    ``torch.distributions.Distribution``'s argument validation off when imported."""
    flag = torch.distributions.Distribution._validate_args
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(flag)


def _zuko_nsf():
    with _zuko_import_guard():
        import zuko
    return zuko.flows.NSF(2, transforms=8, hidden_features=[64, 64], bins=16)


def run_toy(args) -> list[dict]:
    rows = []
    for target_name in args.targets:
        target = TARGETS[target_name]()
        x_eval = target.sample((args.eval_size,), generator=torch.Generator().manual_seed(10_000))
        log_p = target.log_prob(x_eval).double()
        for name in args.flows:
            build, lr, desc = TOY_FLOWS[name]
            if name == "zuko-nsf":
                try:
                    build = _zuko_nsf
                except ImportError:
                    print("toy  zuko is not installed: zuko-nsf skipped", flush=True)
                    continue
            torch.manual_seed(args.seed)
            flow = build().to(device=args.device)
            g = torch.Generator().manual_seed(args.seed)
            n = args.chunk * args.batch_size

            def make_chunk(k, target=target, g=g, n=n):
                return target.sample((n,), generator=g).to(args.device)

            info = train_for(
                flow, make_chunk, args.budget, lr, args.chunk, args.batch_size, clock=args.clock_fn
            )
            with torch.no_grad():
                q = flow()
                x_dev = x_eval.to(args.device)
                log_q = torch.cat([q.log_prob(c) for c in x_dev.split(8192)]).double().cpu()
            diff = log_p - log_q
            kl, se = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
            row = dict(
                target=target_name,
                flow=name,
                desc=f"{desc}, lr {lr:g}",
                params=num_params(flow),
                kl=kl,
                se=se,
                **info,
            )
            rows.append(row)
            print(
                f"toy  {target_name:12s} {name:8s} KL = {kl:.4f} +- {se:.4f} nats  "
                f"steps={info['steps']} rollbacks={info['rollbacks']} "
                f"train={info['train_s']:.0f}s params={row['params']}",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------------- dequantization
def _load(args):
    from pyro_lgm.image_models import IMAGE_DATASETS

    data = IMAGE_DATASETS[args.data].load(args.data_dir)
    return data.train.float(), data.test.float()


def _build(args, shape, kind):
    torch.manual_seed(args.seed)
    flow = flowpp(
        shape,
        num_components=args.components,
        hidden=args.hidden,
        net=args.net,
        blocks=args.blocks,
        num_scales=args.scales,
    )
    if kind == "uniform":
        deq = UniformDequantizer(shape, bits=8)
    else:
        deq = variational_dequantizer(
            shape,
            bits=8,
            steps=4,
            hidden=args.deq_hidden,
            coupling="mixture",
            num_components=4,
            net="glow",
        )
    return VariationalDequantization(flow, deq, name=f"deq-{kind}").to(args.device)


def _evaluate(vd, test, args, num_samples):
    out = []
    with torch.no_grad():
        for xb in test.split(args.eval_batch):
            xb = xb.to(args.device)
            bound = vd.iwae(xb, num_samples=num_samples) if num_samples > 1 else vd.elbo(xb)
            out.append(bound.double().cpu())
    nats = -torch.cat(out)
    bpd = nats / (math.prod(test.shape[1:]) * math.log(2))
    return bpd.mean().item(), bpd.std().item() / math.sqrt(len(bpd))


def run_dequant(args) -> list[dict]:
    train, test = _load(args)
    if args.test_size:
        test = test[: args.test_size]
    shape = tuple(train.shape[1:])
    rows = []
    for kind in args.kinds:
        pyro.clear_param_store()
        vd = _build(args, shape, kind)
        # ActNorm's data-dependent initialisation, on one batch of uniformly dequantized data
        with torch.no_grad():
            vd.flow.log_likelihood(train[: args.batch_size].to(args.device))
        svi = pyro.infer.SVI(
            vd.model, vd.guide, pyro.optim.Adam({"lr": args.lr}), pyro.infer.Trace_ELBO()
        )
        g = torch.Generator().manual_seed(args.seed)
        spent, steps, curve = 0.0, 0, []
        budget = 60 * args.minutes
        next_curve = 60 * args.curve_every
        while spent < budget:
            idx = torch.randint(0, len(train), (args.batch_size,), generator=g)
            xb = train[idx].to(args.device)
            synchronize(args.device)
            t0 = args.clock_fn()
            loss = svi.step(xb)
            synchronize(args.device)
            spent += args.clock_fn() - t0
            steps += 1
            if not math.isfinite(loss):
                raise RuntimeError(f"{kind}: loss {loss} at step {steps}")
            if spent >= next_curve:
                bpd, se = _evaluate(vd, test[: args.curve_size], args, 1)
                curve.append(dict(minutes=spent / 60, steps=steps, bpd=bpd))
                print(
                    f"dequant {kind:11s} {spent / 60:6.1f} min  step {steps:6d}  "
                    f"test bits/dim (bound, {args.curve_size} images) {bpd:.4f}",
                    flush=True,
                )
                next_curve += 60 * args.curve_every
        elbo, elbo_se = _evaluate(vd, test, args, 1)
        iw, iw_se = _evaluate(vd, test, args, args.iw_samples)
        row = dict(
            kind=kind,
            steps=steps,
            minutes=spent / 60,
            params=num_params(vd),
            elbo_bpd=elbo,
            elbo_se=elbo_se,
            iw_bpd=iw,
            iw_se=iw_se,
            curve=curve,
        )
        rows.append(row)
        print(
            f"dequant {kind:11s} test bits/dim: variational bound {elbo:.4f} +- {elbo_se:.4f}, "
            f"IW bound (S={args.iw_samples}) {iw:.4f} +- {iw_se:.4f}  steps={steps} "
            f"params={row['params']}",
            flush=True,
        )
    return rows


def report(args, toy, deq) -> None:
    print(f"\n# Flow++ benchmark, {time.strftime('%Y-%m-%d')}, {describe(args.device)}")
    print("command: python benchmarks/flowpp.py " + " ".join(sys.argv[1:]))
    if toy:
        print(f"\n## KL(target || model), {args.budget:g} {args.clock} s per flow and target\n")
        print("| target | flow | config | params | steps | KL (nats) | s.e. | <= 0.02 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in toy:
            ok = "yes" if r["kl"] <= KL_TARGET else "no"
            print(
                f"| {r['target']} | {r['flow']} | {r['desc']} | {r['params']} | {r['steps']} "
                f"| {r['kl']:.4f} | {r['se']:.4f} | {ok} |"
            )
    if deq:
        print(
            f"\n## {args.data}: test bits/dim, uniform vs variational dequantization, "
            f"{args.minutes:g} {args.clock}-minutes each\n"
        )
        print("| dequantization | steps | params | variational bound | IW bound (S) |")
        print("| --- | --- | --- | --- | --- |")
        for r in deq:
            print(
                f"| {r['kind']} | {r['steps']} | {r['params']} | {r['elbo_bpd']:.4f} ± "
                f"{r['elbo_se']:.4f} | {r['iw_bpd']:.4f} ± {r['iw_se']:.4f} "
                f"({args.iw_samples}) |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(toy=toy, dequant=deq), indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", nargs="+", choices=["toy", "dequant"], default=["toy"])
    p.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(TARGETS),
        default=["moons", "8gaussians", "rings", "checkerboard"],
    )
    p.add_argument(
        "--flows",
        nargs="+",
        choices=sorted(TOY_FLOWS),
        default=["flowpp", "nsf", "maf", "zuko-nsf"],
    )
    p.add_argument("--budget", type=float, default=120.0, help="seconds per flow and target")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=None, help="toy 512, dequant 32")
    p.add_argument("--eval-size", type=int, default=50_000)
    p.add_argument("--data", choices=["digits", "mnist", "cifar10"], default="digits")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("PYRO_LGM_DATA"),
        help="directory of the mnist / cifar10 files (default: $PYRO_LGM_DATA)",
    )
    p.add_argument(
        "--kinds", nargs="+", choices=["uniform", "variational"], default=["uniform", "variational"]
    )
    p.add_argument("--minutes", type=float, default=4.0, help="training minutes per run")
    p.add_argument("--curve-every", type=float, default=1.0, help="minutes between curve points")
    p.add_argument("--curve-size", type=int, default=500)
    p.add_argument("--test-size", type=int, default=0, help="0: the whole test set")
    p.add_argument("--eval-batch", type=int, default=100)
    p.add_argument("--iw-samples", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--net", choices=["attention", "resnet", "glow"], default="attention")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--components", type=int, default=8)
    p.add_argument("--scales", type=int, default=2)
    p.add_argument("--deq-hidden", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    add_device_args(p, dtype=False)
    args = p.parse_args(argv)
    if args.data in ("mnist", "cifar10") and "dequant" in args.sections and not args.data_dir:
        p.error(f"--data {args.data} needs --data-dir (e.g. ../shared/data)")
    if args.batch_size is None:
        args.batch_size = 512 if args.sections == ["toy"] else 32
    args.clock = check_clock(p, args.clock, args.device) or "cpu"
    args.clock_fn = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    toy = run_toy(args) if "toy" in args.sections else []
    deq = run_dequant(args) if "dequant" in args.sections else []
    report(args, toy, deq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
