"""Autoregressive image models (PixelCNN family, PixelRNN, PixelSNAIL): test likelihood at a
compute budget, sampling speed and throughput.

Five subcommands; each trains (or builds) a :mod:`pyro_lgm.models` PixelCNN with Adam on
one data set for ``--minutes`` of training time - CPU time of this process
(``time.process_time``) on the CPU, synchronized wall time on CUDA; evaluation excluded -
so that a contended machine still gives a fair figure. Every ``--curve-every``
budget-minutes a learning-curve point is recorded: the mean test NLL on a fixed random
subset of ``--curve-size`` test images (seed 1234). At the end the test (and, where the data
has one, validation) NLL with its standard error over images.

``mnist``: binarized MNIST (50 000 / 10 000 / 10 000), ``--model gated`` (default),
``pixelcnn``, ``rowlstm``, ``diagbilstm`` (``--layers`` LSTM layers) or ``pixelsnail``
(``--blocks``, ``--resnets`` per block, ``--heads``) with Bernoulli outputs; NLL in nats.
The default model (gated, hidden 16, 6 layers, 30k parameters) trains at about 120-140
images per CPU-second on one thread; in a budget of minutes ``--batch 16`` gets further than
the default 64 (4x the steps for about the same images: after one CPU-minute 99 against 118
nats on a 2-core machine).

``sampling``: the same model (built untrained, or ``--load`` a ``mnist --save-model`` file);
``--num-samples`` images drawn with ``sample(method="cached")`` (incremental generation) and
``method="naive"`` (a full pass per pixel) from generators seeded alike; prints both times,
the speed-up, and the number of pixels where the two differ (0 expected; in float32 a
uniform landing within rounding of a CDF step can flip one, ``--float64`` removes that).
``--model pixelcnnpp`` samples 8-bit grey images instead.

``throughput``: each model of ``--models`` (untrained, binary ``--size`` images, the sizes
in ``THROUGHPUT``: parameter counts near each other's) - ``log_prob`` images per second
without gradients, training images per second (``log_prob`` + backward), and seconds per
sampled image (cached generation; naive too with ``--naive``), each with its ratio to the
Gated PixelCNN's time measured in the same run.

``digits``: scikit-learn's digits as 8-bit 8x8 images (1197 / 300 / 300; no data files),
``--model pixelcnnpp`` (default, discretized logistic mixture), ``pixelsnail`` (logistic
mixture), ``gated`` or ``pixelcnn`` (256-way softmax); bits/dim = NLL / (64 ln 2). Only 17
grey levels occur, so the figure is far below natural images' and comparable with nothing
published.

``cifar``: the project's CIFAR-10 **subset** (4000 train / 1000 test), ``--model pixelcnnpp``
(default), ``pixelsnail``, ``gated`` or ``pixelcnn``; bits/dim = NLL / (3072 ln 2). Not
comparable with the papers' full-test-set figures (PixelCNN++ 2.92, PixelSNAIL 2.85).

    python benchmarks/pixelcnn.py mnist --data ../shared/data --minutes 10 --json mnist.json
    python benchmarks/pixelcnn.py mnist --data ../shared/data --minutes 10 \\
        --save-model gated.pt --samples-png samples.png --completions-png completions.png
    python benchmarks/pixelcnn.py sampling --load gated.pt
    python benchmarks/pixelcnn.py sampling --model pixelcnnpp --float64
    python benchmarks/pixelcnn.py mnist --data ../shared/data --model diagbilstm --layers 2 \\
        --batch 16 --minutes 10
    python benchmarks/pixelcnn.py throughput
    python benchmarks/pixelcnn.py digits --model pixelsnail --minutes 5
    python benchmarks/pixelcnn.py digits --minutes 5 --samples-png digits.png
    python benchmarks/pixelcnn.py cifar --data ../shared/data --minutes 5 --hidden 32 \\
        --resnets 1 --batch 8 --test-size 200   # a CPU-sized run (the defaults are a GPU's)
    # one GPU, each under 8 minutes including evaluation (the data from PYRO_LGM_DATA, as
    # set by the command prefix in ../shared/tools/device-prep's header after
    # `device-prep binarized_mnist cifar10_subset`):
    python benchmarks/pixelcnn.py mnist --device cuda --minutes 5 --hidden 64 \\
        --layers 10
    python benchmarks/pixelcnn.py cifar --device cuda --minutes 5
    # (--samples-png / --completions-png add 3072 cached sampling steps each)

Anchors (binarized MNIST test NLL in nats, van den Oord et al. 2016a): PixelCNN 81.30,
Row LSTM 80.54, Diagonal BiLSTM 79.20; the Gated PixelCNN (2016b) removes PixelCNN's blind
spot and reports no MNIST figure (it is expected below 81.30). CIFAR-10 bits/dim: PixelCNN
3.14, Gated PixelCNN 3.03, PixelCNN++ 2.92 (Salimans et al. 2017). Those are fully trained
models (days on GPUs); a CPU run of minutes sits early on the learning curve.
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

import torch
from bench_device import Clock, add_device_args, check_clock, describe, git_commit, info
from bench_train import load_state, num_params, save_state

from pyro_lgm import models

MNIST_ANCHORS = [
    ("PixelCNN (van den Oord et al. 2016a)", "81.30"),
    ("Gated PixelCNN (van den Oord et al. 2016b)", "no MNIST figure; below 81.30 expected"),
    ("Row LSTM (van den Oord et al. 2016a)", "80.54"),
    ("Diagonal BiLSTM (van den Oord et al. 2016a)", "79.20"),
]
CIFAR_ANCHORS = [
    ("PixelCNN (van den Oord et al. 2016a)", "3.14"),
    ("Gated PixelCNN (van den Oord et al. 2016b)", "3.03"),
    ("PixelCNN++ (Salimans et al. 2017)", "2.92"),
    ("PixelSNAIL (Chen et al. 2018)", "2.85"),
]
NAMES = {
    "gated": "Gated PixelCNN",
    "pixelcnn": "PixelCNN",
    "pixelcnnpp": "PixelCNN++",
    "rowlstm": "Row LSTM",
    "diagbilstm": "Diagonal BiLSTM",
    "pixelsnail": "PixelSNAIL",
}
RNNS = ("rowlstm", "diagbilstm")


# ----------------------------------------------------------------------------- models


def model_config(args: argparse.Namespace, image_shape: tuple[int, int, int], bits: int) -> dict:
    """The model's constructor arguments (saved with ``--save-model``)."""
    if args.model == "pixelcnnpp":
        kwargs = {
            "hidden_channels": args.hidden,
            "num_resnets": args.resnets,
            "num_mixtures": args.mixtures,
            "bits": bits,
            "dropout": args.dropout,
            "num_scales": args.scales,
        }
    elif args.model == "pixelsnail":
        kwargs = {
            "hidden_channels": args.hidden,
            "num_blocks": args.blocks,
            "num_resnets": args.resnets,
            "heads": args.heads,
            "output": "bernoulli" if bits == 1 else "logistic_mixture",
            "bits": None if bits == 1 else bits,
            "num_mixtures": args.mixtures,
            "dropout": args.dropout,
        }
    else:
        kwargs = {
            "hidden_channels": args.hidden,
            "num_layers": args.layers,
            "output": "bernoulli" if bits == 1 else "categorical",
            "bits": None if bits == 1 else bits,
        }
    return {"model": args.model, "image_shape": list(image_shape), "kwargs": kwargs}


def make_model(config: dict) -> torch.nn.Module:
    attr = {
        "gated": "GatedPixelCNN",
        "pixelcnn": "PixelCNN",
        "pixelcnnpp": "PixelCNNPP",
        "rowlstm": "RowLSTM",
        "diagbilstm": "DiagonalBiLSTM",
        "pixelsnail": "PixelSNAIL",
    }[config["model"]]
    return getattr(models, attr)(tuple(config["image_shape"]), **config["kwargs"])


def describe_model(config: dict) -> str:
    k = config["kwargs"]
    if config["model"] == "pixelcnnpp":
        size = (
            f"hidden {k['hidden_channels']}, {k['num_resnets']} resnets x {k['num_scales']} "
            f"scales, {k['num_mixtures']} mixtures, dropout {k['dropout']:g}"
        )
    elif config["model"] == "pixelsnail":
        out = k["output"] if k["bits"] is None else f"{k['output']} {k['bits']}-bit"
        size = (
            f"hidden {k['hidden_channels']}, {k['num_blocks']} blocks x {k['num_resnets']} "
            f"resnets, {k['heads']} head(s), {out}"
        )
    else:
        out = k["output"] if k["bits"] is None else f"{k['output']} {k['bits']}-bit"
        size = f"hidden {k['hidden_channels']}, {k['num_layers']} layers, {out}"
    return f"{NAMES[config['model']]} ({size})"


def save_model(model: torch.nn.Module, config: dict, path: str) -> None:
    """``{"state_dict", "config"}`` written atomically (``bench_train.save_state``)."""
    save_state(model, config, path, "pixelcnn")


def load_model(path: str) -> tuple[torch.nn.Module, dict]:
    return load_state(path, make_model)


# ----------------------------------------------------------------------------- training


def per_image_nll(
    model: torch.nn.Module, x: torch.Tensor, batch: int, dtype: torch.dtype
) -> torch.Tensor:
    """``-log p(x)`` in nats of every image (evaluation mode, no gradients), on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(-model().log_prob(x[i : i + batch].to(dtype)).double().cpu())
    model.train(was_training)
    return torch.cat(out)


def summary(nll: torch.Tensor, dims: int | None = None) -> dict:
    """Mean and standard error in nats (and bits/dim when ``dims`` is given)."""
    n = nll.numel()
    mean = float(nll.mean())
    se = float(nll.std()) / math.sqrt(n) if n > 1 else float("nan")
    out = {"nll": mean, "nll_se": se, "images": n}
    if dims:
        out["bpd"] = mean / (dims * math.log(2))
        out["bpd_se"] = se / (dims * math.log(2))
    return out


def train(
    model: torch.nn.Module,
    train_x: torch.Tensor,
    curve_x: torch.Tensor,
    args: argparse.Namespace,
    clock: Clock,
    log,
    dims: int | None = None,
    valid_x: torch.Tensor | None = None,
) -> tuple[list[dict], dict]:
    """Adam for ``args.minutes`` of budget; the learning curve and training totals.

    With ``valid_x`` (``--keep-best``) every curve point also measures the validation NLL,
    and the weights of the best point are restored at the end (early stopping on the
    validation split; the test images never choose anything)."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    budget, every = 60.0 * args.minutes, 60.0 * args.curve_every
    next_curve = every
    used, steps, epoch, seen = 0.0, 0, 0, 0
    curve: list[dict] = []
    recent: list[float] = []
    best: dict = {"nll": math.inf, "point": None, "state": None}
    g = torch.Generator().manual_seed(args.seed)
    model.train()

    def point() -> None:
        t0 = time.perf_counter()
        nll = per_image_nll(model, curve_x, args.eval_batch, args.dtype)
        row = {
            "budget_min": round(used / 60, 4),
            "steps": steps,
            "epoch": epoch,
            "train_loss": round(sum(recent) / len(recent), 3) if recent else None,
            "curve_nll": round(float(nll.mean()), 3),
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        if dims:
            row["curve_bpd"] = round(row["curve_nll"] / (dims * math.log(2)), 4)
        if valid_x is not None:
            v = float(per_image_nll(model, valid_x, args.eval_batch, args.dtype).mean())
            row["valid_nll"] = round(v, 3)
            if v < best["nll"]:
                best.update(nll=v, point=len(curve), state=copy.deepcopy(model.state_dict()))
        recent.clear()
        curve.append(row)
        log(
            f"[{used / 60:.2f}/{args.minutes:g} budget-min] step {steps} epoch {epoch} "
            f"train loss {row['train_loss']} curve NLL {row['curve_nll']}"
            + (f" ({row['curve_bpd']} bits/dim)" if dims else "")
        )

    point()
    n = train_x.shape[0]
    batch = min(args.batch, n)
    done = False
    while not done:
        perm = torch.randperm(n, generator=g).to(train_x.device)
        for i in range(0, n - batch + 1, batch):
            t0 = clock.now()
            x = train_x[perm[i : i + batch]].to(args.dtype)
            opt.zero_grad(set_to_none=True)
            loss = -model().log_prob(x).mean()
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            lv = float(loss.detach())
            used += clock.now() - t0
            steps += 1
            seen += batch
            recent.append(lv)
            if not math.isfinite(lv):
                raise FloatingPointError(f"non-finite training loss at step {steps}")
            if used >= budget:
                done = True
                break
            if used >= next_curve:
                point()
                next_curve += every
        else:
            epoch += 1
    point()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
        row = curve[best["point"]]
        log(f"kept the weights of the best validation point: {row['budget_min']} budget-min")
    totals = {
        "steps": steps,
        "epochs": round(seen / n, 3),
        "images_seen": seen,
        "train_s": round(used, 2),
        "images_per_s": round(seen / used, 1) if used > 0 else None,
        "kept_point": None if best["point"] is None else curve[best["point"]]["budget_min"],
    }
    return curve, totals


# ----------------------------------------------------------------------------- pictures


def write_pictures(
    model: torch.nn.Module,
    test_x: torch.Tensor,
    args: argparse.Namespace,
    levels: int,
    log,
) -> dict:
    """``--samples-png`` (16 samples) and ``--completions-png`` (8 test images, top half
    observed, 3 completions each)."""
    from pyro_lgm.data import completion_grid, save_image_grid

    out: dict = {}
    if not (args.samples_png or args.completions_png):
        return out
    model.eval()
    g = torch.Generator(device=args.device).manual_seed(args.seed + 1)
    if args.samples_png:
        t0 = time.perf_counter()
        x = model().sample((16,), generator=g)
        save_image_grid(x.cpu(), args.samples_png, nrow=4, levels=levels)
        out["samples_png"] = args.samples_png
        out["samples_s"] = round(time.perf_counter() - t0, 1)
        log(f"wrote {args.samples_png} ({out['samples_s']} s)")
    if args.completions_png:
        t0 = time.perf_counter()
        originals = _subset(test_x, 8, seed=4321).to(args.dtype)  # 8 random test images
        c, h, w = originals.shape[1:]
        mask = torch.zeros(1, 1, h, w, dtype=torch.bool, device=args.device)
        mask[..., : h // 2, :] = True
        # sample_shape (3,) + the observed batch (8,): 3 completions of each image
        y = model().sample((3,), observed=originals, mask=mask, generator=g).transpose(0, 1)
        masks = mask.expand(originals.shape[0], 1, h, w)
        completion_grid(originals.cpu(), masks.cpu(), y.cpu(), args.completions_png, levels=levels)
        out["completions_png"] = args.completions_png
        out["completions_s"] = round(time.perf_counter() - t0, 1)
        log(f"wrote {args.completions_png} ({out['completions_s']} s)")
    return out


# ----------------------------------------------------------------------------- data


def _subset(x: torch.Tensor, size: int, seed: int = 1234) -> torch.Tensor:
    """A fixed random subset of ``size`` rows (0 or more than there are: all, shuffled)."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return x[perm[: size or None]]


def load_data(name: str, args: argparse.Namespace) -> dict:
    """uint8 splits ``(N, C, H, W)`` on the CPU, the image shape, bits and levels."""
    from pyro_lgm import data

    if name == "mnist":
        splits = {
            s: data.load_binarized_mnist(args.data, s).reshape(-1, 1, 28, 28)
            for s in ("train", "valid", "test")
        }
        bits = 1
    elif name == "digits":
        splits = {s: data.load_digits_images(s, bits=8) for s in ("train", "valid", "test")}
        bits = 8
    else:
        splits = {s: data.load_cifar10(args.data, s) for s in ("train", "test")}
        bits = 8
    if args.train_size:
        splits["train"] = splits["train"][: args.train_size]
    return {
        "splits": splits,
        "image_shape": tuple(splits["train"].shape[1:]),
        "bits": bits,
        "levels": 2**bits,
    }


# ----------------------------------------------------------------------------- commands


def _fmt(r: dict, bpd: bool) -> str:
    if bpd:
        return f"{r['bpd']:.3f} ± {r['bpd_se']:.3f}"
    return f"{r['nll']:.2f} ± {r['nll_se']:.2f}"


def run_training(name: str, args: argparse.Namespace, clock: Clock, result: dict, log) -> None:
    if args.keep_best and name == "cifar":
        raise SystemExit("--keep-best: the CIFAR-10 subset has no validation split")
    d = load_data(name, args)
    splits, shape, bits = d["splits"], d["image_shape"], d["bits"]
    dims = None if name == "mnist" else math.prod(shape)
    torch.manual_seed(args.seed)
    config = model_config(args, shape, bits)
    model = make_model(config).to(device=args.device, dtype=args.dtype)
    params = num_params(model)
    print(f"# model: {describe_model(config)}, {params} parameters", flush=True)
    train_x = splits["train"].to(args.device)
    test_x = _subset(splits["test"], args.test_size).to(args.device)
    curve_x = _subset(splits["test"], args.curve_size).to(args.device)
    log(
        f"{name}: {train_x.shape[0]} training images {tuple(shape)}, budget {args.minutes:g} "
        f"{clock.kind}-min, curve on {curve_x.shape[0]} test images every {args.curve_every:g}"
    )
    keep = None
    if args.keep_best:
        keep = _subset(splits["valid"], args.valid_size).to(args.device)
    curve, totals = train(model, train_x, curve_x, args, clock, log, dims, keep)
    t0 = time.perf_counter()
    test = summary(per_image_nll(model, test_x, args.eval_batch, args.dtype), dims)
    valid = None
    if "valid" in splits:
        valid_x = _subset(splits["valid"], args.valid_size).to(args.device)
        valid = summary(per_image_nll(model, valid_x, args.eval_batch, args.dtype), dims)
    eval_s = round(time.perf_counter() - t0, 1)
    log(f"final evaluation: {eval_s} s")
    if args.save_model:
        save_model(model, config, args.save_model)
        log(f"saved {args.save_model}")
    pictures = write_pictures(model, splits["test"].to(args.device), args, d["levels"], log)
    result.update(
        {
            "config": config,
            "model_name": describe_model(config),
            "params": params,
            "minutes": args.minutes,
            **totals,
            "test": test,
            "valid": valid,
            "eval_s": eval_s,
            "curve": curve,
            **pictures,
        }
    )
    bpd = dims is not None
    unit = "bits/dim" if bpd else "nats"
    what = f"{args.minutes:g} {clock.kind}-min, {totals['steps']} steps, {totals['epochs']} epochs"
    lines = [
        f"| model | test NLL ({unit}) | validation NLL ({unit}) |",
        "|---|---|---|",
        f"| this run: {describe_model(config)}, {params} params, {what} | **{_fmt(test, bpd)}** "
        f"| {_fmt(valid, bpd) if valid else '-'} |",
    ]
    if name == "mnist":
        lines += [f"| {a} | {v} | |" for a, v in MNIST_ANCHORS]
        lines.append(
            f"\n{test['images']} test images, {valid['images']} validation images; ± one "
            "standard error over images. The anchors are fully trained models; a CPU run of "
            "minutes sits early on the learning curve."
        )
    elif name == "cifar":
        lines += [f"| {a} (full CIFAR-10 test set) | {v} | |" for a, v in CIFAR_ANCHORS]
        lines.append(
            f"\n{test['images']} images of the 1000-image test SUBSET: the figure is not "
            "comparable with the papers' full-test-set numbers (PixelCNN++ 2.92), and a run "
            "of minutes sits early on the learning curve."
        )
    else:
        lines.append(
            f"\n{test['images']} test and {valid['images']} validation images; bits/dim = NLL "
            "/ (64 ln 2). The digits hold only 17 grey levels of 256, so a model learns which "
            "values occur and reaches far lower bits/dim than on natural 8-bit images: not "
            "comparable with published figures."
        )
    lines.append(f"Training {totals['images_per_s']} images/s ({clock.kind} clock).")
    print("\n".join(lines))
    has_valid = any("valid_nll" in r for r in curve)
    print(
        "\n| budget-min | steps | train loss | curve NLL (test subset) |"
        + (" validation NLL |" if has_valid else "")
        + "\n|---|---|---|---|"
        + ("---|" if has_valid else "")
    )
    for r in curve:
        v = f"{r['curve_nll']:.2f}" + (f" ({r['curve_bpd']:.3f} bits/dim)" if bpd else "")
        extra = f" {r['valid_nll']:.2f} |" if has_valid else ""
        print(f"| {r['budget_min']:.2f} | {r['steps']} | {r['train_loss']} | {v} |{extra}")
    if result.get("kept_point") is not None:
        print(f"\nweights kept from the best validation point: {result['kept_point']} budget-min")


def run_sampling(args: argparse.Namespace, clock: Clock, result: dict, log) -> None:
    if args.load:
        model, config = load_model(args.load)
    else:
        # binary for gated / pixelcnn (Bernoulli; categorical with --bits > 1), 8-bit for ++
        bits = args.bits if args.bits is not None else (8 if args.model == "pixelcnnpp" else 1)
        torch.manual_seed(args.seed)
        config = model_config(args, (1, args.size, args.size), bits)
        model = make_model(config)
    model = model.to(device=args.device, dtype=args.dtype).eval()
    shape = tuple(config["image_shape"])
    params = num_params(model)
    print(f"# model: {describe_model(config)}, {params} parameters, images {shape}", flush=True)
    gen = lambda: torch.Generator(device=args.device).manual_seed(args.seed)  # noqa: E731
    times, images = {}, {}
    for method in ("cached", "naive"):
        t0 = clock.now()
        images[method] = model().sample((args.num_samples,), method=method, generator=gen())
        times[method] = clock.now() - t0
        log(f"{method}: {times[method]:.2f} s")
    t0 = clock.now()
    with torch.no_grad():
        lp = model().log_prob(images["cached"])
    lp_s = clock.now() - t0
    differ = int((images["cached"] != images["naive"]).sum())
    ratio = round(times["naive"] / times["cached"], 2)  # printed and saved alike
    result.update(
        {
            "config": config,
            "model_name": describe_model(config),
            "params": params,
            "num_samples": args.num_samples,
            "cached_s": round(times["cached"], 4),
            "naive_s": round(times["naive"], 4),
            "ratio": ratio,
            "pixels_differ": differ,
            "pixels": images["cached"].numel(),
            "log_prob_s": round(lp_s, 4),
            "mean_log_prob": float(lp.mean()),
        }
    )
    unit = f"{clock.kind} s"
    print(f"| method | {args.num_samples} samples ({unit}) |\n|---|---|")
    print(f"| cached | {times['cached']:.3f} |\n| naive | {times['naive']:.3f} |")
    print(f"| log_prob of the {args.num_samples} images | {lp_s:.4f} |")
    target = "met" if ratio >= 20 else "missed"
    print(f"\nspeed-up naive / cached: {ratio:.1f}x (target >= 20x on the CPU: {target})")
    print(
        f"pixels where cached and naive differ: {differ} of {images['cached'].numel()} "
        f"({'float64' if args.dtype == torch.float64 else 'float32'}"
        + (
            "; in float32 a uniform within rounding of a CDF step can flip one: try --float64)"
            if differ and args.dtype != torch.float64
            else ")"
        )
    )


#: the throughput comparison: each model at a size near the others' parameter count
THROUGHPUT = {
    "gated": {"hidden_channels": 16, "num_layers": 8},
    "pixelcnn": {"hidden_channels": 16, "num_layers": 6},
    "rowlstm": {"hidden_channels": 24, "num_layers": 2},
    "diagbilstm": {"hidden_channels": 24, "num_layers": 2},
    "pixelsnail": {"hidden_channels": 16, "num_blocks": 2, "num_resnets": 2, "heads": 1},
}


def _rate(fn, seconds: float, clock: Clock) -> tuple[float, int]:
    """Run ``fn`` once to warm up, then repeatedly for at least ``seconds``; the mean time
    per call and the number of timed calls."""
    fn()
    t0, calls = clock.now(), 0
    while True:
        fn()
        calls += 1
        spent = clock.now() - t0
        if spent >= seconds:
            return spent / calls, calls


def run_throughput(args: argparse.Namespace, clock: Clock, result: dict, log) -> None:
    """Per model: ``log_prob`` images/s (no gradients), training images/s (``log_prob`` +
    backward) on binary ``--size`` images, and seconds per sampled image (cached; naive
    with ``--naive``)."""
    shape = (1, args.size, args.size)
    rows = []
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 2, (args.batch, *shape), generator=g).to(args.device, args.dtype)
    for name in args.models:
        torch.manual_seed(args.seed)
        kwargs = dict(THROUGHPUT[name], output="bernoulli")
        config = {"model": name, "image_shape": list(shape), "kwargs": kwargs}
        model = make_model(config).to(device=args.device, dtype=args.dtype).eval()

        def forward(model=model) -> None:
            with torch.no_grad():
                model().log_prob(x)

        def train_step(model=model) -> None:
            model.zero_grad(set_to_none=True)
            (-model().log_prob(x).mean()).backward()

        per_call, calls = _rate(forward, args.seconds, clock)
        per_step, _ = _rate(train_step, args.seconds, clock)
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        t0 = clock.now()
        model().sample((args.num_samples,), generator=gen)
        cached = (clock.now() - t0) / args.num_samples
        row = {
            "model": name,
            "name": NAMES[name],
            "kwargs": THROUGHPUT[name],
            "params": num_params(model),
            "log_prob_images_per_s": round(args.batch / per_call, 1),
            "log_prob_calls": calls,
            "train_images_per_s": round(args.batch / per_step, 1),
            "sample_s_per_image": round(cached, 4),
        }
        if args.naive:
            t0 = clock.now()
            model().sample((args.num_samples,), method="naive", generator=gen)
            row["naive_sample_s_per_image"] = round((clock.now() - t0) / args.num_samples, 3)
        log(f"{name}: {row}")
        rows.append(row)
    base = next((r for r in rows if r["model"] == "gated"), None)
    result.update({"image_shape": list(shape), "batch": args.batch, "rows": rows})
    unit = f"{clock.kind} s"
    print(
        f"| model | params | log_prob images/s | training images/s | {unit} per sample "
        "(cached) |"
        + (" naive |" if args.naive else "")
        + "\n|---|---|---|---|---|"
        + ("---|" if args.naive else "")
    )
    for r in rows:
        rel = ""
        if base is not None and r is not base:
            rel = (
                f" ({base['log_prob_images_per_s'] / r['log_prob_images_per_s']:.2f}x)",
                f" ({base['train_images_per_s'] / r['train_images_per_s']:.2f}x)",
                f" ({r['sample_s_per_image'] / base['sample_s_per_image']:.2f}x)",
            )
        a, b, c = rel or ("", "", "")
        naive = f" {r['naive_sample_s_per_image']} |" if args.naive else ""
        print(
            f"| {r['name']} ({', '.join(f'{k}={v}' for k, v in r['kwargs'].items())}) | "
            f"{r['params']} | {r['log_prob_images_per_s']}{a} | {r['train_images_per_s']}{b} | "
            f"{r['sample_s_per_image']}{c} |{naive}"
        )
    print(
        f"\nbatch {args.batch} binary {args.size}x{args.size} images, {args.threads} thread(s); "
        "(Nx): the model's time per image over the Gated PixelCNN's, measured in the same run"
    )


def _parsers() -> tuple[argparse.ArgumentParser, dict]:
    """The parser and its subparsers. Every option is added to each subparser separately
    (argparse's ``parents=`` shares the option objects, so one subcommand's
    ``set_defaults`` would change the others' defaults)."""

    def common_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
        sp.add_argument("--json", default=None, help="write all figures as JSON here")
        sp.add_argument("--clock", choices=["cpu", "wall"], default=None)
        sp.add_argument("--float64", action="store_true", help="the model in float64")
        add_device_args(sp, dtype=False)

    def model_args(sp: argparse.ArgumentParser, choices: list[str]) -> None:
        sp.add_argument("--model", choices=choices, default=choices[0])
        sp.add_argument("--hidden", type=int, help="hidden channels")
        sp.add_argument("--layers", type=int, help="gated / pixelcnn layers")
        sp.add_argument("--resnets", type=int, help="pixelcnnpp resnets per scale")
        sp.add_argument("--scales", type=int, help="pixelcnnpp resolutions")
        sp.add_argument("--mixtures", type=int, help="pixelcnnpp logistic components")
        sp.add_argument("--dropout", type=float, help="pixelcnnpp / pixelsnail dropout")
        sp.add_argument("--blocks", type=int, help="pixelsnail blocks (resnets + attention)")
        sp.add_argument("--heads", type=int, help="pixelsnail attention heads")

    def train_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", default=os.environ.get("PYRO_LGM_DATA"), help="data home")
        sp.add_argument("--minutes", type=float, help="training budget")
        sp.add_argument("--lr", type=float, default=1e-3)
        sp.add_argument("--batch", type=int)
        sp.add_argument("--clip", type=float, default=0.0, help="gradient-norm clip (0: off)")
        sp.add_argument("--curve-every", type=float, help="budget-minutes per curve point")
        sp.add_argument("--curve-size", type=int, help="test images of a curve point")
        sp.add_argument("--test-size", type=int, default=0, help="test images (0: all)")
        sp.add_argument("--valid-size", type=int, default=0, help="validation images (0: all)")
        sp.add_argument(
            "--keep-best",
            action="store_true",
            help="measure the validation NLL at every curve point and keep the best weights "
            "(early stopping; mnist and digits)",
        )
        sp.add_argument("--train-size", type=int, default=0, help="training images (0: all)")
        sp.add_argument("--eval-batch", type=int, default=200)
        sp.add_argument("--save-model", default=None, help="state_dict + config (.pt)")
        sp.add_argument("--samples-png", default=None, help="16 samples")
        sp.add_argument("--completions-png", default=None, help="8 test images completed")

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    subs = {}
    every = ["gated", "pixelcnn", "pixelcnnpp", "rowlstm", "diagbilstm", "pixelsnail"]
    for name, help_, choices in (
        ("mnist", "binarized MNIST", ["gated", "pixelcnn", "rowlstm", "diagbilstm", "pixelsnail"]),
        ("sampling", "cached against naive sampling", every),
        ("digits", "8-bit 8x8 digits", ["pixelcnnpp", "gated", "pixelcnn", "pixelsnail"]),
        ("cifar", "CIFAR-10 subset", ["pixelcnnpp", "gated", "pixelcnn", "pixelsnail"]),
    ):
        subs[name] = sp = sub.add_parser(name, help=help_, description=help_)
        common_args(sp)
        model_args(sp, choices)
        if name != "sampling":
            train_args(sp)
    subs["mnist"].set_defaults(hidden=16, layers=6, minutes=10.0, batch=64)
    subs["mnist"].set_defaults(curve_every=2.0, curve_size=500)
    subs["mnist"].set_defaults(blocks=2, resnets=2, heads=1, mixtures=5, dropout=0.0)
    sp = subs["sampling"]
    sp.add_argument("--load", default=None, help="a model saved by mnist --save-model")
    sp.add_argument("--num-samples", type=int, default=16)
    sp.add_argument("--size", type=int, default=28, help="image height and width")
    sp.add_argument("--bits", type=int, default=None, help="bits per pixel (1: binary)")
    sp.set_defaults(hidden=16, layers=6, resnets=1, scales=2, mixtures=5, dropout=0.0)
    sp.set_defaults(blocks=2, heads=1)
    sp = subs["digits"]
    sp.set_defaults(hidden=32, layers=5, resnets=2, scales=2, mixtures=5, dropout=0.1)
    sp.set_defaults(minutes=5.0, batch=64, curve_every=1.0, curve_size=300, blocks=2, heads=1)
    sp = subs["cifar"]
    sp.set_defaults(hidden=80, layers=8, resnets=2, scales=3, mixtures=10, dropout=0.5)
    sp.set_defaults(minutes=5.0, batch=16, curve_every=1.0, curve_size=200, blocks=2, heads=1)
    sp = subs["throughput"] = sub.add_parser(
        "throughput",
        help="log_prob images/s and seconds per sample of each model",
        description="log_prob images/s and seconds per sample of each model",
    )
    common_args(sp)
    sp.add_argument("--models", nargs="+", choices=list(THROUGHPUT), default=list(THROUGHPUT))
    sp.add_argument("--size", type=int, default=28, help="image height and width")
    sp.add_argument("--batch", type=int, default=64, help="images per log_prob call")
    sp.add_argument("--num-samples", type=int, default=4, help="images sampled at once")
    sp.add_argument("--seconds", type=float, default=3.0, help="time per log_prob figure")
    sp.add_argument("--naive", action="store_true", help="also time naive sampling")
    return p, subs


def main(argv: list[str] | None = None) -> dict:
    p, subs = _parsers()
    args = p.parse_args(argv)
    sp = subs[args.command]  # its errors name the subcommand
    for name in (
        "threads",
        "num_samples",
        "size",
        "hidden",
        "layers",
        "batch",
        "mixtures",
        "blocks",
        "heads",
    ):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            sp.error(f"--{name.replace('_', '-')}: expected a positive integer")
    for name in ("minutes", "curve_every", "seconds"):
        if getattr(args, name, 1) is not None and not getattr(args, name, 1) > 0:
            sp.error(f"--{name.replace('_', '-')}: expected a positive number")
    if args.command == "sampling" and args.bits is not None and not 1 <= args.bits <= 8:
        sp.error("--bits: expected 1..8")
    args.dtype = torch.float64 if args.float64 else torch.float32
    clock_kind = check_clock(sp, args.clock, args.device) or "cpu"
    torch.set_num_threads(args.threads)
    clock = Clock(clock_kind, args.device)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result: dict = {
        "command": "python benchmarks/pixelcnn.py " + shlex.join(argv or sys.argv[1:]),
        "subcommand": args.command,
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "clock": clock_kind,
        "threads": args.threads,
        "seed": args.seed,
        **info(args.device, args.dtype),
    }
    print(
        f"# {result['command']}\n# {describe(args.device)}, dtype {result['dtype']}, "
        f"clock {clock_kind}, commit {result['commit']}"
    )
    if args.command == "sampling":
        run_sampling(args, clock, result, log)
    elif args.command == "throughput":
        run_throughput(args, clock, result, log)
    else:
        run_training(args.command, args, clock, result, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
