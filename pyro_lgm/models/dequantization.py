r"""Variational dequantization (Ho et al., 2019, Flow++, Section 3.1) as a Pyro program.

A density model :math:`p(v)` of continuous images :math:`v \in [0, 2^n)^D` is fitted to
integer images :math:`x \in \{0, \dots, 2^n - 1\}^D` through the noise
:math:`u \in [0, 1)^D` that fills each integer's unit cell, :math:`v = x + u`. For any
density :math:`q(u \mid x)` on the unit cube, Jensen's inequality gives a lower bound on
the discrete model's log-likelihood :math:`P(x) = \int_{[0,1)^D} p(x + u)\,du`:

.. math::
    \log P(x) \;\ge\; \mathbb E_{q(u \mid x)}
    \bigl[\log p(x + u) - \log q(u \mid x)\bigr].

Uniform dequantization (RealNVP, Glow) is the case :math:`q = U[0, 1)^D`, whose
:math:`\log q` is zero: the bound is :math:`\mathbb E \log p(x + u)` and the model is
forced to spread its mass evenly over every cell, which a smooth flow cannot do. Flow++
instead learns :math:`q` as a conditional flow,

.. math::
    u = \sigma\bigl(g_x(\epsilon)\bigr), \qquad \epsilon \sim N(0, I_D), \qquad
    \log q(u \mid x) = \log N(\epsilon; 0, I)
        - \log\Bigl|\det \frac{\partial g_x}{\partial \epsilon}\Bigr|
        - \sum_i \log \sigma'\bigl(g_x(\epsilon)_i\bigr),

with :math:`g_x` a stack of coupling layers conditioned on features of :math:`x` and
:math:`\sigma` the logistic sigmoid onto :math:`(0, 1)`. The bound becomes tight when
:math:`q(u \mid x) = p(x + u) / P(x)`, and the gap is
:math:`\mathrm{KL}\bigl(q(u \mid x) \,\|\, p(x + u) / P(x)\bigr)`. Both :math:`p` and
:math:`q` are trained jointly by maximizing the bound, and the importance-weighted bound
(Burda et al., 2016)

.. math::
    \log P(x) \;\ge\; \mathbb E \log \frac1S \sum_{s=1}^S
    \frac{p(x + u_s)}{q(u_s \mid x)}, \qquad u_s \sim q(u \mid x),

tightens with :math:`S` (Flow++ reports test bits/dim with it).

Here the pair is a Pyro model and guide (:class:`VariationalDequantization`): the model
draws ``"u"`` from the uniform prior on the cube and observes ``"v" = x + u`` under the flow;
the guide draws ``"u"`` from :math:`q(u \mid x)`. Because the prior's density is one on the
cube, ``Trace_ELBO`` optimizes exactly the bound above and trains the flow and the
dequantizer together.

References:
    J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
    Generative Models with Variational Dequantization and Architecture Design*. ICML 2019.
    https://arxiv.org/abs/1902.00275
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import Transform
from torch.distributions.transforms import SigmoidTransform

from pyro_lgm.metrics import nats_to_bits_per_dim
from pyro_lgm.models._store import register_module
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._image import check_int
from pyro_lgm.transforms.image_coupling import conditional_image_affine_coupling
from pyro_lgm.transforms.mixture_cdf import conditional_image_mixture_logistic_coupling
from pyro_lgm.transforms.reshape import _check_shape

__all__ = [
    "DEQUANTIZER_COUPLINGS",
    "Dequantizer",
    "UniformDequantizer",
    "VariationalDequantization",
    "variational_dequantizer",
]


# ------------------------------------------------------------------------------ input checks
def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"bits: expected an integer in [1, 24], got {bits!r}")
    return bits


def _check_levels(
    name: str,
    x: object,
    shape: tuple[int, ...],
    bits: int,
    dtype: torch.dtype,
    device: torch.device | None = None,
    batch_dims: int | None = None,
) -> torch.Tensor:
    """``x`` as a ``dtype`` tensor after checking it holds integer levels of ``shape``.

    Raises ``ValueError`` naming ``name`` unless ``x`` is a real tensor of shape
    ``(..., *shape)`` (exactly ``batch_dims`` leading dimensions when given) whose values
    are integers in ``[0, 2^bits)``.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of integer levels, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name}: expected a real tensor of integer levels, got dtype {x.dtype}")
    n = len(shape)
    lead = "N, " if batch_dims == 1 else "..., "
    if (
        x.dim() < n
        or tuple(x.shape[-n:]) != tuple(shape)
        or (batch_dims is not None and x.dim() != n + batch_dims)
    ):
        raise ValueError(
            f"{name}: expected shape ({lead}{', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    top = 2**bits - 1
    if x.numel():
        ok = (x >= 0) & (x <= top)
        if x.is_floating_point():
            ok = ok & (x == torch.floor(x))  # NaN and inf fail here too
        if not bool(ok.all()):
            bad = x[~ok][0].item()
            raise ValueError(
                f"{name}: expected integer levels in {{0, ..., {top}}} ({bits} bits), got {bad!r}"
            )
    return x.to(dtype=dtype, device=device if device is not None else x.device)


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _with_pair_cache(t: Transform) -> Transform:
    """``t`` with its pair / log-det cache on (``cache_size=1``).

    ``with_cache(1)`` where the transform implements it; otherwise a layer of the library
    (a :class:`~pyro_lgm.transforms._cached.CachedTransform`, whose caches are stamped and
    therefore safe to switch on) freshly returned by ``condition()`` is switched on in
    place: nothing else holds it. Other transforms are used as they are (correct, but a
    ``log_prob`` after ``rsample`` then runs their other direction).
    """
    if getattr(t, "_cache_size", 1) == 1:
        return t
    try:
        return t.with_cache(1)
    except NotImplementedError:
        pass
    if isinstance(t, CachedTransform):
        t._cache_size = 1
    return t


# ------------------------------------------------------------------------------ dequantizers
class UniformDequantizer(nn.Module):
    r"""Uniform dequantization :math:`q(u \mid x) = U[0, 1)^D` as a dequantizer module.

    .. math::
        q(u \mid x) = 1 \quad \text{for } u \in [0, 1)^D,

    the special case of :class:`Dequantizer` without parameters (RealNVP, Glow): with it,
    :class:`VariationalDequantization` computes the same bound as
    :meth:`~pyro_lgm.models.glow.ImageFlow.log_likelihood`.

    References:
        L. Theis, A. van den Oord, M. Bethge. *A note on the evaluation of generative
        models*. ICLR 2016.

    Args:
        shape: the image shape ``(C, H, W)``.
        bits: bits per value of the data.

    Shapes:
        ``x``: ``(..., C, H, W)`` integer levels; the returned distribution has batch shape
        ``(...)`` and event shape ``(C, H, W)``.

    Example:
        >>> import torch
        >>> q = UniformDequantizer((1, 2, 2))(torch.tensor([[[[0, 3], [255, 7]]]]))
        >>> q.batch_shape, q.event_shape, float(q.log_prob(torch.full((1, 1, 2, 2), 0.5)))
        (torch.Size([1]), torch.Size([1, 2, 2]), 0.0)
    """

    def __init__(self, shape: Sequence[int], bits: int = 8) -> None:
        super().__init__()
        self.shape = _check_shape(shape)
        self.bits = _check_bits(bits)

    def forward(self, x: torch.Tensor) -> dist.Distribution:
        """:math:`U[0, 1)^D` with the batch shape of ``x`` ``(..., C, H, W)``."""
        dtype = _float_dtype(x) if isinstance(x, torch.Tensor) else torch.float32
        x = _check_levels("x", x, self.shape, self.bits, dtype)
        zeros = torch.zeros_like(x)
        return dist.Uniform(zeros, torch.ones_like(x)).to_event(len(self.shape))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bits={self.bits}"


class Dequantizer(nn.Module):
    r"""Flow++'s variational dequantization noise :math:`q(u \mid x)`, a conditional flow.

    .. math::
        u = \sigma\bigl(g_K \circ \dots \circ g_1(\epsilon)\bigr), \qquad
        \epsilon \sim N(0, I_D), \qquad g_k = f_k(\,\cdot\,; c(x)),

    where :math:`c(x)` is ``context_net`` applied to :math:`x / 2^n - 1/2` (the identity if
    none is given), each :math:`f_k` a conditional transform bound to it by
    ``condition(c(x))``, and :math:`\sigma` the logistic sigmoid (torch's
    ``SigmoidTransform``), so :math:`u \in (0, 1)^D` and

    .. math::
        \log q(u \mid x) = \log N(\epsilon; 0, I)
            - \sum_k \log\bigl|\det J_{g_k}\bigr| - \sum_i \log \sigma'(\cdot)_i.

    **Which direction samples.** With ``inverse=False`` the flow is applied as the
    transforms' call, :math:`g_k = f_k`. With ``inverse=True`` it is applied as their
    inverse, :math:`g_k = f_k^{-1}`: use this for layers that are cheap in the
    data-to-latent direction only (Flow++'s mixture-of-logistics CDF couplings, written in the
    density direction like the library's couplings), so that sampling is the cheap
    direction. Either way every layer is bound with its pair and log-det cache on, so
    ``log_prob(u)`` of a ``u`` the distribution has just sampled reads each layer's input and
    log-determinant from the cache and never runs the other direction (the ``rsample`` ->
    ``log_prob`` pattern of ``Trace_ELBO``'s guide). ``log_prob`` of any other ``u``
    inverts the flow.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        shape: the image shape ``(C, H, W)``.
        transforms: transforms on ``(C, H, W)`` tensors in sampling order, each conditional
            (with ``condition(context_map)``, e.g.
            :func:`~pyro_lgm.transforms.conditional_image_affine_coupling` with a context
            image) or plain. Modules among them are registered so their parameters train.
        context_net: a module mapping ``(N, C, H, W)`` scaled images to the context maps
            ``(N, C_c, H, W)`` (``None``: the scaled image itself is the context).
        bits: bits per value of the data.
        inverse: apply each transform through ``.inv`` (see above).
        base: the distribution of :math:`\epsilon`: ``"normal"``, :math:`N(0, I)` as in
            Flow++, or ``"logistic"``, the standard logistic, whose image under the sigmoid
            is exactly :math:`U(0, 1)`: a dequantizer whose layers are the identity (a new
            one) is then uniform dequantization, where a normal base starts from
            :math:`\sigma(N(0, 1))`, about 0.2 nats per dimension less entropy. The
            logistic is drawn as :math:`\mathrm{logit}(U)`, :math:`U \sim U[\mathrm{tiny},
            1)`, so it is finite.

    Shapes:
        ``x``: ``(..., C, H, W)`` integer levels (a float or an integer tensor); the
        returned distribution has batch shape ``(...)`` and event shape ``(C, H, W)``.

    Example:
        >>> import torch
        >>> q = variational_dequantizer((1, 4, 4), steps=2, hidden=8)
        >>> x = torch.randint(0, 256, (3, 1, 4, 4))
        >>> u = q(x).rsample()
        >>> u.shape, bool(((0 < u) & (u < 1)).all()), q(x).log_prob(u).shape
        (torch.Size([3, 1, 4, 4]), True, torch.Size([3]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        transforms: Sequence[object],
        context_net: nn.Module | None = None,
        bits: int = 8,
        inverse: bool = False,
        base: str = "normal",
    ) -> None:
        super().__init__()
        self.shape = _check_shape(shape)
        self.bits = _check_bits(bits)
        if base not in ("normal", "logistic"):
            raise ValueError(f"base: expected 'normal' or 'logistic', got {base!r}")
        self.base = base
        if not isinstance(inverse, bool):
            raise ValueError(f"inverse: expected True or False, got {inverse!r}")
        self.inverse = inverse
        if isinstance(transforms, Transform) or not isinstance(transforms, Sequence):
            raise ValueError(f"transforms: expected a sequence of transforms, got {transforms!r}")
        for i, t in enumerate(transforms):
            if not (isinstance(t, Transform) or callable(getattr(t, "condition", None))):
                raise ValueError(
                    f"transforms[{i}]: expected a Transform or a conditional transform with "
                    f"condition(context), got {type(t).__name__}"
                )
        self.transforms = list(transforms)
        self.layers = nn.ModuleList([t for t in self.transforms if isinstance(t, nn.Module)])
        if context_net is not None and not isinstance(context_net, nn.Module):
            raise ValueError(f"context_net: expected an nn.Module or None, got {context_net!r}")
        self.context_net = context_net
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        ref = next(iter(self.parameters()), self._ref)
        return ref.dtype, ref.device

    def context(self, x: torch.Tensor) -> torch.Tensor:
        r"""The context maps :math:`c(x)`, ``(..., C_c, H, W)``, of integer images ``x``."""
        dtype, device = self._dtype_device()
        x = _check_levels("x", x, self.shape, self.bits, dtype, device)
        scaled = x / 2**self.bits - 0.5
        if self.context_net is None:
            return scaled
        batch = scaled.shape[:-3]
        out = self.context_net(scaled.reshape(-1, *self.shape))
        n = math.prod(batch)
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != n:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"context_net: expected an output (N, C_c, H, W), got {got}")
        return out.reshape(*batch, *out.shape[1:])

    def forward(self, x: torch.Tensor) -> dist.TransformedDistribution:
        r""":math:`q(u \mid x)` for integer images ``x`` ``(..., C, H, W)``."""
        ctx = self.context(x)
        dtype, device = self._dtype_device()
        loc = torch.zeros(ctx.shape[:-3] + self.shape, dtype=dtype, device=device)
        ts: list[Transform] = []
        if self.base == "normal":
            base = dist.Normal(loc, torch.ones_like(loc)).to_event(len(self.shape))
        else:
            # the standard logistic as logit(U), U uniform on [tiny, 1): finite everywhere
            low = torch.full_like(loc, torch.finfo(dtype).tiny)
            base = dist.Uniform(low, torch.ones_like(loc)).to_event(len(self.shape))
            ts.append(SigmoidTransform(cache_size=1).inv)
        for t in self.transforms:
            bound = t.condition(ctx) if not isinstance(t, Transform) else t
            bound = _with_pair_cache(bound)
            ts.append(bound.inv if self.inverse else bound)
        ts.append(SigmoidTransform(cache_size=1))
        return dist.TransformedDistribution(base, ts)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bits={self.bits}, inverse={self.inverse}, base={self.base!r}"


# ------------------------------------------------------------------------------ builder
def _hidden_by_keyword(builder: Callable[..., Transform]) -> Callable[..., Transform]:
    """A coupling helper of :mod:`pyro_lgm.transforms` as a dequantizer coupling builder."""

    def build(
        channels: int,
        context_shape: tuple[int, int, int],
        mask: str,
        invert: bool,
        hidden: int,
        **options: object,
    ) -> Transform:
        return builder(channels, context_shape, mask, invert, hidden=hidden, **options)

    return build


#: The conditional couplings :func:`variational_dequantizer` can stack, by name. A builder is
#: called as ``builder(channels, context_shape, mask, invert, hidden, **coupling_options)``
#: (``mask`` ``"checkerboard"`` or ``"channel"``, ``context_shape`` ``(C_c, H, W)``) and
#: returns a conditional transform whose ``condition(context_map)`` gives the layer.
DEQUANTIZER_COUPLINGS: dict[str, Callable[..., object]] = {
    "affine": _hidden_by_keyword(conditional_image_affine_coupling),
    "mixture": _hidden_by_keyword(conditional_image_mixture_logistic_coupling),
}

# The direction each coupling samples in by default: a mixture coupling's closed-form
# direction is its inverse (its call runs a root finder), so the dequantizer uses ``.inv``.
_SAMPLE_THROUGH_INVERSE = {"affine": False, "mixture": True}


def _context_net(channels: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """3x3 convolutions with ReLUs: ``(N, C, H, W)`` -> ``(N, out, H, W)``."""
    mods: list[nn.Module] = []
    c = channels
    for _ in range(layers):
        mods += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU()]
        c = hidden
    mods.append(nn.Conv2d(c, out, 3, padding=1))
    return nn.Sequential(*mods)


def variational_dequantizer(
    shape: Sequence[int],
    bits: int = 8,
    steps: int = 4,
    hidden: int = 32,
    coupling: str = "affine",
    context_channels: int = 8,
    context_layers: int = 2,
    inverse: bool | None = None,
    base: str = "normal",
    **coupling_options: object,
) -> Dequantizer:
    r"""A Flow++-style :class:`Dequantizer`: a conv net of :math:`x` conditions ``steps``
    couplings.

    The context :math:`c(x)` is ``context_layers`` 3x3 convolutions of ``hidden`` channels
    with ReLUs and a 3x3 convolution to ``context_channels`` maps, applied to
    :math:`x / 2^n - 1/2`. The couplings alternate checkerboard and channel masks (images
    with one channel use checkerboards only), each mask kind alternating which half it
    transforms, so that after four steps every element has been transformed; each reads
    the context maps alongside its conditioning half. A new dequantizer's couplings are the
    identity (zero-initialised last layers), so it starts at
    :math:`u = \sigma(\epsilon)` (uniform with ``base="logistic"``).

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019.

    Args:
        shape: ``(C, H, W)``; ``H`` and ``W`` even for a checkerboard to cover the image.
        bits: bits per value of the data.
        steps: number of couplings ``K``.
        hidden: channels of the context net and of each coupling's conditioner.
        coupling: a key of :data:`DEQUANTIZER_COUPLINGS`: ``"affine"``
            (:func:`~pyro_lgm.transforms.conditional_image_affine_coupling`) or ``"mixture"``
            (Flow++'s, :func:`~pyro_lgm.transforms.conditional_image_mixture_logistic_coupling`).
        context_channels: ``C_c``, channels of the context maps.
        context_layers: hidden convolutions of the context net.
        inverse: sample through the couplings' inverses (see :class:`Dequantizer`); by
            default ``True`` for ``"mixture"`` (whose inverse is the closed-form direction)
            and ``False`` for ``"affine"``.
        base: ``"normal"`` (Flow++) or ``"logistic"`` (starts as uniform dequantization;
            see :class:`Dequantizer`).
        coupling_options: passed to the coupling builder (for ``"affine"``: ``net``,
            ``blocks``, ``scale``, ``log_scale_bound``; for ``"mixture"``:
            ``num_components``, ``net``, ``blocks``, ``log_scale_bound``).

    Returns:
        A :class:`Dequantizer`.

    Example:
        >>> q = variational_dequantizer((3, 4, 4), steps=4, hidden=8)
        >>> [(t.layer.mask_kind[:5], t.layer.invert) for t in q.transforms]
        [('check', False), ('chann', False), ('check', True), ('chann', True)]
    """
    c, h, w = _check_shape(shape)
    check_int("steps", steps, 1)
    check_int("hidden", hidden, 1)
    check_int("context_channels", context_channels, 1)
    check_int("context_layers", context_layers, 0)
    if coupling not in DEQUANTIZER_COUPLINGS:
        raise ValueError(
            f"coupling: expected one of {sorted(DEQUANTIZER_COUPLINGS)}, got {coupling!r}"
        )
    build = DEQUANTIZER_COUPLINGS[coupling]
    kinds = ("checkerboard", "channel") if c >= 2 else ("checkerboard",)
    seen = dict.fromkeys(kinds, 0)
    transforms = []
    for k in range(steps):
        mask = kinds[k % len(kinds)]
        transforms.append(
            build(
                c, (context_channels, h, w), mask, seen[mask] % 2 == 1, hidden, **coupling_options
            )
        )
        seen[mask] += 1
    net = _context_net(c, hidden, context_channels, context_layers)
    if inverse is None:
        inverse = _SAMPLE_THROUGH_INVERSE.get(coupling, False)
    return Dequantizer((c, h, w), transforms, net, bits=bits, inverse=inverse, base=base)


# ------------------------------------------------------------------------------ the program
class VariationalDequantization(PyroModule):
    r"""A flow over dequantized images and a dequantizer, as a Pyro model / guide pair.

    .. math::
        \text{model:}\quad u \sim U[0, 1)^D, \quad v = x + u \sim p(v); \qquad
        \text{guide:}\quad u \sim q(u \mid x),

    so ``Trace_ELBO`` maximizes (with one sample, in expectation)

    .. math::
        \mathcal L(x) = \mathbb E_{q(u \mid x)}\bigl[\log p(x + u) - \log q(u \mid x)\bigr]
        \;\le\; \log P(x),

    training the flow :math:`p` and the dequantizer :math:`q` together (Ho et al., 2019,
    Sec. 3.1). The model's ``"u"`` prior has density one on the cube, so the weights
    :math:`p(x + u) / q(u \mid x)` are those of the discrete likelihood
    :math:`P(x) = \int p(x + u)\,du`. With a :class:`UniformDequantizer` the bound is the
    uniform one of RealNVP and Glow.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design*.
        ICML 2019. Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted
        Autoencoders*. ICLR 2016.

    Args:
        flow: a module whose call ``flow()`` returns a distribution over dequantized images
            :math:`v \in [0, 2^n)^{C \times H \times W}`, e.g. an
            :class:`~pyro_lgm.models.glow.ImageFlow` from
            :func:`~pyro_lgm.models.glow.glow`.
        dequantizer: a :class:`Dequantizer` or :class:`UniformDequantizer` of the flow's
            shape and bits.
        name: the prefix of the parameters' names in Pyro's parameter store.

    Shapes:
        ``x``: ``(N, C, H, W)`` integer levels in :math:`[0, 2^n)`, float or integer dtype;
        the bounds are ``(N,)``.

    Example:
        >>> import torch, pyro
        >>> from pyro_lgm.models.glow import glow
        >>> flow = glow((1, 4, 4), levels=1, steps=1, hidden=8)
        >>> vd = VariationalDequantization(flow, variational_dequantizer((1, 4, 4), hidden=8))
        >>> x = torch.randint(0, 256, (5, 1, 4, 4))
        >>> svi = pyro.infer.SVI(vd.model, vd.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      pyro.infer.Trace_ELBO())
        >>> loss = svi.step(x)
        >>> vd.elbo(x).shape, vd.iwae(x, num_samples=4).shape, vd.bits_per_dim(x).shape
        (torch.Size([5]), torch.Size([5]), torch.Size([5]))
        >>> pyro.clear_param_store()
    """

    def __init__(
        self,
        flow: nn.Module,
        dequantizer: nn.Module,
        name: str = "deq",
    ) -> None:
        super().__init__()
        if not isinstance(flow, nn.Module):
            raise ValueError(f"flow: expected an nn.Module returning a distribution, got {flow!r}")
        d = flow()
        if not isinstance(d, torch.distributions.Distribution):
            raise ValueError(f"flow: its call must return a Distribution, got {type(d).__name__}")
        if not isinstance(dequantizer, Dequantizer | UniformDequantizer):
            raise ValueError(
                f"dequantizer: expected a Dequantizer or a UniformDequantizer, got "
                f"{type(dequantizer).__name__}"
            )
        if tuple(d.event_shape) != dequantizer.shape:
            raise ValueError(
                f"dequantizer: its shape {dequantizer.shape} differs from the flow's event "
                f"shape {tuple(d.event_shape)}"
            )
        flow_bits = getattr(flow, "bits", dequantizer.bits)
        if flow_bits != dequantizer.bits:
            raise ValueError(
                f"dequantizer: bits={dequantizer.bits} differs from the flow's bits={flow_bits}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.flow = flow
        self.dequantizer = dequantizer
        self.shape = dequantizer.shape
        self.bits = dequantizer.bits
        self.name = name
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    @property
    def num_dims(self) -> int:
        """``D = C H W``."""
        return math.prod(self.shape)

    def _check_x(self, x: object) -> torch.Tensor:
        ref = next(iter(self.parameters()), self._ref)
        return _check_levels("x", x, self.shape, self.bits, ref.dtype, ref.device, batch_dims=1)

    @staticmethod
    def _shift(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``v = x + u``, a sum that rounds up to ``x + 1`` moved just below it (as
        :meth:`~pyro_lgm.transforms.UniformDequantize.dequantize` does)."""
        return torch.minimum(x + u, torch.nextafter(x + 1, x))

    def _register(self) -> None:
        """``pyro.module`` for SVI, refusing a store that holds another module's tensors
        under this module's names (one of the two would silently not train)."""
        # update_module_params: the store keeps contiguous copies of the parameters, and
        # channels-last convolution weights (the image couplings' conditioners) are copied;
        # without the update the module would keep using its own, untrained, tensors
        register_module(self.name, self, update_module_params=True)

    def _prior(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Uniform(torch.zeros_like(x), torch.ones_like(x)).to_event(len(self.shape))

    def model(self, x: torch.Tensor) -> None:
        """``u ~ U[0, 1)^D`` (site ``"u"``), ``x + u`` observed under the flow (site ``"v"``)."""
        x = self._check_x(x)
        self._register()
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", self._prior(x))
            pyro.sample("v", self.flow(), obs=self._shift(x, u))

    def guide(self, x: torch.Tensor) -> None:
        r"""``u ~ q(u | x)`` (site ``"u"``), the dequantizer's distribution."""
        x = self._check_x(x)
        self._register()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("u", self.dequantizer(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""A differentiable one-sample estimate of :math:`-\mathcal L(x)` in nats, ``(N,)``.

        :math:`-(\log p(x + u) - \log q(u \mid x))` with :math:`u \sim q(u \mid x)` drawn by
        ``rsample``: the loss ``Trace_ELBO`` minimizes, for training loops that do not use
        Pyro (:func:`pyro_lgm.train.fit` with ``loss="mle"``, ``pyro-lgm train flowpp``).
        """
        x = self._check_x(x)
        q = self.dequantizer(x)
        u = q.rsample()
        return q.log_prob(u) - self.flow().log_prob(self._shift(x, u))

    def log_weights(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        r"""Log importance weights :math:`\log p(x + u_s) - \log q(u_s \mid x)`, ``(S, N)``.

        The weights of the model / guide pair (the prior's :math:`\log 1` included),
        computed without gradients; each ``log_prob`` of a fresh sample reads the
        dequantizer's caches (no inverse pass).
        """
        check_int("num_samples", num_samples, 1)
        x = self._check_x(x)
        with torch.no_grad():
            q = self.dequantizer(x).expand((num_samples, x.shape[0]))
            u = q.sample()
            log_q = q.log_prob(u)
            log_p = self.flow().log_prob(self._shift(x, u)) + self._prior(x).log_prob(u)
        return log_p - log_q

    def _chunks(self, num_samples: int, chunk_size: int) -> list[int]:
        check_int("num_samples", num_samples, 1)
        check_int("chunk_size", chunk_size, 1)
        return [min(chunk_size, num_samples - i) for i in range(0, num_samples, chunk_size)]

    def elbo(self, x: torch.Tensor, num_samples: int = 1, chunk_size: int = 256) -> torch.Tensor:
        r"""The Monte Carlo ELBO per image in nats, :math:`\frac1S \sum_s \log w_s`, ``(N,)``.

        Args:
            x: ``(N, C, H, W)`` integer levels.
            num_samples: ``S``.
            chunk_size: samples per pass (bounds the memory).
        """
        x = self._check_x(x)
        total: torch.Tensor | float = 0.0
        for c in self._chunks(num_samples, chunk_size):
            total = total + self.log_weights(x, c).sum(0)
        return total / num_samples  # type: ignore[return-value]

    def iwae(self, x: torch.Tensor, num_samples: int = 64, chunk_size: int = 256) -> torch.Tensor:
        r"""The importance-weighted bound per image in nats, ``(N,)``.

        .. math::
            \mathcal L_S(x) = \log \frac1S \sum_{s=1}^S
            \frac{p(x + u_s)}{q(u_s \mid x)}, \qquad u_s \sim q(u \mid x),

        non-decreasing in :math:`S` in expectation and tending to :math:`\log P(x)`
        (Burda et al., 2016); the chunks are combined by a running ``logsumexp``.

        Args:
            x: ``(N, C, H, W)`` integer levels.
            num_samples: ``S``.
            chunk_size: samples per pass (bounds the memory).
        """
        x = self._check_x(x)
        total: torch.Tensor | None = None
        for c in self._chunks(num_samples, chunk_size):
            lse = torch.logsumexp(self.log_weights(x, c), 0)
            total = lse if total is None else torch.logaddexp(total, lse)
        return total - math.log(num_samples)  # type: ignore[operator]

    def bits_per_dim(
        self,
        x: torch.Tensor,
        num_samples: int = 1,
        bound: str = "elbo",
        chunk_size: int = 256,
    ) -> torch.Tensor:
        r"""``-bound / (D log 2)`` per image, ``(N,)``: an upper bound on the bits/dim of
        :math:`P(x)` in expectation.

        The flow's density is over :math:`v \in [0, 2^n)^D` itself, so no further
        correction applies (the bits/dim rule of the design notes).

        Args:
            x: ``(N, C, H, W)`` integer levels.
            num_samples: ``S``.
            bound: ``"elbo"`` or ``"iwae"``.
            chunk_size: samples per pass.
        """
        if bound == "elbo":
            value = self.elbo(x, num_samples, chunk_size)
        elif bound == "iwae":
            value = self.iwae(x, num_samples, chunk_size)
        else:
            raise ValueError(f"bound: expected 'elbo' or 'iwae', got {bound!r}")
        return nats_to_bits_per_dim(-value, self.num_dims)  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bits={self.bits}, name={self.name!r}"
