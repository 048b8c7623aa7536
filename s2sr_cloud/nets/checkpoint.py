"""Checkpoint format: safetensors weights + JSON metadata in the safetensors header.

No pickle anywhere: loading never executes code from the file. Metadata keys:

``format`` (``s2sr-checkpoint/1``), ``net`` (net20/net60), ``variant`` (dsen2/vdsen2),
``inputs``/``outputs`` (band ids in channel order), ``scale`` (2000), ``offset_convention``,
``provenance`` (free-form dict: training command, data, steps, time, hardware, …),
and, when loaded, ``sha256`` of the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..bands import SCALE, net_spec, variant_spec
from ..errors import CheckpointMismatch, ModelError
from ..fsutil import atomic_path
from ..infer.manifest import sha256_file
from .model import DSen2

FORMAT = "s2sr-checkpoint/1"
OFFSET_CONVENTION = (
    "inputs and outputs are DN = 10000 x reflectance without the baseline-04.00 "
    "BOA offset (harmonise: subtract 1000 for baseline >= 04.00), divided by scale"
)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model plus its metadata."""

    model: DSen2
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def net(self) -> str:
        return str(self.meta["net"])

    @property
    def variant(self) -> str:
        return str(self.meta["variant"])

    @property
    def sha256(self) -> str | None:
        return self.meta.get("sha256")


def checkpoint_meta(model: DSen2, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata describing ``model``."""
    return {
        "format": FORMAT,
        "net": model.spec.name,
        "variant": model.variant.name,
        "inputs": list(model.spec.inputs),
        "outputs": list(model.spec.outputs),
        "scale": SCALE,
        "halo": model.halo,
        "offset_convention": OFFSET_CONVENTION,
        "provenance": provenance or {},
    }


def save_checkpoint(
    model: DSen2,
    path: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` atomically (temp file + rename). ``extra_tensors`` (e.g. optimiser
    state) are stored under an ``_extra.`` prefix and ignored when loading the model."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[f"_extra.{k}"] = v.detach().cpu().contiguous()
    meta = {"s2sr": json.dumps(checkpoint_meta(model, provenance))}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a checkpoint without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("s2sr")
    except (SafetensorError, OSError) as err:
        raise ModelError(f"{path}: not a readable safetensors checkpoint ({err})") from err
    if raw is None:
        raise ModelError(f"{path}: safetensors file without s2sr metadata; not an s2sr checkpoint")
    meta: dict[str, Any] = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: unsupported checkpoint format {meta.get('format')!r}; expected {FORMAT}")
    return meta


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    net: str | None = None,
    variant: str | None = None,
    with_extra: bool = False,
) -> Checkpoint:
    """Load a checkpoint; fail clearly when it is not the expected net or variant.

    With ``with_extra=True`` the ``_extra.*`` tensors are returned in ``meta["extra"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    if path.suffix in {".pt", ".pth", ".ckpt"}:
        raise ModelError(
            f"{path}: pickle-based checkpoints are not loaded (unsafe); convert it to "
            "safetensors, or for original DSen2 Keras weights use `s2sr import-keras`"
        )
    meta = read_meta(path)
    if net is not None and meta["net"] != net_spec(net).name:
        raise CheckpointMismatch(
            f"{path} holds the {meta['net']} net, but the {net_spec(net).name} net is needed"
        )
    if variant is not None and meta["variant"] != variant_spec(variant).name:
        raise CheckpointMismatch(f"{path} is a {meta['variant']} checkpoint, expected {variant}")
    try:
        model = DSen2(net_spec(meta["net"]), variant_spec(meta["variant"]))
        tensors = load_file(str(path))
    except (SafetensorError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot read checkpoint ({err})") from err
    extra = {k[len("_extra.") :]: v for k, v in tensors.items() if k.startswith("_extra.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("_extra.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointMismatch(
            f"{path}: weights do not fit a {meta['variant']} {meta['net']} net "
            f"(wrong architecture or shapes): {str(err).splitlines()[0]}"
        ) from err
    meta = dict(meta, sha256=sha256_file(path))
    if with_extra:
        meta["extra"] = extra
    return Checkpoint(model=model.eval(), meta=meta, path=path)
