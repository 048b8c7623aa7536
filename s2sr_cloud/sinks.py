"""Where the streaming loop puts each block: :class:`BlockSink` and the two sinks every path uses
(the bands of a COG or part file, in-memory arrays)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from .bands import net_spec
from .grid import Window
from .sr import Runner, SceneSource, assemble_sr_bands, to_uint16


class BlockSink(Protocol):
    """Where the one loop puts each block: a COG, an in-memory array, a part file…"""

    def write_block(self, window: Window, out: dict[str, np.ndarray], source: SceneSource) -> None:
        """``window`` in the source's 10 m grid; ``out`` ``{net: float32 (C, h, w) DN}``."""


class BandsSink:
    """Blocks → ``write(uint16 (count, h, w), window relative to origin)``: the 8 super-resolved
    bands in :data:`~s2sr_cloud.bands.SR_BANDS` order, then the native 10 m bands if asked.

    ``write`` is e.g. :meth:`s2sr_cloud.io.cog.CogWriter.write` or a part file's writer.
    """

    def __init__(self, write: Callable[[np.ndarray, Window], None], *, origin: tuple[int, int] = (0, 0),
                 include_10m: bool = False) -> None:
        self.write, self.origin, self.include_10m = write, origin, include_10m

    def write_block(self, window: Window, out: dict[str, np.ndarray], source: SceneSource) -> None:
        arr = assemble_sr_bands({n: to_uint16(a) for n, a in out.items()})  # device outputs: uint16 over the bus
        if self.include_10m:
            b10 = source.read(10, (window.row, window.row + window.height), (window.col, window.col + window.width))
            arr = np.concatenate([arr, to_uint16(b10)], axis=0)
        rel = Window(window.row - self.origin[0], window.col - self.origin[1], window.height, window.width)
        self.write(arr, rel)


class ArraySink:
    """Blocks → one uint16 array per net over ``window`` (in memory: small scenes, ``.npz`` output)."""

    def __init__(self, window: Window, runners: Mapping[str, Runner]) -> None:
        self.window = window
        self.arrays = {n: np.zeros((net_spec(n).out_channels, window.height, window.width), np.uint16) for n in runners}

    def write_block(self, window: Window, out: dict[str, np.ndarray], source: SceneSource) -> None:
        r, c = window.row - self.window.row, window.col - self.window.col
        for n, a in out.items():
            self.arrays[n][:, r : r + window.height, c : c + window.width] = to_uint16(a)
