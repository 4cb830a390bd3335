"""pyro_lgm.transforms."""

from pyro_lgm._cache import invalidate_caches
from pyro_lgm.transforms.actnorm import ActNorm, actnorm
from pyro_lgm.transforms.autoregressive import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    affine_autoregressive,
    conditional_affine_autoregressive,
)
from pyro_lgm.transforms.conv1x1 import InvertibleConv1x1, invertible_conv1x1
from pyro_lgm.transforms.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    DiagonalScale,
    additive_coupling,
    affine_coupling,
    conditional_additive_coupling,
    conditional_affine_coupling,
    coupling_mask,
    diagonal_scale,
)
from pyro_lgm.transforms.elementwise import (
    LogitPreprocess,
    UniformDequantize,
    logit_preprocess,
    uniform_dequantize,
)
from pyro_lgm.transforms.iaf1d import (
    ConditionalSequenceIAF,
    SequenceIAF,
    conditional_sequence_iaf,
    sequence_iaf,
)
from pyro_lgm.transforms.image_coupling import (
    ConditionalImageAdditiveCoupling,
    ConditionalImageAffineCoupling,
    ImageAdditiveCoupling,
    ImageAffineCoupling,
    conditional_image_additive_coupling,
    conditional_image_affine_coupling,
    image_additive_coupling,
    image_affine_coupling,
)
from pyro_lgm.transforms.mixture_cdf import (
    ConditionalImageMixtureLogisticCoupling,
    ConditionalMixtureLogisticCoupling,
    ImageMixtureLogisticCoupling,
    MixtureLogisticCDF,
    MixtureLogisticCoupling,
    conditional_image_mixture_logistic_coupling,
    conditional_mixture_logistic_coupling,
    image_mixture_logistic_coupling,
    mixture_cdf_solve,
    mixture_logistic_coupling,
)
from pyro_lgm.transforms.permute import Permute, Reverse, permute, reverse
from pyro_lgm.transforms.planar import (
    ConditionalPlanar,
    ConditionedPlanar,
    Planar,
    conditional_planar,
    planar,
)
from pyro_lgm.transforms.radial import (
    ConditionalRadial,
    ConditionedRadial,
    Radial,
    conditional_radial,
    radial,
)
from pyro_lgm.transforms.reshape import (
    FactorOut,
    Squeeze,
    channel_mask,
    checkerboard_mask,
    factor_out,
    squeeze,
)
from pyro_lgm.transforms.spline import (
    ConditionalSplineCoupling,
    RationalQuadraticSpline,
    SplineCoupling,
    conditional_spline_coupling,
    spline_coupling,
)

__all__: list[str] = [
    "invalidate_caches",
    # autoregressive.py
    "AffineAutoregressive",
    "ConditionalAffineAutoregressive",
    "affine_autoregressive",
    "conditional_affine_autoregressive",
    # coupling.py, actnorm.py, permute.py
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ConditionalAdditiveCoupling",
    "ConditionalAffineCoupling",
    "DiagonalScale",
    "Permute",
    "Reverse",
    "actnorm",
    "additive_coupling",
    "affine_coupling",
    "conditional_additive_coupling",
    "conditional_affine_coupling",
    "coupling_mask",
    "diagonal_scale",
    "permute",
    "reverse",
]
# planar.py, radial.py
__all__ += [
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionedPlanar",
    "ConditionedRadial",
    "Planar",
    "Radial",
    "conditional_planar",
    "conditional_radial",
    "planar",
    "radial",
]
# image_coupling.py, reshape.py
__all__ += [
    "ConditionalImageAdditiveCoupling",
    "ConditionalImageAffineCoupling",
    "FactorOut",
    "ImageAdditiveCoupling",
    "ImageAffineCoupling",
    "Squeeze",
    "channel_mask",
    "checkerboard_mask",
    "conditional_image_additive_coupling",
    "conditional_image_affine_coupling",
    "factor_out",
    "image_additive_coupling",
    "image_affine_coupling",
    "squeeze",
]
# conv1x1.py, elementwise.py (image transforms; ActNorm(event_dim=3) is above)
__all__ += [
    "InvertibleConv1x1",
    "LogitPreprocess",
    "UniformDequantize",
    "invertible_conv1x1",
    "logit_preprocess",
    "uniform_dequantize",
]
# mixture_cdf.py (Flow++)
__all__ += [
    "ConditionalImageMixtureLogisticCoupling",
    "ConditionalMixtureLogisticCoupling",
    "ImageMixtureLogisticCoupling",
    "MixtureLogisticCDF",
    "MixtureLogisticCoupling",
    "conditional_image_mixture_logistic_coupling",
    "conditional_mixture_logistic_coupling",
    "image_mixture_logistic_coupling",
    "mixture_cdf_solve",
    "mixture_logistic_coupling",
]
# spline.py (Durkan et al., 2019)
__all__ += [
    "ConditionalSplineCoupling",
    "RationalQuadraticSpline",
    "SplineCoupling",
    "conditional_spline_coupling",
    "spline_coupling",
]
# iaf1d.py (Parallel WaveNet student, van den Oord et al., 2018)
__all__ += [
    "ConditionalSequenceIAF",
    "SequenceIAF",
    "conditional_sequence_iaf",
    "sequence_iaf",
]
