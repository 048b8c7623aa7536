"""The PyTorch window path (s2sr_cloud/infer/torch_window.py), on torch CPU as the "device".

What a GPU runs, checked here against the host path of super_resolve (float32 either way; the
stated tolerance is 1e-2 DN, the float32 reduction order of convolutions at other tile shapes):
uint16 uploads (exact, with a float32 fallback), fixed tile shapes (a small window padded to the
tile, the last batch filled up), all-nodata tiles skipped (output equal), per-block reuse of the
group stacks by the second net, reused host buffers, device / uint16 outputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from s2sr_cloud.grid import Window
from s2sr_cloud.sr import ArraySource, balanced_tile, count_tiles, super_resolve, tile_plan, tile_starts

torch = pytest.importorskip("torch")

from s2sr_cloud.infer import torch_window  # noqa: E402
from s2sr_cloud.infer.torch_gpu import TorchGpuRunner  # noqa: E402

TOL = 1e-2  # DN


@pytest.fixture(scope="module")
def crop(malmo_npz):
    with np.load(malmo_npz) as z:  # 96 x 132 px at 10 m: smaller than a tile, not a multiple of it
        return ArraySource(z["b10"][:, 60:156, 120:252], z["b20"][:, 30:78, 60:126], z["b60"][:, 10:26, 20:42])


@pytest.fixture(scope="module")
def models(narrow_models):
    return narrow_models


def _runners(models, **kw):
    return {n: TorchGpuRunner(m, "cpu", **kw) for n, m in models.items()}


def _host(crop, models, **kw):
    return super_resolve(crop, _runners(models, device_window=False), **kw)


@pytest.mark.parametrize(("tile", "batch"), [(128, 2), (48, 4), (40, 5)])
def test_fixed_tiles_equal_the_host_path(crop, models, tile, batch):
    """Tile 128 > the window (one padded tile, a short batch filled up); 48 and 40: shifted-back last
    tiles and a short last batch."""
    ref = _host(crop, models, tile=tile, batch=batch)
    runners = _runners(models, device_window=True, fixed_tiles=True)
    shapes: list[tuple[int, ...]] = []
    for r in runners.values():
        net = r._net
        r._net = lambda x, _n=net: shapes.append(tuple(x.shape)) or _n(x)
    got = super_resolve(crop, runners, tile=tile, batch=batch)
    for net in ref:
        assert got[net].shape == ref[net].shape
        assert np.abs(got[net] - ref[net]).max() < TOL, net
    side = tile + 2 * 14
    assert {s[0] for s in shapes} == {batch} and {s[2:] for s in shapes} == {(side, side)}


def test_tile_plan_fixed_has_one_shape_and_the_balanced_count():
    for n in (30, 96, 132, 1024, 1080):
        for tile in (40, 64, 512, 1024):
            side, starts = tile_plan(n, tile, True)
            assert side == tile and starts[0] == 0
            assert len(starts) == len(tile_starts(n, balanced_tile(n, tile)))
            assert starts[-1] + side >= n
    assert count_tiles(Window(0, 0, 1080, 740), 512) == 3 * 2


def test_all_nodata_tiles_are_skipped_and_the_output_is_unchanged(malmo, narrow_models):
    b10 = malmo.b10[:, :144, :144].copy()
    b20, b60 = malmo.b20[:, :72, :72].copy(), malmo.b60[:, :24, :24].copy()
    b10[:, :72, :] = 0  # the top half is nodata: its tiles need not run
    src = ArraySource(b10, b20, b60)
    model = narrow_models["net20"]
    calls = {"host": 0, "device": 0}

    class Counting(TorchGpuRunner):
        def __call__(self, x):
            calls["host"] += len(x)
            return super().__call__(x)

        def _net(self, x):
            calls["device"] += len(x)
            return super()._net(x)

    ticks: list[tuple[int, int]] = []
    host = super_resolve(src, {"net20": Counting(model, "cpu", device_window=False)}, tile=36)
    dev = super_resolve(src, {"net20": Counting(model, "cpu", device_window=True)}, tile=36,
                        on_tile=lambda d, t: ticks.append((d, t)))
    assert calls == {"host": 8, "device": 8}  # 16 tiles of 36², the 8 of the top half skipped
    assert (host["net20"][:, :72] == 0).all() and (host["net20"][:, 72:] > 0).all()
    assert np.abs(dev["net20"] - host["net20"]).max() < TOL
    assert ticks[-1] == (16, 16)
    # all nodata: nothing runs, the output is all 0, the progress still ends at the total
    src0 = ArraySource(np.zeros_like(b10), b20, b60)
    ticks.clear()
    out = super_resolve(src0, {"net20": Counting(model, "cpu", device_window=True)}, tile=36,
                        on_tile=lambda d, t: ticks.append((d, t)))
    assert calls["device"] == 8 and out["net20"].shape == (6, 144, 144) and not out["net20"].any()
    assert ticks[-1] == (16, 16)


def test_nodata_mask_from_the_reads_equals_one_read_from_the_source(malmo):
    """The mask is now made from the windows the nets read (halo included), not read again."""
    from s2sr_cloud.bands import NETS
    from s2sr_cloud.sr import _mask_from_reads, _read_group
    from s2sr_cloud.ops import reflect_index

    b10 = malmo.b10[:, :144, :144].copy()
    b20, b60 = malmo.b20[:, :72, :72].copy(), malmo.b60[:, :24, :24].copy()
    b10[2, 5:9, 100:120] = 0
    b20[4, 40:41, 3:7] = 0
    b60[1, 20, 20] = 0
    src = ArraySource(b10, b20, b60)
    for win in (Window(0, 0, 144, 144), Window(30, 42, 90, 78)):
        rows = reflect_index(np.arange(win.row - 14, win.row + win.height + 14), 144)
        cols = reflect_index(np.arange(win.col - 14, win.col + win.width + 14), 144)
        reads = {g: _read_group(src, g, rows, cols, (144, 144)) for g in NETS["net60"].groups}
        r = np.arange(win.row, win.row + win.height)[:, None]
        c = np.arange(win.col, win.col + win.width)[None, :]
        want = (b10[:, r, c] == 0).any(0) | (b20[:, r // 2, c // 2] == 0).any(0) | (b60[:, r // 6, c // 6] == 0).any(0)
        np.testing.assert_array_equal(_mask_from_reads(reads, win), want)


def test_uint16_upload_is_exact_or_falls_back_to_float32(crop, models):
    into = np.empty(4, np.uint16)
    assert torch_window.as_uint16(np.array([0, 1, 65535, 1234], np.float32), into)
    assert into.tolist() == [0, 1, 65535, 1234]
    for bad in ([0.5, 1, 2, 3], [-1, 1, 2, 3], [70000, 1, 2, 3], [np.nan, 1, 2, 3]):
        assert not torch_window.as_uint16(np.array(bad, np.float32), into)
    bufs = torch_window._HostBuffers(torch, pinned=False)
    w = np.array([[[0, 40000], [3, 65535]]], np.float32)
    t = torch_window.upload(torch, w, torch.device("cpu"), bufs, "k")
    assert t.dtype == torch.float32 and t.numpy().tolist() == w.tolist()
    frac = w + 0.25
    assert torch_window.upload(torch, frac, torch.device("cpu"), bufs, "k").numpy().tolist() == frac.tolist()
    # a source with non-integer DN (a local float input) takes the float32 upload: same output
    src = ArraySource(crop.b10.astype(np.float32) + 0.3, crop.b20.astype(np.float32), crop.b60.astype(np.float32))
    ref = super_resolve(src, _runners(models, device_window=False), tile=48)
    got = super_resolve(src, _runners(models, device_window=True), tile=48)
    for net in ref:
        assert np.abs(got[net] - ref[net]).max() < TOL


def test_outputs_device_and_uint16(crop, models):
    from s2sr_cloud.sr import to_uint16

    runners = _runners(models, device_window=True)
    dev = super_resolve(crop, runners, tile=48, device=True)
    host = _host(crop, models, tile=48)
    for net, arr in dev.items():
        assert isinstance(arr, torch.Tensor) and arr.dtype == torch.float32
        assert np.abs(arr.numpy() - host[net]).max() < TOL
    # out="uint16" straight from the window path: clipped and rounded on the device
    r = runners["net20"]
    captured = {}

    def grab(groups, starts, th, tw, halo, batch, on_tiles=None, out="host"):
        captured.update(args=(groups, starts, th, tw, halo, batch))
        return torch_window.run_window(r, groups, starts, th, tw, halo, batch, None, out)

    r.run_window = grab
    f = super_resolve(crop, {"net20": r}, tile=48)["net20"]
    u = torch_window.run_window(r, *captured["args"], out="uint16")
    assert u.dtype == np.uint16 and u.shape == f.shape
    d = np.abs(u.astype(np.int32) - to_uint16(np.clip(f, 1, 65535)).astype(np.int32))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    with pytest.raises(ValueError, match="out must be"):
        torch_window.run_window(r, *captured["args"], out="cupy")


def test_second_net_reuses_the_blocks_group_stacks(crop, models, monkeypatch):
    made: list[int] = []
    real = torch_window.group_stack

    def counting(torch_, g, dev, bufs, key):
        made.append(g.factor)
        return real(torch_, g, dev, bufs, key)

    monkeypatch.setattr(torch_window, "group_stack", counting)
    torch_window.release_thread()
    super_resolve(crop, _runners(models, device_window=True), tile=48)
    assert sorted(made) == [1, 2, 6]  # 10 m and 20 m once for both nets, 60 m for net60
    super_resolve(crop, _runners(models, device_window=True), tile=48)
    assert sorted(made) == [1, 1, 2, 2, 6, 6]  # a new block: uploaded again, the old ones dropped
    assert len(torch_window.group_cache().items) == 3


def _in_another_thread(fn):
    """``fn()`` called from a new thread (per-thread state is that thread's own)."""
    got = []
    t = threading.Thread(target=lambda: got.append(fn()))
    t.start()
    t.join()
    return got[0]


def test_host_buffers_are_reused_per_thread_and_pinned_only_with_cuda():
    bufs = torch_window.host_buffers(torch, False)
    a = bufs.get("x", (4, 10, 10), torch.float32)
    b = bufs.get("x", (2, 5, 5), torch.int16)
    assert a.data_ptr() == b.data_ptr() and not a.is_pinned()
    assert torch_window.host_buffers(torch, False) is bufs
    assert _in_another_thread(lambda: torch_window.host_buffers(torch, False)) is not bufs
    assert torch_window.thread_stream(torch, torch.device("cpu")) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs PyTorch with a CUDA GPU")
def test_cuda_streams_per_thread_and_pinned_buffers():
    dev = torch.device("cuda:0")
    s0 = torch_window.thread_stream(torch, dev)
    assert torch_window.thread_stream(torch, dev) is s0
    assert _in_another_thread(lambda: torch_window.thread_stream(torch, dev)) is not s0
    assert torch_window.host_buffers(torch, True).get("p", (8,), torch.float32).is_pinned()


def test_residual_scale_folded_at_load_gives_the_same_net(models):
    from s2sr_cloud.nets.model import fold_residual_scale

    model = models["net20"]
    folded = fold_residual_scale(model)
    assert all(b.scale == 1.0 for b in folded.blocks) and all(b.scale == 0.1 for b in model.blocks)
    assert torch.equal(model.blocks[0].conv2.weight * 0.1, folded.blocks[0].conv2.weight)
    x = torch.from_numpy(np.random.default_rng(1).uniform(0, 2, (2, 10, 60, 60)).astype(np.float32))
    with torch.no_grad():
        a, b = model(x), folded(x)
    rel = (a - b).abs().max() / a.abs().max()
    assert rel < 1e-5, float(rel)
    runner = TorchGpuRunner(model, "cpu")
    assert runner.model is not model and runner.model.blocks[0].scale == 1.0


def test_torch_compile_setting(monkeypatch):
    from s2sr_cloud.errors import InputError
    from s2sr_cloud.settings import torch_compile

    monkeypatch.delenv("S2SR_TORCH_COMPILE", raising=False)
    assert torch_compile() is False
    for v, want in (("1", True), ("YES", True), ("0", False), ("off", False)):
        monkeypatch.setenv("S2SR_TORCH_COMPILE", v)
        assert torch_compile() is want
    monkeypatch.setenv("S2SR_TORCH_COMPILE", "maybe")
    with pytest.raises(InputError, match="S2SR_TORCH_COMPILE"):
        torch_compile()
