"""pytest fixtures that run properties on every device and dtype.

Enable in a project's ``conftest.py`` with ``pytest_plugins = ["pyro_lgm.testing.pytest_plugin"]``
(or ``-p pyro_lgm.testing.pytest_plugin``). It provides:

* ``device`` - parametrized over :func:`pyro_lgm.testing.devices`: always ``cpu``, and
  ``cuda`` (marked ``gpu``) when a GPU is visible;
* ``dtype`` - parametrized over ``torch.float32`` and ``torch.float64``;
* the ``gpu`` marker; ``-m "not gpu"`` deselects the CUDA runs.
"""

from __future__ import annotations

import pytest
import torch

from pyro_lgm.testing.assertions import devices

DTYPES = (torch.float32, torch.float64)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: the test runs on a CUDA device")


def _device_params() -> list:
    return [
        pytest.param(d, id=d.type, marks=(pytest.mark.gpu,) if d.type == "cuda" else ())
        for d in devices()
    ]


@pytest.fixture(params=_device_params())
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device a property runs on."""
    return request.param


@pytest.fixture(params=DTYPES, ids=lambda t: str(t).replace("torch.", ""))
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """The floating dtype a property runs in."""
    return request.param
