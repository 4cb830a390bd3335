"""File-system helpers shared by the data readers (private).

* where data live: an explicit ``root`` argument, else the ``PYRO_LGM_DATA`` environment
  variable; a root may be the data set's own directory or a "data home" holding one
  sub-directory per data set (``mnist/``, ``binarized_mnist/``, ``debd/``,
  ``cifar10_subset/``);
* reading a file that may or may not be gzip-compressed (detected from its magic bytes);
* parsing text files of ``0``/``1`` rows (Larochelle's ``.amat``, DEBD's ``.data``) into a
  ``uint8`` array with row-and-column error messages;
* checking the ``dtype`` / ``split`` arguments every reader takes;
* :func:`load`, the by-name dispatcher re-exported as ``pyro_lgm.data.load``.

The library never looks anywhere else: no download, no fixed path.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "PYRO_LGM_DATA"

_GZIP_MAGIC = b"\x1f\x8b"


def _as_path(root: object, name: str = "root") -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"{name}: expected a str or os.PathLike path, got {type(root).__name__}")
    return Path(root).expanduser()


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The directory to read from: ``root`` if given, else ``$PYRO_LGM_DATA``."""
    if root is not None:
        return _as_path(root)
    env = os.environ.get(ENV_VAR)
    if not env:
        raise FileNotFoundError(
            f"no data directory given: pass root=... or set the {ENV_VAR} environment "
            "variable to the directory holding the data files"
        )
    return _as_path(env, ENV_VAR)


def candidate_dirs(root: str | os.PathLike | None, subdir: str) -> list[Path]:
    """Directories searched for a data set: the root itself, then ``root/subdir``."""
    base = resolve_root(root)
    return [base, base / subdir]


def find_file(directory: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` (tried raw, then with ``.gz``) that exists in ``directory``."""
    for name in names:
        for candidate in (name, name + ".gz"):
            path = directory / candidate
            if path.is_file():
                return path
    return None


def where(root: str | os.PathLike | None) -> str:
    """Words for error messages: where the readers looked, and how to point them elsewhere."""
    if root is not None:
        return f"root={str(root)!r}"
    return f"{ENV_VAR}={os.environ.get(ENV_VAR)!r}"


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped if it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    return data


def check_split(split: object, allowed: Sequence[str]) -> str:
    if not isinstance(split, str) or split not in allowed:
        raise ValueError(f"split: expected one of {', '.join(map(repr, allowed))}, got {split!r}")
    return split


def check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: expected a torch.dtype (e.g. torch.uint8), got {dtype!r}")
    if dtype == torch.bool or dtype.is_complex:
        raise ValueError(f"dtype: expected a real integer or floating dtype, got {dtype}")
    return dtype


def to_tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A torch tensor owning its memory (the numpy buffer may be read-only)."""
    return torch.from_numpy(np.array(array, copy=True)).to(dtype)


def check_binary_array(array: np.ndarray, source: str) -> None:
    """Raise a ValueError naming the first entry of ``array`` (2-D) not in {0, 1}."""
    bad = (array != 0) & (array != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{source}: expected binary values in {{0, 1}}, found {array[row, col].item()!r} "
            f"at row {row}, column {col}"
        )


def parse_binary_rows(
    data: bytes, *, sep: str, source: str, width: int | None = None
) -> np.ndarray:
    """Parse text rows of ``0``/``1`` values into a ``(N, D)`` ``uint8`` array.

    ``sep`` is ``","`` (DEBD) or ``" "`` (``.amat``, any run of whitespace). Every row must
    have the same number of values, ``width`` if given. Errors name the 1-based line.
    """
    for parse in (_parse_fast, _parse_tolerant):
        rows = parse(data, sep)
        if rows is not None and (width is None or rows.shape[1] == width):
            return rows
    return _parse_slow(data, sep=sep, source=source, width=width)


def _parse_fast(data: bytes, sep: str) -> np.ndarray | None:
    """Vectorized parse of the canonical layout ``d<sep>d<sep>...d\\n`` (one byte per value).

    Returns ``None`` whenever the bytes are not exactly in that layout, so that the slow path
    decides whether the file is acceptable and writes the error message.
    """
    if not data.endswith(b"\n"):
        data = data + b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    first = data.find(b"\n")
    line_len = first + 1
    if first <= 0 or len(buf) % line_len != 0:
        return None
    rows = buf.reshape(-1, line_len)
    values = rows[:, 0:-1:2]
    seps = rows[:, 1:-1:2]
    if (
        line_len % 2 != 0
        or not (rows[:, -1] == ord("\n")).all()
        or not (seps == ord(sep)).all()
        or not ((values == ord("0")) | (values == ord("1"))).all()
    ):
        return None
    return values - np.uint8(ord("0"))


def _parse_tolerant(data: bytes, sep: str) -> np.ndarray | None:
    """Vectorized parse of one-character ``0``/``1`` tokens with any blanks around them.

    Accepts ``\r\n`` line ends, trailing blanks and blank lines. Returns ``None`` when
    anything else is present (multi-character tokens, empty CSV fields, ragged rows, ...).
    """
    buf = np.frombuffer(data + b"\n", dtype=np.uint8)
    newline = buf == ord("\n")
    blank = (buf == ord(" ")) | (buf == ord("\t")) | (buf == ord("\r"))
    comma = buf == ord(",")
    is_value = ~(newline | blank | comma)
    if sep != "," and comma.any():
        return None
    if (is_value[1:] & is_value[:-1]).any():
        return None  # a token longer than one character
    values = buf[is_value]
    if not ((values == ord("0")) | (values == ord("1"))).all():
        return None
    line = np.cumsum(newline)
    counts = np.bincount(line[is_value], minlength=int(line[-1]) + 1)
    nonblank = counts > 0
    if not nonblank.any() or len(np.unique(counts[nonblank])) != 1:
        return None
    if sep == ",":
        commas = np.bincount(line[comma], minlength=len(counts))
        if (commas[~nonblank] != 0).any() or (commas[nonblank] != counts[nonblank] - 1).any():
            return None
    return (values - np.uint8(ord("0"))).reshape(int(nonblank.sum()), -1)


def _parse_slow(data: bytes, *, sep: str, source: str, width: int | None) -> np.ndarray:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source}: expected an ASCII text file of 0/1 values ({e})") from e
    rows: list[list[int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        tokens = [t.strip() for t in line.split(",")] if sep == "," else line.split()
        row = []
        for col, token in enumerate(tokens):
            try:
                value = float(token)
            except ValueError:
                raise ValueError(
                    f"{source}: line {lineno}, column {col}: expected a binary value 0 or 1, "
                    f"got {token!r}"
                ) from None
            if value not in (0.0, 1.0):
                raise ValueError(
                    f"{source}: line {lineno}, column {col}: expected binary values in "
                    f"{{0, 1}}, got {token!r}"
                )
            row.append(int(value))
        expected = width if width is not None else (len(rows[0]) if rows else len(row))
        if len(row) != expected:
            what = "expected" if width is not None else "the first row has"
            raise ValueError(
                f"{source}: line {lineno} has {len(row)} values, {what} {expected} "
                "(rows of inconsistent width)"
            )
        rows.append(row)
    if not rows:
        raise ValueError(f"{source}: expected at least one row of 0/1 values, the file is empty")
    return np.asarray(rows, dtype=np.uint8)


DATASETS = (
    "digits",
    "binarized_digits",
    "digits_images",
    "mnist",
    "binarized_mnist",
    "cifar10_subset",
)


def load(
    name: str,
    root: str | os.PathLike | None = None,
    split: str = "train",
    **kwargs: object,
) -> torch.Tensor:
    r"""Load the examples (no labels) of a data set by name.

    ============================  ===========================  ===========================
    ``name``                      reader                       result
    ============================  ===========================  ===========================
    ``"digits"``                  ``load_digits``              ``(N, 64)`` levels 0..16
    ``"binarized_digits"``        ``load_digits(binarize=8)``  ``(N, 64)`` in {0, 1}
    ``"digits_images"``           ``load_digits_images``       ``(N, 1, 8, 8)`` 0..255
    ``"mnist"``                   ``load_mnist`` (images)      ``(N, 28, 28)`` 0..255
    ``"binarized_mnist"``         ``load_binarized_mnist``     ``(N, 784)`` in {0, 1}
    ``"cifar10_subset"``          ``load_cifar10``             ``(N, 3, 32, 32)`` 0..255
    any other, or ``"debd:<n>"``  ``load_debd``                ``(N, D)`` in {0, 1}
    ============================  ===========================  ===========================

    ``"cifar10_subset"`` is 4000 / 1000 images of CIFAR-10, not the full data set (see
    :func:`~pyro_lgm.data.load_cifar10`).

    Args:
        name: the data set, see the table.
        root: directory or data home (``PYRO_LGM_DATA`` by default); unused for the
            bundled digits.
        split: ``"train"``, ``"valid"``, ``"test"`` (MNIST and the CIFAR-10 subset have
            ``"train"`` and ``"test"``; digits also ``"all"``).
        **kwargs: passed to the reader (e.g. ``dtype=torch.float32``).

    Returns:
        The examples as a tensor whose first dimension indexes them.

    Example:
        >>> x = load("binarized_digits", split="valid", dtype=torch.float32)
        >>> x.shape, x.dtype
        (torch.Size([300, 64]), torch.float32)
    """
    from pyro_lgm.data.binarized_mnist import load_binarized_mnist
    from pyro_lgm.data.cifar10 import load_cifar10
    from pyro_lgm.data.debd import load_debd
    from pyro_lgm.data.digits import load_digits, load_digits_images
    from pyro_lgm.data.mnist import load_mnist

    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a data set name (e.g. 'digits'), got {name!r}")
    if name == "digits":
        return load_digits(split=split, **kwargs)  # type: ignore[arg-type,return-value]
    if name == "binarized_digits":
        kwargs.setdefault("binarize", True)
        return load_digits(split=split, **kwargs)  # type: ignore[arg-type,return-value]
    if name == "digits_images":
        return load_digits_images(split=split, **kwargs)  # type: ignore[arg-type,return-value]
    if name == "mnist":
        return load_mnist(root, split, **kwargs)[0]  # type: ignore[arg-type]
    if name == "binarized_mnist":
        return load_binarized_mnist(root, split, **kwargs)  # type: ignore[arg-type]
    if name == "cifar10_subset":
        return load_cifar10(root, split, **kwargs)  # type: ignore[arg-type,return-value]
    debd_name = name[len("debd:") :] if name.startswith("debd:") else name
    try:
        return load_debd(debd_name, root, split, **kwargs)  # type: ignore[arg-type]
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"unknown data set {name!r}: the built-in names are {', '.join(DATASETS)}; "
            f"other names are looked up as DEBD data sets: {e}"
        ) from e
