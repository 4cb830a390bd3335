"""Image data: the CIFAR-10 subset reader, 8-bit digits images, and image grids (PNG).

The reader runs on ``.npz`` files written here with ``np.savez``; the real subset file is
checked against its README (per-channel means, label counts) when the project's shared data
directory exists. Grids are checked pixel by pixel on tiny inputs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyro_lgm.data as data
from pyro_lgm.data import (
    CIFAR10_CLASSES,
    PAD_COLOR,
    UNOBSERVED_COLOR,
    completion_grid,
    image_grid,
    load,
    load_cifar10,
    load_digits,
    load_digits_images,
    save_image_grid,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_NPZ = SHARED / "cifar10_subset" / "cifar10_subset.npz"


# ----------------------------------------------------------------------------- CIFAR-10


def cifar_arrays(n_train: int = 3, n_test: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_cifar(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_cifar10_layout_and_roots(tmp_path, monkeypatch):
    arrays = cifar_arrays()
    npz = write_cifar(tmp_path / "home" / "cifar10_subset" / "cifar10_subset.npz", arrays)
    for split in ("train", "test"):
        x, y = load_cifar10(npz, split, return_labels=True)
        hwc = arrays[f"x_{split}"]
        assert x.shape == (len(hwc), 3, 32, 32) and x.dtype == torch.uint8
        assert x.is_contiguous()
        # CHW: channel c of image i, row r, column s is the file's [i, r, s, c].
        np.testing.assert_array_equal(x.numpy(), hwc.transpose(0, 3, 1, 2))
        assert x[1, 2, 5, 7].item() == hwc[1, 5, 7, 2]
        assert y.dtype == torch.int64 and y.tolist() == arrays[f"y_{split}"].tolist()
    ref = load_cifar10(npz, "test")
    # the directory holding the file, a data home, and $PYRO_LGM_DATA give the same tensor
    assert torch.equal(load_cifar10(npz.parent, "test"), ref)
    assert torch.equal(load_cifar10(str(tmp_path / "home"), "test"), ref)
    monkeypatch.setenv("PYRO_LGM_DATA", str(tmp_path / "home"))
    assert torch.equal(load_cifar10(split="test"), ref)
    assert torch.equal(load("cifar10_subset", split="test"), ref)
    assert "cifar10_subset" in data.DATASETS
    xf = load_cifar10(npz, dtype=torch.float32)
    assert xf.dtype == torch.float32 and xf.max().item() == float(arrays["x_train"].max())
    assert len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "airplane"


def test_cifar10_missing_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="cifar10_subset.npz"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_cifar10(tmp_path / "nope.npz")
    monkeypatch.delenv("PYRO_LGM_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="PYRO_LGM_DATA"):
        load_cifar10()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.pop("y_train"), "missing y_train"),
        (lambda a: a.update(x_train=a["x_train"][:, :, :16]), r"\(N, 32, 32, 3\)"),
        (lambda a: a.update(x_train=a["x_train"].transpose(0, 3, 1, 2)), "channel-first"),
        (lambda a: a.update(x_train=a["x_train"].reshape(3, -1)), r"\(N, 32, 32, 3\)"),
        (lambda a: a.update(y_train=a["y_train"][:, None]), r"'y_train' must have shape"),
        (lambda a: a.update(y_train=a["y_train"][:2]), "3 images .* but 2 labels"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "integers .* float32"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.int16) + 1), r"0\.\.255"),
        (lambda a: a.update(y_train=a["y_train"] + 10), r"'y_train' must hold values in 0\.\.9"),
        (lambda a: a.update(y_train=-a["y_train"].astype(np.int64) - 1), r"0\.\.9"),
        (
            lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]),
            "no images",
        ),
    ],
)
def test_cifar10_malformed_file(tmp_path, change, match):
    arrays = cifar_arrays()
    change(arrays)
    npz = write_cifar(tmp_path / "cifar10_subset.npz", arrays)
    with pytest.raises(ValueError, match=match):
        load_cifar10(tmp_path, "train")
    # the other split is untouched and still loads
    assert load_cifar10(npz, "test").shape == (2, 3, 32, 32)


def test_cifar10_unreadable_and_pickled(tmp_path):
    bad = tmp_path / "bad" / "cifar10_subset.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_cifar10(bad)
    pickled = tmp_path / "pickled" / "cifar10_subset.npz"
    arrays = cifar_arrays()
    arrays["y_train"] = np.array([1, "a", None], dtype=object)
    write_cifar(pickled, arrays)
    with pytest.raises(ValueError, match="pickle"):
        load_cifar10(pickled)
    # a zip file that is a valid archive but no npz member at all
    empty = tmp_path / "empty.npz"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(ValueError, match="missing x_test, y_test"):
        load_cifar10(empty, "test")


def test_cifar10_bad_arguments(tmp_path):
    write_cifar(tmp_path / "cifar10_subset.npz", cifar_arrays())
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "valid")
    with pytest.raises(ValueError, match="dtype"):
        load_cifar10(tmp_path, dtype=torch.bool)
    with pytest.raises(ValueError, match="root"):
        load_cifar10(3)


@pytest.mark.skipif(not CIFAR_NPZ.is_file(), reason="no shared CIFAR-10 subset file")
def test_cifar10_real_subset():
    """The project's subset: sizes, CHW order (README per-channel means), label counts."""
    x, y = load_cifar10(SHARED, "train", return_labels=True)
    assert x.shape == (4000, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    means = x.double().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(
        means, torch.tensor([0.4916, 0.4818, 0.4447], dtype=torch.float64), atol=5e-5, rtol=0
    )
    assert torch.bincount(y).tolist() == [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    # README: train image 0, red channel, row 0 starts 59 43 50 68 ...
    assert x[0, 0, 0, :4].tolist() == [59, 43, 50, 68]
    xt, yt = load_cifar10(CIFAR_NPZ, "test", return_labels=True)
    assert xt.shape == (1000, 3, 32, 32)
    assert torch.bincount(yt).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    assert xt[0, 0, 0, :4].tolist() == [158, 159, 165, 166]


# ----------------------------------------------------------------------------- digits images


def test_digits_images_8_bit():
    x, y = load_digits_images("train", return_labels=True)
    assert x.shape == (1197, 1, 8, 8) and x.dtype == torch.uint8 and y.shape == (1197,)
    values = x.unique().tolist()
    assert len(values) == 17 and values[0] == 0 and values[-1] == 255
    assert values == [round(level * 255 / 16) for level in range(17)]
    # same images and order as the flat levels of load_digits, rescaled
    levels, labels = load_digits(split="train", return_labels=True)
    expected = torch.div(levels.long() * 510 + 16, 32, rounding_mode="floor")
    assert torch.equal(x.view(1197, 64).long(), expected) and torch.equal(y, labels)
    sizes = {s: load_digits_images(s).shape[0] for s in ("train", "valid", "test", "all")}
    assert sizes == {"train": 1197, "valid": 300, "test": 300, "all": 1797}
    assert torch.equal(load("digits_images", split="valid"), load_digits_images("valid"))


def test_digits_images_other_bits():
    levels = load_digits(split="all").long()
    assert torch.equal(load_digits_images("all", bits=1).view(-1, 64).long(), (levels >= 8).long())
    for bits in (2, 4, 5):
        x = load_digits_images("all", bits=bits, dtype=torch.float64)
        top = 2**bits - 1
        assert x.dtype == torch.float64 and x.max().item() == top
        assert x.unique().numel() == min(17, top + 1)
        ref = torch.floor(levels.double() * top / 16 + 0.5)
        assert torch.equal(x.view(-1, 64), ref)
    # a different seed gives a different split of the same images
    assert not torch.equal(load_digits_images("test", seed=1), load_digits_images("test"))


@pytest.mark.parametrize("bits", [0, 9, True, 8.0, "8"])
def test_digits_images_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        load_digits_images(bits=bits)


def test_digits_images_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_digits_images("validation")
    with pytest.raises(ValueError, match="dtype"):
        load_digits_images(dtype=torch.bool)
    with pytest.raises(ValueError, match="seed"):
        load_digits_images(seed=-1)


# ----------------------------------------------------------------------------- grids


def rgb(*values: int) -> list[int]:
    return list(values)


def test_grid_binary_padding_layout():
    # three 1x2 binary images, two per row: the last cell is empty (pad colour)
    x = torch.tensor([[[[0, 1]]], [[[1, 1]]], [[[1, 0]]]], dtype=torch.uint8)
    g = image_grid(x, nrow=2, padding=1, scale=1)
    assert g.dtype == np.uint8 and g.shape == (3, 5, 3)
    grey = g[:, :, 0]
    assert (g == g[:, :, :1]).all()  # grey images and grey padding
    assert grey.tolist() == [
        [0, 255, 128, 255, 255],
        [128, 128, 128, 128, 128],
        [255, 0, 128, 128, 128],
    ]
    # padding=0, default nrow = ceil(sqrt(3)) = 2
    assert image_grid(x, padding=0, scale=1)[:, :, 0].tolist() == [
        [0, 255, 255, 255],
        [255, 0, 128, 128],
    ]
    # one per row
    assert image_grid(x, nrow=1, padding=0, scale=1)[:, :, 0].tolist() == [
        [0, 255],
        [255, 255],
        [255, 0],
    ]


def test_grid_scale_and_default_scale():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)  # one 1x2 image, 8-bit
    g = image_grid(x, scale=3)
    assert g.shape == (3, 6, 3)
    assert g[:, :, 1].tolist() == [[0, 0, 0, 255, 255, 255]] * 3
    # default: the smallest integer scale making the grid >= 256 pixels wide
    assert image_grid(x).shape == (128, 256, 3)
    eight = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    g = image_grid(eight, nrow=4, padding=2)  # 4 * 8 * s + 3 * 2 >= 256 -> s = 8
    assert g.shape == (64, 4 * 64 + 6, 3)
    big = torch.zeros(1, 3, 300, 300, dtype=torch.uint8)
    assert image_grid(big).shape == (300, 300, 3)
    # padding is not scaled
    g = image_grid(torch.ones(2, 1, 1, 1), nrow=2, padding=1, scale=2, pad_color=(1, 2, 3))
    assert g.shape == (2, 5, 3) and g[:, 2].tolist() == [[1, 2, 3], [1, 2, 3]]
    assert (g[:, [0, 1, 3, 4]] == 255).all()


def test_grid_levels_8_bit_rgb_and_dtypes():
    x = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)
    x[0, 0, 0, 0] = 200  # red
    x[0, 2, 0, 1] = 17  # blue
    x[0, 1, 0, 1] = 1
    g = image_grid(x, scale=1)
    assert g.tolist() == [[rgb(200, 0, 0), rgb(0, 1, 17)]]
    # the same values as long, float and numpy give the same grid
    for same in (x.long(), x.float(), x.double().numpy(), x.numpy()):
        assert np.array_equal(image_grid(same, scale=1), g)
    # binary: bool and {0, 1} integers -> black / white; levels=256 forces 8-bit
    b = torch.tensor([[[[True, False]]]])
    assert image_grid(b, scale=1)[0, :, 0].tolist() == [255, 0]
    assert image_grid(b.long(), scale=1, levels=256)[0, :, 0].tolist() == [1, 0]
    # other numbers of levels: 17 digits levels, rounding half up
    d = torch.tensor([[[[0, 8, 16, 1]]]])
    assert image_grid(d, levels=17, scale=1)[0, :, 0].tolist() == [0, 128, 255, 16]
    assert image_grid(torch.tensor([[[[0, 1, 2]]]]), levels=3, scale=1)[0, :, 0].tolist() == [
        0,
        128,
        255,
    ]


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        ([[[[0, 1]]]], {}, "images: expected a torch.Tensor or numpy array"),
        (torch.zeros(2, 8, 8), {}, r"images: expected shape \(N, C, H, W\)"),
        (torch.zeros(0, 1, 8, 8), {}, "non-empty"),
        (torch.zeros(2, 2, 8, 8), {}, "C = 1 .* or 3"),
        (torch.full((1, 1, 2, 2), 0.5), {}, "whole-number levels"),
        (torch.full((1, 1, 2, 2), float("nan")), {}, "NaN"),
        (torch.full((1, 1, 2, 2), -1), {}, "images: expected levels >= 0"),
        (torch.full((1, 1, 2, 2), 300), {}, "levels: values up to 300"),
        (torch.full((1, 1, 2, 2), 2), {"levels": 2}, r"images: expected levels 0\.\.1"),
        (torch.zeros(1, 1, 2, 2), {"levels": 1}, "levels: expected an integer >= 2"),
        (torch.zeros(1, 1, 2, 2), {"levels": 2.0}, "levels"),
        (torch.zeros(1, 1, 2, 2), {"nrow": 0}, "nrow"),
        (torch.zeros(1, 1, 2, 2), {"padding": -1}, "padding"),
        (torch.zeros(1, 1, 2, 2), {"scale": 0}, "scale"),
        (torch.zeros(1, 1, 2, 2), {"scale": 1.5}, "scale"),
        (torch.zeros(1, 1, 2, 2), {"pad_color": (0, 0)}, "pad_color"),
        (torch.zeros(1, 1, 2, 2), {"pad_color": (0, 0, 256)}, "pad_color"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.complex64), {}, "dtype"),
    ],
)
def test_grid_bad_inputs(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_grid(images, **kwargs)


def test_save_image_grid_png_roundtrip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 4, 4), generator=gen, dtype=torch.uint8)
    path = tmp_path / "grid.png"
    written = save_image_grid(x, path, nrow=3, scale=2)
    assert np.array_equal(written, image_grid(x, nrow=3, scale=2))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        back = np.asarray(im)
    assert np.array_equal(back, written)
    # str path, upper-case suffix, overwriting
    save_image_grid(x[:1] > 128, str(tmp_path / "b.PNG"))
    with Image.open(tmp_path / "b.PNG") as im:
        assert set(np.unique(np.asarray(im)).tolist()) <= {0, 255}


def test_save_image_grid_bad_path(tmp_path):
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"path: expected a file name ending in \.png"):
        save_image_grid(x, tmp_path / "grid.jpg")
    with pytest.raises(ValueError, match="path: the directory .* does not exist"):
        save_image_grid(x, tmp_path / "nope" / "grid.png")
    with pytest.raises(ValueError, match="path: expected a str"):
        save_image_grid(x, 3)
    with pytest.raises(ValueError, match="images"):
        save_image_grid(torch.zeros(1, 2, 2), tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()


def test_completion_grid_layout(tmp_path):
    # two 1x2 binary examples, k = 2 completions each, no padding, scale 1
    originals = torch.tensor([[[[1, 0]]], [[[1, 1]]]])
    masks = torch.tensor([[[[True, False]]], [[[False, True]]]])
    completions = torch.tensor([[[[[1, 1]]], [[[1, 0]]]], [[[[0, 1]]], [[[1, 1]]]]])
    g = completion_grid(originals, masks, completions, padding=0, scale=1)
    w, b, r = rgb(255, 255, 255), rgb(0, 0, 0), list(UNOBSERVED_COLOR)
    assert g.tolist() == [
        [w, b, w, r, w, w, w, b],
        [w, w, r, w, b, w, w, w],
    ]
    # padding between all cells, rows = examples
    g = completion_grid(originals, masks, completions, padding=1, scale=1)
    p = list(PAD_COLOR)
    assert g.shape == (3, 4 * 2 + 3, 3)
    assert g[1].tolist() == [p] * 11
    assert g[0].tolist() == [w, b, p, w, r, p, w, w, p, w, b]
    # written to a PNG and read back
    path = tmp_path / "completions.png"
    written = completion_grid(originals, masks, completions, path, scale=3)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), written)
    assert written.shape == (2 * 3 + 1, 4 * 2 * 3 + 3, 3)


def test_completion_grid_rgb_and_masks():
    originals = torch.tensor([[[[10, 20]], [[30, 40]], [[50, 60]]]], dtype=torch.uint8)
    completions = originals[:, None] + 1
    # one mask for all channels: pixel 1 hidden
    shared = torch.tensor([[[[True, False]]]])
    g = completion_grid(originals, shared, completions, padding=0, scale=1)
    hidden = list(UNOBSERVED_COLOR)
    assert g[0].tolist() == [
        [10, 30, 50],
        [20, 40, 60],
        [10, 30, 50],
        hidden,
        [11, 31, 51],
        [21, 41, 61],
    ]
    # channel-wise mask: only green of pixel 0 hidden; custom colour
    per_channel = torch.ones(1, 3, 1, 2, dtype=torch.bool)
    per_channel[0, 1, 0, 0] = False
    g = completion_grid(
        originals, per_channel, completions, padding=0, scale=1, unobserved_color=(7, 8, 9)
    )
    assert g[0, 2].tolist() == [10, 8, 50] and g[0, 3].tolist() == [20, 40, 60]
    # grey originals with 8-bit levels given explicitly
    grey = torch.tensor([[[[0, 1]]]])
    g = completion_grid(grey, grey.bool(), grey[:, None], levels=256, padding=0, scale=1)
    assert g[0, :, 0].tolist() == [0, 1, UNOBSERVED_COLOR[0], 1, 0, 1]
    # default scale: (k + 2) columns at least 256 pixels wide
    digits = load_digits_images("test")[:3]
    g = completion_grid(digits, torch.ones_like(digits, dtype=torch.bool), digits[:, None])
    assert g.shape == (3 * 88 + 2, 3 * 88 + 2, 3)  # scale 11


def test_completion_grid_bad_inputs(tmp_path):
    x = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    m = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    y = torch.zeros(2, 3, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="masks: expected a bool tensor"):
        completion_grid(x, m.long(), y)
    with pytest.raises(ValueError, match=r"masks: expected shape \(2, 1, 4, 4\)"):
        completion_grid(x, m[:1], y)
    with pytest.raises(ValueError, match="completions: expected shape"):
        completion_grid(x, m, y[:1])
    with pytest.raises(ValueError, match="completions: expected shape"):
        completion_grid(x, m, y[:, :, :, :3])
    with pytest.raises(ValueError, match=r"completions: expected shape \(N, k, C, H, W\)"):
        completion_grid(x, m, y[:, 0])
    with pytest.raises(ValueError, match="originals: expected shape"):
        completion_grid(x[0], m, y)
    with pytest.raises(ValueError, match=r"completions: expected levels 0\.\.1"):
        completion_grid(x, m, y + 2, levels=2)
    with pytest.raises(ValueError, match="unobserved_color"):
        completion_grid(x, m, y, unobserved_color="red")
    with pytest.raises(ValueError, match="path"):
        completion_grid(x, m, y, tmp_path / "c.gif")
    with pytest.raises(ValueError, match="non-empty"):
        completion_grid(x, m, y[:, :0])
