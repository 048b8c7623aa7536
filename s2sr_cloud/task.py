"""s2sr-cloud as a stac-task step (Cirrus, Argo Workflows …): STAC payload in → payload with the new items out.

:class:`S2SRTask` is a `stactask.Task <https://github.com/stac-utils/stac-task>`_: the payload's
``features`` are Sentinel-2 L2A items; each is super-resolved (:func:`s2sr_cloud.api.process`,
in the step's own process) and the payload comes back with the derived items in their place.
Options come from ``process[0].tasks.s2sr`` (and ``workflow_options``):

==================  ===========================================================================
``out``             output folder of the COGs (default: the task's work folder)
``publish_to``      where the items and files go: a folder, ``s3://``/``gs://``/``az://`` prefix
                    (static catalog) or a STAC API root with ``assets_to``; the returned items
                    point at the published files. Without it they point at the local outputs.
``assets_to``       file store of a STAC API target
``endpoint``        object store endpoint (MinIO, Azurite, a GCS emulator)
``collection``      collection id of the derived items (default ``sentinel-2-l2a-s2sr``)
``catalog``         catalog rules of the input items (default: guessed from them)
``bbox``            only this lon/lat area of each item
``device``          ``auto`` (default), ``cpu``, ``cuda`` … ; ``precision`` ``fp32`` (default) …
``include_10m``     also write the four native 10 m bands
``overwrite``       re-do items already done
==================  ===========================================================================

Run it with ``s2sr task PAYLOAD.json`` (the container's entrypoint is ``s2sr``), or
``S2SRTask.handler(payload)`` from Python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import __version__
from .errors import require

require("stactask", "task")

from stactask import Task  # noqa: E402 - the extra is checked first, with the install line

log = logging.getLogger(__name__)


class S2SRTask(Task):  # type: ignore[misc]
    """Super-resolve the payload's Sentinel-2 items; return the derived 10 m items."""

    name = "s2sr"
    description = "Sentinel-2 L2A 20 m / 60 m bands super-resolved to 10 m (DSen2), as COGs and STAC items"
    version = __version__

    def validate(self) -> bool:
        if not self.payload.items_as_dicts:
            log.error("the payload has no features: nothing to super-resolve")
            return False
        return True

    def process(self, **kwargs: Any) -> list[dict[str, Any]]:
        from .api import process
        from .publish import DEFAULT_COLLECTION, open_target

        items = list(self.items)
        out = Path(kwargs.get("out") or self._workdir / "out")
        bbox = tuple(kwargs["bbox"]) if kwargs.get("bbox") else None
        outcomes = process(
            items, out=out, catalog=kwargs.get("catalog"), bbox=bbox,  # type: ignore[arg-type]
            device=str(kwargs.get("device", "auto")), precision=str(kwargs.get("precision", "fp32")),
            overwrite=bool(kwargs.get("overwrite", False)), include_10m=bool(kwargs.get("include_10m", False)),
        )
        scenes = [_scene(o) for o in outcomes]
        collection = str(kwargs.get("collection") or DEFAULT_COLLECTION)
        to = kwargs.get("publish_to")
        if not to:
            return [_local_item(s, collection, self._workdir) for s in scenes]
        target = open_target(str(to), endpoint=kwargs.get("endpoint"), assets_to=kwargs.get("assets_to"),
                             collection_id=collection)
        staged = [target.stage(s, overwrite=bool(kwargs.get("overwrite", False))) for s in scenes]
        target.commit(staged)
        return [_published_item(target, st) for st in staged]


def _scene(outcome: Any) -> Any:
    from .publish.record import load_scene, scene_from_result

    if outcome.result is not None:
        return scene_from_result(outcome.result)
    return load_scene(Path(outcome.path))  # skipped: done before, its record says how


def _local_item(scene: Any, collection: str, workdir: Path) -> dict[str, Any]:
    """The derived item pointing at the local output files (no publish target)."""
    from .publish.assets import prepare_assets
    from .publish.item import build_item

    assets = prepare_assets(scene, workdir / "assets")
    item = build_item(scene, assets, collection, href_of=lambda a: str(Path(a.path).resolve()))
    return item.to_dict(include_self_link=False, transform_hrefs=False)  # type: ignore[no-any-return]


def _published_item(target: Any, staged: Any) -> dict[str, Any]:
    """The published item document with absolute asset hrefs (a static catalog's are relative)."""
    doc = staged.doc
    if doc is None:  # skipped: published before with the same model; return what is there
        store = getattr(target, "store", None)
        doc = store.get_json(f"{staged.item_id}/{staged.item_id}.json") if store is not None else \
            target.get_item(staged.item_id)
    doc = dict(doc)
    store = getattr(target, "store", None)
    if store is not None:
        doc["assets"] = {k: {**a, "href": store.href(f"{staged.item_id}/{a['href'].removeprefix('./')}")}
                         if a["href"].startswith("./") else a for k, a in doc["assets"].items()}
        doc["links"] = [{**ln, "href": store.href(ln["href"].removeprefix("../"))}
                        if str(ln.get("href", "")).startswith("../") else ln for ln in doc.get("links", [])]
    return doc
