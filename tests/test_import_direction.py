"""Imports inside the package run one way: models -> distributions/transforms -> nn.

Every module of ``pyro_lgm`` is parsed with :mod:`ast` and every import it can run is
collected: top-level ones, the lazy ones inside functions and methods, ``from pyro_lgm
import distributions``, relative imports and ``importlib.import_module("...")`` calls with
a literal name. ``pyro_lgm.nn`` may import none of distributions, transforms and models;
distributions and transforms may not import models.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyro_lgm

ROOT = Path(pyro_lgm.__file__).parent

#: layer -> the layers it must not import
FORBIDDEN = {
    "nn": {"distributions", "transforms", "models"},
    "distributions": {"models"},
    "transforms": {"models"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every absolute module name ``source`` (the code of ``module``) may import."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # `from pyro_lgm import models` imports the subpackage pyro_lgm.models
            found.update(f"{name}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
    return found


def layer(name: str) -> str | None:
    parts = name.split(".")
    if (
        len(parts) >= 2
        and parts[0] == "pyro_lgm"
        and parts[1] in ("nn", "distributions", "transforms", "models")
    ):
        return parts[1]
    return None


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer(module)
    if own not in FORBIDDEN:
        return []
    return sorted(
        f"{module} imports {name}"
        for name in imported_modules(source, module, is_package)
        if layer(name) in FORBIDDEN[own]
    )


MODULES = sorted(ROOT.rglob("*.py"))


def test_the_package_has_the_layers():
    names = {_module_name(p) for p in MODULES}
    for sub in ("nn", "distributions", "transforms", "models"):
        assert f"pyro_lgm.{sub}" in names
    assert "pyro_lgm.nn.nade" in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_run_one_way(path):
    module = _module_name(path)
    assert violations(path.read_text(), module, path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("pyro_lgm.nn.x", "def f():\n    from pyro_lgm.models.nade import NADE\n", True),
        ("pyro_lgm.nn.x", "class A:\n    def f(self):\n        import pyro_lgm.models\n", True),
        ("pyro_lgm.nn.x", "from pyro_lgm import distributions\n", True),
        ("pyro_lgm.nn.x", "from ..transforms import Planar\n", True),
        ("pyro_lgm.nn.x", "import importlib\nimportlib.import_module('pyro_lgm.models')\n", True),
        ("pyro_lgm.distributions.x", "def f():\n    from .. import models\n", True),
        ("pyro_lgm.transforms.x", "from pyro_lgm.models.flow import Flow\n", True),
        (
            "pyro_lgm.nn.x",
            "from pyro_lgm.errors import check_finite\nfrom . import masked\n",
            False,
        ),
        ("pyro_lgm.distributions.x", "from pyro_lgm.nn.nade import NADE\n", False),
        ("pyro_lgm.models.x", "from pyro_lgm import distributions, nn, transforms\n", False),
    ],
)
def test_the_check_sees_every_kind_of_import(module, source, expected):
    assert bool(violations(source, module)) is expected
