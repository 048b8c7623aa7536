"""The whole default path on a lent GPU: a full 10980² tile through nets + hybrid + back-projection + QA.

One call, PyTorch + CUDA (+ CuPy if present), no GDAL, no TensorRT (see ../shared/docs/gpu-lent.md).
Measures, writing one JSON (``--out``):

1. ``equality``: the device path (window + post-steps on the GPU) against the host path (nets on the
   same device, post-steps in NumPy) on the packaged 120² Malmö crop: max |Δ| in uint16 DN;
2. ``nets``: the nets alone, 10 m output Mpx/s per net and precision (fp32/fp16/bf16);
3. ``fulltile``: a synthetic-from-real tile (the real Malmö crop repeated to ``--size``², in memory),
   the default output through :func:`~s2sr_cloud.stream.run_blocks`, per host-worker count (and with
   ``torch.compile`` when asked): wall seconds, Mpx/s and the per-stage times of
   :mod:`s2sr_cloud.timing`.

Runs on the CPU too (``--device cpu --size 240``: what the tests do); figures then mean nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _crop():
    with np.load(ROOT / "s2sr_cloud" / "data" / "verify_T33UUB_120.npz") as z:
        return z["b10"], z["b20"], z["b60"]


def synthetic_tile(size: int):
    """The real 120² crop repeated (mirrored, so edges stay continuous) to ``size``² (a multiple of 6)."""
    from s2sr_cloud.sr import ArraySource

    b10, b20, b60 = _crop()

    def grow(a, n):
        reps = -(-n // a.shape[1])
        row = np.concatenate([a if k % 2 == 0 else a[:, ::-1] for k in range(reps)], axis=1)
        full = np.concatenate([row if k % 2 == 0 else row[:, :, ::-1] for k in range(reps)], axis=2)
        return np.ascontiguousarray(full[:, :n, :n]).astype(np.uint16)

    return ArraySource(grow(b10, size), grow(b20, size // 2), grow(b60, size // 6))


def runners(device: str, precision: str, *, compile_: bool = False, device_window: bool | None = None):
    from s2sr_cloud.infer.torch_gpu import TorchGpuRunner
    from s2sr_cloud.nets.checkpoint import load_checkpoint
    from s2sr_cloud.weights import default_checkpoint

    return {n: TorchGpuRunner(load_checkpoint(default_checkpoint(n), net=n).model, device, precision,
                              compile=compile_, device_window=device_window) for n in ("net20", "net60")}


def default_output(src, rs, *, workers: int, block: int):
    from s2sr_cloud import timing
    from s2sr_cloud.grid import Window
    from s2sr_cloud.post import ConsistencyQA
    from s2sr_cloud.sinks import ArraySink
    from s2sr_cloud.stream import run_blocks

    sink, qa = ArraySink(Window(0, 0, *src.shape10), rs), ConsistencyQA()
    with timing.collect() as stages:
        t0 = time.perf_counter()
        run_blocks(src, rs, sink, block=block, qa=qa, workers=workers)
        wall = time.perf_counter() - t0
    return sink.arrays, wall, dict(stages), qa.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--size", type=int, default=10980, help="tile side in 10 m px (a multiple of 6)")
    ap.add_argument("--nets-size", type=int, default=2040, help="image side of the nets-only timing")
    ap.add_argument("--workers", default="6,12", help="host block workers to try, comma-separated")
    ap.add_argument("--block", type=int, default=1536)
    ap.add_argument("--precision", default="auto", help="of the full-tile run: fp32/fp16/bf16, auto = fastest of the nets' timing")
    ap.add_argument("--compile", action="store_true", help="also run the full tile with torch.compile")
    ap.add_argument("--out", type=Path, default=Path("fulltile.json"))
    a = ap.parse_args()
    a.device = "cuda:0" if a.device == "cuda" else a.device
    import torch

    from s2sr_cloud.sr import ArraySource, super_resolve

    cuda = a.device.startswith("cuda")
    doc: dict = {"device": torch.cuda.get_device_name(a.device) if cuda else "cpu", "torch": torch.__version__,
                 "size": a.size}
    try:
        import cupy

        doc["cupy"] = cupy.__version__
    except ImportError:
        doc["cupy"] = None
    # 1. device path == host path (fp32)
    src = ArraySource(*_crop())
    host, _, _, qa_h = default_output(src, runners(a.device, "fp32", device_window=False), workers=2, block=120)
    dev, _, _, qa_d = default_output(src, runners(a.device, "fp32", device_window=True), workers=2, block=120)
    diffs = {n: np.abs(host[n].astype(np.int32) - dev[n].astype(np.int32)) for n in host}
    doc["equality"] = {n: {"max_dn": int(d.max()), "frac_differing": float((d > 0).mean())} for n, d in diffs.items()}
    doc["equality"]["qa_host"], doc["equality"]["qa_device"] = qa_h, qa_d
    print("equality", json.dumps(doc["equality"]), flush=True)
    # 2. the nets alone
    nets_src = synthetic_tile(a.nets_size)
    doc["nets"] = {}
    for prec in ("fp32", "fp16", "bf16") if cuda else ("fp32",):
        try:
            rs = runners(a.device, prec)
        except Exception as err:  # noqa: BLE001 - a precision this GPU lacks is reported
            doc["nets"][prec] = {"error": str(err)}
            continue
        entry = {}
        for n, r in rs.items():
            super_resolve(nets_src, {n: r}, window=None)  # warm-up: cuDNN tunes the fixed shape once
            r.inference_time = 0.0
            super_resolve(nets_src, {n: r})
            entry[n] = round(a.nets_size**2 / 1e6 / r.inference_time, 2)
        doc["nets"][prec] = entry
        print("nets", prec, entry, flush=True)
    ok = {p: v for p, v in doc["nets"].items() if "error" not in v}
    prec = a.precision if a.precision != "auto" else max(ok, key=lambda p: min(ok[p].values()))
    # 3. the full tile through the default output
    tile = synthetic_tile(a.size)
    doc["fulltile"] = []
    for comp in (False, True) if a.compile else (False,):
        rs = runners(a.device, prec, compile_=comp)
        for w in (int(x) for x in a.workers.split(",")):
            _, wall, stages, qa = default_output(tile, rs, workers=w, block=a.block)
            run = {"precision": prec, "compile": comp, "workers": w, "wall_s": round(wall, 2),
                   "mpx_per_s": round(a.size**2 / 1e6 / wall, 2), "stages_s": {k: round(v, 2) for k, v in stages.items()},
                   "qa": qa}
            doc["fulltile"].append(run)
            print("fulltile", json.dumps(run), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
