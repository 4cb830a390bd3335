"""pyro-lgm: exact-likelihood generative models for Pyro.

Subpackages, one per kind of object (see ``docs/DESIGN.md``):

* :mod:`pyro_lgm.transforms` - bijections with a log-Jacobian (``Transform`` /
  ``TransformModule`` / ``ConditionalTransformModule``);
* :mod:`pyro_lgm.distributions` - normalized densities and mass functions;
* :mod:`pyro_lgm.nn` - networks that only compute parameters;
* :mod:`pyro_lgm.models` - trainable ``nn.Module`` s whose call returns a distribution;
* :mod:`pyro_lgm.data` - data readers and 2-D toy densities;
* :mod:`pyro_lgm.testing` - public Hypothesis strategies and property assertions.
"""

import importlib
from types import ModuleType

from pyro_lgm import data, distributions, metrics, models, nn, transforms

__version__ = "0.1.0"

__all__ = [
    "data",
    "distributions",
    "metrics",
    "models",
    "nn",
    "testing",
    "transforms",
    "__version__",
]


def __getattr__(name: str) -> ModuleType:
    # ``pyro_lgm.testing`` needs hypothesis (the ``dev`` extra): import it on first use only.
    if name == "testing":
        return importlib.import_module("pyro_lgm.testing")
    raise AttributeError(f"module 'pyro_lgm' has no attribute {name!r}")
