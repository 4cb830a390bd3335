r"""Parallel WaveNet: an IAF student over sequences and probability density distillation.

The student (van den Oord et al., 2018, Sec. 3) draws white noise
:math:`z_t \sim \mathrm{Logistic}(0, 1)` for every step and passes it through ``K``
:class:`~pyro_lgm.transforms.SequenceIAF` flows; every flow is one parallel network pass, so
a whole sequence costs ``K`` passes whatever its length. The student is trained by
*probability density distillation* (Sec. 4): minimise

.. math::
    D_{\mathrm{KL}}(q \,\|\, p_T) = \mathbb{E}_{x \sim q}[\log q(x) - \log p_T(x)]
    = H(q, p_T) - H(q)

over the student :math:`q`, with :math:`p_T` a trained (frozen) teacher that can only
*score* sequences in parallel. The expectation is estimated with reparameterized samples of
the student, whose log-density comes out of the same pass (:meth:`ParallelWaveNet.
sample_with_log_prob`); the teacher's parameters receive no update (they are not given to
the optimizer), but gradients flow *through* the teacher's log-density into the student.

The teacher
    Any object with ``log_prob(x)``: real sequences ``x`` of shape ``(..., T)`` to their
    log-densities ``(...)``, differentiable in ``x``. (A WaveNet teacher provides it as
    ``teacher.as_continuous()``, a continuous density over sequences in :math:`[-1, 1]`;
    use ``ParallelWaveNet(..., bounded=True)`` when the teacher's density is zero outside.)

The auxiliary *power loss* (Sec. 4.2) compares the average short-time power spectrum of the
student's samples with that of real audio (:func:`power_loss`).

References:
    A. van den Oord, Y. Li, I. Babuschkin, K. Simonyan, O. Vinyals, K. Kavukcuoglu,
    G. van den Driessche, E. Lockhart, L. C. Cobo, F. Stimberg et al. *Parallel WaveNet:
    Fast High-Fidelity Speech Synthesis*. ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from pyro_lgm.nn.causal1d import CausalConvNet1d
from pyro_lgm.transforms.iaf1d import SequenceIAF

__all__ = [
    "DensityDistillation",
    "DistillationLoss",
    "ParallelWaveNet",
    "TeacherDensity",
    "distillation_loss",
    "power_loss",
]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class _Logistic(dist.Logistic):
    """``Logistic`` whose reparameterized draws never hit the infinite ends of ``icdf``."""

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        u = self.loc.new_empty(shape).uniform_()
        tiny = torch.finfo(u.dtype).tiny
        return self.icdf(u.clamp(tiny, 1.0 - torch.finfo(u.dtype).eps))


#: Entropy of one step of each base, in nats.
_BASE_ENTROPY = {"logistic": 2.0, "normal": 0.5 * math.log(2 * math.pi * math.e)}


class ParallelWaveNet(nn.Module):
    r"""The Parallel WaveNet student: logistic noise through ``K`` sequence IAFs.

    .. math::
        z \sim \prod_t \mathrm{Logistic}(z_t; 0, 1), \qquad
        x = f_K \circ \dots \circ f_1(z), \qquad
        f_k(z)_t = z_t\, s^{(k)}_t(z_{<t}) + \mu^{(k)}_t(z_{<t}).

    Calling the module returns the student distribution (a
    :class:`~pyro.distributions.TransformedDistribution`, event shape ``(T,)``), bound to
    the current parameters. Sampling is one network pass per flow (``K`` in all, for any
    ``T``); ``log_prob`` of given data inverts each flow sequentially (up to ``T`` passes
    each) - the student is meant to be sampled, and :meth:`sample_with_log_prob` returns
    samples with their exact log-density from the sampling pass itself.

    Args:
        length: ``T``, the sequence length.
        flows: ``K``, the number of IAF flows (the paper: 4).
        hidden: channels of each flow's network.
        layers: residual blocks of each flow's network: an int, or one per flow (the
            paper: 10, 10, 10, 30 with dilations cycling to 512).
        kernel_size: convolution width.
        log_scale_bound: soft clamp of every flow's log-scale
            (:class:`~pyro_lgm.transforms.SequenceIAF`).
        global_dim / num_classes / local_channels: conditioning of every flow's network
            (:class:`~pyro_lgm.nn.CausalConvNet1d`); the call then requires ``context``.
        base: ``"logistic"`` (the paper) or ``"normal"``.
        bounded: append ``tanh`` so that samples lie in :math:`(-1, 1)` (for a teacher whose
            density lives there); its log-Jacobian is accounted for.

    Example:
        >>> import torch
        >>> student = ParallelWaveNet(16, flows=2, hidden=8, layers=2)
        >>> x, log_q = student.sample_with_log_prob(3)
        >>> x.shape, log_q.shape
        (torch.Size([3, 16]), torch.Size([3]))
        >>> torch.allclose(student().log_prob(x.detach().clone()), log_q, atol=1e-4)
        True
    """

    def __init__(
        self,
        length: int,
        flows: int = 4,
        hidden: int = 32,
        layers: int | Sequence[int] = 4,
        kernel_size: int = 2,
        log_scale_bound: float = 3.0,
        global_dim: int | None = None,
        num_classes: int | None = None,
        local_channels: int | None = None,
        base: str = "logistic",
        bounded: bool = False,
    ) -> None:
        super().__init__()
        self.length = _check_int("length", length, 1)
        self.num_flows = _check_int("flows", flows, 1)
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = [layers] * flows
        if not isinstance(layers, Sequence) or len(layers) != flows:
            raise ValueError(f"layers: expected an int or {flows} ints, got {layers!r}")
        if base not in _BASE_ENTROPY:
            raise ValueError(f"base: expected 'logistic' or 'normal', got {base!r}")
        if not isinstance(bounded, bool):
            raise ValueError(f"bounded: expected a bool, got {bounded!r}")
        self.base = base
        self.bounded = bounded
        self.nets = nn.ModuleList(
            CausalConvNet1d(
                1,
                hidden,
                _check_int("layers", n, 0),
                kernel_size,
                2,
                global_dim=global_dim,
                num_classes=num_classes,
                local_channels=local_channels,
            )
            for n in layers
        )
        self.conditional = self.nets[0].has_global or self.nets[0].has_local
        self.log_scale_bound = log_scale_bound
        # unconditional: the same transform objects at every call (their caches serve
        # log_prob of a sample just drawn); conditional: bound afresh to each context
        self._flows = (
            [] if self.conditional else [SequenceIAF(n, None, log_scale_bound) for n in self.nets]
        )
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def receptive_field(self) -> int:
        """Steps of noise that reach one output step: ``1 + sum_k (R_k - 1)``."""
        return 1 + sum(net.receptive_field for net in self.nets)

    def _context_batch(self, context: object) -> torch.Size:
        if not self.conditional:
            if context is not None:
                raise ValueError("context: the student is unconditional; pass context=None")
            return torch.Size()
        g, loc = self.nets[0].split_context(context)
        first = g if g is not None else loc
        return torch.Size(first.shape[:1])  # type: ignore[union-attr]

    def transforms(self, context: object = None) -> list:
        """The flows (bound to ``context``), then ``tanh`` when ``bounded``."""
        self._context_batch(context)
        if context is None:
            ts: list = list(self._flows)
        else:
            ts = [SequenceIAF(net, context, self.log_scale_bound) for net in self.nets]
        if self.bounded:
            ts.append(dist.transforms.TanhTransform(cache_size=1))
        return ts

    def base_dist(self, context: object = None) -> dist.TorchDistribution:
        """The noise: ``Logistic(0, 1)`` (or ``N(0, 1)``) on every step, event ``(T,)``."""
        batch = self._context_batch(context)
        a = self._anchor
        loc = a.new_zeros(*batch, self.length)
        one = a.new_ones(())
        d = _Logistic(loc, one) if self.base == "logistic" else dist.Normal(loc, one)
        return d.to_event(1)

    def forward(self, context: object = None) -> dist.TransformedDistribution:
        """The student distribution over ``(..., T)`` sequences."""
        return dist.TransformedDistribution(self.base_dist(context), self.transforms(context))

    def sample_with_log_prob(
        self, num_samples: int, context: object = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` reparameterized samples and their exact log-density.

        One pass per flow; the log-density is the base's minus the flows' log-Jacobians
        from that same pass (no inverse).

        Returns:
            ``x`` of shape ``(num_samples, *batch, T)`` and ``log_q`` ``(num_samples, *batch)``
            (``batch`` = the context's batch, empty when unconditional).
        """
        x, log_q, _ = self._sample(num_samples, context)
        return x, log_q

    def _sample(self, num_samples: int, context: object) -> tuple:
        _check_int("num_samples", num_samples, 1)
        base = self.base_dist(context)
        z = base.rsample((num_samples,))
        log_q = base.log_prob(z)
        ldj = torch.zeros_like(log_q)
        for t in self.transforms(context):
            y = t(z)
            j = t.log_abs_det_jacobian(z, y)
            ldj = ldj + (j if j.dim() == log_q.dim() else j.sum(-1))
            z = y
        return z, log_q - ldj, ldj

    def entropy_estimate(self, num_samples: int, context: object = None) -> torch.Tensor:
        r""":math:`H(q) = H(\text{base}) + \mathbb{E}_z[\sum_k \log|\det J_k|]`, Monte Carlo
        in the log-Jacobian only (the base's entropy is exact: 2 nats a step for the
        logistic), as in the paper's Sec. 4.1; shape ``batch``."""
        _, _, ldj = self._sample(num_samples, context)
        return _BASE_ENTROPY[self.base] * self.length + ldj.mean(0)


class DistillationLoss(NamedTuple):
    """What :func:`distillation_loss` returns (scalars, averaged over samples and batch).

    ``total = kl + power_weight * power``; ``kl = cross_entropy - entropy``.
    """

    total: torch.Tensor
    kl: torch.Tensor
    cross_entropy: torch.Tensor
    entropy: torch.Tensor
    power: torch.Tensor


def _teacher_log_prob(teacher: object, x: torch.Tensor) -> torch.Tensor:
    log_p = teacher.log_prob(x)  # type: ignore[attr-defined]
    if not isinstance(log_p, torch.Tensor) or log_p.shape != x.shape[:-1]:
        got = tuple(log_p.shape) if isinstance(log_p, torch.Tensor) else type(log_p).__name__
        raise ValueError(
            f"teacher: log_prob of a (..., T) tensor {tuple(x.shape)} must have shape "
            f"{tuple(x.shape[:-1])}, got {got}"
        )
    return log_p


def _check_teacher(teacher: object) -> object:
    if not callable(getattr(teacher, "log_prob", None)):
        raise ValueError(f"teacher: expected an object with log_prob(x), got {type(teacher)}")
    return teacher


def power_loss(
    x: torch.Tensor,
    reference: torch.Tensor,
    n_fft: int | None = None,
    hop_length: int | None = None,
) -> torch.Tensor:
    r"""Squared distance between the average STFT power spectra of ``x`` and ``reference``.

    .. math::
        \left\| \overline{|\mathrm{STFT}(x)|^2} - \overline{|\mathrm{STFT}(y)|^2} \right\|^2
        / F,

    the averages over sequences and frames, ``F = n_fft // 2 + 1`` frequency bins (a mean
    over bins). Nonnegative, zero when the two average spectra agree, differentiable in
    ``x`` (van den Oord et al., 2018, Sec. 4.2, which averages over time and compares with
    the spectrum of the real utterance).

    Args:
        x: ``(..., T)`` samples.
        reference: ``(..., T_ref)`` real audio (any batch, ``T_ref >= n_fft``).
        n_fft: frame length (Hann window, no padding); default ``min(256, T, T_ref)``.
        hop_length: default ``n_fft // 4``.

    Example:
        >>> import torch
        >>> y = torch.randn(4, 64)
        >>> power_loss(y, y).item()
        0.0
    """
    for name, v in (("x", x), ("reference", reference)):
        if not isinstance(v, torch.Tensor) or v.dim() == 0 or not v.is_floating_point():
            raise ValueError(f"{name}: expected a floating tensor of shape (..., T), got {v!r}")
    if n_fft is None:
        n_fft = min(256, x.shape[-1], reference.shape[-1])
    _check_int("n_fft", n_fft, 1)
    if n_fft > min(x.shape[-1], reference.shape[-1]):
        raise ValueError(
            f"n_fft: {n_fft} exceeds the length of x ({x.shape[-1]}) or of reference "
            f"({reference.shape[-1]})"
        )
    hop = max(1, n_fft // 4) if hop_length is None else _check_int("hop_length", hop_length, 1)
    reference = reference.to(x)

    def spectrum(v: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(n_fft, dtype=v.dtype, device=v.device)
        s = torch.stft(
            v.reshape(-1, v.shape[-1]), n_fft, hop, window=window, center=False,
            return_complex=True,
        )  # fmt: skip
        return s.abs().pow(2).mean(dim=(0, 2))

    return (spectrum(x) - spectrum(reference)).pow(2).mean()


def distillation_loss(
    student: ParallelWaveNet,
    teacher: object,
    num_samples: int,
    context: object = None,
    power_weight: float = 0.0,
    reference: torch.Tensor | None = None,
    entropy: str = "analytic",
    **power_kwargs: object,
) -> DistillationLoss:
    r"""Monte Carlo probability density distillation loss, reparameterized.

    .. math::
        \mathrm{KL}(q \,\|\, p_T) \approx \underbrace{-\frac1N \sum_n \log p_T(x_n)}_{
        \text{cross-entropy}} - \hat H(q), \qquad x_n = f(z_n),\ z_n \sim \text{base},

    with ``N = num_samples`` samples from one sampling pass of the student. ``entropy``
    chooses :math:`\hat H(q)`:

    * ``"analytic"`` (default, the paper's lower-variance estimate): the base's exact
      entropy plus the mean of the flows' log-Jacobians;
    * ``"sample"``: :math:`-\frac1N\sum_n \log q(x_n)`, so that ``kl`` is exactly
      :math:`\frac1N\sum_n [\log q(x_n) - \log p_T(x_n)]` - the value
      :class:`DensityDistillation`'s ``Trace_ELBO`` loss takes for the same draws.

    Both are unbiased for the KL (up to the teacher's normalizing constant). With
    ``power_weight > 0`` the total adds ``power_weight * power_loss(x, reference)``.

    Args:
        student: a :class:`ParallelWaveNet`.
        teacher: any object with ``log_prob(x)`` mapping ``(..., T)`` to ``(...)``,
            differentiable in ``x``.
        num_samples: ``N >= 1``.
        context: the student's context (the teacher is assumed to be conditioned on the
            same context already).
        power_weight: weight of the power loss, ``>= 0``.
        reference: ``(..., T_ref)`` real audio; required when ``power_weight > 0``.
        entropy: ``"analytic"`` or ``"sample"``.
        power_kwargs: ``n_fft``, ``hop_length`` for :func:`power_loss`.

    Returns:
        a :class:`DistillationLoss` of scalars (means over samples and context batch).
    """
    if not isinstance(student, ParallelWaveNet):
        raise ValueError(f"student: expected a ParallelWaveNet, got {type(student)}")
    _check_teacher(teacher)
    _check_int("num_samples", num_samples, 1)
    if isinstance(power_weight, bool) or not isinstance(power_weight, int | float):
        raise ValueError(f"power_weight: expected a number >= 0, got {power_weight!r}")
    if not power_weight >= 0 or not math.isfinite(power_weight):
        raise ValueError(f"power_weight: expected a finite number >= 0, got {power_weight!r}")
    if power_weight > 0 and reference is None:
        raise ValueError("reference: required when power_weight > 0")
    if entropy not in ("analytic", "sample"):
        raise ValueError(f"entropy: expected 'analytic' or 'sample', got {entropy!r}")
    x, log_q, ldj = student._sample(num_samples, context)
    cross_entropy = -_teacher_log_prob(teacher, x).mean()
    if entropy == "sample":
        h = -log_q.mean()
    else:
        h = _BASE_ENTROPY[student.base] * student.length + ldj.mean()
    kl = cross_entropy - h
    if reference is not None:
        power = power_loss(x, reference, **power_kwargs)  # type: ignore[arg-type]
    else:
        power = x.new_zeros(())
    total = kl + power_weight * power if power_weight > 0 else kl
    return DistillationLoss(total, kl, cross_entropy, h, power)


class TeacherDensity(dist.TorchDistribution):
    """A teacher's ``log_prob`` as a Pyro distribution over ``(*batch, T)`` sequences.

    Only scored: in :class:`DensityDistillation` the sample site ``"x"`` is always replayed
    from the guide. ``sample`` / ``rsample`` delegate to the teacher when it has them, and
    otherwise raise a ``NotImplementedError`` saying so (a density-only teacher cannot be
    sampled through this wrapper).

    Args:
        teacher: any object with ``log_prob(x)``: ``(..., T) -> (...)``.
        length: ``T``.
        batch_shape: the distribution's batch shape (a plate's size, the context's batch).
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = False

    def __init__(
        self, teacher: object, length: int, batch_shape: Sequence[int] = torch.Size()
    ) -> None:
        self.teacher = _check_teacher(teacher)
        self.length = _check_int("length", length, 1)
        super().__init__(torch.Size(batch_shape), torch.Size([length]), validate_args=False)

    def expand(self, batch_shape: Sequence[int], _instance: object = None) -> TeacherDensity:
        return TeacherDensity(self.teacher, self.length, batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return _teacher_log_prob(self.teacher, value)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        if hasattr(self.teacher, "sample"):
            return self.teacher.sample(shape)  # type: ignore[attr-defined]
        raise NotImplementedError(
            "TeacherDensity: the teacher has no sample(); in distillation the site is "
            "replayed from the student (the guide), never sampled from the teacher"
        )


class DensityDistillation(nn.Module):
    r"""Probability density distillation as a Pyro model / guide pair.

    ``model()`` puts the teacher's density on a site ``"x"``; ``guide()`` draws ``"x"`` from
    the student (reparameterized). Both score ``num_samples`` draws inside a plate scaled by
    ``1 / (num_samples * B)`` (``B`` the context's batch size, 1 without), so that
    ``SVI(dd.model, dd.guide, Adam(...), Trace_ELBO())`` has loss

    .. math::
        -\mathrm{ELBO} = \frac1{NB} \sum_{n, b} [\log q(x_{nb}) - \log p_T(x_{nb})],

    the Monte Carlo estimate of :math:`\mathrm{KL}(q\,\|\,p_T)` when the teacher is
    normalized (otherwise the KL minus the teacher's log-normalizer, a constant), and for
    the same random draws (same seed) exactly ``distillation_loss(..., entropy="sample").kl``.
    The teacher's parameters are not registered with Pyro, so SVI updates the student only.

    Args:
        student: a :class:`ParallelWaveNet` (registered as ``pyro.module("student", ...)``).
        teacher: any object with ``log_prob(x)`` (see :func:`distillation_loss`).
        num_samples: draws per step, ``N``.
        context: the student's context, or ``None``.
    """

    def __init__(
        self, student: ParallelWaveNet, teacher: object, num_samples: int, context: object = None
    ) -> None:
        super().__init__()
        if not isinstance(student, ParallelWaveNet):
            raise ValueError(f"student: expected a ParallelWaveNet, got {type(student)}")
        self.student = student
        self.teacher = _check_teacher(teacher)
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.context = context
        self._batch = student._context_batch(context)

    def _scale(self) -> pyro.poutine.messenger.Messenger:
        return pyro.poutine.scale(scale=1.0 / (self.num_samples * self._batch.numel()))

    def _plate(self) -> pyro.plate:
        return pyro.plate("samples", self.num_samples, dim=-1 - len(self._batch))

    def model(self) -> None:
        with self._scale(), self._plate():
            pyro.sample("x", TeacherDensity(self.teacher, self.student.length, self._batch))

    def guide(self) -> None:
        pyro.module("student", self.student)
        with self._scale(), self._plate():
            pyro.sample("x", self.student(self.context))
