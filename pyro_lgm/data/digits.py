r"""scikit-learn's bundled 8x8 digits: the default data set, no download needed.

1797 images of handwritten digits at 8x8 pixels with 17 grey levels (0..16): the test part
of the UCI "optdigits" data, shipped inside the scikit-learn wheel. Small enough for tests,
tutorials and quick density-estimation experiments (64 dimensions, binarized or not).

Splits are fixed and documented: the 1797 images are ordered by a permutation drawn from
``random.Random(seed)`` (Python guarantees its ``random()`` sequence for a given integer
seed across versions; the permutation is the stable ``argsort`` of the first 1797 draws),
then the first 1197 are ``"train"``, the next 300 ``"valid"`` and the last 300 ``"test"``.

:func:`load_digits` gives flat vectors ``(N, 64)`` of the raw levels (or binarized);
:func:`load_digits_images` gives images ``(N, 1, 8, 8)`` with the levels rescaled to
``bits``-bit values, a CPU-sized stand-in for 8-bit image benchmarks.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from pyro_lgm.data._paths import check_dtype, check_split, to_tensor

__all__ = ["DIGITS_SPLIT_SIZES", "digits_permutation", "load_digits", "load_digits_images"]

DIGITS_SPLIT_SIZES = {"train": 1197, "valid": 300, "test": 300}
_NUM_DIGITS = 1797
_DEFAULT_THRESHOLD = 8


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    data = np.asarray(bunch.data)
    if data.shape != (_NUM_DIGITS, 64) or data.min() < 0 or data.max() > 16:
        raise ValueError(
            f"scikit-learn digits: expected (1797, 64) integers in 0..16, got shape "
            f"{data.shape} with range [{data.min()}, {data.max()}]"
        )
    images = data.astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits_permutation(seed: int = 0) -> torch.Tensor:
    r"""The fixed permutation of the 1797 digits that defines the splits.

    ``perm = argsort([r.random() for _ in range(1797)])`` with ``r = random.Random(seed)``
    (stable sort); ``"train"`` is ``perm[:1197]``, ``"valid"`` ``perm[1197:1497]``,
    ``"test"`` ``perm[1497:]``.

    Args:
        seed: a non-negative integer.

    Returns:
        ``int64`` tensor ``(1797,)``, a permutation of ``0..1796``.

    Example:
        >>> perm = digits_permutation()
        >>> perm.shape, bool((perm.sort().values == torch.arange(1797)).all())
        (torch.Size([1797]), True)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    rng = random.Random(seed)
    keys = np.array([rng.random() for _ in range(_NUM_DIGITS)])
    return torch.from_numpy(np.argsort(keys, kind="stable").astype(np.int64))


def load_digits(
    binarize: bool | int = False,
    split: str = "all",
    *,
    seed: int = 0,
    return_labels: bool = False,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""scikit-learn's 8x8 digits as a tensor ``(N, 64)`` (row-major 8x8 images).

    With ``binarize`` the grey levels are thresholded:

    .. math::

        x_i = \mathbb{1}[\text{level}_i \ge t],

    with :math:`t = 8` for ``binarize=True``, or the integer given.

    References:
        E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
        Learning Repository, 1998 (scikit-learn's ``load_digits``).

    Args:
        binarize: ``False`` for the 17 grey levels ``0..16``; ``True`` for ``level >= 8``;
            an integer ``t`` in ``1..16`` for ``level >= t``.
        split: ``"all"`` (1797 images in the original order), ``"train"`` (1197),
            ``"valid"`` (300) or ``"test"`` (300): see :func:`digits_permutation`.
        seed: seed of the split permutation (0 is the documented default split).
        return_labels: also return the digit classes.
        dtype: dtype of the images (``torch.uint8`` by default).

    Returns:
        Images ``(N, 64)`` of ``dtype`` (values ``0..16``, or ``{0, 1}`` when binarized), and
        with ``return_labels=True`` also labels ``(N,)`` ``int64`` in ``0..9``.

    Example:
        >>> x = load_digits(binarize=True, split="train")
        >>> x.shape, x.dtype, sorted(x.unique().tolist())
        (torch.Size([1197, 64]), torch.uint8, [0, 1])
        >>> x, y = load_digits(split="test", return_labels=True)
        >>> x.shape, int(x.max()), y.shape
        (torch.Size([300, 64]), 16, torch.Size([300]))
    """
    split = check_split(split, ("all", "train", "valid", "test"))
    dtype = check_dtype(dtype)
    if isinstance(binarize, bool):
        threshold = _DEFAULT_THRESHOLD if binarize else None
    elif isinstance(binarize, int) and 1 <= binarize <= 16:
        threshold = binarize
    else:
        raise ValueError(
            f"binarize: expected False, True or an integer threshold in 1..16, got {binarize!r}"
        )
    images, labels = _digits_arrays()
    if split != "all":
        perm = digits_permutation(seed).numpy()
        start = {"train": 0, "valid": 1197, "test": 1497}[split]
        index = perm[start : start + DIGITS_SPLIT_SIZES[split]]
        images, labels = images[index], labels[index]
    if threshold is not None:
        images = (images >= threshold).astype(np.uint8)
    x = to_tensor(images, dtype)
    if return_labels:
        return x, to_tensor(labels, torch.int64)
    return x


def load_digits_images(
    split: str = "train",
    *,
    bits: int = 8,
    seed: int = 0,
    return_labels: bool = False,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""scikit-learn's digits as ``bits``-bit images ``(N, 1, 8, 8)``.

    Each grey level :math:`\ell \in \{0, \dots, 16\}` is rescaled to the range
    :math:`0 .. 2^b - 1` and rounded, ties upwards:

    .. math::

        x_i = \left\lfloor \frac{\ell_i (2^b - 1)}{16} + \frac{1}{2} \right\rfloor,

    computed in integers, so level 16 becomes :math:`2^b - 1` (255 for ``bits=8``) and
    level 0 stays 0. With ``bits=1`` the same formula gives :math:`x_i = \mathbb{1}[\ell_i
    \ge 8]`, the images of ``load_digits(binarize=True)``.

    **Not a natural 8-bit data set.** Only the 17 source levels occur (at most
    :math:`\min(17, 2^b)` distinct values; for ``bits=8``: 0, 16, 32, 48, 64, 80, 96, 112,
    128, 143, 159, 175, 191, 207, 223, 239, 255), so a model that learns which values occur
    reaches a much lower bits/dim than on natural 8-bit images. It is a CPU-sized benchmark
    for discrete image models (PixelCNN, discretized logistics, dequantized flows) and its
    numbers are not comparable with anything published.

    Args:
        split: ``"train"`` (1197), ``"valid"`` (300), ``"test"`` (300) or ``"all"`` (1797
            in the original order): see :func:`digits_permutation`.
        bits: bits per pixel, an integer in ``1..8``.
        seed: seed of the split permutation (0 is the documented default split).
        return_labels: also return the digit classes.
        dtype: dtype of the images (``torch.uint8`` by default).

    Returns:
        Images ``(N, 1, 8, 8)`` of ``dtype`` with values in ``0..2**bits - 1``, and with
        ``return_labels=True`` also labels ``(N,)`` ``int64`` in ``0..9``.

    Example:
        >>> x = load_digits_images("train")
        >>> x.shape, x.dtype, int(x.max()), x.unique().numel()
        (torch.Size([1197, 1, 8, 8]), torch.uint8, 255, 17)
        >>> x4 = load_digits_images("test", bits=4, dtype=torch.float32)
        >>> x4.shape, x4.max().item()
        (torch.Size([300, 1, 8, 8]), 15.0)
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits: expected an integer in 1..8, got {bits!r}")
    split = check_split(split, ("all", "train", "valid", "test"))
    dtype = check_dtype(dtype)
    levels, labels = load_digits(split=split, seed=seed, return_labels=True, dtype=torch.int64)
    top = 2**bits - 1
    # floor(level * top / 16 + 1/2) in integers: ties (level 8 when bits=1) go up.
    images = torch.div(2 * top * levels + 16, 32, rounding_mode="floor")
    images = images.view(-1, 1, 8, 8).to(dtype)
    if return_labels:
        return images, labels
    return images
