"""Calibrations of a low-dose generator with a base after training, on cases it was not trained on: scale
its heads so that its subtraction noise is the acquisition's by one measure (``--fit noise``, the default),
or remove the heads' copy of the native image's lesion contrast (``--fit native-slope``).

    python -m vce_core.evaluate.calibrate --model assets/models/<m> --data data/phantom/val \
        --doses 0.1 0.2 0.33 --noise-seeds 0 --measure sigma|residual --target 1.0 \
        --out assets/models/<m>_nc [--name ...]
    python -m vce_core.evaluate.calibrate --model assets/models/<m> --data data/phantom/val \
        --fit native-slope [--lesion-type "weakly enhancing"] --out runs/<m>_ns

A generator with a base (``base="physics"`` or ``"linear"``) outputs ``x_NA + base + s · heads``, where the
heads add the texture (noise) and ``s`` is its config's ``texture_scale`` (1 as trained). Two measures of the
subtraction ``x̂_LD − x_NA`` against the acquired ``x_LD − x_NA`` of the same scan, on the noise mask of the
evaluated slices, each exactly as :mod:`vce_core.evaluate.lowdose` computes it (:data:`MEASURES`):

* ``sigma``: the σ̂ ratio (pooled 2-D Immerkær σ̂, a second-difference filter: it weighs the highest spatial
  frequencies; the report's ``sub_sigma_ratio``);
* ``residual``: the SD of the subtraction minus the noise-free one (all frequencies alike; phantom cases
  only; ``sub_resid_sd_ratio``).

They agree for noise with the real noise's spectrum and distribution. A texture with relatively more power
at the highest frequencies (the report's NPS bands) reads higher by ``sigma`` than by ``residual``, and then
no scale matches both; the command prints both. The output is linear in ``s``, so one pass
with the heads off and one with them at 1 give the subtraction at every ``s``; the calibration finds the
``s`` whose ratio, averaged over the scans (cases × noise seeds) and then over the doses, equals
``--target`` (1: the real noise), by Brent's method.

With ``--out`` it writes a new checkpoint: the same weights, the card's ``config.texture_scale`` set, a
``training.noise_calibration`` record (scale, measure, target, cases, noise seeds, both measures' ratios
per dose before and after, the command) and a line in the deviations; the parent's held-out figures are not
copied (they describe the parent) and the copy is not the default. The written checkpoint is read back and
its ratio measured again by full forward passes (printed as "checked").

``--fit native-slope`` (:func:`fit_native_slope`, phantom cases only). Trained against noisy acquisitions,
the heads (high-passed at ``texture_sigma``) copy part of minus the native image's high-pass
``HP = x_NA − Gauss_σ(x_NA)``: the noise in it (what the acquired subtraction's ``−n_NA`` looks like from
the native image) and the anatomy, so a lesion that stands out on the native image gets an offset in the
synthetic subtraction. The command fits, per field strength, the slope of the heads' mean contribution on
each lesion of ``--lesion-type`` against the lesion's mean ``−HP`` and writes a copy whose
``config.native_slope`` adds that slope times ``HP`` back to the heads
(:class:`~vce_core.models.ld_cgan.LowDoseGenerator`), with a ``training.native_slope_fit`` record. It prints
the heads' slope over the whole brain (noise included) beside it, and the report's lesion error over all
lesions before and after; the check refits on the written copy (the slope left is ~0). ``--field-strengths
1.5`` fits one field strength only and keeps the parent's slope at the other: for a generator trained
without 3 T, whose 3 T slope could only be fitted on 3 T cases, which a hold-out must not see.

Choose the calibration cases outside every test set (the phantom's ``val`` split, or a draw made for the
purpose): the scale or slope is fitted on them, so a report on them would not be held out.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, run_cli

__all__ = [
    "NoiseScans",
    "calibrate_noise",
    "fit_native_slope",
    "measure_scans",
    "ratio_at",
    "write_calibrated",
]

MAX_SCALE = 16.0
"""Largest texture scale searched: a generator whose heads need more than 16× is not a calibration case."""


MEASURES = {
    "sigma": "σ̂ ratio (pooled 2-D Immerkær σ̂ of the subtraction; the report's sub_sigma_ratio)",
    "residual": "residual SD ratio (SD of the subtraction minus the noise-free one; sub_resid_sd_ratio)",
}
"""What the calibration matches to the acquisition. ``residual`` needs phantom cases (noise-free truth)."""


def _check_measure(measure: str) -> str:
    if measure not in MEASURES:
        raise VCEInputError(f"noise measure {measure!r}", expected=" or ".join(MEASURES))
    return measure


def _noise(x: np.ndarray, mask: np.ndarray, truth: np.ndarray | None, measure: str) -> float:
    """One scan's noise figure of subtraction ``x``, as :mod:`vce_core.evaluate.lowdose` computes it."""
    from vce_core.evaluate.noise import pooled_noise_sigma

    if measure == "sigma":
        return pooled_noise_sigma(x, mask)
    assert truth is not None
    return float((x - truth)[mask].std(ddof=1)) if mask.sum() > 2 else math.nan


class NoiseScans:
    """Per scan (case, noise seed, dose), on the noise mask of the evaluated slices (normalised units): the
    model's subtraction split into base and heads, the acquired subtraction and the noise-free one (phantom
    cases; None otherwise)."""

    def __init__(self) -> None:
        self.doses: list[float] = []
        self.cases: list[str] = []
        self._scans: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._reference: dict[str, list[float]] = {}  # measure → the acquisition's figure per scan

    def add(
        self,
        case_id: str,
        dose: float,
        base: np.ndarray,
        heads: np.ndarray,
        mask: np.ndarray,
        acquired: np.ndarray,
        truth: np.ndarray | None = None,
    ) -> None:
        """One scan: ``base`` = subtraction with the heads off, ``heads`` = what the heads add at scale 1,
        ``acquired`` = ``x_LD − x_NA``, ``truth`` = ``T_d − T_0``."""
        self.cases.append(case_id)
        self.doses.append(float(dose))
        f32 = lambda a: None if a is None else np.asarray(a, np.float32)  # noqa: E731
        self._scans.append((f32(base), f32(heads), np.asarray(mask, bool), f32(acquired), f32(truth)))
        self._reference.clear()

    def __len__(self) -> int:
        return len(self.doses)

    def ratios(self, scale: float, measure: str = "sigma") -> np.ndarray:
        """The noise ratio (model / acquisition) of every scan with the heads at ``scale``. VCEInputError
        for ``residual`` when a scan has no noise-free truth."""
        measure = _check_measure(measure)
        if measure == "residual" and any(truth is None for *_, truth in self._scans):
            raise VCEInputError(
                "the residual noise needs the noise-free subtraction, which a real case does not have",
                expected="phantom cases, or --measure sigma",
            )
        if measure not in self._reference:  # the acquisition's figures do not depend on the scale
            self._reference[measure] = [_noise(a, m, t, measure) for _, _, m, a, t in self._scans]
        out = []
        for (base, heads, mask, _, truth), reference in zip(
            self._scans, self._reference[measure], strict=True
        ):
            value = _noise(base + np.float32(scale) * heads, mask, truth, measure)
            out.append(value / reference if reference > 0 else math.nan)
        return np.array(out)


def ratio_at(scans: NoiseScans, scale: float, measure: str = "sigma") -> dict[Any, float]:
    """Mean noise ratio (:data:`MEASURES`) per dose with the heads at ``scale`` (scans with an undefined
    ratio left out), and under ``"mean"`` the mean over the doses (the calibration's objective)."""
    r = scans.ratios(scale, measure)
    doses = np.array(scans.doses)
    per_dose = {}
    for d in sorted(set(scans.doses)):
        values = r[(doses == d) & np.isfinite(r)]
        if values.size:
            per_dose[d] = float(values.mean())
    if not per_dose:
        raise VCEInputError(
            "no evaluated slice has a noise mask", expected="phantom cases with brain tissue outside lesions"
        )
    return {**per_dose, "mean": float(np.mean(list(per_dose.values())))}


def _split_scans(
    model: str | PathLike,
    data: Sequence[str | PathLike],
    doses: Sequence[float],
    *,
    noise_seeds: Sequence[int],
    lesion_slices: int,
    extra_slices: int,
    device: str,
    split: bool,
    show_progress: bool,
    keep_field: Callable[[float], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every scan (case, noise seed, dose) of the cases in ``data`` that acquired the dose, on the evaluated
    slices, normalised with the percentile map of the scan's native image: ``case``, ``dose``,
    ``field_strength``, ``native``, ``brain``, ``noise_mask``, ``acquired`` (``x_LD − x_NA``), ``truth``
    (``T_d − T_0`` or None) and ``outputs``: the model's subtraction with its heads off and at scale 1
    (``split``), or once as its card says. With ``keep_field``, a case whose field strength it refuses is
    skipped before any forward pass. VCEInputError as :func:`measure_scans`."""
    from tqdm import tqdm

    from vce_core.checkpoint import read_card
    from vce_core.data import apply_normalization, find_case_folders, fit_normalization
    from vce_core.evaluate.heldout import load_eval_case
    from vce_core.evaluate.lowdose import _check_doses, _check_seeds, heads_off_synthesizer
    from vce_core.preprocess import brain_mask

    doses, seeds = _check_doses(doses), _check_seeds(noise_seeds)
    synth = heads_off_synthesizer(model, device=device)  # VCEInputError without a base
    scales = (0.0, 1.0) if split else (float(read_card(model).config.get("texture_scale", 1.0)),)
    any_scan, skipped = False, set()
    for folder in tqdm(find_case_folders(data), desc="cases", disable=not show_progress):
        ec = load_eval_case(folder, lesion_slices=lesion_slices, extra_slices=extra_slices)
        if keep_field is not None and not keep_field(float(ec.field_strength)):
            skipped.add(f"{float(ec.field_strength):g} T")
            continue
        for seed in ec.noise_seeds(list(seeds)):
            native, sd = ec.inputs(seed)
            params = fit_normalization(native, np.asarray(brain_mask(native), dtype=bool), "percentile")
            prep = synth.prepare(native, sd, sequence=ec.sequence)
            norm = lambda a, p=params: apply_normalization(a, p)  # noqa: E731
            nat = norm(native[:, :, ec.slices])
            z = 0 if seed is None else int(seed)
            for dose in doses:
                acquired = ec.low_dose(dose, seed)
                if acquired is None:
                    continue
                out = []
                for scale in scales:
                    synth.model.texture_scale = scale
                    slices = [
                        synth.synthesize_slice(prep, dose, ec.field_strength, index=int(k), seed=z)
                        for k in ec.slices
                    ]
                    out.append(norm(np.stack(slices, axis=-1)) - nat)
                t_d, t_0 = ec.truth(dose), ec.truth(0.0)
                any_scan = True
                yield {
                    "case": ec.case_id,
                    "dose": dose,
                    "field_strength": float(ec.field_strength),
                    "native": nat,
                    "brain": ec.brain[:, :, ec.slices],
                    "noise_mask": ec.noise_mask[:, :, ec.slices],
                    "acquired": norm(acquired) - nat,
                    "truth": None if t_d is None or t_0 is None else norm(t_d) - norm(t_0),
                    "lesions": [(r.type, m) for r, m, _ in ec.lesion_masks()],
                    "outputs": out,
                }
    if not any_scan and skipped:
        raise VCEInputError(
            f"no case at a fitted field strength acquired the doses {doses} (cases skipped at a field "
            f"strength not fitted: {', '.join(sorted(skipped))})",
            expected="cases at the field strengths fitted (--field-strengths)",
        )
    if not any_scan:
        raise VCEInputError(
            f"no case acquired any of the doses {doses}", expected="phantom cases with these low doses"
        )


def measure_scans(
    model: str | PathLike,
    data: Sequence[str | PathLike],
    doses: Sequence[float] = (0.1, 0.2, 0.33),
    *,
    noise_seeds: Sequence[int] = (0,),
    lesion_slices: int = 3,
    extra_slices: int = 4,
    device: str = "auto",
    split: bool = True,
    show_progress: bool = True,
) -> NoiseScans:
    """Run ``model`` with its heads off and at scale 1 on every scan of the cases in ``data`` (``split``),
    or once as its card says (``split=False``: the subtraction is stored as the base, the heads as zero, so
    :func:`ratio_at` gives the checkpoint's own ratio at any scale).

    Raises :class:`VCEInputError` for a generator without a base (nothing to calibrate), bad doses or seeds,
    missing folders, or when no case acquired any of the doses.
    """
    scans = NoiseScans()
    options = {"noise_seeds": noise_seeds, "lesion_slices": lesion_slices, "extra_slices": extra_slices}
    for scan in _split_scans(
        model, data, doses, split=split, show_progress=show_progress, device=device, **options
    ):
        out = scan["outputs"]
        heads = out[1] - out[0] if split else np.zeros_like(out[0])
        mask, acquired, truth = scan["noise_mask"], scan["acquired"], scan["truth"]
        scans.add(scan["case"], scan["dose"], out[0], heads, mask, acquired, truth)
    return scans


def calibrate_noise(scans: NoiseScans, target: float = 1.0, measure: str = "sigma") -> dict[str, Any]:
    """The texture scale whose mean noise ratio (:func:`ratio_at` with ``measure``) is ``target``, with the
    ratios at scale 1 (as trained) and at the result, and the other measure's ratios beside them.
    VCEInputError when the base alone is already at or above the target, or when no scale up to
    :data:`MAX_SCALE` reaches it."""
    from scipy.optimize import brentq

    measure = _check_measure(measure)
    label = MEASURES[measure].split(" (")[0]
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < 10:
        raise VCEInputError(f"target {label} {target!r}", expected="a ratio in (0, 10); 1 = the real noise")
    ratio = lambda s: ratio_at(scans, s, measure)  # noqa: E731
    off = ratio(0.0)["mean"]
    if off >= target:
        raise VCEInputError(
            f"with its heads off the generator's subtraction already has {label} {off:.3f} ≥ {target:g}",
            expected="a target above what the base alone gives (its noise comes from the inputs)",
        )
    top = ratio(MAX_SCALE)["mean"]
    if top < target:
        raise VCEInputError(
            f"even with the heads at {MAX_SCALE:g}× the {label} is {top:.3f} < {target:g}",
            expected="a generator whose heads add noise (trained with the noise-preserving loss)",
        )
    scale = round(float(brentq(lambda s: ratio(s)["mean"] - target, 0.0, MAX_SCALE, xtol=1e-5)), 4)
    fit = {
        "texture_scale": scale,
        "measure": measure,
        "target": float(target),
        "ratio_heads_off": off,
        "ratio_as_trained": ratio(1.0),
        "ratio_calibrated": ratio(scale),
        "scans": len(scans),
        "cases": len(set(scans.cases)),
    }
    other = "residual" if measure == "sigma" else "sigma"
    try:
        fit["other"] = {
            "measure": other,
            "as_trained": ratio_at(scans, 1.0, other),
            "calibrated": ratio_at(scans, scale, other),
        }
    except VCEInputError:  # real cases: no residual
        pass
    return fit


FIT_LESION_TYPE = "weakly enhancing"
"""The lesions :func:`fit_native_slope` fits on by default: those that stand out on the native image (their
mean ``−HP`` is several times a metastasis's on the bundled default) while they enhance little, so a copy
of their native contrast is an error of the order of their enhancement."""


SCAN_OPTIONS = {"noise_seeds": (0,), "lesion_slices": 3, "extra_slices": 4, "device": "auto"}
"""The scan options of :func:`fit_native_slope` and their defaults, as :func:`measure_scans` names them."""


def fit_native_slope(
    model: str | PathLike,
    data: Sequence[str | PathLike],
    doses: Sequence[float] = (0.1, 0.2, 0.33),
    *,
    lesion_type: str = FIT_LESION_TYPE,
    field_strengths: Sequence[float] = (1.5, 3.0),
    show_progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """The ``native_slope`` per field strength at which the heads no longer copy the native contrast of
    ``lesion_type`` lesions (phantom cases; :data:`FIT_LESION_TYPE`). ``options``: the scans' noise seeds,
    slices and device as :func:`measure_scans` takes them (:data:`SCAN_OPTIONS`, with their defaults).

    On every scan (as :func:`measure_scans`) the heads' contribution ``h`` (subtraction at scale 1 minus
    heads off) and ``HP = x_NA − Gauss_σ(x_NA)`` (σ = the card's ``texture_sigma``) are taken on the
    evaluated slices. Per field strength (pooled over doses), the least-squares slope through 0 of each
    ``lesion_type`` lesion's mean ``h`` on its mean ``−HP`` is added to the card's ``native_slope``, which
    makes that slope 0 on these scans. Beside it, as diagnostics: the same slope over the brain (how much
    of the native detail, noise included, the heads copy), and the report's ``lesion_error`` over all
    lesions (mean over scans of the mean ``|E − E_true|`` against the noise-free truth) with the parent's
    slope and the fitted one, computed exactly from the split passes (the output is linear in the slope).

    ``field_strengths``: the field strengths fitted (each counts as 1.5 T or 3 T, the generator's two slopes).
    Another keeps the parent's slope and its scans are skipped: for a generator trained without a field
    strength, whose slope there could only be fitted on cases a hold-out must not see.

    Returned: ``native_slope`` (``[1.5 T, 3 T]``), ``parent`` (the card's, as a pair), ``lesion_type``,
    per field strength (``1.5``, ``3.0``): ``fitted`` and ``native_slope``; where fitted also
    ``lesion_slope`` (the change), ``lesions`` (lesion-scans of the type), ``brain_slope``, ``lesion_error``
    ``{"parent", "fitted"}``, ``lesion_slope_ci`` and ``lesion_slope_per_dose`` (:func:`_slope_spread`);
    and ``brain_slope_per_dose`` (per (field strength, dose)), ``scans``, ``cases``. VCEInputError as
    :func:`measure_scans`, for a generator without ``texture_sigma``, an unknown lesion type, cases without
    noise-free truth, no field strength to fit, and when a fitted field strength has no lesion of the type
    (its slope would be a guess)."""
    from vce_core.domain import check_field_strength
    from vce_core.evaluate.enhancement import LESION_LABELS

    if lesion_type not in LESION_LABELS.values():
        raise VCEInputError(f"lesion type {lesion_type!r}", expected=" or ".join(LESION_LABELS.values()))
    fitted_fields = {_field_group(check_field_strength(f)) for f in field_strengths}
    if not fitted_fields:
        raise VCEInputError("no field strength to fit", expected="1.5 and/or 3")
    unknown = sorted(set(options) - set(SCAN_OPTIONS))
    if unknown:
        raise VCEInputError(f"unknown options {unknown}", expected=", ".join(SCAN_OPTIONS))
    sigma, scale, parent = _texture_parameters(model)
    scan_options = {**SCAN_OPTIONS, **options, "show_progress": show_progress}
    rows, brain_sums, cases, n = _lesion_rows(
        model, data, doses, lesion_type, fitted_fields, sigma, scale, scan_options
    )
    result: dict[str, Any] = {"parent": parent, "lesion_type": lesion_type, "scans": n, "cases": len(cases)}
    for i, field in enumerate((1.5, 3.0)):
        if field not in fitted_fields:
            result[field] = {"fitted": False, "native_slope": parent[i]}
            continue
        brain = [v for (f, _), v in brain_sums.items() if f == field]
        result[field] = _fit_field(field, rows[field], brain, parent[i], lesion_type, doses)
    result["native_slope"] = [result[1.5]["native_slope"], result[3.0]["native_slope"]]
    result["brain_slope_per_dose"] = {k: float(v[0] / v[1]) for k, v in sorted(brain_sums.items()) if v[1]}
    return result


def _field_group(field_strength: float) -> float:
    """The generator's slope a field strength uses: 1.5 (below ``LOW_FIELD_BELOW``) or 3."""
    from vce_core.models.ld_cgan import LOW_FIELD_BELOW

    return 1.5 if field_strength < LOW_FIELD_BELOW else 3.0


def _texture_parameters(model: str | PathLike) -> tuple[float, float, list[float]]:
    """The card's ``texture_sigma``, ``texture_scale`` and ``native_slope`` (as a 1.5 T / 3 T pair);
    VCEInputError for heads that are not high-passed (``texture_sigma`` 0)."""
    from vce_core.checkpoint import read_card

    config = read_card(model).config
    sigma, parent = float(config.get("texture_sigma", 0.0)), config.get("native_slope", 0.0)
    parent = [float(v) for v in parent] if isinstance(parent, list) else [float(parent)] * 2
    if not sigma > 0:
        raise VCEInputError(
            "this generator's heads are not high-passed (texture_sigma 0), so there is no width to remove",
            expected="a generator with texture_sigma > 0",
        )
    return sigma, float(config.get("texture_scale", 1.0)), parent


def _lesion_rows(
    model: str | PathLike,
    data: Sequence[str | PathLike],
    doses: Sequence[float],
    lesion_type: str,
    fitted_fields: set[float],
    sigma: float,
    scale: float,
    scan_options: dict[str, Any],
) -> tuple[dict[float, list[tuple[float, ...]]], dict[tuple[float, float], np.ndarray], dict[str, int], int]:
    """One pass over the scans of the fitted field strengths: per field strength one row per lesion-scan
    (offset ``E − E_true``, its change per unit slope, weight 1 / lesions of the scan, scan index, of the
    fitted type, mean ``h``, mean ``−HP``, dose, case index); per (field strength, dose) the brain sums
    ``(h · −HP, HP · HP)``; the case indices; the number of scans."""
    import torch

    from vce_core.models.ld_cgan import _lowpass

    brain_sums: dict[tuple[float, float], np.ndarray] = {}
    rows: dict[float, list[tuple[float, ...]]] = {1.5: [], 3.0: []}
    cases: dict[str, int] = {}
    n = 0
    keep = lambda f: _field_group(f) in fitted_fields  # noqa: E731
    for scan in _split_scans(model, data, doses, split=True, keep_field=keep, **scan_options):
        if scan["truth"] is None:
            raise VCEInputError(
                "the lesion fit needs the phantom's labels and noise-free truth, which a real case lacks",
                path=scan["case"],
                expected="phantom cases (the phantom's val split)",
            )
        field = _field_group(scan["field_strength"])
        nat = torch.from_numpy(np.ascontiguousarray(np.moveaxis(scan["native"], -1, 0)[:, None]))
        hp = np.moveaxis((nat - _lowpass(nat, sigma)).numpy()[:, 0], 0, -1).astype(np.float64)
        off, on = scan["outputs"]
        heads, brain = (on - off).astype(np.float64), scan["brain"]
        key = (field, scan["dose"])
        brain_sums[key] = brain_sums.get(key, np.zeros(2)) + [
            float(heads[brain] @ -hp[brain]),
            float(hp[brain] @ hp[brain]),
        ]
        sub = off + scale * heads
        case = cases.setdefault(scan["case"], len(cases))
        for kind, m in scan["lesions"]:
            offset = float(sub[m].mean() - scan["truth"][m].mean(dtype=np.float64))
            fitted = float(kind == lesion_type)
            h, x = float(heads[m].mean()), float(-hp[m].mean())
            rows[field].append(
                (offset, -scale * x, 1.0 / len(scan["lesions"]), n, fitted, h, x, scan["dose"], case)
            )
        n += 1
    return rows, brain_sums, cases, n


def _fit_field(
    field: float,
    rows: list[tuple[float, ...]],
    brain_sums: list[np.ndarray],
    parent: float,
    lesion_type: str,
    doses: Sequence[float],
) -> dict[str, Any]:
    """The fit of one field strength from its lesion rows and brain sums (see :func:`fit_native_slope`)."""
    table = np.array(rows).reshape(-1, 9)
    offset, change, weight, index, fitted, h, x, dose, case = table.T
    fitted = fitted.astype(bool)
    if not fitted.any() or not (x[fitted] ** 2).sum() > 0:
        raise VCEInputError(
            f"no {lesion_type} lesion at {field:g} T on the evaluated slices of the calibration cases",
            expected=f"phantom cases with {lesion_type} lesions at both field strengths (the val split)",
        )
    slope = float(h[fitted] @ x[fitted] / (x[fitted] @ x[fitted]))
    scans = len(np.unique(index))
    error = lambda c: float((weight * np.abs(offset + c * change)).sum())  # noqa: E731
    return {
        "fitted": True,
        "native_slope": round(parent + slope, 5),
        "lesion_slope": slope,
        "lesions": int(fitted.sum()),
        "brain_slope": float(sum(v[0] for v in brain_sums) / max(sum(v[1] for v in brain_sums), 1e-30)),
        "lesion_error": {"parent": error(0.0) / scans, "fitted": error(slope) / scans},
        **_slope_spread(h[fitted], x[fitted], dose[fitted], case[fitted], doses),
    }


def _slope_spread(
    h: np.ndarray, x: np.ndarray, dose: np.ndarray, case: np.ndarray, doses: Sequence[float]
) -> dict[str, Any]:
    """How firmly the lesion-scans fix the slope of ``h`` on ``x`` through 0, and whether it moves with the
    dose: ``lesion_slope_ci`` (bootstrap 95 % CI resampling cases, since a case's lesions and doses share
    one native scan; 2,000 resamples, seed 0) and ``lesion_slope_per_dose`` (the slope on each dose's
    lesion-scans alone, None where a dose has none). The pooled slope is the ``x·x``-weighted mean of the
    per-dose ones."""
    ids = np.unique(case)
    rng = np.random.default_rng(0)
    hx = np.array([h[case == c] @ x[case == c] for c in ids])
    xx = np.array([x[case == c] @ x[case == c] for c in ids])
    draws = rng.integers(0, len(ids), size=(2000, len(ids)))
    sums = xx[draws].sum(axis=1)
    boot = hx[draws].sum(axis=1)[sums > 0] / sums[sums > 0]
    per_dose = {}
    for d in doses:
        at = np.isclose(dose, d)
        per_dose[float(d)] = float(h[at] @ x[at] / (x[at] @ x[at])) if (x[at] @ x[at]) > 0 else None
    return {
        "lesion_slope_ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "lesion_slope_per_dose": per_dose,
    }


def write_calibrated(
    model: str | PathLike,
    out: str | PathLike,
    fit: dict[str, Any],
    *,
    name: str | None = None,
    display_name: str | None = None,
    data: Sequence[str | PathLike] = (),
    noise_seeds: Sequence[int] = (0,),
    command: str = "",
) -> Path:
    """Write the calibrated copy of checkpoint ``model`` to ``out`` (a new folder; module docstring):
    with ``fit`` from :func:`calibrate_noise` the card's ``texture_scale`` and a
    ``training.noise_calibration`` record, from :func:`fit_native_slope` its ``native_slope`` and a
    ``training.native_slope_fit`` record; either with a line in the deviations."""
    where = f"{fit['cases']} cases of {', '.join(map(str, data))}"
    common = {"parent": str(model), "data": [str(d) for d in data], "cases": fit["cases"]}
    common |= {"noise_seeds": list(noise_seeds), "command": command}
    if "texture_scale" in fit:
        config, key, record, deviation = _noise_record(fit, where)
        suffix = "noise calibrated"
    else:
        config, key, record, deviation = _slope_record(fit, where)
        suffix = "native slope fitted"
    return _write_copy(
        model,
        out,
        config,
        (key, {**common, **record}, deviation),
        name=name,
        display_name=display_name,
        suffix=suffix,
    )


def _noise_record(fit: dict[str, Any], where: str) -> tuple[dict, str, dict, str]:
    """``(config changes, record key, record, deviation)`` of a noise calibration."""
    scale = float(fit["texture_scale"])
    per_dose = lambda r: {f"{d:g}": round(v, 4) for d, v in r.items() if d != "mean"}  # noqa: E731
    label = MEASURES[fit["measure"]].split(" (")[0]
    record = {
        "texture_scale": scale,
        "measure": fit["measure"],
        "target": fit["target"],
        "ratio_as_trained": per_dose(fit["ratio_as_trained"]),
        "ratio_calibrated": per_dose(fit["ratio_calibrated"]),
    }
    if "other" in fit:
        other = fit["other"]
        record[f"{other['measure']}_as_trained"] = per_dose(other["as_trained"])
        record[f"{other['measure']}_calibrated"] = per_dose(other["calibrated"])
    deviation = (
        f"noise calibrated after training: heads × {scale:.3f} so that the subtraction's {label} is "
        f"{fit['target']:g} on {where} (as trained {fit['ratio_as_trained']['mean']:.3f})"
    )
    return {"texture_scale": scale}, "noise_calibration", record, deviation


def _slope_record(fit: dict[str, Any], where: str) -> tuple[dict, str, dict, str]:
    """``(config changes, record key, record, deviation)`` of a native-slope fit."""
    slopes = [float(v) for v in fit["native_slope"]]
    fields = {
        f"{field:g} T": {
            "fitted": True,
            "native_slope": fit[field]["native_slope"],
            "lesion_error_parent": round(fit[field]["lesion_error"]["parent"], 6),
            "lesion_error_fitted": round(fit[field]["lesion_error"]["fitted"], 6),
            "lesion_slope": round(fit[field]["lesion_slope"], 5),
            "lesion_slope_ci": [round(v, 5) for v in fit[field]["lesion_slope_ci"]],
            "lesion_slope_per_dose": {
                f"{d:g}": None if v is None else round(v, 5)
                for d, v in fit[field]["lesion_slope_per_dose"].items()
            },
            "lesions": fit[field]["lesions"],
            "brain_slope": round(fit[field]["brain_slope"], 5),
        }
        if fit[field]["fitted"]
        else {"fitted": False, "native_slope": fit[field]["native_slope"]}
        for field in (1.5, 3.0)
    }
    record = {
        "native_slope": slopes,
        "parent_native_slope": fit["parent"],
        "lesion_type": fit["lesion_type"],
        "per_field_strength": fields,
        "brain_slope_per_dose": {
            f"{f:g} T, {d:g}": round(v, 5) for (f, d), v in fit["brain_slope_per_dose"].items()
        },
    }
    kept = [f"{f:g} T" for f in (1.5, 3.0) if not fit[f]["fitted"]]
    deviation = (
        f"after training, the heads' copy of the native contrast of {fit['lesion_type']} lesions removed: "
        f"native_slope {slopes[0]:.4f} (1.5 T) / {slopes[1]:.4f} (3 T), fitted on {where}"
        + (f"; at {' and '.join(kept)} not fitted (the parent's slope kept)" if kept else "")
    )
    return {"native_slope": slopes}, "native_slope_fit", record, deviation


def _write_copy(
    model: str | PathLike,
    out: str | PathLike,
    config: dict[str, Any],
    record: tuple[str, dict[str, Any], str],
    *,
    name: str | None,
    display_name: str | None,
    suffix: str,
) -> Path:
    """The same weights in the new folder ``out`` with the card's ``config`` updated, the record
    ``(key, record, deviation)`` under ``training`` and in its deviations, no held-out figures (they
    describe the parent) and not the default; nothing is left of ``out`` on failure."""
    from vce_core.checkpoint import WEIGHTS_FILE, read_card, write_card

    model, out = Path(model), Path(out)
    if out.exists():
        raise VCEInputError("the output folder exists", path=out, expected="a new folder for the copy")
    card = read_card(model)
    key, entry, deviation = record
    training = dict(card.training)
    training[key] = entry
    config_rec = dict(training.get("config", {}))
    config_rec["deviations"] = [*config_rec.get("deviations", []), deviation]
    training["config"] = config_rec
    new = card.with_changes(
        name=name or out.name,
        display_name=display_name or f"{card.display_name}, {suffix}",
        config={**card.config, **config},
        training=training,
        held_out=None,
        default=False,
    )
    out.mkdir(parents=True)
    try:
        shutil.copyfile(model / WEIGHTS_FILE, out / WEIGHTS_FILE)
        write_card(out, new)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _print_fit(fit: dict[str, Any]) -> None:
    doses = [d for d in fit["ratio_as_trained"] if d != "mean"]
    label = MEASURES[fit["measure"]].split(" (")[0]
    print(
        f"{fit['cases']} cases, {fit['scans']} scans; {label} with the heads off {fit['ratio_heads_off']:.3f}"
    )
    print("| heads | measure | " + " | ".join(f"{100 * d:g} %" for d in doses) + " | mean |")
    print("| --- | --- |" + " --- |" * (len(doses) + 1))
    rows = [(fit["measure"], "ratio_as_trained", "ratio_calibrated", fit)]
    if "other" in fit:
        rows.append((fit["other"]["measure"], "as_trained", "calibrated", fit["other"]))
    for heads, which in (("× 1 (as trained)", 1), (f"× {fit['texture_scale']:.4f}", 2)):
        for row in rows:
            r = row[3][row[which]]
            name = MEASURES[row[0]].split(" (")[0]
            print(
                f"| {heads} | {name} | " + " | ".join(f"{r[d]:.3f}" for d in doses) + f" | {r['mean']:.3f} |"
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, help="checkpoint folder of a generator with a base")
    parser.add_argument("--data", nargs="+", required=True, help="calibration cases (not a test set)")
    parser.add_argument("--doses", nargs="+", type=float, default=[0.1, 0.2, 0.33])
    parser.add_argument("--noise-seeds", nargs="+", type=int, default=[0], help="repeat scans per case")
    parser.add_argument("--lesion-slices", type=int, default=3, help="evaluated slices per lesion (at most)")
    parser.add_argument("--extra-slices", type=int, default=4, help="further brain slices per case")
    parser.add_argument(
        "--measure",
        choices=list(MEASURES),
        default="sigma",
        help="what is matched: " + "; ".join(f"{k}: {v}" for k, v in MEASURES.items()),
    )
    parser.add_argument("--target", type=float, default=1.0, help="ratio to reach (1: the real noise)")
    parser.add_argument(
        "--fit",
        choices=["noise", "native-slope"],
        default="noise",
        help="noise: the texture scale (--measure, --target); native-slope: the heads' copy of the native "
        "contrast of --lesion-type lesions per field strength, removed (native_slope; phantom cases)",
    )
    parser.add_argument(
        "--lesion-type", default=FIT_LESION_TYPE, help=f"native-slope: lesions fitted on ({FIT_LESION_TYPE})"
    )
    parser.add_argument(
        "--field-strengths",
        nargs="+",
        type=float,
        default=[1.5, 3.0],
        help="native-slope: the field strengths fitted (T); another keeps the parent's slope and its cases "
        "are skipped (a generator trained without that field strength)",
    )
    parser.add_argument("--out", help="write the calibrated copy to this new checkpoint folder")
    parser.add_argument("--name", help="its card's name (default: the folder's name)")
    parser.add_argument(
        "--display-name", help="its label in reports (default: the parent's + ', noise calibrated')"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = command_line("vce_core.evaluate.calibrate", argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.out and Path(args.out).exists():  # before minutes of measuring
        print(f"error: the output folder exists: {args.out}", file=sys.stderr)
        return 2
    if args.fit == "native-slope":
        return _native_slope_cli(args, command)
    t0 = time.perf_counter()
    scans = run_cli(measure_scans, args)
    fit = None if scans is None else run_cli(calibrate_noise, args, scans=scans)
    if fit is None:
        return 2
    _print_fit(fit)
    print(f"measured in {time.perf_counter() - t0:.0f} s")
    return _write_and_check_noise_fit(args, fit, command) if args.out else 0


def _write_and_check_noise_fit(args: argparse.Namespace, fit: dict[str, Any], command: str) -> int:
    """``--out`` of the noise fit: write the calibrated copy and measure it again by a full forward pass."""
    folder = run_cli(
        write_calibrated,
        model=args.model,
        out=args.out,
        fit=fit,
        name=args.name,
        display_name=args.display_name,
        data=args.data,
        noise_seeds=args.noise_seeds,
        command=command,
    )
    if folder is None:
        return 2
    check = measure_scans(
        folder,
        args.data,
        args.doses,
        noise_seeds=args.noise_seeds,
        lesion_slices=args.lesion_slices,
        extra_slices=args.extra_slices,
        device=args.device,
        split=False,
        show_progress=False,
    )
    r = ratio_at(check, 0.0, args.measure)
    doses = " / ".join(f"{r[d]:.3f}" for d in r if d != "mean")
    label = MEASURES[args.measure].split(" (")[0]
    print(f"checked: {folder} gives {label} {doses} (mean {r['mean']:.3f}) by a full forward pass")
    return 0


def _native_slope_cli(args: argparse.Namespace, command: str) -> int:
    """``--fit native-slope``: fit, print, write (``--out``) and check by fitting again on the copy."""
    t0 = time.perf_counter()
    options = {k: getattr(args, k) for k in SCAN_OPTIONS}
    fit = run_cli(fit_native_slope, args, **options)
    if fit is None:
        return 2
    print(f"{fit['cases']} cases, {fit['scans']} scans; the heads' contribution against minus the native HP")
    doses = " / ".join(f"{100 * d:g} %" for d in args.doses)
    print(f"| field strength | slope over the brain at {doses} | {fit['lesion_type']} lesion-scans | slope "
          f"over them [95 % CI over cases] | the same at {doses} | lesion error, all lesions (parent → "
          "fitted) | native_slope |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for field in (1.5, 3.0):
        f = fit[field]
        if not f["fitted"]:
            kept = f"{f['native_slope']:.4f} (the parent's)"
            print(f"| {field:g} T | not fitted (--field-strengths) | | | | | {kept} |")
            continue
        brain = " / ".join(
            f"{fit['brain_slope_per_dose'].get((field, d), math.nan):+.3f}" for d in args.doses
        )
        error = f"{f['lesion_error']['parent']:.5f} → {f['lesion_error']['fitted']:.5f}"
        slope = "{:+.4f} [{:+.4f}, {:+.4f}]".format(f["lesion_slope"], *f["lesion_slope_ci"])
        per_dose = " / ".join("–" if v is None else f"{v:+.4f}" for v in f["lesion_slope_per_dose"].values())
        print(
            f"| {field:g} T | {brain} | {f['lesions']} | {slope} | {per_dose} | {error} | "
            f"{f['native_slope']:.4f} |"
        )
    print(f"measured in {time.perf_counter() - t0:.0f} s")
    if not args.out:
        return 0
    folder = run_cli(write_calibrated, args, fit=fit, command=command)
    if folder is None:
        return 2
    check = run_cli(fit_native_slope, args, model=folder, show_progress=False, **options)
    if check is None:
        return 2
    fields = [f for f in (1.5, 3.0) if check[f]["fitted"]]
    left = " / ".join(f"{check[f]['lesion_slope']:+.4f}" for f in fields)
    errors = " / ".join(f"{check[f]['lesion_error']['parent']:.5f}" for f in fields)
    at = " / ".join(f"{f:g} T" for f in fields)
    print(f"checked by full forward passes of {folder}: slope left {left}, lesion error {errors} ({at})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
