"""Loopback services for the STAC-in tests: a Range HTTP server for COGs and STAC APIs.

* :class:`RangeServer` — stdlib ``ThreadingHTTPServer`` serving a folder with HTTP Range
  support (206/416), a log of every request (method, path, Range, status, body bytes) and
  fault injection per path (HTTP status, slow answers, cut connections). The first path
  segment is a cache-busting prefix that is ignored (``/<prefix>/a/b.tif`` serves
  ``a/b.tif``): GDAL caches what it fetched per URL for the whole process, so each test
  reads through its own prefix.
* ``stac_apis`` — three ``rustac serve`` processes (read-only in-memory STAC APIs, paging
  with ``next`` links): the real Earth Search v1 and Planetary Computer documents of
  ``tests/data/stac`` (asset hrefs rewritten to the Range server, never the network) and
  the bundled sample catalog (hrefs on the Range server, pointing at its real COGs).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

STAC_DATA = Path(__file__).parent / "data" / "stac"
SAMPLE = Path(__file__).parents[1] / "s2sr_cloud" / "sample"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    nbytes: int
    auth: str | None = None


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:  # quiet
        pass

    def _record(self, status: int, n: int) -> None:
        auth = self.headers.get("Authorization")
        self.server.log.append(Request(self.command, self.path, self.headers.get("Range"), status, n,  # type: ignore[attr-defined]
                                       auth[:48] if auth else None))

    def translate_path(self, path: str) -> str:
        parts = path.split("?", 1)[0].lstrip("/").split("/", 1)
        return super().translate_path("/" + (parts[1] if len(parts) > 1 else ""))

    def _fault(self) -> Any:
        faults = self.server.faults.get(self.path.split("?", 1)[0])  # type: ignore[attr-defined]
        return faults.pop(0) if faults else None

    def send_head(self) -> Any:
        fault = self._fault()
        if isinstance(fault, int):
            self.send_response(fault)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(fault, 0)
            return None
        if isinstance(fault, tuple) and fault[0] == "slow":
            time.sleep(fault[1])
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(HTTPStatus.NOT_FOUND)
            self._record(404, 0)
            return None
        f = open(path, "rb")  # noqa: SIM115 - closed by the base class
        size = os.fstat(f.fileno()).st_size
        rng = self.headers.get("Range")
        m = _RANGE.match(rng.strip()) if rng else None
        if m:
            a, b = m.groups()
            start, end = (max(0, size - int(b)), size - 1) if a == "" else (int(a), int(b) if b else size - 1)
            end = min(end, size - 1)
            if start >= size or start > end:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(416, 0)
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            length = end - start + 1
        else:
            start, length = 0, size
            self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        f.seek(start)
        self._range = (start, length)
        self._record(206 if m else 200, 0 if self.command == "HEAD" else length)
        return f

    def copyfile(self, source: Any, out: Any) -> None:
        left = self._range[1]
        while left > 0:
            chunk = source.read(min(1 << 20, left))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:  # clients that hang up early
        pass


@dataclass
class RangeServer:
    """Range-capable HTTP server over ``root`` on 127.0.0.1, with request log and faults."""

    root: Path
    log: list[Request] = field(default_factory=list)
    faults: dict[str, list[Any]] = field(default_factory=dict)

    def start(self) -> RangeServer:
        self.httpd = _QuietServer(("127.0.0.1", 0), partial(_Handler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        self.httpd.log = self.log  # type: ignore[attr-defined]
        self.httpd.faults = self.faults  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def prefix(self) -> str:
        """A fresh cache-busting URL prefix (``http://127.0.0.1:P/<uuid>``)."""
        return f"{self.url}/{uuid.uuid4().hex[:12]}"

    def fault(self, url: str, *behaviours: Any) -> None:
        """Queue behaviours for the next requests of ``url``: an HTTP status (int) or
        ``("slow", seconds)``; later requests are served normally."""
        from urllib.parse import urlparse

        self.faults.setdefault(urlparse(url).path, []).extend(behaviours)

    def fetched(self, contains: str = "") -> tuple[int, int]:
        """(body bytes, requests) logged for paths containing ``contains``."""
        reqs = [r for r in self.log if contains in r.path]
        return sum(r.nbytes for r in reqs), len(reqs)


def rewrite_hrefs(doc: dict[str, Any], base: str) -> dict[str, Any]:
    """A copy of an item dict whose asset hrefs point under ``base`` (``<base>/<id>/<key>``)."""
    out = copy.deepcopy(doc)
    for key, asset in out.get("assets", {}).items():
        asset["href"] = f"{base}/{out['id']}/{key}"
        for alt in (asset.get("alternate") or {}).values():
            alt["href"] = f"{base}/{out['id']}/{key}-alternate"
    return out


def sample_items(base: str) -> list[dict[str, Any]]:
    """The sample catalog's items as dicts, asset hrefs on ``base`` (``<base>/<coll>/<id>/B04.tif``)."""
    items = []
    for path in sorted(SAMPLE.glob("*/*/*.json")):
        d = json.loads(path.read_text())
        coll, iid = path.parent.parent.name, path.parent.name
        for a in d["assets"].values():
            a["href"] = f"{base}/{coll}/{iid}/{a['href'].removeprefix('./')}"
        d["links"] = []
        d["collection"] = coll
        items.append(d)
    return items


def hybrid_item(doc: dict[str, Any], sample: dict[str, Any], keys: dict[str, str], *, keep_hrefs: bool = False) -> dict[str, Any]:
    """Test-only item: the metadata of a real catalog ``doc`` (asset keys, baseline, flags)
    with the footprint, projection and (unless ``keep_hrefs``) band hrefs of a ``sample`` item
    (the imagery's own georeference). ``keys`` maps band id → asset key of ``doc``'s catalog."""
    out = copy.deepcopy(doc)
    epsg = sample["properties"].get("proj:epsg")
    out["geometry"], out["bbox"] = sample["geometry"], sample["bbox"]
    out["properties"]["proj:epsg"] = epsg
    out["properties"].pop("proj:code", None)
    by_band = {a["eo:bands"][0]["name"]: a for a in sample["assets"].values()}
    fields = ("proj:shape", "proj:transform") if keep_hrefs else ("href", "proj:shape", "proj:transform")
    for band, key in keys.items():
        if key in out["assets"] and band in by_band:
            asset = out["assets"][key]
            asset.update({k: by_band[band][k] for k in fields})
            asset.pop("proj:bbox", None)
            if "proj:code" in asset:
                asset["proj:code"] = f"EPSG:{epsg}"
        elif key in out["assets"] and not keep_hrefs:  # no sample file for it (the SCL): never read the live href
            del out["assets"][key]
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rustac() -> str:
    exe = Path(sys.executable).parent / "rustac"
    found = str(exe) if exe.exists() else shutil.which("rustac")
    if not found:
        pytest.fail("rustac is not installed: pip install -r requirements-test.txt")
    return found


@dataclass
class Api:
    url: str
    proc: subprocess.Popen[bytes]


def start_rustac(files: list[Path], *, create_collections: bool = False) -> Api:
    port = free_port()
    cmd = [_rustac(), "serve", "--addr", f"127.0.0.1:{port}", *map(str, files)]
    if create_collections:
        cmd.insert(2, "--create-collections")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rustac serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1):
                return Api(url, proc)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(url)


def _dump(path: Path, feats: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def _no_links(src: Path, dst: Path) -> Path:
    """A collection document without its (relative) item links, which rustac would follow."""
    doc = json.loads(src.read_text())
    doc["links"] = []
    dst.write_text(json.dumps(doc))
    return dst


def _features(path: Path) -> list[dict[str, Any]]:
    d = json.loads(path.read_text())
    return list(d["features"]) if d.get("type") == "FeatureCollection" else [d]


@pytest.fixture(scope="session")
def cog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    """The sample's COGs (a copy: tests may add broken files) behind a Range server."""
    root = tmp_path_factory.mktemp("cogs")
    shutil.copytree(SAMPLE, root, dirs_exist_ok=True)
    srv = RangeServer(root).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def stac_apis(cog_server: RangeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``{"earth-search": url, "planetary-computer": url, "sample": url}`` of rustac APIs."""
    d = tmp_path_factory.mktemp("stac")
    es, pc = STAC_DATA / "earth-search-v1", STAC_DATA / "planetary-computer"
    base = f"{cog_server.url}/fixture-assets"
    es_items = [rewrite_hrefs(f, base) for p in sorted((es / "search").glob("*.json")) + sorted((es / "items").glob("*.json"))
                for f in _features(p)]
    pc_items = [rewrite_hrefs(f, base) for p in sorted((pc / "search").glob("*.json")) + sorted((pc / "items").glob("*.json"))
                for f in _features(p)]
    apis = [
        start_rustac([es / "collections" / "sentinel-2-l2a.json", es / "collections" / "sentinel-2-c1-l2a.json",
                      _dump(d / "es.json", es_items)], create_collections=True),
        start_rustac([pc / "collections" / "sentinel-2-l2a.json", _dump(d / "pc.json", pc_items)]),
        start_rustac([*(_no_links(SAMPLE / c / "collection.json", d / f"{c}.json") for c in ("sentinel-2-l1c", "sentinel-2-l2a")),
                      _dump(d / "sample.json", sample_items(f"{cog_server.url}/api"))]),
    ]
    yield dict(zip(("earth-search", "planetary-computer", "sample"), (a.url for a in apis), strict=True))
    for a in apis:
        a.proc.terminate()
        try:
            a.proc.wait(5)
        except subprocess.TimeoutExpired:
            a.proc.kill()
