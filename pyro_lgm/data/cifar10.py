r"""A CIFAR-10 **subset** from one ``.npz`` file: 32x32 RGB images, 10 classes.

The project's copy is ``cifar10_subset.npz``: the first 4000 images of CIFAR-10's
``data_batch_1`` (``"train"``) and the first 1000 of its ``test_batch`` (``"test"``), exact
CIFAR-10 pixels and labels but **not the full data set** (50000 / 10000). It is meant for
smoke tests and small benchmarks: a bits/dim measured on this test subset is **not
comparable** with published CIFAR-10 numbers, which are on the full 10000-image test set.

The archive holds four plain (never pickled) arrays: ``x_train`` and ``x_test`` of shape
``(N, 32, 32, 3)`` (height, width, RGB channel) with values ``0..255``, ``y_train`` and
``y_test`` of shape ``(N,)`` with class ids ``0..9`` (:data:`CIFAR10_CLASSES`). The reader
returns images channel-first, ``(N, 3, 32, 32)``, the layout of the image models.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from pyro_lgm.data._paths import (
    ENV_VAR,
    _as_path,
    candidate_dirs,
    check_dtype,
    check_split,
    where,
)

__all__ = ["CIFAR10_CLASSES", "load_cifar10"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_SPLITS = ("train", "test")
_NPZ_NAME = "cifar10_subset.npz"
_SUBDIR = "cifar10_subset"
_IMAGE_SHAPE = (32, 32, 3)


def _find_npz(root: str | os.PathLike | None) -> Path:
    if root is not None and _as_path(root).suffix == ".npz":
        path = _as_path(root)
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 subset: no such file {path}")
        return path
    dirs = candidate_dirs(root, _SUBDIR)
    for directory in dirs:
        path = directory / _NPZ_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"CIFAR-10 subset: missing file, expected {_NPZ_NAME} in "
        f"{' or '.join(str(d) for d in dirs)} ({where(root)}); pass root=... (the file, its "
        f"directory or a data home with a {_SUBDIR}/ sub-directory) or set {ENV_VAR}"
    )


def _read_arrays(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    keys = (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise ValueError(
                    f"{path}: expected arrays {', '.join(keys)} for split {split!r}, missing "
                    f"{', '.join(missing)} (found {sorted(archive.files)})"
                )
            images, labels = archive[keys[0]], archive[keys[1]]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({e})") from e
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError(
                f"{path}: an array of split {split!r} is stored as pickled objects; expected "
                "plain integer arrays (pickles are never loaded)"
            ) from e
        raise
    x_key, y_key = keys
    if images.ndim != 4 or images.shape[1:] != _IMAGE_SHAPE:
        hint = ""
        if images.ndim == 4 and images.shape[1:] == (3, 32, 32):
            hint = " (the file is channel-first; this reader expects height, width, channel)"
        raise ValueError(
            f"{path}: array {x_key!r} must have shape (N, 32, 32, 3), got {images.shape}{hint}"
        )
    if labels.ndim != 1:
        raise ValueError(f"{path}: array {y_key!r} must have shape (N,), got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{path}: {images.shape[0]} images in {x_key!r} but {labels.shape[0]} labels in "
            f"{y_key!r}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{path}: array {x_key!r} holds no images")
    for key, array, top in ((x_key, images, 255), (y_key, labels, 9)):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"{path}: array {key!r} must hold integers (uint8), got dtype {array.dtype}"
            )
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > top:
            raise ValueError(
                f"{path}: array {key!r} must hold values in 0..{top}, found values in "
                f"[{low}, {high}]"
            )
    return images, labels


def load_cifar10(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    return_labels: bool = False,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Load a split of the CIFAR-10 **subset** ``cifar10_subset.npz`` as ``(N, 3, 32, 32)``.

    **A subset, not CIFAR-10**: the project's file holds 4000 training and 1000 test images
    (the first rows of ``data_batch_1`` and ``test_batch``) instead of 50000 and 10000.
    Bits/dim on its test split is not comparable with published full-test-set numbers;
    use it for smoke tests and small benchmarks.

    The file's images are stored height-width-channel; they are returned channel-first
    (RGB planes). Shapes, integer dtypes, the ranges ``0..255`` (pixels) and ``0..9``
    (labels) and the matching counts are checked; the number of images is not, so any
    subset in the same layout loads.

    References:
        A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech.
        report, University of Toronto, 2009.

    Args:
        root: the ``.npz`` file itself, the directory holding ``cifar10_subset.npz``, or a
            data home with a ``cifar10_subset/`` sub-directory. Defaults to the
            ``PYRO_LGM_DATA`` environment variable.
        split: ``"train"`` or ``"test"`` (the subset has no validation split).
        return_labels: also return the class ids (names in :data:`CIFAR10_CLASSES`).
        dtype: dtype of the images (values stay ``0..255``); ``torch.uint8`` by default.

    Returns:
        Images ``(N, 3, 32, 32)`` of ``dtype`` with values ``0..255``, and with
        ``return_labels=True`` also labels ``(N,)`` ``int64`` in ``0..9``.

    Raises:
        FileNotFoundError: the file is absent (the message says where it was looked for).
        ValueError: bad arguments, or a file that is not a readable ``.npz`` with the arrays
            described above (the message names the array and what was wrong).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> d = tempfile.mkdtemp()
        >>> x = np.zeros((2, 32, 32, 3), np.uint8)
        >>> x[:, :, :, 0] = 255  # red
        >>> np.savez(os.path.join(d, "cifar10_subset.npz"), x_train=x, y_train=[6, 9],
        ...          x_test=x[:1], y_test=[3])
        >>> images, labels = load_cifar10(d, "train", return_labels=True)
        >>> images.shape, images.dtype, images[0, :, 0, 0].tolist(), labels.tolist()
        (torch.Size([2, 3, 32, 32]), torch.uint8, [255, 0, 0], [6, 9])
    """
    split = check_split(split, _SPLITS)
    dtype = check_dtype(dtype)
    images, labels = _read_arrays(_find_npz(root), split)
    chw = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.uint8)
    x = torch.from_numpy(chw).to(dtype)
    if return_labels:
        return x, torch.from_numpy(labels.astype(np.int64))
    return x
