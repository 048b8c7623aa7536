"""Part files of a split item: row bands written by different workers, then one COG.

An item taller than a unit is cut into row bands of whole blocks (:func:`split_rows`); each
band is written to ``<out>/.s2sr-parts/<stem>/rows-<r0>-<r1>.tif`` (a tiled GeoTIFF with the
band's own georeference, written under a hidden temporary name and renamed when complete),
then its sidecar ``rows-<r0>-<r1>.json`` (the band's consistency sums and what it was made
with, also atomic). A part whose sidecar exists is finished: a re-run after an interrupt
takes it as it is (:func:`finished_part`) instead of computing it again. :func:`assemble`
copies the parts' rows losslessly into the item's COG; :func:`remove_parts` removes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import ensure_dir, output_error, tmp_beside, write_text_atomic
from ..grid import Window

#: Staging folder of part files under ``--out`` (removed once an item is assembled).
PARTS_DIR = ".s2sr-parts"
#: Rows copied per read while assembling.
COPY_ROWS = 512


def split_rows(height: int, block: int, unit_rows: int | None) -> list[tuple[int, int]]:
    """Row bands of an output grid: whole blocks of ``block`` rows, at most ``unit_rows`` tall
    (rounded up to whole blocks; default 2 blocks)."""
    per = max(1, math.ceil((unit_rows or 2 * block) / block)) * block
    return [(r, min(r + per, height)) for r in range(0, height, per)]


def staging_dir(out_dir: str | os.PathLike[str], stem: str) -> Path:
    """Where the parts of the output ``<stem>.tif`` go."""
    return Path(out_dir) / PARTS_DIR / stem


def part_path(staging: Path, rows: tuple[int, int]) -> Path:
    return staging / f"rows-{rows[0]:06d}-{rows[1]:06d}.tif"


def sidecar_path(part: Path) -> Path:
    return part.with_suffix(".json")


class PartWriter:
    """Write rows ``r0:r1`` of an output grid into ``part`` (atomically, on a clean exit).

    ``write(array, window)`` takes windows of the whole output grid (as a COG writer would).
    """

    def __init__(self, part: Path, *, width: int, rows: tuple[int, int], count: int, crs: Any,
                 transform: tuple[float, ...]) -> None:
        from rasterio.transform import Affine

        self.part, self.rows = Path(part), rows
        t = transform
        r0, r1 = rows
        self.profile = {"driver": "GTiff", "width": width, "height": r1 - r0, "count": count, "dtype": "uint16",
                        "crs": crs, "transform": Affine(t[0], t[1], t[2] + r0 * t[1], t[3], t[4], t[5] + r0 * t[4]),
                        "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "LZW",
                        "BIGTIFF": "IF_SAFER"}
        self._tmp: Path | None = None
        self._ds: Any = None

    def __enter__(self) -> PartWriter:
        import rasterio

        ensure_dir(self.part.parent)
        self._tmp = tmp_beside(self.part.parent, self.part.name, ".tif")
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile)
        except OSError as err:
            self._tmp.unlink(missing_ok=True)
            raise output_error(err, self.part) from err
        return self

    def write(self, array: np.ndarray, window: Window) -> None:
        from rasterio.windows import Window as RioWindow

        self._ds.write(array, window=RioWindow(window.col, window.row - self.rows[0], window.width, window.height))

    def __exit__(self, exc_type: object, *exc: object) -> None:
        assert self._tmp is not None
        try:
            self._ds.close()
            if exc_type is None:
                os.replace(self._tmp, self.part)
        except OSError as err:
            raise output_error(err, self.part) from err
        finally:
            self._tmp.unlink(missing_ok=True)


def write_sidecar(part: Path, made_with: Mapping[str, Any], qa: Mapping[str, Mapping[str, float]]) -> Path:
    """Record a finished part (atomically, after the part itself): what made it and its QA sums."""
    doc = {"s2sr_part": 1, "made_with": dict(made_with), "qa": {k: dict(v) for k, v in qa.items()}}
    return write_text_atomic(sidecar_path(part), json.dumps(doc))


def finished_part(part: Path, made_with: Mapping[str, Any], same: Any = None) -> dict[str, Any] | None:
    """The QA sums of ``part`` if it and its sidecar exist and it was made the same way (the
    ``made_with`` dicts equal; their ``models`` compared by ``same(a, b)`` when given), else None."""
    side = sidecar_path(part)
    if not (part.is_file() and side.is_file()):
        return None
    try:
        doc = json.loads(side.read_text())
        had = dict(doc["made_with"])
        qa = {"sq": dict(doc["qa"]["sq"]), "n": dict(doc["qa"]["n"])}
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    want = dict(made_with)
    if same is not None and not same(had.pop("models", {}) or {}, want.pop("models", {}) or {}):
        return None
    if json.loads(json.dumps(had)) != json.loads(json.dumps(want)):  # compare as JSON (tuples as lists)
        return None
    return qa


def assemble(parts: Iterable[tuple[tuple[int, int], Path]], write: Any, width: int, step: int = COPY_ROWS) -> None:
    """Copy the parts' rows, in order, ``step`` rows at a time, into ``write(array, Window)`` (a COG writer's)."""
    import rasterio
    from rasterio.windows import Window as RioWindow

    for (r0, r1), path in sorted(parts):
        with rasterio.open(path) as src:
            for k in range(0, r1 - r0, step):
                h = min(step, r1 - r0 - k)
                write(src.read(window=RioWindow(0, k, width, h)), Window(r0 + k, 0, h, width))


_PART_TEMP = re.compile(r"^\.(rows-\d{6}-\d{6})\.(?:tif|json)\.")


def sweep_parts(staging: Path) -> None:
    """Remove the staging files of unfinished parts in ``staging`` (each under its part's lock, so
    a part a live worker is writing stays); finished parts stay, for a re-run to resume from."""
    from ..errors import OutputLocked
    from .lock import output_lock, sweep_staging

    try:
        names = {m.group(1) for p in staging.iterdir() if (m := _PART_TEMP.match(p.name))}
    except OSError:
        return
    for name in sorted(names):
        part = staging / f"{name}.tif"
        try:
            with output_lock(part):
                sweep_staging(part)
                sweep_staging(sidecar_path(part))
        except OutputLocked:
            continue


def remove_parts(staging: Path) -> None:
    """Remove an item's staging folder, then ``.s2sr-parts`` itself if it is empty."""
    if staging.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
    remove_empty(staging)


def remove_empty(folder: Path) -> None:
    """Remove ``folder`` and then its parent where they are empty."""
    for d in (folder, folder.parent):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
