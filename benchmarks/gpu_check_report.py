"""Summary of a ``benchmarks/gpu_check.sh`` run: writes ``OUTDIR/gpu_check.md``.

Reads only what the stages wrote into ``OUTDIR`` (``env.txt``, ``stages.tsv``, the pytest
log and JUnit XML, ``maf_speed.md``, the MNIST runs' JSON and learning-curve JSONL) and
copies their figures into one markdown file; nothing is measured or typed in here. A stage
that failed or was cut by its time cap is reported as such, with what it left (for an MNIST
run, the learning curve so far).

    python benchmarks/gpu_check_report.py OUTDIR
"""

from __future__ import annotations

import json
import math
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PUBLISHED = {"made": 86.64, "eonade": 85.10}
# what the published figures used: MADE 2 x 8000 with 32 masks, EoNADE 2 x 500 with 128
# orderings (our run's own sizes are read from its JSON)
PAPER_SETUP = {"made": "2 x 8000, 32 masks", "eonade": "DeepNADE 2 x 500, 128 orderings"}
MAX_CURVE_ROWS = 40
CUDA_ID = re.compile(r"\[([^]]*-)?cuda(-[^]]*)?\]")  # a cuda run's test id


def read_stages(out: Path) -> dict[str, dict]:
    path = out / "stages.tsv"
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()[1:]
    stages = {}
    for line in lines:
        name, status, seconds, note = (line.split("\t") + ["", "", ""])[:4]
        stages[name] = {"status": status, "seconds": seconds, "note": note}
    return stages


def pytest_section(out: Path, stages: dict) -> list[str]:
    lines = ["## (a) Property suite on the device (`pytest -m gpu`)", ""]
    if "pytest" not in stages:
        return [*lines, "not run (not in GPU_CHECK_STAGES)", ""]
    collected = out / "pytest_gpu_collected.txt"
    if collected.is_file():
        ids = [s for s in collected.read_text().splitlines() if s.strip()]
        cuda = sum(bool(CUDA_ID.search(s)) for s in ids)
        files = sorted({s.split("::")[0] for s in ids})
        lines.append(
            f"* selection: {len(ids)} tests, {cuda} of them cuda runs, from {len(files)} "
            f"files ({', '.join(f'`{f}`' for f in files)})"
        )
    xml = out / "pytest.xml"
    if xml.is_file():
        try:
            root = ET.parse(xml).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            a = suite.attrib
            lines.append(
                f"* result: {a.get('tests')} tests, {a.get('failures')} failures, "
                f"{a.get('errors')} errors, {a.get('skipped')} skipped, {a.get('time')} s"
            )
            bad = [
                f"{case.get('classname')}::{case.get('name')}"
                for case in suite.iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None
            ]
            for name in bad[:20]:
                lines.append(f"  * failed: `{name}`")
            if len(bad) > 20:
                lines.append(f"  * ... and {len(bad) - 20} more (pytest.log)")
        except (ET.ParseError, AttributeError) as e:
            lines.append(f"* pytest.xml unreadable: {e}")
    log = out / "pytest.log"
    if log.is_file():
        tail = [s for s in log.read_text().splitlines() if s.strip()]
        if tail:
            lines.append(f"* pytest's last line: `{tail[-1].strip('= ')}`")
    lines.append(f"* stage: {stages['pytest']['note']} ({stages['pytest']['seconds']} s)")
    return [*lines, ""]


def maf_section(out: Path, stages: dict) -> list[str]:
    lines = ["## (b) MAF speed table (`benchmarks/vector_flows.py`)", ""]
    if "maf" not in stages:
        return [*lines, "not run (not in GPU_CHECK_STAGES)", ""]
    table = out / "maf_speed.md"
    if table.is_file():
        body = [s for s in table.read_text().splitlines() if not s.startswith("# ")]
        while body and not body[0].strip():
            body.pop(0)
        lines += body
    else:
        lines.append("no table written (see maf.log)")
    lines.append("")
    lines.append(f"stage: {stages['maf']['note']} ({stages['maf']['seconds']} s)")
    return [*lines, ""]


def read_curve(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


def thin(rows: list[dict], n: int) -> list[dict]:
    """At most ``n`` rows, evenly spaced, always keeping the first, the best and the last."""
    if len(rows) <= n:
        return rows
    best = min(range(len(rows)), key=lambda i: rows[i]["valid_nll"])
    keep = {round(i * (len(rows) - 1) / (n - 2)) for i in range(n - 1)} | {best}
    return [rows[i] for i in sorted(keep)]


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def mnist_section(out: Path, stages: dict) -> list[str]:
    lines = ["## (c) Binarized MNIST (`benchmarks/binarized_mnist.py`)", ""]
    summary = [
        "| model | params | device, dtype | training | best valid NLL | **test NLL (nats)** "
        "| test images | published |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    details = []
    for model in ("made", "eonade"):
        if model not in stages:
            continue
        st = stages[model]
        res_path = out / f"{model}.json"
        curve = read_curve(out / f"{model}_curve.jsonl")
        r = json.loads(res_path.read_text()) if res_path.is_file() else None
        if r is not None:
            size = f"{r['layers']} x {r['hidden']}"
            size += f", {r['num_masks']} masks" if model == "made" else ""
            size += f", {r['num_orderings']} test orderings" if model == "eonade" else ""
        else:
            size = "sizes: see the command in the log"
        details += [
            f"### {model}: {size} (published {PUBLISHED[model]} nats with {PAPER_SETUP[model]})",
            "",
        ]
        if r is not None:
            extra = ""
            if model == "made":
                extra = f"; single mask {fmt(r.get('test_nll_single_mask'))}"
            elif "test_nll_mean_single_ordering" in r:
                extra = f"; mean single ordering {fmt(r['test_nll_mean_single_ordering'])}"
            summary.append(
                f"| {model} ({size}) | {r['params']:,} | {r['device_name']}, {r['dtype']} | "
                f"{r['steps']} steps = {r['epochs_done']:.2f} epochs in "
                f"{r['train_time_s']:.0f} s {r['clock']} time | {fmt(r['best_valid_nll'])} "
                f"(epoch {fmt(r['best_epoch'])}) | **{fmt(r['test_nll'])} ± "
                f"{fmt(r['test_se'])}**{extra} | {r['n_test']} | {PUBLISHED[model]}: "
                f"{'reached' if r['test_nll'] <= PUBLISHED[model] else 'not reached'} |"
            )
            details.append(f"command: `{r['command']}`")
            details.append("")
            details.append(f"test evaluation {r['test_time_s']:.0f} s; stage: {st['note']}")
        else:
            summary.append(
                f"| {model} | — | — | {st['note']} | — | no result | — | {PUBLISHED[model]} |"
            )
            details.append(
                f"No result file: the run {st['note']} (see {model}.log); "
                + ("the learning curve below is what it left." if curve else "no curve either.")
            )
        details.append("")
        if curve:
            details += [
                "| step | epoch | valid NLL | train loss | seconds |",
                "| ---: | ---: | ---: | ---: | ---: |",
            ]
            for row in thin(curve, MAX_CURVE_ROWS):
                details.append(
                    f"| {row['step']} | {row['epoch']:.2f} | {row['valid_nll']:.3f} | "
                    f"{row['train_loss']:.3f} | {row['time_s']:.0f} |"
                )
            if len(curve) > MAX_CURVE_ROWS:
                details.append(
                    f"\n({len(curve)} validations; {MAX_CURVE_ROWS} shown: evenly spaced, "
                    f"with the first, best and last; all in {model}_curve.jsonl)"
                )
            details.append("")
    if len(summary) == 2:
        return [*lines, "not run (not in GPU_CHECK_STAGES)", ""]
    notes = [
        "",
        "Minutes of training, not the published days: these rows record where each model",
        "stands after the time budget, with its validation learning curve; see",
        "`benchmarks/gpu_check.sh` (header) for running longer.",
        "",
    ]
    return [*lines, *summary, *notes, *details]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: gpu_check_report.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    if not out.is_dir():
        print(f"gpu_check_report.py: {out} is not a directory", file=sys.stderr)
        return 2
    stages = read_stages(out)
    lines = ["# GPU check (`benchmarks/gpu_check.sh`)", ""]
    env = out / "env.txt"
    if env.is_file():
        lines += [f"* {s}" for s in env.read_text().splitlines() if s.strip()]
        lines.append("")
    lines += ["| stage | exit status | seconds | note |", "| --- | --- | ---: | --- |"]
    lines += [f"| {k} | {v['status']} | {v['seconds']} | {v['note']} |" for k, v in stages.items()]
    lines.append("")
    lines += pytest_section(out, stages)
    lines += maf_section(out, stages)
    lines += mnist_section(out, stages)
    (out / "gpu_check.md").write_text("\n".join(lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
