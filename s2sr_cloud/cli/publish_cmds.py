"""``s2sr publish``: publish finished outputs as STAC; and the ``--publish`` hook of ``run``/``search --run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..settings import PUBLISH_VAR
from ._options import PUBLISH, AssetsTo, S3Endpoint
from ._options import PUBLISH_TO_HELP as _TO_HELP

app = typer.Typer()

CollectionId = Annotated[str, typer.Option("--collection-id", help="Collection of the published items.")]


def publish_hook(
    to: str | None, *, s3_endpoint: str | None = None, assets_to: str | None = None,
    collection_id: str | None = None, overwrite: bool = False,
) -> Callable[[Any], None]:
    """``on_result`` hook for the pipeline: write the sidecar record, then publish if ``to`` is set.

    The target is opened now, so a bad URL fails before any item is processed.
    """
    from ..publish import DEFAULT_COLLECTION, open_target
    from ..publish.record import save_record, scene_from_result
    from ._console import success

    target = open_target(to, s3_endpoint=s3_endpoint, assets_to=assets_to,
                         collection_id=collection_id or DEFAULT_COLLECTION) if to else None

    def hook(result: Any) -> None:
        scene = scene_from_result(result)
        save_record(scene)
        if target is not None:
            res = target.publish(scene, overwrite=overwrite)
            success(f"{res.item_id}: {res.status} -> {res.href}")

    return hook


@app.command("publish", rich_help_panel=PUBLISH)
def publish_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Output folders or COGs written by `s2sr … --run`.",
                                                exists=True)],
    to: Annotated[str, typer.Option("--to", help=_TO_HELP, envvar=PUBLISH_VAR)],
    s3_endpoint: S3Endpoint = None,
    assets_to: AssetsTo = None,
    collection_id: CollectionId = "sentinel-2-l2a-s2sr",
    overwrite: Annotated[bool, typer.Option(help="Re-publish items already published with the same model.")] = False,
) -> None:
    """Publish finished outputs as STAC items of one collection.

    After the fact: the outputs of `s2sr … --run`, found by their .s2sr.json records.
    """
    from ..errors import InputError
    from ..publish import open_target
    from ..publish.record import find_records, load_scene
    from ._console import progress_task, success

    records = list(find_records(paths))
    if not records:
        raise InputError("no s2sr outputs found (looked for *.s2sr.json records beside the COGs)")
    scenes = [load_scene(r) for r in records]
    target = open_target(to, s3_endpoint=s3_endpoint, assets_to=assets_to, collection_id=collection_id)
    results = []
    with progress_task(f"publishing to {target.url}", total=len(scenes)) as update:
        for i, scene in enumerate(scenes, start=1):
            results.append(target.publish(scene, overwrite=overwrite))
            update(i, len(scenes))
    for r in results:
        success(f"{r.item_id}: {r.status} -> {r.href}")
