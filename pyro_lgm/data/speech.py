r"""A small, reproducible speech corpus synthesized with ``espeak-ng`` (WaveNet's data here).

No audio set ships with the project. :func:`build_speech_corpus` makes one from a Debian
package: every word of :data:`WORDS` (the ten digits and ten short words) spoken by every
voice of :data:`VOICES` (English voice variants standing in for speakers) at every rate of
:data:`RATES` (words per minute), synthesized by ``espeak-ng --stdout`` at its native
22 050 Hz, resampled to ``sample_rate`` (16 kHz by default) by a polyphase filter
(:func:`scipy.signal.resample_poly`), peak-normalized to 0.9 and written as 16-bit PCM mono
WAV files. A ``manifest.json`` records for each file the word, the voice (the speaker id),
the rate, the split, the number of samples and the SHA-256 of the file, with the
``espeak-ng`` version and the exact command line; ``README.md`` says the same in words. The
split is by rate: the middle rate is the test set, the slowest the validation set, the
others train, so every word and every speaker appears in each split.

With the same ``espeak-ng`` version the files are identical from run to run (the manifest's
hashes let a user check it); another version may pronounce differently, which the manifest
makes visible.

Example:
    >>> import shutil, tempfile
    >>> if shutil.which("espeak-ng"):  # doctest: +SKIP
    ...     root = build_speech_corpus(tempfile.mkdtemp())
    ...     x, speakers = load_speech_corpus(root, "train")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from pyro_lgm.data.audio import read_wav, write_wav

__all__ = [
    "RATES",
    "VOICES",
    "WORDS",
    "build_speech_corpus",
    "load_speech_corpus",
    "speech_segments",
]

#: the spoken words: ten digits and ten short words
WORDS = (
    "zero one two three four five six seven eight nine yes no up down left right on off stop go"
).split()
#: espeak-ng voices (English variants), each a "speaker"
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-us+f3", "en-gb+m3", "en-us+f4")
#: speaking rates in words per minute: 140 validation, 175 test, the others train
RATES = (140, 160, 175, 190)
_SPLIT_OF_RATE = {140: "valid", 160: "train", 175: "test", 190: "train"}


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise FileNotFoundError(
            "espeak-ng: the speech corpus is synthesized with the espeak-ng program, which is "
            "not on PATH; install it (Debian / Ubuntu: apt-get install espeak-ng)"
        )
    return path


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def build_speech_corpus(
    root: str | os.PathLike,
    *,
    words: Sequence[str] = WORDS,
    voices: Sequence[str] = VOICES,
    rates: Sequence[int] = RATES,
    sample_rate: int = 16000,
    progress: bool = False,
) -> str:
    """Synthesize the corpus into ``root`` (created if needed); return ``root``.

    Args:
        root: the output folder; ``manifest.json``, ``README.md`` and ``wav/*.wav`` are
            written there (an existing corpus with the same settings is kept as is).
        words, voices, rates: what to say, with which ``espeak-ng`` voices and at which
            rates (words per minute). Rates outside :data:`RATES` go to the training split.
        sample_rate: the output rate in Hz.
        progress: print a progress bar on stderr.

    Raises:
        FileNotFoundError: ``espeak-ng`` is not installed.
        ValueError: bad arguments.
    """
    exe = _espeak()
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate < 1000:
        raise ValueError(f"sample_rate: expected an int >= 1000 Hz, got {sample_rate!r}")
    if not words or not voices or not rates:
        raise ValueError("words, voices, rates: expected non-empty sequences")
    from scipy.signal import resample_poly

    root = os.fspath(root)
    os.makedirs(os.path.join(root, "wav"), exist_ok=True)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    settings = {
        "words": list(words),
        "voices": list(voices),
        "rates": [int(r) for r in rates],
        "sample_rate": sample_rate,
        "espeak_ng": version.stdout.strip(),
    }
    manifest_path = os.path.join(root, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get("settings") == settings:
            return root
    items = []
    jobs = [(w, v, r) for v in voices for w in words for r in rates]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="espeak-ng", unit="utt", leave=False)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        for word, voice, rate in jobs:
            cmd = [exe, "-v", voice, "-s", str(int(rate)), "-w", raw, word]
            subprocess.run(cmd, check=True, capture_output=True)
            wav, native = read_wav(raw, dtype=torch.float64)  # espeak-ng: 22 050 Hz
            x = wav.numpy()
            g = int(np.gcd(sample_rate, native))
            y = resample_poly(x, sample_rate // g, native // g) if native != sample_rate else x
            peak = float(np.max(np.abs(y))) if y.size else 0.0
            if peak > 0:
                y = y * (0.9 / peak)
            name = f"{voice.replace('+', '_')}-{word}-{int(rate)}.wav"
            path = os.path.join(root, "wav", name)
            write_wav(path, torch.from_numpy(np.ascontiguousarray(y)), sample_rate)
            items.append(
                {
                    "file": f"wav/{name}",
                    "word": word,
                    "speaker": list(voices).index(voice),
                    "voice": voice,
                    "rate": int(rate),
                    "split": _SPLIT_OF_RATE.get(int(rate), "train"),
                    "samples": int(y.size),
                    "sha256": _sha256(path),
                }
            )
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    manifest = {
        "settings": settings,
        "command": "espeak-ng -v VOICE -s RATE -w OUT.wav WORD (22050 Hz), resampled",
        "items": items,
    }
    tmp_manifest = manifest_path + ".tmp"
    with open(tmp_manifest, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp_manifest, manifest_path)  # the corpus counts as built only now
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write(_readme(settings, items))
    return root


def _readme(settings: dict, items: list[dict]) -> str:
    counts = {s: sum(1 for i in items if i["split"] == s) for s in ("train", "valid", "test")}
    seconds = sum(i["samples"] for i in items) / settings["sample_rate"]
    return (
        "# Speech corpus synthesized with espeak-ng\n\n"
        f"Built by `pyro_lgm.data.build_speech_corpus` with {settings['espeak_ng']}.\n"
        f"{len(items)} utterances ({seconds:.1f} s of audio) at {settings['sample_rate']} Hz, "
        "16-bit PCM mono: every word of "
        f"{settings['words']} by every voice of {settings['voices']} (the speakers) at every "
        f"rate of {settings['rates']} words per minute.\n\n"
        "Synthesis: `espeak-ng -v VOICE -s RATE -w OUT.wav WORD` at espeak-ng's native "
        "22050 Hz, resampled by scipy.signal.resample_poly, peak-normalized to 0.9.\n\n"
        f"Splits by rate (140 wpm validation, 175 test, others train): train {counts['train']}, "
        f"validation {counts['valid']}, test {counts['test']} utterances. `manifest.json` "
        "holds the word, speaker, rate, split, length and SHA-256 of every file.\n\n"
        "License: espeak-ng is GPL-3.0-or-later; its synthesized output is not covered by "
        "the program's license.\n"
    )


def load_speech_corpus(
    root: str | os.PathLike, split: str = "train"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The utterances of one split: a list of float32 waveforms in ``[-1, 1]`` and their
    speaker ids ``(N,)``.

    Raises:
        FileNotFoundError: ``root`` holds no corpus (build it with
            :func:`build_speech_corpus`).
        ValueError: an unknown split, or a file whose hash differs from the manifest's.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split: expected 'train', 'valid' or 'test', got {split!r}")
    path = os.path.join(os.fspath(root), "manifest.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"root: no manifest.json in {os.fspath(root)!r}; build the corpus first with "
            "pyro_lgm.data.build_speech_corpus(root)"
        )
    with open(path) as f:
        manifest = json.load(f)
    waves, speakers = [], []
    for item in manifest["items"]:
        if item["split"] != split:
            continue
        file = os.path.join(os.fspath(root), item["file"])
        if _sha256(file) != item["sha256"]:
            raise ValueError(f"root: {item['file']} differs from the manifest (SHA-256)")
        x, _ = read_wav(file)
        waves.append(x)
        speakers.append(item["speaker"])
    return waves, torch.tensor(speakers, dtype=torch.long)


def speech_segments(
    waves: Sequence[torch.Tensor], length: int, hop: int | None = None
) -> torch.Tensor:
    """Cut waveforms into ``(N, length)`` segments with hop ``hop`` (default ``length``);
    the last partial segment of each waveform is dropped, a waveform shorter than
    ``length`` is zero-padded to one segment."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length: expected a positive int, got {length!r}")
    hop = length if hop is None else hop
    if not isinstance(hop, int) or isinstance(hop, bool) or hop < 1:
        raise ValueError(f"hop: expected a positive int, got {hop!r}")
    out = []
    for w in waves:
        if w.numel() < length:
            out.append(torch.nn.functional.pad(w, (0, length - w.numel()))[None])
            continue
        out.append(w.unfold(0, length, hop))
    if not out:
        raise ValueError("waves: expected at least one waveform")
    return torch.cat(out)
