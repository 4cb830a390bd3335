r"""Variational autoencoders whose guides are normalizing flows.

A VAE (Kingma & Welling, 2014; Rezende et al., 2014) pairs a decoder
:math:`p_\theta(x \mid z)\,p(z)` with an amortized guide :math:`q_\phi(z \mid x)` and
maximizes the evidence lower bound

.. math::
    \log p(x) \ge \mathcal L(x) = \mathbb E_{q(z \mid x)}
    \big[\log p(x \mid z) + \log p(z) - \log q(z \mid x)\big].

The diagonal Gaussian guide :math:`q_0(z_0 \mid x) = N(\mu(x), \sigma^2(x))` limits how tight
the bound can be. Rezende & Mohamed (2015) push it through :math:`K` invertible maps,
:math:`z_K = f_K \circ \dots \circ f_1(z_0)`, so that

.. math::
    \log q_K(z_K \mid x) = \log q_0(z_0 \mid x) - \sum_{k=1}^K \log|\det J_{f_k}(z_{k-1})|,

with planar or radial maps whose parameters are a linear read-out of the encoder's features;
Kingma et al. (2016) use inverse autoregressive flow (IAF) steps that take the encoder's
features as an extra input. :class:`VAE` builds all three as a Pyro program: ``model`` and
``guide`` run under ``SVI`` unchanged, and the guide's distribution is a
:class:`~pyro_lgm.models.Flow` over a :class:`~pyro_lgm.models.ConditionalNormal` base, so the
log-determinants enter the ELBO through Pyro's ``TransformedDistribution``.

References:
    Diederik P. Kingma, Max Welling. Auto-Encoding Variational Bayes. ICLR 2014.
    https://arxiv.org/abs/1312.6114

    Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
    ICML 2015. https://arxiv.org/abs/1505.05770

    Diederik P. Kingma, Tim Salimans, Rafal Jozefowicz, Xi Chen, Ilya Sutskever, Max
    Welling. Improved Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
    https://arxiv.org/abs/1606.04934
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import Transform

from pyro_lgm.errors import check_finite
from pyro_lgm.models._store import register_module
from pyro_lgm.models.autoregressive import iaf
from pyro_lgm.models.flow import ConditionalNormal, Flow
from pyro_lgm.nn.vae import _dims, conv_decoder, conv_encoder, mlp_decoder, mlp_encoder
from pyro_lgm.transforms._common import _check_positive_int
from pyro_lgm.transforms.planar import conditional_planar, planar
from pyro_lgm.transforms.radial import conditional_radial, radial

__all__ = ["LIKELIHOODS", "VAE"]

#: The observation models :class:`VAE` offers, and the data each expects.
LIKELIHOODS = {
    "bernoulli": "binary data: floats in {0, 1}",
    "normal": "real data: a Gaussian with per-element mean and scale",
    "categorical": "n-bit data: integers in [0, num_levels), a softmax over the levels",
}

_FLOWS = ("planar", "radial", "iaf")
_DEFAULT_NUM_FLOWS = {"planar": 10, "radial": 10, "iaf": 2}


def _flow_transforms(
    flow: object,
    num_flows: int | None,
    latent_dim: int,
    feature_dim: int,
    amortized: bool,
    flow_hidden_dims: Sequence[int] | None,
) -> list:
    """The guide's transforms from the ``flow`` argument of :class:`VAE`."""
    if flow is None:
        if num_flows not in (None, 0):
            raise ValueError(f"num_flows: flow=None takes no flow steps, got {num_flows!r}")
        return []
    if not isinstance(flow, str):
        try:
            ts = list(flow)  # type: ignore[call-overload]
        except TypeError:
            ts = None
        if (
            ts is None
            or not ts
            or not all(isinstance(t, Transform | dist.ConditionalTransform) for t in ts)
        ):
            raise ValueError(
                f"flow: expected None, one of {_FLOWS} or a non-empty list of (conditional) "
                f"transforms, got {flow!r}"
            )
        return ts
    if flow not in _FLOWS:
        raise ValueError(f"flow: expected None, one of {_FLOWS} or a list, got {flow!r}")
    k = _DEFAULT_NUM_FLOWS[flow] if num_flows is None else num_flows
    k = _check_positive_int("num_flows", k)
    if flow == "iaf":
        context_dim = feature_dim if amortized else 0
        return iaf(latent_dim, flow_hidden_dims, num_layers=k, context_dim=context_dim).transforms
    if flow_hidden_dims is not None and not amortized:
        raise ValueError("flow_hidden_dims: global planar/radial steps have no network")
    hidden = [] if flow_hidden_dims is None else list(flow_hidden_dims)
    if flow == "planar":
        if amortized:
            return [conditional_planar(latent_dim, feature_dim, hidden) for _ in range(k)]
        return [planar(latent_dim) for _ in range(k)]
    if amortized:
        return [conditional_radial(latent_dim, feature_dim, hidden) for _ in range(k)]
    return [radial(latent_dim) for _ in range(k)]


def _guide_flow(
    latent_dim: int,
    context_dim: int,
    flow: object,
    num_flows: int | None,
    amortized: bool,
    flow_hidden_dims: Sequence[int] | None,
    base: nn.Module,
) -> Flow:
    """A guide's :math:`q(z \\mid s)`: the conditional ``base`` (a Gaussian read out of the
    context ``s``) pushed through the transforms the ``flow`` argument names."""
    transforms = _flow_transforms(
        flow, num_flows, latent_dim, context_dim, amortized, flow_hidden_dims
    )
    return Flow((latent_dim,), transforms, conditional=True, base=base)


class _LatentModel(PyroModule):
    """What every VAE of the library shares: the data check, the observation model, the KL
    warm-up schedule, free bits and the registration with Pyro's parameter store.

    Subclasses call :meth:`_setup_latent_model` first in ``__init__``.
    """

    def _setup_latent_model(
        self,
        data_shape: Sequence[int],
        likelihood: str,
        num_levels: int,
        kl_warmup_steps: int,
        kl_warmup_start: float,
        free_bits: float,
        name: str,
    ) -> None:
        self.data_shape = torch.Size(_dims("data_shape", data_shape))
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {list(LIKELIHOODS)}, got {likelihood!r}")
        self.likelihood = likelihood
        self.num_levels = _check_positive_int("num_levels", num_levels)
        if likelihood == "categorical" and num_levels < 2:
            raise ValueError(f"num_levels: expected at least 2 levels, got {num_levels}")
        self._m = {"bernoulli": 1, "normal": 2, "categorical": num_levels}[likelihood]
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.name = name
        self.kl_warmup_steps = _check_nonneg_int("kl_warmup_steps", kl_warmup_steps)
        self.kl_warmup_start = _check_unit("kl_warmup_start", kl_warmup_start)
        if not isinstance(free_bits, int | float) or not (0 <= free_bits < math.inf):
            raise ValueError(f"free_bits: expected a finite number >= 0, got {free_bits!r}")
        self.free_bits = float(free_bits)
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ checks
    def _check_x(self, x: object) -> torch.Tensor:
        n = len(self.data_shape)
        if not isinstance(x, torch.Tensor) or x.dim() != n + 1 or x.shape[1:] != self.data_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x: expected shape (N, {', '.join(map(str, self.data_shape))}), got {got}"
            )
        p = self._zero
        if x.device != p.device:
            raise ValueError(f"x: expected device {p.device} (the parameters'), got {x.device}")
        if self.likelihood == "categorical":
            if x.is_floating_point() or x.dtype == torch.bool:
                raise ValueError(f"x: the categorical likelihood needs integer data, got {x.dtype}")
        elif x.dtype != p.dtype:
            raise ValueError(f"x: expected dtype {p.dtype} (the parameters'), got {x.dtype}")
        else:
            check_finite("x", x)
        return x

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the encoder's input (categorical levels scaled to ``[0, 1]``)."""
        if self.likelihood == "categorical":
            return x.to(self._zero.dtype) / (self.num_levels - 1)
        return x

    # ------------------------------------------------------------------ the observation model
    def _observation(self, out: torch.Tensor, lead: torch.Size) -> dist.Distribution:
        r""":math:`p(x \mid \cdot)` from a decoder's output ``out`` with ``m * prod(data_shape)``
        numbers per row of the batch ``lead``: batch shape ``lead``, event ``data_shape``."""
        out = out.reshape(*lead, self._m, *self.data_shape)
        n = len(self.data_shape)
        if self.likelihood == "bernoulli":
            d = dist.Bernoulli(logits=out.squeeze(len(lead)))
        elif self.likelihood == "normal":
            loc, raw = out.unbind(len(lead))
            d = dist.Normal(loc, F.softplus(raw) + 1e-4)
        else:
            d = dist.Categorical(logits=out.movedim(len(lead), -1))
        return d.to_event(n)

    def _draw_observation(
        self, d: dist.Distribution, generator: torch.Generator | None
    ) -> torch.Tensor:
        """A draw of :meth:`_observation`'s ``d`` whose randomness comes from ``generator``
        alone (one uniform or normal number per element, in a fixed order), so that the same
        generator state gives the same pixel-level noise."""
        base = d.base_dist
        if self.likelihood == "normal":
            eps = torch.randn(base.loc.shape, generator=generator, dtype=base.loc.dtype,
                              device=base.loc.device)  # fmt: skip
            return base.loc + base.scale * eps
        probs = base.probs
        if self.likelihood == "bernoulli":
            u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
            return (u < probs).to(probs.dtype)
        cdf = probs.cumsum(-1)
        u = torch.rand(cdf.shape[:-1], generator=generator, dtype=cdf.dtype, device=cdf.device)
        idx = (cdf < u[..., None] * cdf[..., -1:]).sum(-1)
        return idx.clamp_(max=self.num_levels - 1)

    # ------------------------------------------------------------------ warm-up, free bits
    @property
    def kl_weight(self) -> float:
        r"""The current KL weight :math:`\beta \in (0, 1]` of the warm-up schedule."""
        if self.kl_warmup_steps == 0:
            return 1.0
        frac = float(self.num_steps) / self.kl_warmup_steps
        return min(1.0, self.kl_warmup_start + (1.0 - self.kl_warmup_start) * frac)

    def warmup_step(self) -> None:
        """Advance the warm-up schedule by one step (:meth:`loss` does it when training;
        call it after each ``svi.step`` when training with SVI)."""
        self.num_steps += 1

    def _kl_penalty(self, kls: Sequence[torch.Tensor]) -> torch.Tensor:
        r""":math:`\beta \sum_g \max(\lambda, \overline{\mathrm{KL}}_g)` over the groups'
        per-example KL estimates ``kls`` (one group per stochastic layer); advances the
        warm-up when training."""
        total = self._zero
        for kl in kls:
            term = kl.mean()
            if self.free_bits > 0:
                term = term.clamp_min(self.free_bits)
            total = total + term
        out = self.kl_weight * total
        if self.training and torch.is_grad_enabled():
            self.warmup_step()
        return out

    # ------------------------------------------------------------------ the Pyro program
    def _register(self) -> None:
        """``pyro.module`` for SVI, refusing a parameter store that holds another module's
        tensors under this model's names (whose training would silently be lost)."""
        register_module(self.name, self)

    def _scale(self) -> contextlib.AbstractContextManager:
        beta = self.kl_weight
        return contextlib.nullcontext() if beta == 1.0 else poutine.scale(scale=beta)


class VAE(_LatentModel):
    r"""A VAE whose guide is the encoder's Gaussian pushed through a normalizing flow.

    .. math::
        p(z) = N(0, I_L), \quad p(x \mid z) = \prod_i p(x_i \mid \eta_i(z)), \qquad
        q(z \mid x) = \big(f_K \circ \dots \circ f_1\big)_\# N(\mu(h), \sigma^2(h)),
        \quad h = \mathrm{enc}(x).

    ``model(x)`` and ``guide(x)`` are the Pyro program (one ``"data"`` plate over the batch,
    sites ``"z"`` and ``"x"``); :meth:`loss` is the same negative ELBO per example as a
    differentiable tensor, with KL warm-up and free bits. ``Trace_ELBO`` always applies;
    ``TraceMeanField_ELBO`` uses the analytic Gaussian KL when ``flow=None`` and falls back
    to a Monte Carlo KL with a flow.

    References:
        Kingma & Welling (2014); Rezende & Mohamed (2015); Kingma et al. (2016): see
        :mod:`pyro_lgm.models.vae`.

    Args:
        data_shape: shape of one example, e.g. ``(784,)`` or ``(1, 28, 28)``.
        latent_dim: size ``L`` of ``z``.
        encoder: ``"mlp"`` (default), ``"conv"`` (``data_shape = (C, H, W)``, ``H``, ``W``
            multiples of 4) or an ``nn.Module`` mapping ``(N, *data_shape)`` to ``(N, F)``
            features (see :mod:`pyro_lgm.nn.vae`).
        decoder: ``"mlp"``, ``"conv"`` or an ``nn.Module`` mapping ``(N, L)`` to ``N`` rows of
            ``m * prod(data_shape)`` numbers, ``m`` the likelihood's parameters per element.
        hidden_dims: the MLP widths (the last is ``F``; the decoder mirrors them), or for
            ``"conv"`` the feature size is ``hidden_dims[-1]``.
        likelihood: ``"bernoulli"`` (binary data), ``"normal"`` (real data) or
            ``"categorical"`` (integers in ``[0, num_levels)``); see :data:`LIKELIHOODS`.
        num_levels: levels of ``"categorical"`` data (256 for 8-bit images).
        flow: ``None`` (the diagonal Gaussian guide), ``"planar"``, ``"radial"``, ``"iaf"``,
            or a list of transforms / conditional transforms of ``(N, L)`` tensors (a
            conditional one is conditioned on the features ``h``).
        num_flows: ``K``; default 10 planar or radial steps, 2 IAF steps.
        amortized: the flow's parameters depend on ``x`` (default): planar and radial
            parameters are a linear read-out of ``h`` (Rezende & Mohamed), IAF steps take
            ``h`` as a context input (Kingma et al.). ``False``: global flow parameters.
        flow_hidden_dims: hidden widths of the planar / radial read-out (default none:
            linear) or of IAF's MADE (default: :func:`~pyro_lgm.models.iaf`'s).
        min_scale: floor on the encoder's standard deviations.
        kl_warmup_steps: anneal the KL weight :math:`\beta` linearly from
            ``kl_warmup_start`` to 1 over this many :meth:`loss` / :meth:`warmup_step`
            calls (0: no warm-up). Rezende & Mohamed anneal over 10 000 steps from 0.01.
        kl_warmup_start: :math:`\beta` at step 0.
        free_bits: :math:`\lambda \ge 0` nats: :meth:`loss` uses
            :math:`\max(\lambda, \overline{\mathrm{KL}})`, the batch mean of the Monte
            Carlo KL estimate (Kingma et al., 2016, free bits with one group).
        name: the prefix of the parameters' names in Pyro's parameter store.

    Example:
        >>> import torch, pyro
        >>> vae = VAE((784,), latent_dim=8, hidden_dims=[64], flow="iaf", num_flows=2)
        >>> x = torch.bernoulli(torch.full((16, 784), 0.3))
        >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      pyro.infer.Trace_ELBO())
        >>> loss = svi.step(x)
        >>> vae.posterior(x).rsample().shape, vae.loss(x).shape
        (torch.Size([16, 8]), torch.Size([]))
        >>> pyro.clear_param_store()
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int = 32,
        *,
        encoder: str | nn.Module = "mlp",
        decoder: str | nn.Module = "mlp",
        hidden_dims: Sequence[int] = (256, 256),
        likelihood: str = "bernoulli",
        num_levels: int = 256,
        flow: str | Sequence[object] | None = None,
        num_flows: int | None = None,
        amortized: bool = True,
        flow_hidden_dims: Sequence[int] | None = None,
        min_scale: float = 0.0,
        kl_warmup_steps: int = 0,
        kl_warmup_start: float = 0.01,
        free_bits: float = 0.0,
        name: str = "vae",
    ) -> None:
        super().__init__()
        self._setup_latent_model(
            data_shape, likelihood, num_levels, kl_warmup_steps, kl_warmup_start, free_bits, name
        )
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        hidden = _dims("hidden_dims", hidden_dims)
        if not isinstance(amortized, bool):
            raise ValueError(f"amortized: expected a bool, got {amortized!r}")
        self.amortized = amortized

        self.encoder = self._build_encoder(encoder, hidden)
        self.decoder = self._build_decoder(decoder, hidden)
        self.feature_dim = self._probe_encoder()
        self._probe_decoder()
        self.flow_kind = flow if isinstance(flow, str) or flow is None else "custom"
        self.flow = _guide_flow(
            self.latent_dim, self.feature_dim, flow, num_flows, amortized, flow_hidden_dims,
            ConditionalNormal(self.feature_dim, self.latent_dim, min_scale=min_scale),
        )  # fmt: skip

    # ------------------------------------------------------------------ construction
    def _build_encoder(self, encoder: object, hidden: list[int]) -> nn.Module:
        if isinstance(encoder, nn.Module):
            return encoder
        if encoder == "mlp":
            return mlp_encoder(self.data_shape, hidden)
        if encoder == "conv":
            return conv_encoder(self.data_shape, hidden[-1])
        raise ValueError(f"encoder: expected 'mlp', 'conv' or an nn.Module, got {encoder!r}")

    def _build_decoder(self, decoder: object, hidden: list[int]) -> nn.Module:
        if isinstance(decoder, nn.Module):
            return decoder
        if decoder == "mlp":
            return mlp_decoder(self.latent_dim, self.data_shape, hidden, self._m)
        if decoder == "conv":
            return conv_decoder(
                self.latent_dim, self.data_shape, hidden[-1], params_per_element=self._m
            )
        raise ValueError(f"decoder: expected 'mlp', 'conv' or an nn.Module, got {decoder!r}")

    def _probe_encoder(self) -> int:
        h = _probe(self.encoder, (*self.data_shape,), self._zero)
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[0] != 2:
            raise ValueError(
                f"encoder: expected (N, F) features for (N, *data_shape) input, got {_desc(h)}"
            )
        return h.shape[1]

    def _probe_decoder(self) -> None:
        out = _probe(self.decoder, (self.latent_dim,), self._zero)
        want = self._m * math.prod(self.data_shape)
        if not isinstance(out, torch.Tensor) or out.shape[0] != 2 or out[0].numel() != want:
            raise ValueError(
                f"decoder: expected (N, ...) with {self._m} x {math.prod(self.data_shape)} = "
                f"{want} numbers per row for the {self.likelihood!r} likelihood, got {_desc(out)}"
            )

    # ------------------------------------------------------------------ the distributions
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's features ``h`` of shape ``(N, F)``."""
        return self.encoder(self._as_input(x))

    def posterior(self, x: torch.Tensor) -> dist.TransformedDistribution:
        """The guide's :math:`q(z \\mid x)`: batch shape ``(N,)``, event shape ``(L,)``."""
        return self.flow(self.features(self._check_x(x)))

    def prior(self, num: int) -> dist.Distribution:
        """:math:`p(z) = N(0, I_L)` with batch shape ``(num,)``."""
        loc = self._zero.expand(num, self.latent_dim)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def decode(self, z: torch.Tensor) -> dist.Distribution:
        """:math:`p(x \\mid z)` for ``z`` of shape ``(..., L)``: batch shape ``(...)``, event
        shape ``data_shape``."""
        lead = z.shape[:-1]
        return self._observation(self.decoder(z.reshape(-1, self.latent_dim)), lead)

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: torch.Tensor) -> None:
        """The generative model: ``z ~ N(0, I)``, ``x ~ p(x | z)`` (sites ``"z"``, ``"x"``)."""
        x = self._check_x(x)
        self._register()
        with pyro.plate("data", x.shape[0]):
            with self._scale():
                z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """The guide: ``z ~ q(z | x)``, the encoder's Gaussian pushed through the flow."""
        self._register()
        with pyro.plate("data", x.shape[0]):
            with self._scale():
                pyro.sample("z", self.posterior(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""The negative ELBO per example, with warm-up and free bits, for one sample of z.

        .. math::
            -\frac1N \sum_n \log p(x_n \mid z_n)
            + \beta \max\Big(\lambda, \frac1N \sum_n \big[\log q(z_n \mid x_n) - \log p(z_n)
            \big]\Big), \qquad z_n \sim q(z \mid x_n),

        which at :math:`\beta = 1`, :math:`\lambda = 0` is ``Trace_ELBO``'s loss divided by
        ``N``. When grad is enabled and the module is in training mode, one call advances
        the warm-up schedule by one step. Use as ``fit(vae, x, loss=VAE.loss)``.

        Args:
            x: ``(N, *data_shape)`` batch.

        Returns:
            a scalar tensor.
        """
        x = self._check_x(x)
        q = self.posterior(x)
        z = q.rsample()
        kl = q.log_prob(z) - self.prior(x.shape[0]).log_prob(z)
        nll = -self.decode(z).log_prob(x).mean()
        out = nll + self._kl_penalty([kl])
        return out

    @torch.no_grad()
    def sample(self, num: int) -> torch.Tensor:
        """``num`` draws of ``x`` from the model, shape ``(num, *data_shape)``."""
        num = _check_positive_int("num", num)
        return self.decode(self.prior(num).sample()).sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean at one posterior sample: ``E[x | z]``, ``z ~ q(z | x)``
        (for ``"categorical"`` data the mean level, a float)."""
        d = self.decode(self.posterior(x).sample())
        if self.likelihood == "categorical":
            probs = d.base_dist.probs
            return probs @ torch.arange(self.num_levels, dtype=probs.dtype, device=probs.device)
        return d.mean

    def extra_repr(self) -> str:
        return (
            f"data_shape={tuple(self.data_shape)}, latent_dim={self.latent_dim}, "
            f"likelihood={self.likelihood!r}, flow={self.flow_kind!r}, "
            f"num_flows={len(self.flow.transforms)}, amortized={self.amortized}"
        )


@torch.no_grad()
def _probe(net: nn.Module, shape: tuple[int, ...], like: torch.Tensor) -> object:
    """``net`` on two zero rows of ``shape``, in eval mode (restored after): what a
    constructor checks a user's network against."""
    was = net.training
    net.eval()
    try:
        p = next(iter(net.parameters()), like)
        return net(torch.zeros(2, *shape, dtype=p.dtype, device=p.device))
    finally:
        net.train(was)


def _desc(out: object) -> object:
    return tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__


def _check_nonneg_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    return value


def _check_unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{name}: expected a number in (0, 1], got {value!r}")
    return float(value)
