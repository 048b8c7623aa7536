"""Publish targets: a static catalog (local folder or S3 prefix) and a STAC Transactions API.

Every target follows the same order, so that a failure never leaves an item pointing at
a missing file: (1) skip when the item exists with the same model (unless overwrite),
(2) prepare the files locally, (3) upload them, (4) write the item, (5) delete the
files of the replaced item that the new one no longer uses, (6) update the collection.
A failure in (3) or (4) deletes what (3) uploaded; files keep content-hashed names, so
the previous item (if any) stays valid throughout.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from ..errors import PublishError
from .item import (
    DEFAULT_COLLECTION,
    LICENSE_URL,
    LocalAsset,
    ProcessedScene,
    build_collection,
    build_item,
    collection_links,
    item_id_for,
    merge_collection,
    model_fingerprint,
    root_catalog,
)
from .redact import credentials, redact, strip_credentials
from .stores import LocalStore, S3Store, Store

log = logging.getLogger(__name__)

Status = Literal["created", "updated", "skipped"]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What happened to one scene."""

    item_id: str
    status: Status
    href: str
    """Where the item document is (credentials redacted)."""


class PublishTarget(Protocol):
    """Somewhere items and their files are published."""

    url: str
    """The target, for messages (credentials redacted)."""

    def publish(self, scene: ProcessedScene, *, overwrite: bool = False) -> PublishResult:
        """Publish one scene (idempotent: same model → skipped unless ``overwrite``)."""


def _same_model(existing: dict[str, Any] | None, scene: ProcessedScene) -> bool:
    return bool(existing) and existing["properties"].get("s2sr:model_fingerprint") == model_fingerprint(scene.models)


def _asset_names(item: dict[str, Any] | None) -> set[str]:
    if not item:
        return set()
    return {a["href"].rstrip("/").rsplit("/", 1)[-1] for a in item.get("assets", {}).values()}


def upload_assets(store: Store, item_id: str, assets: Sequence[LocalAsset], keep: set[str]) -> None:
    """Upload ``assets`` under ``<item_id>/``; on any failure delete what this call uploaded.

    Args:
        store: the destination.
        item_id: folder of the item's files.
        assets: the prepared files.
        keep: names the existing item uses: never deleted, and not re-uploaded (same hash).
    """
    uploaded: list[str] = []
    try:
        for a in assets:
            if a.name in keep:
                continue
            store.put_file(f"{item_id}/{a.name}", a.path, a.media_type)
            uploaded.append(f"{item_id}/{a.name}")
            log.debug("uploaded %s", redact(store.href(f"{item_id}/{a.name}")))
    except BaseException:
        rollback(store, uploaded)
        raise


def rollback(store: Store, keys: Sequence[str]) -> None:
    """Delete ``keys`` (best effort, logged)."""
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # noqa: BLE001 - keep unwinding; report what is left
            log.warning("could not remove %s after a failed publish", redact(store.href(key)))
    if keys:
        log.info("removed %d uploaded file(s) after a failed publish", len(keys))


def _prune(store: Store, item_id: str, old: set[str], new: set[str]) -> None:
    for name in sorted(old - new):
        store.delete(f"{item_id}/{name}")


class StaticTarget:
    """A self-contained static catalog (relative links) in a :class:`Store`.

    Layout: ``catalog.json`` (root) → ``collection.json`` → ``<item id>/<item id>.json``,
    the item's files next to it in ``<item id>/``.
    """

    def __init__(self, store: Store, *, collection_id: str = DEFAULT_COLLECTION) -> None:
        self.store = store
        self.url = store.url
        existing = store.get_json("collection.json")
        self.collection_id = existing["id"] if existing else collection_id

    def publish(self, scene: ProcessedScene, *, overwrite: bool = False) -> PublishResult:
        import pystac  # noqa: F401 - fail early if missing

        item_id = item_id_for(scene.source.id)
        key = f"{item_id}/{item_id}.json"
        existing = self.store.get_json(key)
        href = redact(self.store.href(key))
        if _same_model(existing, scene) and not overwrite:
            log.info("%s already published with the same model: skipped", href)
            self.update_collection()
            return PublishResult(item_id, "skipped", href)
        old = _asset_names(existing)
        with tempfile.TemporaryDirectory(prefix="s2sr-publish-") as tmp:
            from .assets import prepare_assets

            assets = prepare_assets(scene, Path(tmp))
            doc = build_item(scene, assets, self.collection_id).to_dict(include_self_link=False, transform_hrefs=False)
            doc["links"] = [*_static_links(), *doc["links"]]
            upload_assets(self.store, item_id, assets, keep=old)
            try:
                self.store.put_json(key, doc)
            except BaseException:
                rollback(self.store, [f"{item_id}/{a.name}" for a in assets if a.name not in old])
                raise
        _prune(self.store, item_id, old, {a.name for a in assets})
        self.update_collection()
        status: Status = "updated" if existing else "created"
        log.info("%s %s", status, href)
        return PublishResult(item_id, status, href)

    def item_docs(self) -> list[tuple[str, dict[str, Any]]]:
        """(key, document) of every item in the catalog."""
        out = []
        for key in self.store.list_keys():
            parts = key.split("/")
            if len(parts) == 2 and parts[1] == f"{parts[0]}.json":
                doc = self.store.get_json(key)
                if doc and doc.get("type") == "Feature":
                    out.append((key, doc))
        return out

    def update_collection(self) -> None:
        """Rewrite ``collection.json`` from the items present (extent, summaries, links)."""
        docs = self.item_docs()
        if not docs:
            return
        old = self.store.get_json("collection.json") or {}
        coll = build_collection(self.collection_id, [d for _, d in docs],
                                title=old.get("title"), description=old.get("description"))
        self.store.put_json("collection.json", collection_links(coll, (f"./{k}" for k, _ in docs)))
        if not self.store.exists("catalog.json"):
            self.store.put_json("catalog.json", root_catalog(coll))


def _static_links() -> list[dict[str, Any]]:
    return [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        *({"rel": rel, "href": "../collection.json", "type": "application/json"} for rel in ("parent", "collection")),
    ]


class TransactionsTarget:
    """A STAC API with the Transactions extension; files go to a separate :class:`Store`."""

    def __init__(self, url: str, *, assets: Store, collection_id: str = DEFAULT_COLLECTION,
                 timeout: float = 60.0) -> None:
        import requests

        self.base = strip_credentials(url).rstrip("/")
        self.url = redact(url)
        self.assets = assets
        self.collection_id = collection_id
        self.timeout = timeout
        from ..http import mount_retries

        self.session = mount_retries(requests.Session())  # 429/5xx: backoff and retry
        self.session.auth = credentials(url)
        self.session.headers["Accept"] = "application/json"

    def _req(self, method: str, path: str, ok: tuple[int, ...], **kw: Any) -> Any:
        import requests

        url = f"{self.base}{path}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kw)
        except requests.RequestException as err:
            raise PublishError(f"STAC API {method} {redact(url)} failed: {type(err).__name__}") from err
        if resp.status_code not in ok:
            raise PublishError(
                f"STAC API {method} {redact(url)} answered HTTP {resp.status_code}: {resp.text[:300]}"
            )
        return resp

    def _coll(self) -> str:
        return f"/collections/{self.collection_id}"

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        resp = self._req("GET", f"{self._coll()}/items/{item_id}", ok=(200, 404))
        return resp.json() if resp.status_code == 200 else None  # type: ignore[no-any-return]

    def _ensure_collection(self, item_doc: dict[str, Any]) -> None:
        if self._req("GET", self._coll(), ok=(200, 404)).status_code == 200:
            return
        coll = build_collection(self.collection_id, [item_doc])
        coll["links"] = [{"rel": "license", "href": LICENSE_URL, "title": "Copernicus Sentinel data legal notice"}]
        self._req("POST", "/collections", ok=(200, 201, 409), json=coll)
        log.info("created collection %s at %s", self.collection_id, self.url)

    def _put_item(self, doc: dict[str, Any], exists: bool) -> None:
        path = f"{self._coll()}/items"
        if not exists and self._req("POST", path, ok=(200, 201, 409), json=doc).status_code != 409:
            return
        self._req("PUT", f"{path}/{doc['id']}", ok=(200, 201, 204), json=doc)

    def _update_collection(self, item_doc: dict[str, Any]) -> None:
        current = self._req("GET", self._coll(), ok=(200,)).json()
        merged = merge_collection(current, build_collection(self.collection_id, [item_doc]))
        merged["links"] = [ln for ln in merged.get("links", []) if ln.get("rel") == "license"]
        self._req("PUT", self._coll(), ok=(200, 201, 204), json=merged)

    def publish(self, scene: ProcessedScene, *, overwrite: bool = False) -> PublishResult:
        item_id = item_id_for(scene.source.id)
        href = f"{self.url.rstrip('/')}{self._coll()}/items/{item_id}"
        existing = self.get_item(item_id)
        if _same_model(existing, scene) and not overwrite:
            log.info("%s already published with the same model: skipped", href)
            return PublishResult(item_id, "skipped", href)
        old = _asset_names(existing) if existing and _our_files(existing, self.assets, item_id) else set()
        with tempfile.TemporaryDirectory(prefix="s2sr-publish-") as tmp:
            from .assets import prepare_assets

            assets = prepare_assets(scene, Path(tmp))
            doc = build_item(scene, assets, self.collection_id).to_dict(include_self_link=False, transform_hrefs=False)
            for a in assets:
                doc["assets"][a.key]["href"] = self.assets.href(f"{item_id}/{a.name}")
            doc["links"].append({"rel": "collection", "href": f"{self.base}{self._coll()}", "type": "application/json"})
            upload_assets(self.assets, item_id, assets, keep=old)
            try:
                self._ensure_collection(doc)
                self._put_item(doc, exists=existing is not None)
            except BaseException:
                rollback(self.assets, [f"{item_id}/{a.name}" for a in assets if a.name not in old])
                raise
        _prune(self.assets, item_id, old, {a.name for a in assets})
        self._update_collection(doc)
        status: Status = "updated" if existing else "created"
        log.info("%s %s", status, href)
        return PublishResult(item_id, status, href)


def _our_files(item: dict[str, Any], store: Store, item_id: str) -> bool:
    """Whether the existing item's files live in ``store`` (only then are they pruned)."""
    prefix = store.href(f"{item_id}/")
    return all(a["href"].startswith(prefix) for a in item.get("assets", {}).values())


def open_store(url: str, *, s3_endpoint: str | None = None) -> Store:
    """A :class:`Store` for a folder path, ``file://`` URL or ``s3://bucket/prefix``."""
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        return S3Store(url, endpoint=s3_endpoint)
    if scheme == "file":
        return LocalStore(urlsplit(url).path)
    if scheme in ("", ) or len(scheme) == 1:  # a path (or a Windows drive letter)
        return LocalStore(url)
    raise PublishError(f"cannot store files at {redact(url)}: expected a folder, file:// or s3:// URL")


def open_target(
    url: str,
    *,
    s3_endpoint: str | None = None,
    assets_to: str | None = None,
    collection_id: str = DEFAULT_COLLECTION,
) -> PublishTarget:
    """Choose the target from ``url``.

    Args:
        url: a folder / ``file://`` URL (static catalog), ``s3://bucket/prefix`` (static
            catalog on S3) or ``http(s)://`` STAC API root (Transactions extension).
        s3_endpoint: endpoint URL of an S3-compatible store.
        assets_to: where a STAC API target stores the files (folder or ``s3://``); required there.
        collection_id: collection id (an existing static catalog keeps its own).
    """
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        if not assets_to:
            raise PublishError(
                f"a STAC API ({redact(url)}) stores metadata only: pass --assets-to FOLDER or s3://bucket/prefix "
                "for the COGs"
            )
        return TransactionsTarget(url, assets=open_store(assets_to, s3_endpoint=s3_endpoint),
                                  collection_id=collection_id)
    return StaticTarget(open_store(url, s3_endpoint=s3_endpoint), collection_id=collection_id)
