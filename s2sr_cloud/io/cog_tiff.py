"""The bytes of a Cloud-Optimized GeoTIFF around tiles compressed elsewhere.

:func:`template_tags` lets GDAL write a small GeoTIFF with the output's georeference and metadata
(CRS keys, transform, nodata, band descriptions, scale/offset, tags) and takes those TIFF tags as
they are, so the COG carries exactly what GDAL would write. :func:`write_cog` lays out the file
as GDAL's COG driver does: the header with GDAL's structural-metadata ghost area, every IFD
(full resolution first, then the overviews from largest to smallest), then the tile data, the
smallest overview first and the full resolution last, each level in row-major order, every tile
with its 4-byte size before it and its last 4 bytes repeated after it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: TIFF type → bytes per value.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
SHORT, LONG, LONG8 = 3, 4, 16
#: Tags taken from GDAL's own GeoTIFF of the output: sample layout, GeoTIFF keys, GDAL metadata and nodata.
TEMPLATE_TAGS = (258, 262, 338, 339, 33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
_MAIN_ONLY = (33550, 33922, 34264, 34735, 34736, 34737, 42112)
DEFLATE, PREDICTOR_HORIZONTAL = 8, 2

_GHOST_BODY = (
    "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
)
GHOST = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_BODY):06d} bytes\n{_GHOST_BODY}".encode("ascii")


@dataclass(frozen=True)
class Tag:
    """One TIFF tag: its type, value count and the value bytes (little-endian)."""

    type: int
    count: int
    data: bytes


def read_ifd0(path: str | os.PathLike[str]) -> dict[int, Tag]:
    """The tags of the first IFD of a little-endian classic TIFF or BigTIFF."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] != b"II":
            raise ValueError(f"{path}: not a little-endian TIFF")
        big = struct.unpack_from("<H", head, 2)[0] == 43
        off = struct.unpack_from("<Q", head, 8)[0] if big else struct.unpack_from("<I", head, 4)[0]
        f.seek(off)
        n = struct.unpack("<Q" if big else "<H", f.read(8 if big else 2))[0]
        esize, inline = (20, 8) if big else (12, 4)
        raw = f.read(n * esize)
        tags: dict[int, Tag] = {}
        for i in range(n):
            e = raw[i * esize:(i + 1) * esize]
            tag, typ = struct.unpack_from("<HH", e)
            count = struct.unpack_from("<Q" if big else "<I", e, 4)[0]
            size = _TYPE_SIZE.get(typ, 1) * count
            if size <= inline:
                data = e[esize - inline:esize - inline + size]
            else:
                f.seek(struct.unpack_from("<Q" if big else "<I", e, esize - inline)[0])
                data = f.read(size)
            tags[tag] = Tag(typ, count, data)
    return tags


def template_tags(profile: Mapping[str, Any], finish: Callable[[Any], None]) -> dict[int, Tag]:
    """The :data:`TEMPLATE_TAGS` GDAL writes for ``profile`` (rasterio keywords) once ``finish``
    (descriptions, tags, scale/offset: what the dataset gets before closing) ran on it."""
    import tempfile

    import rasterio

    prof = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize", "BIGTIFF", "compress")}
    prof.update(width=16, height=16, tiled=False, BIGTIFF="NO", SPARSE_OK="TRUE")
    with tempfile.TemporaryDirectory(prefix="s2sr-cog-") as tmp:
        path = Path(tmp) / "template.tif"
        with rasterio.open(path, "w", **prof) as ds:
            finish(ds)
        tags = read_ifd0(path)
    return {k: v for k, v in tags.items() if k in TEMPLATE_TAGS}


@dataclass
class Level:
    """One resolution of the COG: its size and, per tile in row-major order, where its compressed
    bytes lie in the tile store (``offsets``/``sizes``)."""

    width: int
    height: int
    offsets: Sequence[int]
    sizes: Sequence[int]


def _ifd_bytes(tags: dict[int, Tag], at: int, big: bool, last: bool) -> tuple[bytes, int]:
    """The IFD of ``tags`` at file offset ``at`` with its out-of-line values after it, and the
    offset the next IFD would get (or 0 when ``last``)."""
    items = sorted(tags.items())
    esize, inline = (20, 8) if big else (12, 4)
    head = 8 if big else 2
    ifd_len = head + len(items) * esize + (8 if big else 4)
    extra = bytearray()
    entries = bytearray()
    values_at = at + ifd_len
    for tag, t in items:
        entry = struct.pack("<HH", tag, t.type) + struct.pack("<Q" if big else "<I", t.count)
        if len(t.data) <= inline:
            entry += t.data.ljust(inline, b"\0")
        else:
            if (values_at + len(extra)) % 2:
                extra += b"\0"  # TIFF values start on a word boundary
            entry += struct.pack("<Q" if big else "<I", values_at + len(extra))
            extra += t.data
        entries += entry
    end = values_at + len(extra)
    end += end % 2
    nxt = 0 if last else end
    body = struct.pack("<Q" if big else "<H", len(items)) + entries + struct.pack("<Q" if big else "<I", nxt)
    blob = bytes(body) + bytes(extra)
    return blob.ljust(end - at, b"\0"), end


def _level_tags(lv: Level, base: Mapping[int, Tag], *, overview: bool, block: int, spp: int,
                offsets: Sequence[int], big: bool) -> dict[int, Tag]:
    def longs(values: Sequence[int], typ: int) -> Tag:
        return Tag(typ, len(values), struct.pack(f"<{len(values)}{'Q' if typ == LONG8 else 'I'}", *values))

    tags = {k: v for k, v in base.items() if not (overview and k in _MAIN_ONLY)}
    tags.update({
        256: longs([lv.width], LONG), 257: longs([lv.height], LONG),
        259: Tag(SHORT, 1, struct.pack("<H", DEFLATE)), 277: Tag(SHORT, 1, struct.pack("<H", spp)),
        284: Tag(SHORT, 1, struct.pack("<H", 1)), 317: Tag(SHORT, 1, struct.pack("<H", PREDICTOR_HORIZONTAL)),
        322: Tag(SHORT, 1, struct.pack("<H", block)), 323: Tag(SHORT, 1, struct.pack("<H", block)),
        324: longs(offsets, LONG8 if big else LONG), 325: longs(lv.sizes, LONG8 if big else LONG),
    })
    if overview:
        tags[254] = longs([1], LONG)  # NewSubfileType: reduced-resolution image
    return tags


def _layout(levels: Sequence[Level], base: Mapping[int, Tag], block: int, spp: int,
            big: bool) -> tuple[bytes, list[list[int]], int]:
    """Header + IFDs, the file offset of every tile's data per level, and the file size."""
    n_tiles = [len(lv.sizes) for lv in levels]
    placeholder = [[0] * n for n in n_tiles]
    start = (16 if big else 8) + len(GHOST)
    start += start % 2

    def ifds(offsets: list[list[int]]) -> tuple[bytes, int]:
        out, at = bytearray(), start
        for i, lv in enumerate(levels):
            tags = _level_tags(lv, base, overview=i > 0, block=block, spp=spp, offsets=offsets[i], big=big)
            blob, at = _ifd_bytes(tags, at, big, last=i == len(levels) - 1)
            out += blob
        return bytes(out), at

    _, data_at = ifds(placeholder)  # offsets do not change the IFDs' size
    offsets: list[list[int]] = [[] for _ in levels]
    pos = data_at
    for i in reversed(range(len(levels))):  # smallest overview first, full resolution last
        for size in levels[i].sizes:
            offsets[i].append(pos + 4)  # after the 4-byte size leader
            pos += 4 + size + 4
    blob, _ = ifds(offsets)
    if big:
        header = b"II" + struct.pack("<HHHQ", 43, 8, 0, start)
    else:
        header = b"II" + struct.pack("<HI", 42, start)
    return (header + GHOST).ljust(start, b"\0") + blob, offsets, pos


def write_cog(out: BinaryIO, store_fd: int, levels: Sequence[Level], base: Mapping[int, Tag], *,
              block: int, spp: int) -> None:
    """Write the COG of ``levels`` (full resolution first) into ``out``; tile bytes are read from
    the file descriptor ``store_fd`` at each level's ``offsets``. BigTIFF when it needs more than 4 GiB."""
    head, _, size = _layout(levels, base, block, spp, big=False)
    big = size > 0xFFFFFFFF
    if big:
        head, _, size = _layout(levels, base, block, spp, big=True)
    out.write(head)
    for lv in reversed(levels):
        for off, n in zip(lv.offsets, lv.sizes):
            data = os.pread(store_fd, n, off)
            if len(data) != n:
                raise OSError(f"short read of a compressed tile ({len(data)} of {n} bytes)")
            out.write(struct.pack("<I", n) + data + data[-4:])
