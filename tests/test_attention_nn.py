"""Flow++'s conditioner network (pyro_lgm.nn.attention): shapes, identity start, receptive
field, batch independence, permutation equivariance of the attention, context, bad input."""

from __future__ import annotations

import io

import pytest
import torch

from pyro_lgm.nn.attention import (
    AttentionConvNet,
    GatedAttention,
    GatedResidualConv,
    MultiHeadSelfAttention,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _perturb_head(net: AttentionConvNet, seed: int = 0) -> None:
    """Give the zero-initialised last convolution random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.randn(net.head.weight.shape, generator=g, dtype=net.head.weight.dtype)
        net.head.weight.copy_(w.to(net.head.weight.device))
        net.head.bias.normal_()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape", [(1, 2, 1, 1), (3, 2, 3, 5), (2, 2, 5, 3), (4, 2, 4, 4), (1, 2, 1, 7)]
)
def test_shape_and_zero_start(shape, dtype, device):
    torch.manual_seed(0)
    net = AttentionConvNet(2, 6, hidden=8, blocks=2, heads=2).to(device, dtype)
    x = torch.randn(shape, dtype=dtype, device=device)
    y = net(x)
    assert y.shape == (shape[0], 6, *shape[2:])
    assert y.dtype == dtype and y.device.type == device
    assert y.is_contiguous()
    assert torch.equal(y, torch.zeros_like(y))  # zero head: a coupling starts as identity
    _perturb_head(net)
    y = net(x)
    assert torch.isfinite(y).all() and y.abs().max() > 0


def _grad_map(net: AttentionConvNet, h: int, w: int, at: tuple[int, int]) -> torch.Tensor:
    """|d out[0, :, at] / d x[0]| summed over channels: an (H, W) map of the input pixels
    the output pixel ``at`` reads."""
    x = torch.randn(1, net.in_channels, h, w, dtype=torch.float64, requires_grad=True)
    net(x)[0, :, at[0], at[1]].sum().backward()
    return x.grad[0].abs().sum(0)


def test_attention_gives_a_global_receptive_field():
    torch.manual_seed(1)
    net = AttentionConvNet(1, 2, hidden=8, blocks=1, heads=2).double()
    _perturb_head(net)
    g = _grad_map(net, 12, 9, (0, 0))
    assert (g > 0).all()  # every input pixel, the far corner (11, 8) included


def test_without_attention_the_receptive_field_is_local():
    torch.manual_seed(2)
    net = AttentionConvNet(1, 2, hidden=8, blocks=1, attention=False).double()
    _perturb_head(net)
    # stem 3x3, the block's 3x3 (its gate is 1x1), head 3x3: a radius of 3 pixels
    g = _grad_map(net, 12, 11, (5, 4))
    rows = torch.arange(12)[:, None]
    cols = torch.arange(11)[None, :]
    inside = ((rows - 5).abs() <= 3) & ((cols - 4).abs() <= 3)
    assert torch.equal(g[~inside], torch.zeros_like(g[~inside]))
    assert (g[inside] > 0).all()


@pytest.mark.parametrize("attention", [True, False])
def test_no_batch_mixing(attention):
    torch.manual_seed(3)
    net = AttentionConvNet(2, 4, hidden=8, blocks=2, heads=4, attention=attention).double()
    _perturb_head(net)
    x = torch.randn(5, 2, 4, 6, dtype=torch.float64)
    y = net(x)
    for i in range(5):
        torch.testing.assert_close(y[i : i + 1], net(x[i : i + 1]), rtol=1e-12, atol=1e-12)
    # changing one image leaves the others' outputs untouched
    x2 = x.clone()
    x2[2] = torch.randn(2, 4, 6, dtype=torch.float64)
    y2 = net(x2)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(y2[keep], y[keep], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y2[2], y[2])


@pytest.mark.parametrize("layer", [MultiHeadSelfAttention, GatedAttention])
def test_attention_is_permutation_equivariant(layer):
    torch.manual_seed(4)
    att = layer(8, heads=2).double()
    n, c, h, w = 2, 8, 3, 5
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    perm = torch.randperm(h * w)

    def permute(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2)[..., perm].reshape(n, c, h, w)

    torch.testing.assert_close(att(permute(x)), permute(att(x)), rtol=1e-10, atol=1e-12)
    # and it is not the identity or a pointwise map: moving one pixel changes all outputs
    x2 = x.clone()
    x2[..., 0, 0] += 1.0
    diff = (att(x2) - att(x)).abs().sum(1)  # (N, H, W)
    assert (diff > 0).all()


def test_attention_matches_a_direct_computation():
    torch.manual_seed(5)
    att = MultiHeadSelfAttention(6, heads=3).double()
    x = torch.randn(2, 6, 2, 3, dtype=torch.float64)
    w = att.qkv.weight[:, :, 0, 0]
    seq = x.flatten(2).transpose(1, 2)  # (N, L, C)
    q, k, v = (seq @ w.T + att.qkv.bias).split(6, dim=-1)
    out = []
    for m in range(3):
        s = slice(2 * m, 2 * m + 2)
        a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2**0.5, dim=-1)
        out.append(a @ v[..., s])
    want = torch.cat(out, -1).transpose(1, 2).reshape(2, 6, 2, 3)
    torch.testing.assert_close(att(x), want, rtol=1e-10, atol=1e-12)


def test_layer_norm_per_position():
    torch.manual_seed(6)
    block = GatedResidualConv(8).double()
    y = block(torch.randn(2, 8, 3, 4, dtype=torch.float64))
    # fresh LayerNorm (gain 1, bias 0): every position's channels have mean 0, variance 1
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3, 4, dtype=torch.float64))
    var = y.var(1, unbiased=False)
    torch.testing.assert_close(var, torch.ones_like(var), rtol=1e-4, atol=1e-4)


def test_context_changes_the_output_and_is_checked():
    torch.manual_seed(7)
    net = AttentionConvNet(2, 4, hidden=8, blocks=1, heads=2, context_channels=3).double()
    _perturb_head(net)
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    c = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    y = net(x, c)
    assert y.shape == (2, 4, 4, 5)
    assert not torch.allclose(y, net(x, c + 1.0))
    with pytest.raises(ValueError, match="context"):
        net(x, torch.randn(2, 2, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        net(x, torch.randn(2, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        net(x)
    with pytest.raises(ValueError, match="context"):
        AttentionConvNet(2, 4, hidden=8, heads=2)(x.float(), c.float())


def test_wrong_input_shape_raises():
    net = AttentionConvNet(2, 4, hidden=8, heads=2)
    with pytest.raises(ValueError, match="x: expected shape"):
        net(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="x: expected shape"):
        net(torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="x: expected shape"):
        MultiHeadSelfAttention(8, 2)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="x: expected shape"):
        GatedResidualConv(8)(torch.randn(1, 4, 2, 2))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=0), "out_channels"),
        (dict(out_channels=2.0), "out_channels"),
        (dict(hidden=0), "hidden"),
        (dict(hidden=10, heads=4), "heads"),
        (dict(heads=0), "heads"),
        (dict(heads=True), "heads"),
        (dict(blocks=-1), "blocks"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout="0.1"), "dropout"),
        (dict(context_channels=-1), "context_channels"),
        (dict(attention=1), "attention"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = dict(in_channels=2, out_channels=4, hidden=8, heads=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        AttentionConvNet(**args)


def test_heads_need_not_divide_hidden_without_attention():
    net = AttentionConvNet(2, 4, hidden=10, heads=4, attention=False)
    assert net(torch.randn(1, 2, 3, 3)).shape == (1, 4, 3, 3)


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="^heads:"):
        MultiHeadSelfAttention(6, heads=4)
    with pytest.raises(ValueError, match="^channels:"):
        MultiHeadSelfAttention(0, heads=1)
    with pytest.raises(ValueError, match="^dropout:"):
        GatedAttention(8, heads=2, dropout=1.5)
    with pytest.raises(ValueError, match="^channels:"):
        GatedResidualConv(0)
    with pytest.raises(ValueError, match="^dropout:"):
        GatedResidualConv(4, dropout=1.0)


def test_dropout_only_in_training():
    torch.manual_seed(8)
    net = AttentionConvNet(2, 4, hidden=8, blocks=1, heads=2, dropout=0.5).double()
    _perturb_head(net)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    net.eval()
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)
    net.train()
    assert not torch.allclose(net(x), net(x))


def test_gradients_reach_every_parameter():
    torch.manual_seed(9)
    net = AttentionConvNet(2, 4, hidden=8, blocks=2, heads=2, context_channels=1)
    _perturb_head(net)
    net(torch.randn(3, 2, 4, 4), torch.randn(3, 1, 4, 4)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_state_dict_round_trip():
    torch.manual_seed(10)
    net = AttentionConvNet(2, 4, hidden=8, blocks=2, heads=2, context_channels=1).double()
    _perturb_head(net)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(11)
    other = AttentionConvNet(2, 4, hidden=8, blocks=2, heads=2, context_channels=1).double()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    c = torch.randn(2, 1, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(other(x, c), net(x, c), rtol=0, atol=0)
    assert net.hidden == 8 and net.in_channels == 2 and net.out_channels == 4
    assert net.context_channels == 1
    assert "heads=2" in repr(net) and "attention=True" in repr(net)


def test_drives_an_image_coupling():
    from pyro_lgm.transforms.image_coupling import ImageAffineCoupling

    torch.manual_seed(12)
    net = AttentionConvNet(2, 2 * 2, hidden=8, blocks=1, heads=2).double()
    t = ImageAffineCoupling(4, "channel", net)
    x = torch.randn(3, 4, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(t(x), x, rtol=0, atol=0)  # zero head: the identity
    _perturb_head(net)
    with torch.no_grad():
        net.head.weight.mul_(0.1)
    y = t(x)
    assert not torch.allclose(y, x)
    torch.testing.assert_close(t.inv(y), x, rtol=1e-10, atol=1e-10)
    assert t.log_abs_det_jacobian(x, y).shape == (3,)
