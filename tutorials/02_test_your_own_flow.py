"""Tutorial 2: property-test your own flow with ``pyro_lgm.testing``.

We write a small bijection of our own - the sinh-arcsinh transform of Jones & Pewsey (2009),
``y = sinh((arcsinh(x) + a) * b)`` element-wise with ``b > 0`` - and let the kit check it
the way pyro-lgm checks its own transforms: inverse on fresh tensors, log-det against the
autograd Jacobian in float64, inverse log-det, over Hypothesis-drawn shapes and parameters.
Then we break it on purpose and watch the kit say what is wrong.

Run: ``python tutorials/02_test_your_own_flow.py``
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Transform, constraints

from pyro_lgm.testing import (
    assert_bijective,
    assert_inverse_log_det,
    assert_log_abs_det_jacobian,
)
from pyro_lgm.testing import strategies as lst


class SinhArcsinh(Transform):
    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(self, skew, log_tail, buggy=False):
        super().__init__(cache_size=1)
        self.skew, self.log_tail, self.buggy = skew, log_tail, buggy

    def _call(self, x):
        return torch.sinh((torch.asinh(x) + self.skew) * self.log_tail.exp())

    def _inverse(self, y):
        return torch.sinh(torch.asinh(y) * (-self.log_tail).exp() - self.skew)

    def log_abs_det_jacobian(self, x, y):
        # dy/dx = cosh(u) * b / sqrt(1 + x^2), u = (asinh(x) + a) b
        b = self.log_tail.exp()
        u = (torch.asinh(x) + self.skew) * b
        ld = torch.log(torch.cosh(u)) + self.log_tail - 0.5 * torch.log1p(x * x)
        if self.buggy:  # a classic slip: forgetting the chain-rule factor 1/sqrt(1 + x^2)
            ld = torch.log(torch.cosh(u)) + self.log_tail
        return ld.sum(-1)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(lst.batch_shapes(max_dims=2), lst.vector_event_shapes(1, 6)),
    data=st.data(),
)
def check_sinh_arcsinh(shape, data):
    batch, event = shape
    for dtype in (torch.float32, torch.float64):
        skew = data.draw(lst.tensors(event, dtype=dtype, scale=0.5))
        log_tail = data.draw(lst.tensors(event, dtype=dtype, scale=0.3))
        x = data.draw(lst.tensors((*batch, *event), dtype=dtype))
        t = SinhArcsinh(skew, log_tail)
        assert_bijective(t, x)
        assert_log_abs_det_jacobian(t, x)
        assert_inverse_log_det(t, x)


if __name__ == "__main__":
    check_sinh_arcsinh()
    print("SinhArcsinh passes: bijective, log-det vs autograd (float64), inverse log-det")

    broken = SinhArcsinh(torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.2]), buggy=True)
    try:
        assert_log_abs_det_jacobian(broken, torch.randn(8, 2, dtype=torch.float64))
    except AssertionError as err:
        print("the buggy version is rejected:\n ", err)
    else:
        raise SystemExit("the kit should have rejected the buggy log-det")
