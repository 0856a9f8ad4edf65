"""Tests for vce_core.metrics: against scikit-image/scipy and against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vce_core.errors import VCEInputError
from vce_core.io import Volume
from vce_core.metrics import (
    mae,
    mae_ce,
    mae_sigma,
    mse,
    noise_sigma,
    paired_test,
    psnr,
    ssim,
    ssim_map,
    texture_metrics,
)


def _structured(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth gradient plus a bright disc/ball, intensities in about [0, 1.5]."""
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    img = 0.2 + 0.5 * grids[0] + 0.2 * grids[-1]
    r2 = sum((g - 0.5) ** 2 for g in grids)
    img[r2 < 0.25**2] += 0.6
    return img


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for shape in [(40, 33), (18, 20, 16)]:
        ref = rng.random(shape)
        out.append((f"random{len(shape)}d", ref, np.clip(ref + 0.15 * rng.standard_normal(shape), 0, 1)))
        ref = _structured(shape)
        x = 0.9 * np.roll(ref, 1, axis=0) + 0.05 * rng.standard_normal(shape) + 0.03
        out.append((f"structured{len(shape)}d", ref, x))
    return out


PAIRS = _pairs()
IDS = [name for name, _, _ in PAIRS]


@pytest.mark.parametrize(("name", "ref", "x"), PAIRS, ids=IDS)
def test_psnr_matches_skimage(name: str, ref: np.ndarray, x: np.ndarray) -> None:
    for data_range in (1.0, 2.5):
        expected = peak_signal_noise_ratio(ref, x, data_range=data_range)
        assert psnr(x, ref, data_range) == pytest.approx(expected, abs=1e-4)
    # default data range: the reference's max − min
    expected = peak_signal_noise_ratio(ref, x, data_range=float(ref.max() - ref.min()))
    assert psnr(x, ref) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("name", "ref", "x"), PAIRS, ids=IDS)
def test_ssim_matches_skimage(name: str, ref: np.ndarray, x: np.ndarray) -> None:
    data_range = float(ref.max() - ref.min())
    expected = structural_similarity(ref, x, data_range=data_range)
    assert ssim(x, ref, data_range) == pytest.approx(expected, abs=1e-4)
    assert ssim(x, ref, None) == pytest.approx(expected, abs=1e-4)
    expected_g = structural_similarity(ref, x, data_range=data_range, gaussian_weights=True)
    assert ssim(x, ref, data_range, gaussian_weights=True) == pytest.approx(expected_g, abs=1e-4)
    _, full = structural_similarity(ref, x, data_range=data_range, full=True)
    np.testing.assert_allclose(ssim_map(x, ref, data_range), full, atol=1e-6)


def test_ssim_with_mask_averages_the_interior_of_the_map() -> None:
    ref = _structured((40, 36))
    x = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape)
    _, full = structural_similarity(ref, x, data_range=1.5, full=True)
    mask = np.zeros(ref.shape, dtype=bool)
    mask[:20, 10:30] = True  # partly in the 3-voxel border, which is left out like skimage does
    interior = np.zeros(ref.shape, dtype=bool)
    interior[3:-3, 3:-3] = True
    assert ssim(x, ref, 1.5, mask) == pytest.approx(full[mask & interior].mean(), abs=1e-6)
    assert ssim(x, ref, 1.5, np.ones(ref.shape, bool)) == pytest.approx(ssim(x, ref, 1.5), abs=1e-12)
    assert ssim(ref, ref, 1.5) == pytest.approx(1.0)
    border_only = ~interior
    with pytest.raises(VCEInputError, match="interior"):
        ssim(x, ref, 1.5, border_only)


def test_psnr_mse_mae_with_mask_match_direct_formulas() -> None:
    rng = np.random.default_rng(3)
    ref = rng.random((10, 12))
    x = ref + rng.normal(0, 0.1, ref.shape)
    mask = rng.random(ref.shape) > 0.5
    d = x - ref
    assert mse(x, ref) == pytest.approx(np.mean(d**2))
    assert mae(x, ref) == pytest.approx(np.mean(np.abs(d)))
    assert mse(x, ref, mask) == pytest.approx(np.mean(d[mask] ** 2))
    assert mae(x, ref, mask) == pytest.approx(np.mean(np.abs(d[mask])))
    assert psnr(x, ref, 2.0, mask) == pytest.approx(10 * np.log10(4.0 / np.mean(d[mask] ** 2)))
    assert psnr(ref, ref, 1.0) == math.inf
    assert mae(Volume(x[..., None].astype(np.float32)), Volume(ref[..., None].astype(np.float32))) == (
        pytest.approx(np.mean(np.abs(d)), rel=1e-5)
    )


def test_mae_ce_averages_only_enhancing_pixels() -> None:
    ref = np.zeros((6, 6))
    x = np.zeros((6, 6))
    ce = np.zeros((6, 6), dtype=bool)
    ce[1:3, 1:3] = True
    x[1:3, 1:3] = [[0.1, -0.3], [0.2, 0.0]]
    x[4, 4] = 5.0  # a large error outside the CE mask must not count
    assert mae_ce(x, ref, ce) == pytest.approx((0.1 + 0.3 + 0.2 + 0.0) / 4)


def _smooth_background(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    return 100.0 + 30.0 * grids[0] + 20.0 * np.sin(2 * np.pi * grids[1]) * np.cos(np.pi * grids[-1])


@pytest.mark.parametrize(("shape", "sigma"), [((160, 160), 2.0), ((160, 160), 7.0), ((40, 40, 40), 3.0)])
def test_noise_sigma_recovers_white_noise_sd(shape: tuple[int, ...], sigma: float) -> None:
    rng = np.random.default_rng(11)
    img = _smooth_background(shape) + rng.normal(0.0, sigma, shape)
    assert noise_sigma(img) == pytest.approx(sigma, rel=0.04)


def test_noise_sigma_ignores_edges_and_regions_outside_the_mask() -> None:
    rng = np.random.default_rng(5)
    shape = (160, 160)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - 80) ** 2 + (xx - 80) ** 2 < 30**2
    clean = _smooth_background(shape) + 60.0 * disc  # a strong edge around the disc
    img = clean + rng.normal(0.0, 2.0, shape)
    assert noise_sigma(img) == pytest.approx(2.0, rel=0.06)
    # a much noisier region outside the mask must not leak in
    img[:, :40] += rng.normal(0.0, 20.0, (shape[0], 40))
    mask = np.ones(shape, dtype=bool)
    mask[:, :40] = False
    assert noise_sigma(img, mask) == pytest.approx(2.0, rel=0.06)
    assert noise_sigma(img) > 2.5


def test_mae_sigma_is_the_difference_of_noise_levels() -> None:
    rng = np.random.default_rng(2)
    shape = (160, 160)
    bg = _smooth_background(shape)
    ref = bg + rng.normal(0.0, 4.0, shape)
    x = bg + rng.normal(0.0, 1.0, shape)  # an over-smoothed synthesis
    mask = np.ones(shape, dtype=bool)
    assert mae_sigma(x, ref, mask) == pytest.approx(3.0, abs=0.2)
    assert mae_sigma(ref, ref, mask) == 0.0
    with pytest.raises(VCEInputError, match="neighbourhood"):
        mae_sigma(x, ref, np.eye(160, dtype=bool))


def test_texture_metrics_by_hand_on_a_3x3_spike() -> None:
    img = np.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
    # μ = 13/9, N = 9.
    # forward differences (0 on the last column/row): ∇x = 4 at (1,0), −4 at (1,1); ∇y = 4 at (0,1),
    # −4 at (1,1). Magnitudes: 4, 4, 4√2 → Σ = 8 + 4√2; |∇x| + |∇y|: 4, 4, 8 → Σ = 16.
    # Sobel with replicated borders: the excess 4 of the centre gives |G| = 4·2 = 8 at the 4 edge
    # pixels, 4·√(1 + 1) at the 4 corners and 0 at the centre → Σ = 32 + 16√2.
    # Variance: Σ(I − μ)² = 8 + 25 − 9μ² = 128/9.
    mu = 13 / 9
    got = texture_metrics(img)
    assert got["TMSVPMI"] == pytest.approx((8 + 4 * math.sqrt(2)) / 9 / mu)
    assert got["TAVPMI"] == pytest.approx(16 / 9 / mu)
    assert got["TFPMI"] == pytest.approx((32 + 16 * math.sqrt(2)) / 9 / mu)
    assert got["VFPMI"] == pytest.approx(128 / 9 / 9 / mu)
    assert set(got) == {"TMSVPMI", "TAVPMI", "TFPMI", "VFPMI"}


def test_texture_metrics_by_hand_on_a_4x4_ramp() -> None:
    img = np.array([[1.0, 2.0, 3.0, 4.0]] * 4)
    # μ = 2.5, N = 16. ∇x = 1 on columns 0–2 and 0 on the last column, ∇y = 0: Σ = 12 for both.
    # Sobel Gx: (I[c+1] − I[c−1])·(1 + 2 + 1) = 8 inside, 4 on the first/last column (replicated
    # border); Gy = 0 → Σ = 4 rows · (4 + 8 + 8 + 4) = 96. Variance of 1..4 = 1.25.
    got = texture_metrics(img)
    assert got["TMSVPMI"] == pytest.approx(12 / 16 / 2.5)
    assert got["TAVPMI"] == pytest.approx(12 / 16 / 2.5)
    assert got["TFPMI"] == pytest.approx(96 / 16 / 2.5)
    assert got["VFPMI"] == pytest.approx(1.25 / 2.5)
    # transposing the image swaps x and y and must not change anything
    assert texture_metrics(img.T) == pytest.approx(got)


def test_texture_metrics_scaling_and_3d_slices() -> None:
    img = np.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
    base = texture_metrics(img)
    doubled = texture_metrics(3.0 * img)
    for key in ("TMSVPMI", "TAVPMI", "TFPMI"):
        assert doubled[key] == pytest.approx(base[key])  # per mean intensity: scale invariant
    assert doubled["VFPMI"] == pytest.approx(3.0 * base["VFPMI"])  # eq. 10 is not
    volume = np.stack([img, np.zeros_like(img), 3.0 * img], axis=2)  # empty slice skipped
    got = texture_metrics(volume)
    assert got["TFPMI"] == pytest.approx(base["TFPMI"])
    assert got["VFPMI"] == pytest.approx(2.0 * base["VFPMI"])


def test_texture_metrics_rejects_non_positive_mean() -> None:
    with pytest.raises(VCEInputError, match="mean intensity"):
        texture_metrics(np.array([[-1.0, 1.0], [0.5, -0.5]]))
    with pytest.raises(VCEInputError, match="slice"):
        texture_metrics(np.zeros((4, 4, 3)))


def test_paired_test_matches_scipy_wilcoxon() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(30.0, 1.0, 25)
    b = a + rng.normal(0.4, 0.5, 25)
    ref = stats.wilcoxon(a, b)
    assert paired_test(a, b) == pytest.approx((float(ref.statistic), float(ref.pvalue)))
    small = paired_test([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])
    ref = stats.wilcoxon([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])
    assert small == pytest.approx((float(ref.statistic), float(ref.pvalue)))
    with pytest.raises(VCEInputError, match="at least 2 pairs"):
        paired_test([1.0], [2.0])
    with pytest.raises(VCEInputError, match="zero"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(VCEInputError, match="same number"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(VCEInputError, match="NaN"):
        paired_test([1.0, np.nan, 3.0], [1.0, 2.0, 4.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: psnr(np.zeros((8, 8)), np.zeros((8, 9)), 1.0),
        lambda: ssim(np.zeros((8, 8, 8)), np.zeros((8, 8, 7)), 1.0),
        lambda: mae(np.full((4, 4), np.nan), np.zeros((4, 4))),
        lambda: mse(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4), bool)),
        lambda: mae_ce(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4), bool)),
        lambda: mae(np.zeros((4, 4)), np.zeros((4, 4)), np.ones((4, 5), bool)),
        lambda: ssim(np.zeros((5, 5)), np.zeros((5, 5)), 1.0),
        lambda: psnr(np.zeros((4, 4)), np.ones((4, 4))),
        lambda: psnr(np.zeros((4, 4)), np.ones((4, 4)), -1.0),
        lambda: ssim(np.zeros((9, 9)), np.ones((9, 9)), 1.0, win_size=4),
    ],
)
def test_bad_inputs_raise_vce_input_error(call) -> None:
    with pytest.raises(VCEInputError):
        call()
