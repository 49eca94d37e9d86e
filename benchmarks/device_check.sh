#!/usr/bin/env bash
# GPU readiness in one go (< 8 min on one GPU): the `gpu` test marker, benchmarks.cells on the
# device (CUDA-graph and bf16 rows), and one short `trainer=gpu` run of the main job.
# Prints one JSON line last. Without CUDA it runs nothing and says so (exit 0), so it is CPU-safe.
#   bash benchmarks/device_check.sh            # EXPERIMENT=etth1_seg_rnn for a real-data preset
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export FORECAST_ROOT="$OUT/root" OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
unset MLFLOW_TRACKING_URI
mkdir -p "$FORECAST_ROOT"
gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
if [ -z "$gpu" ]; then
  "$PY" -c 'import json, torch; print(json.dumps({"device": "cpu", "torch": torch.__version__,
    "skipped": "no CUDA device: gpu tests, cells GPU rows and trainer=gpu not run"}))'
  exit 0
fi

start=$(date +%s)
timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
tests_rc=$?
tests_line=$(tail -n 1 "$OUT/gpu_tests.log")

timeout 180 "$PY" -m benchmarks.cells --repeats 5 --conv-repeats 3 > "$OUT/cells.log" 2>&1
cells_rc=$?
tail -n 1 "$OUT/cells.log" > "$OUT/cells.json"

t0=$(date +%s)
timeout 150 "$PY" -m pipelines.train ${EXPERIMENT:+experiment=$EXPERIMENT} trainer=gpu \
  trainer.max_epochs=1 trainer.enable_progress_bar=false > "$OUT/train.log" 2>&1
train_rc=$?
train_s=$(( $(date +%s) - t0 ))

GPU="$gpu" TESTS_RC=$tests_rc TESTS="$tests_line" CELLS_RC=$cells_rc TRAIN_RC=$train_rc \
TRAIN_S=$train_s TOTAL_S=$(( $(date +%s) - start )) OUTDIR="$OUT" "$PY" - <<'PYEOF'
import json, os, re
out = os.environ["OUTDIR"]
try:
    cells = json.loads(open(f"{out}/cells.json").read())
except (OSError, ValueError):
    cells = None
log = open(f"{out}/train.log", errors="replace").read()
score = re.findall(r"validation score: ([-+0-9.eE]+)", log)
print(json.dumps({
    "device": os.environ["GPU"],
    "gpu_tests": {"rc": int(os.environ["TESTS_RC"]), "summary": os.environ["TESTS"]},
    "cells": {"rc": int(os.environ["CELLS_RC"]), "result": cells},
    "train_gpu": {"rc": int(os.environ["TRAIN_RC"]), "wall_s": int(os.environ["TRAIN_S"]),
                  "val_score": float(score[-1]) if score else None},
    "total_s": int(os.environ["TOTAL_S"]),
    "logs": out,
}))
PYEOF
