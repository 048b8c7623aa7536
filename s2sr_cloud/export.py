"""Checkpoint → ONNX (+ manifest), verified against PyTorch on real imagery.

Needs the ``train`` extra (torch, onnx). The ONNX graph has a dynamic batch, height and
width (input ``input`` (N, C_in, H, W), output ``output`` (N, C_out, H, W), float32,
values DN/2000). The manifest beside it (``<name>.json``) records the sha256 of the
checkpoint and the ONNX file, bands in/out, scale, the halo the runtime must use, the
opset, tool versions and the verification result.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .bands import SCALE
from .errors import ModelError, require
from .fsutil import atomic_path, ensure_dir
from .infer.manifest import MANIFEST_FORMAT, manifest_path, sha256_file
from .sr import ArraySource, super_resolve

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: Gate on max |ORT − PyTorch| in scaled units (DN / 2000); = 0.2 DN.
VERIFY_TOL_SCALED = 1e-4
VERIFY_SCENE = Path(__file__).parent / "data" / "verify_T33UUB_120.npz"


def _opset_range() -> tuple[int, int]:
    """Opsets the installed PyTorch's (TorchScript) exporter can write."""
    try:
        from torch.onnx import _constants as c

        hi = getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None) or c.ONNX_MAX_OPSET
        return int(getattr(c, "ONNX_MIN_OPSET", 7)), int(hi)
    except (ImportError, AttributeError):
        return 7, 20


@dataclass(frozen=True)
class ExportResult:
    """Paths written by :func:`export_onnx` and the verification figures."""

    onnx: Path
    manifest: Path
    max_abs_scaled: float
    max_abs_dn: float


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"s2sr-cloud": __version__}
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def verify_onnx(model: Any, onnx_path: Path, manifest: dict[str, Any], scene: Path = VERIFY_SCENE) -> tuple[float, float]:
    """Max |ONNX Runtime − PyTorch| over a real scene, in scaled units and in DN."""
    from .infer.onnxrt import OnnxRunner
    from .nets.model import TorchRunner

    with np.load(scene) as z:
        src = ArraySource(z["b10"], z["b20"], z["b60"])
    net = manifest["net"]
    ref = super_resolve(src, {net: TorchRunner(model)}, tile=10_000)[net]
    got = super_resolve(src, {net: OnnxRunner(onnx_path, manifest, "cpu")}, tile=10_000)[net]
    max_dn = float(np.abs(ref - got).max())
    return max_dn / SCALE, max_dn


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = VERIFY_TOL_SCALED,
) -> ExportResult:
    """Export a checkpoint to ``<out_dir>/<net>_<variant>.onnx`` + ``.json`` manifest.

    Raises:
        ModelError: the export disagrees with PyTorch by more than ``tolerance``.
    """
    require("torch", "train")
    require("onnx", "train")
    import torch

    from .nets.checkpoint import load_checkpoint

    lo, hi = _opset_range()
    if not lo <= opset <= hi:
        raise ModelError(f"--opset {opset} is not supported by this PyTorch: use {lo} to {hi} (default {DEFAULT_OPSET})")
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()
    out_dir = ensure_dir(out_dir)
    name = f"{ckpt.net}_{ckpt.variant}"
    onnx_path = out_dir / f"{name}.onnx"
    # the manifest is renamed into place first, the ONNX file last; both or neither on error
    with atomic_path(onnx_path) as tmp, atomic_path(manifest_path(onnx_path)) as mtmp:
        x = torch.zeros(1, model.spec.in_channels, 64, 64)
        axes = {0: "batch", 2: "height", 3: "width"}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, (x,), str(tmp), input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": axes, "output": axes}, opset_version=opset, dynamo=False,
                )
        except OSError:
            raise
        except Exception as err:  # exporter failures (an opset it cannot target…)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"ONNX export of {name} with opset {opset} failed: {first[:300]}") from err
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "net": ckpt.net,
            "variant": ckpt.variant,
            "inputs": list(model.spec.inputs),
            "outputs": list(model.spec.outputs),
            "input_name": "input",
            "output_name": "output",
            "layout": "NCHW float32, values DN/scale, dynamic batch/height/width",
            "scale": SCALE,
            "halo": model.halo,
            "opset": opset,
            "onnx_sha256": sha256_file(tmp),
            "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": ckpt.sha256,
            "checkpoint_provenance": ckpt.meta.get("provenance", {}),
            "offset_convention": ckpt.meta.get("offset_convention"),
            "tools": _versions(),
            "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        max_scaled = max_dn = float("nan")
        if verify:
            max_scaled, max_dn = verify_onnx(model, tmp, manifest)
            if not max_scaled <= tolerance:
                raise ModelError(
                    f"ONNX export of {name} disagrees with PyTorch: max |diff| = {max_scaled:.2e} "
                    f"(scaled) > {tolerance:.0e}; the export was not written"
                )
            manifest["verification"] = {
                "scene": VERIFY_SCENE.name,
                "max_abs_diff_scaled": max_scaled,
                "max_abs_diff_dn": max_dn,
                "tolerance_scaled": tolerance,
                "passed": True,
            }
        mtmp.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("exported %s (max |ORT - torch| = %.2e scaled, %.4f DN)", onnx_path, max_scaled, max_dn)
    return ExportResult(onnx_path, manifest_path(onnx_path), max_scaled, max_dn)
