"""Publish super-resolved scenes as STAC: a static catalog (folder or S3) or a STAC API.

``open_target(url)`` picks the target; ``target.publish(scene)`` uploads one scene's
files, then its item, then updates the collection. See ``docs/publish.md``.
"""

from __future__ import annotations

from .item import (
    DEFAULT_COLLECTION,
    ProcessedScene,
    build_collection,
    build_item,
    item_id_for,
)
from .targets import (
    PublishResult,
    PublishTarget,
    StaticTarget,
    TransactionsTarget,
    open_store,
    open_target,
)

__all__ = [
    "DEFAULT_COLLECTION",
    "ProcessedScene",
    "PublishResult",
    "PublishTarget",
    "StaticTarget",
    "TransactionsTarget",
    "build_collection",
    "build_item",
    "item_id_for",
    "open_store",
    "open_target",
]
