#!/usr/bin/env bash
# The one prepared GPU check (about 9 minutes on one GPU): Moving MNIST trained for a fixed budget
# (`benchmarks.video_budget`), then `benchmarks.cells` on the device (CUDA-graph and bf16 rows),
# then, where MLflow is importable, the `gpu` test marker and a short `trainer=gpu` main job.
# Prints one JSON line last. Without CUDA it runs nothing and says so (exit 0): CPU-safe.
#
#   bash benchmarks/device_check.sh --prepare   # here: copy what the device image lacks
#   bash benchmarks/device_check.sh             # there (device tool: carry [".devpkgs"])
#
# The device image has torch, Lightning, torchmetrics, xarray and pandas but not Hydra, OmegaConf
# or MLflow, and no ../shared: --prepare copies the pure-Python hydra, omegaconf and antlr4 from
# the venv and the MNIST digits into .devpkgs/ (git-ignored through .git/info/exclude).
# VIDEO_MINUTES (default 6) is the training budget.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf .devpkgs && mkdir -p .devpkgs/site .devpkgs/data
  cp -r "$site/hydra" "$site/omegaconf" "$site/antlr4" .devpkgs/site/
  cp -r ../shared/data/mnist .devpkgs/data/
  find .devpkgs -name __pycache__ -prune -exec rm -rf {} +
  grep -qx '/.devpkgs/' .git/info/exclude 2>/dev/null || echo '/.devpkgs/' >> .git/info/exclude
  du -sh .devpkgs
  exit 0
fi
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
[ -d .devpkgs/site ] && export PYTHONPATH="$PWD/.devpkgs/site${PYTHONPATH:+:$PYTHONPATH}"
[ -d .devpkgs/data ] && export FORECAST_SHARED_DATA="$PWD/.devpkgs/data"
export FORECAST_ROOT="$OUT/root" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
unset MLFLOW_TRACKING_URI
mkdir -p "$FORECAST_ROOT"
gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
if [ -z "$gpu" ]; then
  "$PY" -c 'import json, torch; print(json.dumps({"device": "cpu", "torch": torch.__version__,
    "skipped": "no CUDA device: video budget, cells GPU rows, gpu tests not run"}))'
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
start=$(date +%s)

minutes=${VIDEO_MINUTES:-6}
timeout $(( ${minutes%.*} * 60 + 150 )) "$PY" -m benchmarks.video_budget --preset moving_mnist \
  --minutes "$minutes" --set data.num_workers=8 2>&1 | tee "$OUT/video.log"
video_rc=${PIPESTATUS[0]}
tail -n 1 "$OUT/video.log" > "$OUT/video.json"

timeout 90 "$PY" -m benchmarks.cells --repeats 5 --conv-repeats 3 > "$OUT/cells.log" 2>&1
cells_rc=$?
tail -n 1 "$OUT/cells.log" > "$OUT/cells.json"

tests_rc=-1 train_rc=-1
if "$PY" -c 'import mlflow' 2>/dev/null; then
  timeout 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
  tests_rc=$?
  timeout 120 "$PY" -m pipelines.train trainer=gpu trainer.max_epochs=1 \
    trainer.enable_progress_bar=false > "$OUT/train.log" 2>&1
  train_rc=$?
fi

GPU="$gpu" VIDEO_RC=$video_rc CELLS_RC=$cells_rc TESTS_RC=$tests_rc TRAIN_RC=$train_rc \
TOTAL_S=$(( $(date +%s) - start )) OUTDIR="$OUT" "$PY" - <<'PYEOF'
import json, os
out = os.environ["OUTDIR"]


def last_json(name):
    try:
        return json.loads(open(f"{out}/{name}").read())
    except (OSError, ValueError):
        return None


print(json.dumps({
    "device": os.environ["GPU"],
    "video_budget": {"rc": int(os.environ["VIDEO_RC"]), "result": last_json("video.json")},
    "cells": {"rc": int(os.environ["CELLS_RC"]), "result": last_json("cells.json")},
    "gpu_tests_rc": int(os.environ["TESTS_RC"]),  # -1: not run (no MLflow on the image)
    "train_gpu_rc": int(os.environ["TRAIN_RC"]),
    "total_s": int(os.environ["TOTAL_S"]),
}))
PYEOF
