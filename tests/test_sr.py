"""Seamless tiled inference on real imagery, through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud.errors import ShapeMismatch
from s2sr_cloud.sr import (
    ArraySource,
    Window,
    reflect_index,
    stream_blocks,
    super_resolve,
    tile_starts,
)


@pytest.fixture(scope="module")
def malmo_crop(malmo_npz):
    with np.load(malmo_npz) as z:
        # 204 x 180 px at 10 m: a multiple of 6, not of the tile sizes below
        return ArraySource(z["b10"][:, 60:264, 120:300], z["b20"][:, 30:132, 60:150], z["b60"][:, 10:44, 20:50])


@pytest.fixture(scope="module")
def ort_runners(narrow_runners):
    """Tiling, windows and nodata do not depend on the weights: the narrow random nets (real ONNX Runtime)."""
    return narrow_runners


@pytest.fixture(scope="module")
def whole(malmo_crop, ort_runners):
    return super_resolve(malmo_crop, ort_runners, tile=100_000)


@pytest.mark.parametrize(("tile", "batch"), [(32, 3), (50, 4), (64, 2), (97, 1), (128, 8)])
def test_tiled_equals_whole_image(malmo_crop, ort_runners, whole, tile, batch):
    tiled = super_resolve(malmo_crop, ort_runners, tile=tile, batch=batch)
    for net in whole:
        ref = whole[net]
        rel = np.abs(tiled[net] - ref).max() / np.abs(ref).max()
        assert rel <= 1e-5, (net, tile, rel)


def test_blocks_equal_whole_image(malmo_crop, ort_runners, whole):
    """Streaming by blocks (as for large GeoTIFFs) gives the whole-image result too."""
    got = {n: np.zeros_like(a) for n, a in whole.items()}
    for win, out in stream_blocks(malmo_crop, ort_runners, block=66, tile=40):
        for n, a in out.items():
            got[n][:, win.row : win.row + win.height, win.col : win.col + win.width] = a
    for n in whole:
        assert np.abs(got[n] - whole[n]).max() / np.abs(whole[n]).max() <= 1e-5


def test_small_halo_seams(malmo_crop, ort_runners, whole):
    """The halo matters: a halo below the receptive field makes tiles differ (the test can fail)."""
    r = ort_runners["net20"]
    old = r.halo
    try:
        r.halo = 2
        tiled = super_resolve(malmo_crop, {"net20": r}, tile=32)
    finally:
        r.halo = old
    assert np.abs(tiled["net20"] - whole["net20"]).max() > 1.0


def test_window_matches_whole(malmo_crop, ort_runners, whole):
    win = Window(37, 61, 70, 55)
    part = super_resolve(malmo_crop, ort_runners, window=win, tile=32)
    for n in whole:
        ref = whole[n][:, 37:107, 61:116]
        assert np.abs(part[n] - ref).max() / np.abs(ref).max() <= 1e-5


def test_nodata_in_and_out(malmo_crop, ort_runners):
    b10 = malmo_crop.b10.copy()
    b10[:, :12, :18] = 0
    b60 = malmo_crop.b60.copy()
    b60[:, -1, -1] = 0
    out = super_resolve(ArraySource(b10, malmo_crop.b20, b60), ort_runners, tile=64)
    for a in out.values():
        assert (a[:, :12, :18] == 0).all()
        assert (a[:, -6:, -6:] == 0).all()
        assert (a[:, 20:-20, 20:-20] > 0).all()


def test_output_is_plausible_dn(whole):
    assert whole["net20"].shape == (6, 204, 180)
    assert whole["net60"].shape == (2, 204, 180)
    assert whole["net20"].dtype == np.float32


def test_shape_checks():
    with pytest.raises(ShapeMismatch, match="2x the 20 m side"):
        ArraySource(np.ones((4, 444, 456)), np.ones((6, 221, 227)), np.ones((2, 73, 75)))
    with pytest.raises(ShapeMismatch):
        ArraySource(np.ones((3, 60, 60)), np.ones((6, 30, 30)), np.ones((2, 10, 10)))


@pytest.mark.parametrize(("n", "tile", "expected"), [(10, 4, [0, 4, 6]), (8, 4, [0, 4]), (3, 8, [0])])
def test_tile_starts(n, tile, expected):
    assert tile_starts(n, tile) == expected


def test_reflect_index_symmetric():
    idx = np.arange(-3, 8)
    assert reflect_index(idx, 5).tolist() == [2, 1, 0, 0, 1, 2, 3, 4, 4, 3, 2]
    ref = np.pad(np.arange(5), 3, mode="symmetric")
    assert reflect_index(np.arange(-3, 8), 5).tolist() == ref.tolist()


@pytest.mark.parametrize(("n", "tile", "expected"), [(1080, 512, 360), (1080, 544, 540), (1080, 256, 216), (100, 544, 100), (1536, 544, 512)])
def test_balanced_tile_covers_with_equal_tiles(n, tile, expected):
    from s2sr_cloud.sr import balanced_tile

    t = balanced_tile(n, tile)
    assert t == expected
    starts = tile_starts(n, t)
    # tiles cover [0, n) and the last one overlaps the previous by less than one tile count
    assert starts[-1] + t == n
    assert len(starts) * t - n < len(starts)


def test_runner_tiling_defaults_and_overrides():
    from s2sr_cloud.sr import DEFAULT_BATCH, DEFAULT_TILE, runner_tiling

    class R:
        net, halo, backend = "net20", 14, "x"

    class Big(R):
        tile, batch = 1024, 4

    assert runner_tiling({"net20": R()}) == (DEFAULT_TILE, DEFAULT_BATCH)
    assert runner_tiling({"net20": Big()}) == (1024, 4)
    assert runner_tiling({"net20": Big(), "net60": R()}) == (DEFAULT_TILE, DEFAULT_BATCH)
    assert runner_tiling({"net20": Big()}, 128, 2) == (128, 2)
    with pytest.raises(ValueError, match="must be >= 1"):
        runner_tiling({"net20": R()}, 0, 1)


@pytest.mark.parametrize(("window", "tile", "batch"), [(None, 64, 2), (Window(30, 42, 90, 78), 40, 3)])
def test_device_window_path_equals_the_host_path(malmo_crop, narrow_models, window, tile, batch):
    """A runner with ``run_window`` (PyTorch, here on the CPU) gets the native band windows and does
    the upsampling, scaling, tiling and assembly itself — the path GPU runners take by default.
    It gives the host path's result: whole image and an inner window, shifted last tiles,
    batches, both nets, and through the streaming loop with the back-projection post-step."""
    pytest.importorskip("torch")
    from s2sr_cloud.infer.torch_gpu import TorchGpuRunner
    from s2sr_cloud.stream import ArraySink, run_blocks

    host, device = {}, {}
    for net, model in narrow_models.items():
        host[net] = TorchGpuRunner(model, "cpu", device_window=False)
        device[net] = TorchGpuRunner(model, "cpu", device_window=True)
    assert not hasattr(host["net20"], "run_window") and callable(device["net20"].run_window)
    ticks: list[tuple[int, int]] = []
    a = super_resolve(malmo_crop, host, window=window, tile=tile, batch=batch)
    b = super_resolve(malmo_crop, device, window=window, tile=tile, batch=batch, on_tile=lambda d, t: ticks.append((d, t)))
    for net in a:
        assert b[net].shape == a[net].shape
        assert np.abs(b[net] - a[net]).max() < 1e-2, net  # DN; float32 either way
    assert ticks[-1][0] == ticks[-1][1] and [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    if window is None:
        sinks = {}
        for tag, runners in (("host", host), ("device", device)):
            sinks[tag] = ArraySink(Window(0, 0, *malmo_crop.shape10), runners)
            run_blocks(malmo_crop, runners, sinks[tag], block=60, tile=tile, batch=batch)
        for net, arr in sinks["host"].arrays.items():
            assert np.abs(arr.astype(int) - sinks["device"].arrays[net].astype(int)).max() <= 1, net


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_cuda(), reason="needs PyTorch with a CUDA GPU")
def test_device_window_path_on_cuda_equals_the_cpu_host_path(malmo_crop):
    """On a CUDA GPU the PyTorch runner takes whole windows by default; strict fp32 there gives the
    CPU host path's result (float32 either way), fp16 stays within the accuracy gate's mean."""
    from s2sr_cloud.infer.torch_gpu import TorchGpuRunner
    from s2sr_cloud.nets.checkpoint import load_checkpoint
    from s2sr_cloud.weights import default_checkpoint

    for net in ("net20", "net60"):
        model = load_checkpoint(default_checkpoint(net), net=net).model
        ref = super_resolve(malmo_crop, {net: TorchGpuRunner(model, "cpu")}, tile=64)[net]
        gpu = TorchGpuRunner(load_checkpoint(default_checkpoint(net), net=net).model, "cuda:0")
        assert callable(gpu.run_window)
        got = super_resolve(malmo_crop, {net: gpu}, tile=64, batch=2)[net]
        assert np.abs(got - ref).max() < 0.05, net
        half = TorchGpuRunner(load_checkpoint(default_checkpoint(net), net=net).model, "cuda:0", "fp16")
        assert np.abs(super_resolve(malmo_crop, {net: half}, tile=64, batch=2)[net] - ref).mean() < 5.0, net
