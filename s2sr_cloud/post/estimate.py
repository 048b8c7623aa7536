"""The ``auto`` post-step operator: the scene's own blur, estimated from the bands themselves.

The back-projection and the hybrid regression assume an operator ``D`` that takes a band from the
10 m grid to the grid it was measured on. Which one is right depends on how the image was made (the
sensor's PSF; under evaluation, the degradation protocol), and a wrong one costs dearly: assuming a
blur *wider* than the true one makes the back-projection sharpen noise (on the validation set a
Gaussian of 0.6 LR px where the truth is 0.35 doubles the 20 m error), a narrower one leaves gain on
the table. So ``auto`` measures it per scene, from the observation alone:

Within a small block, a coarse band is close to a linear combination of the finer guides (the
hybrid regression's premise, :mod:`s2sr_cloud.post.guided`). Degrade the guides with a Gaussian of
width ``sigma`` (LR pixels) and fit that combination block by block (12 × 12 LR pixels for the 20 m
net, 4 × 4 for the 60 m net, least squares with a small ridge): the residual is smallest near
the ``sigma`` that actually relates the band to the guides. Per band, the minimum over
:data:`GRID` (refined by a parabola through its neighbours) is the estimate; a band whose residual
curve is flat (less than :data:`MIN_DEPTH` between its best and worst ``sigma``: open sea, fog) or
whose minimum sits at the grid's end tells nothing. The scene's operator is the Gaussian of the
**smallest** informative band estimate (the bands less well predicted by the guides, SWIR, read
wider; erring narrow is the cheap side), clipped to :data:`LIMITS`; no informative band:
:data:`FALLBACK` (the Wald operator's width).

The kernel's *family* is chosen the same way: on the band that set the width, the residual with
the antialiased bicubic kernel (``bicubic``: Keys, a = -0.5, negative lobes, what image SR toolboxes
downsample with) is compared with the best Gaussian's; ``bicubic`` is the operator when it fits at
least :data:`FAMILY_MARGIN` better. On the validation set this picked ``bicubic`` for 5 of the 6
informative 20 m scenes degraded with it (and the one informative 60 m scene), and for none degraded
otherwise (Wald, MTF, Gaussians).

The estimate is made once per scene or item, on a central crop of at most :data:`CROP` 10 m pixels
(bounded memory, the same value for every block and every worker of a split item), before any block
runs: block-wise output stays equal to whole-image output. The value is recorded (COG tags,
records, STAC items): ``PostSteps.resolved``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bands import NODATA, net_spec
from ..ops import Degradation, degrade

if TYPE_CHECKING:
    from ..grid import Window
    from .steps import PostSteps

log = logging.getLogger(__name__)

#: Gaussian widths tried (LR pixels).
GRID = tuple(round(0.2 + 0.05 * i, 2) for i in range(15))  # 0.20 … 0.90
#: Range of the operator ``auto`` returns (LR pixels).
LIMITS = (0.25, 0.6)
#: ``auto`` where no band is informative: the width of a Gaussian with the Wald operator's variance
#: at factor 2 (``sqrt(1/4 + 1/4)`` 10 m px = 0.354 LR px).
FALLBACK = 0.35
#: Relative depth of a band's residual curve below which it is not informative.
MIN_DEPTH = 0.05
#: Side (10 m px, a multiple of 36) of the central crop the estimate is made on.
CROP = 1080
#: Relative ridge of the local fits (of the mean squared regressor).
RIDGE = 1e-3
#: Relative residual gain the bicubic kernel needs over the best Gaussian to be chosen (validation:
#: 0.01 and 0.03 tried, 0.01 kept; the Wald-degraded scenes' closest case was 0.002 the other way).
FAMILY_MARGIN = 0.01
#: Block side (LR pixels) of the local fits, per net.
BLOCK = {"net20": 12, "net60": 4}


@dataclass(frozen=True)
class Estimate:
    """One net's estimate: the operator width and what it was made of."""

    sigma: float
    """The Gaussian width (LR pixels) the scene's bands read."""
    per_band: dict[str, float | None]
    """Each output band's estimate (``None``: not informative)."""
    family: str = "gaussian"
    """``gaussian`` or ``bicubic``: the kernel that fits the scene better."""

    @property
    def operator(self) -> str:
        """The operator ``auto`` uses: ``gaussian:SIGMA`` or ``bicubic``."""
        return "bicubic" if self.family == "bicubic" else f"gaussian:{self.sigma:g}"


def _block_residual(feat: np.ndarray, y: np.ndarray, valid: np.ndarray, block: int) -> np.ndarray:
    """RMS residual of per-block least squares of each band of ``y`` (B, h, w) on ``feat`` (C, h, w)
    and a constant, over blocks with every pixel valid: (B,), NaN when there is no such block. The
    normal equations depend on ``feat`` alone: factorised once for every band."""
    c, h, w = feat.shape
    nb = y.shape[0]
    hb, wb = h // block, w // block
    if hb == 0 or wb == 0:
        return np.full(nb, np.nan)

    def blocks(a: np.ndarray) -> np.ndarray:  # (..., h, w) -> (n, block², ...)
        a = a[..., : hb * block, : wb * block]
        lead = a.shape[:-2]
        a = a.reshape(*lead, hb, block, wb, block)
        a = np.moveaxis(a, (-4, -2, -3, -1), (0, 1, 2, 3)).reshape(hb * wb, block * block, *lead)
        return a

    ok = blocks(valid).all(axis=1)
    if not ok.any():
        return np.full(nb, np.nan)
    x = blocks(feat)[ok]  # (n, k, C)
    t = blocks(y)[ok]  # (n, k, B)
    x = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=2)
    gram = np.einsum("nki,nkj->nij", x, x)
    # a ridge of 1e-3 of the mean squared regressor (DN², about 1e3 for land): keeps the fit from
    # chasing noise with near-collinear guides; the value the defaults were validated with
    ridge = RIDGE * np.trace(gram, axis1=1, axis2=2) / (x.shape[1] * (c + 1))
    gram += np.eye(c + 1)[None] * ridge[:, None, None]
    coef = np.linalg.solve(gram, np.einsum("nki,nkb->nib", x, t))  # (n, C+1, B)
    r = t - np.einsum("nki,nib->nkb", x, coef)
    return np.sqrt(np.mean(r * r, axis=(0, 1)))


def _minimum(curve: np.ndarray) -> float | None:
    """The parabola-refined argmin of a residual curve over :data:`GRID`, or ``None`` when the curve
    is flat, undefined or smallest at an end of the grid."""
    if not np.all(np.isfinite(curve)):
        return None
    k = int(np.argmin(curve))
    lo = float(curve[k])
    if lo <= 0 or (float(curve.max()) - lo) / lo < MIN_DEPTH or k in (0, len(curve) - 1):
        return None
    y0, y1, y2 = (float(v) for v in curve[k - 1 : k + 2])
    den = y0 - 2 * y1 + y2
    off = 0.5 * (y0 - y2) / den if den > 0 else 0.0
    return GRID[k] + max(-0.5, min(0.5, off)) * (GRID[1] - GRID[0])


def estimate(net: str, b10: Any, b20: Any, lr: Any) -> Estimate:
    """The ``auto`` operator of ``net`` from one scene: ``b10`` (4, H, W) and ``b20`` (6, H/2, W/2)
    the guides' bands, ``lr`` the bands the net restores (6, H/2, W/2 or 2, H/6, W/6); DN, nodata 0."""
    from .guided import guides

    spec = net_spec(net)
    s = spec.factor
    lr = np.asarray(lr, dtype=np.float64)
    h, w = lr.shape[1] * s, lr.shape[2] * s
    feat = np.asarray(guides(spec.name, np.asarray(b10)[:, :h, :w], b20), dtype=np.float64)
    if tuple(feat.shape[1:]) != (h, w):
        raise ValueError(f"guides {tuple(feat.shape[1:])} do not cover {s} x lr {tuple(lr.shape[1:])}")
    bad = np.any(feat == NODATA, axis=0).reshape(lr.shape[1], s, lr.shape[2], s).any(axis=(1, 3))
    valid = ~bad & np.all(lr != NODATA, axis=0)
    block = BLOCK[spec.name]
    curves = np.full((lr.shape[0], len(GRID)), np.nan)
    for g, sigma in enumerate(GRID):
        curves[:, g] = _block_residual(degrade(feat, s, Degradation("gaussian", sigma)), lr, valid, block)
    per_band = {band: _minimum(curves[i]) for i, band in enumerate(spec.outputs)}
    found = [(v, i) for i, v in enumerate(per_band.values()) if v is not None]
    sigma, family = FALLBACK, "gaussian"
    if found:
        smallest, ref = min(found)  # ref: the band that sets the width
        sigma = round(min(max(smallest, LIMITS[0]), LIMITS[1]), 2)
        cubic = float(_block_residual(degrade(feat, s, Degradation("bicubic")), lr[ref : ref + 1], valid, block)[0])
        if cubic < (1.0 - FAMILY_MARGIN) * float(np.nanmin(curves[ref])):
            family = "bicubic"
    per_band = {k: (None if v is None else round(v, 3)) for k, v in per_band.items()}
    est = Estimate(sigma, per_band, family)
    log.info("auto operator of %s: %s (per band %s)", spec.name, est.operator, per_band)
    return est


def crop(shape10: tuple[int, int], window: Window | None = None, side: int = CROP) -> Window:
    """The central crop of ``window`` (default: the whole scene) the estimate reads: at most ``side``
    10 m px a side, on the 60 m grid (all of a smaller window, rounded down to multiples of 36)."""
    from ..grid import Window

    win = window or Window(0, 0, *shape10)

    def span(start: int, n: int) -> tuple[int, int]:
        m = min(n, side) // 36 * 36
        if m == 0:
            return start // 6 * 6, 0
        a = (start + (n - m) // 2) // 6 * 6
        return a, m

    r, h = span(win.row, win.height)
    c, w = span(win.col, win.width)
    return Window(r, c, h, w)


def estimate_source(nets: list[str], source: Any, window: Window | None = None) -> dict[str, Estimate]:
    """Each of ``nets``' estimate from the central crop of ``window`` of ``source`` (a
    :class:`~s2sr_cloud.sr.SceneSource`)."""
    win = crop(source.shape10, window)
    if win.height == 0 or win.width == 0:
        return {n: Estimate(FALLBACK, {b: None for b in net_spec(n).outputs}) for n in nets}
    r0, c0, r1, c1 = win.row, win.col, win.row + win.height, win.col + win.width
    b10 = source.read(10, (r0, r1), (c0, c1))
    b20 = source.read(20, (r0 // 2, r1 // 2), (c0 // 2, c1 // 2))
    b60 = source.read(60, (r0 // 6, r1 // 6), (c0 // 6, c1 // 6)) if any(net_spec(n).factor == 6 for n in nets) else None
    return {n: estimate(n, b10, b20, b20 if net_spec(n).factor == 2 else b60) for n in nets}


def resolve(post: PostSteps, source: Any, window: Window | None = None, nets: Any = None) -> PostSteps:
    """``post`` with every ``auto`` operator of ``nets`` (default: both) estimated on ``source``
    (:func:`estimate_source`); ``post`` itself when none is ``auto`` or all are resolved already."""
    names = [net_spec(n).name for n in (nets if nets is not None else ("net20", "net60"))]
    todo = [n for n in names if post.wants_estimate(n)]
    if not todo:
        return post
    found = estimate_source(todo, source, window)
    return post.with_resolved({n: e.operator for n, e in found.items()})

