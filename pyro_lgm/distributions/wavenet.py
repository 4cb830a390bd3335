r"""The WaveNet distribution over sequences of integer levels (van den Oord et al., 2016).

.. math::
    p(x_1, \dots, x_T \mid g, l) = \prod_{t=1}^{T} p(x_t \mid x_{<t}, g, l),

each conditional a softmax over :math:`2^{bits}` levels or a discretized logistic mixture
(:class:`pyro_lgm.distributions.DiscretizedLogisticMixture`, scalar form), its parameters
the column ``t`` of one causal pass of a :class:`pyro_lgm.nn.WaveNet`; ``g`` is the global
condition (a class label or a vector per sequence) and ``l`` the local one (a feature
sequence at a lower rate).

``log_prob`` is one parallel pass (teacher forcing). ``sample`` generates step by step,
cached (the fast algorithm of Paine et al., 2016: per-layer queues, ``O(layers)`` work per
sample) or naive (a full pass per sample); both draw one uniform per element from the same
stream and map it through the inverse CDF over the levels, so they give the same sequences
(up to a uniform within float rounding of a CDF step; exact in float64 in practice).

For the logistic-mixture output, :meth:`WaveNet.continuous_log_prob` scores *real*
sequences in ``[-1, 1]`` with the continuous (not discretized) logistic mixture, the
density that Parallel WaveNet's probability density distillation evaluates on the
student's samples (van den Oord et al., 2018); :meth:`WaveNet.as_continuous` wraps it as a
distribution.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_lgm.distributions.discretized_logistic import DiscretizedLogisticMixture
from pyro_lgm.distributions.nade import _expanded, _shape
from pyro_lgm.distributions.pixelcnn import _Bar, inverse_cdf
from pyro_lgm.errors import NonFiniteValueError, _describe
from pyro_lgm.nn.pixelcnn import _int
from pyro_lgm.nn.wavenet import WaveNet as WaveNetNet

__all__ = ["WaveNet"]

METHODS = ("cached", "naive")

# levels per chunk when the mixture's pmf is enumerated over 2^bits levels at one step
_CHUNK = 4096


class _Contexts:
    """Shared plumbing: the batch shape from the global and local contexts, expanding and
    flattening them."""

    def _init_contexts(self, net: WaveNetNet, length: int, g: Any, loc: Any) -> torch.Size:
        shapes = []
        if g is not None:
            if not isinstance(g, torch.Tensor):
                raise ValueError(f"global_context: expected a tensor, got {type(g).__name__}")
            if net.context_kind == "vector":
                if g.dim() < 1 or g.shape[-1] != net.global_dim:
                    raise ValueError(
                        f"global_context: expected shape (..., {net.global_dim}), got "
                        f"{tuple(g.shape)}"
                    )
                shapes.append(g.shape[:-1])
            elif net.context_kind == "class":
                shapes.append(g.shape)
            else:
                raise ValueError("global_context: this network takes no global condition")
        elif net.context_kind is not None:
            raise ValueError("global_context: this network needs a global condition")
        if loc is not None:
            if net.local_channels is None:
                raise ValueError("local_context: this network takes no local condition")
            if not isinstance(loc, torch.Tensor) or loc.dim() < 2:
                got = tuple(loc.shape) if isinstance(loc, torch.Tensor) else type(loc).__name__
                raise ValueError(f"local_context: expected (..., C_l, T_l), got {got}")
            u = net.local_upsample
            want = (net.local_channels, length // u)
            if length % u or tuple(loc.shape[-2:]) != want:
                raise ValueError(
                    f"local_context: expected shape (..., {want[0]}, {want[1]}) for length "
                    f"{length} and local_upsample {u}, got {tuple(loc.shape)}"
                )
            shapes.append(loc.shape[:-2])
        elif net.local_channels is not None:
            raise ValueError("local_context: this network needs a local condition")
        try:
            return torch.broadcast_shapes(*shapes) if shapes else torch.Size()
        except RuntimeError:
            raise ValueError(
                "global_context, local_context: batch shapes do not broadcast"
            ) from None

    def _flat_contexts(self, shape: torch.Size) -> tuple[Any, Any]:
        g, loc = self.global_context, self.local_context
        if g is not None:
            tail = g.shape[g.dim() - (1 if self.net.context_kind == "vector" else 0) :]
            g = g.expand(shape + tail).reshape(-1, *tail)
        if loc is not None:
            loc = loc.expand(shape + loc.shape[-2:]).reshape(-1, *loc.shape[-2:])
        return g, loc

    def _check_values(self, value: Any, name: str = "value") -> torch.Size:
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(value).__name__}")
        t = self.length
        if value.dim() < 1 or value.shape[-1] != t:
            raise ValueError(f"{name}: expected shape (..., {t}), got {tuple(value.shape)}")
        if value.device != self._device:
            raise ValueError(f"{name}: expected a tensor on {self._device}, got {value.device}")
        if value.is_complex():
            raise ValueError(f"{name}: expected a real tensor, got dtype {value.dtype}")
        try:
            return torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"{name}: batch shape {tuple(value.shape[:-1])} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None


class WaveNet(_Contexts, TorchDistribution):
    r"""The distribution of a :class:`pyro_lgm.nn.WaveNet` over sequences of ``length``
    integer levels ``0 .. 2^bits - 1``.

    References:
        A. van den Oord et al. *WaveNet: A Generative Model for Raw Audio*.
        arXiv:1609.03499, 2016.

        T. L. Paine et al. *Fast Wavenet Generation Algorithm*. arXiv:1611.09482, 2016.

        A. van den Oord et al. *Parallel WaveNet: Fast High-Fidelity Speech Synthesis*.
        ICML 2018.

    Args:
        net: the network.
        length: ``T``, the number of steps.
        global_context: class labels ``(...)`` or vectors ``(..., G)`` (``...`` the batch).
        local_context: features ``(..., C_l, T / local_upsample)``.
        validate_args: check values against the support.

    Shapes: ``event_shape == (T,)``; ``batch_shape`` is the broadcast of the contexts'
    batch dimensions; values are integer levels in any real dtype.

    Example:
        >>> from pyro_lgm.nn import WaveNet as Net
        >>> d = WaveNet(Net(4, 4, 4, layers_per_stack=2, bits=3), length=8)
        >>> x = d.sample((2,))
        >>> x.shape, d.log_prob(x).shape, d.conditionals(x).batch_shape
        (torch.Size([2, 8]), torch.Size([2]), torch.Size([2, 8]))
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        net: WaveNetNet,
        length: int,
        global_context: Any = None,
        local_context: Any = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(net, WaveNetNet):
            hint = "; pass the model's network (model.net)" if hasattr(net, "net") else ""
            raise ValueError(f"net: expected a pyro_lgm.nn.WaveNet, got {type(net).__name__}{hint}")
        self.net = net
        self.length = _int("length", length, 1)
        batch_shape = self._init_contexts(net, self.length, global_context, local_context)
        self.global_context = global_context
        self.local_context = local_context
        param = next(net.parameters())
        self._dtype, self._device = param.dtype, param.device
        super().__init__(batch_shape, torch.Size((self.length,)), validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> WaveNet:
        new = _expanded(self, batch_shape, _instance)
        g, loc = self.global_context, self.local_context
        if g is not None:
            tail = g.shape[g.dim() - (1 if self.net.context_kind == "vector" else 0) :]
            new.global_context = g.expand(new.batch_shape + tail)
        if loc is not None:
            new.local_context = loc.expand(new.batch_shape + loc.shape[-2:])
        return new

    # -- structure ----------------------------------------------------------------------
    @property
    def output(self) -> str:
        return self.net.output_kind

    @property
    def levels(self) -> int:
        return self.net.levels

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.levels - 1), 1)

    # -- values -------------------------------------------------------------------------
    def _check_levels(self, value: torch.Tensor, name: str = "value") -> None:
        top = self.levels - 1
        bad = ~((value == value.round()) & (value >= 0) & (value <= top))
        if bool(bad.any()):
            what = f"integer levels in [0, {top}]"
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NonFiniteValueError(f"{name}: expected {what}, got {_describe(value)}")
            raise ValueError(f"{name}: expected {what}, got {value[bad].flatten()[0].item()!r}")

    def _prepare(self, value: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, Any], torch.Size]:
        shape = self._check_values(value)
        if self._validate_args:
            self._check_levels(value)
        x = value.to(self._dtype).expand(shape + self.event_shape).reshape(-1, self.length)
        return x, self._flat_contexts(shape), shape

    def _mixture(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        """Scalar-form mixtures from ``(..., 3K)`` parameters ``[logits | loc | log_scale]``."""
        k = self.net.num_mixtures
        return DiscretizedLogisticMixture(
            params[..., :k],
            params[..., k : 2 * k],
            params[..., 2 * k :],
            bits=self.net.bits,
            validate_args=False,
        )

    # -- conditionals -------------------------------------------------------------------
    def conditionals(self, value: torch.Tensor) -> dist.TorchDistribution:
        r"""The conditionals :math:`p(x_t \mid x_{<t})` given ``value``: a ``Categorical``
        or a scalar :class:`DiscretizedLogisticMixture` with batch shape ``(..., T)``, whose
        ``log_prob(value).sum(-1)`` is :meth:`log_prob`."""
        return self._conditionals_of(self.conditional_params(value))

    def _conditionals_of(self, params: torch.Tensor) -> dist.TorchDistribution:
        if self.output == "categorical":
            return dist.Categorical(logits=params, validate_args=False)
        return self._mixture(params)

    def conditional_params(self, value: torch.Tensor) -> torch.Tensor:
        """Every step's parameters, ``(..., T, P)``; differentiable in a floating ``value``
        (for :func:`pyro_lgm.testing.assert_autoregressive`)."""
        x, (g, loc), shape = self._prepare(value)
        params = self.net(x, g, loc).transpose(1, 2)  # (N, T, P)
        return params.reshape(shape + params.shape[1:])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x, (g, loc), shape = self._prepare(value)
        params = self.net(x, g, loc).transpose(1, 2)
        if self.output == "categorical":
            lp = torch.log_softmax(params, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
        else:
            lp = self._mixture(params).log_prob(x)
        return lp.sum(-1).reshape(shape)

    # -- the continuous density (Parallel WaveNet) ----------------------------------------
    def continuous_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""The log-density of *real* sequences ``x`` ``(..., T)`` in ``[-1, 1]`` under the
        continuous logistic mixture (logistic-mixture output only):

        .. math::
            \log p_c(x) = \sum_{t=1}^{T} \log \sum_{k} \pi_{t,k}\,
                \frac{e^{-z_{t,k}}}{s_{t,k}\,(1 + e^{-z_{t,k}})^2}, \qquad
                z_{t,k} = \frac{x_t - \mu_{t,k}}{s_{t,k}},

        with :math:`\pi_t, \mu_t, s_t` the network's output at step ``t`` given the real
        :math:`x_{<t}` (fed unquantized; ``log_scale`` clamped below at
        :attr:`DiscretizedLogisticMixture.LOG_SCALE_MIN` as in the discretized form). This
        is the teacher's density that Parallel WaveNet's distillation evaluates on the
        student's (continuous) samples. The logistics are not truncated to ``[-1, 1]``: the
        density is that of the untruncated mixture, as in the paper, so over ``[-1, 1]``
        it integrates to at most one (the mass outside is what the discretized form gives
        the edge levels). Differentiable in ``x`` and in the network.
        """
        if self.output != "logistic_mixture":
            raise ValueError(
                "continuous_log_prob: needs a network with output='logistic_mixture', got "
                f"{self.output!r}"
            )
        shape = self._check_values(x, "x")
        if not x.is_floating_point():
            raise ValueError(f"x: expected a floating tensor, got dtype {x.dtype}")
        if self._validate_args and (not bool(torch.isfinite(x).all()) or bool((x.abs() > 1).any())):
            raise ValueError("x: expected finite real values in [-1, 1]")
        y = x.to(self._dtype).expand(shape + self.event_shape).reshape(-1, self.length)
        g, loc = self._flat_contexts(shape)
        params = self.net(y, g, loc, scaled=True).transpose(1, 2)  # (N, T, 3K)
        k = self.net.num_mixtures
        log_w = torch.log_softmax(params[..., :k], -1)
        mu = params[..., k : 2 * k]
        log_s = params[..., 2 * k :].clamp(min=DiscretizedLogisticMixture.LOG_SCALE_MIN)
        z = (y.unsqueeze(-1) - mu) * torch.exp(-log_s)
        log_pdf = -z - log_s - 2.0 * F.softplus(-z)
        return torch.logsumexp(log_w + log_pdf, -1).sum(-1).reshape(shape)

    def as_continuous(self) -> ContinuousWaveNet:
        """This model's continuous logistic-mixture density over real sequences in
        ``[-1, 1]`` as a distribution (:class:`ContinuousWaveNet`)."""
        return ContinuousWaveNet(self)

    # -- generation ---------------------------------------------------------------------
    def _step_log_pmf(self, params: torch.Tensor) -> torch.Tensor:
        """``(N, levels)`` log-probabilities of one step from its ``(N, P)`` parameters."""
        if self.output == "categorical":
            return torch.log_softmax(params, -1)
        mix = self._mixture(params[:, None, :])  # batch (N, 1)
        out = []
        for start in range(0, self.levels, _CHUNK):
            grid = torch.arange(
                start, min(start + _CHUNK, self.levels), dtype=params.dtype, device=params.device
            )
            out.append(mix.log_prob(grid.expand(params.shape[0], -1)))
        return torch.cat(out, -1)

    def _draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The inverse CDF of the step's pmf at ``u`` (``pixelcnn.inverse_cdf``)."""
        return inverse_cdf(self._step_log_pmf(params), u)

    def sample(
        self,
        sample_shape: torch.Size = torch.Size(),  # noqa: B008
        *,
        method: str = "cached",
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Sequences ``sample_shape + batch_shape + (T,)`` of levels (floats of the network's
        dtype), step by step.

        Args:
            sample_shape: leading shape of the samples.
            method: ``"cached"`` (per-layer queues, Paine et al., 2016) or ``"naive"`` (a
                full network pass per step); both consume the random stream identically:
                one uniform per sequence per step, mapped by the inverse CDF over the levels.
            generator: the ``torch.Generator`` of the uniforms (default: the global one).
            progress: print a progress bar on stderr.
        """
        if method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
        shape = _shape(sample_shape, "sample_shape") + self.batch_shape
        n = math.prod(shape)
        g, loc = self._flat_contexts(shape)
        t_len = self.length
        x = torch.zeros(n, t_len, dtype=self._dtype, device=self._device)
        with torch.no_grad(), _Bar(bool(progress), t_len, method) as bar:
            session = self.net.generation(n, t_len, g, loc) if method == "cached" else None
            for t in range(t_len):
                u = torch.rand(n, generator=generator, dtype=self._dtype, device=self._device)
                if session is not None:
                    params = session.step(x[:, t - 1] if t > 0 else None)
                else:
                    params = self.net(x, g, loc)[:, :, t]
                x[:, t] = self._draw(params, u)
                bar.update()
        return x.reshape(shape + self.event_shape)


class ContinuousWaveNet(_Contexts, TorchDistribution):
    r"""A logistic-mixture WaveNet as a density over *real* sequences ``(T,)`` in
    ``[-1, 1]``: ``log_prob`` is :meth:`WaveNet.continuous_log_prob` (the untruncated
    mixture density, as Parallel WaveNet's distillation scores student samples; see there).

    ``sample`` generates step by step with the cached session, each step a draw
    :math:`\mu_k + s_k \operatorname{logit}(u)` of the continuous mixture clipped to
    ``[-1, 1]`` (the clipping puts the outside mass on the ends, so samples stay in the
    support; the density is not adjusted for it).

    Example:
        >>> from pyro_lgm.nn import WaveNet as Net
        >>> net = Net(4, 4, 4, layers_per_stack=2, output="logistic_mixture", num_mixtures=2)
        >>> c = WaveNet(net, length=6).as_continuous()
        >>> y = c.sample((3,))
        >>> y.shape, c.log_prob(y).shape
        (torch.Size([3, 6]), torch.Size([3]))
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, base: WaveNet, validate_args: bool | None = None) -> None:
        if not isinstance(base, WaveNet) or base.output != "logistic_mixture":
            raise ValueError(
                "base: expected a pyro_lgm.distributions.WaveNet with a logistic-mixture network"
            )
        self.base = base
        self.net = base.net
        self.length = base.length
        self.global_context = base.global_context
        self.local_context = base.local_context
        self._dtype, self._device = base._dtype, base._device
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(-1.0, 1.0), 1)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> ContinuousWaveNet:
        return ContinuousWaveNet(self.base.expand(batch_shape), self._validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.continuous_log_prob(value)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = _shape(sample_shape, "sample_shape") + self.batch_shape
        n = math.prod(shape)
        g, loc = self._flat_contexts(shape)
        k = self.net.num_mixtures
        y = torch.zeros(n, self.length, dtype=self._dtype, device=self._device)
        with torch.no_grad():
            session = self.net.generation(n, self.length, g, loc)
            for t in range(self.length):
                p = session.step(y[:, t - 1] if t > 0 else None, scaled=True)
                comp = torch.distributions.Categorical(logits=p[:, :k]).sample().unsqueeze(-1)
                mu = p[:, k : 2 * k].gather(-1, comp).squeeze(-1)
                log_s = p[:, 2 * k :].gather(-1, comp).squeeze(-1)
                log_s = log_s.clamp(min=DiscretizedLogisticMixture.LOG_SCALE_MIN)
                eps = torch.finfo(self._dtype).eps
                u = torch.rand(n, dtype=self._dtype, device=self._device).clamp(eps, 1 - eps)
                draw = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
                y[:, t] = draw.clamp(-1.0, 1.0)
        return y.reshape(shape + self.event_shape)
