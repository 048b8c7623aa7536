from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud.ops import block_mean, lr_range, upsample, upsample_at, upsample_bicubic


@pytest.mark.parametrize("factor", [2, 6])
def test_upsample_at_window_independent(factor):
    rng = np.random.default_rng(0)
    lr = rng.random((2, 20, 17)).astype(np.float32)
    full = upsample(lr, factor)
    rows, cols = np.arange(13, 34), np.arange(5, 31)
    (r0, r1), (c0, c1) = lr_range(rows, factor, 20), lr_range(cols, factor, 17)
    assert r0 > 0 or c0 > 0
    win = lr[:, r0:r1, c0:c1]
    got = upsample_at(win, factor, rows, cols, origin=(r0, c0), lr_shape=lr.shape[1:])
    np.testing.assert_allclose(got, full[:, 13:34, 5:31], rtol=0, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 6])
def test_upsample_preserves_constant_and_mean(factor):
    lr = np.full((1, 5, 5), 7.0, dtype=np.float32)
    assert np.allclose(upsample(lr, factor), 7.0)
    assert np.allclose(upsample_bicubic(lr, factor), 7.0)
    rng = np.random.default_rng(1)
    x = rng.random((1, 12, 12)).astype(np.float32)
    # bilinear upsample then block mean reproduces a linear ramp exactly away from the border
    ramp = np.broadcast_to(np.arange(12, dtype=np.float32), (1, 12, 12)).copy()
    up = upsample(ramp, 2)
    np.testing.assert_allclose(block_mean(up, 2)[:, :, 1:-1], ramp[:, :, 1:-1], atol=1e-5)
    assert block_mean(x, 3).shape == (1, 4, 4)


def test_upsample_at_rejects_uncovered_window():
    lr = np.zeros((1, 10, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="does not cover"):
        upsample_at(lr[:, 5:, 5:], 2, np.arange(0, 4), np.arange(0, 4), origin=(5, 5), lr_shape=(10, 10))
