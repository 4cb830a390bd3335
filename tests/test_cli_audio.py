"""``pyro-lgm train-wavenet`` / ``sample-audio`` and :mod:`pyro_lgm.audio_models`.

A tiny corpus is synthesized once by the stand-in ``espeak-ng`` of
``tests/test_speech_data.py`` (a script writing tones); tiny WaveNets are trained on it for
a few steps.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
import stat

import pytest
import torch

from pyro_lgm.audio_models import TrainedWaveNet, load_trained_wavenet
from pyro_lgm.cli import _speech_split, main
from pyro_lgm.data import build_speech_corpus, read_wav
from pyro_lgm.data import speech as speech_module
from pyro_lgm.image_models import METADATA_FORMAT as IMAGE_FORMAT
from pyro_lgm.train import save_checkpoint
from tests.test_speech_data import FAKE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--segment", "256", "--channels", "4", "--layers", "3", "--batch-size", "4"]
WORDS, VOICES = ["go", "no"], ["en-us", "en-gb"]


def _install_fake_espeak(directory) -> str:
    """The stand-in espeak-ng of tests/test_speech_data.py in ``directory``; returns it."""
    os.makedirs(directory, exist_ok=True)
    exe = os.path.join(directory, "espeak-ng")
    with open(exe, "w") as f:
        f.write(FAKE)
    os.chmod(exe, os.stat(exe).st_mode | stat.S_IEXEC)
    return str(directory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 16-utterance corpus (2 words x 2 voices x 4 rates) built with the stand-in."""
    root = tmp_path_factory.mktemp("audio")
    bindir = _install_fake_espeak(root / "bin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", bindir)
        return build_speech_corpus(root / "corpus", words=WORDS, voices=VOICES)


def _train(argv, capsys):
    rc = main(["train-wavenet", "--quiet", *argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def _printed_nll(out):
    m = re.search(r"test NLL: ([\d.]+) nats/sample, ([\d.]+) bits/sample \((\d+) test", out)
    assert m, out
    return float(m.group(1)), float(m.group(2)), int(m.group(3))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """Two checkpoints: a speaker-conditioned categorical model, an unconditional mixture."""
    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, extra in [
        ("cat", ["--speaker"]),
        ("mix", ["--output", "logistic_mixture", "--mixtures", "2"]),
    ]:
        path = str(d / f"{name}.pt")
        argv = ["train-wavenet", "--quiet", "--corpus", corpus, "--steps", "3"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(argv + TINY + extra + ["--checkpoint", path]) == 0
        out[name] = (path, buf.getvalue())
    return out


# --------------------------------------------------------------------- levels <-> audio


@pytest.mark.parametrize(
    "output, bits", [("categorical", 8), ("categorical", 3), ("logistic_mixture", 16)]
)
def test_levels_audio_round_trip_is_exact_on_the_grid(output, bits):
    m = TrainedWaveNet(8, residual_channels=2, skip_channels=2, dilation_channels=2,
                       layers_per_stack=1, output=output, bits=bits)  # fmt: skip
    q = torch.arange(2**bits, dtype=torch.float32)
    x = m.levels_to_audio(q)
    assert x.dtype == torch.float32 and x[0] == -1 and x[-1] == 1
    assert bool((x[1:] > x[:-1]).all())  # increasing: one audio value per level
    assert torch.equal(m.audio_to_levels(x), q)
    if output == "logistic_mixture":  # linear: the nearest level
        a = torch.linspace(-1, 1, 1001)
        assert (m.levels_to_audio(m.audio_to_levels(a)) - a).abs().max() <= 1 / (2**bits - 1)
    with pytest.raises(ValueError, match="q: expected integer levels"):
        m.levels_to_audio(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="x: expected finite values"):
        m.audio_to_levels(torch.tensor([1.5]))


def test_trained_wavenet_arguments_and_other_lengths():
    with pytest.raises(ValueError, match="segment"):
        TrainedWaveNet(0)
    with pytest.raises(ValueError, match="hidden: not an option"):
        TrainedWaveNet(8, hidden=3)
    with pytest.raises(ValueError, match="voices"):
        TrainedWaveNet(8, num_classes=2, voices=["a"])
    m = TrainedWaveNet(8, residual_channels=2, skip_channels=2, dilation_channels=2,
                       layers_per_stack=2, bits=4, num_classes=3)  # fmt: skip
    with pytest.raises(ValueError, match="speaker: this model is conditioned on 3"):
        m.sample(1, length=5)
    with pytest.raises(ValueError, match=r"speaker: expected ids in 0..2, got 3"):
        m.sample(1, length=5, speaker=3)
    # a length other than the training segment's: the network is convolutional
    x = m.sample(2, length=13, speaker=torch.tensor([0, 2]))
    assert x.shape == (2, 13) and bool((x.abs() <= 1).all())
    assert m.sample(1, seconds=0.5 / 16000 * 10, speaker=1).shape == (1, 5)
    q = m.audio_to_levels(x)
    nll = m.nll(q, torch.tensor([0, 2]))
    d = m.distribution(13, torch.tensor([0, 2]), (2,))
    assert torch.allclose(nll, -d.log_prob(q))
    assert torch.allclose(m(q, torch.tensor([0, 2])), nll.mean() / 13)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["cat", "mix"])
def test_train_prints_the_test_nll_and_the_checkpoint_rebuilds_the_model(name, trained, corpus):
    path, out = trained[name]
    nats, bits, segments = _printed_nll(out)
    assert abs(bits - nats / math.log(2)) < 2e-4
    model, ckpt = load_trained_wavenet(path)
    assert ckpt["step"] == 3
    meta = model.metadata
    assert meta["segment"] == 256 and meta["sample_rate"] == 16000
    assert meta["corpus"] == os.path.abspath(corpus)
    if name == "cat":
        assert model.output == "categorical" and model.bits == 8
        assert model.speakers == 2 and model.voices == VOICES
    else:
        assert model.output == "logistic_mixture" and model.bits == 16
        assert model.speakers is None and model.options["num_mixtures"] == 2
    # the rebuilt model's NLL on the test segments is the one the training run printed
    x, s = _speech_split(corpus, "test", 256)
    assert len(x) == segments
    with torch.no_grad():
        nll = model.nll(model.audio_to_levels(x), s if model.speakers else None)
    assert abs(float(nll.mean()) / 256 - nats) < 1e-4
    # and the same log-prob as a model given the checkpoint's state directly
    fresh = TrainedWaveNet(256, sample_rate=16000, corpus=meta["corpus"],
                           voices=meta["voices"], **meta["options"])  # fmt: skip
    fresh.load_state_dict(ckpt["model"])
    q = model.audio_to_levels(x[:3])
    ctx = s[:3] if model.speakers else None
    with torch.no_grad():
        assert torch.equal(model.nll(q, ctx), fresh.nll(q, ctx))


def test_resume_continues_to_the_same_model(corpus, tmp_path, capsys):
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    argv = ["--corpus", corpus, *TINY, "--eval-every", "2"]
    straight = _train(argv + ["--steps", "4", "--checkpoint", a], capsys)
    _train(argv + ["--steps", "2", "--checkpoint", b], capsys)
    assert load_trained_wavenet(b)[1]["step"] == 2
    # the corpus comes from the checkpoint; the model options too
    rc = main(["train-wavenet", "--resume", "--steps", "4", "--checkpoint", b, "--eval-every", "2",
               "--batch-size", "4", "--quiet"])  # fmt: skip
    resumed = capsys.readouterr().out
    assert rc == 0
    assert load_trained_wavenet(b)[1]["step"] == 4
    assert "step 4" in resumed and _printed_nll(resumed) == _printed_nll(straight)
    # a changed option is refused, naming it
    rc = main(["train-wavenet", "--resume", "--steps", "6", "--checkpoint", b, "--layers", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--layers 2" in err and "saved 3" in err


def test_cosine_decays_the_learning_rate_to_zero_over_the_steps(corpus, tmp_path, capsys):
    ckpt = str(tmp_path / "c.pt")
    argv = ["--corpus", corpus, *TINY, "--steps", "4", "--lr", "0.01", "--checkpoint", ckpt]
    _train(argv + ["--cosine"], capsys)
    saved = load_trained_wavenet(ckpt)[1]
    assert saved["scheduler"]["T_max"] == 4 and saved["scheduler"]["last_epoch"] == 4
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    _train(argv, capsys)  # without it: constant
    saved = load_trained_wavenet(ckpt)[1]
    assert saved["scheduler"] is None and saved["optimizer"]["param_groups"][0]["lr"] == 0.01


def test_minutes_trains_within_a_small_budget_with_speakers(corpus, tmp_path, capsys):
    ckpt = str(tmp_path / "m.pt")
    argv = ["--corpus", corpus, *TINY, "--speaker", "--minutes", "0.05"]
    out = _train(argv + ["--checkpoint", ckpt], capsys)
    step = load_trained_wavenet(ckpt)[1]["step"]
    assert step >= 1 and f"step {step})" in out


def test_a_missing_corpus_is_built_with_a_progress_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _install_fake_espeak(tmp_path / "bin"))
    few = functools.partial(speech_module.build_speech_corpus, words=["up"], voices=["x"])
    monkeypatch.setattr(speech_module, "build_speech_corpus", few)
    root = tmp_path / "new"
    argv = ["train-wavenet", "--corpus", str(root), "--steps", "1", *TINY]
    assert main(argv + ["--checkpoint", str(tmp_path / "w.pt")]) == 0
    captured = capsys.readouterr()
    assert (root / "manifest.json").exists()
    assert "built the speech corpus" in captured.out and "espeak-ng" in captured.err
    assert _printed_nll(captured.out)[2] > 0


# ---------------------------------------------------------------------------- sampling


def test_sample_audio_writes_wavs_and_a_plot(trained, tmp_path, capsys):
    path, _ = trained["cat"]
    out, png = tmp_path / "s.wav", tmp_path / "s.png"
    argv = ["sample-audio", "--checkpoint", path, "--length", "120", "--num", "2"]
    assert main(argv + ["--speaker", "1", "--out", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    files = [tmp_path / "s-0.wav", tmp_path / "s-1.wav"]
    assert not out.exists() and all(f.exists() for f in files)
    model, _ = load_trained_wavenet(path)
    expected = model.sample(2, length=120, speaker=1, generator=torch.Generator().manual_seed(0))
    for f, want in zip(files, expected):
        x, rate = read_wav(f)
        assert rate == 16000 and x.shape == (120,)
        assert bool((x.abs() <= 1).all())
        # 16-bit PCM of the model's own draws (same seed), so back on its mu-law grid
        assert (x - want).abs().max() <= 0.5 / 32767 + 1e-7
        assert torch.equal(model.audio_to_levels(x), model.audio_to_levels(want))
        assert f"wrote {f}: 120 samples (0.007 s at 16000 Hz, speaker 1 (en-gb))" in printed
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert re.search(r"generated 2 x 120 = 240 samples in [\d.]+ s: \d+ samples/s", printed)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_cached_and_naive_write_the_same_wav(trained, tmp_path, capsys):
    path, _ = trained["mix"]
    data = {}
    for method, seed in [("cached", 3), ("naive", 3), ("cached", 4)]:
        out = tmp_path / f"{method}{seed}.wav"
        argv = ["sample-audio", "--checkpoint", path, "--seconds", "0.002", "--seed", str(seed)]
        assert main(argv + ["--method", method, "--out", str(out)]) == 0
        data[method, seed] = out.read_bytes()
        x, rate = read_wav(out)
        assert x.shape == (32,) and rate == 16000 and bool((x.abs() <= 1).all())
    capsys.readouterr()
    assert data["cached", 3] == data["naive", 3]
    assert data["cached", 3] != data["cached", 4]


# ------------------------------------------------------------------------ usage errors


def _one_line_error(capsys, *names):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pyro-lgm") and "error:" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_sample_audio_usage_errors_exit_2(trained, tmp_path, capsys):
    cat, mix = trained["cat"][0], trained["mix"][0]
    out = str(tmp_path / "x.wav")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    image = str(tmp_path / "image.pt")  # the metadata of an image model's checkpoint
    save_checkpoint({"step": 1, "model": {"_extra_state": {"format": IMAGE_FORMAT}}}, image)
    cases = [
        (["--checkpoint", cat, "--speaker", "0", "--out", "x.mp3"], ["--out", ".wav"]),
        (["--checkpoint", str(tmp_path / "none.pt"), "--out", out], ["--checkpoint"]),
        (["--checkpoint", str(junk), "--out", out], ["--checkpoint", "not a checkpoint"]),
        (["--checkpoint", cat, "--out", out], ["--speaker", "required", "0: en-us"]),
        (["--checkpoint", cat, "--speaker", "2", "--out", out], ["--speaker 2", "0..1"]),
        (["--checkpoint", mix, "--speaker", "0", "--out", out], ["--speaker", "not speaker"]),
        (["--checkpoint", cat, "--speaker", "-1", "--out", out], ["--speaker"]),
        (["--checkpoint", mix, "--length", "0", "--out", out], ["--length"]),
        (["--checkpoint", mix, "--seconds", "1", "--length", "5"], ["--length", "--seconds"]),
        (["--checkpoint", mix, "--method", "fast"], ["--method"]),
        (["--checkpoint", mix, "--plot", "p.jpg"], ["--plot", ".png"]),
        (["--checkpoint", image, "--out", out], ["--checkpoint", "pyro-lgm sample"]),
    ]
    for argv, names in cases:
        assert main(["sample-audio", *argv]) == 2, argv
        _one_line_error(capsys, *names)
    assert not os.path.exists(out)


def test_train_usage_errors_exit_2_before_training(corpus, tmp_path, monkeypatch, capsys):
    ckpt = str(tmp_path / "w.pt")
    base = ["train-wavenet", "--checkpoint", ckpt, "--steps", "1"]
    cases = [
        ([], ["--corpus"]),
        (["--corpus", corpus, "--mixtures", "3"], ["--mixtures", "logistic_mixture"]),
        (["--corpus", corpus, "--bits", "17"], ["--bits"]),
        (["--corpus", corpus, "--output", "mulaw"], ["--output"]),
        (["--corpus", corpus, "--clip", "-1"], ["--clip"]),
        (["--corpus", corpus, "--steps", "1", "--minutes", "1"], ["--minutes", "--steps"]),
        (["--corpus", corpus, "--checkpoint", str(tmp_path / "no" / "w.pt")], ["--checkpoint"]),
    ]
    for argv, names in cases:
        assert main(base + argv) == 2, argv
        _one_line_error(capsys, *names)
    # no corpus and no espeak-ng on PATH: the library's error, nothing created
    monkeypatch.setenv("PATH", str(tmp_path))
    missing = tmp_path / "corpus"
    assert main(base + ["--corpus", str(missing)]) == 2
    line = _one_line_error(capsys, "--corpus", "espeak-ng", "apt-get install espeak-ng")
    assert "no manifest.json" in line
    assert not missing.exists() and not os.path.exists(ckpt)


def test_help_lists_the_options_and_info_the_commands(capsys):
    assert main(["train-wavenet", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ["--corpus", "--output", "--speaker", "--segment", "--channels", "--layers",
                "--stacks", "--mixtures", "--steps", "--minutes", "--batch-size", "--lr",
                "--clip", "--checkpoint", "--resume", "--device", "--seed", "--eval-every",
                "--quiet"]:  # fmt: skip
        assert opt in text, opt
    assert main(["sample-audio", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ["--checkpoint", "--seconds", "--length", "--num", "--speaker", "--method",
                "--out", "--plot", "--seed", "--device", "STEM-0.wav"]:  # fmt: skip
        assert opt in text, opt
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "train-wavenet" in text and "sample-audio" in text
    assert main(["info"]) == 0
    assert "pyro-lgm train-wavenet" in capsys.readouterr().out
