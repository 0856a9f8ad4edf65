"""Files of the low-dose report (:mod:`vce_core.evaluate.lowdose`): CSVs, ``report.md``, ``report.html``.

Every table in ``report.md`` is computed from the rows written next to it (``results.csv``, ``lesions.csv``),
so anyone can recompute a figure; the command that produced the report heads it.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.evaluate.common import format_p, write_csv

__all__ = ["markdown_report", "write_html", "write_report"]

_FIELDS = {
    "results.csv": ["case_id", "agent", "field_strength", "noise_seed", "dose", "method", "metric", "value"],
    "lesions.csv": [
        "case_id",
        "agent",
        "field_strength",
        "noise_seed",
        "dose",
        "method",
        "lesion",
        "type",
        "voxels",
        "small_or_weak",
        "e_true",
        "e_method",
        "e_acquired",
        "ratio",
        "abs_error",
        "rel_error",
        "cnr",
        "cnr_acquired",
    ],
    "summary.csv": ["method", "dose", "metric", "mean", "sd", "ci_low", "ci_high", "n"],
    "comparisons.csv": [
        "model",
        "baseline",
        "dose",
        "metric",
        "n",
        "model_mean",
        "baseline_mean",
        "mean_difference",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "wins",
    ],
    "nps.csv": ["method", "dose", "frequency", "power", "scans"],
}


def mean_spectra(spectra: list[tuple[str, float, Any]]) -> list[dict[str, Any]]:
    """Average noise power spectrum per (method, dose) over scans (rows of ``nps.csv``)."""
    groups: dict[tuple[str, float], list[Any]] = {}
    for method, dose, spec in spectra:
        if spec is not None:
            groups.setdefault((method, dose), []).append(spec)
    rows = []
    for (method, dose), specs in groups.items():
        n = min(len(s.power) for s in specs)
        power = np.mean([s.power[:n] for s in specs], axis=0)
        rows += [
            {"method": method, "dose": dose, "frequency": float(f), "power": float(p), "scans": len(specs)}
            for f, p in zip(specs[0].frequency[:n], power, strict=True)
        ]
    return rows


def write_report(out: Path, result: dict[str, Any], spectra: list[tuple[str, float, Any]]) -> None:
    """Write every file of the report into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    nps = mean_spectra(spectra)
    for name, rows in (
        ("results.csv", result["results"]),
        ("lesions.csv", result["lesions"]),
        ("summary.csv", result["summary"]),
        ("comparisons.csv", result["comparisons"]),
        ("nps.csv", nps),
    ):
        write_csv(out / name, rows, _FIELDS[name])
    (out / "report.md").write_text(markdown_report(result))
    write_html(out / "report.html", result, nps)


# ============================================================================================ formatting
def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _dose_label(d: Any) -> str:
    return "all doses" if d == "all" else f"{d * 100:g} %"


def _cell(summary: dict[tuple, dict], method: str, dose: Any, metric: str, digits: int = 4) -> str:
    r = summary.get((method, dose, metric))
    if r is None:
        return "–"
    return f"{_num(r['mean'], digits)} [{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}]"


def _index(result: dict[str, Any]) -> dict[tuple, dict]:
    return {(r["method"], r["dose"], r["metric"]): r for r in result["summary"]}


# ============================================================================================ sections
def _left_out(case_ids: list[str]) -> str:
    """The header's note on cases with no evaluated slice (no enhancing lesion and no further slices)."""
    if not case_ids:
        return ""
    return (
        f"**Left out**: {len(case_ids)} case(s) with nothing to evaluate (no enhancing lesion, and no "
        f"further brain slices asked for): {', '.join(case_ids)}. "
    )


def _header(result: dict[str, Any]) -> list[str]:
    info = result["info"]
    cases = info["cases"]
    combos = Counter((c["field_strength"], c["agent"]) for c in cases)
    kinds = Counter(les["type"] for c in cases for les in c["lesions"])
    lines = ["# Low-dose synthesis: held-out evaluation", ""]
    if info["command"]:
        lines += [f"Command: `{info['command']}`", ""]
    strata = ", ".join(f"{b:g} T {a}: {n}" for (b, a), n in sorted(combos.items()))
    lines += [
        f"**Cases**: {len(cases)} ({strata}); "
        f"{sum(c['phantom'] for c in cases)} phantom cases with noise-free truth. "
        f"**Enhancing lesions**: {sum(kinds.values())} "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))}). "
        f"**Doses**: {', '.join(f'{d:g}' for d in info['doses'])}. "
        f"**Noise seeds** (repeat scans per case; model noise seed = scan seed): "
        f"{', '.join(map(str, info['noise_seeds']))}. "
        f"**Slices**: axial, up to {info['lesion_slices']} per lesion over its extent plus "
        f"{info['extra_slices']} further brain slices per case "
        f"(mean {np.mean([len(c['slices']) for c in cases]):.1f} per case). "
        + _left_out(info.get("cases_without_slices") or [])
        + f"Wall time {info['wall_time_s'] / 60:.1f} min.",
        "",
        "**Methods**: *acquired low dose* (the real scan at that dose, the reference for noise), "
        "*linear baseline* `x_NA + d (x_SD − x_NA)`, *physics baseline* (SPGR signal inverted from x_NA "
        "and x_SD with the case's TR and flip angle, native T1 assumed 1.40 s at 1.5 T / 1.85 s at 3 T, "
        "ΔR1 scaled by d, re-simulated; `vce_core.baselines`), and the models:",
        "",
    ]
    for m in info["models"]:
        fields = m["train_field_strengths"]
        scope = f"{m['train_cases']} training cases" + (
            f", {' / '.join(f'{b:g} T' for b in fields)}" if fields else ""
        )
        if m.get("train_agents"):
            scope += f", agents {', '.join(m['train_agents'])}"
        lines.append(
            f"- **{m['display_name']}** (`{m['folder']}`): {_training_of(m['runs'])}, base {m['base']}, "
            f"{m['content_loss']} loss on the {m['content_space']}; {scope}."
        )
    return [*lines, ""]


def _training_of(runs: list[dict[str, Any]]) -> str:
    """The last of ``runs`` (:func:`vce_core.evaluate.lowdose._run_info`, the first first): ``10000
    iterations, the first 8000 without the critic, then critic (n_critic 5)``; a fine-tuned run names what
    it trained, on which terms, and what it started from, e.g. ``5000 iterations training only t1_head, no
    critic, terms t1, from ld_cgan_… (10000 iterations, …)``."""
    *before, run = runs
    text = f"{run['iterations']} iterations"
    if run.get("train_only"):
        text += f" training only {', '.join(run['train_only'])}"
    if not run["critic"]:
        terms = run.get("terms") or ["content"]
        only_content = terms == ["content"]
        text += ", no critic (content only)" if only_content else f", no critic, terms {', '.join(terms)}"
    else:
        warmup = run.get("warmup_iterations")
        text += f", the first {warmup} without the critic, then" if warmup else ","
        text += f" critic (n_critic {run['n_critic']})"
    if before:
        text += f", from {before[-1]['name']} ({_training_of(before)})"
    return text


def _primary(result: dict[str, Any]) -> list[str]:
    from vce_core.evaluate.lowdose import REFERENCE as FLOOR

    idx = _index(result)
    methods = [m for m in result["methods"] if m != FLOOR]
    doses = [*result["info"]["doses"], "all"]
    lines = [
        "## Lesion enhancement against the noise-free truth (primary endpoint)",
        "",
        "Per lesion, E = mean of the subtraction x − x_NA over its enhancing voxels; E_true the same on the "
        "noise-free T_d − T_0. Per case: mean over its enhancing lesions of |E − E_true| (normalised units: "
        "fraction of the native 0.5–99.5 % range), averaged over noise seeds; mean [bootstrap 95 % CI] "
        "over cases; ratio = mean E / E_true. The first row is the noise floor: the real scan at that dose "
        "scored the same way (its error is its own noise over the lesion's voxels); a method that keeps the "
        "real noise carries about that error on top of its bias, a noise-free baseline does not.",
        "",
        "| method | " + " | ".join(f"|E − E_true| {_dose_label(d)}" for d in doses) + " | E / E_true (all) |",
        "|---|" + "---|" * (len(doses) + 1),
    ]
    rows = [(f"{FLOOR} (noise floor)", FLOOR)] if FLOOR in result["methods"] else []
    for label, m in [*rows, *((m, m) for m in methods)]:
        cells = [_cell(idx, m, d, "lesion_error") for d in doses]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_cell(idx, m, 'all', 'lesion_ratio', 3)} |")
    lines += ["", *_comparison_table(result, "lesion_error", doses, holm=True), ""]
    if any(r["model"] == FLOOR for r in result["comparisons"]):
        lines += [
            f"The rows *{FLOOR} (the real scan, reference)* test the acquired scan itself against the "
            "baselines in the same way: what a model whose output were the real scan would score. A model "
            "that keeps the real noise carries that noise into every lesion, so where the real scan does "
            "not beat a noise-free baseline (the physics baseline on lesions whose native T1 it assumes "
            "about right) such a model is not expected to either; it is not part of the Holm family.",
            "",
        ]
    return lines


def _comparison_table(result: dict[str, Any], metric: str, doses: list[Any], holm: bool = False) -> list[str]:
    rows = [r for r in result["comparisons"] if r["metric"] == metric]
    if not rows:
        return []
    head = "| model vs baseline | dose | n | model | baseline | Δ (model − baseline) [95 % CI] | p |"
    lines = [head + (" p (Holm) |" if holm else "") + " model better in |"]
    lines.append("|---|---|---|---|---|---|---|" + ("---|" if holm else "") + "---|")
    from vce_core.evaluate.lowdose import REFERENCE

    for r in rows:
        if r["dose"] not in doses:
            continue
        model = f"{r['model']} (the real scan, reference)" if r["model"] == REFERENCE else r["model"]
        cells = [
            f"{model} vs {r['baseline']}",
            _dose_label(r["dose"]),
            str(r["n"]),
            _num(r["model_mean"]),
            _num(r["baseline_mean"]),
            f"{_num(r['mean_difference'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
            format_p(r["p_value"], star=True),
        ]
        if holm:
            cells.append(format_p(r["p_holm"], star=True))
        cells.append(f"{r['wins']}/{r['n']}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _noise(result: dict[str, Any]) -> list[str]:
    idx = _index(result)
    lines = [
        "## Noise realism of the subtraction image x − x_NA",
        "",
        "Ratios to the acquired subtraction x_LD − x_NA of the same scan (1 = the real noise), on brain "
        "voxels without true enhancement: σ̂ (pooled 2-D second-difference estimator), local SD (median of "
        "5×5 SDs), residual SD against the noise-free subtraction, noise power in three bands "
        "(low < 0.15, mid 0.15–0.35, high > 0.35 cycles/voxel), and σ̂ of the image itself. "
        "Mean [95 % CI] over cases. The absolute σ̂ of the acquired subtraction is given for scale.",
        "",
    ]
    metrics = [
        ("sub_sigma_ratio", "σ̂ sub"),
        ("sub_local_sd_ratio", "local SD"),
        ("sub_resid_sd_ratio", "residual SD"),
        ("nps_low_ratio", "NPS low"),
        ("nps_mid_ratio", "NPS mid"),
        ("nps_high_ratio", "NPS high"),
        ("img_sigma_ratio", "σ̂ image"),
    ]
    for dose in result["info"]["doses"]:
        ref = idx.get(("acquired low dose", dose, "sub_sigma"))
        lines += [
            f"**Dose {_dose_label(dose)}** (acquired subtraction σ̂ = {_num(ref['mean'] if ref else None)})",
            "",
            "| method | " + " | ".join(label for _, label in metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for m in result["methods"][1:]:
            lines.append(f"| {m} | " + " | ".join(_cell(idx, m, dose, k, 2) for k, _ in metrics) + " |")
        lines.append("")
    return lines


def _lesion_types(result: dict[str, Any]) -> list[str]:
    from vce_core.evaluate.enhancement import LESION_LABELS
    from vce_core.evaluate.stats import bootstrap_ci

    per: dict[tuple[str, str, float], dict[tuple, list[float]]] = {}
    for r in result["lesions"]:
        if isinstance(r["ratio"], float) and math.isfinite(r["ratio"]):
            key = (r["method"], r["type"], r["dose"])
            per.setdefault(key, {}).setdefault((r["case_id"], r["lesion"]), []).append(r["ratio"])
    doses = result["info"]["doses"]
    methods = [m for m in result["methods"]]
    lines = [
        "## Per lesion type: enhancement ratio E / E_true",
        "",
        "Mean over lesions (each averaged over noise seeds) [bootstrap 95 % CI over lesions; lesions of one "
        "case are not independent, so the paired tests below are over cases]. 1 = the true enhancement; "
        "the acquired low dose shows the noise-only spread.",
        "",
        "| type | method | " + " | ".join(_dose_label(d) for d in doses) + " |",
        "|---|---|" + "---|" * len(doses),
    ]
    for kind in LESION_LABELS.values():
        for m in methods:
            cells = []
            for d in doses:
                vals = [float(np.mean(v)) for v in per.get((m, kind, d), {}).values()]
                if not vals:
                    cells.append("–")
                    continue
                lo, hi = bootstrap_ci(vals)
                cells.append(f"{np.mean(vals):.3f} [{lo:.3f}, {hi:.3f}] (n={len(vals)})")
            if any(c != "–" for c in cells):
                lines.append(f"| {kind} | {m} | " + " | ".join(cells) + " |")
    lines += ["", *_bias_and_error(result), ""]
    lines += ["Paired tests of |E − E_true| per lesion type (all doses; cases holding that type):", ""]
    for kind in LESION_LABELS.values():
        table = _comparison_table(result, f"lesion_error:{kind}", ["all"])
        if table:
            lines += [f"*{kind}*", "", *table, ""]
    return lines


def _bias_and_error(result: dict[str, Any]) -> list[str]:
    """Per lesion type and method: the mean signed error E − E_true over its lesions (the bias) and the
    mean |E − E_true| over the cases holding the type (what the paired tests compare). The acquired scan's
    bias is about 0 and its error is noise alone: a method whose noise is realistic carries about that much
    on top of its bias, so where a noise-free baseline's error is below that row such a method beats it
    only where its own noise happens to average out over the lesion."""
    from vce_core.evaluate.enhancement import LESION_LABELS

    idx = _index(result)
    signed: dict[tuple[str, str], list[float]] = {}
    for r in result["lesions"]:
        if math.isfinite(r["e_method"]) and math.isfinite(r["e_true"]):
            signed.setdefault((r["method"], r["type"]), []).append(r["e_method"] - r["e_true"])
    lines = [
        "Bias and error per lesion type (all doses): mean E − E_true over lesions and scans (signed: the "
        "bias), and mean |E − E_true| [bootstrap 95 % CI] over the cases holding the type. The acquired "
        "scan's error is its noise alone (its bias ≈ 0): a method that keeps the real noise carries about "
        "that much on top of its bias.",
        "",
        "| type | method | E − E_true (bias) | \\|E − E_true\\| |",
        "|---|---|---|---|",
    ]
    for kind in LESION_LABELS.values():
        for m in result["methods"]:
            bias = signed.get((m, kind))
            if bias:
                error = _cell(idx, m, "all", f"lesion_error:{kind}")
                lines.append(f"| {kind} | {m} | {np.mean(bias):+.4f} | {error} |")
    return lines


def _cnr(result: dict[str, Any]) -> list[str]:
    idx = _index(result)
    doses = result["info"]["doses"]
    lines = [
        "## Small and weak lesions: contrast-to-noise ratio of the subtraction",
        "",
        "Lesions that are weakly enhancing or have < 500 enhancing voxels. CNR = (mean over the lesion − "
        "mean over a ring 2–5 voxels around it) / SD of the ring, on x − x_NA. A method should give the "
        "CNR of the acquired low dose (too high: the synthetic image shows the lesion more clearly than a "
        "real scan at that dose would; too low: it hides it). Mean CNR and mean |CNR − CNR_acquired|.",
        "",
        "| method | "
        + " | ".join(f"CNR {_dose_label(d)}" for d in doses)
        + " | "
        + " | ".join(f"|ΔCNR| {_dose_label(d)}" for d in doses)
        + " |",
        "|---|" + "---|" * (2 * len(doses)),
    ]
    for m in result["methods"]:
        cnr = [_cell(idx, m, d, "cnr_small", 2) for d in doses]
        err = [_cell(idx, m, d, "cnr_small_error", 2) if m != "acquired low dose" else "0" for d in doses]
        lines.append(f"| {m} | " + " | ".join(cnr + err) + " |")
    lines += ["", *_comparison_table(result, "cnr_small_error", [*doses, "all"]), ""]
    return lines


def _images(result: dict[str, Any]) -> list[str]:
    idx = _index(result)
    cols = [
        ("psnr_truth", "PSNR vs truth", 2),
        ("ssim_truth", "SSIM vs truth", 4),
        ("mae_truth", "MAE vs truth", 4),
        ("mae_enh_truth", "MAE enh. vs truth", 4),
        ("psnr", "PSNR vs acq.", 2),
        ("ssim", "SSIM vs acq.", 4),
        ("mae_ce", "MAE_CE vs acq.", 4),
        ("mae_sigma", "MAE_σ vs acq.", 4),
    ]
    lines = [
        "## Image metrics against the noise-free truth and against the noisy acquisition",
        "",
        "Normalised units, inside the brain on the evaluated slices; SSIM 2-D per slice. 'enh.' = the truly "
        "enhancing voxels (labels 4–7, 10–12); MAE_CE uses seed 000's mask (x_SD − x_NA ≥ 10 % of the native "
        "0.95-quantile) of the scan; MAE_σ = |σ̂(x) − σ̂(x_LD)| on brain ∖ CE. Against the noisy acquisition "
        "every method pays the acquisition's own noise; against the truth a method that keeps realistic "
        "noise pays it once more, which is why these voxel-wise figures favour smooth outputs.",
        "",
    ]
    for dose in result["info"]["doses"]:
        lines += [f"**Dose {_dose_label(dose)}**", "", "| method | " + " | ".join(c[1] for c in cols) + " |"]
        lines.append("|---|" + "---|" * len(cols))
        for m in result["methods"]:
            lines.append(f"| {m} | " + " | ".join(_cell(idx, m, dose, k, dg) for k, _, dg in cols) + " |")
        lines.append("")
    return lines


def _subgroups(result: dict[str, Any]) -> list[str]:
    from vce_core.evaluate.lowdose import per_case, summarize

    cases = result["info"]["cases"]
    table = per_case(result["results"])
    groups = [
        (f"{b:g} T", {c["case_id"] for c in cases if c["field_strength"] == b})
        for b in sorted({c["field_strength"] for c in cases})
    ]
    groups += [
        (a, {c["case_id"] for c in cases if c["agent"] == a}) for a in sorted({c["agent"] for c in cases})
    ]
    lines = [
        "## Subgroups: field strength and agent (generalisation)",
        "",
        "|E − E_true| (all doses) and subtraction σ̂ ratio (all doses) per subgroup, mean [95 % CI] over its "
        "cases. † marks a model whose training data held no case of that subgroup (from its card).",
        "",
        "| subgroup | n | " + " | ".join(result["methods"][1:]) + " |",
        "|---|---|" + "---|" * (len(result["methods"]) - 1),
    ]
    info = {m["display_name"]: m for m in result["info"]["models"]}
    for label, ids in groups:
        idx = {(r["method"], r["dose"], r["metric"]): r for r in summarize(table, ids)}
        cells = []
        for m in result["methods"][1:]:
            mark = "†" if _held_out(info.get(m), label) else ""
            ratio = _cell(idx, m, "all", "sub_sigma_ratio", 2)
            cells.append(f"{_cell(idx, m, 'all', 'lesion_error')}{mark}; σ ratio {ratio}")
        lines.append(f"| {label} | {len(ids)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _per_case(result: dict[str, Any]) -> list[str]:
    """|E − E_true| of every case (all doses, noise seeds averaged): the unit of the paired tests, so a
    reader sees which cases a model wins and loses, against the scan's own error on the same lesions."""
    from vce_core.evaluate.lowdose import ALL_DOSES, PHYSICS, REFERENCE

    error = {m: result["table"].get((m, ALL_DOSES, "lesion_error"), {}) for m in result["methods"]}
    if PHYSICS not in error or not result["models"]:
        return []
    cases = sorted(
        (c for c in result["info"]["cases"] if c["case_id"] in error[PHYSICS]),
        key=lambda c: (c["field_strength"], c["case_id"]),
    )
    if not cases:
        return []
    shown = [REFERENCE, PHYSICS, *result["models"]]
    lines = [
        "## Per case: lesion enhancement error (all doses)",
        "",
        "|E − E_true| per case, mean over doses and noise seeds: the figures the paired tests compare. "
        "✓ marks a model better than the physics baseline on that case; the acquired scan's own error on the "
        "same lesions is its noise floor.",
        "",
        "| case | field | agent | enhancing lesions (voxels) | " + " | ".join(shown) + " |",
        "|---|---|---|---|" + "---|" * len(shown),
    ]
    for c in cases:
        cid = c["case_id"]
        lesions = ", ".join(f"{r['type']} ({r['voxels']})" for r in c["lesions"])
        cells = [_num(error[REFERENCE].get(cid, math.nan)), _num(error[PHYSICS][cid])]
        for m in result["models"]:
            value = error[m].get(cid, math.nan)
            cells.append(_num(value) + (" ✓" if value < error[PHYSICS][cid] else ""))
        lines.append(
            f"| {cid} | {c['field_strength']:g} T | {c['agent']} | {lesions} | " + " | ".join(cells) + " |"
        )
    return [*lines, ""]


def _held_out(model: dict[str, Any] | None, label: str) -> bool:
    if model is None:
        return False
    fields = model.get("train_field_strengths") or []
    agents = model.get("train_agents") or []
    if label.endswith(" T"):
        return bool(fields) and float(label[:-2]) not in [float(f) for f in fields]
    return bool(agents) and label not in agents


def markdown_report(result: dict[str, Any]) -> str:
    """The report text: header, primary endpoint with paired tests, noise realism, lesion types, CNR,
    image metrics, subgroups, per case."""
    parts = _header(result) + _primary(result) + _noise(result) + _lesion_types(result)
    parts += _cnr(result) + _images(result) + _subgroups(result) + _per_case(result)
    parts += [
        "p: two-sided Wilcoxon signed-rank test over cases (noise seeds averaged within a case); "
        "Holm: adjusted over models × baselines × doses for the primary endpoint; * p < 0.05. "
        "Δ: mean paired difference with its bootstrap 95 % CI (10,000 resamples of cases).",
        "",
    ]
    return "\n".join(parts)


# ============================================================================================ HTML
_COLORS = ("#2ca02c", "#7f7f7f", "#8c564b", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#e377c2")


def _series(trace: Any, method: str, rows: list[dict[str, Any]], x: str, y: str, **style: Any) -> Any:
    """A plotly ``trace`` (``go.Box``, ``go.Scatter``, …) of the fields ``x`` and ``y`` of ``rows``,
    grouped in the legend under ``method`` (whose legend entry the first panel shows)."""
    xs, ys = [r[x] for r in rows], [r[y] for r in rows]
    return trace(x=xs, y=ys, name=method, legendgroup=method, showlegend=False, **style)


def write_html(path: Path, result: dict[str, Any], nps: list[dict[str, Any]]) -> None:
    """Plotly charts (self-contained HTML): lesion error per dose, subtraction σ ratio, NPS, E/E_true."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    doses = result["info"]["doses"]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[
            "|E − E_true| per case (normalised units)",
            "subtraction σ̂ / acquired subtraction σ̂",
            f"noise power spectrum of the subtraction, dose {doses[0]:g}",
            "E / E_true per lesion",
        ],
    )
    table = result["table"]
    for j, m in enumerate(result["methods"]):
        color = _COLORS[j % len(_COLORS)]
        for panel, metric in ((1, "lesion_error"), (2, "sub_sigma_ratio")):
            xs, ys = [], []
            for d in doses:
                vals = list(table.get((m, d, metric), {}).values())
                xs += [f"{d:g}"] * len(vals)
                ys += vals
            if ys:
                fig.add_trace(
                    go.Box(x=xs, y=ys, name=m, legendgroup=m, showlegend=panel == 1, marker_color=color),
                    row=1,
                    col=panel,
                )
        spec = [r for r in nps if r["method"] == m and r["dose"] == doses[0]]
        if spec:
            fig.add_trace(
                _series(go.Scatter, m, spec, "frequency", "power", line={"color": color}), row=2, col=1
            )
        ratios = [r for r in result["lesions"] if r["method"] == m and math.isfinite(r["ratio"])]
        if ratios:
            fig.add_trace(_series(go.Box, m, ratios, "type", "ratio", marker_color=color), row=2, col=2)
    fig.update_layout(boxmode="group", height=900, title="Low-dose synthesis: held-out evaluation")
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_xaxes(title_text="dose", row=1, col=1)
    fig.update_xaxes(title_text="dose", row=1, col=2)
    fig.update_xaxes(title_text="cycles / voxel", row=2, col=1)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
