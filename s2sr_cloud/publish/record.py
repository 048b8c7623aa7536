"""The link between a run and a later publish: a sidecar record next to each output COG.

``s2sr … --run`` leaves ``<name>.tif``; :func:`save_record` writes ``<name>.s2sr.json``
beside it with what the COG itself cannot hold (the full source item, the models'
sha256, the backend) — on the machine that wrote the COG, right after it. ``s2sr publish``
reads it back with :func:`load_scene` (a record that is not one — truncated, empty, wrongly
typed — is a clear :class:`~s2sr_cloud.errors.InputError`). :func:`done_before` is the rule
by which a re-run skips an item: its COG and record exist and name the same item, models
and post-steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..fsutil import write_text_atomic
from .item import ProcessedScene

if TYPE_CHECKING:
    from ..post import PostSteps

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
        hybrid=getattr(result, "hybrid", None), post=result.post.record()["post"] if hasattr(result, "post") else None,
        consistency_rmse=dict(getattr(result, "consistency_rmse", None) or {}),
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
    if scene.post:
        doc["post"] = dict(scene.post)  # the whole post-step configuration (PostSteps.matches reads it)
    if scene.consistency_rmse:
        doc["consistency_rmse"] = dict(scene.consistency_rmse)
    path = record_path(scene.cog)
    write_text_atomic(path, json.dumps(doc, indent=2))  # 0666 & ~umask, like the COG beside it
    return path


#: Keys of a record and the types they must have (``s2sr publish`` refuses anything else).
_FIELDS: dict[str, tuple[type, ...]] = {
    "cog": (str,), "source_item": (dict,), "models": (dict,), "backend": (str,), "version": (str,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "dn_offset": (int,), "backproject": (int,), "hybrid": (bool,), "consistency_rmse": (dict,), "bands": (list,),
}
#: What a record without a post-step key was made with (records older than the post-step).


def read_record(path: Path) -> dict[str, Any]:
    """The record at ``path``, checked: :class:`InputError` saying what is wrong with it otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the record {path}: {err.strerror or err}") from err
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{path} is not a readable s2sr record (truncated or not JSON: {err}); "
                         "re-run the item with --overwrite to write it again") from err
    if not isinstance(doc, dict):
        raise InputError(f"{path} is not an s2sr record (a JSON {type(doc).__name__}, not an object)")
    missing = [k for k in _FIELDS if k not in doc]
    if missing:
        raise InputError(f"{path} is not a complete s2sr record: it lacks {', '.join(missing)}; "
                         "re-run the item with --overwrite to write it again")
    for key, types in (*_FIELDS.items(), *_OPTIONAL.items()):
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join(t.__name__ for t in types)
            raise InputError(f"{path}: {key!r} must be a {want}, not {type(doc[key]).__name__}; the record is damaged")
    cog = doc["cog"]
    if not cog or "/" in cog or "\\" in cog or cog in (".", ".."):
        raise InputError(f"{path}: 'cog' must name a file beside the record, not {cog!r}")
    if not isinstance(doc["source_item"].get("id"), str) or not doc["source_item"]["id"]:
        raise InputError(f"{path}: the source item has no id; the record is damaged")
    return doc


def same_model(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether two ``{net: model_info}`` describe the same weights at the same precision.

    Weights are told by the checkpoint's sha256 where both know it (the same weights on ONNX
    Runtime, TensorRT or PyTorch count as the same), else the ONNX file's, else the name.
    """
    if set(a) != set(b):
        return False
    for net, x in a.items():
        y = b[net]
        if not isinstance(x, Mapping) or not isinstance(y, Mapping):
            return False
        if str(x.get("precision", "fp32")) != str(y.get("precision", "fp32")):
            return False
        for k in ("checkpoint_sha256", "onnx_sha256", "name"):
            if x.get(k) and y.get(k):
                if x[k] != y[k]:
                    return False
                break
        else:
            return False
    return True


def done_before(item_id: str, path: Path, models: Mapping[str, Mapping[str, Any]],
                post: PostSteps | None = None) -> bool:
    """Whether ``path`` and its record exist and were made from ``item_id`` with ``models`` and (when
    given) the same post-steps (:meth:`~s2sr_cloud.post.PostSteps.matches`: a record from before the
    post-steps were recorded was made with the raw nets). An unreadable record: not done."""
    rec = record_path(Path(path))
    if not (Path(path).is_file() and rec.is_file()):
        return False
    try:
        doc = json.loads(rec.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(doc, dict):
        return False
    if post is not None and not post.matches(doc):
        return False
    source = doc.get("source_item")
    found = doc.get("models")
    return (isinstance(source, dict) and source.get("id") == item_id and isinstance(found, dict)
            and same_model(found, models))


def load_scene(path: Path) -> ProcessedScene:
    """A :class:`ProcessedScene` from a COG (with its sidecar) or from the sidecar itself."""
    import pystac

    from .assets import scene_from_cog

    path = Path(path)
    rec_path = path if path.name.endswith(SUFFIX) else record_path(path)
    if not rec_path.exists():
        raise InputError(f"{path}: no {rec_path.name} beside it; it was not written by `s2sr … --run`, "
                         "so its source item and models are unknown")
    rec = read_record(rec_path)
    cog = rec_path.with_name(rec["cog"])
    if not cog.is_file():
        raise InputError(f"{rec_path}: its COG {cog.name} is not beside it")
    try:
        source = pystac.Item.from_dict(rec["source_item"])
    except Exception as err:  # noqa: BLE001 - pystac raises many kinds on a malformed item
        raise InputError(f"{rec_path}: the source item is not a valid STAC item ({err}); the record is damaged") from err
    return scene_from_cog(cog, source, models=rec["models"], backend=rec["backend"], version=rec["version"],
                          dn_offset=int(rec.get("dn_offset", 0)), backproject=rec.get("backproject"), hybrid=rec.get("hybrid"),
                          post=rec.get("post") if isinstance(rec.get("post"), dict) else None, consistency_rmse=dict(rec.get("consistency_rmse") or {}))


def find_records(paths: Iterable[Path]) -> Iterator[Path]:
    """Sidecar records of the given COGs and of the COGs in the given folders."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(p.glob(f"*{SUFFIX}"))
        else:
            yield p if p.name.endswith(SUFFIX) else record_path(p)
