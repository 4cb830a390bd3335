"""Image flows (RealNVP, Glow): test bits/dim at a compute budget, and Glow against normflows.

Every run trains with Adam (linear warm-up over the first ``--warmup`` steps) for
``--minutes`` of training time - CPU time of this process (``time.process_time``) on the CPU,
synchronized wall time on CUDA; evaluation excluded - so that a contended machine still gives
a fair figure. Every ``--curve-every`` budget-minutes a learning-curve point is recorded: the
mean test bits/dim on a fixed random subset of ``--curve-size`` test images (seed 1234). At
the end: the test bits/dim over ``--test-size`` test images (0: all) with its standard error
over images. Bits/dim is ``-log p(x + u) / (D ln 2)`` with one uniform dequantization draw
per image, every preprocessing log-det included (the flows' density is over
``[0, 256)^D``), as the papers report it.

``mnist``: 8-bit MNIST (``../shared/data/mnist``: 60 000 train / 10 000 test, 1x28x28),
``--model glow`` or ``realnvp``. Anchors (test bits/dim, as reported in the FFJORD paper,
Grathwohl et al. 2019, Table 2): RealNVP 1.06, Glow 1.05 - fully trained GPU models.

``digits``: scikit-learn's digits as 8-bit 8x8 images (no data files; only 17 grey levels
occur, so the figure is comparable with nothing published). The CPU-sized default.

``normflows``: our Glow and normflows' Glow (``normflows.flows.GlowBlock`` steps in a
``normflows.MultiscaleFlow``, learned diagonal Gaussian bases as in its Glow example) of the
same size (levels, steps per level, hidden channels, LU 1x1 convolutions, affine couplings
with a sigmoid scale, channel splits) trained on the same data, batches and budget, with
single steps alternating between the two in this process (so both see the same machine
load): training throughput (images per budget-second) and test bits/dim.
normflows is an optional benchmark dependency (``pip install normflows``).

    python benchmarks/image_flows.py digits --model glow --minutes 3
    python benchmarks/image_flows.py mnist --data ../shared/data --model glow --minutes 60 \\
        --json glow.json --samples-png glow.png
    python benchmarks/image_flows.py normflows --data ../shared/data --minutes 10
    # one GPU, under 8 minutes including evaluation (data from PYRO_LGM_DATA, as set by
    # the command prefix in ../shared/tools/device-prep's header after `device-prep mnist`):
    python benchmarks/image_flows.py mnist --device cuda --model glow --minutes 5 \\
        --hidden 256 --steps 16 --batch 64
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_device import Clock, add_device_args, check_clock, describe, git_commit  # noqa: E402

ANCHORS = {"realnvp": ("RealNVP (Dinh et al. 2017)", 1.06), "glow": ("Glow (Kingma 2018)", 1.05)}
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- data
def load_data(name: str, args: argparse.Namespace) -> dict:
    """Integer-valued float32 splits ``(N, C, H, W)`` on the CPU (values 0..255)."""
    from pyro_lgm import data

    if name == "digits":
        train = data.load_digits_images("train", bits=8)
        test = data.load_digits_images("test", bits=8)
    else:
        if not args.data:
            raise SystemExit("--data: required for MNIST (a data home holding mnist/)")
        train = data.load_mnist(args.data, "train")[0].unsqueeze(1)
        test = data.load_mnist(args.data, "test")[0].unsqueeze(1)
    if args.train_size:
        train = train[: args.train_size]
    return {"train": train.float(), "test": test.float(), "shape": tuple(train.shape[1:])}


def subset(x: torch.Tensor, size: int, seed: int = 1234) -> torch.Tensor:
    if not size or size >= x.shape[0]:
        return x
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:size]]


# ----------------------------------------------------------------------------- models
def defaults(args: argparse.Namespace, shape: tuple) -> None:
    small = shape[-1] <= 8
    if args.hidden is None:
        args.hidden = 32 if small else 64
    if args.steps is None:
        args.steps = 4 if small else 8
    if args.levels is None:
        args.levels = 2
    if args.scales is None:
        args.scales = 2 if small else 3
    if args.blocks is None:
        args.blocks = 2
    if args.batch is None:
        args.batch = 64


def build_ours(model: str, args: argparse.Namespace, shape: tuple) -> torch.nn.Module:
    from pyro_lgm.models import glow, realnvp_image

    if model == "glow":
        return glow(shape, levels=args.levels, steps=args.steps, hidden=args.hidden)
    return realnvp_image(shape, num_scales=args.scales, hidden=args.hidden, blocks=args.blocks)


class OursAdapter:
    """Our :class:`~pyro_lgm.models.ImageFlow`: per-image bits/dim of integer images."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def bits_per_dim(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        return self.model.bits_per_dim(x, generator=g)


class NormflowsGlow(torch.nn.Module):
    """normflows' Glow (its example's architecture) on data scaled to ``[0, 1)``.

    Its density is over ``v / 256``; the bits/dim of the dequantized data adds ``D log 256``
    to the NLL, exactly as normflows' own ``bitsPerDim`` does."""

    def __init__(self, shape: tuple, levels: int, steps: int, hidden: int) -> None:
        super().__init__()
        import normflows as nf

        c, h, w = shape
        q0, merges, flows = [], [], []
        for i in range(levels):
            level = [
                nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), hidden, split_mode="channel")
                for _ in range(steps)
            ]
            flows.append([*level, nf.flows.Squeeze()])
            if i > 0:
                merges.append(nf.flows.Merge())
                k = 2 ** (levels - i)
                latent = (c * k, h // k, w // k)
            else:
                k = 2**levels
                latent = (c * 2 * k, h // k, w // k)
            q0.append(nf.distributions.GlowBase(latent))
        self.flow = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
        self.dims = c * h * w

    def bits_per_dim(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(x.shape, generator=g, dtype=x.dtype, device=x.device)
        v = (x + u) / 256.0
        return (-self.flow.log_prob(v, None) + self.dims * math.log(256.0)) / (self.dims * LN2)


def adapter(model: torch.nn.Module):
    return model if isinstance(model, NormflowsGlow) else OursAdapter(model)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """Per-image bits/dim (one dequantization draw each, seed 4321)."""
    model.eval()
    g = torch.Generator(device=args.device).manual_seed(4321)
    out = []
    for i in range(0, x.shape[0], args.eval_batch):
        xb = x[i : i + args.eval_batch].to(args.device)
        out.append(adapter(model).bits_per_dim(xb, g).cpu())
    model.train()
    return torch.cat(out)


def summary(bpd: torch.Tensor) -> dict:
    n = bpd.numel()
    se = float(bpd.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {"bpd": round(float(bpd.mean()), 4), "bpd_se": round(se, 4), "images": n}


# ----------------------------------------------------------------------------- training
class Trainer:
    """Adam with linear warm-up on one model, one step at a time, counting its own budget.

    ``step()`` trains on the next batch and adds the step's time (by ``clock``) to ``used``;
    every ``--curve-every`` budget-minutes it records a learning-curve point (evaluation
    excluded from the budget). Two trainers stepped alternately see the same machine load.
    """

    def __init__(self, name, model, train_x, curve_x, args, clock: Clock, log) -> None:
        self.name, self.model, self.train_x, self.curve_x = name, model, train_x, curve_x
        self.args, self.clock, self.log = args, clock, log
        self.opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        warm = max(1, args.warmup)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm))
        self.budget, self.every = 60.0 * args.minutes, 60.0 * args.curve_every
        self.next_curve = self.every
        self.used, self.steps, self.seen = 0.0, 0, 0
        self.curve: list[dict] = []
        self.recent: list[float] = []
        self.g = torch.Generator().manual_seed(args.seed)
        self.gd = torch.Generator(device=args.device).manual_seed(args.seed + 1)
        self.batch = min(args.batch, train_x.shape[0])
        self.order: list[torch.Tensor] = []
        # data-dependent initialisation (ActNorm) on 256 training images, then the first point
        with torch.no_grad():
            init = subset(train_x, 256, seed=args.seed).to(args.device)
            adapter(model).bits_per_dim(init, self.gd)
        self.point()

    @property
    def done(self) -> bool:
        return self.used >= self.budget

    def point(self) -> None:
        t0 = time.perf_counter()
        bpd = float(evaluate(self.model, self.curve_x, self.args).mean())
        row = {
            "budget_min": round(self.used / 60, 4),
            "steps": self.steps,
            "train_bpd": round(sum(self.recent) / len(self.recent), 4) if self.recent else None,
            "curve_bpd": round(bpd, 4),
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        self.recent.clear()
        self.curve.append(row)
        self.log(
            f"{self.name} [{self.used / 60:.2f}/{self.args.minutes:g} budget-min] step "
            f"{self.steps} train {row['train_bpd']} curve {row['curve_bpd']} bits/dim"
        )

    def _next_indices(self) -> torch.Tensor:
        if not self.order:
            n = self.train_x.shape[0]
            perm = torch.randperm(n, generator=self.g)
            self.order = list(perm[: n - n % self.batch].split(self.batch))
        return self.order.pop(0)

    def step(self) -> None:
        idx = self._next_indices()
        t0 = self.clock.now()
        x = self.train_x[idx].to(self.args.device)
        self.opt.zero_grad(set_to_none=True)
        loss = adapter(self.model).bits_per_dim(x, self.gd).mean()
        loss.backward()
        if self.args.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)
        self.opt.step()
        self.sched.step()
        lv = float(loss.detach())
        self.used += self.clock.now() - t0
        self.steps += 1
        self.seen += idx.numel()
        self.recent.append(lv)
        if not math.isfinite(lv):
            raise FloatingPointError(f"{self.name}: non-finite training loss at step {self.steps}")
        if self.done:
            self.point()
        elif self.used >= self.next_curve:
            self.point()
            self.next_curve += self.every

    def totals(self) -> dict:
        return {
            "steps": self.steps,
            "epochs": round(self.seen / self.train_x.shape[0], 3),
            "train_s": round(self.used, 2),
            "images_per_s": round(self.seen / self.used, 1) if self.used > 0 else None,
        }


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_json(path: str, result: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".image_flows-", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a results file private
    os.replace(tmp, path)


def train_side_by_side(models: dict, data: dict, args, clock, log) -> dict:
    """Train every model for the budget, alternating single steps between them (so that all
    see the same machine load), then evaluate each on the test images."""
    curve_x = subset(data["test"], args.curve_size)
    trainers = []
    for name, model in models.items():
        torch.manual_seed(args.seed)
        trainers.append(
            Trainer(name, model.to(args.device), data["train"], curve_x, args, clock, log)
        )
    while not all(t.done for t in trainers):
        for t in trainers:
            if not t.done:
                t.step()
    runs = {}
    for t in trainers:
        test = summary(evaluate(t.model, subset(data["test"], args.test_size), args))
        totals = t.totals()
        log(
            f"{t.name}: test {test['bpd']:.4f} ± {test['bpd_se']:.4f} bits/dim over "
            f"{test['images']} images; {totals['steps']} steps, {totals['images_per_s']} "
            f"images per budget-second; {num_params(t.model)} parameters"
        )
        runs[t.name] = {"test": test, "curve": t.curve, **totals, "params": num_params(t.model)}
    return runs


# ----------------------------------------------------------------------------- commands
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("mnist", "digits", "normflows"):
        sp = sub.add_parser(name)
        sp.add_argument("--data", default=os.environ.get("PYRO_LGM_DATA"), help="data home")
        if name != "normflows":
            sp.add_argument("--model", choices=["glow", "realnvp"], default="glow")
            sp.add_argument("--samples-png", default=None, help="64 samples at --temperature")
            sp.add_argument("--temperature", type=float, default=0.7)
        else:
            sp.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
        sp.add_argument("--minutes", type=float, default=3.0, help="training budget (each)")
        sp.add_argument("--hidden", type=int, help="hidden channels of each coupling network")
        sp.add_argument("--steps", type=int, help="glow: steps per level")
        sp.add_argument("--levels", type=int, help="glow: levels")
        sp.add_argument("--scales", type=int, help="realnvp: scales")
        sp.add_argument("--blocks", type=int, help="realnvp: residual blocks per network")
        sp.add_argument("--batch", type=int)
        sp.add_argument("--lr", type=float, default=1e-3)
        sp.add_argument("--warmup", type=int, default=200, help="linear lr warm-up steps")
        sp.add_argument("--clip", type=float, default=50.0, help="gradient-norm clip (0: off)")
        sp.add_argument("--curve-every", type=float, default=None, help="budget-min per point")
        sp.add_argument("--curve-size", type=int, default=500)
        sp.add_argument("--test-size", type=int, default=0, help="test images (0: all)")
        sp.add_argument("--train-size", type=int, default=0, help="training images (0: all)")
        sp.add_argument("--eval-batch", type=int, default=500)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=1)
        sp.add_argument("--clock", choices=["cpu", "wall"], default=None)
        sp.add_argument("--json", default=None)
        add_device_args(sp, dtype=False)
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = _parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock_kind = check_clock(parser, args.clock, args.device) or "cpu"
    clock = Clock(clock_kind, args.device)
    if args.curve_every is None:
        args.curve_every = max(args.minutes / 10, 1e-3)

    def log(msg: str) -> None:
        print(msg, flush=True)

    dataset = args.dataset if args.command == "normflows" else args.command
    data = load_data(dataset, args)
    defaults(args, data["shape"])
    result: dict = {
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s)",
        "device": str(args.device),
        "device_name": describe(args.device),
        "clock": clock_kind,
        "dataset": dataset,
        "config": {
            k: getattr(args, k)
            for k in ("hidden", "steps", "levels", "scales", "blocks", "batch", "lr", "minutes")
        },
    }
    log(
        f"{dataset} {data['shape']}: {data['train'].shape[0]} train / {data['test'].shape[0]} "
        f"test images; {describe(args.device)}; {clock_kind} clock"
    )
    if args.command == "normflows":
        try:
            import normflows  # noqa: F401
        except ImportError:
            raise SystemExit("normflows is not installed: pip install normflows") from None
        torch.manual_seed(args.seed)
        ours = build_ours("glow", args, data["shape"])
        torch.manual_seed(args.seed)
        theirs = NormflowsGlow(data["shape"], args.levels, args.steps, args.hidden)
        runs = train_side_by_side({"ours": ours, "normflows": theirs}, data, args, clock, log)
        ratio = runs["ours"]["images_per_s"] / runs["normflows"]["images_per_s"]
        result.update(runs=runs, throughput_ratio=round(ratio, 2))
        o, n = runs["ours"]["test"], runs["normflows"]["test"]
        log("\n| Glow, same size, same budget | images / budget-s | test bits/dim | params |")
        log("| --- | --- | --- | --- |")
        for name in ("ours", "normflows"):
            r = runs[name]
            log(
                f"| {name} | {r['images_per_s']} | {r['test']['bpd']:.4f} ± "
                f"{r['test']['bpd_se']:.4f} | {r['params']} |"
            )
        log(
            f"throughput ours / normflows: {ratio:.2f}x; bits/dim ours - normflows: "
            f"{o['bpd'] - n['bpd']:+.4f}"
        )
    else:
        model = build_ours(args.model, args, data["shape"])
        run = train_side_by_side({args.model: model}, data, args, clock, log)[args.model]
        result.update(model=args.model, **run)
        if dataset == "mnist":
            label, anchor = ANCHORS[args.model]
            log(f"\n| model | test bits/dim |\n| --- | --- |\n| {label}, as reported | {anchor} |")
            log(f"| ours, {args.minutes:g} budget-min | {run['test']['bpd']:.4f} |")
            log("(a budget of minutes sits early on the learning curve of a fully trained model)")
        if args.samples_png:
            from pyro_lgm.data import save_image_grid

            torch.manual_seed(args.seed)
            model.eval()
            x = model.sample((64,), temperature=args.temperature).cpu()
            save_image_grid(x.to(torch.uint8), args.samples_png, nrow=8, levels=256)
            log(f"64 samples at temperature {args.temperature} -> {args.samples_png}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
