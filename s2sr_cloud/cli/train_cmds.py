"""``s2sr train`` and ``s2sr evaluate``: Wald-protocol training and metrics.

torch and the training code are imported inside the commands (``s2sr --help`` stays fast).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import app


@app.command("train")
def train_cmd(
    data: Annotated[
        list[Path],
        typer.Option("--data", help="Scene .npz files, GeoTIFF band folders, or folders holding them (repeatable)."),
    ],
    net: Annotated[str, typer.Option("--net", help="20 or 60.")] = "20",
    variant: Annotated[str, typer.Option("--variant", help="dsen2 or vdsen2.")] = "dsen2",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Total optimiser steps (a resumed run continues to this).")] = 1000,
    from_: Annotated[
        Path | None, typer.Option("--from", help="Start from this checkpoint (fine-tuning) instead of random weights.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder: state.safetensors (resume) and the final weights.")] = Path(
        "runs/train"
    ),
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Glob of scene names/paths to leave out (repeatable).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Patches per step.")] = 8,
    patch: Annotated[int | None, typer.Option("--patch", min=4, help="Patch side on the target grid (default 32 for net 20, 18 for net 60).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (warm-up, then cosine decay to 0.1x).")] = 3e-4,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam or nadam.")] = "adam",
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights init and patch sampling.")] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Write OUT/state.safetensors every K steps.")] = 100,
    device: Annotated[str, typer.Option("--device", help="auto (GPU when present), cpu or cuda.")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Linear warm-up steps.")] = 20,
) -> None:
    """Train or fine-tune a DSen2 net with the Wald protocol (L1 loss, Adam/Nadam).

    Re-running with the same --out resumes from OUT/state.safetensors.
    """
    from ..errors import InputError
    from ..train.loop import TrainConfig, train
    from ._console import err_console, make_progress, success

    if net not in ("20", "60", "net20", "net60"):
        raise InputError(f"--net must be 20 or 60, not {net!r}")
    if variant not in ("dsen2", "vdsen2"):
        raise InputError(f"--variant must be dsen2 or vdsen2, not {variant!r}")
    cfg = TrainConfig(
        net=net.removeprefix("net"),
        variant=variant,
        data=[str(p) for p in data],
        exclude=list(exclude or []),
        steps=steps,
        batch=batch,
        patch=patch or (32 if net.endswith("20") else 18),
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        checkpoint_every=checkpoint_every,
        out=str(out),
        init_from=str(from_) if from_ else None,
        device=device,
        threads=threads,
        warmup=warmup,
        command=shlex.join(["s2sr", *sys.argv[1:]]),
    )
    with make_progress() as progress:
        task = progress.add_task(f"train net{cfg.net}", total=steps)

        def on_step(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, description=f"train net{cfg.net} loss {loss:.4f}")

        res = train(cfg, on_step=on_step, log_every=0 if err_console.is_terminal else 50)
    success(f"trained steps {res.start_step}..{res.steps} in {res.wall_time_s:.0f} s; weights: {res.final}")
