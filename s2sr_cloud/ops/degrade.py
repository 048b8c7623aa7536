"""Degradation operators: how a band is blurred and decimated to a coarser grid.

DSen2 learns, and the post-steps check, with a *degradation*: every band of a scene blurred and
decimated by the net's factor ``s``. One family of separable filters covers every protocol used
here: low-resolution (LR) sample ``j`` of an axis is ``sum_o taps[o] · x[s·j + o]`` over the offsets
``o = -R … s-1+R`` of the symmetric-padded axis (the filter centred on the ``s × s`` block it
replaces). :func:`degrade` applies it in one strided pass per axis.

Protocols (:data:`PROTOCOLS`, :func:`parse_protocol`):

* ``wald`` — the reference's: Gaussian blur with ``sigma = 1/s`` (pixels of the band degraded,
  truncated at 4 sigma), then the mean over ``s × s`` blocks. Taps below 1e-6 at the kernel's ends
  (the 60 m net's blur: e^-18) are dropped; they change nothing in float32.
* ``gaussian:SIGMA`` — a Gaussian of standard deviation ``SIGMA`` LR pixels, then decimation (the
  filter is sampled at the block centre; no box).
* ``mtf`` — per band, the Gaussian whose modulation transfer at the LR Nyquist frequency is the
  Sentinel-2 MSI's value for that band (:data:`MTF_NYQUIST`): ``sigma = sqrt(-2 ln MTF) / pi``
  LR pixels (MTF 0.3 → 0.49 px).
* ``bicubic`` — antialiased bicubic downsampling (Keys, a = -0.5, the kernel stretched by ``s``),
  the protocol of image SR toolboxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .xp import device_of, namespace, pad_axis, strided

#: Sentinel-2 MSI MTF at Nyquist per band (the values of Ulfarsson et al.'s S2Sharp, from the
#: L1C image-quality figures); the ``mtf`` protocol's Gaussians are matched to them.
MTF_NYQUIST: dict[str, float] = {
    "B01": 0.32, "B02": 0.26, "B03": 0.28, "B04": 0.24, "B05": 0.38, "B06": 0.34, "B07": 0.34,
    "B08": 0.26, "B8A": 0.33, "B09": 0.26, "B11": 0.22, "B12": 0.23,
}


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of radius ``int(truncate*sigma + 0.5)`` (float64)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (C, H, W) over the last two axes, symmetric edges (float64 sums,
    float32 result)."""
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    out = np.asarray(x, dtype=np.float64)
    for axis in (1, 2):
        p = pad_axis(out, r, r, axis)
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(p, np.arange(i, i + n), axis=axis)
        out = acc
    return out.astype(np.float32)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                    np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))


def _sampled(fn: Any, factor: int, support: float) -> tuple[np.ndarray, int]:
    """Taps of a kernel ``fn(offset from the block centre)`` over the offsets it reaches, normalised."""
    c = (factor - 1) / 2.0
    r = max(0, math.ceil(support - c))
    off = np.arange(-r, factor + r, dtype=np.float64)
    w = fn(off - c)
    keep = np.nonzero(np.abs(w) > 1e-12)[0]
    lo = min(int(keep[0]), len(w) - 1 - int(keep[-1]))  # trim zero ends symmetrically
    if lo:
        w, r = w[lo:-lo], r - lo
    return w / w.sum(), r


@dataclass(frozen=True, slots=True)
class Degradation:
    """One degradation protocol (see the module docstring)."""

    kind: str
    """``wald``, ``gaussian``, ``mtf`` or ``bicubic``."""
    sigma: float = 0.0
    """``gaussian``: standard deviation in LR pixels."""

    @property
    def name(self) -> str:
        return f"gaussian:{self.sigma:g}" if self.kind == "gaussian" else self.kind

    @property
    def per_band(self) -> bool:
        return self.kind == "mtf"

    def taps(self, factor: int, band: str | None = None) -> tuple[np.ndarray, int]:
        """``(taps, R)``: the filter over offsets ``-R … factor-1+R`` (float64, sums to 1)."""
        s = int(factor)
        if self.kind == "wald":
            k = gaussian_kernel(1.0 / s)
            if len(k) > 1 and k[0] < 1e-6:  # the 60 m blur's outer taps (e^-18)
                k = k[1:-1]
            return np.convolve(k, np.full(s, 1.0 / s)), len(k) // 2
        if self.kind == "bicubic":
            return _sampled(lambda d: _cubic(d / s), s, 2.0 * s)
        if self.kind == "gaussian":
            sig = self.sigma * s
        elif self.kind == "mtf":
            if band is None or band not in MTF_NYQUIST:
                raise ValueError(f"the mtf protocol needs a Sentinel-2 band name, got {band!r}")
            sig = math.sqrt(-2.0 * math.log(MTF_NYQUIST[band])) / math.pi * s
        else:
            raise ValueError(f"unknown degradation {self.kind!r}")
        if sig <= 0:
            return np.full(s, 1.0 / s), 0  # no blur: plain block mean
        return _sampled(lambda d: np.exp(-0.5 * (d / sig) ** 2), s, 4.0 * sig)

    def reach(self, factor: int, bands: Sequence[str] | None = None) -> int:
        """HR pixels past an ``s × s`` block that its LR value depends on (the largest over ``bands``).
        For ``wald`` the untrimmed blur's radius (the rule nodata masks have always used)."""
        if self.kind == "wald":
            return blur_reach(factor)
        return max(self.taps(factor, b)[1] for b in (bands if self.per_band and bands else [None]))


#: The reference's Wald operator (training, back-projection and consistency QA by default).
WALD = Degradation("wald")
#: The protocols ``s2sr evaluate --protocol`` knows by name (``gaussian:SIGMA`` takes any width).
PROTOCOLS: dict[str, Degradation] = {
    "wald": WALD,
    "bicubic": Degradation("bicubic"),
    "mtf": Degradation("mtf"),
    "gaussian:0.35": Degradation("gaussian", 0.35),
    "gaussian:0.6": Degradation("gaussian", 0.6),
}


def parse_protocol(value: str | Degradation) -> Degradation:
    """``wald``, ``bicubic``, ``mtf`` or ``gaussian:SIGMA`` (LR pixels, 0 < SIGMA ≤ 3)."""
    if isinstance(value, Degradation):
        return value
    v = str(value).strip().lower()
    if v in PROTOCOLS:
        return PROTOCOLS[v]
    if v.startswith(("gaussian:", "gauss:")):
        try:
            sigma = float(v.split(":", 1)[1])
        except ValueError:
            sigma = float("nan")
        if 0 < sigma <= 3:
            return Degradation("gaussian", sigma)
    raise ValueError(f"unknown degradation protocol {value!r}; choose wald, bicubic, mtf or gaussian:SIGMA "
                     "(SIGMA in low-resolution pixels, e.g. gaussian:0.5)")


def blur_reach(factor: int) -> int:
    """Radius (HR pixels) of the Wald blur of ``factor``: how far nodata spreads through it."""
    return len(gaussian_kernel(1.0 / factor)) // 2


def _degrade_axis(x: Any, taps: np.ndarray, r: int, factor: int, axis: int) -> Any:
    """LR sample ``j`` along ``axis`` is ``sum_o taps[o] · x[factor·j + o - r]`` over the symmetric-padded
    axis, in ``x``'s floating dtype."""
    xp = namespace(x)
    n = x.shape[axis] // factor
    p = pad_axis(x, r, r, axis) if r else x
    shape = list(x.shape)
    shape[axis] = n
    out = xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x))
    for o, w in enumerate(taps):
        out += _scalar(w, x) * strided(p, o, factor, n, axis)
    return out


def _scalar(w: float, like: Any) -> Any:
    """``w`` as a scalar of ``like``'s dtype (float32 stays float32 in NumPy's promotion rules)."""
    if isinstance(like, np.ndarray):
        return like.dtype.type(w)
    return float(w)


def degrade(x: Any, factor: int, op: Degradation = WALD, bands: Sequence[str] | None = None) -> Any:
    """Degrade (C, H, W) (or (H, W)) by ``factor`` with protocol ``op``: H, W cropped to multiples of
    ``factor``; float32 in, float32 out (float64 stays float64; integers become float32).

    ``bands`` names the channels for per-band protocols (``mtf``)."""
    xp = namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, xp.float32)
    if op.per_band:
        if bands is None or len(bands) != x.shape[0]:
            raise ValueError(f"the {op.name} protocol needs one band name per channel, got {bands}")
        return xp.stack([_degrade2(x[i], factor, *op.taps(factor, b)) for i, b in enumerate(bands)], axis=0)
    taps, r = op.taps(factor)
    return _degrade2(x, factor, taps, r)


def _degrade2(x: Any, factor: int, taps: np.ndarray, r: int) -> Any:
    nd = x.ndim
    return _degrade_axis(_degrade_axis(x, taps, r, factor, nd - 2), taps, r, factor, nd - 1)


def dilate_by_blur(mask: Any, factor: int, reach: int | None = None) -> Any:
    """Grow a boolean (H, W) ``mask`` by ``reach`` pixels (default: the Wald blur's radius): how far
    nodata spreads through the degradation."""
    xp = namespace(mask)
    r = blur_reach(factor) if reach is None else reach
    if r == 0 or not bool(xp.any(mask)):
        return mask
    p = pad_axis(pad_axis(mask, r, r, 0, "constant"), r, r, 1, "constant")
    out = xp.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out = out | p[dy : dy + h, dx : dx + w]
    return out
