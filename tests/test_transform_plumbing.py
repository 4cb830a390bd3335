"""The cheap helpers on the transforms' per-call path, against what they replace.

``broadcast_shapes`` (plain Python) against ``torch.broadcast_shapes``; ``all_finite`` (one
sum per tensor) against ``torch.isfinite``; the cache's tensor list against
``parameters()`` + ``buffers()``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pyro_lgm.errors import all_finite
from pyro_lgm.transforms import affine_autoregressive, conditional_affine_autoregressive
from pyro_lgm.transforms._cached import _module_tensors
from pyro_lgm.transforms._common import broadcast_shapes

shapes = st.lists(st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4), min_size=1, max_size=4)


@given(shapes)
def test_broadcast_shapes_agrees_with_torch(shape_list):
    try:
        expected = torch.broadcast_shapes(*shape_list)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            broadcast_shapes(*shape_list)
        return
    assert broadcast_shapes(*shape_list) == expected
    assert isinstance(broadcast_shapes(*shape_list), torch.Size)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_isfinite(dtype):
    g = torch.Generator().manual_seed(0)
    big = torch.finfo(dtype).max
    for _ in range(50):
        t = torch.randn(7, 5, generator=g).to(dtype)
        kind = int(torch.randint(5, (), generator=g))
        if kind == 1:
            t[2, 3] = float("nan")
        elif kind == 2:
            t[0, 0] = float("inf")
        elif kind == 3:
            t[6, 4] = -float("inf")
        elif kind == 4:
            t.fill_(big)  # finite, but the sum overflows: the element-wise check decides
        expected = bool(torch.isfinite(t).all())
        assert all_finite(t) is expected
        assert all_finite(torch.ones(3, dtype=dtype), t) is expected
    # +inf and -inf cancel to NaN in a sum: still caught
    assert not all_finite(torch.tensor([float("inf")]), torch.tensor([-float("inf")]))
    assert all_finite(torch.empty(0), torch.tensor([1, 2]), torch.tensor([True]))
    assert all_finite(torch.ones(3, requires_grad=True))


def test_module_tensors_are_the_parameters_and_buffers_afresh():
    t = conditional_affine_autoregressive(3, 2, [8]).condition(torch.randn(4, 2))
    expected = [*t.parameters(), *t.buffers()]
    got = _module_tensors(t)
    assert {id(p) for p in got} == {id(p) for p in expected} and len(got) == len(expected)
    assert any(p is t.context for p in got)
    # a replaced parameter is seen at once (no stale list)
    u = affine_autoregressive(3, [8])
    old = u.made.output_layer.bias
    u.made.output_layer.bias = torch.nn.Parameter(old.detach() + 1)
    ids = {id(p) for p in _module_tensors(u)}
    assert id(u.made.output_layer.bias) in ids and id(old) not in ids
