"""The package's default weights: where they are and what they are called.

Checkpoints (safetensors) ship inside this package folder; the ONNX exports of them live
in the repository's ``export/`` folder, installed into wheels as ``s2sr_cloud/_export``.
They are s2sr-cloud's own weights, trained with ``s2sr train`` (see docs/model-card.md),
not the original DSen2 weights.
"""

from __future__ import annotations

from pathlib import Path

from ..bands import net_spec

WEIGHTS_DIR = Path(__file__).parent
_PKG = Path(__file__).parents[1]
#: Where ``s2sr export`` writes by default, and where default ONNX files are looked up.
EXPORT_DIRS: tuple[Path, ...] = (_PKG / "_export", _PKG.parent / "export")


def model_name(net: str, variant: str = "dsen2") -> str:
    """File stem of a model, e.g. ``net20_dsen2``."""
    return f"{net_spec(net).name}_{variant}"


def default_checkpoint(net: str, variant: str = "dsen2") -> Path | None:
    """The shipped checkpoint for ``net`` or None when the package has none."""
    p = WEIGHTS_DIR / f"{model_name(net, variant)}.safetensors"
    return p if p.is_file() else None


def default_onnx(net: str, variant: str = "dsen2") -> Path | None:
    """The shipped ONNX export for ``net`` (with its JSON manifest beside it), or None."""
    for d in EXPORT_DIRS:
        p = d / f"{model_name(net, variant)}.onnx"
        if p.is_file() and p.with_suffix(".json").is_file():
            return p
    return None
