r"""MNIST from LeCun's IDX files (raw or gzip-compressed).

The reader takes the directory holding the four standard files

* ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` (60000 examples),
* ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (10000 examples),

each optionally ending in ``.gz`` (compression is detected from the content), from the
``root`` argument or the ``PYRO_LGM_DATA`` environment variable (the directory itself or a
data home with an ``mnist/`` sub-directory). Fashion-MNIST ships the same four files and
loads the same way.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

from pyro_lgm.data._paths import (
    ENV_VAR,
    candidate_dirs,
    check_dtype,
    check_split,
    find_file,
    read_bytes,
    to_tensor,
    where,
)

__all__ = ["load_mnist", "read_idx", "write_idx"]

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}

_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    r"""Read one IDX file (raw or gzip-compressed) into a numpy array.

    The header is a big-endian magic number ``0x0000TTNN`` (``TT`` the element type,
    ``NN`` the number of dimensions) followed by ``NN`` big-endian ``int32`` sizes; the
    data follow in row-major order. The size of the data is checked against the header.

    Args:
        path: path of the file.

    Returns:
        An array of shape given by the header, in native byte order.

    Raises:
        ValueError: bad magic number, unknown type code, or data size not matching the
            header (truncated or padded file).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "x-idx2-ubyte")
        >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
        >>> read_idx(path)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: expected an IDX file, got only {len(data)} bytes")
    zero, code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES:
        magic = struct.unpack(">I", data[:4])[0]
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}: expected 0x0000TTNN with type code "
            f"TT in {{{', '.join(f'0x{c:02x}' for c in _IDX_TYPES)}}}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: expected {header} bytes, got {len(data)}")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    if any(s < 0 for s in shape):
        raise ValueError(f"{path}: negative size in IDX header {shape}")
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {tuple(shape)} ({expected} bytes of data), "
            f"file has {len(data) - header} bytes after the header (truncated or corrupt)"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    r"""Write ``array`` as an uncompressed IDX file (the inverse of :func:`read_idx`).

    Args:
        path: destination; written uncompressed whatever its suffix.
        array: numpy array of dtype ``uint8``, ``int8``, ``int16``, ``int32``, ``float32``
            or ``float64``, with at most 255 dimensions.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
        >>> read_idx(path).tolist()
        [7, 2, 1]
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise ValueError(
            f"array: expected dtype uint8, int8, int16, int32, float32 or float64, "
            f"got {array.dtype}"
        )
    if array.ndim > 255:
        raise ValueError(f"array: expected at most 255 dimensions, got {array.ndim}")
    code = _IDX_CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    body = np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    with open(path, "wb") as f:
        f.write(header + body)


def _find_mnist_files(root: str | os.PathLike | None, split: str) -> tuple[Path, Path]:
    stems = _FILES[split]
    # Also accept the dotted names some mirrors use ("train-images.idx3-ubyte").
    variants = [(s, s.replace("-idx", ".idx")) for s in stems]
    dirs = candidate_dirs(root, "mnist")
    best: tuple[Path, list[Path | None]] | None = None
    for directory in dirs:
        found = [find_file(directory, v) for v in variants]
        if all(f is not None for f in found):
            return found[0], found[1]  # type: ignore[return-value]
        if best is None or sum(f is not None for f in found) > sum(f is not None for f in best[1]):
            best = (directory, found)
    assert best is not None
    missing = [stem for stem, f in zip(stems, best[1]) if f is None]
    raise FileNotFoundError(
        f"MNIST {split!r} split: missing file(s) {', '.join(missing)} (raw or .gz) in "
        f"{' or '.join(str(d) for d in dirs)} ({where(root)}); pass root=... or set "
        f"{ENV_VAR} to the directory holding the four MNIST IDX files"
    )


def load_mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    flatten: bool = False,
    dtype: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load an MNIST split from the standard IDX files.

    The images are returned **without a channel dimension**, as stored: ``(N, 28, 28)``
    (``0`` background, ``255`` ink); use ``images.unsqueeze(1)`` for ``(N, 1, 28, 28)``.
    Magic numbers (2051 for images, 2049 for labels), the sizes in the headers and the
    matching number of labels are all checked.

    The usual validation split of the density-estimation literature (NADE, MADE) is the last
    10000 training images: ``images[50000:]``, training on ``images[:50000]``. For
    stochastic binarization see :func:`pyro_lgm.data.binarize`.

    Args:
        root: directory holding the files, or a data home with an ``mnist/`` sub-directory.
            Defaults to the ``PYRO_LGM_DATA`` environment variable.
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        flatten: return images of shape ``(N, 784)`` instead of ``(N, 28, 28)``.
        dtype: dtype of the images (values stay 0..255); ``torch.uint8`` by default.

    Returns:
        ``(images, labels)``: images ``(N, 28, 28)`` (or ``(N, 784)``) of ``dtype`` with
        values ``0..255``, labels ``(N,)`` ``int64`` with values ``0..9``.

    Raises:
        FileNotFoundError: the files are absent (the message lists the missing ones).
        ValueError: bad arguments, or files that are not valid MNIST IDX files.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> d = tempfile.mkdtemp()
        >>> write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), np.zeros((2, 28, 28), np.uint8))
        >>> write_idx(os.path.join(d, "t10k-labels-idx1-ubyte"), np.array([3, 9], np.uint8))
        >>> images, labels = load_mnist(d, split="test")
        >>> images.shape, images.dtype, labels.tolist()
        (torch.Size([2, 28, 28]), torch.uint8, [3, 9])
    """
    split = check_split(split, ("train", "test"))
    dtype = check_dtype(dtype)
    images_path, labels_path = _find_mnist_files(root, split)

    images = read_idx(images_path)
    if _magic(images) != _IMAGES_MAGIC:
        raise ValueError(
            f"{images_path}: expected the MNIST image magic number 2051 (0x00000803: "
            f"unsigned bytes, 3 dimensions), got {_magic(images)} (0x{_magic(images):08x})"
        )
    labels = read_idx(labels_path)
    if _magic(labels) != _LABELS_MAGIC:
        raise ValueError(
            f"{labels_path}: expected the MNIST label magic number 2049 (0x00000801: "
            f"unsigned bytes, 1 dimension), got {_magic(labels)} (0x{_magic(labels):08x})"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split!r} split: {images.shape[0]} images in {images_path.name} but "
            f"{labels.shape[0]} labels in {labels_path.name}"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: expected labels in 0..9, found {int(labels.max())}")
    if flatten:
        images = images.reshape(images.shape[0], -1)
    return to_tensor(images, dtype), to_tensor(labels, torch.int64)


def _magic(array: np.ndarray) -> int:
    """The IDX magic number that :func:`read_idx` decoded ``array`` from."""
    return (_IDX_CODES[array.dtype] << 8) | array.ndim
