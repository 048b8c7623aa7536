"""Resampling on the Sentinel-2 10/20/60 m grids.

Low-resolution (LR) pixel ``j`` of a band with factor ``s`` covers 10 m pixels
``s*j … s*j+s-1``. Upsampling is bilinear with pixel-centre alignment (10 m pixel ``i`` sits
at LR coordinate ``(i + 0.5)/s - 0.5``) and edge clamping.

:func:`upsample_at` evaluates the upsampled image at *arbitrary* 10 m row/column indices from
any LR window that contains the needed pixels. Because bilinear interpolation only looks at
the two nearest LR pixels, the value at a 10 m pixel does not depend on the window it was
computed from: that is what makes tiled inference seamless. :func:`upsample` is the same
interpolation of a whole window, one phase of the ``s`` output phases at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .xp import namespace, pad_axis, reflect_index

__all__ = ["block_mean", "lr_range", "nearest", "reflect_index", "upsample", "upsample_at", "upsample_bicubic"]


def _axis(idx10: np.ndarray, factor: int, n_lr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For 10 m indices: the two LR neighbours (clamped) and the weight of the second (host arrays)."""
    pos = (idx10.astype(np.float64) + 0.5) / factor - 0.5
    i0 = np.floor(pos).astype(np.int64)
    w = (pos - i0).astype(np.float32)
    i1 = np.clip(i0 + 1, 0, n_lr - 1)
    i0 = np.clip(i0, 0, n_lr - 1)
    return i0, i1, w


def lr_range(idx10: np.ndarray, factor: int, n_lr: int) -> tuple[int, int]:
    """Half-open range of LR indices that :func:`upsample_at` needs for ``idx10``."""
    i0, i1, _ = _axis(idx10, factor, n_lr)
    return int(i0.min()), int(i1.max()) + 1


def upsample_at(
    lr: np.ndarray,
    factor: int,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    origin: tuple[int, int] = (0, 0),
    lr_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Bilinear upsampling of ``lr`` (C, h, w) evaluated at 10 m ``rows`` × ``cols``.

    Args:
        lr: LR window, float32 (C, h, w).
        factor: 2 for 20 m bands, 6 for 60 m bands.
        rows, cols: global 10 m indices (1-D int arrays) to evaluate at.
        origin: global LR (row, col) of ``lr[:, 0, 0]``.
        lr_shape: full LR image shape used for edge clamping (default: the window's).

    Returns:
        float32 (C, len(rows), len(cols)).
    """
    if lr_shape is None:
        lr_shape = (lr.shape[1] + origin[0], lr.shape[2] + origin[1])
    r0, r1, wr = _axis(rows, factor, lr_shape[0])
    c0, c1, wc = _axis(cols, factor, lr_shape[1])
    r0, r1 = r0 - origin[0], r1 - origin[0]
    c0, c1 = c0 - origin[1], c1 - origin[1]
    if min(r0.min(), c0.min()) < 0 or r1.max() >= lr.shape[1] or c1.max() >= lr.shape[2]:
        raise ValueError("LR window does not cover the requested 10 m indices")
    lr = lr.astype(np.float32, copy=False)
    wr_ = wr[None, :, None]
    tmp = lr[:, r0, :] * (1.0 - wr_) + lr[:, r1, :] * wr_
    wc_ = wc[None, None, :]
    out = tmp[:, :, c0] * (1.0 - wc_) + tmp[:, :, c1] * wc_
    return out.astype(np.float32, copy=False)


def _up_axis(x: Any, factor: int, axis: int) -> Any:
    """Bilinear upsampling along ``axis``: output phase ``ph`` (10 m pixels ``s·j + ph``) mixes LR
    pixels ``j + i0`` and ``j + i0 + 1`` of the edge-padded axis."""
    xp = namespace(x)
    n = x.shape[axis]
    p = pad_axis(x, 1, 1, axis, "edge")
    phases = []
    for ph in range(factor):
        pos = (ph + 0.5) / factor - 0.5
        i0 = int(np.floor(pos))
        w = np.float32(pos - i0)
        a = [slice(None)] * x.ndim
        b = [slice(None)] * x.ndim
        a[axis] = slice(i0 + 1, i0 + 1 + n)
        b[axis] = slice(i0 + 2, i0 + 2 + n)
        if isinstance(x, np.ndarray):
            phases.append((1 - w) * p[tuple(a)] + w * p[tuple(b)])
        else:
            phases.append((1 - float(w)) * p[tuple(a)] + float(w) * p[tuple(b)])
    out = xp.stack(phases, axis=axis + 1)  # (…, n, s, …): phase-major within each LR pixel
    shape = list(x.shape)
    shape[axis] = n * factor
    return xp.reshape(out, tuple(shape))


def upsample(x: Any, factor: int, shape: tuple[int, int] | None = None) -> Any:
    """Bilinear upsampling of (C, h, w) (or (h, w)) by ``factor`` (pixel-centre aligned, edges
    clamped) in float32 (float64 stays float64), cropped to ``shape`` when given; equal to
    :func:`upsample_at` at every index."""
    xp = namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, xp.float32)
    nd = x.ndim
    if shape is not None and (shape[0] > x.shape[-2] * factor or shape[1] > x.shape[-1] * factor):
        rows, cols = np.arange(shape[0]), np.arange(shape[1])
        return upsample_at(np.asarray(x).reshape((-1, *x.shape[-2:])), factor, rows, cols,
                           lr_shape=x.shape[-2:]).reshape((*x.shape[:-2], *shape))
    out = _up_axis(_up_axis(x, factor, nd - 2), factor, nd - 1)
    if shape is not None:
        out = out[..., : shape[0], : shape[1]]
    return out


def nearest(x: Any, factor: int) -> Any:
    """Nearest (block) upsampling of the last two axes by ``factor``."""
    xp = namespace(x)
    *lead, h, w = x.shape
    y = xp.broadcast_to(xp.reshape(x, (*lead, h, 1, w, 1)), (*lead, h, factor, w, factor))
    return xp.reshape(y, (*lead, h * factor, w * factor))


def block_mean(x: Any, factor: int) -> Any:
    """Average (C, H, W) over ``factor`` × ``factor`` blocks (H, W cropped to multiples), summed in
    float64, float32 result."""
    xp = namespace(x)
    c, h, w = x.shape
    h2, w2 = h // factor, w // factor
    v = xp.reshape(x[:, : h2 * factor, : w2 * factor], (c, h2, factor, w2, factor))
    return xp.astype(xp.sum(v, axis=(2, 4), dtype=xp.float64) / (factor * factor), xp.float32)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(
        x <= 1,
        (a + 2) * x**3 - (a + 3) * x**2 + 1,
        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
    )


def _cubic_matrix(n_out: int, n_in: int, factor: float) -> np.ndarray:
    pos = (np.arange(n_out) + 0.5) / factor - 0.5
    base = np.floor(pos).astype(np.int64)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for k in range(-1, 3):
        idx = base + k
        w = _cubic(pos - idx)
        np.add.at(m, (np.arange(n_out), np.clip(idx, 0, n_in - 1)), w)
    return m


def upsample_bicubic(lr: np.ndarray, factor: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Bicubic (Keys, a = -0.5) upsampling of (C, h, w), pixel-centre aligned, edge clamped (host
    NumPy: the baseline every metric is compared with)."""
    if shape is None:
        shape = (lr.shape[1] * factor, lr.shape[2] * factor)
    mr = _cubic_matrix(shape[0], lr.shape[1], factor)
    mc = _cubic_matrix(shape[1], lr.shape[2], factor)
    out = np.einsum("ij,cjk,lk->cil", mr, np.asarray(lr, dtype=np.float64), mc, optimize=True)
    return out.astype(np.float32)

