"""Typer option types shared by the commands that run the nets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Checkpoint = Annotated[list[Path] | None, typer.Option(help="Checkpoint (.safetensors) of a net; repeat for both nets.", exists=True)]
Onnx = Annotated[list[Path] | None, typer.Option(help="Exported ONNX file of a net; repeat for both nets.", exists=True)]
Device = Annotated[str, typer.Option(help="Backend: auto (best available), tensorrt, ort-trt, cuda, cpu, torch.")]
Precision = Annotated[str, typer.Option(help="TensorRT engine precision: fp32, fp16 or bf16.")]
BuildEngine = Annotated[bool, typer.Option(help="Build the TensorRT engine on first use if none is cached.")]
Tile = Annotated[int | None, typer.Option(help="Largest tile side in 10 m pixels (halo excluded); default: per backend (CPU 544, GPU 1024).", min=16)]
Block = Annotated[int, typer.Option(help="Streaming block side in 10 m pixels (bounds memory).", min=60)]
Batch = Annotated[int | None, typer.Option(help="Tiles per inference call; default: per backend (CPU 1).", min=1)]
Overwrite = Annotated[bool, typer.Option(help="Replace existing outputs.")]
