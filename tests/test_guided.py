"""Hybrid post-step (local guided regression blended with the nets): exact on a known linear
relation, seamless across windows, nodata-safe, and better than the nets alone on the
held-out L2A patches (Wald protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud.evaluation import wald_metrics
from s2sr_cloud.ops import degrade
from s2sr_cloud.post import PostSteps, guided, super_resolve_consistent
from s2sr_cloud.scenes import find_scenes, load_scene
from s2sr_cloud.sr import ArraySource, Window

from .conftest import DATA

#: A blend for both nets (the 60 m net's default weight is 0: no blend), for the tests of how the
#: blend works (windows, margins, nodata, its effect).
ON = (("net20", guided.GuidedConfig(1, 30.0, 0.4)), ("net60", guided.GuidedConfig(1, 300.0, 0.6)))


@pytest.mark.parametrize(("shape", "r"), [((2, 9, 7), 2), ((1, 1, 5), 1), ((1, 2, 3), 3)])
def test_box_mean_matches_a_direct_window_mean(shape, r) -> None:
    """Also for windows narrower than the radius (one 60 m pixel wide)."""
    x = np.random.default_rng(1).normal(size=shape)
    c, h, w = shape
    pad = np.pad(x, ((0, 0), (r, r), (r, r)), mode="symmetric")
    direct = np.stack([[[pad[k, i : i + 2 * r + 1, j : j + 2 * r + 1].mean() for j in range(w)] for i in range(h)] for k in range(c)])
    np.testing.assert_allclose(guided._box(x, r), direct, rtol=1e-12)


@pytest.mark.parametrize("factor", [2, 6])
def test_regression_recovers_a_linear_relation_of_real_guides(malmo, factor) -> None:
    """A band that is exactly a linear mix of the (real) guides is predicted at 10 m from its
    degraded version alone: the regression finds the mix."""
    b10 = malmo.b10[:, :240, :240].astype(np.float32)
    truth = (0.4 * b10[0] - 0.2 * b10[1] + 0.3 * b10[3] + 80.0)[None]
    lr = degrade(truth, factor)
    cfg = guided.GuidedConfig(radius=2, ridge=1e-6, weight=1.0)
    pred, valid = guided.regression(b10, lr, factor, cfg)
    assert valid.all()
    assert np.abs(pred - truth).max() < 0.5, np.abs(pred - truth).max()
    # and the blend with weight w is (1 - w)·net + w·prediction
    net = truth + 100.0
    out = guided.blend(net, b10, lr, factor, guided.GuidedConfig(radius=2, ridge=1e-6, weight=0.25))
    np.testing.assert_allclose(out, 0.75 * net + 0.25 * pred, atol=0.5)


@pytest.mark.parametrize("iterations", [-1, 2])
def test_windows_equal_the_whole_image(malmo, narrow_runners, iterations) -> None:
    """Blocks that do not divide the image give the whole-image hybrid result (with and
    without the back-projection after it)."""
    src = ArraySource(malmo.b10[:, :288, :216], malmo.b20[:, :144, :108], malmo.b60[:, :48, :36])
    whole = super_resolve_consistent(src, narrow_runners, post=PostSteps(iterations, True, ON))
    plain = super_resolve_consistent(src, narrow_runners, post=PostSteps(iterations, False, ON))
    for name in whole:
        assert np.abs(whole[name] - plain[name]).mean() > 1.0  # the step does something
        tiled = np.zeros_like(whole[name])
        for r in range(0, 288, 96):
            for c in range(0, 216, 72):
                tiled[:, r : r + 96, c : c + 72] = super_resolve_consistent(
                    src, narrow_runners, window=Window(r, c, 96, 72), post=PostSteps(iterations, True, ON))[name]
        np.testing.assert_allclose(tiled, whole[name], rtol=1e-5, atol=0.02)


def test_a_margin_smaller_than_the_reach_makes_seams(malmo, narrow_runners, monkeypatch) -> None:
    """The margin is needed: with one LR pixel too few, windows no longer match the whole image."""
    src = ArraySource(malmo.b10[:, :288, :216], malmo.b20[:, :144, :108], malmo.b60[:, :48, :36])
    runners = {"net60": narrow_runners["net60"]}
    whole = super_resolve_consistent(src, runners, post=PostSteps(-1, True, ON))["net60"]
    monkeypatch.setattr(guided, "margin_lr", lambda radius, reach=1: 2 * radius)
    part = super_resolve_consistent(src, runners, window=Window(96, 72, 96, 72), post=PostSteps(-1, True, ON))["net60"]
    assert np.abs(part - whole[:, 96:192, 72:144]).max() > 0.5


def test_nodata_stays_nodata_and_does_not_spread(malmo) -> None:
    b10 = malmo.b10[:, :180, :180].astype(np.float32)
    b20 = malmo.b20[:, :90, :90].astype(np.float32)
    b60 = malmo.b60[:, :30, :30].astype(np.float32)
    net = np.repeat(np.repeat(b60, 6, 1), 6, 2) + 5.0
    hole10 = b10.copy()
    hole10[:, 60:90, 60:90] = 0
    net_hole = net.copy()
    net_hole[:, 60:90, 60:90] = 0
    ref = PostSteps(-1, True, ON).finish("net60", net, b60, b10=b10, b20=b20)
    out = PostSteps(-1, True, ON).finish("net60", net_hole, b60, b10=hole10, b20=b20)
    assert np.isfinite(out).all() and (out[:, 60:90, 60:90] == 0).all()
    far = guided.margin10(6, dict(ON)["net60"].radius) + 6
    np.testing.assert_allclose(out[:, 90 + far :, :], ref[:, 90 + far :, :], rtol=1e-5)
    # an all-nodata window gives nodata, not NaN
    empty = PostSteps(2, True, ON).finish("net60", np.zeros_like(net), b60, b10=np.zeros_like(b10), b20=b20)
    assert (empty == 0).all()


@pytest.mark.parametrize("net", ["net20", "net60"])
def test_hybrid_beats_the_nets_alone_on_the_held_out_l2a_patches(shipped, net) -> None:
    """Wald protocol on the 12 validation L2A patches (never trained on): lower mean RMSE with the
    blend (before the Wald back-projection) than without."""
    with_h, without = [], []
    for p in find_scenes([DATA / "l2a_heldout"]):
        doc = wald_metrics(load_scene(p), net, shipped[net], post=PostSteps(2, True, ON))
        with_h.append(doc["model"]["rmse"])
        without.append(doc["no_hybrid"]["rmse"])
    assert np.mean(with_h) < 0.97 * np.mean(without), (np.mean(with_h), np.mean(without))


def test_config_and_margins() -> None:
    assert guided.config("60") is guided.DEFAULTS["net60"] and guided.config("net20") is guided.DEFAULTS["net20"]
    assert guided.margin_lr(1) == 4 and guided.margin10(6, 1) == 24 and guided.margin10(2, 1) == 12
    with pytest.raises(ValueError, match="20 m bands"):
        guided.guides("net60", np.zeros((4, 12, 12), np.float32))


def test_an_output_made_without_the_hybrid_step_is_not_taken_as_done(tmp_path) -> None:
    """Re-running with another post-step redoes an item instead of skipping it."""
    import json

    from s2sr_cloud.batch import done_before

    cog = tmp_path / "x-s2sr.tif"
    cog.write_bytes(b"x")
    models = {"net20": {"name": "a"}}
    rec = {"source_item": {"id": "x"}, "models": models, "backproject": 2}
    from s2sr_cloud.publish.record import record_path

    record_path(cog).write_text(json.dumps(rec))  # an older record: no "hybrid" key (made without it)
    assert done_before("x", cog, models, PostSteps(2, False))
    assert not done_before("x", cog, models, PostSteps(2, True))
    record_path(cog).write_text(json.dumps({**rec, "hybrid": True}))  # the hybrid step of its time
    from s2sr_cloud.post.steps import _LEGACY_GUIDED

    then = PostSteps(2, True, _LEGACY_GUIDED)
    assert done_before("x", cog, models, then) and not done_before("x", cog, models, PostSteps(2, False))
    assert not done_before("x", cog, models, PostSteps())  # today's blend weights differ: redone
    # a record of today's post-steps matches them only while the configuration is the same
    record_path(cog).write_text(json.dumps({**rec, **PostSteps().record()}))
    assert done_before("x", cog, models, PostSteps())
    other = PostSteps(guided=(("net20", guided.GuidedConfig(2, 30.0, 0.4)), ("net60", guided.config("net60"))))
    assert not done_before("x", cog, models, other)


def test_a_zero_weight_turns_the_blend_off_for_that_net_only(malmo, narrow_runners) -> None:
    """A per-net weight of 0 is that net without the hybrid step (no margin for it, the other net
    still blended); a per-band operator (mtf) is refused for the post-steps."""
    from s2sr_cloud.post.guided import DEFAULTS, GuidedConfig

    sc = malmo
    src = ArraySource(sc.b10[:, :144, :144], sc.b20[:, :72, :72], sc.b60[:, :24, :24])
    off60 = PostSteps(2, True, (("net20", DEFAULTS["net20"]), ("net60", GuidedConfig(1, 300.0, 0.0))))
    assert off60.blends("net20") and not off60.blends("net60")
    assert off60.margin10(["net60"]) == PostSteps(2, False).margin10(["net60"])
    mixed = super_resolve_consistent(src, narrow_runners, post=off60)
    np.testing.assert_array_equal(mixed["net60"], super_resolve_consistent(src, narrow_runners, post=PostSteps(2, False))["net60"])
    np.testing.assert_array_equal(mixed["net20"], super_resolve_consistent(src, narrow_runners, post=PostSteps(2, True))["net20"])
    with pytest.raises(ValueError, match="one operator for every band"):
        PostSteps(operator="mtf")


def test_per_net_back_projection_and_operator(malmo, narrow_runners) -> None:
    """``per_net`` gives each net its own back-projection iterations and operator: in the output (each
    net as if run alone with them), the margins, the tags, the record (round trip) and the "done
    before" rule; ``with_backproject`` sets every net's iterations and keeps the operators."""
    sc = malmo
    src = ArraySource(sc.b10[:, :144, :144], sc.b20[:, :72, :72], sc.b60[:, :24, :24])
    post = PostSteps(2, True, per_net=(("net60", -1, "gaussian:0.6"), ("20", 1, "gaussian:0.4")))
    assert post.per_net == (("net20", 1, "gaussian:0.4"), ("net60", -1, "gaussian:0.6"))
    assert (post.iterations("net60"), post.operator_of("net20"), post.max_iterations) == (-1, "gaussian:0.4", 1)
    out = super_resolve_consistent(src, narrow_runners, post=post)
    for net, (it, op) in (("net20", (1, "gaussian:0.4")), ("net60", (-1, "gaussian:0.6"))):
        alone = super_resolve_consistent(src, {net: narrow_runners[net]}, post=PostSteps(it, True, operator=op))[net]
        np.testing.assert_array_equal(out[net], alone)
        assert post.margin10([net]) == PostSteps(it, True, operator=op).margin10([net])
    tags = post.tags(["net20", "net60"])
    assert tags["S2SR_BACKPROJECT"] == "net20=1,net60=-1" and tags["S2SR_POST_OPERATOR"] == "net20=gaussian:0.4,net60=gaussian:0.6"
    rec = post.record()
    assert rec["backproject"] == 1 and PostSteps.from_record(rec) == post and post.matches(rec)
    assert not post.with_backproject(2).matches(rec) and not PostSteps(1, True, operator="gaussian:0.4").matches(rec)
    two = post.with_backproject(2)
    assert two.tags(["net20", "net60"])["S2SR_BACKPROJECT"] == "2" and two.operator_of("net60") == "gaussian:0.6"
    with pytest.raises(ValueError, match="from -1"):
        PostSteps(per_net=(("net20", -3, "wald"),))
