"""``s2sr superres``: super-resolve a local scene (.npz or a folder of band files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import parse_out_file
from ._options import (
    BACKPROJECT_DEFAULT,
    FIND,
    O_MODELS,
    O_OUTPUT,
    Backproject,
    Batch,
    Block,
    BuildEngine,
    Checkpoint,
    Device,
    Hybrid,
    Onnx,
    Overwrite,
    Precision,
    Tile,
    in_panel,
    model_files,
)

app = typer.Typer()

OverwriteOut = in_panel(Overwrite, None)  # beside --out


def _adapted_runners(scene_path: Path, runners: dict, ckpts: dict[str, Path], steps: int, which: str) -> dict:  # type: ignore[type-arg]
    """``runners`` with the nets named by ``which`` (20, 60 or all) fine-tuned on the scene."""
    from ..errors import require

    require("torch", "train")
    from ..scenes import load_scene
    from ..train.adapt import AdaptConfig, adapt_runner
    from ._console import progress_task

    scene = load_scene(scene_path)
    nets = [n for n in runners if which == "all" or n == f"net{which}"]
    out = dict(runners)
    for net in nets:
        ck = ckpts.get(net)
        with progress_task(f"adapting {net} to {scene.name}", total=steps) as update:
            out[net] = adapt_runner(scene, net, str(ck) if ck else None, AdaptConfig(steps=steps), on_step=lambda d, t, _loss: update(d, t))
    return out


@app.command(rich_help_panel=FIND)
def superres(
    input: Annotated[Path, typer.Argument(
        help="A .npz scene (b10, b20, b60) or a folder of per-band GeoTIFFs/COGs.", exists=True)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="PATH", help="Output .npz (for .npz input) or COG .tif.",
        parser=lambda v: Path(parse_out_file(v)))],
    tile: Tile = None,
    block: Block = 1536,
    batch: Batch = None,
    checkpoint: Checkpoint = None,
    onnx: Onnx = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    build_engine: BuildEngine = False,
    overwrite: OverwriteOut = False,
    backproject: Backproject = BACKPROJECT_DEFAULT,
    hybrid: Hybrid = True,
    adapt: Annotated[int, typer.Option(
        "--adapt", min=0, metavar="STEPS", rich_help_panel=O_MODELS,
        help="Scene-adaptive refinement: fine-tune the nets of --adapt-net this many steps on the scene's own Wald "
        "pairs first (PyTorch; the whole scene is read into memory). See docs/model-card.md for when it helps.")] = 0,
    adapt_net: Annotated[str, typer.Option(
        "--adapt-net", metavar="NET", rich_help_panel=O_MODELS, help="Which nets --adapt refines: 20, 60 or all.")] = "60",
    boa_offset: Annotated[int | None, typer.Option(
        "--boa-offset", metavar="DN", rich_help_panel=O_OUTPUT,
        help="Band folders: DN offset to remove, 1000 (baseline >= 04.00) or 0 (default: from the product's "
        "metadata or SAFE name; refused for files sensed from 2022-01-25 on without either).")] = None,
) -> None:
    """Super-resolve a local scene (.npz or band files) to 10 m.

    The 20 m and 60 m bands (B1 B5 B6 B7 B8A B9 B11 B12) come out on the 10 m grid.
    """
    from ..infer import load_runners
    from ..post import product as post_product
    from ..superres_local import superres_scene
    from ._console import progress_task, success

    if adapt and adapt_net not in ("20", "60", "all"):
        from ..errors import InputError

        raise InputError(f"--adapt-net must be 20, 60 or all, not {adapt_net!r}")
    ckpts, onnxs = model_files(checkpoint, onnx)
    runners = load_runners(checkpoint=ckpts, onnx=onnxs, device=device, precision=precision, build_engine=build_engine)
    if adapt:
        runners = _adapted_runners(input, runners, ckpts, adapt, adapt_net)
    backends = ", ".join(f"{k}: {r.backend}" for k, r in runners.items())
    from ..io.lock import output_lock, sweep_staging

    with output_lock(out), progress_task(f"super-resolving ({backends})") as update:  # one writer per output
        sweep_staging(out)  # what a killed run left
        res = superres_scene(input, out, runners, tile=tile, block=block, batch=batch, overwrite=overwrite,
                             post=post_product(backproject, hybrid), on_progress=update,
                             **({"boa_offset": boa_offset} if boa_offset is not None else {}))
    worst = res.consistency_rmse_max
    success(f"wrote {out}" + (f" (consistency RMSE ≤ {worst:.2f} DN)" if worst is not None else ""))
