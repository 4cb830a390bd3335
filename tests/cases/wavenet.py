"""WaveNet: categorical and logistic-mixture outputs over short sequences of few levels.

The sequences are short enough to enumerate (``assert_normalized`` sums over 4^4 two-bit
sequences of length 4 and 4^3 for the mixture). The autoregressive check runs on sequences
longer than the receptive field, with ``within=`` the band of the ``R`` predecessors:
every sample in it must reach the output, none outside it (nor the current or a later one).
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import pyro_lgm.distributions as ld
import pyro_lgm.nn as lnn
from tests.cases import CONTEXT_BATCH, ContextCheck, DistributionCase, live_units, perturb_all


def _ready(net: torch.nn.Module, draw, dtype, device, live: bool = False) -> torch.nn.Module:
    seed = draw(st.integers(0, 2**31 - 1), label="weights seed")
    perturb_all(net, seed, scale=0.5 if live else 1.0)
    if live:
        live_units(net)
        # positive biases keep the skips positive (a sum of several), and a head1 with
        # negative weights can then be dead at every step (Hypothesis found one): a network
        # with no dependence to check. Positive head1 weights keep the head alive.
        with torch.no_grad():
            net.head1.weight.abs_()
    return net.to(dtype=dtype, device=device).eval()


def _small(**kw) -> lnn.WaveNet:
    return lnn.WaveNet(3, 3, 3, **kw)


def _categorical(draw, dtype, device):
    net = _small(layers_per_stack=2, bits=2, kernel_size=draw(st.integers(2, 3)))
    return ld.WaveNet(_ready(net, draw, dtype, device), 4)


def _mixture(draw, dtype, device):
    net = _small(
        layers_per_stack=2, output="logistic_mixture", bits=2, num_mixtures=draw(st.integers(1, 3))
    )
    return ld.WaveNet(_ready(net, draw, dtype, device), 3)


def _global_class(draw, dtype, device):
    net = _small(layers_per_stack=1, stacks=2, bits=1, num_classes=3)
    labels = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)), device=device)
    return ld.WaveNet(_ready(net, draw, dtype, device), 4, global_context=labels)


def band(length: int, field: int) -> torch.Tensor:
    """``(T, T)`` bool: ``[t, j]`` when ``t - field <= j < t``."""
    i = torch.arange(length)
    diff = i[:, None] - i[None, :]
    return (diff >= 1) & (diff <= field)


def _autoregressive(make_net, length):
    def case(draw, dtype, device):
        net = _ready(make_net(), draw, dtype, device, live=True)
        d = ld.WaveNet(net, length, validate_args=False)
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1), label="x seed"))
        top = net.levels - 1
        x = (torch.rand(4, length, generator=g, dtype=torch.float64) * top).to(dtype).to(device)
        within = band(length, net.receptive_field).to(device)
        return d.conditional_params, x, None, dict(no_blind_spot=True, within=within)

    return case


def _context_check(draw, dtype, device):
    net = _ready(_small(layers_per_stack=2, bits=2, global_dim=3), draw, dtype, device, live=True)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1), label="seed"))
    x = torch.randint(0, net.levels, (CONTEXT_BATCH, 5), generator=g).to(dtype).to(device)
    ctx = torch.randn(CONTEXT_BATCH, 3, generator=g, dtype=torch.float64).to(dtype).to(device)
    other = ctx + torch.randn(CONTEXT_BATCH, 3, generator=g, dtype=torch.float64).to(ctx)
    return (lambda context: ld.WaveNet(net, 5, global_context=context)), x, ctx, other


DISTRIBUTION_CASES = [
    DistributionCase(
        name="wavenet_categorical",
        covers=(ld.WaveNet,),
        make=_categorical,
        autoregressive=_autoregressive(lambda: _small(layers_per_stack=2, bits=2), 9),
        context_checks=[ContextCheck("wavenet_global_vector", (ld.WaveNet,), _context_check)],
    ),
    DistributionCase(
        name="wavenet_logistic_mixture",
        covers=(ld.WaveNet,),
        make=_mixture,
        autoregressive=_autoregressive(
            lambda: _small(
                layers_per_stack=2, stacks=2, kernel_size=3, output="logistic_mixture", bits=3
            ),
            20,
        ),
    ),
    DistributionCase(name="wavenet_global_class", covers=(ld.WaveNet,), make=_global_class),
]
