"""Intensity normalization with exact inverses, brain masks and the contrast-enhancement (CE) mask.

Normalization
-------------
``normalize(x, method, mask=None) -> (y, params)`` and ``denormalize(y, params) -> x``. With ``μ`` and
``δ`` the mean and (population, ``ddof=0``) standard deviation of ``x`` inside ``mask`` (the whole
array when ``mask`` is None) and ``z = (x − μ) / δ``, the methods are (seed 002, eqs. 11–13):

``zscore``      ``y = z``                                       (eq. 11), y ∈ ℝ
``sigmoid``     ``y = 1 / (1 + exp(−z))``                       (eq. 12), y ∈ (0, 1)
``tanh``        ``y = ½ · (tanh(0.01 · z) + 1)``                (eq. 13), y ∈ (0, 1)
``percentile``  ``y = (x − p_lo) / (p_hi − p_lo)``, ``p_lo, p_hi`` the ``percentiles`` (default 0.5 and
                99.5) of ``x`` inside ``mask``: a robust min–max, *not* clipped, so it stays invertible.

``params`` is a JSON-serialisable dict (``method`` plus plain floats) that goes into model cards;
``denormalize`` needs nothing else. Arrays come back as float32 (numpy) or in the tensor's floating
dtype (torch tensors are accepted too; statistics are always computed in float64).

Invertible ranges. ``zscore`` and ``percentile`` invert to float32 rounding of ``x`` for every finite
input. ``tanh`` (eq. 13) is nearly linear, ``y ≈ ½ + 0.005 z``, and saturates only beyond ``|z| ≈
866``; the float32 rounding of ``y`` (≈ 6e-8 near ½) becomes about ``1.2e-5 δ`` after the inverse.
``sigmoid`` squeezes the tails: in float32, ``y`` rounds to 1 for ``z ≳ 16.6``, and the inverse
amplifies the float32 rounding of ``y`` by ``1 / (1 − y)``, so the round-trip error is about
``6e-8 δ / (1 − y)`` (≈ 1e-6 δ at z = 3, ≈ 1e-3 δ at z = 10). ``denormalize`` clips a sigmoid output to
``[1.2e-38, 1 − 2⁻²⁴]`` (z ∈ [−87.3, 16.6]) and a tanh output so that ``2y − 1 ∈ [−(1 − 2⁻²³),
1 − 2⁻²³]`` (z ∈ [−866, 866]) before inverting, so generator outputs that touch or leave (0, 1) map to
finite intensities at the saturated ends instead of ±inf or NaN.

Masks
-----
``brain_mask`` finds the brain in a skull-stripped brain MRI; ``ce_mask`` marks contrast-enhanced voxels
as in seed 000: ``standard_dose − native ≥ threshold · q₀.₉₅(native)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage, special

from vce_core.errors import VCEInputError, as_input_error
from vce_core.io import Volume

METHODS: tuple[str, ...] = ("zscore", "sigmoid", "tanh", "percentile")
"""The normalization methods :func:`normalize` accepts."""

TANH_SCALE = 0.01
"""The factor inside the tanh of seed 002's eq. 13."""

DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
"""Default (low, high) percentiles of the ``percentile`` method, in percent."""

_SIGMOID_Y_MIN = float(np.finfo(np.float32).tiny)  # smallest normal float32, logit ≈ −87.3
_SIGMOID_Y_MAX = 1.0 - 2.0**-24  # largest float32 below 1, logit ≈ 16.6
_TANH_U_MAX = 1.0 - 2.0**-23  # |2y − 1| bound: atanh ≈ 8.66, z ≈ ±866


# ----------------------------------------------------------------------------------------------------
# input checks shared with vce_core.metrics


def as_float_image(x: Any, *, name: str = "image") -> np.ndarray:
    """Return ``x`` (ndarray, array-like or :class:`~vce_core.io.Volume`) as a finite float64 array.

    Raises :class:`VCEInputError` if it is empty, not numeric or holds NaN/inf.
    """
    if isinstance(x, Volume):
        x = x.data
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise VCEInputError(f"the {name} is not an array ({exc})", expected="a numeric array") from exc
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise VCEInputError(f"the {name} has data type {arr.dtype}", expected="a real-valued numeric array")
    if arr.size == 0:
        raise VCEInputError(f"the {name} is empty (shape {arr.shape})", expected="at least one voxel")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise VCEInputError(f"the {name} holds {n_bad} NaN or infinite values", expected="finite intensities")
    return arr


def as_mask(mask: Any, shape: Sequence[int], *, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean array of ``shape``.

    Accepts bool arrays, :class:`~vce_core.io.Volume` and numeric arrays holding only 0 and 1. Raises
    :class:`VCEInputError` on a shape mismatch, other values, or no True voxel.
    """
    if isinstance(mask, Volume):
        mask = mask.data
    arr = np.asarray(mask)
    if tuple(arr.shape) != tuple(shape):
        raise VCEInputError(
            f"the {name} has shape {tuple(arr.shape)} but the image has shape {tuple(shape)}",
            expected="a mask on the same grid as the image",
        )
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise VCEInputError(f"the {name} has data type {arr.dtype}", expected="a boolean mask")
        if not np.all((arr == 0) | (arr == 1)):
            raise VCEInputError(f"the {name} holds values other than 0 and 1", expected="a boolean mask")
        arr = arr.astype(bool)
    if not arr.any():
        raise VCEInputError(
            f"the {name} is empty (no voxel selected)", expected="a mask with at least one voxel"
        )
    return arr


def as_finite_float(value: Any, *, name: str, positive: bool = False) -> float:
    """Return ``value`` (a real number, not a bool) as a finite float, ``> 0`` if ``positive``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise VCEInputError(f"{name} {value!r} is not a number", expected=f"a finite number for {name}")
    out = float(value)
    if not math.isfinite(out) or (positive and not out > 0):
        raise VCEInputError(f"{name} is {out}", expected=f"a {'positive ' if positive else ''}finite {name}")
    return out


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """Raise :class:`VCEInputError` naming both images if ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise VCEInputError(
            f"the {names[0]} has shape {a.shape} but the {names[1]} has shape {b.shape}",
            expected="images on the same grid",
        )


# ----------------------------------------------------------------------------------------------------
# normalization


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _values_for_stats(x: Any, mask: Any) -> np.ndarray:
    """The voxels of ``x`` inside ``mask`` as a finite float64 1-D array (x: ndarray or tensor)."""
    if _is_torch(x):
        arr = as_float_image(x.detach().cpu().double().numpy(), name="image")
    else:
        arr = as_float_image(x, name="image")
    if mask is None:
        return arr.ravel()
    if _is_torch(mask):
        mask = mask.detach().cpu().numpy()
    return arr[as_mask(mask, arr.shape, name="normalization mask")]


def _apply(x: Any, params: dict[str, Any], inverse: bool) -> Any:
    """Apply the (inverse) transform of ``params`` elementwise; numpy → float32, torch → float dtype."""
    method = params["method"]
    if _is_torch(x):
        import torch

        t = x if torch.is_floating_point(x) else x.to(torch.float32)
        if method == "percentile":
            lo, hi = params["low"], params["high"]
            return t * (hi - lo) + lo if inverse else (t - lo) / (hi - lo)
        mean, std = params["mean"], params["std"]
        if not inverse:
            z = (t - mean) / std
            if method == "zscore":
                return z
            if method == "sigmoid":
                return torch.sigmoid(z)
            return 0.5 * (torch.tanh(TANH_SCALE * z) + 1.0)
        if method == "zscore":
            z = t
        elif method == "sigmoid":
            z = torch.logit(t.double().clamp(_SIGMOID_Y_MIN, _SIGMOID_Y_MAX)).to(t.dtype)
        else:
            z = (
                torch.atanh((2.0 * t.double() - 1.0).clamp(-_TANH_U_MAX, _TANH_U_MAX)).to(t.dtype)
                / TANH_SCALE
            )
        return z * std + mean

    arr = np.asarray(x, dtype=np.float64)
    if method == "percentile":
        lo, hi = params["low"], params["high"]
        out = arr * (hi - lo) + lo if inverse else (arr - lo) / (hi - lo)
        return out.astype(np.float32)
    mean, std = params["mean"], params["std"]
    if not inverse:
        z = (arr - mean) / std
        if method == "zscore":
            out = z
        elif method == "sigmoid":
            out = special.expit(z)
        else:
            out = 0.5 * (np.tanh(TANH_SCALE * z) + 1.0)
        return out.astype(np.float32)
    if method == "zscore":
        z = arr
    elif method == "sigmoid":
        z = special.logit(np.clip(arr, _SIGMOID_Y_MIN, _SIGMOID_Y_MAX))
    else:
        z = np.arctanh(np.clip(2.0 * arr - 1.0, -_TANH_U_MAX, _TANH_U_MAX)) / TANH_SCALE
    return (z * std + mean).astype(np.float32)


def normalize(
    x: Any,
    method: str,
    mask: Any = None,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> tuple[Any, dict[str, Any]]:
    """Normalize an image's intensities; return ``(y, params)`` with ``denormalize(y, params) ≈ x``.

    Parameters
    ----------
    x:
        Image of any shape (2-D slice, 3-D volume, batch): ndarray, :class:`~vce_core.io.Volume` (its
        ``data``) or torch tensor, in scanner units.
    method:
        ``zscore`` | ``sigmoid`` | ``tanh`` | ``percentile`` (see the module docstring for formulas and
        invertible ranges).
    mask:
        Boolean array of ``x``'s shape; the statistics (mean/std or percentiles) come from the voxels
        inside it (typically the brain), the transform is applied to every voxel.
    percentiles:
        ``(low, high)`` in percent, ``0 ≤ low < high ≤ 100``, for ``method="percentile"``.

    Returns
    -------
    y:
        Same shape as ``x``; float32 ndarray (torch input: a tensor of its floating dtype, float32 for
        integer tensors). ``zscore``: mean 0, std 1 inside the mask; ``sigmoid``/``tanh``: values in
        (0, 1) centred on ½; ``percentile``: the low/high percentiles map to 0/1.
    params:
        JSON-serialisable: ``{"method", "mean", "std"}`` (+ ``"scale": 0.01`` for tanh) or
        ``{"method": "percentile", "low", "high", "percentiles": [lo%, hi%]}``.

    Raises
    ------
    VCEInputError
        Unknown method, NaN/inf in ``x``, mask of the wrong shape or empty, constant image inside the
        mask (zero standard deviation, or equal percentiles), bad percentiles.
    """
    if isinstance(x, Volume):
        x = x.data
    if not isinstance(method, str) or method not in METHODS:
        raise VCEInputError(
            f"unknown normalization method {method!r}", expected=f"one of {', '.join(METHODS)}"
        )
    values = _values_for_stats(x, mask)
    if method == "percentile":
        problem = f"percentiles {percentiles!r} are not two numbers"
        with as_input_error(problem, catch=(TypeError, ValueError), expected="(low, high) in percent"):
            p_lo, p_hi = (float(p) for p in percentiles)
        if not (0.0 <= p_lo < p_hi <= 100.0):
            raise VCEInputError(
                f"percentiles ({p_lo}, {p_hi}) are not increasing within [0, 100]",
                expected="0 ≤ low < high ≤ 100, e.g. (0.5, 99.5)",
            )
        lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
        if not hi > lo:
            raise VCEInputError(
                f"the image is constant between its {p_lo} and {p_hi} percentiles ({lo:g}) inside the mask",
                expected="an image with contrast inside the mask (or a wider percentile range)",
            )
        params: dict[str, Any] = {"method": method, "low": lo, "high": hi, "percentiles": [p_lo, p_hi]}
    else:
        mean = float(values.mean())
        std = float(values.std())
        if not std > 0.0 or std <= 1e-12 * max(1.0, abs(mean)):
            raise VCEInputError(
                f"the image is constant inside the mask (value {mean:g}, standard deviation 0)",
                expected=f"an image with contrast inside the mask for {method} normalization",
            )
        params = {"method": method, "mean": mean, "std": std}
        if method == "tanh":
            params["scale"] = TANH_SCALE
    return _apply(x, params, inverse=False), params


def _checked_params(params: Any) -> dict[str, Any]:
    """Validate a params dict from :func:`normalize` (possibly read back from JSON)."""
    if not isinstance(params, Mapping):
        raise VCEInputError(
            f"normalization params are a {type(params).__name__}", expected="the dict returned by normalize()"
        )
    method = params.get("method")
    if method not in METHODS:
        raise VCEInputError(
            f"normalization params name an unknown method {method!r}", expected=f"one of {', '.join(METHODS)}"
        )
    keys = ("low", "high") if method == "percentile" else ("mean", "std")
    out: dict[str, Any] = {"method": method}
    for key in keys:
        out[key] = as_finite_float(params.get(key), name=f"{method} normalization parameter {key!r}")
    if method == "percentile" and not out["high"] > out["low"]:
        raise VCEInputError(
            f"normalization params have high={out['high']} ≤ low={out['low']}", expected="high > low"
        )
    if method != "percentile" and not out["std"] > 0:
        raise VCEInputError(f"normalization params have std={out['std']}", expected="a positive std")
    if method == "tanh" and params.get("scale", TANH_SCALE) != TANH_SCALE:
        raise VCEInputError(
            f"tanh normalization params have scale={params.get('scale')!r}", expected=f"scale {TANH_SCALE}"
        )
    return out


def denormalize(y: Any, params: Mapping[str, Any]) -> Any:
    """Invert :func:`normalize`: map ``y`` back to scanner units with the stored ``params``.

    ``y`` is an ndarray (→ float32) or torch tensor (→ its floating dtype) of any shape; sigmoid and
    tanh outputs are clipped at their saturating ends first (see the module docstring), so values at
    or beyond 0 and 1 give finite intensities. Raises :class:`VCEInputError` on malformed ``params``
    or NaN/inf in a numpy ``y``.
    """
    return _transform(y, params, inverse=True, name="normalized image")


def normalize_with(x: Any, params: Mapping[str, Any]) -> Any:
    """Apply the forward transform of existing ``params`` (from :func:`normalize`) to ``x``.

    Used to bring further images into a space fitted on another one (e.g. the standard dose into the native
    image's normalisation, so that :func:`denormalize` with the same ``params`` inverts it). ``x``: ndarray
    (→ float32), Volume or torch tensor (→ its floating dtype), any shape. Raises :class:`VCEInputError` on
    malformed ``params`` or NaN/inf in a numpy ``x``.
    """
    return _transform(x, params, inverse=False, name="image")


def _transform(x: Any, params: Mapping[str, Any], *, inverse: bool, name: str) -> Any:
    """The checked ``params``' transform (or its inverse) of an ndarray, Volume or tensor ``x``."""
    checked = _checked_params(params)
    if isinstance(x, Volume):
        x = x.data
    if not _is_torch(x):
        x = as_float_image(x, name=name)
    return _apply(x, checked, inverse=inverse)


# ----------------------------------------------------------------------------------------------------
# masks


def brain_mask(volume_or_array: Any, threshold: float | None = None) -> np.ndarray:
    """Foreground (brain) mask of a skull-stripped brain MRI.

    Steps: threshold → morphological opening (removes isolated noise voxels) → largest connected
    component (face-connected) → hole filling in n-D and, for 3-D input, in every axial slice
    ``[:, :, k]`` too (fills ventricles open to the surface in 3-D but closed in-plane).

    Parameters
    ----------
    volume_or_array:
        :class:`~vce_core.io.Volume` or 2-D/3-D array of intensities (any units).
    threshold:
        Intensity threshold in the image's units (foreground is ``> threshold``). None: 15 % of the
        99th percentile of the image, which lies above typical background noise and below grey matter
        and CSF of T1-weighted images (CSF ≈ 20–35 % of white matter); the opening removes the noise
        voxels that still pass it.

    Returns
    -------
    Boolean array of the input's shape.

    Raises
    ------
    VCEInputError
        Not 2-D/3-D, NaN/inf, or nothing above the threshold.
    """
    img = as_float_image(volume_or_array, name="image")
    if img.ndim not in (2, 3):
        raise VCEInputError(
            f"the image has {img.ndim} dimensions (shape {img.shape})", expected="a 2-D or 3-D image"
        )
    if threshold is None:
        threshold = 0.15 * float(np.percentile(img, 99.0))
    else:
        threshold = as_finite_float(threshold, name="brain-mask threshold")
    binary = img > threshold
    if not binary.any():
        raise VCEInputError(
            f"no voxel is brighter than the threshold {threshold:g}",
            expected="an image with a foreground (or a lower threshold)",
        )
    structure = ndimage.generate_binary_structure(img.ndim, 1)
    opened = ndimage.binary_opening(binary, structure=structure)
    if opened.any():
        binary = opened
    labels, n = ndimage.label(binary, structure=structure)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        binary = labels == int(np.argmax(sizes))
    binary = ndimage.binary_fill_holes(binary)
    if img.ndim == 3:
        for k in range(binary.shape[2]):
            binary[:, :, k] = ndimage.binary_fill_holes(binary[:, :, k])
    return binary


def ce_mask(native: Any, standard_dose: Any, threshold: float = 0.1, *, mask: Any = None) -> np.ndarray:
    """Contrast-enhanced (CE) voxel mask of seed 000: ``standard_dose − native ≥ threshold · q₀.₉₅``.

    ``q₀.₉₅`` is the 0.95-quantile of the native image, taken over the whole image as the seed states
    ("the 0.95-quantile of the native image") — or over the voxels of ``mask`` (e.g. the brain mask)
    when one is given, which makes the threshold independent of how much background the field of view
    holds. With ``mask``, the CE mask is also restricted to it.

    Parameters
    ----------
    native, standard_dose:
        Co-registered pre- and post-contrast images (ndarray or Volume) of the same shape, same units.
    threshold:
        Enhancement as a fraction of ``q₀.₉₅`` (seed 000: 0.1, i.e. 10 %), in (0, ∞).
    mask:
        Optional boolean region (same shape) for the quantile and the result.

    Returns
    -------
    Boolean array of the inputs' shape.

    Raises
    ------
    VCEInputError
        Shapes differ, NaN/inf, non-positive threshold, empty mask, or a native image whose 0.95-quantile
        is not positive (the threshold would be meaningless).
    """
    na = as_float_image(native, name="native image")
    sd = as_float_image(standard_dose, name="standard-dose image")
    check_same_shape(na, sd, ("native image", "standard-dose image"))
    threshold = as_finite_float(threshold, name="CE threshold (fraction of the 0.95-quantile)", positive=True)
    region = None if mask is None else as_mask(mask, na.shape, name="brain mask")
    q95 = float(np.quantile(na if region is None else na[region], 0.95))
    if not q95 > 0:
        raise VCEInputError(
            f"the native image's 0.95-quantile is {q95:g}",
            expected="a native image with positive intensities (not z-scored)",
        )
    out = (sd - na) >= threshold * q95
    if region is not None:
        out &= region
    return out
