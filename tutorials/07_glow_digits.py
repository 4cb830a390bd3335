"""Tutorial 7: Glow on 8-bit 8x8 digits - bits/dim, temperature, interpolation, Pyro.

``pyro_lgm.models.glow`` builds a multi-scale Glow as an ``nn.Module``; calling it returns a
``TransformedDistribution`` over *dequantized* images ``v = x + u`` in ``[0, 256)^(1x8x8)``
(``u ~ U[0, 1)``). Every preprocessing step (the logit transform, the scaling to 256
levels) is a transform with an exact log-det, so ``-log p(v) / (64 log 2)`` is the bits/dim
the papers report, with no correction left to the user. ``model.bits_per_dim(x)`` does the
dequantization for integer images. ``model.sample(..., temperature=T)`` draws from the base
at standard deviation ``T`` (Glow's 0.7 gives cleaner digits); ``encode`` / ``decode`` map
images to latents and back, so two digits can be interpolated in latent space. The data are
scikit-learn's digits as 8-bit images: no download (only 17 grey levels occur, so the
figure is comparable with nothing published).

Run::

    python tutorials/07_glow_digits.py                 # about a minute on one thread
    python tutorials/07_glow_digits.py --png glow.png  # also a PNG of samples and a path

Measured on 2026-12-01 (one thread, 1500 steps, 59 s on a busy 2-core machine): test 5.15
bits/dim (uniform noise is 8; a 256-way Gated PixelCNN reaches 1.80 here, because a
continuous density spreads over the 239 empty levels between the 17 that occur). The PNG
holds two rows of samples at temperature 0.7, one at 1.0, and a row interpolating between
two test digits.
"""

import argparse

import pyro
import torch

from pyro_lgm.data import load_digits_images, save_image_grid
from pyro_lgm.models import glow


def main(steps=1500, png=None):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = load_digits_images("train", bits=8).float()  # (1197, 1, 8, 8), values 0..255
    test = load_digits_images("test", bits=8).float()

    model = glow((1, 8, 8), levels=2, steps=4, hidden=32)  # an nn.Module
    optim = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        i = torch.randint(len(x), (64,))
        loss = model.bits_per_dim(x[i]).mean()  # the first call initialises ActNorm
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        bpd = model.bits_per_dim(test, generator=torch.Generator().manual_seed(0)).mean().item()
    print(f"trained {steps} steps; test {bpd:.3f} bits/dim (uniform: 8)")

    # the same distribution inside a Pyro program, on dequantized images
    with torch.no_grad():
        v = model.dequantize(test[:16])
        program = lambda: pyro.sample("x", model(), obs=v)  # noqa: E731
        trace = pyro.poutine.trace(program).get_trace()
        direct = model().log_prob(v).sum().item()
        print(f"Pyro trace log-prob {trace.log_prob_sum().item():.3f} (direct: {direct:.3f})")

    # samples at two temperatures, and a straight line in latent space between two digits
    with torch.no_grad():
        cool = model.sample((16,), temperature=0.7)
        warm = model.sample((8,), temperature=1.0)
        z = model.encode(model.dequantize(test[:2]))
        w = torch.linspace(0, 1, 8).view(-1, 1, 1, 1)
        path = model.dequantizer.quantize(model.decode((1 - w) * z[0] + w * z[1]))
    ends = bool((path[0] == test[0]).all() and (path[-1] == test[1]).all())
    print(f"sampled {tuple(cool.shape)} at T=0.7; the path starts and ends at the digits: {ends}")
    if png:
        save_image_grid(torch.cat([cool, warm, path]), png, nrow=8, levels=256)
        print(f"wrote {png}")
    return bpd


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--png", default=None, help="write samples and an interpolation here")
    args = parser.parse_args()
    main(args.steps, args.png)
