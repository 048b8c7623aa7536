"""Where published files go: a local folder or an S3(-compatible) bucket prefix.

A :class:`Store` puts, reads and deletes objects by key (``<item id>/<file>``). Every put
is atomic: a local file is written under a temporary name and renamed, an S3 object
appears whole or not at all.
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
    """Object storage under one root (a folder or an S3 prefix)."""

    url: str
    """The root, for messages (credentials redacted)."""

    def href(self, key: str) -> str:
        """Absolute href of ``key`` (a path or an ``s3://`` URL)."""

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
        def write(f: Any) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        self._atomic(key, write)

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


class S3Store:
    """A prefix in an S3 or S3-compatible bucket (credentials from the usual AWS sources)."""

    def __init__(self, url: str, *, endpoint: str | None = None, client: Any = None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise PublishError(f"not an S3 URL: {redact(url)}; expected s3://bucket/prefix")
        if parts.username or parts.password:
            raise PublishError(
                "do not put credentials in the S3 URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        self.bucket = parts.hostname
        self.prefix = parts.path.strip("/")
        self.endpoint = endpoint
        self.url = redact(f"s3://{self.bucket}/{self.prefix}")
        self.client = client or self._client(endpoint)

    @staticmethod
    def _client(endpoint: str | None) -> Any:
        from ..errors import require

        boto3 = require("boto3", "s3")
        from ..settings import aws_region

        region = aws_region()
        return boto3.client("s3", endpoint_url=endpoint, region_name=region)  # type: ignore[attr-defined]

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def href(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kw)
        except (ClientError, BotoCoreError) as err:
            raise PublishError(f"S3 {what} failed for {self.url}: {redact_text(str(err))}") from err

    def put_file(self, key: str, path: Path, media_type: str) -> None:
        self._call("upload", self.client.upload_file, str(path), self.bucket, self._key(key),
                   ExtraArgs={"ContentType": media_type})

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        ctype = "application/geo+json" if doc.get("type") == "Feature" else "application/json"
        self._call("put", self.client.put_object, Bucket=self.bucket, Key=self._key(key),
                   Body=dump_json(doc), ContentType=ctype)

    def get_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise PublishError(f"S3 get failed for {self.href(key)}: {redact_text(str(err))}") from err
        return json.loads(obj["Body"].read())  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise PublishError(f"S3 head failed for {self.href(key)}: {redact_text(str(err))}") from err
        return True

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def list_keys(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        n = len(self.prefix) + 1 if self.prefix else 0
        for page in self._call("list", list, pages):
            for obj in page.get("Contents", []):
                yield obj["Key"][n:]


def s3_stac_io(endpoint: str | None = None) -> Any:
    """A StacIO (pystac-client's ``StacApiIO``) that reads and writes ``s3://`` hrefs with boto3.

    Use it to open a catalog published to S3, with pystac or pystac-client:
    ``Client.from_file("s3://bucket/prefix/catalog.json", stac_io=s3_stac_io(endpoint))``.
    """
    from urllib.parse import urlsplit

    from pystac_client.stac_api_io import StacApiIO

    client = S3Store._client(endpoint)

    class S3StacIO(StacApiIO):  # type: ignore[misc]
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = str(source)
            if not href.startswith("s3://"):
                return super().read_text(source, *args, **kwargs)  # type: ignore[no-any-return]
            parts = urlsplit(href)
            obj = client.get_object(Bucket=parts.hostname, Key=parts.path.lstrip("/"))
            return obj["Body"].read().decode()  # type: ignore[no-any-return]

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            href = str(dest)
            if not href.startswith("s3://"):
                return super().write_text(dest, txt, *args, **kwargs)  # type: ignore[no-any-return]
            parts = urlsplit(href)
            client.put_object(Bucket=parts.hostname, Key=parts.path.lstrip("/"), Body=txt.encode())
            return None

    return S3StacIO()
