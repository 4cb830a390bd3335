r"""The trainable PixelSNAIL model: a :class:`pyro_lgm.nn.PixelSNAIL` network whose call
returns a :class:`pyro_lgm.distributions.PixelSNAIL` bound to it (the convention of
:mod:`pyro_lgm.models.pixelcnn`)."""

from __future__ import annotations

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.models.pixelcnn import _ImageModel
from pyro_lgm.nn.pixelsnail import PixelSNAIL as PixelSNAILNet

__all__ = ["PixelSNAIL"]


class PixelSNAIL(_ImageModel):
    r"""PixelSNAIL (Chen et al., 2018): gated residual convolutions and causal attention.

    Takes the arguments of :class:`pyro_lgm.nn.PixelSNAIL` (``image_shape,
    hidden_channels=32, num_blocks=2, num_resnets=2, heads=1, key_channels=16,
    value_channels=32, output="logistic_mixture", bits=None, num_mixtures=5, dropout=0.0,
    attention=True`` and at most one of ``num_classes`` / ``context_dim`` /
    ``context_channels``); calling it with the condition returns a
    :class:`pyro_lgm.distributions.PixelSNAIL`, so ``-model(context).log_prob(x).mean()`` is
    the maximum-likelihood loss.

    Example:
        >>> import torch
        >>> model = PixelSNAIL((1, 4, 4), hidden_channels=8, output="bernoulli", num_classes=3)
        >>> x = model(torch.tensor([0, 2])).sample()
        >>> (-model(torch.tensor([0, 2])).log_prob(x).mean()).backward()
        >>> x.shape
        torch.Size([2, 1, 4, 4])
    """

    _net_cls = PixelSNAILNet
    _dist_cls = lgm_dist.PixelSNAIL
