"""Tutorial 4: fit planar and radial flows to an unnormalized density (reverse KL).

Sometimes the target is known only up to a constant: a potential U with
p(z) = exp(-U(z)) / Z, as for a posterior. There are no data to fit by maximum likelihood,
but a flow q can still be fitted by minimizing the reverse KL divergence, which needs samples
of q only:

    KL(q || p) = E_q[log q(z) + U(z)] + log Z.

log Z does not depend on q, so training minimizes the free energy E_q[log q + U], estimated
from reparametrized samples. This is the experiment of Rezende & Mohamed (2015, Figure 3)
on their four 2-D potentials U1-U4 (``pyro_lgm.data.energy``). In two dimensions log Z can
be computed on a grid, so we can report the KL itself in nats.

Run: ``python tutorials/04_energies.py --out energies.png`` (8 fits of 8 layers, 1500 steps
each: about three CPU-minutes on one core; KL 0.16-0.54 nats for planar, 0.44-0.77 for
radial) or ``--full`` for the paper's deepest flows, 32 layers and 4000 steps per fit as in
``benchmarks/energies.py`` (about 2-3 CPU-minutes per fit). The figure shows each target
beside the densities of the fitted planar and radial flows on the paper's window
[-4, 4]^2.
"""

import argparse
import math

import torch

from pyro_lgm.data import ENERGIES, energy, log_normalizer, reverse_kl, rsample_with_log_prob
from pyro_lgm.models import planar_flow, radial_flow

FLOWS = {"planar": planar_flow, "radial": radial_flow}


def fit(flow, U, steps, batch=256, lr=1e-2):
    """Minimize the Monte Carlo free energy mean(log q(z) + U(z)), z ~ q."""
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    for t in range(steps):
        for group in opt.param_groups:  # cosine decay of the learning rate
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        # samples and their log-densities in one forward pass (no inverse needed)
        z, log_q = rsample_with_log_prob(flow(), (batch,))
        loss = (log_q + U(z)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flow


def main(out=None, steps=1500, layers=8, grid=150, eval_samples=50_000):
    torch.set_num_threads(1)  # tiny 2-D models: one thread is fastest
    kls, densities = {}, {}
    for name in ENERGIES:
        # 1. The target: a potential, and its log-normalizer on a grid ([-12, 12]^2).
        U = energy(name)
        log_z = log_normalizer(U)
        for flow_name, make in FLOWS.items():
            # 2. A flow q, fitted by minimizing the reverse KL.
            torch.manual_seed(0)
            flow = fit(make(2, layers), U, steps)
            # 3. KL(q || p) = E_q[log q + U] + log Z, with its Monte Carlo standard error.
            est = reverse_kl(flow(), U, num_samples=eval_samples, log_z=log_z)
            kls[name, flow_name] = est.kl
            print(
                f"{name} {flow_name:6s} K={layers}: KL(q || p) = {est.kl:.3f} "
                f"+- {est.stderr:.3f} nats",
                flush=True,
            )
            densities[name, flow_name] = flow
    if out:
        plot(out, densities, grid)
    return kls


def plot(out, flows, grid):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = torch.linspace(-4, 4, grid)
    z = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1)  # rows: z2, columns: z1
    fig, axes = plt.subplots(len(ENERGIES), 3, figsize=(7.5, 2.5 * len(ENERGIES)))
    for i, name in enumerate(ENERGIES):
        U = energy(name)
        panels = [("target exp(-U)", torch.exp(-U(z)))]
        with torch.no_grad():  # exact densities: the flows invert every layer
            for flow_name in FLOWS:
                q = flows[name, flow_name]()
                panels.append((flow_name, q.log_prob(z.reshape(-1, 2)).exp().reshape(grid, grid)))
        for j, (title, density) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(density.numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="save a PNG of the targets beside the fitted densities")
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per fit")
    parser.add_argument("--layers", type=int, default=8, help="layers K of each flow")
    parser.add_argument(
        "--full", action="store_true", help="the paper's depth: 32 layers, 4000 steps per fit"
    )
    args = parser.parse_args()
    if args.full:
        args.steps, args.layers = 4000, 32
    main(args.out, args.steps, args.layers)
