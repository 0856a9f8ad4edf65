"""Noise realism figures: pooled σ̂, local SD and the noise power spectrum on known noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vce_core.errors import VCEInputError
from vce_core.evaluate.noise import local_sd, noise_power_spectrum, nps_band_ratios, pooled_noise_sigma
from vce_core.metrics import noise_sigma

SHAPE = (96, 96, 6)


def _white(sigma: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, SHAPE)


def _correlated(sigma: float, seed: int = 0) -> np.ndarray:
    """Noise smoothed in-plane and rescaled to SD ``sigma``: same variance, power moved to low frequencies."""
    smooth = ndimage.gaussian_filter(_white(1.0, seed), sigma=(1.2, 1.2, 0))
    return smooth / smooth.std() * sigma


def test_pooled_sigma_on_white_noise_and_anatomy() -> None:
    mask = np.ones(SHAPE, dtype=bool)
    noise = _white(2.0)
    assert pooled_noise_sigma(noise, mask) == pytest.approx(2.0, rel=0.03)
    ramp = np.linspace(0, 500, SHAPE[0])[:, None, None] + np.linspace(0, 300, SHAPE[1])[None, :, None]
    assert pooled_noise_sigma(noise + ramp, mask) == pytest.approx(2.0, rel=0.03)
    # one slice: exactly the estimator of vce_core.metrics.noise_sigma on that slice
    one = noise[:, :, :1]
    assert pooled_noise_sigma(one, mask[:, :, :1]) == pytest.approx(noise_sigma(one[:, :, 0]), rel=1e-12)
    assert np.isnan(pooled_noise_sigma(noise, np.zeros(SHAPE, dtype=bool)))


def test_local_sd_sees_correlated_noise_that_the_filter_under_reads() -> None:
    mask = np.ones(SHAPE, dtype=bool)
    white, corr = _white(3.0), _correlated(3.0)
    assert local_sd(white, mask) == pytest.approx(3.0, rel=0.05)
    # the second-difference estimator is blind to low-frequency noise; local SD is not fooled as much
    assert pooled_noise_sigma(corr, mask) < 0.5 * 3.0
    assert local_sd(corr, mask) > 2 * pooled_noise_sigma(corr, mask)
    with pytest.raises(VCEInputError):
        local_sd(white, mask, size=2)


def test_noise_power_spectrum() -> None:
    mask = np.ones(SHAPE, dtype=bool)
    white = noise_power_spectrum(_white(2.0), mask, patch=32)
    assert white.patches == 9 * SHAPE[2]
    # white noise: flat at σ², and Parseval: the mean power is the mean within-patch variance
    assert np.allclose(white.power[1:], 4.0, rtol=0.15)
    assert white.variance == pytest.approx(4.0, rel=0.05)
    corr = noise_power_spectrum(_correlated(2.0), mask, patch=32)
    ratios = nps_band_ratios(corr, white)
    assert ratios["low"] > 2.0 and ratios["high"] < 0.2
    assert nps_band_ratios(white, white) == {"low": 1.0, "mid": 1.0, "high": 1.0}
    holes = mask.copy()
    holes[::10, ::10, :] = False
    with pytest.raises(VCEInputError, match="patch"):
        noise_power_spectrum(_white(1.0), holes, patch=32)
    with pytest.raises(VCEInputError):
        noise_power_spectrum(_white(1.0)[:, :, 0], mask[:, :, 0])
