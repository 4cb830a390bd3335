"""``pyro-lgm train`` / ``sample`` and the image-model registry (pyro_lgm.image_models)."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from PIL import Image

from pyro_lgm import image_models
from pyro_lgm.cli import main
from pyro_lgm.data import image_grid
from pyro_lgm.image_models import (
    IMAGE_DATASETS,
    IMAGE_MODELS,
    ImageModelSpec,
    TrainedImageModel,
    load_trained,
    read_metadata,
    register_image_model,
    resolve_options,
)
from pyro_lgm.train import load_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--option", "hidden_channels=2", "--option", "num_layers=1", "--option", "first_kernel=3"]


def _train(ckpt, *extra):
    return main(["train", "pixelcnn", "--checkpoint", str(ckpt), "--quiet", *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny PixelCNN trained 3 steps on digits."""
    ckpt = tmp_path_factory.mktemp("cli_images") / "tiny.pt"
    assert _train(ckpt, "--steps", "3", "--batch-size", "16") == 0
    return ckpt


def _one_error_line(capsys, code, argv):
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pyro-lgm") and "error:" in lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def test_train_prints_nll_and_bits_per_dim_and_the_checkpoint_rebuilds(trained, capsys):
    ckpt = load_checkpoint(trained)
    assert ckpt["step"] == 3
    meta = read_metadata(ckpt)
    assert meta["model"] == "pixelcnn" and meta["dataset"] == "digits"
    assert meta["shape"] == [1, 8, 8] and meta["bits"] == 8
    assert meta["options"]["hidden_channels"] == 2 and meta["options"]["num_layers"] == 1
    model, _ = load_trained(trained)
    x = IMAGE_DATASETS["digits"].load(None).test[:5]
    with torch.no_grad():
        nll = model.nll(x)
    assert nll.shape == (5,) and bool(torch.isfinite(nll).all())


def test_train_output_and_resume_continue_the_step_count(trained, tmp_path, capsys):
    ckpt = tmp_path / "resumed.pt"
    shutil.copy(trained, ckpt)
    # the options are taken from the checkpoint: none given here
    code = main(
        ["train", "pixelcnn", "--checkpoint", str(ckpt), "--quiet", "--resume"]
        + ["--steps", "5", "--batch-size", "16"]
    )
    assert code == 0
    out = capsys.readouterr().out
    m = re.search(
        r"test NLL: ([\d.]+) nats/image, ([\d.]+) bits/dim \(300 test images, step 5\)", out
    )
    assert m, out
    nats, bpd = float(m.group(1)), float(m.group(2))
    assert bpd == pytest.approx(nats / (64 * torch.log(torch.tensor(2.0)).item()), abs=1e-3)
    state = load_checkpoint(ckpt)
    assert state["step"] == 5 and len(state["history"]["train_loss"]) == 5
    assert read_metadata(state)["options"]["hidden_channels"] == 2


def test_resume_with_other_options_or_model_exits_2(trained, capsys):
    line = _one_error_line(
        capsys,
        2,
        ["train", "pixelcnn", "--checkpoint", str(trained), "--resume", "--steps", "9"]
        + ["--option", "hidden_channels=8"],
    )
    assert "hidden_channels" in line and "saved 2" in line
    line = _one_error_line(
        capsys, 2, ["train", "gated-pixelcnn", "--checkpoint", str(trained), "--resume"]
    )
    assert "holds pixelcnn" in line
    assert load_checkpoint(trained)["step"] == 3  # untouched


def test_sample_writes_a_png_grid(trained, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["sample", "--checkpoint", str(trained), "--num", "6", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.read_bytes()[:8] == PNG_MAGIC
    expected = image_grid(torch.zeros(6, 1, 8, 8), levels=256)  # 3 x 2 grid
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (expected.shape[1], expected.shape[0])
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary file left


def test_temperature_needs_a_model_that_supports_it(trained, tmp_path, capsys):
    out = tmp_path / "t.png"
    argv = ["sample", "--checkpoint", str(trained), "--temperature", "0.7", "--out", str(out)]
    line = _one_error_line(capsys, 2, argv)
    assert "temperature" in line and "pixelcnn" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["train", "nice"],
            "unknown image model 'nice'; known models: diagonal-bilstm, flowpp, gated-pixelcnn",
        ),
        (["train", "pixelcnn", "--option", "depth=3"], "known options: first_kernel"),
        (["train", "pixelcnn", "--option", "depth"], "KEY=VALUE"),
        (["train", "pixelcnn", "--option", "hidden_channels=many"], "expected an integer"),
        (["train", "pixelcnn", "--option", "output=bernoulli"], "binary data"),
        (["train", "pixelcnn++", "--option", "num_scales=5"], "divisible"),
        (["train", "pixelcnn", "--data", "svhn"], "invalid choice"),
        (["train", "pixelcnn", "--steps", "3", "--minutes", "1"], "not allowed"),
        (["train", "pixelcnn", "--checkpoint", "/no/such/dir/x.pt"], "does not exist"),
        (["sample", "--checkpoint", "/no/such/file.pt"], "no such file"),
        (["sample"], "--checkpoint"),
    ],
)
def test_bad_options_exit_2_before_training(argv, words, capsys):
    assert words in _one_error_line(capsys, 2, argv)


@pytest.mark.parametrize("data", ["mnist", "binarized-mnist", "cifar10"])
def test_missing_data_dir_exits_2_naming_it(data, capsys, monkeypatch):
    monkeypatch.delenv("PYRO_LGM_DATA", raising=False)
    line = _one_error_line(capsys, 2, ["train", "pixelcnn", "--data", data])
    assert "--data-dir" in line


def test_data_dir_without_the_files_exits_2(tmp_path, capsys):
    line = _one_error_line(
        capsys, 2, ["train", "pixelcnn", "--data", "mnist"] + ["--data-dir", str(tmp_path)]
    )
    assert "--data-dir" in line and "MNIST" in line


def test_a_binary_only_model_on_8_bit_data_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(image_models, "IMAGE_MODELS", dict(IMAGE_MODELS))
    spec = IMAGE_MODELS["pixelcnn"]
    register_image_model(
        "bernoulli-only",
        ImageModelSpec(spec.build, spec.defaults, spec.nll, spec.sample, binary=True),
    )
    line = _one_error_line(capsys, 2, ["train", "bernoulli-only"])
    assert "binary" in line and "8-bit" in line


def test_not_a_train_checkpoint_exits_2(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"step": 1}, path)
    assert "not a checkpoint of `pyro-lgm train`" in _one_error_line(
        capsys, 2, ["sample", "--checkpoint", str(path)]
    )


def test_info_lists_image_models_and_data_sets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("pixelcnn", "gated-pixelcnn", "pixelcnn++", "hidden_channels="):
        assert name in out
    for name in ("digits", "binarized-mnist", "mnist", "cifar10"):
        assert f"  {name}:" in out


def test_train_help_names_the_models(capsys):
    assert main(["train", "--help"]) == 0
    # argparse wraps the description at hyphens too ("gated-" / "pixelcnn" on two lines)
    out = re.sub(r"-\n\s*", "-", capsys.readouterr().out)
    for word in ("gated-pixelcnn", "--data-dir", "--option", "--minutes", "--resume"):
        assert word in out


# ------------------------------------------------- the registry fits a flow-like model


class _Pixels(torch.nn.Module):
    """Independent categorical pixels with the flow API the registry expects
    (``log_likelihood(x)`` in nats per image, ``sample((n,), temperature=T)``)."""

    def __init__(self, shape, bits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(*shape, 2**bits))

    def log_likelihood(self, x):
        lp = torch.log_softmax(self.logits, -1).expand(x.shape[0], *self.logits.shape)
        return lp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum((1, 2, 3))

    def sample(self, sample_shape, temperature=1.0):
        d = torch.distributions.Categorical(logits=self.logits / temperature)
        return d.sample(sample_shape).float()


def test_a_flow_style_model_trains_and_samples_with_a_temperature(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(image_models, "IMAGE_MODELS", dict(IMAGE_MODELS))
    register_image_model(
        "pixels",
        ImageModelSpec(
            build=lambda shape, bits, o: _Pixels(shape, bits),
            defaults={},
            nll=lambda model, x: -model.log_likelihood(x),
            sample=lambda model, n, t: model.sample((n,), temperature=t),
            supports_temperature=True,
            default_temperature=0.7,
        ),
    )
    ckpt, png = tmp_path / "p.pt", tmp_path / "p.png"
    assert main(["train", "pixels", "--steps", "2", "--checkpoint", str(ckpt), "--quiet"]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(ckpt), "--out", str(png)]) == 0
    assert "temperature 0.7" in capsys.readouterr().out
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_minutes_trains_within_a_small_budget(tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    assert _train(ckpt, "--minutes", "0.03") == 0
    assert "bits/dim" in capsys.readouterr().out
    assert load_checkpoint(ckpt)["step"] >= 1


def test_registry_rejects_bad_entries():
    spec = IMAGE_MODELS["pixelcnn"]
    with pytest.raises(ValueError, match="name"):
        register_image_model("two words", spec)
    with pytest.raises(ValueError, match="ImageModelSpec"):
        register_image_model("x", object())
    bad = ImageModelSpec(spec.build, {"hidden": [1, 2]}, spec.nll, spec.sample)
    with pytest.raises(ValueError, match="defaults"):
        register_image_model("x", bad)
    assert "x" not in IMAGE_MODELS


def test_trained_model_refuses_a_state_of_other_options():
    a = TrainedImageModel("pixelcnn", "digits", (1, 8, 8), 8, resolve_options("pixelcnn", {}))
    options = resolve_options("pixelcnn", {"kernel": "5"})
    b = TrainedImageModel("pixelcnn", "digits", (1, 8, 8), 8, options)
    with pytest.raises(ValueError, match="options"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("dequantization", ["variational", "uniform"])
def test_flowpp_trains_and_samples_from_the_command_line(dequantization, tmp_path, capsys):
    """``pyro-lgm train flowpp``: a Flow++ image flow with a variational (or uniform)
    dequantizer, scored by the one-draw variational bound; ``sample`` rebuilds it."""
    ckpt = tmp_path / "fpp.pt"
    tiny = ["--option", "hidden=4", "--option", "num_components=2", "--option", "deq_hidden=4"]
    tiny += ["--option", f"dequantization={dequantization}", "--option", "deq_steps=2"]
    argv = ["train", "flowpp", "--steps", "2", "--batch-size", "8", "--quiet", *tiny]
    assert main([*argv, "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    bpd = float(re.search(r"([0-9.]+) bits/dim", out).group(1))
    assert 0 < bpd < 16
    model, _ = load_trained(ckpt)
    n_deq = sum(p.numel() for p in model.model.dequantizer.parameters())
    assert (n_deq > 0) == (dequantization == "variational")
    png = tmp_path / "fpp.png"
    assert main(["sample", "--checkpoint", str(ckpt), "--out", str(png), "--num", "4"]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------- PixelRNN / PixelSNAIL through the CLI


@pytest.mark.parametrize(
    "name, options",
    [
        (
            "pixelsnail",
            ["hidden_channels=4", "num_blocks=1", "key_channels=4", "value_channels=4"],
        ),
        ("row-lstm", ["hidden_channels=2", "num_layers=1", "first_kernel=3"]),
        ("diagonal-bilstm", ["hidden_channels=2", "num_layers=1", "first_kernel=3"]),
    ],
)
def test_train_and_sample_the_newer_families(tmp_path, capsys, name, options):
    ckpt, png = tmp_path / "m.pt", tmp_path / "s.png"
    argv = ["train", name, "--checkpoint", str(ckpt), "--quiet", "--steps", "2"]
    argv += ["--batch-size", "8"] + [a for o in options for a in ("--option", o)]
    assert main(argv) == 0
    assert "bits/dim" in capsys.readouterr().out
    meta = read_metadata(load_checkpoint(ckpt))
    assert meta["model"] == name and meta["shape"] == [1, 8, 8]
    assert main(["sample", "--checkpoint", str(ckpt), "--num", "4", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    model, _ = load_trained(ckpt)
    x = model.sample(2, 1.0)
    assert x.shape == (2, 1, 8, 8) and bool(((x >= 0) & (x <= 255)).all())
