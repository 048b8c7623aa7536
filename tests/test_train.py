"""Wald training pipeline and loop: pairs, sampler, determinism, resume, fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2sr_cloud.bands import NETS, SCALE
from s2sr_cloud.scenes import Scene, find_scenes, load_scene
from s2sr_cloud.sr import ArraySource, super_resolve
from s2sr_cloud.train.data import PatchSampler, make_pair, net_input
from s2sr_cloud.wald import wald_scene

torch = pytest.importorskip("torch")

from s2sr_cloud.nets import load_checkpoint  # noqa: E402
from s2sr_cloud.train.loop import TrainConfig, train  # noqa: E402

DATA = Path(__file__).parent / "data"
VIRGINIA = DATA / "T18SVG_crop240"


@pytest.fixture(scope="module")
def malmo(malmo_npz: Path):
    return load_scene(malmo_npz)


def test_wald_scene_shapes(malmo) -> None:
    w20 = wald_scene(malmo.b10, malmo.b20, malmo.b60, "20")
    assert w20.b10.shape == (4, 300, 300) and w20.b20.shape == (6, 150, 150) and w20.b60.shape == (2, 50, 50)
    assert w20.target.shape == (6, 300, 300) and w20.valid.all()
    w60 = wald_scene(malmo.b10, malmo.b20, malmo.b60, "60")  # cropped to 576 = 16 * 36
    assert w60.b10.shape == (4, 96, 96) and w60.b20.shape == (6, 48, 48) and w60.b60.shape == (2, 16, 16)
    assert w60.target.shape == (2, 96, 96)
    np.testing.assert_array_equal(w60.target, malmo.b60[:, :96, :96])


class _Residual:
    """A runner that returns the net's global residual only (the upsampled LR bands)."""

    backend = "test"
    halo = 14

    def __init__(self, net: str) -> None:
        self.net = net
        self.sl = NETS[net].residual_slice

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.sl]


@pytest.mark.parametrize("net", ["net20", "net60"])
def test_training_input_is_the_inference_input(malmo, net: str) -> None:
    """The pairs the nets learn from are built exactly as super_resolve builds its input."""
    ws = wald_scene(malmo.b10, malmo.b20, malmo.b60, net)
    x = net_input(ws)
    out = super_resolve(ArraySource(ws.b10, ws.b20, ws.b60), {net: _Residual(net)}, tile=64)[net]
    m = 14  # away from the border (reflection vs clamping)
    np.testing.assert_allclose(out[:, m:-m, m:-m], x[NETS[net].residual_slice, m:-m, m:-m] * SCALE, rtol=1e-5, atol=0.05)


def test_sampler_skips_nodata_and_is_reproducible(malmo) -> None:
    b10 = malmo.b10[:, :240, :240].copy()
    b10[:, :, :120] = 0  # left half nodata
    sc = type(malmo)("holes", b10, malmo.b20[:, :120, :120], malmo.b60[:, :40, :40])
    pair = make_pair(sc, "20")
    assert not pair.valid[:, :60].any() and pair.valid[:, 60:].all()
    s1 = PatchSampler([pair], 16, np.random.default_rng(7))
    s2 = PatchSampler([pair], 16, np.random.default_rng(7))
    for _ in range(5):
        (x1, y1), (x2, y2) = s1.batch(4), s2.batch(4)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert x1.shape == (4, 10, 16, 16) and y1.shape == (4, 6, 16, 16)
        assert (x1[:, :4] > 0).all()  # no nodata guide pixel in any patch


def test_sampler_context_is_real_neighbours_or_the_mirrored_border(malmo) -> None:
    """With context, the patch centre is the plain patch, and beyond the scene border the input
    is mirrored as tiled inference pads the true image border (never zeros)."""
    pair = make_pair(malmo, "60")  # 600 px → 96 px target grid
    plain = PatchSampler([pair], 24, np.random.default_rng(3))
    ctx = PatchSampler([pair], 24, np.random.default_rng(3), context=14)
    for _ in range(3):
        (xp, yp), (xc, yc) = plain.batch(2), ctx.batch(2)
        assert xc.shape == (2, 12, 52, 52) and yc.shape == (2, 2, 24, 24)
        np.testing.assert_array_equal(xc[:, :, 14:-14, 14:-14], xp)
        np.testing.assert_array_equal(yc, yp)
    whole = PatchSampler([pair], 96, np.random.default_rng(0), context=14)
    x, _ = whole.batch(1)
    padded = np.pad(pair.x, ((0, 0), (14, 14), (14, 14)), mode="symmetric")
    views = [np.rot90(v, k, axes=(1, 2)) for v in (padded, padded[:, :, ::-1]) for k in range(4)]
    assert any(np.array_equal(x[0], v) for v in views)


def test_find_scenes_folders_and_exclude(tmp_path: Path, malmo_npz: Path) -> None:
    assert find_scenes([VIRGINIA]) == [VIRGINIA]
    sc = load_scene(VIRGINIA)
    assert sc.b10.shape == (4, 240, 240) and sc.b20.shape == (6, 120, 120) and sc.b60.shape == (2, 40, 40)
    found = find_scenes([DATA], exclude=["*T33UUB*"])
    assert VIRGINIA in found and malmo_npz not in found


def _cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = {"net": "20", "data": [str(VIRGINIA)], "steps": 4, "batch": 2, "patch": 16, "lr": 2e-4, "warmup": 1, "seed": 3,
                "checkpoint_every": 2, "out": str(tmp_path / name), "threads": 1, "device": "cpu"}
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict:
    return {k: v.clone() for k, v in load_checkpoint(path).model.state_dict().items()}


def test_training_is_deterministic_with_seed_and_records_provenance(tmp_path: Path) -> None:
    a = train(_cfg(tmp_path, "a", steps=2, command="s2sr train test"))
    b = train(_cfg(tmp_path, "b", steps=2))
    wa, wb = _weights(a.final), _weights(b.final)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    meta = load_checkpoint(a.final).meta
    prov = meta["provenance"]
    assert prov["command"] == "s2sr train test" and prov["steps_done"] == 2
    assert prov["config"]["batch"] == 2 and prov["config"]["seed"] == 3
    assert len(prov["data"][0]["sha256"]) == 64 and prov["hardware"] and prov["torch"]
    assert meta["net"] == "net20" and a.final.name == "net20_dsen2.safetensors"


def test_interrupted_training_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    full = train(_cfg(tmp_path, "full"))

    def interrupt(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    cfg = _cfg(tmp_path, "cut")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=interrupt)
    assert (tmp_path / "cut" / "state.safetensors").is_file()
    assert not (tmp_path / "cut" / "net20_dsen2.safetensors").exists()
    seen: list[int] = []
    res = train(cfg, on_step=lambda s, t, loss: seen.append(s))
    assert res.start_step == 2 and seen == [3, 4]  # continued after the step-2 checkpoint
    wf, wr = _weights(full.final), _weights(res.final)
    for k in wf:
        torch.testing.assert_close(wr[k], wf[k], rtol=1e-5, atol=1e-6)


def test_train_cli_writes_checkpoints(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from s2sr_cloud.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["train", "--net", "60", "--data", str(VIRGINIA), "--steps", "2", "--batch", "2",
                                 "--patch", "12", "--checkpoint-every", "1", "--out", str(out), "--seed", "1"])
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out / "net60_dsen2.safetensors", net="60")
    assert ck.meta["provenance"]["command"].startswith("s2sr ")
    assert ck.meta["provenance"]["config"]["patch"] == 12


def test_scene_from_any_scene_source(malmo) -> None:
    from s2sr_cloud.scenes import scene_from_source
    from s2sr_cloud.sr import Window

    src = ArraySource(malmo.b10, malmo.b20, malmo.b60)
    sc = scene_from_source("win", src, Window(60, 120, 120, 240))
    np.testing.assert_array_equal(sc.b10, malmo.b10[:, 60:180, 120:360])
    np.testing.assert_array_equal(sc.b20, malmo.b20[:, 30:90, 60:180])
    np.testing.assert_array_equal(sc.b60, malmo.b60[:, 10:30, 20:60])
    assert make_pair(sc, "60").y.shape == (2, 18, 36)


def test_stac_item_as_training_scene():
    """A STAC item JSON is a scene too: read through the item reader (the bundled sample)."""
    import rasterio

    folder = Path(__file__).parents[1] / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / "S2A_MSIL2A_20170613T101031_87_48"
    item = folder / "S2A_MSIL2A_20170613T101031_87_48.json"
    assert find_scenes([item]) == [item]
    scene = load_scene(item)
    assert scene.b10.shape == (4, 120, 120) and scene.b20.shape == (6, 60, 60) and scene.b60.shape == (2, 20, 20)
    with rasterio.open(folder / "B02.tif") as d:
        blue = d.read(1)
    np.testing.assert_array_equal(scene.b10[0], blue)


def test_adapt_fits_the_scene_own_wald_pairs(tmp_path: Path) -> None:
    """--adapt: a few steps from the shipped 60 m net lower the loss on the scene's own Wald pair."""
    import torch

    from s2sr_cloud.nets import load_checkpoint
    from s2sr_cloud.train.adapt import AdaptConfig, adapt_runner
    from s2sr_cloud.weights import default_checkpoint

    scene = load_scene(Path(__file__).parent / "data" / "T18SVG_crop240")
    pair = make_pair(scene, "60")
    x = np.pad(pair.x, ((0, 0), (14, 14), (14, 14)), mode="symmetric")[None]

    def loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x)))[..., 14:-14, 14:-14]
        return float(torch.nn.functional.l1_loss(out, torch.from_numpy(pair.y[None])))

    before = loss(load_checkpoint(default_checkpoint("net60"), net="net60").model.eval())
    runner = adapt_runner(scene, "net60", cfg=AdaptConfig(steps=30, lr=1e-4, threads=1))
    assert runner.model_info["adapted"]["steps"] == 30
    assert loss(runner.model) < 0.98 * before  # measured: -7 %


def test_phase_shifts_give_every_wald_phase_with_aligned_targets(malmo) -> None:
    """Shifting by whole 60 m pixels keeps the grids aligned: the targets are the same
    observation moved by k target pixels, while the degraded inputs differ (new information)."""
    from s2sr_cloud.train.data import make_pairs

    base = make_pair(malmo, "60")
    pairs = make_pairs(malmo, "60", phases=True)
    assert len(pairs) == 36 and pairs[0].name == base.name
    p = next(q for q in pairs if q.name.endswith("@2,5"))
    from s2sr_cloud.bands import SCALE

    h, w = p.y.shape[1:]
    np.testing.assert_allclose(p.y, malmo.b60[:, 2 : 2 + h, 5 : 5 + w] / np.float32(SCALE), rtol=1e-6)
    hh, ww = min(h, base.y.shape[1] - 2), min(w, base.y.shape[2] - 5)  # where both pairs have data
    a, b = p.x[:, : hh - 6, : ww - 6], base.x[:, 2 : 2 + hh - 6, 5 : 5 + ww - 6]  # away from the crop edges
    np.testing.assert_allclose(a[:4], b[:4], rtol=1e-5)  # 10 m guides: the same 60 m blocks
    assert np.abs(a[4:] - b[4:]).mean() > 1e-4  # LR bands: a different degradation
    assert len(make_pairs(malmo, "20", phases=True)) == 4
    assert len(make_pairs(malmo, "20", phases=False)) == 1


def test_wald_crop_keeps_the_area_every_band_covers(malmo) -> None:
    """A scene whose 20/60 m arrays are a pixel short (10 m side not a multiple of 6, like the
    up42 mock: 444 × 456 px with 221 × 227 and 73 × 75) is cropped to what all groups cover."""
    from s2sr_cloud.wald import crop_to

    b10, b20, b60 = malmo.b10[:, :444, :456], malmo.b20[:, :221, :227], malmo.b60[:, :73, :75]
    c10, c20, c60 = crop_to(b10, b20, b60, 6)
    assert c10.shape[1:] == (438, 450) and c20.shape[1:] == (219, 225) and c60.shape[1:] == (73, 75)
    np.testing.assert_array_equal(c20, b20[:, :219, :225])
    assert make_pair(Scene("short", b10, b20, b60), "20").y.shape[1:] == (216, 222)


def test_sets_are_disjoint_and_every_role_is_defined() -> None:
    """train / validation / test / test2: no scene (or Havel row) in two roles."""
    from s2sr_cloud.train.sets import SETS, load_set

    shared = Path(__file__).parents[1].parent / "shared" / "data" / "s2"
    if not shared.is_dir():
        shared = Path("/work/shared/data/s2")
    if not shared.is_dir():
        pytest.skip("shared data not present")
    assert set(SETS) == {"train", "validation", "test", "test2"}
    tests = Path(__file__).parent / "data"
    names = {r: {s.name for s in load_set(r, shared, tests)} for r in SETS}
    stems = {r: {n.split("[")[0] for n in v} for r, v in names.items()}
    assert not stems["train"] & (stems["validation"] | stems["test"] | stems["test2"])
    assert not stems["test"] & (stems["validation"] | stems["test2"])
    assert not names["validation"] & names["test2"]  # Havel: two disjoint row ranges
    assert len(names["train"]) == 49 and len(names["validation"]) == 13


def test_randomised_degradations_share_targets_and_are_reproducible(malmo, tmp_path: Path) -> None:
    """``--degrade random``: the Wald operator and random others (Gaussians of random width,
    bicubic), the same draw for the same seed (a resumed run rebuilds the same data); each is one
    pair per scene with the same target and a different input; recorded in the provenance."""
    from s2sr_cloud.errors import InputError
    from s2sr_cloud.ops import WALD
    from s2sr_cloud.train.data import RANDOM_SIGMA, degradations, make_pairs

    ops = degradations("random", 8, seed=3)
    assert ops == degradations("random", 8, seed=3) and ops != degradations("random", 8, seed=4)
    assert ops[0] == WALD and ops[1].kind == "bicubic" and len(ops) == 8
    sig = sorted(op.sigma for op in ops[2:])
    lo, hi = RANDOM_SIGMA
    assert all(op.kind == "gaussian" for op in ops[2:]) and lo <= sig[0] and sig[-1] <= hi
    slices = [int((x - lo) / (hi - lo) * 6) for x in sig]
    assert slices == list(range(6)), sig  # stratified: one width in each sixth of the range
    assert [op.name for op in degradations("gaussian:0.5", 8, 0)] == ["gaussian:0.5"]
    with pytest.raises(InputError, match="--degrade"):
        degradations("box", 8, 0)
    two = [WALD, next(op for op in ops if op.kind == "gaussian")]
    a, b = make_pairs(malmo, "20", ops=two)
    np.testing.assert_array_equal(a.y, b.y)
    assert np.abs(a.x[4:] - b.x[4:]).mean() > 1e-4 and b.name.endswith(two[1].name)
    res = train(_cfg(tmp_path, "rd", steps=1, degrade="random", degrade_copies=3))
    prov = load_checkpoint(res.final).meta["provenance"]
    assert prov["config"]["degrade"] == "random"
    assert prov["degradations"] == [op.name for op in degradations("random", 3, seed=3)]  # the operators drawn
