"""Fixtures for the core: tiny trained-free DSen2 checkpoints and their ONNX exports."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Seeded, randomly initialised DSen2 checkpoints and ONNX exports of both nets.

    Random weights exercise the same code paths as trained ones (export, runtime,
    tiling); accuracy of the shipped weights is tested separately.
    """
    torch = pytest.importorskip("torch")
    from s2sr_cloud.export import export_onnx
    from s2sr_cloud.nets import build_net, save_checkpoint

    d = tmp_path_factory.mktemp("models")
    out: dict[str, dict[str, Path]] = {}
    for i, net in enumerate(("net20", "net60")):
        torch.manual_seed(1234 + i)
        ck = save_checkpoint(build_net(net), d / f"{net}.safetensors", provenance={"note": "random init for tests"})
        res = export_onnx(ck, d / "onnx")
        out[net] = {"checkpoint": ck, "onnx": res.onnx}
    return out
