"""The 10 m output grid of one item: bbox ∩ footprint in the item's CRS, snapped to 60 m.

Pure arithmetic on affine transforms, plus :func:`to_item_crs` /
:func:`bbox_from_crs` which call PROJ (through rasterio, imported lazily). Window
origins and sizes are multiples of 6 pixels of the 10 m grid, so the 20 m and 60 m
windows of every band start and end on whole pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BBoxOutsideItem, CRSMismatch, ShapeMismatch

Bounds = tuple[float, float, float, float]
#: Output windows snap to multiples of this many 10 m pixels (one 60 m pixel).
SNAP = 6
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Window:
    """A window of the 10 m grid: top-left ``row``, ``col`` and size ``height``, ``width``."""

    row: int
    col: int
    height: int
    width: int


def iter_blocks(shape10: tuple[int, int], block: int) -> Iterator[Window]:
    """Non-overlapping blocks of side ``block`` (a multiple of 6 is best) covering the grid."""
    h, w = shape10
    for r in range(0, h, block):
        for c in range(0, w, block):
            yield Window(r, c, min(block, h - r), min(block, w - c))


def check_shapes(shape10: tuple[int, int], shape20: tuple[int, int], shape60: tuple[int, int]) -> None:
    """Raise :class:`ShapeMismatch` unless 10 m = 2 × 20 m = 6 × 60 m in both axes."""
    h, w = shape10
    if shape20 != (h // 2, w // 2) or shape60 != (h // 6, w // 6) or h % 6 or w % 6:
        raise ShapeMismatch(
            f"band grids do not align: 10 m {shape10}, 20 m {shape20}, 60 m {shape60}; "
            "expected the 10 m side to be exactly 2x the 20 m side and 6x the 60 m side "
            "(crop the scene to a multiple of 60 m)"
        )


@dataclass(frozen=True, slots=True)
class ItemGrid:
    """The full 10 m pixel grid of an item."""

    crs: str
    """CRS as ``EPSG:<code>`` (or WKT)."""
    transform: tuple[float, float, float, float, float, float]
    """Affine (a, b, c, d, e, f) of the 10 m grid, north up."""
    shape: tuple[int, int]
    """(rows, cols) of the 10 m grid."""

    def __post_init__(self) -> None:
        a, b, _, d, e, _ = self.transform
        if b or d or a <= 0 or e >= 0:
            raise CRSMismatch(f"the item's 10 m grid is rotated or not north-up ({self.transform}); not supported")

    @property
    def res(self) -> float:
        return self.transform[0]

    @property
    def bounds(self) -> Bounds:
        a, _, c, _, e, f = self.transform
        h, w = self.shape
        return (c, f + e * h, c + a * w, f)


@dataclass(frozen=True, slots=True)
class OutputGrid:
    """The 10 m output grid of one item (a window of its :class:`ItemGrid`)."""

    crs: str
    """The item's CRS."""
    transform: tuple[float, float, float, float, float, float]
    """Affine (a, b, c, d, e, f) of the output raster."""
    shape: tuple[int, int]
    """(rows, cols) of the output raster."""
    window: Window
    """Where the output lies in the item's 10 m grid."""
    bounds: Bounds
    """Output bounds in :attr:`crs`."""
    bbox: Bounds
    """Output bounds in EPSG:4326 (W, S, E, N)."""


def crs_of(props: Mapping[str, Any], asset: Mapping[str, Any] | None = None) -> str | None:
    """``proj:code`` (asset, item) else ``EPSG:<proj:epsg>`` (asset, item) else None."""
    for d in (asset or {}, props):
        if d.get("proj:code"):
            return str(d["proj:code"])
    for d in (asset or {}, props):
        if d.get("proj:epsg"):
            return f"EPSG:{int(d['proj:epsg'])}"
    return None


def grid_from_metadata(props: Mapping[str, Any], asset: Mapping[str, Any]) -> ItemGrid | None:
    """The 10 m grid from a 10 m asset's ``proj:transform``/``proj:shape`` (6 or 9 numbers)."""
    crs = crs_of(props, asset)
    tr = asset.get("proj:transform") or props.get("proj:transform")
    shape = asset.get("proj:shape") or props.get("proj:shape")
    if not (crs and tr and shape) or len(tr) not in (6, 9):
        return None
    return ItemGrid(crs, tuple(float(v) for v in tr[:6]), (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]


def snap_window(bounds: Bounds, grid: ItemGrid, snap: int = SNAP) -> Window | None:
    """Pixels of ``grid`` covering ``bounds``, grown to multiples of ``snap``; None if empty."""
    a, _, c, _, e, f = grid.transform
    col0 = math.floor((bounds[0] - c) / a / snap + _EPS) * snap
    col1 = math.ceil((bounds[2] - c) / a / snap - _EPS) * snap
    row0 = math.floor((bounds[3] - f) / e / snap + _EPS) * snap
    row1 = math.ceil((bounds[1] - f) / e / snap - _EPS) * snap
    h = grid.shape[0] // snap * snap
    w = grid.shape[1] // snap * snap
    col0, col1 = max(col0, 0), min(col1, w)
    row0, row1 = max(row0, 0), min(row1, h)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(row0, col0, row1 - row0, col1 - col0)


def window_transform(grid: ItemGrid, win: Window) -> tuple[float, float, float, float, float, float]:
    """Affine of ``win`` inside ``grid``."""
    a, b, c, d, e, f = grid.transform
    return (a, b, c + a * win.col, d, e, f + e * win.row)


def intersect(p: Bounds, q: Bounds) -> Bounds | None:
    """Intersection of two rectangles, None when they do not overlap."""
    out = (max(p[0], q[0]), max(p[1], q[1]), min(p[2], q[2]), min(p[3], q[3]))
    return out if out[0] < out[2] and out[1] < out[3] else None


def geometry_bounds(geom: Mapping[str, Any]) -> Bounds:
    """Bounds of a GeoJSON geometry's coordinates."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Sequence[Any]) -> None:
        if c and isinstance(c[0], (int, float)):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        else:
            for sub in c:
                walk(sub)

    walk(geom["coordinates"])
    return (min(xs), min(ys), max(xs), max(ys))


def to_item_crs(bbox: Bounds, crs: str) -> Bounds:
    """A lon/lat bbox as bounds in ``crs`` (densified edges)."""
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds("EPSG:4326", crs, *bbox, densify_pts=21))  # type: ignore[return-value]


def footprint_in_crs(geometry: Mapping[str, Any], crs: str) -> Bounds:
    """Bounds in ``crs`` of an item's lon/lat footprint."""
    from rasterio.warp import transform_geom

    return geometry_bounds(transform_geom("EPSG:4326", crs, dict(geometry)))


def bbox_from_crs(bounds: Bounds, crs: str) -> Bounds:
    """Bounds in ``crs`` as a lon/lat bbox."""
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))  # type: ignore[return-value]


def plan_output(grid: ItemGrid, bbox: Bounds | None, footprint: Mapping[str, Any] | None, item_id: str = "") -> OutputGrid:
    """The output grid for ``bbox`` (lon/lat; None = whole item) ∩ item footprint ∩ raster.

    Raises:
        BBoxOutsideItem: nothing of the bbox lies on the item's data.
    """
    area = grid.bounds
    if footprint is not None:
        area = intersect(area, footprint_in_crs(footprint, grid.crs)) or area
    target = area if bbox is None else intersect(area, to_item_crs(bbox, grid.crs))
    win = snap_window(target, grid) if target is not None else None
    if win is None:
        raise BBoxOutsideItem(
            f"the bbox {bbox} does not overlap item {item_id or '?'} (its footprint spans "
            f"{bbox_from_crs(area, grid.crs)} in lon/lat); choose a bbox inside the item"
        )
    tr = window_transform(grid, win)
    bounds = (tr[2], tr[5] + tr[4] * win.height, tr[2] + tr[0] * win.width, tr[5])
    return OutputGrid(grid.crs, tr, (win.height, win.width), win, bounds, bbox_from_crs(bounds, grid.crs))
