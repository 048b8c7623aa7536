"""``s2sr engine build|list|check``: the TensorRT engine cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..settings import ENGINE_DIR_VAR
from ._options import Precision as _Precision
from ._options import in_panel

#: ``s2sr engine …`` (the root app adds it as the ``engine`` group)
app = typer.Typer(
    help="Build, list and check native TensorRT engines.\n\n"
    "Engines are cached per GPU and TensorRT version under --engine-dir (default: engines/ in the cache folder, $S2SR_CACHE_DIR).",
    no_args_is_help=True,
)

EngineDir = Annotated[Path | None, typer.Option(
    "--engine-dir", envvar=ENGINE_DIR_VAR, metavar="DIR", help="Engine cache folder (default: engines/ in the cache folder).")]
Precision = in_panel(_Precision, None)  # a typo is a usage error listing the choices


@app.command("build")
def build(
    onnx: Annotated[
        list[Path] | None,
        typer.Argument(help="Exported ONNX files (.json manifest beside each); default: both default nets.",
                       exists=True, dir_okay=False),
    ] = None,
    precision: Precision = "fp32",
    tile: Annotated[int, typer.Option(
        min=16, metavar="PX", help="Largest output tile side the engine accepts (halo excluded).")] = 512,
    max_batch: Annotated[int, typer.Option(min=1, metavar="N", help="Largest batch of tiles per call.")] = 4,
    max_mean_dn: Annotated[float | None, typer.Option(
        metavar="DN", help="fp16/bf16: refuse above this mean |diff| in DN (default: 5).")] = None,
    workspace_gib: Annotated[float | None, typer.Option(metavar="GIB", help="Builder workspace limit in GiB.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if a matching engine is cached.")] = False,
    engine_dir: EngineDir = None,
) -> None:
    """Build TensorRT engines for this GPU, check their accuracy, and cache them.

    Returns at once for a model whose matching engine is already cached (unless --force).
    """
    from ..errors import ModelError
    from ..infer.engine_cache import check_precision
    from ..infer.manifest import load_manifest
    from ..infer.trt_build import build_engine
    from ..weights import default_onnx
    from ._console import err_console, success

    files = list(onnx or [p for p in (default_onnx("net20"), default_onnx("net60")) if p is not None])
    if not files:
        raise ModelError("no default ONNX models are installed; pass the ONNX files to build (see `s2sr export`)")
    try:
        precision = check_precision(precision)
    except ValueError as err:  # a valid precision that TensorRT engines do not take (auto, int8…)
        from ..errors import InputError

        raise InputError(f"engine build: {err}") from None
    for path in files:
        manifest = load_manifest(path)
        with err_console.status(f"building the {precision} TensorRT engine of {path.name} (minutes)…"):
            entry = build_engine(
                path, manifest, precision=precision, tile=tile, max_batch=max_batch,
                directory=engine_dir, max_mean_dn=max_mean_dn, workspace_gib=workspace_gib, force=force,
            )
        acc = entry.sidecar.get("accuracy", {})
        success(
            f"{entry.engine} — vs ONNX Runtime fp32: mean |diff| {acc.get('mean_abs_dn', float('nan')):.3f} DN, "
            f"max {acc.get('max_abs_dn', float('nan')):.3f} DN ({acc.get('criterion')} ≤ {acc.get('tolerance')})"
        )


@app.command("list")
def list_(
    engine_dir: EngineDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecars as JSON.")] = False,
) -> None:
    """List cached engines and whether each one can run on this machine."""
    from rich.table import Table

    from ..infer.engine_cache import engine_dir as resolve_dir
    from ..infer.engine_cache import iter_entries
    from ..infer.engine_target import engine_status, engine_target
    from ._console import out_console

    where = resolve_dir(engine_dir)
    entries = list(iter_entries(where))
    if as_json:
        typer.echo(json.dumps([e.sidecar for e in entries], indent=2))
        return
    here = engine_target()
    t = Table(title=f"TensorRT engines in {where}")
    for col in ("model", "precision", "GPU (sm)", "TensorRT", "tile/batch", "MiB", "mean |diff| DN", "status"):
        t.add_column(col)
    for e in entries:
        s = e.sidecar
        acc = s.get("accuracy", {}).get("mean_abs_dn")
        t.add_row(
            f"{s.get('name')} ({str(s.get('onnx_sha256'))[:12]})", str(s.get("precision")),
            f"{s.get('gpu_name')} ({s.get('compute_capability')})", str(s.get("tensorrt_version")),
            f"{e.profile.tile}/{e.profile.max_batch}", f"{e.engine.stat().st_size / 2**20:.1f}",
            "-" if acc is None else f"{acc:.3f}", engine_status(s, here),
        )
    out_console.print(t if entries else f"no engines in {where}")


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="An .engine file, or an ONNX file to look up in the cache.", exists=True, dir_okay=False)],
    precision: Precision = "fp32",
    gpu: Annotated[str | None, typer.Option(metavar="NAME", help="Target GPU name (default: this machine's).")] = None,
    compute_capability: Annotated[str | None, typer.Option(
        "--cc", metavar="X.Y", help="Target compute capability, e.g. 9.0.")] = None,
    trt_version: Annotated[str | None, typer.Option("--trt", metavar="VERSION", help="Target TensorRT version.")] = None,
    engine_dir: EngineDir = None,
) -> None:
    """Check an engine (integrity, GPU, TensorRT) or find the cached engine of an ONNX file.

    Exits 0 when usable, 7 with the reason when stale or foreign, 1 when none is cached.
    """
    from ..errors import BackendUnavailable
    from ..infer.engine_cache import (
        CacheEntry,
        EngineSpec,
        GpuInfo,
        find_engine,
        read_sidecar,
        spec_for_entry,
        verify_entry,
    )
    from ..infer.engine_cache import engine_dir as resolve_dir
    from ..infer.engine_target import engine_target
    from ..infer.manifest import load_manifest
    from ._console import err_console, error, success

    target = engine_target(gpu, compute_capability, trt_version)
    if path.suffix == ".engine":
        entry = CacheEntry(engine=path, sidecar=read_sidecar(path))
        verify_entry(entry)
        if target is None:
            err_console.print("sidecar and bytes agree; no GPU/TensorRT here (or given) to check it against")
            return
        spec = spec_for_entry(entry, GpuInfo(name=target[0], compute_capability=target[1]), target[2])
        verify_entry(entry, spec, check_bytes=False)
        success(f"{path.name} is usable on {target[0]} (sm {target[1]}) with TensorRT {target[2]}")
        return
    if target is None:
        raise BackendUnavailable("no GPU/TensorRT here: give the target with --gpu, --cc and --trt")
    manifest = load_manifest(path)
    spec = EngineSpec.from_manifest(
        manifest, GpuInfo(name=target[0], compute_capability=target[1]), target[2], precision, tile=1
    )
    found = find_engine(resolve_dir(engine_dir), spec)
    if found is None:
        error(
            f"no {precision} engine of {spec.name} for {target[0]} / TensorRT {target[2]} in "
            f"{resolve_dir(engine_dir)}; build one with `s2sr engine build {path}`"
        )
        raise typer.Exit(1)
    success(f"{found.engine} matches {path.name} ({precision}, tile ≤ {found.profile.tile})")
