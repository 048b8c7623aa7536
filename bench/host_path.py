"""What the host side of ``super_resolve`` can feed an accelerator: Mpx/s with a free net.

On the lent H200 the nets ran at 74–77 Mpx/s each (fp16, device-resident tiles,
``scripts/gpu_compute.py``) while the whole path reached 4–6 Mpx/s (``scripts/gpu_bench.py``):
the host (reading, upsampling, tiling, copies, clipping, nodata mask) is the bound. This
script replaces the net by a runner that costs nothing (returns zeros of the right shape),
so the figure is the host path alone — an upper bound of the whole GPU path on the machine
it runs on, measurable without a GPU.

One line per figure::

    host_path nets=both size=2040 mpx_per_s=… seconds=… (super_resolve, block 2040)
    host_path nets=both size=2040 what=stream block=510 workers=2 mpx_per_s=… (streamed blocks, overlapped)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from gpu_bench import scene  # noqa: E402  (real texture tiled to the size)

from s2sr_cloud.bands import NETS  # noqa: E402
from s2sr_cloud.sr import super_resolve  # noqa: E402


class FreeRunner:
    """A runner with the GPU runner's tiling whose net costs nothing."""

    backend = "free"

    def __init__(self, net: str, tile: int = 1024, batch: int = 2) -> None:
        self.net, self.halo, self.tile, self.batch = net, 14, tile, batch
        self._out = NETS[net].out_channels

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((x.shape[0], self._out, *x.shape[2:]), np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2040)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="block workers to compare (stream)")
    args = ap.parse_args()
    from s2sr_cloud.infer.overlap import stream_blocks_overlapped

    src = scene(args.size)
    runners = {n: FreeRunner(n) for n in ("net20", "net60")}
    mpx = args.size * args.size / 1e6
    best = min(_timed(lambda: super_resolve(src, runners)) for _ in range(args.reps))
    print(f"host_path nets=both size={args.size} what=super_resolve mpx_per_s={mpx / best:.3g} seconds={best:.2f}", flush=True)
    block = args.size // 4
    for workers in (int(w) for w in args.workers.split(",")):
        def stream(workers: int = workers) -> None:
            for _ in stream_blocks_overlapped(src, runners, block=block, workers=workers):
                pass

        best = min(_timed(stream) for _ in range(args.reps))
        print(f"host_path nets=both size={args.size} what=stream block={block} workers={workers} "
              f"mpx_per_s={mpx / best:.3g} seconds={best:.2f}", flush=True)


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
