"""The generic transform property suite: every case in tests/cases/, every device, dtype."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_lgm.testing import (
    assert_bijective,
    assert_inverse_log_det,
    assert_log_abs_det_jacobian,
)
from tests.cases import all_transform_cases, context_checks, examples, run_context_check

CASES = all_transform_cases()
CONTEXT = context_checks(CASES)


def _run(case, device, dtype, check):
    @settings(max_examples=examples(case.max_examples))
    @given(st.data())
    def inner(data):
        torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="torch seed"))
        t, x = case.make(data.draw, dtype, device)
        assert x.dtype == dtype and x.device.type == device.type
        check(t, x, **case.tolerances.get(dtype, {}))

    inner()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bijective(case, device, dtype):
    _run(case, device, dtype, assert_bijective)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_log_abs_det_jacobian(case, device, dtype):
    _run(case, device, dtype, assert_log_abs_det_jacobian)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_inverse_log_det(case, device, dtype):
    _run(case, device, dtype, assert_inverse_log_det)


@pytest.mark.parametrize("case, check", CONTEXT, ids=[f"{c.name}-{k.name}" for c, k in CONTEXT])
def test_depends_on_context(case, check, device, dtype):
    """Changing the context changes the conditional object (see ContextCheck)."""
    run_context_check(check, device, dtype)
