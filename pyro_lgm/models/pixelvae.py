r"""PixelVAE: a VAE whose decoder is a conditional Gated PixelCNN, latents as feature maps.

Gulrajani et al. (2017) replace a VAE's factorized decoder by a PixelCNN conditioned on the
latents,

.. math::
    p(x \mid z_1) = \prod_{i} p\big(x_i \mid x_{<i},\ \mathrm{up}(z_1)\big),

with only a few autoregressive layers: their short receptive field models local texture
and leaves the global structure to the latent maps, so the latents stay in use (a decoder
with a full receptive field can model the data alone and let the posterior collapse to the
prior, Chen et al., 2017). Here the decoder is :class:`pyro_lgm.nn.GatedPixelCNN` with
``num_layers`` gated layers, conditioned through every gate on the latent map upsampled to
the image by transposed convolutions.

The latents are feature maps :math:`z_l \in \mathbb R^{c_l \times h_l \times w_l}`, each
level half the resolution of the one below (``z1`` at a quarter of the image's). With one
level the prior is :math:`N(0, I)`; with two or more (the hierarchical PixelVAE) the top is
:math:`N(0, I)` and each lower map has an *autoregressive* prior,
:math:`p(z_l \mid z_{l+1}) = \prod_t N(z_{l,t}; \mu_t, \sigma_t^2)` with
:math:`\mu_t, \sigma_t` from a Gated PixelCNN over the earlier elements of :math:`z_l`
conditioned on the upsampled :math:`z_{l+1}`
(:class:`pyro_lgm.distributions.AutoregressiveNormalMap`).

The guide reads every level from one convolutional encoder, :math:`q(z_l \mid x)` a diagonal
Gaussian per element, optionally pushed through a flow of the library over the flattened
map (``flow="planar" | "radial" | "iaf"``; the flows' parameters are read from the
Gaussian's own parameters, as the flat :class:`~pyro_lgm.models.VAE` reads them from its
features).

References:
    Ishaan Gulrajani, Kundan Kumar, Faruk Ahmed, Adrien Ali Taiga, Francesco Visin, David
    Vazquez, Aaron Courville. PixelVAE: A Latent Variable Model for Natural Images. ICLR
    2017. https://arxiv.org/abs/1611.05013

    Xi Chen, Diederik P. Kingma, Tim Salimans, Yan Duan, Prafulla Dhariwal, John Schulman,
    Ilya Sutskever, Pieter Abbeel. Variational Lossy Autoencoder. ICLR 2017.
    https://arxiv.org/abs/1611.02731
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.transforms import ReshapeTransform

from pyro_lgm import distributions as lgm_dist
from pyro_lgm.errors import check_finite
from pyro_lgm.models.hvae import _Hierarchy
from pyro_lgm.models.vae import _guide_flow
from pyro_lgm.nn.pixelcnn import GatedPixelCNN as GatedPixelCNNNet
from pyro_lgm.nn.vae import _dims
from pyro_lgm.transforms._common import _check_positive_int

__all__ = ["PixelVAE"]


def _half(n: int) -> int:
    return -(-n // 2)


class _MapNormal(nn.Module):
    """A diagonal Gaussian over ``D`` numbers whose mean and pre-softplus scale are the two
    halves of the context ``(..., 2 D)`` (the encoder's convolutional read-out)."""

    conditional = True

    def __init__(self, event_dim: int, min_scale: float) -> None:
        super().__init__()
        self.event_dim, self.min_scale = event_dim, float(min_scale)

    def forward(self, context: torch.Tensor) -> dist.Distribution:
        loc, rho = context.split(self.event_dim, -1)
        return dist.Normal(loc, F.softplus(rho) + self.min_scale).to_event(1)


def _upsampler(c_in: int, width: int, times: int) -> nn.Sequential:
    """``times`` stride-2 transposed convolutions (each doubles the size) with ReLUs."""
    layers: list[nn.Module] = []
    for k in range(times):
        layers += [nn.ConvTranspose2d(c_in if k == 0 else width, width, 4, 2, 1), nn.ReLU()]
    return nn.Sequential(*layers)


def _maps(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``net`` on ``(..., c, h, w)`` maps with any leading dimensions."""
    lead = z.shape[:-3]
    out = net(z.reshape(-1, *z.shape[-3:]))
    return out.reshape(*lead, *out.shape[1:])


class PixelVAE(_Hierarchy):
    r"""PixelVAE (Gulrajani et al., 2017): latent feature maps, a Gated PixelCNN decoder.

    .. math::
        p(x, z) = N(z_L; 0, I) \prod_{l<L} p(z_l \mid z_{l+1})
        \prod_i p\big(x_i \mid x_{<i}, \mathrm{up}(z_1)\big), \qquad
        q(z \mid x) = \prod_l q(z_l \mid x),

    with :math:`p(z_l \mid z_{l+1})` autoregressive over the map (see
    :mod:`pyro_lgm.models.pixelvae`). ``model`` / ``guide`` are the Pyro program (sites
    ``"z1"`` ... ``"zL"`` of shape ``(c_l, h_l, w_l)`` and ``"x"`` in one ``"data"``
    plate) that ``SVI`` trains and :func:`pyro_lgm.metrics.iwae` scores; :meth:`loss` is the
    negative ELBO with KL warm-up and free bits per level; :meth:`hierarchy_panels` shows
    what the top latents, the lower latents and the pixel-level noise each control.

    Args:
        image_shape: ``(C, H, W)``.
        latent_channels: channels ``c_1, ..., c_L`` of the latent maps, ``z1`` first;
            ``z1`` has size ``ceil(H / 4) x ceil(W / 4)`` and each further level half the
            size of the one below.
        bits: bits per channel of the data: 1 (binary images, a Bernoulli PixelCNN) or more
            (a :math:`2^{bits}`-way softmax per channel). Values are floats of the levels.
        encoder_channels: channels of the encoder's convolutions.
        pixel_channels: hidden channels of the Gated PixelCNN decoder.
        pixel_layers: its gated layers (few: the decoder's receptive field).
        pixel_kernel: kernel size of its first layer (later layers: 3).
        upsample_channels: channels of the maps that carry the latents to the decoder (and,
            in the hierarchy, ``z_{l+1}`` to the prior of ``z_l``).
        prior_channels, prior_layers: hidden channels and gated layers of each
            autoregressive prior :math:`p(z_l \mid z_{l+1})`.
        flow, num_flows, amortized, flow_hidden_dims: a flow after every level's Gaussian,
            over the flattened map, as for :class:`~pyro_lgm.models.VAE` (its context: the
            Gaussian's ``2 c_l h_l w_l`` parameters).
        min_scale: floor on the guide's and the priors' standard deviations.
        kl_warmup_steps, kl_warmup_start, free_bits: KL warm-up and free bits (one group per
            level) as for :class:`~pyro_lgm.models.HierarchicalVAE`.
        name: the prefix in Pyro's parameter store.

    Example:
        >>> import torch, pyro
        >>> m = PixelVAE((1, 8, 8), latent_channels=(2, 2), encoder_channels=4,
        ...              pixel_channels=4, pixel_layers=2, upsample_channels=4,
        ...              prior_channels=4, prior_layers=2)
        >>> x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.4))
        >>> svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      pyro.infer.Trace_ELBO())
        >>> loss = svi.step(x)
        >>> m.latent_shape(0), m.latent_shape(1), m.sample(2).shape
        (torch.Size([2, 2, 2]), torch.Size([2, 1, 1]), torch.Size([2, 1, 8, 8]))
        >>> pyro.clear_param_store()
    """

    inference = "bottom-up"

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_channels: Sequence[int] = (8,),
        *,
        bits: int = 1,
        encoder_channels: int = 32,
        pixel_channels: int = 32,
        pixel_layers: int = 3,
        pixel_kernel: int = 7,
        upsample_channels: int = 16,
        prior_channels: int = 32,
        prior_layers: int = 4,
        flow: str | Callable[[int, int, int], Sequence[object]] | None = None,
        num_flows: int | None = None,
        amortized: bool = True,
        flow_hidden_dims: Sequence[int] | None = None,
        min_scale: float = 1e-3,
        kl_warmup_steps: int = 0,
        kl_warmup_start: float = 0.01,
        free_bits: float = 0.0,
        name: str = "pixelvae",
    ) -> None:
        super().__init__()
        shape = _dims("image_shape", image_shape)
        if len(shape) != 3:
            raise ValueError(f"image_shape: expected (C, H, W), got {tuple(image_shape)}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits: expected an int in 1..16, got {bits!r}")
        self.bits = bits
        likelihood = "bernoulli" if bits == 1 else "categorical"
        self._setup_latent_model(
            shape, likelihood, 2**bits, kl_warmup_steps, kl_warmup_start, free_bits, name
        )
        self.latent_channels = _dims("latent_channels", latent_channels)
        self.num_latent_layers = len(self.latent_channels)
        e = _check_positive_int("encoder_channels", encoder_channels)
        u = _check_positive_int("upsample_channels", upsample_channels)
        if not isinstance(min_scale, int | float) or not 0 <= min_scale < 1:
            raise ValueError(f"min_scale: expected a number in [0, 1), got {min_scale!r}")
        self._check_flow(flow, amortized)
        c, h, w = shape
        sizes = [(_half(_half(h)), _half(_half(w)))]
        for _ in range(1, self.num_latent_layers):
            sizes.append((_half(sizes[-1][0]), _half(sizes[-1][1])))
        self._shapes = [
            torch.Size([ch, *hw]) for ch, hw in zip(self.latent_channels, sizes, strict=True)
        ]

        def down(c_in: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, e, 3, 2, 1), nn.ReLU(), nn.Conv2d(e, e, 3, 1, 1), nn.ReLU()]

        # the encoder: a stem and two halvings to z1's size, one more halving per level
        self.encoder = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(c, e, 3, 1, 1), nn.ReLU(), *down(e), *down(e))]
            + [nn.Sequential(*down(e)) for _ in range(1, self.num_latent_layers)]
        )
        self.heads = nn.ModuleList()
        flows = []
        for i, zs in enumerate(self._shapes):
            head = nn.Conv2d(e, 2 * zs[0], 1)
            with torch.no_grad():  # a new guide is N(0, I) for every x
                head.weight.zero_()
                head.bias[: zs[0]] = 0.0
                head.bias[zs[0] :] = math.log(math.expm1(1.0 - min_scale))
            self.heads.append(head)
            d = zs.numel()
            spec = flow(i, d, 2 * d) if callable(flow) else flow
            flows.append(
                _guide_flow(d, 2 * d, spec, num_flows, amortized, flow_hidden_dims,
                            _MapNormal(d, min_scale))
            )  # fmt: skip
        self.flows = nn.ModuleList(flows)
        # the generative path
        self.decoder_up = _upsampler(self.latent_channels[0], u, 2)
        self.pixelcnn = GatedPixelCNNNet(
            tuple(shape),
            pixel_channels,
            pixel_layers,
            output="bernoulli" if bits == 1 else "categorical",
            bits=None if bits == 1 else bits,
            first_kernel=pixel_kernel,
            context_channels=u,
        )
        self.prior_ups = nn.ModuleList(
            _upsampler(self.latent_channels[i + 1], u, 1) for i in range(self.num_latent_layers - 1)
        )
        self.priors = nn.ModuleList(
            GatedPixelCNNNet(
                tuple(self._shapes[i]),
                prior_channels,
                prior_layers,
                output="normal",
                first_kernel=3,
                context_channels=u,
            )
            for i in range(self.num_latent_layers - 1)
        )
        self.min_scale = float(min_scale)

    def latent_shape(self, index: int) -> torch.Size:
        return self._shapes[index]

    # ------------------------------------------------------------------ checks
    def _check_x(self, x: object) -> torch.Tensor:
        shape = self.data_shape
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (N, {', '.join(map(str, shape))}), got {got}")
        p = self._zero
        if x.device != p.device:
            raise ValueError(f"x: expected device {p.device} (the parameters'), got {x.device}")
        if x.dtype != p.dtype:
            raise ValueError(f"x: expected dtype {p.dtype} (the parameters'), got {x.dtype}")
        check_finite("x", x)
        top = self.num_levels - 1
        bad = (x != x.round()) | (x < 0) | (x > top)
        if bool(bad.any()):
            raise ValueError(
                f"x: expected integer levels in [0, {top}], got {x[bad].flatten()[0].item()!r}"
            )
        return x

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2.0 / (self.num_levels - 1)) - 1.0

    # ------------------------------------------------------------------ the distributions
    def _prior(self, index: int, parent: torch.Tensor | None, num: int) -> dist.Distribution:
        if parent is None:
            loc = self._zero.expand(num, *self._shapes[index])
            return dist.Normal(loc, torch.ones_like(loc)).to_event(3)
        ctx = _maps(self.prior_ups[index], parent)
        return lgm_dist.AutoregressiveNormalMap(self.priors[index], ctx, min_scale=self.min_scale)

    def _prior_from_noise(
        self, index: int, parent: torch.Tensor | None, eps: torch.Tensor
    ) -> torch.Tensor:
        if parent is None:
            return eps
        return self._prior(index, parent, eps.shape[0]).transform(eps)

    def decode(self, z1: torch.Tensor) -> lgm_dist.GatedPixelCNN:
        """:math:`p(x \\mid z_1)`, the Gated PixelCNN conditioned on the upsampled map:
        ``z1`` ``(..., c_1, h_1, w_1)`` gives batch ``(...)``, event ``(C, H, W)``."""
        return lgm_dist.GatedPixelCNN(self.pixelcnn, _maps(self.decoder_up, z1))

    def _draw_x(self, d: dist.Distribution, generator: torch.Generator | None) -> torch.Tensor:
        return d.sample(generator=generator)

    def posterior(self, x: torch.Tensor) -> list[dist.Distribution]:
        """The guide's factors :math:`q(z_l \\mid x)`, ``z1``'s first, each with batch
        ``(N,)`` and event ``(c_l, h_l, w_l)``."""
        x = self._check_x(x)
        return self._posteriors(x)

    def _posteriors(self, x: torch.Tensor) -> list[dist.Distribution]:
        h = self._as_input(x)
        out = []
        for i, zs in enumerate(self._shapes):
            h = self.encoder[i](h)
            params = self.heads[i](h)  # (N, 2 c, h, w): loc and pre-softplus scale
            context = torch.cat([params[:, : zs[0]].flatten(1), params[:, zs[0] :].flatten(1)], -1)
            q = self.flows[i](context)
            out.append(dist.TransformedDistribution(q, [ReshapeTransform((zs.numel(),), zs)]))
        return out

    def _guide_walk(
        self, x: torch.Tensor, draw: Callable[[int, dist.Distribution], torch.Tensor]
    ) -> list[torch.Tensor]:
        return [draw(i, q) for i, q in enumerate(self._posteriors(x))]

    def extra_repr(self) -> str:
        return (
            f"image_shape={tuple(self.data_shape)}, bits={self.bits}, latent_shapes="
            f"{[tuple(s) for s in self._shapes]}, flow={self.flow_kind!r}"
        )
