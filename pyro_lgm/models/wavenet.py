r"""The trainable WaveNet model: a :class:`pyro_lgm.nn.WaveNet` network and a sequence length
whose call returns a :class:`pyro_lgm.distributions.WaveNet` bound to it.

``-model(global_context, local_context).log_prob(x).mean()`` is the maximum-likelihood
loss, ``pyro.sample("x", model(...), obs=x)`` works in a Pyro model, and
``model(...).sample(...)`` generates with the fast cached algorithm.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.nn.pixelcnn import _int
from pyro_lgm.nn.wavenet import WaveNet as WaveNetNet

__all__ = ["WaveNet", "wavenet"]


class WaveNet(nn.Module):
    r"""WaveNet (van den Oord et al., 2016) over sequences of ``length`` levels.

    Takes ``length`` and the arguments of :class:`pyro_lgm.nn.WaveNet`
    (``residual_channels=32, skip_channels=64, dilation_channels=32, layers_per_stack=10,
    stacks=1, kernel_size=2, output="categorical", bits=None, num_mixtures=5``,
    ``num_classes`` / ``global_dim``, ``local_channels``, ``local_upsample``); calling it
    returns a :class:`pyro_lgm.distributions.WaveNet`.

    Example:
        >>> import torch
        >>> model = WaveNet(16, residual_channels=4, skip_channels=4, dilation_channels=4,
        ...                 layers_per_stack=3, bits=4)
        >>> x = model().sample((2,))
        >>> (-model().log_prob(x).mean()).backward()
    """

    def __init__(self, length: int, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.length = _int("length", length, 1)
        self.net = WaveNetNet(*args, **kwargs)

    @property
    def receptive_field(self) -> int:
        return self.net.receptive_field

    def forward(self, global_context: Any = None, local_context: Any = None) -> lgm_dist.WaveNet:
        """The distribution over sequences ``(T,)`` given the conditions."""
        return lgm_dist.WaveNet(self.net, self.length, global_context, local_context)


def wavenet(length: int, **kwargs: Any) -> WaveNet:
    """``WaveNet(length, **kwargs)``: the model, in Pyro's lowercase-helper style."""
    return WaveNet(length, **kwargs)
