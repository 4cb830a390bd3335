r"""Affine autoregressive transforms: the layers of IAF (Kingma et al., 2016) and MAF
(Papamakarios et al., 2017).

Convention. The *forward* direction of :class:`AffineAutoregressive` computes its parameters
from its **input** in one pass of a :class:`~pyro_lgm.nn.MADE`:

.. math::
    y_i = x_i\, \sigma_i(x_{<i}) + \mu_i(x_{<i}),

so the forward map is cheap (one network pass) and its inverse is sequential. IAF uses the
forward map from the base to the data (cheap sampling); MAF uses it from the data to the
base (cheap density), i.e. inverted in the flow; see :func:`pyro_lgm.models.maf` and
:func:`pyro_lgm.models.iaf`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from pyro_lgm._cache import Stamp
from pyro_lgm.errors import check_finite
from pyro_lgm.nn.masked import MADE
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms._common import broadcast_shapes

__all__ = [
    "AffineAutoregressive",
    "ConditionalAffineAutoregressive",
    "affine_autoregressive",
    "conditional_affine_autoregressive",
]


def _check_bound(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"log_scale_bound: expected a positive number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"log_scale_bound: expected a finite number, got {value!r}")
    return float(value)


def _check_cache_size(value: object) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise ValueError(f"cache_size: expected 0 or 1, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _check_made(net: object, conditional: bool) -> MADE:
    if not isinstance(net, MADE):
        raise ValueError(f"autoregressive_nn: expected a pyro_lgm.nn.MADE, got {type(net)}")
    if net.num_params != 2:
        raise ValueError(
            f"autoregressive_nn: expected param_dims summing to 2 (location and log-scale), "
            f"got param_dims={list(net.param_dims)}"
        )
    if conditional and net.context_dim == 0:
        raise ValueError("autoregressive_nn: expected a MADE with context_dim > 0")
    return net


def _check_context(context: object, net: MADE) -> torch.Tensor:
    c = net.context_dim
    w = net.output_layer.weight
    if not isinstance(context, torch.Tensor) or context.dim() == 0 or context.shape[-1] != c:
        got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context)
        raise ValueError(f"context: expected a tensor of shape (..., {c}), got {got}")
    if context.dtype != w.dtype or context.device != w.device:
        raise ValueError(
            f"context: expected dtype {w.dtype} on {w.device} (the network's), "
            f"got {context.dtype} on {context.device}"
        )
    return check_finite("context", context)


def _num_passes(net: MADE) -> int:
    """Passes a fixed-point inversion needs: 1 + the longest dependency chain of ``net``.

    Variables are grouped into levels (level 0 depends on no input, level ``l`` on inputs of
    level ``< l`` only); pass ``k`` of the iteration makes level ``k - 1`` exact.
    """
    conn = net.connectivity().cpu().numpy()
    order = net.order.tolist()
    level = np.zeros(net.input_dim, dtype=np.int64)
    for i in order:  # dependencies of i come earlier in the order
        deps = np.flatnonzero(conn[i])
        level[i] = level[deps].max() + 1 if deps.size else 0
    return int(level.max()) + 1


class AffineFixedPoint:
    r"""Inversion and log-det shared by the affine autoregressive transforms
    :math:`y = x \odot \exp(\log s(x)) + \mu(x)` whose :math:`\mu_i, \log s_i` read only
    :math:`x_{<i}` (:meth:`params`), mixed into a :class:`CachedTransform`.

    :meth:`_fixed_point` inverts by passes :math:`x \leftarrow (y - \mu(x)) e^{-\log s(x)}`:
    after pass :math:`k` the first :math:`k` positions are exact, so at most ``n`` passes
    reach the inverse, fewer when the iterate stops changing (``early_exit``); the
    log-det of the last pass is exact and remembered for the pair. The subclass gives
    ``params(x) -> (mu, log_scale)`` and ``_check(name, v)``; ``_input_name`` names its
    input in error messages.
    """

    early_exit: bool = True
    _input_name: str = "x"

    def _fixed_point(self, y: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
        passes = 0
        for k in range(n):
            mu, log_scale = self.params(x)
            x_new = (y - mu) * torch.exp(-log_scale)
            passes += 1
            done = k == n - 1 or (self.early_exit and torch.equal(x_new, x))
            x = x_new
            if done:
                break
        self.last_num_passes = passes
        # log_scale was computed from x's earlier positions, which are final: it is exact
        self._remember_ldj(x, y, log_scale.sum(-1))
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ldj = self._recall_ldj(x, y)
        if ldj is None:
            self._check(self._input_name, x)
            ldj = self.params(x)[1].sum(-1)
        if ldj.shape == y.shape[:-1]:
            return ldj
        return ldj.expand(broadcast_shapes(ldj.shape, y.shape[:-1]))


class AffineAutoregressive(AffineFixedPoint, CachedTransform, TransformModule):
    r"""Affine autoregressive bijection with parameters from a MADE of its input.

    .. math::
        y_i = x_i \exp(\log\sigma_i) + \mu_i, \qquad (\mu_i, \tilde s_i) = \mathrm{MADE}(x)_i,
        \qquad \log\sigma_i = b \tanh(\tilde s_i / b),

        \log\left|\det \frac{\partial y}{\partial x}\right| = \sum_i \log\sigma_i,

    where :math:`\mu_i, \tilde s_i` depend on :math:`x_{<i}` in the network's order (the
    Jacobian is triangular in that order with a positive diagonal, ``sign = +1``) and
    :math:`b` is ``log_scale_bound`` (a soft clamp of the log-scale to :math:`(-b, b)` that
    keeps deep stacks stable). With the network's last layer at zero
    (``MADE(..., zero_init_last=True)``, as built by :func:`affine_autoregressive`) the
    transform starts as the identity.

    The forward direction is **one** network pass. The inverse is the fixed-point iteration
    :math:`x^{(k+1)} = (y - \mu(x^{(k)})) / \sigma(x^{(k)})` from :math:`x^{(0)} = 0`.
    Pass ``k`` makes every variable of dependency level ``k - 1`` exact (level 0: depends
    on no input; level ``l``: on inputs of level ``< l`` only), so the number of passes is
    at most the number of levels (:meth:`num_passes`, computed from the masks): ``D`` for a
    MADE whose hidden layers have at least ``D - 1`` units, fewer when narrow layers merge
    degrees (one hidden unit: 2). Early exit: the loop also stops as soon as a pass leaves
    ``x`` bitwise unchanged. ``x`` is then a fixed point of the floating-point iteration,
    i.e. ``f(x) = y`` to rounding - the same guarantee as the full sequential solve. This
    happens before the structural bound (a) when the weights make dependencies vanish
    (at initialisation, with the last layer at zero, two passes suffice) and (b) when the
    iteration contracts: with weak dependencies the error in the earlier variables shrinks
    geometrically and falls below float resolution after a few passes (seen with small
    weights, e.g. early in training). With strong dependencies (a trained network) expect
    up to ``D`` passes; :attr:`last_num_passes` records how many the last inversion made.

    Caching (:mod:`pyro_lgm.transforms._cached`): with ``cache_size=1``, ``t.inv(y)`` of the
    ``y`` that ``t(x)`` just returned (and ``t(x)`` of an ``x`` that ``t.inv`` just returned)
    is served from the cache, so ``log_prob`` of a sample just drawn with ``rsample`` costs
    no inversion, and ``log_abs_det_jacobian(x, y)`` of the pair just computed reuses its
    log-scale. Nothing cached is served after an optimizer step (fused kernels included),
    an in-place edit, ``load_state_dict``, ``.to()`` or ``resample_masks``, nor under
    autograd when it was computed without; a call in the same direction with the same
    input (a training loop reusing its data tensor) is always recomputed.

    Args:
        autoregressive_nn: a :class:`~pyro_lgm.nn.MADE` with ``param_dims`` summing to 2
            (location, raw log-scale).
        context: ``(..., context_dim)`` context when ``autoregressive_nn`` is conditional
            (what :meth:`ConditionalAffineAutoregressive.condition` passes); its batch
            dimensions broadcast against those of ``x``.
        log_scale_bound: :math:`b > 0`.
        cache_size: 0 or 1.

    Shapes: ``x`` and ``y`` are ``(..., D)``; ``log_abs_det_jacobian`` is ``(...)``.

    References:
        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
        *Improved Variational Inference with Inverse Autoregressive Flow*. NeurIPS 2016.

        G. Papamakarios, T. Pavlakou, I. Murray. *Masked Autoregressive Flow for Density
        Estimation*. NeurIPS 2017.

    Example:
        >>> import torch
        >>> t = affine_autoregressive(3, hidden_dims=[12])
        >>> x = torch.randn(5, 3)
        >>> torch.equal(t(x), x)  # identity at initialisation
        True
        >>> t.log_abs_det_jacobian(x, t(x)).shape
        torch.Size([5])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1
    autoregressive = True
    #: stop the inversion at a bitwise fixed point (set ``False`` to always make
    #: :meth:`num_passes` passes, e.g. to time the worst case)
    early_exit: bool = True

    def __init__(
        self,
        autoregressive_nn: MADE,
        context: torch.Tensor | None = None,
        log_scale_bound: float = 3.0,
        cache_size: int = 1,
    ) -> None:
        super().__init__(cache_size=_check_cache_size(cache_size))
        self.made = _check_made(autoregressive_nn, conditional=False)
        if self.made.context_dim > 0 and context is None:
            raise ValueError(
                f"context: the network is conditional; expected a tensor of shape "
                f"(..., {self.made.context_dim})"
            )
        if self.made.context_dim == 0 and context is not None:
            raise ValueError("context: the network has context_dim=0; pass context=None")
        if context is not None:
            context = _check_context(context, self.made)
        self.register_buffer("context", context, persistent=False)
        self.log_scale_bound = _check_bound(log_scale_bound)
        self.input_dim = self.made.input_dim
        self._passes: tuple | None = None
        self.last_num_passes = 0

    def with_cache(self, cache_size: int = 1) -> AffineAutoregressive:
        if cache_size == self._cache_size:
            return self
        return AffineAutoregressive(self.made, self.context, self.log_scale_bound, cache_size)

    # ------------------------------------------------------------------ maths
    def _check(self, name: str, v: object) -> torch.Tensor:
        w = self.made.output_layer.weight
        D = self.input_dim
        if not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape[-1] != D:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name}: expected a tensor of shape (..., {D}), got {got}")
        if v.dtype != w.dtype or v.device != w.device:
            raise ValueError(
                f"{name}: expected dtype {w.dtype} on {w.device} (the transform's), "
                f"got {v.dtype} on {v.device}"
            )
        check_finite(name, v)
        if self.context is not None:
            try:
                broadcast_shapes(v.shape[:-1], self.context.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"context: batch shape {tuple(self.context.shape[:-1])} does not "
                    f"broadcast with the batch shape {tuple(v.shape[:-1])} of {name}"
                ) from None
        return v

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location :math:`\\mu` and bounded log-scale :math:`\\log\\sigma`, each ``(..., D)``."""
        out = self.made._forward(x, self.context)
        b = self.log_scale_bound
        return out[..., 0], b * torch.tanh(out[..., 1] / b)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check("x", x)
        mu, log_scale = self.params(x)
        y = x * torch.exp(log_scale) + mu
        self._remember_ldj(x, y, log_scale.sum(-1))
        return y

    def num_passes(self) -> int:
        """Upper bound on the network passes :meth:`_inverse` makes (from the masks)."""
        structure = self.made.structure_tensors()
        if self._passes is None or not self._passes[0].valid(structure):
            self._passes = (Stamp(structure, generation=False), _num_passes(self.made))
        return self._passes[1]

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        batch = y.shape[:-1]
        if self.context is not None:
            batch = broadcast_shapes(batch, self.context.shape[:-1])
        x = y.new_zeros(*batch, self.input_dim)
        # the masked weights are computed once for all the passes of this inversion
        with self.made.reuse_weights():
            return self._fixed_point(y, x, self.num_passes())

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, log_scale_bound={self.log_scale_bound}"


class ConditionalAffineAutoregressive(ConditionalTransformModule):
    r"""An :class:`AffineAutoregressive` whose MADE also reads a context :math:`c`.

    .. math::
        y_i = x_i \exp(\log\sigma_i(x_{<i}, c)) + \mu_i(x_{<i}, c), \qquad
        \log|\det J| = \sum_i \log\sigma_i(x_{<i}, c),

    with :math:`\log\sigma = b \tanh(\tilde s / b)`. ``condition(context)`` returns an
    :class:`AffineAutoregressive` bound to ``context`` (it shares this module's network);
    the context's batch dimensions broadcast against those of ``x``. Used amortized, e.g.
    as an IAF posterior in a VAE guide (Kingma et al., 2016) or a conditional MAF.

    Args:
        autoregressive_nn: a :class:`~pyro_lgm.nn.MADE` with ``context_dim > 0`` and
            ``param_dims`` summing to 2.
        log_scale_bound: :math:`b > 0`.
        cache_size: 0 or 1, passed to the conditioned transforms.

    Shapes: ``context`` ``(..., context_dim)``; ``x`` ``(..., D)``.

    References:
        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
        *Improved Variational Inference with Inverse Autoregressive Flow*. NeurIPS 2016.

        G. Papamakarios, T. Pavlakou, I. Murray. *Masked Autoregressive Flow for Density
        Estimation*. NeurIPS 2017.

    Example:
        >>> import torch
        >>> t = conditional_affine_autoregressive(3, context_dim=2, hidden_dims=[12])
        >>> t.condition(torch.randn(4, 1, 2))(torch.randn(5, 3)).shape
        torch.Size([4, 5, 3])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(
        self, autoregressive_nn: MADE, log_scale_bound: float = 3.0, cache_size: int = 1
    ) -> None:
        super().__init__()
        self.made = _check_made(autoregressive_nn, conditional=True)
        self.log_scale_bound = _check_bound(log_scale_bound)
        self.cache_size = _check_cache_size(cache_size)
        self.input_dim = self.made.input_dim
        self.context_dim = self.made.context_dim

    def condition(self, context: torch.Tensor) -> AffineAutoregressive:
        """Bind ``context`` ``(..., context_dim)``; returns an :class:`AffineAutoregressive`."""
        return AffineAutoregressive(
            self.made, _check_context(context, self.made), self.log_scale_bound, self.cache_size
        )

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, context_dim={self.context_dim}, "
            f"log_scale_bound={self.log_scale_bound}"
        )


def _default_hidden(input_dim: int, hidden_dims: Sequence[int] | None) -> list[int]:
    if hidden_dims is None:
        return [max(64, 4 * input_dim)]
    if isinstance(hidden_dims, int | str) or not isinstance(hidden_dims, Sequence):
        raise ValueError(
            f"hidden_dims: expected a sequence of positive ints (e.g. [64, 64]), "
            f"got {hidden_dims!r}"
        )
    return list(hidden_dims)


def affine_autoregressive(
    input_dim: int,
    hidden_dims: Sequence[int] | None = None,
    *,
    order: str | Sequence[int] | torch.Tensor = "natural",
    skip_connections: bool = False,
    activation: type[nn.Module] = nn.ReLU,
    log_scale_bound: float = 3.0,
    seed: int | None = None,
    cache_size: int = 1,
) -> AffineAutoregressive:
    r"""An :class:`AffineAutoregressive` with a fresh zero-initialised MADE (identity at init).

    .. math::
        y_i = x_i \sigma_i(x_{<i}) + \mu_i(x_{<i})

    Args:
        input_dim: ``D``.
        hidden_dims: MADE hidden widths (default one layer of ``max(64, 4 D)`` units).
        order: the MADE's order (``"natural"``, ``"reversed"``, ``"random"`` or a
            permutation).
        skip_connections, activation, seed: passed to :class:`~pyro_lgm.nn.MADE`.
        log_scale_bound, cache_size: passed to :class:`AffineAutoregressive`.

    References:
        D. P. Kingma et al. *Improved Variational Inference with Inverse Autoregressive
        Flow*. NeurIPS 2016.

    Example:
        >>> t = affine_autoregressive(4, [16], order="reversed")
        >>> t.made.order.tolist()
        [3, 2, 1, 0]
    """
    made = MADE(
        input_dim,
        _default_hidden(input_dim, hidden_dims),
        param_dims=[1, 1],
        order=order,
        skip_connections=skip_connections,
        activation=activation,
        seed=seed,
        zero_init_last=True,
    )
    return AffineAutoregressive(made, log_scale_bound=log_scale_bound, cache_size=cache_size)


def conditional_affine_autoregressive(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    *,
    order: str | Sequence[int] | torch.Tensor = "natural",
    skip_connections: bool = False,
    activation: type[nn.Module] = nn.ReLU,
    log_scale_bound: float = 3.0,
    seed: int | None = None,
    cache_size: int = 1,
) -> ConditionalAffineAutoregressive:
    r"""A :class:`ConditionalAffineAutoregressive` with a fresh zero-initialised MADE.

    .. math::
        y_i = x_i \sigma_i(x_{<i}, c) + \mu_i(x_{<i}, c)

    Args:
        input_dim: ``D``.
        context_dim: size of the context vector (``>= 1``).
        hidden_dims: MADE hidden widths (default one layer of ``max(64, 4 D)`` units).
        order, skip_connections, activation, seed: passed to :class:`~pyro_lgm.nn.MADE`.
        log_scale_bound, cache_size: passed to :class:`ConditionalAffineAutoregressive`.

    References:
        D. P. Kingma et al. *Improved Variational Inference with Inverse Autoregressive
        Flow*. NeurIPS 2016.

    Example:
        >>> import torch
        >>> t = conditional_affine_autoregressive(4, 3, [16])
        >>> x = torch.randn(2, 4)
        >>> torch.equal(t.condition(torch.randn(3))(x), x)
        True
    """
    if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 1:
        raise ValueError(f"context_dim: expected an int >= 1, got {context_dim!r}")
    made = MADE(
        input_dim,
        _default_hidden(input_dim, hidden_dims),
        param_dims=[1, 1],
        context_dim=context_dim,
        order=order,
        skip_connections=skip_connections,
        activation=activation,
        seed=seed,
        zero_init_last=True,
    )
    return ConditionalAffineAutoregressive(
        made, log_scale_bound=log_scale_bound, cache_size=cache_size
    )
