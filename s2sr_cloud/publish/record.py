"""The link between a run and a later publish: a sidecar record next to each output COG.

``s2sr … --run`` leaves ``<name>.tif``; :func:`save_record` writes ``<name>.s2sr.json``
beside it with what the COG itself cannot hold (the full source item, the models'
sha256, the backend). ``s2sr publish`` reads it back with :func:`load_scene`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fsutil import write_text_atomic
from .item import ProcessedScene

SUFFIX = ".s2sr.json"


def record_path(cog: Path) -> Path:
    """Sidecar path of a COG: ``x.tif`` → ``x.s2sr.json``."""
    return cog.with_name(cog.stem + SUFFIX)


def scene_from_result(result: Any) -> ProcessedScene:
    """The publishing view of the pipeline's :class:`~s2sr_cloud.pipeline.SceneResult` (a STAC item's)."""
    from .. import __version__

    if result.item is None or result.grid is None:
        raise InputError(f"{result.path}: a local scene has no source STAC item to record or publish")
    grid = result.grid
    rad = getattr(result, "radiometry", {}) or {}
    return ProcessedScene(
        source=result.item, cog=Path(result.path), crs=grid.crs, transform=tuple(grid.transform),
        shape=tuple(grid.shape), bbox=tuple(grid.bounds), bbox_wgs84=tuple(grid.bbox),
        bands=tuple(result.bands), models={k: dict(v) for k, v in result.model.items()},
        backend=result.backend, version=__version__, nodata=int(rad.get("nodata", 0)),
        dn_offset=int(rad.get("dn_offset", 0)), backproject=getattr(result, "backproject", None),
        hybrid=getattr(result, "hybrid", None), consistency_rmse=dict(getattr(result, "consistency_rmse", None) or {}),
        scl=_scl_beside(Path(result.path)),
    )


def _scl_beside(cog: Path) -> Path | None:
    """The scene classification written beside ``cog`` (L2A items), or None."""
    from ..io.scl import scl_path

    scl = scl_path(cog)
    return scl if scl.is_file() else None


def save_record(scene: ProcessedScene) -> Path:
    """Write the sidecar record of ``scene`` atomically; returns its path."""
    from .redact import strip_credentials

    source = scene.source.to_dict(transform_hrefs=False)
    for asset in source.get("assets", {}).values():  # signed hrefs (SAS tokens…) stay out of the record
        asset["href"] = strip_credentials(asset["href"]) if "://" in asset["href"] else asset["href"]
    doc = {
        "s2sr_record": 1, "cog": scene.cog.name, "source_item": source,
        "models": {k: dict(v) for k, v in scene.models.items()}, "backend": scene.backend,
        "version": scene.version, "dn_offset": scene.dn_offset, "bands": list(scene.bands),
    }
    if scene.backproject is not None:
        doc["backproject"] = scene.backproject
    if scene.hybrid is not None:
        doc["hybrid"] = scene.hybrid
    if scene.consistency_rmse:
        doc["consistency_rmse"] = dict(scene.consistency_rmse)
    path = record_path(scene.cog)
    write_text_atomic(path, json.dumps(doc, indent=2))  # 0666 & ~umask, like the COG beside it
    return path


def load_scene(path: Path) -> ProcessedScene:
    """A :class:`ProcessedScene` from a COG (with its sidecar) or from the sidecar itself."""
    import pystac

    from .assets import scene_from_cog

    path = Path(path)
    rec_path = path if path.name.endswith(SUFFIX) else record_path(path)
    if not rec_path.exists():
        raise InputError(f"{path}: no {rec_path.name} beside it; it was not written by `s2sr … --run`, "
                         "so its source item and models are unknown")
    rec = json.loads(rec_path.read_text())
    cog = rec_path.with_name(rec["cog"])
    source = pystac.Item.from_dict(rec["source_item"])
    return scene_from_cog(cog, source, models=rec["models"], backend=rec["backend"], version=rec["version"],
                          dn_offset=int(rec.get("dn_offset", 0)), backproject=rec.get("backproject"), hybrid=rec.get("hybrid"),
                          consistency_rmse=dict(rec.get("consistency_rmse") or {}))


def find_records(paths: Iterable[Path]) -> Iterator[Path]:
    """Sidecar records of the given COGs and of the COGs in the given folders."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(p.glob(f"*{SUFFIX}"))
        else:
            yield p if p.name.endswith(SUFFIX) else record_path(p)
