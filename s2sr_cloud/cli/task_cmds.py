"""``s2sr task PAYLOAD.json``: run as a stac-task step (Cirrus, Argo): payload in, payload with the new items out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._options import PUBLISH

app = typer.Typer()


@app.command("task", rich_help_panel=PUBLISH)
def task_cmd(
    payload: Annotated[str, typer.Argument(help="The STAC payload (a JSON file, or - for stdin).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the output payload here (default: stdout).")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Work folder (default: a temporary one, removed after).")] = None,
) -> None:
    """Run as a stac-task step: a payload in, a payload out.

    Super-resolves the payload's items (``process[0].tasks.s2sr`` holds the options) and prints
    the payload with the derived items as its features (Cirrus, Argo workflows).
    """
    from ..errors import InputError, require
    from ..fsutil import write_text_atomic

    require("stactask", "task")
    try:
        text = sys.stdin.read() if payload == "-" else Path(payload).read_text()
        doc = json.loads(text)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the payload {payload}: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("features", []), list):
        raise InputError(f"{payload} is not a STAC payload (a FeatureCollection with process options)")
    from stactask.exceptions import FailedValidation

    from ..task import S2SRTask

    try:
        result = S2SRTask.handler(doc, workdir=workdir)
    except FailedValidation as err:
        raise InputError(f"bad payload {payload}: it has no features to super-resolve") from err
    except (TypeError, ValueError) as err:  # stac-task's payload checks
        raise InputError(f"bad payload {payload}: {err}") from err
    text = json.dumps(result, indent=2)
    if out is None:
        typer.echo(text)
    else:
        write_text_atomic(out, text + "\n")
