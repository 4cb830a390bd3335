"""Tutorial 1: fit a flow to two moons, sample from it, and use it inside a Pyro model.

A pyro-lgm model is an ``nn.Module`` whose call returns a distribution bound to its current
parameters. Here a masked autoregressive flow (MAF) learns the two-moons density by
maximum likelihood with :func:`pyro_lgm.train.fit`; because the target's density is known
exactly, we can also report KL(target || model) = E_target[log p - log q].

Run: ``python tutorials/01_quickstart.py`` (about half a minute on one CPU core), or with
``--out moons.png`` to also save a picture. The command-line twin of this script is
``pyro-lgm demo``.
"""

import argparse
import math

import pyro
import pyro.poutine as poutine
import torch

from pyro_lgm.data import TwoMoons
from pyro_lgm.models import maf
from pyro_lgm.train import fit


def main(out=None, steps=1500):
    torch.set_num_threads(1)  # tiny 2-D models: one thread is fastest
    pyro.set_rng_seed(0)

    # 1. A target with an exact log-density, and samples from it.
    target = TwoMoons(noise=0.1)
    train_x = target.sample((20_000,))
    test_x = target.sample((10_000,))

    # 2. A flow: an nn.Module; flow() is a TransformedDistribution over N(0, I).
    flow = maf(2, hidden_dims=[64], num_layers=5, seed=0)

    # 3. Maximum likelihood: minimize -flow().log_prob(x).mean() over mini-batches.
    result = fit(flow, train_x, steps=steps, batch_size=256, lr=3e-3, eval_data=test_x)
    print(f"trained {result.steps} steps in {result.wall_time:.1f} s")
    print(
        f"eval NLL every {result.eval_steps[1] - result.eval_steps[0]} steps:",
        " ".join(f"{v:.3f}" for v in result.eval_loss),
    )

    # 4. Exact log-likelihoods: test NLL and KL(p || q) estimated from target samples.
    with torch.no_grad():
        log_q = flow().log_prob(test_x)
        log_p = target.log_prob(test_x)
    kl = (log_p - log_q).mean().item()
    se = (log_p - log_q).std().item() / math.sqrt(len(test_x))
    print(
        f"test NLL = {-log_q.mean().item():.3f} nats, "
        f"KL(target || flow) = {kl:.3f} +- {se:.3f} nats"
    )

    # 5. Sampling: the flow's distribution samples like any other.
    with torch.no_grad():
        samples = flow().sample((5,))
    print("five samples from the flow:\n", samples)

    # 6. Pyro: the flow's distribution is an ordinary observation site.
    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", flow(), obs=x)

    trace = poutine.trace(model).get_trace(test_x[:100])
    print(
        f"log p(x) of 100 points via a Pyro trace: {trace.log_prob_sum().item():.3f} "
        f"(direct: {flow().log_prob(test_x[:100]).sum().item():.3f})"
    )

    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with torch.no_grad():
            s = flow().sample((3000,))
        fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
        axes[0].scatter(*test_x[:3000].T, s=2)
        axes[0].set_title("two moons")
        axes[1].scatter(*s.T, s=2, color="tab:orange")
        axes[1].set_title("MAF samples")
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return kl


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="save a PNG of data and flow samples")
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    args = parser.parse_args()
    main(args.out, args.steps)
