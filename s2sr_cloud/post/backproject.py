"""Consistency with the observation: back-projection of the low-resolution residual.

A super-resolved band, degraded back with the operator ``D`` (the Wald operator by default:
Gaussian blur, ``sigma = 1/s``, then the mean over ``s × s`` blocks, :func:`s2sr_cloud.ops.degrade`),
should give back the band the satellite measured. The nets only approximate this. The post-step
here enforces it (iterative back-projection, Irani & Peleg 1991):

* ``iterations`` times: ``sr += U(lr - D(sr))`` with ``U`` the same bilinear upsampling the
  nets' input uses (smooth corrections, converges towards ``D(sr) = lr``);
* then once ``sr += N(lr - D(sr))`` with ``N`` the nearest (block) upsampling, which makes
  each block mean exact where the blur is negligible (the 60 m bands: ``D(sr) = lr`` to the
  last bit before rounding; the 20 m bands keep a small residual from the blur).

Tiling stays seamless: the value at a 10 m pixel depends on the net output within
``(2·iterations + 1)`` low-resolution pixels of it (each ``D`` and each ``U`` looks one LR
pixel further; wider operators' ``D`` further still, :func:`margin_lr`), so a window is super-resolved with that margin and cropped
(:mod:`s2sr_cloud.post.window`). Array-API code: NumPy, CuPy or torch arrays alike.
"""

from __future__ import annotations

from typing import Any

from ..bands import NODATA
from ..ops import WALD, Degradation, degrade, namespace, nearest, upsample
from .qa import comparable

#: Default smooth iterations before the final exact (nearest) step.
ITERATIONS = 2


def margin_lr(iterations: int, reach: int = 1) -> int:
    """LR pixels around a window that the projected values depend on: ``iterations + 1`` degradations
    reaching ``reach`` LR pixels each (1 for the Wald operator, :func:`op_reach`), ``iterations``
    bilinear upsamplings reaching one."""
    return (iterations + 1) * reach + iterations


def op_reach(op: Degradation, factor: int) -> int:
    """LR pixels past its own block that a degraded value depends on under ``op``."""
    return max(1, -(-op.reach(factor) // factor))


def margin10(factor: int, iterations: int, reach: int = 1) -> int:
    """The same margin in 10 m pixels, rounded up to the 60 m grid (a multiple of 6)."""
    m = factor * margin_lr(iterations, reach)
    return -(-m // 6) * 6


def project(sr: Any, lr: Any, factor: int, iterations: int = ITERATIONS, op: Degradation = WALD) -> Any:
    """Back-project ``lr - D(sr)`` onto ``sr`` (C, H, W) float DN; ``lr`` is (C, H/s, W/s).

    Pixels where ``sr`` is nodata stay 0; LR pixels that are nodata, or whose degradation
    touches an ``sr`` nodata pixel, are not corrected (their residual is meaningless).
    Returns a new float32 array clipped to [1, 65535] on valid pixels.
    """
    xp = namespace(sr, lr)
    h, w = lr.shape[1] * factor, lr.shape[2] * factor
    if tuple(sr.shape[1:]) != (h, w):
        raise ValueError(f"sr {tuple(sr.shape[1:])} is not {factor} x lr {tuple(lr.shape[1:])}")
    lr = xp.astype(lr, xp.float32, copy=False)
    out = xp.astype(sr, xp.float32, copy=True)
    nodata = xp.any(out == NODATA, axis=0)
    keep = xp.astype(comparable(nodata, lr, factor, op), xp.float32)[None]
    for step in range(iterations + 1):
        res = (lr - degrade(out, factor, op)) * keep
        out += upsample(res, factor) if step < iterations else nearest(res, factor)
    out = xp.clip(out, 1.0, 65535.0)
    return xp.where(nodata, xp.zeros_like(out), out)
