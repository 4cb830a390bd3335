r"""Audio helpers for WaveNet: mu-law companding, synthetic tones, 16-bit PCM WAV files.

Mu-law companding (ITU-T G.711; used by WaveNet to reduce 16-bit audio to 256 levels)
maps :math:`x \in [-1, 1]` to

.. math::
    F(x) = \operatorname{sign}(x) \frac{\ln(1 + \mu |x|)}{\ln(1 + \mu)}, \qquad
    \mu = L - 1,

then quantizes :math:`F(x)` to the nearest of the ``L`` uniformly spaced points
:math:`c_q = 2q/(L-1) - 1`, :math:`q = 0, \dots, L - 1` (the ends included). Decoding maps
level ``q`` back through the inverse,
:math:`F^{-1}(y) = \operatorname{sign}(y)\,((1 + \mu)^{|y|} - 1) / \mu` at :math:`y = c_q`,
so ``mu_law_encode(mu_law_decode(q)) == q`` for every level, and
:math:`|F(\text{decode}(\text{encode}(x))) - F(x)| \le 1/(L-1)` (half the spacing).

References:
    ITU-T Recommendation G.711. *Pulse Code Modulation (PCM) of Voice Frequencies*. 1988.

    A. van den Oord et al. *WaveNet: A Generative Model for Raw Audio*. arXiv:1609.03499,
    2016 (section 2.2).
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import torch

__all__ = [
    "linear_decode",
    "linear_encode",
    "mu_law_decode",
    "mu_law_encode",
    "read_wav",
    "tones",
    "write_wav",
]


def _levels(levels: object) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2, got {levels!r}")
    return levels


def _check_audio(x: object) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x: expected a floating tensor, got {getattr(x, 'dtype', type(x))}")
    if not bool(torch.isfinite(x).all()) or bool((x.abs() > 1).any()):
        raise ValueError("x: expected finite values in [-1, 1]")


def _check_levels(q: object, levels: int) -> torch.Tensor:
    """``q`` as float64 after checking it holds integer levels ``0 .. levels - 1``."""
    if not isinstance(q, torch.Tensor):
        raise ValueError(f"q: expected a tensor, got {type(q).__name__}")
    qd = q.double()
    if bool(((qd != qd.round()) | (qd < 0) | (qd > levels - 1)).any()):
        raise ValueError(f"q: expected integer levels in [0, {levels - 1}]")
    return qd


def mu_law_encode(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    r"""Real audio in ``[-1, 1]`` to integer levels ``0 .. levels - 1`` (``int64``).

    :math:`q = \operatorname{round}\big((F(x) + 1)(L - 1)/2\big)` with ``F`` the mu-law
    compander of the module docstring.

    Example:
        >>> mu_law_encode(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([  0, 128, 255])
    """
    levels = _levels(levels)
    _check_audio(x)
    mu = levels - 1
    xd = x.double()
    y = torch.sign(xd) * torch.log1p(mu * xd.abs()) / math.log1p(mu)
    return torch.round((y + 1.0) * (mu / 2.0)).long().clamp(0, mu)


def mu_law_decode(
    q: torch.Tensor, levels: int = 256, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    r"""Levels ``0 .. levels - 1`` (any integer or integral real dtype) to ``[-1, 1]``:
    :math:`F^{-1}(2q/(L-1) - 1)`.

    Example:
        >>> q = torch.arange(256)
        >>> bool((mu_law_encode(mu_law_decode(q)) == q).all())
        True
    """
    levels = _levels(levels)
    qd = _check_levels(q, levels)
    mu = levels - 1
    y = qd * (2.0 / mu) - 1.0
    x = torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
    # the end levels map to exactly -1 and 1 (the formula rounds them)
    return torch.where(y.abs() == 1, y, x).to(dtype)


def linear_encode(x: torch.Tensor, levels: int = 2**16) -> torch.Tensor:
    r"""Real audio in ``[-1, 1]`` to ``levels`` uniform levels (``int64``):
    :math:`q = \operatorname{round}\big((x + 1)(L - 1)/2\big)`, the bins of a discretized
    logistic mixture over ``[-1, 1]``.

    Computed in float64: in float32 the product near ``L = 2^{16}`` carries errors of about
    ``0.004`` of a level, enough to round neighbouring 16-bit PCM values (``k / 32767``, a
    tie away from the level grid) to one level. Here the 65 535 PCM values get 65 535
    distinct levels.

    Example:
        >>> linear_encode(torch.tensor([-1.0, 0.0, 1.0]), 256)
        tensor([  0, 128, 255])
    """
    levels = _levels(levels)
    _check_audio(x)
    top = levels - 1
    return torch.round((x.double() + 1.0) * (top / 2.0)).long().clamp(0, top)


def linear_decode(
    q: torch.Tensor, levels: int = 2**16, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    r"""Levels ``0 .. levels - 1`` to ``[-1, 1]``: :math:`2q/(L-1) - 1`, the inverse of
    :func:`linear_encode` on the grid.

    Example:
        >>> q = torch.arange(2**16)
        >>> bool((linear_encode(linear_decode(q)) == q).all())
        True
    """
    levels = _levels(levels)
    qd = _check_levels(q, levels)
    return (qd * (2.0 / (levels - 1)) - 1.0).to(dtype)


def tones(
    n: int,
    length: int,
    sample_rate: int = 16000,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""``(n, length)`` synthetic audio: each row a sum of 1 to 3 sines with random
    frequencies (100 Hz to ``sample_rate / 8``), amplitudes and phases, scaled to a peak of
    at most 0.9, so every value lies in ``[-1, 1]``.

    Example:
        >>> x = tones(2, 100)
        >>> x.shape, bool((x.abs() <= 1).all())
        (torch.Size([2, 100]), True)
    """
    for name, v in (("n", n), ("length", length), ("sample_rate", sample_rate)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    g = torch.Generator().manual_seed(int(seed))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    out = torch.zeros(n, length, dtype=torch.float64)
    top = max(sample_rate / 8, 101.0)
    for i in range(n):
        k = int(torch.randint(1, 4, (1,), generator=g))
        f = 100.0 + torch.rand(k, generator=g, dtype=torch.float64) * (top - 100.0)
        a = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)
        ph = torch.rand(k, generator=g, dtype=torch.float64) * 2 * math.pi
        out[i] = (a[:, None] * torch.sin(2 * math.pi * f[:, None] * t + ph[:, None])).sum(0)
    peak = out.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    return (0.9 * out / peak).to(dtype)


def write_wav(path: str | Path, x: torch.Tensor, sample_rate: int = 16000) -> None:
    """Write mono audio ``(T,)`` in ``[-1, 1]`` as 16-bit PCM (``round(32767 x)``)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate: expected an int >= 1, got {sample_rate!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 1:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a floating tensor of shape (T,) (mono), got {got}")
    if not bool(torch.isfinite(x).all()) or bool((x.abs() > 1).any()):
        raise ValueError("x: expected finite values in [-1, 1]")
    pcm = torch.round(x.double().cpu() * 32767).to(torch.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.numpy().astype("<i2").tobytes())


def read_wav(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """Read a mono 16-bit PCM WAV file: ``(audio (T,) in [-1, 1], sample_rate)``
    (``int16 / 32767``, clipped at -1)."""
    try:
        w = wave.open(str(path), "rb")
    except (wave.Error, EOFError) as e:
        raise ValueError(f"path: not a PCM WAV file ({e})") from None
    with w:
        if w.getnchannels() != 1:
            raise ValueError(f"path: expected mono audio, got {w.getnchannels()} channels")
        if w.getsampwidth() != 2:
            raise ValueError(f"path: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    pcm = torch.frombuffer(bytearray(data), dtype=torch.int16).double()
    return (pcm / 32767).clamp(min=-1.0).to(dtype), rate
