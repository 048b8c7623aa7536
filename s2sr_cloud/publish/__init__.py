"""Publish super-resolved scenes as STAC: a static catalog (folder, s3://, gs://, az://) or a STAC API.

``open_target(url)`` picks the target; ``target.stage(scene)`` uploads one scene's files
(anywhere: a worker can do it), ``target.commit(staged)`` writes the items and updates the
collection once per batch; ``publish``/``publish_many`` do both. See ``docs/publish.md``.
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
    StagedItem,
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
    "StagedItem",
    "StaticTarget",
    "TransactionsTarget",
    "build_collection",
    "build_item",
    "item_id_for",
    "open_store",
    "open_target",
]
