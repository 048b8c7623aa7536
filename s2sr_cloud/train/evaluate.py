"""Wald-protocol evaluation of runners on a scene, and the real-scale consistency check.

For each net the scene is degraded by the net's factor (:mod:`.wald`), the degraded
bands are super-resolved through :func:`s2sr_cloud.sr.super_resolve` (the same tiled
code path as production), and the output is compared with the original bands; bicubic
upsampling of the degraded bands is the baseline. The real-scale check runs the nets on
the scene itself and compares the output, degraded back, with the input bands.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import BANDS_20M, BANDS_60M, net_spec
from ..metrics import all_metrics, bicubic_baseline, consistency
from ..sr import ArraySource, ProgressFn, Runner, model_info, super_resolve
from .data import Scene
from .wald import crop_to, wald_scene

log = logging.getLogger(__name__)


def wald_metrics(scene: Scene, net: str, runner: Runner, *, tile: int = 256, on_tile: ProgressFn | None = None) -> dict[str, Any]:
    """Metrics of ``runner`` and of bicubic upsampling for one net on the degraded scene."""
    spec = net_spec(net)
    ws = wald_scene(scene.b10, scene.b20, scene.b60, spec.name)
    src = ArraySource(ws.b10, ws.b20, ws.b60)
    sr = super_resolve(src, {spec.name: runner}, tile=tile, on_tile=on_tile)[spec.name]
    lr = ws.b20 if spec.factor == 2 else ws.b60
    bic = bicubic_baseline(lr, spec.factor, ws.target.shape[1:])
    bands = list(spec.outputs)
    model = all_metrics(ws.target, sr, bands)
    base = all_metrics(ws.target, bic, bands)
    return {
        "factor": spec.factor,
        "bands": bands,
        "shape": list(ws.target.shape[1:]),
        "runner": model_info(runner),
        "model": model,
        "bicubic": base,
        "rmse_reduction_vs_bicubic": round(1.0 - model["rmse"] / base["rmse"], 4) if base["rmse"] else None,
    }


def real_scale(scene: Scene, runners: Mapping[str, Runner], *, tile: int = 256, on_tile: ProgressFn | None = None) -> dict[str, Any]:
    """Real-scale consistency of each net (and of bicubic) on the scene at native resolution."""
    b10, b20, b60 = crop_to(scene.b10, scene.b20, scene.b60, 6)
    src = ArraySource(b10, b20, b60)
    out = super_resolve(src, dict(runners), tile=tile, on_tile=on_tile)
    res: dict[str, Any] = {}
    for name, sr in out.items():
        spec = net_spec(name)
        lr = (b20 if spec.factor == 2 else b60).astype(np.float32)
        bands = list(BANDS_20M if spec.factor == 2 else BANDS_60M)
        bic = bicubic_baseline(lr, spec.factor, sr.shape[1:])
        res[name] = {
            "model": consistency(sr, lr, spec.factor, bands),
            "bicubic": consistency(bic, lr, spec.factor, bands),
        }
    return res


def evaluate_scene(
    scene: Scene,
    runners: Mapping[str, Runner],
    *,
    real: bool = True,
    tile: int = 256,
    on_tile: ProgressFn | None = None,
) -> dict[str, Any]:
    """The ``s2sr evaluate`` document: ``{"net20": {...}, "net60": {...}, "scene": …}``.

    Each net entry holds ``model`` and ``bicubic`` metrics (means over bands plus
    ``per_band``) and, with ``real``, ``consistency`` (real-scale RMSE in DN).
    """
    doc: dict[str, Any] = {"scene": {"name": scene.name, "files": [str(f) for f in scene.files], "shape10": list(scene.b10.shape[1:])}}
    for name, runner in runners.items():
        log.info("Wald evaluation of %s on %s", name, scene.name)
        doc[net_spec(name).name] = wald_metrics(scene, name, runner, tile=tile, on_tile=on_tile)
    if real:
        log.info("real-scale consistency on %s", scene.name)
        for name, entry in real_scale(scene, runners, tile=tile, on_tile=on_tile).items():
            doc[name]["consistency"] = entry
    return doc


def read_sr_output(path: Path) -> dict[str, np.ndarray]:
    """A super-resolved output of ``s2sr superres``: ``.npz`` (``b20``/``b60`` on the 10 m
    grid) or a GeoTIFF/COG with the 8 bands in :data:`~s2sr_cloud.bands.SR_BANDS` order."""
    from ..bands import SR_BANDS
    from ..errors import InputError

    if path.suffix == ".npz":
        with np.load(path) as z:
            return {n: np.asarray(z[k], np.float32) for n, k in (("net20", "b20"), ("net60", "b60")) if k in z}
    try:
        import rasterio

        with rasterio.open(path) as ds:
            arr = ds.read().astype(np.float32)
    except Exception as err:  # rasterio raises several types for unreadable files
        raise InputError(f"cannot read super-resolved output {path}: {err}") from err
    if arr.shape[0] != len(SR_BANDS):
        raise InputError(f"{path} has {arr.shape[0]} bands; expected the {len(SR_BANDS)} bands {', '.join(SR_BANDS)}")
    idx = {b: i for i, b in enumerate(SR_BANDS)}
    return {"net20": arr[[idx[b] for b in BANDS_20M]], "net60": arr[[idx[b] for b in BANDS_60M]]}


def output_consistency(scene: Scene, path: Path) -> dict[str, Any]:
    """Real-scale consistency of an existing output against the scene's input bands."""
    from ..errors import ShapeMismatch

    out: dict[str, Any] = {}
    for name, sr in read_sr_output(path).items():
        spec = net_spec(name)
        lr = (scene.b20 if spec.factor == 2 else scene.b60).astype(np.float32)
        h, w = (sr.shape[1] // 6) * 6, (sr.shape[2] // 6) * 6
        if sr.shape[1:] != scene.b10.shape[1:]:
            raise ShapeMismatch(f"output {path} is {sr.shape[1:]} px, the scene's 10 m grid {scene.b10.shape[1:]}")
        bands = list(BANDS_20M if spec.factor == 2 else BANDS_60M)
        out[name] = consistency(sr[:, :h, :w], lr[:, : h // spec.factor, : w // spec.factor], spec.factor, bands)
    return out
