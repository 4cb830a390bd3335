"""Tutorial 3: NADE, order-agnostic DeepNADE (EoNADE) and MADE on binarized 8x8 digits.

The autoregressive models of pyro-lgm are ``nn.Module``s whose call returns a
``TorchDistribution`` over binary vectors, with an exact ``log_prob`` (one parallel pass by
teacher forcing), ancestral ``sample`` and per-position conditionals. This script trains
three of them by maximum likelihood on scikit-learn's bundled digits (no download),
thresholded at grey level 8, and reports test NLLs in nats and bits per pixel.

* NADE (Larochelle & Murray, 2011): a single ordering, weights shared across positions.
* DeepNADE trained on random orderings (Uria et al., 2014), evaluated as EoNADE: the
  mixture ``log (1/K) sum_k p(x | o_k)`` over ``K`` orderings, which is a likelihood.
  Averaging the orderings' logits would not be, so the library never does it.
* MADE (Germain et al., 2015) with its masks redrawn at every step (connectivity-agnostic
  training) and evaluated as the ``logsumexp`` ensemble over mask sets.

Run: ``python tutorials/03_autoregressive_digits.py`` (about a minute on one CPU core), or
``--steps 3000`` for better figures.
"""

import argparse
import math

import pyro
import pyro.poutine as poutine
import torch

from pyro_lgm.data import load_digits
from pyro_lgm.models import MADE, NADE, DeepNADE
from pyro_lgm.testing import assert_normalized
from pyro_lgm.train import fit

D = 64  # 8 x 8 pixels


def nats_and_bits(log_prob: torch.Tensor) -> str:
    nll = -log_prob.mean().item()
    return f"{nll:.2f} nats ({nll / (D * math.log(2)):.3f} bits/pixel)"


def show(images: torch.Tensor) -> str:
    """8x8 binary images side by side as text."""
    rows = []
    for r in range(8):
        rows.append("   ".join("".join("#" if v else "." for v in img[r]) for img in images))
    return "\n".join(rows)


def main(steps=1500):
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)

    # 1. Data: binary {0, 1} digits as float tensors (N, 64).
    train_x = load_digits(binarize=True, split="train", dtype=torch.float32)
    valid_x = load_digits(binarize=True, split="valid", dtype=torch.float32)
    test_x = load_digits(binarize=True, split="test", dtype=torch.float32)
    print(f"digits: train {len(train_x)}, valid {len(valid_x)}, test {len(test_x)}")

    # 2. NADE: model() is a Distribution with event shape (64,); fit() minimizes its NLL and
    #    keeps the parameters that were best on the validation data.
    nade = NADE(D, hidden=64, seed=0)
    fit(nade, train_x, steps=steps, batch_size=64, lr=3e-3, eval_data=valid_x, progress=False)
    with torch.no_grad():
        lp_nade = nade().log_prob(test_x)
    print(f"NADE test NLL: {nats_and_bits(lp_nade)}")

    # 3. The per-position conditionals are Distributions too: Bernoulli(probs) with batch
    #    shape (..., 64), and their log-probabilities add up to the joint log_prob.
    with torch.no_grad():
        cond = nade().conditionals(test_x[:1])
        total = cond.log_prob(test_x[:1]).sum(-1)
    print(
        f"conditionals: {type(cond).__name__} with batch shape {tuple(cond.batch_shape)}; "
        f"sum of their log-probs {total.item():.4f} = log_prob {lp_nade[0].item():.4f}"
    )

    # 4. Ancestral sampling, one position after the other.
    with torch.no_grad():
        samples = nade().sample((6,)).view(-1, 8, 8)
    print("six NADE samples:\n" + show(samples))

    # 5. Pyro: the distribution is an ordinary observation site.
    def model(x):
        pyro.module("nade", nade)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", nade(), obs=x)

    trace = poutine.trace(model).get_trace(test_x[:100])
    print(
        f"log p(x) of 100 test digits via a Pyro trace: {trace.log_prob_sum().item():.3f} "
        f"(direct: {lp_nade[:100].sum().item():.3f})"
    )

    # 6. Order-agnostic DeepNADE: each step draws a random ordering and a random prefix
    #    length per example (the unbiased estimator of the expected NLL over orderings).
    deep = DeepNADE(D, hidden_dims=(128, 128), seed=0)
    fit(
        deep,
        train_x,
        loss=lambda m, x: m.order_agnostic_loss(x).mean(),
        steps=steps,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        lp_one = deep(order=deep.random_orders(1, generator=g)[0]).log_prob(test_x)
        lp_ens = deep.ensemble_log_prob(test_x, num_orderings=8, generator=g)
    print(f"DeepNADE, one random ordering: {nats_and_bits(lp_one)}")
    print(f"EoNADE, mixture of 8 orderings: {nats_and_bits(lp_ens)}")

    # 7. MADE, connectivity-agnostic: a callable loss redraws the masks before every step.
    made = MADE(D, hidden_dims=(256, 256), seed=0)

    def made_loss(m, x):
        m.resample_masks()
        return -m().log_prob(x).mean()

    fit(made, train_x, loss=made_loss, steps=steps, batch_size=64, lr=3e-3, progress=False)
    with torch.no_grad():
        lp_made = made.ensemble_log_prob(test_x, num_masks=8, generator=g)
    print(f"MADE, ensemble of 8 mask sets: {nats_and_bits(lp_made)}")

    # 8. The testing kit checks normalization exactly on a small model (2^10 vectors).
    small = NADE(10, hidden=8, seed=0)
    assert_normalized(small())
    print("a 10-pixel NADE sums to one over all 1024 binary vectors")
    return {
        "nade": -lp_nade.mean().item(),
        "eonade": -lp_ens.mean().item(),
        "made": -lp_made.mean().item(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model")
    args = parser.parse_args()
    main(args.steps)
