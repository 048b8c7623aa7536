"""Render docs/img/before-after.png: real Sentinel-2 input bands next to the s2sr output.

Scene: the Malmö L1C crop in tests/data (never used in training). A 240 × 240 px (2.4 km)
window; top row: the SWIR/red-edge composite B12-B11-B8A as delivered at 20 m (each pixel
shown as 2 × 2) and as super-resolved to 10 m; bottom row: B01 (aerosol, 60 m) as
delivered (6 × 6 blocks) and super-resolved. Each panel is scaled ×2 for display.

    .venv/bin/python scripts/make_readme_figure.py [--out docs/img/before-after.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio

from s2sr_cloud.post import super_resolve_consistent
from s2sr_cloud.infer import load_runners
from s2sr_cloud.sr import ArraySource, Window

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "tests" / "data" / "S2A_MSIL1C_20170527_T33UUB.npz"
R0, C0, N = 180, 300, 240  # window on the 10 m grid (multiples of 6)
GAP, ZOOM = 8, 2


def _stretch(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((x - lo[:, None, None]) / (hi - lo)[:, None, None] * 255, 0, 255).astype(np.uint8)


def _zoom(x: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(x, k, axis=-2), k, axis=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "before-after.png")
    args = ap.parse_args()
    with np.load(SCENE) as z:
        src = ArraySource(z["b10"], z["b20"], z["b60"])
        b20 = z["b20"].astype(np.float32)
        b60 = z["b60"].astype(np.float32)
    out = super_resolve_consistent(src, load_runners(("net20", "net60"), device="cpu"), window=Window(R0, C0, N, N))
    swir_idx = [5, 4, 3]  # B12, B11, B8A in the b20 order B5 B6 B7 B8A B11 B12
    lr_swir = _zoom(b20[swir_idx, R0 // 2 : (R0 + N) // 2, C0 // 2 : (C0 + N) // 2], 2)
    sr_swir = out["net20"][swir_idx]
    lo, hi = np.percentile(lr_swir, 1, axis=(1, 2)), np.percentile(lr_swir, 99, axis=(1, 2))
    row1 = [_stretch(lr_swir, lo, hi), _stretch(sr_swir, lo, hi)]
    lr_b1 = _zoom(b60[:1, R0 // 6 : (R0 + N) // 6, C0 // 6 : (C0 + N) // 6], 6)
    sr_b1 = out["net60"][:1]
    lo1, hi1 = np.percentile(lr_b1, 1, axis=(1, 2)), np.percentile(lr_b1, 99, axis=(1, 2))
    row2 = [np.repeat(_stretch(v, lo1, hi1), 3, axis=0) for v in (lr_b1, sr_b1)]
    side = N * ZOOM
    canvas = np.full((3, 2 * side + 3 * GAP, 2 * side + 3 * GAP), 255, np.uint8)
    for i, row in enumerate((row1, row2)):
        for j, panel in enumerate(row):
            r, c = GAP + i * (side + GAP), GAP + j * (side + GAP)
            canvas[:, r : r + side, c : c + side] = _zoom(panel, ZOOM)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "PNG", "width": canvas.shape[2], "height": canvas.shape[1], "count": 3, "dtype": "uint8"}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(args.out, "w", **profile) as dst:
        dst.write(canvas)
    print(args.out)


if __name__ == "__main__":
    main()
