"""Wald-protocol degradation and the training pairs built from it (pure NumPy).

DSen2 is self-supervised: every band of a real scene is degraded by the net's
super-resolution factor ``s`` (2 for the 20 m net, 6 for the 60 m net), the net gets the
degraded bands as input and learns to restore the original low-resolution bands.

The degradation follows the reference: a Gaussian blur with ``sigma = 1/s`` (in pixels of
the band being degraded), then the mean over ``s × s`` blocks. The blur is separable with
a kernel truncated at 4 sigma and symmetric ("reflect", half-sample) edges.

The net input of a pair is built exactly as :func:`s2sr_cloud.sr.super_resolve` builds it
at inference (10 m guides in reference order, LR bands bilinearly upsampled on the
pixel-centre aligned grid, everything divided by ``SCALE``), only on the degraded grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import NET_INDEX_10M, NODATA, SCALE, net_spec
from ..errors import ShapeMismatch
from ..resample import block_mean, upsample


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of radius ``int(truncate*sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (C, H, W) over the last two axes, symmetric edges."""
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    out = x.astype(np.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="symmetric")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(p, np.arange(i, i + n), axis=axis)
        out = acc
    return out.astype(np.float32)


def degrade(x: np.ndarray, factor: int) -> np.ndarray:
    """Wald degradation of (C, H, W): Gaussian blur (sigma = 1/factor), then block mean.

    H and W are cropped to multiples of ``factor``.
    """
    return block_mean(gaussian_blur(x, 1.0 / factor), factor)


def crop_to(b10: np.ndarray, b20: np.ndarray, b60: np.ndarray, multiple: int) -> tuple[np.ndarray, ...]:
    """Crop a scene to the area every band group covers, with a 10 m side that is a multiple
    of ``multiple`` (a multiple of 6).

    The groups are anchored at the top-left corner (``b20[:, i, j]`` covers
    ``b10[:, 2i:2i+2, 2j:2j+2]``), so a 20 m or 60 m array one pixel short (e.g. a crop
    whose 10 m side is not a multiple of 6) only loses the last rows/columns.
    """
    h = min(b10.shape[1], 2 * b20.shape[1], 6 * b60.shape[1]) // multiple * multiple
    w = min(b10.shape[2], 2 * b20.shape[2], 6 * b60.shape[2]) // multiple * multiple
    if h == 0 or w == 0:
        raise ShapeMismatch(
            f"scene of {b10.shape[1:]} px (20 m {b20.shape[1:]}, 60 m {b60.shape[1:]}) is smaller than {multiple} px at 10 m"
        )
    return b10[:, :h, :w], b20[:, : h // 2, : w // 2], b60[:, : h // 6, : w // 6]


@dataclass
class WaldScene:
    """A scene degraded for one net: the degraded groups and the original target."""

    net: str
    factor: int
    b10: np.ndarray
    """Degraded 10 m bands (4, H/s, W/s), float32 DN, spectral order."""
    b20: np.ndarray
    """Degraded 20 m bands (6, H/2s, W/2s)."""
    b60: np.ndarray
    """Degraded 60 m bands (2, H/6s, W/6s)."""
    target: np.ndarray
    """Original bands the net must restore: 20 m bands (net20) or 60 m bands (net60), float32 DN."""
    valid: np.ndarray
    """bool (H', W') on the target grid: no nodata in any input or target pixel it depends on."""


def _valid_on(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """True on a (h, w) grid where no band of ``arr`` (at ``s``× coarser or finer) is nodata."""
    ok = np.all(arr != NODATA, axis=0)
    h, w = shape
    if ok.shape == shape:
        return ok
    if ok.shape[0] > h:  # finer: all pixels of each block must be valid
        f = ok.shape[0] // h
        return ok[: h * f, : w * f].reshape(h, f, w, f).all(axis=(1, 3))
    f = h // ok.shape[0]  # coarser: repeat
    return np.repeat(np.repeat(ok, f, axis=0), f, axis=1)[:h, :w]


def wald_scene(b10: np.ndarray, b20: np.ndarray, b60: np.ndarray, net: str) -> WaldScene:
    """Degrade a scene (uint16/float DN arrays in the ``.npz`` layout) for ``net``.

    The 20 m net: every group degraded by 2; target = original 20 m bands.
    The 60 m net: every group degraded by 6; target = original 60 m bands.
    The scene is cropped to a 10 m side that is a multiple of 12 (net20) or 36 (net60).
    """
    spec = net_spec(net)
    s = spec.factor
    b10, b20, b60 = crop_to(b10, b20, b60, 6 * s)
    target = (b20 if s == 2 else b60).astype(np.float32)
    shape = target.shape[1:]
    valid = np.ones(shape, dtype=bool)
    for arr in (b10, b20, b60):
        valid &= _valid_on(arr, shape)
    return WaldScene(
        net=spec.name,
        factor=s,
        b10=degrade(b10, s),
        b20=degrade(b20, s),
        b60=degrade(b60, s),
        target=target,
        valid=valid,
    )


def net_input(ws: WaldScene) -> np.ndarray:
    """The scaled net input (C_in, h, w) on the target grid, as ``super_resolve`` builds it."""
    spec = net_spec(ws.net)
    h, w = ws.target.shape[1:]
    parts = [ws.b10[list(NET_INDEX_10M)], upsample(ws.b20, 2, (h, w))]
    if spec.name == "net60":
        parts.append(upsample(ws.b60, 6, (h, w)))
    x = np.concatenate(parts, axis=0).astype(np.float32)
    return x / np.float32(SCALE)
