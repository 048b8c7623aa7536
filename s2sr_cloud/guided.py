"""Hybrid post-step: the net blended with a local guided regression (beyond the paper).

Within a few low-resolution (LR) pixels, a 20 m or 60 m band is close to a linear
combination of the bands observed at a finer resolution (B01 follows B02, B09 follows the
NIR bands, the red-edge bands follow B04/B08). This module fits that combination locally
on the observation itself and applies it at 10 m:

1. guides ``f``: the 10 m bands (20 m net), or the 10 m bands plus the bilinearly
   upsampled 20 m bands (60 m net), on the 10 m grid;
2. ``F = D(f)``: the guides degraded to the LR grid with the Wald operator (the same ``D``
   as the back-projection);
3. per LR pixel, a ridge regression ``lr ≈ a·F + b`` over the ``(2r+1)²`` LR pixels around
   it (weighted: nodata pixels do not count), the coefficients then averaged over the same
   window (as a guided filter does) and bilinearly upsampled to 10 m;
4. ``pred = a·f + b`` at 10 m, and the output ``(1 - w)·net + w·pred``.

The back-projection (:mod:`s2sr_cloud.backproject`) runs after the blend, so the output
stays consistent with the observation. The nets are data-bound here (few real 60 m
target pixels to learn from: ``docs/model-card.md``), and their errors and the
regression's differ enough that the blend beats both on the held-out decision scenes;
``radius``, ``ridge`` and ``weight`` of :data:`DEFAULTS` were chosen there (Wald protocol),
never on the test scene.

Tiling stays seamless: the value at a 10 m pixel depends on the inputs within
:func:`margin_lr` LR pixels, so windows are processed with that margin (clamped at the
true image border, where the whole-image computation mirrors and clamps the same way) and
cropped, like the back-projection does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bands import NODATA, net_spec


@dataclass(frozen=True)
class GuidedConfig:
    """One net's hybrid post-step: window radius (LR pixels), ridge (DN²), regression weight."""

    radius: int
    ridge: float
    weight: float


#: Chosen on the held-out decision scenes (Havel and the L2A held-out set, Wald protocol):
#: the lowest mean ratio of output RMSE to bicubic RMSE over radius 1–6, ridge 10–3000 DN²
#: and weight 0–1 (the grid and its figures: ``docs/model-card.md``).
DEFAULTS: dict[str, GuidedConfig] = {
    "net20": GuidedConfig(radius=1, ridge=30.0, weight=0.4),
    "net60": GuidedConfig(radius=1, ridge=300.0, weight=0.6),
}


def config(net: str) -> GuidedConfig:
    """The shipped hybrid configuration of ``net`` (``20``/``net20``/``60``/``net60``)."""
    return DEFAULTS[net_spec(net).name]


def margin_lr(radius: int) -> int:
    """LR pixels around a window that the blended values depend on: the moments' window
    (``radius``), the coefficients' average (``radius``), the bilinear upsampling of the
    coefficients (1) and the reach of the degradation and of the 20 m guides' upsampling (1)."""
    return 2 * radius + 2


def margin10(factor: int, radius: int) -> int:
    """:func:`margin_lr` in 10 m pixels, rounded up to the 60 m grid (a multiple of 6)."""
    m = factor * margin_lr(radius)
    return -(-m // 6) * 6


def _along(ndim: int, axis: int, a: int | None, b: int | None, step: int | None = None) -> tuple[slice, ...]:
    idx = [slice(None)] * ndim
    idx[axis] = slice(a, b, step)
    return tuple(idx)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the ``(2r+1)²`` window of the last two axes, edges mirrored like NumPy's
    ``pad(mode="symmetric")`` (float32 stays float32, anything else is float64; shifted
    in-place sums: cheap for the small radii used)."""
    out = np.asarray(x, dtype=np.float32 if np.asarray(x).dtype == np.float32 else np.float64)
    nd = out.ndim
    for axis in (nd - 2, nd - 1):
        n = out.shape[axis]
        if r >= n:  # tiny window (e.g. one 60 m pixel wide): reflect repeatedly, as pad does
            pad = [(0, 0)] * nd
            pad[axis] = (r, r)
            p = np.pad(out, pad, mode="symmetric")
            out = sum(p[_along(nd, axis, k, k + n)] for k in range(2 * r + 1)) / (2 * r + 1)
            continue
        acc = out.copy()
        rev = _along(nd, axis, None, None, -1)
        for d in range(1, r + 1):
            acc[_along(nd, axis, d, None)] += out[_along(nd, axis, None, n - d)]  # left neighbours
            acc[_along(nd, axis, None, n - d)] += out[_along(nd, axis, d, None)]  # right neighbours
            acc[_along(nd, axis, None, d)] += out[_along(nd, axis, None, d)][rev]  # mirrored past the start
            acc[_along(nd, axis, n - d, None)] += out[_along(nd, axis, n - d, None)][rev]  # and past the end
        out = acc / (2 * r + 1)
    return out


def guides(net: str, b10: np.ndarray, b20: np.ndarray | None = None) -> np.ndarray:
    """The guides of ``net`` on the 10 m grid of ``b10`` (float32 DN, nodata 0): the 10 m
    bands, plus (60 m net) the 20 m bands bilinearly upsampled."""
    from .backproject import _nearest, upsample

    f = b10.astype(np.float32, copy=False)
    if net_spec(net).factor == 2:
        return f
    if b20 is None:
        raise ValueError("the 60 m net's guides need the 20 m bands")
    up = upsample(b20, 2)[:, : f.shape[1], : f.shape[2]]
    up[:, _nearest(np.any(b20 == NODATA, axis=0)[None], 2)[0, : f.shape[1], : f.shape[2]]] = NODATA
    return np.concatenate([f, up], axis=0)


def _solve_spd(cov: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``cov · a = rhs`` per pixel for symmetric positive-definite ``cov`` (C, C, …) and
    ``rhs`` (C, B, …): a Cholesky factorisation written over whole planes (C is at most 10
    here, so a few hundred vectorised operations beat one small LAPACK call per pixel)."""
    c = cov.shape[0]
    low = np.zeros_like(cov)
    for j in range(c):
        d = cov[j, j].copy()
        for k in range(j):
            d -= low[j, k] * low[j, k]
        low[j, j] = np.sqrt(d)
        for i in range(j + 1, c):
            e = cov[i, j].copy()
            for k in range(j):
                e -= low[i, k] * low[j, k]
            low[i, j] = e / low[j, j]
    z = np.empty_like(rhs)
    for i in range(c):
        e = rhs[i].copy()
        for k in range(i):
            e -= low[i, k] * z[k]
        z[i] = e / low[i, i]
    a = np.empty_like(rhs)
    for i in reversed(range(c)):
        e = z[i].copy()
        for k in range(i + 1, c):
            e -= low[k, i] * a[k]
        a[i] = e / low[i, i]
    return a


def regression(feat: np.ndarray, lr: np.ndarray, factor: int, cfg: GuidedConfig) -> tuple[np.ndarray, np.ndarray]:
    """Local ridge regression of ``lr`` (B, h, w) on the guides ``feat`` (C, h·s, w·s).

    Returns the prediction (B, h·s, w·s) float32 and a boolean mask of the 10 m pixels where
    it is defined (every LR coefficient it interpolates was fitted on valid pixels).
    """
    from .backproject import comparable, degrade, upsample

    c, nb = feat.shape[0], lr.shape[0]
    h, w = lr.shape[1:]
    if feat.shape[1:] != (h * factor, w * factor):
        raise ValueError(f"guides {feat.shape[1:]} are not {factor} x lr {lr.shape[1:]}")
    hr_nodata = np.any(feat == NODATA, axis=0)
    keep = comparable(hr_nodata, lr, factor)
    r = cfg.radius
    x = degrade(feat, factor).astype(np.float64)
    y = lr.astype(np.float64)
    # centred on the block's means (the fit is shift-invariant; smaller moments, less cancellation)
    x0 = x[:, keep].mean(axis=1) if keep.any() else np.zeros(c)
    y0 = y[:, keep].mean(axis=1) if keep.any() else np.zeros(nb)
    x -= x0[:, None, None]
    y -= y0[:, None, None]
    full = bool(keep.all())
    if not full:  # weighted sums: pixels off the mask count zero
        x *= keep
        y *= keep
    s0 = _box(keep.astype(np.float64), r)
    ok = s0 > 1e-9
    inv = 1.0 if full else np.where(ok, 1.0 / np.where(ok, s0, 1.0), 0.0)
    mx = _box(x, r) * inv
    my = _box(y, r) * inv
    cov = np.empty((c, c, h, w))
    for i in range(c):
        for j in range(i, c):
            cov[i, j] = _box(x[i] * x[j], r) * inv - mx[i] * mx[j]
            cov[j, i] = cov[i, j]
        cov[i, i] += cfg.ridge
    xy = np.stack([_box(x[i] * y, r) * inv - mx[i] * my for i in range(c)])  # (C, B, h, w)
    # the moments need float64 (sums of squares of DN); the ridge keeps the system well
    # conditioned, so the solve and everything after it run in float32
    a = _solve_spd(cov.astype(np.float32), xy.astype(np.float32))
    del cov, xy
    b = ((my + y0[:, None, None]) - np.einsum("cbhw,chw->bhw", a, mx + x0[:, None, None])).astype(np.float32)
    if full:
        good = np.ones((h, w), bool)
        a = _box(a, r)
        b = _box(b, r)
    else:
        q = ok.astype(np.float32)
        sq = _box(q, r)
        good = sq > 1e-9
        qinv = np.where(good, 1.0 / np.where(good, sq, 1.0), 0.0)
        a = _box(a * q, r) * qinv
        b = _box(b * q, r) * qinv
    valid = np.ones(hr_nodata.shape, bool) if full else upsample(good.astype(np.float32)[None], factor)[0] > 1.0 - 1e-6
    pred = upsample(b, factor)
    for i in range(c):
        pred += upsample(a[i], factor) * feat[i]
    return pred, valid & ~hr_nodata


def blend(sr: np.ndarray, feat: np.ndarray, lr: np.ndarray, factor: int, cfg: GuidedConfig) -> np.ndarray:
    """``(1 - w)·sr + w·pred`` where the regression is defined (the net elsewhere); nodata
    pixels of ``sr`` stay nodata. Returns a new float32 array."""
    out = sr.astype(np.float32, copy=True)
    if cfg.weight <= 0:
        return out
    pred, valid = regression(feat, lr, factor, cfg)
    valid &= ~np.any(out == NODATA, axis=0)
    mixed = (1.0 - cfg.weight) * out + cfg.weight * np.clip(pred, 1.0, 65535.0)
    out[:, valid] = mixed[:, valid]
    return out
