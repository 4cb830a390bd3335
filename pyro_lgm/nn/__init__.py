"""pyro_lgm.nn."""

from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.nn.masked import MADE, MaskedLinear
from pyro_lgm.nn.nade import NADE, RNADE, DeepNADE
from pyro_lgm.nn.vae import conv_decoder, conv_encoder, mlp_decoder, mlp_encoder

__all__: list[str] = [
    "DeepNADE",
    "DenseNN",
    "MADE",
    "MaskedLinear",
    "NADE",
    "RNADE",
    "conv_decoder",
    "conv_encoder",
    "mlp_decoder",
    "mlp_encoder",
]
