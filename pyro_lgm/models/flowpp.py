r"""Flow++ (Ho et al., 2019): flows of logistic-mixture CDF couplings.

Flow++ makes two changes to the coupling flows before it: the affine map of each coupling
becomes the logit of a :math:`K`-component logistic-mixture CDF followed by an affine map
(:class:`~pyro_lgm.transforms.MixtureLogisticCoupling`), which can bend sharply where an
affine layer cannot, and the coupling networks become stacks of gated residual convolutions
with multi-head self-attention (:class:`~pyro_lgm.nn.AttentionConvNet`). Its third change,
variational dequantization, is a model/guide pair in :mod:`pyro_lgm.models.dequantization`
that wraps the :class:`~pyro_lgm.models.ImageFlow` built here.

:func:`flowpp` builds either kind of model: on vectors (``flowpp(2)``: couplings with MLP
conditioners, for tabular and 2-D data) or on images (``flowpp((1, 28, 28))``: RealNVP's
multi-scale layout with mixture couplings).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.distributions import Transform

from pyro_lgm.models.coupling import coupling_stack
from pyro_lgm.models.flow import BaseLike, Flow
from pyro_lgm.models.glow import ImageFlow, _check_image_shape, _realnvp_scale
from pyro_lgm.transforms._image import check_int
from pyro_lgm.transforms.coupling import MaskLike
from pyro_lgm.transforms.mixture_cdf import (
    conditional_mixture_logistic_coupling,
    image_mixture_logistic_coupling,
    mixture_logistic_coupling,
)

__all__ = ["flowpp"]


def flowpp(
    shape: int | Sequence[int],
    num_layers: int | None = None,
    num_components: int = 8,
    hidden: int | Sequence[int] | None = None,
    *,
    context_dim: int = 0,
    mask: MaskLike = "alternating",
    actnorm: bool = True,
    activation: type[nn.Module] = nn.ReLU,
    log_scale_bound: float = 3.0,
    num_scales: int = 2,
    net: str = "attention",
    blocks: int = 2,
    bits: int = 8,
    alpha: float = 0.05,
    base: BaseLike = None,
) -> Flow:
    r"""A Flow++ model (Ho et al., 2019) on vectors (``shape`` an int) or images.

    Every layer is a logistic-mixture CDF coupling, written from data :math:`x` to latent
    :math:`z` as

    .. math::
        z_A = x_A, \qquad z_B = \sigma^{-1}\Big(\sum_{k=1}^K \pi_k\,
        \sigma\big(\tfrac{x_B - \mu_k}{s_k}\big)\Big) \cdot e^{a} + b, \qquad
        (\pi, \mu, s, a, b) = \mathrm{NN}(x_A),

    so :math:`\log p(x) = \log N(z; 0, I) + \sum_\text{layers} \sum_B \log dz_B / dx_B`
    is closed form; sampling inverts each layer with a bracketed Newton solver.

    * **Vectors** (``shape = D``): ``num_layers`` couplings (default 8) with alternating
      masks, each with a :class:`~pyro_lgm.nn.DenseNN` conditioner of hidden sizes
      ``hidden`` (default two of ``max(64, 4 D)``), an :class:`~pyro_lgm.transforms.ActNorm`
      after each one (``actnorm``), conditional on a context when ``context_dim > 0``.
    * **Images** (``shape = (C, H, W)``): RealNVP's multi-scale layout (Dinh et al., 2017,
      Sec. 3.6; ``num_scales`` scales: three checkerboard couplings, a squeeze, three
      channel couplings and a factor-out per scale, four checkerboard couplings at the
      last) with mixture couplings whose conditioners are ``net`` (``"attention"``: Flow++'s
      gated convolutions with self-attention, :class:`~pyro_lgm.nn.AttentionConvNet`;
      ``"glow"`` or ``"resnet"``) of ``hidden`` channels (default 32) and ``blocks`` blocks,
      ActNorm after every coupling, dequantization and logit preprocessing on the data side
      (an :class:`~pyro_lgm.models.ImageFlow`; for variational dequantization wrap it in
      :class:`~pyro_lgm.models.VariationalDequantization`). ``num_layers`` is not used.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019. L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real
        NVP*. ICLR 2017.

    Args:
        shape: ``D >= 2`` (vectors) or ``(C, H, W)`` (images, ``H``, ``W`` divisible by
            ``2**(num_scales - 1)``).
        num_layers: couplings of a vector flow (default 8).
        num_components: :math:`K`, logistics per mixture.
        hidden: MLP hidden sizes (vectors) or conditioner channels (images).
        context_dim: vectors only: ``C > 0`` makes the flow conditional (``flow(context)``).
        mask: vectors only: the first layer's mask (``"alternating"``, ``"half"``, bools).
        actnorm: ActNorm after every coupling.
        activation: vectors only: the MLPs' non-linearity.
        log_scale_bound: bound of each coupling's output log-scale :math:`a`.
        num_scales: images only: number of scales.
        net: images only: ``"attention"``, ``"glow"`` or ``"resnet"``.
        blocks: images only: blocks of each conditioner.
        bits: images only: bits per value of the data.
        alpha: images only: the logit preprocessing's :math:`\alpha`.
        base: vectors only: the base distribution (see :class:`~pyro_lgm.models.Flow`).

    Returns:
        A :class:`~pyro_lgm.models.Flow` (vectors) or :class:`~pyro_lgm.models.ImageFlow`.

    Example:
        >>> import torch
        >>> flow = flowpp(2, num_layers=2, num_components=4, hidden=[16])
        >>> flow().log_prob(torch.randn(3, 2)).shape
        torch.Size([3])
        >>> image_flow = flowpp((1, 4, 4), num_components=2, hidden=8, net="glow")
        >>> image_flow().event_shape
        torch.Size([1, 4, 4])
    """
    check_int("num_components", num_components, 1)
    if isinstance(shape, int) and not isinstance(shape, bool):
        return _vector_flowpp(
            shape,
            8 if num_layers is None else num_layers,
            num_components,
            hidden,
            context_dim,
            mask,
            actnorm,
            activation,
            log_scale_bound,
            base,
        )
    if context_dim or base is not None:
        raise ValueError("context_dim, base: only vector Flow++ models take them")
    check_int("num_scales", num_scales, 1)
    c, _, _ = _check_image_shape(shape, num_scales - 1, f"{num_scales} scales")
    width = 32 if hidden is None else hidden
    if isinstance(width, bool) or not isinstance(width, int):
        raise ValueError(f"hidden: expected the conditioners' channels (an int), got {hidden!r}")

    def make(ch: int, kind: str, invert: bool) -> Transform:
        return image_mixture_logistic_coupling(
            ch,
            kind,
            invert,
            num_components,
            net=net,
            hidden=width,
            blocks=blocks,
            log_scale_bound=log_scale_bound,
        )

    transforms = _realnvp_scale(c, 1, num_scales, make, actnorm)
    return ImageFlow(shape, transforms, bits=bits, alpha=alpha)


def _vector_flowpp(
    input_dim: int,
    num_layers: int,
    num_components: int,
    hidden: int | Sequence[int] | None,
    context_dim: int,
    mask: MaskLike,
    actnorm: bool,
    activation: type[nn.Module],
    log_scale_bound: float,
    base: BaseLike,
) -> Flow:
    check_int("shape", input_dim, 2)
    check_int("num_layers", num_layers, 1)
    check_int("context_dim", context_dim, 0)
    if isinstance(hidden, int):
        raise ValueError(f"hidden: expected a sequence of MLP widths for vectors, got {hidden!r}")

    def make(k: int) -> Transform:
        invert = k % 2 == 1
        if context_dim > 0:
            return conditional_mixture_logistic_coupling(
                input_dim,
                context_dim,
                hidden,
                mask,
                invert,
                num_components,
                log_scale_bound,
                activation,
            )
        return mixture_logistic_coupling(
            input_dim, hidden, mask, invert, num_components, log_scale_bound, activation
        )

    transforms = coupling_stack(input_dim, num_layers, make, actnorm)
    return Flow((input_dim,), transforms, conditional=context_dim > 0, base=base)
