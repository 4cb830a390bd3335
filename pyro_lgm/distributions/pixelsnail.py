r"""The PixelSNAIL distribution over images ``(C, H, W)`` (Chen et al., 2018).

.. math::
    p(x) = \prod_{i=1}^{H} \prod_{j=1}^{W} p\big(x_{:,i,j} \mid x_{<(i,j)}\big)

in raster order, each pixel's parameters computed by a :class:`pyro_lgm.nn.PixelSNAIL`
network in one pass (teacher forcing): gated residual convolutions interleaved with causal
self-attention, so every earlier pixel reaches every conditional.
"""

from __future__ import annotations

from pyro_lgm.distributions.pixelcnn import ImageAutoregressive
from pyro_lgm.nn.pixelsnail import PixelSNAIL as PixelSNAILNet

__all__ = ["PixelSNAIL"]


class PixelSNAIL(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.PixelSNAIL` network (Chen et al., 2018).

    With the network's default ``output="logistic_mixture"`` each pixel is a discretized
    logistic mixture (:class:`pyro_lgm.distributions.DiscretizedLogisticMixture`) whose
    parameters come from the earlier pixels (inside the pixel G depends linearly on R, B on
    R and G); with ``"bernoulli"`` / ``"categorical"`` every channel is its own conditional
    :math:`p(x_{c,i,j} \mid x_{<(i,j)}, x_{<c,(i,j)})`. ``log_prob`` is one parallel pass;
    ``sample`` generates pixel by pixel, by default with cached incremental generation (the
    attention of a new pixel reads the cached keys and values of the earlier ones), or with a
    full pass per element (``method="naive"``); both give the same images for the same random
    stream. :meth:`conditionals` exposes the per-element conditionals.

    References:
        X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. *PixelSNAIL: An Improved
        Autoregressive Generative Model*. ICML 2018.

    Args:
        net: the network.
        context: the condition when the network is conditional: class labels ``(...)``,
            vectors ``(..., D)`` or feature maps ``(..., C_h, h, w)``; ``...`` is the batch.
        validate_args: check values against the support.

    Shapes: ``event_shape == (C, H, W)``; values are integer levels ``0 .. 2^bits - 1``
    (``{0, 1}`` for Bernoulli) of any real dtype; ``log_prob`` returns the batch shape.

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import PixelSNAIL as Net
        >>> d = PixelSNAIL(Net((3, 4, 4), hidden_channels=8, num_blocks=1, num_mixtures=2))
        >>> x = d.sample((2,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2]))
    """

    _net_types = (PixelSNAILNet,)
