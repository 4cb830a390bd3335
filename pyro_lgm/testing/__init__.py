"""Public property-testing kit: Hypothesis strategies and assertions.

Our own test-suite is built on it, and users apply it to their own flows::

    from hypothesis import given
    from pyro_lgm.testing import assert_bijective, assert_log_abs_det_jacobian
    from pyro_lgm.testing import strategies as lst

    @given(lst.tensors((16, 5), dtype=torch.float64))
    def test_my_flow(x):
        t = MyTransform(5)
        assert_bijective(t, x)
        assert_log_abs_det_jacobian(t, x)

``pyro_lgm.testing.pytest_plugin`` adds ``device`` (CPU, and CUDA when visible) and
``dtype`` (float32, float64) fixtures.
"""

from pyro_lgm.testing import strategies
from pyro_lgm.testing.assertions import (
    assert_autoregressive,
    assert_bijective,
    assert_depends_on_context,
    assert_inverse_log_det,
    assert_log_abs_det_jacobian,
    assert_normalized,
    devices,
    image_order,
    to_float64,
    tolerance,
)

__all__ = [
    "assert_autoregressive",
    "assert_bijective",
    "assert_depends_on_context",
    "assert_inverse_log_det",
    "assert_log_abs_det_jacobian",
    "assert_normalized",
    "devices",
    "image_order",
    "strategies",
    "to_float64",
    "tolerance",
]
