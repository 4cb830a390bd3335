"""Binarized-MNIST benchmark: NADE, MADE and EoNADE (order-agnostic DeepNADE) test NLL in nats.

Trains on Larochelle's fixed binarization (50000 train), early-stops on the 10000 valid images
(keeping the best parameters), then reports the test negative log-likelihood in nats per image
(mean and standard error over the test images used), with the wall time and the command line.
Every figure it prints is measured in the same run.

    python benchmarks/binarized_mnist.py --model nade --hidden 500 --time-budget 15
    python benchmarks/binarized_mnist.py --model made --hidden 500 --num-masks 32
    python benchmarks/binarized_mnist.py --model eonade --hidden 500 --num-orderings 16 \\
        --test-subset 500
    python benchmarks/binarized_mnist.py --throughput --hidden 500   # log_prob examples/s
    python benchmarks/binarized_mnist.py --model made --hidden 8000 --device cuda \\
        --time-budget 2.5 --curve made.jsonl   # GPU: wall-clock budget, learning curve

Device: ``--device cpu|cuda|cuda:N`` and ``--dtype float32|float64`` place the model and the
data; the device (the GPU's name) and dtype are printed and written to ``--out``. On CUDA the
time budget counts wall-clock time around synchronized steps (``--clock cpu`` is refused
there: CPU time does not count the GPU's work). ``--curve F.jsonl`` appends one JSON line per
validation (step, epoch, valid NLL, seconds) as training goes, so an interrupted run still
leaves its learning curve.

Weights: ``--save-model M.pt`` keeps the best parameters (with ``--out M.json`` beside them,
later runs know how they were trained); ``--load-model M.pt`` evaluates them again without
training (e.g. with more orderings, masks or test images); ``--init-from M.pt`` continues
training from them with a fresh optimizer and schedule (a warm restart), and reports the
total CPU time of both runs.

Evaluation, per model:

* ``nade``: exact ``log_prob`` (natural order, sigmoid hidden units as in Larochelle & Murray
  2011); early stopping on the exact valid NLL.
* ``made``: ``--num-masks K`` mask sets are cycled during training (connectivity-agnostic
  training, one mask set per minibatch, Germain et al. 2015); early stopping on the valid NLL
  of mask set 0; the test NLL is the ensemble ``-log (1/K) sum_k p(x | M_k)`` over the same
  ``K`` mask sets (the paper's "32 masks" figure uses ``K = 32``); the single-mask NLL is
  printed too.
* ``eonade``: order-agnostic training with DeepNADE's unbiased estimator (Uria et al. 2014);
  early stopping on that estimator on the valid set (the expected NLL over random orderings);
  the test NLL is the EoNADE mixture ``-log (1/K) sum_k p(x | o_k)`` over ``--num-orderings``
  random orderings, each computed exactly (784 network passes per image and ordering, which is
  why ``--test-subset`` exists); the mean single-ordering NLL is printed too.

Seed targets (published, full training of hours to days): NADE 88.33 (500 hidden units),
MADE 86.64 (2 hidden layers, 32 masks), EoNADE 85.10 (2 hidden layers, 128 orderings).
The MADE figure comes from layers of 8000 units (``[8000,8000]`` in the command its authors
published with their code, trained with Adagrad): run it with ``--hidden 8000``; the
default ``--hidden 500`` has 74x fewer parameters (1.04 M against 76.6 M).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from bench_device import add_device_args, check_clock, describe, dtype_name, info, synchronize

from pyro_lgm.data import load_binarized_mnist

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "binarized_mnist"
PAPER = {"nade": 88.33, "made": 86.64, "eonade": 85.10}

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a dependency; keep the script usable without it anyway
    tqdm = None


# ----------------------------------------------------------------------------- models


def _made_class():
    import pyro_lgm.models as models

    if hasattr(models, "MADE"):
        return models.MADE
    from pyro_lgm.models.made import MADE

    return MADE


def build_model(args) -> torch.nn.Module:
    from pyro_lgm.models import NADE, DeepNADE

    hidden_dims = (args.hidden,) * args.layers
    if args.model == "nade":
        return NADE(
            784, hidden=args.hidden, activation=args.activation or "sigmoid", seed=args.seed
        )
    if args.model == "made":
        model = _made_class()(784, hidden_dims=hidden_dims, seed=args.seed)
        model.net.fast = made_fast(args)
        return model
    if args.model == "eonade":
        return DeepNADE(
            784, hidden_dims=hidden_dims, activation=args.activation or "relu", seed=args.seed
        )
    raise ValueError(f"--model: unknown {args.model!r}")


def made_fast(args) -> bool | None:
    """``fast`` of MADE's network for ``--blocked``: ``None`` is the library's own choice.

    ``auto`` keeps the library's choice on the CPU and turns the blocked products off on
    CUDA: their block plan is rebuilt after every mask change, i.e. at every step when masks
    are cycled, with a host synchronization per row block, while one dense masked product
    per layer is what a GPU does best.
    """
    if args.blocked == "auto":
        return False if args.device.type == "cuda" else None
    return args.blocked == "on"


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class MaskCycle:
    """MADE's connectivity-agnostic training over a fixed pool of ``K`` mask sets.

    Mask set ``k`` is drawn by ``resample_masks`` from a generator seeded with
    ``base_seed + k``, so the same ``K`` sets are used in training and in the test ensemble.
    """

    def __init__(self, model: torch.nn.Module, num_masks: int, base_seed: int):
        self.model, self.num_masks, self.base_seed = model, num_masks, base_seed
        self.current = None

    def use(self, k: int) -> None:
        k = k % self.num_masks
        if k != self.current:
            g = torch.Generator().manual_seed(self.base_seed + k)
            self.model.resample_masks(generator=g)
            self.current = k


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def summary(nll: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of per-image NLLs."""
    n = nll.numel()
    se = nll.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return nll.mean().item(), se


@torch.no_grad()
def valid_nll(args, model, x: torch.Tensor, masks: MaskCycle | None) -> float:
    model.eval()
    if args.model == "eonade":
        # the order-agnostic estimator with a fixed generator: comparable across evaluations
        g = torch.Generator().manual_seed(args.seed + 17)
        out = batched(lambda b: model.order_agnostic_loss(b, generator=g), x, args.eval_batch_size)
    else:
        if masks is not None:
            masks.use(0)
        out = batched(lambda b: -model().log_prob(b), x, args.eval_batch_size)
    model.train()
    return out.mean().item()


@torch.no_grad()
def test_nll(args, model, x: torch.Tensor, masks: MaskCycle | None) -> dict:
    model.eval()
    result = {}
    if args.model == "nade":
        nll = batched(lambda b: -model().log_prob(b), x, args.eval_batch_size)
        result["test_nll"], result["test_se"] = summary(nll)
    elif args.model == "made":
        per_mask = []
        for k in range(args.num_masks):
            masks.use(k)
            per_mask.append(batched(lambda b: model().log_prob(b), x, args.eval_batch_size))
        lp = torch.stack(per_mask)  # (K, N)
        ens = -(lp.logsumexp(0) - math.log(args.num_masks))
        result["test_nll"], result["test_se"] = summary(ens)
        result["test_nll_single_mask"], _ = summary(-lp[0])
        result["test_nll_mean_over_masks"] = (-lp).mean().item()
        masks.use(0)
    else:
        g = torch.Generator().manual_seed(args.seed + 29)
        orders = model.random_orders(args.num_orderings, generator=g)
        per_order = []
        # each image costs 784 network passes: small batches on the CPU by default
        bs = args.exact_batch_size or max(1, args.eval_batch_size // 50)
        pbar = _bar(args, total=len(orders) * len(x), desc="test (exact, per ordering)")
        for o in orders:

            def lp(b, o=o):
                out = model(order=o).log_prob(b)
                if pbar is not None:
                    pbar.update(len(b))
                return out

            per_order.append(batched(lp, x, bs))
        if pbar is not None:
            pbar.close()
        lp = torch.stack(per_order)  # (K, N)
        ens = -(lp.logsumexp(0) - math.log(args.num_orderings))
        result["test_nll"], result["test_se"] = summary(ens)
        result["test_nll_mean_single_ordering"] = (-lp).mean().item()
    model.train()
    return result


# ----------------------------------------------------------------------------- training


def _bar(args, **kwargs):
    if tqdm is None or args.no_progress:
        return None
    return tqdm(**kwargs, leave=False, dynamic_ncols=True, mininterval=2.0)


def train(args, model, x_train, x_valid, masks: MaskCycle | None) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    budget_s = args.time_budget * 60
    dev = args.device

    def clock() -> float:  # on CUDA: wall time once the queued work is done
        synchronize(dev)
        return time.process_time() if args.clock == "cpu" else time.perf_counter()

    curve = open(args.curve, "a") if args.curve else None
    start = time.perf_counter()
    start_clock = clock()
    cpu0 = time.process_time()
    best = {"valid_nll": float("inf"), "step": 0, "epoch": 0.0, "state": None}
    history = []
    step, bad_evals, stop = 0, 0, None
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    eval_every = args.eval_every or steps_per_epoch
    pbar = _bar(args, total=args.epochs * steps_per_epoch, desc=f"train {args.model}")
    for _epoch in range(args.epochs):
        perm = torch.randperm(len(x_train), generator=g).to(x_train.device)
        for i in range(0, len(x_train), args.batch_size):
            x = x_train[perm[i : i + args.batch_size]]
            if masks is not None:
                masks.use(step)
            if args.model == "eonade":
                loss = model.order_agnostic_loss(x, generator=g).mean()
            else:
                loss = -model().log_prob(x).mean()
            if args.schedule == "cosine":  # anneal over the time budget
                frac = min((clock() - start_clock) / budget_s, 1.0)
                for group in opt.param_groups:
                    group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at step {step}")
            opt.step()
            step += 1
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(loss=f"{loss.item():.2f}", best=f"{best['valid_nll']:.2f}")
            out_of_time = clock() - start_clock > budget_s
            if step % eval_every == 0 or out_of_time:
                v = valid_nll(args, model, x_valid, masks)
                history.append(
                    {
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "train_loss": loss.item(),
                        "valid_nll": v,
                        "time_s": time.perf_counter() - start,
                        "cpu_s": time.process_time() - cpu0,
                    }
                )
                if curve is not None:
                    curve.write(json.dumps({"model": args.model, **history[-1]}) + "\n")
                    curve.flush()
                if v < best["valid_nll"]:
                    best.update(
                        valid_nll=v,
                        step=step,
                        epoch=step / steps_per_epoch,
                        state=copy.deepcopy(model.state_dict()),
                    )
                    bad_evals = 0
                else:
                    bad_evals += 1
                print(  # one line per evaluation, also in logs
                    f"  step {step} epoch {step / steps_per_epoch:.2f} "
                    f"valid {v:.3f} best {best['valid_nll']:.3f} "
                    f"({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if bad_evals >= args.patience:
                    stop = "early stopping (patience exhausted)"
            if out_of_time and stop is None:
                stop = "time budget"
            if stop:
                break
        if stop:
            break
    if pbar is not None:
        pbar.close()
    if curve is not None:
        curve.close()
    synchronize(dev)
    train_s = time.perf_counter() - start
    train_cpu_s = time.process_time() - cpu0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {
        "steps": step,
        "epochs_done": step / steps_per_epoch,
        "train_time_s": train_s,
        "train_cpu_s": train_cpu_s,
        "stopped_by": stop or "epochs",
        "best_valid_nll": best["valid_nll"],
        "best_step": best["step"],
        "best_epoch": best["epoch"],
        "history": history,
    }


# Settings that fix the architecture: a saved model is only evaluated under the same ones.
ARCHITECTURE_ARGS = ("model", "hidden", "layers", "activation", "seed")


def load_saved(args, model: torch.nn.Module, option: str = "load_model") -> dict:
    """Load the ``--save-model`` file named by ``args.<option>`` into ``model``.

    Returns the saved run's training summary, read from its ``--out`` JSON when that lies
    next to the model (same name, ``.json``), so an evaluation or a continued run still
    reports how the weights were trained.
    """
    flag = "--" + option.replace("_", "-")
    path = Path(getattr(args, option))
    if not path.is_file():
        raise SystemExit(f"{flag}: no such file {str(path)!r}")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or "state_dict" not in saved or "args" not in saved:
        raise SystemExit(f"{flag}: {str(path)!r} was not written by --save-model")
    mismatched = [
        f"--{k.replace('_', '-')} {saved['args'].get(k)!r} (saved) vs {getattr(args, k)!r}"
        for k in ARCHITECTURE_ARGS
        if saved["args"].get(k) != getattr(args, k)
    ]
    if mismatched:
        raise SystemExit(f"{flag}: the saved run used " + "; ".join(mismatched))
    model.load_state_dict(saved["state_dict"])
    summary = {
        "steps": 0,
        "epochs_done": 0.0,
        "train_time_s": 0.0,
        "train_cpu_s": 0.0,
        "stopped_by": "loaded",
        "best_valid_nll": float("nan"),
        "best_epoch": float("nan"),
        "history": [],
    }
    sidecar = path.with_suffix(".json")
    trained_by = "unknown (no JSON from --out next to the model)"
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
        summary.update({k: info[k] for k in summary if k in info})
        # a run that was itself a warm start: count all of the weights' training
        summary["train_cpu_s"] = info.get("total_train_cpu_s", summary["train_cpu_s"])
        trained_by = info.get("command", trained_by)
    summary["trained_by"] = trained_by
    summary["loaded_from"] = str(path)
    return summary


# ----------------------------------------------------------------------------- throughput


# NADE's speed target: its log_prob within this factor of the sigmoid floor (the time of the
# D x H logistic sigmoids its definition needs, which no implementation can avoid).
FLOOR_TARGET = 2.0


@torch.no_grad()
def throughput(args) -> dict:
    """``log_prob`` examples/s of NADE vs MADE of the same width, and NADE's arithmetic floor.

    The floor row times nothing but the ``B x D x H`` logistic sigmoids that NADE's
    definition requires (one hidden vector per position), applied in place to a
    ``16 x B x H`` buffer ``D / 16`` times: no implementation of NADE with sigmoid units can
    be faster than that row on this machine with torch's kernels. The target is NADE's
    time within ``FLOOR_TARGET`` (2x) of the floor's. On CUDA every timed call is
    synchronized (wall time).
    """
    from pyro_lgm.models import NADE, DeepNADE

    dev, dtype = args.device, args.dtype
    g = torch.Generator().manual_seed(args.seed)
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.13), generator=g)
    x = x.to(device=dev, dtype=dtype)
    h = args.hidden
    made = _made_class()
    rows = [
        (f"NADE(784, hidden={h})", NADE(784, hidden=h, seed=args.seed), x),
        (
            f"NADE(784, hidden={h}, activation='relu')",
            NADE(784, hidden=h, activation="relu", seed=args.seed),
            x,
        ),
        (f"MADE(784, hidden_dims=({h},))", made(784, hidden_dims=(h,), seed=args.seed), x),
        (f"MADE(784, hidden_dims=({h}, {h}))", made(784, hidden_dims=(h, h), seed=args.seed), x),
        # exact log_prob of one ordering: 784 passes per image, so a smaller batch
        (
            f"DeepNADE(784, hidden_dims=({h}, {h})) exact",
            DeepNADE(784, (h, h), seed=args.seed),
            x[: max(1, args.batch_size // 50)],
        ),
    ]
    print(
        f"# log_prob throughput, batch {args.batch_size}, threads {torch.get_num_threads()}, "
        f"{args.repeats} timed repeats after 1 warm-up (median wall time"
        f"{', synchronized' if dev.type == 'cuda' else ''})"
    )
    print(f"# device {describe(dev)}, dtype {dtype_name(dtype)}")

    def timed(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            synchronize(dev)
            t = time.perf_counter()
            fn()
            synchronize(dev)
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]

    results = {}
    for name, model, xb in rows:
        model.to(device=dev, dtype=dtype).eval()
        med = timed(lambda model=model, xb=xb: model().log_prob(xb))
        results[name] = len(xb) / med
        print(
            f"{name:50s} {len(xb) / med:12.1f} examples/s  ({med * 1e3:.1f} ms per batch of "
            f"{len(xb)})"
        )
    buf = torch.randn(16, args.batch_size, h, device=dev, dtype=dtype)
    med = timed(lambda: [buf.sigmoid_() for _ in range(784 // 16)])
    floor = f"floor: {784} x {h} in-place sigmoids per example"
    results[floor] = args.batch_size / med
    print(f"{floor:50s} {args.batch_size / med:12.1f} examples/s  ({med * 1e3:.1f} ms)")
    names = list(results)
    nade, nade_relu, made1 = (results[n] for n in names[:3])
    ratios = {
        "nade_over_made1": made1 / nade,
        "nade_relu_over_made1": made1 / nade_relu,
        "floor_over_made1": made1 / results[floor],
        "nade_over_floor": results[floor] / nade,
    }
    verdict = "met" if ratios["nade_over_floor"] <= FLOOR_TARGET else "missed"
    print(
        f"NADE time / MADE(1 layer) time: {ratios['nade_over_made1']:.2f} (sigmoid), "
        f"{ratios['nade_relu_over_made1']:.2f} (relu)"
    )
    print(f"sigmoid floor time / MADE(1 layer) time: {ratios['floor_over_made1']:.2f}")
    print(
        f"NADE time / sigmoid floor time: {ratios['nade_over_floor']:.2f} "
        f"(target <= {FLOOR_TARGET:g}: {verdict})"
    )
    out = {
        "throughput": results,
        "ratios": ratios,
        "floor_target": FLOOR_TARGET,
        "floor_target_met": verdict == "met",
        **info(dev, dtype),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["nade", "made", "eonade"], default="nade")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("PYRO_LGM_DATA") or str(DEFAULT_DATA),
        help="directory with binarized_mnist.npz or the .amat files "
        "(default: $PYRO_LGM_DATA or ../shared/data/binarized_mnist)",
    )
    p.add_argument("--hidden", type=int, default=500, help="hidden units per layer")
    p.add_argument("--layers", type=int, default=2, help="hidden layers (made, eonade)")
    p.add_argument(
        "--activation", default=None, help="nade: sigmoid (default) or relu; eonade: relu (default)"
    )
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--time-budget", type=float, default=15.0, help="training minutes")
    p.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default=None,
        help="what --time-budget counts: wall-clock time (default), or this process's CPU "
        "time (fair on a shared machine; with --threads 1 one CPU-minute is one core-minute; "
        "refused with --device cuda, where it would not count the GPU's work)",
    )
    add_device_args(p)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-batch-size", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="learning rate: constant, or cosine-annealed to 0 over --time-budget",
    )
    p.add_argument("--num-masks", type=int, default=32, help="made: mask sets (train + test)")
    p.add_argument(
        "--blocked",
        choices=["auto", "on", "off"],
        default="auto",
        help="made: MADE's blocked masked products (auto: the library's choice on the CPU, "
        "off on CUDA, where the dense masked product is faster and the block plan would be "
        "rebuilt at every mask change)",
    )
    p.add_argument("--num-orderings", type=int, default=16, help="eonade: test orderings")
    p.add_argument(
        "--exact-batch-size",
        type=int,
        default=None,
        help="eonade: test images per exact pass (784 network passes each; default "
        "--eval-batch-size // 50, small for the CPU; a GPU takes hundreds)",
    )
    p.add_argument(
        "--subset",
        type=int,
        default=None,
        help="smoke runs: first N train images, N // 5 valid and N // 5 random test",
    )
    p.add_argument(
        "--valid-subset",
        type=int,
        default=None,
        help="random subset of valid used for early stopping (default: all 10000)",
    )
    p.add_argument(
        "--test-subset",
        type=int,
        default=None,
        help="random subset of test (the test split is sorted by class)",
    )
    p.add_argument("--eval-every", type=int, default=None, help="steps (default: one epoch)")
    p.add_argument("--patience", type=int, default=10, help="evaluations without improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--throughput", action="store_true", help="only measure log_prob speed")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument(
        "--curve",
        default=None,
        help="append one JSON line per validation here (step, epoch, valid NLL, seconds) "
        "while training",
    )
    p.add_argument(
        "--save-model",
        default=None,
        help="also save the best model's state_dict here (written atomically)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="start training from the weights of a --save-model file (fresh optimizer and "
        "learning-rate schedule: a warm restart); the JSON adds the earlier run's CPU time",
    )
    p.add_argument(
        "--load-model",
        default=None,
        help="evaluate a model saved by --save-model on the test set, without training "
        "(--model, --hidden, --layers and --activation must match the saved run)",
    )
    args = p.parse_args(argv)
    for name in (
        "hidden",
        "layers",
        "epochs",
        "batch_size",
        "eval_batch_size",
        "num_masks",
        "num_orderings",
        "patience",
        "repeats",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer")
    if args.exact_batch_size is not None and args.exact_batch_size < 1:
        p.error("--exact-batch-size: expected a positive integer")
    if args.time_budget <= 0 or args.lr <= 0:
        p.error("--time-budget and --lr must be positive")
    args.clock = check_clock(p, args.clock, args.device) or "wall"
    return args


def random_subset(x: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    if n is None or n >= len(x):
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(len(x), generator=g)[:n]]


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.throughput:
        return throughput(args)

    wall = time.perf_counter()
    x_train = load_binarized_mnist(args.data_dir, "train", dtype=args.dtype)
    x_valid = load_binarized_mnist(args.data_dir, "valid", dtype=args.dtype)
    x_test = load_binarized_mnist(args.data_dir, "test", dtype=args.dtype)
    if args.subset:
        x_train = x_train[: args.subset]  # train and valid rows are already shuffled
        x_valid = x_valid[: max(1, args.subset // 5)]
        x_test = random_subset(x_test, max(1, args.subset // 5), args.seed + 1)
    x_valid = random_subset(x_valid, args.valid_subset, args.seed + 2)
    x_test = random_subset(x_test, args.test_subset, args.seed + 3)
    x_train, x_valid, x_test = (x.to(args.device) for x in (x_train, x_valid, x_test))

    model = build_model(args).to(device=args.device, dtype=args.dtype)
    masks = None
    if args.model == "made":
        masks = MaskCycle(model, args.num_masks, base_seed=1000 * (args.seed + 1))
        masks.use(0)
    print(
        f"# {args.model}: {num_params(model)} parameters; train {len(x_train)}, "
        f"valid {len(x_valid)}, test {len(x_test)}; threads {torch.get_num_threads()}"
    )
    print(f"# device {describe(args.device)}, dtype {dtype_name(args.dtype)}", flush=True)

    if args.load_model and args.init_from:
        raise SystemExit("--load-model and --init-from exclude each other")
    earlier = None
    if args.load_model:
        fit = load_saved(args, model)
    else:
        if args.init_from:
            earlier = load_saved(args, model, "init_from")
        fit = train(args, model, x_train, x_valid, masks)
        if earlier is not None:
            fit["init_from"] = earlier["loaded_from"]
            fit["earlier_run"] = earlier["trained_by"]
            fit["earlier_train_cpu_s"] = earlier["train_cpu_s"]
            fit["total_train_cpu_s"] = earlier["train_cpu_s"] + fit["train_cpu_s"]
    synchronize(args.device)
    t = time.perf_counter()
    test = test_nll(args, model, x_test, masks)
    synchronize(args.device)
    test["test_time_s"] = time.perf_counter() - t
    result = {
        "model": args.model,
        "command": command,
        **info(args.device, args.dtype),
        "clock": args.clock,
        "params": num_params(model),
        "hidden": args.hidden,
        "layers": args.layers if args.model != "nade" else 1,
        **({"num_masks": args.num_masks, "blocked": args.blocked} if args.model == "made" else {}),
        **({"num_orderings": args.num_orderings} if args.model == "eonade" else {}),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "n_train": len(x_train),
        "n_valid": len(x_valid),
        "n_test": len(x_test),
        **{k: v for k, v in fit.items() if k != "history"},
        **test,
        "wall_time_s": time.perf_counter() - wall,
        "paper_target_nll": PAPER[args.model],
        "date": time.strftime("%Y-%m-%d"),
        "history": fit["history"],
    }

    print(f"command: {command}")
    print(
        f"model {args.model}: {result['params']} parameters, hidden {args.hidden}"
        + (f" x {args.layers} layers" if args.model != "nade" else "")
        + f"; device {result['device_name']}, dtype {result['dtype']}, "
        f"time budget counts {args.clock} time"
    )
    if args.load_model:
        print(f"loaded from {args.load_model} (trained by: {fit['trained_by']})")
    if earlier is not None:
        print(
            f"warm start from {args.init_from} ({earlier['train_cpu_s']:.0f} CPU-s of earlier "
            f"training by: {earlier['trained_by']}); total {fit['total_train_cpu_s']:.0f} CPU-s"
        )
    print(
        f"trained {fit['steps']} steps = {fit['epochs_done']:.2f} epochs in "
        f"{fit['train_time_s']:.0f} s wall, {fit['train_cpu_s']:.0f} s CPU of the host "
        f"(stopped by: {fit['stopped_by']}); best valid "
        f"{fit['best_valid_nll']:.3f} nats at epoch {fit['best_epoch']:.2f}"
    )
    extra = ""
    if args.model == "made":
        extra = (
            f" [ensemble of {args.num_masks} masks; single mask {test['test_nll_single_mask']:.3f}]"
        )
    elif args.model == "eonade":
        extra = (
            f" [EoNADE mixture of {args.num_orderings} orderings; mean single ordering "
            f"{test['test_nll_mean_single_ordering']:.3f}]"
        )
    print(
        f"TEST NLL {test['test_nll']:.3f} +- {test['test_se']:.3f} nats on {len(x_test)} "
        f"test images{extra}; test evaluation {test['test_time_s']:.0f} s"
    )
    print(
        f"wall time {result['wall_time_s']:.0f} s; published target {PAPER[args.model]} nats "
        f"({'reached' if test['test_nll'] <= PAPER[args.model] else 'not reached'})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.save_model:
        tmp = Path(args.save_model).with_suffix(".tmp")
        torch.save({"args": vars(args), "state_dict": model.state_dict()}, tmp)
        os.replace(tmp, args.save_model)  # never a half-written file under the final name
    return result


if __name__ == "__main__":
    main()
