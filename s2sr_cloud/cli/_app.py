"""The root Typer app: its global options, and every command module's app added explicitly.

The order below is the order of ``s2sr --help``: help panels appear in the order of their
first command (find and process, publish, models, engines and system).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import (
    core_cmds,
    engine_cmds,
    info_cmds,
    model_cmds,
    mosaic_cmds,
    publish_cmds,
    stac_cmds,
    task_cmds,
    train_cmds,
    tune_cmds,
)
from ._options import SYSTEM

app = typer.Typer(
    name="s2sr",
    help="Sentinel-2 super-resolution (DSen2): STAC search → streamed COG windows → "
    "10 m COGs → STAC.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

app.add_typer(stac_cmds.app)  # search, run
app.add_typer(core_cmds.app)  # superres
app.add_typer(publish_cmds.app)  # publish
app.add_typer(mosaic_cmds.app)  # mosaic
app.add_typer(task_cmds.app)  # task (a stac-task step)
app.add_typer(train_cmds.app)  # train, evaluate
app.add_typer(model_cmds.app)  # export, import-keras
app.add_typer(engine_cmds.app, name="engine", rich_help_panel=SYSTEM)  # engine build|list|check
app.add_typer(tune_cmds.app)  # tune
app.add_typer(info_cmds.app)  # info


def _version(value: bool) -> None:
    if value:
        typer.echo(f"s2sr-cloud {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, help="Log progress (-v: info, -vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    from ._console import setup_logging

    setup_logging(-1 if quiet else verbose)
