r"""Activation normalization (Kingma & Dhariwal, 2018) for vectors.

A per-feature affine map with data-dependent initialisation. Flows in this library are
written from the base to the data, :math:`x = f(z)`, and density estimation evaluates
:math:`f^{-1}` on the data; :class:`ActNorm` therefore standardises whatever its *first*
call receives, in either direction:

* first call ``_inverse(y)`` (the density-estimation path, ``flow().log_prob(data)``): the
  parameters are set so that the returned :math:`x = (y - b)\, e^{-\log s}` has zero mean
  and unit variance per feature over the batch, i.e. :math:`b = \mathrm{mean}(y)`,
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
from pyro_lgm.transforms.coupling import _batch_of, _check_input

__all__ = ["ActNorm", "actnorm"]


class ActNorm(CachedTransform, TransformModule):
    r"""Per-feature affine normalization with data-dependent initialisation (Glow).

    .. math::
        y = x \odot \exp(\log s) + b, \qquad x = (y - b) \odot \exp(-\log s), \qquad
        \log|\det J| = \sum_i \log s_i.

    On its first call (while ``initialized`` is ``False``) the parameters are set from the
    batch so that the call's *output* has zero mean and unit variance per feature, the
    statistics taken over all batch dimensions (see the module docstring for the two
    directions). A batch with a single point only sets the mean.

    References:
        D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1
        Convolutions*. NeurIPS 2018.

    Args:
        input_dim: ``D``, the number of features.
        eps: added to the variance before the square root at initialisation.

    Shapes:
        ``x``, ``y``: ``(..., D)``; ``log_abs_det_jacobian``: ``(...)``.

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
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(self, input_dim: int, eps: float = 1e-6) -> None:
        super().__init__(cache_size=0)
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
        self.input_dim = input_dim
        self.eps = float(eps)
        self.loc = nn.Parameter(torch.zeros(input_dim))
        self.log_scale = nn.Parameter(torch.zeros(input_dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, data: torch.Tensor, direction: str = "inverse") -> None:
        """Set the parameters from ``data`` ``(..., D)`` and mark the layer initialised.

        ``direction="inverse"`` makes ``self.inv(data)`` standardised,
        ``direction="forward"`` makes ``self(data)`` standardised.
        """
        if direction not in ("forward", "inverse"):
            raise ValueError(f"direction: expected 'forward' or 'inverse', got {direction!r}")
        _check_input("data", data, self.input_dim, self.loc)
        # checked even with validation off: a non-finite batch would poison the layer for good
        check_finite("data", data, always=True)
        flat = data.detach().reshape(-1, self.input_dim)
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
        _check_input("x", x, self.input_dim, self.loc)
        if not bool(self.initialized):
            self.initialize(x, "forward")
        return x * self.log_scale.exp() + self.loc

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        _check_input("y", y, self.input_dim, self.loc)
        if not bool(self.initialized):
            self.initialize(y, "inverse")
        return (y - self.loc) * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(_batch_of(x, y))

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, initialized={bool(self.initialized)}"


def actnorm(input_dim: int) -> ActNorm:
    """An :class:`ActNorm` over ``input_dim`` features (initialised by its first batch).

    Example:
        >>> bool(actnorm(4).initialized)
        False
    """
    return ActNorm(input_dim)
