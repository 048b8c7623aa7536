#!/usr/bin/env python3
"""A full 10980 x 10980 item through the pipeline: wall time per stage, peak RSS, output overviews.

Pixels are synthetic (smooth ramps, so the files stay small) on the real grid of the
Earth Search item S2A_13TDE_20231008_0_L2A (tests/data/stac): one local COG per band at
its native resolution. The nets are a residual-only runner (no convolutions), so the run
measures streaming (read → upsample → write) and memory, not compute.

Usage: python bench/full_item_memory.py [--block 1536] [--no-hybrid] [--nets residual|shipped] [--size PX]

The default post-steps run (hybrid guided-regression blend, then back-projection, consistency
QA); ``--no-hybrid`` leaves the first one out. ``--nets shipped`` runs the shipped nets (ONNX
Runtime on this CPU; slow: use ``--size`` to process a PX × PX area of the item instead of all
of it). Prints one JSON line with the totals, then one line per stage (``s2sr_cloud.timing``:
seconds summed over the block threads, so overlapped stages can add up to more than the wall time).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ITEM = ROOT / "tests" / "data" / "stac" / "earth-search-v1" / "items" / "S2A_13TDE_20231008_0_L2A.json"


def build(tmp: Path) -> dict:
    import rasterio
    from rasterio.transform import Affine

    from s2sr_cloud.catalog.presets import EARTH_SEARCH_KEYS

    doc = json.loads(ITEM.read_text())
    for band, key in EARTH_SEARCH_KEYS.items():
        if band == "SCL":
            continue
        a = doc["assets"][key]
        h, w = a["proj:shape"]
        ramp = (np.linspace(500, 4000, h, dtype=np.float32)[:, None] + np.linspace(0, 1500, w, dtype=np.float32)[None, :])
        with rasterio.open(tmp / f"{band}.tif", "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16",
                           crs=f"EPSG:{doc['properties']['proj:epsg']}", transform=Affine(*a["proj:transform"][:6]),
                           tiled=True, blockxsize=1024, blockysize=1024, compress="deflate", nodata=0) as ds:
            ds.write(ramp.astype(np.uint16), 1)
        a["href"] = str(tmp / f"{band}.tif")
    return doc


def main() -> None:
    import pystac
    import rasterio

    from s2sr_cloud.bands import NETS
    from s2sr_cloud.catalog.presets import EARTH_SEARCH
    from s2sr_cloud.pipeline import RunParams, process_item
    from s2sr_cloud.post import PostSteps

    class ResidualRunner:
        backend = "numpy-residual"

        def __init__(self, net: str) -> None:
            self.net, self.halo, self._slice = net, 14, NETS[net].residual_slice

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(x[:, self._slice])

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=1536)
    ap.add_argument("--no-hybrid", action="store_true", help="without the hybrid post-step")
    ap.add_argument("--nets", choices=("residual", "shipped"), default="residual")
    ap.add_argument("--size", type=int, default=0, help="process only a PX x PX area (0: the whole item)")
    args = ap.parse_args()
    from s2sr_cloud import timing
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        item = pystac.Item.from_dict(build(tmp))
        if args.nets == "shipped":
            from s2sr_cloud.infer import load_runners

            runners = load_runners(("net20", "net60"), device="cpu")
        else:
            runners = {n: ResidualRunner(n) for n in ("net20", "net60")}
        bbox = None
        if args.size:
            from s2sr_cloud.grid import bbox_from_crs, crs_of

            c, f = item.assets["red"].extra_fields["proj:transform"][2], item.assets["red"].extra_fields["proj:transform"][5]
            x0, y1 = c + 30000, f - 30000  # an area inside the tile, away from its edges
            bbox = bbox_from_crs((x0, y1 - 10 * args.size, x0 + 10 * args.size, y1), crs_of(item.properties, item.assets["red"].extra_fields) or "")
        t0 = time.perf_counter()
        with timing.collect() as stages:
            res = process_item(item, runners, EARTH_SEARCH, RunParams(out_dir=tmp / "out", block=args.block, bbox=bbox,
                                                                      post=PostSteps(hybrid=not args.no_hybrid)))
        secs = time.perf_counter() - t0
        with rasterio.open(res.path) as ds:
            ovr = ds.overviews(1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        h, w = res.grid.shape
        print(json.dumps({"out_px": f"{w}x{h}", "block": args.block, "hybrid": not args.no_hybrid, "nets": args.nets,
                          "backend": next(iter(runners.values())).backend, "seconds": round(secs, 1),
                          "max_rss_mb": round(rss), "whole_item_float32_mb": round(12 * h * w * 4 / 2**20),
                          "overviews": ovr}))
        mpx = h * w / 1e6
        for name in ("read", "input", "nets", "hybrid", "backproject", "qa", "write", "cog"):
            if name in stages:
                print(f"stage={name} seconds={stages[name]:.1f} s_per_mpx={stages[name] / mpx:.3f}")


if __name__ == "__main__":
    main()
