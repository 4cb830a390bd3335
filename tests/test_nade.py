"""Family-specific properties of NADE, RNADE, order-agnostic DeepNADE and EoNADE."""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_lgm import distributions as ld
from pyro_lgm import models as lm
from pyro_lgm.testing import assert_normalized, tolerance
from pyro_lgm.testing import strategies as lst
from tests.cases import examples

# ----------------------------------------------------------------------------- helpers


def all_binary(d, dtype=torch.float64, device="cpu"):
    """Every point of {0, 1}^d, shape (2**d, d)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=dtype, device=device)


@torch.no_grad()
def perturb(module, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))
    return module


def chi_square_pvalue(samples, points, log_probs):
    """p-value of Pearson's chi-square test of ``samples`` against the pmf on ``points``.

    Cells with an expected count below 5 are pooled into one cell.
    """
    n = samples.shape[0]
    match = (samples.unsqueeze(1) == points.unsqueeze(0)).all(-1)  # (N, P)
    assert bool((match.sum(1) == 1).all()), "every sample must be a support point"
    observed = match.sum(0).double()
    expected = n * log_probs.double().exp()
    small = expected < 5
    if small.any():
        observed = torch.cat([observed[~small], observed[small].sum().reshape(1)])
        expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    stat = ((observed - expected) ** 2 / expected).sum()
    df = observed.numel() - 1
    return float(1 - torch.distributions.Chi2(torch.tensor(float(df))).cdf(stat))


def ks_uniform(u):
    """Kolmogorov-Smirnov distance of the samples ``u`` (N,) to U(0, 1)."""
    u = u.detach().double().sort().values
    n = u.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - u, u - (i - 1) / n).max().detach())


def naive_nade_log_prob(model, x, context=None):
    """Reference NADE likelihood with D separate passes (one masked product per position)."""
    act = torch.sigmoid if model.activation == "sigmoid" else torch.relu
    d = model.features
    lp = torch.zeros(x.shape[:-1], dtype=x.dtype)
    for k in range(d):
        mask = torch.zeros(d, dtype=x.dtype)
        mask[model.order[:k]] = 1.0
        a = model.input_bias(context) + (x * mask) @ model.weight_in.T
        i = int(model.order[k])
        logit = act(a) @ model.weight_out[i] + model.bias_out[i]
        lp = lp + torch.distributions.Bernoulli(logits=logit).log_prob(x[..., i])
    return lp


def prototype_data(n, d, seed, flip=0.05):
    """Two binary prototypes with independent flips: entropy ~ log 2 + d H(flip) nats."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.stack([torch.arange(d) % 2, torch.arange(d) // max(1, d // 2) % 2]).float()
    which = torch.randint(2, (n,), generator=g)
    flips = (torch.rand(n, d, generator=g) < flip).float()
    return (protos[which] + flips) % 2


# ------------------------------------------------------------------------------- NADE


@settings(max_examples=examples(10), deadline=None)
@given(
    d=st.integers(1, 10),
    h=st.integers(1, 10),
    activation=st.sampled_from(["sigmoid", "relu"]),
    seed=lst.seeds(),
    conditional=st.booleans(),
    block_size=st.sampled_from([1, 3, 16, 64]),
)
def test_nade_running_sum_equals_naive_d_passes(d, h, activation, seed, conditional, block_size):
    model = lm.NADE(
        d, hidden=h, activation=activation, order="random", context_dim=2 * conditional, seed=seed
    ).double()
    perturb(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(7, d, generator=g) < 0.5).double()
    context = torch.randn(7, 2, generator=g, dtype=torch.float64) if conditional else None
    expected = naive_nade_log_prob(model, x, context)
    dist = model(context)
    dist.block_size = block_size  # blocks of the running sum: any size gives the same result
    torch.testing.assert_close(dist.log_prob(x), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["nade", "rnade", "deepnade"])
def test_conditionals_sum_to_log_prob(kind, device, dtype):
    torch.manual_seed(0)
    if kind == "nade":
        model = perturb(lm.NADE(6, hidden=5, order="random", seed=1), 1)
    elif kind == "rnade":
        model = lm.RNADE(6, hidden=5, num_components=3, order="random", seed=1)
    else:
        model = perturb(lm.DeepNADE(6, hidden_dims=(8, 8), seed=1), 1, 0.3)
    model = model.to(device=device, dtype=dtype)
    d = model(order=torch.randperm(6)) if kind == "deepnade" else model()
    if kind == "rnade":
        x = torch.randn(4, 3, 6, dtype=dtype, device=device)
    else:
        x = (torch.rand(4, 3, 6, device=device) < 0.5).to(dtype)
    cond = d.conditionals(x)
    assert cond.batch_shape == (4, 3, 6)
    torch.testing.assert_close(cond.log_prob(x).sum(-1), d.log_prob(x), **tolerance(dtype))


def test_conditional_of_first_position_ignores_everything():
    model = perturb(lm.NADE(5, hidden=4, order=[3, 0, 4, 1, 2], seed=0), 0)
    d = model()
    x = all_binary(5, torch.float32)
    logits = d.conditionals(x).logits
    assert torch.equal(logits[:, 3], logits[:1, 3].expand(32))
    assert not torch.allclose(logits[:, 2], logits[:1, 2].expand(32))


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_nade_sampling_frequencies_match_pmf(activation):
    torch.manual_seed(1)
    model = perturb(lm.NADE(4, hidden=6, activation=activation, order="random", seed=3), 3, 1.0)
    d = model()
    pts = all_binary(4, torch.float32)
    samples = d.sample((20000,))
    assert chi_square_pvalue(samples, pts, d.log_prob(pts).detach()) > 1e-3


def test_nade_with_context_shapes_and_normalization():
    model = perturb(lm.NADE(4, hidden=5, context_dim=3, seed=0), 0).double()
    context = torch.randn(3, 3, dtype=torch.float64)
    d = model(context)
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    assert d.log_prob(torch.zeros(5, 1, 4)).shape == (5, 3)
    assert d.sample((2,)).shape == (2, 3, 4)
    assert_normalized(d)
    # a different context is a different distribution
    lp = d.log_prob(all_binary(4)[:, None])
    assert not torch.allclose(lp[:, 0], lp[:, 1])
    e = d.expand((2, 3))
    assert e.batch_shape == (2, 3) and e.sample().shape == (2, 3, 4)
    assert e.conditionals(torch.zeros(4)).batch_shape == (2, 3, 4)


def test_expand_and_batch_shapes_without_context():
    d = lm.NADE(3, hidden=4, seed=0)()
    assert d.batch_shape == () and d.event_shape == (3,)
    e = d.expand((2, 5))
    assert e.sample((4,)).shape == (4, 2, 5, 3)
    assert e.log_prob(torch.zeros(3)).shape == (2, 5)
    assert e.log_prob(torch.zeros(7, 1, 1, 3)).shape == (7, 2, 5)
    with pytest.raises(ValueError, match="batch_shape"):
        e.expand((3, 5))
    with pytest.raises(ValueError, match="value"):
        e.log_prob(torch.zeros(3, 1, 3))  # batch 3 vs 2 does not broadcast


def test_bad_values_raise_value_error():
    d = lm.NADE(3, hidden=4, seed=0)()
    with pytest.raises(ValueError, match="binary"):
        d.log_prob(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="binary"):
        d.log_prob(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        d.log_prob(torch.zeros(4))
    with pytest.raises(ValueError, match="value"):
        d.log_prob([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="binary"):
        d.conditionals(torch.tensor([2, 0, 1]))
    # integer and bool binary data are accepted
    x = torch.tensor([1, 0, 1])
    assert torch.equal(d.log_prob(x), d.log_prob(x.float()))
    assert torch.equal(d.log_prob(x.bool()), d.log_prob(x.float()))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="value"):
            d.log_prob(x.cuda())
    r = lm.RNADE(2, hidden=3, num_components=2, seed=0)()
    with pytest.raises(ValueError, match="finite"):
        r.log_prob(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="finite"):
        r.log_prob(torch.tensor([float("inf"), 0.0]))
    with pytest.raises(ValueError, match="dtype"):
        r.log_prob(torch.zeros(2, dtype=torch.float64))


def test_bad_context_and_hyper_parameters_raise_value_error():
    model = lm.NADE(3, hidden=4, context_dim=2, seed=0)
    with pytest.raises(ValueError, match="context"):
        model()
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        model(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="context"):
        lm.NADE(3, hidden=4)(torch.zeros(2))
    bad = [
        lambda: lm.NADE(0),
        lambda: lm.NADE(3, hidden=0),
        lambda: lm.NADE(3, activation="tanh"),
        lambda: lm.NADE(3, order=[0, 0, 1]),
        lambda: lm.NADE(3, order=[0, 1]),
        lambda: lm.NADE(3, order="sideways"),
        lambda: lm.NADE(3, context_dim=-1),
        lambda: lm.RNADE(3, num_components=0),
        lambda: lm.RNADE(3, log_scale_bound=-1.0),
        lambda: lm.DeepNADE(3, hidden_dims=(0,)),
        lambda: lm.DeepNADE(3, activation="gelu"),
        lambda: ld.NADE(torch.nn.Linear(2, 2)),
        lambda: ld.EoNADE(lm.DeepNADE(3, hidden_dims=(4,)), torch.tensor([[0, 1, 1]])),
        lambda: ld.EoNADE(lm.DeepNADE(3, hidden_dims=(4,)), torch.tensor([0, 1, 2])),
        lambda: lm.DeepNADE(3, hidden_dims=(4,)).ensemble(num_orderings=0),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()


@pytest.mark.parametrize("kind", ["nade", "rnade", "deepnade"])
def test_state_dict_round_trip(kind):
    if kind == "nade":
        a, b = lm.NADE(5, hidden=4, order="random", seed=1), lm.NADE(5, hidden=4, seed=2)
        x = all_binary(5, torch.float32)
    elif kind == "rnade":
        a = lm.RNADE(5, hidden=4, num_components=2, order="random", seed=1)
        b = lm.RNADE(5, hidden=4, num_components=2, seed=2)
        x = torch.randn(8, 5)
    else:
        a = lm.DeepNADE(5, hidden_dims=(6,), order="random", seed=1)
        b = lm.DeepNADE(5, hidden_dims=(6,), seed=2)
        x = all_binary(5, torch.float32)
    perturb(a, 7)
    assert not torch.allclose(a().log_prob(x), b().log_prob(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.order, b.order)
    torch.testing.assert_close(a().log_prob(x), b().log_prob(x), atol=0, rtol=0)


def test_pyro_sample_observes_log_prob():
    model = perturb(lm.NADE(4, hidden=3, seed=0), 0)
    x = all_binary(4, torch.float32)

    def program():
        pyro.module("nade", model)
        return pyro.sample("x", model().expand((16,)).to_event(1), obs=x)

    trace = poutine.trace(program).get_trace()
    torch.testing.assert_close(trace.log_prob_sum(), model().log_prob(x).sum())


def test_nade_short_fit_lowers_nll():
    torch.manual_seed(0)
    train, test = prototype_data(512, 8, 0), prototype_data(512, 8, 1)
    model = lm.NADE(8, hidden=16, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    before = -model().log_prob(test).mean().item()
    for _ in range(150):
        opt.zero_grad()
        loss = -model().log_prob(train).mean()
        loss.backward()
        opt.step()
    after = -model().log_prob(test).mean().item()
    entropy = math.log(2) + 8 * -(0.05 * math.log(0.05) + 0.95 * math.log(0.95))
    assert before > 5.0  # about 8 log 2 at initialisation
    assert after < before - 2.0
    assert after > entropy - 0.3  # cannot beat the data's entropy by much on held-out data


# ------------------------------------------------------------------------------ RNADE


def test_rnade_sampling_probability_integral_transform():
    torch.manual_seed(0)
    model = lm.RNADE(3, hidden=6, num_components=3, order="random", seed=4).double()
    with torch.no_grad():
        model.bias_loc.normal_()
        model.bias_logits.normal_()
    d = model()
    x = d.sample((4000,))
    # u_i = F(x_i | x_<i) are iid U(0, 1) for exact ancestral samples.
    u = d.conditionals(x).cdf(x)
    crit = 1.95 / math.sqrt(4000) * 1.1  # KS at alpha ~ 1e-3, with a Bonferroni margin
    for i in range(3):
        assert ks_uniform(u[:, i]) < crit, f"position {i}"
    # and the statistic is sensitive: a shifted sample fails it
    wrong = d.conditionals(x).cdf(x + 0.3)
    assert max(ks_uniform(wrong[:, i]) for i in range(3)) > crit


def test_rnade_log_scales_are_bounded():
    model = lm.RNADE(2, hidden=3, num_components=2, log_scale_bound=3.0, seed=0).double()
    with torch.no_grad():
        model.bias_log_scale.fill_(1e6)
    scale = model().conditionals(torch.zeros(1, 2, dtype=torch.float64)).component_distribution
    assert torch.all(scale.scale <= math.exp(3.0) * (1 + 1e-12))
    assert torch.isfinite(model().log_prob(torch.zeros(2, dtype=torch.float64)))


def test_rnade_short_fit_lowers_nll():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1024, 2, generator=g)
    sign = torch.randint(2, (1024, 1), generator=g) * 2 - 1.0
    data = torch.cat([2 * sign + 0.3 * z[:, :1], sign * 1.5 + 0.3 * z[:, 1:]], -1)
    train, test = data[:768], data[768:]
    model = lm.RNADE(2, hidden=16, num_components=4, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    before = -model().log_prob(test).mean().item()
    for _ in range(150):
        opt.zero_grad()
        (-model().log_prob(train).mean()).backward()
        opt.step()
    after = -model().log_prob(test).mean().item()
    assert after < before - 1.0


# -------------------------------------------------------------- DeepNADE and EoNADE


def test_deepnade_and_eonade_sampling_frequencies():
    torch.manual_seed(2)
    model = perturb(lm.DeepNADE(3, hidden_dims=(8,), activation="tanh", seed=0), 0, 1.0)
    pts = all_binary(3, torch.float32)
    d = model(order=[2, 0, 1])
    assert chi_square_pvalue(d.sample((20000,)), pts, d.log_prob(pts).detach()) > 1e-3
    e = model.ensemble(orders=torch.tensor([[0, 1, 2], [2, 1, 0], [1, 2, 0]]))
    assert chi_square_pvalue(e.sample((20000,)), pts, e.log_prob(pts).detach()) > 1e-3


def test_deepnade_orderings_are_different_normalized_models():
    model = perturb(lm.DeepNADE(4, hidden_dims=(8,), seed=0), 0, 1.0).double()
    pts = all_binary(4)
    a, b = model(order="natural"), model(order="reversed")
    assert_normalized(a)
    assert_normalized(b)
    assert not torch.allclose(a.log_prob(pts), b.log_prob(pts), atol=1e-3)


def test_eonade_is_the_mixture_likelihood_not_averaged_logits():
    # (seed 3: for this network the averaged-logits "mass" is visibly off 1; for some
    # networks it happens to land within ~1e-4 of 1, but it is never the mixture.)
    model = perturb(lm.DeepNADE(4, hidden_dims=(8,), seed=3), 3, 1.0).double()
    g = torch.Generator().manual_seed(0)
    e = model.ensemble(num_orderings=3, generator=g)
    pts = all_binary(4)
    comp = torch.stack([c.log_prob(pts) for c in e.components])
    mixture = comp.logsumexp(0) - math.log(3)
    torch.testing.assert_close(e.log_prob(pts), mixture, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(e.component_log_probs(pts), comp, atol=1e-12, rtol=1e-12)
    assert_normalized(e)
    # Averaging the per-ordering logits is not a likelihood: it differs and does not sum to 1.
    logits = torch.stack([c.conditionals(pts).logits for c in e.components]).mean(0)
    averaged = torch.distributions.Bernoulli(logits=logits).log_prob(pts).sum(-1)
    assert (averaged - mixture).abs().max() > 1e-2
    assert abs(averaged.logsumexp(0).item()) > 1e-2
    # the model's shortcut uses the same orderings for the same generator state
    lp = model.ensemble_log_prob(pts, num_orderings=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lp, mixture)


def test_order_agnostic_estimator_is_unbiased():
    d = 3
    model = perturb(lm.DeepNADE(d, hidden_dims=(8,), seed=0), 0, 1.0).double()
    x = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    # Target: -E_o log p(x | o) over all d! orderings, each an exact likelihood.
    target = -torch.stack(
        [model(order=list(o)).log_prob(x) for o in itertools.permutations(range(d))]
    ).mean()
    # Exact expectation of the estimator: d ~ U{0..D-1}, observed set uniform of size d.
    exact = 0.0
    for k in range(d):
        subsets = list(itertools.combinations(range(d), k))
        for s in subsets:
            mask = torch.zeros(d, dtype=torch.float64)
            mask[list(s)] = 1.0
            logits = model.conditional_logits(x * mask, mask)
            ll = torch.distributions.Bernoulli(logits=logits).log_prob(x)
            term = d / (d - k) * (ll * (1 - mask)).sum()
            exact = exact - term / (d * len(subsets))
    torch.testing.assert_close(exact, target, atol=1e-10, rtol=1e-10)
    # Monte Carlo mean of the module's own estimator (random prefixes) agrees within 5 SE.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        loss = model.order_agnostic_loss(x.expand(20000, d), generator=g)
    se = loss.std() / math.sqrt(loss.numel())
    assert abs(loss.mean() - target) < 5 * se


def test_deepnade_order_agnostic_fit_lowers_exact_nll():
    torch.manual_seed(0)
    train, test = prototype_data(512, 8, 0), prototype_data(512, 8, 1)
    model = lm.DeepNADE(8, hidden_dims=(32,), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    orders = model.random_orders(2, generator=g)
    with torch.no_grad():
        before = -model.ensemble(orders=orders).log_prob(test).mean().item()
    for _ in range(200):
        opt.zero_grad()
        model.order_agnostic_loss(train, generator=g).mean().backward()
        opt.step()
    with torch.no_grad():
        after_single = -model(order=orders[0]).log_prob(test).mean().item()
        after = -model.ensemble(orders=orders).log_prob(test).mean().item()
    assert after_single < before - 1.5
    assert after <= after_single + 0.7  # log-mean-exp of K orderings >= worst - log K


def test_order_agnostic_loss_bad_input():
    model = lm.DeepNADE(3, hidden_dims=(4,), seed=0)
    with pytest.raises(ValueError, match="binary"):
        model.order_agnostic_loss(torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="x"):
        model.order_agnostic_loss(torch.zeros(2, 4))
    d = model()
    with pytest.raises(ValueError, match="binary"):
        d.log_prob(torch.tensor([0.0, float("nan"), 1.0]))


def test_deepnade_chunked_exact_pass_matches_single_pass(monkeypatch):
    import pyro_lgm.distributions.deepnade as dn

    model = perturb(lm.DeepNADE(5, hidden_dims=(8,), context_dim=2, seed=0), 0).double()
    x = all_binary(5)
    context = torch.randn(32, 2, dtype=torch.float64)
    d = model(context, order=[4, 2, 0, 1, 3])
    full = d.log_prob(x)
    monkeypatch.setattr(dn, "_MAX_ROWS", 12)  # 2 examples (10 masked copies) per chunk
    torch.testing.assert_close(d.log_prob(x), full, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(d.conditionals(x).log_prob(x).sum(-1), full)


@pytest.mark.parametrize("context_dim", [0, 3])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_deepnade_running_sum_pass_equals_masked_copies(context_dim, activation):
    """models.DeepNADE.ordered_logits (running first layer, one output per copy) gives the
    same logits as the network run on the D prefix-masked copies of each example."""
    from pyro_lgm.distributions.deepnade import _ordered_logits_chunk

    class MaskedCopiesOnly:  # exposes only the generic interface
        def __init__(self, model):
            self.features, self.conditional_logits = model.features, model.conditional_logits

    model = perturb(
        lm.DeepNADE(9, (7, 5), activation=activation, context_dim=context_dim, seed=1), seed=4
    )
    model = model.double()
    g = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((4, 9), 0.5, dtype=torch.float64), generator=g)
    ctx = torch.randn(4, context_dim, generator=g, dtype=torch.float64) if context_dim else None
    for _ in range(3):
        order = torch.randperm(9, generator=g)
        fast = model.ordered_logits(x, order, ctx)
        slow = _ordered_logits_chunk(MaskedCopiesOnly(model), x, ctx, order)
        torch.testing.assert_close(fast, slow)


def test_subclass_overrides_are_not_bypassed_by_fast_paths():
    """A subclass that overrides a method of the generic pass gets that pass, not the
    library module's fast path (which would silently ignore the override)."""

    class ScaledNADE(lm.NADE):
        def heads(self, h, index):
            return 2.0 * super().heads(h, index)

    class ScaledDeepNADE(lm.DeepNADE):
        def conditional_logits(self, x_masked, mask, context=None):
            return 2.0 * super().conditional_logits(x_masked, mask, context)

    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    for plain, scaled in (
        (lm.NADE(5, hidden=4, seed=0), ScaledNADE(5, hidden=4, seed=0)),
        (lm.DeepNADE(5, (4,), seed=0), ScaledDeepNADE(5, (4,), seed=0)),
    ):
        plain, scaled = plain.double(), scaled.double()
        logits = plain().conditionals(x).logits
        expected = torch.distributions.Bernoulli(logits=2 * logits).log_prob(x).sum(-1)
        torch.testing.assert_close(scaled().log_prob(x), expected)
