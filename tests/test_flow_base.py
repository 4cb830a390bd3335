"""``Flow(..., base=...)``: a fixed or conditional base distribution (issue 10)."""

import pyro.distributions as dist
import pytest
import torch

from pyro_lgm.models import ConditionalNormal, Flow, iaf, maf, planar_flow, realnvp
from pyro_lgm.transforms import conditional_planar, planar


def _manual_log_prob(flow, base, x, context=None):
    """log p0(f^{-1}(x)) - sum_k log|det J_k|, layer by layer, without the cache."""
    ts = [t.condition(context) if hasattr(t, "condition") else t for t in flow.transforms]
    ys = [x]
    for t in reversed(ts):
        ys.append(t.inv(ys[-1].clone()))
    zs = list(reversed(ys))  # zs[0] = base point, zs[k+1] = t_k(zs[k])
    ldj = sum(t.log_abs_det_jacobian(zs[k], zs[k + 1]) for k, t in enumerate(ts))
    return base.log_prob(zs[0]) - ldj


def test_fixed_base_log_prob_is_the_change_of_variables():
    torch.manual_seed(0)
    base = dist.Normal(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 1.5])).to_event(1)
    flow = planar_flow(3, num_layers=3, base=base).double()
    flow.base_dist = dist.Normal(base.base_dist.loc.double(), base.base_dist.scale.double())
    flow.base_dist = flow.base_dist.to_event(1)
    x = torch.randn(6, 3, dtype=torch.float64)
    got = flow().log_prob(x)
    want = _manual_log_prob(flow, flow.base_dist, x)
    assert torch.allclose(got, want, atol=1e-10)
    # not the standard-normal answer
    assert not torch.allclose(got, planar_flow(3, 3).double()().log_prob(x))


def test_conditional_base_log_prob_and_sample_shapes():
    torch.manual_seed(0)
    enc = ConditionalNormal(5, 3, hidden_dims=[8])
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    layers = [conditional_planar(3, 5, hidden_dims=[]) for _ in range(2)]
    flow = Flow((3,), layers, base=enc).double()
    context = torch.randn(4, 5, dtype=torch.float64)
    q = flow(context)
    z = q.rsample()
    assert z.shape == (4, 3) and q.batch_shape == (4,)
    assert q.sample((7,)).shape == (7, 4, 3)
    want = _manual_log_prob(flow, enc(context), z.detach(), context)
    assert torch.allclose(q.log_prob(z.detach().clone()), want, atol=1e-10)
    # the base's parameters are the flow's: they train
    assert {id(p) for p in enc.parameters()} <= {id(p) for p in flow.parameters()}


def test_unconditional_transforms_over_a_conditional_base_make_a_conditional_flow():
    flow = planar_flow(2, 2, base=ConditionalNormal(3, 2))
    assert flow.conditional
    assert flow(torch.zeros(5, 3)).batch_shape == (5,)
    with pytest.raises(ValueError, match="context"):
        flow()


@pytest.mark.parametrize(
    "build",
    [
        lambda base: maf(3, hidden_dims=[8], num_layers=2, base=base),
        lambda base: iaf(3, hidden_dims=[8], num_layers=2, base=base),
        lambda base: realnvp(3, hidden_dims=[8], num_layers=2, actnorm=False, base=base),
    ],
)
def test_every_builder_takes_a_base(build):
    base = dist.Normal(torch.full((3,), 2.0), torch.ones(3)).to_event(1)
    flow = build(base)
    x = torch.randn(5, 3)
    # all these flows start at (or near) the identity: the base decides log p
    assert torch.allclose(flow().log_prob(x), base.log_prob(x), atol=1e-3)


def test_base_follows_to_when_it_is_a_module():
    flow = planar_flow(2, 2, base=ConditionalNormal(3, 2)).to(torch.float64)
    assert flow(torch.zeros(1, 3, dtype=torch.float64)).sample().dtype == torch.float64


def test_fixed_base_batch_shape_broadcasts_with_the_context():
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    flow = Flow((2,), [conditional_planar(2, 3, hidden_dims=[])], base=base)
    assert flow(torch.zeros(4, 3)).batch_shape == (4,)
    bad = dist.Normal(torch.zeros(3, 2), torch.ones(3, 2)).to_event(1)
    flow = Flow((2,), [conditional_planar(2, 3, hidden_dims=[])], base=bad)
    with pytest.raises(ValueError, match="base: its batch shape"):
        flow(torch.zeros(4, 3))


def test_bad_bases_are_named():
    with pytest.raises(ValueError, match="base: expected event shape"):
        Flow((2,), [planar(2)], base=dist.Normal(torch.zeros(2), torch.ones(2)))
    with pytest.raises(ValueError, match="base: expected None"):
        Flow((2,), [planar(2)], base="normal")

    class NotADistribution(torch.nn.Module):
        def forward(self):
            return torch.zeros(2)

    with pytest.raises(ValueError, match="base: expected a torch.distributions.Distribution"):
        Flow((2,), [planar(2)], base=NotADistribution())()
    with pytest.raises(ValueError, match="context"):
        ConditionalNormal(3, 2)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="min_scale"):
        ConditionalNormal(3, 2, min_scale=-1.0)


def test_conditional_normal_starts_at_the_standard_normal():
    q = ConditionalNormal(4, 3)(torch.randn(6, 4))
    assert torch.allclose(q.base_dist.loc, torch.zeros(6, 3))
    assert torch.allclose(q.base_dist.scale, torch.ones(6, 3))
