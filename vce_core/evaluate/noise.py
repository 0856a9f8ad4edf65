"""Noise realism of a subtraction image ``x̂_LD − x_NA`` (or of any image) on a stack of 2-D slices.

A low-dose synthesis model is meant to keep the noise of a real acquisition: the real subtraction
``x_LD − x_NA`` carries the noise of two independent scans (σ√2 for Gaussian noise of σ each), and a
synthetic subtraction that is cleaner makes lesions look more conspicuous than they would be at that dose.
Three views of the noise, all on the same voxels (a mask of non-enhancing brain) of the same slices:

* :func:`pooled_noise_sigma` — σ̂ from the 2-D second-difference (Immerkær) filter response pooled over
  slices, robust to anatomy (the estimator of :func:`vce_core.metrics.noise_sigma`, per slice);
* :func:`local_sd` — the median of the local standard deviation in ``size × size`` windows (texture-scale
  noise, sensitive to spatially correlated noise that the second-difference filter under-reads);
* :func:`noise_power_spectrum` — the radially averaged 2-D noise power spectrum of a noise image (the
  subtraction minus its noise-free expectation, phantom only) from square patches inside the mask;
  :func:`nps_band_ratios` compares two spectra in low / mid / high spatial-frequency bands.

Slices are axial ``[:, :, k]`` of a 3-D array, or a 3-D stack whose last axis indexes the slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, stats

from vce_core.errors import VCEInputError

__all__ = [
    "NPS_BANDS",
    "NoisePowerSpectrum",
    "local_sd",
    "noise_power_spectrum",
    "nps_band_ratios",
    "pooled_noise_sigma",
]

_MAD_TO_SD = 1.0 / stats.norm.ppf(0.75)
NPS_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.15), "mid": (0.15, 0.35), "high": (0.35, 0.71)}
"""Spatial-frequency bands (cycles/voxel, radial) of :func:`nps_band_ratios`; 0.5 is Nyquist per axis."""


def _stack(image: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if img.ndim != 3 or m.shape != img.shape:
        raise VCEInputError(
            f"image {img.shape} and mask {m.shape}",
            expected="a stack of 2-D slices (I, J, n) and a boolean mask of the same shape",
        )
    if not np.all(np.isfinite(img)):
        raise VCEInputError("the image holds NaN or infinite values", expected="finite intensities")
    return img, m


def pooled_noise_sigma(image: Any, mask: Any) -> float:
    """σ̂ of white noise from the 2-D Immerkær filter ``(1, −2, 1) ⊗ (1, −2, 1)`` pooled over slices.

    On each slice the response is kept where the whole 3×3 neighbourhood lies inside ``mask``; the responses
    of every slice are pooled and ``σ̂ = 1.4826 · median|r| / 6``. For one slice this equals
    :func:`vce_core.metrics.noise_sigma` of that slice. NaN when no voxel qualifies.
    """
    img, m = _stack(image, mask)
    kernel = np.ones((3, 3), dtype=bool)
    responses = []
    for k in range(img.shape[2]):
        mk = ndimage.binary_erosion(m[:, :, k], structure=kernel)
        mk[[0, -1], :] = False
        mk[:, [0, -1]] = False
        if not mk.any():
            continue
        r = ndimage.correlate1d(img[:, :, k], [1.0, -2.0, 1.0], axis=0, mode="nearest")
        r = ndimage.correlate1d(r, [1.0, -2.0, 1.0], axis=1, mode="nearest")
        responses.append(r[mk])
    if not responses:
        return float("nan")
    return float(_MAD_TO_SD * np.median(np.abs(np.concatenate(responses))) / 6.0)


def local_sd(image: Any, mask: Any, size: int = 5) -> float:
    """Median over ``mask`` of the standard deviation in ``size × size`` windows lying wholly in ``mask``.

    Per slice (2-D windows); ``ddof = 1`` within each window. NaN when no window fits.
    """
    img, m = _stack(image, mask)
    if isinstance(size, bool) or not isinstance(size, int) or size < 3:
        raise VCEInputError(f"window size {size!r}", expected="an integer >= 3")
    n = size * size
    values = []
    for k in range(img.shape[2]):
        inside = ndimage.binary_erosion(m[:, :, k], structure=np.ones((size, size), dtype=bool))
        if not inside.any():
            continue
        x = img[:, :, k]
        mean = ndimage.uniform_filter(x, size=size, mode="nearest")
        sq = ndimage.uniform_filter(x * x, size=size, mode="nearest")
        var = np.maximum(sq - mean * mean, 0.0) * n / (n - 1)
        values.append(np.sqrt(var[inside]))
    if not values:
        return float("nan")
    return float(np.median(np.concatenate(values)))


@dataclass(frozen=True)
class NoisePowerSpectrum:
    """Radially averaged 2-D noise power spectrum.

    ``frequency``: bin centres in cycles/voxel; ``power``: mean |FFT|² / patch voxels per bin (image units²;
    white noise of variance σ² gives a flat ``σ²``); ``patches``: number of patches averaged; ``variance``:
    the mean power over every frequency of the patch, which by Parseval is the mean within-patch variance.
    """

    frequency: np.ndarray
    power: np.ndarray
    patches: int
    variance: float


def noise_power_spectrum(noise: Any, mask: Any, patch: int = 32, bins: int = 16) -> NoisePowerSpectrum:
    """NPS of a noise image from non-overlapping ``patch × patch`` squares lying wholly inside ``mask``.

    Each patch has its mean removed, is FFT'd, ``|F|² / patch²`` is averaged over patches and radially
    binned (``bins`` equal bins on [0, √2 · 0.5] cycles/voxel). :class:`VCEInputError` if no patch fits.
    """
    img, m = _stack(noise, mask)
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 8:
        raise VCEInputError(f"patch size {patch!r}", expected="an integer >= 8")
    acc = np.zeros((patch, patch))
    count = 0
    for k in range(img.shape[2]):
        mk = m[:, :, k]
        for i in range(0, img.shape[0] - patch + 1, patch):
            for j in range(0, img.shape[1] - patch + 1, patch):
                if not mk[i : i + patch, j : j + patch].all():
                    continue
                p = img[i : i + patch, j : j + patch, k]
                acc += np.abs(np.fft.fft2(p - p.mean())) ** 2 / p.size
                count += 1
    if count == 0:
        raise VCEInputError(
            f"no {patch}×{patch} patch lies wholly inside the mask", expected="a larger mask or smaller patch"
        )
    acc /= count
    f = np.fft.fftfreq(patch)
    radius = np.hypot(f[:, None], f[None, :])
    edges = np.linspace(0.0, np.sqrt(2) * 0.5 + 1e-9, bins + 1)
    which = np.digitize(radius, edges) - 1
    power = np.array([acc[which == b].mean() if np.any(which == b) else np.nan for b in range(bins)])
    centres = 0.5 * (edges[:-1] + edges[1:])
    keep = np.isfinite(power)
    return NoisePowerSpectrum(centres[keep], power[keep], count, float(acc.mean()))


def nps_band_ratios(test: NoisePowerSpectrum, reference: NoisePowerSpectrum) -> dict[str, float]:
    """Mean power of ``test`` over that of ``reference`` in each band of :data:`NPS_BANDS` (1 = same)."""
    out = {}
    for name, (lo, hi) in NPS_BANDS.items():
        a = test.power[(test.frequency >= lo) & (test.frequency < hi)]
        b = reference.power[(reference.frequency >= lo) & (reference.frequency < hi)]
        out[name] = float(a.mean() / b.mean()) if a.size and b.size and b.mean() > 0 else float("nan")
    return out
