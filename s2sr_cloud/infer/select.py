"""Backend selection: the best available runner for each net, with honest fallbacks.

Order for ``device="auto"``: a native TensorRT engine cached for this GPU
(:mod:`~s2sr_cloud.infer.trt`), then ONNX Runtime's TensorRT, CUDA and CPU providers.
Forcing a device that cannot run raises :class:`BackendUnavailable`; falling back
under ``auto`` emits a :class:`BackendFallbackWarning` only when a GPU was expected.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..bands import net_spec
from ..errors import BackendUnavailable, ModelError
from ..sr import Runner
from ..weights import default_checkpoint, default_onnx
from .manifest import load_manifest, sha256_file
from .onnxrt import OnnxRunner, available_providers, ort_conflict

log = logging.getLogger(__name__)

DEVICES = ("auto", "tensorrt", "ort-trt", "cuda", "cpu", "torch", "openvino")
_ORT_ORDER = (("ort-trt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider"), ("cpu", "CPUExecutionProvider"))


def cache_dir() -> Path:
    """Per-user cache for ONNX files exported on the fly from checkpoints."""
    from ..settings import cache_dir as _cache_dir

    return _cache_dir()


def onnx_for_checkpoint(checkpoint: str | os.PathLike[str]) -> Path:
    """Export ``checkpoint`` to ONNX once (cached by the checkpoint's sha256) and return it."""
    from ..export import export_onnx

    sha = sha256_file(checkpoint)
    out = cache_dir() / "onnx" / sha[:16]
    found = sorted(out.glob("*.onnx"))
    if found:
        return found[0]
    log.info("exporting %s to ONNX (cached in %s)", checkpoint, out)
    return export_onnx(checkpoint, out).onnx


def _resolve_onnx(net: str, onnx: str | os.PathLike[str] | None, checkpoint: str | os.PathLike[str] | None) -> Path:
    if onnx is not None:
        return Path(onnx)
    if checkpoint is not None:
        return onnx_for_checkpoint(checkpoint)
    found = default_onnx(net)
    if found is not None:
        return found
    ckpt = default_checkpoint(net)
    if ckpt is not None:
        return onnx_for_checkpoint(ckpt)
    raise ModelError(
        f"no default weights for the {net_spec(net).name} net are installed; "
        "pass --checkpoint or --onnx"
    )


def _torch_runner(net: str, checkpoint: str | os.PathLike[str] | None, device: str, precision: str) -> Runner:
    """PyTorch on ``cuda:N`` (``torch`` = the first GPU PyTorch sees, else the CPU)."""
    from ..errors import require

    require("torch", "train")
    from ..nets.checkpoint import load_checkpoint
    from .torch_gpu import TorchGpuRunner, resolve_device

    ckpt = checkpoint or default_checkpoint(net)
    if ckpt is None:
        raise ModelError(f"--device torch needs a checkpoint for the {net_spec(net).name} net")
    where = resolve_device(device)
    loaded = load_checkpoint(ckpt, net=net)

    from ..settings import torch_compile

    def make(prec: str) -> TorchGpuRunner:
        return TorchGpuRunner(loaded.model, where, prec, name=Path(ckpt).stem, checkpoint_sha256=loaded.sha256,
                              compile=torch_compile())

    if precision == "auto":
        precision = "fp32"
        if where.startswith("cuda"):  # fp16/bf16 only behind the accuracy gate (measured once per GPU)
            from . import gate

            try:
                precision = gate.torch_best(gate.torch_gate(net_spec(net).name, loaded.sha256, where, make))
                log.info("--precision auto for %s: torch %s (fastest mode that passes the gate on this GPU)", net, precision)
            except Exception as err:  # noqa: BLE001 - the gate is an optimisation: fall back, say why
                log.warning("--precision auto: the GPU precision gate failed (%s); running %s in fp32", err, net)
    return make(precision)


def _native_trt(onnx_path: Path, manifest: dict[str, Any], precision: str, build: bool) -> Runner | None:
    try:
        from .trt_select import native_runner_if_cached
    except ImportError:  # module not present in this build
        return None
    return native_runner_if_cached(onnx_path, manifest, precision=precision, build=build)


#: Precisions each CPU backend takes (``auto``: the gate of :mod:`.gate` decides).
CPU_PRECISIONS = ("fp32", "bf16", "int8", "auto")


def _cpu_runner(onnx_path: Path, manifest: dict[str, Any], precision: str, threads: int | None, *, openvino: bool = False,
                fastest_fp32: bool = False) -> Runner:
    """ONNX Runtime (fp32) or OpenVINO (fp32/bf16/int8); ``auto`` = fastest mode passing the gate.

    ``fastest_fp32`` (``--device auto``): fp32 runs on whichever exact-fp32 kernels are faster on
    this machine (:func:`~s2sr_cloud.infer.gate.fp32_kernels`; ``--device cpu`` stays ONNX Runtime,
    ``openvino`` OpenVINO)."""
    from . import openvino as ovmod

    if precision not in CPU_PRECISIONS:
        raise BackendUnavailable(f"on CPU --precision takes {', '.join(CPU_PRECISIONS)}, not {precision!r} (fp16 is for GPUs)")
    if precision == "auto":
        if not ovmod.available():
            log.info("--precision auto: OpenVINO is not installed, running fp32 on ONNX Runtime")
            precision, backend = "fp32", "onnxruntime"
        else:
            from .gate import best_mode, load_or_measure

            try:
                result = load_or_measure({manifest["net"]: onnx_path}, {manifest["net"]: manifest})
                backend, precision = best_mode(result, manifest["net"])
            except Exception as err:  # noqa: BLE001 - a failed gate must not stop the run
                log.warning("precision gate failed (%s); running fp32 on ONNX Runtime", err)
                backend, precision = "onnxruntime", "fp32"
            log.info("--precision auto for %s: %s %s (fastest mode that passes the gate here)", manifest["net"], backend, precision)
        if openvino and backend == "onnxruntime":
            backend = "openvino"
    elif openvino or precision != "fp32":
        backend = "openvino"
    else:
        backend = "onnxruntime"
        from ..settings import fp32_cpu_backend

        pref = fp32_cpu_backend() if fastest_fp32 else "onnxruntime"
        if pref == "openvino":
            backend = "openvino"
        elif pref == "auto" and ovmod.available():  # whichever exact-fp32 kernels are faster on this machine
            from .gate import fp32_kernels

            try:
                backend = fp32_kernels(onnx_path, manifest)
                log.info("--precision fp32 for %s: %s (the faster fp32 kernels on this machine)", manifest["net"], backend)
            except Exception as err:  # noqa: BLE001 - only an optimisation: ONNX Runtime is always right
                log.warning("could not compare the fp32 kernels (%s); running %s on ONNX Runtime", err, manifest["net"])
                backend = "onnxruntime"
    if backend == "openvino":
        return ovmod.OpenVinoRunner(onnx_path, manifest, precision, threads=threads)
    return OnnxRunner(onnx_path, manifest, "cpu", threads=threads)


def load_runner(
    net: str,
    *,
    onnx: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    build_engine: bool = False,
    threads: int | None = None,
) -> Runner:
    """The runner for one net on the best (or the forced) backend.

    ``device``: ``auto`` (native TensorRT engine, ONNX Runtime TensorRT/CUDA, then the CPU),
    ``tensorrt``, ``ort-trt``, ``cuda`` (ONNX Runtime's CUDA provider, else PyTorch on
    CUDA), ``cuda:N`` / ``torch`` (PyTorch), ``openvino``, ``cpu``. ``precision``: ``fp32``,
    ``fp16``/``bf16`` (GPUs; bf16 also OpenVINO on CPUs with native bf16), ``int8``
    (OpenVINO), ``auto`` (the fastest mode passing the accuracy gate here). Under ``auto``
    every fallback is logged with its reason.
    """
    device = str(device).strip().lower()
    if device not in DEVICES and not device.startswith("cuda:"):
        raise BackendUnavailable(f"unknown device {device!r}; expected one of {', '.join(DEVICES)} or cuda:N")
    if device == "torch" or device.startswith("cuda:"):
        return _torch_runner(net, checkpoint, device, precision)
    onnx_path = _resolve_onnx(net, onnx, checkpoint)
    manifest = load_manifest(onnx_path)
    if manifest["net"] != net_spec(net).name:
        raise ModelError(f"{onnx_path} is the {manifest['net']} net, expected {net_spec(net).name}")
    if device in ("cpu", "openvino"):
        return _cpu_runner(onnx_path, manifest, precision, threads, openvino=device == "openvino")
    gpu_precision = {"auto": "fp16"}.get(precision, precision)
    if device in ("auto", "tensorrt") and gpu_precision in ("fp32", "fp16", "bf16"):
        try:
            runner = _native_trt(onnx_path, manifest, gpu_precision, build_engine or device == "tensorrt")
        except Exception as err:  # noqa: BLE001 - engine build or accuracy gate failed
            if device == "tensorrt":
                raise
            log.warning("native TensorRT %s engine unavailable (%s); trying the next backend", gpu_precision, err)
            runner = None
        if runner is None and precision == "auto" and device == "auto":
            try:
                runner = _native_trt(onnx_path, manifest, "fp32", build_engine)
            except Exception as err:  # noqa: BLE001
                log.warning("native TensorRT fp32 engine unavailable (%s); trying the next backend", err)
        if runner is not None:
            return runner
        if device == "tensorrt":
            raise BackendUnavailable(
                "no native TensorRT engine can run here (needs `pip install 's2sr-cloud[gpu]'` and an NVIDIA GPU); "
                "try --device cuda or --device cpu"
            )
    providers = available_providers()
    if not providers:
        from .onnxrt import import_onnxruntime

        import_onnxruntime()  # MissingDependency naming the extra to install
    conflict = ort_conflict()
    if conflict:
        log.warning("%s", conflict)
    if device == "cuda" and "CUDAExecutionProvider" not in providers:
        from .torch_gpu import cuda_devices

        if cuda_devices():
            log.info("ONNX Runtime has no CUDA provider here; running the %s net on PyTorch CUDA", net)
            return _torch_runner(net, checkpoint, "cuda:0", precision)
    if device != "auto":
        if precision not in ("fp32", "auto"):
            raise BackendUnavailable(f"ONNX Runtime on {device} runs fp32 only; for --precision {precision} use "
                                     "--device tensorrt (fp16/bf16), --device torch (fp16/bf16) or --device cpu (bf16/int8)")
        return OnnxRunner(onnx_path, manifest, device, threads=threads)
    for dev, provider in _ORT_ORDER:
        if provider not in providers:
            continue
        if dev == "cpu":
            if precision not in CPU_PRECISIONS:
                log.warning("--device auto: no GPU backend here and the CPU does not run %s; running the %s net in fp32 "
                            "on the CPU (the output records fp32)", precision, net)
                precision = "fp32"
            return _cpu_runner(onnx_path, manifest, precision, threads, fastest_fp32=True)
        if precision not in ("fp32", "auto"):
            log.info("skipping ONNX Runtime %s: it runs fp32 only, --precision %s asked", dev, precision)
            continue
        try:
            return OnnxRunner(onnx_path, manifest, dev, threads=threads)
        except (BackendUnavailable, ModelError) as err:
            log.warning("backend %s unavailable (%s); trying the next one", dev, err)
    raise BackendUnavailable("no ONNX Runtime execution provider could load the model")


def load_runners(
    nets: Iterable[str] = ("net20", "net60"),
    *,
    onnx: Mapping[str, str | os.PathLike[str]] | None = None,
    checkpoint: Mapping[str, str | os.PathLike[str]] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    build_engine: bool = False,
    threads: int | None = None,
) -> dict[str, Runner]:
    """Runners for several nets: ``{"net20": runner, "net60": runner}``.

    ``onnx`` / ``checkpoint`` map net names (``net20``/``net60``) to files; nets not in
    them use the package's default weights.
    """
    out: dict[str, Runner] = {}
    for n in nets:
        name = net_spec(n).name
        out[name] = load_runner(
            name,
            onnx=(onnx or {}).get(name),
            checkpoint=(checkpoint or {}).get(name),
            device=device,
            precision=precision,
            build_engine=build_engine,
            threads=threads,
        )
    return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs seen by ``nvidia-smi`` (name, compute capability, memory, driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,compute_cap,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = ("name", "compute_capability", "memory", "driver")
    return [dict(zip(keys, (p.strip() for p in line.split(",")), strict=False)) for line in out.splitlines() if line.strip()]


def describe_backends() -> dict[str, Any]:
    """What this machine can run: versions, ORT providers, GPUs, default weights."""
    providers = available_providers()
    tensorrt = _version("tensorrt")
    gpu_list = gpus()
    return {
        "versions": {
            name: _version(name)
            for name in ("s2sr-cloud", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "torch", "onnx", "rasterio", "numpy")
        },
        "onnxruntime_providers": providers,
        "onnxruntime_conflict": ort_conflict(),
        "gpus": gpu_list,
        "backends": {
            "tensorrt (native)": bool(tensorrt and gpu_list),
            "onnxruntime TensorRT": "TensorrtExecutionProvider" in providers and bool(gpu_list),
            "onnxruntime CUDA": "CUDAExecutionProvider" in providers and bool(gpu_list),
            "onnxruntime CPU": "CPUExecutionProvider" in providers,
            "openvino CPU": _version("openvino") is not None,
            "torch": _version("torch") is not None,
        },
        "default_weights": {
            n: {"checkpoint": str(default_checkpoint(n) or "-"), "onnx": str(default_onnx(n) or "-")}
            for n in ("net20", "net60")
        },
    }


def will_run(precisions: tuple[str, ...] = ("fp32", "auto")) -> list[dict[str, Any]]:
    """What a default run would use here, per net and ``--precision``: the backend and precision
    chosen (the runner is loaded, then closed) and where the post-steps run (on the runner's device
    when it keeps its windows there, else on the host in NumPy). A choice that fails names why."""
    rows: list[dict[str, Any]] = []
    for net in ("net20", "net60"):
        if default_onnx(net) is None and default_checkpoint(net) is None:
            continue
        for precision in precisions:
            try:
                with load_runner(net, device="auto", precision=precision) as r:
                    ns = getattr(r, "array_namespace", "numpy")
                    on_device = getattr(r, "run_window", None) is not None and ns != "numpy"
                    dev = str(getattr(r, "device", "")) if on_device else ""
                    rows.append({"net": net, "precision_option": precision, "backend": r.backend, "precision": r.precision,
                                 "post_steps": f"device ({ns} on {dev})" if on_device else "host (NumPy)"})
            except Exception as err:  # noqa: BLE001 - a diagnostic: report, do not fail
                rows.append({"net": net, "precision_option": precision, "error": str(err)})
    return rows
