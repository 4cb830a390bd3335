#!/usr/bin/env bash
# One command for a GPU machine: the CUDA half of the property suite, the MAF speed table and
# the two binarized-MNIST figures that need a GPU, in under 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh [--smoke] [OUTDIR]        (OUTDIR defaults to $OUT, then
#                                                      out/gpu_check_<date>)
#
# Stages (each under a hard `timeout`; logs, JSON and markdown go to OUTDIR; the summary is
# OUTDIR/gpu_check.md, also printed at the end):
#   pytest  python -m pytest -m gpu -n 8 tests   (the `gpu` marker selects exactly the
#           cuda-parametrized runs of the `device` fixture; the selection is listed in
#           pytest_gpu_collected.txt and checked: non-empty, every id a cuda run)
#   maf     benchmarks/vector_flows.py --device cuda  (ours vs Pyro vs zuko vs dense MLP)
#   made    MADE 2 x 8000, 32 masks (published 86.64 nats), benchmarks/binarized_mnist.py
#   eonade  EoNADE, DeepNADE 2 x 500, 128 test orderings on all 10000 test images (85.10)
# The two MNIST runs are sized by time: each trains for min(MNIST_MINUTES, what is left of
# GPU_CHECK_BUDGET_S after the earlier stages and a reserve for start-up and evaluation)
# minutes of wall-clock time, with a cosine learning rate over that budget. They will NOT
# reach the published figures in minutes: the point is a ready command that records the
# test NLL and the validation learning curve (made_curve.jsonl, eonade_curve.jsonl, and the
# table in gpu_check.md).
#
# Environment:
#   GPU_CHECK_BUDGET_S  total seconds aimed at (default 450: 7.5 minutes, under the 8)
#   MNIST_MINUTES       cap on each MNIST training budget in minutes (default 2.5)
#   GPU_CHECK_STAGES    stages to run (default "pytest maf made eonade")
#   GPU_CHECK_DEVICE    torch device (default cuda)
#   CPU_SMOKE=1         same as --smoke: the whole pipeline on the CPU with tiny sizes
#                       (seconds), to test the script on a machine without a GPU
#   PYTHON              interpreter (default python3)
#
# Running longer (closer to the published figures), e.g. an hour per model:
#   MNIST_MINUTES=60 GPU_CHECK_BUDGET_S=8000 GPU_CHECK_STAGES="made eonade" \
#       benchmarks/gpu_check.sh out/gpu_long
# or the script directly (see binarized_mnist.py --help; --save-model keeps the weights):
#   python benchmarks/binarized_mnist.py --model made --hidden 8000 --layers 2 \
#       --num-masks 32 --device cuda --schedule cosine --time-budget 60 --patience 1000 \
#       --eval-batch-size 1000 --out made.json --curve made_curve.jsonl --save-model made.pt
#
# A machine that receives only the checkout (no ../shared, no network, no pyro-ppl): run
# `../shared/tools/device-prep binarized_mnist` here first; this script then installs the
# wheels from .device/wheels into a temporary directory (the command prefix of
# device-prep's header) and reads the data from .device/data (PYRO_LGM_DATA).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}

SMOKE=${CPU_SMOKE:-0}
OUTDIR=""
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "gpu_check.sh: unknown option $arg (expected --smoke or an output directory)" >&2
      exit 2
      ;;
    *)
      [ -z "$OUTDIR" ] || { echo "gpu_check.sh: more than one output directory given" >&2; exit 2; }
      OUTDIR=$arg
      ;;
  esac
done
[ "$SMOKE" = 1 ] || [ "$SMOKE" = 0 ] || { echo "gpu_check.sh: CPU_SMOKE must be 0 or 1" >&2; exit 2; }
OUTDIR=${OUTDIR:-${OUT:-$ROOT/out/gpu_check_$(date +%Y%m%d-%H%M%S)}}
mkdir -p "$OUTDIR" || { echo "gpu_check.sh: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR=$(cd "$OUTDIR" && pwd)

fail() {
  echo "gpu_check.sh: $*" >&2
  echo "FAILED before any stage: $*" >"$OUTDIR/gpu_check.md"
  exit 2
}

# ------------------------------------------------------------------ settings
STAGES=${GPU_CHECK_STAGES:-pytest maf made eonade}
for st in $STAGES; do
  case $st in pytest | maf | made | eonade) ;; *) fail "GPU_CHECK_STAGES: unknown stage '$st' (expected pytest, maf, made, eonade)" ;; esac
done
wants() { [[ " $STAGES " == *" $1 "* ]]; }
for var in GPU_CHECK_BUDGET_S MNIST_MINUTES; do
  val=${!var:-1}
  [[ $val =~ ^[0-9]*\.?[0-9]+$ && ! $val =~ ^0*\.?0*$ ]] || fail "$var: expected a positive number, got '$val'"
done

# ------------------------------------------------------------------ a GPU first (fail fast)
if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
else
  DEVICE=${GPU_CHECK_DEVICE:-cuda}
  "$PY" - "$DEVICE" <<'EOF' || fail "no usable CUDA GPU (see the line above); for a dry run of the pipeline on the CPU use --smoke or CPU_SMOKE=1"
import sys
import torch
dev = sys.argv[1]
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU", file=sys.stderr)
    sys.exit(1)
if not dev.startswith("cuda"):
    print(f"GPU_CHECK_DEVICE={dev!r}: expected cuda or cuda:N", file=sys.stderr)
    sys.exit(1)
torch.zeros(1, device=dev)  # fails here, not in a stage, if the device is unusable
EOF
fi

# ------------------------------------------------------------------ environment (device-prep)
if [ -d "$ROOT/.device/data" ] && [ -z "${PYRO_LGM_DATA:-}" ]; then
  export PYRO_LGM_DATA="$ROOT/.device/data"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import pyro" 2>/dev/null; then
  compgen -G "$ROOT/.device/wheels/*.whl" >/dev/null ||
    fail "pyro-ppl is not importable and there are no wheels in .device/wheels: run ../shared/tools/device-prep binarized_mnist first"
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$ROOT"/.device/wheels/*.whl ||
    fail "installing .device/wheels failed"
  "$PY" -m compileall -q -j 0 "$SITE" >/dev/null # once, not in every pytest worker
  export PYTHONPATH="$PYTHONPATH:$SITE"
  "$PY" -c "import pyro" || fail "pyro-ppl still not importable after installing .device/wheels"
fi

if wants made || wants eonade; then
  "$PY" - <<'EOF' || fail "binarized MNIST not found (set PYRO_LGM_DATA, or run ../shared/tools/device-prep binarized_mnist)"
import os, sys
from pathlib import Path
from pyro_lgm.data import load_binarized_mnist
root = os.environ.get("PYRO_LGM_DATA") or str(Path("..").resolve() / "shared" / "data")
try:
    load_binarized_mnist(root, "valid")
except (FileNotFoundError, ValueError) as e:
    print(e, file=sys.stderr)
    sys.exit(1)
EOF
fi
DATA_DIR=${PYRO_LGM_DATA:-$(cd .. && pwd)/shared/data}

# ------------------------------------------------------------------ budget and sizes
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
MNIST_MINUTES=${MNIST_MINUTES:-2.5}
RESERVE_S=60 # per MNIST run: start-up, data, final validation and test evaluation
MIN_TRAIN_S=20
if [ "$SMOKE" = 1 ]; then
  PYTEST_SEL=(tests/test_transform_properties.py::test_bijective -k "cpu and float64 and affine_coupling")
  PYTEST_WORKERS=(-n 0)
  PYTEST_CAP=120
  MAF_ARGS=(--dims 8 --repeats 1 --warmup 0 --sample-repeats 1 --threads 1)
  MAF_CAP=120
  MADE_ARGS=(--hidden 32 --num-masks 2 --subset 200 --test-subset 20)
  EONADE_ARGS=(--hidden 16 --num-orderings 2 --subset 200 --test-subset 10 --exact-batch-size 10)
  MNIST_MINUTES=0.02
  MIN_TRAIN_S=0
else
  PYTEST_SEL=(tests -m gpu)
  PYTEST_WORKERS=(-n 8)
  PYTEST_CAP=150
  # sampling at D=784 is 784 sequential passes per layer (Pyro's ~8 s a call): 2 repeats
  MAF_ARGS=(--dims 8,64,784 --repeats 7 --warmup 2 --sample-repeats 2 --threads 4)
  MAF_CAP=150
  MADE_ARGS=(--hidden 8000 --num-masks 32 --eval-batch-size 1000)
  EONADE_ARGS=(--hidden 500 --num-orderings 128 --exact-batch-size 500 --eval-batch-size 2000)
fi

STATUS="$OUTDIR/stages.tsv"
printf 'stage\tstatus\tseconds\tnote\n' >"$STATUS"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (working tree differs)"
  else
    commit="unknown (no git repository)"
  fi
  echo "commit: $commit"
  echo "mode: $([ "$SMOKE" = 1 ] && echo 'CPU smoke (tiny sizes, not a measurement)' || echo 'GPU check')"
  echo "device: $("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import torch, bench_device as b; print(b.describe(b.parse_device('$DEVICE')))")"
  echo "budget: ${BUDGET_S} s aimed at; MNIST training cap ${MNIST_MINUTES} min each; stages: ${STAGES}"
  echo "data: ${DATA_DIR}"
  if [ "$SMOKE" = 0 ] && command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  fi
} >"$OUTDIR/env.txt"
cat "$OUTDIR/env.txt"

# run_stage NAME CAP_S CMD...: run with a hard time cap, log to OUTDIR/NAME.log, record status
run_stage() {
  local name=$1 cap=$2
  shift 2
  local t0=$SECONDS rc
  echo "== $name (cap ${cap} s): $*"
  timeout --kill-after=10 "$cap" "$@" >"$OUTDIR/$name.log" 2>&1
  rc=$?
  local note=""
  case $rc in
    0) note=ok ;;
    124 | 137) note="killed by the ${cap} s cap" ;;
    *) note="exit status $rc" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$note" >>"$STATUS"
  echo "   -> $note after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || tail -n 5 "$OUTDIR/$name.log" | sed 's/^/   | /'
  return 0
}

skip_stage() {
  printf '%s\t%s\t%s\t%s\n' "$1" skipped 0 "$2" >>"$STATUS"
  echo "== $1 skipped: $2"
}

# training minutes for the next MNIST run: min(cap, share of what is left)
mnist_minutes() {
  local runs_left=$1
  "$PY" -c "
left = $BUDGET_S - $SECONDS - $runs_left * $RESERVE_S
share = left / $runs_left / 60
print(f'{min($MNIST_MINUTES, share):.3f}' if share * 60 >= max($MIN_TRAIN_S, 1e-9) else 0)"
}

# ------------------------------------------------------------------ stages
if wants pytest; then
  # the selection first: -m gpu must pick the cuda runs and nothing else
  timeout 60 "$PY" -m pytest --collect-only -q -p no:cacheprovider "${PYTEST_SEL[@]}" \
    2>&1 | grep '::' >"$OUTDIR/pytest_gpu_collected.txt"
  n_sel=$(wc -l <"$OUTDIR/pytest_gpu_collected.txt")
  n_cuda=$(grep -cE '\[([^]]*-)?cuda(-[^]]*)?\]' "$OUTDIR/pytest_gpu_collected.txt")
  echo "   pytest selection: $n_sel tests, $n_cuda of them cuda runs"
  if [ "$SMOKE" = 0 ] && { [ "$n_sel" -eq 0 ] || [ "$n_sel" -ne "$n_cuda" ]; }; then
    skip_stage pytest "the gpu marker selected $n_sel tests of which $n_cuda are cuda runs (see pytest_gpu_collected.txt)"
  else
    run_stage pytest "$PYTEST_CAP" "$PY" -m pytest -q -p no:cacheprovider -rfE \
      --junitxml="$OUTDIR/pytest.xml" "${PYTEST_SEL[@]}" "${PYTEST_WORKERS[@]}"
  fi
fi

if wants maf; then
  run_stage maf "$MAF_CAP" "$PY" benchmarks/vector_flows.py --device "$DEVICE" "${MAF_ARGS[@]}" \
    --out "$OUTDIR/maf_speed.md"
fi

mnist_runs=0
wants made && mnist_runs=$((mnist_runs + 1))
wants eonade && mnist_runs=$((mnist_runs + 1))
for model in made eonade; do
  wants $model || continue
  minutes=$(mnist_minutes $mnist_runs)
  mnist_runs=$((mnist_runs - 1))
  if [ "$minutes" = 0 ]; then
    skip_stage $model "less than $MIN_TRAIN_S s of training left in GPU_CHECK_BUDGET_S=$BUDGET_S"
    continue
  fi
  if [ $model = made ]; then args=("${MADE_ARGS[@]}"); else args=("${EONADE_ARGS[@]}"); fi
  cap=$("$PY" -c "print(int($minutes * 60 + $RESERVE_S))")
  rm -f "$OUTDIR/${model}_curve.jsonl"
  run_stage $model "$cap" "$PY" benchmarks/binarized_mnist.py --model $model --layers 2 \
    "${args[@]}" --device "$DEVICE" --data-dir "$DATA_DIR" --time-budget "$minutes" \
    --schedule cosine --patience 1000 --no-progress \
    --out "$OUTDIR/$model.json" --curve "$OUTDIR/${model}_curve.jsonl"
done

# ------------------------------------------------------------------ summary
"$PY" benchmarks/gpu_check_report.py "$OUTDIR" || echo "gpu_check.sh: the summary failed" >&2
echo
cat "$OUTDIR/gpu_check.md"
echo "total: $SECONDS s; outputs in $OUTDIR"
awk -F'\t' 'NR > 1 && $2 != "0" { bad = 1 } END { exit bad }' "$STATUS"
