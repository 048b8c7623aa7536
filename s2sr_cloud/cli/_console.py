"""The only module that renders to the terminal: rich consoles, progress, error display."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: stdout stays clean for machine-readable output (``--json``); everything else goes here.
err_console = Console(stderr=True)
out_console = Console()


def setup_logging(verbosity: int) -> None:
    """-q → WARNING, default → INFO, -v → DEBUG. Third-party loggers stay at WARNING."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, RichHandler):
            root.removeHandler(h)
    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    for name in ("urllib3", "rasterio", "botocore", "boto3", "s3transfer", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_progress(*, transient: bool = False) -> Progress:
    """A progress bar with counts and time remaining, on stderr."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
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
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def success(message: str) -> None:
    err_console.print(f"[green]✓[/] {escape(message)}", highlight=False)
