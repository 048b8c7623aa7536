"""TensorRT engine cache: keys, JSON sidecars and lookup. Pure Python, no TensorRT.

A serialized TensorRT engine only runs on the GPU model (compute capability) and the
TensorRT version it was built with, and it only computes the ONNX graph it was built
from, at the precision and input shapes (optimization profile) chosen at build time.
All of that goes into the engine's *key*, which names the two files of a cache entry::

    engines/<key>.engine   the serialized engine (TensorRT plan)
    engines/<key>.json     its sidecar: everything in the key, plus the profile, the
                           engine's sha256 and the accuracy check done at build time

Lookup (:func:`find_engine`) takes the engine of this model whose identity (ONNX
sha256, GPU, compute capability, TensorRT version, precision) matches; engines built for
other GPUs are other keys and are ignored, so one cache volume can serve a mixed fleet.
An engine of the same model, GPU and precision that was built from another ONNX file or
with another TensorRT version is *stale*: lookup refuses it with
:class:`~s2sr_cloud.errors.EngineMismatch` (rebuild it), rather than silently falling
back. A sidecar that disagrees with its file name or engine bytes is refused too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineMismatch, ModelError
from .manifest import sha256_file

log = logging.getLogger(__name__)

ENGINE_FORMAT = "s2sr-trt-engine/1"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: Default output tile side (10 m px, halo excluded) an engine's profile is built for.
DEFAULT_TILE = 512
#: Default largest batch of tiles an engine's profile accepts.
DEFAULT_MAX_BATCH = 4
#: Identity fields: an engine is usable only if all of these equal the runtime's.
IDENTITY = ("name", "onnx_sha256", "gpu_name", "compute_capability", "tensorrt_version", "precision")


def engine_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The engine cache folder: ``path``, else ``$S2SR_ENGINE_DIR``, else ``engines/`` in the cache folder."""
    from ..settings import engine_dir as _engine_dir

    return _engine_dir(path)


def check_precision(precision: str) -> str:
    """Return ``precision`` lower-cased, or raise ValueError naming the choices."""
    p = precision.lower()
    if p not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return p


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuInfo:
    """The GPU an engine is built for or run on."""

    name: str
    """Device name as CUDA reports it, e.g. ``NVIDIA H100 80GB HBM3``."""
    compute_capability: str
    """``major.minor``, e.g. ``9.0``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    """The input shapes an engine accepts (one TensorRT optimization profile).

    Spatial sides run from ``1 + 2·halo`` (a one-pixel window) to ``tile + 2·halo``;
    the batch from 1 to ``max_batch``; TensorRT tunes its kernels for the largest.
    """

    channels: int
    """Input channels of the net (10 or 12)."""
    halo: int
    """Halo of the net in 10 m px (the runtime pads each tile by it on every side)."""
    tile: int = DEFAULT_TILE
    """Largest output tile side, halo excluded."""
    max_batch: int = DEFAULT_MAX_BATCH
    """Largest batch of tiles."""

    def __post_init__(self) -> None:
        if self.tile < 1 or self.max_batch < 1 or self.halo < 0 or self.channels < 1:
            raise ValueError(f"invalid engine profile {self}")

    @property
    def max_side(self) -> int:
        """Largest input side: ``tile + 2·halo``."""
        return self.tile + 2 * self.halo

    def shapes(self) -> dict[str, list[int]]:
        """Min / opt / max NCHW input shapes of the profile."""
        lo, hi = 1 + 2 * self.halo, self.max_side
        return {
            "min": [1, self.channels, lo, lo],
            "opt": [self.max_batch, self.channels, hi, hi],
            "max": [self.max_batch, self.channels, hi, hi],
        }

    def covers(self, shape: tuple[int, ...]) -> bool:
        """True if an NCHW input of ``shape`` (any batch) fits the spatial range."""
        lo = 1 + 2 * self.halo
        return (
            len(shape) == 4
            and shape[1] == self.channels
            and all(lo <= s <= self.max_side for s in shape[2:])
        )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineSpec:
    """What an engine is built from and for: everything its key is made of."""

    name: str
    """Model name from the ONNX manifest, e.g. ``net20_dsen2``."""
    net: str
    """``net20`` or ``net60``."""
    variant: str
    """``dsen2`` or ``vdsen2``."""
    onnx_sha256: str
    """sha256 of the ONNX file the engine is built from."""
    gpu_name: str
    """CUDA device name."""
    compute_capability: str
    """``major.minor``."""
    tensorrt_version: str
    """TensorRT version string, e.g. ``11.4.0.106``."""
    precision: str
    """``fp32``, ``fp16`` or ``bf16``."""
    profile: Profile
    """Input shapes the engine accepts."""

    @classmethod
    def from_manifest(
        cls, manifest: dict[str, Any], gpu: GpuInfo, tensorrt_version: str, precision: str, *,
        tile: int = DEFAULT_TILE, max_batch: int = DEFAULT_MAX_BATCH,
    ) -> EngineSpec:
        """Spec for the ONNX described by ``manifest`` on ``gpu`` with ``tensorrt_version``."""
        try:
            name = manifest.get("name") or f"{manifest['net']}_{manifest['variant']}"
            profile = Profile(channels=len(manifest["inputs"]), halo=int(manifest["halo"]), tile=tile, max_batch=max_batch)
            return cls(
                name=str(name), net=str(manifest["net"]), variant=str(manifest.get("variant", "")),
                onnx_sha256=str(manifest["onnx_sha256"]), gpu_name=gpu.name,
                compute_capability=gpu.compute_capability, tensorrt_version=tensorrt_version,
                precision=check_precision(precision), profile=profile,
            )
        except KeyError as err:
            raise ModelError(f"ONNX manifest lacks {err}; re-export the model with `s2sr export`") from err

    @property
    def key(self) -> str:
        """File stem of the cache entry, e.g.
        ``net20_dsen2-3fa9c1d2e4b5-nvidia-h100-80gb-hbm3-sm90-trt11.4.0.106-fp16-t512b4``."""
        cc = self.compute_capability.replace(".", "")
        return (
            f"{_slug(self.name).replace('-', '_')}-{self.onnx_sha256[:12]}-{_slug(self.gpu_name)}-sm{cc}"
            f"-trt{self.tensorrt_version}-{self.precision}-t{self.profile.tile}b{self.profile.max_batch}"
        )

    def identity(self) -> dict[str, str]:
        """The fields that must match for an engine to be usable."""
        return {k: str(getattr(self, k)) for k in IDENTITY}


@dataclass(kw_only=True)
class CacheEntry:
    """One engine in the cache: its files and its sidecar."""

    engine: Path
    """The ``.engine`` file."""
    sidecar: dict[str, Any] = field(default_factory=dict)
    """The parsed ``.json`` sidecar."""

    @property
    def key(self) -> str:
        return self.engine.stem

    @property
    def profile(self) -> Profile:
        p = self.sidecar["profile"]
        return Profile(channels=int(p["channels"]), halo=int(p["halo"]), tile=int(p["tile"]), max_batch=int(p["max_batch"]))

    def differences(self, spec: EngineSpec) -> dict[str, tuple[str, str]]:
        """Identity fields where this engine differs from ``spec``: ``{field: (engine's, wanted)}``."""
        want = spec.identity()
        return {k: (str(self.sidecar.get(k)), v) for k, v in want.items() if str(self.sidecar.get(k)) != v}


def spec_for_entry(entry: CacheEntry, gpu: GpuInfo, tensorrt_version: str) -> EngineSpec:
    """The spec ``entry``'s own model and precision would have on ``gpu`` with ``tensorrt_version``.

    Verifying ``entry`` against it checks GPU and TensorRT only (for an engine given
    by path, whose ONNX is not at hand).
    """
    s = entry.sidecar
    return EngineSpec(
        name=s["name"], net=s["net"], variant=s.get("variant", ""), onnx_sha256=s["onnx_sha256"],
        gpu_name=gpu.name, compute_capability=gpu.compute_capability,
        tensorrt_version=tensorrt_version, precision=s["precision"], profile=entry.profile,
    )


def sidecar_path(engine: Path) -> Path:
    """``x.engine`` → ``x.json``."""
    return engine.with_suffix(".json")


def make_sidecar(spec: EngineSpec, engine: Path, **extra: Any) -> dict[str, Any]:
    """Sidecar content for a freshly written ``engine`` file of ``spec``."""
    return {
        "format": ENGINE_FORMAT,
        "key": spec.key,
        **{k: v for k, v in asdict(spec).items() if k != "profile"},
        "profile": {**asdict(spec.profile), **spec.profile.shapes()},
        "engine_sha256": sha256_file(engine),
        "engine_bytes": engine.stat().st_size,
        "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def read_sidecar(engine: Path) -> dict[str, Any]:
    """Parse the sidecar of ``engine``; raise :class:`EngineMismatch` if absent or unreadable."""
    path = sidecar_path(engine)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineMismatch(
            f"engine {engine.name} has no sidecar {path.name}, so what it was built from is "
            "unknown; delete it and rebuild with `s2sr engine build`"
        ) from None
    except (OSError, json.JSONDecodeError) as err:
        raise EngineMismatch(f"cannot read engine sidecar {path}: {err}; rebuild the engine") from err
    if not isinstance(data, dict) or data.get("format") != ENGINE_FORMAT:
        raise EngineMismatch(f"{path} is not an s2sr engine sidecar ({ENGINE_FORMAT}); rebuild the engine")
    return data


def iter_entries(directory: Path) -> Iterator[CacheEntry]:
    """Every engine in ``directory`` with a readable sidecar (others are logged and skipped)."""
    if not directory.is_dir():
        return
    for engine in sorted(directory.glob("*.engine")):
        try:
            yield CacheEntry(engine=engine, sidecar=read_sidecar(engine))
        except EngineMismatch as err:
            log.warning("skipping %s: %s", engine, err)


def _consistent(entry: CacheEntry) -> bool:
    """True if the sidecar's fields produce the engine's file name (no edited sidecar)."""
    s = entry.sidecar
    try:
        gpu = GpuInfo(name=s["gpu_name"], compute_capability=s["compute_capability"])
        return spec_for_entry(entry, gpu, s["tensorrt_version"]).key == entry.key
    except (KeyError, TypeError, ValueError):
        return False


def verify_entry(entry: CacheEntry, spec: EngineSpec | None = None, *, check_bytes: bool = True) -> None:
    """Refuse an engine whose sidecar does not match its file name, its bytes, or ``spec``.

    Raises:
        EngineMismatch: with what differs and what to do.
    """
    if entry.sidecar.get("key") != entry.key or not _consistent(entry):
        raise EngineMismatch(
            f"engine {entry.engine.name} was renamed, copied or its sidecar edited: the sidecar "
            f"describes {entry.sidecar.get('key')!r}; delete it and rebuild with `s2sr engine build`"
        )
    if check_bytes:
        size = entry.engine.stat().st_size
        if size != entry.sidecar.get("engine_bytes") or sha256_file(entry.engine) != entry.sidecar.get("engine_sha256"):
            raise EngineMismatch(
                f"engine {entry.engine.name} does not match the sha256 in its sidecar (truncated or "
                "overwritten); delete it and rebuild with `s2sr engine build`"
            )
    if spec is not None:
        diff = entry.differences(spec)
        if diff:
            raise EngineMismatch(describe_mismatch(entry, diff))


def describe_mismatch(entry: CacheEntry, diff: dict[str, tuple[str, str]]) -> str:
    """A user-facing message: which engine, what differs, what to do."""
    what = "; ".join(f"{k}: engine has {have!r}, this run needs {want!r}" for k, (have, want) in diff.items())
    if "onnx_sha256" in diff:
        kind = "stale (built from another ONNX file)"
    elif "gpu_name" in diff or "compute_capability" in diff:
        kind = "foreign (built for another GPU)"
    elif "tensorrt_version" in diff:
        kind = "stale (built with another TensorRT version)"
    else:
        kind = "not the one wanted"
    return (
        f"TensorRT engine {entry.engine.name} is {kind}: {what}. Rebuild it with "
        f"`s2sr engine build <onnx>` (or run with --device tensorrt, which builds it), or delete {entry.engine}"
    )


def find_engine(directory: Path, spec: EngineSpec) -> CacheEntry | None:
    """The cached engine for ``spec``, or None when the cache has none for this model here.

    An engine matches when its identity equals ``spec``'s and its profile covers
    ``spec.profile.tile`` (a larger-tile engine serves smaller tiles); the largest such
    tile wins. Engines for other GPUs or precisions are ignored.

    Raises:
        EngineMismatch: no match, but an engine of this model for this GPU and precision
            exists that is stale (other ONNX sha256 or TensorRT version), or a matching
            entry's sidecar disagrees with its file.
    """
    matches: list[CacheEntry] = []
    stale: list[tuple[CacheEntry, dict[str, tuple[str, str]]]] = []
    for entry in iter_entries(directory):
        if entry.sidecar.get("name") != spec.name:
            continue
        verify_entry(entry, check_bytes=False)
        diff = entry.differences(spec)
        if not diff:
            if entry.profile.tile >= spec.profile.tile and entry.profile.halo == spec.profile.halo:
                matches.append(entry)
        elif set(diff) <= {"onnx_sha256", "tensorrt_version"}:
            stale.append((entry, diff))
    if matches:
        best = max(matches, key=lambda e: (e.profile.tile, e.profile.max_batch))
        verify_entry(best, spec)
        return best
    if stale:
        entry, diff = stale[0]
        raise EngineMismatch(describe_mismatch(entry, diff))
    return None
