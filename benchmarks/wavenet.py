"""WaveNet on a synthesized speech corpus: test NLL at a CPU budget, and generation speed.

The corpus is ``pyro_lgm.data.build_speech_corpus`` (20 words x 6 espeak-ng voices x 4
speaking rates at 16 kHz; built into ``--corpus`` on first use, which needs ``espeak-ng``).
Training segments of ``--segment`` samples are cut from the training utterances; the test
figure is the mean NLL over every segment of the test utterances (hop = segment), in nats
per sample and bits per sample.

``train``: a :class:`pyro_lgm.models.WaveNet` with ``--output categorical`` (a 256-way
softmax over mu-law companded 8-bit samples, the paper's) or ``logistic_mixture`` (a
discretized logistic mixture over 16-bit samples, Parallel WaveNet's teacher), optionally
conditioned on the speaker (``--speaker``: global conditioning), trained by Adam for
``--minutes`` of CPU time of this process (synchronized wall time on CUDA), with a learning
curve every ``--curve-every`` budget-minutes on a fixed subset of test segments.

``distill``: Parallel WaveNet. A ``train --output logistic_mixture`` model (``--teacher``,
unconditional) is frozen and its continuous mixture density scores the samples of a
:class:`pyro_lgm.models.ParallelWaveNet` student (``--flows`` IAF flows over logistic noise,
bounded to (-1, 1)), trained by :func:`pyro_lgm.models.distillation_loss` (KL(student ||
teacher): the teacher's cross-entropy of the student's samples minus the student's entropy)
for ``--minutes``. Prints the teacher's log-density per sample of the student's samples and
of its own samples, the KL estimate, and generation samples/s of both.

``generation``: one second of audio (``--seconds``) from the model (untrained, or
``--load``): the fast cached algorithm (per-layer queues, Paine et al. 2016) timed over every
sample, against two naive baselines whose every step costs the same and is timed over
``--naive-steps`` steps and scaled to the whole length: ``naive`` (the distribution's
``method="naive"``: a full pass over the whole sequence buffer per sample) and
``naive-window`` (a pass over the last receptive field only, Paine et al.'s baseline).
Also checks on a short prefix that cached and naive sampling give the same samples.

    python benchmarks/wavenet.py train --corpus data/speech --minutes 10 --json wn.json \\
        --save-model wn.pt
    python benchmarks/wavenet.py generation --load wn.pt
    python benchmarks/wavenet.py train --corpus data/speech --output logistic_mixture \\
        --save-model teacher.pt
    python benchmarks/wavenet.py distill --teacher teacher.pt --minutes 5
"""

from __future__ import annotations

import argparse
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
from pyro_lgm.data import (
    build_speech_corpus,
    linear_encode,
    load_speech_corpus,
    mu_law_encode,
    speech_segments,
)
from pyro_lgm.models import distillation_loss

# ----------------------------------------------------------------------------- data


def to_levels(x: torch.Tensor, output: str, bits: int) -> torch.Tensor:
    """Waveforms in ``[-1, 1]`` as the model's integer levels (floats): mu-law for the
    categorical output, linear (``data.linear_encode``, exact on the 16-bit PCM grid) for
    the mixture."""
    encode = mu_law_encode if output == "categorical" else linear_encode
    return encode(x.clamp(-1, 1), 2**bits).to(torch.float32)


def load_data(args: argparse.Namespace) -> dict:
    root = args.corpus
    if not os.path.exists(os.path.join(root, "manifest.json")):  # else: as it was built
        build_speech_corpus(root, progress=True)
    out = {}
    for split in ("train", "test"):
        waves, speakers = load_speech_corpus(root, split)
        segs, spk = [], []
        for w, s in zip(waves, speakers):
            piece = speech_segments([w], args.segment)
            segs.append(piece)
            spk.append(torch.full((piece.shape[0],), int(s)))
        out[split] = (torch.cat(segs), torch.cat(spk))
    out["speakers"] = int(max(int(out["train"][1].max()), int(out["test"][1].max())) + 1)
    return out


# ----------------------------------------------------------------------------- models


def model_config(args: argparse.Namespace, speakers: int | None) -> dict:
    bits = args.bits or (8 if args.output == "categorical" else 16)
    kwargs = {
        "residual_channels": args.channels,
        "dilation_channels": args.channels,
        "skip_channels": 2 * args.channels,
        "layers_per_stack": args.layers,
        "stacks": args.stacks,
        "output": args.output,
        "bits": bits,
        "num_mixtures": args.mixtures,
        "num_classes": speakers,
    }
    return {"length": args.segment, "kwargs": kwargs}


def make_model(config: dict) -> torch.nn.Module:
    return models.WaveNet(config["length"], **config["kwargs"])


def save_model(model: torch.nn.Module, config: dict, path: str) -> None:
    """``{"state_dict", "config"}`` written atomically (``bench_train.save_state``)."""
    save_state(model, config, path, "wavenet")


def load_model(path: str) -> tuple[torch.nn.Module, dict]:
    return load_state(path, make_model)


def iid_log_probs(train_levels: torch.Tensor, levels: int) -> torch.Tensor:
    """Log-probabilities of the training samples' level histogram (add-half smoothing)."""
    counts = torch.bincount(train_levels.long().flatten().cpu(), minlength=levels).double()
    return ((counts + 0.5) / (counts + 0.5).sum()).log()


def iid_baseline(train_levels: torch.Tensor, test_levels: torch.Tensor, levels: int) -> float:
    """Nats per test sample of the i.i.d. model that draws every sample from the training
    samples' level histogram (add-half smoothing): what a WaveNet has to beat."""
    logp = iid_log_probs(train_levels, levels)
    return float(-logp[test_levels.long().flatten().cpu()].mean())


def modal_split(
    nll: torch.Tensor, iid_logp: torch.Tensor, test_levels: torch.Tensor
) -> dict[str, float]:
    """Mean NLL per sample of the model (``nll``: per position, like ``test_levels``) and of
    the i.i.d. histogram on the samples at the training histogram's most frequent level
    (digital silence in the speech corpus) and on the others."""
    x = test_levels.long().cpu()
    mode = int(iid_logp.argmax())
    at = x == mode
    iid = -iid_logp[x]
    out = {"modal_level": mode, "modal_fraction": float(at.double().mean())}
    for name, mask in (("modal", at), ("other", ~at)):
        out[f"{name}_model"] = float(nll[mask].mean()) if mask.any() else float("nan")
        out[f"{name}_iid"] = float(iid[mask].mean()) if mask.any() else float("nan")
    return out


def per_sample_nll(model, x, spk, batch: int, conditioned: bool) -> torch.Tensor:
    """``-log p(x) / T`` of every segment, no gradients."""
    return per_position_nll(model, x, spk, batch, conditioned).mean(-1)


def per_position_nll(model, x, spk, batch: int, conditioned: bool) -> torch.Tensor:
    """``-log p(x_t | x_<t)`` of every sample of every segment ``(N, T)``, no gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            ctx = spk[i : i + batch] if conditioned else None
            xb = x[i : i + batch]
            out.append(-model(ctx).conditionals(xb).log_prob(xb).double().cpu())
    model.train()
    return torch.cat(out)


# ----------------------------------------------------------------------------- train


def run_train(args, clock: Clock, result: dict, log) -> None:
    d = load_data(args)
    xtr, str_ = d["train"]
    xte, ste = d["test"]
    config = model_config(args, d["speakers"] if args.speaker else None)
    bits = config["kwargs"]["bits"]
    torch.manual_seed(args.seed)
    model = make_model(config).to(args.device, args.dtype)
    print(
        f"# WaveNet {args.output} {bits}-bit, {num_params(model)} parameters, receptive field "
        f"{model.receptive_field} samples, segments of {args.segment}",
        flush=True,
    )
    ltr = to_levels(xtr, args.output, bits).to(args.device, args.dtype)
    lte = to_levels(xte, args.output, bits).to(args.device, args.dtype)
    str_, ste = str_.to(args.device), ste.to(args.device)
    g = torch.Generator().manual_seed(1234)
    curve_idx = torch.randperm(lte.shape[0], generator=g)[: args.curve_size]
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    budget, every = 60.0 * args.minutes, 60.0 * args.curve_every
    used, steps, next_curve = 0.0, 0, every
    curve: list[dict] = []
    recent: list[float] = []
    gen = torch.Generator().manual_seed(args.seed)

    def point() -> None:
        nll = per_sample_nll(
            model, lte[curve_idx], ste[curve_idx], args.eval_batch, args.speaker
        ).mean()
        row = {
            "budget_min": round(used / 60, 4),
            "steps": steps,
            "train_loss": round(sum(recent) / len(recent), 4) if recent else None,
            "curve_nll": round(float(nll), 4),
            "curve_bits": round(float(nll) / math.log(2), 4),
        }
        recent.clear()
        curve.append(row)
        log(
            f"[{row['budget_min']:.2f}/{args.minutes:g}] step {steps} train {row['train_loss']} "
            f"curve {row['curve_nll']} nats/sample ({row['curve_bits']} bits)"
        )

    point()
    n = ltr.shape[0]
    while used < budget:
        i = torch.randint(n, (args.batch,), generator=gen).to(args.device)
        t0 = clock.now()
        ctx = str_[i] if args.speaker else None
        loss = -model(ctx).log_prob(ltr[i]).mean() / args.segment
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.cosine:
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, used / budget)))
        if args.clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        used += clock.now() - t0
        steps += 1
        recent.append(float(loss.detach()))
        if not math.isfinite(recent[-1]):
            raise FloatingPointError(f"non-finite training loss at step {steps}")
        if used >= next_curve and used < budget:
            point()
            next_curve += every
    point()
    t0 = time.perf_counter()
    per_pos = per_position_nll(model, lte, ste, args.eval_batch, args.speaker)
    nll = per_pos.mean(-1)
    eval_s = time.perf_counter() - t0
    mean, se = float(nll.mean()), float(nll.std()) / math.sqrt(nll.numel())
    iid = iid_baseline(ltr, lte, 2**bits)
    split = modal_split(per_pos, iid_log_probs(ltr, 2**bits), lte)
    if args.save_model:
        save_model(model, config, args.save_model)
        log(f"saved {args.save_model}")
    result.update(
        {
            "config": config,
            "params": num_params(model),
            "receptive_field": model.receptive_field,
            "steps": steps,
            "train_s": round(used, 2),
            "segments_per_s": round(steps * args.batch / used, 2),
            "test": {
                "nll_per_sample": mean,
                "nll_se": se,
                "bits_per_sample": mean / math.log(2),
                "bits_se": se / math.log(2),
                "segments": nll.numel(),
                "samples": nll.numel() * args.segment,
            },
            "iid_baseline_nll": iid,
            "modal_split": split,
            "eval_s": round(eval_s, 1),
            "curve": curve,
        }
    )
    what = f"{args.output} {bits}-bit" + (", speaker-conditioned" if args.speaker else "")
    print(
        f"| model | test NLL (nats / sample) | bits / sample |\n|---|---|---|\n"
        f"| WaveNet ({what}, {num_params(model)} params, {args.minutes:g} {clock.kind}-min, "
        f"{steps} steps) | **{mean:.4f} ± {se:.4f}** | {mean / math.log(2):.4f} (of {bits}) |"
    )
    print(
        f"| i.i.d. baseline (the training samples' level histogram) | {iid:.4f} | "
        f"{iid / math.log(2):.4f} |"
    )
    print(
        f"\n{nll.numel()} test segments of {args.segment} samples (the test utterances at "
        "175 words per minute); ± one standard error over segments."
    )
    print(
        f"\nSplit by the training histogram's most frequent level ({split['modal_level']}, "
        f"{100 * split['modal_fraction']:.1f}% of the test samples; digital silence): model "
        f"{split['modal_model']:.4f} / i.i.d. {split['modal_iid']:.4f} nats per sample there, "
        f"model {split['other_model']:.4f} / i.i.d. {split['other_iid']:.4f} on the others."
    )
    print("\n| budget-min | steps | train loss | curve NLL (nats / sample) |\n|---|---|---|---|")
    for r in curve:
        print(f"| {r['budget_min']:.2f} | {r['steps']} | {r['train_loss']} | {r['curve_nll']} |")


# ----------------------------------------------------------------------------- generation


def run_generation(args, clock: Clock, result: dict, log) -> None:
    length = int(round(args.seconds * args.sample_rate))
    if args.load:
        model, config = load_model(args.load)
        model.length = length
    else:
        torch.manual_seed(args.seed)
        config = model_config(args, None)
        config["length"] = length
        model = make_model(config)
    model = model.to(args.device, args.dtype).eval()
    kw = config["kwargs"]
    ctx = torch.zeros(args.num_samples, dtype=torch.long) if kw.get("num_classes") else None
    d = model(ctx)
    r = model.receptive_field
    print(
        f"# WaveNet {kw['output']}, {num_params(model)} parameters, receptive field {r}, "
        f"{length} samples x {args.num_samples}",
        flush=True,
    )
    gen = torch.Generator().manual_seed(args.seed)
    t0 = clock.now()
    d.sample(generator=gen) if ctx is not None else d.sample((args.num_samples,), generator=gen)
    cached = clock.now() - t0
    log(f"cached: {cached:.2f} s")
    x = torch.zeros(args.num_samples, length, dtype=args.dtype, device=args.device)
    window = torch.zeros(args.num_samples, r + 1, dtype=args.dtype, device=args.device)

    def per_step(fn) -> float:
        fn()
        t = clock.now()
        for _ in range(args.naive_steps):
            fn()
        return (clock.now() - t) / args.naive_steps

    with torch.no_grad():
        full = per_step(lambda: model.net(x, ctx))
        win = per_step(lambda: model.net(window, ctx))
    naive, naive_window = full * length, win * length
    # the same samples from both paths on a short prefix (float rounding aside)
    short = models.WaveNet(min(length, args.check_length), **kw).to(args.device, args.dtype)
    short.load_state_dict(model.state_dict())
    short.eval()
    a = short(ctx).sample(
        () if ctx is not None else (args.num_samples,),
        generator=torch.Generator().manual_seed(1),
    )
    b = short(ctx).sample(
        () if ctx is not None else (args.num_samples,),
        method="naive",
        generator=torch.Generator().manual_seed(1),
    )
    differ = int((a != b).sum())
    result.update(
        {
            "config": config,
            "params": num_params(model),
            "receptive_field": r,
            "length": length,
            "num_samples": args.num_samples,
            "cached_s": round(cached, 3),
            "naive_s_per_step": full,
            "naive_s": round(naive, 2),
            "naive_window_s_per_step": win,
            "naive_window_s": round(naive_window, 2),
            "speedup_naive": round(naive / cached, 1),
            "speedup_window": round(naive_window / cached, 1),
            "check_length": short.length,
            "check_differ": differ,
        }
    )
    unit = f"{clock.kind} s"
    print(
        f"| method | {args.seconds:g} s of audio x {args.num_samples} ({unit}) "
        "| speed-up of cached |"
    )
    print("|---|---|---|")
    print(f"| cached (per-layer queues) | {cached:.2f} (measured) | - |")
    print(
        f"| naive-window (a pass over the last {r + 1} samples per sample) | "
        f"{naive_window:.1f} ({args.naive_steps} steps timed x {length}) | "
        f"**{naive_window / cached:.1f}x** |"
    )
    print(
        f'| naive (`method="naive"`: a pass over all {length} samples per sample) | '
        f"{naive:.1f} ({args.naive_steps} steps timed x {length}) | **{naive / cached:.1f}x** |"
    )
    print(
        f"\ncached and naive sampling of the first {short.length} samples with one random "
        f"stream: {differ} of {a.numel()} samples differ"
    )


# ----------------------------------------------------------------------------- distill


QUIET = 2.0**-10  # |x| below this (32 steps of 16-bit audio) counts as near-silence


def run_distill(args, clock: Clock, result: dict, log) -> None:
    """Probability density distillation of a logistic-mixture teacher into a Parallel
    WaveNet student (bounded to (-1, 1), where the teacher's continuous density lives)."""
    teacher_model, tconfig = load_model(args.teacher)
    if tconfig["kwargs"]["output"] != "logistic_mixture" or tconfig["kwargs"].get("num_classes"):
        raise SystemExit(
            "--teacher: expected an unconditional WaveNet with --output logistic_mixture"
        )
    length = args.length or tconfig["length"]
    teacher_model.length = length
    teacher_model = teacher_model.to(args.device, args.dtype).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)  # the teacher is fixed; only the student learns
    teacher = teacher_model().as_continuous()
    torch.manual_seed(args.seed)
    student = models.ParallelWaveNet(
        length, flows=args.flows, hidden=args.channels, layers=args.layers, bounded=True
    ).to(args.device, args.dtype)
    print(
        f"# teacher: WaveNet mixture {num_params(teacher_model)} params, receptive field "
        f"{teacher_model.receptive_field}; student: {args.flows} IAF flows, "
        f"{num_params(student)} params, receptive field {student.receptive_field}; T = {length}",
        flush=True,
    )
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    budget, every = 60.0 * args.minutes, 60.0 * args.curve_every
    used, steps, next_curve = 0.0, 0, every
    curve: list[dict] = []
    recent: list[float] = []
    while used < budget:
        t0 = clock.now()
        loss = distillation_loss(student, teacher, args.num_samples)
        opt.zero_grad(set_to_none=True)
        (loss.total / length).backward()
        opt.step()
        used += clock.now() - t0
        steps += 1
        recent.append(float(loss.kl.detach()) / length)
        if not math.isfinite(recent[-1]):
            raise FloatingPointError(f"non-finite distillation loss at step {steps}")
        if used >= next_curve or used >= budget:
            curve.append(
                {
                    "budget_min": round(used / 60, 4),
                    "steps": steps,
                    "kl_per_sample": round(sum(recent) / len(recent), 5),
                }
            )
            log(f"[{used / 60:.2f}/{args.minutes:g}] step {steps} KL/sample {curve[-1]}")
            recent.clear()
            next_curve += every
    # the figures: the teacher's log-likelihood of the student's samples and of its own
    n = args.eval_samples
    with torch.no_grad():
        t0 = clock.now()
        xs, log_q = student.sample_with_log_prob(n)
        student_s = clock.now() - t0
        lp_s = teacher.log_prob(xs) / length
        t0 = clock.now()
        xt = teacher.sample((n,))
        teacher_s = clock.now() - t0
        lp_t = teacher.log_prob(xt) / length
    kl = (log_q / length - lp_s).double()

    def ms(v: torch.Tensor) -> tuple[float, float]:
        v = v.double().cpu()
        return float(v.mean()), float(v.std()) / math.sqrt(v.numel())

    def quiet(x: torch.Tensor) -> float:
        """The fraction of samples within QUIET of zero (near-silence)."""
        return float((x.abs() < QUIET).double().mean())

    result.update(
        {
            "teacher_config": tconfig,
            "student": {"flows": args.flows, "hidden": args.channels, "layers": args.layers},
            "student_params": num_params(student),
            "length": length,
            "steps": steps,
            "curve": curve,
            "teacher_ll_of_student": ms(lp_s),
            "teacher_ll_of_teacher": ms(lp_t),
            "kl_per_sample": ms(kl),
            "student_samples_per_s": round(n * length / student_s, 1),
            "teacher_samples_per_s": round(n * length / teacher_s, 1),
            "speedup": round(teacher_s / student_s, 1),
            "quiet_fraction": {"student": quiet(xs), "teacher": quiet(xt)},
        }
    )
    a, b, k = ms(lp_s), ms(lp_t), ms(kl)
    print(
        "| samples | teacher log-density (nats / sample) | generation (samples / s) |\n"
        "|---|---|---|\n"
        f"| the student's ({n} x {length}) | **{a[0]:.3f} ± {a[1]:.3f}** | "
        f"{n * length / student_s:.0f} (one pass per flow) |\n"
        f"| the teacher's own ({n} x {length}) | {b[0]:.3f} ± {b[1]:.3f} | "
        f"{n * length / teacher_s:.0f} (cached, sample by sample) |"
    )
    print(
        f"\nKL(student || teacher) estimate: {k[0]:.4f} ± {k[1]:.4f} nats per sample after "
        f"{steps} steps ({args.minutes:g} {clock.kind}-min); generation speed-up "
        f"{teacher_s / student_s:.1f}x. The teacher's density is the continuous (untruncated) "
        "logistic mixture; higher is better. Near-silent samples (|x| < 2^-10): "
        f"{100 * quiet(xs):.1f}% of the student's, {100 * quiet(xt):.1f}% of the teacher's."
    )
    print("\n| budget-min | steps | KL per sample (training estimate) |\n|---|---|---|")
    for r in curve:
        print(f"| {r['budget_min']:.2f} | {r['steps']} | {r['kl_per_sample']} |")


# ----------------------------------------------------------------------------- main


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    subs = {}
    for name, help_ in (
        ("train", "test NLL on the corpus"),
        ("generation", "sampling speed"),
        ("distill", "Parallel WaveNet: distil a mixture teacher into an IAF student"),
    ):
        sp = subs[name] = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=1)
        sp.add_argument("--json", default=None)
        sp.add_argument("--clock", choices=["cpu", "wall"], default=None)
        sp.add_argument("--float64", action="store_true")
        add_device_args(sp, dtype=False)
        sp.add_argument(
            "--output", choices=["categorical", "logistic_mixture"], default="categorical"
        )
        sp.add_argument("--bits", type=int, default=None, help="8 (categorical) / 16 (mixture)")
        sp.add_argument("--channels", type=int, default=32)
        sp.add_argument("--layers", type=int, default=10, help="layers per stack")
        sp.add_argument("--stacks", type=int, default=1)
        sp.add_argument("--mixtures", type=int, default=5)
        sp.add_argument("--segment", type=int, default=4096, help="samples per segment")
    sp = subs["train"]
    sp.add_argument("--corpus", required=True, help="speech corpus folder (built if absent)")
    sp.add_argument("--speaker", action="store_true", help="condition on the speaker")
    sp.add_argument("--minutes", type=float, default=10.0)
    sp.add_argument("--curve-every", type=float, default=2.0)
    sp.add_argument("--curve-size", type=int, default=64, help="test segments per curve point")
    sp.add_argument("--batch", type=int, default=8)
    sp.add_argument("--lr", type=float, default=1e-3)
    sp.add_argument(
        "--clip", type=float, default=None, help="clip the gradient's norm at this value"
    )
    sp.add_argument(
        "--cosine",
        action="store_true",
        help="decay the learning rate from --lr to 0 over the budget (cosine of the CPU time)",
    )
    sp.add_argument("--eval-batch", type=int, default=16)
    sp.add_argument("--save-model", default=None)
    sp = subs["distill"]
    sp.add_argument("--teacher", required=True, help="train --output logistic_mixture model")
    sp.add_argument("--length", type=int, default=None, help="samples (default: the teacher's)")
    sp.add_argument("--flows", type=int, default=4)
    sp.add_argument("--minutes", type=float, default=5.0)
    sp.add_argument("--curve-every", type=float, default=1.0)
    sp.add_argument("--num-samples", type=int, default=4, help="student samples per step")
    sp.add_argument("--eval-samples", type=int, default=8)
    sp.add_argument("--lr", type=float, default=1e-3)
    sp.set_defaults(channels=32, layers=6)
    sp = subs["generation"]
    sp.add_argument("--load", default=None, help="a model saved by train --save-model")
    sp.add_argument("--seconds", type=float, default=1.0)
    sp.add_argument("--sample-rate", type=int, default=16000)
    sp.add_argument("--num-samples", type=int, default=1)
    sp.add_argument("--naive-steps", type=int, default=20, help="naive steps timed")
    sp.add_argument("--check-length", type=int, default=200, help="cached == naive prefix")
    return p, subs


def main(argv: list[str] | None = None) -> dict:
    p, subs = _parser()
    args = p.parse_args(argv)
    sp = subs[args.command]
    for name in ("threads", "channels", "layers", "stacks", "mixtures", "segment"):
        if getattr(args, name) < 1:
            sp.error(f"--{name}: expected a positive integer")
    if args.command in ("train", "distill") and not (args.minutes > 0 and args.curve_every > 0):
        sp.error("--minutes, --curve-every: expected positive numbers")
    if args.command == "train" and args.clip is not None and not args.clip > 0:
        sp.error("--clip: expected a positive number")
    if args.command == "generation" and not args.seconds > 0:
        sp.error("--seconds: expected a positive number")
    args.dtype = torch.float64 if args.float64 else torch.float32
    kind = check_clock(sp, args.clock, args.device) or "cpu"
    torch.set_num_threads(args.threads)
    clock = Clock(kind, args.device)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result: dict = {
        "command": "python benchmarks/wavenet.py " + shlex.join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "clock": kind,
        "threads": args.threads,
        **info(args.device, args.dtype),
    }
    print(
        f"# {result['command']}\n# {describe(args.device)}, clock {kind}, commit {result['commit']}"
    )
    if args.command == "train":
        run_train(args, clock, result, log)
    elif args.command == "distill":
        run_distill(args, clock, result, log)
    else:
        run_generation(args, clock, result, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
