"""The models of a batch: what to load (:class:`ModelSpec`), the per-process runner cache, and
how many inference threads a process may use (its CPU affinity, its cgroup CPU quota, the
worker processes sharing its host)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import usable_cpus
from ..sr import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to load the runners: picklable, so each worker process loads its own.

    ``onnx`` / ``checkpoint`` are ``(net, path)`` pairs; nets not given use the default
    weights. ``threads``: inference threads per process (None: the process's share of its
    host's usable cores on a cluster, all cores in process).
    """

    onnx: tuple[tuple[str, str], ...] = ()
    checkpoint: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    precision: str = "fp32"
    build_engine: bool = False
    threads: int | None = None

    @classmethod
    def of(
        cls, *, onnx: Mapping[str, Any] | None = None, checkpoint: Mapping[str, Any] | None = None,
        device: str = "auto", precision: str = "fp32", build_engine: bool = False, threads: int | None = None,
    ) -> ModelSpec:
        """From ``{net: path}`` mappings (absolute paths, so workers find them too)."""
        def pairs(m: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
            return tuple(sorted((str(k), str(Path(v).resolve())) for k, v in (m or {}).items()))

        return cls(pairs(onnx), pairs(checkpoint), str(device), str(precision), build_engine, threads)

    def load(self, threads: int | None = None) -> dict[str, Runner]:
        """Load the runners (``threads`` overrides :attr:`threads`); close them with :func:`close_runners`."""
        from ..infer import load_runners

        return load_runners(onnx=dict(self.onnx), checkpoint=dict(self.checkpoint), device=self.device,
                            precision=self.precision, build_engine=self.build_engine,
                            threads=threads if threads is not None else self.threads)


def close_runners(runners: Mapping[str, Any]) -> None:
    """Release loaded runners (GPU memory, engine contexts); errors while closing are logged."""
    for name, r in runners.items():
        close = getattr(r, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing while unwinding must not hide the first error
                log.debug("closing runner %s failed", name, exc_info=True)


_CACHE: dict[tuple[ModelSpec, int | None], dict[str, Runner]] = {}
_CACHE_LOCK = threading.Lock()


def worker_runners(spec: ModelSpec, threads: int | None = None) -> dict[str, Runner]:
    """The runners of ``spec`` in this process, loaded on first use and kept (per-process cache)."""
    key = (spec, threads if threads is not None else spec.threads)
    with _CACHE_LOCK:
        runners = _CACHE.get(key)
        if runners is None:
            t0 = time.perf_counter()
            runners = spec.load(key[1])
            _CACHE[key] = runners
            log.info("loaded runners (%s) in %.1f s, %s inference threads",
                     ", ".join(f"{n}: {r.backend}" for n, r in runners.items()), time.perf_counter() - t0, key[1] or "all")
        return runners


# --------------------------------------------------------------------------- CPU limits: settings.usable_cpus
def host_of(address: str) -> str:
    """``tcp://10.0.0.5:40000`` → ``10.0.0.5``."""
    return address.split("://")[-1].rsplit(":", 1)[0]


def scheduler_workers(client: Any) -> dict[str, dict[str, Any]]:
    """``{address: info}`` of every worker the scheduler knows (all of them, not the first few)."""
    try:
        return dict(client.scheduler_info(n_workers=-1)["workers"])
    except TypeError:  # distributed before n_workers=
        return dict(client.scheduler_info()["workers"])


def worker_threads(spec: ModelSpec) -> int | None:
    """Inference threads of a unit on this Dask worker: :attr:`ModelSpec.threads`, else this
    worker's share of its host's usable cores (:func:`usable_cpus` ÷ worker processes on the
    host, as the scheduler sees them when the worker runs its first unit). None outside a worker."""
    if spec.threads is not None:
        return spec.threads
    global _SHARE
    if _SHARE is None:
        try:
            from distributed import get_client, get_worker

            me = host_of(str(get_worker().address))
        except (ImportError, ValueError):
            return None
        try:
            workers = scheduler_workers(get_client())
        except Exception:  # noqa: BLE001 - a busy or lost scheduler: assume alone
            workers = {}
        local = max(1, sum(1 for a in workers if host_of(a) == me))
        _SHARE = max(1, usable_cpus() // local)
    return _SHARE


_SHARE: int | None = None
