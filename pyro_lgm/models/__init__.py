"""Trainable models: ``nn.Module`` s whose call returns a distribution."""

from pyro_lgm.models.autoregressive import iaf, maf
from pyro_lgm.models.coupling import nice, realnvp
from pyro_lgm.models.dequantization import (
    DEQUANTIZER_COUPLINGS,
    Dequantizer,
    UniformDequantizer,
    VariationalDequantization,
    variational_dequantizer,
)
from pyro_lgm.models.flow import ConditionalNormal, Flow
from pyro_lgm.models.flowpp import flowpp
from pyro_lgm.models.glow import ImageFlow, glow, realnvp_image
from pyro_lgm.models.hvae import HierarchicalVAE
from pyro_lgm.models.made import MADE
from pyro_lgm.models.nade import NADE, RNADE, DeepNADE
from pyro_lgm.models.parallel_wavenet import (
    DensityDistillation,
    DistillationLoss,
    ParallelWaveNet,
    TeacherDensity,
    distillation_loss,
    power_loss,
)
from pyro_lgm.models.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNPP
from pyro_lgm.models.pixelrnn import DiagonalBiLSTM, RowLSTM
from pyro_lgm.models.pixelsnail import PixelSNAIL
from pyro_lgm.models.pixelvae import PixelVAE
from pyro_lgm.models.spline import nsf
from pyro_lgm.models.stacks import (
    conditional_planar_flow,
    conditional_radial_flow,
    planar_flow,
    radial_flow,
)
from pyro_lgm.models.vae import VAE
from pyro_lgm.models.wavenet import WaveNet, wavenet

__all__ = ["ConditionalNormal", "Flow", "nice", "realnvp"]
__all__ += ["DeepNADE", "MADE", "NADE", "RNADE"]
__all__ += ["conditional_planar_flow", "conditional_radial_flow", "planar_flow", "radial_flow"]
__all__ += ["iaf", "maf"]
__all__ += ["HierarchicalVAE", "PixelVAE", "VAE"]
__all__ += ["GatedPixelCNN", "PixelCNN", "PixelCNNPP"]
__all__ += ["DiagonalBiLSTM", "RowLSTM"]
__all__ += ["ImageFlow", "glow", "realnvp_image"]
__all__ += ["flowpp"]
__all__ += ["PixelSNAIL"]
__all__ += ["nsf"]
__all__ += [
    "DEQUANTIZER_COUPLINGS",
    "Dequantizer",
    "UniformDequantizer",
    "VariationalDequantization",
    "variational_dequantizer",
]
__all__ += ["WaveNet", "wavenet"]
__all__ += [
    "DensityDistillation",
    "DistillationLoss",
    "ParallelWaveNet",
    "TeacherDensity",
    "distillation_loss",
    "power_loss",
]
