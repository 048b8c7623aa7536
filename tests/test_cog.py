"""The COG writer: tiles compressed on a thread pool and overviews built as windows arrive,
assembled without recompression (:class:`~s2sr_cloud.io.cog.CogWriter`), against GDAL's own
COG driver (:class:`~s2sr_cloud.io.cog.GdalCogWriter`, the former writer) on real imagery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2sr_cloud.grid import Window
from s2sr_cloud.io.cog import CogWriter, GdalCogWriter

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 6200000.0)


@pytest.fixture(scope="module")
def image(malmo) -> np.ndarray:  # type: ignore[no-untyped-def]
    """3 real 20 m bands upsampled to 1100 x 1300 px, with a nodata corner and a nodata strip."""
    b = np.repeat(np.repeat(malmo.b20[:3].astype(np.uint16), 2, 1), 2, 2)  # 600 x 600
    img = np.tile(b, (1, 2, 3))[:, :1100, :1300].copy()
    img[:, :130, :170] = 0
    img[:, 700:720, :] = 0
    return img


def _write(cls, path: Path, img: np.ndarray, rows: int = 300, cols: int = 500, **kw) -> Path:  # type: ignore[no-untyped-def]
    _, h, w = img.shape
    with cls(path, width=w, height=h, count=img.shape[0], crs="EPSG:32633", transform=TRANSFORM,
             descriptions=["B05 (sr)", "B06 (sr)", "B07 (sr)"], tags={"S2SR_TEST": "yes"},
             band_tags=[{"k": str(i)} for i in range(img.shape[0])], scales=[1e-4] * 3, offsets=[-0.1] * 3,
             **kw) as wr:
        for r in range(0, h, rows):
            for c in range(0, w, cols):
                win = Window(r, c, min(rows, h - r), min(cols, w - c))
                wr.write(img[:, win.row : win.row + win.height, win.col : win.col + win.width], win)
    return path


def test_equals_gdal_at_full_resolution_and_in_every_overview(image: np.ndarray, tmp_path: Path) -> None:
    new = _write(CogWriter, tmp_path / "new.tif", image, threads=3)
    old = _write(GdalCogWriter, tmp_path / "old.tif", image)
    with rasterio.open(new) as a, rasterio.open(old) as b:
        assert a.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # GDAL reads it as a COG
        assert a.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        assert (a.crs, a.transform, a.nodata, a.block_shapes) == (b.crs, b.transform, b.nodata, b.block_shapes)
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.overviews(1) == b.overviews(1) and len(a.overviews(1)) >= 1
        for f in a.overviews(1):
            shape = (3, a.height // f, a.width // f)
            np.testing.assert_array_equal(a.read(out_shape=shape), b.read(out_shape=shape))
        assert a.descriptions == b.descriptions and a.tags()["S2SR_TEST"] == "yes"
        assert a.scales == b.scales == (1e-4,) * 3 and a.offsets == b.offsets == (-0.1,) * 3
        assert [a.tags(i)["k"] for i in (1, 2, 3)] == ["0", "1", "2"]


def test_tile_data_follows_the_headers_in_order(image: np.ndarray, tmp_path: Path) -> None:
    """What GDAL's COG validation checks: full-resolution tiles stored after every overview's,
    each level's tiles in row-major order (ascending offsets)."""
    path = _write(CogWriter, tmp_path / "new.tif", image, threads=2)
    first: list[int] = []
    for level in [None, 0, 1]:
        with rasterio.open(path, overview_level=level) if level is not None else rasterio.open(path) as ds:
            nby, nbx = -(-ds.height // 512), -(-ds.width // 512)
            offs = [int(ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1)) for y in range(nby) for x in range(nbx)]
            assert offs == sorted(offs), level
            first.append(offs[0])
    assert first[0] > first[1] > first[2]  # full resolution last, the smallest overview first


def test_threads_do_not_change_a_byte(image: np.ndarray, tmp_path: Path) -> None:
    one = _write(CogWriter, tmp_path / "one.tif", image, threads=1)
    many = _write(CogWriter, tmp_path / "many.tif", image, threads=4, rows=256, cols=1300)
    assert one.read_bytes() == many.read_bytes()


def test_an_error_leaves_no_file_and_no_staging(image: np.ndarray, tmp_path: Path) -> None:
    final = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with CogWriter(final, width=1300, height=1100, count=3, crs="EPSG:32633", transform=TRANSFORM) as wr:
            wr.write(image[:, :300], Window(0, 0, 300, 1300))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_other_data_types_go_through_gdal(tmp_path: Path) -> None:
    wr = CogWriter(tmp_path / "f.tif", width=8, height=8, count=1, dtype="float32")
    assert type(wr) is GdalCogWriter
