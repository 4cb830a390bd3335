"""Property-suite cases for the Parallel WaveNet student's sequence IAF (van den Oord et al.,
2018): perturbed causal conditioners, unconditional and conditioned on a global vector,
labels or local features; context checks for the conditional layer, the conditional
student, its SVI guide and the distillation loss."""

from __future__ import annotations

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from hypothesis import strategies as st

from pyro_lgm.models import DensityDistillation, ParallelWaveNet, distillation_loss
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import (
    ConditionalSequenceIAF,
    SequenceIAF,
    conditional_sequence_iaf,
    sequence_iaf,
)
from tests.cases import (
    CONTEXT_BATCH,
    ContextCheck,
    TransformCase,
    draw_context_pair,
    live_units,
    perturb_all,
)


def _net_kwargs(draw) -> dict:
    return dict(
        hidden=draw(st.integers(1, 6), label="hidden"),
        layers=draw(st.integers(0, 3), label="layers"),
        kernel_size=draw(st.integers(1, 3), label="kernel_size"),
    )


def _x(draw, T: int, dtype, device, batch=None):
    if batch is None:
        batch = draw(lst.batch_shapes(min_dims=1, max_dims=2, max_size=3), label="batch")
    return draw(lst.tensors((*batch, T), dtype=dtype, device=device), label="z")


def make_unconditional(draw, dtype, device):
    T = draw(st.integers(1, 12), label="T")
    t = sequence_iaf(**_net_kwargs(draw))
    perturb_all(t, draw(lst.seeds(), label="weights seed"))
    t = t.to(dtype=dtype, device=device)
    return t, _x(draw, T, dtype, device)


def make_conditional(draw, dtype, device):
    T = draw(st.integers(1, 10), label="T")
    kind = draw(st.sampled_from(["global", "labels", "local"]), label="context kind")
    B = draw(st.integers(1, 3), label="context batch")
    if kind == "global":
        ct = conditional_sequence_iaf(global_dim=2, **_net_kwargs(draw))
        context = draw(lst.tensors((B, 2), dtype=dtype, device=device), label="context")
    elif kind == "labels":
        ct = conditional_sequence_iaf(num_classes=3, **_net_kwargs(draw))
        labels = draw(st.lists(st.integers(0, 2), min_size=B, max_size=B), label="labels")
        context = torch.tensor(labels, device=device)
    else:
        ct = conditional_sequence_iaf(local_channels=2, **_net_kwargs(draw))
        context = draw(lst.tensors((B, 2, T), dtype=dtype, device=device), label="context")
    assert isinstance(ct, ConditionalSequenceIAF)
    perturb_all(ct, draw(lst.seeds(), label="weights seed"))
    ct = ct.to(dtype=dtype, device=device)
    # batch (S, B): samples first, then the context's batch
    S = draw(st.integers(1, 2), label="samples")
    return ct.condition(context), _x(draw, T, dtype, device, batch=(S, B))


def _layer_check(draw, dtype, device):
    T = draw(st.integers(2, 8), label="T")
    kwargs = _net_kwargs(draw)
    kwargs["layers"] = max(1, kwargs["layers"])  # the context enters through the gates
    kwargs["hidden"] = max(4, kwargs["hidden"])
    ct = conditional_sequence_iaf(global_dim=3, **kwargs)
    perturb_all(ct, draw(lst.seeds(), label="weights seed"))
    live_units(ct)  # positive biases: no ReLU unit dead for every context
    ct = ct.to(dtype=dtype, device=device)
    x = draw(lst.tensors((CONTEXT_BATCH, T), dtype=dtype, device=device), label="x")
    return (ct, x, *draw_context_pair(draw, 3, dtype, device))


def _student(draw, dtype, device) -> ParallelWaveNet:
    T = draw(st.integers(2, 8), label="T")
    student = ParallelWaveNet(T, flows=draw(st.integers(1, 2)), hidden=4, layers=1, global_dim=3)
    perturb_all(student, draw(lst.seeds(), label="weights seed"))
    live_units(student)
    return student.to(dtype=dtype, device=device)


def _student_check(draw, dtype, device):
    student = _student(draw, dtype, device)
    x = draw(lst.tensors((CONTEXT_BATCH, student.length), dtype=dtype, device=device), label="x")
    return (student, x, *draw_context_pair(draw, 3, dtype, device))


def _guide_check(draw, dtype, device):
    """The distribution the SVI guide puts on ``"x"`` under each context."""
    student = _student(draw, dtype, device)
    teacher = dist.Normal(torch.zeros((), dtype=dtype, device=device), 1.0).expand([student.length])
    teacher = teacher.to_event(1)

    def guide_dist(c):
        dd = DensityDistillation(student, teacher, num_samples=2, context=c)
        return poutine.trace(dd.guide).get_trace().nodes["x"]["fn"]

    x = draw(lst.tensors((2, CONTEXT_BATCH, student.length), dtype=dtype, device=device))
    return (guide_dist, x, *draw_context_pair(draw, 3, dtype, device))


def _loss_check(draw, dtype, device):
    """The distillation loss as a function of the context (the same draws for both
    contexts), wrapped as the location of a unit Normal so that the kit compares it."""
    student = _student(draw, dtype, device)
    teacher = dist.Normal(torch.zeros((), dtype=dtype, device=device), 1.0).expand([student.length])
    teacher = teacher.to_event(1)
    seed = draw(lst.seeds(), label="sampling seed")

    def loss_dist(c):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            kl = distillation_loss(student, teacher, 3, context=c).kl
        return dist.Normal(kl, torch.ones_like(kl))

    x = draw(lst.tensors((CONTEXT_BATCH,), dtype=dtype, device=device), label="x")
    return (loss_dist, x, *draw_context_pair(draw, 3, dtype, device))


TRANSFORM_CASES = [
    TransformCase(
        name="sequence_iaf",
        covers=(SequenceIAF,),
        make=make_unconditional,
        max_examples=8,
    ),
    TransformCase(
        name="conditional_sequence_iaf",
        covers=(ConditionalSequenceIAF, SequenceIAF),
        make=make_conditional,
        max_examples=8,
        context_checks=[
            ContextCheck(
                "layer",
                (ConditionalSequenceIAF, SequenceIAF, conditional_sequence_iaf),
                _layer_check,
            ),
            ContextCheck("student", (ParallelWaveNet,), _student_check),
            ContextCheck("guide", (DensityDistillation,), _guide_check),
            ContextCheck("loss", (distillation_loss,), _loss_check),
        ],
    ),
]
