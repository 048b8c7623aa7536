"""``s2sr publish``: publish finished outputs as STAC (the ``--publish`` hook of ``run``/``search --run`` is :func:`s2sr_cloud.publish.hook.publish_hook`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..settings import PUBLISH_VAR
from ._options import PUBLISH, AssetsTo, S3Endpoint
from ._options import PUBLISH_TO_HELP as _TO_HELP

app = typer.Typer()

CollectionId = Annotated[str, typer.Option("--collection-id", help="Collection of the published items.")]


def _to(value: str) -> str:
    from ..options import parse_path_arg

    return parse_path_arg(value, "--to")


@app.command("publish", rich_help_panel=PUBLISH)
def publish_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Output folders or COGs written by `s2sr … --run`.",
                                                exists=True)],
    to: Annotated[str, typer.Option("--to", help=_TO_HELP, envvar=PUBLISH_VAR, parser=_to)],
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
