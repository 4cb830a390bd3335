"""VAEs with flow guides on binarized MNIST: test -log p(x) at equal compute, and speed vs Pyro.

Quality (the default): for each guide in ``--guides`` (``diag``, ``planar:K``, ``radial:K``,
``iaf:K``; default ``diag planar:10 planar:80 radial:10 iaf:2``) a
:class:`pyro_lgm.models.VAE` (latent 32, MLP 784-256-256, Bernoulli decoder, flow parameters
a linear read-out of the encoder's 256 features, IAF steps with the features as context) is
trained with Adam on the 50 000 training images for the same budget of ``--minutes`` of
CPU time of the training thread (``--clock cpu``, the default on the CPU; wall time on CUDA),
evaluation excluded. Every ``--curve-every`` budget-minutes it records a learning-curve
point: the IWAE bound with ``--curve-samples`` samples on ``--curve-size`` random test
images. At the end: test ``-log p(x)`` by the IWAE bound with ``--samples`` (5000, the
papers' figure) on ``--test-size`` random test images (seeded; 0 = all 10 000), with its
standard error over images, the ELBO and the active units. A markdown table compares every
guide with the diagonal one measured in the same run.

Speed (``--speed``): the same VAE with our ``planar``/``radial``/``iaf`` guide and with
Pyro's ``conditional_planar``/``conditional_radial``/``conditional_affine_autoregressive``
at the same sizes (a linear read-out of the features for planar and radial on both sides,
the same MADE widths for IAF), the same initial encoder/decoder and the same batches; a
"epoch" of ``--speed-steps`` training steps is timed alternately for ours and Pyro's,
``--speed-repeats`` times, and the median ratio printed.

    python benchmarks/vae_flows.py --data ../shared/data --minutes 12
    python benchmarks/vae_flows.py --data ../shared/data --guides diag planar:80 --minutes 60
    python benchmarks/vae_flows.py --data ../shared/data --speed
    python benchmarks/vae_flows.py --data data --device cuda --minutes 1.4   # about 8 min

Anchors (Rezende & Mohamed 2015, DLGM on binarized MNIST, -log p(x) in nats): diagonal 89.9,
planar K = 10 87.5, K = 80 85.1; Kingma et al. 2016, IAF with a ResNet VAE: 79.88. Those are
fully trained models (days); a budget of minutes measures the early part of the curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time

import pyro
import torch
from bench_device import Clock, add_device_args, check_clock, describe, git_commit, info
from bench_train import train_for_budget

from pyro_lgm.data import load_binarized_mnist
from pyro_lgm.metrics import active_units, elbo, iwae
from pyro_lgm.models import VAE

KINDS = ("diag", "planar", "radial", "iaf")


def parse_guide(text: str) -> tuple[str, int]:
    """``diag`` or ``kind:K`` (``planar:10``)."""
    if text == "diag":
        return "diag", 0
    kind, _, k = text.partition(":")
    if kind not in KINDS[1:] or not k.isdigit() or int(k) < 1:
        raise argparse.ArgumentTypeError(
            f"expected diag, planar:K, radial:K or iaf:K with K >= 1, got {text!r}"
        )
    return kind, int(k)


def guide_name(spec: tuple[str, int]) -> str:
    return spec[0] if spec[0] == "diag" else f"{spec[0]}:{spec[1]}"


def build(spec: tuple[str, int], args: argparse.Namespace, name: str) -> VAE:
    kind, k = spec
    flow = None if kind == "diag" else kind
    return VAE(
        (784,),
        args.latent,
        hidden_dims=args.hidden,
        flow=flow,
        num_flows=k if flow else None,
        flow_hidden_dims=args.iaf_hidden if kind == "iaf" else None,
        kl_warmup_steps=args.warmup_steps,
        name=name,
    ).to(device=args.device, dtype=args.dtype)


def train_one(
    spec: tuple[str, int],
    train_x: torch.Tensor,
    curve_x: torch.Tensor,
    args: argparse.Namespace,
    clock: Clock,
    log,
) -> tuple[VAE, list[dict]]:
    """Train one guide for the budget; returns the model and its learning curve."""
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    name = guide_name(spec)
    vae = build(spec, args, name="vae_" + name.replace(":", "_"))

    def curve_ll() -> torch.Tensor:
        return iwae(
            vae.model,
            vae.guide,
            curve_x,
            num_samples=args.curve_samples,
            chunk_size=min(100, args.curve_samples),
            batch_size=100,
            progress=False,
        )

    curve = train_for_budget(
        vae,
        vae.loss,
        train_x,
        curve_ll,
        label={"guide": name},
        batch=args.batch,
        lr=args.lr,
        minutes=args.minutes,
        curve_every=args.curve_every,
        clock=clock,
        seed=args.seed,
        log=log,
        curve_path=args.curve,
    )
    return vae, curve


def evaluate(vae: VAE, test_x: torch.Tensor, args: argparse.Namespace) -> dict:
    vae.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        ll = iwae(
            vae.model,
            vae.guide,
            test_x,
            num_samples=args.samples,
            chunk_size=args.chunk,
            batch_size=args.eval_batch,
            progress=None,
        )
        el = elbo(vae.model, vae.guide, test_x, num_samples=1, batch_size=args.eval_batch)
        au, _ = active_units(vae.guide, test_x, num_samples=100, batch_size=args.eval_batch)
    n = ll.numel()
    return {
        "per_image": [round(float(v), 4) for v in ll.cpu()],
        "nll": -float(ll.mean()),
        "nll_se": float(ll.std()) / math.sqrt(n),
        "neg_elbo": -float(el.mean()),
        "active_units": au,
        "test_images": n,
        "eval_s": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------ speed against Pyro
class _Readout(torch.nn.Module):
    """A linear read-out split into Pyro's parameter tuple (its ConditionalPlanar/Radial
    call ``nn(context)`` and take the tuple apart)."""

    def __init__(self, in_dim: int, sizes: list[int]) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_dim, sum(sizes))
        self.sizes = sizes

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(context).split(self.sizes, dim=-1)


def pyro_transforms(kind: str, k: int, latent: int, features: int, iaf_hidden) -> list:
    from pyro.distributions import transforms as T

    if kind == "planar":
        return [T.ConditionalPlanar(_Readout(features, [1, latent, latent])) for _ in range(k)]
    if kind == "radial":
        return [T.ConditionalRadial(_Readout(features, [latent, 1, 1])) for _ in range(k)]
    hidden = iaf_hidden or [max(64, 4 * latent)]
    return [
        T.conditional_affine_autoregressive(latent, features, hidden_dims=hidden) for _ in range(k)
    ]


def speed(args: argparse.Namespace, train_x: torch.Tensor, clock: Clock, log) -> list[dict]:
    rows = []
    for kind, k in (("planar", args.speed_k), ("radial", args.speed_k), ("iaf", 2)):
        torch.manual_seed(args.seed)
        ours = build((kind, k), args, name=f"ours_{kind}")
        theirs = VAE(
            (784,),
            args.latent,
            hidden_dims=args.hidden,
            name=f"pyro_{kind}",
            flow=pyro_transforms(kind, k, args.latent, ours.feature_dim, args.iaf_hidden),
        ).to(device=args.device, dtype=args.dtype)
        # the same encoder, decoder and Gaussian head
        theirs.encoder.load_state_dict(ours.encoder.state_dict())
        theirs.decoder.load_state_dict(ours.decoder.state_dict())
        theirs.flow.base_net.load_state_dict(ours.flow.base_net.state_dict())
        n_ours = sum(p.numel() for p in ours.flow.layers.parameters())
        n_theirs = sum(p.numel() for p in theirs.flow.layers.parameters())
        models = {"ours": ours, "pyro": theirs}
        opts = {m: torch.optim.Adam(v.parameters(), lr=args.lr) for m, v in models.items()}
        times: dict[str, list[float]] = {"ours": [], "pyro": []}
        g = torch.Generator().manual_seed(args.seed)
        for rep in range(args.speed_repeats + 1):  # the first round warms up
            idx = torch.randint(0, train_x.shape[0], (args.speed_steps, args.batch), generator=g)
            order = ("ours", "pyro") if rep % 2 == 0 else ("pyro", "ours")
            for m in order:
                vae, opt = models[m], opts[m]
                t0 = clock.now()
                for row in idx:
                    opt.zero_grad(set_to_none=True)
                    vae.loss(train_x[row.to(train_x.device)]).backward()
                    opt.step()
                dt = clock.now() - t0
                if rep:
                    times[m].append(dt)
        ours_t, pyro_t = statistics.median(times["ours"]), statistics.median(times["pyro"])
        row = {
            "guide": f"{kind}:{k}",
            "ours_ms_per_step": round(1000 * ours_t / args.speed_steps, 2),
            "pyro_ms_per_step": round(1000 * pyro_t / args.speed_steps, 2),
            "ratio": round(ours_t / pyro_t, 3),
            "ratios": [round(a / b, 3) for a, b in zip(times["ours"], times["pyro"], strict=True)],
            "flow_params_ours": n_ours,
            "flow_params_pyro": n_theirs,
        }
        log(json.dumps(row))
        rows.append(row)
    return rows


def quality_table(rows: list[dict], samples: int, clock_kind: str) -> str:
    """The markdown table, with each guide's paired difference from ``diag`` (the same test
    images: the per-image bounds are subtracted before averaging)."""
    base = next((r for r in rows if r["guide"] == "diag"), None)
    lines = [
        f"| guide | budget ({clock_kind}-min) | steps | test -log p(x), IWAE S={samples} "
        f"(nats) | minus diag's (paired) | -ELBO | active units |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = ""
        if base is not None and r is not base:
            if len(r["per_image"]) != len(base["per_image"]):
                raise ValueError("the runs used different test images: no paired difference")
            d = torch.tensor(base["per_image"]) - torch.tensor(r["per_image"])
            r["vs_diag"] = float(d.mean())
            r["vs_diag_se"] = float(d.std()) / math.sqrt(d.numel())
            diff = f"{r['vs_diag']:+.2f} ± {r['vs_diag_se']:.2f}"
        lines.append(
            f"| {r['guide']} | {r['minutes']:g} | {r['steps']} | {r['nll']:.2f} ± "
            f"{r['nll_se']:.2f} | {diff} | {r['neg_elbo']:.2f} | {r['active_units']} |"
        )
    lines.append(f"\n{rows[0]['test_images']} random test images (seed 1234), S = {samples}.")
    return "\n".join(lines)


def combine(paths: list[str]) -> str:
    """One table from several ``--out`` files of runs on the same test images."""
    rows, samples, clocks = [], set(), set()
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        rows += res["quality"]
        samples.add(res["samples"])
        clocks.add(res["clock"])
    if len(samples) != 1 or len(clocks) != 1:
        raise ValueError(f"the runs differ in --samples {samples} or clock {clocks}")
    return quality_table(rows, samples.pop(), clocks.pop())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("PYRO_LGM_DATA"), help="data home")
    p.add_argument(
        "--guides",
        nargs="+",
        type=parse_guide,
        default=[parse_guide(s) for s in ("diag", "planar:10", "planar:80", "radial:10", "iaf:2")],
    )
    p.add_argument("--minutes", type=float, default=12.0, help="training budget per guide")
    p.add_argument("--clock", choices=["cpu", "wall"], default=None)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument(
        "--iaf-hidden",
        type=int,
        nargs="+",
        default=None,
        help="MADE widths of the IAF steps (default: iaf()'s)",
    )
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=0, help="KL warm-up steps (0: none)")
    p.add_argument("--samples", type=int, default=5000, help="IWAE samples of the final test")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--eval-batch", type=int, default=100)
    p.add_argument("--test-size", type=int, default=1000, help="random test images; 0 = all")
    p.add_argument("--curve-every", type=float, default=2.0, help="budget-minutes per point")
    p.add_argument("--curve-samples", type=int, default=100)
    p.add_argument("--curve-size", type=int, default=500)
    p.add_argument("--curve", default=None, help="append learning-curve JSON lines here")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed", action="store_true", help="time against Pyro's flows instead")
    p.add_argument("--speed-k", type=int, default=10)
    p.add_argument("--speed-steps", type=int, default=50)
    p.add_argument("--speed-repeats", type=int, default=6)
    p.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="OUT_JSON",
        help="print one table from the --out files of earlier runs, and exit",
    )
    add_device_args(p)
    args = p.parse_args(argv)
    if args.combine:
        print(combine(args.combine))
        return {}
    clock_kind = check_clock(p, args.clock, args.device) or "cpu"
    torch.set_num_threads(args.threads)
    clock = Clock(clock_kind, args.device, time.thread_time)  # the training thread

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    train_x = load_binarized_mnist(args.data, "train", dtype=args.dtype).to(args.device)
    test_all = load_binarized_mnist(args.data, "test", dtype=args.dtype)
    g = torch.Generator().manual_seed(1234)
    perm = torch.randperm(test_all.shape[0], generator=g)
    test_x = test_all[perm[: args.test_size or None]].to(args.device)
    curve_x = test_all[perm[: args.curve_size]].to(args.device)
    result: dict = {
        "command": "python benchmarks/vae_flows.py " + shlex.join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "clock": clock_kind,
        "samples": args.samples,
        **info(args.device, args.dtype),
    }
    print(
        f"# {result['command']}\n# {describe(args.device)}, clock {clock_kind}, "
        f"commit {result['commit']}"
    )
    if args.speed:
        rows = speed(args, train_x, clock, log)
        result["speed"] = rows
        print(
            "| guide | ours ms/step | Pyro ms/step | ours / Pyro (median) | per-round "
            "ratios | flow params ours / Pyro |"
        )
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['guide']} | {r['ours_ms_per_step']} | {r['pyro_ms_per_step']} | "
                f"**{r['ratio']:.3f}** | {', '.join(map(str, r['ratios']))} | "
                f"{r['flow_params_ours']} / {r['flow_params_pyro']} |"
            )
    else:
        rows = []
        for spec in args.guides:
            vae, curve = train_one(spec, train_x, curve_x, args, clock, log)
            ev = evaluate(vae, test_x, args)
            row = {
                "guide": guide_name(spec),
                "minutes": args.minutes,
                "steps": curve[-1]["steps"],
                "epochs": curve[-1]["epoch"],
                **ev,
                "curve": curve,
            }
            log(json.dumps({k: v for k, v in row.items() if k not in ("curve", "per_image")}))
            rows.append(row)
            pyro.clear_param_store()
        result["quality"] = rows
        print(quality_table(rows, args.samples, clock_kind))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
