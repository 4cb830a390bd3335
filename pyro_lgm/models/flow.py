"""A flow model: an ``nn.Module`` that owns its transforms and returns a distribution.

Every flow in the library (planar stacks, MAF, IAF, NICE, RealNVP, later Glow and Flow++)
is a :class:`Flow`: calling it returns a
:class:`~pyro.distributions.TransformedDistribution` over a standard-normal base bound to
the current parameters, so ``log_prob``, ``sample``, ``pyro.sample(..., obs=x)`` and
composition need no special path.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Transform

__all__ = ["Flow"]


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


class Flow(nn.Module):
    r"""A normalizing flow :math:`x = f_K \circ \dots \circ f_1(z)`, :math:`z \sim N(0, I)`.

    .. math::
        \log p(x) = \log N(f^{-1}(x); 0, I) - \sum_k \log |\det J_{f_k}|

    Args:
        event_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 28, 28)``.
        transforms: the transforms from the base to the data, in order. Modules among
            them are registered as sub-modules so their parameters train.
        conditional: ``True`` when some transforms are ``ConditionalTransformModule`` s;
            the call then requires ``context``.

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
    ) -> None:
        super().__init__()
        self.event_shape = _check_event_shape(event_shape)
        self.transforms = _check_transforms(transforms, self.event_shape)
        # Register modules so that .parameters(), .to() and state_dict() see them.
        self.layers = nn.ModuleList([t for t in self.transforms if isinstance(t, nn.Module)])
        if conditional is None:
            conditional = any(isinstance(t, dist.ConditionalTransform) for t in self.transforms)
        self.conditional = bool(conditional)
        self.register_buffer("_loc", torch.zeros(()), persistent=False)

    def base(self, batch_shape: Sequence[int] = ()) -> dist.Distribution:
        """The standard-normal base distribution on this module's device and dtype.

        Args:
            batch_shape: its batch shape (a conditional flow uses the context's).
        """
        loc = self._loc.expand(torch.Size(batch_shape) + self.event_shape)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(len(self.event_shape))

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
        return dist.TransformedDistribution(self.base(batch_shape), ts)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, conditional={self.conditional}"
