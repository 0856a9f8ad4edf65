"""Held-out evaluation of low-dose synthesis (seed 000): lesion enhancement, noise realism, image metrics.

    python -m vce_core.evaluate --models assets/models/<a> assets/models/<b> --data data/<held-out cases> \\
        --doses 0.1 0.2 0.33 --noise-seeds 0 1 2 --out reports/<name> [--update-cards]

What is compared. For every case, every noise seed ``k`` (a repeat scan: native, standard dose and low dose
acquired with their own noise; phantom cases only, see :mod:`vce_core.evaluate.heldout`) and every dose
``d``: the acquired low dose ``x_LD`` (the reference "acquired low dose"), the **linear baseline**
``x_NA + d (x_SD − x_NA)``, the **physics baseline** (:func:`vce_core.baselines.physics_baseline`: SPGR
inversion with the case's sequence, concentration scaled by ``d``) and every model (its card's
``display_name``; generator noise seed ``k``). All images are normalised with the percentile map fitted on
that scan's native image (0.5/99.5 % in the brain → 0/1), so errors are fractions of the native range.

What is measured (on the evaluated slices, :func:`vce_core.evaluate.heldout.choose_slices`):

* lesion enhancement against the noise-free truth (phantom): for every enhancing lesion, ``E`` = mean of
  the subtraction ``x − x_NA`` over its enhancing voxels, ``E_true`` = the same on ``T_d − T_0``;
  ``lesion_error`` = mean over the case's lesions of ``|E − E_true|`` (the primary endpoint),
  ``lesion_rel_error`` of ``|E / E_true − 1|``, and per lesion type; CNR of small/weak lesions;
* images against the noise-free truth ``T_d`` (PSNR, SSIM, MAE in the brain, MAE on the truly enhancing
  voxels) and against the noisy acquisition (PSNR, SSIM, MAE_CE on seed 000's mask, MAE_σ);
* noise realism of the subtraction image: σ̂ (pooled 2-D Immerkær), local SD, residual SD against the
  noise-free subtraction and the noise power spectrum in three bands, each also as the ratio to the same
  figure of the acquired subtraction ``x_LD − x_NA`` (1 = the real noise).

Statistics (:mod:`vce_core.evaluate.stats`): seeds are averaged within a case; means over cases with
bootstrap 95 % CIs; every model is compared with every baseline (Wilcoxon signed-rank over cases, bootstrap
CI of the mean paired difference, Holm-adjusted over the primary family), and the acquired scan itself is
tested the same way on the lesion errors (outside the Holm family: what a model that kept the real noise
and had no bias would score). Outputs in ``--out``:
``results.csv`` (case, seed, dose, method, metric, value), ``lesions.csv`` (one row per lesion, seed, dose,
method), ``summary.csv``, ``comparisons.csv``, ``nps.csv``, ``report.md`` and ``report.html``
(:mod:`vce_core.evaluate.report`).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.checkpoint import training_lineage
from vce_core.domain import check_dose
from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, describe, method_names, run_cli

__all__ = [
    "BASELINES",
    "HEADS_OFF",
    "METRICS",
    "REFERENCE",
    "case_metrics",
    "evaluate",
    "heads_off_synthesizer",
    "main",
    "update_card",
]

METRICS = ("psnr", "ssim", "mae_ce", "mae_sigma")
"""Seed 000's Table-1 metrics against the acquired low dose (:func:`case_metrics`)."""

REFERENCE = "acquired low dose"
LINEAR = "linear baseline"
PHYSICS = "physics baseline"
BASELINES = (LINEAR, PHYSICS)
HEADS_OFF = ", heads off"
"""Suffix of a model's ablation row (``--heads-off``): its base alone, heads zeroed."""


def physics_variant(t1_scale: float) -> str:
    """Label of the physics baseline with its assumed native T1 multiplied by ``t1_scale`` (sensitivity)."""
    return f"{PHYSICS} (T1 × {t1_scale:g})"


def case_metrics(x: np.ndarray, ref: np.ndarray, brain: np.ndarray, ce: np.ndarray) -> dict[str, float]:
    """The four Table-1 metrics of ``x`` vs ``ref`` (same shape, normalised units); NaN if undefined."""
    from vce_core import metrics

    data_range = float(ref[brain].max() - ref[brain].min())
    fns = {
        "psnr": lambda: metrics.psnr(x, ref, data_range=data_range, mask=brain),
        "ssim": lambda: metrics.ssim(x, ref, data_range=data_range, mask=brain),
        "mae_ce": lambda: metrics.mae_ce(x, ref, ce) if ce.any() else float("nan"),
        "mae_sigma": lambda: metrics.mae_sigma(x, ref, brain & ~ce),
    }
    out = {}
    for key, fn in fns.items():
        try:
            out[key] = float(fn())
        except VCEInputError:
            out[key] = float("nan")
    return out


# ======================================================================================== per-scan context
@dataclass
class _Scan:
    """Normalised images of one (case, noise seed, dose) on the evaluated slices (I, J, n)."""

    native: np.ndarray
    acquired: np.ndarray
    acquired_raw: np.ndarray
    truth: np.ndarray | None
    truth0: np.ndarray | None
    brain: np.ndarray
    noise: np.ndarray
    ce: np.ndarray
    enhancing: np.ndarray | None

    def norm(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        from vce_core.data import apply_normalization

        return apply_normalization(x, params)


def _slice_ssim(x: np.ndarray, ref: np.ndarray, brain: np.ndarray, data_range: float) -> float:
    from vce_core import metrics

    values = []
    for i in range(x.shape[2]):
        try:
            values.append(metrics.ssim(x[:, :, i], ref[:, :, i], data_range=data_range, mask=brain[:, :, i]))
        except VCEInputError:
            continue
    return float(np.mean(values)) if values else float("nan")


def _against(x: np.ndarray, ref: np.ndarray, brain: np.ndarray) -> tuple[float, float, float]:
    """PSNR, SSIM (2-D per slice, averaged) and MAE of ``x`` vs ``ref`` inside ``brain``."""
    from vce_core import metrics

    data_range = float(ref[brain].max() - ref[brain].min())
    return (
        metrics.psnr(x, ref, data_range=data_range, mask=brain),
        _slice_ssim(x, ref, brain, data_range),
        metrics.mae(x, ref, brain),
    )


def _image_metrics(x: np.ndarray, scan: _Scan) -> dict[str, float]:
    """Metrics of one method's normalised slices ``x`` (module docstring), NaN where undefined."""
    from vce_core import metrics
    from vce_core.evaluate.noise import local_sd, pooled_noise_sigma

    out: dict[str, float] = {}
    out["psnr"], out["ssim"], out["mae"] = _against(x, scan.acquired, scan.brain)
    out["mae_ce"] = metrics.mae_ce(x, scan.acquired, scan.ce) if scan.ce.any() else math.nan
    non_ce = scan.brain & ~scan.ce
    out["mae_sigma"] = abs(pooled_noise_sigma(x, non_ce) - pooled_noise_sigma(scan.acquired, non_ce))
    sub = x - scan.native
    out["sub_sigma"] = pooled_noise_sigma(sub, scan.noise)
    out["sub_local_sd"] = local_sd(sub, scan.noise)
    out["img_sigma"] = pooled_noise_sigma(x, scan.noise)
    if scan.truth is not None and scan.truth0 is not None:
        out["psnr_truth"], out["ssim_truth"], out["mae_truth"] = _against(x, scan.truth, scan.brain)
        enh = scan.enhancing
        out["mae_enh_truth"] = metrics.mae(x, scan.truth, enh) if enh is not None and enh.any() else math.nan
        resid = sub - (scan.truth - scan.truth0)
        out["sub_resid_sd"] = float(resid[scan.noise].std(ddof=1)) if scan.noise.sum() > 2 else math.nan
    return out


def _spectrum(x: np.ndarray, scan: _Scan) -> Any:
    """Noise power spectrum of the subtraction's deviation from the noise-free subtraction (None if none)."""
    from vce_core.evaluate.noise import noise_power_spectrum

    if scan.truth is None or scan.truth0 is None:
        return None
    try:
        return noise_power_spectrum((x - scan.native) - (scan.truth - scan.truth0), scan.noise, patch=24)
    except VCEInputError:
        return None


def _lesion_rows(ec: Any, x: np.ndarray, scan: _Scan, key: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per enhancing lesion of the case for method output ``x`` (normalised slices)."""
    from vce_core.evaluate.enhancement import cnr, enhancement

    if scan.truth is None or scan.truth0 is None:
        return []
    rows = []
    sub, sub_acq, sub_true = x - scan.native, scan.acquired - scan.native, scan.truth - scan.truth0
    for region, m, background in ec.lesion_masks():
        e_true, e = enhancement(sub_true, m), enhancement(sub, m)
        rows.append(
            {
                **key,
                "lesion": region.index,
                "type": region.type,
                "voxels": region.voxels,
                "small_or_weak": region.small_or_weak,
                "e_true": e_true,
                "e_method": e,
                "e_acquired": enhancement(sub_acq, m),
                "ratio": e / e_true if e_true else math.nan,
                "abs_error": abs(e - e_true),
                "rel_error": abs(e / e_true - 1.0) if e_true else math.nan,
                "cnr": cnr(sub, m, background),
                "cnr_acquired": cnr(sub_acq, m, background),
            }
        )
    return rows


# ============================================================================================ the loop
def _outputs(
    ec: Any,
    models: Sequence[tuple[str, Any, Any]],
    native: np.ndarray,
    sd: np.ndarray,
    dose: float,
    seed: Any,
    t1_scales: Sequence[float] = (),
) -> dict[str, np.ndarray]:
    """Every method's low dose on the evaluated slices (scanner units): both baselines and each model.

    ``models``: ``(name, synthesizer, prepared inputs)``; the physics baseline needs the case's sequence and
    its ``min_signal`` is taken from the full native volume (5 % of the 99th percentile of positive voxels).
    ``t1_scales`` add sensitivity rows :func:`physics_variant` with the assumed native T1 scaled.
    """
    from vce_core.baselines import DEFAULT_T1_S, linear_baseline, physics_baseline

    nat_s, sd_s = native[:, :, ec.slices], sd[:, :, ec.slices]
    out = {LINEAR: linear_baseline(nat_s, sd_s, dose)}
    if ec.sequence is not None:
        positive = native[native > 0]
        min_signal = 0.05 * float(np.percentile(positive, 99)) if positive.size else 0.0
        seq = {**ec.sequence, "field_strength": None}
        out[PHYSICS] = physics_baseline(
            nat_s, sd_s, dose, seq, field_strength=ec.field_strength, min_signal=min_signal
        )
        for scale in t1_scales:
            t1 = scale * DEFAULT_T1_S[ec.field_strength]
            out[physics_variant(scale)] = physics_baseline(
                nat_s, sd_s, dose, seq, t1_native_s=t1, min_signal=min_signal
            )
    z = 0 if seed is None else int(seed)
    for name, synth, prep in models:
        out[name] = np.stack(
            [
                synth.synthesize_slice(prep, dose, ec.field_strength, plane="axial", index=int(k), seed=z)
                for k in ec.slices
            ],
            axis=-1,
        )
    return out


def _scan(
    ec: Any, params: dict[str, Any], native: np.ndarray, ce: np.ndarray, dose: float, seed: Any
) -> _Scan | None:
    """Normalised reference images of (case, seed, dose) on the evaluated slices; None if not acquired.

    ``ce``: seed 000's CE mask of this scan on the evaluated slices.
    """
    from vce_core.data import apply_normalization

    acquired = ec.low_dose(dose, seed)
    if acquired is None:
        return None
    S = ec.slices
    truth, truth0 = ec.truth(dose), ec.truth(0.0)
    norm = lambda a: None if a is None else apply_normalization(a, params)  # noqa: E731
    return _Scan(
        native=norm(native[:, :, S]),
        acquired=norm(acquired),
        acquired_raw=acquired,
        truth=norm(truth),
        truth0=norm(truth0),
        brain=ec.brain[:, :, S],
        noise=ec.noise_mask[:, :, S],
        ce=ce,
        enhancing=None if ec.enhancing is None else ec.enhancing[:, :, S],
    )


RATIO_METRICS = ("sub_sigma", "sub_local_sd", "img_sigma", "sub_resid_sd")
"""Noise figures also reported as the ratio to the acquired low dose's (``<metric>_ratio``)."""


def _scan_rows(
    ec: Any, outputs: dict[str, np.ndarray], scan: _Scan, params: dict[str, Any], key: dict[str, Any]
) -> tuple[list[dict], list[dict], list[tuple[str, Any]]]:
    """Image rows (with noise ratios to the acquisition), lesion rows and spectra of one scan."""
    from vce_core.evaluate.noise import nps_band_ratios

    values: dict[str, dict[str, float]] = {}
    lesions: list[dict[str, Any]] = []
    spectra: dict[str, Any] = {}
    for method, x in outputs.items():
        xn = scan.norm(x, params)
        values[method] = _image_metrics(xn, scan)
        lesions += _lesion_rows(ec, xn, scan, {**key, "method": method})
        spectra[method] = _spectrum(xn, scan)
    ref, ref_nps = values[REFERENCE], spectra[REFERENCE]
    for method, v in values.items():
        for m in RATIO_METRICS:
            if m in v and m in ref:
                v[f"{m}_ratio"] = v[m] / ref[m] if ref[m] > 0 else math.nan
        if spectra[method] is not None and ref_nps is not None:
            v |= {f"nps_{b}_ratio": r for b, r in nps_band_ratios(spectra[method], ref_nps).items()}
        v |= _lesion_summary([r for r in lesions if r["method"] == method])
    rows = [
        {**key, "method": method, "metric": m, "value": float(x)}
        for method, v in values.items()
        for m, x in v.items()
    ]
    return rows, lesions, list(spectra.items())


def _lesion_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per-scan lesion figures of one method: mean errors over its lesions (all, per type), small/weak CNR."""
    from vce_core.evaluate.enhancement import LESION_LABELS

    if not rows:
        return {}
    out = {
        "lesion_error": float(np.mean([r["abs_error"] for r in rows])),
        "lesion_rel_error": float(np.nanmean([r["rel_error"] for r in rows])),
        "lesion_ratio": float(np.nanmean([r["ratio"] for r in rows])),
    }
    for kind in LESION_LABELS.values():
        mine = [r["abs_error"] for r in rows if r["type"] == kind]
        if mine:
            out[f"lesion_error:{kind}"] = float(np.mean(mine))
    small = [
        r for r in rows if r["small_or_weak"] and math.isfinite(r["cnr"]) and math.isfinite(r["cnr_acquired"])
    ]
    if small:
        out["cnr_small"] = float(np.mean([r["cnr"] for r in small]))
        out["cnr_small_error"] = float(np.mean([abs(r["cnr"] - r["cnr_acquired"]) for r in small]))
    return out


def _evaluate_case(
    ec: Any,
    synths: Sequence[Any],
    names: Sequence[str],
    doses: Sequence[float],
    seeds: Sequence[int],
    t1_scales: Sequence[float] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, float, Any]]]:
    """Image rows, lesion rows and noise spectra ``(method, dose, spectrum)`` of one case."""
    from vce_core.data import fit_normalization
    from vce_core.preprocess import brain_mask, ce_mask

    rows: list[dict[str, Any]] = []
    lesions: list[dict[str, Any]] = []
    spectra: list[tuple[str, float, Any]] = []
    for seed in ec.noise_seeds(list(seeds)):
        native, sd = ec.inputs(seed)
        params = fit_normalization(native, np.asarray(brain_mask(native), dtype=bool), "percentile")
        models = [
            (n, s, s.prepare(native, sd, sequence=ec.sequence)) for n, s in zip(names, synths, strict=True)
        ]
        ce = np.asarray(ce_mask(native, sd, 0.1, mask=ec.brain), dtype=bool)[:, :, ec.slices]
        for dose in doses:
            scan = _scan(ec, params, native, ce, dose, seed)
            if scan is None:
                continue
            outputs = {
                REFERENCE: scan.acquired_raw,
                **_outputs(ec, models, native, sd, dose, seed, t1_scales),
            }
            key = {
                "case_id": ec.case_id,
                "agent": ec.agent,
                "field_strength": ec.field_strength,
                "noise_seed": "" if seed is None else seed,
                "dose": dose,
            }
            r, les, spec = _scan_rows(ec, outputs, scan, params, key)
            rows += r
            lesions += les
            spectra += [(method, dose, sp) for method, sp in spec]
    return rows, lesions, spectra


# ============================================================================================ aggregation
LOWER_IS_BETTER = {"psnr": False, "ssim": False, "psnr_truth": False, "ssim_truth": False}
"""Metrics where higher is better; every other compared metric is an error (lower is better)."""

PRIMARY = "lesion_error"
COMPARED = (
    PRIMARY,
    "lesion_rel_error",
    "lesion_error:enhancing rim",
    "lesion_error:metastasis",
    "lesion_error:meningioma",
    "lesion_error:weakly enhancing",
    "cnr_small_error",
    "mae_enh_truth",
    "mae_truth",
    "psnr_truth",
    "ssim_truth",
)
"""Metrics on which every model is tested against every baseline (the first is the primary endpoint)."""

ALL_DOSES = "all"


def per_case(results: list[dict[str, Any]]) -> dict[tuple[str, Any, str], dict[str, float]]:
    """``{(method, dose, metric): {case_id: mean over noise seeds}}`` plus dose ``"all"`` (mean of doses)."""
    acc: dict[tuple[str, Any, str], dict[str, list[float]]] = {}
    for r in results:
        v = r["value"]
        if isinstance(v, float) and not math.isfinite(v):
            continue
        acc.setdefault((r["method"], r["dose"], r["metric"]), {}).setdefault(r["case_id"], []).append(v)
    table = {k: {c: float(np.mean(vs)) for c, vs in cases.items()} for k, cases in acc.items()}
    pooled: dict[tuple[str, Any, str], dict[str, list[float]]] = {}
    for (method, _, metric), cases in table.items():
        for c, v in cases.items():
            pooled.setdefault((method, ALL_DOSES, metric), {}).setdefault(c, []).append(v)
    table |= {k: {c: float(np.mean(vs)) for c, vs in cases.items()} for k, cases in pooled.items()}
    return table


def summarize(
    table: dict[tuple[str, Any, str], dict[str, float]], cases: set[str] | None = None
) -> list[dict[str, Any]]:
    """Mean, SD, bootstrap 95 % CI and n over cases per (method, dose, metric); ``cases`` restricts them."""
    from vce_core.evaluate.stats import bootstrap_ci

    rows = []
    for (method, dose, metric), values in table.items():
        vals = np.array([v for c, v in values.items() if cases is None or c in cases])
        if not vals.size:
            continue
        low, high = bootstrap_ci(vals)
        rows.append(
            {
                "method": method,
                "dose": dose,
                "metric": metric,
                **describe(vals),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows


def comparisons(
    table: dict[tuple[str, Any, str], dict[str, float]],
    models: Sequence[str],
    doses: Sequence[Any],
    baselines: Sequence[str] = BASELINES,
    reference: str | None = REFERENCE,
) -> list[dict[str, Any]]:
    """Every model vs every baseline on :data:`COMPARED` per dose (and all doses), paired over cases.

    With ``reference`` (default: the acquired scan) its lesion errors (the primary endpoint and per lesion
    type) are tested against the same baselines in rows whose ``model`` is ``reference``: what a model
    identical to the real scan would score (no bias, the real noise): the reference for a model that keeps
    the real noise.

    ``p_holm`` adjusts the primary endpoint's p-values of the *models* against the two baselines of
    :data:`BASELINES` over models × baselines × doses (each dose and the pooled row) with Holm's method;
    the reference's rows, sensitivity baselines and the other metrics carry their raw p-values only.
    """
    from vce_core.evaluate.stats import compare, holm

    rows = []
    lesion_metrics = tuple(m for m in COMPARED if m.split(":")[0] == PRIMARY)
    tested = [(model, COMPARED) for model in models]
    if reference is not None:
        tested.append((reference, lesion_metrics))
    for model, metrics in tested:
        for baseline in baselines:
            for dose in [*doses, ALL_DOSES]:
                for metric in metrics:
                    a, b = table.get((model, dose, metric), {}), table.get((baseline, dose, metric), {})
                    keys = sorted(set(a) & set(b))
                    if not keys:
                        continue
                    c = compare(
                        [a[k] for k in keys],
                        [b[k] for k in keys],
                        lower_is_better=LOWER_IS_BETTER.get(metric, True),
                    )
                    rows.append(
                        {
                            "model": model,
                            "baseline": baseline,
                            "dose": dose,
                            "metric": metric,
                            "n": c.n,
                            "model_mean": float(np.mean([a[k] for k in keys])),
                            "baseline_mean": float(np.mean([b[k] for k in keys])),
                            "mean_difference": c.mean_difference,
                            "ci_low": c.ci_low,
                            "ci_high": c.ci_high,
                            "p_value": c.p_value,
                            "p_holm": math.nan,
                            "wins": c.wins,
                        }
                    )
    primary = [
        r for r in rows if r["metric"] == PRIMARY and r["baseline"] in BASELINES and r["model"] != reference
    ]
    for r, p in zip(primary, holm([r["p_value"] for r in primary]), strict=True):
        r["p_holm"] = p
    return rows


# ============================================================================================ entry points
def _check_doses(doses: Sequence[float]) -> list[float]:
    """The requested doses as fractions in (0, 1], in the given order; at least one."""
    checked = [check_dose(d, positive=True) for d in doses]
    if not checked:
        raise VCEInputError("no doses were given", expected="one or more fractions in (0, 1]")
    return checked


def evaluate(
    models: Sequence[str | PathLike],
    data: Sequence[str | PathLike],
    doses: Sequence[float],
    out: str | PathLike,
    *,
    noise_seeds: Sequence[int] = (0, 1, 2),
    lesion_slices: int = 3,
    extra_slices: int = 4,
    physics_t1_scales: Sequence[float] = (),
    heads_off: bool = False,
    device: str = "auto",
    command: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``models`` (checkpoint folders) and both baselines on the cases in ``data``; write ``out``.

    ``physics_t1_scales`` add physics baselines whose assumed native T1 is scaled (sensitivity rows).
    ``heads_off`` adds, after the models, an ablation row of each: the same generator with its heads'
    outputs zeroed (:func:`heads_off_synthesizer`), so that the report shows how much of a model's lesion
    enhancement its base (with its learned T1 map) gives and how much its heads add.

    Returns ``{"results", "lesions", "table", "summary", "comparisons", "methods", "models", "cases",
    "info"}``. Raises :class:`VCEInputError` for bad doses or seeds, missing folders or models, or when no
    case acquired any of the doses.
    """
    from vce_core.data import find_case_folders
    from vce_core.evaluate.report import write_report

    doses = _check_doses(doses)
    seeds = _check_seeds(noise_seeds)
    models, synths, names = _load_methods(models, heads_off, device)
    baselines = [*BASELINES, *(physics_variant(_check_scale(t)) for t in physics_t1_scales)]
    folders = find_case_folders(data)
    t0 = time.perf_counter()
    results, lesions, spectra, cases, no_slices = _evaluate_cases(
        folders,
        synths,
        names,
        doses,
        seeds,
        physics_t1_scales,
        lesion_slices=lesion_slices,
        extra_slices=extra_slices,
        show_progress=show_progress,
    )
    if no_slices and len(no_slices) == len(folders):
        raise VCEInputError(
            f"none of the {len(no_slices)} cases has a slice to evaluate (no enhancing lesion, and "
            f"--extra-slices {extra_slices})",
            expected="cases with enhancing lesions, or --extra-slices > 0 for further brain slices",
        )
    if not results:
        raise VCEInputError(
            f"no case acquired any of the doses {doses}", expected="held-out cases with these low doses"
        )
    table = per_case(results)
    info = {
        "command": command or "",
        "data": [str(d) for d in data],
        "doses": doses,
        "noise_seeds": seeds,
        "lesion_slices": lesion_slices,
        "extra_slices": extra_slices,
        "wall_time_s": time.perf_counter() - t0,
        "models": [_model_info(m, s, n) for m, s, n in zip(models, synths, names, strict=True)],
        "cases": cases,
        "cases_without_slices": no_slices,
    }
    result = {
        "results": results,
        "lesions": lesions,
        "table": table,
        "summary": summarize(table),
        "comparisons": comparisons(table, names, doses, baselines),
        "methods": [REFERENCE, *baselines, *names],
        "models": names,
        "cases": [c["case_id"] for c in cases],
        "info": info,
    }
    write_report(Path(out), result, spectra)
    return result


def _load_methods(
    models: Sequence[str | PathLike], heads_off: bool, device: str
) -> tuple[list[str | PathLike], list[Any], list[str]]:
    """The models' synthesizers and report names; with ``heads_off`` each model's ablation after them (the
    model list repeated so that it pairs with the synthesizers)."""
    from vce_core.synthesis import Synthesizer

    synths = [Synthesizer.from_checkpoint(m, device=device) for m in models]
    names = method_names(synths, reserved=(REFERENCE, *BASELINES))
    if not heads_off:
        return list(models), synths, names
    ablations = [heads_off_synthesizer(m, device=device) for m in models]
    return [*models, *models], synths + ablations, names + [f"{n}{HEADS_OFF}" for n in names]


def _evaluate_cases(
    folders: Sequence[Path],
    synths: Sequence[Any],
    names: Sequence[str],
    doses: list[float],
    seeds: list[int],
    physics_t1_scales: Sequence[float],
    *,
    lesion_slices: int,
    extra_slices: int,
    show_progress: bool,
) -> tuple[
    list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, float, Any]], list[dict[str, Any]], list[str]
]:
    """Every case folder through :func:`_evaluate_case`: metric rows, lesion rows, spectra, the evaluated
    cases' info and the cases with nothing to evaluate (no enhancing lesion and ``extra_slices`` 0)."""
    from tqdm import tqdm

    from vce_core.evaluate.heldout import load_eval_case

    results: list[dict[str, Any]] = []
    lesions: list[dict[str, Any]] = []
    spectra: list[tuple[str, float, Any]] = []
    cases: list[dict[str, Any]] = []
    no_slices: list[str] = []
    for folder in tqdm(folders, desc="cases", disable=not show_progress):
        ec = load_eval_case(folder, lesion_slices=lesion_slices, extra_slices=extra_slices)
        if not len(ec.slices):
            no_slices.append(ec.case_id)
            continue
        rows, les, spec = _evaluate_case(ec, synths, names, doses, seeds, physics_t1_scales)
        results += rows
        lesions += les
        spectra += spec
        if rows:
            cases.append(_case_info(ec))
    return results, lesions, spectra, cases, no_slices


def heads_off_synthesizer(folder: str | PathLike, device: str = "auto") -> Any:
    """The generator of checkpoint ``folder`` with its heads' outputs zeroed: what its base alone gives
    (``x_NA`` + the physics or linear residual, with the learned T1 map when it has one).

    Raises :class:`VCEInputError` for a model without a base (``base: native``, or not a seed-000 generator),
    whose heads are its whole output.
    """
    from vce_core.synthesis import Synthesizer

    synth = Synthesizer.from_checkpoint(folder, device=device)
    if getattr(synth.model, "base", "native") == "native" or not hasattr(synth.model, "texture_scale"):
        raise VCEInputError(
            f"{synth.display_name} has no base to keep with its heads off",
            path=folder,
            expected='a low-dose generator trained with generator_kwargs.base "physics" or "linear"',
        )
    synth.model.texture_scale = 0.0
    return synth


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 10:
        raise VCEInputError(f"T1 scale {scale!r}", expected="a factor in (0, 10) on the assumed native T1")
    return float(scale)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise VCEInputError(f"noise seed {s!r}", expected="non-negative integers")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise VCEInputError(f"noise seeds {list(seeds)}", expected="one or more distinct seeds")
    return out


def _case_info(ec: Any) -> dict[str, Any]:
    return {
        "case_id": ec.case_id,
        "field_strength": ec.field_strength,
        "agent": ec.agent,
        "sequence": (ec.sequence or {}).get("name", ""),
        "phantom": ec.has_truth,
        "slices": [int(k) for k in ec.slices],
        "lesions": [{"index": r.index, "type": r.type, "voxels": r.voxels} for r in ec.regions],
    }


def _model_info(folder: Any, synth: Any, name: str) -> dict[str, Any]:
    """What the report says about a model: where it is, how it was trained, on what."""
    card = synth.card
    train = (card.data or {}).get("train") or {}
    return {
        "folder": str(folder),
        "name": card.name,
        "display_name": name,
        "runs": _run_info(card.training or {}, critic=bool(card.critic)),
        "wall_time_s": (card.training or {}).get("wall_time_s"),
        "base": card.config.get("base", "native"),
        "content_loss": card.content_loss,
        "content_space": card.content_space,
        "train_cases": train.get("count"),
        "train_field_strengths": train.get("field_strengths"),
        "train_agents": train.get("agents") or _agents_of(train.get("folders") or []),
    }


def _run_info(training: dict[str, Any], critic: bool) -> list[dict[str, Any]]:
    """The runs behind a card's ``training`` record (:func:`vce_core.checkpoint.training_lineage`, the
    first first), each: its ``name`` (None for the card's own), iterations, whether its config had a
    critic (for the card's own run without a config: ``critic``, the card's), n_critic, the warm-up
    without the critic, the parameters it trained (``train_only``) and the loss terms with a weight. A
    refit of one head then reads as such, not as a GAN of its own iterations."""
    runs = training_lineage(training)
    return [
        _one_run(name, record, critic if i == len(runs) - 1 else False)
        for i, (name, record) in enumerate(runs)
    ]


def _one_run(name: str | None, training: dict[str, Any], critic: bool) -> dict[str, Any]:
    cfg = training.get("config") or {}
    own_critic = bool(cfg["critic"]) if "critic" in cfg else critic
    return {
        "name": name,
        "iterations": training.get("iterations"),
        "critic": own_critic,
        "n_critic": cfg.get("n_critic") if own_critic else None,
        "warmup_iterations": int(cfg.get("warmup_iterations") or 0) if own_critic else 0,
        "train_only": list(cfg.get("train_only") or []),
        "terms": (["content"] if float(cfg.get("lambda_content", 1.0) or 0) > 0 else [])
        + [k for k, w in (cfg.get("loss_weights") or {}).items() if float(w or 0) > 0],
    }


def _agents_of(folders: Sequence[str]) -> list[str] | None:
    """Agents of the training case folders a card lists (their ``case.json``); None if any is unreadable."""
    import json

    agents = set()
    for folder in folders:
        try:
            agents.add(str(json.loads((Path(folder) / "case.json").read_text())["agent"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return sorted(agents) or None


def update_card(
    folder: str | PathLike, method: str, result: dict[str, Any], command: str, report: str | PathLike
) -> Any:
    """Record a model's held-out figures (row ``method`` of ``result``) in its ``card.json`` (atomically).

    ``held_out`` keeps seed 000's four metrics against the acquisition (``psnr``, ``ssim``, ``mae_ce``,
    ``mae_sigma``; mean over cases and doses) and adds ``lesion_error`` (vs noise-free truth),
    ``lesion_error_vs`` (the two baselines' figure on the same cases), ``lesion_error_real_scan`` (the
    acquired scan's own figure there: its noise alone), ``sub_sigma_ratio``, per-dose values,
    the doses, noise seeds, number of cases, the report folder and the command.
    """
    from vce_core import checkpoint

    table = result["table"]
    doses = result["info"]["doses"]
    keys = (*METRICS, "psnr_truth", "ssim_truth", "mae_truth", PRIMARY, "sub_sigma_ratio", "img_sigma_ratio")

    def mean(m: str, metric: str, dose: Any) -> float | None:
        vals = list(table.get((m, dose, metric), {}).values())
        return float(np.mean(vals)) if vals else None

    held_out = {k: mean(method, k, ALL_DOSES) for k in keys}
    held_out |= {
        "lesion_error_vs": {b: mean(b, PRIMARY, ALL_DOSES) for b in BASELINES},
        "lesion_error_real_scan": mean(REFERENCE, PRIMARY, ALL_DOSES),
        "by_dose": {f"{d:g}": {k: mean(method, k, d) for k in keys} for d in doses},
        "doses": doses,
        "noise_seeds": result["info"]["noise_seeds"],
        "cases": len(result["cases"]),
        "report": str(report),
        "command": command,
    }
    return checkpoint.update_card(folder, held_out=held_out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vce_core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="checkpoint folders")
    parser.add_argument(
        "--data", nargs="+", required=True, help="held-out case folders or roots holding them"
    )
    parser.add_argument("--doses", nargs="+", type=float, default=[0.1, 0.2, 0.33])
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--noise-seeds", nargs="+", type=int, default=[0, 1, 2], help="repeat scans per case")
    parser.add_argument("--lesion-slices", type=int, default=3, help="evaluated slices per lesion (at most)")
    parser.add_argument("--extra-slices", type=int, default=4, help="further brain slices per case")
    parser.add_argument(
        "--physics-t1-scales",
        nargs="*",
        type=float,
        default=[],
        help="sensitivity rows: physics baselines with the assumed native T1 times these factors",
    )
    parser.add_argument(
        "--heads-off",
        action="store_true",
        help="ablation rows: each model with its heads zeroed (its base and learned T1 map alone)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--update-cards", action="store_true", help="write each model's held-out figures into its card"
    )
    args = parser.parse_args(argv)
    command = command_line("vce_core.evaluate", argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    result = run_cli(evaluate, args, command=command)
    if result is None:
        return 2
    if args.update_cards:
        for folder, method in zip(args.models, result["models"][: len(args.models)], strict=True):
            update_card(folder, method, result, command, args.out)
    print((Path(args.out) / "report.md").read_text())
    print(f"{len(result['results'])} results for {len(result['cases'])} cases written to {args.out}")
    return 0
