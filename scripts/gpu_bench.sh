#!/usr/bin/env bash
# One command for a lent GPU machine (stock PyTorch + CUDA image, run from the repo root):
# DSen2 Mpx/s per net for fp32/fp16/bf16 on a 2040² image and a full 10980² tile, ≤ 8 min.
# Usage: scripts/gpu_bench.sh [extra gpu_bench.py args]     (log also in $OUT/gpu_bench.log if set)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 470 "$PY" scripts/gpu_bench.py --size full --budget-s 300 "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_bench.log"
