"""Windowed COG reads over loopback HTTP: bytes fetched, pixels, faults, re-signing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio

from s2sr_cloud.catalog.assets import band_assets
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.catalog.signing import SignedHref
from s2sr_cloud.errors import RasterReadError
from s2sr_cloud.grid import grid_from_metadata
from s2sr_cloud.io.env import HttpParams
from s2sr_cloud.io.read import ItemSource

from ._fx_stac import SAMPLE, RangeServer, sample_items

VA = "sentinel-2-l1c/S2A_18SVG_20160112_0_L1C"
FAST = HttpParams(max_retry=2, retry_delay_s=0.05, timeout_s=2, connect_timeout_s=2, low_speed_time_s=2)


def _source(base: str, http: HttpParams = FAST, signer=None, b04: str | None = None) -> ItemSource:
    d = next(i for i in sample_items(base) if i["id"] == "S2A_18SVG_20160112_0_L1C")
    if b04:
        d["assets"]["red"]["href"] = b04
    item = pystac.Item.from_dict(d)
    assets = band_assets(item, resolve_catalog("sample"))
    grid = grid_from_metadata(item.properties, item.assets["red"].to_dict())
    assert grid is not None
    return ItemSource(assets, grid, signer=signer, http=http)


def _local(band: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    with rasterio.open(SAMPLE / VA / f"{band}.tif") as ds:
        return ds.read(1, window=((rows[0], rows[1]), (cols[0], cols[1])))


def test_small_window_reads_few_blocks_and_exact_pixels(cog_server: RangeServer) -> None:
    base = cog_server.prefix()
    rows, cols = (240, 300), (240, 300)  # 600 m x 600 m at 10 m
    with _source(base) as src:
        b10 = src.read(10, rows, cols)
        b20 = src.read(20, (120, 150), (120, 150))
        b60 = src.read(60, (40, 50), (40, 50))
    assert b10.dtype == np.float32 and b10.shape == (4, 60, 60)
    assert np.array_equal(b10[2], _local("B04", rows, cols))  # B04 is third of B02 B03 B04 B08
    assert np.array_equal(b20[3], _local("B8A", (120, 150), (120, 150)))
    assert b60.shape == (2, 10, 10)
    prefix = base.rsplit("/", 1)[1]
    for band in ("B02", "B03", "B04", "B08"):  # 10 m COGs: 2 x 2 of their 5 x 5 blocks + the header
        size = (SAMPLE / VA / f"{band}.tif").stat().st_size
        nbytes, nreq = cog_server.fetched(f"{prefix}/{VA}/{band}.tif")
        assert 0 < nbytes < 0.4 * size, (band, nbytes, size)
        assert nreq <= 4  # HEAD, header, 2 merged block ranges
    total = sum(p.stat().st_size for p in (SAMPLE / VA).glob("*.tif"))
    assert cog_server.fetched(prefix)[0] < 0.45 * total
    mine = [r for r in cog_server.log if prefix in r.path]
    assert all(r.path.endswith(".tif") for r in mine)  # no directory listing, no .aux.xml/.ovr probes
    assert all(r.method == "HEAD" or r.range for r in mine)  # never a whole file


def _blocks(path, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(needed, others): byte ranges of the COG blocks intersecting the window, and of the rest."""
    with rasterio.open(path) as ds:
        bh, bw = ds.block_shapes[0]
        needed, others = [], []
        for r in range(-(-ds.height // bh)):
            for c in range(-(-ds.width // bw)):
                off = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                size = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                hit = r * bh < rows[1] and (r + 1) * bh > rows[0] and c * bw < cols[1] and (c + 1) * bw > cols[0]
                (needed if hit else others).append((off, off + size))
    return needed, others


def test_only_needed_blocks_are_fetched(cog_server: RangeServer) -> None:
    """Beyond GDAL's header read, every range fetched lies on blocks under the window."""
    base = cog_server.prefix()
    prefix = base.rsplit("/", 1)[1]
    win = {10: ((240, 300), (240, 300)), 20: ((120, 150), (120, 150)), 60: ((40, 50), (40, 50))}
    with _source(base) as src:
        for res, (rows, cols) in win.items():
            src.read(res, rows, cols)
    for band, ref in src.assets.items():
        rows, cols = win[ref.resolution]
        needed, others = _blocks(SAMPLE / VA / f"{band}.tif", rows, cols)
        header = 32768
        ranges = [tuple(int(v) for v in r.range.removeprefix("bytes=").split("-"))
                  for r in cog_server.log if r.path.endswith(f"{prefix}/{VA}/{band}.tif") and r.range]
        body = [(a, b + 1) for a, b in ranges if a >= header]
        for a, b in body:  # each range after the header touches needed blocks only
            assert any(a < e and s < b for s, e in needed), (band, a, b)
            assert not any(max(a, s) < min(b, e) and s >= header for s, e in others), (band, a, b)
        fetched = sum(b - a for a, b in ranges)
        assert fetched <= header + sum(e - s for s, e in needed) + 16384, band


def test_repeated_reads_hit_the_cache(cog_server: RangeServer) -> None:
    base = cog_server.prefix()
    prefix = base.rsplit("/", 1)[1]
    with _source(base) as src:
        src.read(10, (0, 60), (0, 60))
        first = cog_server.fetched(prefix)
        src.read(10, (10, 50), (10, 50))  # inside the same blocks: no new request
        assert cog_server.fetched(prefix) == first


@pytest.mark.parametrize(("status", "words"), [(404, "not found"), (403, "access denied")])
def test_http_errors_are_clear(cog_server: RangeServer, status: int, words: str) -> None:
    base = cog_server.prefix()
    cog_server.fault(f"{base}/{VA}/B04.tif", *[status] * 5)
    with _source(base) as src, pytest.raises(RasterReadError, match=f"band B04 .*{words}"):
        src.read(10, (0, 60), (0, 60))


def test_5xx_then_success_is_retried(cog_server: RangeServer) -> None:
    base = cog_server.prefix()
    prefix = base.rsplit("/", 1)[1]
    cog_server.fault(f"{base}/{VA}/B02.tif", 500)
    cog_server.fault(f"{base}/{VA}/B03.tif", 429)
    with _source(base) as src:
        b10 = src.read(10, (0, 60), (0, 60))
    assert np.array_equal(b10[0], _local("B02", (0, 60), (0, 60)))
    statuses = [r.status for r in cog_server.log if prefix in r.path and r.path.endswith("B02.tif")]
    assert statuses[0] == 500 and 206 in statuses


def test_persistent_5xx_gives_up_with_a_clear_error(cog_server: RangeServer) -> None:
    base = cog_server.prefix()
    cog_server.fault(f"{base}/{VA}/B03.tif", *[503] * 10)
    with _source(base) as src, pytest.raises(RasterReadError, match="band B03 .*503"):
        src.read(10, (0, 60), (0, 60))


def test_slow_server_times_out_or_is_retried(cog_server: RangeServer) -> None:
    slow = HttpParams(max_retry=0, timeout_s=1, connect_timeout_s=1, low_speed_time_s=1)
    base = cog_server.prefix()
    cog_server.fault(f"{base}/{VA}/B08.tif", ("slow", 1.6))
    with _source(base, http=slow) as src, pytest.raises(RasterReadError, match="band B08"):
        src.read(10, (0, 60), (0, 60))
    base = cog_server.prefix()
    cog_server.fault(f"{base}/{VA}/B08.tif", ("slow", 1.6))
    with _source(base, http=HttpParams(max_retry=2, retry_delay_s=0.05, timeout_s=1, low_speed_time_s=1)) as src:
        b10 = src.read(10, (0, 60), (0, 60))
    assert np.array_equal(b10[3], _local("B08", (0, 60), (0, 60)))


def test_truncated_cog_is_a_read_error(cog_server: RangeServer) -> None:
    data = (SAMPLE / VA / "B04.tif").read_bytes()
    bad = cog_server.root / "broken"
    bad.mkdir(exist_ok=True)
    (bad / "B04.tif").write_bytes(data[: len(data) // 2])
    base = cog_server.prefix()
    with _source(base, b04=f"{base}/broken/B04.tif") as src, pytest.raises(RasterReadError, match="band B04"):
        src.read(10, (420, 540), (420, 540))  # the last blocks lie past the cut


def test_local_files_read_the_same(cog_server: RangeServer) -> None:
    d = next(i for i in sample_items(str(SAMPLE)) if i["id"] == "S2A_18SVG_20160112_0_L1C")
    item = pystac.Item.from_dict(d)
    grid = grid_from_metadata(item.properties, item.assets["red"].to_dict())
    assert grid is not None
    with ItemSource(band_assets(item, resolve_catalog("sample")), grid) as src:
        assert np.array_equal(src.read(60, (0, 90), (0, 90))[0], _local("B01", (0, 90), (0, 90)))


def test_hrefs_are_re_signed_before_expiry(cog_server: RangeServer) -> None:
    base = cog_server.prefix()
    calls: list[str] = []

    def signer(href: str) -> SignedHref:  # a real signer with a short-lived token
        calls.append(href)
        return SignedHref(f"{href}?sig={len(calls)}", datetime.now(UTC) + timedelta(seconds=60))

    with _source(base, signer=signer) as src:
        src.read(60, (0, 10), (0, 10))
        src.read(60, (0, 10), (0, 10))
    # 60 s left is within the 300 s margin: each read re-signed both 60 m bands
    assert len(calls) == 4
    assert any("sig=2" in r.path for r in cog_server.log)


def test_pipeline_copies_do_not_touch_the_package(cog_server: RangeServer) -> None:
    assert (cog_server.root / VA / "B04.tif").stat().st_size == (SAMPLE / VA / "B04.tif").stat().st_size
    assert not (SAMPLE / "broken").exists()
    shutil.rmtree(cog_server.root / "broken", ignore_errors=True)


# --- S3 reads signed through boto3's credential chain (container role) --------------------
class _S3Recorder:
    """A loopback server that answers GDAL's ``/vsis3/`` range GETs from a folder and records each
    request's ``Authorization``/``x-amz-security-token``; ``/creds`` is an ECS-style container
    credentials endpoint (what ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` points at in a task)."""

    def __init__(self, root: Any, creds: dict[str, str]) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        rec = self.requests = []  # type: ignore[var-annotated]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_PUT(self) -> None:  # noqa: N802 - IMDSv2 session token
                body = b"imds-session-token"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                role = "/latest/meta-data/iam/security-credentials/"
                if self.path == "/creds" or self.path == role + "s2sr-role":
                    body = json.dumps({"Code": "Success", "Type": "AWS-HMAC", **creds}).encode()
                    self.send_response(200)
                elif self.path == role:
                    body = b"s2sr-role"
                    self.send_response(200)
                elif self.path.startswith("/latest/"):
                    body = b""
                    self.send_response(404)
                else:
                    rec.append((self.path, self.headers.get("Authorization"), self.headers.get("x-amz-security-token")))
                    path = root / self.path.split("?")[0].lstrip("/").split("/", 1)[1]  # /bucket/key
                    data = path.read_bytes()
                    a, _, b = (self.headers.get("Range") or "bytes=0-").removeprefix("bytes=").partition("-")
                    end = min(int(b) if b else len(data) - 1, len(data) - 1)
                    body = data[int(a) : end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {a}-{end}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(("role", "unsigned"), [("container", False), ("instance", False), ("container", True)])
def test_s3_reads_are_signed_with_a_container_or_instance_role(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                               role: str, unsigned: bool) -> None:
    """No keys in the environment, only a container credentials endpoint (ECS/EKS) or an instance
    metadata service (EC2, IMDSv2), both on loopback: boto3's chain finds the role's temporary
    credentials and GDAL signs with them (``S2SR_S3_UNSIGNED=YES``: unsigned)."""
    from pathlib import Path

    from s2sr_cloud.catalog.assets import AssetRef
    from s2sr_cloud.io.read import probe_grid

    name = f"B02-{role}-{'u' if unsigned else 's'}.tif"  # GDAL caches per URL: one name per case
    shutil.copy(Path(__file__).parent / "data" / "T18SVG_crop240" / "T18SVG_20160112_B02.tif", tmp_path / name)
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    srv = _S3Recorder(tmp_path, {"AccessKeyId": "ASIACONTAINERROLE", "SecretAccessKey": "role-secret",
                                 "Token": "role-session-token", "Expiration": expires})
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "S2SR_S3_UNSIGNED"):
        monkeypatch.delenv(k, raising=False)
    if role == "container":
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{srv.port}/creds",
               "AWS_EC2_METADATA_DISABLED": "true"}  # never ask a real instance metadata service from a test
    else:
        monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{srv.port}/",
               "AWS_EC2_METADATA_DISABLED": "false"}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_S3_ENDPOINT": f"127.0.0.1:{srv.port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
           "AWS_DEFAULT_REGION": "us-east-1", "GDAL_HTTP_MAX_RETRY": "0"}
    if unsigned:
        env["S2SR_S3_UNSIGNED"] = "YES"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        grid = probe_grid(AssetRef("B02", "B02", f"s3://cogs/{name}", 10, 0, "test", 0), http=HttpParams(max_retry=0))
    finally:
        srv.stop()
    assert grid.crs == "EPSG:32618" and grid.shape == (240, 240)
    assert srv.requests, "GDAL made no request"
    for _, auth, token in srv.requests:
        if unsigned:
            assert auth is None and token is None
        else:
            assert auth is not None and "Credential=ASIACONTAINERROLE/" in auth and token == "role-session-token"


# --- local band folders: baseline >= 04.00 harmonised like STAC items ---------------------
def _shifted_copy(dst: Any, name: str = "T18SVG_20160112_{}.tif", add: int = 1000) -> Any:
    """The crop's band files with ``add`` DN on every valid pixel (what baseline >= 04.00 stores for
    the same reflectance), under ``name``."""
    from pathlib import Path

    src = Path(__file__).parent / "data" / "T18SVG_crop240"
    dst.mkdir(parents=True)
    for p in sorted(src.glob("*_B*.tif")):
        band = p.stem.rsplit("_", 1)[1]
        with rasterio.open(p) as ds:
            data, prof = ds.read(), ds.profile
        with rasterio.open(dst / name.format(band), "w", **prof) as out:
            out.write(np.where(data > 0, data + add, 0).astype(data.dtype))
    return dst


def test_band_folder_of_a_baseline_04_product_is_harmonised(tmp_path: Any) -> None:
    """A SAFE name (…_N0509_…) or an MTD_MSIL2A.xml BOA_ADD_OFFSET says "offset in the data": the
    reader removes it and gives back exactly the original DN."""
    from pathlib import Path

    from s2sr_cloud.io.bandfiles import BandFilesSource, band_offset, find_band_files

    orig = find_band_files(Path(__file__).parent / "data" / "T18SVG_crop240")
    safe = _shifted_copy(tmp_path / "S2A_MSIL2A_20160112T155612_N0509_R054_T18SVG_20160112T999999.SAFE" / "bands")
    mtd = _shifted_copy(tmp_path / "product" / "GRANULE" / "IMG_DATA")
    (tmp_path / "product" / "MTD_MSIL2A.xml").write_text(
        "<Product_Image_Characteristics><BOA_ADD_OFFSET_VALUES_LIST>"
        '<BOA_ADD_OFFSET band_id="0">-1000</BOA_ADD_OFFSET><BOA_ADD_OFFSET band_id="1">-1000</BOA_ADD_OFFSET>'
        "</BOA_ADD_OFFSET_VALUES_LIST></Product_Image_Characteristics>")
    assert band_offset(orig["B02"].parent, orig) == (0, "no baseline; sensed 2016-01-12, before 2022-01-25")
    for folder, why in ((safe, "baseline 05.09"), (mtd, "ADD_OFFSET in MTD_MSIL2A.xml")):
        files = find_band_files(folder)
        offset, reason = band_offset(folder, files)
        assert offset == 1000 and why in reason, reason
        with BandFilesSource(orig) as a, BandFilesSource(files, offset=offset, reason=reason) as b:
            for res in (10, 20, 60):
                n = 240 * 10 // res
                np.testing.assert_array_equal(a.read(res, (0, n), (0, n)), b.read(res, (0, n), (0, n)))


def test_band_folder_after_2022_without_baseline_is_refused(tmp_path: Any) -> None:
    """No metadata, no SAFE name, sensed after 2022-01-25 (file names renamed for the rule, which reads
    only the names): a one-line error naming --boa-offset, exit 2, nothing written; the flag decides."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from s2sr_cloud.errors import InputError
    from s2sr_cloud.io.bandfiles import band_offset, find_band_files

    folder = _shifted_copy(tmp_path / "bands", name="T18SVG_20230615T155821_{}.tif")
    files = find_band_files(folder)
    with pytest.raises(InputError, match="--boa-offset 1000"):
        band_offset(folder, files)
    assert band_offset(folder, files, 1000) == (1000, "--boa-offset 1000")
    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    s2sr = str(Path(sys.executable).parent / "s2sr")
    r = subprocess.run([s2sr, "superres", str(folder), "--out", str(tmp_path / "sr.tif"), "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "--boa-offset" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "sr.tif").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bands"]


def test_a_refused_connection_fails_in_seconds_not_after_gdal_retries() -> None:
    """GDAL retries a refused connection with growing delays (~50 s by default); the reader
    checks the server once, briefly, and says what is wrong."""
    import time

    from s2sr_cloud.errors import RasterReadError
    from s2sr_cloud.io.env import HttpParams
    from s2sr_cloud.io.read import check_connect

    t0 = time.monotonic()
    with pytest.raises(RasterReadError, match=r"band B05 .*cannot connect.*refused"):
        check_connect("http://127.0.0.1:9/B05.tif", "B05", HttpParams())  # port 9 (discard): nothing listens
    assert time.monotonic() - t0 < 10
    check_connect("/a/local/file.tif", "B05", HttpParams())  # other schemes: nothing to check
