"""PixelRNN: the Row LSTM and the Diagonal BiLSTM over tiny images.

Small enough to enumerate (``assert_normalized``: 2^9 binary 3x3 images, 4^6 two-bit RGB
1x2 images). The Diagonal BiLSTM is checked for no blind spot; the Row LSTM's receptive field
is triangular (the pixels of earlier rows far to the right are out of reach), so its binary
case is checked for no blind spot inside the derived triangle (``within``) and its RGB case
for causality only; tests/test_pixelrnn.py checks that nothing outside the triangle reaches.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import pyro_lgm.distributions as ld
import pyro_lgm.nn as lnn
from tests.cases import ContextCheck, DistributionCase
from tests.cases.pixelcnn import _autoregressive, _context_check, _ready


def row_lstm_field(height: int, width: int, layers: int, reach: int = 3) -> torch.Tensor:
    """``within[o, i]``: pixel ``i`` lies in the Row LSTM's receptive field of prediction
    ``o`` (flat positions of a one-channel image), the triangle derived in
    tests/test_pixelrnn.py: ``(i - m, j + d)`` for ``-layers - reach <= d <= -1`` when
    ``m = 0`` and ``-m - layers - reach <= d <= m + reach - 1`` when ``m >= 1``."""
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    m = rows[:, None] - rows[None, :]  # rows above the prediction
    d = cols[None, :] - cols[:, None]
    left = d >= -m - layers - reach
    return ((m == 0) & left & (d <= -1)) | ((m >= 1) & left & (d <= m + reach - 1))


def _row_exact_field(make_net, height, width, layers):
    """The Row LSTM's autoregressive check with its exact field: no blind spot *inside* the
    triangle (every pixel there reaches the prediction), nothing at or after it."""
    base = _autoregressive(make_net, ld.RowLSTM)

    def case(draw, dtype, device):
        fn, x, order, kwargs = base(draw, dtype, device)
        return fn, x, order, dict(kwargs, within=row_lstm_field(height, width, layers))

    return case


def _class_labels(draw, device):
    return torch.tensor(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)), device=device)


def _row_binary(draw, dtype, device):
    net = lnn.RowLSTM((1, 3, 3), draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    return ld.RowLSTM(_ready(net, draw, dtype, device))


def _row_rgb(draw, dtype, device):
    net = lnn.RowLSTM((3, 1, 2), 2, 1, output="categorical", bits=2)
    return ld.RowLSTM(_ready(net, draw, dtype, device))


def _diag_binary_class(draw, dtype, device):
    net = lnn.DiagonalBiLSTM((1, 3, 3), 2, draw(st.integers(1, 2)), num_classes=3)
    return ld.DiagonalBiLSTM(_ready(net, draw, dtype, device), _class_labels(draw, device))


def _diag_rgb(draw, dtype, device):
    net = lnn.DiagonalBiLSTM((3, 1, 2), 2, 1, output="categorical", bits=2)
    return ld.DiagonalBiLSTM(_ready(net, draw, dtype, device))


DISTRIBUTION_CASES = [
    DistributionCase(
        name="rowlstm_binary_3x3",
        covers=(ld.RowLSTM,),
        make=_row_binary,
        # on 4x5 the triangle misses pixels: e.g. (0, 4) does not reach the prediction (1, 0)
        autoregressive=_row_exact_field(lambda: lnn.RowLSTM((1, 4, 5), 3, 2), 4, 5, 2),
        context_checks=[
            ContextCheck(
                "vector",
                (ld.RowLSTM,),
                _context_check(
                    lambda: lnn.RowLSTM((1, 3, 3), 4, 1, context_dim=3), ld.RowLSTM, "vector"
                ),
            )
        ],
    ),
    DistributionCase(
        name="rowlstm_rgb_categorical",
        covers=(ld.RowLSTM,),
        make=_row_rgb,
        autoregressive=_autoregressive(
            lambda: lnn.RowLSTM((3, 2, 3), 2, 2, output="categorical", bits=2),
            ld.RowLSTM,
            no_blind_spot=False,
        ),
    ),
    DistributionCase(
        name="diagonal_bilstm_binary_class",
        covers=(ld.DiagonalBiLSTM,),
        make=_diag_binary_class,
        autoregressive=_autoregressive(
            lambda: lnn.DiagonalBiLSTM((1, 4, 5), 3, 2, num_classes=3),
            ld.DiagonalBiLSTM,
            context=lambda device: torch.tensor([0, 1, 2, 1], device=device),
        ),
        context_checks=[
            ContextCheck(
                "vector",
                (ld.DiagonalBiLSTM,),
                _context_check(
                    lambda: lnn.DiagonalBiLSTM((1, 3, 3), 4, 1, context_dim=3),
                    ld.DiagonalBiLSTM,
                    "vector",
                ),
            ),
            ContextCheck(
                "map",
                (ld.DiagonalBiLSTM,),
                _context_check(
                    lambda: lnn.DiagonalBiLSTM((1, 3, 3), 4, 1, context_channels=2),
                    ld.DiagonalBiLSTM,
                    "map",
                ),
            ),
        ],
    ),
    DistributionCase(
        name="diagonal_bilstm_rgb_categorical",
        covers=(ld.DiagonalBiLSTM,),
        make=_diag_rgb,
        autoregressive=_autoregressive(
            lambda: lnn.DiagonalBiLSTM((3, 2, 3), 2, 2, output="categorical", bits=2),
            ld.DiagonalBiLSTM,
        ),
    ),
]
