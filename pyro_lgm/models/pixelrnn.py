r"""Trainable PixelRNN models: a network plus ``forward(context=None)`` -> distribution.

Each model holds its network (``model.net``, a :class:`pyro_lgm.nn.RowLSTM` or
:class:`pyro_lgm.nn.DiagonalBiLSTM`) and returns the distribution of the same name in
:mod:`pyro_lgm.distributions` bound to it, as the PixelCNN models do
(:mod:`pyro_lgm.models.pixelcnn`).

References:
    A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
    ICML 2016.
"""

from __future__ import annotations

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.models.pixelcnn import _ImageModel
from pyro_lgm.nn.pixelrnn import DiagonalBiLSTM as DiagonalBiLSTMNet
from pyro_lgm.nn.pixelrnn import RowLSTM as RowLSTMNet

__all__ = ["DiagonalBiLSTM", "RowLSTM"]


class RowLSTM(_ImageModel):
    r"""PixelRNN's Row LSTM (van den Oord et al., 2016): LSTM layers over rows, a triangular
    receptive field.

    Takes the arguments of :class:`pyro_lgm.nn.RowLSTM` (``image_shape, hidden_channels=16,
    num_layers=2, output="bernoulli", bits=None, num_mixtures=5``, ``first_kernel`` and at
    most one of ``num_classes`` / ``context_dim`` / ``context_channels``); calling it returns a
    :class:`pyro_lgm.distributions.RowLSTM`.

    Example:
        >>> import torch
        >>> model = RowLSTM((1, 5, 5), hidden_channels=4, num_layers=2)
        >>> x = model().sample((3,))
        >>> (-model().log_prob(x).mean()).backward()
    """

    _net_cls = RowLSTMNet
    _dist_cls = lgm_dist.RowLSTM


class DiagonalBiLSTM(_ImageModel):
    r"""PixelRNN's Diagonal BiLSTM (van den Oord et al., 2016): LSTMs along the diagonals in
    both directions, the whole past in view.

    Takes the arguments of :class:`pyro_lgm.nn.DiagonalBiLSTM`; calling it with the condition
    returns a :class:`pyro_lgm.distributions.DiagonalBiLSTM`.

    Example:
        >>> import torch
        >>> model = DiagonalBiLSTM((1, 4, 4), hidden_channels=4, num_layers=1, num_classes=10)
        >>> model(torch.tensor([3, 7])).sample().shape
        torch.Size([2, 1, 4, 4])
    """

    _net_cls = DiagonalBiLSTMNet
    _dist_cls = lgm_dist.DiagonalBiLSTM
