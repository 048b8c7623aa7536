"""Back-projection post-step: consistent with the observed bands, seamless across windows,
and better than the raw nets on held-out real imagery (Wald protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud.metrics import consistency, rmse
from s2sr_cloud.post import DEFAULT, NONE, ConsistencyQA, PostSteps, project, super_resolve_consistent
from s2sr_cloud.post.estimate import resolve
from s2sr_cloud.sr import ArraySource, Window, super_resolve
from s2sr_cloud.wald import wald_scene


def test_tiled_windows_equal_the_whole_image(malmo, narrow_runners) -> None:
    """Blocks that do not divide the image give the whole-image projected result."""
    b10, b20, b60 = (malmo.b10[:, :288, :216], malmo.b20[:, :144, :108], malmo.b60[:, :48, :36])
    src = ArraySource(b10, b20, b60)
    post = resolve(DEFAULT, src)  # the auto operator, once for the image (as run_blocks does)
    whole = super_resolve_consistent(src, narrow_runners, post=post)
    for name in whole:
        tiled = np.zeros_like(whole[name])
        for r in range(0, 288, 96):
            for c in range(0, 216, 72):
                part = super_resolve_consistent(src, narrow_runners, window=Window(r, c, 96, 72), post=post)[name]
                tiled[:, r : r + 96, c : c + 72] = part
        np.testing.assert_allclose(tiled, whole[name], rtol=1e-5, atol=0.02)


def test_projection_makes_the_60m_bands_consistent_and_improves_wald_rmse(malmo, shipped) -> None:
    """The back-projection with the Wald operator (2 iterations, no blend) makes the output consistent
    with the observation under that operator, and closer to the truth under the Wald protocol."""
    b10, b20, b60 = malmo.b10[:, :360, :360], malmo.b20[:, :180, :180], malmo.b60[:, :60, :60]
    src = ArraySource(b10, b20, b60)
    wald_bp = PostSteps(2, False)
    raw = super_resolve(src, shipped)
    proj = super_resolve_consistent(src, shipped, post=wald_bp)
    for name, s, lr in (("net20", 2, b20), ("net60", 6, b60)):
        before = consistency(raw[name], lr, s)["rmse"]
        after = consistency(proj[name], lr, s)["rmse"]
        assert after < 0.25 * before, (name, before, after)
    assert consistency(proj["net60"], b60, 6)["rmse"] < 0.5  # exact up to rounding
    for name in ("net20", "net60"):  # Wald protocol: closer to the truth too
        ws = wald_scene(b10, b20, b60, name)
        wsrc = ArraySource(ws.b10, ws.b20, ws.b60)
        e_raw = np.mean(rmse(ws.target, super_resolve(wsrc, {name: shipped[name]})[name]))
        e_proj = np.mean(rmse(ws.target, super_resolve_consistent(wsrc, {name: shipped[name]}, post=wald_bp)[name]))
        assert e_proj < e_raw, (name, e_raw, e_proj)


def test_nodata_stays_nodata_and_is_not_used() -> None:
    rng = np.random.default_rng(0)
    lr = rng.uniform(500, 3000, (2, 8, 8)).astype(np.float32)
    sr = np.repeat(np.repeat(lr, 6, 1), 6, 2) + rng.normal(0, 50, (2, 48, 48)).astype(np.float32)
    sr[:, :12, :12] = 0
    lr[:, 7, 7] = 0  # as super_resolve does, the output is nodata where an input is
    sr[:, 42:, 42:] = 0
    out = project(sr, lr, 6)
    assert (out[:, :12, :12] == 0).all() and (out[:, 42:, 42:] == 0).all()
    valid = np.ones((8, 8), bool)
    valid[:2, :2] = valid[7, 7] = False
    assert np.isfinite(out).all() and (out[:, ~np.repeat(np.repeat(~valid, 6, 0), 6, 1)] >= 1).all()
    back = out.reshape(2, 8, 6, 8, 6).mean(axis=(2, 4))
    # blocks whose (1 px) blur does not reach nodata are made exact
    padded = np.pad(~valid, 1)
    near = np.zeros_like(valid)
    for dr in range(3):
        for dc in range(3):
            near |= padded[dr : dr + 8, dc : dc + 8]
    assert (~near).sum() >= 40
    np.testing.assert_allclose(back[:, ~near], lr[:, ~near], atol=0.05)


def test_consistency_qa_accumulates_over_windows(malmo, narrow_runners) -> None:
    """The per-output QA figure fed window by window equals the whole-image consistency."""
    b10, b20, b60 = malmo.b10[:, :216, :216], malmo.b20[:, :108, :108], malmo.b60[:, :36, :36]
    src = ArraySource(b10, b20, b60)
    whole_qa, tiled_qa = ConsistencyQA(), ConsistencyQA()
    whole = super_resolve_consistent(src, narrow_runners, post=NONE, qa=whole_qa)
    for r in (0, 108):
        super_resolve_consistent(src, narrow_runners, post=NONE, qa=tiled_qa, window=Window(r, 0, 108, 216))
    # equal up to the 20 m blur's 2 px at window seams (mirrored there instead of the neighbour)
    assert whole_qa.result() == pytest.approx(tiled_qa.result(), rel=0.01)
    ref = consistency(whole["net60"], b60, 6, ["B01", "B09"])["per_band"]
    assert whole_qa.result()["B01"] == pytest.approx(ref["B01"], abs=0.05)
    assert set(whole_qa.result()) == {"B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09"}


@pytest.mark.parametrize("factor", [2, 6])
@pytest.mark.parametrize("shape", [(72, 60), (75, 63)])
def test_fast_operators_equal_the_reference_ones(factor: int, shape: tuple[int, int]) -> None:
    """The fused one-pass degrade equals blur-then-block-mean (the reference's definition), and the
    phase-wise bilinear upsampling equals the index-wise one the nets' input uses."""
    from s2sr_cloud.ops import block_mean, degrade, gaussian_blur, upsample, upsample_at

    x = np.random.default_rng(1).uniform(0, 6000, (3, *shape)).astype(np.float32)
    ref = block_mean(gaussian_blur(x, 1.0 / factor), factor)
    np.testing.assert_allclose(degrade(x, factor), ref, atol=2e-3)
    np.testing.assert_allclose(degrade(x.astype(np.float64), factor), ref, atol=2e-3)
    rows, cols = np.arange(shape[0] // factor * factor), np.arange(shape[1] // factor * factor)
    lr = x[:, : shape[0] // factor, : shape[1] // factor]
    np.testing.assert_array_equal(upsample(lr, factor), upsample_at(lr, factor, rows, cols))
