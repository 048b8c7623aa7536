"""The ``auto`` post-step operator: the scene's blur estimated from its own bands (real imagery)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2sr_cloud.ops import parse_protocol
from s2sr_cloud.post import DEFAULT, ConsistencyQA, PostSteps, super_resolve_consistent
from s2sr_cloud.post.estimate import FALLBACK, LIMITS, crop, estimate, resolve
from s2sr_cloud.scenes import load_scene
from s2sr_cloud.sr import ArraySource, Window, to_uint16
from s2sr_cloud.stream import ArraySink, run_blocks
from s2sr_cloud.wald import wald_scene

GATE = Path(__file__).resolve().parents[1] / "s2sr_cloud" / "data" / "gate_T33UUU_396x792.npz"


@pytest.fixture(scope="module")
def havel():  # type: ignore[no-untyped-def]
    return load_scene(GATE)  # 396 x 792 px of real Havel imagery (validation set)


@pytest.mark.parametrize(("protocol", "lo", "hi"), [("gaussian:0.6", 0.52, 0.6), ("wald", 0.3, 0.42),
                                                    ("gaussian:0.35", 0.3, 0.42), ("mtf", 0.38, 0.5)])
def test_the_estimate_follows_how_the_input_was_blurred(havel, protocol, lo, hi) -> None:
    """Degrade the scene with a known operator: the 20 m net's estimate lands near its width
    (Wald ≈ a Gaussian of 0.354 LR px; mtf: 0.445–0.555 per band, the smallest wins)."""
    ws = wald_scene(havel.b10, havel.b20, havel.b60, "net20", parse_protocol(protocol))
    est = estimate("net20", ws.b10, ws.b20, ws.b20)
    assert lo <= est.sigma <= hi, (protocol, est)
    assert est.operator == f"gaussian:{est.sigma:g}" and LIMITS[0] <= est.sigma <= LIMITS[1]
    assert all(v is not None for v in est.per_band.values())  # land: every band tells


@pytest.mark.parametrize("net", ["net20", "net60"])
def test_the_bicubic_kernel_is_recognised(havel, net) -> None:
    """Downsampled with the antialiased bicubic kernel (an SR toolbox's protocol), the scene reads
    as bicubic, not as a Gaussian; the same scene under the Wald protocol does not."""
    lr_of = {"net20": lambda w: w.b20, "net60": lambda w: w.b60}[net]
    ws = wald_scene(havel.b10, havel.b20, havel.b60, net, parse_protocol("bicubic"))
    est = estimate(net, ws.b10, ws.b20, lr_of(ws))
    assert est.family == "bicubic" and est.operator == "bicubic", est
    ws = wald_scene(havel.b10, havel.b20, havel.b60, net, parse_protocol("wald"))
    assert estimate(net, ws.b10, ws.b20, lr_of(ws)).family == "gaussian"


def test_a_featureless_scene_falls_back(havel) -> None:
    """Flat bands (open sea, fog) tell nothing: the fallback width, and no band claims a value."""
    flat = [np.full_like(a, 1234) for a in (havel.b10, havel.b20, havel.b60)]
    for net, lr in (("net20", flat[1]), ("net60", flat[2])):
        est = estimate(net, flat[0], flat[1], lr)
        assert est.sigma == FALLBACK and set(est.per_band.values()) == {None}


def test_crop_is_central_bounded_and_on_the_60m_grid() -> None:
    assert crop((10980, 10980)) == Window(4950, 4950, 1080, 1080)
    w = crop((600, 600), Window(60, 120, 300, 200))
    assert (w.height, w.width) == (288, 180) and all(v % 6 == 0 for v in (w.row, w.col))
    assert w.row >= 60 and w.row + w.height <= 360 and w.col >= 120 and w.col + w.width <= 320
    assert crop((30, 30)).height == 0  # too small to estimate: the caller falls back


def test_auto_must_be_resolved_and_is_recorded(havel) -> None:
    raw = np.full((6, 12, 12), 1000.0, np.float32)
    with pytest.raises(ValueError, match="not estimated yet"):
        DEFAULT.finish("net20", raw, np.full((6, 6, 6), 1000.0, np.float32), b10=np.full((4, 12, 12), 900.0, np.float32))
    src = ArraySource(havel.b10, havel.b20, havel.b60)
    post = resolve(DEFAULT, src)
    assert resolve(post, src) is post  # resolved once
    ops = dict(post.resolved)
    assert set(ops) == {"net20", "net60"} and all(o.startswith("gaussian:") for o in ops.values())  # real blur
    assert all(LIMITS[0] <= parse_protocol(o).sigma <= LIMITS[1] for o in ops.values())
    assert post.effective_operator("net20") == ops["net20"]
    tags = post.tags(["net20", "net60"])
    assert f"net20=auto({ops['net20']})" in tags["S2SR_POST_OPERATOR"]
    assert DEFAULT.with_resolved({"net20": "bicubic"}).tags(["net20"])["S2SR_POST_OPERATOR"] == "auto(bicubic)"
    assert dict(DEFAULT.with_resolved({"net20": 0.4}).resolved) == {"net20": "gaussian:0.4"}
    with pytest.raises(ValueError, match="gaussian:SIGMA or bicubic"):
        DEFAULT.with_resolved({"net20": "wald"})
    back = PostSteps.from_record(post.record())
    assert back == post and back.matches(DEFAULT.record())  # the request matches, whatever the estimate
    assert not PostSteps(per_net=(("net20", 2, "wald"), ("net60", 1, "auto"))).matches(post.record())
    # raw nets or a fixed operator: nothing to estimate
    assert resolve(PostSteps(backproject=-1, hybrid=False, operator="auto"), src).resolved == ()


@pytest.mark.parametrize("found", [LIMITS[1], "bicubic"])
def test_blocks_equal_the_whole_image_with_the_widest_auto_operator(havel, narrow_runners, found) -> None:
    """The margins follow the operator's reach: with the widest ``auto`` width (0.6 LR px: a wider
    back-projection footprint than the Wald operator's) or the bicubic kernel (negative lobes),
    blocks still give the whole-image pixels."""
    src = ArraySource(havel.b10[:, :216, :252], havel.b20[:, :108, :126], havel.b60[:, :36, :42])
    post = DEFAULT.with_resolved({"net20": found, "net60": found})
    if found == LIMITS[1]:
        assert post.margin10(["net20"]) > DEFAULT.with_resolved({"net20": 0.35, "net60": 0.35}).margin10(["net20"])
    for net in ("net20", "net60"):  # an unresolved auto operator's margin covers whatever it becomes
        assert DEFAULT.margin10([net]) >= max(DEFAULT.with_resolved({net: op}).margin10([net]) for op in (LIMITS[1], "bicubic"))
    ref = super_resolve_consistent(src, narrow_runners, post=post)
    sink = ArraySink(Window(0, 0, *src.shape10), narrow_runners)
    run_blocks(src, narrow_runners, sink, block=72, tile=48, post=post, qa=ConsistencyQA())
    for net, arr in sink.arrays.items():
        assert np.abs(arr.astype(int) - to_uint16(ref[net]).astype(int)).max() <= 1, net
