r"""Multi-scale image flows: RealNVP (Dinh et al., 2017) and Glow (Kingma & Dhariwal, 2018).

Both are :class:`ImageFlow` s: a :class:`~pyro_lgm.models.Flow` over dequantized n-bit
images whose transforms end, on the data side, with RealNVP's logit preprocessing and the
scaling to :math:`[0, 2^n)`,

.. math::
    v = 2^n \cdot \frac{\mathrm{sigmoid}(f(z)) - \alpha}{1 - 2\alpha}, \qquad
    z \sim N(0, I),

so ``model().log_prob(v)`` is the exact density of the dequantized data
:math:`v = x + u`, :math:`u \sim U[0, 1)^D`, every preprocessing log-det included, and
:math:`-\log p(v) / (D \log 2)` is the bits/dim the papers report (a bound on the discrete
model's, by Jensen).

The multi-scale architecture is a bijection on the whole ``(C, H, W)`` tensor (see
:class:`~pyro_lgm.transforms.FactorOut`): one scale squeezes, applies its steps and factors
out half of the channels; the kept half goes through the next scale; a depth-to-space at
the end restores the shape, so the base is :math:`N(0, I)` on ``(C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.distributions import ComposeTransform, Transform

from pyro_lgm.models.flow import Flow
from pyro_lgm.transforms._image import check_int
from pyro_lgm.transforms.actnorm import ActNorm
from pyro_lgm.transforms.conv1x1 import InvertibleConv1x1
from pyro_lgm.transforms.elementwise import LogitPreprocess, UniformDequantize
from pyro_lgm.transforms.image_coupling import image_additive_coupling, image_affine_coupling
from pyro_lgm.transforms.reshape import FactorOut, Squeeze, _check_shape

__all__ = ["ImageFlow", "glow", "realnvp_image"]


def _check_image_shape(shape: object, halvings: int, what: str) -> tuple[int, int, int]:
    c, h, w = _check_shape(shape)
    k = 2**halvings
    if h % k or w % k:
        raise ValueError(
            f"shape: {what} halve the height and width {halvings} time(s), so H and W must be "
            f"divisible by {k}; got {tuple(shape)}"
        )
    return c, h, w


class ImageFlow(Flow):
    r"""A flow over dequantized n-bit images ``(C, H, W)`` with sampling at a temperature.

    The last two transforms (on the data side) are
    :class:`~pyro_lgm.transforms.LogitPreprocess` and
    :class:`~pyro_lgm.transforms.UniformDequantize`, so ``model()`` is a
    ``TransformedDistribution`` over :math:`[0, 2^n)^{C \times H \times W}`.

    Args:
        shape: ``(C, H, W)``.
        transforms: the flow's transforms on ``(C, H, W)`` in base-to-data order (the
            preprocessing is appended).
        bits: ``n``, the bits per value of the data.
        alpha: the logit preprocessing's :math:`\alpha \in [0, 1/2)`.

    Example:
        >>> import torch
        >>> flow = glow((1, 4, 4), levels=1, steps=1, hidden=8)
        >>> x = torch.randint(0, 256, (3, 1, 4, 4)).float()
        >>> flow.log_likelihood(x).shape, flow.sample((2,), temperature=0.7).shape
        (torch.Size([3]), torch.Size([2, 1, 4, 4]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        transforms: Sequence[Transform],
        bits: int = 8,
        alpha: float = 0.05,
    ) -> None:
        dequantizer = UniformDequantize(check_int("bits", bits, 1))
        super().__init__(tuple(shape), [*transforms, LogitPreprocess(alpha), dequantizer])
        self.bits = bits
        self.alpha = alpha
        self.dequantizer = dequantizer

    @property
    def num_dims(self) -> int:
        """``D = C H W``."""
        return math.prod(self.event_shape)

    def dequantize(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x + u``, ``u ~ U[0, 1)``, for integer-valued images ``x`` in ``[0, 2^n)``."""
        return self.dequantizer.dequantize(x, generator=generator)

    def log_likelihood(
        self,
        x: torch.Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""A lower bound on :math:`\log P(x)` in nats, for integer-valued images ``x``.

        .. math::
            \log P(x) \ge \log \frac1S \sum_{s=1}^S p(x + u_s), \qquad u_s \sim U[0, 1)^D,

        (in expectation; :math:`S = 1` is the training objective of the papers).

        Args:
            x: ``(..., C, H, W)`` integers in ``[0, 2^n)`` (any float dtype).
            num_samples: ``S``, dequantization draws per image.
            generator: random generator for ``u``.

        Returns:
            ``(...)`` log-likelihoods in nats.
        """
        check_int("num_samples", num_samples, 1)
        d = self()
        logs = torch.stack([d.log_prob(self.dequantize(x, generator)) for _ in range(num_samples)])
        return torch.logsumexp(logs, 0) - math.log(num_samples)

    def bits_per_dim(
        self, x: torch.Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""``-log_likelihood(x) / (D log 2)``: bits per dimension of each image, ``(...)``."""
        return -self.log_likelihood(x, num_samples, generator) / (self.num_dims * math.log(2))

    def _transform(self) -> ComposeTransform:
        return ComposeTransform(list(self.transforms))

    def encode(self, v: torch.Tensor) -> torch.Tensor:
        """The latent :math:`z = f^{-1}(v)` of dequantized images ``v`` ``(..., C, H, W)``."""
        return self._transform().inv(v)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The dequantized image :math:`v = f(z)` in :math:`[0, 2^n)` of latents ``z``."""
        return self._transform()(z)

    def sample(
        self,
        sample_shape: Sequence[int] = (),
        temperature: float = 1.0,
        quantize: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Images drawn at a temperature: :math:`v = f(T z)`, :math:`z \sim N(0, I)`.

        A temperature :math:`T < 1` (Glow's 0.7) trades diversity for quality.

        Args:
            sample_shape: leading shape of the draws.
            temperature: :math:`T > 0`.
            quantize: return the integer image :math:`\lfloor v \rfloor` (else ``v``).
            generator: random generator for ``z``.

        Returns:
            ``(*sample_shape, C, H, W)`` tensor (integer-valued when ``quantize``).
        """
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        if not 0 < temperature < math.inf:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        ref = self._loc
        shape = torch.Size(sample_shape) + self.event_shape
        z = torch.randn(shape, generator=generator, dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            v = self.decode(temperature * z)
        return self.dequantizer.quantize(v) if quantize else v

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, bits={self.bits}, alpha={self.alpha}"


def _glow_level(
    c: int,
    level: int,
    levels: int,
    steps: int,
    make_step: object,
    split_prior: bool,
) -> list[Transform]:
    """Base-to-data transforms of scales ``level..levels`` on ``(c, h, w)``."""
    c4 = 4 * c
    inner: list[Transform] = [Squeeze()]  # latent side: depth-to-space undone
    if level < levels:
        rest = _glow_level(2 * c, level + 1, levels, steps, make_step, split_prior)
        inner.append(FactorOut(c4, 2 * c, rest, prior=split_prior))
    for _ in range(steps):
        inner.extend(make_step(c4))  # type: ignore[operator]
    inner.append(Squeeze().inv)  # data side: space-to-depth first
    return inner


def glow(
    shape: Sequence[int],
    levels: int = 3,
    steps: int = 32,
    hidden: int = 512,
    bits: int = 8,
    alpha: float = 0.05,
    coupling: str = "affine",
    lu: bool = True,
    split_prior: bool = True,
    scale: str = "sigmoid",
) -> ImageFlow:
    r"""Glow (Kingma & Dhariwal, 2018): ``levels`` scales of ``steps`` flow steps each.

    From data to latent, each scale squeezes (``(C, H, W)`` to ``(4C, H/2, W/2)``), applies
    ``steps`` steps of flow

    .. math::
        \mathrm{ActNorm} \;\to\; \mathrm{InvertibleConv1x1} \;\to\;
        \mathrm{coupling}\ (z_B = x_B \odot \mathrm{sigmoid}(h + 2) + t \text{ on half of
        the channels}),

    and, except at the last scale, factors out half of the channels under the learned prior
    :math:`N(\mu(z_1), \sigma(z_1)^2)` (:class:`~pyro_lgm.transforms.FactorOut`). The
    data side is dequantized and logit-preprocessed (:class:`ImageFlow`).

    References:
        D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        shape: ``(C, H, W)``, ``H`` and ``W`` divisible by ``2**levels``.
        levels: number of scales ``L`` (3 in the paper).
        steps: steps per scale ``K`` (32 in the paper).
        hidden: channels of each coupling's :class:`~pyro_lgm.nn.GlowConvNet` (512).
        bits: bits per value of the data.
        alpha: logit preprocessing :math:`\alpha`.
        coupling: ``"affine"`` or ``"additive"``.
        lu: LU-decomposed 1x1 convolutions (else a plain matrix).
        split_prior: Glow's learned prior on the factored half (else :math:`N(0, I)`).
        scale: ``"sigmoid"`` (Glow's) or ``"tanh"`` for the affine coupling's scale.

    Returns:
        An :class:`ImageFlow`; ``model()`` is the distribution over dequantized images.

    Example:
        >>> model = glow((1, 8, 8), levels=2, steps=2, hidden=16)
        >>> model().event_shape
        torch.Size([1, 8, 8])
    """
    check_int("levels", levels, 1)
    check_int("steps", steps, 1)
    check_int("hidden", hidden, 1)
    c, _, _ = _check_image_shape(shape, levels, f"glow with levels={levels} must")
    if coupling not in ("affine", "additive"):
        raise ValueError(f"coupling: expected 'affine' or 'additive', got {coupling!r}")

    def make_step(ch: int) -> list[Transform]:
        if coupling == "affine":
            cp = image_affine_coupling(ch, "channel", hidden=hidden, scale=scale)
        else:
            cp = image_additive_coupling(ch, "channel", hidden=hidden)
        # base-to-data order of ActNorm -> 1x1 conv -> coupling (data to latent)
        return [cp, InvertibleConv1x1(ch, lu=lu), ActNorm(ch, event_dim=3)]

    transforms = _glow_level(c, 1, levels, steps, make_step, split_prior)
    return ImageFlow(shape, transforms, bits=bits, alpha=alpha)


def _realnvp_scale(
    c: int, scale_index: int, num_scales: int, make: object, actnorm: bool
) -> list[Transform]:
    """Base-to-data transforms of scales ``scale_index..num_scales`` on ``(c, h, w)``."""

    def couplings(ch: int, mask: str, n: int) -> list[Transform]:
        seq: list[Transform] = []  # data-to-latent order
        for k in range(n):
            seq.append(make(ch, mask, k % 2 == 1))  # type: ignore[operator]
            if actnorm:
                seq.append(ActNorm(ch, event_dim=3))
        return seq[::-1]

    if scale_index == num_scales:
        return couplings(c, "checkerboard", 4)
    rest = _realnvp_scale(2 * c, scale_index + 1, num_scales, make, actnorm)
    return [
        Squeeze(),  # latent side: back to (c, h, w)
        FactorOut(4 * c, 2 * c, rest, prior=False),
        *couplings(4 * c, "channel", 3),
        Squeeze().inv,  # squeeze (data to latent)
        *couplings(c, "checkerboard", 3),
    ]


def realnvp_image(
    shape: Sequence[int],
    num_scales: int = 2,
    hidden: int = 64,
    blocks: int = 4,
    bits: int = 8,
    alpha: float = 0.05,
    actnorm: bool = True,
    log_scale_bound: float = 1.0,
) -> ImageFlow:
    r"""RealNVP's multi-scale image flow (Dinh et al., 2017, Sec. 3.6).

    From data to latent, each scale but the last applies three affine couplings with
    alternating checkerboard masks, a squeeze, three couplings with alternating channel
    masks, and factors out half of the channels (passed to the :math:`N(0, I)` base); the
    last scale applies four checkerboard couplings. Each coupling's
    :class:`~pyro_lgm.nn.ResNetConvNet` has ``blocks`` residual blocks of ``hidden``
    channels, its log-scale bounded by :math:`c \tanh(\cdot / c)`; ActNorm follows every
    coupling (in place of the paper's batch normalization, which ties an image's density to
    its batch). The data side is dequantized and logit-preprocessed (:class:`ImageFlow`).

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP*.
        ICLR 2017.

    Args:
        shape: ``(C, H, W)``, ``H`` and ``W`` divisible by ``2**(num_scales - 1)``.
        num_scales: number of scales (``>= 1``).
        hidden: channels of the residual networks.
        blocks: residual blocks per network.
        bits: bits per value of the data.
        alpha: logit preprocessing :math:`\alpha` (0.05 in the paper).
        actnorm: an ActNorm after every coupling.
        log_scale_bound: the bound :math:`c` (1 by default: with 3, the vector layers'
            default, training on MNIST at Adam's 1e-3 spiked to 8e11 bits/dim within 40
            steps - an expansion of up to :math:`e^3` per coupling compounds over a
            scale's ten layers - while 1 trained smoothly).

    Returns:
        An :class:`ImageFlow`.

    Example:
        >>> model = realnvp_image((1, 8, 8), num_scales=2, hidden=8, blocks=1)
        >>> model().event_shape
        torch.Size([1, 8, 8])
    """
    check_int("num_scales", num_scales, 1)
    check_int("hidden", hidden, 1)
    check_int("blocks", blocks, 0)
    c, _, _ = _check_image_shape(shape, num_scales - 1, f"{num_scales} scales")

    def make(ch: int, mask: str, invert: bool) -> Transform:
        return image_affine_coupling(
            ch,
            mask,
            invert,
            net="resnet",
            hidden=hidden,
            blocks=blocks,
            log_scale_bound=log_scale_bound,
        )

    transforms = _realnvp_scale(c, 1, num_scales, make, actnorm)
    return ImageFlow(shape, transforms, bits=bits, alpha=alpha)
