#!/usr/bin/env bash
# The GPU slice of cpu-v1's grid, as run on a lent GPU machine (Python 3.12 with torch and
# CUDA, no network): metasel runs from the checkout; transformers 5.24.0 travels as a wheel in .whl/.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-out/gpu-v1}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python3 -m metasel --store /tmp/smoke.sqlite collect --grid examples/tiny_grid.yaml --device cuda --repeats 1 || exit 1
timeout "${COLLECT_SECONDS:-420}" python3 -m metasel --store /tmp/gpu.sqlite collect --grid datasets/cpu-v1/grid.yaml \
  --device cuda --seed 0 --timeout 120 > "$OUT/collect.log" 2>&1
echo "collect exit: $?"
tail -3 "$OUT/collect.log"
python3 -m metasel --store /tmp/gpu.sqlite export "$OUT/export"
python3 -m metasel --store /tmp/gpu.sqlite show --top 0
