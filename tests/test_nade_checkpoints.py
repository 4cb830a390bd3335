"""Saved weights of the NADE family keep loading.

``tests/data/nade_family_v1.pt`` was written by ``python -m tests.test_nade_checkpoints``
at commit 27b1e2c, before the networks moved to ``pyro_lgm.nn`` (``pyro_lgm.models.NADE``
then held its parameters itself). It holds, for each model below, its ``state_dict``, a
batch of inputs and the log-likelihoods the model gave them. A model built today with a
different seed must load that ``state_dict`` with ``strict=True`` (the same keys) and give
the same log-likelihoods.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyro_lgm import models as lm

FIXTURE = Path(__file__).parent / "data" / "nade_family_v1.pt"


def _builders():
    """name -> (build(seed), inputs(generator), context(generator) or None)."""

    def binary(g, d):
        return torch.bernoulli(torch.full((6, d), 0.5), generator=g)

    def real(g, d):
        return torch.randn(6, d, generator=g)

    def ctx(g, c):
        return torch.randn(6, c, generator=g)

    return {
        "nade": (lambda s: lm.NADE(5, hidden=4, order="random", seed=s), binary, None),
        "nade_context": (
            lambda s: lm.NADE(5, hidden=4, activation="relu", context_dim=2, seed=s),
            binary,
            2,
        ),
        "rnade": (
            lambda s: lm.RNADE(4, hidden=3, num_components=2, order="reversed", seed=s),
            real,
            None,
        ),
        "rnade_context": (
            lambda s: lm.RNADE(4, hidden=3, num_components=2, context_dim=3, seed=s),
            real,
            3,
        ),
        "deepnade": (
            lambda s: lm.DeepNADE(5, hidden_dims=(6, 4), order="random", seed=s),
            binary,
            None,
        ),
        "deepnade_context": (
            lambda s: lm.DeepNADE(5, hidden_dims=(6,), activation="tanh", context_dim=2, seed=s),
            binary,
            2,
        ),
        "made": (lambda s: lm.MADE(5, (8, 8), order="random", seed=s), binary, None),
        "made_mog": (lambda s: lm.MADE(3, (8,), "mog", num_components=2, seed=s), real, None),
    }


def _perturbed(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model


def _write(path=FIXTURE):
    out = {}
    for i, (name, (build, inputs, context_dim)) in enumerate(_builders().items()):
        model = _perturbed(build(100 + i), 200 + i)
        g = torch.Generator().manual_seed(300 + i)
        d = model.features
        x = inputs(g, d)
        context = None if context_dim is None else torch.randn(6, context_dim, generator=g)
        with torch.no_grad():
            lp = model(context).log_prob(x)
        out[name] = {"state_dict": model.state_dict(), "x": x, "context": context, "lp": lp}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)


@pytest.mark.parametrize("name", list(_builders()))
def test_old_checkpoint_loads_and_gives_the_same_log_prob(name):
    saved = torch.load(FIXTURE, weights_only=True)[name]
    build = _builders()[name][0]
    model = build(7)  # another seed: every number must come from the checkpoint
    with torch.no_grad():
        before = model(saved["context"]).log_prob(saved["x"])
    assert not torch.allclose(before, saved["lp"])
    model.load_state_dict(saved["state_dict"], strict=True)
    assert set(model.state_dict()) == set(saved["state_dict"])
    with torch.no_grad():
        lp = model(saved["context"]).log_prob(saved["x"])
    torch.testing.assert_close(lp, saved["lp"], rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    _write()
