"""tutorials/11_wavenet.py runs end to end with tiny step counts (a few CPU-seconds)."""

import math

import pytest

from pyro_lgm.data import read_wav
from tests.test_cli import _run_tutorial


def test_wavenet_tutorial_runs(capsys, tmp_path):
    wav = tmp_path / "tone.wav"
    out = _run_tutorial(
        "11_wavenet.py",
        steps=20,
        teacher_steps=5,
        distill_steps=5,
        svi_steps=2,
        length=64,
        wav=str(wav),
        wav_seconds=0.05,
    )
    text = capsys.readouterr().out
    # part 1: exact on the grid; mu-law loses to linear codes on a loud tone, wins on a quiet one
    assert out["mu_law_exact"]
    loud, quiet = out["snr"][0.9], out["snr"][0.01]
    assert loud[0] < loud[1] and quiet[0] > quiet[1] + 20
    # part 2: the three receptive fields follow the formula (the assertions ran inside)
    assert out["fields"] == {(2, 3, 1): 9, (2, 2, 2): 8, (3, 3, 1): 17}
    assert "passed for all three" in text and "R = 1025" in text
    # part 3: below the uniform 8 bits after 20 steps; cached and naive draw the same levels
    assert 0 < out["nll"] < math.log(256) and 0 < out["iid"] < math.log(256)
    assert out["cached_equals_naive"] and " 0 of 256 levels differ" in text
    audio, rate = read_wav(wav)
    assert rate == 4000 and audio.shape == (200,)
    # part 4: a few distillation steps lower the fixed-draw KL estimate from the identity
    # student; the Pyro form is the same number for the same draws
    assert math.isfinite(out["kl_before"]) and out["kl_after"] < out["kl_before"]
    assert out["svi_elbo"] == pytest.approx(out["svi_direct"], rel=1e-5, abs=1e-5)
    assert math.isfinite(out["teacher_of_student"]) and math.isfinite(out["teacher_of_own"])
