"""What the commands share: help panels, option types, and the parsing of option values.

Nothing here imports more than Typer and the package's leaves at module level: every command
module imports this one, and ``s2sr --help`` must stay light (a test lists the heavy modules).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from ..options import Device as _Device
from ..options import Precision as _Precision
from ..options import choices, parse_choice, parse_device
from ..settings import ASSETS_TO_VAR, PUBLISH_VAR, S3_ENDPOINT_VAR

# --- help panels: the order of the first command of each panel is the order in `s2sr --help` ---
FIND = "Find and process"  # search, run, superres
PUBLISH = "Publish"  # publish
MODELS = "Models"  # train, evaluate, export, import-keras
SYSTEM = "Engines and system"  # engine …, info

# option panels of the commands that run the nets
O_MODELS = "Models and backend"
O_TILING = "Tiling and memory"
O_POST = "Post-steps"
O_OUTPUT = "Output"
O_PUBLISH = "Publish"
O_SCALE = "Scale-out"

#: ``--backproject`` default: None, each net's own iterations (``post.DEFAULT_PER_NET``).
BACKPROJECT_DEFAULT = None


def in_panel(option: Any, panel: str | None, *, metavar: str | None = None) -> Any:
    """The ``Annotated[..., typer.Option(...)]`` type ``option`` shown in help panel ``panel``
    (and with ``metavar``, if given).

    A copy: the shared type is unchanged, so each command places shared options where it likes.
    Only the help changes: names, defaults, parsing and checks are the shared type's.
    """
    base, *infos = get_args(option)
    moved = []
    for info in infos:
        if isinstance(info, typer.models.ParameterInfo):
            info = copy.copy(info)
            info.rich_help_panel = panel
            if metavar is not None:
                info.metavar = metavar
        moved.append(info)
    return Annotated[(base, *moved)]


# --- value parsing ---------------------------------------------------------------------------
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


def net_of(path: Path, kind: str) -> str:
    """The net (``net20``/``net60``) a ``--checkpoint`` or ``--onnx`` file holds, from its metadata."""
    if kind == "checkpoint":
        from ..errors import require

        require("safetensors", "train")
        from ..nets.checkpoint import read_meta

        return str(read_meta(path)["net"])
    from ..infer.manifest import load_manifest

    return str(load_manifest(path)["net"])


def model_files(checkpoint: list[Path] | None, onnx: list[Path] | None) -> tuple[dict[str, Path], dict[str, Path]]:
    """Sort ``--checkpoint`` / ``--onnx`` files by the net they hold (from their metadata);
    a later file of the same net replaces an earlier one."""
    ckpts = {net_of(p, "checkpoint"): p for p in checkpoint or []}
    onnxs = {net_of(p, "onnx"): p for p in onnx or []}
    return ckpts, onnxs


def parse_intersects(value: str | None) -> dict[str, Any] | None:
    """``--intersects``: a GeoJSON geometry (or Feature) from a file or inline."""
    if not value:
        return None
    from ..errors import CatalogError

    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        geom = json.loads(text)
    except json.JSONDecodeError as err:
        raise CatalogError(f"--intersects takes a GeoJSON file or inline GeoJSON: {err}") from err
    if geom.get("type") == "Feature":
        geom = geom["geometry"]
    if geom.get("type") == "FeatureCollection":
        raise CatalogError("--intersects takes one geometry, not a FeatureCollection")
    return dict(geom)


# --- options of the commands that run the nets -------------------------------------------------
Checkpoint = Annotated[list[Path] | None, typer.Option(
    metavar="FILE", rich_help_panel=O_MODELS, exists=True,
    help="Checkpoint (.safetensors) of a net; repeat for both nets.")]
Onnx = Annotated[list[Path] | None, typer.Option(
    metavar="FILE", rich_help_panel=O_MODELS, exists=True,
    help="Exported ONNX file of a net; repeat for both nets.")]
Device = Annotated[str, typer.Option(
    callback=_device, metavar="DEVICE", rich_help_panel=O_MODELS,
    help=f"Backend: {choices(_Device)} or cuda:N (auto: best available).")]
Precision = Annotated[str, typer.Option(
    callback=_precision, metavar="PRECISION", rich_help_panel=O_MODELS,
    help=f"Engine precision: {choices(_Precision)} (which backends take which: see the docs).")]
BuildEngine = Annotated[bool, typer.Option(
    rich_help_panel=O_MODELS, help="Build the TensorRT engine on first use if none is cached.")]
Tile = Annotated[int | None, typer.Option(
    min=16, metavar="PX", rich_help_panel=O_TILING,
    help="Largest tile side in 10 m pixels (halo excluded); default: per backend (CPU 544, GPU 1024).")]
Block = Annotated[int, typer.Option(
    min=60, metavar="PX", rich_help_panel=O_TILING, help="Streaming block side in 10 m pixels (bounds memory).")]
Batch = Annotated[int | None, typer.Option(
    min=1, metavar="N", rich_help_panel=O_TILING, help="Tiles per inference call; default: per backend (CPU 1).")]
Overwrite = Annotated[bool, typer.Option(rich_help_panel=O_OUTPUT, help="Replace existing outputs.")]
Backproject = Annotated[int | None, typer.Option(
    "--backproject", min=-1, metavar="N", rich_help_panel=O_POST, show_default="20 m: 2, 60 m: 1",
    help="Consistency post-step: N back-projection iterations of the observed 20/60 m bands' residual "
    "(then one exact block step) for every net; -1: none. The consistency figure is recorded per output (QA).")]
Hybrid = Annotated[bool, typer.Option(
    "--hybrid/--no-hybrid", rich_help_panel=O_POST,
    help="Blend the nets with a local guided regression of the bands on the finer bands, before the "
    "back-projection (by default the 20 m net only, where it helped on the validation set; see the model card); "
    "--no-hybrid: no blend.")]


# --- where outputs are published (``publish``, and ``--publish`` of ``run``/``search --run``) ------
PUBLISH_TO_HELP = (
    "Where to publish: a folder (static catalog, relative links), s3://bucket/prefix (static catalog on S3) "
    "or the root URL of a STAC API with the Transactions extension."
)
PublishTo = Annotated[str | None, typer.Option("--publish", help=PUBLISH_TO_HELP + " Default: do not publish.",
                                               envvar=PUBLISH_VAR)]
S3Endpoint = Annotated[str | None, typer.Option(help="Endpoint URL of an S3-compatible store (MinIO, Ceph, …).",
                                                envvar=S3_ENDPOINT_VAR)]
AssetsTo = Annotated[str | None, typer.Option(help="With a STAC API: folder or s3://bucket/prefix for the COGs.",
                                              envvar=ASSETS_TO_VAR)]
