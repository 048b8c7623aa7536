"""ONNX export: verified against PyTorch on real imagery, manifests, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2sr_cloud.errors import CheckpointMismatch, EngineMismatch, ModelError  # noqa: E402
from s2sr_cloud.export import VERIFY_TOL_SCALED, export_onnx  # noqa: E402
from s2sr_cloud.infer import load_runner  # noqa: E402
from s2sr_cloud.infer.manifest import load_manifest, sha256_file  # noqa: E402
from s2sr_cloud.nets import build_net, load_checkpoint, save_checkpoint  # noqa: E402
from s2sr_cloud.nets.model import TorchRunner  # noqa: E402
from s2sr_cloud.sr import ArraySource, super_resolve  # noqa: E402


def test_manifest_contents(random_models):
    m = load_manifest(random_models["net60"]["onnx"])
    assert m["net"] == "net60" and m["variant"] == "dsen2"
    assert m["inputs"][:4] == ["B04", "B03", "B02", "B08"] and m["outputs"] == ["B01", "B09"]
    assert m["halo"] == 14 and m["scale"] == 2000.0 and m["opset"] >= 17
    assert m["onnx_sha256"] == sha256_file(random_models["net60"]["onnx"])
    assert m["checkpoint_sha256"] == sha256_file(random_models["net60"]["checkpoint"])
    assert m["verification"]["passed"] and m["verification"]["max_abs_diff_scaled"] <= VERIFY_TOL_SCALED
    assert {"torch", "onnx", "onnxruntime", "s2sr-cloud"} <= set(m["tools"])


def test_onnx_matches_torch_on_real_scene(random_models, malmo_npz):
    """ORT vs PyTorch on a different real crop than the export's own check, dynamic shapes."""
    with np.load(malmo_npz) as z:
        src = ArraySource(z["b10"][:, 300:396, 420:570], z["b20"][:, 150:198, 210:285], z["b60"][:, 50:66, 70:95])
    for net, files in random_models.items():
        ort = load_runner(net, onnx=files["onnx"], device="cpu")
        ref = TorchRunner(load_checkpoint(files["checkpoint"]).model)
        a = super_resolve(src, {net: ort}, tile=48, batch=3)[net]
        b = super_resolve(src, {net: ref}, tile=48, batch=3)[net]
        assert np.abs(a - b).max() / 2000.0 <= 1e-4


def test_tampered_onnx_is_refused(random_models, tmp_path):
    src = random_models["net20"]["onnx"]
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes() + b"\0")
    dst.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    with pytest.raises(EngineMismatch, match="sha256"):
        load_runner("net20", onnx=dst, device="cpu")


def test_onnx_without_manifest_is_refused(random_models, tmp_path):
    dst = tmp_path / "x.onnx"
    dst.write_bytes(random_models["net20"]["onnx"].read_bytes())
    with pytest.raises(ModelError, match="no manifest"):
        load_runner("net20", onnx=dst, device="cpu")


def test_wrong_net_onnx_is_refused(random_models):
    with pytest.raises(ModelError, match="net60 net, expected net20"):
        load_runner("net20", onnx=random_models["net60"]["onnx"], device="cpu")


def test_manifest_band_mismatch(random_models, tmp_path):
    src = random_models["net20"]["onnx"]
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes())
    m = json.loads(src.with_suffix(".json").read_text())
    m["outputs"] = ["B05"]
    dst.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(EngineMismatch, match="do not match"):
        load_runner("net20", onnx=dst, device="cpu")


def test_checkpoint_wrong_net_and_shapes(random_models, tmp_path):
    with pytest.raises(CheckpointMismatch, match="net20 net, but the net60"):
        load_checkpoint(random_models["net20"]["checkpoint"], net="60")
    # a file whose metadata says net60 but whose tensors are a net20's
    from safetensors.torch import load_file, save_file

    from s2sr_cloud.nets.checkpoint import read_meta

    meta = read_meta(random_models["net60"]["checkpoint"])
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(random_models["net20"]["checkpoint"])), str(bad), metadata={"s2sr": json.dumps(meta)})
    with pytest.raises(CheckpointMismatch, match="wrong architecture"):
        load_checkpoint(bad)


def test_pickle_checkpoints_refused(tmp_path):
    p = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(ModelError, match="pickle"):
        load_checkpoint(p)


def test_export_refuses_on_disagreement(tmp_path):
    torch.manual_seed(0)
    ck = save_checkpoint(build_net("20"), tmp_path / "n.safetensors")
    with pytest.raises(ModelError, match="disagrees"):
        export_onnx(ck, tmp_path / "out", tolerance=0.0)
    assert not list((tmp_path / "out").glob("*.onnx"))
    assert not list((tmp_path / "out").glob("*.json"))
