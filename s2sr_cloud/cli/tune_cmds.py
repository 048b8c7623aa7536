"""``s2sr tune``: fill the tuning cache of this machine ahead of a fleet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..settings import CACHE_DIR_VAR
from ._options import SYSTEM

app = typer.Typer()


@app.command(rich_help_panel=SYSTEM)
def tune(
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", envvar=CACHE_DIR_VAR, metavar="DIR",
        help="The tuning cache to fill (default: ~/.cache/s2sr-cloud).")] = None,
    export_accuracy: Annotated[Path | None, typer.Option(
        metavar="JSON", help="Also write the gate's machine-independent accuracy figures here "
        "(what ships as s2sr_cloud/weights/precision-gate.json).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Fill the tuning cache ahead of a fleet.

    Tunes this machine once: int8 models, the CPU precision gate, the fp32 kernel probe (and the
    GPU gate where PyTorch sees a GPU), cached so every later run (every pod sharing the cache
    volume) starts tuned."""
    from rich.table import Table

    from ..infer import gate
    from ..infer.manifest import load_manifest
    from ..settings import cache_dir as resolve_cache, use_cache_dir
    from ..weights import default_onnx
    from ._console import err_console, make_progress, out_console

    where = use_cache_dir(cache_dir) if cache_dir is not None else resolve_cache()
    onnx = {n: p for n in ("net20", "net60") if (p := default_onnx(n)) is not None}
    manifests = {n: load_manifest(p) for n, p in onnx.items()}
    rows: list[dict[str, Any]] = []

    def step(what: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            result = fn()
            status = "done"
        except Exception as err:  # noqa: BLE001 - one step that cannot run here is reported, the rest go on
            result, status = None, f"skipped: {err}"
        rows.append({"step": what, "status": status, "seconds": round(time.perf_counter() - t0, 1)})
        return result

    def int8(net: str) -> None:
        from ..infer.quant import quantized_model

        quantized_model(onnx[net], manifests[net])

    steps: list[tuple[str, Any]] = [(f"int8 model {n}", lambda n=n: int8(n)) for n in onnx]
    steps.append(("CPU precision gate", lambda: gate.load_or_measure(onnx, manifests, measure_speed=True)))
    steps += [(f"fp32 kernels {n}", lambda n=n: gate.fp32_kernels(onnx[n], manifests[n], probe=True)) for n in onnx]
    from ..infer.torch_gpu import cuda_devices

    if cuda_devices():
        from ..infer.select import load_runner

        steps += [(f"GPU precision gate {n}", lambda n=n: load_runner(n, device="torch", precision="auto")) for n in onnx]
    with make_progress() as progress:
        task = progress.add_task("tuning", total=len(steps))
        for what, fn in steps:
            progress.update(task, description=what)
            res = step(what, fn)
            if what == "CPU precision gate" and export_accuracy is not None and res is not None:
                from ..infer.gate_shipped import accuracy_doc
                from ..infer.quant import QUANT_VERSION

                export_accuracy.write_text(json.dumps(accuracy_doc(res, manifests, QUANT_VERSION), indent=1) + "\n")
            progress.advance(task)
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(where), "steps": rows}, indent=2))
        return
    t = Table(title=f"tuned into {where}")
    for col in ("step", "status", "seconds"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["step"], r["status"], f"{r['seconds']:.1f}")
    out_console.print(t)
    err_console.print(f"later runs with S2SR_CACHE_DIR={where} start tuned")
