"""Tests of the ``pyro-lgm`` command line (pyro_lgm.cli)."""

import math
import os
import re
import runpy
import subprocess
import sys
import warnings

import pytest
import torch
from pyro.distributions.transforms import AffineTransform

from pyro_lgm import __version__, cli
from pyro_lgm.cli import FLOWS, main
from pyro_lgm.models import Flow

DEMO_OPTIONS = [
    "--target",
    "--flow",
    "--layers",
    "--steps",
    "--batch-size",
    "--lr",
    "--seed",
    "--train-size",
    "--test-size",
    "--out",
    "--device",
    "--threads",
    "--quiet",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_help_lists_every_option(capsys):
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in DEMO_OPTIONS:
        assert opt in out, opt
    for name in ("moons", "8gaussians", "checkerboard", "planar", "radial", "maf"):
        assert name in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "info" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fly"],
        ["demo", "--target", "spirals"],
        ["demo", "--flow", "glowworm"],
        ["demo", "--layers", "0"],
        ["demo", "--steps", "ten"],
        ["demo", "--batch-size", "-5"],
        ["demo", "--lr", "-0.1"],
        ["demo", "--lr", "nan"],
        ["demo", "--seed", "-1"],
        ["demo", "--out", "picture.jpg"],
        ["demo", "--out", "/no/such/dir/demo.png"],
        ["demo", "--device", "tpu"],
        ["demo", "--device", "cuda:99"],
        ["demo", "--device", "cpu:1"],
        ["demo", "--test-size", "1"],
        ["demo", "--bogus"],
    ],
)
def test_bad_values_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pyro-lgm") and "error:" in lines[0]
    assert "Traceback" not in captured.err and "usage" not in captured.err
    assert captured.out == ""


def _numbers(out):
    nll = float(re.search(r"test NLL: (-?[\d.]+) nats", out).group(1))
    kl = float(re.search(r"KL\(target \|\| model\): (-?[\d.]+) nats", out).group(1))
    entropy = float(re.search(r"target entropy: (-?[\d.]+) nats", out).group(1))
    return nll, kl, entropy


@pytest.mark.parametrize(
    "target, flow", [("moons", "maf"), ("checkerboard", "planar"), ("8gaussians", "realnvp")]
)
def test_tiny_demo_writes_a_png_and_prints_nll_and_kl(tmp_path, capsys, target, flow):
    out_png = tmp_path / "demo.png"
    argv = ["demo", "--target", target, "--flow", flow, "--layers", "2", "--steps", "5"]
    argv += ["--train-size", "512", "--test-size", "500", "--batch-size", "64"]
    assert main(argv + ["--out", str(out_png)]) == 0
    out = capsys.readouterr().out
    nll, kl, entropy = _numbers(out)
    # NLL = H(p) + KL(p || q) on the same target samples (up to the printed rounding)
    assert abs(nll - (entropy + kl)) < 2e-4
    assert kl > 0  # holds with overwhelming probability for a 5-step fit
    assert f"wrote {out_png}" in out
    with open(out_png, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert os.path.getsize(out_png) > 10_000  # three panels, not an empty canvas


def test_quiet_prints_only_the_results(tmp_path, capsys):
    out_png = tmp_path / "q.png"
    argv = ["demo", "--steps", "2", "--layers", "1", "--train-size", "256", "--test-size", "256"]
    assert main(argv + ["--quiet", "--out", str(out_png)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("test NLL:") and lines[1].startswith("KL(target || model):")
    assert captured.err == "" and out_png.exists()


class _OverflowFlow(torch.nn.Module):
    """x = exp(100 a) z with a = 1: the scale overflows float32, the NLL is inf."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, context=None):
        return Flow((2,), [AffineTransform(0.0, torch.exp(100 * self.a), event_dim=1)])()


def test_diverging_training_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(FLOWS, "overflow", lambda d, k: _OverflowFlow())
    argv = ["demo", "--flow", "overflow", "--steps", "3", "--train-size", "64", "--quiet"]
    assert main(argv + ["--test-size", "64", "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "diverged at step 1" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_register_flow_adds_a_choice(monkeypatch, capsys):
    monkeypatch.setattr(cli, "FLOWS", dict(FLOWS))
    cli.register_flow("mine", lambda d, k: _OverflowFlow())
    assert main(["demo", "--help"]) == 0
    assert "mine" in capsys.readouterr().out
    with pytest.raises(ValueError, match="builder"):
        cli.register_flow("x", 3)


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"pyro-lgm {__version__}" in out and "devices: cpu" in out


def test_python_dash_m_help():
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "pyro_lgm", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and proc.stdout.startswith("usage: pyro-lgm")


def _run_tutorial(name: str, **kwargs):
    """``main(**kwargs)`` of ``tutorials/<name>``, restoring the thread count it changes."""
    path = os.path.join(os.path.dirname(__file__), "..", "tutorials", name)
    tutorial = runpy.run_path(path, run_name="tutorial")
    threads = torch.get_num_threads()
    try:
        return tutorial["main"](**kwargs)
    finally:
        torch.set_num_threads(threads)


def test_quickstart_tutorial_runs(capsys):
    kl = _run_tutorial("01_quickstart.py", steps=20)
    out = capsys.readouterr().out
    assert "trained 20 steps" in out and "via a Pyro trace" in out
    assert math.isfinite(kl)
    # the Pyro trace and the direct log_prob agree
    m = re.search(r"Pyro trace: (-?[\d.]+) \(direct: (-?[\d.]+)\)", out)
    assert m.group(1) == m.group(2)


def test_autoregressive_tutorial_runs(capsys):
    nll = _run_tutorial("03_autoregressive_digits.py", steps=5)
    out = capsys.readouterr().out
    assert set(nll) == {"nade", "eonade", "made"}
    # 64 binary pixels: a finite NLL below 64 log 2 once trained a little (uniform is 44.4)
    assert all(0 < v < 64 * math.log(2) for v in nll.values()), nll
    m = re.search(r"Pyro trace: (-?[\d.]+) \(direct: (-?[\d.]+)\)", out)
    assert m.group(1) == m.group(2)
    m = re.search(r"sum of their log-probs (-?[\d.]+) = log_prob (-?[\d.]+)", out)
    assert m.group(1) == m.group(2)
    assert "sums to one over all 1024" in out


def _tiny(*extra):
    return ["demo", "--steps", "5", "--train-size", "512", "--test-size", "64", *extra]


def _unwritable_png(tmp_path):
    """A .png path in an existing directory where this process cannot create a file."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for path in (ro / "x.png", "/proc/pyro-lgm-test.png"):  # root may write in `ro`
        try:
            with open(path, "ab"):
                pass
        except OSError:
            return str(path)
        os.remove(path)
    pytest.skip("no unwritable location found for this user")


@pytest.mark.parametrize("where", ["directory", "unwritable"])
def test_out_that_cannot_be_written_exits_2_before_training(tmp_path, capsys, where):
    if where == "directory":
        out = tmp_path / "a-directory.png"
        out.mkdir()
    else:
        out = _unwritable_png(tmp_path)
    assert main(_tiny("--out", str(out))) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "error: argument --out:" in lines[0], captured.err
    assert str(out) in lines[0]
    assert captured.out == ""  # the header is printed when training starts: it did not


def test_out_check_leaves_no_file_and_keeps_an_existing_one(tmp_path, capsys):
    out = tmp_path / "d.png"
    assert cli._png_path(str(out)) == str(out)
    assert not out.exists()
    out.write_bytes(b"old")
    assert cli._png_path(str(out)) == str(out)
    assert out.read_bytes() == b"old"


def test_huge_learning_rate_is_reported_as_a_divergence(tmp_path, capsys):
    # maf: a layer meets the non-finite output of the one before (NonFiniteValueError)
    out = tmp_path / "x.png"
    assert main(_tiny("--lr", "1e10", "--quiet", "--out", str(out))) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "training diverged at step" in err[0], err
    assert "smaller --lr" in err[0] and not out.exists()


@pytest.mark.parametrize(
    "flow, lr, why",
    [
        # parameters ~1e10: log q(x) rounds to log N(0; 0, I) for every x, "better" than the
        # start, but the density integrates to ~2.8 over the plot window
        ("radial", "1e10", "not a normalized density"),
        ("planar", "100", "worse than"),  # the eval NLL ends far above the initial model's
    ],
)
def test_a_degenerate_run_exits_1(tmp_path, capsys, flow, lr, why):
    out = tmp_path / "x.png"
    argv = ["demo", "--flow", flow, "--lr", lr, "--steps", "20", "--train-size", "1024"]
    assert main(argv + ["--test-size", "256", "--quiet", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and why in err[0] and "smaller --lr" in err[0], err
    assert captured.out == "" and not out.exists()


def test_cpu_device_index_zero_is_the_cpu():
    assert cli.parse_device("cpu:0") == torch.device("cpu", 0)
    assert cli.parse_device("cpu") == torch.device("cpu")


def test_two_test_samples_give_finite_standard_errors_without_warnings(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(_tiny("--test-size", "2", "--quiet", "--out", str(tmp_path / "x.png"))) == 0
    out = capsys.readouterr().out
    se = [float(v) for v in re.findall(r"\+- (\S+) s\.e\.", out)]
    assert len(se) == 2 and all(math.isfinite(v) and v >= 0 for v in se), out


def test_default_png_is_the_readme_name_and_git_ignored():
    assert cli._parser().parse_args(["demo"]).out == "demo.png"
    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, ".gitignore")) as f:
        assert "demo.png" in f.read().split()
    with open(os.path.join(root, "README.md")) as f:
        assert "`demo.png`" in f.read()


def test_vae_iaf_tutorial_runs(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {
        s: (rng.random((n, 784)) < 0.13).astype(np.uint8)
        for s, n in (("train", 300), ("valid", 10), ("test", 40))
    }
    np.savez(tmp_path / "binarized_mnist.npz", **arrays)
    nll = _run_tutorial("05_vae_iaf.py", data=tmp_path, max_steps=3, test_images=20, samples=5)
    out = capsys.readouterr().out
    # random 13%-dense pixels: about 784 * H(0.13) = 305 nats at best; untrained, more
    assert math.isfinite(nll) and nll > 250, nll
    assert "test -log p(x) <=" in out and "torch.Size([4, 784])" in out


def test_pixelcnn_tutorial_runs(capsys, tmp_path):
    nll = _run_tutorial("06_pixelcnn_digits.py", steps=3, png=str(tmp_path / "grid.png"))
    out = capsys.readouterr().out
    assert 0 < nll < 200 and (tmp_path / "grid.png").exists()
    assert "completions keep the observed rows: True" in out


def test_flowpp_tutorial_runs(capsys):
    kl, elbo, iw = _run_tutorial("08_flowpp.py", steps_2d=3, steps_digits=2)
    out = capsys.readouterr().out
    assert "checkerboard: 3 steps" in out and "importance-weighted (S=16)" in out
    assert math.isfinite(kl) and 0 < iw < 16 and 0 < elbo < 16


def test_hierarchical_vae_tutorial_runs(capsys, tmp_path):
    out = _run_tutorial("09_hierarchical_vae.py", steps=3, png=str(tmp_path / "p.png"), samples=4)
    text = capsys.readouterr().out
    assert set(out) == {"bottom-up", "top-down", "pixelvae_fb0.0", "pixelvae_fb1.5"}
    # untrained on 64 binary pixels: between the best possible and 64 log 2 + a margin
    assert all(0 < r["nll"] < 80 and len(r["active"]) == 2 for r in out.values())
    for name in ("z2", "z1", "pixels"):
        assert (tmp_path / f"p-{name}.png").exists()
    assert "top-down + IAF: test -ELBO" in text


def test_pixelrnn_pixelsnail_tutorial_runs(capsys, tmp_path):
    png = tmp_path / "s.png"
    nll = _run_tutorial("10_pixelrnn_pixelsnail.py", steps=2, png=str(png))
    out = capsys.readouterr().out
    assert set(nll) == {"Row LSTM", "Diagonal BiLSTM", "PixelSNAIL"}
    assert all(0 < v < 200 for v in nll.values()) and png.exists()
    # the Row LSTM's triangle misses the upper right of the row above; the others do not
    assert "#######.....   ############      ############" in out
    assert "assert_autoregressive(no_blind_spot=True) passed" in out


def test_glow_tutorial_runs(capsys, tmp_path):
    bpd = _run_tutorial("07_glow_digits.py", steps=3, png=str(tmp_path / "glow.png"))
    out = capsys.readouterr().out
    assert 0 < bpd < 12 and (tmp_path / "glow.png").exists()
    m = re.search(r"Pyro trace log-prob (-?[\d.]+) \(direct: (-?[\d.]+)\)", out)
    assert m.group(1) == m.group(2)
    assert "the path starts and ends at the digits: True" in out
