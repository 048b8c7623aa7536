"""Core commands: ``superres``, ``export``, ``info``, ``import-keras``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..options import ITERATIONS  # not ..backproject: `s2sr --help` must not import NumPy
from ..options import Net as NetChoice
from ..options import Variant as VariantChoice
from ._app import app
from ._options import (
    Backproject,
    Hybrid,
    Batch,
    Block,
    BuildEngine,
    Checkpoint,
    Device,
    Onnx,
    Overwrite,
    Precision,
    Tile,
)


def _model_files(checkpoint: list[Path] | None, onnx: list[Path] | None) -> tuple[dict[str, Path], dict[str, Path]]:
    """Sort --checkpoint / --onnx files by the net they hold (from their metadata)."""
    ckpts: dict[str, Path] = {}
    onnxs: dict[str, Path] = {}
    for p in checkpoint or []:
        from ..errors import require

        require("safetensors", "train")
        from ..nets.checkpoint import read_meta

        ckpts[read_meta(p)["net"]] = p
    for p in onnx or []:
        from ..infer.manifest import load_manifest

        onnxs[load_manifest(p)["net"]] = p
    return ckpts, onnxs


def _adapted_runners(scene_path: Path, runners: dict, ckpts: dict[str, Path], steps: int, which: str) -> dict:  # type: ignore[type-arg]
    """``runners`` with the nets named by ``which`` (20, 60 or all) fine-tuned on the scene."""
    from ..errors import require

    require("torch", "train")
    from ..train.adapt import AdaptConfig, adapt_runner
    from ..train.data import load_scene
    from ._console import progress_task

    scene = load_scene(scene_path)
    nets = [n for n in runners if which == "all" or n == f"net{which}"]
    out = dict(runners)
    for net in nets:
        ck = ckpts.get(net)
        with progress_task(f"adapting {net} to {scene.name}", total=steps) as update:
            out[net] = adapt_runner(scene, net, str(ck) if ck else None, AdaptConfig(steps=steps), on_step=lambda d, t, _loss: update(d, t))
    return out


@app.command()
def superres(
    input: Annotated[Path, typer.Argument(help="A .npz scene (b10, b20, b60) or a folder of per-band GeoTIFFs/COGs.", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz (for .npz input) or COG .tif.")],
    tile: Tile = None,
    block: Block = 1536,
    batch: Batch = None,
    checkpoint: Checkpoint = None,
    onnx: Onnx = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    build_engine: BuildEngine = False,
    overwrite: Overwrite = False,
    backproject: Backproject = ITERATIONS,
    hybrid: Hybrid = True,
    adapt: Annotated[
        int,
        typer.Option(
            "--adapt",
            min=0,
            help="Scene-adaptive refinement: fine-tune the nets of --adapt-net this many steps on the scene's own Wald "
            "pairs first (PyTorch; the whole scene is read into memory). See docs/model-card.md for when it helps.",
        ),
    ] = 0,
    adapt_net: Annotated[str, typer.Option("--adapt-net", help="Which nets --adapt refines: 20, 60 or all.")] = "60",
    boa_offset: Annotated[int | None, typer.Option(
        "--boa-offset", help="Band folders: DN offset to remove, 1000 (baseline >= 04.00) or 0 [default: from the "
        "product's metadata or SAFE name; refused for files sensed from 2022-01-25 on without either].")] = None,
) -> None:
    """Super-resolve a local scene: B1 B5 B6 B7 B8A B9 B11 B12 to 10 m."""
    from ..infer import load_runners
    from ..superres_local import superres_scene
    from ._console import progress_task, success

    ckpts, onnxs = _model_files(checkpoint, onnx)
    runners = load_runners(checkpoint=ckpts, onnx=onnxs, device=device, precision=precision, build_engine=build_engine)
    if adapt:
        if adapt_net not in ("20", "60", "all"):
            from ..errors import InputError

            raise InputError(f"--adapt-net must be 20, 60 or all, not {adapt_net!r}")
        runners = _adapted_runners(input, runners, ckpts, adapt, adapt_net)
    backends = ", ".join(f"{k}: {r.backend}" for k, r in runners.items())
    with progress_task(f"super-resolving ({backends})") as update:
        res = superres_scene(input, out, runners, tile=tile, block=block, batch=batch, overwrite=overwrite,
                             backproject=backproject, hybrid=hybrid, on_progress=update,
                             **({"boa_offset": boa_offset} if boa_offset is not None else {}))
    worst = res.consistency_rmse_max
    success(f"wrote {out}" + (f" (consistency RMSE ≤ {worst:.2f} DN)" if worst is not None else ""))


@app.command()
def export(
    checkpoint: Annotated[Path | None, typer.Argument(help="Checkpoint to export (default: both default nets).", exists=True)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("export"),
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export checkpoints to ONNX (+ manifest) and verify them against PyTorch."""
    from ..errors import ModelError
    from ..export import VERIFY_TOL_SCALED, export_onnx
    from ..weights import default_checkpoint
    from ._console import success

    if checkpoint is not None:
        todo = [checkpoint]
    else:
        todo = [p for p in (default_checkpoint("net20"), default_checkpoint("net60")) if p is not None]
        if not todo:
            raise ModelError("no default checkpoints are installed; pass a checkpoint to export")
    for ck in todo:
        res = export_onnx(ck, out, opset=opset)
        success(
            f"{res.onnx} — verified on real imagery: max |ORT − PyTorch| = {res.max_abs_scaled:.2e} "
            f"scaled ({res.max_abs_dn:.4f} DN) ≤ {VERIFY_TOL_SCALED:.0e}; manifest {res.manifest.name}"
        )


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show versions, inference backends, GPUs and default weights."""
    from rich.table import Table

    from ..infer import describe_backends
    from ._console import out_console

    d = describe_backends()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    t = Table(title="s2sr-cloud backends")
    t.add_column("backend")
    t.add_column("available")
    for name, ok in d["backends"].items():
        t.add_row(name, "[green]yes[/]" if ok else "[dim]no[/]")
    out_console.print(t)
    v = Table(title="versions")
    v.add_column("package")
    v.add_column("version")
    for name, ver in d["versions"].items():
        v.add_row(name, ver or "[dim]not installed[/]")
    out_console.print(v)
    out_console.print(f"ONNX Runtime providers: {', '.join(d['onnxruntime_providers']) or 'none'}")
    out_console.print("GPUs: " + (", ".join(f"{g['name']} (sm {g.get('compute_capability', '?')})" for g in d["gpus"]) or "none found"))
    for net, w in d["default_weights"].items():
        out_console.print(f"default {net}: checkpoint {w['checkpoint']}, onnx {w['onnx']}")


@app.command("import-keras")
def import_keras(
    hdf5: Annotated[Path, typer.Argument(help="Original DSen2 Keras weights (.hdf5).", exists=True)],
    net: Annotated[NetChoice, typer.Option(help="Which net the file holds.")],
    variant: Annotated[VariantChoice, typer.Option(help="Architecture.")] = VariantChoice.DSEN2,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output checkpoint (.safetensors).")] = Path("imported.safetensors"),
) -> None:
    """Convert original DSen2 Keras .hdf5 weights to an s2sr checkpoint."""
    from ..errors import require

    require("torch", "train")
    require("h5py", "train")
    from ..nets.checkpoint import save_checkpoint
    from ..nets.keras import import_keras_weights
    from ._console import success

    model = import_keras_weights(hdf5, net.value, variant.value)
    save_checkpoint(model, out, provenance={"imported_from": hdf5.name, "source": "lanha/DSen2 Keras weights"})
    success(f"wrote {out}")
