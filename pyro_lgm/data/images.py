r"""Image grids of data, samples and completions, as arrays and as PNG files.

Images are tensors ``(N, C, H, W)`` (``C`` 1 for grey, 3 for RGB) of integer **levels**
``0 .. levels - 1``: binary ``{0, 1}`` data (``levels=2``), 8-bit images (``levels=256``),
or any other number of levels (``levels=17`` for the raw scikit-learn digits). Level ``v``
is shown as the grey value (or channel value) :math:`\lfloor 255 v / (\text{levels} - 1)
+ 1/2 \rfloor`, so 0 is black and ``levels - 1`` white (full intensity). The dtype may be
``bool``, any integer dtype, or floating point holding whole numbers (a float sample of a
discrete model); anything else (probabilities, dequantized values) must be mapped to
levels first, for example ``(p * 255).round()``.

:func:`image_grid` returns the grid as a ``uint8`` array ``(height, width, 3)``;
:func:`save_image_grid` writes that array as a PNG; :func:`completion_grid` lays out
originals, their observed parts and sampled completions, one example per row.

Layout: images are upscaled by an integer ``scale`` (nearest neighbour: each pixel becomes a
``scale x scale`` block), then placed in rows of ``nrow`` images, separated by ``padding``
lines of ``pad_color`` (no border around the grid; ``padding`` counts output pixels and is
not scaled). Cells left over in the last row are filled with ``pad_color``.

PNG files are written with Pillow, which comes with matplotlib (a dependency of this
package). This module depends on nothing else in the library.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["PAD_COLOR", "UNOBSERVED_COLOR", "completion_grid", "image_grid", "save_image_grid"]

PAD_COLOR = (128, 128, 128)
"""Default colour of the padding lines and empty cells: mid grey."""

UNOBSERVED_COLOR = (200, 0, 0)
"""Default colour of unobserved pixels in :func:`completion_grid`: red."""

_MIN_WIDTH = 256


# ----------------------------------------------------------------------------- checks


def _as_array(images: object, name: str, ndim: int, what: str) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise ValueError(
            f"{name}: expected a torch.Tensor or numpy array {what}, got {type(images).__name__}"
        )
    if images.ndim != ndim:
        raise ValueError(f"{name}: expected shape {what}, got {tuple(images.shape)}")
    if 0 in images.shape:
        raise ValueError(f"{name}: expected a non-empty array {what}, got {tuple(images.shape)}")
    if images.shape[-3] not in (1, 3):
        raise ValueError(
            f"{name}: expected C = 1 (grey) or 3 (RGB) channels in {what}, got "
            f"{images.shape[-3]} in shape {tuple(images.shape)}"
        )
    if images.dtype == np.bool_:
        return images.astype(np.int64)
    if np.issubdtype(images.dtype, np.integer):
        return images.astype(np.int64)
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ValueError(f"{name}: expected integer levels, found NaN or infinite values")
        if (images != np.round(images)).any():
            bad = images[images != np.round(images)].flat[0]
            raise ValueError(
                f"{name}: expected whole-number levels (e.g. 0/1 or 0..255), found {bad!r}; "
                "map probabilities or continuous values to levels first, e.g. (p * 255).round()"
            )
        return images.astype(np.int64)
    raise ValueError(f"{name}: expected bool, integer or floating levels, got dtype {images.dtype}")


def _resolve_levels(levels: object, arrays: Sequence[tuple[str, np.ndarray]]) -> int:
    top = max(int(a.max()) for _, a in arrays)
    for name, a in arrays:
        if int(a.min()) < 0:
            raise ValueError(f"{name}: expected levels >= 0, found {int(a.min())}")
    if levels is None:
        if top > 255:
            raise ValueError(
                f"levels: values up to {top} cannot be shown with the default levels (2 when "
                "every value is 0 or 1, else 256); pass levels= the number of levels"
            )
        return 2 if top <= 1 else 256
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels: expected an integer >= 2 (or None), got {levels!r}")
    for name, a in arrays:
        if int(a.max()) > levels - 1:
            raise ValueError(
                f"{name}: expected levels 0..{levels - 1} (levels={levels}), found {int(a.max())}"
            )
    return levels


def _check_int(value: object, name: str, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " (or None)" if allow_none else ""
        raise ValueError(f"{name}: expected an integer >= {minimum}{extra}, got {value!r}")
    return value


def _check_color(color: object, name: str) -> np.ndarray:
    ok = (
        isinstance(color, (tuple, list))
        and len(color) == 3
        and all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255
            for c in color
        )
    )
    if not ok:
        raise ValueError(
            f"{name}: expected an (r, g, b) triple of integers in 0..255, got {color!r}"
        )
    return np.asarray(color, dtype=np.uint8)


def _check_png_path(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    p = Path(os.fspath(path)).expanduser()
    if p.suffix.lower() != ".png":
        raise ValueError(f"path: expected a file name ending in .png, got {str(p)!r}")
    if not p.parent.is_dir():
        raise ValueError(f"path: the directory {str(p.parent)!r} does not exist")
    return p


# ----------------------------------------------------------------------------- building


def _to_rgb(levels_array: np.ndarray, levels: int) -> np.ndarray:
    """``(..., C, H, W)`` levels -> ``(..., H, W, 3)`` uint8 (grey replicated)."""
    values = (levels_array * 510 + (levels - 1)) // (2 * (levels - 1))  # floor(255v/(L-1)+1/2)
    rgb = np.moveaxis(values.astype(np.uint8), -3, -1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return rgb


def _default_scale(ncol: int, width: int, padding: int) -> int:
    """The smallest integer scale making the grid at least ``_MIN_WIDTH`` pixels wide."""
    return max(1, math.ceil((_MIN_WIDTH - (ncol - 1) * padding) / (ncol * width)))


def _assemble(
    cells: np.ndarray, ncol: int, padding: int, scale: int | None, pad_color: np.ndarray
) -> np.ndarray:
    """Lay out ``cells`` ``(M, h, w, 3)`` row by row, ``ncol`` per row."""
    m, h, w, _ = cells.shape
    if scale is None:
        scale = _default_scale(ncol, w, padding)
    if scale > 1:
        cells = np.repeat(np.repeat(cells, scale, axis=1), scale, axis=2)
    h, w = h * scale, w * scale
    nrows = math.ceil(m / ncol)
    grid = np.empty(
        (nrows * h + (nrows - 1) * padding, ncol * w + (ncol - 1) * padding, 3), np.uint8
    )
    grid[...] = pad_color
    for i in range(m):
        r, c = divmod(i, ncol)
        top, left = r * (h + padding), c * (w + padding)
        grid[top : top + h, left : left + w] = cells[i]
    return grid


def image_grid(
    images: torch.Tensor | np.ndarray,
    *,
    nrow: int | None = None,
    levels: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    pad_color: tuple[int, int, int] = PAD_COLOR,
) -> np.ndarray:
    r"""A grid of images as a ``uint8`` RGB array ``(height, width, 3)``.

    Args:
        images: ``(N, C, H, W)`` levels, ``C`` in ``{1, 3}``: ``bool``, integer, or floating
            point holding whole numbers in ``0 .. levels - 1``.
        nrow: images per grid row; default ``ceil(sqrt(N))`` (a square-ish grid).
        levels: the number of levels, level ``v`` shown as ``round(255 v / (levels - 1))``.
            Default: 2 (black/white) if every value is 0 or 1, else 256 (8-bit); values
            above 255 then require an explicit ``levels``. Pass it explicitly when the
            inference could be wrong (an 8-bit image that happens to hold only 0 and 1, or
            the 17 levels of the raw digits: ``levels=17``).
        padding: lines of ``pad_color`` between neighbouring images (not around the grid,
            not scaled).
        scale: integer nearest-neighbour upscaling of each image; default the smallest one
            making the grid at least 256 pixels wide (1 for images that are already large).
        pad_color: ``(r, g, b)`` colour of the padding and of empty cells, default mid grey.

    Returns:
        ``uint8`` array ``(rows * H * scale + (rows - 1) * padding,
        ncol * W * scale + (ncol - 1) * padding, 3)`` with ``ncol = min(nrow, N)`` and
        ``rows = ceil(N / nrow)``.

    Example:
        >>> x = torch.tensor([[[[0, 1], [1, 0]]], [[[1, 1], [0, 0]]]])  # two 2x2 binary
        >>> g = image_grid(x, nrow=2, scale=1)
        >>> g.shape, g[:, :, 0].tolist()
        ((2, 5, 3), [[0, 255, 128, 255, 255], [255, 0, 128, 0, 0]])
    """
    array = _as_array(images, "images", 4, "(N, C, H, W)")
    nrow = _check_int(nrow, "nrow", 1, allow_none=True)
    padding = _check_int(padding, "padding", 0)
    scale = _check_int(scale, "scale", 1, allow_none=True)
    color = _check_color(pad_color, "pad_color")
    levels = _resolve_levels(levels, [("images", array)])
    n = array.shape[0]
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    return _assemble(_to_rgb(array, levels), min(nrow, n), padding, scale, color)


def _write_png(grid: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(grid).save(path, format="PNG")


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    levels: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    pad_color: tuple[int, int, int] = PAD_COLOR,
) -> np.ndarray:
    r"""Write a grid of images to a PNG file (the array of :func:`image_grid`).

    Args:
        images: ``(N, C, H, W)`` levels, see :func:`image_grid`.
        path: the file to write, ending in ``.png``; its directory must exist. An existing
            file is overwritten.
        nrow: images per grid row (default ``ceil(sqrt(N))``).
        levels: the number of levels (default 2 if every value is 0 or 1, else 256).
        padding: lines between images.
        scale: integer upscaling (default: grid at least 256 pixels wide).
        pad_color: colour of the padding.

    Returns:
        The ``uint8`` array ``(height, width, 3)`` written (an RGB PNG, 8 bits per channel).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
        >>> x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
        >>> save_image_grid(x, path, nrow=3).shape  # scale 11: 3*88 + 2 >= 256
        (177, 266, 3)
    """
    p = _check_png_path(path)
    grid = image_grid(
        images, nrow=nrow, levels=levels, padding=padding, scale=scale, pad_color=pad_color
    )
    _write_png(grid, p)
    return grid


def completion_grid(
    originals: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    completions: torch.Tensor | np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    levels: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    pad_color: tuple[int, int, int] = PAD_COLOR,
    unobserved_color: tuple[int, int, int] = UNOBSERVED_COLOR,
) -> np.ndarray:
    r"""A grid for image completion (inpainting): one example per row.

    Row ``i`` shows, left to right: the original ``originals[i]``; its observed part, where
    every unobserved pixel is painted ``unobserved_color`` (red by default) so that what the
    model was given stands out; then the ``k`` completions ``completions[i, 0..k-1]``.
    With ``C = 3`` and channel-wise masks, each unobserved channel takes that channel of
    ``unobserved_color``. The completions are shown as given (observed pixels are not
    overwritten with the original's).

    Args:
        originals: ``(N, C, H, W)`` levels, ``C`` in ``{1, 3}``, see :func:`image_grid`.
        masks: ``bool`` ``(N, C, H, W)`` or ``(N, 1, H, W)`` (shared by the channels);
            ``True`` marks an observed value.
        completions: ``(N, k, C, H, W)`` levels, ``k >= 1``, same ``C, H, W``.
        path: if given, a ``.png`` file (in an existing directory) the grid is written to.
        levels: the number of levels, shared by originals and completions (default 2 if
            every value of both is 0 or 1, else 256).
        padding: lines between images.
        scale: integer upscaling (default: grid at least 256 pixels wide).
        pad_color: colour of the padding.
        unobserved_color: ``(r, g, b)`` colour of unobserved pixels in the second column.

    Returns:
        ``uint8`` array ``(N * H * scale + (N - 1) * padding,
        (k + 2) * W * scale + (k + 1) * padding, 3)``.

    Example:
        >>> x = torch.ones(1, 1, 2, 2, dtype=torch.long)
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> g = completion_grid(x, m, torch.zeros(1, 1, 1, 2, 2), padding=0, scale=1)
        >>> g.shape, g[0, :, 0].tolist(), g[0, :, 1].tolist()
        ((2, 6, 3), [255, 255, 255, 200, 0, 0], [255, 255, 255, 0, 0, 0])
    """
    x = _as_array(originals, "originals", 4, "(N, C, H, W)")
    y = _as_array(completions, "completions", 5, "(N, k, C, H, W)")
    if y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"completions: expected shape (N, k, C, H, W) = (N={x.shape[0]}, k, "
            f"{', '.join(map(str, x.shape[1:]))}) to match originals {tuple(x.shape)}, got "
            f"{tuple(y.shape)}"
        )
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray) or masks.dtype != np.bool_:
        what = masks.dtype if isinstance(masks, np.ndarray) else type(masks).__name__
        raise ValueError(f"masks: expected a bool tensor (True = observed), got {what}")
    n, c, h, w = x.shape
    if masks.shape not in ((n, c, h, w), (n, 1, h, w)):
        raise ValueError(
            f"masks: expected shape {(n, c, h, w)} or {(n, 1, h, w)} to match originals, got "
            f"{tuple(masks.shape)}"
        )
    padding = _check_int(padding, "padding", 0)
    scale = _check_int(scale, "scale", 1, allow_none=True)
    pad = _check_color(pad_color, "pad_color")
    hidden = _check_color(unobserved_color, "unobserved_color")
    p = _check_png_path(path) if path is not None else None
    levels = _resolve_levels(levels, [("originals", x), ("completions", y)])

    rgb_x = _to_rgb(x, levels)  # (N, H, W, 3)
    observed = np.moveaxis(np.broadcast_to(masks, (n, c, h, w)), 1, -1)  # (N, H, W, C)
    if c == 1:
        observed = np.repeat(observed, 3, axis=-1)
    rgb_observed = np.where(observed, rgb_x, hidden)
    k = y.shape[1]
    cells = np.concatenate([rgb_x[:, None], rgb_observed[:, None], _to_rgb(y, levels)], axis=1)
    grid = _assemble(cells.reshape(n * (k + 2), h, w, 3), k + 2, padding, scale, pad)
    if p is not None:
        _write_png(grid, p)
    return grid
