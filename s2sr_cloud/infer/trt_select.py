"""The native TensorRT hook of backend selection: a cached engine, or one built now.

Sits above both :mod:`.trt` (runtime) and :mod:`.trt_build` (builder), so neither imports
the other's caller: ``trt_build`` uses the runtime to verify what it built, and this module
uses both — no import cycle, no function-level import to hide one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import EngineMismatch
from .engine_cache import engine_dir, find_engine
from .trt import TrtRunner, engine_spec_here
from .trt_build import build_engine

log = logging.getLogger(__name__)


def native_runner_if_cached(
    onnx_path: str | os.PathLike[str],
    manifest: dict[str, Any],
    *,
    precision: str = "fp32",
    build: bool = False,
    directory: str | os.PathLike[str] | None = None,
) -> TrtRunner | None:
    """A native TensorRT runner for ``onnx_path`` if an engine is cached (or ``build``).

    Returns:
        The runner, or None when TensorRT or a GPU is missing, or when no engine is
        cached for this model, GPU and precision and ``build`` is False.

    Raises:
        EngineMismatch: a cached engine of this model for this GPU is stale and
            ``build`` is False.
    """
    spec = engine_spec_here(manifest, precision, tile=1)
    if spec is None:
        log.debug("native TensorRT unavailable (no tensorrt or no GPU)")
        return None
    where = engine_dir(directory)
    try:
        entry = find_engine(where, spec)
    except EngineMismatch as err:
        if not build:
            raise
        log.warning("%s — building a new engine", err)
        entry = None
    if entry is None and build:
        entry = build_engine(onnx_path, manifest, precision=precision, directory=where)
    if entry is None:
        log.info(
            "no TensorRT engine cached for %s (%s) in %s; build one with `s2sr engine build %s` "
            "or run with --device tensorrt", spec.name, precision, where, onnx_path,
        )
        return None
    log.info("using TensorRT engine %s", entry.engine.name)
    return TrtRunner(entry)
