r"""Activation normalization (Kingma & Dhariwal, 2018) for vectors and images.

A per-feature (vectors, ``event_dim=1``) or per-channel (images ``(C, H, W)``,
``event_dim=3``) affine map with data-dependent initialisation. Flows in this library are
written from the base to the data, :math:`x = f(z)`, and density estimation evaluates
:math:`f^{-1}` on the data; :class:`ActNorm` therefore standardises whatever its *first*
call receives, in either direction:

* first call ``_inverse(y)`` (the density-estimation path, ``flow().log_prob(data)``): the
  parameters are set so that the returned :math:`x = (y - b)\, e^{-\log s}` has zero mean
  and unit variance per feature over the batch (per channel over the batch and the pixels
  for images), i.e. :math:`b = \mathrm{mean}(y)`,
  :math:`\log s = \log \mathrm{std}(y)`;
* first call ``_call(x)`` (e.g. a flow used in the sampling direction or as a guide): the
  returned :math:`y = x\, e^{\log s} + b` is standardised,
  :math:`\log s = -\log \mathrm{std}(x)`, :math:`b = -\mathrm{mean}(x) / \mathrm{std}(x)`.

The ``initialized`` flag is a buffer, saved in ``state_dict``, so a loaded model is never
re-initialised.
"""

from __future__ import annotations

import torch
from pyro.distributions import TransformModule
from torch import nn
from torch.distributions import constraints

from pyro_lgm.errors import check_finite
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import broadcast_shapes
from pyro_lgm.transforms.coupling import _batch_of, _check_input

__all__ = ["ActNorm", "actnorm"]


class ActNorm(CachedTransform, TransformModule):
    r"""Per-feature affine normalization with data-dependent initialisation (Glow).

    .. math::
        y = x \odot \exp(\log s) + b, \qquad x = (y - b) \odot \exp(-\log s), \qquad
        \log|\det J| = \sum_i \log s_i.

    For images (``event_dim=3``) the parameters are per channel and shared by the pixels
    of an ``H x W`` image, so :math:`\log|\det J| = H W \sum_c \log s_c` per image.

    On its first call (while ``initialized`` is ``False``) the parameters are set from the
    batch so that the call's *output* has zero mean and unit variance per feature (per
    channel), the statistics taken over all batch dimensions (and the pixels); see the
    module docstring for the two directions. A batch with a single point (single pixel)
    only sets the mean.

    References:
        D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        input_dim: ``D``, the number of features (``C``, the number of channels, when
            ``event_dim=3``).
        eps: added to the variance before the square root at initialisation.
        event_dim: 1 for vectors ``(..., D)``, 3 for images ``(..., C, H, W)``.

    Shapes:
        ``event_dim=1``: ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.
        ``event_dim=3``: ``x``, ``y``: ``(..., C, H, W)``; ``log_abs_det_jacobian``:
        ``(...)``. ``loc``, ``log_scale``: ``(D,)`` (``(C,)``) in both.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> t = ActNorm(3)
        >>> data = 5 + 2 * torch.randn(100, 3)
        >>> z = t.inv(data)  # the first call initialises: z is standardised
        >>> bool(t.initialized), z.mean(0).abs().max().item() < 1e-5
        (True, True)
        >>> torch.allclose(z.var(0, unbiased=False), torch.ones(3), atol=1e-4)
        True
        >>> images = ActNorm(2, event_dim=3)
        >>> z = images.inv(1 + 3 * torch.randn(8, 2, 4, 4))  # per channel over (8, 4, 4)
        >>> z.transpose(0, 1).reshape(2, -1).mean(1).abs().max().item() < 1e-5
        True
        >>> images.log_abs_det_jacobian(z, z).shape  # one log-det per image
        torch.Size([8])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(self, input_dim: int, eps: float = 1e-6, *, event_dim: int = 1) -> None:
        super().__init__(cache_size=0)
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
        if not isinstance(event_dim, int) or isinstance(event_dim, bool) or event_dim not in (1, 3):
            raise ValueError(
                f"event_dim: expected 1 (vectors) or 3 (images (C, H, W)), got {event_dim!r}"
            )
        self.input_dim = input_dim
        self.eps = float(eps)
        if event_dim != 1:
            self.domain = constraints.independent(constraints.real, event_dim)
            self.codomain = constraints.independent(constraints.real, event_dim)
        self.loc = nn.Parameter(torch.zeros(input_dim))
        self.log_scale = nn.Parameter(torch.zeros(input_dim))
        self.register_buffer("initialized", torch.tensor(False))

    # the feature dimension of an input, and the shape that broadcasts a (D,) parameter
    def _feature_dim(self) -> int:
        return -self.domain.event_dim

    def _view(self, p: torch.Tensor) -> torch.Tensor:
        return p if self.domain.event_dim == 1 else p.reshape(-1, 1, 1)

    def _check(self, name: str, x: object) -> None:
        _check_input(name, x, self.input_dim, self.loc, dim=self._feature_dim())

    @torch.no_grad()
    def initialize(self, data: torch.Tensor, direction: str = "inverse") -> None:
        """Set the parameters from ``data`` (``(..., D)``, or ``(..., C, H, W)`` for
        images) and mark the layer initialised.

        ``direction="inverse"`` makes ``self.inv(data)`` standardised,
        ``direction="forward"`` makes ``self(data)`` standardised.
        """
        if direction not in ("forward", "inverse"):
            raise ValueError(f"direction: expected 'forward' or 'inverse', got {direction!r}")
        self._check("data", data)
        # checked even with validation off: a non-finite batch would poison the layer for good
        check_finite("data", data, always=True)
        flat = data.detach()
        if self.domain.event_dim == 3:  # channels last: statistics over batch and pixels
            flat = flat.movedim(-3, -1)
        flat = flat.reshape(-1, self.input_dim)
        mean = flat.mean(0)
        if flat.shape[0] > 1:
            log_std = 0.5 * torch.log(flat.var(0, unbiased=False) + self.eps)
        else:
            log_std = torch.zeros_like(mean)
        if direction == "inverse":
            self.loc.copy_(mean)
            self.log_scale.copy_(log_std)
        else:
            self.log_scale.copy_(-log_std)
            self.loc.copy_(-mean * torch.exp(-log_std))
        self.initialized.fill_(True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        if not bool(self.initialized):
            self.initialize(x, "forward")
        return x * self._view(self.log_scale).exp() + self._view(self.loc)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        if not bool(self.initialized):
            self.initialize(y, "inverse")
        return (y - self._view(self.loc)) * torch.exp(-self._view(self.log_scale))

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.domain.event_dim == 1:
            return self.log_scale.sum().expand(_batch_of(x, y))
        batch = broadcast_shapes(x.shape[:-3], y.shape[:-3])
        pixels = x.shape[-2] * x.shape[-1]
        return (pixels * self.log_scale.sum()).expand(batch)

    def extra_repr(self) -> str:
        out = f"input_dim={self.input_dim}, initialized={bool(self.initialized)}"
        if self.domain.event_dim != 1:
            out += f", event_dim={self.domain.event_dim}"
        return out


def actnorm(input_dim: int, event_dim: int = 1) -> ActNorm:
    """An :class:`ActNorm` over ``input_dim`` features, or over the ``input_dim`` channels
    of ``(C, H, W)`` images with ``event_dim=3`` (initialised by its first batch).

    Example:
        >>> bool(actnorm(4).initialized)
        False
        >>> actnorm(3, event_dim=3).domain.event_dim
        3
    """
    return ActNorm(input_dim, event_dim=event_dim)
