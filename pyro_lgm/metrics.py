"""How the library reports likelihoods: nats, bits per dimension, IWAE bounds.

Conventions (as in the seed papers):

* binary data (binarized MNIST): negative log-likelihood in **nats** per example;
* 8-bit images: **bits per dimension** of the *discrete* data. A density model trained on
  dequantized data ``y = (x + u) / 256`` (``u ~ U[0, 1)``) has continuous log-density
  :math:`\\log p(y)`; the discrete log-likelihood bound is
  :math:`\\log p(y) - D \\log 256` when the model is on ``[0, 1)``, plus the log-det of any
  further preprocessing (e.g. the logit transform) which callers add to ``log_density``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from tqdm import tqdm

__all__ = [
    "LOG2",
    "nats_to_bits_per_dim",
    "bits_per_dim",
    "dequantized_log_likelihood",
    "importance_weighted_log_likelihood",
    "log_importance_weights",
    "iwae",
    "elbo",
    "active_units",
]

LOG2 = math.log(2.0)


def nats_to_bits_per_dim(nll_nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension.

    Example:
        >>> round(nats_to_bits_per_dim(784 * math.log(2.0), 784), 6)
        1.0
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims: expected a positive integer, got {num_dims}")
    return nll_nats / (num_dims * LOG2)


def dequantized_log_likelihood(
    log_density: torch.Tensor, num_dims: int, num_levels: int = 256
) -> torch.Tensor:
    """Discrete log-likelihood bound of a density fitted to ``(x + u) / num_levels``.

    Args:
        log_density: ``(...,)`` log-density of the scaled, dequantized data on
            ``[0, 1)^D`` (including the log-det of any later preprocessing).
        num_dims: ``D``, the number of dimensions of one example.
        num_levels: number of discrete levels per dimension (256 for 8-bit images).
    """
    return log_density - num_dims * math.log(num_levels)


def bits_per_dim(log_density: torch.Tensor, num_dims: int, num_levels: int = 256) -> torch.Tensor:
    """Bits per dimension from the log-density of data scaled to ``[0, 1)``.

    Example:
        >>> # A uniform density on [0, 1)^D is exactly 8 bits/dim for 8-bit data.
        >>> float(bits_per_dim(torch.zeros(()), num_dims=10))
        8.0
    """
    return -dequantized_log_likelihood(log_density, num_dims, num_levels) / (num_dims * LOG2)


def importance_weighted_log_likelihood(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r"""The importance-weighted estimate :math:`\log \frac1K \sum_k w_k` (Burda et al., 2016).

    Args:
        log_weights: tensor of ``log p(x, z_k) - log q(z_k | x)`` with the ``K`` samples
            along ``dim``.

    Example:
        >>> float(importance_weighted_log_likelihood(torch.zeros(5)))
        0.0
    """
    k = log_weights.shape[dim]
    return torch.logsumexp(log_weights, dim=dim) - math.log(k)


# --------------------------------------------------------------------------------------------
# Model / guide pairs: importance weights, IWAE, ELBO, active units.
# --------------------------------------------------------------------------------------------
_PARTICLES = "_particles"


def _batches(data: Any, batch_size: int | None) -> tuple[int, list[tuple[torch.Tensor, ...]]]:
    """Split ``data`` (a tensor or a tuple of tensors sharing the first dimension)."""
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise ValueError(
            f"data: expected a tensor (N, ...) or a tuple of such tensors, got {type(data)!r}"
        )
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"data: the tensors disagree on N: {[tuple(t.shape) for t in tensors]}")
    if batch_size is None:
        batch_size = max(n, 1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return n, [tuple(t[i : i + batch_size] for t in tensors) for i in range(0, n, batch_size)]


def _site_log_prob(site: dict, num: int) -> torch.Tensor:
    """The site's log-density, unscaled (poutine.scale, e.g. KL warm-up, is ignored) and
    masked, checked to be per example: shape ``(num, N)``."""
    lp = site["fn"].log_prob(site["value"])
    if site["mask"] is not None and site["mask"] is not True:
        lp = torch.where(torch.as_tensor(site["mask"], device=lp.device), lp, 0.0)
    frames = [f for f in site["cond_indep_stack"] if f.name != _PARTICLES and f.vectorized]
    if not any(f.dim == -1 for f in frames) or lp.dim() != 2 or lp.shape[0] != num:
        raise ValueError(
            f"model: site {site['name']!r} is not local to the data: a per-example log p(x) "
            f"needs every sample site inside one data plate at dim -1 (shape (N,)), got "
            f"log-density shape {tuple(lp.shape)} under {num} particles"
        )
    return lp


def log_importance_weights(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: torch.Tensor,
    num_samples: int = 1,
) -> torch.Tensor:
    r"""Per-example log importance weights of a Pyro model / guide pair.

    .. math::
        \log w_{s,n} = \log p(x_n, z_{s,n}) - \log q(z_{s,n} \mid x_n),
        \qquad z_{s,n} \sim q(z \mid x_n),

    the guide run vectorized over ``num_samples`` particles (a ``pyro.plate`` at dim -2)
    and the model replayed on its samples. Every sample site of both programs must lie in a
    data plate at dim -1 whose size is the batch size ``N`` (a VAE's ``pyro.plate("data",
    N)``): sites outside it (global latents) make the per-example likelihood undefined and
    raise ``ValueError``. ``poutine.scale`` factors (KL warm-up, subsampling) are ignored:
    the weights are those of the unscaled joint. No gradients are kept.

    Args:
        model, guide: Pyro programs called as ``model(*args)`` / ``guide(*args)``.
        args: their arguments, e.g. the batch ``x`` of shape ``(N, ...)``.
        num_samples: ``S`` particles.

    Returns:
        ``(S, N)`` tensor.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
    with torch.no_grad(), pyro.plate(_PARTICLES, num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    log_w: torch.Tensor | int = 0
    for site in model_trace.nodes.values():
        if site["type"] == "sample" and not site_is_subsample(site):
            log_w = log_w + _site_log_prob(site, num_samples)
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            log_w = log_w - _site_log_prob(site, num_samples)
    if not isinstance(log_w, torch.Tensor):
        raise ValueError("model: it has no sample sites")
    return log_w


def _check_samples(num_samples: object, chunk_size: object) -> tuple[int, int]:
    for name, v in (("num_samples", num_samples), ("chunk_size", chunk_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return num_samples, chunk_size  # type: ignore[return-value]


def _progress(total: int, desc: str, progress: bool | None) -> tqdm:
    if progress is None:
        progress = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def iwae(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    num_samples: int = 5000,
    chunk_size: int = 100,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""The importance-weighted bound on :math:`\log p(x)` for each example (Burda et al.).

    .. math::
        \mathcal L_S(x) = \log \frac1S \sum_{s=1}^S
        \frac{p(x, z_s)}{q(z_s \mid x)}, \qquad z_s \sim q(z \mid x),

    a lower bound that rises with :math:`S` to :math:`\log p(x)` (:math:`\mathcal L_1` is
    the ELBO's estimate). The samples are drawn ``chunk_size`` at a time and combined with a
    running ``logsumexp``, so memory is that of ``chunk_size`` particles whatever ``S``
    (``S = 5000`` on binarized MNIST is the papers' test-set figure); ``batch_size``
    splits the data the same way. See :func:`log_importance_weights` for what the model
    and guide must look like.

    References:
        Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted Autoencoders.
        ICLR 2016. https://arxiv.org/abs/1509.00519

    Args:
        model, guide: Pyro programs called as ``model(*batch)`` / ``guide(*batch)``.
        data: ``x`` of shape ``(N, ...)`` or a tuple of tensors sharing ``N``.
        num_samples: ``S``.
        chunk_size: particles per pass.
        batch_size: examples per pass (default: all).
        progress: a progress bar on stderr (default: when stderr is a terminal).

    Returns:
        ``(N,)`` tensor of :math:`\mathcal L_S(x_n)` in nats.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2)
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2): every weight is p(x)
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
        >>> x = torch.tensor([0.0, 1.0])
        >>> exact = dist.Normal(0.0, 2.0**0.5).log_prob(x)
        >>> torch.allclose(iwae(model, guide, x, num_samples=10, chunk_size=4), exact)
        True
    """
    num_samples, chunk_size = _check_samples(num_samples, chunk_size)
    n, batches = _batches(data, batch_size)
    chunks = [min(chunk_size, num_samples - i) for i in range(0, num_samples, chunk_size)]
    out = []
    with _progress(len(batches) * len(chunks), "IWAE", progress) as bar:
        for batch in batches:
            total: torch.Tensor | None = None
            for c in chunks:
                lse = torch.logsumexp(
                    log_importance_weights(model, guide, *batch, num_samples=c), 0
                )
                total = lse if total is None else torch.logaddexp(total, lse)
                bar.update(1)
            out.append(total - math.log(num_samples))  # type: ignore[operator]
    return torch.cat(out)


def elbo(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    num_samples: int = 1,
    chunk_size: int = 100,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Monte Carlo ELBO per example: :math:`\frac1S \sum_s \log w_s` (see :func:`iwae`).

    Returns:
        ``(N,)`` tensor in nats; its mean is ``-Trace_ELBO`` loss / ``N`` in expectation.
    """
    num_samples, chunk_size = _check_samples(num_samples, chunk_size)
    _, batches = _batches(data, batch_size)
    out = []
    for batch in batches:
        total: torch.Tensor | int = 0
        for i in range(0, num_samples, chunk_size):
            c = min(chunk_size, num_samples - i)
            total = total + log_importance_weights(model, guide, *batch, num_samples=c).sum(0)
        out.append(total / num_samples)
    return torch.cat(out)


def active_units(
    guide: Callable[..., Any],
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    site: str = "z",
    num_samples: int = 100,
    threshold: float = 0.01,
    batch_size: int | None = None,
) -> tuple[int, torch.Tensor]:
    r"""Active latent units (Burda et al., 2016): units whose posterior mean varies with x.

    .. math::
        A_u = \operatorname{Cov}_x\big(\mathbb E_{q(z \mid x)}[z_u]\big) > \delta,

    with :math:`\delta` = ``threshold`` (0.01 in the paper). The posterior mean is estimated
    from ``num_samples`` guide samples (a flow's mean has no closed form), and the Monte
    Carlo noise this adds to the variance across ``x`` is removed: the estimate is
    :math:`\operatorname{Var}_x(\bar z_u) - \operatorname{mean}_x(s^2_u(x) / S)`, with
    :math:`s^2_u(x)` the unbiased sample variance of the ``S`` draws for one ``x``. Without
    the correction an inactive unit (posterior :math:`\approx N(0, 1)` for every ``x``)
    would show :math:`1 / S`, above :math:`\delta` for ``S < 100``.

    Args:
        guide: called as ``guide(*batch)``; its site ``site`` is an ``(N, L)`` latent (or
            ``(N, *shape)``, e.g. a latent feature map, whose units are counted flat).
        data: ``x`` of shape ``(N, ...)`` or a tuple of tensors sharing ``N``.
        site: the latent site's name.
        num_samples: guide samples per example (at least 2).
        threshold: :math:`\delta`.
        batch_size: examples per pass.

    Returns:
        ``(count, activity)`` with ``activity`` the ``(L,)`` corrected variances (``L`` the
        number of units).
    """
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
    _check_samples(num_samples, 1)
    if num_samples < 2:
        raise ValueError(f"num_samples: the noise correction needs at least 2, got {num_samples}")
    n, batches = _batches(data, batch_size)
    if n < 2:
        raise ValueError(f"data: a variance across examples needs N >= 2, got N = {n}")
    means, noise = [], []
    for batch in batches:
        with torch.no_grad(), pyro.plate(_PARTICLES, num_samples, dim=-2):
            tr = poutine.trace(guide).get_trace(*batch)
        if site not in tr.nodes:
            raise ValueError(f"site: the guide has no sample site {site!r}")
        z = tr.nodes[site]["value"]
        if z.dim() < 3 or z.shape[0] != num_samples:
            raise ValueError(
                f"site: expected {site!r} of shape (N, L) (or (N, *shape), counted flat) per "
                f"particle, got {tuple(z.shape)}"
            )
        z = z.flatten(2)
        means.append(z.mean(0))
        noise.append(z.var(0) / num_samples)
    activity = torch.cat(means).var(0) - torch.cat(noise).mean(0)
    return int((activity > threshold).sum()), activity
