#!/usr/bin/env bash
# Create .venv and install s2sr-cloud with what the demo and the tests need.
# Usage: scripts/install.sh [demo|test]     (idempotent; offline-safe once packages are cached)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-test}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# torch: the CPU build (2.13.0 lies on this machine's disk; an unpinned torch pulls CUDA).
if [ "$MODE" = "test" ]; then
  .venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" "torch==2.13.0"
  "${PIP[@]}" -e ".[cpu,train,test,s3,cube,task]" -r requirements-test.txt
  if [ -x scripts/install-services.sh ]; then scripts/install-services.sh; fi
else
  "${PIP[@]}" -e ".[cpu]"
fi
