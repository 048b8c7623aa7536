#!/usr/bin/env python3
"""Seconds that ``--adapt STEPS`` (scene-adaptive fine-tuning) costs per net on this device.

Adapts the shipped nets on a real scene's own Wald pairs exactly as ``s2sr superres --adapt``
does (:func:`s2sr_cloud.train.adapt.adapt_runner`) and prints one line per net::

    adapt_timing net=net20 device=… steps=50 seconds=… s_per_step=…
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2sr_cloud.train.adapt import AdaptConfig, adapt_runner  # noqa: E402
from s2sr_cloud.train.data import load_scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path, help="scene (.npz or band-GeoTIFF folder)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torch

    scene = load_scene(args.scene)
    for net in ("net20", "net60"):
        cfg = AdaptConfig(steps=args.steps, device=args.device)
        adapt_runner(scene, net, cfg=AdaptConfig(steps=3, device=args.device))  # warm-up (CUDA context, cuDNN)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        runner = adapt_runner(scene, net, cfg=cfg)
        secs = time.perf_counter() - t0
        print(f"adapt_timing net={net} device={runner.device} steps={cfg.steps} seconds={secs:.2f} s_per_step={secs / cfg.steps:.4f}", flush=True)


if __name__ == "__main__":
    main()
