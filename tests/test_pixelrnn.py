"""PixelRNN (Row LSTM, Diagonal BiLSTM): skewing, receptive fields, cached generation,
log_prob, conditions, errors, training."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

import pyro_lgm.distributions as ld
import pyro_lgm.models as lm
import pyro_lgm.nn as lnn
from pyro_lgm.nn.pixelrnn import skew, unskew
from pyro_lgm.testing import assert_autoregressive, image_order
from tests.cases import live_units, perturb_all

DISTS = {lnn.RowLSTM: ld.RowLSTM, lnn.DiagonalBiLSTM: ld.DiagonalBiLSTM}


def _random(
    net: torch.nn.Module, seed: int = 0, dtype=torch.float64, live: bool = True
) -> torch.nn.Module:
    """Random weights at half scale; ``live``: positive biases too (no ReLU unit of the head
    dead everywhere, for the dependence checks; sampling tests keep the biases' signs so
    that the probabilities are not all near 0 or 1)."""
    perturb_all(net, seed, scale=0.5)
    if live:
        live_units(net)
    return net.to(dtype).eval()


def _x(c, h, w, top=1.0, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * top


# ------------------------------------------------------------------------------ skew


def test_skew_moves_row_i_right_by_i_and_unskew_inverts_it():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    y = skew(x)
    assert y.shape == (2, 3, 4, 8)
    for i in range(4):
        for j in range(5):
            assert torch.equal(y[:, :, i, i + j], x[:, :, i, j])
    inside = torch.zeros(4, 8, dtype=torch.bool)
    for i in range(4):
        inside[i, i : i + 5] = True
    assert bool((y[:, :, ~inside] == 0).all())
    assert torch.equal(unskew(y, 5), x)
    assert torch.equal(unskew(skew(x[:, :, :1]), 5), x[:, :, :1])  # one row: no shift
    with pytest.raises(ValueError, match="y: expected 7 skewed columns for width 4, got 8"):
        unskew(y, 4)


# ------------------------------------------------------------------ receptive fields


def _reached(net, i, j, x):
    """The input pixels with a nonzero gradient of output ``(i, j)`` (any batch element)."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(x)[:, :, i, j].sum(), x)
    h, w = x.shape[-2:]
    return {(a, b) for a in range(h) for b in range(w) if bool(g[:, :, a, b].ne(0).any())}


def test_row_lstm_receptive_field_is_exactly_the_derived_triangle():
    """Row LSTM with L = 2 layers and a 7x7 mask-A first layer (reach r = 3) on a 1x4x7
    image. Per layer the state at (i, j) reads its input at (i, j - 1), (i, j) (the mask-B
    1x3 input-to-state kernel) and the states of row i - 1 at columns j - 1 .. j + 1 (the 1x3
    state-to-state kernel), so it reaches the input at (i - k, j + d) for k >= 0,
    -k - 1 <= d <= k; L such layers with residual connections reach -k - L <= d <= k; the
    first layer adds rows 1 .. 3 up with |d| <= 3 and the current row 1 .. 3 to the left.
    The output at (i, j) therefore reads exactly the pixels (i - m, j + d) with

    * m = 0: -L - 3 <= d <= -1 (the current row: 5 pixels to the left), and
    * m >= 1: -m - L - 3 <= d <= m + 2,

    so a pixel of the row above more than 3 columns to the right is out of reach (the
    triangle), e.g. (0, 5) and (0, 6) for the output (1, 2)."""
    h, w, layers = 4, 7, 2
    net = _random(lnn.RowLSTM((1, h, w), 3, layers))
    x = _x(1, h, w)
    for i in range(h):
        for j in range(w):
            expected = {
                (i - m, j + d)
                for m in range(i + 1)
                for d in range(-m - layers - 3, (m + 3 if m else 0))
                if 0 <= j + d < w
            }
            assert _reached(net, i, j, x) == expected, (i, j)
    reached = _reached(net, 1, 2, x)
    assert (0, 5) in reached and (0, 6) not in reached  # the blind region, far up-right
    # the same through the kit: causal, but with the blind region
    d = ld.RowLSTM(net, validate_args=False)
    order = image_order(1, h, w)
    assert_autoregressive(d.conditional_params, x, order)
    with pytest.raises(AssertionError, match="blind spot"):
        assert_autoregressive(d.conditional_params, x, order, no_blind_spot=True)


def test_diagonal_bilstm_reaches_every_earlier_pixel_and_nothing_after():
    h, w = 4, 7
    net = _random(lnn.DiagonalBiLSTM((1, h, w), 3, 2))
    x = _x(1, h, w)
    for i in range(h):
        for j in range(w):
            past = {(a, b) for a in range(h) for b in range(w) if (a, b) < (i, j)}
            assert _reached(net, i, j, x) == past, (i, j)
    d = ld.DiagonalBiLSTM(net, validate_args=False)
    assert_autoregressive(d.conditional_params, x, image_order(1, h, w), no_blind_spot=True)


def test_diagonal_bilstm_of_the_paper_misses_only_the_end_of_the_previous_row():
    """``full_context=False`` (the paper's layers): pixel (i - 1, W - 1) enters the stream
    only in row i at columns >= W - 1 - 3 (the 7x7 mask-A reach); the outputs (i, j) with
    j < W - 4 miss it and nothing else."""
    h, w = 4, 7
    net = _random(lnn.DiagonalBiLSTM((1, h, w), 3, 2, full_context=False))
    x = _x(1, h, w)
    for i in range(h):
        for j in range(w):
            past = {(a, b) for a in range(h) for b in range(w) if (a, b) < (i, j)}
            if i >= 1 and j < w - 4:
                past.discard((i - 1, w - 1))
            assert _reached(net, i, j, x) == past, (i, j)


def test_right_to_left_direction_without_the_down_shift_would_see_the_future():
    """The first layer's right-to-left states at (1, 1) read the pixels of row 1 from column
    1 on - the pixel itself and the future; shifted down one row, the states that reach
    (1, 1) are those of (0, 1), which read only row 0 (through the first layer's window,
    also (0, 0))."""
    h, w = 3, 4
    net = _random(lnn.DiagonalBiLSTM((1, h, w), 2, 1))
    x = _x(1, h, w).requires_grad_(True)
    xs = net.rescale(x)
    pre = net.is_right[0](net.first(xs)) + net.row_input(xs)
    right = net._scan(pre.flip(-1), net.ss_right[0]).flip(-1)  # (B, h, H, W), unshifted

    def reached(out):
        (g,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
        return {(a, b) for a in range(h) for b in range(w) if bool(g[:, 0, a, b].ne(0).any())}

    unshifted = reached(right[:, :, 1, 1])
    assert {(1, 1), (1, 2), (1, 3)} <= unshifted
    shifted = torch.nn.functional.pad(right, (0, 0, 1, 0))[..., :-1, :]
    assert {a for a, _ in reached(shifted[:, :, 1, 1])} == {0}  # row 0 only: the past
    # the whole network with the shift switched off sees the future; no session for it
    net._shift_right = False
    assert (1, 3) in _reached(net, 1, 1, x.detach())
    with pytest.raises(ValueError, match="unshifted"):
        net.incremental(1)


def test_rgb_channels_see_only_the_earlier_channels_of_their_pixel():
    for cls in DISTS:
        net = _random(cls((3, 2, 3), 2, 1, output="categorical", bits=2))
        d = DISTS[cls](net, validate_args=False)
        x = _x(3, 2, 3, top=3.0)
        assert_autoregressive(d.conditional_params, x, image_order(3, 2, 3))


# ------------------------------------------------------------------ cached generation

FAMILIES = [
    ("row_bin", lambda: lnn.RowLSTM((1, 4, 5), 3, 2), None),
    ("diag_bin", lambda: lnn.DiagonalBiLSTM((1, 4, 5), 3, 2), None),
    (
        "row_rgb_class",
        lambda: lnn.RowLSTM((3, 2, 3), 2, 2, output="categorical", bits=2, num_classes=3),
        "class",
    ),
    (
        "diag_rgb_class",
        lambda: lnn.DiagonalBiLSTM((3, 2, 3), 2, 2, output="categorical", bits=2, num_classes=3),
        "class",
    ),
    (
        "diag_mix_vector",
        lambda: lnn.DiagonalBiLSTM(
            (3, 2, 2), 2, 1, output="logistic_mixture", bits=3, num_mixtures=2, context_dim=3
        ),
        "vector",
    ),
    (
        "row_map",
        lambda: lnn.RowLSTM((1, 3, 3), 2, 1, context_channels=2),
        "map",
    ),
]


def _context(kind, n):
    g = torch.Generator().manual_seed(1)
    if kind is None:
        return None
    if kind == "class":
        return torch.arange(n) % 3
    if kind == "vector":
        return torch.randn(n, 3, generator=g, dtype=torch.float64)
    return torch.randn(n, 2, 2, 2, generator=g, dtype=torch.float64)


def _dist(make, kind, n=3, seed=0):
    net = _random(make(), seed, live=False)
    return DISTS[type(net)](net, _context(kind, n))


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_cached_and_naive_sampling_give_identical_images(name, make, kind):
    d = _dist(make, kind)
    shape = (2,) if kind is None else ()
    a = d.sample(shape, generator=torch.Generator().manual_seed(5))
    b = d.sample(shape, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert bool(d.support.check(a).all())
    c = d.sample(shape, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_session_step_equals_the_forward_pass(name, make, kind):
    """Feed a fixed image element by element: every step's output (the parameters of that
    element) equals the full forward pass of the final image at that element."""
    net = _random(make())
    c, h, w = net.image_shape
    ctx = _context(kind, 3)
    x = torch.randint(0, net.levels, (3, c, h, w), generator=torch.Generator().manual_seed(2))
    x = x.double()
    with torch.no_grad():
        full = net(x, ctx)
        session = net.incremental(3, ctx)
        per = full.shape[1] // c if net.per_channel_output else full.shape[1]
        for t in range(c * h * w):
            p, ch = divmod(t, c)
            out = session.step(t)
            ref = full[:, :, p // w, p % w]
            part = slice(ch * per, (ch + 1) * per) if net.per_channel_output else slice(None)
            assert torch.allclose(out[:, part], ref[:, part], atol=1e-12, rtol=1e-10), t
            session.x[:, ch, p] = x.reshape(3, c, h * w)[:, ch, p]


def test_cached_sampling_identical_in_float32():
    net = _random(lnn.DiagonalBiLSTM((1, 8, 8), 4, 2), live=False, dtype=torch.float32)
    d = ld.DiagonalBiLSTM(net)
    a = d.sample((3,), generator=torch.Generator().manual_seed(0))
    b = d.sample((3,), method="naive", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_completion_is_the_same_cached_or_naive():
    d = _dist(FAMILIES[1][1], None)
    obs = d.sample((2,), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 4, 5, dtype=torch.bool)
    mask[..., :2, :] = True
    a = d.sample(observed=obs, mask=mask, generator=torch.Generator().manual_seed(1))
    b = d.sample(
        observed=obs, mask=mask, method="naive", generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b)
    assert torch.equal(a[mask.expand_as(obs)], obs[mask.expand_as(obs)])


# ------------------------------------------------------------------ log_prob, conditions


@pytest.mark.parametrize("name, make, kind", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_log_prob_is_one_pass_and_sums_the_conditionals(name, make, kind):
    d = _dist(make, kind)
    x = d.sample((2,))
    calls = []
    handle = d.net.register_forward_hook(lambda *args: calls.append(1))
    try:
        lp = d.log_prob(x)
    finally:
        handle.remove()
    assert len(calls) == 1
    cond = d.conditionals(x)
    assert cond.batch_shape == (2, *d.batch_shape, *d.event_shape)
    target = x.long() if d.output == "categorical" else x
    assert torch.allclose(cond.log_prob(target).sum((-3, -2, -1)), lp, atol=1e-10)


def test_class_condition_changes_the_output():
    for cls in DISTS:
        net = _random(cls((1, 3, 3), 3, 2, num_classes=3))
        x = _x(1, 3, 3).round()
        a = net(x, torch.tensor([0, 0, 0]))
        b = net(x, torch.tensor([1, 1, 1]))
        assert not torch.allclose(a, b)
        assert torch.equal(net(x, torch.tensor([1, 1, 1])), b)


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("cls", [lnn.RowLSTM, lnn.DiagonalBiLSTM], ids=["row", "diag"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_shape=(1, 3)), "image_shape"),
        (dict(hidden_channels=0), "hidden_channels"),
        (dict(num_layers=0), "num_layers"),
        (dict(first_kernel=4), "first_kernel"),
        (dict(output="normal"), "output"),
        (dict(bits=8), "bits"),
        (dict(num_classes=3, context_dim=2), "give one condition"),
    ],
)
def test_constructors_reject_bad_arguments(cls, kwargs, match):
    args = dict(image_shape=(1, 3, 3), hidden_channels=2, num_layers=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cls(**args)


def test_bad_inputs_are_refused():
    net = lnn.RowLSTM((1, 3, 3), 2, 1)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 1, 3, 3\)"):
        net(torch.zeros(2, 1, 3, 4))
    with pytest.raises(ValueError, match="image_shape"):
        net.incremental(1, image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="full_context"):
        lnn.DiagonalBiLSTM((1, 3, 3), 2, 1, full_context=1)
    with pytest.raises(ValueError, match="DiagonalBiLSTM"):
        ld.DiagonalBiLSTM(net)
    with pytest.raises(ValueError, match="model.net"):
        ld.RowLSTM(lm.RowLSTM((1, 3, 3), 2, 1))
    with pytest.raises(ValueError, match=r"value: expected shape \(\.\.\., 1, 3, 3\)"):
        ld.RowLSTM(net).log_prob(torch.zeros(2, 1, 2, 3))
    with pytest.raises(ValueError, match="binary values"):
        ld.RowLSTM(net, validate_args=True).log_prob(torch.full((1, 3, 3), 0.5))
    with pytest.raises(ValueError, match="not conditional"):
        ld.RowLSTM(net, torch.tensor([0]))


# ---------------------------------------------------------------------- training


@pytest.mark.parametrize("cls", [lm.RowLSTM, lm.DiagonalBiLSTM], ids=["row", "diag"])
def test_svi_steps_lower_the_nll(cls):
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = cls((1, 4, 4), hidden_channels=4, num_layers=1)
    x = (torch.rand(32, 1, 4, 4) < 0.25).float()

    def program(data):
        pyro.module("pixelrnn", model)
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", model(), obs=data)

    def guide(data):
        pass

    svi = SVI(program, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    with torch.no_grad():
        before = float(-model().log_prob(x).mean())
    for _ in range(25):
        svi.step(x)
    with torch.no_grad():
        after = float(-model().log_prob(x).mean())
    assert after < before - 1.0, (before, after)
    pyro.clear_param_store()


def test_the_property_case_field_is_the_triangle_and_leaves_pixels_out():
    """The ``within`` mask of the property suite's Row LSTM case: the same set as the exact
    test above, and not the whole past (else the case would check nothing new)."""
    from tests.cases.pixelrnn import row_lstm_field

    h, w, layers = 4, 7, 2
    field = row_lstm_field(h, w, layers)
    net = _random(lnn.RowLSTM((1, h, w), 3, layers))
    x = _x(1, h, w)
    for i in range(h):
        for j in range(w):
            got = {(p // w, p % w) for p in field[i * w + j].nonzero().flatten().tolist()}
            assert got == _reached(net, i, j, x), (i, j)
    past = torch.ones(h * w, h * w, dtype=torch.bool).tril(-1)
    assert bool((field <= past).all()) and not bool((field == past).all())
    assert not bool(row_lstm_field(4, 5, 2)[5, 4])  # (0, 4) misses the prediction (1, 0)
