"""GPU throughput of DSen2 per backend and precision, and a full-size tile end to end.

Prints one line per backend/precision with the 10 m output Mpx/s of each net through the
tiled runtime (:func:`s2sr_cloud.sr.super_resolve`), both nets together, and the useful
TFLOP/s (output pixels x multiply-adds x 2):

  torch-eager     PyTorch eager on CUDA (fp16: the module in half precision)
  ort-cuda        ONNX Runtime, CUDA execution provider
  ort-trt         ONNX Runtime, TensorRT execution provider
  tensorrt        the native TensorRT engine (s2sr engine build), pinned host buffers
  ort-cpu         ONNX Runtime CPU (only with --include-cpu: the reference point)

fp16 runs the graph converted by s2sr_cloud.infer.lowp (trunk in fp16, I/O and global
residual in fp32) on the ONNX backends and the native engine. A backend that cannot run
here is skipped with a line saying why. Then ``e2e`` times a synthetic full-size tile
(default 10980 x 10980, real Sentinel-2 texture tiled, written as local COGs) through
the best backend with block reads overlapped with inference, into a 10 m COG.

Usage: python bench/gpu_throughput.py [--size 2040] [--tile 512] [--batch 4]
           [--onnx-dir DIR --variant dsen2] [--e2e-size 10980 | --no-e2e] [--include-cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2sr_cloud.bands import NETS, VARIANTS
from s2sr_cloud.sr import ArraySource, super_resolve

SCENE = Path(__file__).parents[1] / "s2sr_cloud" / "data" / "verify_T33UUB_120.npz"
BACKENDS = ("torch-eager", "ort-cuda", "ort-trt", "tensorrt")


class Skip(Exception):
    """A backend/precision that cannot run here."""


def macs_per_px(net: str, variant: str) -> int:
    spec, v = NETS[net], VARIANTS[variant]
    f = v.features
    return 9 * (spec.in_channels * f + 2 * v.depth * f * f + f * spec.out_channels)


def tiled_scene(size: int) -> ArraySource:
    """A ``size`` x ``size`` scene of real Sentinel-2 texture (the packaged crop, mirrored)."""
    with np.load(SCENE) as z:
        bands = {k: z[k] for k in ("b10", "b20", "b60")}
    out = {}
    for k, s in (("b10", 1), ("b20", 2), ("b60", 6)):
        a = bands[k]
        a = np.concatenate([a, a[:, ::-1]], axis=1)
        a = np.concatenate([a, a[:, :, ::-1]], axis=2)
        reps = -(-size // s // a.shape[1])
        out[k] = np.tile(a, (1, reps, reps))[:, : size // s, : size // s]
    return ArraySource(out["b10"], out["b20"], out["b60"])


def models(onnx_dir: str | None, variant: str, work: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """``{net: (onnx, manifest)}``: from --onnx-dir, the package defaults, or seeded random weights."""
    from s2sr_cloud.infer.manifest import load_manifest
    from s2sr_cloud.weights import default_onnx

    paths: dict[str, Path] = {}
    for net in NETS:
        p = Path(onnx_dir) / f"{net}_{variant}.onnx" if onnx_dir else default_onnx(net, variant)
        if p is None:
            import torch

            from s2sr_cloud.export import export_onnx
            from s2sr_cloud.nets import build_net, save_checkpoint

            torch.manual_seed(0)  # speed does not depend on the weights
            ck = save_checkpoint(build_net(net, variant), work / f"{net}.safetensors", provenance={"note": "benchmark"})
            p = export_onnx(ck, work / "onnx", verify=False).onnx
        paths[net] = p
    return {n: (p, load_manifest(p)) for n, p in paths.items()}


def lowp_onnx(onnx: Path, manifest: dict[str, Any], precision: str, work: Path) -> Path:
    """The fp16/bf16 conversion of ``onnx`` (what the native engine builds from), cached in ``work``."""
    import onnx as onnx_lib

    from s2sr_cloud.infer.lowp import convert

    out = work / f"{onnx.stem}.{precision}.onnx"
    if not out.exists():
        onnx_lib.save(convert(onnx_lib.load(str(onnx)), precision), str(out))
    return out


class TorchCuda:
    """PyTorch eager on CUDA; fp16 runs the module in half precision."""

    def __init__(self, manifest: dict[str, Any], precision: str) -> None:
        try:
            import torch
        except ImportError as err:
            raise Skip("torch is not installed") from err
        if not torch.cuda.is_available():
            raise Skip("torch has no CUDA device")
        from s2sr_cloud.nets import build_net

        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        self.torch, self.dtype = torch, torch.float16 if precision == "fp16" else torch.float32
        self.model = build_net(manifest["net"], manifest.get("variant", "dsen2")).eval().to("cuda", self.dtype)
        self.net, self.halo, self.backend = manifest["net"], int(manifest["halo"]), f"torch-cuda-{precision}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            y = self.model(self.torch.from_numpy(x).to("cuda", self.dtype, non_blocking=True))
            return y.float().cpu().numpy()


def make_runner(backend: str, precision: str, onnx: Path, manifest: dict[str, Any], args: argparse.Namespace, work: Path) -> Any:
    """The runner of one backend/precision, or :class:`Skip`."""
    from s2sr_cloud.errors import S2SRError
    from s2sr_cloud.infer.onnxrt import OnnxRunner, available_providers

    if backend == "torch-eager":
        return TorchCuda(manifest, precision)
    if backend == "tensorrt":
        from s2sr_cloud.infer.trt import TrtRunner, current_gpu, import_tensorrt
        from s2sr_cloud.infer.trt_build import build_engine

        if import_tensorrt() is None or current_gpu() is None:
            raise Skip("needs tensorrt + cuda-python and an NVIDIA GPU")
        try:
            entry = build_engine(onnx, manifest, precision=precision, tile=args.tile, max_batch=args.batch, directory=args.engine_dir)
        except S2SRError as err:
            raise Skip(str(err)) from err
        return TrtRunner(entry)
    device = {"ort-cuda": "cuda", "ort-trt": "ort-trt", "ort-cpu": "cpu"}[backend]
    provider = {"cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider", "cpu": "CPUExecutionProvider"}[device]
    if provider not in available_providers():
        raise Skip(f"ONNX Runtime has no {provider} here (install onnxruntime-gpu)")
    path = onnx if precision == "fp32" else lowp_onnx(onnx, manifest, precision, work)
    try:
        return OnnxRunner(path, manifest, device)
    except S2SRError as err:
        raise Skip(str(err)) from err


def measure(runners: dict[str, Any], src: ArraySource, args: argparse.Namespace) -> dict[str, float]:
    """Mpx/s per net: one untimed pass (engine builds, autotuning), then ``--reps`` timed."""
    n = src.shape10[0]
    out = {}
    for net, r in runners.items():
        super_resolve(src, {net: r}, tile=args.tile, batch=args.batch)
        best = min(_timed(lambda r=r, net=net: super_resolve(src, {net: r}, tile=args.tile, batch=args.batch)) for _ in range(args.reps))
        out[net] = n * n / best / 1e6
    return out


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def gpu_name() -> str:
    from s2sr_cloud.infer.trt import current_gpu

    g = current_gpu()
    return f"{g.name} (sm {g.compute_capability})" if g else "no CUDA GPU"


def throughput(args: argparse.Namespace, mods: dict[str, tuple[Path, dict[str, Any]]], work: Path) -> None:
    src = tiled_scene(args.size)
    gpu = gpu_name()
    backends = (*BACKENDS, "ort-cpu") if args.include_cpu else BACKENDS
    for backend in backends:
        for precision in args.precisions:
            label = f"{backend:<12} {precision:<5}"
            try:
                runners = {n: make_runner(backend, precision, p, m, args, work) for n, (p, m) in mods.items()}
                mpx = measure(runners, src, args)
            except Skip as why:
                print(f"{label} skipped: {why}", flush=True)
                continue
            except Exception as err:  # noqa: BLE001 - a backend failing at run time must not end the benchmark
                print(f"{label} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
                continue
            both = 1 / sum(1 / v for v in mpx.values())  # Mpx/s through net20 then net60
            if args.variant in VARIANTS:
                tflops = both * 1e6 * 2 * sum(macs_per_px(n, args.variant) for n in mpx) / 1e12
                flops = f"{tflops:6.2f} TFLOP/s useful"
            else:
                flops = "TFLOP/s n/a (not a DSen2 variant)"
            acc = [r.entry.sidecar["accuracy"] for r in runners.values() if hasattr(r, "entry")]
            gate = "; engine vs fp32 model: " + ", ".join(
                f"{n} mean {a['mean_abs_dn']:.3f} DN (max {a['max_abs_dn']:.2f})" for n, a in zip(runners, acc, strict=True)
            ) if acc else ""
            print(
                f"{label} net20 {mpx['net20']:9.2f} Mpx/s  net60 {mpx['net60']:9.2f} Mpx/s  both {both:9.2f} Mpx/s  "
                f"{flops}; {args.size}x{args.size} px, tile {args.tile}, batch {args.batch}, {gpu}{gate}",
                flush=True,
            )


def write_cogs(size: int, folder: Path) -> Path:
    """Per-band COGs of a synthetic ``size``² tile (real texture, grid of the T18SVG test crop)."""
    import rasterio
    from rasterio.transform import Affine

    from s2sr_cloud.bands import GROUPS

    marker = folder / f"done-{size}.json"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    ref = Path(__file__).parents[1] / "tests" / "data" / "T18SVG_crop240" / "T18SVG_20160112_B02.tif"
    with rasterio.open(ref) as r:
        crs, t = r.crs, r.transform
    src = tiled_scene(size)
    for res, key in ((10, "b10"), (20, "b20"), (60, "b60")):
        arr = getattr(src, key)
        s = res // 10
        for i, band in enumerate(GROUPS[res]):
            prof = {
                "driver": "COG", "dtype": "uint16", "count": 1, "width": arr.shape[2], "height": arr.shape[1],
                "crs": crs, "transform": Affine(t.a * s, 0, t.c, 0, t.e * s, t.f), "nodata": 0,
                "compress": "deflate", "blocksize": 512, "num_threads": "all_cpus",
            }
            with rasterio.open(folder / f"SYNTH_{band}.tif", "w", **prof) as d:
                d.write(arr[i].astype(np.uint16), 1)
                d.update_tags(NOTE="synthetic benchmark data: tiled real Sentinel-2 texture, not a real scene")
    marker.write_text(json.dumps({"size": size}))
    return folder


def end_to_end(args: argparse.Namespace, mods: dict[str, tuple[Path, dict[str, Any]]], work: Path) -> None:
    from s2sr_cloud.infer import load_runners
    from s2sr_cloud.infer.overlap import PerThreadSource, stream_blocks_overlapped
    from s2sr_cloud.io.bandfiles import BandFilesSource, find_band_files
    from s2sr_cloud.io.cog import CogWriter
    from s2sr_cloud.sr import assemble_sr_bands, to_uint16

    t0 = time.perf_counter()
    folder = write_cogs(args.e2e_size, Path(args.cog_dir) if args.cog_dir else work / "cogs")
    prep = time.perf_counter() - t0
    runners = load_runners(onnx={n: p for n, (p, _) in mods.items()}, device=args.e2e_device, precision=args.e2e_precision, build_engine=True)
    backend = ", ".join(sorted({r.backend for r in runners.values()}))
    precision = ",".join(sorted({str(getattr(r, "precision", "fp32")) for r in runners.values()}))
    files = find_band_files(folder)
    for workers in args.e2e_workers:
        out = work / f"e2e-{workers}.tif"
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        t0 = time.perf_counter()
        with PerThreadSource(lambda: BandFilesSource(files)) as src:
            ref = BandFilesSource(files)
            with ref:
                crs, transform = ref.crs, ref.transform
            h, w = src.shape10
            with CogWriter(out, width=w, height=h, count=8, crs=crs, transform=transform, nodata=0,
                           tags={"NOTE": "benchmark output of synthetic input"}) as cog:
                for win, o in stream_blocks_overlapped(src, runners, block=args.block, tile=args.tile, batch=args.batch, workers=workers):
                    cog.write(to_uint16(assemble_sr_bands(o)), win)
        dt = time.perf_counter() - t0
        print(
            f"e2e          {precision:<5} {h}x{w} px from local COGs -> 10 m COG in {dt:8.1f} s "
            f"({h * w / dt / 1e6:7.2f} Mpx/s, both nets, block {args.block}, workers {workers}); {backend}; "
            f"{gpu_name()}; writing the input COGs took {prep:.0f} s",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2040, help="scene side in 10 m px for the per-backend figures (multiple of 6)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "fp16"])
    p.add_argument("--onnx-dir", help="folder with net20_<variant>.onnx and net60_<variant>.onnx (+ manifests)")
    p.add_argument("--variant", default="dsen2")
    p.add_argument("--engine-dir", help="TensorRT engine cache [default: a temporary folder]")
    p.add_argument("--include-cpu", action="store_true", help="also measure ONNX Runtime CPU")
    p.add_argument("--no-e2e", action="store_true")
    p.add_argument("--e2e-size", type=int, default=10980)
    p.add_argument("--e2e-device", default="auto")
    p.add_argument("--e2e-precision", default="fp16")
    p.add_argument("--e2e-workers", type=lambda s: [int(x) for x in s.split(",")], default=[2], help="e.g. 1,2 to compare")
    p.add_argument("--block", type=int, default=2040)
    p.add_argument("--cog-dir", help="keep the synthetic input COGs here (reused between runs)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s2sr-bench-"))
    try:
        args.engine_dir = args.engine_dir or str(work / "engines")
        mods = models(args.onnx_dir, args.variant, work)
        throughput(args, mods, work)
        if not args.no_e2e:
            end_to_end(args, mods, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
