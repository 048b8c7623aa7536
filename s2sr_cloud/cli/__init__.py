"""The ``s2sr`` command line.

Each command lives in its own module and registers itself on :data:`app`; command
modules import heavy libraries (torch, onnxruntime, rasterio) inside the command
functions, so ``s2sr --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import S2SRError

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
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    from ._console import setup_logging

    setup_logging(-1 if quiet else verbose)


# Command modules: each adds its commands to `app` on import.
from . import core_cmds  # noqa: E402,F401

_OPTIONAL_COMMANDS = ("train_cmds", "stac_cmds", "publish_cmds", "engine_cmds")
for _mod in _OPTIONAL_COMMANDS:
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _err:  # a command module not written yet
        if _err.name != f"{__name__}.{_mod}":
            raise


def main() -> None:
    """Console-script entry point: expected failures print a message, not a traceback."""
    from ._console import error

    try:
        app(standalone_mode=False)
    except S2SRError as err:
        error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        error("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
