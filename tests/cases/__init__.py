"""The property-suite registry.

Each module ``tests/cases/<family>.py`` declares module-level lists:

* ``TRANSFORM_CASES: list[TransformCase]``
* ``DISTRIBUTION_CASES: list[DistributionCase]``

The generic suites (``tests/test_transform_properties.py``,
``tests/test_distribution_properties.py``) run every case on every device and dtype, and
``tests/test_registry.py`` checks that every exported Transform / Distribution class is
covered by some case.
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

# Hypothesis examples per test are set per test (cheap defaults for 2-core CI); the
# "thorough" profile (HYPOTHESIS_PROFILE=thorough, see tests/conftest.py) multiplies them.
EXAMPLE_SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n: int) -> int:
    """``n`` Hypothesis examples, or ``20 n`` under ``HYPOTHESIS_PROFILE=thorough``."""
    return n * EXAMPLE_SCALE


# ``draw`` is Hypothesis' ``data.draw``: ``draw(strategy) -> value``.
Draw = Callable[[Any], Any]


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


__all__ = [
    "Distribution",
    "DistributionCase",
    "Transform",
    "TransformCase",
    "all_distribution_cases",
    "all_transform_cases",
    "covered_classes",
]
