"""The two publishing steps shared by every target: results, staged items, uploads with rollback.

See :mod:`s2sr_cloud.publish.targets` for the order of the steps and why no item ever points at
a missing file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .item import LocalAsset, ProcessedScene, model_fingerprint
from .redact import redact
from .stores import Store

log = logging.getLogger(__name__)

Status = Literal["created", "updated", "skipped"]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What happened to one scene."""

    item_id: str
    status: Status
    href: str
    """Where the item document is (credentials redacted)."""


@dataclass(frozen=True, slots=True)
class StagedItem:
    """One scene whose files are uploaded and whose item is ready to be written (picklable:
    :meth:`stage` may run on a worker, :meth:`commit` in the client)."""

    item_id: str
    status: Status
    href: str
    doc: dict[str, Any] | None = None
    """The item document (None when skipped)."""
    uploaded: tuple[str, ...] = ()
    """Store keys this stage uploaded (deleted again if the item cannot be written)."""
    old: frozenset[str] = field(default_factory=frozenset)
    """File names the replaced item used (those the new item does not use go after the write)."""
    existed: bool = False


class PublishTarget(Protocol):
    """Somewhere items and their files are published."""

    url: str
    """The target, for messages (credentials redacted)."""

    def stage(self, scene: ProcessedScene, *, overwrite: bool = False) -> StagedItem:
        """Upload one scene's files and build its item (skipped: same model, unless ``overwrite``)."""

    def commit(self, staged: Sequence[StagedItem]) -> list[PublishResult]:
        """Write the staged items, then update the collection once."""

    def publish(self, scene: ProcessedScene, *, overwrite: bool = False) -> PublishResult:
        """Publish one scene (idempotent: same model → skipped unless ``overwrite``)."""

    def publish_many(self, scenes: Iterable[ProcessedScene], *, overwrite: bool = False) -> list[PublishResult]:
        """Publish scenes, the collection updated once at the end."""


def _same_model(existing: dict[str, Any] | None, scene: ProcessedScene) -> bool:
    return bool(existing) and existing["properties"].get("s2sr:model_fingerprint") == model_fingerprint(scene.models)


def _asset_names(item: dict[str, Any] | None) -> set[str]:
    if not item:
        return set()
    return {a["href"].rstrip("/").rsplit("/", 1)[-1] for a in item.get("assets", {}).values()}


def upload_assets(store: Store, item_id: str, assets: Sequence[LocalAsset], keep: set[str]) -> list[str]:
    """Upload ``assets`` under ``<item_id>/``; on any failure delete what this call uploaded.

    Args:
        store: the destination.
        item_id: folder of the item's files.
        assets: the prepared files.
        keep: names the existing item uses: never deleted, and not re-uploaded (same hash).

    Returns:
        The keys uploaded.
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
    return uploaded


def rollback(store: Store, keys: Sequence[str]) -> None:
    """Delete ``keys`` (best effort, logged)."""
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # noqa: BLE001 - keep unwinding; report what is left
            log.warning("could not remove %s after a failed publish", redact(store.href(key)))
    if keys:
        log.info("removed %d uploaded file(s) after a failed publish", len(keys))


def _prune(store: Store, item_id: str, old: Iterable[str], new: set[str]) -> None:
    for name in sorted(set(old) - new):
        store.delete(f"{item_id}/{name}")


class _TwoStep:
    """:meth:`publish` and :meth:`publish_many` over :meth:`stage` and :meth:`commit`."""

    def stage(self, scene: ProcessedScene, *, overwrite: bool = False) -> StagedItem:
        raise NotImplementedError

    def commit(self, staged: Sequence[StagedItem]) -> list[PublishResult]:
        raise NotImplementedError

    def publish(self, scene: ProcessedScene, *, overwrite: bool = False) -> PublishResult:
        return self.publish_many([scene], overwrite=overwrite)[0]

    def publish_many(self, scenes: Iterable[ProcessedScene], *, overwrite: bool = False) -> list[PublishResult]:
        staged: list[StagedItem] = []
        try:
            for scene in scenes:
                staged.append(self.stage(scene, overwrite=overwrite))
        except BaseException:
            if staged:  # what was staged before the failure is still published
                self.commit(staged)
            raise
        return self.commit(staged)


def _write_items(store: Store, staged: Sequence[StagedItem], put: Any) -> list[PublishResult]:
    """Write each staged item (``put(doc, staged)``), rolling back its uploads on failure; prune."""
    out: list[PublishResult] = []
    for st in staged:
        if st.doc is None:
            out.append(PublishResult(st.item_id, st.status, st.href))
            continue
        try:
            put(st.doc, st)
        except BaseException:
            rollback(store, list(st.uploaded))
            raise
        _prune(store, st.item_id, st.old, _asset_names(st.doc))
        log.info("%s %s", st.status, st.href)
        out.append(PublishResult(st.item_id, st.status, st.href))
    return out


