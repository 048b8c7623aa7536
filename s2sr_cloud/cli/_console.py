"""The only module that renders to the terminal: rich consoles, progress, error display.

rich's progress and logging modules are imported when first used: the root callback sets up
logging before a sub-command's ``--help`` is shown, and that must stay light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress

#: stdout stays clean for machine-readable output (``--json``); everything else goes here.
err_console = Console(stderr=True)
out_console = Console()


#: ``-q`` given: no progress bars (errors and warnings still print).
QUIET = False


def setup_logging(verbosity: int) -> None:
    """As pystac-client: default WARNING, ``-v`` INFO, ``-vv`` DEBUG; ``-q`` (-1) errors only
    and no progress bars. Third-party loggers stay at WARNING below ``-vvv``.

    On a terminal, logs go through rich; otherwise (a file, a pipe, a CI log) as plain
    timestamped lines ``2024-01-01 12:00:00,000 INFO s2sr_cloud.pipeline: …``.
    """
    global QUIET
    QUIET = verbosity < 0
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(max(-1, verbosity), logging.DEBUG)
    handler: logging.Handler
    if err_console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False, show_time=verbosity >= 2, markup=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, handlers=[handler], format=fmt, force=True)
    for name in ("urllib3", "rasterio", "botocore", "boto3", "s3transfer", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)


def make_progress(*, transient: bool = False) -> Progress:
    """A progress bar with counts and time remaining, on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=QUIET,
    )


@contextmanager
def progress_task(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """Context manager yielding ``update(done, total)`` for a single progress bar."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, tot: int) -> None:
            progress.update(task, completed=done, total=tot)

        yield update


def error(message: str) -> None:
    """Print an error message (no traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # one line in logs


def success(message: str) -> None:
    err_console.print(f"[green]✓[/] {escape(message)}", highlight=False)
