r"""PixelRNN distributions: the Row LSTM and the Diagonal BiLSTM over images ``(C, H, W)``.

.. math::
    p(x) = \prod_{i=1}^{H} \prod_{j=1}^{W} \prod_{c=1}^{C}
        p\big(x_{c,i,j} \mid x_{<(i,j)},\, x_{<c,(i,j)}\big)

in raster order and channel order inside a pixel, each factor read from one pass of a
recurrent network (:mod:`pyro_lgm.nn.pixelrnn`): ``log_prob`` runs the LSTMs over the whole
image once (teacher forcing); ``sample`` generates element by element, by default with the
network's cached session (the LSTM states of every layer are kept and only the current
position is computed per step), or with a full pass per element (``method="naive"``); both
give the same images for the same random stream. Everything else (conditionals, completion,
conditions) is :class:`pyro_lgm.distributions.pixelcnn.ImageAutoregressive`'s.

References:
    A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
    ICML 2016.
"""

from __future__ import annotations

from pyro_lgm.distributions.pixelcnn import ImageAutoregressive
from pyro_lgm.nn.pixelrnn import DiagonalBiLSTM as DiagonalBiLSTMNet
from pyro_lgm.nn.pixelrnn import RowLSTM as RowLSTMNet

__all__ = ["DiagonalBiLSTM", "RowLSTM"]


class RowLSTM(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.RowLSTM` network (van den Oord et al., 2016).

    .. math::
        p(x) = \prod_{i,j} \prod_{c} p(x_{c,i,j} \mid x_{<(i,j)}, x_{<c,(i,j)}),

    the Row LSTM's factors: its receptive field is a triangle above each pixel, so a factor
    depends on only part of the earlier pixels (the pixels of earlier rows far to the right
    are out of reach); it is still a normalized distribution over images.

    References:
        A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
        ICML 2016.

    Args:
        net: the network.
        context: the condition when the network is conditional: class labels ``(...)``,
            vectors ``(..., D)`` or feature maps ``(..., C_h, h, w)``; ``...`` is the batch.
        validate_args: check values against the support.

    Shapes: ``event_shape == (C, H, W)``; values are ``{0, 1}`` (Bernoulli) or integer levels
    ``0 .. 2^bits - 1`` of any real dtype.

    Example:
        >>> from pyro_lgm.nn import RowLSTM as Net
        >>> d = RowLSTM(Net((1, 4, 4), hidden_channels=4, num_layers=1))
        >>> x = d.sample((2,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([2, 1, 4, 4]), torch.Size([2]))
    """

    _net_types = (RowLSTMNet,)


class DiagonalBiLSTM(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.DiagonalBiLSTM` (van den Oord et al., 2016).

    The same factorization as :class:`RowLSTM`; each factor sees every earlier element
    (no blind spot with the network's default ``full_context=True``).

    References:
        A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
        ICML 2016.

    Args:
        net: the network.
        context: as :class:`RowLSTM`.
        validate_args: check values against the support.

    Example:
        >>> import torch
        >>> from pyro_lgm.nn import DiagonalBiLSTM as Net
        >>> d = DiagonalBiLSTM(Net((1, 3, 3), 2, 1, num_classes=3), torch.tensor([0, 2]))
        >>> d.batch_shape, d.sample().shape
        (torch.Size([2]), torch.Size([2, 1, 3, 3]))
    """

    _net_types = (DiagonalBiLSTMNet,)
