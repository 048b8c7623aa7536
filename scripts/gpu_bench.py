#!/usr/bin/env python3
"""DSen2 on a CUDA GPU through PyTorch: 10 m output Mpx/s per net and precision, and a full tile.

Made for the lent GPU machines (stock PyTorch + CUDA image: no TensorRT, no
onnxruntime-gpu, no rasterio): the shipped weights are loaded with the project's checkpoint
reader (safetensors is on that image), input is real Sentinel-2 texture (the packaged 120² Malmö crop)
tiled to the wanted size, and everything runs through the project's own tiling
(:func:`s2sr_cloud.sr.super_resolve`, block streaming with I/O overlap) and its PyTorch
runner (:class:`s2sr_cloud.infer.torch_gpu.TorchGpuRunner`). One printed line per figure:

    gpu_bench net=net20 precision=fp16 what=image size=2040 mpx_per_s=… seconds=… (whole super_resolve)
    gpu_bench net=net20 precision=fp16 what=net size=2040 mpx_per_s=… (runner calls only)
    gpu_bench what=tile nets=both precision=fp16 size=10980 mpx_per_s=… seconds=…
    gpu_bench accuracy net=net20 precision=fp16 mean_abs_dn=… max_abs_dn=… (vs fp32 on the image)

``--size small --device cpu`` runs the same code in seconds on a CPU (the test does).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2sr_cloud.sr import ArraySource, super_resolve  # noqa: E402

SIZES = {"full": (2040, 10980), "small": (120, 240)}


def load_model(net: str):  # type: ignore[no-untyped-def]
    """The shipped weights of ``net`` (random weights, said so, when the file is absent: speed only)."""
    from s2sr_cloud.nets.checkpoint import load_checkpoint
    from s2sr_cloud.nets.model import build_net
    from s2sr_cloud.weights import default_checkpoint

    path = default_checkpoint(net)
    if path is None:
        print(f"# no {net} weights found: random weights (speed only)", flush=True)
        return build_net(net)
    return load_checkpoint(path, net=net).model


def scene(size: int) -> ArraySource:
    """Real texture: the packaged 120² crop mirrored and tiled to ``size`` (a multiple of 6)."""
    with np.load(ROOT / "s2sr_cloud" / "data" / "verify_T33UUB_120.npz") as z:
        b10, b20, b60 = z["b10"], z["b20"], z["b60"]

    def tile(a: np.ndarray, n: int) -> np.ndarray:
        m = np.concatenate([a, a[:, ::-1]], axis=1)
        m = np.concatenate([m, m[:, :, ::-1]], axis=2)
        reps = (1, -(-n // m.shape[1]), -(-n // m.shape[2]))
        return np.tile(m, reps)[:, :n, :n]

    return ArraySource(tile(b10, size), tile(b20, size // 2), tile(b60, size // 6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--nets", default="net20,net60")
    ap.add_argument("--tile", type=int, default=None, help="default: the runner's (GPU 1024, CPU 544)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--no-tile", action="store_true", help="skip the full-tile run")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this many seconds")
    args = ap.parse_args()
    import torch

    from s2sr_cloud.infer.overlap import stream_blocks_overlapped
    from s2sr_cloud.infer.torch_gpu import TorchGpuRunner, resolve_device
    from s2sr_cloud.stream import block_workers

    t_start = time.perf_counter()
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    img, full = SIZES[args.size]
    print(f"# device {name}, torch {torch.__version__}, cuda {torch.version.cuda}, cores {os.cpu_count()}", flush=True)
    src = scene(img)
    precisions = [p for p in args.precisions.split(",") if cuda or p == "fp32"]
    if not cuda and precisions != args.precisions.split(","):
        print("# CPU: fp32 only (fp16/bf16 autocast is the GPU path)", flush=True)
    models = {n: load_model(n) for n in args.nets.split(",")}
    ref: dict[str, np.ndarray] = {}
    best = "fp32"
    best_rate = 0.0

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for net, model in models.items():
        for prec in precisions:
            variants = [False, True] if args.compile else [False]
            for comp in variants:
                if time.perf_counter() - t_start > args.budget_s:
                    print(f"# budget reached: skipping {net} {prec}", flush=True)
                    continue
                tag = prec + ("+compile" if comp else "")
                try:
                    runner = TorchGpuRunner(model, device, prec, compile=comp)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"gpu_bench net={net} precision={tag} skipped: {err}", flush=True)
                    continue
                tile, batch = args.tile or runner.tile, args.batch or runner.batch
                super_resolve(src, {net: runner}, tile=tile, batch=batch)  # warm-up: cuDNN autotune, compile
                sync()
                runner.inference_time = 0.0
                t0 = time.perf_counter()
                out = super_resolve(src, {net: runner}, tile=tile, batch=batch)[net]
                sync()
                secs = time.perf_counter() - t0
                mpx = img * img / 1e6
                print(f"gpu_bench net={net} precision={tag} what=image size={img} mpx_per_s={mpx / secs:.4g} seconds={secs:.3f} tile={tile} batch={batch}", flush=True)
                print(f"gpu_bench net={net} precision={tag} what=net size={img} mpx_per_s={mpx / runner.inference_time:.4g} "
                      f"seconds={runner.inference_time:.3f} (runner calls incl. copies)", flush=True)
                if prec == "fp32" and not comp:
                    ref[net] = out
                elif net in ref:
                    d = np.abs(out - ref[net])
                    print(f"gpu_bench accuracy net={net} precision={tag} mean_abs_dn={d.mean():.3f} max_abs_dn={d.max():.1f} (vs fp32)", flush=True)
                if not comp and mpx / secs > best_rate and net == next(iter(models)):
                    best, best_rate = prec, mpx / secs
                runner.close()
    if args.no_tile or len(models) < 2:
        return
    if time.perf_counter() - t_start > args.budget_s:
        print("# budget reached: skipping the full tile", flush=True)
        return
    big = scene(full)
    runners = {n: TorchGpuRunner(m, device, best) for n, m in models.items()}
    t0 = time.perf_counter()
    n_blocks = 0
    workers = block_workers(runners)
    for _win, _out in stream_blocks_overlapped(big, runners, block=2048 if cuda else 120, tile=args.tile, batch=args.batch,
                                               workers=workers):
        n_blocks += 1
    sync()
    secs = time.perf_counter() - t0
    print(f"gpu_bench what=tile nets=both precision={best} size={full} mpx_per_s={full * full / 1e6 / secs:.4g} seconds={secs:.1f} "
          f"blocks={n_blocks} workers={workers} net_seconds={sum(r.inference_time for r in runners.values()):.1f}", flush=True)


if __name__ == "__main__":
    main()
