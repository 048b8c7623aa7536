"""Super-resolution quality metrics (pure NumPy), the bicubic baseline and the
real-scale consistency check.

All metrics compare a reference ``ref`` with an estimate ``est``, both (C, H, W) in DN
(reflectance × 10000). Pixels where either is 0 (nodata) are left out.

* **RMSE** (DN) per band.
* **SRE** (dB), signal to reconstruction error: ``10·log10(mean(ref)² / MSE)`` per band.
* **SAM** (degrees): mean spectral angle between the band vectors of each pixel
  (needs ≥ 2 bands; one number for all bands).
* **UIQ**: Wang & Bovik's universal image quality index, the mean over non-overlapping
  32 × 32 blocks (the whole image when smaller) of ``4·σxy·μx·μy / ((σx²+σy²)(μx²+μy²))``.
* **PSNR** (dB): ``20·log10(peak / RMSE)`` with ``peak`` = the largest DN of the reference band.

The *real-scale consistency* of a super-resolved output is the RMSE between the output
degraded back to the input's resolution (Wald degradation: Gaussian blur with
sigma = 1/factor, then block mean) and the input bands themselves: it needs no ground
truth, so it works on any real output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .ops import (
    WALD,
    Degradation,
    block_mean,
    degrade,
    dilate_by_blur,
    upsample_bicubic,
)

#: Block side of the UIQ windows.
UIQ_BLOCK = 32


def _valid(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape")
    return np.all(ref != 0, axis=0) & np.all(est != 0, axis=0)


def rmse(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """RMSE per band (DN)."""
    m = _valid(ref, est)
    d = ref[:, m].astype(np.float64) - est[:, m].astype(np.float64)
    return np.sqrt(np.mean(d**2, axis=1))


def sre(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Signal to reconstruction error per band (dB)."""
    m = _valid(ref, est)
    r = ref[:, m].astype(np.float64)
    mse = np.mean((r - est[:, m].astype(np.float64)) ** 2, axis=1)
    return 10.0 * np.log10(np.mean(r, axis=1) ** 2 / np.maximum(mse, 1e-12))


def sam(ref: np.ndarray, est: np.ndarray) -> float:
    """Mean spectral angle (degrees) over valid pixels."""
    m = _valid(ref, est)
    r = ref[:, m].astype(np.float64)
    e = est[:, m].astype(np.float64)
    cos = np.sum(r * e, axis=0) / np.maximum(np.linalg.norm(r, axis=0) * np.linalg.norm(e, axis=0), 1e-12)
    return float(np.degrees(np.mean(np.arccos(np.clip(cos, -1.0, 1.0)))))


def _uiq_band(x: np.ndarray, y: np.ndarray, block: int) -> float:
    h, w = x.shape
    bh, bw = min(block, h), min(block, w)
    qs = []
    for r in range(0, h - bh + 1, bh):
        for c in range(0, w - bw + 1, bw):
            a = x[r : r + bh, c : c + bw].ravel()
            b = y[r : r + bh, c : c + bw].ravel()
            ma, mb = a.mean(), b.mean()
            va, vb = a.var(), b.var()
            cov = np.mean((a - ma) * (b - mb))
            den = (va + vb) * (ma**2 + mb**2)
            qs.append(1.0 if den == 0 else 4.0 * cov * ma * mb / den)
    return float(np.mean(qs))


def uiq(ref: np.ndarray, est: np.ndarray, block: int = UIQ_BLOCK) -> np.ndarray:
    """Universal image quality index per band (1 = identical)."""
    _valid(ref, est)
    return np.array([_uiq_band(ref[i].astype(np.float64), est[i].astype(np.float64), block) for i in range(ref.shape[0])])


def psnr(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """PSNR per band (dB), peak = the reference band's maximum."""
    peak = ref.reshape(ref.shape[0], -1).max(axis=1).astype(np.float64)
    return 20.0 * np.log10(peak / np.maximum(rmse(ref, est), 1e-12))


def _r(v: float, nd: int = 4) -> float:
    return round(float(v), nd)


def all_metrics(ref: np.ndarray, est: np.ndarray, bands: Sequence[str]) -> dict[str, Any]:
    """All metrics: means over bands (``rmse``, ``sre``, ``uiq``, ``psnr``), ``sam``, and ``per_band``."""
    per = {"rmse": rmse(ref, est), "sre": sre(ref, est), "uiq": uiq(ref, est), "psnr": psnr(ref, est)}
    out: dict[str, Any] = {k: _r(np.mean(v)) for k, v in per.items()}
    out["sam"] = _r(sam(ref, est)) if ref.shape[0] > 1 else None
    out["per_band"] = {b: {k: _r(v[i]) for k, v in per.items()} for i, b in enumerate(bands)}
    return out


def bicubic_baseline(lr: np.ndarray, factor: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The baseline estimate: bicubic upsampling of ``lr`` by ``factor``."""
    return upsample_bicubic(lr, factor, shape)


def degrade_back(sr: np.ndarray, factor: int, op: Degradation = WALD) -> np.ndarray:
    """Degradation (Wald operator by default) of a super-resolved (C, H, W) output to the input
    resolution, summed in float64."""
    return degrade(np.asarray(sr, dtype=np.float64), factor, op).astype(np.float32)


__all__ = ["all_metrics", "bicubic_baseline", "consistency", "degrade_back", "dilate_by_blur", "psnr", "rmse",
           "sam", "sre", "uiq"]


def consistency(sr: np.ndarray, lr: np.ndarray, factor: int, bands: Sequence[str] | None = None) -> dict[str, Any]:
    """Real-scale consistency: RMSE (DN) between ``sr`` degraded by ``factor`` and ``lr``.

    Args:
        sr: super-resolved bands (C, H, W) at 10 m, DN, 0 = nodata.
        lr: the input bands (C, H/factor, W/factor) at native resolution, DN.
        factor: 2 (20 m bands) or 6 (60 m bands).
        bands: band names for the per-band values.

    Returns:
        ``{"rmse": mean over bands, "per_band": {band: rmse}}``; blocks that contain
        nodata in ``sr`` are left out.
    """
    h, w = lr.shape[1] * factor, lr.shape[2] * factor
    if sr.shape[1] < h or sr.shape[2] < w:
        raise ValueError(f"output {sr.shape} smaller than {factor} x input {lr.shape}")
    sr = sr[:, :h, :w]
    back = degrade_back(sr, factor)
    nodata = block_mean(dilate_by_blur(np.any(sr == 0, axis=0), factor)[None].astype(np.float32), factor)[0] > 0
    back[:, nodata] = 0
    v = rmse(lr.astype(np.float32), back)
    names = list(bands) if bands is not None else [str(i) for i in range(lr.shape[0])]
    return {"rmse": _r(np.mean(v)), "per_band": {b: _r(x) for b, x in zip(names, v, strict=True)}}
