"""Dose baselines: what a low-dose image would look like without a learned model.

Two baselines take the native image ``x_NA`` and the standard dose ``x_SD`` (same grid, scanner units) and
a dose ``d`` (fraction of the standard dose):

* :func:`linear_baseline` — ``x_NA + d · (x_SD − x_NA)``: enhancement proportional to dose. Wrong for a
  spoiled gradient echo, whose signal saturates with R1, so it underestimates low-dose enhancement.
* :func:`physics_baseline` — inverts the spoiled gradient-echo (SPGR) signal equation with the sequence's
  TR and flip angle, scales the contrast-agent relaxation by ``d`` and re-simulates.

Both check their images with :func:`as_volume_array` / :func:`volume_pair`, which
:mod:`vce_core.synthesis` uses too (and re-exports :func:`linear_baseline`).

The physics baseline, per voxel
-------------------------------
With ``f(R1) = sin α · (1 − E1) / (1 − cos α · E1)``, ``E1 = exp(−TR · R1)``, a T1-weighted SPGR voxel reads
``S = M · f(R1)``, where ``M`` (proton density, T2* decay at TE, coil gain, bias) does not change with the
agent (T2* shortening by gadolinium is neglected at TE ≈ 3 ms, as in the phantom). Concentration is linear
in dose and fast exchange makes R1 linear in concentration, ``R1(d) = R1₀ + d · ΔR1``. Then

1. ``R1₀ = 1 / T1₀`` with an assumed native T1 (see below);
2. ``M`` cancels in the ratio ``q = S_SD / S_NA = f(R1₀ + ΔR1) / f(R1₀)``, so
   ``R1_SD = f⁻¹(q · f(R1₀))`` with the closed-form inverse ``E1 = (sin α − f) / (sin α − f cos α)``;
3. ``x̂_d = S_NA · f(R1₀ + d · (R1_SD − R1₀)) / f(R1₀)``.

Only one unknown remains that two images cannot determine: the native T1 of the voxel (a 3-D T1-weighted
image near the Ernst angle has almost no T1 contrast, so T1 cannot be read from the native intensity).
The baseline therefore assumes ``T1₀`` — by default the literature pre-contrast T1 of enhancing tumour at
the field strength (:data:`DEFAULT_T1_S`: 1.40 s at 1.5 T, 1.85 s at 3 T, the glioblastoma-rim values of
``docs/phantom.md``), because enhancement is what the baseline has to model. A T1 map (same shape) can be
passed instead; with the true T1 the baseline reproduces a noise-free SPGR image exactly (up to partial
volume, where a voxel mixes compartments of different T1). With the default, on the phantom's pure tissues
and noise-free inputs, the enhancement at 10–33 % dose is within ≈ 5 % for glioblastoma rim and metastasis,
≈ 3 % for weakly enhancing lesions and 10–19 % low for meningioma (shorter T1) at the 8° presets; the 30°
Ingenia 1.5 T preset is nearly linear and within 5 % for all.

Voxels whose native signal is at most ``min_signal`` (default 5 % of the native's 99th percentile over
positive voxels: background, noise) use the linear baseline; a ratio ``q`` outside what the signal
equation can produce (noise) is clipped to R1 in ``[R1_MIN, R1_MAX]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vce_core.domain import check_dose, check_field_strength, check_t1_sequence
from vce_core.errors import VCEInputError, as_input_error

__all__ = [
    "DEFAULT_T1_S",
    "R1_MAX",
    "R1_MIN",
    "as_volume_array",
    "case_sequence",
    "case_tr_flip",
    "linear_baseline",
    "physics_baseline",
    "physics_baseline_for_case",
    "spgr_r1",
    "spgr_relative_signal",
    "volume_pair",
]

DEFAULT_T1_S: dict[float, float] = {1.5: 1.40, 3.0: 1.85}
"""Assumed native T1 (s) of the physics baseline per field strength (T): enhancing tumour (GBM rim)."""

R1_MIN, R1_MAX = 1e-3, 1e3
"""Range (s⁻¹) the inverted and re-simulated R1 are clipped to."""


def as_volume_array(x: Any, name: str) -> np.ndarray:
    """A finite float32 3-D array from an ndarray or a :class:`vce_core.io.Volume` (``name`` for errors)."""
    data = getattr(x, "data", x)
    try:
        arr = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise VCEInputError(
            f"the {name} image is not numeric ({err})", expected="a 3-D float array or Volume"
        ) from err
    if arr.ndim != 3:
        raise VCEInputError(f"the {name} image has shape {arr.shape}", expected="a 3-D volume (I, J, K)")
    if min(arr.shape) < 1:
        raise VCEInputError(
            f"the {name} image is empty (shape {arr.shape})", expected="a non-empty 3-D volume"
        )
    if not np.isfinite(arr).all():
        raise VCEInputError(
            f"the {name} image contains NaN or infinite values", expected="finite intensities"
        )
    return arr


def volume_pair(native: Any, standard_dose: Any) -> tuple[np.ndarray, np.ndarray]:
    """The native and standard-dose images as float32 3-D arrays on one grid (:func:`as_volume_array`)."""
    nat = as_volume_array(native, "native")
    sd = as_volume_array(standard_dose, "standard-dose")
    if nat.shape != sd.shape:
        raise VCEInputError(
            f"the native image has shape {nat.shape} but the standard dose has {sd.shape}",
            expected="co-registered images on one grid",
        )
    return nat, sd


def linear_baseline(native: Any, standard_dose: Any, dose: float) -> np.ndarray:
    """The linear dose baseline ``x_NA + d · (x_SD − x_NA)``: float32 (I, J, K) in the inputs' units.

    ``native``/``standard_dose`` are 3-D arrays or Volumes on one grid; ``dose`` a fraction in [0, 1].
    """
    nat, sd = volume_pair(native, standard_dose)
    d = np.float32(check_dose(dose))
    return (nat + d * (sd - nat)).astype(np.float32)


def _sequence_values(sequence: Any) -> tuple[float, float]:
    """``(TR in s, flip angle in rad)`` of a phantom Sequence, a preset name or a dict with tr_ms/flip_deg."""
    from vce_core.phantom.physics import resolve_sequence

    seq = resolve_sequence(dict(sequence) if isinstance(sequence, Mapping) else sequence)
    return seq.tr_ms * 1e-3, float(np.deg2rad(seq.flip_deg))


def spgr_relative_signal(r1: Any, sequence: Any) -> np.ndarray:
    """``f(R1) = sin α (1 − E1) / (1 − cos α E1)``, ``E1 = exp(−TR R1)``: SPGR signal per unit M (float64).

    ``r1`` is the longitudinal relaxation rate in s⁻¹ (array-like); ``sequence`` a
    :class:`vce_core.phantom.Sequence`, a preset name or a dict with ``tr_ms``, ``te_ms`` and ``flip_deg``.
    """
    tr, alpha = _sequence_values(sequence)
    e1 = np.exp(-tr * np.asarray(r1, dtype=np.float64))
    return np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1)


def spgr_r1(signal: Any, sequence: Any) -> np.ndarray:
    """Inverse of :func:`spgr_relative_signal`: R1 (s⁻¹) from ``f``, clipped to ``[R1_MIN, R1_MAX]``."""
    tr, alpha = _sequence_values(sequence)
    s, c = np.sin(alpha), np.cos(alpha)
    lo, hi = spgr_relative_signal(np.array([R1_MIN, R1_MAX]), sequence)
    f = np.clip(np.asarray(signal, dtype=np.float64), lo, hi)
    e1 = (s - f) / (s - f * c)
    return np.clip(-np.log(e1) / tr, R1_MIN, R1_MAX)


def _t1_native(t1_native_s: Any, field_strength: float | None, shape: tuple[int, ...]) -> np.ndarray:
    """The assumed native T1 (s) as an array broadcastable to ``shape``; default from the field strength."""
    if t1_native_s is None:
        if field_strength is None:
            raise VCEInputError(
                "the physics baseline needs the native T1 or the field strength",
                expected="t1_native_s (seconds, scalar or map) or field_strength 1.5 or 3 (T)",
            )
        tesla = check_field_strength(field_strength)
        known = min(DEFAULT_T1_S, key=lambda b: abs(b - tesla))
        if abs(known - tesla) > 1e-6:
            raise VCEInputError(
                f"no default native T1 for {tesla:g} T",
                expected="field strength 1.5 or 3 T, or an explicit t1_native_s",
            )
        return np.float64(DEFAULT_T1_S[known])
    t1 = np.asarray(t1_native_s, dtype=np.float64)
    if not np.all(np.isfinite(t1)) or not np.all(t1 > 0):
        raise VCEInputError("the native T1 holds non-positive or non-finite values", expected="T1 > 0 (s)")
    problem = f"the native T1 has shape {t1.shape}, the images {shape}"
    with as_input_error(problem, expected="a scalar or a map on the images' grid"):
        np.broadcast_shapes(t1.shape, shape)
    return t1


def physics_baseline(
    native: Any,
    standard_dose: Any,
    dose: float,
    sequence: Any,
    *,
    field_strength: float | None = None,
    t1_native_s: Any = None,
    min_signal: float | None = None,
) -> np.ndarray:
    """Low dose ``x̂_d`` from the SPGR signal equation (module docstring): float32 (I, J, K), input units.

    ``native``/``standard_dose``: 3-D arrays or Volumes on one grid (magnitude images, scanner units);
    ``dose``: fraction of the standard dose in [0, 1]; ``sequence``: the T1 sequence (a
    :class:`vce_core.phantom.Sequence`, a preset name, or a dict with ``tr_ms``, ``te_ms``, ``flip_deg``,
    e.g. ``case.meta["sequence"]``); ``t1_native_s``: assumed native T1 in seconds, a scalar or a map
    (default :data:`DEFAULT_T1_S` at ``field_strength``); ``min_signal``: native intensity at or below which
    the linear baseline is used (default 5 % of the native's 99th percentile over positive voxels).
    Dose 0 returns the native image, dose 1 the standard dose (where the ratio is inside the model's range).
    """
    nat, sd = volume_pair(native, standard_dose)
    d = check_dose(dose)
    t1 = _t1_native(t1_native_s, field_strength, nat.shape)
    if min_signal is None:
        positive = nat[nat > 0]
        min_signal = 0.05 * float(np.percentile(positive, 99)) if positive.size else 0.0
    valid = nat > min_signal
    out = linear_baseline(nat, sd, d)
    if not valid.any():
        return out
    r10 = np.broadcast_to(1.0 / t1, nat.shape)[valid]
    f0 = spgr_relative_signal(r10, sequence)
    s_na = nat[valid].astype(np.float64)
    r1_sd = spgr_r1(sd[valid] / s_na * f0, sequence)
    r1_d = np.clip(r10 + d * (r1_sd - r10), R1_MIN, R1_MAX)
    out[valid] = (s_na * spgr_relative_signal(r1_d, sequence) / f0).astype(np.float32)
    return out


def case_sequence(case: Any) -> dict[str, Any]:
    """The T1 sequence of a loaded case (``case.meta["sequence"]``); VCEInputError naming what is missing."""
    meta = getattr(case, "meta", None)
    seq = meta.get("sequence") if isinstance(meta, Mapping) else None
    if not isinstance(seq, Mapping) or not {"tr_ms", "flip_deg"} <= set(seq):
        raise VCEInputError(
            "the case does not record its T1 sequence (case.json meta.sequence with tr_ms, te_ms, flip_deg)",
            path=meta.get("source_path") if isinstance(meta, Mapping) else None,
            expected='meta {"sequence": {"tr_ms": 6.8, "te_ms": 3.1, "flip_deg": 8}} (physics baseline)',
        )
    return {"name": str(seq.get("name", "case")), "te_ms": 0.0, **dict(seq), "field_strength": None}


def case_tr_flip(case: Any) -> tuple[float, float] | None:
    """``(TR in ms, flip angle in degrees)`` of a loaded case's T1 sequence (``meta.sequence``), else None."""
    meta = getattr(case, "meta", None)
    seq = meta.get("sequence") if isinstance(meta, Mapping) else None
    if not isinstance(seq, Mapping):
        return None
    try:
        return check_t1_sequence(seq.get("tr_ms"), seq.get("flip_deg"))
    except VCEInputError:
        return None


def physics_baseline_for_case(case: Any, dose: float, *, t1_native_s: Any = None) -> np.ndarray:
    """:func:`physics_baseline` of a loaded :class:`vce_core.io.Case` with its sequence and field strength."""
    return physics_baseline(
        case.native,
        case.standard_dose,
        dose,
        case_sequence(case),
        field_strength=case.field_strength,
        t1_native_s=t1_native_s,
    )
