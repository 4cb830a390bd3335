"""pyro_lgm.nn."""

from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.nn.masked import MADE, MaskedLinear

__all__: list[str] = [
    "DenseNN",
    "MADE",
    "MaskedLinear",
]
