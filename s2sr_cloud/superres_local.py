"""Super-resolution of local scenes: ``.npz`` arrays or folders of per-band GeoTIFFs."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import __version__
from .bands import SR_BANDS
from .dn import CheckedSource, check_dn
from .errors import InputError
from .fsutil import atomic_path, check_output
from .sr import (
    ArraySource,
    ProgressFn,
    Runner,
    assemble_sr_bands,
    super_resolve,
    to_uint16,
)

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


def superres_npz(
    inp: Path,
    out: Path,
    runners: Mapping[str, Runner],
    *,
    tile: int | None = None,
    batch: int | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> Path:
    """``.npz`` in → ``.npz`` out with ``b20`` (6, H, W) and ``b60`` (2, H, W) on the 10 m grid."""
    if out.suffix.lower() != ".npz":
        raise InputError(f"a .npz scene gives a .npz output: name it e.g. {out.with_suffix('.npz').name} "
                         "(a GeoTIFF needs georeferenced input: a folder of per-band GeoTIFFs)")
    check_output(out, overwrite=overwrite)
    src = load_npz(inp)
    res = super_resolve(src, runners, tile=tile, batch=batch, on_tile=on_progress)
    with atomic_path(out, suffix=".npz") as tmp:
        arrays = {{"net20": "b20", "net60": "b60"}[n]: to_uint16(a) for n, a in res.items()}
        np.savez_compressed(tmp, **arrays, backends=np.array([r.backend for r in runners.values()]),
                            precisions=np.array([str(getattr(r, "precision", "fp32")) for r in runners.values()]))
    return out


def superres_geotiff(
    folder: Path,
    out: Path,
    runners: Mapping[str, Runner],
    *,
    tile: int | None = None,
    block: int = 1536,
    batch: int | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> Path:
    """Folder of per-band GeoTIFFs → one 10 m COG of the 8 super-resolved bands, by blocks."""
    from .stream import PerThreadSource, stream_blocks_overlapped
    from .io.bandfiles import BandFilesSource, find_band_files
    from .io.cog import CogWriter

    if set(runners) != {"net20", "net60"}:
        raise InputError("GeoTIFF output needs both nets (net20 and net60)")
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"a folder of band files gives a COG: name the output e.g. {out.with_suffix('.tif').name}")
    check_output(out, overwrite=overwrite)
    files = find_band_files(folder)
    with BandFilesSource(files) as meta:  # checks the grids once, gives CRS and transform
        crs, transform = meta.crs, meta.transform
    # reading + upsampling of block k+1 overlaps inference of block k (one GDAL handle per thread)
    with PerThreadSource(lambda: CheckedSource(BandFilesSource(files), folder.name)) as src:
        h, w = src.shape10
        # the tags and band metadata of `s2sr run` COGs, less what only a STAC item knows
        from .pipeline import DN_SCALE, _description
        from .sr import model_info

        desc = [_description(b, True) for b in SR_BANDS]
        tags = {
            "S2SR_VERSION": __version__,
            "S2SR_SOURCE_HREF": str(folder.resolve()),
            "S2SR_DN_CONVENTION": "DN = 10000 x reflectance of the input (same convention as the input files); DN 0 = nodata",
            "S2SR_DN_SCALE": str(DN_SCALE),
            "S2SR_DN_OFFSET": "0",
            "S2SR_BACKEND": ",".join(sorted({r.backend for r in runners.values()})),
            "S2SR_BACKENDS": ",".join(f"{k}={r.backend}" for k, r in runners.items()),
            "S2SR_MODELS": ",".join(str(model_info(r).get("name", n)) for n, r in runners.items()),
            "S2SR_PRECISION": ",".join(f"{k}={getattr(r, 'precision', 'fp32')}" for k, r in runners.items()),
        }
        with CogWriter(
            out, width=w, height=h, count=len(SR_BANDS), crs=crs, transform=transform,
            nodata=0, descriptions=desc, tags=tags, overwrite=overwrite,
            band_tags=[{"band": b, "scale": str(DN_SCALE), "offset": "0"} for b in SR_BANDS],
        ) as writer:
            for win, o in stream_blocks_overlapped(src, runners, block=block, tile=tile, batch=batch, on_progress=on_progress):
                writer.write(to_uint16(assemble_sr_bands(o)), win)
    return out
