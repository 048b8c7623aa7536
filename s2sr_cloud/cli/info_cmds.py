"""``s2sr info``: versions, inference backends, GPUs and default weights of this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._options import SYSTEM

app = typer.Typer()


@app.command(rich_help_panel=SYSTEM)
def info(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show versions, inference backends, GPUs and default weights."""
    from rich.table import Table

    from ..infer import describe_backends
    from ..infer.select import will_run
    from ._console import out_console

    d = describe_backends()
    d["will_run"] = will_run()
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
    gpus = ", ".join(f"{g['name']} (sm {g.get('compute_capability', '?')})" for g in d["gpus"])
    out_console.print("GPUs: " + (gpus or "none found"))
    for net, w in d["default_weights"].items():
        out_console.print(f"default {net}: checkpoint {w['checkpoint']}, onnx {w['onnx']}")
    w = Table(title="a default run here (--device auto)")
    for col in ("net", "--precision", "backend", "precision", "post-steps on"):
        w.add_column(col)
    for row in d["will_run"]:
        if "error" in row:
            w.add_row(row["net"], row["precision_option"], f"[red]{row['error']}[/]", "", "")
        else:
            w.add_row(row["net"], row["precision_option"], row["backend"], row["precision"], row["post_steps"])
    out_console.print(w)
