"""Property-suite cases for the coupling family: NICE / RealNVP couplings, their conditional
variants, NICE's diagonal scaling, ActNorm and the permutations."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from pyro_lgm.models import realnvp
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    DiagonalScale,
    Permute,
    Reverse,
    additive_coupling,
    affine_coupling,
    conditional_additive_coupling,
    conditional_affine_coupling,
)
from tests.cases import (
    ContextCheck,
    TransformCase,
    perturbed_context_case,
)


def draw_mask(draw, d: int):
    """A mask kind, or an explicit random bool mask with both values present."""
    kind = draw(st.sampled_from(["half", "alternating", "explicit"]), label="mask kind")
    if kind != "explicit":
        return kind
    bits = draw(
        st.lists(st.booleans(), min_size=d, max_size=d).filter(lambda b: 0 < sum(b) < d),
        label="mask",
    )
    return torch.tensor(bits)


def perturb_last_layer(net: torch.nn.Module, scale: float = 1.0) -> None:
    """Give the zero-initialised last layer random weights so the layer is not the identity."""
    last = net.layers[-1]
    with torch.no_grad():
        last.weight.normal_(0.0, scale / math.sqrt(last.weight.shape[1]))
        last.bias.normal_(0.0, 0.5 * scale)


def draw_x(draw, d: int, dtype, device):
    batch = draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=4), label="batch")
    return draw(lst.tensors((*batch, d), dtype=dtype, device=device), label="x")


def draw_context(draw, x: torch.Tensor, context_dim: int, dtype, device):
    """A context whose batch broadcasts against x's: unbatched, same batch, or an outer batch."""
    batch = x.shape[:-1]
    how = draw(st.sampled_from(["unbatched", "same", "outer"]), label="context batch")
    if how == "unbatched":
        shape = (context_dim,)
    elif how == "same":
        shape = (*batch, context_dim)
    else:
        shape = (2, *([1] * len(batch)), context_dim)
    return draw(lst.tensors(shape, dtype=dtype, device=device), label="context")


def _make_coupling(helper, cls):
    def make(draw, dtype, device):
        d = draw(st.integers(2, 32), label="D")
        invert = draw(st.booleans(), label="invert")
        hidden = [draw(st.integers(4, 16), label="hidden")]
        t = helper(d, hidden, draw_mask(draw, d), invert)
        assert isinstance(t, cls)
        perturb_last_layer(t.conditioner)
        t = t.to(dtype=dtype, device=device)
        return t, draw_x(draw, d, dtype, device)

    return make


def _make_conditional(helper, cls):
    def make(draw, dtype, device):
        d = draw(st.integers(2, 32), label="D")
        c = draw(st.integers(1, 4), label="context_dim")
        invert = draw(st.booleans(), label="invert")
        hidden = [draw(st.integers(4, 16), label="hidden")]
        module = helper(d, c, hidden, draw_mask(draw, d), invert)
        assert isinstance(module, cls)
        perturb_last_layer(module.conditioner)
        module = module.to(dtype=dtype, device=device)
        x = draw_x(draw, d, dtype, device)
        context = draw_context(draw, x, c, dtype, device)
        return module.condition(context), x

    return make


def make_diagonal_scale(draw, dtype, device):
    d = draw(st.integers(2, 32), label="D")
    t = DiagonalScale(d)
    with torch.no_grad():
        t.log_scale.normal_(0.0, 0.7)
    t = t.to(dtype=dtype, device=device)
    return t, draw_x(draw, d, dtype, device)


def make_actnorm(draw, dtype, device):
    d = draw(st.integers(2, 32), label="D")
    t = ActNorm(d).to(dtype=dtype, device=device)
    loc = draw(lst.tensors((d,), dtype=dtype, device=device, scale=3.0), label="data loc")
    # In float32 the round trip of y = s x + b itself loses about |b| / s * 6e-8 (b rounds
    # to float32), whatever the implementation: a feature with mean 10 and std e^-6 gives
    # 2e-4. Float64 keeps the wide range of data scales; float32 draws log-stds half as
    # spread (|mean| / std up to a few hundred), inside the kit's 1e-4 tolerance.
    log_std_scale = 1.0 if dtype == torch.float64 else 0.5
    log_std = draw(
        lst.tensors((d,), dtype=dtype, device=device, scale=log_std_scale), label="data log-std"
    )
    data = loc + log_std.exp() * torch.randn(16, d, dtype=dtype, device=device)
    direction = draw(st.sampled_from(["forward", "inverse"]), label="init direction")
    # The first call initialises the layer from this batch.
    if direction == "forward":
        t(data)
    else:
        t.inv(data)
    assert bool(t.initialized)
    return t, draw_x(draw, d, dtype, device)


def make_permute(draw, dtype, device):
    d = draw(st.integers(2, 32), label="D")
    seed = draw(lst.seeds(), label="permutation seed")
    perm = torch.randperm(d, generator=torch.Generator().manual_seed(seed))
    t = Permute(perm).to(device=device)
    return t, draw_x(draw, d, dtype, device)


def make_reverse(draw, dtype, device):
    d = draw(st.integers(2, 32), label="D")
    return Reverse(d).to(device=device), draw_x(draw, d, dtype, device)


def _context_check(helper):
    """A perturbed conditional coupling layer, or a conditional RealNVP, on 8 contexts."""

    def make(draw, dtype, device):
        d = draw(st.integers(2, 8), label="D")
        c = draw(st.integers(1, 4), label="context_dim")
        hidden = [draw(st.integers(4, 16), label="hidden")]
        if helper is realnvp:
            module = realnvp(d, num_layers=2, hidden_dims=hidden, context_dim=c)
        else:
            invert = draw(st.booleans(), label="invert")
            module = helper(d, c, hidden, draw_mask(draw, d), invert)
        return perturbed_context_case(draw, module, d, c, dtype, device)

    return make


TRANSFORM_CASES = [
    TransformCase(
        "additive_coupling",
        (AdditiveCoupling,),
        _make_coupling(additive_coupling, AdditiveCoupling),
    ),
    TransformCase(
        "affine_coupling", (AffineCoupling,), _make_coupling(affine_coupling, AffineCoupling)
    ),
    TransformCase(
        "conditional_additive_coupling",
        (ConditionalAdditiveCoupling, AdditiveCoupling),
        _make_conditional(conditional_additive_coupling, ConditionalAdditiveCoupling),
        context_checks=[
            ContextCheck(
                "layer",
                (ConditionalAdditiveCoupling, conditional_additive_coupling),
                _context_check(conditional_additive_coupling),
            )
        ],
    ),
    TransformCase(
        "conditional_affine_coupling",
        (ConditionalAffineCoupling, AffineCoupling),
        _make_conditional(conditional_affine_coupling, ConditionalAffineCoupling),
        context_checks=[
            ContextCheck(
                "layer",
                (ConditionalAffineCoupling, conditional_affine_coupling),
                _context_check(conditional_affine_coupling),
            ),
            ContextCheck("realnvp", (realnvp,), _context_check(realnvp)),
        ],
    ),
    TransformCase("diagonal_scale", (DiagonalScale,), make_diagonal_scale),
    TransformCase("actnorm", (ActNorm,), make_actnorm),
    TransformCase("permute", (Permute,), make_permute),
    TransformCase("reverse", (Reverse, Permute), make_reverse),
]
