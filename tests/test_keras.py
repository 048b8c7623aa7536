"""Importing original DSen2 Keras weights: an .hdf5 in the Keras 2 layout, written here."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from s2sr_cloud.bands import net_spec, variant_spec  # noqa: E402
from s2sr_cloud.errors import CheckpointMismatch, ModelError  # noqa: E402
from s2sr_cloud.nets.keras import import_keras_weights  # noqa: E402


def _write_keras_h5(path, net: str, variant: str, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keras 2 ``model.save`` layout: model_weights/<layer>/<layer>/{kernel:0,bias:0}."""
    spec, var = net_spec(net), variant_spec(variant)
    chans = [spec.in_channels] + [var.features] * (2 * var.depth + 1) + [spec.out_channels]
    convs = []
    for cin, cout in zip(chans[:-1], chans[1:], strict=True):
        k = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(1.0 / (9 * cin))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
        convs.append((k, b))
    names = ["input_1", "input_2"] + (["input_3"] if net == "60" else []) + ["concatenate_1"]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.1.5"
        f.attrs["backend"] = b"tensorflow"
        mw = f.create_group("model_weights")
        layer_names = list(names)
        for n in names:
            mw.create_group(n).attrs["weight_names"] = np.array([], dtype="S1")
        for i, (k, b) in enumerate(convs, start=1):
            name = f"conv2d_{i}"
            layer_names.append(name)
            g = mw.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
            g.create_dataset(f"{name}/kernel:0", data=k)
            g.create_dataset(f"{name}/bias:0", data=b)
            if i in (1,):
                layer_names.append("activation_1")
                mw.create_group("activation_1").attrs["weight_names"] = np.array([], dtype="S1")
        layer_names.append("add_final")
        mw.create_group("add_final").attrs["weight_names"] = np.array([], dtype="S1")
        mw.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
    return convs


def _conv_np(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 'same' convolution (cross-correlation), x (C, H, W), k HWIO, NumPy float64."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((k.shape[3], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("chw,co->ohw", xp[:, dy : dy + h, dx : dx + w], k[dy, dx])
    return out + b[:, None, None]


def _dsen2_np(x: np.ndarray, convs, n_out: int) -> np.ndarray:
    """The reference architecture written out in NumPy, from the Keras kernels."""
    k, b = convs[0]
    y = np.maximum(_conv_np(x, k, b), 0)
    for i in range(1, len(convs) - 1, 2):
        t = np.maximum(_conv_np(y, *convs[i]), 0)
        y = y + 0.1 * _conv_np(t, *convs[i + 1])
    y = _conv_np(y, *convs[-1])
    return y + x[-n_out:]


@pytest.mark.parametrize("net", ["20", "60"])
def test_import_matches_numpy_reference(tmp_path, net):
    rng = np.random.default_rng(7)
    path = tmp_path / f"s2_0{net}_lr1e-04.hdf5"
    convs = _write_keras_h5(path, net, "dsen2", rng)
    model = import_keras_weights(path, net, "dsen2")
    spec = net_spec(net)
    x = rng.random((spec.in_channels, 14, 12)).astype(np.float32) * 2
    ref = _dsen2_np(x.astype(np.float64), convs, spec.out_channels)
    with torch.no_grad():
        got = model(torch.from_numpy(x)[None]).numpy()[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_import_wrong_net_is_refused(tmp_path):
    path = tmp_path / "w.hdf5"
    _write_keras_h5(path, "20", "dsen2", np.random.default_rng(0))
    with pytest.raises(CheckpointMismatch, match="wrong --net"):
        import_keras_weights(path, "60", "dsen2")
    with pytest.raises(CheckpointMismatch, match="conv layers"):
        import_keras_weights(path, "20", "vdsen2")


def test_import_not_hdf5(tmp_path):
    p = tmp_path / "x.hdf5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(ModelError):
        import_keras_weights(p, "20")
