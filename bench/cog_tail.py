"""The COG writer's tail: seconds from the last block written to the finished COG, and the whole
write, for the former writer (GDAL's COG driver after the loop) and the current one (tiles
compressed and overviews built as blocks arrive), side by side in one run.

Content: the real Malmö 20 m bands (tests/data) upsampled to 10 m and tiled over the area, with a
nodata corner; written in 1536-row blocks as the pipeline does. One line per figure.

    python bench/cog_tail.py [--size 4096] [--bands 8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from affine import Affine

sys.path.insert(0, str(Path(__file__).parents[1]))

from s2sr_cloud.grid import Window  # noqa: E402
from s2sr_cloud.io.cog import CogWriter, GdalCogWriter  # noqa: E402

DATA = Path(__file__).parents[1] / "tests" / "data" / "S2A_MSIL1C_20170527_T33UUB.npz"


def _tile(bands: int) -> np.ndarray:
    with np.load(DATA) as z:
        b20 = z["b20"].astype(np.uint16)
    b = np.repeat(np.repeat(b20, 2, 1), 2, 2)  # 6 x 600 x 600
    return np.concatenate([b, b[: max(0, bands - 6)]])[:bands]


def run(cls, path: Path, size: int, bands: int, block: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    tile = _tile(bands)
    t0 = time.perf_counter()
    with cls(path, width=size, height=size, count=bands, crs="EPSG:32633",
             transform=Affine(10, 0, 600000, 0, -10, 6200000)) as w:
        for r in range(0, size, block):
            h = min(block, size - r)
            rows = np.arange(r, r + h) % 600
            strip = np.take(np.take(tile, rows, axis=1), np.arange(size) % 600, axis=2)
            if r == 0:
                strip[:, :300, :400] = 0
            w.write(strip, Window(r, 0, h, size))
        last = time.perf_counter()
    end = time.perf_counter()
    return end - last, end - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--block", type=int, default=1536)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine      {cpu}, {len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}; "
          f"{a.size} x {a.size} px x {a.bands} bands uint16, {a.block}-row blocks")
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeat):
            for name, cls in (("gdal-cog", GdalCogWriter), ("cogwriter", CogWriter)):
                p = Path(d) / f"{name}-{i}.tif"
                tail, total = run(cls, p, a.size, a.bands, a.block)
                mb = p.stat().st_size / 1e6
                print(f"{name:<12} run {i + 1}: tail {tail:6.2f} s after the last block, whole write {total:6.2f} s, {mb:.0f} MB")
                p.unlink()


if __name__ == "__main__":
    main()
