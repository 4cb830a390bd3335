r"""PixelCNN-family distributions over images ``(C, H, W)`` of binary or n-bit pixels.

.. math::
    p(x) = \prod_{i=1}^{H} \prod_{j=1}^{W} \prod_{c=1}^{C}
        p\big(x_{c,i,j} \mid x_{<(i,j)},\, x_{<c,(i,j)}\big)

in raster order (rows top to bottom, pixels left to right) and channel order inside a
pixel. ``log_prob`` is one parallel pass of the network (teacher forcing); ``sample``
generates element by element, by default with cached incremental generation
(:class:`pyro_lgm.nn.causal.IncrementalRunner`, Ramachandran et al., 2017), or with a full
network pass per element (``method="naive"``). Both draw one uniform number per element from
the same stream and turn it into a value by the inverse CDF of that element's conditional, so
for the same random stream they give the same images (up to float rounding of the
probabilities: a uniform that lands within rounding of a CDF step; exact in float64).

The per-element conditionals are exposed by :meth:`conditionals`: Bernoulli, categorical
over :math:`2^{bits}` levels, or - for PixelCNN++'s output - the one-channel discretized
logistic mixture of :math:`x_c` given the pixel's earlier channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_lgm.distributions.discretized_logistic import DiscretizedLogisticMixture
from pyro_lgm.distributions.nade import _expanded, _shape
from pyro_lgm.errors import NonFiniteValueError, _describe
from pyro_lgm.nn.pixelcnn import GatedPixelCNN as GatedPixelCNNNet
from pyro_lgm.nn.pixelcnn import ImageNet
from pyro_lgm.nn.pixelcnn import PixelCNN as PixelCNNNet
from pyro_lgm.nn.pixelcnnpp import PixelCNNPP as PixelCNNPPNet

__all__ = ["GatedPixelCNN", "PixelCNN", "PixelCNNPP"]

METHODS = ("cached", "naive")


class _ImageNetDistribution(TorchDistribution):
    """Shared plumbing of the distributions of an image network
    (:class:`pyro_lgm.nn.pixelcnn.ImageNet`): the network's type and output, the batch shape
    from the context, ``expand``, the context broadcast to a batch, and value checks.

    Subclasses say which networks they accept (``_net_types``) and which outputs
    (``_check_output``).
    """

    arg_constraints: dict = {}
    _net_types: tuple[type, ...] = (ImageNet,)

    def __init__(
        self, net: ImageNet, context: Any = None, validate_args: bool | None = None
    ) -> None:
        if not isinstance(net, self._net_types):
            names = " or ".join(f"pyro_lgm.nn.{t.__name__}" for t in self._net_types)
            hint = ""
            if isinstance(getattr(net, "net", None), ImageNet):
                hint = "; pass the model's network (model.net) or call the model"
            raise ValueError(f"net: expected a {names}, got {type(net).__name__}{hint}")
        self._check_output(net)
        self.net = net
        batch_shape = net.context_batch_shape(context)
        self.context = context
        param = next(net.parameters())
        self._dtype, self._device = param.dtype, param.device
        super().__init__(batch_shape, torch.Size(net.image_shape), validate_args=validate_args)

    def _check_output(self, net: ImageNet) -> None:
        """Raise ``ValueError`` (naming ``net``) for a network whose output this
        distribution does not model."""

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> _ImageNetDistribution:
        new = _expanded(self, batch_shape, _instance)
        if self.context is not None:
            new.context = self._context_expanded(new.batch_shape)
        return new

    def _context_expanded(self, shape: torch.Size) -> Any:
        ctx = self.context
        if ctx is None:
            return None
        tail = {"class": 0, "vector": 1, "map": 3}[self.net.context_kind]
        return ctx.expand(shape + ctx.shape[ctx.dim() - tail :])

    def _context_flat(self, shape: torch.Size) -> Any:
        ctx = self._context_expanded(shape)
        if ctx is None:
            return None
        tail = {"class": 0, "vector": 1, "map": 3}[self.net.context_kind]
        return ctx.reshape(-1, *ctx.shape[ctx.dim() - tail :])

    # -- values -------------------------------------------------------------------------
    def _check_values(self, value: Any, name: str = "value") -> torch.Size:
        """Check type, shape, device and the broadcast with ``batch_shape`` (not the
        support: the subclass does); the broadcast batch shape."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(value).__name__}")
        ev = self.event_shape
        if value.dim() < 3 or value.shape[-3:] != ev:
            raise ValueError(
                f"{name}: expected shape (..., {', '.join(map(str, ev))}), got {tuple(value.shape)}"
            )
        if value.device != self._device:
            raise ValueError(f"{name}: expected a tensor on {self._device}, got {value.device}")
        if value.is_complex():
            raise ValueError(f"{name}: expected a real tensor, got dtype {value.dtype}")
        try:
            shape = torch.broadcast_shapes(value.shape[:-3], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"{name}: batch shape {tuple(value.shape[:-3])} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None
        return shape


class ImageAutoregressive(_ImageNetDistribution):
    """The distribution of an image network (:class:`pyro_lgm.nn.pixelcnn.ImageNet`) over
    discrete images.

    Shared by :class:`PixelCNN`, :class:`GatedPixelCNN` and :class:`PixelCNNPP`, which only
    say which network they accept. A network with ``output="normal"`` (real values) is
    refused: its distribution is
    :class:`pyro_lgm.distributions.AutoregressiveNormalMap`.
    """

    has_rsample = False

    def _check_output(self, net: ImageNet) -> None:
        if net.output_kind == "normal":
            raise ValueError(
                "net: the network has output='normal' (real values), which this discrete "
                f"distribution ({type(self).__name__}) does not model; use "
                "pyro_lgm.distributions.AutoregressiveNormalMap"
            )

    # -- structure ----------------------------------------------------------------------
    @property
    def output(self) -> str:
        return self.net.output_kind

    @property
    def levels(self) -> int:
        return self.net.levels

    @property
    def support(self) -> constraints.Constraint:
        if self.output == "bernoulli":
            return constraints.independent(constraints.boolean, 3)
        return constraints.independent(constraints.integer_interval(0, self.levels - 1), 3)

    # -- values -------------------------------------------------------------------------
    def _check_levels(self, value: torch.Tensor, name: str = "value") -> None:
        if value.dtype == torch.bool:
            return
        top = self.levels - 1
        bad = ~((value == value.round()) & (value >= 0) & (value <= top))
        if bool(bad.any()):
            what = "binary values in {0, 1}" if top == 1 else f"integer levels in [0, {top}]"
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NonFiniteValueError(f"{name}: expected {what}, got {_describe(value)}")
            raise ValueError(f"{name}: expected {what}, got {value[bad].flatten()[0].item()!r}")

    def _prepare(self, value: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Size]:
        shape = self._check_values(value)
        if self._validate_args:
            self._check_levels(value)
        x = value.to(self._dtype).expand(shape + self.event_shape).reshape(-1, *self.event_shape)
        return x, self._context_flat(shape), shape

    # -- conditionals -------------------------------------------------------------------
    def _split_mixture(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        """Per-pixel mixtures (batch ``(..., H, W)`` or ``(...)``) from ``(..., P, [H, W])``
        parameters laid out as ``[logits K | loc C K | log_scale C K | coeffs C(C-1)/2 K]``."""
        c, k = self.event_shape[0], self.net.num_mixtures
        spatial = params.dim() == 4
        p = params.movedim(1, -1) if spatial else params  # (..., P)
        lead = p.shape[:-1]
        logits = p[..., :k]
        loc = p[..., k : k + c * k].reshape(*lead, c, k)
        log_scale = p[..., k + c * k : k + 2 * c * k].reshape(*lead, c, k)
        coeffs = None
        if c > 1:
            coeffs = torch.tanh(p[..., k + 2 * c * k :]).reshape(*lead, c * (c - 1) // 2, k)
        return DiscretizedLogisticMixture(
            logits, loc, log_scale, coeffs, bits=self.net.bits, validate_args=False
        )

    def _conditionals_of(
        self, params: torch.Tensor, x: torch.Tensor, shape: torch.Size
    ) -> dist.TorchDistribution:
        """Per-element conditionals, batch ``shape + (C, H, W)``, from the parameters and
        values of ``N = prod(shape)`` flattened images."""
        n, c, h, w = x.shape
        kind = self.output
        if kind == "bernoulli":
            return dist.Bernoulli(logits=params.reshape(shape + (c, h, w)), validate_args=False)
        if kind == "categorical":
            logits = params.reshape(n, c, self.levels, h, w).movedim(2, -1)
            return dist.Categorical(
                logits=logits.reshape(shape + logits.shape[1:]), validate_args=False
            )
        pixel = self._split_mixture(params)  # batch (N, H, W), event (C,)
        per = pixel.channel_conditionals(x.movedim(1, -1))  # batch (N, H, W, C)

        def arrange(t: torch.Tensor) -> torch.Tensor:  # (N, H, W, C, K) -> shape + (C, H, W, K)
            t = t.movedim(-2, 1)
            return t.reshape(shape + t.shape[1:])

        return DiscretizedLogisticMixture(
            arrange(per.logits),
            arrange(per.loc),
            arrange(per.log_scale),
            bits=self.net.bits,
            validate_args=False,
        )

    def conditionals(self, value: torch.Tensor) -> dist.TorchDistribution:
        r"""The conditionals :math:`p(x_{c,i,j} \mid \text{earlier elements})` given ``value``.

        Returns a distribution with batch shape ``(..., C, H, W)`` (``...`` the broadcast of
        ``value``'s and this distribution's batch shapes) and event shape ``()`` whose
        ``log_prob(value)`` summed over the last three dimensions is ``log_prob(value)``.
        """
        x, context, shape = self._prepare(value)
        return self._conditionals_of(self.net(x, context), x, shape)

    def conditional_params(self, value: torch.Tensor) -> torch.Tensor:
        """The parameters of every conditional, ``(..., C, H, W, P)``: the Bernoulli logit,
        the categorical logits, or the one-channel mixture's ``[logits | loc | log_scale]``
        (after the channel dependence). Differentiable in a floating ``value``, so
        :func:`pyro_lgm.testing.assert_autoregressive` can check the model through it."""
        x, context, shape = self._prepare(value)
        d = self._conditionals_of(self.net(x, context), x, shape)
        if self.output == "bernoulli":
            return d.logits[..., None]
        if self.output == "categorical":
            return d.logits
        return torch.cat([d.logits, d.loc, d.log_scale], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x, context, shape = self._prepare(value)
        params = self.net(x, context)
        if self.output == "logistic_mixture":
            lp = self._split_mixture(params).log_prob(x.movedim(1, -1)).sum((-2, -1))
        else:
            target = x.long() if self.output == "categorical" else x
            flat = torch.Size([x.shape[0]])
            lp = self._conditionals_of(params, x, flat).log_prob(target).sum((-3, -2, -1))
        return lp.reshape(shape)

    # -- generation ---------------------------------------------------------------------
    def _element_log_pmf(self, params: torch.Tensor, pixel: torch.Tensor, c: int) -> torch.Tensor:
        """``(B, levels)`` log-probabilities of channel ``c`` of one pixel.

        ``params``: ``(B, P)`` the network's output at the pixel; ``pixel``: ``(B, C)`` its
        values so far (channels ``< c`` set).
        """
        kind = self.output
        if kind == "bernoulli":
            logit = params[:, c]
            return torch.stack(
                [-torch.nn.functional.softplus(logit), -torch.nn.functional.softplus(-logit)], -1
            )
        if kind == "categorical":
            lv = self.levels
            return torch.log_softmax(params[:, c * lv : (c + 1) * lv], -1)
        per = self._split_mixture(params).channel_conditionals(pixel)  # batch (B, C)
        grid = torch.arange(self.levels, dtype=params.dtype, device=params.device)
        lp = per.log_prob(grid[:, None, None].expand(-1, *per.batch_shape))  # (L, B, C)
        return lp[:, :, c].transpose(0, 1)

    def _draw(self, log_pmf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return inverse_cdf(log_pmf, u)

    def sample(
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
        *,
        observed: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        method: str = "cached",
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        r"""Images in raster and channel order; with ``observed`` and ``mask``, completions.

        Args:
            sample_shape: leading shape of the samples.
            observed: ``(..., C, H, W)`` values; with ``mask`` the elements where ``mask``
                is true are copied from it and the others are drawn. The batch of the
                result is ``batch_shape`` broadcast with ``observed``'s and ``mask``'s.
                Each drawn element is conditioned on every element before it (observed or
                drawn), not on observed elements after it: the model's conditionals
                :math:`p(x_t \mid x_{<t})`, PixelCNN's image completion.
            mask: bool, broadcastable to ``observed`` (``(..., 1, H, W)`` masks whole
                pixels); required with ``observed``.
            method: ``"cached"`` (incremental generation) or ``"naive"`` (a full pass per
                element); both consume the random stream identically.
            generator: the ``torch.Generator`` of the uniforms (default: the global one).
            progress: print a progress bar on stderr.

        Returns:
            ``sample_shape + batch + (C, H, W)`` levels as floats of the network's dtype.
        """
        if method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
        batch = self.batch_shape
        fill = _Fill(generator, bool(progress))
        if (observed is None) != (mask is None):
            raise ValueError("observed, mask: give both (completion) or neither (sampling)")
        if observed is not None:
            batch = self._completion_batch(observed, mask)
        shape = _shape(sample_shape, "sample_shape") + batch
        n = math.prod(shape)
        if observed is not None:
            fill.observed, fill.mask = self._completion_inputs(observed, mask, shape)
        context = self._context_flat(shape)
        with torch.no_grad():
            if method == "cached":
                x = self._sample_cached(n, context, fill)
            else:
                x = self._sample_naive(n, context, fill)
        return x.reshape(shape + self.event_shape)

    def _completion_batch(self, observed: torch.Tensor, mask: Any) -> torch.Size:
        """The batch of a completion: ``batch_shape`` broadcast with those of ``observed``
        and ``mask``."""
        batch = self._check_values(observed, "observed")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask: expected a bool tensor, got {getattr(mask, 'dtype', type(mask))}"
            )
        if mask.device != self._device:
            raise ValueError(f"mask: expected a tensor on {self._device}, got {mask.device}")
        try:
            torch.broadcast_shapes(mask.shape, torch.Size(self.event_shape))
            return torch.broadcast_shapes(batch, mask.shape[:-3])
        except RuntimeError:
            raise ValueError(
                f"mask: shape {tuple(mask.shape)} does not broadcast with observed "
                f"{tuple(observed.shape)} and the event shape {tuple(self.event_shape)}"
            ) from None

    def _completion_inputs(
        self, observed: torch.Tensor, mask: torch.Tensor, shape: torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        full = shape + self.event_shape
        try:
            obs = observed.expand(full)
            keep = mask.expand(full)
        except RuntimeError:
            raise ValueError(
                f"observed, mask: shapes {tuple(observed.shape)} and {tuple(mask.shape)} do not "
                f"broadcast to {tuple(full)} (sample_shape + batch_shape + event_shape)"
            ) from None
        self._check_levels(torch.where(keep, obs, torch.zeros_like(obs)), "observed")
        c = self.event_shape[0]
        obs = obs.to(self._dtype).reshape(-1, c, full[-2] * full[-1])
        return obs, keep.reshape(-1, c, full[-2] * full[-1])

    def _uniforms(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=self._dtype, device=self._device)

    def _sample_naive(self, n: int, context: Any, fill: _Fill) -> torch.Tensor:
        c, h, w = self.event_shape
        x = torch.zeros(n, c, h, w, dtype=self._dtype, device=self._device)
        flat = x.view(n, c, h * w)
        with _Bar(fill.progress, c * h * w, "naive") as bar:
            for p in range(h * w):
                for ch in range(c):
                    u = self._uniforms(n, fill.generator)
                    params = self.net(x, context)[:, :, p // w, p % w]
                    self._set(flat, params, ch, p, u, fill)
                    bar.update()
        return x

    def _sample_cached(self, n: int, context: Any, fill: _Fill) -> torch.Tensor:
        c, h, w = self.event_shape
        session = self.net.incremental(n, context)
        x = session.x  # (n, C, H W): the image being generated, read by the session
        with _Bar(fill.progress, c * h * w, "cached") as bar:
            for p in range(h * w):
                for ch in range(c):
                    u = self._uniforms(n, fill.generator)
                    params = session.step(p * c + ch)
                    self._set(x, params, ch, p, u, fill)
                    bar.update()
        return x.reshape(n, c, h, w)

    def _set(
        self,
        flat: torch.Tensor,
        params: torch.Tensor,
        ch: int,
        p: int,
        u: torch.Tensor,
        fill: _Fill,
    ) -> None:
        """Draw channel ``ch`` of pixel ``p`` (or copy it from ``fill.observed``)."""
        value = self._draw(self._element_log_pmf(params, flat[:, :, p], ch), u)
        if fill.observed is not None:
            value = torch.where(fill.mask[:, ch, p], fill.observed[:, ch, p], value)
        flat[:, ch, p] = value


def inverse_cdf(log_pmf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(B,)`` levels drawn from ``(B, levels)`` log-probabilities by the inverse CDF of
    uniforms ``u`` ``(B,)``: the smallest level whose cumulative probability exceeds ``u``
    (the one draw per element that makes cached and naive generation agree)."""
    cdf = torch.softmax(log_pmf, -1).cumsum(-1)
    idx = (cdf < u[:, None] * cdf[:, -1:]).sum(-1)
    return idx.clamp_(max=log_pmf.shape[-1] - 1).to(log_pmf.dtype)


@dataclass
class _Fill:
    """How to generate: the uniforms' generator, a progress bar, and for completion the
    observed values and mask ``(N, C, H W)``."""

    generator: torch.Generator | None
    progress: bool
    observed: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class _Bar:
    """A plain stderr progress bar (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, what: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"sampling ({what})", unit="el", leave=False)

    def __enter__(self) -> _Bar:
        return self

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


class PixelCNN(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.PixelCNN` network (van den Oord et al., 2016a).

    .. math::
        p(x) = \prod_{i,j} \prod_{c} p(x_{c,i,j} \mid x_{<(i,j)}, x_{<c,(i,j)}),

    each factor read from one masked-convolution pass. The receptive field has the blind
    spot of stacked masked kernels; :class:`GatedPixelCNN` has none.

    References:
        A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. *Pixel Recurrent Neural Networks*.
        ICML 2016.

    Args:
        net: the network.
        context: the condition when the network is conditional: class labels ``(...)``,
            vectors ``(..., D)`` or feature maps ``(..., C_h, h, w)``; ``...`` is the batch.
        validate_args: check values against the support.

    Shapes: ``event_shape == (C, H, W)``; values are ``{0, 1}`` (Bernoulli) or integer
    levels ``0 .. 2^bits - 1`` of any real dtype.

    Example:
        >>> from pyro_lgm.nn import PixelCNN as PixelCNNNet
        >>> d = PixelCNN(PixelCNNNet((1, 4, 4), hidden_channels=4, num_layers=1))
        >>> x = d.sample((2,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([2, 1, 4, 4]), torch.Size([2]))
    """

    _net_types = (PixelCNNNet,)


class GatedPixelCNN(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.GatedPixelCNN` (van den Oord et al., 2016b).

    The same factorization as :class:`PixelCNN` without a blind spot; the condition (a
    class label, a vector or a feature map) enters every gate.

    References:
        A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves,
        K. Kavukcuoglu. *Conditional Image Generation with PixelCNN Decoders*. NeurIPS 2016.

    Args:
        net: the network.
        context: as :class:`PixelCNN`.
        validate_args: check values against the support.

    Example:
        >>> from pyro_lgm.nn import GatedPixelCNN as Net
        >>> d = GatedPixelCNN(Net((1, 4, 4), 4, 2, num_classes=3), torch.tensor([0, 2]))
        >>> d.batch_shape, d.sample().shape
        (torch.Size([2]), torch.Size([2, 1, 4, 4]))
    """

    _net_types = (GatedPixelCNNNet,)


class PixelCNNPP(ImageAutoregressive):
    r"""The distribution of a :class:`pyro_lgm.nn.PixelCNNPP` (Salimans et al., 2017).

    Each pixel is a discretized logistic mixture
    (:class:`pyro_lgm.distributions.DiscretizedLogisticMixture`) whose parameters come from
    the earlier pixels; inside the pixel, G depends linearly on R and B on R and G.

    References:
        T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. *PixelCNN++: Improving the PixelCNN
        with Discretized Logistic Mixture Likelihood and Other Modifications*. ICLR 2017.

    Args:
        net: the network.
        context: as :class:`PixelCNN`.
        validate_args: check values against the support.

    Example:
        >>> from pyro_lgm.nn import PixelCNNPP as Net
        >>> d = PixelCNNPP(Net((3, 4, 4), hidden_channels=4, num_resnets=1, num_mixtures=2))
        >>> d.conditionals(d.sample((2,))).batch_shape
        torch.Size([2, 3, 4, 4])
    """

    _net_types = (PixelCNNPPNet,)
