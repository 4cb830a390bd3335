r"""The discretized logistic mixture: the pixel likelihood of PixelCNN++.

An ``n``-bit pixel value :math:`v \in \{0, \dots, N\}`, :math:`N = 2^n - 1`, is placed on
the :math:`[-1, 1]` scale at :math:`x_v = 2v / N - 1`, the centre of a bin of half-width
:math:`h = 1 / N`, and gets the mass that a logistic :math:`L(\mu, s)` puts on that bin;
the two edge bins take the tails:

.. math::
    P(v \mid \mu, s) = \begin{cases}
        \sigma\big((x_v + h - \mu) / s\big) & v = 0, \\
        \sigma\big((x_v + h - \mu) / s\big) - \sigma\big((x_v - h - \mu) / s\big)
            & 0 < v < N, \\
        1 - \sigma\big((x_v - h - \mu) / s\big) & v = N,
    \end{cases}

and a mixture of ``K`` such components models one pixel (Salimans et al., 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import Categorical, constraints

from pyro_lgm.errors import NonFiniteValueError, _describe, check_finite

__all__ = ["DiscretizedLogisticMixture"]

_LN2 = math.log(2.0)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(1 - e^{-d})` for :math:`d > 0`, accurate for small and large ``d``
    (Maechler, 2012). Both branches see only arguments they are finite on, so the gradient
    of the branch that ``where`` drops is finite too."""
    small = d < _LN2
    d_small = torch.where(small, d, _LN2)
    d_large = torch.where(small, _LN2, d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)), torch.log1p(-torch.exp(-d_large)))


def _pair_index(earlier: int, later: int, channels: int) -> int:
    """Row of ``coeffs`` for the pair ``(earlier, later)``, pairs in lexicographic order."""
    return earlier * (2 * channels - earlier - 1) // 2 + (later - earlier - 1)


def _bin_log_prob(
    value: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, bits: int
) -> torch.Tensor:
    """``log P(value | loc, log_scale)`` per component: ``value (...)`` against ``(..., K)``.

    ``log_scale`` is already clamped. See :class:`DiscretizedLogisticMixture` (Numerics).
    """
    n = 2**bits - 1
    v = value.unsqueeze(-1)
    inv_s = torch.exp(-log_scale)
    # Bin edges as (odd integer) / N: the upper edge of bin v and the lower edge of bin
    # v + 1 are the same integer, hence the same float.
    lower = (2 * v - (n + 1)) / n
    upper = (2 * v - (n - 1)) / n
    a = (lower - loc) * inv_s
    b = (upper - loc) * inv_s
    # the standardized bin width from the scale, not as b - a (which cancels)
    width = (2.0 / n) * inv_s
    resolved = width >= torch.finfo(width.dtype).tiny
    safe_width = torch.where(resolved, width, 1.0)
    # sigma(b) - sigma(a) = sigma(b) sigma(-a) (1 - exp(-(b - a))): no cancellation
    inner = F.logsigmoid(b) + F.logsigmoid(-a) + _log1mexp(safe_width)
    # where the width underflows: the density at the centre times the width, in log space
    mid = (v * (2.0 / n) - 1.0 - loc) * inv_s
    tiny_bin = F.logsigmoid(mid) + F.logsigmoid(-mid) - log_scale + math.log(2.0 / n)
    inner = torch.where(resolved, inner, tiny_bin)
    return torch.where(v <= 0, F.logsigmoid(b), torch.where(v >= n, F.logsigmoid(-a), inner))


def _sample_bins(loc: torch.Tensor, log_scale: torch.Tensor, bits: int) -> torch.Tensor:
    """One value per element: the bin holding a draw of the logistic ``L(loc, exp(log_scale))``."""
    n = 2**bits - 1
    u = torch.rand(loc.shape, dtype=loc.dtype, device=loc.device)
    y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return torch.round((y + 1.0) * (n / 2.0)).clamp(0, n)


class DiscretizedLogisticMixture(TorchDistribution):
    r"""A mixture of ``K`` discretized logistics over ``n``-bit pixel values.

    .. math::
        p(v) = \sum_{k=1}^{K} \pi_k \, P(v \mid \mu_k, s_k), \qquad
        \pi = \operatorname{softmax}(\text{logits}), \quad s_k = e^{\text{log\_scale}_k},

    with :math:`P` the discretized logistic of the module docstring: the logistic lives on
    the :math:`[-1, 1]` scale, value ``v`` is the bin centred at :math:`x_v = 2v/N - 1` of
    half-width :math:`1/N` (:math:`N = 2^n - 1`, ``n = bits``), and the bins at ``0`` and
    ``N`` take the tails, so the ``2^n`` masses sum to one whatever :math:`\mu` and
    :math:`s`.

    **Scalar form** (``coeffs=None``; ``logits``, ``loc``, ``log_scale`` all ``(..., K)``):
    one value per batch element, ``event_shape == ()``.

    **Channel form** (``loc`` and ``log_scale`` ``(..., C, K)``): the ``C`` channels of one
    pixel share the mixture component (as in PixelCNN++), and within component ``k`` the
    mean of channel ``c`` depends linearly on the channels before it,

    .. math::
        p(x) = \sum_k \pi_k \prod_{c=0}^{C-1} P\big(x_c \mid \mu_{c,k}(x_{<c}), s_{c,k}\big),
        \qquad
        \mu_{c,k} = \text{loc}_{c,k} + \sum_{c' < c} \text{coeffs}_{(c', c), k}\,
        \Big(\frac{2 x_{c'}}{N} - 1\Big),

    the earlier values rescaled to :math:`[-1, 1]`. The pairs :math:`(c', c)`, :math:`c' <
    c`, index the rows of ``coeffs`` in lexicographic order: for ``C = 3`` row 0 is
    ``(0, 1)`` (G on R), row 1 ``(0, 2)`` (B on R), row 2 ``(1, 2)`` (B on G), as in
    PixelCNN++; ``coeffs=None`` makes the channels independent given the component.
    ``event_shape == (C,)``. :meth:`channel_conditionals` gives every
    :math:`p(x_c \mid x_{<c})` as a scalar-form mixture.

    **Which form**: read from the ranks. ``loc`` and ``log_scale`` with the rank of
    ``logits`` give the scalar form; one more dimension (``C``, second to last) gives the
    channel form. Parameters broadcast over their batch dimensions, so in the scalar form a
    parameter shared across the batch must still be given with the full rank (``expand``
    it).

    **Numerics.** ``log_scale`` is clamped from below at :attr:`LOG_SCALE_MIN` ``= -16``
    (its gradient is zero there). :math:`e^{-16} \approx 1.1 \times 10^{-7}` is about
    float32's spacing at ``±1`` (``2^-23``), below which the logistic is narrower than
    the positions float32 can resolve; even a 16-bit bin is then 270 scales wide, a point
    mass. It bounds
    :math:`1/s` so the standardized edges cannot overflow for any :math:`|\mu| < 10^{31}`.
    (PixelCNN++ clamps at ``-7``, which in 8 bits already caps a bin's mass at 0.97; a
    network that wants that bound for its training puts it on its own output, for example
    with :func:`pyro_lgm.nn.nade.bounded_log_scale`.) No upper clamp is needed.

    An interior bin is evaluated in log space as

    .. math::
        \log\big(\sigma(b) - \sigma(a)\big) = \log\sigma(b) + \log\sigma(-a)
            + \log\big(1 - e^{-w}\big), \qquad w = b - a = \frac{2}{N s},

    with :math:`a, b` the standardized edges :math:`(x_v \mp 1/N - \mu)/s` and :math:`w`
    the standardized width taken from the scale (exact) rather than as ``b - a`` (which
    cancels). No term cancels, so no bin underflows to zero or loses digits in any regime
    (far tails, tiny and huge scales, means far outside ``[-1, 1]``); the edge bins are
    :math:`\log\sigma(b)` and :math:`\log\sigma(-a)`. The edges are computed as
    ``m / N`` from the integer ``m = 2v ± 1 - N``, so the upper edge of bin ``v`` and the
    lower edge of bin ``v + 1`` are the same float: rounding an edge moves mass between
    two neighbours instead of creating or losing it, which keeps the total at one even
    where the rounding of ``(x - mu) / s`` is large against a bin (tiny scales, 16 bits).

    PixelCNN++'s small-probability fallback, the density at the bin centre times the bin
    width (:math:`\log p_L(\text{mid}) + \log(2/N)`, computed in log space), is used
    **only where the exact form underflows**: where :math:`w` is below the smallest
    normal number of the dtype (``log_scale`` above about 82 in float32, 703 in float64).
    There the bin is so narrow against the scale that the fallback is exact to
    :math:`w^2/24` relative. (PixelCNN++ falls back when the difference of sigmoids is
    below ``1e-5``; the form above does not need that, and a fallback in ordinary regimes
    would break the normalization.)

    Measured :math:`|\log \sum_v p(v)|` (all ``2^n`` values): over
    :math:`\mu \in \{\pm 20, \pm 1, 0, 0.37\}`, ``log_scale`` in ``{-30, -16, -15, -12,
    -7, -3, 0, 3, 5}``, ``K`` of 1 and 5, flat and peaked weights, 8 bits: at most
    ``2.5e-7`` in float32 and ``1.1e-15`` in float64; 1 to 3 and 16 bits: ``8.2e-6``
    (16 bits, ``log_scale = -7``) and ``3.6e-15``; :math:`|\mu|` up to ``1e5`` with
    ``log_scale`` up to 200 (fallback included): ``1.3e-7`` and ``8.9e-16``; the channel
    form (``C = 3``, 2 and 3 bits, random coefficients): ``1.4e-7`` and ``4.4e-16``. A
    single log-mass is accurate to about :math:`u\,((1 + |\mu|)/s + 1 + |\log P|)` (``u``
    the unit roundoff; the first term is the rounding of the edges on the scale of
    :math:`s`).

    ``sample`` draws the component (once per pixel in the channel form), then each channel
    in order by the inverse CDF of its logistic, :math:`y = \mu + s\,\operatorname{logit}(u)`,
    and returns the bin holding ``y`` (:math:`\operatorname{round}((y + 1) N / 2)`, clipped
    to ``[0, N]``): exact sampling from the discretized pmf. There is no ``rsample``.

    References:
        T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. *PixelCNN++: Improving the
        PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications*.
        ICLR 2017.

        M. Maechler. *Accurately Computing log(1 - exp(-|a|))*. R package Rmpfr, 2012.

    Args:
        logits: ``(..., K)`` unnormalized mixture log-weights.
        loc: component means on the ``[-1, 1]`` scale, ``(..., K)`` (scalar form) or
            ``(..., C, K)`` (channel form).
        log_scale: component log-scales, the shape of ``loc``; values below
            :attr:`LOG_SCALE_MIN` count as :attr:`LOG_SCALE_MIN`.
        coeffs: channel form only: ``(..., C (C - 1) / 2, K)`` linear dependences of a
            channel's mean on the earlier channels, or ``None`` (independent channels).
        bits: ``n``, an integer in ``1..16``: values are ``0 .. 2^n - 1``.
        validate_args: check parameters for NaN and infinities at construction and values
            against the support (default: the global validation switch). Shape, dtype and
            device checks are always on.

    Shapes:
        ``batch_shape`` is the broadcast of the parameters' batch dimensions (``(...)``
        above). ``log_prob`` takes values ``(..., )`` (scalar form) or ``(..., C)``
        (channel form) holding integers in any real dtype, broadcasting with the batch;
        ``sample`` returns floats holding integers, in the parameters' dtype.

    Example:
        >>> import torch
        >>> d = DiscretizedLogisticMixture(
        ...     torch.zeros(4, 2), torch.zeros(4, 3, 2), torch.full((4, 3, 2), -2.0),
        ...     coeffs=torch.full((4, 3, 2), 0.5), bits=8)
        >>> d.batch_shape, d.event_shape
        (torch.Size([4]), torch.Size([3]))
        >>> x = d.sample((5,))
        >>> x.shape, bool(((x >= 0) & (x <= 255) & (x == x.round())).all())
        (torch.Size([5, 4, 3]), True)
        >>> cond = d.channel_conditionals(x)  # scalar form, batch (5, 4, 3)
        >>> torch.allclose(cond.log_prob(x).sum(-1), d.log_prob(x))
        True
    """

    #: lower clamp of ``log_scale`` (see Numerics)
    LOG_SCALE_MIN: float = -16.0
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        coeffs: torch.Tensor | None = None,
        bits: int = 8,
        validate_args: bool | None = None,
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits: expected an integer in 1..16, got {bits!r}")
        named = {"logits": logits, "loc": loc, "log_scale": log_scale}
        if coeffs is not None:
            named["coeffs"] = coeffs
        for name, t in named.items():
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                got = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name}: expected a floating-point tensor, got {got}")
            if t.dtype != logits.dtype or t.device != logits.device:
                raise ValueError(
                    f"{name}: expected dtype {logits.dtype} on {logits.device} (the dtype and "
                    f"device of logits), got {t.dtype} on {t.device}"
                )
        if logits.dim() < 1 or logits.shape[-1] < 1:
            raise ValueError(f"logits: expected shape (..., K), K >= 1, got {tuple(logits.shape)}")
        k = logits.shape[-1]
        r = logits.dim()
        if loc.dim() == r:
            channels = None
            inner: tuple[int, ...] = (k,)
            want = "(..., K)"
        elif loc.dim() == r + 1:
            channels = loc.shape[-2]
            inner = (channels, k)
            want = "(..., C, K)"
        else:
            raise ValueError(
                f"loc: expected rank {r} (scalar form, (..., K)) or {r + 1} (channel form, "
                f"(..., C, K)) to go with logits of shape {tuple(logits.shape)}, got shape "
                f"{tuple(loc.shape)}"
            )
        if loc.shape[-1] != k:
            raise ValueError(
                f"loc: expected {k} components (the last dimension of logits), got shape "
                f"{tuple(loc.shape)}"
            )
        if channels is not None and channels < 1:
            raise ValueError(f"loc: expected at least one channel, got shape {tuple(loc.shape)}")
        if log_scale.dim() != loc.dim() or tuple(log_scale.shape[-len(inner) :]) != inner:
            raise ValueError(
                f"log_scale: expected shape {want} with trailing {inner} like loc, got "
                f"{tuple(log_scale.shape)}"
            )
        if coeffs is not None:
            if channels is None:
                raise ValueError(
                    "coeffs: only the channel form (loc of shape (..., C, K)) takes "
                    "coefficients; pass coeffs=None in the scalar form"
                )
            pairs = channels * (channels - 1) // 2
            if coeffs.dim() != loc.dim() or tuple(coeffs.shape[-2:]) != (pairs, k):
                raise ValueError(
                    f"coeffs: expected shape (..., C(C-1)/2, K) = (..., {pairs}, {k}) for "
                    f"C={channels}, K={k}, got {tuple(coeffs.shape)}"
                )
        shapes = {
            "logits": logits.shape[:-1],
            "loc": loc.shape[: loc.dim() - len(inner)],
            "log_scale": log_scale.shape[: loc.dim() - len(inner)],
        }
        if coeffs is not None:
            shapes["coeffs"] = coeffs.shape[:-2]
        batch_shape = torch.Size()
        for name, shape in shapes.items():
            try:
                batch_shape = torch.broadcast_shapes(batch_shape, shape)
            except RuntimeError:
                raise ValueError(
                    f"{name}: batch dimensions {tuple(shape)} do not broadcast with "
                    f"{tuple(batch_shape)} (the other parameters')"
                ) from None
        validate = self._validate_args if validate_args is None else bool(validate_args)
        if validate:
            for name, t in named.items():
                check_finite(name, t, always=True)
        self.bits = bits
        self.logits = logits.expand(batch_shape + (k,))
        self.loc = loc.expand(batch_shape + inner)
        self.log_scale = log_scale.expand(batch_shape + inner)
        self.coeffs = None if coeffs is None else coeffs.expand(batch_shape + coeffs.shape[-2:])
        event_shape = torch.Size() if channels is None else torch.Size((channels,))
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    # -- properties -------------------------------------------------------------------
    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        out = {
            "logits": constraints.real_vector,
            "loc": constraints.real,
            "log_scale": constraints.real,
        }
        if self.coeffs is not None:
            out["coeffs"] = constraints.real
        return out

    @property
    def support(self) -> constraints.Constraint:
        values = constraints.integer_interval(0, 2**self.bits - 1)
        return values if self.channels is None else constraints.independent(values, 1)

    @property
    def channels(self) -> int | None:
        """``C`` in the channel form, ``None`` in the scalar form."""
        return self.event_shape[0] if self.event_shape else None

    @property
    def num_components(self) -> int:
        """``K``, the number of mixture components."""
        return self.logits.shape[-1]

    @property
    def num_values(self) -> int:
        """``2 ** bits``, the number of values of one pixel (channel)."""
        return 2**self.bits

    # -- batch ------------------------------------------------------------------------
    def expand(
        self, batch_shape: torch.Size, _instance: object = None
    ) -> DiscretizedLogisticMixture:
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        inner = self.event_shape + (self.num_components,)
        try:
            new.logits = self.logits.expand(batch_shape + (self.num_components,))
            new.loc = self.loc.expand(batch_shape + inner)
            new.log_scale = self.log_scale.expand(batch_shape + inner)
            new.coeffs = (
                None
                if self.coeffs is None
                else self.coeffs.expand(batch_shape + self.coeffs.shape[-2:])
            )
        except RuntimeError:
            raise ValueError(
                f"batch_shape: cannot expand batch shape {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}"
            ) from None
        new.bits = self.bits
        super(DiscretizedLogisticMixture, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # -- values -----------------------------------------------------------------------
    def _prepare(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """Check ``value``; return it in the parameters' dtype and the output shape."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"value: expected a tensor, got {type(value).__name__}")
        if value.is_complex():
            raise ValueError(f"value: expected a real tensor, got dtype {value.dtype}")
        c = self.channels
        if c is not None and (value.dim() < 1 or value.shape[-1] != c):
            raise ValueError(f"value: expected shape (..., {c}), got {tuple(value.shape)}")
        if value.device != self.logits.device:
            raise ValueError(
                f"value: expected a tensor on {self.logits.device}, got {value.device}"
            )
        vbatch = value.shape if c is None else value.shape[:-1]
        try:
            shape = torch.broadcast_shapes(vbatch, self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: batch shape {tuple(vbatch)} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None
        if self._validate_args:
            self._check_support(value)
        return value.to(self.logits.dtype), shape

    def _check_support(self, value: torch.Tensor) -> None:
        n = 2**self.bits - 1
        v = value.double()
        bad = ~((v == v.round()) & (v >= 0) & (v <= n))
        if bool(bad.any()):
            expected = f"value: expected integer pixel values in [0, {n}] (bits={self.bits})"
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NonFiniteValueError(f"{expected}, got {_describe(value)}")
            raise ValueError(f"{expected}, got {v[bad].flatten()[0].item()!r}")

    def _log_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(min=self.LOG_SCALE_MIN)

    def _channel_means(self, value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``(*shape, C, K)`` component means of every channel given the earlier ones."""
        c, n = self.channels, 2**self.bits - 1
        full = shape + (self.num_components,)
        if self.coeffs is None:
            return self.loc.expand(shape + self.loc.shape[-2:])
        xs = value * (2.0 / n) - 1.0
        means = []
        for j in range(c):
            mu = self.loc[..., j, :]
            for i in range(j):  # separate mul and add: the same roundings for every value
                mu = mu + self.coeffs[..., _pair_index(i, j, c), :] * xs[..., i, None]
            means.append(mu.expand(full))
        return torch.stack(means, -2)

    def _component_log_probs(
        self, value: torch.Tensor, shape: torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel, per-component ``log P`` ``(*shape, C, K)`` and the means used."""
        mu = self._channel_means(value, shape)
        log_scale = self._log_scale().expand(mu.shape)
        return _bin_log_prob(value.expand(shape + value.shape[-1:]), mu, log_scale, self.bits), mu

    # -- public API -------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value, shape = self._prepare(value)
        log_w = torch.log_softmax(self.logits, -1)
        if self.channels is None:
            lp = _bin_log_prob(value, self.loc, self._log_scale(), self.bits)
            return torch.logsumexp(log_w + lp, -1).expand(shape)
        lp, _ = self._component_log_probs(value, shape)
        return torch.logsumexp(log_w + lp.sum(-2), -1)

    def channel_conditionals(self, value: torch.Tensor) -> DiscretizedLogisticMixture:
        r"""Every channel's conditional :math:`p(x_c \mid x_{<c})` given ``value``.

        The mixture weights are updated by Bayes' rule with the earlier channels,
        :math:`\log \pi_{k \mid <c} = \log \pi_k + \sum_{c' < c} \log P_k(x_{c'} \mid
        x_{<c'}) + \text{const}`, and the means are shifted by ``coeffs``; so
        ``channel_conditionals(x).log_prob(x).sum(-1) == log_prob(x)``.

        Args:
            value: ``(..., C)`` pixel values, broadcasting with the batch.

        Returns:
            a scalar-form mixture with batch shape ``(..., C)`` (``value``'s batch
            broadcast with this one's), entry ``c`` the conditional of channel ``c``.
        """
        if self.channels is None:
            raise ValueError(
                "channel_conditionals: only the channel form (loc of shape (..., C, K)) has "
                "channels; this mixture is in the scalar form"
            )
        value, shape = self._prepare(value)
        lp, mu = self._component_log_probs(value, shape)
        before = torch.cumsum(lp, -2) - lp  # sum over c' < c
        log_w = torch.log_softmax(self.logits, -1).unsqueeze(-2)
        out = DiscretizedLogisticMixture(
            log_w + before,
            mu,
            self.log_scale.expand(mu.shape),
            bits=self.bits,
            validate_args=False,
        )
        out._validate_args = self._validate_args
        return out

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            k = Categorical(logits=self.logits, validate_args=False).sample(sample_shape)
            if self.channels is None:
                idx = k.unsqueeze(-1)
                loc = self.loc.expand(shape + self.loc.shape[-1:]).gather(-1, idx)
                log_scale = self._log_scale().expand(loc.shape[:-1] + self.loc.shape[-1:])
                log_scale = log_scale.gather(-1, idx)
                return _sample_bins(loc, log_scale, self.bits).squeeze(-1)
            c, n = self.channels, 2**self.bits - 1
            inner = self.loc.shape[-2:]
            idx = k[..., None, None].expand(shape + (c, 1))
            loc = self.loc.expand(shape + inner).gather(-1, idx).squeeze(-1)
            log_scale = self._log_scale().expand(shape + inner).gather(-1, idx).squeeze(-1)
            coeffs = None
            if self.coeffs is not None:
                p = self.coeffs.shape[-2]
                cidx = k[..., None, None].expand(shape + (p, 1))
                coeffs = self.coeffs.expand(shape + self.coeffs.shape[-2:])
                coeffs = coeffs.gather(-1, cidx).squeeze(-1)
            xs, out = [], []
            for j in range(c):
                mu = loc[..., j]
                if coeffs is not None:
                    for i in range(j):
                        mu = mu + coeffs[..., _pair_index(i, j, c)] * xs[i]
                v = _sample_bins(mu, log_scale[..., j], self.bits)
                out.append(v)
                xs.append(v * (2.0 / n) - 1.0)
            return torch.stack(out, -1)
