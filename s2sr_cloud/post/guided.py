"""Hybrid post-step: the net blended with a local guided regression (beyond the paper).

Within a few low-resolution (LR) pixels, a 20 m or 60 m band is close to a linear
combination of the bands observed at a finer resolution (B01 follows B02, B09 follows the
NIR bands, the red-edge bands follow B04/B08). This module fits that combination locally
on the observation itself and applies it at 10 m:

1. guides ``f``: the 10 m bands (20 m net), or the 10 m bands plus the bilinearly
   upsampled 20 m bands (60 m net), on the 10 m grid;
2. ``F = D(f)``: the guides degraded to the LR grid with the degradation operator (the
   Wald operator by default, the same ``D`` as the back-projection);
3. per LR pixel, a ridge regression ``lr ≈ a·F + b`` over the ``(2r+1)²`` LR pixels around
   it (weighted: nodata pixels do not count), the coefficients then averaged over the same
   window (as a guided filter does) and bilinearly upsampled to 10 m;
4. ``pred = a·f + b`` at 10 m, and the output ``(1 - w)·net + w·pred``.

Written against the array API (:mod:`s2sr_cloud.ops`): NumPy on the host, CuPy or torch on
a GPU, one implementation. Tiling stays seamless: the value at a 10 m pixel depends on the
inputs within :func:`margin_lr` LR pixels, so windows are processed with that margin and
cropped, like the back-projection does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..bands import NODATA, net_spec
from ..ops import WALD, Degradation, degrade, namespace, nearest, upsample
from ..ops.xp import device_of, pad_axis
from .qa import comparable


@dataclass(frozen=True)
class GuidedConfig:
    """One net's hybrid post-step: window radius (LR pixels), ridge (DN²), regression weight."""

    radius: int
    ridge: float
    weight: float


#: Radius and ridge chosen on the validation scenes under the Wald protocol (radius 1–6, ridge
#: 10–3000 DN²); the weights (0–0.8) with each net's back-projection and operator by the mean RMSE over
#: four degradation protocols on the validation set (``scripts/post_sweep.py``; figures in
#: ``docs/model-card.md``). The 60 m net's weight is 0: no blend (it did not help on average).
DEFAULTS: dict[str, GuidedConfig] = {
    "net20": GuidedConfig(radius=1, ridge=30.0, weight=0.6),
    "net60": GuidedConfig(radius=1, ridge=300.0, weight=0.0),
}


def config(net: str) -> GuidedConfig:
    """The shipped hybrid configuration of ``net`` (``20``/``net20``/``60``/``net60``)."""
    return DEFAULTS[net_spec(net).name]


def margin_lr(radius: int, reach: int = 1) -> int:
    """LR pixels around a window that the blended values depend on: the moments' window
    (``radius``), the coefficients' average (``radius``), the bilinear upsampling of the
    coefficients (1) and the reach of the degradation and of the 20 m guides' upsampling (``reach``:
    1 for the Wald operator, more for wide Gaussians)."""
    return 2 * radius + 1 + reach


def margin10(factor: int, radius: int, reach: int = 1) -> int:
    """:func:`margin_lr` in 10 m pixels, rounded up to the 60 m grid (a multiple of 6)."""
    m = factor * margin_lr(radius, reach)
    return -(-m // 6) * 6


def _along(ndim: int, axis: int, a: int | None, b: int | None) -> tuple[slice, ...]:
    idx = [slice(None)] * ndim
    idx[axis] = slice(a, b)
    return tuple(idx)


def _box(x: Any, r: int) -> Any:
    """Mean over the ``(2r+1)²`` window of the last two axes, edges mirrored like NumPy's
    ``pad(mode="symmetric")`` (float32 stays float32, anything else is float64; shifted
    in-place sums: cheap for the small radii used)."""
    xp = namespace(x)
    out = xp.astype(x, xp.float32 if x.dtype == xp.float32 else xp.float64, copy=True)
    nd = out.ndim
    for axis in (nd - 2, nd - 1):
        n = out.shape[axis]
        if r >= n:  # tiny window (e.g. one 60 m pixel wide): reflect repeatedly, as pad does
            p = pad_axis(out, r, r, axis)
            acc = p[_along(nd, axis, 0, n)]
            for k in range(1, 2 * r + 1):
                acc = acc + p[_along(nd, axis, k, k + n)]
            out = acc / (2 * r + 1)
            continue
        acc = xp.asarray(out, copy=True)
        for d in range(1, r + 1):
            acc[_along(nd, axis, d, None)] += out[_along(nd, axis, None, n - d)]  # left neighbours
            acc[_along(nd, axis, None, n - d)] += out[_along(nd, axis, d, None)]  # right neighbours
            acc[_along(nd, axis, None, d)] += xp.flip(out[_along(nd, axis, None, d)], axis=axis)  # mirrored past the start
            acc[_along(nd, axis, n - d, None)] += xp.flip(out[_along(nd, axis, n - d, None)], axis=axis)  # and the end
        out = acc / (2 * r + 1)
    return out


def guides(net: str, b10: Any, b20: Any | None = None) -> Any:
    """The guides of ``net`` on the 10 m grid of ``b10`` (float32 DN, nodata 0): the 10 m
    bands, plus (60 m net) the 20 m bands bilinearly upsampled."""
    xp = namespace(b10)
    f = xp.astype(b10, xp.float32, copy=False)
    if net_spec(net).factor == 2:
        return f
    if b20 is None:
        raise ValueError("the 60 m net's guides need the 20 m bands")
    h, w = f.shape[1:]
    up = upsample(b20, 2)[:, :h, :w]
    bad = nearest(xp.any(b20 == NODATA, axis=0), 2)[:h, :w]
    up = xp.where(bad, xp.zeros_like(up), up)
    return xp.concat([f, up], axis=0)


def _solve_spd(cov: Any, rhs: Any) -> Any:
    """Solve ``cov · a = rhs`` per pixel for symmetric positive-definite ``cov`` (C, C, …) and
    ``rhs`` (C, B, …): a Cholesky factorisation written over whole planes (C is at most 10
    here, so a few hundred vectorised operations beat one small LAPACK call per pixel)."""
    xp = namespace(cov, rhs)
    c = cov.shape[0]
    low = xp.zeros_like(cov)
    for j in range(c):
        d = xp.asarray(cov[j, j], copy=True)
        for k in range(j):
            d -= low[j, k] * low[j, k]
        low[j, j] = xp.sqrt(d)
        for i in range(j + 1, c):
            e = xp.asarray(cov[i, j], copy=True)
            for k in range(j):
                e -= low[i, k] * low[j, k]
            low[i, j] = e / low[j, j]
    z = xp.empty_like(rhs)
    for i in range(c):
        e = xp.asarray(rhs[i], copy=True)
        for k in range(i):
            e -= low[i, k] * z[k]
        z[i] = e / low[i, i]
    a = xp.empty_like(rhs)
    for i in reversed(range(c)):
        e = xp.asarray(z[i], copy=True)
        for k in range(i + 1, c):
            e -= low[k, i] * a[k]
        a[i] = e / low[i, i]
    return a


def regression(feat: Any, lr: Any, factor: int, cfg: GuidedConfig, op: Degradation = WALD) -> tuple[Any, Any]:
    """Local ridge regression of ``lr`` (B, h, w) on the guides ``feat`` (C, h·s, w·s).

    Returns the prediction (B, h·s, w·s) float32 and a boolean mask of the 10 m pixels where
    it is defined (every LR coefficient it interpolates was fitted on valid pixels).
    """
    xp = namespace(feat, lr)
    f64, f32 = xp.float64, xp.float32
    c, nb = feat.shape[0], lr.shape[0]
    h, w = lr.shape[1:]
    if tuple(feat.shape[1:]) != (h * factor, w * factor):
        raise ValueError(f"guides {tuple(feat.shape[1:])} are not {factor} x lr {tuple(lr.shape[1:])}")
    hr_nodata = xp.any(feat == NODATA, axis=0)
    keep = comparable(hr_nodata, lr, factor, op)
    r = cfg.radius
    x = xp.astype(degrade(feat, factor, op), f64)
    y = xp.astype(lr, f64)
    # centred on the block's means (the fit is shift-invariant; smaller moments, less cancellation)
    some = bool(xp.any(keep))
    x0 = xp.mean(x[:, keep], axis=1) if some else xp.zeros(c, dtype=f64, device=device_of(x))
    y0 = xp.mean(y[:, keep], axis=1) if some else xp.zeros(nb, dtype=f64, device=device_of(x))
    x = x - x0[:, None, None]
    y = y - y0[:, None, None]
    full = bool(xp.all(keep))
    kf = xp.astype(keep, f64)
    if not full:  # weighted sums: pixels off the mask count zero
        x = x * kf
        y = y * kf
    s0 = _box(kf, r)
    ok = s0 > 1e-9
    inv = 1.0 if full else xp.where(ok, 1.0 / xp.where(ok, s0, xp.ones_like(s0)), xp.zeros_like(s0))
    mx = _box(x, r) * inv
    my = _box(y, r) * inv
    cov = xp.empty((c, c, h, w), dtype=f64, device=device_of(x))
    for i in range(c):
        for j in range(i, c):
            cov[i, j] = _box(x[i] * x[j], r) * inv - mx[i] * mx[j]
            cov[j, i] = cov[i, j]
        cov[i, i] += cfg.ridge
    xy = xp.stack([_box(x[i] * y, r) * inv - mx[i] * my for i in range(c)])  # (C, B, h, w)
    # the moments need float64 (sums of squares of DN); the ridge keeps the system well
    # conditioned, so the solve and everything after it run in float32
    a = _solve_spd(xp.astype(cov, f32), xp.astype(xy, f32))
    del cov, xy
    m = mx + x0[:, None, None]
    b = xp.astype((my + y0[:, None, None]) - xp.sum(a * m[:, None], axis=0), f32)
    if full:
        good = xp.ones((h, w), dtype=xp.bool, device=device_of(x))
        a = _box(a, r)
        b = _box(b, r)
    else:
        q = xp.astype(ok, f32)
        sq = _box(q, r)
        good = sq > 1e-9
        qinv = xp.where(good, 1.0 / xp.where(good, sq, xp.ones_like(sq)), xp.zeros_like(sq))
        a = _box(a * q, r) * qinv
        b = _box(b * q, r) * qinv
    if full:
        valid = xp.ones(hr_nodata.shape, dtype=xp.bool, device=device_of(x))
    else:
        valid = upsample(xp.astype(good, f32)[None], factor)[0] > 1.0 - 1e-6
    pred = upsample(b, factor)
    for i in range(c):
        pred += upsample(a[i], factor) * feat[i]
    return pred, valid & ~hr_nodata


def blend(sr: Any, feat: Any, lr: Any, factor: int, cfg: GuidedConfig, op: Degradation = WALD) -> Any:
    """``(1 - w)·sr + w·pred`` where the regression is defined (the net elsewhere); nodata
    pixels of ``sr`` stay nodata. Returns a new float32 array."""
    xp = namespace(sr)
    out = xp.astype(sr, xp.float32, copy=True)
    if cfg.weight <= 0:
        return out
    pred, valid = regression(feat, lr, factor, cfg, op)
    valid = valid & ~xp.any(out == NODATA, axis=0)
    mixed = (1.0 - cfg.weight) * out + cfg.weight * xp.clip(pred, 1.0, 65535.0)
    return xp.where(valid, mixed, out)
