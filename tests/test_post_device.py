"""The post-steps run where the nets ran: the one array-API implementation on other array
libraries (torch on the CPU here; CuPy/torch on a GPU in the image) equals the NumPy host path.

Tolerance (stated in docs/performance.md): the post-stepped float DN within 0.05 DN everywhere
(float32 reductions in another order), so the uint16 output within 1 DN on < 0.1 % of pixels."""

from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud.grid import Window
from s2sr_cloud.ops import degrade, upsample
from s2sr_cloud.post import ConsistencyQA, PostSteps
from s2sr_cloud.sinks import ArraySink
from s2sr_cloud.sr import ArraySource
from s2sr_cloud.stream import run_blocks

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def scene(malmo):
    b10 = malmo.b10[:, :144, :144].astype(np.float32)
    b20 = malmo.b20[:, :72, :72].astype(np.float32)
    b60 = malmo.b60[:, :24, :24].astype(np.float32)
    b10[:, 30:48, 60:90] = 0  # nodata: it must stay nodata and not spread differently
    return b10, b20, b60


@pytest.mark.parametrize("net", ["net20", "net60"])
@pytest.mark.parametrize("post", [PostSteps(), PostSteps(hybrid=False), PostSteps(backproject=-1)])
def test_post_steps_on_torch_equal_numpy(scene, net: str, post: PostSteps) -> None:
    b10, b20, b60 = scene
    s, lr = (2, b20) if net == "net20" else (6, b60)
    rng = np.random.default_rng(0)
    sr = np.clip(upsample(lr, s) + rng.normal(0, 40, (lr.shape[0], 144, 144)).astype(np.float32), 1, None)
    sr[:, b10[0] == 0] = 0
    post = post.with_resolved({"net20": 0.43, "net60": 0.38})  # the auto operator, as estimated before any block
    host = post.finish(net, sr, lr, b10=b10, b20=b20)
    t = torch.from_numpy
    dev = post.finish(net, t(sr), t(lr), b10=t(b10), b20=t(b20))
    assert isinstance(dev, torch.Tensor) and dev.dtype == torch.float32
    np.testing.assert_allclose(dev.numpy(), host, atol=0.05, rtol=0)
    assert ((dev.numpy() == 0) == (host == 0)).all()


def test_degrade_and_qa_on_torch_equal_numpy(scene) -> None:
    b10, b20, _ = scene
    t = torch.from_numpy
    np.testing.assert_allclose(degrade(t(b10), 2).numpy(), degrade(b10, 2), atol=1e-3)
    sr = upsample(b20, 2) + 3.0
    a, b = ConsistencyQA(), ConsistencyQA()
    a.add("net20", sr, b20, 2)
    b.add("net20", t(sr), t(b20), 2)
    assert a.result() == b.result() and a.n == b.n


class _DeviceRunner:
    """A runner whose window path leaves its output on a (CPU) torch 'device', as the GPU
    runners do: the streaming loop must then run the post-steps and the QA on torch arrays."""

    array_namespace = "torch"

    def __init__(self, inner) -> None:
        self.inner, self.net, self.halo, self.backend = inner, inner.net, inner.halo, f"{inner.backend}+torch"
        self.outputs: list[type] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.inner(x)

    def run_window(self, groups, starts, th, tw, halo, batch, on_tiles=None, out="host"):
        from s2sr_cloud.bands import SCALE

        x = np.concatenate([g.stack() for g in groups]) / np.float32(SCALE)
        h, w = max(r for r, _ in starts) + th, max(c for _, c in starts) + tw
        res = np.zeros((6 if self.net == "net20" else 2, h, w), np.float32)
        for r, c in starts:
            y = self.inner(x[None, :, r : r + th + 2 * halo, c : c + tw + 2 * halo])[0]
            res[:, r : r + th, c : c + tw] = y[:, halo : halo + th, halo : halo + tw]
        res *= np.float32(SCALE)
        done = torch.from_numpy(res) if out == "device" else res
        self.outputs.append(type(done))
        return done


class _Residual:
    """The nets' global residual alone (cheap: the test is about where the post-steps run)."""

    backend = "numpy-residual"

    def __init__(self, net: str) -> None:
        from s2sr_cloud.bands import NETS

        self.net, self.halo, self._slice = net, 14, NETS[net].residual_slice

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, self._slice]) + np.float32(0.01)


def test_streaming_loop_runs_post_steps_on_the_runners_device(malmo) -> None:
    src = ArraySource(malmo.b10[:, :144, :144], malmo.b20[:, :72, :72], malmo.b60[:, :24, :24])
    host = {n: _Residual(n) for n in ("net20", "net60")}
    dev = {n: _DeviceRunner(r) for n, r in host.items()}
    got, qas = {}, {}
    for name, runners in (("host", host), ("device", dev)):
        sink, qa = ArraySink(Window(0, 0, 144, 144), runners), ConsistencyQA()
        run_blocks(src, runners, sink, block=72, tile=72, qa=qa)
        got[name], qas[name] = sink.arrays, qa.result()
    assert all(t is torch.Tensor for r in dev.values() for t in r.outputs)
    for net, host in got["host"].items():
        d = np.abs(host.astype(np.int32) - got["device"][net].astype(np.int32))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, (net, d.max(), (d > 0).mean())
    assert qas["host"] == pytest.approx(qas["device"], abs=0.02)
