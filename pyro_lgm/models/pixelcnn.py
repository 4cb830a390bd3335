r"""Trainable PixelCNN-family models: a network plus ``forward(context=None)`` -> distribution.

Each model holds its network (``model.net``, a :class:`pyro_lgm.nn.PixelCNN`,
:class:`pyro_lgm.nn.GatedPixelCNN` or :class:`pyro_lgm.nn.PixelCNNPP`) and returns the
distribution of the same name in :mod:`pyro_lgm.distributions` bound to it, so
``-model(context).log_prob(x).mean()`` is the maximum-likelihood loss, ``pyro.sample("x",
model(context), obs=x)`` works in a Pyro model, and ``model(context).sample(...)`` generates
(cached by default) or completes images.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.nn.pixelcnn import GatedPixelCNN as GatedPixelCNNNet
from pyro_lgm.nn.pixelcnn import PixelCNN as PixelCNNNet
from pyro_lgm.nn.pixelcnnpp import PixelCNNPP as PixelCNNPPNet

__all__ = ["GatedPixelCNN", "PixelCNN", "PixelCNNPP"]


class _ImageModel(nn.Module):
    _net_cls: type
    _dist_cls: type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.net = self._net_cls(*args, **kwargs)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.net.image_shape

    def forward(self, context: Any = None) -> lgm_dist.PixelCNN:
        """The distribution over images ``(C, H, W)`` given ``context`` (``None`` if none)."""
        return self._dist_cls(self.net, context)


class PixelCNN(_ImageModel):
    r"""PixelCNN (van den Oord et al., 2016a): masked convolutions, residual blocks.

    Takes the arguments of :class:`pyro_lgm.nn.PixelCNN` (``image_shape, hidden_channels=64,
    num_layers=7, output="bernoulli", bits=None, num_mixtures=5``, ``first_kernel``,
    ``kernel`` and at most one of ``num_classes`` / ``context_dim`` / ``context_channels``);
    calling it returns a :class:`pyro_lgm.distributions.PixelCNN`.

    Example:
        >>> import torch
        >>> model = PixelCNN((1, 6, 6), hidden_channels=8, num_layers=2)
        >>> x = model().sample((4,))
        >>> (-model().log_prob(x).mean()).backward()
    """

    _net_cls = PixelCNNNet
    _dist_cls = lgm_dist.PixelCNN


class GatedPixelCNN(_ImageModel):
    r"""Gated PixelCNN (van den Oord et al., 2016b): vertical and horizontal stacks, gates,
    no blind spot, conditioning on a class, a vector or a feature map.

    Takes the arguments of :class:`pyro_lgm.nn.GatedPixelCNN`; calling it with the condition
    returns a :class:`pyro_lgm.distributions.GatedPixelCNN`.

    Example:
        >>> import torch
        >>> model = GatedPixelCNN((1, 6, 6), hidden_channels=8, num_layers=3, num_classes=10)
        >>> model(torch.tensor([3, 7])).sample().shape
        torch.Size([2, 1, 6, 6])
    """

    _net_cls = GatedPixelCNNNet
    _dist_cls = lgm_dist.GatedPixelCNN


class PixelCNNPP(_ImageModel):
    r"""PixelCNN++ (Salimans et al., 2017): discretized logistic mixture output, shifted
    streams, down/up-sampling with shortcuts, dropout.

    Takes the arguments of :class:`pyro_lgm.nn.PixelCNNPP`; calling it returns a
    :class:`pyro_lgm.distributions.PixelCNNPP`.

    Example:
        >>> import torch
        >>> model = PixelCNNPP((3, 4, 4), hidden_channels=8, num_resnets=1, num_mixtures=2)
        >>> model().log_prob(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2])
    """

    _net_cls = PixelCNNPPNet
    _dist_cls = lgm_dist.PixelCNNPP
