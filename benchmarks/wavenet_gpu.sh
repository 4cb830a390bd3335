#!/usr/bin/env bash
# Issue 16's figures on one GPU, sized to finish in under 8 minutes (pending GPU: never run on
# one yet). Four steps of benchmarks/wavenet.py, each writing a JSON into OUTDIR:
#   1. a speaker-conditioned mu-law WaveNet (64 channels, 2 stacks of dilations 1..512),
#      1.5 minutes of training, test NLL on all test segments;
#   2. generation of 1 s of 16 kHz audio from it: cached vs naive vs the receptive-field
#      window;
#   3. a 16-bit logistic-mixture teacher, 2 minutes with the cosine learning-rate decay;
#   4. Parallel WaveNet distillation of a 4-flow student into it, 1.5 minutes.
#
# The GPU machine has no espeak-ng: build the corpus here and send it along in .device/:
#   ../shared/tools/device-prep && python -c "from pyro_lgm.data import build_speech_corpus;
#   build_speech_corpus('.device/speech')"                             (12 MB, 9 s)
# then, on the GPU machine, after device-prep's command prefix:
#   benchmarks/wavenet_gpu.sh "$OUT"
# CORPUS=DIR overrides .device/speech; --smoke runs the same pipeline on the CPU with tiny
# budgets (a check of the commands, no figure).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMOKE=0
OUTDIR=""
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -*) echo "wavenet_gpu.sh: unknown option $arg" >&2; exit 2 ;;
    *) OUTDIR=$arg ;;
  esac
done
OUTDIR=${OUTDIR:-${OUT:-$ROOT/out/wavenet_gpu_$(date +%Y%m%d-%H%M%S)}}
CORPUS=${CORPUS:-$ROOT/.device/speech}
[ -f "$CORPUS/manifest.json" ] || { echo "wavenet_gpu.sh: no corpus at $CORPUS (see the header)" >&2; exit 2; }
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
B="$ROOT/benchmarks/wavenet.py"
if [ "$SMOKE" = 1 ]; then
  DEV=(--device cpu); NET=(--channels 4 --layers 3 --stacks 1 --segment 256)
  T1=0.02; T3=0.02; T4=0.02; SECONDS_=0.01; BATCH=2; CURVE=0.01; DIST=(--flows 2 --layers 2)
else
  DEV=(--device cuda); NET=(--channels 64 --layers 10 --stacks 2 --segment 4096)
  T1=1.5; T3=2; T4=1.5; SECONDS_=1; BATCH=32; CURVE=0.5; DIST=(--flows 4)
fi
"$PY" "$B" train "${DEV[@]}" "${NET[@]}" --corpus "$CORPUS" --speaker --minutes "$T1" \
  --curve-every "$CURVE" --batch "$BATCH" --save-model "$OUTDIR/wn-cat.pt" \
  --json "$OUTDIR/wn-cat.json" | tee "$OUTDIR/wn-cat.md"
"$PY" "$B" generation "${DEV[@]}" --load "$OUTDIR/wn-cat.pt" --seconds "$SECONDS_" \
  --json "$OUTDIR/wn-gen.json" | tee "$OUTDIR/wn-gen.md"
"$PY" "$B" train "${DEV[@]}" "${NET[@]}" --corpus "$CORPUS" --output logistic_mixture --cosine \
  --minutes "$T3" --curve-every "$CURVE" --batch "$BATCH" --save-model "$OUTDIR/wn-mix.pt" \
  --json "$OUTDIR/wn-mix.json" | tee "$OUTDIR/wn-mix.md"
"$PY" "$B" distill "${DEV[@]}" "${DIST[@]}" --teacher "$OUTDIR/wn-mix.pt" --minutes "$T4" \
  --curve-every "$CURVE" --json "$OUTDIR/wn-distill.json" | tee "$OUTDIR/wn-distill.md"
rm -f "$OUTDIR"/wn-cat.pt "$OUTDIR"/wn-mix.pt  # the models stay behind; the figures come back
echo "wavenet_gpu.sh: figures in $OUTDIR"
