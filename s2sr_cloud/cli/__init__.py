"""The ``s2sr`` command line: :data:`app` and the console-script entry point :func:`main`.

Each command module builds its own Typer app; :mod:`._app` adds them to the root app
explicitly. Command modules import heavy libraries (NumPy, torch, onnxruntime, rasterio …)
inside the command functions, so ``s2sr --help`` stays fast (a test lists the heavy modules).
The CLI parses and prints; the work is the library's.
"""

from __future__ import annotations

import sys

import typer

from ..errors import S2SRError
from ._app import app

__all__ = ["app", "main"]


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's exception base class, wherever it lives.

    typer >= 0.16 ships its own copy of click (``typer._click``) whose exceptions are not
    those of an installed ``click``; catch both, so a usage error never becomes a traceback.
    """
    found: list[type[BaseException]] = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _abort_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        found.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(found)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every ``finally`` (temp-file cleanup) runs."""


_terminated = False


def _on_sigterm(signum: int, frame: object) -> None:
    global _terminated
    from ..stop import request

    _terminated = True
    request("terminated")  # work in flight (an inference call, a block) ends within a second or two
    raise Terminated()


def error(message: str) -> None:
    """:func:`._console.error`, imported only when there is an error to show (rich's console
    and progress modules are not needed by a successful ``--help``)."""
    from ._console import error as show

    show(message)


def _show_usage_error(exc: BaseException) -> None:
    """One line: the message and where the help is (``s2sr`` alone still prints the help)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]
        return
    ctx = getattr(exc, "ctx", None)
    where = " ".join(f"{ctx.command_path} --help".split()) if ctx is not None else "s2sr --help"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)  # type: ignore[attr-defined]
    error(f"{message} (see `{where}`)")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every expected failure is one message and its exit code.

    Exit codes: 0 ok, 1 unexpected, 2 usage error or unusable input, the class codes of
    :mod:`s2sr_cloud.errors` (3–10), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    A bug (anything else) still shows its traceback.
    """
    import signal

    try:
        from ..stop import on_signal

        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, on_signal)  # KeyboardInterrupt as before, plus a stop request
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    usage = _usage_error_types()
    try:
        rc = app(args=argv, standalone_mode=False)
    except S2SRError as err:
        error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        rc = 130
    except usage as exc:  # type: ignore[misc]
        _show_usage_error(exc)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except _abort_types():
        error("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        rc = exc.exit_code
    except BrokenPipeError:  # `s2sr search --json | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(1)
    # with standalone_mode=False click returns Exit codes (and turns Ctrl-C into 130)
    # instead of raising them: they must reach the process status
    if rc == 130 or _terminated:
        error("terminated" if _terminated else "interrupted")
        sys.exit(143 if _terminated else 130)
    if isinstance(rc, int) and not isinstance(rc, bool):
        sys.exit(rc)
