#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install the gpu extra, run the gpu-marked tests (failing,
# not skipping, if the GPU or TensorRT is missing), then the GPU benchmark.
# Usage: scripts/gpu-check.sh [bench args...]      (after scripts/install.sh test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" -m pip install --disable-pip-version-check -q -e ".[gpu]"
# onnxruntime (CPU) and onnxruntime-gpu share one import name: keep the GPU build only.
ORT_GPU="$("$PY" -c 'from importlib.metadata import version; print(version("onnxruntime-gpu"))')"
"$PY" -m pip uninstall -y -q onnxruntime onnxruntime-gpu
"$PY" -m pip install --disable-pip-version-check -q --no-deps "onnxruntime-gpu==$ORT_GPU"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
"$PY" -m pytest -q --gpu -m gpu tests/test_engine.py -s
"$PY" bench/gpu_throughput.py "$@"
