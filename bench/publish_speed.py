#!/usr/bin/env python3
"""What publishing one full-tile-sized item costs the client (issue 22: "publishing that keeps up").

Builds, once, an output like a full Sentinel-2 item's: a 10980 x 10980 px, 8-band uint16 COG
written by the pipeline's own CogWriter (the Malmö L1C crop's real 20 m / 60 m bands, nearest
upsampled to 10 m and tiled over the tile, so the file compresses like real imagery) and its
10 m SCL (a synthetic class pattern, tiled), on the real grid of the Earth Search item
S2A_13TDE_20231008_0_L2A. Then publishes it to a local static catalog on the same file system
(what ``--publish out/catalog`` does) and times each step: hashing the files as written
(``file:checksum``), the preview from the overviews, linking the files into the catalog, the
item JSON, and the collection update. One line per figure.

Usage: python bench/publish_speed.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ITEM = ROOT / "tests" / "data" / "stac" / "earth-search-v1" / "items" / "S2A_13TDE_20231008_0_L2A.json"
MALMO = ROOT / "tests" / "data" / "S2A_MSIL1C_20170527_T33UUB.npz"
SIDE = 10980


def _tiles() -> np.ndarray:
    with np.load(MALMO) as z:
        b20, b60 = z["b20"], z["b60"]
    up20 = np.repeat(np.repeat(b20, 2, 1), 2, 2)
    up60 = np.repeat(np.repeat(b60, 6, 1), 6, 2)
    # SR_BANDS order: B01 B05 B06 B07 B8A B09 B11 B12
    return np.stack([up60[0], up20[0], up20[1], up20[2], up20[3], up60[1], up20[4], up20[5]]).astype(np.uint16)


def build(tmp: Path) -> tuple[Path, Path]:
    from rasterio.transform import Affine

    from s2sr_cloud.bands import SR_BANDS
    from s2sr_cloud.io.cog import CogWriter, band_layout
    from s2sr_cloud.io.scl import scl_path
    from s2sr_cloud.sr import Window

    doc = json.loads(ITEM.read_text())
    t = doc["assets"]["red"]["proj:transform"]
    transform = Affine(*t[:6])
    crs = f"EPSG:{doc['properties']['proj:epsg']}"
    cog = tmp / "S2A_13TDE_20231008_0_L2A-s2sr.tif"
    tile = _tiles()
    n = tile.shape[1]
    scl_tile = np.full((n, n), 4, np.uint8)
    scl_tile[: n // 3] = 9
    scl_tile[n // 3 : n // 2] = 3
    scl_tile[:, : n // 5] = 6
    rows = 1536
    t0 = time.perf_counter()
    with CogWriter(cog, width=SIDE, height=SIDE, count=8, crs=crs, transform=transform, **band_layout(SR_BANDS)) as w, \
            CogWriter(scl_path(cog), width=SIDE, height=SIDE, count=1, crs=crs, transform=transform, dtype="uint8") as ws:
        for r in range(0, SIDE, rows):
            h = min(rows, SIDE - r)
            idx = (np.arange(r, r + h) % n)[:, None], (np.arange(SIDE) % n)[None, :]
            w.write(tile[:, idx[0], idx[1]], Window(r, 0, h, SIDE))
            ws.write(scl_tile[idx[0], idx[1]][None], Window(r, 0, h, SIDE))
    print(f"built the item's COG ({cog.stat().st_size / 1e9:.2f} GB) and SCL "
          f"({scl_path(cog).stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
    return cog, scl_path(cog)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", type=Path, help="build in (or reuse) this folder")
    args = ap.parse_args()
    import platform

    import pystac

    from s2sr_cloud.publish import StaticTarget, open_store
    from s2sr_cloud.publish import assets as assets_mod
    from s2sr_cloud.publish.assets import scene_from_cog

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-publish-bench-", dir=str(ROOT)))
    tmp.mkdir(parents=True, exist_ok=True)
    cog = tmp / "S2A_13TDE_20231008_0_L2A-s2sr.tif"
    if not cog.exists():
        build(tmp)
    source = pystac.Item.from_dict(json.loads(ITEM.read_text()))
    models = {n: {"name": f"dsen2_{n}", "variant": "dsen2", "onnx_sha256": "0" * 64, "precision": "fp32"}
              for n in ("net20", "net60")}
    scene = scene_from_cog(cog, source, models=models, backend="onnxruntime-cpu", version="bench")

    # time each step as the target runs it
    timings: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def run(*a, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return run

    assets_mod.sha256_file = timed("hash the COG and SCL as written (file:checksum)", assets_mod.sha256_file)
    assets_mod.render_preview = timed("preview PNG from the overviews", assets_mod.render_preview)
    cat = tmp / "catalog"
    target = StaticTarget(open_store(str(cat)))
    store = target.store
    store.put_file = timed("link the files into the catalog", store.put_file)  # type: ignore[method-assign]
    store.put_json = timed("item JSON + collection/catalog JSON writes", store.put_json)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    staged = target.stage(scene, overwrite=True)
    t1 = time.perf_counter()
    target.commit([staged])
    t2 = time.perf_counter()
    mpx = SIDE * SIDE / 1e6
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cores available")
    print(f"item: {SIDE} x {SIDE} px ({mpx:.1f} Mpx) x 8 bands, COG {cog.stat().st_size / 1e9:.2f} GB + SCL")
    for name, s in timings.items():
        print(f"  {name}: {s:.2f} s")
    print(f"publish one full-tile-sized item to a local static catalog: stage {t1 - t0:.2f} s + commit "
          f"{t2 - t1:.2f} s = {t2 - t0:.2f} s on the client ({(t2 - t0) / mpx * 1.17:.3f} s per 1.17 Mpx)")


if __name__ == "__main__":
    main()
