"""The ``publish`` hook of a batch (``--publish``): each finished item to one STAC target.

:func:`publish_hook` opens the target once (a bad URL fails before any item is processed)
and returns the callable :func:`s2sr_cloud.batch.process_items` calls, in the calling
process, with each new result. The item's ``.s2sr.json`` record is not written here: the
process that wrote the COG wrote it, once, right after the COG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def publish_hook(
    to: str | None, *, s3_endpoint: str | None = None, assets_to: str | None = None,
    collection_id: str | None = None, overwrite: bool = False,
    on_published: Callable[[Any], None] | None = None,
) -> Callable[[Any], Any] | None:
    """A hook that publishes a :class:`~s2sr_cloud.pipeline.SceneResult` (or a
    :class:`~s2sr_cloud.publish.item.ProcessedScene`, e.g. read back from a record) to ``to`` (None: no hook).

    ``on_published`` gets each target's result (``item_id``, ``status``, ``href``), e.g. to print it.
    """
    if not to:
        return None
    from . import DEFAULT_COLLECTION, open_target
    from .item import ProcessedScene
    from .record import scene_from_result

    target = open_target(to, s3_endpoint=s3_endpoint, assets_to=assets_to,
                         collection_id=collection_id or DEFAULT_COLLECTION)

    def hook(result: Any) -> Any:
        scene = result if isinstance(result, ProcessedScene) else scene_from_result(result)
        res = target.publish(scene, overwrite=overwrite)
        if on_published is not None:
            on_published(res)
        return res

    return hook
