#!/usr/bin/env python3
"""The compute ceiling of the DSen2 nets on a CUDA GPU: device-resident tiles, no host work.

``scripts/gpu_bench.py`` times the whole path (host tiling, upsampling, copies); this
script times only the net on a batch of tiles already on the GPU, per numeric mode, so
the gap between the two shows what the host side costs. Modes:

* ``fp32`` strict (TF32 off), ``tf32`` (TF32 convolutions),
* ``fp16-autocast`` / ``bf16-autocast`` — what :class:`~s2sr_cloud.infer.torch_gpu.TorchGpuRunner` runs,
* ``fp16-half`` — the module and input converted to half (no per-layer casts),
* ``fp16-half+graph`` — the same replayed as a CUDA graph (no launch overhead),
* ``fp16-half+compile`` (``--compile``) — ``torch.compile`` of the half module.

One line per figure (output Mpx/s counts the tile interiors, halo excluded)::

    gpu_compute net=net20 mode=fp16-half tile=1024 batch=4 mpx_per_s=… ms_per_batch=…
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from gpu_bench import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--nets", default="net20,net60")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--modes", default="fp32,tf32,fp16-autocast,bf16-autocast,fp16-half,fp16-half+graph")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the half module")
    args = ap.parse_args()
    import copy

    import torch

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    modes = args.modes.split(",") + (["fp16-half+compile"] if args.compile else [])
    if not cuda:
        modes = [m for m in modes if m in ("fp32",)]
        print("# CPU: fp32 only", flush=True)
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    for net in args.nets.split(","):
        base = load_model(net).eval()
        side = args.tile + 2 * int(base.halo)
        cin = base.head.in_channels
        x32 = torch.rand(args.batch, cin, side, side, device=dev).contiguous(memory_format=torch.channels_last)
        for mode in modes:
            torch.backends.cudnn.allow_tf32 = mode == "tf32"
            half = mode.startswith("fp16-half")
            model = copy.deepcopy(base).to(dev, memory_format=torch.channels_last)
            x = x32
            if half:
                model = model.half()
                x = x32.half()
            fn = model
            if mode.endswith("+compile"):
                fn = torch.compile(model)
            auto = {"fp16-autocast": torch.float16, "bf16-autocast": torch.bfloat16}.get(mode)

            def run(fn=fn, x=x, auto=auto):  # type: ignore[no-untyped-def]
                if auto is None:
                    return fn(x)
                with torch.autocast("cuda", dtype=auto):
                    return fn(x)

            try:
                with torch.inference_mode():
                    t_warm = time.perf_counter()
                    for _ in range(3):
                        run()
                    sync()
                    warm_s = time.perf_counter() - t_warm
                    step = run
                    if mode.endswith("+graph"):
                        static_in = x.clone()
                        g = torch.cuda.CUDAGraph()
                        s = torch.cuda.Stream(dev)
                        s.wait_stream(torch.cuda.current_stream(dev))
                        with torch.cuda.stream(s):
                            run(x=static_in)
                        torch.cuda.current_stream(dev).wait_stream(s)
                        with torch.cuda.graph(g):
                            static_out = run(x=static_in)  # noqa: F841 - kept alive by the graph
                        step = g.replay
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        step()
                    sync()
                    secs = (time.perf_counter() - t0) / args.iters
            except Exception as err:  # noqa: BLE001 - report and go on
                print(f"gpu_compute net={net} mode={mode} skipped: {type(err).__name__}: {err}", flush=True)
                continue
            mpx = args.batch * args.tile * args.tile / 1e6
            print(f"gpu_compute net={net} mode={mode} tile={args.tile} batch={args.batch} mpx_per_s={mpx / secs:.4g} "
                  f"ms_per_batch={secs * 1e3:.2f} warmup_s={warm_s:.1f}", flush=True)
            del model, fn
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
