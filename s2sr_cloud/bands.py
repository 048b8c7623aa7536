"""The Sentinel-2 band model, in one place.

Band ids are ESA's, zero-padded (``B01`` … ``B12``, ``B8A``). Values entering the nets are
digital numbers on the *pre-04.00* scale, DN = 10000 × reflectance, divided by
:data:`SCALE`. From processing baseline 04.00 on, L2A products add
:data:`BOA_ADD_OFFSET` (1000) to every reflectance DN; :func:`harmonise` removes it before
the nets and :func:`unharmonise` puts it back when an output keeps the source convention.
DN 0 is nodata in every convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import UnknownBand

#: Divisor applied to DN before the nets (reference DSen2 preprocessing).
SCALE: float = 2000.0
#: Nodata DN of every reflectance band.
NODATA: int = 0
#: DN offset added to L2A reflectance from processing baseline 04.00 (BOA_ADD_OFFSET = -1000).
BOA_ADD_OFFSET: int = 1000
#: First processing baseline with the offset.
OFFSET_BASELINE: str = "04.00"

Resolution = Literal[10, 20, 60]
NetName = Literal["net20", "net60"]
Variant = Literal["dsen2", "vdsen2"]


@dataclass(frozen=True, slots=True)
class Band:
    """One Sentinel-2 MSI band."""

    name: str
    """ESA band id, e.g. ``B8A``."""
    resolution: int
    """Native ground sampling distance in metres."""
    common_name: str
    """STAC ``eo`` common name."""
    wavelength: float
    """Centre wavelength in micrometres."""


BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("B01", 60, "coastal", 0.443),
        Band("B02", 10, "blue", 0.490),
        Band("B03", 10, "green", 0.560),
        Band("B04", 10, "red", 0.665),
        Band("B05", 20, "rededge", 0.704),
        Band("B06", 20, "rededge", 0.740),
        Band("B07", 20, "rededge", 0.783),
        Band("B08", 10, "nir", 0.842),
        Band("B8A", 20, "nir08", 0.865),
        Band("B09", 60, "nir09", 0.945),
        Band("B10", 60, "cirrus", 1.375),
        Band("B11", 20, "swir16", 1.610),
        Band("B12", 20, "swir22", 2.190),
    )
}

#: Bands of each resolution group in *spectral* order (the order of the ``.npz`` layout).
BANDS_10M: tuple[str, ...] = ("B02", "B03", "B04", "B08")
BANDS_20M: tuple[str, ...] = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS_60M: tuple[str, ...] = ("B01", "B09")
GROUPS: dict[int, tuple[str, ...]] = {10: BANDS_10M, 20: BANDS_20M, 60: BANDS_60M}

#: 10 m guide bands in the order the reference DSen2 feeds them (GDAL SENTINEL2 order).
NET_ORDER_10M: tuple[str, ...] = ("B04", "B03", "B02", "B08")
#: Index into :data:`BANDS_10M` that gives :data:`NET_ORDER_10M`.
NET_INDEX_10M: tuple[int, ...] = tuple(BANDS_10M.index(b) for b in NET_ORDER_10M)

#: The 8 super-resolved output bands in spectral order (the output COG's band order).
SR_BANDS: tuple[str, ...] = ("B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")


@dataclass(frozen=True, slots=True)
class NetSpec:
    """What one DSen2 net consumes and produces."""

    name: NetName
    factor: int
    """Super-resolution factor: 2 for the 20 m net, 6 for the 60 m net."""
    inputs: tuple[str, ...]
    """Input channels, in order (10 m guides in reference order, then LR bands)."""
    outputs: tuple[str, ...]
    """Output channels, in order."""
    groups: tuple[int, ...]
    """Resolution groups the input is made of, in order."""

    @property
    def in_channels(self) -> int:
        return len(self.inputs)

    @property
    def out_channels(self) -> int:
        return len(self.outputs)

    @property
    def residual_slice(self) -> slice:
        """Input channels added to the output (global residual over the upsampled LR bands)."""
        return slice(self.in_channels - self.out_channels, self.in_channels)


NETS: dict[str, NetSpec] = {
    "net20": NetSpec("net20", 2, NET_ORDER_10M + BANDS_20M, BANDS_20M, (10, 20)),
    "net60": NetSpec("net60", 6, NET_ORDER_10M + BANDS_20M + BANDS_60M, BANDS_60M, (10, 20, 60)),
}


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """Depth and width of a DSen2 variant."""

    name: Variant
    depth: int
    """Number of residual blocks ``d``."""
    features: int
    """Feature maps ``f``."""

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius in 10 m pixels: 2 + 2d (14 for DSen2, 66 for VDSen2)."""
        return 2 + 2 * self.depth


VARIANTS: dict[str, VariantSpec] = {
    "dsen2": VariantSpec("dsen2", 6, 128),
    "vdsen2": VariantSpec("vdsen2", 32, 256),
}


def net_spec(name: str) -> NetSpec:
    """Return the :class:`NetSpec` for ``net20``/``20``/``net60``/``60``."""
    key = name if name.startswith("net") else f"net{name}"
    try:
        return NETS[key]
    except KeyError:
        raise ValueError(f"unknown net {name!r}; expected one of 20, 60") from None


def variant_spec(name: str) -> VariantSpec:
    """Return the :class:`VariantSpec` for ``dsen2`` or ``vdsen2``."""
    try:
        return VARIANTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; expected dsen2 or vdsen2") from None


def normalise_band(name: str) -> str:
    """Canonical band id for ``"b1"``, ``"B01"``, ``"B8a"`` …; raises :class:`UnknownBand`."""
    s = name.strip().upper()
    if s.startswith("B") and s[1:].isdigit():
        s = f"B{int(s[1:]):02d}"
    if s not in BANDS:
        raise UnknownBand(
            f"{name!r} is not a Sentinel-2 band; expected one of "
            + ", ".join(BANDS)
        )
    return s


def baseline_has_offset(baseline: str | None) -> bool:
    """True when an L2A processing baseline (``"05.11"``) carries the +1000 DN offset."""
    if not baseline:
        return False
    try:
        major, minor = (int(p) for p in str(baseline).split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (4, 0)


def harmonise(dn: np.ndarray, offset: int) -> np.ndarray:
    """Remove a DN offset (0 or 1000): ``max(dn - offset, 1)`` on valid pixels, 0 stays 0.

    Returns float32. A valid pixel never becomes nodata: it is clipped at 1 DN.
    """
    x = dn.astype(np.float32, copy=True)
    if offset:
        valid = x != NODATA
        x = np.where(valid, np.maximum(x - offset, 1.0), 0.0).astype(np.float32)
    return x


def unharmonise(dn: np.ndarray, offset: int) -> np.ndarray:
    """Add a DN offset back on valid (non-zero) pixels."""
    if not offset:
        return dn
    return np.where(dn != NODATA, dn + offset, dn)
