r"""Encoder and decoder networks for :class:`pyro_lgm.models.VAE`.

Plain ``nn.Module`` s, each a function of a tensor only:

* an *encoder* maps data ``x`` of shape ``(N, *data_shape)`` to features ``h`` of shape
  ``(N, F)``: the encoder's Gaussian and (amortized) flow parameters are read out of ``h``;
* a *decoder* maps latents ``z`` of shape ``(N, L)`` to ``N`` rows of ``m * prod(data_shape)``
  numbers (any shape with that many elements per row, e.g. ``(N, m * D)`` or
  ``(N, m * C, H, W)``): ``m`` likelihood parameters per data element (1 for Bernoulli logits,
  2 for a Gaussian's mean and scale, ``K`` logits for a ``K``-level categorical), the ``m``
  groups outermost.

The MLP pair follows the binarized-MNIST VAEs of Kingma & Welling (2014) and Rezende &
Mohamed (2015); the convolutional pair is a small two-stride DCGAN-style network for images
whose height and width are multiples of 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["conv_decoder", "conv_encoder", "mlp_decoder", "mlp_encoder"]


def _dims(name: str, dims: object) -> list[int]:
    try:
        out = list(dims)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{name}: expected a sequence of positive ints, got {dims!r}") from None
    if not out or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in out):
        raise ValueError(f"{name}: expected a non-empty sequence of positive ints, got {dims!r}")
    return out


def _shape(data_shape: object) -> tuple[int, ...]:
    shape = tuple(_dims("data_shape", data_shape))
    return shape


def mlp_encoder(
    data_shape: Sequence[int],
    hidden_dims: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """An MLP from flattened data to ``hidden_dims[-1]`` features.

    Args:
        data_shape: shape of one example, e.g. ``(784,)`` or ``(1, 28, 28)``.
        hidden_dims: widths of the hidden layers; the last is the feature size ``F``.
        activation: the non-linearity after every layer.

    Example:
        >>> import torch
        >>> mlp_encoder((1, 28, 28), [64, 32])(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([5, 32])
    """
    shape = _shape(data_shape)
    sizes = [math.prod(shape), *_dims("hidden_dims", hidden_dims)]
    layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


def mlp_decoder(
    latent_dim: int,
    data_shape: Sequence[int],
    hidden_dims: Sequence[int] = (256, 256),
    params_per_element: int = 1,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """An MLP from ``z`` to ``params_per_element * prod(data_shape)`` outputs.

    Args:
        latent_dim: size ``L`` of ``z``.
        data_shape: shape of one example.
        hidden_dims: hidden widths, listed as for the encoder (the decoder uses them in
            reverse order, mirroring it).
        params_per_element: ``m``, likelihood parameters per data element.
        activation: the non-linearity between layers.

    Example:
        >>> import torch
        >>> mlp_decoder(8, (784,), [64, 32])(torch.zeros(5, 8)).shape
        torch.Size([5, 784])
    """
    shape = _shape(data_shape)
    hidden = list(reversed(_dims("hidden_dims", hidden_dims)))
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim: expected a positive int, got {latent_dim!r}")
    sizes = [latent_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-1], params_per_element * math.prod(shape)))
    return nn.Sequential(*layers)


def _image_shape(data_shape: object) -> tuple[int, int, int]:
    shape = _shape(data_shape)
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"data_shape: the convolutional networks need (C, H, W) with H and W multiples "
            f"of 4, got {shape}"
        )
    return shape  # type: ignore[return-value]


def conv_encoder(
    data_shape: Sequence[int],
    feature_dim: int = 256,
    channels: Sequence[int] = (32, 64),
) -> nn.Sequential:
    """Two stride-2 4x4 convolutions, then a linear layer to ``feature_dim`` features.

    Args:
        data_shape: ``(C, H, W)`` with ``H`` and ``W`` multiples of 4.
        feature_dim: size ``F`` of the features.
        channels: the two convolutions' output channels.

    Example:
        >>> import torch
        >>> conv_encoder((1, 28, 28), 32)(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([5, 32])
    """
    c, h, w = _image_shape(data_shape)
    c1, c2 = _dims("channels", channels)
    return nn.Sequential(
        nn.Conv2d(c, c1, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(start_dim=1),
        nn.Linear(c2 * (h // 4) * (w // 4), feature_dim),
        nn.ReLU(),
    )


def conv_decoder(
    latent_dim: int,
    data_shape: Sequence[int],
    feature_dim: int = 256,
    channels: Sequence[int] = (32, 64),
    params_per_element: int = 1,
) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: linear layers, then two stride-2 transposed
    convolutions to ``(params_per_element * C, H, W)``.

    Example:
        >>> import torch
        >>> conv_decoder(8, (1, 28, 28), 32, params_per_element=2)(torch.zeros(5, 8)).shape
        torch.Size([5, 2, 28, 28])
    """
    c, h, w = _image_shape(data_shape)
    c1, c2 = _dims("channels", channels)
    return nn.Sequential(
        nn.Linear(latent_dim, feature_dim),
        nn.ReLU(),
        nn.Linear(feature_dim, c2 * (h // 4) * (w // 4)),
        nn.ReLU(),
        nn.Unflatten(1, (c2, h // 4, w // 4)),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(c1, params_per_element * c, 4, stride=2, padding=1),
    )
