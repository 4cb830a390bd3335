r"""Hierarchical VAEs: several stochastic layers, bottom-up or top-down inference, flow guides.

The generative model stacks :math:`L` layers of latent vectors above the data,

.. math::
    p(x, z_{1:L}) = p(z_L) \prod_{l=1}^{L-1} p(z_l \mid z_{l+1})\; p(x \mid z_1), \qquad
    p(z_L) = N(0, I), \quad p(z_l \mid z_{l+1}) = N\big(\mu_l(t_l), \sigma_l^2(t_l)\big),
    \quad t_l = \mathrm{MLP}_l(z_{l+1}),

as in the deep latent Gaussian models of Rezende et al. (2014) and the two-layer models of
Burda et al. (2016). Two guides are offered:

* **bottom-up** (Rezende et al.; Burda et al.): :math:`q(z_1 \mid x) \prod_{l>1}
  q(z_l \mid z_{l-1})`, each factor conditioned on features of the layer below;
* **top-down** (Sønderby et al., 2016, ladder VAE; Kingma et al., 2016, the IAF paper's
  ResNet VAE): a deterministic bottom-up pass :math:`d_1 = \mathrm{enc}(x)`,
  :math:`d_{l} = \mathrm{MLP}(d_{l-1})`, then sampling from the top,
  :math:`q(z_L \mid d_L)`, :math:`q(z_l \mid d_l, t_l)` with :math:`t_l` the *generative*
  path's features of :math:`z_{l+1}`: inference shares the decoder's path, so the guide
  follows the prior's top-down order. This is the one that trains deep hierarchies well.

Each factor of either guide is a diagonal Gaussian read out of its context, optionally pushed
through a flow of the library (``flow="planar" | "radial" | "iaf"`` or a list of
transforms), exactly as :class:`~pyro_lgm.models.VAE`'s guide:

.. math::
    \log q(z_l \mid s_l) = \log N(z_l^{(0)}; \mu(s_l), \sigma^2(s_l))
    - \sum_k \log |\det J_{f_k}(z_l^{(k-1)})|.

References:
    Danilo Jimenez Rezende, Shakir Mohamed, Daan Wierstra. Stochastic Backpropagation and
    Approximate Inference in Deep Generative Models. ICML 2014.
    https://arxiv.org/abs/1401.4082

    Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted Autoencoders.
    ICLR 2016. https://arxiv.org/abs/1509.00519

    Casper Kaae Sønderby, Tapani Raiko, Lars Maaløe, Søren Kaae Sønderby, Ole Winther.
    Ladder Variational Autoencoders. NeurIPS 2016. https://arxiv.org/abs/1602.02282

    Diederik P. Kingma, Tim Salimans, Rafal Jozefowicz, Xi Chen, Ilya Sutskever, Max
    Welling. Improved Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
    https://arxiv.org/abs/1606.04934
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_lgm.models.flow import ConditionalNormal
from pyro_lgm.models.vae import _guide_flow, _LatentModel
from pyro_lgm.nn.vae import _dims, mlp_decoder, mlp_encoder
from pyro_lgm.transforms._common import _check_positive_int

__all__ = ["INFERENCE", "HierarchicalVAE"]

#: The guide structures of :class:`HierarchicalVAE`.
INFERENCE = ("top-down", "bottom-up")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ELU layers over the last dimension (any leading dimensions)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ELU()]
    return nn.Sequential(*layers)


class _Hierarchy(_LatentModel):
    """The Pyro program, ELBO terms, importance weights and generation of a stack of latent
    layers ``z1`` (next to the data) ... ``zL`` (the top), shared by
    :class:`HierarchicalVAE` and :class:`~pyro_lgm.models.PixelVAE`.

    A subclass sets ``num_latent_layers`` and ``inference`` and implements
    :meth:`_prior` (``p(z_l | z_{l+1})``, the top's given ``None``), :meth:`_prior_from_noise`,
    :meth:`decode`, :meth:`_draw_x` and the guide walk :meth:`_guide_walk`.
    """

    num_latent_layers: int
    inference: str

    # ------------------------------------------------------------------ to implement
    def _prior(self, index: int, parent: torch.Tensor | None, num: int) -> dist.Distribution:
        raise NotImplementedError

    def _prior_from_noise(
        self, index: int, parent: torch.Tensor | None, eps: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z1: torch.Tensor) -> dist.Distribution:
        raise NotImplementedError

    def _draw_x(self, d: dist.Distribution, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _guide_walk(
        self, x: torch.Tensor, draw: Callable[[int, dist.Distribution], torch.Tensor]
    ) -> list[torch.Tensor]:
        raise NotImplementedError

    def latent_shape(self, index: int) -> torch.Size:
        """The event shape of layer ``index`` (0: ``z1``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def _check_flow(self, flow: object, amortized: object) -> None:
        """Check the ``flow`` / ``amortized`` arguments; set ``flow_kind``."""
        if not isinstance(amortized, bool):
            raise ValueError(f"amortized: expected a bool, got {amortized!r}")
        if flow is not None and not isinstance(flow, str) and not callable(flow):
            raise ValueError(
                f"flow: expected None, 'planar', 'radial', 'iaf' or a callable "
                f"flow(layer, latent_dim, context_dim), got {flow!r}"
            )
        self.flow_kind = flow if isinstance(flow, str) or flow is None else "custom"

    def _site(self, index: int) -> str:
        return f"z{index + 1}"

    def model(self, x: torch.Tensor) -> None:
        """The generative model: ``zL ~ N(0, I)``, ``z_l ~ p(z_l | z_{l+1})``, ``x ~ p(x |
        z1)`` (sites ``"zL"`` ... ``"z1"``, ``"x"``, in one ``"data"`` plate)."""
        x = self._check_x(x)
        self._register()
        parent = None
        with pyro.plate("data", x.shape[0]):
            with self._scale():
                for index in reversed(range(self.num_latent_layers)):
                    parent = pyro.sample(self._site(index), self._prior(index, parent, x.shape[0]))
            pyro.sample("x", self.decode(parent), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """The guide: every ``z_l`` from its factor of :math:`q(z_{1:L} \\mid x)`, in the
        order of the inference structure."""
        x = self._check_x(x)
        self._register()
        with pyro.plate("data", x.shape[0]), self._scale():
            self._guide_walk(x, lambda i, q: pyro.sample(self._site(i), q))

    def elbo_terms(self, x: torch.Tensor) -> dict[str, Any]:
        r"""One reparameterized draw :math:`z \sim q(z \mid x)` and the ELBO's terms at it.

        .. math::
            \mathcal L(x) = \log p(x \mid z_1) - \sum_{l=1}^L \mathrm{KL}_l, \qquad
            \mathrm{KL}_l = \log q(z_l \mid \cdot) - \log p(z_l \mid z_{l+1}),

        the per-layer single-sample KL estimates (their expectation is the layer's
        conditional KL).

        Returns:
            ``{"log_px": (N,), "kl": [(N,)] * L, "z": [z1, ..., zL]}``, layer 1 first.
        """
        x = self._check_x(x)
        log_q: dict[int, torch.Tensor] = {}

        def draw(i: int, q: dist.Distribution) -> torch.Tensor:
            z = q.rsample()
            log_q[i] = q.log_prob(z)
            return z

        zs = self._guide_walk(x, draw)
        kls = []
        for i in range(self.num_latent_layers):
            parent = zs[i + 1] if i + 1 < self.num_latent_layers else None
            kls.append(log_q[i] - self._prior(i, parent, x.shape[0]).log_prob(zs[i]))
        log_px = self.decode(zs[0]).log_prob(x)
        return {"log_px": log_px, "kl": kls, "z": zs}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""The negative ELBO per example for one draw of ``z``, with KL warm-up and free bits
        per layer:

        .. math::
            -\frac1N \sum_n \log p(x_n \mid z_{1,n})
            + \beta \sum_{l=1}^L \max\Big(\lambda, \frac1N \sum_n \mathrm{KL}_{l,n}\Big),

        which at :math:`\beta = 1`, :math:`\lambda = 0` is ``Trace_ELBO``'s loss divided by
        ``N``. One call advances the warm-up schedule when training with grad enabled.
        """
        terms = self.elbo_terms(x)
        return -terms["log_px"].mean() + self._kl_penalty(terms["kl"])

    def active_units(
        self, x: torch.Tensor, num_samples: int = 100, batch_size: int | None = None
    ) -> list[int]:
        r"""Active units of every layer, ``z1`` first (Burda et al., 2016): units whose
        posterior mean :math:`\mathbb E_q[z_u]` has variance over ``x`` above 0.01
        (:func:`pyro_lgm.metrics.active_units`)."""
        from pyro_lgm.metrics import active_units

        return [
            active_units(self.guide, x, site=self._site(i), num_samples=num_samples,
                         batch_size=batch_size)[0]
            for i in range(self.num_latent_layers)
        ]  # fmt: skip

    # ------------------------------------------------------------------ generation
    def noise(self, num: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Standard normal noise for every latent layer (``z1``'s first): ``num`` rows each."""
        num = _check_positive_int("num", num)
        p = self._zero
        return [
            torch.randn(num, *self.latent_shape(i), generator=generator, dtype=p.dtype,
                        device=p.device)
            for i in range(self.num_latent_layers)
        ]  # fmt: skip

    @torch.no_grad()
    def generate(
        self, noise: Sequence[torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""Images from given latent noise: :math:`z_L = \epsilon_L`, :math:`z_l` the prior's
        map of :math:`\epsilon_l` given :math:`z_{l+1}`, then :math:`x \sim p(x \mid z_1)`
        with the pixel-level randomness drawn from ``generator`` only.

        Args:
            noise: ``L`` tensors ``(n, *latent_shape(l))``, layer 1 first (see :meth:`noise`).
            generator: the pixel-level noise; the same generator state gives the same noise.

        Returns:
            ``(n, *data_shape)``.
        """
        noise = list(noise)
        if len(noise) != self.num_latent_layers:
            raise ValueError(
                f"noise: expected {self.num_latent_layers} tensors (one per layer), got "
                f"{len(noise)}"
            )
        n = noise[0].shape[0] if isinstance(noise[0], torch.Tensor) else 0
        for i, eps in enumerate(noise):
            want = (n, *self.latent_shape(i))
            if not isinstance(eps, torch.Tensor) or tuple(eps.shape) != want:
                got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
                raise ValueError(f"noise: layer {i + 1} expected shape {want}, got {got}")
        z = None
        for i in reversed(range(self.num_latent_layers)):
            z = self._prior_from_noise(i, z, noise[i])
        return self._draw_x(self.decode(z), generator)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` draws of ``x`` from the model, shape ``(num, *data_shape)``."""
        return self.generate(self.noise(num, generator), generator)

    @torch.no_grad()
    def hierarchy_panels(self, rows: int = 8, cols: int = 8, seed: int = 0) -> dict:
        """What each level of randomness controls: one panel per latent layer and one for
        the pixels. In panel ``"z<l>"`` the images of a row share every source of noise
        except layer ``l``'s, which changes along the row; in panel ``"pixels"`` they share
        every latent and differ in the pixel-level noise only (PixelVAE's Figure 5).

        Returns:
            ``{"z<L>": ..., ..., "z1": ..., "pixels": ...}``, each ``(rows * cols,
            *data_shape)`` in row-major order.
        """
        rows = _check_positive_int("rows", rows)
        cols = _check_positive_int("cols", cols)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        g = torch.Generator(device=self._zero.device)
        g.manual_seed(seed)
        fixed = self.noise(rows, g)
        pixel_seed = seed + 1

        def pixels(s: int) -> torch.Generator:
            out = torch.Generator(device=self._zero.device)
            out.manual_seed(s)
            return out

        panels = {}
        for level in [*reversed(range(self.num_latent_layers)), None]:
            cells = []
            for c in range(cols):
                noise = list(fixed)
                if level is not None:
                    noise[level] = self.noise(rows, g)[level]
                seed_c = pixel_seed + 1 + c if level is None else pixel_seed
                cells.append(self.generate(noise, pixels(seed_c)))
            grid = torch.stack(cells, 1).reshape(rows * cols, *self.data_shape)
            panels["pixels" if level is None else self._site(level)] = grid
        return panels


class HierarchicalVAE(_Hierarchy):
    r"""A VAE with ``L`` layers of latent vectors and a bottom-up or top-down guide.

    .. math::
        p(x, z) = N(z_L; 0, I) \prod_{l<L} N\big(z_l; \mu_l(z_{l+1}), \sigma_l^2(z_{l+1})
        \big)\; p(x \mid z_1),

    guided by :math:`q(z_1 \mid x) \prod_{l>1} q(z_l \mid z_{l-1})` (``"bottom-up"``) or
    :math:`q(z_L \mid x) \prod_{l<L} q(z_l \mid x, z_{l+1})` through the generative path's
    features (``"top-down"``, the default); see :mod:`pyro_lgm.models.hvae`.

    ``model(x)`` / ``guide(x)`` are the Pyro program (sites ``"z1"`` ... ``"zL"``, ``"x"``
    in one ``"data"`` plate) for ``SVI`` and for :func:`pyro_lgm.metrics.iwae`;
    :meth:`loss` is the differentiable negative ELBO with KL warm-up and free bits per
    layer; :meth:`elbo_terms` returns the per-layer terms; :meth:`active_units` counts the
    latent units in use; :meth:`hierarchy_panels` shows what each layer controls.

    Args:
        data_shape: shape of one example, e.g. ``(784,)``.
        latent_dims: sizes of ``z1`` (next to the data) ... ``zL`` (the top); at least 1.
        hidden_dims: the encoder's MLP widths (the last is the feature size ``F``) and,
            mirrored, the decoder's.
        stage_dims: hidden widths of the MLPs between layers (the prior's
            :math:`t_l = \mathrm{MLP}_l(z_{l+1})`, the bottom-up guide's features of
            :math:`z_{l-1}`, the top-down guide's deterministic path).
        inference: ``"top-down"`` (default) or ``"bottom-up"``.
        likelihood: ``"bernoulli"``, ``"normal"`` or ``"categorical"`` as for
            :class:`~pyro_lgm.models.VAE`; ``num_levels`` for the latter.
        flow: every guide factor's flow: ``None`` (diagonal Gaussians), ``"planar"``,
            ``"radial"``, ``"iaf"``, or a callable ``flow(layer, latent_dim, context_dim)``
            returning that layer's list of (conditional) transforms.
        num_flows, amortized, flow_hidden_dims, min_scale: as :class:`~pyro_lgm.models.VAE`,
            for every layer.
        kl_warmup_steps, kl_warmup_start: the KL weight's linear warm-up.
        free_bits: :math:`\lambda`, a floor on each layer's batch-mean KL in :meth:`loss`
            (free bits with one group per layer, Kingma et al., 2016).
        name: the prefix in Pyro's parameter store.

    Example:
        >>> import torch, pyro
        >>> m = HierarchicalVAE((20,), [4, 2], hidden_dims=[16], stage_dims=[8], flow="iaf")
        >>> x = torch.bernoulli(torch.full((5, 20), 0.3))
        >>> svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      pyro.infer.Trace_ELBO())
        >>> loss = svi.step(x)
        >>> [t.shape for t in m.elbo_terms(x)["kl"]], m.sample(3).shape
        ([torch.Size([5]), torch.Size([5])], torch.Size([3, 20]))
        >>> pyro.clear_param_store()
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dims: Sequence[int] = (32, 32),
        *,
        hidden_dims: Sequence[int] = (256, 256),
        stage_dims: Sequence[int] = (128,),
        inference: str = "top-down",
        likelihood: str = "bernoulli",
        num_levels: int = 256,
        flow: str | Callable[[int, int, int], Sequence[object]] | None = None,
        num_flows: int | None = None,
        amortized: bool = True,
        flow_hidden_dims: Sequence[int] | None = None,
        min_scale: float = 0.0,
        kl_warmup_steps: int = 0,
        kl_warmup_start: float = 0.01,
        free_bits: float = 0.0,
        name: str = "hvae",
    ) -> None:
        super().__init__()
        self._setup_latent_model(
            data_shape, likelihood, num_levels, kl_warmup_steps, kl_warmup_start, free_bits, name
        )
        self.latent_dims = _dims("latent_dims", latent_dims)
        self.num_latent_layers = len(self.latent_dims)
        hidden = _dims("hidden_dims", hidden_dims)
        stage = _dims("stage_dims", stage_dims)
        if inference not in INFERENCE:
            raise ValueError(f"inference: expected one of {list(INFERENCE)}, got {inference!r}")
        self.inference = inference
        self._check_flow(flow, amortized)
        dims, n_layers = self.latent_dims, self.num_latent_layers
        feat, t = hidden[-1], stage[-1]

        self.encoder = mlp_encoder(self.data_shape, hidden)
        self.decoder = mlp_decoder(dims[0], self.data_shape, hidden, self._m)
        # p(z_l | z_{l+1}) = N(mu(t_l), sigma(t_l)), t_l = MLP(z_{l+1}), l = 1 .. L-1
        self.prior_nets = nn.ModuleList(_mlp([dims[i + 1], *stage]) for i in range(n_layers - 1))
        self.prior_heads = nn.ModuleList(ConditionalNormal(t, dims[i]) for i in range(n_layers - 1))
        # the guide's deterministic path: features of z_{l-1} (bottom-up) or of d_{l-1}
        # (top-down), one MLP per layer above the first
        if inference == "bottom-up":
            self.up_nets = nn.ModuleList(_mlp([dims[i - 1], *stage]) for i in range(1, n_layers))
            contexts = [feat] + [t] * (n_layers - 1)
        else:
            self.up_nets = nn.ModuleList(
                _mlp([feat if i == 1 else t, *stage]) for i in range(1, n_layers)
            )
            below = [feat] + [t] * (n_layers - 1)  # the width of d_l
            contexts = [below[i] + t for i in range(n_layers - 1)] + [below[-1]]
        self.context_dims = contexts
        flows = []
        for i in range(n_layers):
            spec = flow(i, dims[i], contexts[i]) if callable(flow) else flow
            flows.append(
                _guide_flow(
                    dims[i], contexts[i], spec, num_flows, amortized, flow_hidden_dims,
                    ConditionalNormal(contexts[i], dims[i], min_scale=min_scale),
                )
            )  # fmt: skip
        self.flows = nn.ModuleList(flows)

    def latent_shape(self, index: int) -> torch.Size:
        return torch.Size([self.latent_dims[index]])

    # ------------------------------------------------------------------ the distributions
    def _prior(self, index: int, parent: torch.Tensor | None, num: int) -> dist.Distribution:
        if parent is None:
            loc = self._zero.expand(num, self.latent_dims[index])
            return dist.Normal(loc, torch.ones_like(loc)).to_event(1)
        return self.prior_heads[index](self.prior_nets[index](parent))

    def _prior_from_noise(
        self, index: int, parent: torch.Tensor | None, eps: torch.Tensor
    ) -> torch.Tensor:
        if parent is None:
            return eps
        base = self._prior(index, parent, eps.shape[0]).base_dist
        return base.loc + base.scale * eps

    def decode(self, z1: torch.Tensor) -> dist.Distribution:
        """:math:`p(x \\mid z_1)` for ``z1`` of shape ``(..., latent_dims[0])``: batch
        ``(...)``, event ``data_shape``."""
        lead = z1.shape[:-1]
        return self._observation(self.decoder(z1.reshape(-1, self.latent_dims[0])), lead)

    def _draw_x(self, d: dist.Distribution, generator: torch.Generator | None) -> torch.Tensor:
        return self._draw_observation(d, generator)

    def _guide_walk(
        self, x: torch.Tensor, draw: Callable[[int, dist.Distribution], torch.Tensor]
    ) -> list[torch.Tensor]:
        n_layers = self.num_latent_layers
        h = self.encoder(self._as_input(x))
        zs: list[torch.Tensor] = [h] * n_layers  # placeholders, replaced below
        if self.inference == "bottom-up":
            context = h
            for i in range(n_layers):
                zs[i] = draw(i, self.flows[i](context))
                if i + 1 < n_layers:
                    context = self.up_nets[i](zs[i])
            return zs
        ds = [h]
        for net in self.up_nets:
            ds.append(net(ds[-1]))
        zs[-1] = draw(n_layers - 1, self.flows[-1](ds[-1]))
        for i in reversed(range(n_layers - 1)):
            t = self.prior_nets[i](zs[i + 1])
            d = ds[i].expand(*t.shape[:-1], ds[i].shape[-1])
            zs[i] = draw(i, self.flows[i](torch.cat([d, t], -1)))
        return zs

    def extra_repr(self) -> str:
        return (
            f"data_shape={tuple(self.data_shape)}, latent_dims={self.latent_dims}, "
            f"inference={self.inference!r}, likelihood={self.likelihood!r}, "
            f"flow={self.flow_kind!r}"
        )
