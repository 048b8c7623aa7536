#!/usr/bin/env python3
"""Train (fine-tune) one DSen2 net for a fixed wall-clock budget on a lent GPU.

The lent machines give 15 minutes in all, so a run is sized by time, not by steps: a
short probe measures the seconds per optimiser step on this GPU, the step count that fits
``--budget-s`` is derived from it, and the ordinary training loop
(:func:`s2sr_cloud.train.loop.train`, the one behind ``s2sr train``: same sampler, context,
gain jitter, cosine schedule and provenance) runs that many steps. The run's
``TrainConfig`` — steps included — is recorded in the checkpoint's provenance, so the
same schedule can be repeated anywhere with ``s2sr train``.

One printed line per figure::

    gpu_train net=60 tag=… probe_s_per_step=… steps=… batch=… patch=… context=…
    gpu_train net=60 tag=… done steps=… seconds=… last_loss=… out=…

``--device cpu --budget-s 20`` runs the same code on a CPU (used to test the script).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2sr_cloud.train.loop import TrainConfig, _step, pick_device, train  # noqa: E402


def probe_seconds_per_step(cfg: TrainConfig, device: str, n: int = 12) -> float:
    """Seconds per optimiser step of this configuration on ``device`` (after a warm-up)."""
    import numpy as np
    import torch

    from s2sr_cloud.nets import build_net
    from s2sr_cloud.scenes import find_scenes
    from s2sr_cloud.train.data import PatchSampler, load_pairs

    model = build_net(cfg.net, cfg.variant).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    sampler = PatchSampler(load_pairs(find_scenes(cfg.data, cfg.exclude), cfg.net, cfg.phases), cfg.patch, np.random.default_rng(123), cfg.gain_jitter, cfg.context)
    for _ in range(4):  # warm-up: cuDNN autotuning, allocator
        _step(model, opt, sampler.batch(cfg.batch), 1e-6, device, cfg.context)
    t0 = time.perf_counter()
    for _ in range(n):
        _step(model, opt, sampler.batch(cfg.batch), 1e-6, device, cfg.context)
    return (time.perf_counter() - t0) / n


def train_command(cfg: TrainConfig) -> str:
    """The ``s2sr train`` command that runs exactly this schedule (steps fixed by the probe)."""
    cmd = ["s2sr", "train", "--net", cfg.net, "--variant", cfg.variant]
    for d in cfg.data:
        cmd += ["--data", d]
    for e in cfg.exclude:
        cmd += ["--exclude", e]
    if cfg.init_from:
        cmd += ["--from", cfg.init_from]
    cmd += ["--steps", str(cfg.steps), "--batch", str(cfg.batch), "--patch", str(cfg.patch), "--lr", f"{cfg.lr:g}",
            "--warmup", str(cfg.warmup), "--gain-jitter", f"{cfg.gain_jitter:g}", "--context", str(cfg.context),
            "--seed", str(cfg.seed), "--checkpoint-every", str(cfg.checkpoint_every), "--device", cfg.device,
            "--out", cfg.out]
    if cfg.phases:
        cmd.append("--phases")
    return shlex.join(cmd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True, choices=["20", "60"])
    ap.add_argument("--variant", default="dsen2")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--init", default=None, help="starting weights (default: the shipped ones; 'none' = from scratch)")
    ap.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for the training steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--context", type=int, default=14)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--gain-jitter", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phases", action="store_true", help="train on every phase of the Wald grid")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tag", default="")
    ap.add_argument("--work", required=True, help="folder for the resumable state (large: optimiser moments)")
    ap.add_argument("--out", required=True, help="folder for the final checkpoint (weights + provenance only)")
    ap.add_argument("--mid", action="store_true", help="also copy the weights at half the schedule to --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s net{args.net}{args.tag} %(message)s")
    import torch

    device = pick_device(args.device)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    init = args.init
    if init is None:  # the shipped weights of this net and variant, if there are any (no VDSen2 ones)
        shipped = ROOT / "s2sr_cloud" / "weights" / f"net{args.net}_{args.variant}.safetensors"
        init = str(shipped) if shipped.exists() else None
    elif init == "none":
        init = None
    cfg = TrainConfig(
        net=args.net, variant=args.variant, data=args.data, exclude=args.exclude, steps=1, batch=args.batch,
        patch=args.patch, lr=args.lr, gain_jitter=args.gain_jitter, context=args.context, seed=args.seed, phases=args.phases,
        out=args.work, init_from=init, device=device,
    )
    t0 = time.perf_counter()
    per_step = probe_seconds_per_step(cfg, device)
    probe_s = time.perf_counter() - t0
    cfg.steps = max(20, int((args.budget_s - probe_s) / per_step * 0.92))
    cfg.warmup = min(100, cfg.steps // 20)
    cfg.checkpoint_every = max(1, cfg.steps // 2)
    cfg.command = train_command(cfg) + "  # run by scripts/gpu_train.py " + shlex.join(sys.argv[1:])
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(f"gpu_train net={args.net} tag={args.tag} device={name!r} probe_s_per_step={per_step:.4f} steps={cfg.steps} "
          f"batch={cfg.batch} patch={cfg.patch} context={cfg.context} lr={cfg.lr} gain_jitter={cfg.gain_jitter} phases={cfg.phases}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mid_saved = False

    def on_step(done: int, total: int, loss: float) -> None:
        nonlocal mid_saved
        # the loop writes its state at checkpoint_every (= half the schedule) after this callback
        if args.mid and not mid_saved and done == cfg.checkpoint_every + 1:
            state = Path(args.work) / "state.safetensors"
            if state.exists():
                from s2sr_cloud.nets import load_checkpoint, save_checkpoint

                ck = load_checkpoint(state, net=f"net{args.net}")
                save_checkpoint(ck.model, out / f"net{args.net}{args.tag}_mid.safetensors", ck.meta.get("provenance"))
                mid_saved = True

    t1 = time.perf_counter()
    res = train(cfg, on_step=on_step, log_every=max(1, cfg.steps // 10))
    secs = time.perf_counter() - t1
    final = out / f"net{args.net}{args.tag}.safetensors"
    shutil.copyfile(res.final, final)
    print(f"gpu_train net={args.net} tag={args.tag} done steps={cfg.steps} seconds={secs:.1f} "
          f"s_per_step={secs / cfg.steps:.4f} last_loss={res.last_loss:.5f} out={final}", flush=True)


if __name__ == "__main__":
    main()
