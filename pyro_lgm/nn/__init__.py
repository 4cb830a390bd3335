"""pyro_lgm.nn."""

from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.nn.masked import MADE, MaskedLinear
from pyro_lgm.nn.nade import NADE, RNADE, DeepNADE

__all__: list[str] = [
    "DeepNADE",
    "DenseNN",
    "MADE",
    "MaskedLinear",
    "NADE",
    "RNADE",
]
