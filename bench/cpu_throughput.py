"""CPU throughput of the DSen2 nets on ONNX Runtime vs the machine's matmul GFLOP/s.

Prints one result line per figure:
  matmul     float32 NumPy matmul GFLOP/s (best of several 2048^3 products)
  net20/60   10 m output Mpx/s through the tiled runtime (super_resolve) at ~1 Mpx,
             achieved GFLOP/s (useful = output pixels x MACs/px x 2; computed = incl. halo),
             and achieved / matmul.

Usage: python bench/cpu_throughput.py [--size 1020] [--tile 510] [--onnx-dir DIR]
Without --onnx-dir it uses the package default weights (or seeded random weights if none:
speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from s2sr_cloud.bands import NETS, VARIANTS
from s2sr_cloud.infer import load_runners
from s2sr_cloud.sr import ArraySource, Window, count_tiles, super_resolve


def macs_per_px(net: str, variant: str = "dsen2") -> int:
    spec, v = NETS[net], VARIANTS[variant]
    f = v.features
    return 9 * (spec.in_channels * f + 2 * v.depth * f * f + f * spec.out_channels)


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _onnx_dir(arg: str | None) -> dict[str, Path] | None:
    if arg:
        return {n: Path(arg) / f"{n}_dsen2.onnx" for n in NETS}
    from s2sr_cloud.weights import default_checkpoint, default_onnx

    if all(default_onnx(n) or default_checkpoint(n) for n in NETS):
        return None
    import torch

    from s2sr_cloud.export import export_onnx
    from s2sr_cloud.nets import build_net, save_checkpoint

    d = Path(tempfile.mkdtemp())
    out = {}
    for n in NETS:
        torch.manual_seed(0)
        out[n] = export_onnx(save_checkpoint(build_net(n), d / f"{n}.safetensors"), d).onnx
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1020, help="scene side in 10 m px (multiple of 6)")
    p.add_argument("--tile", type=int, default=510)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--onnx-dir")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n = a.size
    src = ArraySource(
        rng.integers(300, 4000, (4, n, n)).astype(np.uint16),
        rng.integers(300, 4000, (6, n // 2, n // 2)).astype(np.uint16),
        rng.integers(300, 4000, (2, n // 6, n // 6)).astype(np.uint16),
    )
    try:
        from threadpoolctl import threadpool_info

        blas = ",".join(f"{i.get('internal_api')}/{i.get('architecture')}" for i in threadpool_info() if i.get("user_api") == "blas")
    except ImportError:
        blas = "?"
    mm = matmul_gflops()
    print(f"matmul     {mm:8.1f} GFLOP/s  (numpy float32 2048^3, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, blas={blas})")
    runners = load_runners(onnx=_onnx_dir(a.onnx_dir), device="cpu")
    for net, r in runners.items():
        super_resolve(src, {net: r}, window=Window(0, 0, 120, 120), tile=120)  # warm-up
        best = min(_timed(lambda r=r, net=net: super_resolve(src, {net: r}, tile=a.tile, batch=a.batch)) for _ in range(a.reps))
        mpx = n * n / best / 1e6
        halo = r.halo
        t = min(a.tile, n)
        computed = count_tiles(Window(0, 0, n, n), t) * (t + 2 * halo) ** 2
        useful = mpx * 1e6 * 2 * macs_per_px(net) / 1e9
        comp = useful * computed / (n * n)
        print(
            f"{net}      {mpx:8.3f} Mpx/s  {useful:7.1f} GFLOP/s useful ({useful / mm:5.1%} of matmul), "
            f"{comp:7.1f} GFLOP/s computed ({comp / mm:5.1%}); {n}x{n} px, tile {t}, halo {halo}, {r.backend}"
        )


if __name__ == "__main__":
    main()
