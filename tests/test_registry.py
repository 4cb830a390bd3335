"""Every public Transform and Distribution must be in the property suite, and every public
conditional object in its context checks."""

import inspect

import pytest
from pyro.distributions import ConditionalDistribution, ConditionalTransform
from torch.distributions import Distribution, Transform

import pyro_lgm.distributions
import pyro_lgm.models
import pyro_lgm.transforms
from tests.cases import context_covered, covered_classes


def _exported(module, base):
    out = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base):
            out.append(obj)
    return out


EXPORTED = _exported(pyro_lgm.transforms, Transform) + _exported(
    pyro_lgm.distributions, Distribution
)


def test_all_names_resolve():
    for module in (pyro_lgm.transforms, pyro_lgm.distributions):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name}"


@pytest.mark.parametrize("cls", EXPORTED, ids=[c.__name__ for c in EXPORTED])
def test_exported_class_is_property_tested(cls):
    covered = covered_classes()
    assert cls in covered, (
        f"{cls.__module__}.{cls.__name__} is exported but no case in tests/cases/ covers it: "
        "add a TransformCase / DistributionCase"
    )


def _is_conditional(obj) -> bool:
    """A conditional object: a Pyro ConditionalTransform / ConditionalDistribution, or a
    class or builder that takes a ``context`` (conditioned objects) or a ``context_dim``."""
    if inspect.isclass(obj) and issubclass(obj, (ConditionalTransform, ConditionalDistribution)):
        return True
    if not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return "context" in params or "context_dim" in params


CONDITIONAL = [
    getattr(module, name)
    for module in (pyro_lgm.transforms, pyro_lgm.distributions, pyro_lgm.models)
    for name in module.__all__
    if _is_conditional(getattr(module, name))
]


def test_the_conditional_objects_are_found():
    # the rule above finds what we know to be conditional (guards the rule itself)
    names = {obj.__name__ for obj in CONDITIONAL}
    expected = {
        "ConditionalPlanar",
        "ConditionalRadial",
        "ConditionalAffineAutoregressive",
        "ConditionalAffineCoupling",
        "ConditionalAdditiveCoupling",
        "conditional_planar_flow",
        "conditional_radial_flow",
        "maf",
        "iaf",
        "realnvp",
        "NADE",
        "RNADE",
        "DeepNADE",
        "EoNADE",
        "MADE",
    }
    assert expected <= names, expected - names
    assert "Planar" not in names and "planar_flow" not in names


@pytest.mark.parametrize(
    "obj", CONDITIONAL, ids=[f"{o.__module__}.{o.__name__}" for o in CONDITIONAL]
)
def test_conditional_object_depends_on_its_context_in_the_suite(obj):
    assert obj in context_covered(), (
        f"{obj.__module__}.{obj.__name__} is conditional but no ContextCheck in tests/cases/ "
        "covers it: add one to a case's context_checks so that the suite runs "
        "assert_depends_on_context on it"
    )
