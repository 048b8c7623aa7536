"""Fixtures for the TensorRT engine tests: a tiny DSen2-shaped ONNX net with its manifest.

The graph has the exact structure of an exported DSen2 net (head conv + ReLU, one
residual block scaled by 0.1, tail conv, global residual over the input's LR bands;
dynamic batch/height/width, ``input`` → ``output``), only narrower and shallower, so
it runs in milliseconds on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def make_tiny_dsen2(path: Path, *, net: str = "net20", features: int = 8, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """Write ``path`` (ONNX, opset 17) and its manifest; return both."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from s2sr_cloud.bands import NETS
    from s2sr_cloud.infer.manifest import MANIFEST_FORMAT, sha256_file

    spec = NETS[net]
    cin, cout, f = spec.in_channels, spec.out_channels, features
    rng = np.random.default_rng(seed)

    def conv_w(name: str, o: int, i: int) -> list[Any]:
        w = (rng.standard_normal((o, i, 3, 3)) * np.sqrt(2 / (9 * i)) * 0.5).astype(np.float32)
        b = (rng.standard_normal(o) * 0.01).astype(np.float32)
        return [numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")]

    def conv(name: str, x: str, y: str) -> Any:
        return helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [y], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name=name)

    inits = conv_w("head", f, cin) + conv_w("b1", f, f) + conv_w("b2", f, f) + conv_w("tail", cout, f)
    const = lambda name, arr: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))  # noqa: E731
    nodes = [
        conv("head", "input", "h0"), helper.make_node("Relu", ["h0"], ["h1"]),
        conv("b1", "h1", "r0"), helper.make_node("Relu", ["r0"], ["r1"]), conv("b2", "r1", "r2"),
        const("scale", np.array(0.1, np.float32)), helper.make_node("Mul", ["r2", "scale"], ["r3"]),
        helper.make_node("Add", ["h1", "r3"], ["h2"]), conv("tail", "h2", "t0"),
        const("starts", np.array([cin - cout], np.int64)), const("ends", np.array([cin], np.int64)),
        const("axes", np.array([1], np.int64)),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["lr"]),
        helper.make_node("Add", ["t0", "lr"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_dsen2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", cin, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", cout, "height", "width"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="s2sr-tests")
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    manifest = {
        "format": MANIFEST_FORMAT, "name": path.stem, "net": net, "variant": "tiny",
        "inputs": list(spec.inputs), "outputs": list(spec.outputs), "input_name": "input",
        "output_name": "output", "scale": 2000.0, "halo": 4, "opset": 17,
        "onnx_sha256": sha256_file(path), "checkpoint_sha256": None,
    }
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2))
    return path, manifest


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A tiny net20-shaped ONNX file (halo 4) and its manifest, in ``tmp_path``."""
    return make_tiny_dsen2(tmp_path / "models" / "net20_tiny.onnx")


@pytest.fixture
def tiny_onnx_pair(tmp_path: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Tiny ONNX nets for both net20 and net60."""
    return {
        n: make_tiny_dsen2(tmp_path / "models" / f"{n}_tiny.onnx", net=n, seed=i)
        for i, n in enumerate(("net20", "net60"))
    }
