"""Registering a module's parameters with Pyro's parameter store, guarded."""

from __future__ import annotations

import pyro
from torch import nn


def register_module(name: str, module: nn.Module, update_module_params: bool = False) -> None:
    """``pyro.module(name, module)`` for SVI, refusing a store that holds another module's
    tensors under this module's names (one of the two would silently not train).

    Raises:
        ValueError: naming ``name``.
    """
    held = getattr(pyro.get_param_store(), "_params", {})
    for pname, p in module.named_parameters():
        full = f"{name}$$${pname}"
        if full in held and held[full] is not p:
            raise ValueError(
                f"name: Pyro's parameter store already holds {full!r} from another "
                f"module; give this module a distinct name= or call pyro.clear_param_store()"
            )
    pyro.module(name, module, update_module_params=update_module_params)
