"""Session fixture: Azurite (Microsoft's Azure Storage emulator, npm) on loopback for the object-store tests.

``scripts/install-services.sh`` installs it into ``.services/azurite`` (npm, pinned); without it
the Azure tests skip with the command to run (and fail under ``CI=true``). Azurite's account
``devstoreaccount1`` and its key are the emulator's published development credentials.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._fx_services import _missing, free_port

ROOT = Path(__file__).parents[1]
#: Azurite's well-known development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"azurite exited with {proc.returncode}: {err[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"azurite not listening on {port} after {timeout} s")


def azurite_bin() -> str | None:
    local = ROOT / ".services" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Blob endpoint ``http://127.0.0.1:<port>/devstoreaccount1`` of an in-memory Azurite."""
    exe = azurite_bin()
    if exe is None:
        _missing("Azurite is not installed: run scripts/install-services.sh (npm install azurite)")
    port = free_port()
    work = tempfile.mkdtemp(prefix="azurite-")
    proc = subprocess.Popen([exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--skipApiVersionCheck", "--silent", "--loose"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    try:
        _wait_port(port, proc, timeout=60)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def azure_container(azurite: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh container per test; the Azure environment (obstore's and GDAL's) points at Azurite."""
    import re

    from azure.storage.blob import BlobServiceClient

    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={azurite};")
    for k, v in {"AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
                 "AZURE_STORAGE_CONNECTION_STRING": conn}.items():
        monkeypatch.setenv(k, v)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    BlobServiceClient.from_connection_string(conn).create_container(name)
    return name
