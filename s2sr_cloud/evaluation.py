"""Wald-protocol evaluation of runners on a scene, and the real-scale consistency check.

For each net the scene is degraded by the net's factor (:mod:`s2sr_cloud.wald`, with the
degradation protocol asked for: the Wald operator by default), the degraded bands are
super-resolved through :func:`s2sr_cloud.sr.super_resolve` (the same tiled code path as
production) and post-stepped (:class:`~s2sr_cloud.post.PostSteps`), and the output is compared
with the original bands; bicubic upsampling of the degraded bands is the baseline. The
real-scale check runs the nets on the scene itself and compares the output, degraded back,
with the input bands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bands import BANDS_20M, BANDS_60M, net_spec
from .metrics import all_metrics, bicubic_baseline, consistency
from .ops import WALD, Degradation
from .post import DEFAULT, ITERATIONS, PostSteps
from .post.estimate import resolve
from .scenes import Scene
from .sr import ArraySource, ProgressFn, Runner, model_info, super_resolve
from .wald import WaldScene, crop_to, wald_scene

log = logging.getLogger(__name__)

#: ``adapt(scene, net, runner) -> (runner, info)``: an optional scene-adaptive refinement
#: (:mod:`s2sr_cloud.train.adapt` builds one), given only the evaluation *input*.
Adapter = Callable[[Scene, str, Runner], tuple[Runner, dict[str, Any] | None]]


def nets_backprojected(post: PostSteps, net: str) -> PostSteps:
    """The comparison "nets + back-projection" for ``net`` under ``post``: its back-projection (and
    operator) without the hybrid step, or, when ``post`` does not back-project ``net``, the reference
    back-projection (:data:`~s2sr_cloud.post.ITERATIONS` iterations of the Wald operator)."""
    if post.iterations(net) >= 0:
        return PostSteps(post.iterations(net), False, post.guided, post.operator_of(net), resolved=post.resolved)
    return PostSteps(ITERATIONS, False, post.guided, "wald")


def raw_on_degraded(ws: WaldScene, runner: Runner, *, tile: int = 256, on_tile: ProgressFn | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The net's raw output on a degraded scene and what its post-steps and baseline take:
    ``(raw, lr, b10, b20, bicubic)`` (the LR bands the net restores, the degraded 10 m bands cropped
    to the output, the degraded 20 m bands, bicubic upsampling of the LR bands)."""
    spec = net_spec(ws.net)
    src = ArraySource(ws.b10, ws.b20, ws.b60)
    raw = super_resolve(src, {spec.name: runner}, tile=tile, on_tile=on_tile)[spec.name]
    lr = ws.b20 if spec.factor == 2 else ws.b60
    bic = bicubic_baseline(lr, spec.factor, ws.target.shape[1:])
    return raw, lr, ws.b10[:, : raw.shape[1], : raw.shape[2]], ws.b20, bic


def wald_metrics(
    scene: Scene,
    net: str,
    runner: Runner,
    *,
    tile: int = 256,
    on_tile: ProgressFn | None = None,
    post: PostSteps = DEFAULT,
    protocol: Degradation = WALD,
    adapt: Adapter | None = None,
) -> dict[str, Any]:
    """Metrics of ``runner`` and of bicubic upsampling for one net on the degraded scene.

    ``model`` is what the product outputs (the net, then ``post``); ``net_only`` is the net's
    raw output when a post-step is applied, ``no_hybrid`` the net with the back-projection alone
    (:func:`nets_backprojected`). ``protocol`` is how the input is degraded. With ``adapt``, the net is
    first fine-tuned on the degraded scene (the evaluation input) — never on the target.
    """
    spec = net_spec(net)
    ws = wald_scene(scene.b10, scene.b20, scene.b60, spec.name, protocol)
    adapt_info = None
    if adapt is not None:
        degraded = Scene(f"{scene.name}/{spec.factor}", ws.b10, ws.b20, ws.b60)
        runner, adapt_info = adapt(degraded, spec.name, runner)
    raw, lr, b10, b20, bic = raw_on_degraded(ws, runner, tile=tile, on_tile=on_tile)
    post = resolve(post, ArraySource(ws.b10, ws.b20, ws.b60), None, [spec.name])  # from the input alone
    sr = post.finish(spec.name, raw, lr, b10=b10, b20=b20)
    bands = list(spec.outputs)
    model = all_metrics(ws.target, sr, bands)
    base = all_metrics(ws.target, bic, bands)
    doc: dict[str, Any] = {
        "factor": spec.factor,
        "bands": bands,
        "shape": list(ws.target.shape[1:]),
        "protocol": protocol.name,
        "runner": model_info(runner),
        **post.record(),
        "model": model,
        "bicubic": base,
        "rmse_reduction_vs_bicubic": round(1.0 - model["rmse"] / base["rmse"], 4) if base["rmse"] else None,
    }
    if post.active:
        doc["net_only"] = all_metrics(ws.target, raw, bands)
    if post.active:
        doc["no_hybrid"] = all_metrics(ws.target, nets_backprojected(post, spec.name).finish(spec.name, raw, lr, b10=b10, b20=b20), bands)
    if adapt_info is not None:
        doc["adapt"] = adapt_info
    return doc


def real_scale(
    scene: Scene,
    runners: Mapping[str, Runner],
    *,
    tile: int = 256,
    on_tile: ProgressFn | None = None,
    post: PostSteps = DEFAULT,
) -> dict[str, Any]:
    """Real-scale consistency of each net (and of bicubic) on the scene at native resolution."""
    b10, b20, b60 = crop_to(scene.b10, scene.b20, scene.b60, 6)
    src = ArraySource(b10, b20, b60)
    out = super_resolve(src, dict(runners), tile=tile, on_tile=on_tile)
    post = resolve(post, src, None, runners)
    res: dict[str, Any] = {}
    for name, raw in out.items():
        spec = net_spec(name)
        lr = (b20 if spec.factor == 2 else b60).astype(np.float32)
        bands = list(BANDS_20M if spec.factor == 2 else BANDS_60M)
        bic = bicubic_baseline(lr, spec.factor, raw.shape[1:])
        sr = post.finish(name, raw, lr, b10=b10, b20=b20)
        res[name] = {
            "model": consistency(sr, lr, spec.factor, bands),
            "bicubic": consistency(bic, lr, spec.factor, bands),
        }
        if post.active:
            res[name]["net_only"] = consistency(raw, lr, spec.factor, bands)
    return res


def evaluate_scene(
    scene: Scene,
    runners: Mapping[str, Runner],
    *,
    real: bool = True,
    tile: int = 256,
    on_tile: ProgressFn | None = None,
    post: PostSteps = DEFAULT,
    protocol: Degradation = WALD,
    adapt: Adapter | None = None,
) -> dict[str, Any]:
    """The ``s2sr evaluate`` document: ``{"net20": {...}, "net60": {...}, "scene": …}``.

    Each net entry holds ``model`` and ``bicubic`` metrics (means over bands plus
    ``per_band``), ``net_only`` (the raw net, when a post-step is on) and, with ``real``,
    ``consistency`` (real-scale RMSE in DN). Scenes too small for a net (the 60 m net needs
    36 px at 10 m) leave that net out, with a ``skipped`` reason.
    """
    from .errors import InputError

    doc: dict[str, Any] = {"scene": {"name": scene.name, "files": [str(f) for f in scene.files],
                                     "shape10": list(scene.b10.shape[1:])}, "protocol": protocol.name}
    for name, runner in runners.items():
        log.info("%s evaluation of %s on %s", protocol.name, name, scene.name)
        try:
            doc[net_spec(name).name] = wald_metrics(scene, name, runner, tile=tile, on_tile=on_tile, post=post,
                                                    protocol=protocol, adapt=adapt)
        except InputError as err:
            doc.setdefault("skipped", {})[net_spec(name).name] = str(err)
    if real:
        log.info("real-scale consistency on %s", scene.name)
        for name, entry in real_scale(scene, runners, tile=tile, on_tile=on_tile, post=post).items():
            if name in doc:
                doc[name]["consistency"] = entry
    return doc


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """95 % percentile-bootstrap interval of the mean of ``values`` (scenes or patches resampled with
    replacement, fixed ``seed`` so the figure is reproducible); None for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [round(float(lo), 2), round(float(hi), 2)]


def _ratio_ci(model: Sequence[float], base: Sequence[float], *, resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """95 % bootstrap interval of ``mean(model) / mean(base)`` (the same scenes resampled for both)."""
    m, b = np.asarray(model, np.float64), np.asarray(base, np.float64)
    if m.size < 2 or m.size != b.size:
        return None
    idx = np.random.default_rng(seed).integers(0, m.size, size=(resamples, m.size))
    r = m[idx].mean(axis=1) / np.maximum(b[idx].mean(axis=1), 1e-9)
    lo, hi = np.percentile(r, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def summarize(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over scenes of each net's band-mean RMSE (model, no hybrid = nets + back-projection,
    net only, bicubic) and consistency, each with a 95 % bootstrap interval over the scenes
    (``ci_*``, seed 0), and the ratio of each to bicubic."""
    out: dict[str, Any] = {"scenes": len(docs)}
    for net in ("net20", "net60"):
        entries = [d[net] for d in docs if net in d]
        if not entries:
            continue
        s: dict[str, Any] = {"scenes": len(entries)}
        base = [e["bicubic"]["rmse"] for e in entries]
        for key in ("model", "net_only", "no_hybrid", "bicubic"):
            vals = [e[key]["rmse"] for e in entries if key in e]
            if vals:
                s[f"rmse_{key}"] = round(float(np.mean(vals)), 2)
                s[f"ci_{key}"] = bootstrap_ci(vals)
                if key != "bicubic" and len(vals) == len(base) and np.mean(base) > 0:
                    s[f"ratio_{key}"] = round(float(np.mean(vals) / np.mean(base)), 4)
                    s[f"ci_ratio_{key}"] = _ratio_ci(vals, base)
        if s.get("rmse_bicubic"):
            s["rmse_ratio_vs_bicubic"] = round(s["rmse_model"] / s["rmse_bicubic"], 4)
        for key in ("model", "net_only", "bicubic"):
            vals = [e["consistency"][key]["rmse"] for e in entries if key in e.get("consistency", {})]
            if vals:
                s[f"consistency_{key}"] = round(float(np.mean(vals)), 2)
        out[net] = s
    return out


def read_sr_output(path: Path) -> dict[str, np.ndarray]:
    """A super-resolved output of ``s2sr superres``: ``.npz`` (``b20``/``b60`` on the 10 m
    grid) or a GeoTIFF/COG with the 8 bands in :data:`~s2sr_cloud.bands.SR_BANDS` order."""
    from .bands import SR_BANDS
    from .errors import InputError

    if path.suffix == ".npz":
        with np.load(path) as z:
            return {n: np.asarray(z[k], np.float32) for n, k in (("net20", "b20"), ("net60", "b60")) if k in z}
    try:
        import rasterio

        with rasterio.open(path) as ds:
            arr = ds.read().astype(np.float32)
    except Exception as err:  # rasterio raises several types for unreadable files
        raise InputError(f"cannot read super-resolved output {path}: {err}") from err
    if arr.shape[0] < len(SR_BANDS):
        raise InputError(f"{path} has {arr.shape[0]} bands; expected the {len(SR_BANDS)} bands {', '.join(SR_BANDS)}")
    idx = {b: i for i, b in enumerate(SR_BANDS)}
    return {"net20": arr[[idx[b] for b in BANDS_20M]], "net60": arr[[idx[b] for b in BANDS_60M]]}


def output_consistency(scene: Scene, path: Path) -> dict[str, Any]:
    """Real-scale consistency of an existing output against the scene's input bands."""
    from .errors import ShapeMismatch

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
