"""The blocked NADE pass with its hand-written backward agrees with autograd of the plain pass.

``pyro_lgm.nn._nade_kernel`` replaces autograd for the NADE teacher-forcing pass;
a wrong index in its reverse running sum would still give finite, plausible gradients, so
every gradient (values, both weights, both biases, shared or per-example hidden bias) is
compared with autograd of the straightforward cumulative-sum pass.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_lgm.models import NADE
from pyro_lgm.nn._nade_kernel import nade_logits
from pyro_lgm.testing import tolerance
from tests.cases import examples


def reference_logits(x, w, c, v, b, activation):
    """The textbook pass: a_k = c + sum_{j<k} w_j x_j, one (N, D, H) tensor, plain autograd."""
    terms = x.unsqueeze(-1) * w  # (N, D, H)
    prefix = torch.cumsum(terms, 1) - terms  # exclusive running sum
    a = (c.unsqueeze(-2) if c.dim() == 2 else c) + prefix
    h = torch.sigmoid(a) if activation == "sigmoid" else torch.relu(a)
    return (h * v).sum(-1) + b


@settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 5),
    d=st.integers(1, 21),
    h=st.integers(1, 6),
    block=st.integers(1, 9),
    activation=st.sampled_from(["sigmoid", "relu"]),
    per_example_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_autograd(device, dtype, n, d, h, block, activation, per_example_bias, seed):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device, dtype)

    # real-valued x: the kernel is a function of real inputs too, and its x-gradient is what
    # assert_autoregressive reads
    x = randn(n, d).requires_grad_(True)
    w, v = randn(d, h).requires_grad_(True), randn(d, h).requires_grad_(True)
    c = (randn(n, h) if per_example_bias else randn(h)).requires_grad_(True)
    b = randn(d).requires_grad_(True)
    out = nade_logits(x, w, c, v, b, activation, block)
    ref = reference_logits(x, w, c, v, b, activation)
    tol = tolerance(dtype)
    torch.testing.assert_close(out, ref, **tol)
    weights = randn(n, d)
    got = torch.autograd.grad((out * weights).sum(), (x, w, c, v, b))
    want = torch.autograd.grad((ref * weights).sum(), (x, w, c, v, b))
    for name, a, e in zip("xwcvb", got, want):
        torch.testing.assert_close(a, e, **tol, msg=lambda m, name=name: f"grad {name}: {m}")


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((3, 7), (7, 4), (3, 4))]
    args += [
        torch.randn(7, 4, generator=g, dtype=torch.float64),
        torch.randn(7, dtype=torch.float64),
    ]
    for a in args:
        a.requires_grad_(True)
    for activation in ("sigmoid", "relu"):
        assert torch.autograd.gradcheck(lambda *t, act=activation: nade_logits(*t, act, 3), args)


def test_nade_distribution_uses_kernel_and_matches_generic_pass():
    """The NADE distribution's fast path equals the generic block pass of ``_RunningNADE``."""
    from pyro_lgm.distributions.nade import _RunningNADE

    model = NADE(9, hidden=5, order="random", seed=3, context_dim=2).double()
    x = torch.bernoulli(torch.full((4, 9), 0.5, dtype=torch.float64))
    ctx = torch.randn(4, 2, dtype=torch.float64)
    d = model(ctx)
    fast = d._params(x, ctx)[0]
    slow = _RunningNADE._params(d, x, ctx)[0]
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("kind", ["network", "model"])
def test_distribution_of_a_plain_network_or_model_takes_the_kernel(kind, monkeypatch):
    """``distributions.NADE`` runs the kernel for a ``pyro_lgm.nn.NADE`` network and for the
    ``pyro_lgm.models.NADE`` subclass (which overrides none of the generic methods), and
    both give the same numbers from the same weights."""
    import pyro_lgm.nn.nade as nets
    from pyro_lgm import distributions as ld

    calls = []

    def counting(*args):
        calls.append(1)
        return nade_logits(*args)

    monkeypatch.setattr(nets, "nade_logits", counting)
    cls = nets.NADE if kind == "network" else NADE
    net = cls(6, hidden=4, order="random", context_dim=2, seed=5).double()
    other = (NADE if kind == "network" else nets.NADE)(6, hidden=4, context_dim=2, seed=9)
    other = other.double()
    other.load_state_dict(net.state_dict())
    x = torch.bernoulli(torch.full((3, 6), 0.5, dtype=torch.float64))
    ctx = torch.randn(3, 2, dtype=torch.float64)
    lp = ld.NADE(net, ctx).log_prob(x)
    assert len(calls) == 1
    torch.testing.assert_close(ld.NADE(other, ctx).log_prob(x), lp, rtol=0, atol=0)


def test_kernel_rejects_bad_shapes():
    with pytest.raises(ValueError, match="x, w, v"):
        nade_logits(
            torch.zeros(2, 3), torch.zeros(4, 5), torch.zeros(5), torch.zeros(4, 5), torch.zeros(4)
        )
    with pytest.raises(ValueError, match="c: expected"):
        nade_logits(
            torch.zeros(2, 3), torch.zeros(3, 5), torch.zeros(4), torch.zeros(3, 5), torch.zeros(3)
        )
    with pytest.raises(ValueError, match="activation"):
        nade_logits(
            torch.zeros(2, 3),
            torch.zeros(3, 5),
            torch.zeros(5),
            torch.zeros(3, 5),
            torch.zeros(3),
            "tanh",
        )
