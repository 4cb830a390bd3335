"""Self-tests of pyro_lgm.testing: it accepts correct objects and rejects broken ones."""

import pyro.distributions as pyro_dist
import pyro.distributions.transforms as pyro_t
import pytest
import torch
import torch.distributions as td
from hypothesis import given, settings
from pyro.distributions import ConditionalTransform
from torch.distributions import Transform, constraints

from pyro_lgm.testing import (
    assert_autoregressive,
    assert_bijective,
    assert_depends_on_context,
    assert_inverse_log_det,
    assert_log_abs_det_jacobian,
    assert_normalized,
    image_order,
    to_float64,
    tolerance,
)
from pyro_lgm.testing import strategies as lst
from pyro_lgm.transforms import ConditionalRadial, conditional_radial
from tests.cases import examples


class _Linear(Transform):
    """y = x @ A.T + b over vector (event_dim=1) or image (event_dim=3) events, with knobs
    to break it: wrong log-det sign, log-det off by a constant (in every dtype, or only in
    ``ld_offset_dtype``), inverse off by a constant or by a relative error."""

    bijective = True

    def __init__(
        self,
        a,
        b,
        event_dim=1,
        ld_sign=1.0,
        inv_offset=0.0,
        ld_offset=0.0,
        ld_offset_dtype=None,
        inv_rel=0.0,
    ):
        super().__init__(cache_size=1)
        self.a, self.b, self.ed = a, b, event_dim
        self.ld_sign, self.inv_offset = ld_sign, inv_offset
        self.ld_offset, self.ld_offset_dtype, self.inv_rel = ld_offset, ld_offset_dtype, inv_rel

    @property
    def domain(self):
        return constraints.independent(constraints.real, self.ed)

    codomain = domain

    def _flat(self, x):
        return x.reshape(*x.shape[: x.dim() - self.ed], -1)

    def _call(self, x):
        return (self._flat(x) @ self.a.T + self.b).reshape(x.shape)

    def _inverse(self, y):
        x = torch.linalg.solve(self.a, (self._flat(y) - self.b).unsqueeze(-1)).squeeze(-1)
        return x.reshape(y.shape) * (1 + self.inv_rel) + self.inv_offset

    def log_abs_det_jacobian(self, x, y):
        ld = self.ld_sign * torch.linalg.slogdet(self.a)[1]
        if self.ld_offset_dtype in (None, x.dtype):
            ld = ld + self.ld_offset
        return ld.expand(x.shape[: x.dim() - self.ed])


def _linear(d, dtype, device, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) + 3 * torch.eye(d, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    return _Linear(a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device), **kw)


# --- the kit accepts correct transforms ----------------------------------------------


@settings(max_examples=examples(10))
@given(d=lst.vector_event_shapes(1, 8), batch=lst.batch_shapes(), data=lst.seeds())
def test_correct_linear_passes_all(d, batch, data):
    for dtype in (torch.float32, torch.float64):
        t = _linear(d[0], dtype, "cpu", seed=data)
        x = torch.randn(*batch, *d, dtype=dtype)
        assert_bijective(t, x)
        assert_log_abs_det_jacobian(t, x)
        assert_inverse_log_det(t, x)


def test_correct_image_transform_passes(device, dtype):
    t = _linear(2 * 3 * 3, dtype, device, event_dim=3)
    x = torch.randn(4, 2, 3, 3, dtype=dtype, device=device)
    assert_bijective(t, x)
    assert_log_abs_det_jacobian(t, x)


def test_torch_and_pyro_transforms_pass(device, dtype):
    x = torch.randn(5, 3, dtype=dtype, device=device)
    for t in [td.ExpTransform(), td.SigmoidTransform(), pyro_t.Permute(torch.tensor([2, 0, 1]))]:
        assert_bijective(t, x)
        assert_log_abs_det_jacobian(t, x)
        assert_inverse_log_det(t, x)


# --- the kit rejects broken transforms -----------------------------------------------


def test_rejects_wrong_log_det_sign(dtype):
    t = _linear(4, dtype, "cpu", ld_sign=-1.0)
    with pytest.raises(AssertionError, match="log_abs_det_jacobian.*autograd"):
        assert_log_abs_det_jacobian(t, torch.randn(6, 4, dtype=dtype))


def test_rejects_wrong_log_det_on_images():
    t = _linear(12, torch.float64, "cpu", event_dim=3, ld_sign=0.5)
    with pytest.raises(AssertionError, match="log_abs_det_jacobian"):
        assert_log_abs_det_jacobian(t, torch.randn(2, 3, 2, 2, dtype=torch.float64))


def test_rejects_inverse_off_by_a_constant(dtype):
    t = _linear(3, dtype, "cpu", inv_offset=1e-2)
    with pytest.raises(AssertionError, match=r"inv\(f\(x\)\) != x"):
        assert_bijective(t, torch.randn(5, 3, dtype=dtype))


def test_rejects_inverse_that_only_works_through_the_cache():
    # Pyro 1.9.2's planar flow has no inverse: it can only return the cached input.
    t = pyro_t.Planar(3)
    with torch.no_grad():
        t.u.normal_()
        t.w.normal_()
    x = torch.randn(4, 3)
    y = t(x)
    assert torch.equal(t.inv(y), x)  # the cache answers for the very same tensor ...
    with pytest.raises(AssertionError, match="inverse raised"):
        assert_bijective(t, x)  # ... but not for a fresh one


class _BadInverseLogDet(_Linear):
    """Forward is right; the inverse's log-det is wrong (not the negative)."""

    @property
    def inv(self):
        outer = self

        class _Inv(Transform):
            bijective = True
            domain = outer.codomain
            codomain = outer.domain

            def _call(self, y):
                return outer._inverse(y)

            def log_abs_det_jacobian(self, y, x):
                return outer.log_abs_det_jacobian(x, y)  # wrong: sign not flipped

        return _Inv()


def test_rejects_inverse_log_det_without_sign_flip():
    base = _linear(3, torch.float64, "cpu")
    t = _BadInverseLogDet(base.a, base.b)
    with pytest.raises(AssertionError, match="inv.log_abs_det_jacobian"):
        assert_inverse_log_det(t, torch.randn(4, 3, dtype=torch.float64))


# The kit must catch errors far below a flipped sign: errors that only a tolerance at
# sqrt(eps) catches, and that a tolerance 1000x looser (mutation testing) lets through. Each
# size sits between the two: above sqrt(eps) (1 + |value|) and below 1000 sqrt(eps), with
# |value| <~ 6 here (the log-det of A = randn + 3 I in D = 4 is about 4 log 3). The sizes
# are written out, not derived from tolerance(), so that loosening the kit fails these.
_SMALL_LD_ERROR = {torch.float64: 1e-6, torch.float32: 3e-2}
_SMALL_INV_REL_ERROR = {torch.float64: 1e-5, torch.float32: 1e-2}


def test_rejects_log_det_off_by_a_small_constant(dtype):
    off = _SMALL_LD_ERROR[dtype]
    t = _linear(4, dtype, "cpu", ld_offset=off)
    with pytest.raises(AssertionError, match="log_abs_det_jacobian.*autograd"):
        assert_log_abs_det_jacobian(t, torch.randn(6, 4, dtype=dtype))
    # the same error on images (event_dim=3)
    t = _linear(12, dtype, "cpu", event_dim=3, ld_offset=off)
    with pytest.raises(AssertionError, match="log_abs_det_jacobian"):
        assert_log_abs_det_jacobian(t, torch.randn(2, 3, 2, 2, dtype=dtype))


def test_rejects_log_det_off_only_in_float32():
    # the float64 copy is right, only the transform's own float32 path is wrong: the
    # float32 result itself must be held to the float32 tolerance
    t = _linear(4, torch.float32, "cpu", ld_offset=3e-2, ld_offset_dtype=torch.float32)
    x = torch.randn(6, 4)
    with pytest.raises(AssertionError, match=r"log_abs_det_jacobian \(torch.float32\)"):
        assert_log_abs_det_jacobian(t, x)
    assert_log_abs_det_jacobian(to_float64(t), x.double())  # the float64 path is fine


def test_errors_at_the_rounding_level_pass(dtype):
    # the other side of the tolerance: errors of a few hundred ulps are not rejected
    off = 300 * torch.finfo(dtype).eps
    t = _linear(4, dtype, "cpu", ld_offset=off, ld_offset_dtype=dtype, inv_rel=off)
    x = torch.randn(6, 4, dtype=dtype)
    assert_log_abs_det_jacobian(t, x)
    assert_bijective(t, x)


def test_rejects_inverse_off_by_a_small_relative_error(dtype):
    t = _linear(3, dtype, "cpu", inv_rel=_SMALL_INV_REL_ERROR[dtype])
    x = torch.randn(5, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match=r"inv\(f\(x\)\) != x"):
        assert_bijective(t, x)


class _Exp(Transform):
    """y = exp(x) on vectors, log-det sum(x); the inverse can be off by a relative error,
    which moves the inverse's log-det, -sum(inv(y)), by the same relative amount."""

    bijective = True
    domain = constraints.real_vector
    codomain = constraints.independent(constraints.positive, 1)

    def __init__(self, inv_rel=0.0):
        super().__init__()
        self.inv_rel = inv_rel

    def _call(self, x):
        return x.exp()

    def _inverse(self, y):
        return y.log() * (1 + self.inv_rel)

    def log_abs_det_jacobian(self, x, y):
        return x.sum(-1)


def test_rejects_inverse_log_det_of_a_slightly_wrong_inverse(dtype):
    x = 1 + torch.rand(5, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert_inverse_log_det(_Exp(), x)
    assert_bijective(_Exp(), x)
    assert_log_abs_det_jacobian(_Exp(), x)
    with pytest.raises(AssertionError, match="inv.log_abs_det_jacobian"):
        assert_inverse_log_det(_Exp(inv_rel=_SMALL_INV_REL_ERROR[dtype]), x)


class _InverseLogDetOffset(_Linear):
    """The inverse's log-det is the negative of the forward's plus a small constant."""

    def __init__(self, a, b, offset):
        super().__init__(a, b)
        self.offset = offset

    @property
    def inv(self):
        outer = self

        class _Inv(Transform):
            bijective = True
            domain = outer.codomain
            codomain = outer.domain

            def _call(self, y):
                return outer._inverse(y)

            def log_abs_det_jacobian(self, y, x):
                return -outer.log_abs_det_jacobian(x, y) + outer.offset

        return _Inv()


def test_rejects_inverse_log_det_off_by_a_small_constant(dtype):
    base = _linear(3, dtype, "cpu")
    t = _InverseLogDetOffset(base.a, base.b, _SMALL_LD_ERROR[dtype])
    with pytest.raises(AssertionError, match="inv.log_abs_det_jacobian"):
        assert_inverse_log_det(t, torch.randn(4, 3, dtype=dtype))
    assert_inverse_log_det(
        _InverseLogDetOffset(base.a, base.b, 0.0), torch.randn(4, 3, dtype=dtype)
    )


# --- depends on context -----------------------------------------------------------------


class _ZeroContextRadial(ConditionalRadial):
    """The mutation found by mutation testing: parameters from zeros_like(context)."""

    def condition(self, context):
        return super().condition(torch.zeros_like(context))


def _conditional_radial(cls, dtype, seed=0):
    torch.manual_seed(seed)
    t = cls(conditional_radial(3, 2, hidden_dims=[8]).nn, 3)
    with torch.no_grad():  # the last layer starts at zero: give it weights
        t.nn.layers[-1].weight.normal_(0.0, 0.5)
    return t.to(dtype)


def test_depends_on_context_accepts_a_real_conditional_transform(dtype):
    t = _conditional_radial(ConditionalRadial, dtype)
    assert_depends_on_context(t, torch.randn(6, 3, dtype=dtype), torch.randn(6, 2, dtype=dtype))
    # also with an unbatched context and an explicit second context
    c = torch.randn(2, dtype=dtype)
    assert_depends_on_context(t, torch.randn(6, 3, dtype=dtype), c, other_context=-c)


def test_depends_on_context_rejects_a_transform_that_ignores_its_context(dtype):
    t = _conditional_radial(_ZeroContextRadial, dtype)
    x, c = torch.randn(6, 3, dtype=dtype), torch.randn(6, 2, dtype=dtype)
    assert_bijective(t.condition(c), x)  # every other property still holds ...
    assert_log_abs_det_jacobian(t.condition(c), x)
    with pytest.raises(AssertionError, match=r"_ZeroContextRadial: f\(x; context\) does not"):
        assert_depends_on_context(t, x, c)  # ... but the context is ignored
    # a new (unperturbed) conditional layer ignores its context by construction
    with pytest.raises(AssertionError, match="does not depend on the context"):
        assert_depends_on_context(conditional_radial(3, 2).to(dtype), x, c)


class _ForwardOnlyShift(ConditionalTransform):
    """y = x + context (sum) forward; the inverse ignores the context (broken)."""

    def __init__(self, use_context_in_inverse):
        self.use = use_context_in_inverse

    def condition(self, context):
        shift = context.sum(-1, keepdim=True)
        inv_shift = shift if self.use else torch.zeros_like(shift)

        class _T(Transform):
            bijective = True
            domain = codomain = constraints.real_vector

            def _call(self, x):
                return x + shift

            def _inverse(self, y):
                return y - inv_shift

            def log_abs_det_jacobian(self, x, y):
                return torch.zeros(x.shape[:-1], dtype=x.dtype)

        return _T()


def test_depends_on_context_checks_the_inverse_too():
    x, c = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    assert_depends_on_context(_ForwardOnlyShift(True), x, c)  # volume-preserving is fine
    with pytest.raises(AssertionError, match=r"inv\(y; context\) does not depend"):
        assert_depends_on_context(_ForwardOnlyShift(False), x, c)


def test_depends_on_context_distributions_and_callables(dtype):
    x = torch.randn(5, 3, dtype=dtype)
    c = torch.randn(5, 2, dtype=dtype)

    def normal(loc):
        return td.Independent(td.Normal(loc, torch.ones_like(loc)), 1)

    # a callable context -> distribution, as the models' call model(context)
    uses = lambda ctx: normal(ctx.sum(-1, keepdim=True).expand(*ctx.shape[:-1], 3))
    ignores = lambda ctx: normal(torch.zeros(*ctx.shape[:-1], 3, dtype=ctx.dtype))
    assert_depends_on_context(uses, x, c)
    with pytest.raises(AssertionError, match=r"log_prob\(x \| context\) does not depend"):
        assert_depends_on_context(ignores, x, c)
    # a Pyro ConditionalTransformedDistribution (.condition(context) -> Distribution)
    t = _conditional_radial(ConditionalRadial, dtype)
    base = normal(torch.zeros(3, dtype=dtype))
    assert_depends_on_context(pyro_dist.ConditionalTransformedDistribution(base, [t]), x, c)
    zero = _conditional_radial(_ZeroContextRadial, dtype)
    with pytest.raises(AssertionError, match="log_prob"):
        assert_depends_on_context(pyro_dist.ConditionalTransformedDistribution(base, [zero]), x, c)
    # a callable context -> transform
    assert_depends_on_context(t.condition, x, c)


def test_depends_on_context_ignores_rounding_level_changes():
    # a dependence of relative size 1e-12 is rounding noise in float64, not a dependence
    x, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)

    def tiny(ctx):
        loc = 1 + 1e-12 * ctx.sum(-1, keepdim=True).expand(*ctx.shape[:-1], 3)
        return td.Independent(td.Normal(loc, torch.ones_like(loc)), 1)

    with pytest.raises(AssertionError, match="does not depend"):
        assert_depends_on_context(tiny, x, c)


def test_depends_on_context_one_batch_element_suffices():
    # a correct network can be flat in the context at some points (dead ReLU units): one
    # element that changes is enough, the others may not
    x, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    only_first = torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)[:, None]

    def dist(ctx):
        loc = (only_first * ctx.sum(-1, keepdim=True)).expand(5, 3)
        return td.Independent(td.Normal(loc, torch.ones_like(loc)), 1)

    assert_depends_on_context(dist, x, c)


def test_depends_on_context_bad_arguments():
    t = _conditional_radial(ConditionalRadial, torch.float64)
    x, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="other_context"):
        assert_depends_on_context(t, x, c, other_context=c[:2])
    with pytest.raises(ValueError, match="obj"):
        assert_depends_on_context(object(), x, c)
    with pytest.raises(ValueError, match="obj"):
        assert_depends_on_context(lambda ctx: ctx, x, c)


# --- autoregressive ------------------------------------------------------------------


def _masked(d, leak=None, drop=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g)
    mask = torch.tril(torch.ones(d, d), diagonal=-1)
    if leak is not None:
        mask[leak] = 1.0
    if drop is not None:
        mask[drop] = 0.0
    return lambda x: x @ (w * mask).T


def test_autoregressive_accepts_strictly_triangular():
    assert_autoregressive(_masked(6), torch.randn(4, 6), no_blind_spot=True)


def test_autoregressive_rejects_a_mask_that_leaks_one_future_input():
    with pytest.raises(AssertionError, match=r"position 2 .* depends on input position\(s\) \[4\]"):
        assert_autoregressive(_masked(6, leak=(2, 4)), torch.randn(4, 6))


def test_autoregressive_rejects_dependence_on_self_unless_allowed():
    f = _masked(5, leak=(3, 3))
    with pytest.raises(AssertionError, match="depends on input"):
        assert_autoregressive(f, torch.randn(4, 5))
    assert_autoregressive(f, torch.randn(4, 5), include_self=True)


def test_autoregressive_blind_spot_detected():
    f = _masked(6, drop=(5, 1))  # output 5 never sees input 1
    assert_autoregressive(f, torch.randn(4, 6))  # causal, so this passes ...
    with pytest.raises(AssertionError, match="blind spot"):
        assert_autoregressive(f, torch.randn(4, 6), no_blind_spot=True)  # ... this does not


def test_autoregressive_respects_a_given_order():
    order = torch.tensor([3, 0, 2, 1])
    rank = torch.empty(4, dtype=torch.long)
    rank[order] = torch.arange(4)
    mask = (rank[None, :] < rank[:, None]).float()  # out i sees inputs of lower rank
    w = torch.randn(4, 4)
    f = lambda x: x @ (w * mask).T
    assert_autoregressive(f, torch.randn(3, 4), order, no_blind_spot=True)
    with pytest.raises(AssertionError):
        assert_autoregressive(f, torch.randn(3, 4))  # natural order is violated


def test_autoregressive_images_with_extra_output_dims():
    # an "image model" over (1, 2, 2) whose output carries 3 parameters per position
    w = torch.randn(4, 4) * torch.tril(torch.ones(4, 4), diagonal=-1)
    f = lambda x: (x.reshape(-1, 4) @ w.T).reshape(-1, 1, 2, 2)[..., None].expand(-1, 1, 2, 2, 3)
    assert_autoregressive(f, torch.randn(3, 1, 2, 2))


def test_image_order_is_raster_then_channel():
    order = image_order(3, 2, 2)  # flat (C, H, W) positions: c * 4 + pixel
    assert order.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    with pytest.raises(ValueError, match="channels"):
        image_order(0, 2, 2)


def _rgb_model(leak_channel: bool):
    """An (3, 2, 2) "image model": output (c, p) reads every channel of earlier pixels and
    the channels before c of its own pixel (plus, with ``leak_channel``, G reads B)."""
    order = image_order(3, 2, 2)
    rank = torch.empty(12, dtype=torch.long)
    rank[order] = torch.arange(12)
    mask = (rank[None, :] < rank[:, None]).float()
    if leak_channel:
        mask[4 + 1, 8 + 1] = 1.0  # G of pixel 1 reads B of pixel 1
    w = torch.randn(12, 12) * mask
    return lambda x: (x.reshape(-1, 12) @ w.T).reshape(-1, 3, 2, 2)


def test_autoregressive_image_channel_order():
    x = torch.randn(3, 3, 2, 2)
    order = image_order(3, 2, 2)
    assert_autoregressive(_rgb_model(False), x, order, no_blind_spot=True)
    with pytest.raises(AssertionError, match=r"position 5 .* \[9\]"):
        assert_autoregressive(_rgb_model(True), x, order)
    # the leak is in output 5 only: checking other outputs passes
    assert_autoregressive(_rgb_model(True), x, order, outputs=[0, 4, 8, 1])


def test_autoregressive_within_limits_the_blind_spot_check_to_a_receptive_field():
    f = _masked(6, drop=(5, 1))  # output 5 never sees input 1
    within = torch.ones(6, 6, dtype=torch.bool)
    within[5, 1] = False  # ... which lies outside its receptive field
    assert_autoregressive(f, torch.randn(4, 6), no_blind_spot=True, within=within)
    with pytest.raises(AssertionError, match="blind spot"):
        assert_autoregressive(
            f, torch.randn(4, 6), no_blind_spot=True, within=torch.ones(6, 6, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="within"):
        assert_autoregressive(f, torch.randn(4, 6), within=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="outputs"):
        assert_autoregressive(f, torch.randn(4, 6), outputs=[6])


def test_autoregressive_bad_order_is_a_value_error():
    with pytest.raises(ValueError, match="order"):
        assert_autoregressive(_masked(3), torch.randn(2, 3), order=[0, 0, 1])


# --- normalized ----------------------------------------------------------------------


class _Unnormalized(td.Distribution):
    """Wraps a distribution and adds a constant to its log-density."""

    def __init__(self, base, shift):
        self.base, self.shift = base, shift
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def sample(self, sample_shape=torch.Size()):
        return self.base.sample(sample_shape)

    def log_prob(self, x):
        return self.base.log_prob(x) + self.shift


def test_normalized_accepts_discrete_and_continuous(dtype):
    probs = torch.rand(2, 5, dtype=dtype)
    assert_normalized(td.Independent(td.Bernoulli(probs), 1))
    assert_normalized(td.Binomial(4, torch.tensor([0.2, 0.7], dtype=dtype)))
    loc = torch.zeros(2, dtype=dtype)
    assert_normalized(td.Independent(td.Normal(loc, torch.ones(2, dtype=dtype)), 1))
    assert_normalized(td.Gamma(torch.tensor(2.0, dtype=dtype), torch.tensor(1.0, dtype=dtype)))


def test_normalized_rejects_a_pmf_that_does_not_sum_to_one():
    d = td.Independent(td.Bernoulli(torch.rand(6, dtype=torch.float64)), 1)
    with pytest.raises(AssertionError, match="not normalized"):
        assert_normalized(_Unnormalized(d, 1e-3))


def test_normalized_rejects_a_density_that_does_not_integrate_to_one():
    for event in [(), (2,)]:
        base = td.Normal(torch.zeros(event), torch.ones(event))
        base = td.Independent(base, len(event)) if event else base
        with pytest.raises(AssertionError, match="integral"):
            assert_normalized(_Unnormalized(base, 0.01))


def test_normalized_resolves_narrow_and_wide_members_of_one_batch(dtype):
    # one grid shared by the batch would step 0.5 across the wide member's range, far too
    # coarse for the narrow one (std 0.01): each member needs its own box
    scale = torch.tensor([[0.01], [10.0]], dtype=dtype).expand(2, 2)
    narrow_wide = td.Independent(td.Normal(torch.zeros(2, 2, dtype=dtype), scale), 1)
    assert_normalized(narrow_wide, num_points=201)
    scale1 = torch.tensor([0.001, 10.0], dtype=dtype)
    assert_normalized(td.Normal(torch.tensor([5.0, -3.0], dtype=dtype), scale1), num_points=2001)
    # per-member support bounds: Uniform members on disjoint intervals, and a Gamma batch
    low, high = torch.tensor([0.0, 100.0], dtype=dtype), torch.tensor([0.1, 200.0], dtype=dtype)
    assert_normalized(td.Uniform(low, high), num_points=2001, atol=2e-3)
    assert_normalized(
        td.Gamma(torch.tensor([2.0, 50.0], dtype=dtype), torch.tensor([1.0, 0.1], dtype=dtype))
    )
    # and a wrong member is still caught, with its index
    with pytest.raises(AssertionError, match=r"batch index \(1,\)"):
        assert_normalized(_Unnormalized(narrow_wide, torch.tensor([0.0, 0.01])), num_points=201)


def test_normalized_refuses_huge_supports():
    d = td.Independent(td.Bernoulli(torch.rand(30)), 1)
    with pytest.raises(ValueError, match="max_support_size"):
        assert_normalized(d)


# --- helpers ---------------------------------------------------------------------------


def test_to_float64_copies_modules_without_touching_the_original():
    t = pyro_t.Planar(3)
    t64 = to_float64(t)
    assert t64.u.dtype == torch.float64 and t.u.dtype == torch.float32
    assert t64.u is not t.u


def test_tolerance_rejects_integer_dtype():
    with pytest.raises(ValueError, match="dtype"):
        tolerance(torch.int64)


@settings(max_examples=examples(20))
@given(b=lst.batch_shapes(max_dims=3), img=lst.image_event_shapes())
def test_shape_strategies_respect_bounds(b, img):
    assert len(b) <= 3 and all(1 <= s <= 4 for s in b)
    assert img[0] in (1, 3) and all(2 <= s <= 8 for s in img[1:])


@settings(max_examples=examples(10))
@given(m=lst.well_conditioned_matrices(4, max_condition=5.0))
def test_well_conditioned_matrices(m):
    s = torch.linalg.svdvals(m)
    assert s.min() >= 1 - 1e-9 and s.max() <= 5 + 1e-9
