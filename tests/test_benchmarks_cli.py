"""The benchmark scripts' device options and ``benchmarks/gpu_check.sh`` (no GPU needed).

The scripts are not part of the library, but their ``--device cpu`` paths, their error for a
CUDA device that is not there, and the GPU check's pipeline (``--smoke``: the same stages on
the CPU with tiny sizes) are tested here so that a GPU run does not fail on a typo. Every
script is run in-process with tiny sizes on a synthetic binarized-MNIST file; the full
``gpu_check.sh --smoke`` run is marked slow (it starts five Python processes).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str):
    """Import ``benchmarks/<name>.py`` as a module (its sibling imports resolve)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_global_state():
    """The scripts set process-wide state meant for a whole run (``pyro.enable_validation``,
    torch threads, seeds): put it back so that later tests in this worker see the defaults."""
    import pyro.distributions.util as dist_util
    import pyro.infer.util as infer_util
    import pyro.poutine.util as poutine_util

    flags = [m.is_validation_enabled() for m in (dist_util, infer_util, poutine_util)]
    torch_validate = torch.distributions.Distribution._validate_args
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    rng = torch.random.get_rng_state()
    yield
    for m, flag in zip((dist_util, infer_util, poutine_util), flags):
        m.enable_validation(flag)
    torch.distributions.Distribution.set_default_validate_args(torch_validate)
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.random.set_rng_state(rng)


@pytest.fixture
def fake_mnist(tmp_path):
    """A data home with a tiny random ``binarized_mnist.npz`` (60 / 20 / 20 images)."""
    rng = np.random.default_rng(0)
    home = tmp_path / "data"
    (home / "binarized_mnist").mkdir(parents=True)
    arrays = {
        split: (rng.random((n, 784)) < 0.13).astype(np.uint8)
        for split, n in (("train", 60), ("valid", 20), ("test", 20))
    }
    np.savez(home / "binarized_mnist" / "binarized_mnist.npz", **arrays)
    return home


SCRIPTS = [
    "binarized_mnist",
    "vector_flows",
    "planar_radial",
    "vector_flows_fit",
    "flow_layers_speed",
    "vae_flows",
    "energies",
    "hvae",
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "device_arg, message",
    [
        # no CUDA here: "not available"; with a GPU, index 99 is not visible
        ("cuda:99", r"CUDA is not available|only \d+ CUDA device"),
        ("tpu", "expected 'cpu', 'cuda' or 'cuda:N'"),
        ("cpu:1", "expected 'cpu' \\(no index\\)"),
    ],
)
def test_bad_device_exits_2_naming_the_option(script, device_arg, message, capsys):
    main = _load(script).main
    with pytest.raises(SystemExit) as exc:
        main(["--device", device_arg])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device" in err
    assert re.search(message, err), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
@pytest.mark.parametrize("script", SCRIPTS)
def test_cuda_without_a_gpu_says_so(script, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(script).main(["--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


@pytest.mark.parametrize(
    "script",
    [
        "binarized_mnist",
        "vector_flows",
        "vector_flows_fit",
        "flow_layers_speed",
        "vae_flows",
        "energies",
        "hvae",
    ],
)
def test_bad_dtype_exits_2(script, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(script).main(["--dtype", "float16"])
    assert exc.value.code == 2
    assert "argument --dtype: expected one of float32, float64" in capsys.readouterr().err


def test_flow_layers_speed_runs_every_flow_type_tiny(capsys):
    """Ours against Pyro's, every flow type, at tiny sizes (the timings mean nothing here)."""
    argv = ["--batch=3", "--latent=2", "--context=4", "--K=2", "--repeats=1", "--inner=1"]
    rows = _load("flow_layers_speed").main([*argv, "--warmup=0", "--dtype=float64"])
    assert [r["flow"] for r in rows] == _load("flow_layers_speed").FLOWS
    for r in rows:
        assert r["ours_ms"] > 0 and r["pyro_ms"] > 0
        # the same sizes on both sides: [10 D, 10 D] defaults, the same linear read-out
        assert r["ours_params"] == r["pyro_params"], r
    assert "| planar linear |" in capsys.readouterr().out


def test_cpu_clock_is_refused_on_cuda(capsys):
    """A CPU-time budget does not count GPU work: ``--clock cpu`` with CUDA is a usage error."""
    import argparse

    bench_device = _load("bench_device")
    parser = argparse.ArgumentParser(prog="x")
    cuda = torch.device("cuda", 0)  # only compared, never used
    assert bench_device.check_clock(parser, None, cuda) == "wall"
    assert bench_device.check_clock(parser, "wall", cuda) == "wall"
    assert bench_device.check_clock(parser, None, torch.device("cpu")) is None
    assert bench_device.check_clock(parser, "cpu", torch.device("cpu")) == "cpu"
    with pytest.raises(SystemExit):
        bench_device.check_clock(parser, "cpu", cuda)
    assert "use --clock wall" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["made", "eonade", "nade"])
def test_binarized_mnist_cpu_float64_writes_device_dtype_and_curve(model, fake_mnist, tmp_path):
    out, curve = tmp_path / "r.json", tmp_path / "c.jsonl"
    argv = [
        f"--model={model}",
        f"--data-dir={fake_mnist}",
        "--hidden=8",
        "--layers=2",
        "--batch-size=20",
        "--epochs=2",
        "--time-budget=10",
        "--device=cpu",
        "--dtype=float64",
        "--num-masks=2",
        "--num-orderings=2",
        "--exact-batch-size=7",
        "--no-progress",
        f"--out={out}",
        f"--curve={curve}",
    ]
    result = _load("binarized_mnist").main(argv)
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["device_name"].startswith("cpu (")
    assert saved["dtype"] == "float64" and saved["clock"] == "wall"
    if model == "made":
        assert saved["blocked"] == "auto"
    assert saved["steps"] == 6 and saved["n_test"] == 20  # 2 epochs of 3 batches
    assert math.isfinite(saved["test_nll"]) and saved["test_nll"] == result["test_nll"]
    rows = [json.loads(line) for line in curve.read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]  # one line per validation (every epoch)
    assert [r["valid_nll"] for r in rows] == [h["valid_nll"] for h in saved["history"]]


def test_binarized_mnist_float64_really_trains_in_float64(fake_mnist, monkeypatch):
    """The model and the batches it sees have the requested dtype."""
    bm = _load("binarized_mnist")
    seen = {}
    build = bm.build_model

    def spy(args):
        model = build(args)
        orig = model.forward

        def forward(*a, **k):
            seen["param"] = next(model.parameters()).dtype
            return orig(*a, **k)

        model.forward = forward
        return model

    monkeypatch.setattr(bm, "build_model", spy)
    argv = ["--model=made", f"--data-dir={fake_mnist}", "--hidden=8", "--epochs=1"]
    bm.main([*argv, "--num-masks=1", "--batch-size=60", "--dtype=float64", "--no-progress"])
    assert seen["param"] == torch.float64


def test_made_blocked_products_off_on_cuda_by_default():
    """``--blocked auto``: the library's choice on the CPU, dense masked products on CUDA
    (the block plan is rebuilt on the host at every mask change)."""
    import argparse

    made_fast = _load("binarized_mnist").made_fast
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    ns = lambda blocked, device: argparse.Namespace(blocked=blocked, device=device)
    assert made_fast(ns("auto", cpu)) is None
    assert made_fast(ns("auto", cuda)) is False
    assert made_fast(ns("on", cuda)) is True and made_fast(ns("off", cpu)) is False


def test_throughput_prints_nade_over_sigmoid_floor(tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["--throughput", "--hidden=8", "--batch-size=4", "--repeats=1", f"--out={out}"]
    result = _load("binarized_mnist").main(argv)
    text = capsys.readouterr().out
    rates = result["throughput"]
    floor = next(v for k, v in rates.items() if k.startswith("floor"))
    nade = rates["NADE(784, hidden=8)"]
    ratio = floor / nade  # NADE time / floor time
    assert result["ratios"]["nade_over_floor"] == pytest.approx(ratio)
    verdict = "met" if ratio <= 2 else "missed"
    assert f"NADE time / sigmoid floor time: {ratio:.2f} (target <= 2: {verdict})" in text
    assert json.loads(out.read_text())["floor_target_met"] == (verdict == "met")
    assert "# device cpu (" in text and "dtype float32" in text


def test_vector_flows_cpu_float64_table(tmp_path, capsys):
    md = tmp_path / "maf.md"
    argv = ["--dims=4", "--repeats=1", "--warmup=0", "--sample-repeats=1", "--threads=1"]
    rows = _load("vector_flows").main([*argv, "--device=cpu", "--dtype=float64", f"--out={md}"])
    assert [r[0] for r in rows] == [4]
    dens = rows[0][2]
    assert {"ours", "pyro", "dense"} <= set(dens) and all(v > 0 for v in dens.values())
    text = md.read_text()
    assert "device: cpu (" in text and "dtype float64" in text
    assert "\n| 4 | " in text


def test_planar_radial_cpu(capsys):
    argv = ["--dims", "2", "--draws", "1", "--repeats", "1", "--warmup", "0", "--batch", "16"]
    rows = _load("planar_radial").main([*argv, "--device", "cpu"])
    assert len(rows) == 4  # planar, radial x interior, near the boundary
    assert all(r["err64"] < 1e-12 for *_, r in rows)
    assert "device cpu (" in capsys.readouterr().out


def test_energies_cpu_float64_table_and_curves(tmp_path, capsys):
    import json

    out = tmp_path / "curves.json"
    argv = ["--quick", "--energies", "U1", "--K", "2", "--dtype", "float64", "--out", str(out)]
    assert _load("energies").main(argv) == 0
    text = capsys.readouterr().out
    assert "device cpu (" in text and "dtype float64" in text
    assert "| U1 | planar |" in text and "| U1 | radial |" in text
    fits = json.loads(out.read_text())["fits"]
    assert [(f["flow"], f["K"]) for f in fits] == [("planar", 2), ("radial", 2)]
    assert all(len(f["curve"]["step"]) >= 2 and f["status"] == "ok" for f in fits)


def test_vector_flows_fit_cpu_float64(capsys):
    argv = [
        "--sections=toy",
        "--targets=moons",
        "--flows=planar",
        "--budget=0.05",
        "--chunk=2",
        "--eval-size=200",
        "--device=cpu",
        "--dtype=float64",
        "--clock=wall",
    ]
    assert _load("vector_flows_fit").main(argv) == 0
    text = capsys.readouterr().out
    assert "device cpu (" in text and "dtype float64" in text
    assert "| moons | planar |" in text


# ----------------------------------------------------------------------------- the gpu marker

_COLLECT = r"""
import json, sys
import torch
torch.cuda.is_available = lambda: True  # pretend: collection only, nothing runs
import pytest

class Grab:
    items = []
    def pytest_collection_modifyitems(self, items):
        for it in items:
            params = getattr(getattr(it, "callspec", None), "params", {})
            dev = params.get("device")
            Grab.items.append([it.nodeid, it.get_closest_marker("gpu") is not None,
                               "device" in getattr(it, "fixturenames", ()),
                               isinstance(dev, torch.device) and dev.type == "cuda"])

code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
                   plugins=[Grab()])
print("ITEMS=" + json.dumps(Grab.items))
sys.exit(code)
"""


def test_gpu_marker_selects_exactly_the_cuda_half():
    """``pytest -m gpu`` (the GPU check's first stage) runs every cuda-parametrized test and
    nothing else, and each property-suite test takes the ``device`` fixture (so it has a
    cuda half). CUDA is faked for collection only, in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _COLLECT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("ITEMS="))
    items = json.loads(line[len("ITEMS=") :])
    gpu = {nodeid for nodeid, marked, _, _ in items if marked}
    cuda_runs = {nodeid for nodeid, _, uses, cuda in items if uses and cuda}
    assert gpu == cuda_runs and len(gpu) > 0
    for path in ("tests/test_transform_properties.py", "tests/test_distribution_properties.py"):
        tests = [(nodeid, uses) for nodeid, _, uses, _ in items if nodeid.startswith(path)]
        assert tests and all(uses for _, uses in tests), path
        functions = {nodeid.split("[")[0] for nodeid, _ in tests}
        with_cuda = {nodeid.split("[")[0] for nodeid in gpu if nodeid.startswith(path)}
        assert functions == with_cuda, path


# ----------------------------------------------------------------------------- gpu_check.sh


def _gpu_check(args, tmp_path, data, extra_env=None):
    env = dict(os.environ, PYRO_LGM_DATA=str(data), PYTHON=sys.executable, **(extra_env or {}))
    env.pop("OUT", None)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_fails_fast_without_a_gpu(tmp_path, fake_mnist):
    out = tmp_path / "out"
    proc = _gpu_check([str(out)], tmp_path, fake_mnist)
    assert proc.returncode == 2
    assert "no usable CUDA GPU" in proc.stderr and "--smoke" in proc.stderr
    assert (out / "gpu_check.md").read_text().startswith("FAILED before any stage")
    assert not (out / "stages.tsv").exists()  # nothing ran


def test_gpu_check_rejects_bad_settings(tmp_path, fake_mnist):
    proc = _gpu_check(
        ["--smoke", str(tmp_path / "o")], tmp_path, fake_mnist, {"GPU_CHECK_STAGES": "maf nope"}
    )
    assert proc.returncode == 2 and "unknown stage 'nope'" in proc.stderr
    proc = _gpu_check(["--bogus"], tmp_path, fake_mnist)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_stage_on_the_cpu(tmp_path, fake_mnist):
    """``gpu_check.sh --smoke OUTDIR``: all four stages on the CPU, results and summary."""
    out = tmp_path / "out"
    proc = _gpu_check(["--smoke", str(out)], tmp_path, fake_mnist)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = [line.split("\t") for line in (out / "stages.tsv").read_text().splitlines()[1:]]
    assert [(s[0], s[1]) for s in stages] == [
        ("pytest", "0"),
        ("maf", "0"),
        ("made", "0"),
        ("eonade", "0"),
    ]
    for model in ("made", "eonade"):
        r = json.loads((out / f"{model}.json").read_text())
        assert r["device"] == "cpu" and r["n_test"] in (10, 20)
        curve = (out / f"{model}_curve.jsonl").read_text().splitlines()
        assert len(curve) == len(r["history"]) >= 1
    summary = (out / "gpu_check.md").read_text()
    assert "mode: CPU smoke" in summary
    assert "| 8 | " in summary  # the MAF table's row for D=8
    assert summary.count("**") >= 4  # both test NLLs in bold in the MNIST table
    # the smoke selection (-k "cpu and float64 and affine_coupling"): the vector and the
    # image couplings, plain and conditional (was "2 passed" before the image couplings)
    assert "4 passed" in summary and "failed" not in summary


def test_vae_flows_quality_and_speed_run_on_tiny_data(fake_mnist, tmp_path, capsys):
    vf = _load("vae_flows")
    tiny = "--latent 4 --hidden 16 --batch 10".split()
    argv = ["--data", str(fake_mnist), "--out", str(tmp_path / "q.json"), *tiny]
    argv += "--minutes 0.002 --curve-every 0.001 --samples 6 --chunk 4 --test-size 8".split()
    argv += "--curve-size 6 --curve-samples 3 --guides diag planar:2 iaf:1".split()
    result = vf.main(argv)
    out = capsys.readouterr().out
    rows = result["quality"]
    assert [r["guide"] for r in rows] == ["diag", "planar:2", "iaf:1"]
    assert all(r["test_images"] == 8 and math.isfinite(r["nll"]) for r in rows)
    assert all(len(r["curve"]) >= 2 and r["curve"][-1]["steps"] > 0 for r in rows)
    # the paired difference is the difference of the two means, over the same images (up to
    # the per-image bounds' rounding to 1e-4, at most 1e-4 in the mean, and float32 means)
    assert rows[1]["vs_diag"] == pytest.approx(rows[1]["nll"] - rows[0]["nll"], abs=5e-4)
    assert "| planar:2 |" in out and json.loads((tmp_path / "q.json").read_text())["quality"]
    vf.main(["--combine", str(tmp_path / "q.json")])  # the same table from the saved run
    assert f"{rows[1]['vs_diag']:+.2f}" in capsys.readouterr().out
    speed = "--speed --speed-steps 2 --speed-repeats 2 --speed-k 2".split()
    result = vf.main(["--data", str(fake_mnist), *speed, *tiny])
    assert [r["guide"] for r in result["speed"]] == ["planar:2", "radial:2", "iaf:2"]
    assert all(r["ratio"] > 0 and len(r["ratios"]) == 2 for r in result["speed"])


def test_hvae_benchmark_runs_every_model_on_tiny_data(fake_mnist, tmp_path, capsys):
    hv = _load("hvae")
    tiny = "--latents 3 2 --hidden 8 --stage 8 --pixelvae-latent 1 --encoder-channels 2".split()
    tiny += "--pixel-channels 2 --pixel-layers 1 --upsample-channels 2 --prior-channels 2".split()
    tiny += "--prior-layers 1 --batch 10 --free-bits 0.5 --pixel-free-bits 1".split()
    argv = ["--data", str(fake_mnist), "--out", str(tmp_path / "q.json"), *tiny]
    argv += "--minutes 0.002 --curve-every 0.001 --samples 4 --chunk 2 --test-size 6".split()
    argv += "--curve-size 4 --curve-samples 2 --active-size 8 --eval-batch 3".split()
    argv += ["--save-dir", str(tmp_path), "--reference", "decoder"]
    result = hv.main(argv)
    out = capsys.readouterr().out
    rows = result["quality"]
    assert [r["model"] for r in rows] == list(hv.MODELS)
    assert all(r["test_images"] == 6 and math.isfinite(r["nll"]) for r in rows)
    assert all(len(r["curve"]) >= 2 for r in rows)
    by = {r["model"]: r for r in rows}
    assert by["hvae"]["latent_units"] == [3, 2] and by["pixelvae2"]["latent_units"] == [49, 16]
    assert "active_units" not in by["decoder"] and len(by["hvae-iaf"]["active_units"]) == 2
    assert by["vae"]["vs_ref"] == pytest.approx(by["vae"]["nll"] - by["decoder"]["nll"], abs=5e-4)
    assert "| pixelvae2 |" in out and (tmp_path / "pixelvae2.pt").exists()
    hv.main(["--combine", str(tmp_path / "q.json"), "--reference", "vae"])
    assert "minus vae's (paired)" in capsys.readouterr().out
    # the saved models rebuild and draw their hierarchy panels without training
    load = ["--data", str(fake_mnist), *tiny, "--models", "hvae", "--load", str(tmp_path)]
    hv.main([*load, "--panels-dir", str(tmp_path)])
    for name in ("z2", "z1", "pixels"):
        assert _png_shape(tmp_path / f"hvae-{name}.png")[2] == "RGB"


# ----------------------------------------------------------------------------- pixelcnn.py

_MIXTURE = importlib.util.find_spec("pyro_lgm.distributions.discretized_logistic") is not None
_needs_mixture = pytest.mark.skipif(
    not _MIXTURE, reason="DiscretizedLogisticMixture (PixelCNN++'s output) not available yet"
)
_PIXELCNN_TINY = "--hidden 2 --layers 1 --resnets 1 --scales 2 --mixtures 2 --dropout 0".split()
_PIXELCNN_BUDGET = "--minutes 0.002 --curve-every 0.001 --eval-batch 10".split()


def _png_shape(path) -> tuple:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.size + (im.mode,)


def test_pixelcnn_mnist_trains_saves_and_draws_on_tiny_data(fake_mnist, tmp_path, capsys):
    """``mnist``: figures finite, curve recorded, checkpoint, PNGs, JSON; then ``sampling
    --load`` of the saved model."""
    pc = _load("pixelcnn")
    files = {k: tmp_path / f"{k}.{ext}" for k, ext in (("m", "pt"), ("s", "png"), ("c", "png"))}
    argv = ["mnist", "--data", str(fake_mnist), *_PIXELCNN_TINY, *_PIXELCNN_BUDGET]
    argv += ["--batch", "10", "--curve-size", "5", "--json", str(tmp_path / "r.json")]
    argv += ["--save-model", str(files["m"]), "--samples-png", str(files["s"])]
    argv += ["--completions-png", str(files["c"])]
    result = pc.main(argv)
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["test"]["images"] == 20 and saved["valid"]["images"] == 20
    for split in ("test", "valid"):
        assert math.isfinite(saved[split]["nll"]) and saved[split]["nll_se"] > 0
    assert saved["test"]["nll"] == result["test"]["nll"] and saved["steps"] >= 1
    assert len(saved["curve"]) >= 2 and saved["curve"][0]["steps"] == 0
    assert all(math.isfinite(r["curve_nll"]) for r in saved["curve"])
    assert saved["device"] == "cpu" and saved["clock"] == "cpu" and saved["params"] > 0
    assert saved["config"]["model"] == "gated" and saved["images_per_s"] > 0
    assert "| PixelCNN (van den Oord et al. 2016a) | 81.30 |" in out
    assert "early on the learning curve" in out
    assert f"{result['test']['nll']:.2f} ± " in out
    assert _png_shape(files["s"])[2] == "RGB"
    w, h, _ = _png_shape(files["c"])
    assert w > h / 8 * 4  # 8 rows of original, observed and 3 completions
    assert not list(tmp_path.glob(".pixelcnn-*"))  # the atomic write left no temp file
    res = pc.main(["sampling", "--load", str(files["m"]), "--num-samples", "2", "--float64"])
    assert res["config"] == saved["config"] and res["pixels_differ"] == 0
    assert res["pixels"] == 2 * 784


@pytest.mark.parametrize(
    "model", ["gated", "pixelcnn", "pixelcnnpp", "rowlstm", "diagbilstm", "pixelsnail"]
)
def test_pixelcnn_sampling_cached_equals_naive_in_float64(model, tmp_path, capsys):
    if model == "pixelcnnpp" and not _MIXTURE:
        pytest.skip("DiscretizedLogisticMixture (PixelCNN++'s output) not available yet")
    argv = ["sampling", "--model", model, "--size", "6", "--hidden", "4", "--layers", "2"]
    argv += ["--resnets", "1", "--scales", "2", "--mixtures", "2", "--num-samples", "3"]
    argv += ["--blocks", "1", "--float64", "--json", str(tmp_path / "s.json")]
    _load("pixelcnn").main(argv)
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["pixels_differ"] == 0 and saved["pixels"] == 3 * 36
    assert saved["ratio"] == pytest.approx(saved["naive_s"] / saved["cached_s"], rel=0.01)
    assert saved["cached_s"] > 0 and saved["log_prob_s"] >= 0
    assert math.isfinite(saved["mean_log_prob"]) and saved["dtype"] == "float64"
    assert f"speed-up naive / cached: {saved['ratio']:.1f}x" in out
    assert "differ: 0 of 108 (float64)" in out


@pytest.mark.parametrize("model", ["rowlstm", "diagbilstm", "pixelsnail"])
def test_pixel_models_train_on_mnist(model, fake_mnist, tmp_path, capsys):
    """The PixelRNNs and PixelSNAIL through ``mnist``: finite figures, the model named."""
    argv = ["mnist", "--data", str(fake_mnist), "--model", model, *_PIXELCNN_TINY]
    argv += [*_PIXELCNN_BUDGET, "--blocks", "1", "--heads", "1", "--batch", "10"]
    argv += ["--curve-size", "5"]
    result = _load("pixelcnn").main(argv)
    out = capsys.readouterr().out
    assert result["config"]["model"] == model and math.isfinite(result["test"]["nll"])
    name = {"rowlstm": "Row LSTM", "diagbilstm": "Diagonal BiLSTM", "pixelsnail": "PixelSNAIL"}
    assert f"| this run: {name[model]} (hidden 2" in out
    assert "| Diagonal BiLSTM (van den Oord et al. 2016a) | 79.20 |" in out


def test_pixel_models_throughput_table(tmp_path, capsys):
    argv = ["throughput", "--models", "gated", "rowlstm", "diagbilstm", "pixelsnail"]
    argv += ["--size", "4", "--batch", "2", "--seconds", "0.01", "--num-samples", "1"]
    argv += ["--naive", "--json", str(tmp_path / "t.json")]
    result = _load("pixelcnn").main(argv)
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["gated", "rowlstm", "diagbilstm", "pixelsnail"]
    assert rows == result["rows"]
    for r in rows:
        assert r["params"] > 0 and r["log_prob_images_per_s"] > 0 and r["log_prob_calls"] >= 1
        assert r["train_images_per_s"] > 0 and r["sample_s_per_image"] > 0
        assert r["naive_sample_s_per_image"] > 0
    assert "| Row LSTM (hidden_channels=24, num_layers=2) |" in out
    assert "over the Gated PixelCNN's, measured in the same run" in out


@pytest.mark.parametrize(
    "model", ["gated", "pixelsnail", pytest.param("pixelcnnpp", marks=_needs_mixture)]
)
def test_pixelcnn_digits_reports_bits_per_dim(model, tmp_path, capsys):
    argv = ["digits", "--model", model, *_PIXELCNN_TINY, *_PIXELCNN_BUDGET, "--batch", "16"]
    argv += ["--curve-size", "10", "--test-size", "20", "--valid-size", "10"]
    argv += ["--samples-png", str(tmp_path / "s.png"), "--json", str(tmp_path / "d.json")]
    result = _load("pixelcnn").main(argv)
    out = capsys.readouterr().out
    test = result["test"]
    assert test["images"] == 20 and result["valid"]["images"] == 10
    assert test["bpd"] == pytest.approx(test["nll"] / (64 * math.log(2)))
    assert math.isfinite(test["bpd"]) and test["bpd_se"] > 0
    assert all(math.isfinite(r["curve_bpd"]) for r in result["curve"])
    assert "17 grey levels" in out and f"**{test['bpd']:.3f} ± " in out
    assert _png_shape(tmp_path / "s.png")[2] == "RGB"
    assert json.loads((tmp_path / "d.json").read_text())["config"]["kwargs"]["bits"] == 8


def test_pixelcnn_keep_best_restores_the_best_validation_point(tmp_path, capsys):
    argv = ["digits", "--model", "gated", *_PIXELCNN_TINY, *_PIXELCNN_BUDGET, "--batch", "16"]
    argv += ["--curve-size", "10", "--test-size", "20", "--valid-size", "10", "--keep-best"]
    bench = _load("pixelcnn")
    result = bench.main(argv)
    out = capsys.readouterr().out
    curve = result["curve"]
    assert all("valid_nll" in r for r in curve)
    best = min(curve, key=lambda r: r["valid_nll"])
    assert result["kept_point"] == best["budget_min"]
    assert "weights kept from the best validation point" in out
    # the kept weights are those of the best point: the final validation NLL equals it
    assert result["valid"]["nll"] == pytest.approx(best["valid_nll"], abs=1e-3)
    with pytest.raises(SystemExit, match="no validation split"):
        bench.main(["cifar", "--data", str(tmp_path), "--keep-best", *_PIXELCNN_TINY])


@pytest.mark.parametrize("model", ["gated", pytest.param("pixelcnnpp", marks=_needs_mixture)])
def test_pixelcnn_cifar_subset_on_a_fake_file(model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "cifar10_subset").mkdir()
    arrays = {
        f"x_{s}": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        for s, n in (("train", 6), ("test", 4))
    }
    arrays.update(y_train=rng.integers(0, 10, 6), y_test=rng.integers(0, 10, 4))
    np.savez(tmp_path / "cifar10_subset" / "cifar10_subset.npz", **arrays)
    argv = ["cifar", "--data", str(tmp_path), "--model", model, *_PIXELCNN_TINY]
    argv += [*_PIXELCNN_BUDGET, "--batch", "3", "--curve-size", "2"]
    if model == "gated":  # PixelCNN++'s 3072 cached steps take seconds: picture one model
        argv += ["--completions-png", str(tmp_path / "c.png")]
    result = _load("pixelcnn").main(argv)
    out = capsys.readouterr().out
    test = result["test"]
    assert test["images"] == 4 and result["valid"] is None
    assert test["bpd"] == pytest.approx(test["nll"] / (3072 * math.log(2)))
    assert math.isfinite(test["bpd"]) and "not comparable" in out and "2.92" in out
    if model == "gated":
        assert _png_shape(tmp_path / "c.png")[2] == "RGB"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mnist", "--hidden", "0"], "--hidden: expected a positive integer"),
        (["sampling", "--minutes", "1"], "unrecognized arguments: --minutes"),
        (["digits", "--model", "nope"], "argument --model: invalid choice"),
        (["sampling", "--bits", "9"], "--bits: expected 1..8"),
        (["cifar", "--curve-every", "0"], "--curve-every: expected a positive number"),
        (["sampling", "--device", "tpu"], "argument --device"),
    ],
)
def test_pixelcnn_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _load("pixelcnn").main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
@pytest.mark.parametrize("command", ["mnist", "sampling", "digits", "cifar"])
def test_pixelcnn_cuda_without_a_gpu_says_so(command, capsys):
    with pytest.raises(SystemExit) as exc:
        _load("pixelcnn").main([command, "--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


# --------------------------------------------------------------------------- image_flows.py


@pytest.fixture
def fake_mnist_idx(tmp_path):
    """A data home with tiny random 8-bit MNIST IDX files (40 train / 10 test images)."""
    from pyro_lgm.data.mnist import write_idx

    rng = np.random.default_rng(0)
    home = tmp_path / "idx"
    (home / "mnist").mkdir(parents=True)
    for split, n in (("train", 40), ("t10k", 10)):
        write_idx(
            home / "mnist" / f"{split}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(
            home / "mnist" / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8)
        )
    return home


_FLOW_TINY = "--hidden 4 --steps 1 --levels 2 --scales 2 --blocks 1 --batch 8".split()
_FLOW_BUDGET = "--minutes 0.002 --curve-every 0.001 --eval-batch 5 --warmup 2".split()


@pytest.mark.parametrize("model", ["glow", "realnvp"])
def test_image_flows_mnist_reports_bits_per_dim_curve_and_samples(
    model, fake_mnist_idx, tmp_path, capsys
):
    argv = ["mnist", "--data", str(fake_mnist_idx), "--model", model, *_FLOW_TINY, *_FLOW_BUDGET]
    argv += ["--json", str(tmp_path / "r.json"), "--samples-png", str(tmp_path / "s.png")]
    result = _load("image_flows").main(argv)
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["test"]["images"] == 10 and math.isfinite(saved["test"]["bpd"])
    assert saved["test"] == result["test"] and saved["steps"] >= 1
    assert len(saved["curve"]) >= 2 and saved["curve"][0]["steps"] == 0
    assert saved["clock"] == "cpu" and saved["device"] == "cpu" and saved["params"] > 0
    assert f"{saved['test']['bpd']:.4f} ± " in out and "as reported | 1.0" in out
    assert (tmp_path / "s.png").stat().st_size > 0
    assert not list(tmp_path.glob(".image_flows-*"))  # the atomic write left no temp file


def test_image_flows_against_normflows_on_digits(tmp_path, capsys):
    pytest.importorskip("normflows")
    argv = ["normflows", "--dataset", "digits", *_FLOW_TINY, *_FLOW_BUDGET, "--test-size", "10"]
    argv += ["--curve-size", "10", "--json", str(tmp_path / "n.json")]
    result = _load("image_flows").main(argv)
    out = capsys.readouterr().out
    runs = result["runs"]
    assert set(runs) == {"ours", "normflows"}
    for r in runs.values():
        assert math.isfinite(r["test"]["bpd"]) and r["images_per_s"] > 0
    ratio = runs["ours"]["images_per_s"] / runs["normflows"]["images_per_s"]
    assert result["throughput_ratio"] == round(ratio, 2)
    assert f"throughput ours / normflows: {ratio:.2f}x" in out


def test_image_flows_needs_data_for_mnist(capsys):
    with pytest.raises(SystemExit, match="--data"):
        _load("image_flows").main(["mnist", "--data", ""])


# ------------------------------------------------------------------------------ flowpp.py
def test_flowpp_toy_prints_the_kl_table(tmp_path, capsys):
    flows = ["flowpp", "nsf", "maf"]
    argv = ["--sections", "toy", "--targets", "checkerboard", "--flows", *flows]
    argv += ["--budget", "0.3", "--chunk", "2", "--eval-size", "500", "--batch-size", "64"]
    argv += ["--json", str(tmp_path / "t.json")]
    assert _load("flowpp").main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "t.json").read_text())["toy"]
    assert [r["flow"] for r in rows] == flows
    for r in rows:
        assert math.isfinite(r["kl"]) and r["steps"] >= 2
        assert f"| checkerboard | {r['flow']} |" in out and f"{r['kl']:.4f}" in out


def test_flowpp_toy_runs_zuko_side_by_side_and_keeps_validation(tmp_path, capsys):
    pytest.importorskip("zuko")
    flag = torch.distributions.Distribution._validate_args
    argv = ["--sections", "toy", "--targets", "moons", "--flows", "zuko-nsf", "--budget", "0.2"]
    argv += ["--chunk", "2", "--eval-size", "200", "--batch-size", "32"]
    assert _load("flowpp").main(argv) == 0
    assert "| moons | zuko-nsf |" in capsys.readouterr().out
    assert torch.distributions.Distribution._validate_args == flag  # zuko's import undone


def test_flowpp_dequant_reports_both_bounds(tmp_path, capsys):
    argv = ["--sections", "dequant", "--data", "digits", "--minutes", "0.01", "--hidden", "4"]
    argv += ["--components", "2", "--deq-hidden", "4", "--net", "glow", "--batch-size", "8"]
    argv += [
        "--curve-every",
        "0.005",
        "--curve-size",
        "8",
        "--test-size",
        "10",
        "--iw-samples",
        "3",
    ]
    argv += ["--json", str(tmp_path / "d.json")]
    assert _load("flowpp").main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "d.json").read_text())["dequant"]
    assert [r["kind"] for r in rows] == ["uniform", "variational"]
    for r in rows:
        assert math.isfinite(r["elbo_bpd"]) and math.isfinite(r["iw_bpd"]) and r["curve"]
        assert f"{r['elbo_bpd']:.4f} ± " in out and "(3) |" in out


def test_flowpp_needs_data_dir_for_mnist():
    with pytest.raises(SystemExit):
        _load("flowpp").main(["--sections", "dequant", "--data", "mnist"])


# ----------------------------------------------------------------------------- wavenet.py


def _tiny_speech_corpus(tmp_path, monkeypatch):
    """A small corpus (2 words, 2 voices, 4 rates) built by a stand-in espeak-ng (tones)."""
    from pyro_lgm.data import build_speech_corpus
    from tests.test_speech_data import FAKE

    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "espeak-ng"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    with monkeypatch.context() as m:
        m.setenv("PATH", str(bindir))
        build_speech_corpus(tmp_path / "speech", words=["one", "go"], voices=["a", "b"])
    return tmp_path / "speech"


def test_wavenet_train_and_generation_on_a_tiny_corpus(tmp_path, monkeypatch, capsys):
    """``train`` on a corpus built by a stand-in espeak-ng (tones), then ``generation``
    of the saved model: figures finite, the model saved, cached == naive on a prefix."""
    _tiny_speech_corpus(tmp_path, monkeypatch)  # the benchmark uses an existing one as is
    wn = _load("wavenet")
    tiny = ["--channels", "4", "--layers", "3", "--segment", "256"]
    argv = ["train", "--corpus", str(tmp_path / "speech"), *tiny, "--minutes", "0.002"]
    argv += ["--curve-every", "0.001", "--curve-size", "4", "--speaker", "--batch", "4"]
    argv += ["--save-model", str(tmp_path / "wn.pt"), "--json", str(tmp_path / "t.json")]
    result = wn.main(argv)
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["test"] == result["test"] and math.isfinite(result["test"]["nll_per_sample"])
    assert result["test"]["bits_per_sample"] == pytest.approx(
        result["test"]["nll_per_sample"] / math.log(2)
    )
    assert result["receptive_field"] == 2 + 7 and result["steps"] >= 1
    assert len(result["curve"]) >= 2 and "speaker-conditioned" in out
    assert 0 < result["iid_baseline_nll"] <= math.log(256) + 1e-9 and "i.i.d. baseline" in out
    # the split by the modal level recombines into the whole figures
    sp, f = result["modal_split"], result["modal_split"]["modal_fraction"]
    assert 0 < f < 1 and "most frequent level" in out
    for key, whole in (
        ("iid", result["iid_baseline_nll"]),
        ("model", result["test"]["nll_per_sample"]),
    ):
        assert f * sp[f"modal_{key}"] + (1 - f) * sp[f"other_{key}"] == pytest.approx(
            whole, rel=1e-9
        )
    argv = ["generation", "--load", str(tmp_path / "wn.pt"), "--seconds", "0.004"]
    gen = wn.main(argv + ["--naive-steps", "2", "--check-length", "20"])
    out = capsys.readouterr().out
    assert gen["length"] == 64 and gen["check_differ"] == 0 and gen["check_length"] == 20
    assert gen["cached_s"] > 0 and gen["naive_s"] > 0 and gen["naive_window_s"] > 0
    assert f"**{gen['speedup_naive']:.1f}x**" in out
    # Parallel WaveNet: a tiny mixture teacher, then distillation into a student
    argv = ["train", "--corpus", str(tmp_path / "speech"), *tiny, "--minutes", "0.001"]
    argv += ["--curve-every", "0.001", "--curve-size", "2", "--batch", "2"]
    argv += ["--output", "logistic_mixture", "--save-model", str(tmp_path / "t.pt")]
    wn.main(argv + ["--cosine", "--clip", "1"])
    argv = ["distill", "--teacher", str(tmp_path / "t.pt"), "--length", "32", "--flows", "2"]
    argv += ["--channels", "4", "--layers", "2", "--minutes", "0.002", "--curve-every", "0.001"]
    dist = wn.main(argv + ["--eval-samples", "3", "--num-samples", "2"])
    out = capsys.readouterr().out
    assert dist["length"] == 32 and dist["steps"] >= 1 and len(dist["curve"]) >= 1
    for key in ("teacher_ll_of_student", "teacher_ll_of_teacher", "kl_per_sample"):
        assert all(math.isfinite(v) for v in dist[key])
    assert dist["student_samples_per_s"] > 0 and dist["speedup"] > 0
    assert "KL(student || teacher) estimate" in out
    q = dist["quiet_fraction"]
    assert 0 <= q["student"] <= 1 and 0 <= q["teacher"] <= 1
    assert f"{100 * q['student']:.1f}% of the student's" in out
    with pytest.raises(SystemExit):  # a categorical model is no distillation teacher
        wn.main(["distill", "--teacher", str(tmp_path / "wn.pt")])


def _wavenet_gpu(args, corpus):
    env = dict(os.environ, PYTHON=sys.executable, CORPUS=str(corpus), PYTHONPATH=str(ROOT))
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(BENCH / "wavenet_gpu.sh"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_wavenet_gpu_refuses_a_missing_corpus_and_bad_options(tmp_path):
    proc = _wavenet_gpu(["--smoke", str(tmp_path / "o")], tmp_path / "nothing")
    assert proc.returncode == 2 and "no corpus at" in proc.stderr
    proc = _wavenet_gpu(["--bogus"], tmp_path)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


@pytest.mark.slow
def test_wavenet_gpu_smoke_runs_the_four_steps_on_the_cpu(tmp_path, monkeypatch):
    """``wavenet_gpu.sh --smoke OUTDIR``: train, generation, train (mixture), distill."""
    corpus = _tiny_speech_corpus(tmp_path, monkeypatch)
    out = tmp_path / "out"
    proc = _wavenet_gpu(["--smoke", str(out)], corpus)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("wn-cat", "wn-gen", "wn-mix", "wn-distill"):
        r = json.loads((out / f"{name}.json").read_text())
        assert r["device"] == "cpu", name
        assert (out / f"{name}.md").read_text().startswith("# python"), name
    assert json.loads((out / "wn-gen.json").read_text())["check_differ"] == 0
    assert math.isfinite(json.loads((out / "wn-mix.json").read_text())["test"]["nll_per_sample"])
    assert not list(out.glob("*.pt"))  # the models are not sent back
