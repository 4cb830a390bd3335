"""The generic distribution property suite: every case in tests/cases/, every device, dtype."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_lgm.testing import (
    assert_autoregressive,
    assert_normalized,
)
from tests.cases import all_distribution_cases, context_checks, examples, run_context_check

CASES = all_distribution_cases()
CONTEXT = context_checks(CASES)
NORMALIZED = [c for c in CASES if c.normalized]
AUTOREGRESSIVE = [c for c in CASES if c.autoregressive is not None]


def _given(case, body):
    @settings(max_examples=examples(case.max_examples))
    @given(st.data())
    def inner(data):
        torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="torch seed"))
        body(data)

    inner()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_shapes_and_support(case, device, dtype):
    def body(data):
        d = case.make(data.draw, dtype, device)
        x = d.sample((3,))
        assert x.shape == (3, *d.batch_shape, *d.event_shape)
        assert x.device.type == device.type
        assert bool(d.support.check(x).all()), "samples must lie in the support"
        lp = d.log_prob(x)
        assert lp.shape == (3, *d.batch_shape)
        assert torch.isfinite(lp).all()
        e = d.expand((2, *d.batch_shape))
        assert e.batch_shape == (2, *d.batch_shape)
        assert e.log_prob(x[:, None].expand(3, 2, *x.shape[1:])).shape == (3, 2, *d.batch_shape)

    _given(case, body)


@pytest.mark.parametrize("case", NORMALIZED, ids=[c.name for c in NORMALIZED])
def test_normalized(case, device, dtype):
    _given(
        case,
        lambda data: assert_normalized(
            case.make(data.draw, dtype, device), **case.normalized_kwargs
        ),
    )


@pytest.mark.parametrize("case", AUTOREGRESSIVE, ids=[c.name for c in AUTOREGRESSIVE])
def test_autoregressive(case, device, dtype):
    def body(data):
        fn, x, order, kwargs = case.autoregressive(data.draw, dtype, device)
        assert_autoregressive(fn, x, order, **kwargs)

    _given(case, body)


@pytest.mark.parametrize("case, check", CONTEXT, ids=[f"{c.name}-{k.name}" for c, k in CONTEXT])
def test_depends_on_context(case, check, device, dtype):
    """Changing the context changes the conditional object (see ContextCheck)."""
    run_context_check(check, device, dtype)
