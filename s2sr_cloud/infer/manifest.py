"""ONNX manifests: the JSON written beside every exported ONNX file, and its checks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..bands import NETS
from ..errors import EngineMismatch, ModelError

MANIFEST_FORMAT = "s2sr-onnx-manifest/1"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(onnx_path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` → ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


def load_manifest(onnx_path: str | os.PathLike[str], *, verify_sha: bool = True) -> dict[str, Any]:
    """Read and check the manifest of an ONNX file.

    Raises:
        ModelError: the ONNX file or its manifest is missing or unreadable.
        EngineMismatch: the ONNX file's sha256 differs from the manifest's, or the
            manifest describes an unknown net / wrong channels.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX file {onnx_path} does not exist")
    mpath = manifest_path(onnx_path)
    if not mpath.is_file():
        raise ModelError(
            f"{onnx_path} has no manifest {mpath.name} beside it; re-export it with `s2sr export`"
        )
    try:
        manifest: dict[str, Any] = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read manifest {mpath}: {err}") from err
    net = manifest.get("net")
    if net not in NETS:
        raise EngineMismatch(f"{mpath}: unknown net {net!r}; expected one of {', '.join(NETS)}")
    spec = NETS[net]
    if manifest.get("inputs") != list(spec.inputs) or manifest.get("outputs") != list(spec.outputs):
        raise EngineMismatch(
            f"{mpath}: bands in/out {manifest.get('inputs')} -> {manifest.get('outputs')} "
            f"do not match the {net} net ({list(spec.inputs)} -> {list(spec.outputs)})"
        )
    if verify_sha:
        actual = sha256_file(onnx_path)
        if actual != manifest.get("onnx_sha256"):
            raise EngineMismatch(
                f"{onnx_path.name}: sha256 {actual[:12]}… does not match its manifest "
                f"({str(manifest.get('onnx_sha256'))[:12]}…); the ONNX file was changed "
                "after export — re-export it with `s2sr export`"
            )
    return manifest
