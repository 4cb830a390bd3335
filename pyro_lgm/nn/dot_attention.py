r"""Multi-head scaled dot-product attention over sequences of positions, with an optional mask.

The one computation shared by Flow++'s non-causal self-attention
(:class:`pyro_lgm.nn.attention.MultiHeadSelfAttention`) and PixelSNAIL's causal attention
(:class:`pyro_lgm.nn.causal.CausalAttention`): queries, keys and values arrive channels-last,
``(N, L, C)``, are cut into ``heads`` contiguous channel groups, and head :math:`m` returns

.. math::
    o^{m}_p = \sum_{p' \in A(p)} \frac{\exp(q^{m}_p \cdot k^{m}_{p'} / \sqrt{d})}
    {\sum_{p'' \in A(p)} \exp(q^{m}_p \cdot k^{m}_{p''} / \sqrt{d})} \, v^{m}_{p'},

with :math:`d` the channels of a query head and :math:`A(p)` the positions the mask allows
(every position without a mask). A query that may attend to no position returns zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["multi_head_attention"]


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, L, C)`` -> ``(N, heads, L, C / heads)``; channel ``c = m (C / heads) + j``."""
    n, length, c = x.shape
    return x.reshape(n, length, heads, c // heads).transpose(1, 2)


def multi_head_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    r"""Scaled dot-product attention of ``heads`` heads.

    Args:
        q: queries ``(N, Lq, Cq)``.
        k: keys ``(N, Lk, Cq)``.
        v: values ``(N, Lk, Cv)``.
        heads: number of heads; divides ``Cq`` and ``Cv`` (not checked here).
        mask: ``None`` (every query sees every key) or a bool ``(Lq, Lk)``: ``True`` where
            query ``p`` may attend to key ``p'``. Rows with no ``True`` give zeros.
        dropout_p: dropout probability on the attention weights.

    Returns:
        ``(N, Lq, Cv)``, the heads concatenated in order.

    Example:
        >>> q = k = torch.zeros(1, 3, 2)
        >>> v = torch.tensor([[[1.0], [2.0], [3.0]]])
        >>> strict = torch.ones(3, 3, dtype=torch.bool).tril(-1)
        >>> multi_head_attention(q, k, v, 1, strict).flatten()
        tensor([0.0000, 1.0000, 1.5000])
    """
    n, lq, _ = q.shape
    cv = v.shape[-1]
    qh, kh, vh = _split(q, heads), _split(k, heads), _split(v, heads)
    if mask is None:
        o = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p)
    else:
        # a row with nothing to attend to would be a softmax over no terms (NaN): let it see
        # every key, then zero it
        empty = ~mask.any(-1)
        o = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=mask | empty[:, None], dropout_p=dropout_p
        )
        o = o.masked_fill(empty[:, None], 0.0)
    return o.transpose(1, 2).reshape(n, lq, cv)
