"""``s2sr export`` and ``s2sr import-keras``: model files in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import Net as NetChoice
from ..options import Variant as VariantChoice
from ._options import MODELS

app = typer.Typer()


@app.command(rich_help_panel=MODELS)
def export(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="Checkpoint to export (default: both default nets).", exists=True)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("export"),
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset.")] = 17,
) -> None:
    """Export checkpoints to verified ONNX files (+ manifest).

    Each export is checked against PyTorch on real imagery.
    """
    from ..errors import ModelError
    from ..export import VERIFY_TOL_SCALED, export_onnx
    from ..weights import default_checkpoint
    from ._console import success

    if checkpoint is not None:
        todo = [checkpoint]
    else:
        todo = [p for p in (default_checkpoint("net20"), default_checkpoint("net60")) if p is not None]
        if not todo:
            raise ModelError("no default checkpoints are installed; pass a checkpoint to export")
    for ck in todo:
        res = export_onnx(ck, out, opset=opset)
        success(
            f"{res.onnx} — verified on real imagery: max |ORT − PyTorch| = {res.max_abs_scaled:.2e} "
            f"scaled ({res.max_abs_dn:.4f} DN) ≤ {VERIFY_TOL_SCALED:.0e}; manifest {res.manifest.name}"
        )


@app.command("import-keras", rich_help_panel=MODELS)
def import_keras(
    hdf5: Annotated[Path, typer.Argument(help="Original DSen2 Keras weights (.hdf5).", exists=True)],
    net: Annotated[NetChoice, typer.Option(help="Which net the file holds.")],
    variant: Annotated[VariantChoice, typer.Option(help="Architecture.")] = VariantChoice.DSEN2,
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="FILE", help="Output checkpoint (.safetensors).")] = Path("imported.safetensors"),
) -> None:
    """Convert original DSen2 Keras .hdf5 weights to a checkpoint."""
    from ..errors import require

    require("torch", "train")
    require("h5py", "train")
    from ..nets.checkpoint import save_checkpoint
    from ..nets.keras import import_keras_weights
    from ._console import success

    model = import_keras_weights(hdf5, net.value, variant.value)
    save_checkpoint(model, out, provenance={"imported_from": hdf5.name, "source": "lanha/DSen2 Keras weights"})
    success(f"wrote {out}")
