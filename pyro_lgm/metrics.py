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

import torch

__all__ = [
    "LOG2",
    "nats_to_bits_per_dim",
    "bits_per_dim",
    "dequantized_log_likelihood",
    "importance_weighted_log_likelihood",
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
