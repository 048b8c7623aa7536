"""What every inference backend shares: a frozen description and a lifecycle.

Each backend (ONNX Runtime, OpenVINO, TensorRT, PyTorch) implements
:class:`~s2sr_cloud.sr.Runner` (``net``, ``halo``, ``backend``, ``__call__``) and derives
from :class:`RunnerBase` for the rest: ``close()`` and context-manager use, the preferred
``tile``/``batch`` (see :func:`~s2sr_cloud.sr.runner_tiling`), ``inference_time`` and a
:class:`ModelInfo` that travels into COG tags and STAC ``processing`` fields through
:func:`~s2sr_cloud.sr.model_info`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelInfo:
    """What ran: the weights (name, sha256s), the backend and the precision *actually used*."""

    name: str
    net: str
    backend: str
    precision: str
    variant: str | None = None
    onnx_sha256: str | None = None
    checkpoint_sha256: str | None = None
    device_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict: the weight fields always (None when unknown), ``device_name`` when set, extras."""
        d = asdict(self)
        extra = d.pop("extra")
        if d["device_name"] is None:
            del d["device_name"]
        d.update(extra)
        return d


class RunnerBase:
    """Lifecycle shared by the runners: ``with runner: ...`` closes it; closing twice is fine."""

    net: str
    halo: int
    backend: str
    precision: str = "fp32"
    tile: int = 544
    batch: int = 1
    host_workers: int = 2
    """Blocks prepared on the host at once (reading, upsampling, tiling) while this runner
    computes: 2 (double buffering) where the net is the bottleneck (CPU backends); more on
    accelerators, whose nets outrun one host thread (:func:`gpu_host_workers`)."""
    inference_time: float = 0.0
    info: ModelInfo

    @property
    def model_info(self) -> dict[str, Any]:
        """The :class:`ModelInfo` as a plain dict (for tags, records and JSON); made once, so
        callers may annotate it (e.g. adaptation settings)."""
        d = self.__dict__.get("_model_info")
        if d is None:
            d = self.__dict__["_model_info"] = self.info.as_dict()
        return d

    def close(self) -> None:
        """Release the backend's resources (sessions, compiled models, device memory)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gpu_host_workers() -> int:
    """Host block workers for a GPU runner: half the cores, 2 to 6.

    Measured on the lent H200 (16 cores): the nets alone ran 74–77 Mpx/s (fp16), the whole
    path with 2 block workers 4–6 Mpx/s; the host side of each block (NumPy, which releases
    the GIL) is what the extra workers parallelise. Capped at 6 to bound memory (each block
    in flight holds its inputs and outputs).
    """
    return min(6, max(2, (os.cpu_count() or 2) // 2))
