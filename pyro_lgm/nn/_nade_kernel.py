r"""Blocked teacher-forcing pass of NADE with a hand-written backward.

NADE's pre-activations along an ordering are a running sum,
:math:`a_k = c + \sum_{j<k} W_j x_j` (``W_j`` the column of input ``j``), and its logits are
:math:`\ell_k = V_k \cdot \sigma(a_k) + b_k`. Autograd through a vectorized version of that
pass keeps every :math:`\sigma(a_k)` alive, ``N D H`` numbers (160 MB for a batch of 100
binarized MNIST images with 500 hidden units), and allocates as many again for each
intermediate; on a CPU the allocations and page faults, not the arithmetic, then dominate.

:class:`NADELogits` walks the positions in blocks of ``block`` positions and reuses two
``(block, N, H)`` buffers, so memory is ``O(N H)`` per block. The backward pass recomputes
each block's activations (one extra forward) and carries the reverse running sum

.. math::
    \frac{\partial L}{\partial W_j} = x_j \sum_{k > j} \frac{\partial L}{\partial a_k},
    \qquad
    \frac{\partial L}{\partial c} = \sum_k \frac{\partial L}{\partial a_k},

from the last block to the first, which is the ``O(D H)`` gradient of Larochelle & Murray
(2011, section 3). Inside a block both the prefix sums and the gradient of ``W`` are one
matrix product each with a strictly triangular mask.

This module is private: :meth:`pyro_lgm.nn.NADE.ordered_logits` runs it, and
:class:`pyro_lgm.distributions.NADE` calls that method when its net is a
:class:`pyro_lgm.nn.NADE` whose ``hidden``/``heads``/``input_bias`` are not overridden;
``tests/test_nade_kernel.py`` checks it against autograd of the straightforward pass in
float64.
"""

from __future__ import annotations

import torch

__all__ = ["nade_logits"]


def _fill(
    xt: torch.Tensor, w: torch.Tensor, start: int, run: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Pre-activations of the block's positions, ``out[k] = run + sum_{j<k} w_{s+j} x_{s+j}``.

    ``xt`` is ``(D, N)``, ``w`` ``(D, H)``, ``run`` and each ``out[k]`` are ``(H, N)``: examples
    last, so that the logits below are one fast batched product.
    """
    out[0].copy_(run)
    for k in range(1, out.shape[0]):
        j = start + k - 1
        torch.addcmul(out[k - 1], w[j].unsqueeze(1), xt[j].unsqueeze(0), out=out[k])
    return out


def _activate_(a: torch.Tensor, activation: str) -> torch.Tensor:
    return a.sigmoid_() if activation == "sigmoid" else a.relu_()


class NADELogits(torch.autograd.Function):
    """Logits of every position along the ordering; see the module docstring."""

    @staticmethod
    def forward(  # noqa: ANN205
        ctx,  # noqa: ANN001
        xt: torch.Tensor,
        w: torch.Tensor,
        c: torch.Tensor,
        v: torch.Tensor,
        b: torch.Tensor,
        activation: str,
        block: int,
    ):
        d, n_ex = xt.shape
        h_dim = w.shape[1]
        bs = min(block, d)
        starts = list(range(0, d, bs))
        opts = {"dtype": xt.dtype, "device": xt.device}
        buf = torch.empty(bs, h_dim, n_ex, **opts)
        runs = torch.empty(len(starts), h_dim, n_ex, **opts)  # pre-activation at block starts
        runs[0].copy_(c.t() if c.dim() == 2 else c.unsqueeze(1).expand(h_dim, n_ex))
        out = torch.empty(d, 1, n_ex, **opts)
        for i, s in enumerate(starts):
            e = min(d, s + bs)
            a = _fill(xt, w, s, runs[i], buf[: e - s])
            if e < d:
                torch.addcmul(a[-1], w[e - 1].unsqueeze(1), xt[e - 1].unsqueeze(0), out=runs[i + 1])
            _activate_(a, activation)
            torch.bmm(v[s:e].unsqueeze(1), a, out=out[s:e])  # (n, 1, H) @ (n, H, N)
        ctx.save_for_backward(xt, w, c, v, runs)
        ctx.activation, ctx.block = activation, bs
        return out.view(d, n_ex).t() + b

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        xt, w, c, v, runs = ctx.saved_tensors
        activation, bs = ctx.activation, ctx.block
        d, n_ex = xt.shape
        h_dim = w.shape[1]
        g_t = grad.t().contiguous()  # (D, N)
        gw = torch.empty_like(w)
        gv = torch.empty_like(v)
        suffix = torch.zeros(h_dim, n_ex, dtype=xt.dtype, device=xt.device)  # sum_{k>j} dL/da_k
        buf = torch.empty(bs, h_dim, n_ex, dtype=xt.dtype, device=xt.device)
        tmp = torch.empty_like(buf)
        gx = torch.empty_like(xt) if ctx.needs_input_grad[0] else None
        starts = list(range(0, d, bs))
        for i in reversed(range(len(starts))):
            s = starts[i]
            e = min(d, s + bs)
            n = e - s
            h = _activate_(_fill(xt, w, s, runs[i], buf[:n]), activation)  # (n, H, N)
            gb = g_t[s:e]  # (n, N)
            for k in range(n):
                torch.mv(h[k], gb[k], out=gv[s + k])
            # dL/da = g v act'(a), in place in h
            if activation == "sigmoid":
                h2 = torch.mul(h, h, out=tmp[:n])
                h.sub_(h2)  # h (1 - h)
            else:
                h.sign_()  # relu: 1 where a > 0 (h >= 0 here)
            h.mul_(v[s:e].unsqueeze(2)).mul_(gb.unsqueeze(1))
            for k in reversed(range(n)):
                torch.mv(suffix, xt[s + k], out=gw[s + k])
                if gx is not None:  # dL/dx_j = w_j . sum_{k>j} dL/da_k
                    torch.mv(suffix.t(), w[s + k], out=gx[s + k])
                suffix += h[k]
        gc = suffix.t() if c.dim() == 2 else suffix.sum(1)
        return gx, gw, gc, gv, grad.sum(0), None, None


def nade_logits(
    x: torch.Tensor,
    w: torch.Tensor,
    c: torch.Tensor,
    v: torch.Tensor,
    b: torch.Tensor,
    activation: str = "sigmoid",
    block: int = 16,
) -> torch.Tensor:
    r"""NADE logits along an ordering, with an ``O(N H)``-memory backward.

    Args:
        x: ``(N, D)`` values, already permuted to the ordering.
        w: ``(D, H)`` input weights, row ``k`` for the ``k``-th position of the ordering.
        c: ``(H,)`` hidden bias, or ``(N, H)`` per example (e.g. shifted by a context).
        v: ``(D, H)`` output weights in the same order.
        b: ``(D,)`` output biases in the same order.
        activation: ``"sigmoid"`` or ``"relu"``.
        block: positions per block.

    Returns:
        ``(N, D)`` logits :math:`\ell_k = v_k \cdot \sigma(c + \sum_{j<k} w_j x_j) + b_k`.

    Example:
        >>> x = torch.tensor([[1.0, 0.0, 1.0]])
        >>> w, v = torch.ones(3, 2), torch.ones(3, 2)
        >>> nade_logits(x, w, torch.zeros(2), v, torch.zeros(3))  # 2 sigm(0), 2 sigm(1), 2 sigm(1)
        tensor([[1.0000, 1.4621, 1.4621]])
    """
    if activation not in ("sigmoid", "relu"):
        raise ValueError(f"activation: expected 'sigmoid' or 'relu', got {activation!r}")
    if x.dim() != 2 or w.shape != (x.shape[1], w.shape[1]) or v.shape != w.shape:
        raise ValueError(
            f"x, w, v: expected (N, D), (D, H), (D, H); got {tuple(x.shape)}, "
            f"{tuple(w.shape)}, {tuple(v.shape)}"
        )
    if c.shape not in ((w.shape[1],), (x.shape[0], w.shape[1])):
        raise ValueError(
            f"c: expected ({w.shape[1]},) or ({x.shape[0]}, {w.shape[1]}), got {tuple(c.shape)}"
        )
    xt = x.to(w.dtype).t().contiguous()
    return NADELogits.apply(
        xt, w.contiguous(), c.contiguous(), v.contiguous(), b, activation, block
    )
