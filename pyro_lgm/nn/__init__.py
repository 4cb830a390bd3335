"""pyro_lgm.nn."""

from pyro_lgm.nn.attention import AttentionConvNet
from pyro_lgm.nn.causal import MaskedConv2d
from pyro_lgm.nn.causal1d import CausalConvNet1d
from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.nn.masked import MADE, MaskedLinear
from pyro_lgm.nn.nade import NADE, RNADE, DeepNADE
from pyro_lgm.nn.pixelcnn import GatedPixelCNN, PixelCNN
from pyro_lgm.nn.pixelcnnpp import PixelCNNPP
from pyro_lgm.nn.pixelrnn import DiagonalBiLSTM, RowLSTM
from pyro_lgm.nn.pixelsnail import PixelSNAIL
from pyro_lgm.nn.resnet import GlowConvNet, ResNetConvNet, ZeroConv2d
from pyro_lgm.nn.vae import conv_decoder, conv_encoder, mlp_decoder, mlp_encoder
from pyro_lgm.nn.wavenet import WaveNet

__all__: list[str] = [
    "AttentionConvNet",
    "DeepNADE",
    "DenseNN",
    "GatedPixelCNN",
    "GlowConvNet",
    "MADE",
    "MaskedConv2d",
    "MaskedLinear",
    "NADE",
    "PixelCNN",
    "PixelCNNPP",
    "PixelSNAIL",
    "RNADE",
    "ResNetConvNet",
    "ZeroConv2d",
    "conv_decoder",
    "conv_encoder",
    "mlp_decoder",
    "mlp_encoder",
]
__all__ += ["DiagonalBiLSTM", "RowLSTM"]
__all__ += ["WaveNet"]
__all__ += ["CausalConvNet1d"]
