r"""Inverse autoregressive flow over a sequence: one layer of the Parallel WaveNet student.

:class:`SequenceIAF` maps a noise sequence :math:`z = (z_1, \dots, z_T)` to

.. math::
    y_t = z_t\, s_t(z_{<t}) + \mu_t(z_{<t}), \qquad
    \log\left|\det \frac{\partial y}{\partial z}\right| = \sum_t \log s_t,

with :math:`(\mu, \log s)` computed by a strictly causal
:class:`~pyro_lgm.nn.CausalConvNet1d` of :math:`z` (van den Oord et al., 2018, Sec. 3). The
forward direction (sampling) is **one** parallel network pass over all ``T`` steps; the
inverse (density of given data) is sequential: pass ``k`` makes step ``k - 1`` exact, so it
takes up to ``T`` network passes (O(T) passes of O(T) work each). The inverse exists for
tests and for the density of given sequences; the student is trained on its own samples,
which never need it.
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule

from pyro_lgm.errors import check_finite
from pyro_lgm.nn.causal1d import CausalConvNet1d
from pyro_lgm.transforms._cached import CachedTransform
from pyro_lgm.transforms.autoregressive import AffineFixedPoint, _check_bound, _check_cache_size

__all__ = [
    "ConditionalSequenceIAF",
    "SequenceIAF",
    "conditional_sequence_iaf",
    "sequence_iaf",
]


def _check_net(net: object, conditional: bool) -> CausalConvNet1d:
    if not isinstance(net, CausalConvNet1d):
        raise ValueError(f"net: expected a pyro_lgm.nn.CausalConvNet1d, got {type(net)}")
    if net.in_channels != 1 or net.out_channels != 2:
        raise ValueError(
            f"net: expected in_channels=1 and out_channels=2 (shift, log-scale), got "
            f"{net.in_channels} and {net.out_channels}"
        )
    if conditional and not (net.has_global or net.has_local):
        raise ValueError("net: expected a network with global_dim, num_classes or local_channels")
    return net


class SequenceIAF(AffineFixedPoint, CachedTransform, TransformModule):
    r"""Affine IAF over the last dimension ``T`` of a sequence, with a causal conv conditioner.

    .. math::
        y_t = z_t \exp(\log s_t) + \mu_t, \qquad (\mu_t, \tilde s_t) = \mathrm{net}(z)_t,
        \qquad \log s_t = b \tanh(\tilde s_t / b),

    where ``net`` reads :math:`z_{<t}` only, so :math:`\partial y / \partial z` is lower
    triangular with diagonal :math:`s_t > 0` (``sign = +1``), and :math:`b` is
    ``log_scale_bound``: the scale is an exponential of a log-scale softly clamped to
    :math:`(-b, b)` (smooth, never zero, never overflowing in deep stacks). With the
    network's last layer at zero the layer starts as the identity.

    Forward: one network pass for all ``T`` steps. Inverse: the fixed-point iteration
    :math:`z^{(k+1)} = (y - \mu(z^{(k)})) e^{-\log s(z^{(k)})}` from :math:`z^{(0)} = 0`;
    pass ``k`` makes step ``k - 1`` exact, so at most ``T`` passes (it stops early at a
    bitwise fixed point); :attr:`last_num_passes` records how many it made. Caching as in
    :class:`~pyro_lgm.transforms.AffineAutoregressive` (``cache_size=1``: ``t.inv(t(z))``
    and the log-det of the pair just computed are served without recomputation, never
    after a parameter change).

    Args:
        net: a :class:`~pyro_lgm.nn.CausalConvNet1d` with ``in_channels=1`` and
            ``out_channels=2``.
        context: what ``net`` takes as context (a global ``(B, global_dim)`` tensor or
            ``(B,)`` labels, a local ``(B, local_channels, T)`` tensor, or the pair); ``B``
            must equal the flattened batch of ``z`` or be broadcast to it when the batch of
            ``z`` is ``(S, B)`` (samples first). Set by
            :meth:`ConditionalSequenceIAF.condition`.
        log_scale_bound: :math:`b > 0`.
        cache_size: 0 or 1.

    Shapes: ``z`` and ``y`` ``(..., T)``; ``log_abs_det_jacobian`` ``(...)``.

    References:
        A. van den Oord, Y. Li, I. Babuschkin, K. Simonyan, O. Vinyals, K. Kavukcuoglu et al.
        *Parallel WaveNet: Fast High-Fidelity Speech Synthesis*. ICML 2018.

    Example:
        >>> import torch
        >>> t = sequence_iaf(hidden=8, layers=2)
        >>> z = torch.randn(3, 10)
        >>> torch.equal(t(z), z)  # identity at initialisation
        True
        >>> t.log_abs_det_jacobian(z, t(z)).shape
        torch.Size([3])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1
    autoregressive = True
    _input_name = "z"

    def __init__(
        self,
        net: CausalConvNet1d,
        context: object = None,
        log_scale_bound: float = 3.0,
        cache_size: int = 1,
    ) -> None:
        super().__init__(cache_size=_check_cache_size(cache_size))
        self.net = _check_net(net, conditional=False)
        net.split_context(context)  # raises if the context does not fit the network
        self._context = context
        self.log_scale_bound = _check_bound(log_scale_bound)
        self.last_num_passes = 0

    def with_cache(self, cache_size: int = 1) -> SequenceIAF:
        if cache_size == self._cache_size:
            return self
        return SequenceIAF(self.net, self._context, self.log_scale_bound, cache_size)

    def _cache_tensors(self) -> list[torch.Tensor]:
        extra = self._context if isinstance(self._context, tuple | list) else [self._context]
        return [*super()._cache_tensors(), *(c for c in extra if c is not None)]

    # ------------------------------------------------------------------ maths
    def _check(self, name: str, v: object) -> torch.Tensor:
        w = self.net.output.weight
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name}: expected a tensor of shape (..., T), got {got}")
        if v.dtype != w.dtype or v.device != w.device:
            raise ValueError(
                f"{name}: expected dtype {w.dtype} on {w.device} (the transform's), "
                f"got {v.dtype} on {v.device}"
            )
        return check_finite(name, v)

    def _net_context(self, batch: torch.Size) -> object:
        """The context expanded to the flattened batch ``batch`` of the input."""
        if self._context is None:
            return None
        g, loc = self.net.split_context(self._context)
        n_ctx = (g if g is not None else loc).shape[0]  # type: ignore[union-attr]
        n = batch.numel()
        if n_ctx != n:
            if n_ctx == 0 or n % n_ctx or (batch and batch[-1] != n_ctx and n_ctx != 1):
                raise ValueError(
                    f"context: batch {n_ctx} does not broadcast with the batch "
                    f"{tuple(batch)} of the input (expected its last dimension)"
                )
            reps = n // n_ctx

            def tile(c: torch.Tensor | None) -> torch.Tensor | None:
                if c is None:
                    return None
                return c.unsqueeze(0).expand(reps, *c.shape).reshape(n, *c.shape[1:])

            g, loc = tile(g), tile(loc)
        if g is not None and loc is not None:
            return (g, loc)
        return g if g is not None else loc

    def params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift :math:`\\mu` and bounded log-scale :math:`\\log s`, each ``(..., T)``."""
        batch, T = z.shape[:-1], z.shape[-1]
        out = self.net(z.reshape(-1, 1, T), self._net_context(batch))
        out = out.reshape(*batch, 2, T)
        b = self.log_scale_bound
        return out[..., 0, :], b * torch.tanh(out[..., 1, :] / b)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        self._check("z", z)
        mu, log_scale = self.params(z)
        y = z * torch.exp(log_scale) + mu
        self._remember_ldj(z, y, log_scale.sum(-1))
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check("y", y)
        return self._fixed_point(y, torch.zeros_like(y), y.shape[-1])

    def extra_repr(self) -> str:
        return f"log_scale_bound={self.log_scale_bound}"


class ConditionalSequenceIAF(ConditionalTransformModule):
    r"""A :class:`SequenceIAF` whose network also reads a global and/or local context.

    .. math::
        y_t = z_t\, s_t(z_{<t}, c) + \mu_t(z_{<t}, c)

    ``condition(context)`` returns a :class:`SequenceIAF` bound to ``context`` sharing this
    module's network (for a speaker label, a global vector, or local features such as
    upsampled linguistic features at the audio rate).

    Args:
        net: a conditional :class:`~pyro_lgm.nn.CausalConvNet1d` (``global_dim``,
            ``num_classes`` or ``local_channels``) with ``in_channels=1``, ``out_channels=2``.
        log_scale_bound: :math:`b > 0`.
        cache_size: 0 or 1, passed to the conditioned transforms.

    Example:
        >>> import torch
        >>> t = conditional_sequence_iaf(global_dim=3, hidden=8, layers=2)
        >>> t.condition(torch.randn(4, 3))(torch.randn(4, 10)).shape
        torch.Size([4, 10])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(
        self, net: CausalConvNet1d, log_scale_bound: float = 3.0, cache_size: int = 1
    ) -> None:
        super().__init__()
        self.net = _check_net(net, conditional=True)
        self.log_scale_bound = _check_bound(log_scale_bound)
        self.cache_size = _check_cache_size(cache_size)

    def condition(self, context: object) -> SequenceIAF:
        return SequenceIAF(self.net, context, self.log_scale_bound, self.cache_size)


def sequence_iaf(
    hidden: int = 32,
    layers: int = 4,
    kernel_size: int = 2,
    log_scale_bound: float = 3.0,
    **net_kwargs: object,
) -> SequenceIAF:
    """A :class:`SequenceIAF` on a new :class:`~pyro_lgm.nn.CausalConvNet1d` (identity at init).

    Example:
        >>> sequence_iaf(hidden=4, layers=2).net.receptive_field
        5
    """
    net = CausalConvNet1d(1, hidden, layers, kernel_size, 2, **net_kwargs)  # type: ignore[arg-type]
    return SequenceIAF(net, log_scale_bound=log_scale_bound)


def conditional_sequence_iaf(
    global_dim: int | None = None,
    num_classes: int | None = None,
    local_channels: int | None = None,
    hidden: int = 32,
    layers: int = 4,
    kernel_size: int = 2,
    log_scale_bound: float = 3.0,
    **net_kwargs: object,
) -> ConditionalSequenceIAF:
    """A :class:`ConditionalSequenceIAF` on a new conditional network (identity at init)."""
    net = CausalConvNet1d(
        1,
        hidden,
        layers,
        kernel_size,
        2,
        global_dim=global_dim,
        num_classes=num_classes,
        local_channels=local_channels,
        **net_kwargs,  # type: ignore[arg-type]
    )
    return ConditionalSequenceIAF(net, log_scale_bound=log_scale_bound)
