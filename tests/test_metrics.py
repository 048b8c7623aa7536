"""Metrics, Wald degradation and the real-scale consistency check (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from s2sr_cloud import metrics
from s2sr_cloud.ops import block_mean, degrade, gaussian_blur, gaussian_kernel


def _img(seed: int = 0, shape: tuple[int, int, int] = (3, 40, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(500, 3000, shape).astype(np.float32)


def test_rmse_sre_psnr_known_values() -> None:
    ref = np.full((2, 10, 10), 1000.0, np.float32)
    est = ref + np.array([10.0, -20.0], np.float32)[:, None, None]
    np.testing.assert_allclose(metrics.rmse(ref, est), [10.0, 20.0])
    np.testing.assert_allclose(metrics.sre(ref, est), [20 * np.log10(100), 20 * np.log10(50)])
    np.testing.assert_allclose(metrics.psnr(ref, est), [20 * np.log10(100), 20 * np.log10(50)])


def test_sam_is_zero_for_scaled_spectra_and_known_for_orthogonal() -> None:
    ref = _img()
    assert metrics.sam(ref, ref * 1.7) == pytest.approx(0.0, abs=1e-4)
    ref2 = np.stack([np.ones((4, 4)), np.ones((4, 4))]).astype(np.float32)
    est2 = np.stack([np.ones((4, 4)), np.full((4, 4), np.sqrt(3.0))]).astype(np.float32)
    assert metrics.sam(ref2, est2) == pytest.approx(15.0, abs=1e-3)  # 60 deg - 45 deg


def test_uiq_is_one_for_identical_and_lower_for_noise() -> None:
    ref = _img()
    np.testing.assert_allclose(metrics.uiq(ref, ref), 1.0)
    noisy = ref + np.random.default_rng(1).normal(0, 300, ref.shape).astype(np.float32)
    assert np.all(metrics.uiq(ref, noisy) < 0.95)


def test_nodata_pixels_are_left_out() -> None:
    ref = _img()
    est = ref.copy()
    est[:, :5, :5] = 0  # nodata in the estimate
    ref[:, 30:, 30:] = 0  # and in the reference
    assert metrics.rmse(ref, est).max() == 0.0


def test_all_metrics_document() -> None:
    ref = _img()
    doc = metrics.all_metrics(ref, ref + 5, ["B05", "B06", "B07"])
    assert set(doc) >= {"rmse", "sre", "sam", "uiq", "psnr", "per_band"}
    assert doc["rmse"] == pytest.approx(5.0)
    assert set(doc["per_band"]) == {"B05", "B06", "B07"}


def test_gaussian_blur_matches_direct_convolution_and_keeps_constants() -> None:
    x = _img(2, (1, 17, 19))
    sigma = 0.5
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    p = np.pad(x[0].astype(np.float64), r, mode="symmetric")
    direct = np.zeros(x.shape[1:])
    for i in range(len(k)):
        for j in range(len(k)):
            direct += k[i] * k[j] * p[i : i + x.shape[1], j : j + x.shape[2]]
    np.testing.assert_allclose(gaussian_blur(x, sigma)[0], direct, rtol=1e-5)
    const = np.full((2, 12, 12), 1234.0, np.float32)
    np.testing.assert_allclose(degrade(const, 2), 1234.0, rtol=1e-6)
    np.testing.assert_allclose(degrade(const, 6), 1234.0, rtol=1e-6)
    assert degrade(const, 6).shape == (2, 2, 2)


def test_degrade_is_blur_then_block_mean() -> None:
    x = _img(3, (2, 24, 24))
    np.testing.assert_allclose(degrade(x, 2), block_mean(gaussian_blur(x, 0.5), 2), rtol=1e-6)
    # sigma 1/6 barely blurs: degrading by 6 is close to the plain block mean
    assert np.abs(degrade(x, 6) - block_mean(x, 6)).max() < 0.05 * x.std()


def test_consistency_is_zero_when_output_degrades_to_the_input() -> None:
    hr = _img(4, (2, 36, 36))
    lr = degrade(hr, 6)
    doc = metrics.consistency(hr, lr, 6, ["B01", "B09"])
    assert doc["rmse"] == pytest.approx(0.0, abs=1e-3)
    assert set(doc["per_band"]) == {"B01", "B09"}
    worse = metrics.consistency(hr + 50, lr, 6)
    assert worse["rmse"] == pytest.approx(50.0, rel=1e-3)


def test_consistency_skips_nodata_blocks() -> None:
    hr = _img(5, (1, 12, 12))
    lr = degrade(hr, 2)
    hr[:, :2, :2] = 0
    assert metrics.consistency(hr, lr, 2)["rmse"] < 1.0


def test_bicubic_baseline_on_real_imagery(malmo_npz) -> None:
    with np.load(malmo_npz) as z:
        b20 = z["b20"][:, :120, :120].astype(np.float32)
    lr = degrade(b20, 2)
    bic = metrics.bicubic_baseline(lr, 2)
    assert bic.shape == b20.shape
    r = metrics.rmse(b20, bic)
    assert np.all(r > 5) and np.all(r < 600)
