r"""DEBD-style binary density-estimation benchmarks (NLTCS, Plants, Audio, Jester, ...).

The Density Estimation Benchmark Datasets (DEBD) store each data set as three files
``<name>.{train,valid,test}.data``: plain-text CSV, one example per line, comma-separated
``0``/``1`` values, no header. The reader accepts them raw or gzip-compressed
(``.data.gz``), from the ``root`` argument or the ``PYRO_LGM_DATA`` environment variable
(the directory itself or a data home with a ``debd/`` sub-directory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from pyro_lgm.data._paths import (
    ENV_VAR,
    candidate_dirs,
    check_dtype,
    check_split,
    find_file,
    parse_binary_rows,
    read_bytes,
    to_tensor,
    where,
)

__all__ = ["list_debd", "load_debd", "read_debd_file"]

_SPLITS = ("train", "valid", "test")
_FILE_RE = re.compile(r"^(?P<name>.+)\.(?P<split>train|valid|test)\.data(\.gz)?$")


def read_debd_file(path: str | os.PathLike) -> np.ndarray:
    r"""Read one DEBD ``.data`` file (comma-separated 0/1 rows, raw or gzip-compressed).

    Args:
        path: path of the file.

    Returns:
        ``uint8`` array ``(N, D)`` with values in ``{0, 1}``.

    Raises:
        ValueError: a value other than 0 or 1, or rows of different widths (the message
            gives the line number).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "toy.train.data")
        >>> with open(path, "w") as f:
        ...     _ = f.write("0,1\n1,1\n")
        >>> read_debd_file(path)
        array([[0, 1],
               [1, 1]], dtype=uint8)
    """
    path = Path(path)
    return parse_binary_rows(read_bytes(path), sep=",", source=str(path))


def list_debd(root: str | os.PathLike | None = None) -> list[str]:
    r"""Names of the DEBD data sets with all three splits present under ``root``.

    Args:
        root: the directory of ``.data[.gz]`` files or a data home with a ``debd/``
            sub-directory; defaults to ``PYRO_LGM_DATA``.

    Returns:
        Sorted list of names (e.g. ``["nltcs", "plants"]``).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for split in ("train", "valid", "test"):
        ...     with open(os.path.join(d, f"toy.{split}.data"), "w") as f:
        ...         _ = f.write("0,1\n")
        >>> list_debd(d)
        ['toy']
    """
    names: set[str] = set()
    for directory in candidate_dirs(root, "debd"):
        names |= set(_scan(directory))
    return sorted(names)


def _scan(directory: Path) -> list[str]:
    """Names with all three splits in ``directory``."""
    if not directory.is_dir():
        return []
    splits: dict[str, set[str]] = {}
    for entry in directory.iterdir():
        match = _FILE_RE.match(entry.name)
        if match and entry.is_file():
            splits.setdefault(match["name"], set()).add(match["split"])
    return sorted(n for n, s in splits.items() if s == set(_SPLITS))


def load_debd(
    name: str,
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    r"""Load one split of a DEBD binary data set.

    Args:
        name: the data set's file prefix, e.g. ``"nltcs"``, ``"plants"``, ``"baudio"``,
            ``"jester"``, ``"bnetflix"``, ``"accidents"``, ``"dna"``.
        root: the directory of ``<name>.<split>.data[.gz]`` files or a data home with a
            ``debd/`` sub-directory; defaults to the ``PYRO_LGM_DATA`` environment variable.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        dtype: dtype of the result (``torch.uint8`` by default).

    Returns:
        Tensor ``(N, D)`` of ``dtype`` with values in ``{0, 1}``.

    Raises:
        FileNotFoundError: the file is absent; the message lists the data sets available.
        ValueError: bad arguments, non-binary values or rows of inconsistent width.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "toy.test.data"), "w") as f:
        ...     _ = f.write("0,1,1\n1,0,1\n")
        >>> load_debd("toy", d, split="test")
        tensor([[0, 1, 1],
                [1, 0, 1]], dtype=torch.uint8)
    """
    if not isinstance(name, str) or not name or os.sep in name or "/" in name:
        raise ValueError(f"name: expected a data set name such as 'nltcs', got {name!r}")
    split = check_split(split, _SPLITS)
    dtype = check_dtype(dtype)
    stem = f"{name}.{split}.data"
    dirs = candidate_dirs(root, "debd")
    for directory in dirs:
        path = find_file(directory, [stem])
        if path is not None:
            return to_tensor(read_debd_file(path), dtype)
    available = list_debd(root)
    listing = ", ".join(available) if available else "none"
    raise FileNotFoundError(
        f"DEBD data set {name!r}: missing file {stem}[.gz] in "
        f"{' or '.join(str(d) for d in dirs)} ({where(root)}); available data sets: "
        f"{listing}. Pass root=... or set {ENV_VAR}"
    )
