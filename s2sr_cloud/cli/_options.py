"""Typer option types shared by the commands that run the nets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Checkpoint = Annotated[list[Path] | None, typer.Option(help="Checkpoint (.safetensors) of a net; repeat for both nets.", exists=True)]
Onnx = Annotated[list[Path] | None, typer.Option(help="Exported ONNX file of a net; repeat for both nets.", exists=True)]
from ..options import Device as _Device
from ..options import Precision as _Precision
from ..options import choices, parse_choice, parse_device


def _device(value: str | None) -> str | None:
    """A typo is a usage error (exit 2) that lists the choices; combinations are the library's."""
    try:
        return None if value is None else parse_device(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _precision(value: str | None) -> str | None:
    try:
        return None if value is None else parse_choice(_Precision, value, "precision")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


Device = Annotated[str, typer.Option(callback=_device, metavar="DEVICE",
                                     help=f"Backend: {choices(_Device)} or cuda:N (auto: best available).")]
Precision = Annotated[str, typer.Option(callback=_precision, metavar="PRECISION",
                                        help=f"Engine precision: {choices(_Precision)} (which backends take which: see the docs).")]
BuildEngine = Annotated[bool, typer.Option(help="Build the TensorRT engine on first use if none is cached.")]
Tile = Annotated[int | None, typer.Option(help="Largest tile side in 10 m pixels (halo excluded); default: per backend (CPU 544, GPU 1024).", min=16)]
Block = Annotated[int, typer.Option(help="Streaming block side in 10 m pixels (bounds memory).", min=60)]
Batch = Annotated[int | None, typer.Option(help="Tiles per inference call; default: per backend (CPU 1).", min=1)]
Overwrite = Annotated[bool, typer.Option(help="Replace existing outputs.")]
Backproject = Annotated[int, typer.Option(
    "--backproject", min=-1, metavar="N",
    help="Consistency post-step: N back-projection iterations of the observed 20/60 m bands' residual "
    "(then one exact block step); -1: none. The figure is recorded per output (QA).")]
Hybrid = Annotated[bool, typer.Option(
    "--hybrid/--no-hybrid",
    help="Blend the nets with a local guided regression of the 20/60 m bands on the finer bands, before the "
    "back-projection (lower RMSE than the nets alone on held-out scenes; see the model card); "
    "--no-hybrid: the nets alone.")]
