"""The espeak-ng speech corpus: building, splits, hashes, the error without the tool.

A stand-in ``espeak-ng`` (a Python script writing a 22 050 Hz tone) tests the pipeline on
machines without the program; where the real one is installed, two builds are compared file
by file (reproducibility).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import wave

import pytest
import torch

from pyro_lgm.data import build_speech_corpus, load_speech_corpus, speech_segments

FAKE = f"""#!{sys.executable}
import math, struct, sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("fake espeak-ng 0.0")
    sys.exit(0)
out = args[args.index("-w") + 1]
word, rate = args[-1], int(args[args.index("-s") + 1])
n = 22050 * 30 // rate  # longer at slower rates
f0 = 100.0 + 20 * len(word)
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * f0 * t / 22050)))
                           for t in range(n)))
"""


@pytest.fixture
def fake_espeak(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "espeak-ng"
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))
    return exe


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="espeak-ng.*apt-get install espeak-ng"):
        build_speech_corpus(tmp_path / "corpus")


def test_corpus_splits_rates_hashes_and_lengths(fake_espeak, tmp_path):
    root = build_speech_corpus(tmp_path / "c", words=["one", "seven"], voices=["a", "b+f3"])
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    items = manifest["items"]
    assert len(items) == 2 * 2 * 4 and manifest["settings"]["espeak_ng"] == "fake espeak-ng 0.0"
    splits = {r: {i["split"] for i in items if i["rate"] == r} for r in (140, 160, 175, 190)}
    assert splits == {140: {"valid"}, 160: {"train"}, 175: {"test"}, 190: {"train"}}
    for item in items:
        with wave.open(os.path.join(root, item["file"]), "rb") as f:
            assert f.getframerate() == 16000 and f.getsampwidth() == 2
            # 22 050 Hz -> 16 000 Hz: the length scales by 320 / 441
            n = 22050 * 30 // item["rate"]
            assert f.getnframes() == item["samples"] == -(-n * 320 // 441)
    waves, speakers = load_speech_corpus(root, "train")
    assert len(waves) == 8 and sorted(speakers.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    peak = max(float(w.abs().max()) for w in waves)
    assert abs(peak - 0.9) < 1e-3  # peak-normalized
    assert "Splits by rate" in (tmp_path / "c" / "README.md").read_text()


def test_a_changed_file_is_refused_and_a_built_corpus_is_kept(fake_espeak, tmp_path):
    root = build_speech_corpus(tmp_path / "c", words=["go"], voices=["a"])
    first = (tmp_path / "c" / "manifest.json").stat().st_mtime_ns
    build_speech_corpus(tmp_path / "c", words=["go"], voices=["a"])  # same settings: kept
    assert (tmp_path / "c" / "manifest.json").stat().st_mtime_ns == first
    path = tmp_path / "c" / "wav" / "a-go-175.wav"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="differs from the manifest"):
        load_speech_corpus(root, "test")


def test_bad_arguments(tmp_path, fake_espeak):
    with pytest.raises(FileNotFoundError, match="build the corpus first"):
        load_speech_corpus(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_speech_corpus(tmp_path, "dev")
    with pytest.raises(ValueError, match="sample_rate"):
        build_speech_corpus(tmp_path / "c", sample_rate=8)
    with pytest.raises(ValueError, match="length"):
        speech_segments([torch.zeros(5)], 0)


def test_segments_cut_pad_and_hop():
    waves = [torch.arange(10.0), torch.arange(3.0)]
    seg = speech_segments(waves, 4, hop=3)
    assert seg.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [0, 1, 2, 0]]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_real_espeak_builds_the_same_files_twice(tmp_path):
    kw = dict(words=["three"], voices=["en-us"], rates=[175])
    a = json.loads(
        open(os.path.join(build_speech_corpus(tmp_path / "a", **kw), "manifest.json")).read()
    )
    b = json.loads(
        open(os.path.join(build_speech_corpus(tmp_path / "b", **kw), "manifest.json")).read()
    )
    assert [i["sha256"] for i in a["items"]] == [i["sha256"] for i in b["items"]]
    assert a["items"][0]["samples"] > 1600  # more than 0.1 s of speech
