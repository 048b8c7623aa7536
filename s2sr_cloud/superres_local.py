"""Super-resolution of local scenes: ``.npz`` arrays or folders of per-band GeoTIFFs.

A local scene is just another source of the one streaming loop
(:func:`s2sr_cloud.stream.run_blocks`) that STAC items go through: the same blocks,
back-projection post-step, consistency QA, COG writer and tags; the result is the same
:class:`~s2sr_cloud.pipeline.SceneResult`. Only a ``.npz`` output differs, by its sink.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bands import SR_BANDS, net_spec
from .dn import CheckedSource, check_dn
from .errors import InputError
from .fsutil import atomic_path, check_output
from .grid import Window
from .post import DEFAULT, ConsistencyQA, PostSteps
from .sr import ArraySource, ProgressFn, Runner, model_info

if TYPE_CHECKING:
    from .pipeline import SceneResult

log = logging.getLogger(__name__)


def load_npz(path: str | os.PathLike[str]) -> ArraySource:
    """An :class:`ArraySource` from a ``.npz`` with ``b10``, ``b20``, ``b60``."""
    try:
        with np.load(path) as z:
            missing = [k for k in ("b10", "b20", "b60") if k not in z.files]
            if missing:
                raise InputError(f"{path} lacks arrays {', '.join(missing)}; expected b10 (4,H,W), b20 (6,H/2,W/2), b60 (2,H/6,W/6)")
            arrays = {k: z[k] for k in ("b10", "b20", "b60")}
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"cannot read {path} as a .npz scene: {err}") from err
    for k, a in arrays.items():
        check_dn(a, f"{Path(path).name}:{k}")
    try:
        return ArraySource(arrays["b10"], arrays["b20"], arrays["b60"])
    except (TypeError, ValueError, IndexError) as err:
        raise InputError(f"cannot read {path} as a .npz scene: {err}") from err


#: DN convention of a local scene's output: the input's own.
LOCAL_DN_CONVENTION = "DN = 10000 x reflectance of the input (same convention as the input files); DN 0 = nodata"


def _local_result(out: Path, inp: Path, runners: Mapping[str, Runner], bands: tuple[str, ...], grid: Any,
                  post: PostSteps, qa: ConsistencyQA, seconds: float) -> SceneResult:
    from .pipeline import DN_SCALE, SceneResult

    return SceneResult(
        item=None, path=out, grid=grid, bands=bands, model={n: model_info(r) for n, r in runners.items()},
        backend=next(iter(runners.values())).backend, catalog="local",
        radiometry={"dn_scale": DN_SCALE, "dn_offset": 0, "nodata": 0, "convention": LOCAL_DN_CONVENTION},
        seconds=seconds, post=post, consistency_rmse=qa.result(), source_href=str(inp.resolve()),
    )


def superres_npz(
    inp: Path,
    out: Path,
    runners: Mapping[str, Runner],
    *,
    tile: int | None = None,
    block: int = 1536,
    batch: int | None = None,
    overwrite: bool = False,
    post: PostSteps = DEFAULT,
    on_progress: ProgressFn | None = None,
) -> SceneResult:
    """``.npz`` in → ``.npz`` out with ``b20`` (6, H, W) and ``b60`` (2, H, W) on the 10 m grid.

    The scene goes through the one streaming loop (:func:`~s2sr_cloud.stream.run_blocks`)
    into an in-memory sink; the consistency figures are stored as ``consistency_rmse``
    (JSON), ``backproject`` and ``hybrid`` (the post-steps) beside the bands.
    """
    from .post.estimate import resolve
    from .stream import ArraySink, run_blocks

    if out.suffix.lower() != ".npz":
        raise InputError(f"a .npz scene gives a .npz output: name it e.g. {out.with_suffix('.npz').name} "
                         "(a GeoTIFF needs georeferenced input: a folder of per-band GeoTIFFs)")
    check_output(out, overwrite=overwrite)
    t0 = time.perf_counter()
    src = load_npz(inp)
    post = resolve(post, src, None, runners)  # the auto operator, once for the scene (recorded)
    sink = ArraySink(Window(0, 0, *src.shape10), runners)
    qa = ConsistencyQA()
    run_blocks(src, runners, sink, block=block, tile=tile, batch=batch, post=post, qa=qa,
               on_progress=on_progress)
    with atomic_path(out, suffix=".npz") as tmp:
        arrays = {{"net20": "b20", "net60": "b60"}[n]: a for n, a in sink.arrays.items()}
        np.savez_compressed(tmp, **arrays, backends=np.array([r.backend for r in runners.values()]),
                            precisions=np.array([str(model_info(r).get("precision", "fp32")) for r in runners.values()]),
                            backproject=np.array(post.max_iterations), hybrid=np.array(post.hybrid), consistency_rmse=np.array(json.dumps(qa.result())))
    bands = tuple(b for n in runners for b in net_spec(n).outputs)
    return _local_result(out, inp, runners, bands, None, post, qa, time.perf_counter() - t0)


def superres_geotiff(
    folder: Path,
    out: Path,
    runners: Mapping[str, Runner],
    *,
    tile: int | None = None,
    block: int = 1536,
    batch: int | None = None,
    overwrite: bool = False,
    post: PostSteps = DEFAULT,
    on_progress: ProgressFn | None = None,
    boa_offset: int | None = None,
) -> SceneResult:
    """Folder of per-band GeoTIFFs → one 10 m COG of the 8 super-resolved bands, by blocks.

    The same streaming loop, COG writer, tags and band metadata as ``s2sr run``; baseline ≥ 04.00
    products are harmonised like STAC items (``boa_offset``: :func:`~s2sr_cloud.io.bandfiles.band_offset`).
    """
    from .io.bandfiles import BandFilesSource, band_offset, find_band_files
    from .io.cog import CogWriter
    from .pipeline import band_layout, cog_tags, qa_tags
    from .post.estimate import resolve
    from .stream import BandsSink, PerThreadSource, run_blocks

    if set(runners) != {"net20", "net60"}:
        raise InputError("GeoTIFF output needs both nets (net20 and net60)")
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"a folder of band files gives a COG: name the output e.g. {out.with_suffix('.tif').name}")
    check_output(out, overwrite=overwrite)
    t0 = time.perf_counter()
    files = find_band_files(folder)
    offset, why = band_offset(folder, files, boa_offset)  # baseline >= 04.00: -1000 DN, as for STAC items
    with BandFilesSource(files) as meta:  # checks the grids once, gives CRS and transform
        crs, transform = meta.crs, meta.transform
    # reading + upsampling of block k+1 overlaps inference of block k (one GDAL handle per thread)
    with PerThreadSource(lambda: CheckedSource(BandFilesSource(files, offset=offset, reason=why), folder.name)) as src:
        h, w = src.shape10
        post = resolve(post, src, None, runners)  # the auto operator, once for the scene (in the tags)
        tags = cog_tags(runners, source_item=folder.name, source_href=str(folder.resolve()), catalog="local",
                        dn_convention=LOCAL_DN_CONVENTION, post=post, offsets=[offset])
        qa = ConsistencyQA()
        with CogWriter(out, width=w, height=h, count=len(SR_BANDS), crs=crs, transform=transform, nodata=0,
                       tags=tags, overwrite=overwrite, **band_layout(SR_BANDS)) as writer:
            run_blocks(src, runners, BandsSink(writer.write), block=block, tile=tile, batch=batch,
                       post=post, qa=qa, on_progress=on_progress)
            writer.tags.update(qa_tags(qa.result()))
    return _local_result(out, folder, runners, SR_BANDS, _grid(crs, transform, h, w), post, qa,
                         time.perf_counter() - t0)


def _grid(crs: Any, transform: Any, h: int, w: int) -> Any:
    """The :class:`~s2sr_cloud.grid.OutputGrid` of a georeferenced local scene."""
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    from .grid import OutputGrid

    s, wst, n, e = array_bounds(h, w, transform)
    bounds = (wst, s, e, n)
    bbox = tuple(round(v, 7) for v in transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    return OutputGrid(crs=crs.to_string() if hasattr(crs, "to_string") else str(crs), transform=tuple(transform)[:6], shape=(h, w), window=Window(0, 0, h, w),
                      bounds=bounds, bbox=bbox)


def superres_scene(
    inp: Path,
    out: Path,
    runners: Mapping[str, Runner],
    **kwargs: Any,
) -> SceneResult:
    """A local scene (a folder of per-band GeoTIFFs → COG, or a ``.npz`` → ``.npz``) through the
    one streaming loop; ``kwargs`` as :func:`superres_geotiff`."""
    if Path(inp).is_dir():
        return superres_geotiff(Path(inp), Path(out), runners, **kwargs)
    if kwargs.pop("boa_offset", None) is not None:
        raise InputError("--boa-offset applies to folders of band files; remove the offset from .npz arrays first")
    return superres_npz(Path(inp), Path(out), runners, **kwargs)
