"""Fit quality of the vector flows: MAF, RealNVP, NICE and planar.

Three sections (``--sections``, default all three) and an optional ``sharpness`` reference;
every figure is measured in this run.

``toy``  KL(target || model) on the 2-D toy densities of :mod:`pyro_lgm.data.toy` after a
         fixed training budget per flow and target (``--budget`` seconds, default 120, of
         this process's CPU time with one thread: on a shared machine that is fairer than
         wall-clock time, which ``--clock wall`` selects). Training draws fresh target
         samples for every chunk of steps (no over-fitting to a finite set), Adam with a
         cosine learning-rate decay over the budget, trained
         through :func:`pyro_lgm.train.fit` in chunks of ``--chunk`` steps with one
         optimizer. A chunk that diverges (``TrainingDivergedError``) is rolled back to the
         last good parameters and the learning rate is halved (counted in the table). The KL
         is estimated from ``--eval-size`` fresh target samples,
         ``mean(log p(x) - log q(x))`` with its standard error. The KL target is 0.02 nats.
         Flow configs: ``TOY_DEFAULTS`` (one config per flow, the same on every target:
         MAF 16 MADE layers [64, 64] at lr 5e-3, RealNVP 8 couplings [128, 128] at lr 3e-3,
         NICE 8 couplings [128, 128] at lr 1e-3, planar 32 layers at lr 3e-3); ``--layers``,
         ``--hidden`` and ``--lr`` override them per flow (e.g. ``--layers maf=24
         --hidden maf=32x32 --lr maf=3e-3``).

``digits`` test NLL on scikit-learn's 8x8 digits (64 dims, 17 grey levels 0..16;
         :func:`pyro_lgm.data.load_digits` splits 1197 / 300 / 300). Preprocessing: uniform
         dequantization and scaling ``x~ = (x + u) / 17``, ``u ~ U[0, 1)^64`` (fresh noise
         every epoch), then per-feature standardisation with the training set's mean and std
         (its log-det is accounted for). We report the negative log-likelihood of the
         *discrete* data in nats per image, ``-E_u[log p(x~)] + 64 log 17``, which by Jensen's
         inequality is an upper bound on the true discrete NLL (the dequantized density gives
         a lower bound on the discrete log-likelihood), averaged over ``--test-noise``
         dequantization draws per test image; early stopping on the validation NLL.
         ``--debd NAME`` adds a DEBD binary set (``--debd-root``, default
         ``../shared/data/debd``), dequantized as ``x + u`` (unit bins, no scaling term);
         ``--sections debd --debd NAME`` fits the DEBD set alone (no digits).

``demo`` the ``pyro-lgm demo`` command itself (its default budget: 8 layers, 3000 Adam
         steps, batch 256, lr 3e-3, 50000 training samples), run for every flow and target,
         and its printed KL collected: which flow is best on the demo's budget. Distribution
         argument validation is switched off around the command because its density plot
         evaluates the sharp checkerboard's ``log_prob`` outside the support, which the
         validation rejects.

``sharpness`` no training: KL(checkerboard || the same board blurred by a Gaussian of
         standard deviation tau) for a few tau, i.e. how sharp a model's edges must be for
         a given KL on the sharp checkerboard (``Checkerboard(smoothing=tau)`` is that blurred
         density, exact up to floating point).

    python benchmarks/vector_flows_fit.py                       # full run (~40 CPU-minutes)
    python benchmarks/vector_flows_fit.py --quick               # smoke run (about 2 min)
    python benchmarks/vector_flows_fit.py --sections toy --budget 60 --targets moons
    python benchmarks/vector_flows_fit.py --device cuda --sections toy   # wall-clock budgets

``--device`` (cpu, cuda, cuda:N) and ``--dtype`` (float32, float64) place the flows and their
training and evaluation data (the targets are sampled on the CPU and moved); the report names
the device and dtype. On CUDA the budgets count wall-clock time around synchronized chunks
(``--clock cpu`` is refused there: CPU time does not count the GPU's work).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_device import add_device_args, check_clock, describe, dtype_name, synchronize

from pyro_lgm.data import load_debd, load_digits
from pyro_lgm.data.toy import TARGETS
from pyro_lgm.models import maf, nice, planar_flow, realnvp
from pyro_lgm.train import TrainingDivergedError, _adam, fit

KL_TARGET = 0.02


# ------------------------------------------------------------------------ flow configs
# name -> default toy config: number of layers, hidden widths of each layer's MLP, peak lr.
# The same config is used on every target. MAF and RealNVP were screened on 8 Gaussians and
# the checkerboard with 30 CPU-s runs (benchmarks/results/vector_flows_fit_tuning.md): a
# deeper, narrower MAF at lr 5e-3 was best on 8 Gaussians, and at 120 s it is the best flow
# on all three targets. RealNVP at lr 3e-3 beats its old lr 1e-3 on moons and 8 Gaussians
# but not on the checkerboard at 120 s (--lr realnvp=1e-3 there). NICE and planar unchanged.
TOY_DEFAULTS = {
    "maf": dict(layers=16, hidden=[64, 64], lr=5e-3),
    "realnvp": dict(layers=8, hidden=[128, 128], lr=3e-3),
    "nice": dict(layers=8, hidden=[128, 128], lr=1e-3),
    "planar": dict(layers=32, hidden=None, lr=3e-3),
}


def toy_flows(layers: dict | None = None, hidden: dict | None = None) -> dict:
    """name -> (builder, learning rate, description) for the toy section.

    Defaults are :data:`TOY_DEFAULTS` (the same config on every target); ``layers`` and
    ``hidden`` (flow name -> value, from ``--layers`` / ``--hidden``) override them.
    """
    layers, hidden = layers or {}, hidden or {}
    cfg = {
        name: dict(
            d,
            layers=layers.get(name, d["layers"]),
            hidden=hidden.get(name, d["hidden"]),
        )
        for name, d in TOY_DEFAULTS.items()
    }
    m, r, n, p = cfg["maf"], cfg["realnvp"], cfg["nice"], cfg["planar"]
    return {
        "maf": (
            lambda: maf(2, hidden_dims=m["hidden"], num_layers=m["layers"], seed=0),
            m["lr"],
            f"{m['layers']} MADE layers {m['hidden']}, alternating orders",
        ),
        "realnvp": (
            lambda: realnvp(2, num_layers=r["layers"], hidden_dims=r["hidden"]),
            r["lr"],
            f"{r['layers']} affine couplings {r['hidden']} + ActNorm",
        ),
        "nice": (
            lambda: nice(2, num_layers=n["layers"], hidden_dims=n["hidden"]),
            n["lr"],
            f"{n['layers']} additive couplings {n['hidden']} + diagonal scale",
        ),
        "planar": (
            lambda: planar_flow(2, num_layers=p["layers"]),
            p["lr"],
            f"{p['layers']} planar layers",
        ),
    }


def tab_flows(d: int) -> dict:
    return {
        "maf": (
            lambda: maf(d, hidden_dims=[512], num_layers=5, seed=0),
            1e-3,
            "5 MADE layers [512], alternating orders",
        ),
        "realnvp": (
            lambda: realnvp(d, num_layers=8, hidden_dims=[256, 256], permutation="random", seed=0),
            1e-3,
            "8 affine couplings [256, 256] + ActNorm, random permutations",
        ),
    }


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------- training loop
def train_for(
    flow, make_chunk, budget_s, lr, chunk_steps, batch_size, evaluate=None, clock=time.process_time
):
    """Train ``flow`` for ``budget_s`` seconds of ``clock`` (evaluation time excluded).

    ``make_chunk(k)`` returns the training tensor of chunk ``k``; ``evaluate()`` (optional)
    returns a validation loss after every chunk: the best parameters are kept.
    """
    opt = _adam(list(flow.parameters()), lr)  # fit()'s default optimizer
    base_lr = lr
    steps = rollbacks = 0
    spent = 0.0
    best = (math.inf, copy.deepcopy(flow.state_dict()))
    good = copy.deepcopy(flow.state_dict()), copy.deepcopy(opt.state_dict())
    k = 0
    while spent < budget_s:
        frac = min(spent / budget_s, 1.0)
        for group in opt.param_groups:
            group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * frac))
        data = make_chunk(k)
        k += 1
        device = data.device
        synchronize(device)
        t0 = clock()
        try:
            fit(flow, data, steps=chunk_steps, batch_size=batch_size, optimizer=opt, progress=False)
            steps += chunk_steps
            good = copy.deepcopy(flow.state_dict()), copy.deepcopy(opt.state_dict())
        except TrainingDivergedError:
            rollbacks += 1
            flow.load_state_dict(good[0])
            opt.load_state_dict(good[1])
            base_lr /= 2
        synchronize(device)
        spent += clock() - t0
        if evaluate is not None:
            loss = evaluate()
            if loss < best[0]:
                best = (loss, copy.deepcopy(flow.state_dict()))
    if evaluate is not None and math.isfinite(best[0]):
        flow.load_state_dict(best[1])
    return {"steps": steps, "rollbacks": rollbacks, "train_s": spent, "best_valid": best[0]}


# ------------------------------------------------------------------------- section: toy
def run_toy(args) -> list[dict]:
    rows = []
    flows = toy_flows(args.layers, args.hidden)
    for target_name in args.targets:
        target = TARGETS[target_name]()
        g_eval = torch.Generator().manual_seed(10_000 + args.seed)
        x_eval = target.sample((args.eval_size,), generator=g_eval)
        log_p = target.log_prob(x_eval).double()
        for flow_name in args.flows:
            build, lr, desc = flows[flow_name]
            lr = args.lr.get(flow_name, lr)
            desc = f"{desc}, lr {lr:g}"
            torch.manual_seed(args.seed)
            flow = build().to(device=args.device, dtype=args.dtype)
            g = torch.Generator().manual_seed(args.seed)
            n = args.chunk * args.batch_size

            def make_chunk(k, target=target, g=g, n=n):
                return target.sample((n,), generator=g).to(device=args.device, dtype=args.dtype)

            info = train_for(
                flow, make_chunk, args.budget, lr, args.chunk, args.batch_size, clock=args.clock_fn
            )
            with torch.no_grad():
                q = flow()
                x_dev = x_eval.to(device=args.device, dtype=args.dtype)
                log_q = torch.cat([q.log_prob(c) for c in x_dev.split(8192)]).double().cpu()
            diff = log_p - log_q
            kl = diff.mean().item()
            se = diff.std().item() / math.sqrt(len(diff))
            row = dict(
                target=target_name,
                flow=flow_name,
                desc=desc,
                params=num_params(flow),
                kl=kl,
                se=se,
                **info,
            )
            rows.append(row)
            print(
                f"toy  {target_name:12s} {flow_name:8s} KL = {kl:.4f} +- {se:.4f} nats  "
                f"steps={info['steps']} rollbacks={info['rollbacks']} "
                f"train={info['train_s']:.0f}s params={row['params']}",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------------- section: sharpness
SHARPNESS_TAUS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08)


def run_sharpness(args) -> list[dict]:
    """KL(p || p_tau) for the sharp checkerboard p and its Gaussian blur p_tau."""
    target = TARGETS["checkerboard"]()
    g = torch.Generator().manual_seed(10_000 + args.seed)
    x = target.sample((args.eval_size,), generator=g)
    log_p = target.log_prob(x).double()
    rows = []
    for tau in SHARPNESS_TAUS:
        blurred = TARGETS["checkerboard"](smoothing=tau)
        diff = log_p - blurred.log_prob(x).double()
        kl, se = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
        rows.append(dict(tau=tau, kl=kl, se=se))
        print(f"sharpness checkerboard tau={tau:g}: KL(p || p_tau) = {kl:.4f} +- {se:.4f} nats")
    return rows


# ---------------------------------------------------------------------- section: tabular
def run_tabular(args) -> list[dict]:
    sets = [("digits", 17)] if "digits" in args.sections else []
    if args.debd:
        sets.append((f"debd:{args.debd}", 2))
    rows = []
    for name, levels in sets:
        if name == "digits":
            raw = {s: load_digits(split=s).double() for s in ("train", "valid", "test")}
        else:
            raw = {
                s: load_debd(args.debd, args.debd_root, split=s).double()
                for s in ("train", "valid", "test")
            }
        d = raw["train"].shape[1]
        # dequantize into unit bins then scale by 1/levels for the grey-level data: the
        # discrete NLL bound is -log p(x~) + d log(levels) (0 for binary data: unit bins).
        scale = float(levels) if name == "digits" else 1.0
        g0 = torch.Generator().manual_seed(args.seed)
        ref = raw["train"] + torch.rand(raw["train"].shape, generator=g0, dtype=torch.float64)
        ref = ref / scale
        mu, sd = ref.mean(0), ref.std(0)
        log_det = -sd.log().sum().item()  # log |d z / d x~|
        offset = d * math.log(scale)

        def prep(x, g, mu=mu, sd=sd, scale=scale):
            u = torch.rand(x.shape, generator=g, dtype=torch.float64)
            return (((x + u) / scale - mu) / sd).to(device=args.device, dtype=args.dtype)

        gv = torch.Generator().manual_seed(20_000 + args.seed)
        valid = prep(raw["valid"], gv)
        gt = torch.Generator().manual_seed(30_000 + args.seed)
        test = torch.cat([prep(raw["test"], gt) for _ in range(args.test_noise)])

        def nll(flow, z, log_det=log_det, offset=offset):
            with torch.no_grad():
                lp = torch.cat([flow().log_prob(c) for c in z.split(4096)]).double().cpu()
            return -(lp + log_det) + offset  # nats per image, discrete bound

        for flow_name in args.tab_flows:
            build, lr, desc = tab_flows(d)[flow_name]
            lr = args.lr.get(flow_name, lr)
            desc = f"{desc}, lr {lr:g}"
            torch.manual_seed(args.seed)
            flow = build().to(device=args.device, dtype=args.dtype)
            g = torch.Generator().manual_seed(args.seed)
            train_x = raw["train"]

            def make_chunk(k, g=g, train_x=train_x):
                return prep(train_x, g)  # one epoch of fresh dequantization noise

            chunk = max(1, math.ceil(len(train_x) / args.tab_batch_size))
            info = train_for(
                flow,
                make_chunk,
                args.tab_budget,
                lr,
                chunk,
                args.tab_batch_size,
                evaluate=lambda flow=flow, valid=valid: nll(flow, valid).mean().item(),
                clock=args.clock_fn,
            )
            per_image = nll(flow, test).reshape(args.test_noise, -1).mean(0)
            mean = per_image.mean().item()
            se = per_image.std().item() / math.sqrt(len(per_image))
            row = dict(
                data=name,
                flow=flow_name,
                desc=desc,
                params=num_params(flow),
                dim=d,
                nll=mean,
                se=se,
                bpd=mean / (d * math.log(2)),
                **info,
            )
            rows.append(row)
            print(
                f"tab  {name:12s} {flow_name:8s} test NLL = {mean:.2f} +- {se:.2f} nats/image "
                f"({row['bpd']:.3f} bits/dim)  best valid {info['best_valid']:.2f}  "
                f"steps={info['steps']} rollbacks={info['rollbacks']} "
                f"train={info['train_s']:.0f}s",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------------- section: demo
def run_demo(args) -> list[dict]:
    from pyro_lgm.cli import main as cli_main

    rows = []
    extra = ["--steps", "200", "--train-size", "5000", "--test-size", "5000"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        for target_name in args.targets:
            for flow_name in args.flows:
                argv = [
                    "demo",
                    "--flow",
                    flow_name,
                    "--target",
                    target_name,
                    "--quiet",
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(Path(tmp) / "demo.png"),
                    "--device",
                    str(args.device),
                    *extra,
                ]
                out = io.StringIO()
                t0 = time.perf_counter()
                validate = torch.distributions.Distribution._validate_args
                torch.distributions.Distribution.set_default_validate_args(False)
                try:
                    with contextlib.redirect_stdout(out):
                        status = cli_main(argv)
                except Exception as exc:  # report it, keep going with the other runs
                    status = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
                finally:
                    torch.distributions.Distribution.set_default_validate_args(validate)
                wall = time.perf_counter() - t0
                kl = se = math.nan
                for line in out.getvalue().splitlines():
                    if line.startswith("KL(target || model):"):
                        parts = line.split()
                        kl, se = float(parts[3]), float(parts[6])
                rows.append(
                    dict(target=target_name, flow=flow_name, kl=kl, se=se, status=status, wall=wall)
                )
                print(
                    f"demo {target_name:12s} {flow_name:8s} KL = {kl:.4f} +- {se:.4f} nats "
                    f"status={status} wall={wall:.0f}s",
                    flush=True,
                )
    return rows


# ------------------------------------------------------------------------------ report
def report(args, toy, tab, demo, sharp=()) -> None:
    print()
    print(
        f"# vector_flows_fit  ({datetime.date.today()}, {platform.platform()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s))"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(f"device {describe(args.device)}, dtype {dtype_name(args.dtype)}")
    print(
        f"budgets count {'CPU' if args.clock == 'cpu' else 'wall-clock'} seconds"
        + (" (synchronized)" if args.device.type == "cuda" else "")
    )
    if toy:
        print(
            f"\n## KL(target || model), {args.budget:g} s of training per flow and target "
            f"(target <= {KL_TARGET})\n"
        )
        print("| target | flow | config | params | steps | KL (nats) | s.e. | <= 0.02 |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
        for r in toy:
            ok = "yes" if r["kl"] <= KL_TARGET else "no"
            roll = f" ({r['rollbacks']} rollbacks)" if r["rollbacks"] else ""
            print(
                f"| {r['target']} | {r['flow']} | {r['desc']} | {r['params']} | "
                f"{r['steps']}{roll} | {r['kl']:.4f} | {r['se']:.4f} | {ok} |"
            )
        print()
        for t in args.targets:
            best = min((r for r in toy if r["target"] == t), key=lambda r: r["kl"])
            print(f"best on {t}: {best['flow']} (KL {best['kl']:.4f})")
    if sharp:
        print("\n## How sharp must a model be? KL(checkerboard || checkerboard blurred by tau)\n")
        print("| tau (square side 1) | KL (nats) | s.e. |")
        print("| ---: | ---: | ---: |")
        for r in sharp:
            print(f"| {r['tau']:g} | {r['kl']:.4f} | {r['se']:.4f} |")
    if tab:
        print(
            f"\n## Tabular test NLL, {args.tab_budget:g} s of training per flow "
            "(discrete-data bound, nats per image; lower is better)\n"
        )
        print("| data | flow | config | params | steps | test NLL | s.e. | bits/dim |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in tab:
            print(
                f"| {r['data']} ({r['dim']} dims) | {r['flow']} | {r['desc']} | {r['params']} "
                f"| {r['steps']} | {r['nll']:.2f} | {r['se']:.2f} | {r['bpd']:.3f} |"
            )
    if demo:
        print("\n## `pyro-lgm demo` defaults, KL(target || model) in nats\n")
        print("| target | " + " | ".join(args.flows) + " |")
        print("| --- |" + " ---: |" * len(args.flows))
        for t in args.targets:
            cells = []
            for f in args.flows:
                r = next(r for r in demo if r["target"] == t and r["flow"] == f)
                cells.append(f"{r['kl']:.4f} ({r['wall']:.0f} s)")
            print(f"| {t} | " + " | ".join(cells) + " |")
        print()
        for t in args.targets:
            done = [r for r in demo if r["target"] == t and math.isfinite(r["kl"])]
            for r in demo:
                if r["target"] == t and r["status"] != 0:
                    print(f"demo {t} {r['flow']}: status {r['status']}")
            if done:
                best = min(done, key=lambda r: r["kl"])
                print(f"demo best on {t}: {best['flow']} (KL {best['kl']:.4f})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sections",
        nargs="+",
        choices=["toy", "digits", "debd", "demo", "sharpness"],
        default=["toy", "digits", "demo"],
        help="debd: only the DEBD set named by --debd (digits with --debd runs both)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(TARGETS),
        default=["moons", "8gaussians", "checkerboard"],
    )
    p.add_argument(
        "--flows",
        nargs="+",
        choices=["maf", "realnvp", "nice", "planar"],
        default=["maf", "realnvp", "nice", "planar"],
    )
    p.add_argument("--budget", type=float, default=120.0, help="seconds per flow and target")
    p.add_argument("--chunk", type=int, default=100, help="steps per fit() call")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--eval-size", type=int, default=50_000)
    p.add_argument("--tab-flows", nargs="+", choices=["maf", "realnvp"], default=["maf", "realnvp"])
    p.add_argument("--tab-budget", type=float, default=120.0, help="seconds per tabular flow")
    p.add_argument("--tab-batch-size", type=int, default=128)
    p.add_argument("--test-noise", type=int, default=10, help="dequantization draws per test image")
    p.add_argument("--debd", default=None, help="also fit a DEBD set, e.g. nltcs")
    p.add_argument(
        "--debd-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "debd")
    )
    p.add_argument(
        "--lr",
        nargs="+",
        default=[],
        metavar="FLOW=LR",
        help="override a flow's peak learning rate, e.g. nice=1e-4",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        default=[],
        metavar="FLOW=N",
        help="override a toy flow's number of layers, e.g. maf=16",
    )
    p.add_argument(
        "--hidden",
        nargs="+",
        default=[],
        metavar="FLOW=WxW",
        help="override a toy flow's hidden widths, e.g. maf=64x64",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default=None,
        help="what the budgets count: this process's CPU time (the default on the CPU: fair "
        "on a shared machine) or wall-clock time (the only choice with --device cuda)",
    )
    add_device_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    args = p.parse_args(argv)
    try:
        args.lr = {k: float(v) for k, v in (item.split("=") for item in args.lr)}
    except ValueError:
        p.error(f"--lr: expected FLOW=LR items, got {args.lr}")
    try:
        args.layers = {k: int(v) for k, v in (item.split("=") for item in args.layers)}
        args.hidden = {
            k: [int(w) for w in v.split("x")] for k, v in (item.split("=") for item in args.hidden)
        }
    except ValueError:
        p.error(f"--layers / --hidden: expected FLOW=N / FLOW=WxW, got {args.layers} {args.hidden}")
    if "debd" in args.sections and not args.debd:
        p.error("--sections debd needs --debd NAME")
    if args.quick:
        args.budget, args.tab_budget = 5.0, 5.0
        args.chunk, args.eval_size, args.test_noise = 20, 5000, 2
    args.clock = check_clock(p, args.clock, args.device) or "cpu"
    torch.set_num_threads(args.threads)
    args.clock_fn = time.process_time if args.clock == "cpu" else time.perf_counter
    sharp = run_sharpness(args) if "sharpness" in args.sections else []
    toy = run_toy(args) if "toy" in args.sections else []
    tab = run_tabular(args) if {"digits", "debd"} & set(args.sections) else []
    demo = run_demo(args) if "demo" in args.sections else []
    report(args, toy, tab, demo, sharp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
