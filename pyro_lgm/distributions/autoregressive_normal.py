r"""An autoregressive Gaussian over a real-valued feature map ``(C, H, W)``.

.. math::
    p(z \mid h) = \prod_{t=1}^{C H W}
        \mathcal{N}\big(z_t;\ \mu_t(z_{<t}, h),\ \sigma_t(z_{<t}, h)^2\big),
    \qquad \sigma_t = \operatorname{softplus}(s_t) + \sigma_{\min},

where :math:`t` runs over the elements in raster order (rows top to bottom, columns left to
right) and, inside a position, channel order, and :math:`(\mu_t, s_t)` are read from one
pass of a PixelCNN-family network built with ``output="normal"``. The reparametrization

.. math::
    z_t = \mu_t(z_{<t}, h) + \sigma_t(z_{<t}, h)\, \epsilon_t, \qquad
    \epsilon_t \sim \mathcal{N}(0, 1),

maps noise to maps element by element in generation order; its inverse
:math:`\epsilon_t = (z_t - \mu_t(z_{<t}, h)) / \sigma_t(z_{<t}, h)` takes one parallel pass,
and :math:`\log p(z \mid h) = \sum_t \log \mathcal{N}(\epsilon_t; 0, 1) - \log \sigma_t`.
This is the Gaussian autoregressive model of MAF / IAF (Papamakarios et al., 2017; Kingma
et al., 2016) over the positions of a feature map, as PixelVAE (Gulrajani et al., 2017) uses
it for the prior :math:`p(z_1 \mid z_2)` of a lower latent map given a higher one.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyro_lgm.distributions.nade import _shape
from pyro_lgm.distributions.pixelcnn import METHODS, _ImageNetDistribution
from pyro_lgm.errors import check_finite
from pyro_lgm.nn.causal import IncrementalRunner
from pyro_lgm.nn.pixelcnn import GatedPixelCNN as GatedPixelCNNNet
from pyro_lgm.nn.pixelcnn import ImageNet
from pyro_lgm.nn.pixelcnn import PixelCNN as PixelCNNNet

__all__ = ["AutoregressiveNormalMap"]


class AutoregressiveNormalMap(_ImageNetDistribution):
    r"""An autoregressive Gaussian over feature maps ``(C, H, W)``, from a PixelCNN network.

    .. math::
        p(z \mid h) = \prod_{i=1}^{H} \prod_{j=1}^{W} \prod_{c=1}^{C}
            \mathcal{N}\big(z_{c,i,j};\ \mu_{c,i,j},\ \sigma_{c,i,j}^2\big),
        \qquad \sigma_{c,i,j} = \operatorname{softplus}(s_{c,i,j}) + \sigma_{\min},

    where :math:`(\mu_{c,i,j}, s_{c,i,j})` is the network's output at channel :math:`c` of
    position :math:`(i, j)`, a function of the elements before it (the positions above and to
    the left, and the channels :math:`< c` of the same position) and of the condition
    :math:`h`. As an autoregressive transform of standard normal noise (MAF, Papamakarios et
    al., 2017; IAF, Kingma et al., 2016), :math:`z_t = \mu_t + \sigma_t \epsilon_t`:
    :meth:`transform` generates :math:`z` from :math:`\epsilon` element by element,
    :meth:`inverse` recovers :math:`\epsilon` in one pass, and :meth:`rsample` gives
    reparametrized samples. PixelVAE's hierarchical model (Gulrajani et al., 2017) uses it as
    the prior :math:`p(z_1 \mid z_2)` of a lower latent map given a higher one (the context,
    a feature map of any size, resized by the network).

    References:
        I. Gulrajani, K. Kumar, F. Ahmed, A. A. Taiga, F. Visin, D. Vazquez, A. Courville.
        *PixelVAE: A Latent Variable Model for Natural Images*. ICLR 2017.

        G. Papamakarios, T. Pavlakou, I. Murray. *Masked Autoregressive Flow for Density
        Estimation*. NeurIPS 2017.

        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
        *Improved Variational Inference with Inverse Autoregressive Flow*. NeurIPS 2016.

        A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves,
        K. Kavukcuoglu. *Conditional Image Generation with PixelCNN Decoders*. NeurIPS 2016.

    Args:
        net: a :class:`pyro_lgm.nn.PixelCNN` or :class:`pyro_lgm.nn.GatedPixelCNN` built
            with ``output="normal"`` (its output holds, per channel, the location and the
            unconstrained scale parameter: ``params.reshape(B, C, 2, H, W)``). The Gated
            network has no blind spot; plain PixelCNN's receptive field misses a wedge up and
            to the right.
        context: the condition when the network is conditional: class labels ``(...)``,
            vectors ``(..., D)`` or feature maps ``(..., C_h, h, w)`` of any ``h, w``;
            ``...`` is the batch.
        min_scale: :math:`\sigma_{\min} > 0`, added to the softplus so that every scale is
            at least this (default ``1e-3``): the density stays bounded by
            :math:`1 / (\sqrt{2 \pi} \sigma_{\min})` per element and :meth:`inverse` stays
            well conditioned when the network's scale parameter runs to :math:`-\infty`.
        validate_args: check values (finite) while validating; shapes, dtypes and devices
            are always checked.

    Shapes: ``batch_shape`` is the context's batch (``()`` without one), ``event_shape ==
    (C, H, W)``; values are real tensors of the network's dtype and device.

    Example:
        >>> from pyro_lgm.nn import GatedPixelCNN as Net
        >>> net = Net((2, 4, 4), hidden_channels=4, num_layers=2, output="normal",
        ...           context_channels=3)
        >>> d = AutoregressiveNormalMap(net, torch.randn(5, 3, 2, 2))  # z_2: 3 x 2 x 2 maps
        >>> z = d.rsample((2,))
        >>> z.shape, d.log_prob(z).shape, d.batch_shape
        (torch.Size([2, 5, 2, 4, 4]), torch.Size([2, 5]), torch.Size([5]))
        >>> torch.allclose(d.transform(d.inverse(z)), z, atol=1e-5)
        True
    """

    has_rsample = True
    support = constraints.independent(constraints.real, 3)
    _net_types = (PixelCNNNet, GatedPixelCNNNet)

    def __init__(
        self,
        net: ImageNet,
        context: Any = None,
        min_scale: float = 1e-3,
        validate_args: bool | None = None,
    ) -> None:
        if (
            isinstance(min_scale, bool)
            or not isinstance(min_scale, (int, float))
            or not math.isfinite(min_scale)
            or min_scale <= 0
        ):
            raise ValueError(f"min_scale: expected a finite number > 0, got {min_scale!r}")
        self.min_scale = float(min_scale)
        super().__init__(net, context, validate_args)

    def _check_output(self, net: ImageNet) -> None:
        if net.output_kind != "normal":
            raise ValueError(
                f"net: expected a network built with output='normal', got "
                f"output={net.output_kind!r} (its discrete distribution is "
                f"pyro_lgm.distributions.{type(net).__name__})"
            )

    # -- values -------------------------------------------------------------------------
    def _prepare(self, value: Any, name: str) -> tuple[torch.Tensor, Any, torch.Size]:
        """Check ``value``; return it broadcast and flattened to ``(N, C, H, W)``, the
        matching flattened context, and the broadcast batch shape (``N`` its size)."""
        shape = self._check_values(value, name)
        if value.dtype != self._dtype:
            raise ValueError(f"{name}: expected dtype {self._dtype}, got {value.dtype}")
        if self._validate_args:
            check_finite(name, value, always=True)
        flat = value.expand(shape + self.event_shape).reshape(-1, *self.event_shape)
        return flat, self._context_flat(shape), shape

    def _scale(self, raw: torch.Tensor) -> torch.Tensor:
        return F.softplus(raw) + self.min_scale

    def _loc_scale(self, z: torch.Tensor, context: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` locations and scales of every conditional of maps ``z``."""
        n, c, h, w = z.shape
        params = self.net(z, context).reshape(n, c, 2, h, w)
        return params[:, :, 0], self._scale(params[:, :, 1])

    # -- densities ----------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(z \\mid h)`, ``(...)``: one parallel pass of the network.

        ``value`` ``(..., C, H, W)`` broadcasts with ``batch_shape``."""
        z, context, shape = self._prepare(value, "value")
        loc, scale = self._loc_scale(z, context)
        eps = (z - loc) / scale
        lp = -0.5 * eps.square() - scale.log() - 0.5 * math.log(2 * math.pi)
        return lp.sum((-3, -2, -1)).reshape(shape)

    def conditionals(self, value: torch.Tensor) -> dist.Normal:
        r"""The conditionals :math:`\mathcal{N}(\mu_t(z_{<t}, h), \sigma_t(z_{<t}, h)^2)`
        given ``value``: a :class:`pyro.distributions.Normal` with batch shape
        ``(..., C, H, W)`` whose ``log_prob(value)`` summed over the last three dimensions
        is ``log_prob(value)``."""
        z, context, shape = self._prepare(value, "value")
        loc, scale = self._loc_scale(z, context)
        full = shape + self.event_shape
        return dist.Normal(loc.reshape(full), scale.reshape(full), validate_args=False)

    def conditional_params(self, value: torch.Tensor) -> torch.Tensor:
        """``(..., C, H, W, 2)``: the location and scale of every conditional.
        Differentiable in ``value`` (and the network's parameters), so
        :func:`pyro_lgm.testing.assert_autoregressive` can check the model through it."""
        z, context, shape = self._prepare(value, "value")
        loc, scale = self._loc_scale(z, context)
        return torch.stack([loc, scale], -1).reshape(shape + self.event_shape + (2,))

    # -- the noise <-> map bijection ----------------------------------------------------
    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        r"""The noise of maps ``z`` ``(..., C, H, W)``:
        :math:`\epsilon_t = (z_t - \mu_t(z_{<t}, h)) / \sigma_t(z_{<t}, h)`, in one pass
        (the exact inverse of :meth:`transform`); differentiable."""
        flat, context, shape = self._prepare(z, "z")
        loc, scale = self._loc_scale(flat, context)
        return ((flat - loc) / scale).reshape(shape + self.event_shape)

    def transform(self, eps: torch.Tensor, *, method: str = "naive") -> torch.Tensor:
        r"""The maps of noise ``eps`` ``(..., C, H, W)``:
        :math:`z_t = \mu_t(z_{<t}, h) + \sigma_t(z_{<t}, h)\, \epsilon_t`, element by element
        in generation order (``C H W`` steps).

        Args:
            eps: standard-normal noise; broadcasts with ``batch_shape``.
            method: ``"naive"`` (default): a full network pass per element, differentiable
                in ``eps``, the context and the network's parameters (reparametrized
                samples); ``"cached"``: incremental generation with
                :class:`pyro_lgm.nn.causal.IncrementalRunner` (a few small products per
                element), computed under ``torch.no_grad`` (no gradients). Both give the same
                maps up to float rounding.

        Returns:
            ``(..., C, H, W)`` maps, ``...`` the broadcast of ``eps``'s batch and
            ``batch_shape``.
        """
        if method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
        e, context, shape = self._prepare(eps, "eps")
        if method == "cached":
            with torch.no_grad():
                z = self._transform_cached(e, context)
        else:
            z = self._transform_naive(e, context)
        return z.reshape(shape + self.event_shape)

    def _transform_naive(self, eps: torch.Tensor, context: Any) -> torch.Tensor:
        n, c, h, w = eps.shape
        z = eps.new_zeros(n, c, h, w)
        for p in range(h * w):
            i, j = divmod(p, w)
            for ch in range(c):
                params = self.net(z, context)[:, 2 * ch : 2 * ch + 2, i, j]
                value = params[:, 0] + self._scale(params[:, 1]) * eps[:, ch, i, j]
                z = z.clone()  # a fresh tensor: the pass above may have saved z for backward
                z[:, ch, i, j] = value
        return z

    def _transform_cached(self, eps: torch.Tensor, context: Any) -> torch.Tensor:
        n, c, h, w = eps.shape
        example = None if context is None else context[:1]
        runner = IncrementalRunner(self.net, self.event_shape, example)
        caches = runner.start(n, context)
        z = caches["x"].transpose(1, 2)  # (n, C, H W + 1): a view of the graph's input map
        out = caches[self.net.output_map]  # (n, H W + 1, 2 C)
        flat = eps.reshape(n, c, h * w)
        for p in range(h * w):
            for ch in range(c):
                runner.step(caches, p * c + ch)
                loc, raw = out[:, p, 2 * ch], out[:, p, 2 * ch + 1]
                z[:, ch, p] = loc + self._scale(raw) * flat[:, ch, p]
        return z[:, :, : h * w].reshape(n, c, h, w)

    # -- sampling -----------------------------------------------------------------------
    def _noise(self, sample_shape: Any, generator: torch.Generator | None) -> torch.Tensor:
        shape = _shape(sample_shape, "sample_shape") + self.batch_shape + self.event_shape
        return torch.randn(shape, generator=generator, dtype=self._dtype, device=self._device)

    def rsample(
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reparametrized samples ``sample_shape + batch_shape + (C, H, W)``:
        :meth:`transform` (the naive, differentiable path) of fresh :math:`N(0, 1)` noise
        drawn from ``generator`` (default: the global one)."""
        return self.transform(self._noise(sample_shape, generator))

    def sample(
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
        *,
        method: str = "cached",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Samples ``sample_shape + batch_shape + (C, H, W)`` without gradients.

        Args:
            sample_shape: leading shape of the samples.
            method: ``"cached"`` (default; incremental generation) or ``"naive"`` (a full
                pass per element); for the same ``generator`` state both draw the same noise
                and give the same maps up to float rounding.
            generator: the ``torch.Generator`` of the noise (default: the global one).
        """
        if method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
        eps = self._noise(sample_shape, generator)
        with torch.no_grad():
            return self.transform(eps, method=method)
