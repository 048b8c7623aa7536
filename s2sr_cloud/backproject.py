"""Consistency with the observation: back-projection of the low-resolution residual.

A super-resolved band, degraded back with the Wald operator ``D`` (Gaussian blur,
``sigma = 1/s``, then the mean over ``s × s`` blocks: :func:`s2sr_cloud.train.wald.degrade`),
should give back the band the satellite measured. The nets only approximate this. The
post-step here enforces it (iterative back-projection, Irani & Peleg 1991):

* ``iterations`` times: ``sr += U(lr - D(sr))`` with ``U`` the same bilinear upsampling the
  nets' input uses (smooth corrections, converges towards ``D(sr) = lr``);
* then once ``sr += N(lr - D(sr))`` with ``N`` the nearest (block) upsampling, which makes
  each block mean exact where the blur is negligible (the 60 m bands: ``D(sr) = lr`` to the
  last bit before rounding; the 20 m bands keep a small residual from the blur).

On the held-out Malmö scene this lowers the Wald RMSE of the shipped nets as well as the
real-scale inconsistency (figures in ``docs/model-card.md``).

Tiling stays seamless. The value at a 10 m pixel depends on the net output within
``(2·iterations + 1)`` low-resolution pixels of it (each ``D`` and each ``U`` looks one LR
pixel further), so a window is super-resolved with that margin (clamped at the true image
border, where the whole-image computation does exactly the same reflection and clamping),
projected, and cropped. Windows must sit on the LR grid of every net (multiples of 6 px
at 10 m, as the pipeline's blocks and outputs do).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bands import NODATA, net_spec
from .sr import Runner, SceneSource, Window, super_resolve

#: Default smooth iterations before the final exact (nearest) step.
ITERATIONS = 2


def margin_lr(iterations: int) -> int:
    """LR pixels around a window that the projected values depend on."""
    return 2 * iterations + 1


def margin10(factor: int, iterations: int) -> int:
    """The same margin in 10 m pixels, rounded up to the 60 m grid (a multiple of 6)."""
    m = factor * margin_lr(iterations)
    return -(-m // 6) * 6


def _nearest(r: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(r, factor, axis=1), factor, axis=2)


def _degrade_axis(x: np.ndarray, taps: np.ndarray, r: int, factor: int, axis: int) -> np.ndarray:
    """Blur (kernel radius ``r``) and ``factor``-block mean along ``axis`` in one strided pass:
    LR sample ``j`` is ``sum_o taps[o] · x[factor·j + o - r]`` over the symmetric-padded axis."""
    n = x.shape[axis] // factor
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    p = np.pad(x, pad, mode="symmetric") if r else x
    shape = list(x.shape)
    shape[axis] = n
    out = np.zeros(shape, np.float32)
    for o, w in enumerate(taps):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(o, o + factor * n, factor)
        out += np.float32(w) * p[tuple(sl)]
    return out


def degrade(x: np.ndarray, factor: int) -> np.ndarray:
    """The Wald degradation of :func:`s2sr_cloud.train.wald.degrade` (Gaussian blur, then
    block mean; H, W cropped to multiples of ``factor``) in float32, blur and mean fused into
    one strided filter per axis (the training version favours clarity; this one runs in the
    streaming loop)."""
    from .train.wald import gaussian_kernel

    k = gaussian_kernel(1.0 / factor)
    if len(k) > 1 and k[0] < 1e-6:  # the 60 m blur's outer taps (e^-18) change nothing in float32
        k = k[1:-1]
    r = len(k) // 2
    taps = np.convolve(k, np.full(factor, 1.0 / factor))  # offsets -r … factor-1+r
    y = x.astype(np.float32, copy=False)
    return _degrade_axis(_degrade_axis(y, taps, r, factor, 1), taps, r, factor, 2)


def _up_axis(x: np.ndarray, factor: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    p = np.pad(x, pad, mode="edge")
    shape = list(x.shape)
    shape[axis] = n * factor
    out = np.empty(shape, np.float32)
    for ph in range(factor):
        pos = (ph + 0.5) / factor - 0.5
        i0 = int(np.floor(pos))
        w = np.float32(pos - i0)
        a = [slice(None)] * x.ndim
        b = [slice(None)] * x.ndim
        o = [slice(None)] * x.ndim
        a[axis] = slice(i0 + 1, i0 + 1 + n)
        b[axis] = slice(i0 + 2, i0 + 2 + n)
        o[axis] = slice(ph, None, factor)
        out[tuple(o)] = (1 - w) * p[tuple(a)] + w * p[tuple(b)]
    return out


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of (C, h, w) by ``factor``, identical to
    :func:`s2sr_cloud.resample.upsample` (pixel-centre aligned, edges clamped), in float32."""
    return _up_axis(_up_axis(x.astype(np.float32, copy=False), factor, 1), factor, 2)


def project(sr: np.ndarray, lr: np.ndarray, factor: int, iterations: int = ITERATIONS) -> np.ndarray:
    """Back-project ``lr - D(sr)`` onto ``sr`` (C, H, W) float DN; ``lr`` is (C, H/s, W/s).

    Pixels where ``sr`` is nodata stay 0; LR pixels that are nodata, or whose degradation
    touches an ``sr`` nodata pixel, are not corrected (their residual is meaningless).
    Returns a new float32 array clipped to [1, 65535] on valid pixels.
    """
    h, w = lr.shape[1] * factor, lr.shape[2] * factor
    if sr.shape[1:] != (h, w):
        raise ValueError(f"sr {sr.shape[1:]} is not {factor} x lr {lr.shape[1:]}")
    lr = lr.astype(np.float32, copy=False)
    out = sr.astype(np.float32, copy=True)
    nodata = np.any(out == NODATA, axis=0)
    keep = comparable(nodata, lr, factor)[None].astype(np.float32)
    for step in range(iterations + 1):
        res = (lr - degrade(out, factor)) * keep
        out += upsample(res, factor) if step < iterations else _nearest(res, factor)
    np.clip(out, 1.0, 65535.0, out=out)
    out[:, nodata] = NODATA
    return out


@dataclass
class ConsistencyQA:
    """Running real-scale consistency of an output: RMSE (DN) per band between the output
    degraded back (Wald operator) and the observed band, over valid LR pixels.

    Fed window by window (:func:`super_resolve_consistent` with ``qa=``), so it costs no
    second pass over a streamed item. The 20 m blur reaches 2 px past a window edge and
    is mirrored there instead, so the streamed figure differs from a whole-image one by
    well under 1 %. This is the per-output QA figure recorded in the
    ``.s2sr.json`` record and the published STAC item (``s2sr:consistency_rmse``).
    """

    sq: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def add(self, net: str, sr: np.ndarray, lr: np.ndarray, factor: int) -> None:
        spec = net_spec(net)
        back = degrade(sr, factor)
        ok = comparable(np.any(sr == NODATA, axis=0), lr, factor)
        for i, band in enumerate(spec.outputs):
            d = (back[i] - lr[i].astype(np.float32))[ok].astype(np.float64)
            self.sq[band] = self.sq.get(band, 0.0) + float(np.dot(d, d))
            self.n[band] = self.n.get(band, 0) + int(d.size)

    def result(self) -> dict[str, float]:
        """``{band: RMSE in DN}`` for the bands seen (rounded to 0.01 DN)."""
        return {b: round(float(np.sqrt(self.sq[b] / self.n[b])), 2) for b in self.sq if self.n[b]}


def comparable(sr_nodata: np.ndarray, lr: np.ndarray, factor: int) -> np.ndarray:
    """LR pixels where ``D(sr)`` and ``lr`` can be compared: ``lr`` valid in every band and no
    ``sr`` nodata pixel within the Wald blur's reach of the block (the rule of
    :func:`s2sr_cloud.metrics.consistency`)."""
    from .metrics import dilate_by_blur

    ok = np.all(lr != NODATA, axis=0)
    if sr_nodata.any():
        h, w = ok.shape
        grown = dilate_by_blur(sr_nodata, factor)[: h * factor, : w * factor]
        ok &= ~grown.reshape(h, factor, w, factor).any(axis=(1, 3))
    return ok


def _expand(window: Window, margin: int, shape10: tuple[int, int]) -> Window:
    r0, c0 = max(0, window.row - margin), max(0, window.col - margin)
    r1 = min(shape10[0], window.row + window.height + margin)
    c1 = min(shape10[1], window.col + window.width + margin)
    return Window(r0, c0, r1 - r0, c1 - c0)


def super_resolve_consistent(
    source: SceneSource,
    runners: Mapping[str, Runner],
    *,
    window: Window | None = None,
    iterations: int = ITERATIONS,
    hybrid: bool = True,
    qa: ConsistencyQA | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """:func:`~s2sr_cloud.sr.super_resolve` followed by the post-steps, seamless across windows.

    The post-steps (:func:`finish`): with ``hybrid``, the blend with the local guided
    regression (:mod:`s2sr_cloud.guided`), then ``iterations`` back-projection iterations
    (:func:`project`; ``< 0``: none). With neither, this is plain :func:`super_resolve`.
    ``qa`` accumulates the real-scale consistency of the returned window.
    """
    if iterations < 0 and not hybrid:
        out = super_resolve(source, runners, window=window, **kwargs)
        if qa is not None:
            _add_qa(qa, source, out, window or Window(0, 0, *source.shape10))
        return out
    shape10 = source.shape10
    win = window or Window(0, 0, *shape10)
    if any(v % 6 for v in (win.row, win.col, win.height, win.width)):
        raise ValueError(f"window {win} is not on the 60 m grid (multiples of 6 px); cannot back-project")
    ext = _expand(win, post_margin10(runners, iterations, hybrid), shape10)
    out = super_resolve(source, runners, window=ext, **kwargs)
    r, c = win.row - ext.row, win.col - ext.col
    b10 = source.read(10, (ext.row, ext.row + ext.height), (ext.col, ext.col + ext.width)) if hybrid else None
    factors = {net_spec(n).factor for n in out}
    if hybrid and 6 in factors:
        factors.add(2)  # the 60 m net's guides include the 20 m bands
    lows = {s: _read_lr(source, s, ext) for s in factors}  # each group read once, shared by the nets
    for name, sr in out.items():
        s = net_spec(name).factor
        done = finish(name, sr, lows[s], iterations=iterations, hybrid=hybrid, b10=b10, b20=lows.get(2))
        out[name] = np.ascontiguousarray(done[:, r : r + win.height, c : c + win.width])
    if qa is not None:
        _add_qa(qa, source, out, win)
    return out


def post_margin10(runners: Iterable[str], iterations: int, hybrid: bool) -> int:
    """10 m pixels a window is extended by so that its post-stepped values are exact
    (``runners``: the nets' names, e.g. a runners mapping)."""
    from .guided import config
    from .guided import margin10 as guided_margin10

    margins = [0]
    for n in runners:
        s = net_spec(n).factor
        m = margin10(s, iterations) if iterations >= 0 else 0
        if hybrid:
            m += guided_margin10(s, config(n).radius)
        margins.append(m)
    return max(margins)


def finish(
    net: str,
    sr: np.ndarray,
    lr: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    hybrid: bool = True,
    b10: np.ndarray | None = None,
    b20: np.ndarray | None = None,
) -> np.ndarray:
    """The product's post-steps on one net's raw output ``sr`` (C, H, W) over a whole window:
    the hybrid blend (needs the window's 10 m bands ``b10`` and, for the 60 m net, its 20 m
    bands ``b20``), then the back-projection of ``lr``."""
    from .guided import blend, config, guides

    s = net_spec(net).factor
    out = sr
    if hybrid:
        if b10 is None:
            raise ValueError("the hybrid post-step needs the 10 m bands")
        out = blend(out, guides(net, b10, b20), lr, s, config(net))
    if iterations >= 0:
        out = project(out, lr, s, iterations)
    return out if out is not sr else sr.astype(np.float32, copy=True)


def _read_lr(source: SceneSource, factor: int, win: Window) -> np.ndarray:
    s = factor
    return source.read({2: 20, 6: 60}[s], (win.row // s, (win.row + win.height) // s), (win.col // s, (win.col + win.width) // s))


def _add_qa(qa: ConsistencyQA, source: SceneSource, out: Mapping[str, np.ndarray], win: Window) -> None:
    for name, sr in out.items():
        s = net_spec(name).factor
        if any(v % s for v in (win.row, win.col, win.height, win.width)):
            continue  # not on this net's LR grid: no block-exact comparison
        qa.add(name, sr, _read_lr(source, s, win), s)
