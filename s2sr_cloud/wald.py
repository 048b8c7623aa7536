"""Wald-protocol scenes (pure NumPy): a real scene degraded by a net's factor.

DSen2 is self-supervised: every band of a real scene is degraded by the net's
super-resolution factor ``s`` (2 for the 20 m net, 6 for the 60 m net); the net gets the
degraded bands as input and must restore the original low-resolution bands. The degradation
is the reference's Wald operator by default (:data:`s2sr_cloud.ops.WALD`), or any other
protocol of :mod:`s2sr_cloud.ops.degrade` (antialiased bicubic, Gaussians, the Sentinel-2
MTF per band), so training and evaluation share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bands import BANDS_10M, BANDS_20M, BANDS_60M, NODATA, net_spec
from .errors import ShapeMismatch
from .ops import WALD, Degradation, degrade


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


def degrade_group(x: np.ndarray, factor: int, bands: tuple[str, ...], op: Degradation = WALD) -> np.ndarray:
    """One band group degraded by ``factor`` with ``op`` (sums in float64, float32 result)."""
    return degrade(np.asarray(x, dtype=np.float64), factor, op, bands).astype(np.float32)


def wald_scene(b10: np.ndarray, b20: np.ndarray, b60: np.ndarray, net: str, op: Degradation = WALD) -> WaldScene:
    """Degrade a scene (uint16/float DN arrays in the ``.npz`` layout) for ``net`` with ``op``.

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
        b10=degrade_group(b10, s, BANDS_10M, op),
        b20=degrade_group(b20, s, BANDS_20M, op),
        b60=degrade_group(b60, s, BANDS_60M, op),
        target=target,
        valid=valid,
    )
