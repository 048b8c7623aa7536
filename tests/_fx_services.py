"""Session fixtures: real services on loopback for the publishing tests.

* ``pgstac_api``: stac-fastapi-pgstac (Transactions on) over a throwaway PostgreSQL +
  PostGIS cluster with the pgstac schema (``pypgstac migrate``), started once per session.
* ``s3_server``: a moto S3 server (in a thread); ``s3_env`` points the AWS/GDAL environment
  at it for one test, ``s3_bucket`` also makes a fresh bucket.
* ``stac_validate``: offline JSON-schema validation against ``tests/schemas/``.

The cluster is started as the ``postgres`` user when running as root (initdb refuses
root). When the PostgreSQL/PostGIS binaries are missing the API tests skip with the
command that installs them; under ``CI=true`` they fail instead, so a CI run that lost
its install step cannot go green.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SCHEMAS = Path(__file__).parent / "schemas"
INSTALL_HINT = "run scripts/install-services.sh as root (apt-get install postgresql-$V-postgis-3)"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail fast when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service binaries missing under CI: {reason}; {INSTALL_HINT}")
    pytest.skip(f"{reason}; {INSTALL_HINT}")


def pg_bin() -> Path | None:
    """``/usr/lib/postgresql/<highest major>/bin`` with initdb, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], **kw: Any) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if res.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-2000:]}")


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster with database ``postgis`` migrated to pgstac; yields PG* env."""
    pgbin = pg_bin()
    if pgbin is None:
        _missing("no PostgreSQL server in /usr/lib/postgresql/*/bin")
    major = pgbin.parts[-2]
    if not Path(f"/usr/share/postgresql/{major}/extension/postgis.control").exists():
        _missing(f"PostGIS is not installed for PostgreSQL {major}")
    base = Path(tempfile.mkdtemp(prefix="s2sr-pgstac-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    data = base / "data"
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off")
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "username",
           "PGPASSWORD": "password", "PGDATABASE": "postgis"}
    try:
        _run(_as_pg_user([str(pgbin / "initdb"), "-D", str(data), "-U", "username", "-A", "trust",
                          "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]))
        _run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"),
                          "-w", "-t", "30", "-o", opts, "start"]))
        full = {**os.environ, **env}
        _run([str(pgbin / "createdb"), "postgis"], env=full)
        _run([sys.executable, "-m", "pypgstac.pypgstac", "migrate"], env=full)
        yield env
    finally:
        subprocess.run(_as_pg_user([str(pgbin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pgstac_api(postgres_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of stac-fastapi-pgstac with the Transactions extension, on a free loopback port."""
    port = free_port()
    cwd = tmp_path_factory.mktemp("pgstac-api")  # no stray .env file is read from here
    log = (cwd / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **postgres_db, "ENABLE_TRANSACTIONS_EXTENSIONS": "true"},
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_mgmt/ping", timeout=90, proc=proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
          "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "0"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on loopback (one per session)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """For one test: AWS credentials and GDAL's S3 settings pointing at the moto server."""
    for k, v in {**S3_ENV, "AWS_S3_ENDPOINT": s3_server.removeprefix("http://")}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test (name from the test name); the S3 environment is set."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") or "bucket"
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


def _schema_registry() -> Any:
    from referencing import Registry, Resource

    resources = []
    for path in SCHEMAS.rglob("*.json"):
        uri = "https://" + path.relative_to(SCHEMAS).as_posix()
        resources.append((uri, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)


@pytest.fixture(scope="session")
def stac_validate() -> Callable[[dict[str, Any]], None]:
    """Validate a STAC document (item, collection, catalog) offline: core + every extension."""
    from jsonschema import Draft7Validator

    registry = _schema_registry()
    core = {"Feature": "item-spec/json-schema/item.json", "Collection": "collection-spec/json-schema/collection.json",
            "Catalog": "catalog-spec/json-schema/catalog.json"}

    def check(doc: dict[str, Any]) -> None:
        version = doc["stac_version"]
        uris = [f"https://schemas.stacspec.org/v{version}/{core[doc['type']]}", *doc.get("stac_extensions", [])]
        for uri in uris:
            try:
                schema = registry.contents(uri)
            except Exception as err:  # noqa: BLE001
                raise AssertionError(f"schema {uri} is not vendored in tests/schemas") from err
            errors = sorted(Draft7Validator(schema, registry=registry).iter_errors(doc), key=str)
            assert not errors, f"{doc.get('id')} fails {uri}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])

    return check
