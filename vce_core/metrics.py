"""Image-quality metrics: PSNR, SSIM, MAE, MSE, MAE_CE, MAE_σ, texture metrics, paired tests.

Every metric takes ndarrays (or :class:`~vce_core.io.Volume`) of the same shape — 2-D slices or 3-D
volumes, intensities in any consistent unit — and returns a Python float. ``x`` is the image under test
(synthetic), ``ref`` the reference (acquired). An optional boolean ``mask`` restricts the average to the
voxels inside it. Shape mismatches, NaN/inf and empty masks raise :class:`VCEInputError`.

Seed 000 reports PSNR, SSIM, MAE_CE (mean absolute error on contrast-enhanced voxels, see
:func:`vce_core.preprocess.ce_mask`) and MAE_σ (error of the noise standard deviation in non-CE voxels);
seed 002 adds the texture metrics TMSVPMI, TAVPMI, TFPMI and VFPMI (eqs. 7–10).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage, stats

from vce_core.errors import VCEInputError
from vce_core.preprocess import as_finite_float, as_float_image, as_mask, check_same_shape

_MAD_TO_SD = 1.0 / stats.norm.ppf(0.75)  # 1.4826: σ = 1.4826 · median|e| for zero-mean Gaussian e


def _pair(
    x: Any, ref: Any, mask: Any = None, *, mask_name: str = "mask"
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Validate an (image, reference, optional mask) triple; return float64 arrays and a bool mask."""
    a = as_float_image(x, name="image")
    b = as_float_image(ref, name="reference image")
    check_same_shape(a, b, ("image", "reference image"))
    m = None if mask is None else as_mask(mask, a.shape, name=mask_name)
    return a, b, m


def _data_range(ref: np.ndarray, data_range: Any) -> float:
    """``data_range`` checked positive; None → ``ref.max() − ref.min()``."""
    if data_range is None:
        data_range = float(ref.max() - ref.min())
        if not data_range > 0:
            raise VCEInputError(
                "the reference image is constant, so its intensity range is 0",
                expected="an explicit data_range for a constant reference",
            )
    return as_finite_float(data_range, name="data_range", positive=True)


_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5


def _ssim_window(win_size: Any, gaussian_weights: bool) -> int:
    """SSIM window side: given odd ``win_size`` ≥ 3, else 7 (uniform) or 11 (Gaussian), as skimage."""
    if win_size is None:
        return 2 * int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5) + 1 if gaussian_weights else 7
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3 or win_size % 2 == 0:
        raise VCEInputError(f"SSIM window size {win_size!r}", expected="an odd integer ≥ 3")
    return win_size


# ----------------------------------------------------------------------------------------------------
# pixelwise errors


def mae(x: Any, ref: Any, mask: Any = None) -> float:
    """Mean absolute error ``mean |x − ref|`` over all voxels or those in ``mask`` (image units)."""
    a, b, m = _pair(x, ref, mask)
    d = np.abs(a - b)
    return float(d.mean() if m is None else d[m].mean())


def mse(x: Any, ref: Any, mask: Any = None) -> float:
    """Mean squared error ``mean (x − ref)²`` over all voxels or those in ``mask`` (image units²)."""
    a, b, m = _pair(x, ref, mask)
    d = (a - b) ** 2
    return float(d.mean() if m is None else d[m].mean())


def psnr(x: Any, ref: Any, data_range: float | None = None, mask: Any = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 · log10(data_range² / MSE)``.

    ``data_range`` defaults to ``ref.max() − ref.min()`` over the whole reference (scikit-image instead
    guesses it from the dtype, which is wrong for float MRI). The MSE is taken inside ``mask`` when
    given. Identical images give ``inf``. Agrees with ``skimage.metrics.peak_signal_noise_ratio(ref, x,
    data_range=data_range)``.
    """
    a, b, m = _pair(x, ref, mask)
    data_range = _data_range(b, data_range)
    d = (a - b) ** 2
    err = float(d.mean() if m is None else d[m].mean())
    if err == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / err))


def ssim_map(
    x: Any,
    ref: Any,
    data_range: float | None,
    *,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    use_sample_covariance: bool = True,
) -> np.ndarray:
    """Local SSIM map (same shape as the inputs), computed exactly as scikit-image does.

    Local means, variances and covariance come from a uniform ``win_size``-wide window (default 7) or,
    with ``gaussian_weights``, a Gaussian of σ = 1.5 voxels truncated at 3.5 σ (window 11), both with
    reflected borders; ``use_sample_covariance`` scales (co)variances by ``N / (N − 1)`` with ``N =
    win_sizeⁿᵈⁱᵐ``. ``K1 = 0.01``, ``K2 = 0.03``, ``C_i = (K_i · data_range)²``. ``data_range=None``
    means ``ref.max() − ref.min()``. Values lie in [−1, 1].
    """
    a, b, _ = _pair(x, ref)
    if a.ndim not in (2, 3):
        raise VCEInputError(
            f"SSIM got an image with {a.ndim} dimensions (shape {a.shape})", expected="2-D or 3-D"
        )
    data_range = _data_range(b, data_range)
    win_size = _ssim_window(win_size, gaussian_weights)
    if min(a.shape) < win_size:
        raise VCEInputError(
            f"the image (shape {a.shape}) is smaller than the SSIM window ({win_size} voxels)",
            expected=f"at least {win_size} voxels along every axis",
        )
    if gaussian_weights:

        def local_mean(v: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(v, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")
    else:

        def local_mean(v: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(v, size=win_size)

    n = win_size**a.ndim
    cov_norm = n / (n - 1) if use_sample_covariance else 1.0
    ux, uy = local_mean(a), local_mean(b)
    vx = cov_norm * (local_mean(a * a) - ux * ux)
    vy = cov_norm * (local_mean(b * b) - uy * uy)
    vxy = cov_norm * (local_mean(a * b) - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def ssim(
    x: Any,
    ref: Any,
    data_range: float | None,
    mask: Any = None,
    *,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    use_sample_covariance: bool = True,
) -> float:
    """Mean structural similarity of a 2-D or 3-D image to its reference, in [−1, 1].

    The local SSIM map (:func:`ssim_map`; uniform 7-window by default) is averaged over the voxels at
    least ``(win_size − 1) / 2`` from the border, like ``skimage.metrics.structural_similarity(ref, x,
    data_range=data_range)``, which this function reproduces with the default arguments. With ``mask``
    the average is over the voxels of the mask within that interior; a mask with no voxel there raises
    :class:`VCEInputError`.
    """
    s = ssim_map(
        x,
        ref,
        data_range,
        win_size=win_size,
        gaussian_weights=gaussian_weights,
        use_sample_covariance=use_sample_covariance,
    )
    pad = (_ssim_window(win_size, gaussian_weights) - 1) // 2
    interior = tuple(slice(pad, n - pad) for n in s.shape)
    if mask is None:
        return float(s[interior].mean())
    m = as_mask(mask, s.shape)[interior]
    if not m.any():
        raise VCEInputError(
            f"the mask has no voxel at least {pad} voxels from the image border",
            expected="a mask that reaches into the image interior",
        )
    return float(s[interior][m].mean())


# ----------------------------------------------------------------------------------------------------
# seed 000: enhancement and noise


def mae_ce(x: Any, ref: Any, ce_mask: Any) -> float:
    """MAE_CE (seed 000): mean ``|x − ref|`` over the contrast-enhanced voxels ``ce_mask``.

    ``ce_mask`` comes from :func:`vce_core.preprocess.ce_mask` (on native and standard dose); image
    units (seed 000 works on images scaled by the native's 0.95-quantile).
    """
    a, b, m = _pair(x, ref, ce_mask, mask_name="CE mask")
    return float(np.abs(a - b)[m].mean())


def noise_sigma(img: Any, mask: Any = None) -> float:
    """Robust estimate of the standard deviation of additive white noise in a 2-D or 3-D image.

    Estimator: the image is filtered with the separable second-difference kernel ``k = (1, −2, 1)``
    applied along every axis (``k ⊗ k`` in 2-D — Immerkær's noise-estimation mask — and ``k ⊗ k ⊗ k``
    in 3-D). The filter annihilates constant and linear intensity trends (and, in n-D, anything that is
    linear along at least one axis), so a smooth anatomy contributes almost nothing, while white noise
    of SD σ gives a zero-mean Gaussian response of SD ``σ · ‖k‖₂ = σ · 6^(ndim/2)``. The response is
    kept only where the whole 3ⁿᵈⁱᵐ neighbourhood lies inside ``mask`` (so CE and non-CE voxels, or
    brain and background, are not mixed), and its scale is estimated robustly with the median absolute
    value: ``σ̂ = 1.4826 · median|response| / 6^(ndim/2)``, which ignores the few large responses at
    edges. For white Gaussian noise on a smooth background ``σ̂ ≈ σ`` (within ~2 % on 128² voxels).

    Raises :class:`VCEInputError` if the image is not 2-D/3-D, smaller than 3 along an axis, or if no
    voxel of ``mask`` has its whole neighbourhood inside the mask.
    """
    a = as_float_image(img, name="image")
    if a.ndim not in (2, 3):
        raise VCEInputError(
            f"the image has {a.ndim} dimensions (shape {a.shape})", expected="a 2-D or 3-D image"
        )
    if min(a.shape) < 3:
        raise VCEInputError(
            f"the image (shape {a.shape}) is thinner than 3 voxels", expected="≥ 3 voxels per axis"
        )
    response = a
    for axis in range(a.ndim):
        response = ndimage.correlate1d(response, [1.0, -2.0, 1.0], axis=axis, mode="nearest")
    valid = np.zeros(a.shape, dtype=bool)
    valid[tuple(slice(1, n - 1) for n in a.shape)] = True
    if mask is not None:
        m = as_mask(mask, a.shape)
        valid &= ndimage.binary_erosion(m, structure=np.ones((3,) * a.ndim, dtype=bool))
    if not valid.any():
        raise VCEInputError(
            "no voxel of the mask has its whole 3×3(×3) neighbourhood inside the mask",
            expected="a mask region at least 3 voxels thick",
        )
    return float(_MAD_TO_SD * np.median(np.abs(response[valid])) / 6.0 ** (a.ndim / 2))


def mae_sigma(x: Any, ref: Any, non_ce_mask: Any) -> float:
    """MAE_σ (seed 000): ``|σ̂(x) − σ̂(ref)|`` with :func:`noise_sigma` on the non-CE voxels.

    ``non_ce_mask`` is the non-enhancing region, typically ``brain & ~ce_mask``. Image units. Averaging this
    value over test images gives the "MAE of estimated standard deviations" of seed 000.
    """
    a, b, m = _pair(x, ref, non_ce_mask, mask_name="non-CE mask")
    return abs(noise_sigma(a, m) - noise_sigma(b, m))


# ----------------------------------------------------------------------------------------------------
# seed 002: texture metrics

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def _texture_2d(img: np.ndarray) -> dict[str, float]:
    mu = float(img.mean())
    # forward differences, 0 on the last column/row (replicated border); x = columns, y = rows
    dx = np.zeros_like(img)
    dx[:, :-1] = img[:, 1:] - img[:, :-1]
    dy = np.zeros_like(img)
    dy[:-1, :] = img[1:, :] - img[:-1, :]
    # Sobel: eq. 9's kernels, convolved, borders replicated
    gx = ndimage.convolve(img, _SOBEL_X, mode="nearest")
    gy = ndimage.convolve(img, _SOBEL_Y, mode="nearest")
    return {
        "TMSVPMI": float(np.sqrt(dx**2 + dy**2).mean() / mu),
        "TAVPMI": float((np.abs(dx) + np.abs(dy)).mean() / mu),
        "TFPMI": float(np.sqrt(gx**2 + gy**2).mean() / mu),
        "VFPMI": float(((img - mu) ** 2).mean() / mu),
    }


def texture_metrics(img: Any) -> dict[str, float]:
    """Seed 002's texture metrics (eqs. 7–10) of a 2-D image; larger means rougher. Dimensionless
    except VFPMI (image units).

    With ``μ`` the mean intensity and ``N`` the number of pixels of the image:

    - ``TMSVPMI = (1/μ)(1/N) Σ √(∇ₓI² + ∇ᵧI²)`` (eq. 7; despite its name, the mean gradient *magnitude*)
    - ``TAVPMI = (1/μ)(1/N) Σ (|∇ₓI| + |∇ᵧI|)`` (eq. 8, printed as "TMAVPMI" in the paper)
    - ``TFPMI = (1/μ)(1/N) Σ √(Gₓ² + Gᵧ²)`` with Gₓ, Gᵧ the image convolved with the Sobel kernels
      ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` and ``[[1,2,1],[0,0,0],[-1,-2,-1]]`` (eq. 9; the square root is the
      paper's, unlike the classic Tenengrad sum of squares)
    - ``VFPMI = (1/μ)(1/N) Σ (I − μ)²`` (eq. 10: the population variance over the mean; not invariant
      to scaling the image, unlike the other three)

    Ambiguities resolved here: ∇ₓ, ∇ᵧ are forward differences ``I[r, c+1] − I[r, c]`` and ``I[r+1, c] −
    I[r, c]`` (x along columns, y along rows) set to 0 on the last column/row, so that the sum runs over
    all N pixels as the equations say (the discretisation of total variation with replicated borders);
    the Sobel responses are computed at every pixel with replicated (``nearest``) borders and also
    averaged over all N pixels. Only |G| enters, so the orientation/flip convention does not matter.

    A 3-D input ``[:, :, k]``-stack is treated as axial slices: each metric is computed per slice and
    averaged over the slices whose mean intensity is positive (background slices are skipped).

    Raises :class:`VCEInputError` for NaN/inf, dimensions other than 2/3, fewer than 2 pixels along an
    in-plane axis, or a non-positive mean intensity (z-scored images: pass intensities ≥ 0).
    """
    a = as_float_image(img, name="image")
    if a.ndim not in (2, 3):
        raise VCEInputError(
            f"the image has {a.ndim} dimensions (shape {a.shape})", expected="a 2-D or 3-D image"
        )
    if min(a.shape[:2]) < 2:
        raise VCEInputError(
            f"the image (shape {a.shape}) is thinner than 2 pixels", expected="≥ 2 pixels in-plane"
        )
    if a.ndim == 2:
        if not a.mean() > 0:
            raise VCEInputError(
                f"the image's mean intensity is {a.mean():g}; the texture metrics divide by it",
                expected="an image with positive mean intensity (not z-scored)",
            )
        return _texture_2d(a)
    per_slice = [_texture_2d(a[:, :, k]) for k in range(a.shape[2]) if a[:, :, k].mean() > 0]
    if not per_slice:
        raise VCEInputError(
            "no axial slice has a positive mean intensity; the texture metrics divide by it",
            expected="a volume with positive intensities",
        )
    return {key: float(np.mean([s[key] for s in per_slice])) for key in per_slice[0]}


# ----------------------------------------------------------------------------------------------------
# statistics


def _sample(values: Any, which: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise VCEInputError(f"the {which} sample is not numeric ({exc})", expected="numbers") from exc


def paired_test(a: Any, b: Any) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired samples (e.g. per-case metrics of two methods).

    Returns ``(statistic, p_value)`` of ``scipy.stats.wilcoxon(a, b)`` with its defaults (zero
    differences dropped, exact distribution for small samples without ties/zeros, normal approximation
    otherwise). Raises :class:`VCEInputError` for unequal lengths, fewer than 2 pairs, NaN/inf, or all
    differences zero (the test is undefined).
    """
    x, y = _sample(a, "first"), _sample(b, "second")
    if x.shape != y.shape:
        raise VCEInputError(
            f"paired samples have {x.size} and {y.size} values", expected="the same number of values"
        )
    if x.size < 2:
        raise VCEInputError(f"a paired test needs at least 2 pairs, got {x.size}", expected="≥ 2 pairs")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise VCEInputError("paired samples hold NaN or infinite values", expected="finite values")
    if np.all(x == y):
        raise VCEInputError(
            "all paired differences are zero, so the signed-rank test is undefined",
            expected="at least one pair that differs",
        )
    result = stats.wilcoxon(x, y)
    return float(result.statistic), float(result.pvalue)
