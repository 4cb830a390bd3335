"""pyro_lgm.distributions."""

from pyro_lgm.distributions.autoregressive_normal import AutoregressiveNormalMap
from pyro_lgm.distributions.deepnade import DeepNADE, EoNADE
from pyro_lgm.distributions.discretized_logistic import DiscretizedLogisticMixture
from pyro_lgm.distributions.made import MADE
from pyro_lgm.distributions.nade import NADE, RNADE
from pyro_lgm.distributions.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNPP
from pyro_lgm.distributions.pixelrnn import DiagonalBiLSTM, RowLSTM
from pyro_lgm.distributions.pixelsnail import PixelSNAIL
from pyro_lgm.distributions.wavenet import WaveNet

__all__: list[str] = ["DeepNADE", "DiscretizedLogisticMixture", "EoNADE", "MADE", "NADE", "RNADE"]
__all__ += ["GatedPixelCNN", "PixelCNN", "PixelCNNPP"]
__all__ += ["AutoregressiveNormalMap"]
__all__ += ["DiagonalBiLSTM", "RowLSTM"]
__all__ += ["PixelSNAIL"]
__all__ += ["WaveNet"]
