"""The property-suite registry.

Each module ``tests/cases/<family>.py`` declares module-level lists:

* ``TRANSFORM_CASES: list[TransformCase]``
* ``DISTRIBUTION_CASES: list[DistributionCase]``

A case may carry ``context_checks: list[ContextCheck]``: conditional objects of its family
on which the suite runs :func:`pyro_lgm.testing.assert_depends_on_context`.

The generic suites (``tests/test_transform_properties.py``,
``tests/test_distribution_properties.py``) run every case (and every context check) on every
device and dtype, and ``tests/test_registry.py`` checks that every exported Transform /
Distribution class is covered by some case, and that every exported *conditional* object
(transform, distribution, model or builder) is covered by some context check.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.distributions import Distribution, Transform

from pyro_lgm.testing import strategies as lst

# Hypothesis examples per test are set per test (cheap defaults for 2-core CI); the
# "thorough" profile (HYPOTHESIS_PROFILE=thorough, see tests/conftest.py) multiplies them.
EXAMPLE_SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n: int) -> int:
    """``n`` Hypothesis examples, or ``20 n`` under ``HYPOTHESIS_PROFILE=thorough``."""
    return n * EXAMPLE_SCALE


# ``draw`` is Hypothesis' ``data.draw``: ``draw(strategy) -> value``.
Draw = Callable[[Any], Any]

# Rows of context in a context check: a correct network may be flat in its context at a few
# points (ReLU units dead for both contexts), never at all of 8 random rows.
CONTEXT_BATCH = 8


@dataclass
class ContextCheck:
    """A conditional object on which the suite runs ``assert_depends_on_context``.

    ``make(draw, dtype, device)`` returns ``(obj, x, context, other_context)`` as
    :func:`pyro_lgm.testing.assert_depends_on_context` takes them: ``obj`` a conditional
    transform module, a conditional distribution, or a callable ``context -> Transform /
    Distribution`` (a model such as ``pyro_lgm.models.NADE(..., context_dim=C)`` or a
    conditional ``Flow``), with networks *perturbed* away from their initialisation (last
    layers start at zero, which ignores the context by design); ``context`` and
    ``other_context`` hold ``CONTEXT_BATCH`` rows. ``covers`` lists the public conditional
    objects (classes, builder functions) the check exercises; tests/test_registry.py requires
    every conditional object the library exports to be in some check's ``covers``.
    """

    name: str
    covers: tuple[object, ...]
    make: Callable[[Draw, torch.dtype, torch.device], tuple[Any, torch.Tensor, Any, Any]]
    max_examples: int = 5


def run_context_check(check: ContextCheck, device, dtype) -> None:
    """Hypothesis run of ``assert_depends_on_context`` for one :class:`ContextCheck`.

    A change counts above ``1024 eps`` (absolute and relative), not the kit's default
    ``sqrt(eps)``: every object here computes the same operations for both contexts, so one
    that ignores its context gives bitwise-equal results (a change of exactly 0, as the
    kit's self-test with ``zeros_like(context)`` shows), while the small random networks of
    these checks can depend on their context weakly (a chain of two width-1 tanh layers
    changed by 4.8e-4 in float32, under the default's 3.5e-4 + 3.5e-4 |value|; the checks
    now draw widths >= 4 as well).
    """
    tol = 1024 * torch.finfo(dtype).eps
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pyro_lgm.testing import assert_depends_on_context

    @settings(max_examples=examples(check.max_examples))
    @given(st.data())
    def inner(data):
        torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="torch seed"))
        obj, x, context, other = check.make(data.draw, dtype, device)
        assert context.dtype == dtype and context.device.type == device.type
        assert_depends_on_context(obj, x, context, other, atol=tol, rtol=tol)

    inner()


def draw_context_pair(draw: Draw, context_dim: int, dtype, device, batch: int = CONTEXT_BATCH):
    """A ``(batch, context_dim)`` context and a second one that differs from it in every
    entry: the first plus a standard Gaussian tensor drawn from a seed.

    The change has a fixed unit scale (not the ``{0.1, 1, 2}`` of ``lst.tensors``): a small
    perturbed network (one ReLU unit, a hidden bias below zero) can legitimately be flat in
    its context for changes of 0.1 at all 8 rows, and under the thorough profile Hypothesis
    found such cases for NADE, MADE and the conditional affine layers.
    """
    shape = (batch, context_dim)
    first = draw(lst.tensors(shape, dtype=dtype, device=device), label="context")
    seed = draw(lst.seeds(), label="context change seed")
    g = torch.Generator().manual_seed(seed)
    step = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return first, first + step


def perturbed_context_case(draw: Draw, module: torch.nn.Module, d: int, c: int, dtype, device):
    """``(module, x, context, other_context)`` for a vector ``ContextCheck``: ``module``
    perturbed (:func:`perturb_all`) with live units (:func:`live_units`), moved to
    ``dtype``/``device``, ``CONTEXT_BATCH`` points ``x`` of size ``d`` and a context pair of size
    ``c`` (:func:`draw_context_pair`)."""
    perturb_all(module, draw(lst.seeds(), label="weights seed"))
    live_units(module)
    module = module.to(dtype=dtype, device=device)
    x = draw(lst.tensors((CONTEXT_BATCH, d), dtype=dtype, device=device), label="x")
    return (module, x, *draw_context_pair(draw, c, dtype, device))


@torch.no_grad()
def live_units(module: torch.nn.Module, margin: float = 0.5) -> None:
    """Make every bias positive (``|b| + margin``) so that ReLU units are alive.

    For context checks: a small perturbed ReLU network whose hidden biases all came out
    negative is flat in its context wherever the context is small, legitimately, and the
    thorough profile found such networks (one or two units, ``D = 1``). With positive biases
    the units are active around the origin, so an object that ignores its context is the
    only way the check can fail. Called after the perturbation, before ``.to(dtype)``.
    """
    for name, p in module.named_parameters():
        if "bias" in name.rsplit(".", 1)[-1]:
            p.abs_().add_(margin)


@torch.no_grad()
def perturb_all(module: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    """Random weights everywhere: ``N(0, scale^2 / fan_in)`` for matrices, ``N(0, (scale /
    2)^2)`` added to vectors and scalars (last layers start at zero: the identity)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p)
        if p.dim() >= 2:
            p.copy_(noise * (scale / p[0].numel() ** 0.5))
        else:
            p.add_(noise * (scale / 2))


@dataclass
class TransformCase:
    """A family of random transforms for the generic property suite.

    ``make(draw, dtype, device)`` returns ``(transform, x)`` where ``transform`` is a
    ready-to-use ``Transform`` (conditional ones already conditioned on a drawn context,
    modules already moved to ``dtype``/``device``) and ``x`` a batch of points in its domain
    on that device and dtype. ``covers`` lists the exported classes this case exercises.
    """

    name: str
    covers: tuple[type, ...]
    make: Callable[[Draw, torch.dtype, torch.device], tuple[Transform, torch.Tensor]]
    # tolerance overrides keyed by dtype, e.g. {torch.float32: dict(atol=1e-4, rtol=1e-4)}
    tolerances: dict = field(default_factory=dict)
    max_examples: int = 10
    context_checks: list[ContextCheck] = field(default_factory=list)


@dataclass
class DistributionCase:
    """A family of random distributions for the generic property suite.

    ``make(draw, dtype, device)`` returns a ``Distribution``. The suite checks sample and
    ``log_prob`` shapes, that samples lie in the support, and - when ``normalized`` - runs
    ``assert_normalized(dist, **normalized_kwargs)`` (keep the support small: <= 2**12
    points, or 1-2 continuous dimensions).

    ``autoregressive``, when given, is ``(draw, dtype, device) -> (fn, x, order, kwargs)``
    and the suite runs ``assert_autoregressive(fn, x, order, **kwargs)``.
    """

    name: str
    covers: tuple[type, ...]
    make: Callable[[Draw, torch.dtype, torch.device], Distribution]
    normalized: bool = True
    normalized_kwargs: dict = field(default_factory=dict)
    autoregressive: Callable | None = None
    max_examples: int = 5
    context_checks: list[ContextCheck] = field(default_factory=list)


def _modules():
    for info in pkgutil.iter_modules(__path__):
        yield importlib.import_module(f"{__name__}.{info.name}")


def all_transform_cases() -> list[TransformCase]:
    return [c for m in _modules() for c in getattr(m, "TRANSFORM_CASES", [])]


def all_distribution_cases() -> list[DistributionCase]:
    return [c for m in _modules() for c in getattr(m, "DISTRIBUTION_CASES", [])]


def covered_classes() -> set[type]:
    out: set[type] = set()
    for c in all_transform_cases() + all_distribution_cases():
        out.update(c.covers)
    return out


def context_checks(cases: list) -> list[tuple[Any, ContextCheck]]:
    """``(case, check)`` for every context check of ``cases``."""
    return [(case, check) for case in cases for check in case.context_checks]


def context_covered() -> set[object]:
    """Every object some context check covers."""
    out: set[object] = set()
    for _, check in context_checks(all_transform_cases() + all_distribution_cases()):
        out.update(check.covers)
    return out


__all__ = [
    "CONTEXT_BATCH",
    "ContextCheck",
    "Distribution",
    "DistributionCase",
    "Transform",
    "TransformCase",
    "all_distribution_cases",
    "all_transform_cases",
    "context_checks",
    "context_covered",
    "covered_classes",
    "draw_context_pair",
    "live_units",
    "perturb_all",
    "perturbed_context_case",
]
