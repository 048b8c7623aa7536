"""The root Typer app and its global options; command modules register on :data:`app`.

Command modules import ``app`` from here, never from the package ``__init__`` (which
imports them): no import cycle.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__

app = typer.Typer(
    name="s2sr",
    help="Sentinel-2 super-resolution (DSen2): STAC search → streamed COG windows → "
    "10 m COGs → STAC.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"s2sr-cloud {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Log progress (-v: info, -vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    from ._console import setup_logging

    setup_logging(-1 if quiet else verbose)
