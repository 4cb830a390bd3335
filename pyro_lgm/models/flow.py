"""A flow model: an ``nn.Module`` that owns its transforms and returns a distribution.

Every flow in the library (planar stacks, MAF, IAF, NICE, RealNVP, later Glow and Flow++)
is a :class:`Flow`: calling it returns a
:class:`~pyro.distributions.TransformedDistribution` over a standard-normal base bound to
the current parameters, so ``log_prob``, ``sample``, ``pyro.sample(..., obs=x)`` and
composition need no special path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Transform

from pyro_lgm.nn.dense import DenseNN
from pyro_lgm.transforms._common import (
    _check_hidden_dims,
    _check_positive_int,
    _check_vector_input,
)

__all__ = ["BaseLike", "ConditionalNormal", "Flow"]

#: What ``Flow(..., base=...)`` and the flow builders accept as a base distribution.
BaseLike = torch.distributions.Distribution | nn.Module | None


def _check_event_shape(event_shape: object) -> torch.Size:
    if isinstance(event_shape, torch.Size | tuple | list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in event_shape
    ):
        if len(event_shape) >= 1:
            return torch.Size(event_shape)
    raise ValueError(
        f"event_shape: expected a non-empty sequence of positive ints such as (2,) or "
        f"(1, 28, 28), got {event_shape!r}"
    )


def _declared_input_dim(t: object) -> int | None:
    """The vector size a transform declares (through ``.inv`` and conditional wrappers)."""
    for obj in (t, getattr(t, "_inv", None), getattr(t, "base", None)):
        d = getattr(obj, "input_dim", None)
        if isinstance(d, int) and not isinstance(d, bool):
            return d
    return None


def _check_transforms(transforms: object, event_shape: torch.Size) -> list:
    """Each entry is a (conditional) transform that accepts the shape the previous gives."""
    if isinstance(transforms, Transform | dist.ConditionalTransform) or not isinstance(
        transforms, Sequence
    ):
        raise ValueError(f"transforms: expected a sequence of transforms, got {transforms!r}")
    shape = event_shape
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform | dist.ConditionalTransform):
            raise ValueError(
                f"transforms[{i}]: expected a torch.distributions.Transform or a Pyro "
                f"ConditionalTransform, got {type(t).__name__}"
            )
        d = _declared_input_dim(t)
        if d is not None and len(shape) == 1 and shape[-1] != d:
            raise ValueError(
                f"transforms[{i}]: {type(t).__name__} acts on vectors of size {d}, but the "
                f"events reaching it have shape {tuple(shape)}"
            )
        if isinstance(t, Transform):
            try:
                shape = torch.Size(t.forward_shape(shape))
            except (RuntimeError, ValueError) as e:
                raise ValueError(
                    f"transforms[{i}]: {type(t).__name__} does not accept events of shape "
                    f"{tuple(shape)} ({e})"
                ) from None
    return list(transforms)


def _check_base_dist(name: str, d: object, event_shape: torch.Size) -> None:
    if not isinstance(d, torch.distributions.Distribution):
        raise ValueError(
            f"{name}: expected a torch.distributions.Distribution, got {type(d).__name__}"
        )
    if d.event_shape != event_shape:
        raise ValueError(
            f"{name}: expected event shape {tuple(event_shape)} (the flow's), got "
            f"{tuple(d.event_shape)}; use .to_event() to declare event dimensions"
        )


def _check_base(
    base: object, event_shape: torch.Size
) -> tuple[torch.distributions.Distribution | None, nn.Module | None]:
    """Split ``base`` into a fixed distribution or a module that returns one."""
    if base is None:
        return None, None
    if isinstance(base, torch.distributions.Distribution):
        _check_base_dist("base", base, event_shape)
        return base, None
    if isinstance(base, nn.Module):
        return None, base
    raise ValueError(
        f"base: expected None, a torch.distributions.Distribution or an nn.Module that "
        f"returns one, got {type(base).__name__}"
    )


class Flow(nn.Module):
    r"""A normalizing flow :math:`x = f_K \circ \dots \circ f_1(z)`, :math:`z \sim p_0`.

    .. math::
        \log p(x) = \log p_0(f^{-1}(x)) - \sum_k \log |\det J_{f_k}|

    The base :math:`p_0` is :math:`N(0, I)` unless ``base`` says otherwise; it may depend on
    the context, as the encoder's Gaussian :math:`N(\mu(x), \sigma^2(x))` of a VAE guide
    pushed through the flow (Rezende & Mohamed, 2015).

    Args:
        event_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 28, 28)``.
        transforms: the transforms from the base to the data, in order. Modules among
            them are registered as sub-modules so their parameters train.
        conditional: ``True`` when some transforms are ``ConditionalTransformModule`` s
            (or the base is conditional); the call then requires ``context``. Default:
            inferred from the transforms and from ``base.conditional``.
        base: the base distribution. ``None`` (default): :math:`N(0, I)` on the module's
            device and dtype. A :class:`~torch.distributions.Distribution` with event shape
            ``event_shape``: used as given (its tensors do not follow ``.to()``). An
            ``nn.Module`` returning such a distribution, registered as a sub-module so its
            parameters train: called as ``base(context)`` when its attribute
            ``conditional`` is true (e.g. :class:`ConditionalNormal`, an encoder's
            Gaussian), else ``base()``.

    Calling the module returns the distribution: ``flow(context=None)``.

    Example:
        >>> import torch
        >>> from pyro.distributions.transforms import AffineTransform
        >>> flow = Flow((2,), [AffineTransform(torch.zeros(2), 2 * torch.ones(2), event_dim=1)])
        >>> d = flow()
        >>> d.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        transforms: Sequence[Transform],
        conditional: bool | None = None,
        base: BaseLike = None,
    ) -> None:
        super().__init__()
        self.event_shape = _check_event_shape(event_shape)
        self.transforms = _check_transforms(transforms, self.event_shape)
        # Register modules so that .parameters(), .to() and state_dict() see them.
        self.layers = nn.ModuleList([t for t in self.transforms if isinstance(t, nn.Module)])
        self.base_dist, self.base_net = _check_base(base, self.event_shape)
        if conditional is None:
            conditional = any(
                isinstance(t, dist.ConditionalTransform) for t in self.transforms
            ) or bool(getattr(self.base_net, "conditional", False))
        self.conditional = bool(conditional)
        self.register_buffer("_loc", torch.zeros(()), persistent=False)

    def base(
        self, batch_shape: Sequence[int] = (), context: torch.Tensor | None = None
    ) -> dist.Distribution:
        """The base distribution, with batch shape ``batch_shape``.

        The standard normal on this module's device and dtype by default; else the
        ``base`` given to the constructor: a distribution (expanded to ``batch_shape`` when
        its own batch shape is smaller), or a module called as ``base(context)`` when its
        ``conditional`` attribute is true and ``base()`` otherwise.

        Args:
            batch_shape: the batch shape (a conditional flow uses the context's).
            context: ``(..., context_dim)``, passed to a module base.
        """
        batch_shape = torch.Size(batch_shape)
        if self.base_net is not None:
            cond = bool(getattr(self.base_net, "conditional", False))
            d = self.base_net(context) if cond else self.base_net()
            _check_base_dist("base", d, self.event_shape)
        elif self.base_dist is not None:
            d = self.base_dist
        else:
            loc = self._loc.expand(batch_shape + self.event_shape)
            return dist.Normal(loc, torch.ones_like(loc)).to_event(len(self.event_shape))
        if d.batch_shape != batch_shape:
            try:
                d = d.expand(torch.broadcast_shapes(d.batch_shape, batch_shape))
            except (RuntimeError, ValueError):
                raise ValueError(
                    f"base: its batch shape {tuple(d.batch_shape)} does not broadcast with "
                    f"the context's {tuple(batch_shape)}"
                ) from None
        return d

    def forward(self, context: torch.Tensor | None = None) -> dist.TransformedDistribution:
        """Return ``p(x | context)`` as a ``TransformedDistribution``.

        Args:
            context: ``(..., context_dim)`` tensor, required iff the flow is conditional.
                Its leading dimensions ``...`` become the distribution's batch shape, so
                ``flow(context).sample()`` draws one sample per context, shape
                ``(..., *event_shape)``.
        """
        if self.conditional and context is None:
            raise ValueError("context: this flow is conditional; pass a context tensor")
        if not self.conditional and context is not None:
            raise ValueError("context: this flow is not conditional; pass context=None")
        batch_shape = ()
        if context is not None:
            if not isinstance(context, torch.Tensor) or context.dim() < 1:
                raise ValueError(
                    f"context: expected a tensor of shape (..., context_dim), got {context!r}"
                )
            batch_shape = context.shape[:-1]
        ts = [
            t.condition(context) if isinstance(t, dist.ConditionalTransform) else t
            for t in self.transforms
        ]
        return dist.TransformedDistribution(self.base(batch_shape, context), ts)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, conditional={self.conditional}"


class ConditionalNormal(nn.Module):
    r"""A diagonal Gaussian whose mean and scale are read out from a context vector.

    .. math::
        p(z \mid s) = N\big(z;\ \mu(s),\ \operatorname{diag}\sigma(s)^2\big), \qquad
        [\mu, \rho] = \mathrm{NN}(s), \quad \sigma = \operatorname{softplus}(\rho) +
        \sigma_{\min},

    the encoder's Gaussian of a VAE (Kingma & Welling, 2014), usable as the conditional base
    of a :class:`Flow` (``Flow(..., base=ConditionalNormal(C, D))``): the flow then pushes
    :math:`N(\mu(s), \sigma(s)^2)` through its transforms, as in Rezende & Mohamed (2015).
    With ``hidden_dims=()`` (the default) the read-out is linear. The last layer starts at
    zero weights with the bias of :math:`\sigma = 1`, so a new module returns
    :math:`N(0, I)` for every context.

    References:
        Diederik P. Kingma, Max Welling. Auto-Encoding Variational Bayes. ICLR 2014.
        https://arxiv.org/abs/1312.6114

    Args:
        context_dim: size ``C`` of the context.
        event_dim: size ``D`` of the event.
        hidden_dims: hidden widths between the context and the read-out.
        min_scale: :math:`\sigma_{\min} \ge 0`, a floor on the scale.

    Calling it with a ``(..., C)`` context returns a distribution with batch shape ``(...)``
    and event shape ``(D,)``.

    Example:
        >>> import torch
        >>> q = ConditionalNormal(5, 3)(torch.zeros(4, 5))
        >>> q.batch_shape, q.event_shape, q.base_dist.scale[0, 0].item()
        (torch.Size([4]), torch.Size([3]), 1.0)
    """

    conditional = True

    def __init__(
        self,
        context_dim: int,
        event_dim: int,
        hidden_dims: Sequence[int] = (),
        min_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.context_dim = _check_positive_int("context_dim", context_dim)
        self.event_dim = _check_positive_int("event_dim", event_dim)
        if not isinstance(min_scale, int | float) or not (0.0 <= min_scale < 1.0):
            raise ValueError(f"min_scale: expected a float in [0, 1), got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.net = DenseNN(context_dim, _check_hidden_dims(hidden_dims), 2 * event_dim)
        with torch.no_grad():
            # softplus(rho) + min_scale = 1 at initialisation
            self.net.layers[-1].bias[event_dim:] = math.log(math.expm1(1.0 - self.min_scale))

    def forward(self, context: torch.Tensor) -> dist.Distribution:
        w = self.net.layers[-1].weight
        _check_vector_input("context", context, self.context_dim, w, torch.Size(), "context_dim")
        loc, rho = self.net(context).split(self.event_dim, dim=-1)
        scale = torch.nn.functional.softplus(rho) + self.min_scale
        return dist.Normal(loc, scale).to_event(1)

    def extra_repr(self) -> str:
        return f"context_dim={self.context_dim}, event_dim={self.event_dim}"
