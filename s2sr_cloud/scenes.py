"""Scenes for training and evaluation: loading them from files, folders, STAC items or any source.

A *scene* is given as

* an ``.npz`` file in the common layout (``b10`` (4, H, W), ``b20`` (6, H/2, W/2),
  ``b60`` (2, H/6, W/6), uint16 DN on the pre-04.00 scale, spectral band order), or
* a folder of single-band GeoTIFFs/COGs whose names end in ``_B02.tif`` … ``_B12.tif``,
  ``_B8A.tif`` (read with rasterio), or
* a folder holding such files / folders (searched recursively), or
* a STAC item ``.json`` (read through the item reader), or
* any :class:`~s2sr_cloud.sr.SceneSource` through :func:`scene_from_source`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bands import BANDS_10M, BANDS_20M, BANDS_60M
from .errors import InputError
from .grid import Window
from .io.bandfiles import is_band_folder
from .sr import SceneSource

log = logging.getLogger(__name__)


@dataclass
class Scene:
    """One scene in memory (DN arrays in the ``.npz`` layout)."""

    name: str
    b10: np.ndarray
    b20: np.ndarray
    b60: np.ndarray
    files: list[Path] = field(default_factory=list)


def load_npz(path: Path) -> Scene:
    """Load an ``.npz`` scene; fail clearly when keys are missing."""
    try:
        with np.load(path) as z:
            b10, b20, b60 = (np.asarray(z[k]) for k in ("b10", "b20", "b60"))
    except KeyError as err:
        raise InputError(f"{path}: not a scene .npz (needs arrays b10, b20, b60): {err}") from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read .npz ({err})") from err
    return Scene(path.stem, b10, b20, b60, [path])


def load_tif_folder(folder: Path) -> Scene:
    """Load a folder of single-band GeoTIFFs (``*_B02.tif`` …) through the band-file reader."""
    from .io.bandfiles import BandFilesSource, find_band_files

    files = find_band_files(folder)
    with BandFilesSource(files) as src:
        scene = scene_from_source(folder.name, src)
    scene.files = [files[b] for b in BANDS_10M + BANDS_20M + BANDS_60M]
    return scene


def scene_from_source(name: str, source: SceneSource, window: Window | None = None) -> Scene:
    """Read a window (10 m pixels, multiples of 6 are best) of any
    :class:`~s2sr_cloud.sr.SceneSource` — e.g. the STAC item reader — into a :class:`Scene`."""
    h, w = source.shape10
    win = window or Window(0, 0, h, w)
    groups = []
    for res in (10, 20, 60):
        s = res // 10
        rows = (win.row // s, (win.row + win.height) // s)
        cols = (win.col // s, (win.col + win.width) // s)
        groups.append(source.read(res, rows, cols))
    return Scene(name, *groups)


def find_scenes(paths: Iterable[str | Path], exclude: Sequence[str] = ()) -> list[Path]:
    """Expand files/folders to scene paths (``.npz`` files and GeoTIFF band folders).

    ``exclude`` holds glob patterns matched against each scene's name and full path.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"training/evaluation data {p} does not exist")
        if p.is_file() or is_band_folder(p):
            found.append(p)
        else:
            found += sorted(q for q in p.rglob("*.npz"))
            found += sorted(q for q in p.rglob("*") if q.is_dir() and is_band_folder(q))
    npz_stems = {p.stem for p in found if p.suffix == ".npz"}
    out = []
    for p in found:
        if p.is_dir() and p.name in npz_stems:  # the same scene as a GeoTIFF folder: use the .npz
            continue
        if any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(str(p), pat) for pat in exclude):
            log.info("excluded %s", p)
            continue
        out.append(p)
    if not out:
        raise InputError(f"no scene (.npz or GeoTIFF band folder) found in {list(paths)}")
    return out


def load_stac_item(ref: str | Path) -> Scene:
    """The footprint of a STAC item (JSON file or URL) read through the item reader.

    Uses the same asset lookup and radiometry rules as ``s2sr run`` (baseline-04.00 offset
    removed per the catalog's rules), so items of any supported catalog can be training
    or evaluation data. The whole item is read into memory: use items or crops of
    modest size.
    """
    from .catalog.presets import profile_for_item
    from .catalog.search import load_item
    from .io.read import ItemSource
    from .pipeline import RunParams, _signer, plan_item

    item = load_item(str(ref))
    profile = profile_for_item(item.to_dict())
    plan = plan_item(item, profile, RunParams(out_dir=Path(".")))
    with ItemSource(plan.assets, plan.item_grid, signer=_signer(profile), http=plan.http) as src:
        return scene_from_source(item.id, src, plan.out.window)


def load_scene(path: Path) -> Scene:
    """Load one scene path (``.npz``, GeoTIFF folder, or STAC item ``.json``)."""
    if path.is_dir():
        return load_tif_folder(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".json":
        return load_stac_item(path)
    raise InputError(
        f"{path}: unsupported scene format (expected .npz, a folder of band GeoTIFFs or a STAC item .json)"
    )


def sha256_of(paths: Iterable[Path]) -> str:
    """sha256 of one file, or of the concatenated files of a GeoTIFF folder."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
