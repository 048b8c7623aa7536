"""Where published files go: a local folder, or a prefix in an object store (S3, GCS, Azure).

A :class:`Store` puts, reads and deletes objects by key (``<item id>/<file>``). Every put
is atomic: a local file is written under a temporary name and renamed (or hard-linked
when it is on the same file system: a COG is published as written, not copied), an object
appears whole or not at all. Object stores go through obstore (:class:`ObjectStore`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..errors import PublishError
from .redact import redact, redact_text

log = logging.getLogger(__name__)


class Store(Protocol):
    """Object storage under one root (a folder or an object store prefix)."""

    url: str
    """The root, for messages (credentials redacted)."""

    def href(self, key: str) -> str:
        """Absolute href of ``key`` (a path or an ``s3://``/``gs://``/``az://`` URL)."""

    def put_file(self, key: str, path: Path, media_type: str) -> None:
        """Upload a file."""

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        """Write a JSON document."""

    def get_json(self, key: str) -> dict[str, Any] | None:
        """Read a JSON document, None when missing."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    def delete(self, key: str) -> None:
        """Delete ``key`` (no error when missing)."""

    def list_keys(self) -> Iterator[str]:
        """All keys under the root."""


def dump_json(doc: dict[str, Any]) -> bytes:
    """Deterministic, readable JSON bytes."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


class LocalStore:
    """A folder on a local file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise ValueError(f"key {key!r} escapes {self.root}")
        return p

    def href(self, key: str) -> str:
        return str(self._path(key))

    def _atomic(self, key: str, write: Any) -> None:
        from ..errors import OutputError
        from ..fsutil import atomic_path

        dest = self._path(key)
        try:
            with atomic_path(dest, suffix=".part") as tmp, tmp.open("wb") as f:
                write(f)
        except OutputError as err:
            raise PublishError(str(err)) from err
        except OSError as err:
            raise PublishError(f"cannot write {dest}: {err}") from err

    def put_file(self, key: str, path: Path, media_type: str) -> None:
        """Link ``path`` into place when it is on the same file system (no copy), else copy it."""
        if self._link(key, Path(path)):
            return

        def write(f: Any) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        self._atomic(key, write)

    def _link(self, key: str, path: Path) -> bool:
        from ..errors import OutputError
        from ..fsutil import tmp_beside

        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = tmp_beside(dest.parent, dest.name, ".link")
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
        except (OSError, OutputError):  # another file system, no hard links (network/FUSE mounts)
            return False
        try:
            os.replace(tmp, dest)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        self._atomic(key, lambda f: f.write(dump_json(doc)))

    def get_json(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        try:
            return json.loads(p.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise PublishError(f"cannot read {p}: {err}") from err

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        p = self._path(key)
        p.unlink(missing_ok=True)
        if p.parent != self.root and p.parent.exists() and not any(p.parent.iterdir()):
            p.parent.rmdir()

    def list_keys(self) -> Iterator[str]:
        if self.root.exists():
            for p in sorted(self.root.rglob("*")):
                if p.is_file() and not p.name.startswith("."):
                    yield p.relative_to(self.root).as_posix()


#: URL schemes of the object stores (obstore): S3 and S3-compatible, Google Cloud Storage, Azure Blob.
OBJECT_SCHEMES = ("s3", "gs", "az")


class ObjectStore:
    """A prefix in an object store bucket/container, through obstore: ``s3://bucket/prefix``
    (AWS or S3-compatible), ``gs://bucket/prefix`` (Google Cloud Storage) or
    ``az://container/prefix`` (Azure Blob).

    Credentials come from the usual chains, never from the URL: S3 through boto3's chain
    (environment, profiles, web identity, container and instance roles) when boto3 is
    installed, else obstore's own (environment, container/instance roles); GCS and Azure
    through obstore's (``GOOGLE_*`` / ``AZURE_*`` variables, service accounts, managed
    identities; ``AZURE_STORAGE_USE_EMULATOR=true`` for Azurite). ``endpoint`` points at an
    S3-compatible server, a GCS emulator or an Azure endpoint. Uploads of large files are
    multipart; an object appears whole or not at all.

    Args:
        url: ``<scheme>://<bucket>/<prefix>``.
        endpoint: service endpoint URL (``http://`` allowed, e.g. MinIO, Azurite, fake-gcs-server).
        options: more obstore configuration (``S3Config`` / ``GCSConfig`` / ``AzureConfig`` keys).
        retry: obstore ``RetryConfig`` (default: obstore's, about 10 retries with backoff).
    """

    def __init__(self, url: str, *, endpoint: str | None = None, options: dict[str, Any] | None = None,
                 retry: dict[str, Any] | None = None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in OBJECT_SCHEMES or not parts.hostname:
            raise PublishError(f"not an object store URL: {redact(url)}; expected s3://, gs:// or az://bucket/prefix")
        if parts.username or parts.password:
            raise PublishError(
                f"do not put credentials in the {parts.scheme}:// URL; use the provider's credential chain "
                "(environment variables, profile, instance/container role)"
            )
        self.scheme = parts.scheme
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.endpoint = endpoint
        self.url = redact(f"{self.scheme}://{self.bucket}/{self.prefix}")
        self.retry = retry
        self.store = self._open(endpoint, dict(options or {}))

    def _open(self, endpoint: str | None, options: dict[str, Any]) -> Any:
        from ..errors import require

        require("obstore", "stores")
        from obstore.store import AzureStore, GCSStore, S3Store

        http = bool(endpoint and endpoint.startswith("http://"))
        kw: dict[str, Any] = {"client_options": {"allow_http": True} if http else None, "retry_config": self.retry}
        try:
            if self.scheme == "s3":
                return self._s3(S3Store, endpoint, options, kw)
            if self.scheme == "gs":
                cfg = {**({"base_url": endpoint} if endpoint else {}), **options}
                return GCSStore(self.bucket, config=cfg or None, **kw)
            cfg = {**({"endpoint": endpoint} if endpoint else {}), **options}
            return AzureStore(self.bucket, config=cfg or None, **kw)
        except Exception as err:  # obstore raises its own errors for bad configuration
            raise PublishError(f"cannot open {self.url}: {redact_text(str(err))}") from err

    def _s3(self, cls: Any, endpoint: str | None, options: dict[str, Any], kw: dict[str, Any]) -> Any:
        from ..settings import aws_region

        cfg: dict[str, Any] = {"region": aws_region(), **({"endpoint": endpoint} if endpoint else {})}
        if endpoint:
            cfg["virtual_hosted_style_request"] = False  # S3-compatible servers: path-style
        cfg.update(options)
        provider = _boto3_provider()
        if provider is not None:
            return cls(self.bucket, config=cfg, credential_provider=provider, **kw)
        return cls(self.bucket, config=cfg, **kw)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def href(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{self._key(key)}"

    def _call(self, what: str, key: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from obstore.exceptions import BaseError

        try:
            return fn(self.store, *args, **kw)
        except (BaseError, OSError) as err:
            raise PublishError(f"{self.scheme} {what} failed for {redact(self.href(key))}: {redact_text(str(err))}") from err

    def put_file(self, key: str, path: Path, media_type: str) -> None:
        import obstore

        self._call("upload", key, obstore.put, self._key(key), Path(path), attributes={"Content-Type": media_type})

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        import obstore

        ctype = "application/geo+json" if doc.get("type") == "Feature" else "application/json"
        self._call("put", key, obstore.put, self._key(key), dump_json(doc), attributes={"Content-Type": ctype})

    def get_json(self, key: str) -> dict[str, Any] | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            data = obstore.get(self.store, self._key(key)).bytes()
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as err:  # noqa: BLE001 - obstore errors and network failures alike
            raise PublishError(f"{self.scheme} get failed for {redact(self.href(key))}: {redact_text(str(err))}") from err
        try:
            return json.loads(bytes(data))  # type: ignore[no-any-return]
        except ValueError as err:
            raise PublishError(f"{redact(self.href(key))} is not JSON: {err}") from err

    def exists(self, key: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(self.store, self._key(key))
        except (NotFoundError, FileNotFoundError):
            return False
        except Exception as err:  # noqa: BLE001
            raise PublishError(f"{self.scheme} head failed for {redact(self.href(key))}: {redact_text(str(err))}") from err
        return True

    def delete(self, key: str) -> None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.delete(self.store, self._key(key))
        except (NotFoundError, FileNotFoundError):
            return
        except Exception as err:  # noqa: BLE001
            raise PublishError(f"{self.scheme} delete failed for {redact(self.href(key))}: {redact_text(str(err))}") from err

    def list_keys(self) -> Iterator[str]:
        import obstore

        n = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call("list", "", obstore.list, f"{self.prefix}/" if self.prefix else None)
        try:
            for page in pages:
                for meta in page:
                    yield str(meta["path"])[n:]
        except Exception as err:  # noqa: BLE001
            raise PublishError(f"{self.scheme} list failed for {self.url}: {redact_text(str(err))}") from err


#: The historical name of the S3 store (all three object stores are one class now).
S3Store = ObjectStore


def _boto3_provider() -> Any:
    """obstore's provider over boto3's credential chain (env, profiles, SSO, web identity, container and
    instance roles); None without boto3 or without any credentials (obstore's own chain then)."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    try:
        return Boto3CredentialProvider()
    except ValueError:  # boto3 found no credentials: let obstore try (and fail with its message)
        return None


def object_stac_io(endpoint: str | None = None) -> Any:
    """A StacIO (pystac-client's ``StacApiIO``) that reads and writes ``s3://``, ``gs://`` and
    ``az://`` hrefs through :class:`ObjectStore` (other hrefs as usual).

    Use it to open a catalog published to an object store, with pystac or pystac-client:
    ``Client.from_file("s3://bucket/prefix/catalog.json", stac_io=object_stac_io(endpoint))``.
    """
    from urllib.parse import urlsplit

    from pystac_client.stac_api_io import StacApiIO

    stores: dict[tuple[str, str], ObjectStore] = {}

    def split(href: str) -> tuple[ObjectStore, str] | None:
        parts = urlsplit(href)
        if parts.scheme not in OBJECT_SCHEMES:
            return None
        key = (parts.scheme, parts.netloc)
        if key not in stores:
            stores[key] = ObjectStore(f"{parts.scheme}://{parts.netloc}", endpoint=endpoint)
        return stores[key], parts.path.lstrip("/")

    class ObjectStacIO(StacApiIO):  # type: ignore[misc]
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            hit = split(str(source))
            if hit is None:
                return super().read_text(source, *args, **kwargs)  # type: ignore[no-any-return]
            doc = hit[0].get_json(hit[1])
            if doc is None:
                raise PublishError(f"{redact(str(source))} not found")
            return json.dumps(doc)

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            hit = split(str(dest))
            if hit is None:
                return super().write_text(dest, txt, *args, **kwargs)  # type: ignore[no-any-return]
            hit[0].put_json(hit[1], json.loads(txt))
            return None

    return ObjectStacIO()


#: The historical name (it reads every object store now).
s3_stac_io = object_stac_io
