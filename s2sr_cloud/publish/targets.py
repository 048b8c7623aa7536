"""Publish targets: a static catalog (folder or object store prefix) and a STAC Transactions API
(the shared steps: :mod:`s2sr_cloud.publish.staging`).

Publishing is two steps, so that the heavy part can run where the files were written and
the collection is written once per batch:

* :meth:`stage` (per scene; may run on the worker that wrote the COG): skip when the item
  exists with the same model (unless overwrite), prepare the files (hash the COG and its
  SCL as written, render the preview from the overviews), upload them (a local catalog
  hard-links them), build the item document;
* :meth:`commit` (once per batch, in one process): write each staged item, delete the files
  of replaced items that the new ones no longer use, then update the collection once.

A failure in an upload or an item write deletes what that scene uploaded; files keep
content-hashed names, so a previous item (if any) stays valid throughout and no item ever
points at a missing file. :meth:`publish` and :meth:`publish_many` do both steps.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import PublishError
from .item import (
    DEFAULT_COLLECTION,
    LICENSE_URL,
    ProcessedScene,
    build_collection,
    build_item,
    collection_links,
    item_id_for,
    merge_collection,
    root_catalog,
)
from .redact import credentials, redact, strip_credentials
from .staging import (  # noqa: F401 - PublishTarget, rollback: re-exported (older imports)
    PublishResult,
    PublishTarget,
    StagedItem,
    Status,
    _asset_names,
    _same_model,
    _TwoStep,
    _write_items,
    rollback,
    upload_assets,
)
from .stores import OBJECT_SCHEMES, LocalStore, ObjectStore, Store

log = logging.getLogger(__name__)


class StaticTarget(_TwoStep):
    """A self-contained static catalog (relative links) in a :class:`Store`.

    Layout: ``catalog.json`` (root) → ``collection.json`` → ``<item id>/<item id>.json``,
    the item's files next to it in ``<item id>/``.
    """

    def __init__(self, store: Store, *, collection_id: str = DEFAULT_COLLECTION) -> None:
        self.store = store
        self.url = store.url
        existing = store.get_json("collection.json")
        self.collection_id = existing["id"] if existing else collection_id

    def stage(self, scene: ProcessedScene, *, overwrite: bool = False) -> StagedItem:
        item_id = item_id_for(scene.source.id)
        key = f"{item_id}/{item_id}.json"
        existing = self.store.get_json(key)
        href = redact(self.store.href(key))
        if _same_model(existing, scene) and not overwrite:
            log.info("%s already published with the same model: skipped", href)
            return StagedItem(item_id, "skipped", href)
        old = _asset_names(existing)
        with tempfile.TemporaryDirectory(prefix="s2sr-publish-") as tmp:
            from .assets import prepare_assets

            assets = prepare_assets(scene, Path(tmp))
            doc = build_item(scene, assets, self.collection_id).to_dict(include_self_link=False, transform_hrefs=False)
            doc["links"] = [*_static_links(), *doc["links"]]
            uploaded = upload_assets(self.store, item_id, assets, keep=old)
        return StagedItem(item_id, "updated" if existing else "created", href, doc, tuple(uploaded),
                          frozenset(old), existing is not None)

    def commit(self, staged: Sequence[StagedItem]) -> list[PublishResult]:
        try:
            return _write_items(self.store, staged,
                                lambda doc, st: self.store.put_json(f"{st.item_id}/{st.item_id}.json", doc))
        finally:
            self.update_collection()

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


class TransactionsTarget(_TwoStep):
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

    def _update_collection(self, item_docs: Sequence[dict[str, Any]]) -> None:
        current = self._req("GET", self._coll(), ok=(200,)).json()
        merged = merge_collection(current, build_collection(self.collection_id, list(item_docs)))
        merged["links"] = [ln for ln in merged.get("links", []) if ln.get("rel") == "license"]
        self._req("PUT", self._coll(), ok=(200, 201, 204), json=merged)

    def stage(self, scene: ProcessedScene, *, overwrite: bool = False) -> StagedItem:
        item_id = item_id_for(scene.source.id)
        href = f"{self.url.rstrip('/')}{self._coll()}/items/{item_id}"
        existing = self.get_item(item_id)
        if _same_model(existing, scene) and not overwrite:
            log.info("%s already published with the same model: skipped", href)
            return StagedItem(item_id, "skipped", href)
        old = _asset_names(existing) if existing and _our_files(existing, self.assets, item_id) else set()
        with tempfile.TemporaryDirectory(prefix="s2sr-publish-") as tmp:
            from .assets import prepare_assets

            assets = prepare_assets(scene, Path(tmp))
            doc = build_item(scene, assets, self.collection_id,
                             href_of=lambda a: self.assets.href(f"{item_id}/{a.name}")).to_dict(
                                 include_self_link=False, transform_hrefs=False)
            doc["links"].append({"rel": "collection", "href": f"{self.base}{self._coll()}", "type": "application/json"})
            uploaded = upload_assets(self.assets, item_id, assets, keep=old)
        return StagedItem(item_id, "updated" if existing else "created", href, doc, tuple(uploaded),
                          frozenset(old), existing is not None)

    def commit(self, staged: Sequence[StagedItem]) -> list[PublishResult]:
        docs = [st.doc for st in staged if st.doc is not None]
        if not docs:
            return [PublishResult(st.item_id, st.status, st.href) for st in staged]
        written: list[dict[str, Any]] = []

        def put(doc: dict[str, Any], st: StagedItem) -> None:
            self._ensure_collection(doc)
            self._put_item(doc, exists=st.existed)
            written.append(doc)

        try:
            return _write_items(self.assets, staged, put)
        finally:
            if written:
                self._update_collection(written)


def _our_files(item: dict[str, Any], store: Store, item_id: str) -> bool:
    """Whether the existing item's files live in ``store`` (only then are they pruned)."""
    prefix = store.href(f"{item_id}/")
    return all(a["href"].startswith(prefix) for a in item.get("assets", {}).values())


def open_store(url: str, *, s3_endpoint: str | None = None, endpoint: str | None = None) -> Store:
    """A :class:`Store` for a folder path, ``file://`` URL, or ``s3://``, ``gs://``, ``az://`` bucket prefix.

    ``endpoint`` (or its older name ``s3_endpoint``) points an object store at another server
    (MinIO, Azurite, a GCS emulator).
    """
    scheme = urlsplit(url).scheme
    if scheme in OBJECT_SCHEMES:
        return ObjectStore(url, endpoint=endpoint or s3_endpoint)
    if scheme == "file":
        return LocalStore(urlsplit(url).path)
    if scheme in ("", ) or len(scheme) == 1:  # a path (or a Windows drive letter)
        return LocalStore(url)
    raise PublishError(f"cannot store files at {redact(url)}: expected a folder, file://, s3://, gs:// or az:// URL")


def open_target(
    url: str,
    *,
    s3_endpoint: str | None = None,
    assets_to: str | None = None,
    collection_id: str = DEFAULT_COLLECTION,
    endpoint: str | None = None,
) -> PublishTarget:
    """Choose the target from ``url``.

    Args:
        url: a folder / ``file://`` URL (static catalog), ``s3://``, ``gs://`` or ``az://``
            bucket prefix (static catalog in an object store) or ``http(s)://`` STAC API root
            (Transactions extension).
        s3_endpoint, endpoint: endpoint URL of the object store (S3-compatible server, Azurite,
            a GCS emulator).
        assets_to: where a STAC API target stores the files (folder or object store); required there.
        collection_id: collection id (an existing static catalog keeps its own).
    """
    s3_endpoint = endpoint or s3_endpoint
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        if not assets_to:
            raise PublishError(
                f"a STAC API ({redact(url)}) stores metadata only: pass --assets-to FOLDER or s3://, gs://, az://bucket/prefix "
                "for the COGs"
            )
        return TransactionsTarget(url, assets=open_store(assets_to, s3_endpoint=s3_endpoint),
                                  collection_id=collection_id)
    return StaticTarget(open_store(url, s3_endpoint=s3_endpoint), collection_id=collection_id)
