"""Tests for vce_core.preprocess: normalization round trips, brain mask and seed 000's CE mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from vce_core.errors import VCEInputError
from vce_core.io import Volume
from vce_core.preprocess import METHODS, brain_mask, ce_mask, denormalize, normalize


def _mri_like(shape: tuple[int, ...] = (24, 28, 20), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positive, skewed intensities (scanner-like units) on a zero background, and the foreground."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.8
    img = np.where(inside, rng.gamma(4.0, 120.0, shape), 0.0).astype(np.float32)
    return img, inside


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_numpy(method: str) -> None:
    x, inside = _mri_like()
    y, params = normalize(x, method, mask=inside)
    assert y.dtype == np.float32 and y.shape == x.shape
    back = denormalize(y, json.loads(json.dumps(params)))  # params survive a model card
    assert back.dtype == np.float32
    # float32 rounding of y, amplified by the inverse's slope (see the module docstring):
    # zscore/percentile ~1e-7 of the spread; tanh 6e-8 / 0.005 = 1.2e-5 σ; sigmoid grows as 1/(1 − y).
    sd = float(x[inside].std())
    tol = {"zscore": 1e-5, "percentile": 1e-5, "tanh": 5e-5, "sigmoid": 5e-4}[method] * sd
    np.testing.assert_allclose(back, x, rtol=0, atol=tol)


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_torch(method: str) -> None:
    torch = pytest.importorskip("torch")
    x, inside = _mri_like(seed=1)
    t = torch.from_numpy(x)
    y, params = normalize(t, method, mask=torch.from_numpy(inside))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    y_np, params_np = normalize(x, method, mask=inside)
    assert params == params_np  # same float64 statistics
    np.testing.assert_allclose(y.numpy(), y_np, rtol=1e-5, atol=1e-6)
    back = denormalize(y, params)
    sd = float(x[inside].std())
    np.testing.assert_allclose(back.numpy(), x, rtol=0, atol=1e-3 * sd)


def test_formulas_and_statistics_come_from_the_mask() -> None:
    x, inside = _mri_like(seed=2)
    vals = x[inside].astype(np.float64)
    mu, sd = vals.mean(), vals.std()
    z = (x.astype(np.float64) - mu) / sd
    y, params = normalize(x, "zscore", mask=inside)
    assert params == {"method": "zscore", "mean": pytest.approx(mu), "std": pytest.approx(sd)}
    assert y[inside].mean() == pytest.approx(0.0, abs=1e-5) and y[inside].std() == pytest.approx(
        1.0, rel=1e-5
    )
    np.testing.assert_allclose(normalize(x, "sigmoid", mask=inside)[0], special.expit(z), atol=1e-7)
    np.testing.assert_allclose(
        normalize(x, "tanh", mask=inside)[0], 0.5 * (np.tanh(0.01 * z) + 1.0), atol=1e-7
    )
    # without the mask the zero background enters the statistics
    assert normalize(x, "zscore")[1]["mean"] == pytest.approx(x.mean(dtype=np.float64))


def test_percentile_maps_the_chosen_percentiles_to_0_and_1() -> None:
    x, inside = _mri_like(seed=3)
    for pct in [(0.5, 99.5), (2.0, 98.0)]:
        y, params = normalize(x, "percentile", mask=inside, percentiles=pct)
        lo, hi = np.percentile(x[inside].astype(np.float64), pct)
        assert (params["low"], params["high"]) == pytest.approx((lo, hi))
        assert params["percentiles"] == list(pct)
        assert np.percentile(y[inside], pct) == pytest.approx([0.0, 1.0], abs=1e-6)
        assert y.max() > 1.0  # not clipped, so it stays invertible


def test_inverse_is_finite_and_monotonic_at_the_saturating_ends() -> None:
    x, _ = _mri_like(seed=4)
    ramp = np.array([-0.5, 0.0, 1e-30, 0.25, 0.5, 0.75, 1.0 - 1e-7, 1.0, 1.5], dtype=np.float32)
    for method in ("sigmoid", "tanh"):
        _, params = normalize(x, method)
        back = denormalize(ramp, params)
        assert np.all(np.isfinite(back))
        assert np.all(np.diff(back) >= 0)
        assert back[4] == pytest.approx(params["mean"], abs=1e-3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, m: normalize(x, "minmax"), "unknown normalization method"),
        (lambda x, m: normalize(x, "zscore", mask=np.zeros(x.shape, bool)), "empty"),
        (lambda x, m: normalize(x, "zscore", mask=m[:-1]), "shape"),
        (lambda x, m: normalize(np.full((5, 5), 3.0), "sigmoid"), "constant"),
        (lambda x, m: normalize(np.full((5, 5), 3.0), "percentile"), "constant"),
        (lambda x, m: normalize(x, "percentile", percentiles=(60, 40)), "percentiles"),
        (lambda x, m: normalize(np.array([1.0, np.nan, 2.0]), "zscore"), "NaN"),
        (lambda x, m: denormalize(x, {"method": "zscore", "mean": 1.0}), "std"),
        (lambda x, m: denormalize(x, {"method": "zscore", "mean": 1.0, "std": 0.0}), "positive"),
        (lambda x, m: denormalize(x, {"method": "whatever"}), "unknown method"),
        (lambda x, m: denormalize(x, [1, 2]), "params"),
    ],
)
def test_normalization_errors(call, match: str) -> None:
    x, inside = _mri_like(shape=(8, 8, 6))
    with pytest.raises(VCEInputError, match=match):
        call(x, inside)


def _head(shape: tuple[int, int, int] = (48, 52, 36), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoidal 'brain' (WM 0.9, darker CSF rim 0.3, dark ventricle 0.1) on Rician background
    noise, with a small bright blob outside it; returns (image, true brain)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    r = np.sqrt(sum((g / (0.42 * n)) ** 2 for g, n in zip(grids, shape, strict=True)))
    brain = r < 1.0
    img = np.where(brain, 0.9, 0.0)
    img[brain & (r > 0.85)] = 0.3
    img[r < 0.3] = 0.1  # ventricle darker than the threshold: must be filled
    img[1:4, 1:4, 1:4] = 1.0  # bright blob outside the brain: must be dropped
    noise = 0.03 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return np.abs(img + noise), brain


def test_brain_mask_finds_the_brain_fills_holes_drops_specks() -> None:
    img, brain = _head()
    mask = brain_mask(img)
    assert mask.dtype == bool and mask.shape == img.shape
    dice = 2 * np.count_nonzero(mask & brain) / (mask.sum() + brain.sum())
    assert dice > 0.98
    assert not mask[1:4, 1:4, 1:4].any()
    center = tuple(n // 2 for n in img.shape)
    assert mask[center]  # the dark ventricle is filled
    np.testing.assert_array_equal(brain_mask(Volume(img.astype(np.float32))), mask)
    # 2-D slices and an explicit threshold work too
    k = img.shape[2] // 2
    slice_mask = brain_mask(img[:, :, k], threshold=0.2)
    assert (
        2 * np.count_nonzero(slice_mask & brain[:, :, k]) / (slice_mask.sum() + brain[:, :, k].sum()) > 0.97
    )
    with pytest.raises(VCEInputError, match="threshold"):
        brain_mask(img, threshold=5.0)
    with pytest.raises(VCEInputError, match="dimensions"):
        brain_mask(np.ones(10))


def test_ce_mask_finds_an_enhancing_disc_only() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    native = np.full((64, 64), 0.0)
    tissue = (yy - 32) ** 2 + (xx - 32) ** 2 < 28**2
    native[tissue] = 1.0
    enhancing = (yy - 24) ** 2 + (xx - 24) ** 2 < 6**2
    bright_native = (yy - 42) ** 2 + (xx - 42) ** 2 < 5**2  # bright before contrast, no uptake
    weak = (yy - 24) ** 2 + (xx - 42) ** 2 < 5**2  # enhances by 5 % only
    native[bright_native] = 1.8
    native = native + rng.normal(0.0, 0.01, native.shape)
    standard_dose = native.copy()
    standard_dose[enhancing] += 0.5
    standard_dose[weak] += 0.05
    q95 = np.quantile(native, 0.95)
    mask = ce_mask(native, standard_dose)
    np.testing.assert_array_equal(mask, (standard_dose - native) >= 0.1 * q95)
    assert mask[enhancing].all()
    assert not mask[bright_native].any() and not mask[weak].any()
    assert mask.sum() == enhancing.sum()
    # a lower threshold picks up the weak region too
    assert ce_mask(native, standard_dose, threshold=0.02)[weak].all()
    # with a brain mask, the quantile comes from the brain and the result stays inside it
    restricted = ce_mask(native, standard_dose, mask=tissue & ~enhancing)
    np.testing.assert_array_equal(
        restricted,
        ((standard_dose - native) >= 0.1 * np.quantile(native[tissue & ~enhancing], 0.95))
        & tissue
        & ~enhancing,
    )


def test_ce_mask_errors() -> None:
    a = np.ones((8, 8))
    with pytest.raises(VCEInputError, match="shape"):
        ce_mask(a, np.ones((8, 9)))
    with pytest.raises(VCEInputError, match="0.95-quantile"):
        ce_mask(np.zeros((8, 8)), a)
    with pytest.raises(VCEInputError, match="positive"):
        ce_mask(a, a, threshold=0.0)
    with pytest.raises(VCEInputError, match="empty"):
        ce_mask(a, a, mask=np.zeros((8, 8), bool))
