r"""Binarized MNIST: Larochelle's fixed binarization, and dynamic binarization.

*Fixed* ("static") binarized MNIST is the standard benchmark of NADE, MADE, DeepNADE and
PixelCNN: Salakhutdinov & Murray's (2008) single stochastic binarization of MNIST, split
50000 / 10000 / 10000 (train / valid / test) and published by Hugo Larochelle as
``binarized_mnist_{train,valid,test}.amat`` (one image per line, 784 whitespace-separated
``0``/``1``). The reader also takes a ``binarized_mnist.npz`` holding ``uint8`` arrays
``train``, ``valid``, ``test`` (loaded with ``allow_pickle=False``).

*Dynamic* binarization draws a fresh :math:`x \sim \mathrm{Bernoulli}(\text{pixel}/255)`
every epoch from the grey-level MNIST images (:func:`binarize`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from pyro_lgm.data._paths import (
    ENV_VAR,
    candidate_dirs,
    check_binary_array,
    check_dtype,
    check_split,
    find_file,
    parse_binary_rows,
    read_bytes,
    to_tensor,
    where,
)

__all__ = ["binarize", "load_binarized_mnist", "read_amat"]

_SPLITS = ("train", "valid", "test")
_NPZ_NAME = "binarized_mnist.npz"
_WIDTH = 784


def read_amat(path: str | os.PathLike, *, width: int | None = _WIDTH) -> np.ndarray:
    r"""Read a ``.amat`` file of binary rows (raw or gzip-compressed).

    Args:
        path: the file: one example per line, whitespace-separated ``0``/``1`` values.
        width: the number of values every line must have (784 for binarized MNIST), or
            ``None`` to only require all lines to have the same number.

    Returns:
        ``uint8`` array ``(N, width)`` with values in ``{0, 1}``.

    Raises:
        ValueError: a value other than 0 or 1, or a line of the wrong width (the message
            gives the line number).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.amat")
        >>> with open(path, "w") as f:
        ...     _ = f.write("0 1 1\n1 0 0\n")
        >>> read_amat(path, width=3)
        array([[0, 1, 1],
               [1, 0, 0]], dtype=uint8)
    """
    path = Path(path)
    if width is not None and (not isinstance(width, int) or width <= 0):
        raise ValueError(f"width: expected a positive int or None, got {width!r}")
    return parse_binary_rows(read_bytes(path), sep=" ", source=str(path), width=width)


def _read_npz_split(path: Path, split: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if split not in archive.files:
                raise ValueError(
                    f"{path}: expected an array named {split!r} (arrays train, valid, test), "
                    f"found {sorted(archive.files)}"
                )
            array = archive[split]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({e})") from e
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError(
                f"{path}: array {split!r} is stored as pickled objects; expected a plain "
                "uint8 array (pickles are never loaded)"
            ) from e
        raise
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        array = array.reshape(array.shape[0], _WIDTH)
    if array.ndim != 2 or array.shape[1] != _WIDTH:
        raise ValueError(
            f"{path}: array {split!r} must have shape (N, 784) or (N, 28, 28), got {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{path}: array {split!r} must be numeric, got dtype {array.dtype}")
    check_binary_array(array, f"{path} [{split}]")
    return array.astype(np.uint8)


def load_binarized_mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    r"""Load a split of Larochelle's fixed binarized MNIST.

    Looks for ``binarized_mnist.npz`` first (fast), then for
    ``binarized_mnist_{split}.amat`` (optionally ``.gz``). Values are checked to be in
    ``{0, 1}`` and rows to have 784 entries (row-major 28x28 images; use
    ``x.view(-1, 1, 28, 28)`` for images). The standard sizes are 50000 / 10000 / 10000;
    note that the standard test split is sorted by digit class, so take random (not
    leading) subsets of it.

    Args:
        root: the directory holding the files, a data home with a ``binarized_mnist/``
            sub-directory, or the path of an ``.npz`` file. Defaults to the
            ``PYRO_LGM_DATA`` environment variable.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        dtype: dtype of the result; ``torch.uint8`` by default (``torch.float32`` for
            training).

    Returns:
        Tensor ``(N, 784)`` of ``dtype`` with values in ``{0, 1}``.

    Raises:
        FileNotFoundError: neither file found (the message lists the files looked for).
        ValueError: bad arguments, non-binary values, wrong width, or a pickled ``.npz``.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "binarized_mnist_valid.amat"), "w") as f:
        ...     _ = f.write(" ".join(["1"] * 392 + ["0"] * 392) + "\n")
        >>> x = load_binarized_mnist(d, split="valid", dtype=torch.float32)
        >>> x.shape, x.sum().item()
        (torch.Size([1, 784]), 392.0)
    """
    split = check_split(split, _SPLITS)
    dtype = check_dtype(dtype)
    if root is not None and Path(os.fspath(root)).suffix == ".npz":
        path = Path(os.fspath(root)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"binarized MNIST: no such file {path}")
        return to_tensor(_read_npz_split(path, split), dtype)
    amat = f"binarized_mnist_{split}.amat"
    dirs = candidate_dirs(root, "binarized_mnist")
    for directory in dirs:
        npz = directory / _NPZ_NAME
        if npz.is_file():
            return to_tensor(_read_npz_split(npz, split), dtype)
        path = find_file(directory, [amat])
        if path is not None:
            return to_tensor(read_amat(path, width=_WIDTH), dtype)
    raise FileNotFoundError(
        f"binarized MNIST {split!r} split: missing file, expected {_NPZ_NAME} or {amat}[.gz] "
        f"in {' or '.join(str(d) for d in dirs)} ({where(root)}); pass root=... or set "
        f"{ENV_VAR}"
    )


def binarize(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    r"""Dynamic (stochastic) binarization: one fresh Bernoulli draw per pixel.

    .. math::

        x_i \sim \mathrm{Bernoulli}(p_i), \qquad p_i = \text{pixel}_i / 255,

    independently for every pixel and every call, so calling it once per epoch gives the
    "dynamically binarized MNIST" of the VAE/IWAE literature (Salakhutdinov & Murray, 2008).

    References:
        R. Salakhutdinov and I. Murray, "On the Quantitative Analysis of Deep Belief
        Networks", ICML 2008.

    Args:
        images: tensor of any shape: ``uint8`` grey levels ``0..255``, or floating point
            probabilities in ``[0, 1]``.
        generator: optional ``torch.Generator`` (on the device of ``images``) for
            reproducible draws.
        dtype: dtype of the result (``torch.uint8`` by default).

    Returns:
        Tensor of the same shape as ``images`` with values in ``{0, 1}``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> binarize(torch.tensor([0, 255, 255, 0], dtype=torch.uint8), g).tolist()
        [0, 1, 1, 0]
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    dtype = check_dtype(dtype)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator or None, got {generator!r}")
    if images.dtype == torch.uint8:
        probs = images.to(torch.float32) / 255.0
    elif images.is_floating_point():
        if torch.isnan(images).any():
            raise ValueError("images: expected probabilities in [0, 1], found NaN")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError(
                "images: expected floating point probabilities in [0, 1] (or uint8 grey "
                f"levels 0..255), got values in [{images.min().item()}, {images.max().item()}]"
            )
        probs = images
    else:
        raise ValueError(
            f"images: expected uint8 grey levels or floating point probabilities, "
            f"got dtype {images.dtype}"
        )
    return torch.bernoulli(probs, generator=generator).to(dtype)
