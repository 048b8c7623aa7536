"""TensorRT engines: keys, cache lookup and refusals, precision conversion, accuracy gate,
backend fallback, the overlapped block pipeline, the CLI; and (marked gpu) real builds.

Everything except executing an engine runs on CPU with real ONNX Runtime sessions,
real files and real ``cuda-python`` (which reports no device here).
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from s2sr_cloud.errors import EngineAccuracyError, EngineMismatch
from s2sr_cloud.infer.engine_cache import (
    EngineSpec,
    GpuInfo,
    Profile,
    check_precision,
    engine_dir,
    find_engine,
    iter_entries,
    make_sidecar,
)
from s2sr_cloud.sr import ArraySource, Window, iter_blocks, super_resolve

H100 = GpuInfo(name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
L4 = GpuInfo(name="NVIDIA L4", compute_capability="8.9")
TRT = "11.4.0.106"
SHA = "3fa9c1d2e4b5" + "0" * 52
MANIFEST = {"name": "net20_dsen2", "net": "net20", "variant": "dsen2", "onnx_sha256": SHA,
            "inputs": ["B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"], "halo": 14}


def spec(gpu: GpuInfo = H100, trt: str = TRT, precision: str = "fp32", manifest: dict | None = None, **profile: int) -> EngineSpec:
    return EngineSpec.from_manifest(manifest or MANIFEST, gpu, trt, precision, **profile)


def put(directory: Path, s: EngineSpec, payload: bytes = b"plan") -> Path:
    """A cache entry as build_engine writes it (engine bytes are opaque to the cache)."""
    directory.mkdir(parents=True, exist_ok=True)
    eng = directory / f"{s.key}.engine"
    eng.write_bytes(payload)
    eng.with_suffix(".json").write_text(json.dumps(make_sidecar(s, eng)))
    return eng


# --- keys -------------------------------------------------------------------------------
def test_key_names_everything():
    key = spec(precision="fp16", tile=256, max_batch=8).key
    assert key == "net20_dsen2-3fa9c1d2e4b5-nvidia-h100-80gb-hbm3-sm90-trt11.4.0.106-fp16-t256b8"


@pytest.mark.parametrize(
    "change",
    [
        {"gpu": L4},
        {"gpu": GpuInfo(name=H100.name, compute_capability="9.1")},
        {"trt": "10.13.0.35"},
        {"precision": "bf16"},
        {"manifest": {**MANIFEST, "onnx_sha256": "ab" * 32}},
        {"tile": 1024},
        {"max_batch": 2},
    ],
)
def test_key_changes_with_each_field(change):
    assert spec(**change).key != spec().key


def test_precision_and_profile_validation():
    assert check_precision("FP16") == "fp16"
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        check_precision("int8")
    with pytest.raises(ValueError, match="invalid engine profile"):
        Profile(channels=10, halo=14, tile=0)
    p = Profile(channels=10, halo=14, tile=256, max_batch=4)
    assert p.shapes() == {"min": [1, 10, 29, 29], "opt": [4, 10, 284, 284], "max": [4, 10, 284, 284]}
    assert p.covers((9, 10, 284, 100)) and not p.covers((1, 10, 285, 100)) and not p.covers((1, 12, 100, 100))


def test_engine_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv("S2SR_ENGINE_DIR", raising=False)
    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "cache"))
    assert engine_dir() == tmp_path / "cache" / "engines"  # one cache folder for every tuning cache
    monkeypatch.setenv("S2SR_ENGINE_DIR", str(tmp_path))
    assert engine_dir() == tmp_path
    assert engine_dir("x") == Path("x")


# --- lookup -------------------------------------------------------------------------------
def test_lookup_finds_match_and_prefers_largest_tile(tmp_path):
    put(tmp_path, spec(tile=256))
    big = put(tmp_path, spec(tile=1024))
    put(tmp_path, spec(gpu=L4))  # another GPU: ignored, not an error
    put(tmp_path, spec(precision="fp16"))  # another precision: ignored
    found = find_engine(tmp_path, spec(tile=1))
    assert found is not None and found.engine == big
    assert find_engine(tmp_path, spec(tile=512)).engine == big
    assert find_engine(tmp_path, spec(tile=2048)) is None  # no profile that large
    assert find_engine(tmp_path / "missing", spec()) is None


def test_lookup_ignores_other_gpus(tmp_path):
    put(tmp_path, spec(gpu=L4))
    assert find_engine(tmp_path, spec()) is None


@pytest.mark.parametrize(
    ("cached", "words"),
    [
        (spec(manifest={**MANIFEST, "onnx_sha256": "ab" * 32}), ["stale", "another ONNX", "abababababab"]),
        (spec(trt="10.13.0.35"), ["stale", "TensorRT", "10.13.0.35"]),
    ],
)
def test_lookup_refuses_stale(tmp_path, cached, words):
    put(tmp_path, cached)
    with pytest.raises(EngineMismatch) as exc:
        find_engine(tmp_path, spec())
    msg = str(exc.value)
    assert all(w in msg for w in words), msg
    assert "s2sr engine build" in msg and "--device tensorrt" in msg


def test_lookup_refuses_tampered_engine(tmp_path):
    eng = put(tmp_path, spec())
    eng.write_bytes(b"plan, truncated or overwritten")
    with pytest.raises(EngineMismatch, match="sha256"):
        find_engine(tmp_path, spec())


def test_lookup_refuses_renamed_foreign_engine(tmp_path):
    """An engine for an L4 copied under the H100 key is refused by its sidecar."""
    src = put(tmp_path / "other", spec(gpu=L4))
    dst = tmp_path / f"{spec().key}.engine"
    dst.write_bytes(src.read_bytes())
    side = json.loads(src.with_suffix(".json").read_text())
    dst.with_suffix(".json").write_text(json.dumps({**side, "key": spec().key}))
    with pytest.raises(EngineMismatch, match="renamed, copied or its sidecar edited"):
        find_engine(tmp_path, spec())
    side["key"] = "something-else"
    dst.with_suffix(".json").write_text(json.dumps(side))
    from s2sr_cloud.infer.engine_cache import CacheEntry, verify_entry

    with pytest.raises(EngineMismatch, match="renamed, copied"):
        verify_entry(CacheEntry(engine=dst, sidecar=side))


def test_entries_without_valid_sidecar_are_skipped(tmp_path, caplog):
    (tmp_path / "orphan.engine").write_bytes(b"x")
    (tmp_path / "bad.engine").write_bytes(b"x")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.engine").write_bytes(b"x")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something/else"}))
    good = put(tmp_path, spec())
    assert [e.engine for e in iter_entries(tmp_path)] == [good]
    assert "no sidecar" in caplog.text and "bad.json" in caplog.text


def test_sidecar_content(tmp_path):
    s = spec(precision="bf16", tile=128, max_batch=2)
    side = json.loads(put(tmp_path, s).with_suffix(".json").read_text())
    assert side["key"] == s.key and side["precision"] == "bf16" and side["tensorrt_version"] == TRT
    assert side["gpu_name"] == H100.name and side["compute_capability"] == "9.0"
    assert side["profile"]["max"] == [2, 10, 156, 156] and side["engine_bytes"] == 4
    assert len(side["engine_sha256"]) == 64


# --- precision conversion --------------------------------------------------------------------
def test_bf16_bits_round_to_nearest_even():
    from s2sr_cloud.infer.lowp import from_bf16_bits, to_bf16_bits

    x = np.array([1.0, -2.5, 1.00390625, 1.01171875, np.nan, 3.0e38], np.float32)
    bits = to_bf16_bits(x)
    assert bits[0] == 0x3F80 and bits[1] == 0xC020
    assert bits[2] == 0x3F80  # 1 + 2^-8 is a tie: rounds to even (1.0)
    assert bits[3] == 0x3F82  # 1 + 3·2^-8 is a tie: rounds to even (1 + 2^-6)
    assert np.isnan(from_bf16_bits(bits)[4])
    y = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert np.all(np.abs(from_bf16_bits(to_bf16_bits(y)) - y) <= np.abs(y) * 2**-8)


def _ort(model_or_path, x):
    import onnxruntime as ort

    src = model_or_path if isinstance(model_or_path, bytes) else str(model_or_path)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_fp16_conversion_keeps_io_and_residual_fp32(tiny_onnx):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    from s2sr_cloud.infer.lowp import convert

    path, _ = tiny_onnx
    m = convert(onnx.load(str(path)), "fp16")
    g = m.graph
    assert g.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {t.data_type for t in g.initializer} == {TensorProto.FLOAT16}
    last = g.node[-1]
    assert last.op_type == "Add" and last.output[0] == "output"
    producers = {o: n for n in g.node for o in n.output}
    ops = sorted(producers[i].op_type for i in last.input)
    assert ops == ["Cast", "Slice"]  # trunk cast back to fp32, LR bands sliced from the fp32 input
    x = (np.random.default_rng(1).random((2, 10, 40, 36)) * 3).astype(np.float32)
    ref, got = _ort(path, x), _ort(m.SerializeToString(), x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).mean() * 2000 < 1.0  # mean |diff| under 1 DN
    assert np.abs(got - ref).max() * 2000 < 8.0


def test_bf16_conversion_is_valid_onnx(tiny_onnx):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    from s2sr_cloud.infer.lowp import BF16_MIN_OPSET, convert

    path, _ = tiny_onnx
    m = convert(onnx.load(str(path)), "bf16")  # convert() runs onnx.checker (full check)
    assert {t.data_type for t in m.graph.initializer} == {TensorProto.BFLOAT16}
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= BF16_MIN_OPSET
    with pytest.raises(ValueError, match="fp16 or bf16"):
        convert(onnx.load(str(path)), "int8")


def test_fp16_conversion_of_a_torch_export(tmp_path):
    """The converter handles the graph torch's exporter writes for a real DSen2 module."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from s2sr_cloud.bands import VariantSpec, net_spec
    from s2sr_cloud.infer.lowp import convert
    from s2sr_cloud.nets.model import DSen2

    torch.manual_seed(0)
    model = DSen2(net_spec("60"), VariantSpec("dsen2", 2, 16)).eval()
    path = tmp_path / "net60.onnx"
    axes = {0: "b", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 12, 32, 32),), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, opset_version=17, dynamo=False)
    x = (np.random.default_rng(2).random((1, 12, 48, 40)) * 2).astype(np.float32)
    got = _ort(convert(onnx.load(str(path)), "fp16").SerializeToString(), x)
    assert np.abs(got - _ort(path, x)).mean() * 2000 < 2.0


# --- accuracy gate -------------------------------------------------------------------------
def test_gate_thresholds():
    from s2sr_cloud.infer.trt_build import FP32_MAX_SCALED, LOWP_MAX_MEAN_DN, gate

    acc = {"scene": "s.npz", "mean_abs_dn": 0.3, "max_abs_dn": 1.5, "max_abs_scaled": 1.5 / 2000}
    assert gate("fp32", acc)["passed"] and gate("fp32", acc)["tolerance"] == FP32_MAX_SCALED
    with pytest.raises(EngineAccuracyError, match="--precision fp32"):
        gate("fp32", {**acc, "max_abs_dn": 4.0, "max_abs_scaled": 4.0 / 2000})
    ok = gate("fp16", {**acc, "mean_abs_dn": LOWP_MAX_MEAN_DN})
    assert ok["passed"] and ok["criterion"] == "mean |diff| (DN)"
    with pytest.raises(EngineAccuracyError, match=r"bf16 engine .* mean \|diff\| \(DN\) = 12.*--max-mean-dn"):
        gate("bf16", {**acc, "mean_abs_dn": 12.0})
    assert gate("bf16", {**acc, "mean_abs_dn": 12.0}, max_mean_dn=15)["passed"]


def test_accuracy_report_on_real_imagery(tiny_onnx):
    """The gate's measurement itself: ONNX Runtime vs ONNX Runtime is exactly 0 DN."""
    from s2sr_cloud.infer.onnxrt import OnnxRunner
    from s2sr_cloud.infer.trt_build import accuracy

    path, manifest = tiny_onnx
    runner = OnnxRunner(path, manifest, "cpu")
    runner.tile = 64  # type: ignore[attr-defined]
    acc = accuracy(runner, path, manifest)
    assert acc["mean_abs_dn"] == 0.0 and acc["max_abs_dn"] == 0.0 and acc["scene"].endswith(".npz")


# --- backend fallback without TensorRT / GPU ---------------------------------------------------
def test_native_runner_is_none_without_gpu(tiny_onnx, tmp_path):
    from s2sr_cloud.infer.trt import current_gpu
    from s2sr_cloud.infer.trt_select import native_runner_if_cached

    path, manifest = tiny_onnx
    put(tmp_path / "engines", spec(manifest={**manifest, "name": "net20_tiny"}))
    assert current_gpu() is None
    assert native_runner_if_cached(path, manifest, precision="fp32", build=True, directory=tmp_path / "engines") is None


def test_cuda_python_reports_no_device():
    """Real cuda-python on a machine without a driver: zero devices, no exception."""
    pytest.importorskip("cuda.bindings")
    from s2sr_cloud.infer.cuda import device_count

    assert device_count() == 0


def test_cuda_python_has_every_call_the_runner_uses():
    """Names in infer/cuda.py exist in the installed cuda-python (typos would only show on a GPU)."""
    import re

    rt = pytest.importorskip("cuda.bindings.runtime")
    import s2sr_cloud.infer.cuda as mod

    names = set(re.findall(r"(?:rt|cudart\(\))\.(cuda\w+)", Path(mod.__file__).read_text()))
    assert {"cudaMallocHost", "cudaMemcpyAsync", "cudaStreamSynchronize"} <= names
    assert [n for n in names if not hasattr(rt, n)] == []
    assert hasattr(rt.cudaMemcpyKind, "cudaMemcpyHostToDevice") and hasattr(rt.cudaMemcpyKind, "cudaMemcpyDeviceToHost")
    assert hasattr(rt.cudaError_t, "cudaSuccess")


def test_cuda_errors_become_backend_unavailable():
    """A real CUDA call without a driver: a clear error, not a crash or a bare tuple."""
    pytest.importorskip("cuda.bindings.runtime")
    from s2sr_cloud.errors import BackendUnavailable
    from s2sr_cloud.infer.cuda import PinnedBuffer, Stream

    with pytest.raises(BackendUnavailable, match="CUDA error .*driver"):
        PinnedBuffer(1024)
    with pytest.raises(BackendUnavailable, match="CUDA error"):
        Stream()


def test_load_engine_by_path_without_gpu(tmp_path):
    from s2sr_cloud.errors import BackendUnavailable
    from s2sr_cloud.infer.trt import load_engine

    eng = put(tmp_path, spec())
    with pytest.raises(BackendUnavailable, match="NVIDIA GPU"):
        load_engine(eng)
    eng.with_suffix(".json").unlink()
    with pytest.raises(EngineMismatch, match="no sidecar"):
        load_engine(eng)


def test_fake_tensorrt_without_gpu_falls_back(tiny_onnx, tmp_path, monkeypatch):
    """A TensorRT install on a machine without GPU: native is skipped, ORT takes over."""
    fake = tmp_path / "site" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "11.4.0.106"\n')
    import importlib.util
    import sys

    loader = importlib.util.spec_from_file_location("tensorrt", fake / "__init__.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "tensorrt", module)  # removed again after the test
    from s2sr_cloud.infer.select import load_runner
    from s2sr_cloud.infer.trt import import_tensorrt

    assert import_tensorrt().__version__ == "11.4.0.106"
    path, _ = tiny_onnx
    runner = load_runner("net20", onnx=path, device="auto")
    assert runner.backend == "onnxruntime-cpu"


def test_forced_tensorrt_is_refused_without_gpu(tiny_onnx):
    from s2sr_cloud.errors import BackendUnavailable
    from s2sr_cloud.infer.select import load_runner

    path, _ = tiny_onnx
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        load_runner("net20", onnx=path, device="tensorrt")


# --- overlapped pipeline ---------------------------------------------------------------------
@pytest.fixture
def malmo_source(malmo_npz):
    with np.load(malmo_npz) as z:
        return ArraySource(z["b10"][:, :240, :180], z["b20"][:, :120, :90], z["b60"][:, :40, :30])


def _ort_runners(pair):
    from s2sr_cloud.infer.onnxrt import OnnxRunner

    return {n: OnnxRunner(p, m, "cpu", threads=1) for n, (p, m) in pair.items()}


def test_overlapped_blocks_equal_sequential(tiny_onnx_pair, malmo_source):
    from s2sr_cloud.infer.overlap import iter_super_resolved

    runners = _ort_runners(tiny_onnx_pair)
    blocks = list(iter_blocks(malmo_source.shape10, 96))
    seen: list[Window] = []
    got = list(iter_super_resolved(malmo_source, runners, iter(blocks), tile=48, on_block=seen.append))
    assert [w for w, _ in got] == blocks == seen
    whole = super_resolve(malmo_source, runners, tile=48)
    for w, out in got:
        for net, arr in out.items():
            ref = whole[net][:, w.row : w.row + w.height, w.col : w.col + w.width]
            np.testing.assert_allclose(arr, ref, atol=1e-2)  # seamless: blocks == whole image


class SlowSource:
    """A real source whose reads take time, like COG windows over HTTP; records them."""

    def __init__(self, inner: ArraySource, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.reads: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    @property
    def shape10(self):
        return self.inner.shape10

    def read(self, res, rows, cols):
        t0 = time.perf_counter()
        time.sleep(self.delay)
        with self._lock:
            self.reads.append(((t0, time.perf_counter()), threading.current_thread().name))
        return self.inner.read(res, rows, cols)


def test_next_block_is_read_while_current_is_inferred(tiny_onnx_pair, malmo_source):
    from s2sr_cloud.infer.overlap import LockedRunner, iter_super_resolved

    src = SlowSource(malmo_source, 0.02)
    runners = {n: LockedRunner(r) for n, r in _ort_runners(tiny_onnx_pair).items()}
    blocks = list(iter_blocks(src.shape10, 120))
    t0 = time.perf_counter()
    list(iter_super_resolved(src, runners, blocks, tile=60, workers=2))
    overlapped = time.perf_counter() - t0
    calls = sorted(c for r in runners.values() for c in r.calls)
    threads = {name for _, name in src.reads}
    assert len(threads) == 2
    # some read was in progress while a runner call ran (another block's inference)
    assert any(r0 < b and a < r1 for (r0, r1), _ in src.reads for a, b in calls)
    src.reads.clear()
    t0 = time.perf_counter()
    list(iter_super_resolved(src, runners, blocks, tile=60, workers=1))
    assert overlapped < time.perf_counter() - t0


def test_overlapped_stream_over_real_geotiffs(tiny_onnx_pair):
    """Drop-in for stream_blocks on real per-band GeoTIFFs, one GDAL handle set per thread."""
    from s2sr_cloud.infer.overlap import PerThreadSource, stream_blocks_overlapped
    from s2sr_cloud.io.bandfiles import BandFilesSource, find_band_files
    from s2sr_cloud.sr import stream_blocks
    from tests.conftest import DATA

    files = find_band_files(DATA / "T18SVG_crop240")
    runners = _ort_runners(tiny_onnx_pair)
    ticks: list[tuple[int, int]] = []
    opened: list[str] = []

    def factory() -> BandFilesSource:
        opened.append(threading.current_thread().name)
        return BandFilesSource(files)

    with PerThreadSource(factory) as src:
        got = list(stream_blocks_overlapped(src, runners, block=120, tile=60, on_progress=lambda d, t: ticks.append((d, t))))
        assert len(src._open) == 1  # the workers closed theirs in their own threads
    assert sorted(opened) == ["MainThread", "s2sr-block-0", "s2sr-block-1"] and src._open == []
    with BandFilesSource(files) as one:
        ref = list(stream_blocks(one, runners, block=120, tile=60))
    assert [w for w, _ in got] == [w for w, _ in ref]
    for (_, a), (_, b) in zip(got, ref, strict=True):
        for net in a:
            np.testing.assert_array_equal(a[net], b[net])
    assert max(d for d, _ in ticks) == ticks[0][1] == 4 * 4 * 2  # 4 blocks x 4 tiles x 2 nets


class FailingSource(SlowSource):
    """Reads of the 3rd block's rows (the 10 m row 300 inside them) fail, like a damaged COG."""

    def read(self, res, rows, cols):
        if rows[0] * res // 10 <= 300 < rows[1] * res // 10:
            from s2sr_cloud.errors import RasterReadError

            raise RasterReadError("cannot read rows (truncated file)")
        return super().read(res, rows, cols)


def test_worker_error_reaches_the_consumer_and_threads_end(tiny_onnx_pair, malmo_npz):
    from s2sr_cloud.errors import RasterReadError
    from s2sr_cloud.infer.overlap import iter_super_resolved

    with np.load(malmo_npz) as z:
        src = FailingSource(ArraySource(z["b10"][:, :480, :120], z["b20"][:, :240, :60], z["b60"][:, :80, :20]), 0.0)
    blocks = list(iter_blocks(src.shape10, 120))
    got: list[Window] = []
    stream = iter_super_resolved(src, _ort_runners(tiny_onnx_pair), blocks, tile=60, on_block=got.append)
    with pytest.raises(RasterReadError, match="truncated"):
        list(stream)
    assert got == blocks[:2]  # blocks 0 and 1 delivered, block 2 failed
    assert not [t for t in threading.enumerate() if t.name.startswith("s2sr-block")]


def test_gpu_bench_runs_on_cpu_and_skips_each_gpu_backend(tmp_path):
    """bench/gpu_throughput.py end to end on tiny nets: a skip line per GPU backend and
    precision, an ONNX Runtime CPU line, and the end-to-end COG run."""
    import subprocess
    import sys

    from tests._fx_engine import make_tiny_dsen2
    from tests.conftest import DATA

    for i, n in enumerate(("net20", "net60")):
        make_tiny_dsen2(tmp_path / f"{n}_tiny.onnx", net=n, seed=i)
    bench = DATA.parents[1] / "bench" / "gpu_throughput.py"
    res = subprocess.run(
        [sys.executable, str(bench), "--onnx-dir", str(tmp_path), "--variant", "tiny", "--size", "120", "--tile", "56",
         "--batch", "2", "--reps", "1", "--e2e-size", "240", "--block", "120", "--include-cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for backend in ("torch-eager", "ort-cuda", "ort-trt", "tensorrt"):
        for precision in ("fp32", "fp16"):
            assert any(line.startswith(backend) and f" {precision} " in line and "skipped:" in line for line in lines), lines
    assert sum(line.startswith("ort-cpu") and "Mpx/s" in line for line in lines) == 2
    assert any(line.startswith("e2e") and "240x240 px" in line for line in lines), lines


# --- CLI -------------------------------------------------------------------------------------
cli = CliRunner()


def test_cli_engine_list_and_check(tmp_path, tiny_onnx):
    from s2sr_cloud.cli import app

    path, manifest = tiny_onnx
    d = tmp_path / "engines"
    s = spec(manifest={**manifest, "name": "net20_tiny"})
    eng = put(d, s)
    r = cli.invoke(app, ["engine", "list", "--engine-dir", str(d), "--json"])
    assert r.exit_code == 0, r.output
    assert [e["key"] for e in json.loads(r.stdout)] == [s.key]
    r = cli.invoke(app, ["engine", "list", "--engine-dir", str(d)])
    assert r.exit_code == 0 and "TensorRT engines" in r.stdout and "fp32" in r.stdout
    target = ["--gpu", H100.name, "--cc", "9.0", "--trt", TRT, "--engine-dir", str(d)]
    r = cli.invoke(app, ["engine", "check", str(path), *target])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["engine", "check", str(path), "--precision", "fp16", *target])
    assert r.exit_code == 1 and "s2sr engine build" in r.output
    r = cli.invoke(app, ["engine", "check", str(eng), "--gpu", L4.name, "--cc", "8.9", "--trt", TRT])
    assert r.exit_code != 0 and isinstance(r.exception, EngineMismatch) and "foreign" in str(r.exception)
    r = cli.invoke(app, ["engine", "check", str(eng)])  # no GPU here: integrity only
    assert r.exit_code == 0, r.output


def test_cli_engine_build_without_gpu_is_a_clear_error(tiny_onnx, tmp_path):
    from s2sr_cloud.cli import app
    from s2sr_cloud.errors import BackendUnavailable, MissingDependency

    path, _ = tiny_onnx
    r = cli.invoke(app, ["engine", "build", str(path), "--engine-dir", str(tmp_path)])
    assert isinstance(r.exception, MissingDependency | BackendUnavailable), r.output
    assert "gpu" in str(r.exception).lower()
    assert not list(tmp_path.glob("*.engine"))


def test_cli_error_message_keeps_brackets(tiny_onnx, tmp_path):
    """The console entry point prints the extra to install verbatim (not eaten as markup)."""
    import subprocess
    import sys

    from s2sr_cloud.infer.trt import import_tensorrt

    if import_tensorrt() is not None:
        pytest.skip("TensorRT is installed here: the command would build an engine")
    path, _ = tiny_onnx
    res = subprocess.run(
        [sys.executable, "-c", "from s2sr_cloud.cli import main; main()", "engine", "build", str(path), "--engine-dir", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120,
    )
    assert res.returncode == 8, res.stderr
    assert "pip install 's2sr-cloud[gpu]'" in res.stderr and "Traceback" not in res.stderr


# --- on a GPU --------------------------------------------------------------------------------
@pytest.fixture
def gpu_trt(request):
    """Native TensorRT + a GPU, or skip (fail under --gpu, where a GPU is promised)."""
    from s2sr_cloud.infer.trt import current_gpu, import_tensorrt

    missing = "tensorrt is not installed" if import_tensorrt() is None else "no CUDA device visible to cuda-python" if current_gpu() is None else None
    if missing and request.config.getoption("--gpu"):
        pytest.fail(f"--gpu given but {missing}")
    if missing:
        pytest.skip(missing)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_gpu_build_cache_and_reuse(gpu_trt, tiny_onnx, tmp_path, precision):
    from s2sr_cloud.infer.trt_select import native_runner_if_cached
    from s2sr_cloud.infer.trt_build import build_engine

    path, manifest = tiny_onnx
    d = tmp_path / "engines"
    entry = build_engine(path, manifest, precision=precision, tile=128, max_batch=2, directory=d)
    acc = entry.sidecar["accuracy"]
    print(f"{precision}: mean |diff| {acc['mean_abs_dn']:.4f} DN, max {acc['max_abs_dn']:.4f} DN")
    assert acc["passed"]
    runner = native_runner_if_cached(path, manifest, precision=precision, build=False, directory=d)
    assert runner is not None and runner.backend == f"tensorrt-{precision}"
    x = (np.random.default_rng(0).random((5, 10, 100, 136)) * 3).astype(np.float32)  # 5 > max_batch: chunked
    np.testing.assert_allclose(runner(x), _ort(path, x), atol=1e-3 if precision == "fp32" else 0.05)
    with pytest.raises(EngineMismatch, match="outside"):
        runner(np.zeros((1, 10, 200, 200), np.float32))
    stale = {**manifest, "onnx_sha256": "ab" * 32}
    with pytest.raises(EngineMismatch, match="stale"):
        native_runner_if_cached(path, stale, precision=precision, build=False, directory=d)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_fp32_engine_matches_pytorch_on_real_imagery(gpu_trt, tmp_path, malmo_npz):
    """The issue's gate: FP32 engine vs PyTorch ≤ 1e-3 in scaled units, full-size DSen2."""
    torch = pytest.importorskip("torch")
    from s2sr_cloud.export import export_onnx
    from s2sr_cloud.infer.manifest import load_manifest
    from s2sr_cloud.infer.trt_select import native_runner_if_cached
    from s2sr_cloud.nets import build_net, save_checkpoint
    from s2sr_cloud.nets.model import TorchRunner
    from s2sr_cloud.weights import default_checkpoint

    with np.load(malmo_npz) as z:
        src = ArraySource(z["b10"][:, :300, :300], z["b20"][:, :150, :150], z["b60"][:, :50, :50])
    for net in ("net20", "net60"):
        ck = default_checkpoint(net)
        if ck is None:
            torch.manual_seed(7)
            ck = save_checkpoint(build_net(net), tmp_path / f"{net}.safetensors", provenance={"note": "test"})
        onnx_path = export_onnx(ck, tmp_path / "onnx").onnx
        manifest = load_manifest(onnx_path)
        engine = native_runner_if_cached(onnx_path, manifest, precision="fp32", build=True, directory=tmp_path / "e")
        from s2sr_cloud.nets.checkpoint import load_checkpoint

        ref = super_resolve(src, {net: TorchRunner(load_checkpoint(ck).model)}, tile=128)[net]
        got = super_resolve(src, {net: engine}, tile=128)[net]
        assert np.abs(got - ref).max() / 2000 <= 1e-3


@pytest.mark.gpu
def test_gpu_engine_key_uses_this_gpu(gpu_trt, tiny_onnx):
    from s2sr_cloud.infer.trt import engine_spec_here

    _, manifest = tiny_onnx
    s = engine_spec_here(manifest, "fp16")
    assert s is not None and s.gpu_name.startswith("NVIDIA") and "." in s.compute_capability


def test_spec_replace_keeps_identity():
    """Profile changes alter the key but not the identity used for lookup."""
    s = spec()
    t = replace(s, profile=Profile(channels=10, halo=14, tile=64, max_batch=1))
    assert s.identity() == t.identity() and s.key != t.key


def test_trt_runtime_does_not_import_its_builder_or_selector():
    """The runtime (trt) is imported by the builder (trt_build); the selection hook
    (trt_select) sits above both, so there is no import cycle, hidden or not."""
    import ast

    from tests.conftest import DATA

    src = (DATA.parents[1] / "s2sr_cloud" / "infer" / "trt.py").read_text()
    names = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"trt_build", "trt_select", "select"}, names
    import s2sr_cloud.infer.trt_select as sel

    assert sel.native_runner_if_cached.__module__ == "s2sr_cloud.infer.trt_select"


@pytest.mark.gpu
def test_gpu_engine_window_path_equals_its_tile_path(gpu_trt, tiny_onnx, tmp_path, malmo_npz):
    """With a CUDA build of torch beside TensorRT (the GPU image), the engine runs the device window
    path (device pointers bound, fixed tiles = the profile's opt shape); it equals the engine's
    NumPy tile path."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA build of torch here")
    from s2sr_cloud.infer.trt_build import build_engine
    from s2sr_cloud.infer.trt_select import native_runner_if_cached

    path, manifest = tiny_onnx
    d = tmp_path / "engines"
    build_engine(path, manifest, precision="fp32", tile=128, max_batch=2, directory=d)
    runner = native_runner_if_cached(path, manifest, precision="fp32", build=False, directory=d)
    assert callable(getattr(runner, "run_window", None)) and runner.fixed_tiles
    with np.load(malmo_npz) as z:
        src = ArraySource(z["b10"][:, :300, :300], z["b20"][:, :150, :150], z["b60"][:, :50, :50])
    net = manifest["net"]
    window = super_resolve(src, {net: runner}, tile=128, batch=2)[net]
    del runner.run_window  # the instance attribute: back to the NumPy tile path
    tiles = super_resolve(src, {net: runner}, tile=128, batch=2)[net]
    np.testing.assert_allclose(window, tiles, atol=0.05)
