"""Hierarchical VAEs and PixelVAE on binarized MNIST: test -log p(x), active units, curves.

For each model in ``--models`` (trained one after the other for ``--minutes`` of CPU time of
the training thread each, ``--clock cpu``; wall time on CUDA; evaluation excluded):

* ``vae``: the flat :class:`pyro_lgm.models.VAE` (latent 32, MLP 784-256-256, Gaussian guide);
* ``hvae``: :class:`pyro_lgm.models.HierarchicalVAE`, two layers (``--latents``, default
  32 and 16) with the top-down guide, diagonal Gaussians;
* ``hvae-iaf``: the same with 2 IAF steps after every guide factor;
* ``hvae-bu``: the same as ``hvae`` with the bottom-up guide;
* ``pixelvae``: :class:`pyro_lgm.models.PixelVAE`, one latent map of ``--pixelvae-latent``
  channels at 7x7, a Gated PixelCNN decoder of ``--pixel-layers`` layers;
* ``pixelvae2``: the hierarchical PixelVAE: maps at 7x7 and 4x4, an autoregressive prior
  over the 7x7 map;
* ``decoder``: PixelVAE's decoder alone (the same Gated PixelCNN, no latents), the
  reference point: a PixelVAE that does not beat it is not using its latents.

Without free bits a PixelVAE's latents collapse (no active unit after 3 CPU-minutes; the
decoder models the digits alone): ``--free-bits`` (or ``--pixel-free-bits``) sets the KL
floor per latent layer.

Every ``--curve-every`` budget-minutes a learning-curve point is recorded: the IWAE bound
with ``--curve-samples`` samples on ``--curve-size`` random test images (the exact
log-likelihood for ``decoder``). At the end: test -log p(x) by the IWAE bound with
``--samples`` (5000: the papers' figure) on ``--test-size`` random test images (seed 1234;
the same images for every model, so differences are paired), its standard error, the
one-sample -ELBO and the active units of each latent layer (Burda et al.: the variance over
x of E_q[z_u] above 0.01, from 100 guide samples per image).

    python benchmarks/hvae.py --data ../shared/data --models vae hvae --minutes 20
    python benchmarks/hvae.py --data ../shared/data --models pixelvae decoder --minutes 20 \
        --free-bits 16
    python benchmarks/hvae.py --data .device/data --device cuda --minutes 0.5 \
        --pixel-free-bits 16 --test-size 500 --reference decoder      # under 8 minutes

Anchors (binarized MNIST, -log p(x) in nats, fully trained): IAF-VAE 79.88 (Kingma et al.
2016), PixelVAE 79.66 (Gulrajani et al. 2017), Gated PixelCNN 81.30 is PixelCNN's figure
(van den Oord et al. 2016a); IWAE 2-layer 85.3 (Burda et al. 2016).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time

import pyro
import torch
from bench_device import Clock, add_device_args, check_clock, describe, git_commit, info
from bench_train import train_for_budget

from pyro_lgm.data import load_binarized_mnist
from pyro_lgm.metrics import elbo, iwae
from pyro_lgm.models import VAE, GatedPixelCNN, HierarchicalVAE, PixelVAE

MODELS = ("vae", "hvae", "hvae-iaf", "hvae-bu", "pixelvae", "pixelvae2", "decoder")
IMAGE_MODELS = ("pixelvae", "pixelvae2", "decoder")


def build(kind: str, args: argparse.Namespace) -> torch.nn.Module:
    free_bits = args.free_bits
    if kind in IMAGE_MODELS and args.pixel_free_bits is not None:
        free_bits = args.pixel_free_bits
    common = {
        "kl_warmup_steps": args.warmup_steps,
        "free_bits": free_bits,
        "name": kind.replace("-", "_"),
    }
    pixel = {
        "encoder_channels": args.encoder_channels,
        "pixel_channels": args.pixel_channels,
        "pixel_layers": args.pixel_layers,
        "upsample_channels": args.upsample_channels,
    }
    if kind == "vae":
        m: torch.nn.Module = VAE((784,), args.latents[0], hidden_dims=args.hidden, **common)
    elif kind.startswith("hvae"):
        m = HierarchicalVAE(
            (784,),
            args.latents,
            hidden_dims=args.hidden,
            stage_dims=args.stage,
            inference="bottom-up" if kind == "hvae-bu" else "top-down",
            flow="iaf" if kind == "hvae-iaf" else None,
            **common,
        )
    elif kind == "pixelvae":
        m = PixelVAE((1, 28, 28), (args.pixelvae_latent,), **pixel, **common)
    elif kind == "pixelvae2":
        m = PixelVAE(
            (1, 28, 28),
            (args.pixelvae_latent, args.pixelvae_latent),
            prior_channels=args.prior_channels,
            prior_layers=args.prior_layers,
            **pixel,
            **common,
        )
    else:
        m = GatedPixelCNN((1, 28, 28), args.pixel_channels, args.pixel_layers)
    return m.to(device=args.device, dtype=args.dtype)


def data_view(kind: str, x: torch.Tensor) -> torch.Tensor:
    """Flat vectors for the MLP models, (N, 1, 28, 28) images for the PixelCNN ones."""
    return x.reshape(-1, 1, 28, 28) if kind in IMAGE_MODELS else x


def loss_fn(kind: str, m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if kind == "decoder":
        return -m().log_prob(x).mean()
    return m.loss(x)


@torch.no_grad()
def log_likelihood(
    kind: str, m: torch.nn.Module, x: torch.Tensor, samples: int, args: argparse.Namespace
) -> torch.Tensor:
    """Per-image log p(x): exact for the decoder alone, the IWAE bound otherwise."""
    if kind == "decoder":
        return torch.cat([m().log_prob(x[i : i + 100]) for i in range(0, len(x), 100)])
    return iwae(
        m.model,
        m.guide,
        x,
        num_samples=samples,
        chunk_size=min(args.chunk, samples),
        batch_size=args.eval_batch,
        progress=None if samples > 100 else False,
    )


def train_one(kind: str, train_x, curve_x, args, clock: Clock, log) -> tuple:
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    m = build(kind, args)
    train_x, curve_x = data_view(kind, train_x), data_view(kind, curve_x)
    curve = train_for_budget(
        m,
        lambda x: loss_fn(kind, m, x),
        train_x,
        lambda: log_likelihood(kind, m, curve_x, args.curve_samples, args),
        label={"model": kind},
        batch=args.batch,
        lr=args.lr,
        minutes=args.minutes,
        curve_every=args.curve_every,
        clock=clock,
        seed=args.seed,
        log=log,
        curve_path=args.curve,
        clip=args.clip,
    )
    return m, curve


def evaluate(kind: str, m: torch.nn.Module, test_x: torch.Tensor, args) -> dict:
    m.eval()
    x = data_view(kind, test_x)
    t0 = time.perf_counter()
    ll = log_likelihood(kind, m, x, args.samples, args)
    out = {
        "per_image": [round(float(v), 4) for v in ll.cpu()],
        "nll": -float(ll.mean()),
        "nll_se": float(ll.std()) / math.sqrt(ll.numel()),
        "test_images": ll.numel(),
    }
    if kind != "decoder":
        with torch.no_grad():
            out["neg_elbo"] = -float(
                elbo(m.model, m.guide, x, num_samples=1, batch_size=args.eval_batch).mean()
            )
        au_x = x[: args.active_size]
        if isinstance(m, VAE):
            from pyro_lgm.metrics import active_units

            units = [active_units(m.guide, au_x, num_samples=100, batch_size=args.eval_batch)[0]]
        else:
            units = m.active_units(au_x, num_samples=100, batch_size=args.eval_batch)
        out["active_units"] = units
        out["latent_units"] = latent_units(m)
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    return out


def write_panels(kind: str, m: torch.nn.Module, directory: str, log) -> None:
    """The hierarchy panels (8 x 8) of a latent model as ``<kind>-<panel>.png``; the flat
    VAE has one latent layer: its ``z1`` and ``pixels`` panels."""
    from pyro_lgm.data import save_image_grid

    if isinstance(m, VAE):
        return  # the flat VAE has no generate(noise) API: nothing to show
    t0 = time.perf_counter()
    with torch.no_grad():
        panels = m.hierarchy_panels(rows=8, cols=8, seed=0)
    for name, grid in panels.items():
        path = os.path.join(directory, f"{kind}-{name}.png")
        save_image_grid(grid.reshape(-1, 1, 28, 28).float().cpu(), path, nrow=8, levels=2)
    log(f"{kind}: wrote {len(panels)} panels to {directory} in {time.perf_counter() - t0:.1f} s")


def latent_units(m: torch.nn.Module) -> list[int]:
    if isinstance(m, VAE):
        return [m.latent_dim]
    return [m.latent_shape(i).numel() for i in range(m.num_latent_layers)]


def table(rows: list[dict], samples: int, clock_kind: str, reference: str | None) -> str:
    """Markdown; each model's paired difference from ``reference`` (same test images)."""
    base = next((r for r in rows if r["model"] == reference), None)
    lines = [
        f"| model | params | budget ({clock_kind}-min) | steps | test -log p(x), IWAE "
        f"S={samples} (nats) | minus {reference}'s (paired) | -ELBO | active units / units "
        f"(z1, z2, ...) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = ""
        if base is not None and r is not base and len(r["per_image"]) == len(base["per_image"]):
            d = torch.tensor(base["per_image"]) - torch.tensor(r["per_image"])
            r["vs_ref"] = float(d.mean())
            r["vs_ref_se"] = float(d.std()) / math.sqrt(d.numel())
            diff = f"{r['vs_ref']:+.2f} ± {r['vs_ref_se']:.2f}"
        au = "exact log p(x), no latents"
        if "active_units" in r:
            au = ", ".join(
                f"{a}/{u}" for a, u in zip(r["active_units"], r["latent_units"], strict=True)
            )
        elbo_txt = f"{r['neg_elbo']:.2f}" if "neg_elbo" in r else "-"
        lines.append(
            f"| {r['model']} | {r['params']} | {r['minutes']:g} | {r['steps']} | "
            f"{r['nll']:.2f} ± {r['nll_se']:.2f} | {diff} | {elbo_txt} | {au} |"
        )
    lines.append(f"\n{rows[0]['test_images']} random test images (seed 1234), S = {samples}.")
    return "\n".join(lines)


def combine(paths: list[str], reference: str | None) -> str:
    rows, samples, clocks = [], set(), set()
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        rows += res["quality"]
        samples.add(res["samples"])
        clocks.add(res["clock"])
    if len(samples) != 1 or len(clocks) != 1:
        raise ValueError(f"the runs differ in --samples {samples} or clock {clocks}")
    return table(rows, samples.pop(), clocks.pop(), reference)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("PYRO_LGM_DATA"), help="data home")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    p.add_argument("--clock", choices=["cpu", "wall"], default=None)
    p.add_argument("--latents", type=int, nargs="+", default=[32, 16], help="z1, z2 sizes")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--stage", type=int, nargs="+", default=[128])
    p.add_argument("--pixelvae-latent", type=int, default=4, help="channels of each map")
    p.add_argument("--encoder-channels", type=int, default=32)
    p.add_argument("--pixel-channels", type=int, default=16)
    p.add_argument("--pixel-layers", type=int, default=3)
    p.add_argument("--upsample-channels", type=int, default=16)
    p.add_argument("--prior-channels", type=int, default=16)
    p.add_argument("--prior-layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=0.0, help="gradient-norm clipping (0: none)")
    p.add_argument("--warmup-steps", type=int, default=0, help="KL warm-up steps (0: none)")
    p.add_argument("--free-bits", type=float, default=0.0, help="KL floor per layer (nats)")
    p.add_argument(
        "--pixel-free-bits",
        type=float,
        default=None,
        help="the KL floor of pixelvae / pixelvae2 when it differs from --free-bits",
    )
    p.add_argument("--samples", type=int, default=5000, help="IWAE samples of the final test")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--eval-batch", type=int, default=25)
    p.add_argument("--test-size", type=int, default=500, help="random test images; 0 = all")
    p.add_argument("--active-size", type=int, default=1000, help="images for active units")
    p.add_argument("--curve-every", type=float, default=4.0, help="budget-minutes per point")
    p.add_argument("--curve-samples", type=int, default=20)
    p.add_argument("--curve-size", type=int, default=200)
    p.add_argument("--curve", default=None, help="append learning-curve JSON lines here")
    p.add_argument("--reference", default="vae", help="model the paired differences use")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--save-dir", default=None, help="save each trained model's state here")
    p.add_argument(
        "--load",
        default=None,
        metavar="DIR",
        help="skip training and evaluation: load <model>.pt from DIR (a --save-dir) and only "
        "write the panels of --panels-dir",
    )
    p.add_argument(
        "--panels-dir",
        default=None,
        help="write each latent model's hierarchy panels (vary only z2 / z1 / the pixel "
        "noise along each row) as PNGs here",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--combine", nargs="+", default=None, metavar="OUT_JSON")
    add_device_args(p)
    args = p.parse_args(argv)
    if args.combine:
        print(combine(args.combine, args.reference))
        return {}
    clock_kind = check_clock(p, args.clock, args.device) or "cpu"
    torch.set_num_threads(args.threads)
    clock = Clock(clock_kind, args.device, time.thread_time)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    train_x = load_binarized_mnist(args.data, "train", dtype=args.dtype).to(args.device)
    test_all = load_binarized_mnist(args.data, "test", dtype=args.dtype)
    g = torch.Generator().manual_seed(1234)
    perm = torch.randperm(test_all.shape[0], generator=g)
    test_x = test_all[perm[: args.test_size or None]].to(args.device)
    curve_x = test_all[perm[: args.curve_size]].to(args.device)
    result: dict = {
        "command": "python benchmarks/hvae.py " + shlex.join(argv or sys.argv[1:]),
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
    rows = []
    if args.load:
        for kind in args.models:
            m = build(kind, args)
            m.load_state_dict(torch.load(os.path.join(args.load, f"{kind}.pt")))
            m.eval()
            if args.panels_dir and kind != "decoder":
                write_panels(kind, m, args.panels_dir, log)
        return result
    for kind in args.models:
        m, curve = train_one(kind, train_x, curve_x, args, clock, log)
        ev = evaluate(kind, m, test_x, args)
        if args.panels_dir and kind != "decoder":
            write_panels(kind, m, args.panels_dir, log)
        row = {
            "model": kind,
            "params": sum(p.numel() for p in m.parameters()),
            "minutes": args.minutes,
            "steps": curve[-1]["steps"],
            "epochs": curve[-1]["epoch"],
            **ev,
            "curve": curve,
        }
        log(json.dumps({k: v for k, v in row.items() if k not in ("curve", "per_image")}))
        rows.append(row)
        if args.save_dir:
            torch.save(m.state_dict(), os.path.join(args.save_dir, f"{kind}.pt"))
        pyro.clear_param_store()
    result["quality"] = rows
    print(table(rows, args.samples, clock_kind, args.reference))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
