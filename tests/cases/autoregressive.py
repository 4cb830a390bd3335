"""Property-suite cases for the affine autoregressive transforms (IAF / MAF layers)."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from pyro_lgm.models import iaf, maf
from pyro_lgm.nn import MADE
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    affine_autoregressive,
    conditional_affine_autoregressive,
)
from tests.cases import (
    ContextCheck,
    TransformCase,
    perturbed_context_case,
)


def draw_order(draw, d: int):
    kind = draw(st.sampled_from(["natural", "reversed", "random", "explicit"]), label="order")
    if kind != "explicit":
        return kind
    return draw(st.permutations(list(range(d))), label="permutation")


def perturb(made: MADE, scale: float = 0.5) -> None:
    """Random weights everywhere (the last layer starts at zero: the identity)."""
    with torch.no_grad():
        for p in made.parameters():
            fan_in = p.shape[-1] if p.dim() == 2 else 1
            p.normal_(0.0, scale / math.sqrt(fan_in) if p.dim() == 2 else 0.3 * scale)


def draw_made_kwargs(draw, d: int) -> dict:
    depth = draw(st.integers(1, 2), label="depth")
    hidden = [draw(st.integers(1, 3 * d + 2), label="width") for _ in range(depth)]
    return dict(
        hidden_dims=hidden,
        order=draw_order(draw, d),
        skip_connections=draw(st.booleans(), label="skip"),
        activation=draw(st.sampled_from([torch.nn.ReLU, torch.nn.Tanh]), label="activation"),
    )


def draw_fast(draw, made: MADE) -> None:
    """Sometimes force the blocked (fast) path with small blocks."""
    if draw(st.booleans(), label="fast path"):
        made.fast = True
        made.min_block = draw(st.integers(1, 3), label="min_block")


def draw_x(draw, d: int, dtype, device):
    batch = draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=4), label="batch")
    return draw(lst.tensors((*batch, d), dtype=dtype, device=device), label="x")


def make_affine(draw, dtype, device):
    d = draw(st.integers(1, 16), label="D")
    t = affine_autoregressive(d, **draw_made_kwargs(draw, d))
    assert isinstance(t, AffineAutoregressive)
    perturb(t.made)
    draw_fast(draw, t.made)
    t = t.to(dtype=dtype, device=device)
    return t, draw_x(draw, d, dtype, device)


def make_conditional(draw, dtype, device):
    d = draw(st.integers(1, 16), label="D")
    c = draw(st.integers(1, 4), label="context_dim")
    ct = conditional_affine_autoregressive(d, c, **draw_made_kwargs(draw, d))
    assert isinstance(ct, ConditionalAffineAutoregressive)
    perturb(ct.made)
    draw_fast(draw, ct.made)
    ct = ct.to(dtype=dtype, device=device)
    x = draw_x(draw, d, dtype, device)
    batch = x.shape[:-1]
    how = draw(st.sampled_from(["unbatched", "same", "outer"]), label="context batch")
    shape = {
        "unbatched": (c,),
        "same": (*batch, c),
        "outer": (2, *([1] * len(batch)), c),
    }[how]
    context = draw(lst.tensors(shape, dtype=dtype, device=device), label="context")
    return ct.condition(context), x


def context_check(draw, dtype, device):
    """A perturbed conditional layer, MAF or IAF on 8 contexts."""
    d = draw(st.integers(1, 8), label="D")
    c = draw(st.integers(1, 4), label="context_dim")
    kind = draw(st.sampled_from(["layer", "maf", "iaf"]), label="object")
    if kind == "layer":
        # Tanh and width >= 4: a narrow ReLU layer after the first can be dead for every
        # context, and a chain of width-1 layers can pass the context on arbitrarily weakly
        kwargs = {**draw_made_kwargs(draw, d), "activation": torch.nn.Tanh}
        kwargs["hidden_dims"] = [max(4, h) for h in kwargs["hidden_dims"]]
        module = conditional_affine_autoregressive(d, c, **kwargs)
    else:
        hidden = [draw(st.integers(1, 3 * d + 2), label="width")]
        module = (maf if kind == "maf" else iaf)(d, hidden, num_layers=2, context_dim=c)
    return perturbed_context_case(draw, module, d, c, dtype, device)


TRANSFORM_CASES = [
    TransformCase(
        name="affine_autoregressive",
        covers=(AffineAutoregressive,),
        make=make_affine,
        max_examples=10,
    ),
    TransformCase(
        name="conditional_affine_autoregressive",
        covers=(ConditionalAffineAutoregressive, AffineAutoregressive),
        make=make_conditional,
        max_examples=10,
        context_checks=[
            ContextCheck(
                "layer_maf_iaf",
                (
                    ConditionalAffineAutoregressive,
                    AffineAutoregressive,
                    conditional_affine_autoregressive,
                    maf,
                    iaf,
                ),
                context_check,
            )
        ],
    ),
]
