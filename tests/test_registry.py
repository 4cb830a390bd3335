"""Every public Transform and Distribution must be in the property suite."""

import inspect

import pytest
from torch.distributions import Distribution, Transform

import pyro_lgm.distributions
import pyro_lgm.transforms
from tests.cases import covered_classes


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
