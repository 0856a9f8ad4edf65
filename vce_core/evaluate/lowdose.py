"""Held-out evaluation of low-dose synthesis, laid out like seed 000's Table 1.

    python -m vce_core.evaluate --models assets/models/ld_cgan_2d_l1 assets/models/ld_cgan_2d_np \\
        --data data/phantom/test --doses 0.1 0.2 0.33 --out reports/<name> [--seed 0] [--device auto]

For every test case and every requested dose that the case *acquired* (its real low dose is the reference),
the methods are the linear baseline ``x_NA + d · (x_SD − x_NA)`` and each model (labelled with the card's
``display_name``). Metrics (seed 000, section 3), on images normalised with the case's native
percentiles (0.5 %, 99.5 % inside the brain → 0, 1), identical for every method:

* PSNR and SSIM (3-D) inside the brain mask, data range = the reference's range in the brain;
* MAE_CE: mean absolute error on contrast-enhanced voxels, ``ce_mask(native, standard_dose, 0.1)`` of the
  real native/standard dose within the brain;
* MAE_σ: absolute difference of the noise standard deviations (:func:`vce_core.metrics.noise_sigma`) on
  the non-enhancing brain voxels ``brain ∖ CE``.

Outputs in ``--out``: ``results.csv`` (case_id, dose, method, metric, value), ``summary.csv`` (method, dose,
metric, mean, sd, n, p_value), ``report.md`` (one table per dose, mean ± SD over cases, Wilcoxon
signed-rank p-values between the first two models — or model vs. linear baseline when only one model is
given — via :func:`vce_core.metrics.paired_test`), and ``report.html`` (plotly box plots per metric).
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core import checkpoint
from vce_core.data import apply_normalization, find_case_folders, fit_normalization
from vce_core.domain import check_dose, match_dose
from vce_core.errors import VCEInputError

__all__ = ["METRICS", "evaluate", "main", "update_card"]

METRICS = ("psnr", "ssim", "mae_ce", "mae_sigma")
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "mae_ce": "MAE_CE", "mae_sigma": "MAE_σ"}
BASELINE = "linear baseline"
RESULT_FIELDS = ["case_id", "dose", "method", "metric", "value"]
SUMMARY_FIELDS = ["method", "dose", "metric", "mean", "sd", "n", "p_value", "compared_with"]


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


def _method_names(synths: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for s in synths:
        name = s.display_name
        if name in names or name == BASELINE:
            name = f"{name} ({s.name})"
        names.append(name)
    return names


def evaluate(
    models: Sequence[str | PathLike],
    data: Sequence[str | PathLike],
    doses: Sequence[float],
    out: str | PathLike,
    *,
    seed: int = 0,
    device: str = "auto",
    command: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``models`` (checkpoint folders) on the case folders in ``data``; write the report to ``out``.

    ``doses`` are fractions of the standard dose in (0, 1], evaluated in the given order; a case counts for
    a dose only if it acquired it (:func:`vce_core.domain.match_dose`). Returns ``{"results": rows,
    "summary": rows, "methods": [...], "cases": [...], "skipped": [...]}``. Raises :class:`VCEInputError` for
    bad doses, missing folders/models, or when no case has any of the doses.
    """
    from tqdm import tqdm

    from vce_core.synthesis import Synthesizer

    doses = _check_doses(doses)
    synths = [Synthesizer.from_checkpoint(m, device=device) for m in models]
    methods = [BASELINE, *_method_names(synths)]
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    case_ids: list[str] = []
    t0 = time.perf_counter()
    for folder in tqdm(find_case_folders(data), desc="cases", disable=not show_progress):
        case_id, rows, missing = _evaluate_case(folder, synths, methods, doses, seed)
        results += rows
        skipped += missing
        if rows:
            case_ids.append(case_id)
    if not results:
        raise VCEInputError(
            f"no case acquired any of the doses {doses}",
            expected="test cases whose case.json lists these low doses",
        )
    summary = summarize(results, methods, doses)
    info = {
        "command": command or "",
        "models": [
            {
                "folder": str(m),
                "name": s.name,
                "display_name": n,
                "iterations": s.card.training.get("iterations"),
            }
            for m, s, n in zip(models, synths, methods[1:], strict=True)
        ],
        "data": [str(d) for d in data],
        "cases": case_ids,
        "doses": doses,
        "seed": seed,
        "skipped": skipped,
        "wall_time_s": time.perf_counter() - t0,
    }
    _write_report(Path(out), results, summary, methods, doses, info)
    return {"results": results, "summary": summary, "methods": methods, "cases": case_ids, "skipped": skipped}


def _check_doses(doses: Sequence[float]) -> list[float]:
    """The requested doses as fractions in (0, 1], in the given order; at least one."""
    checked = [check_dose(d, positive=True) for d in doses]
    if not checked:
        raise VCEInputError("no doses were given", expected="one or more fractions in (0, 1]")
    return checked


def _evaluate_case(
    folder: Path, synths: Sequence[Any], methods: Sequence[str], doses: Sequence[float], seed: int
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Metric rows of every method at every requested dose that ``folder``'s case acquired.

    Returns ``(case_id, rows, skipped)``; ``skipped`` names the requested doses the case did not acquire.
    Every method's output and the real low dose are normalised with the native image's percentiles.
    """
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask, ce_mask
    from vce_core.synthesis import linear_baseline

    case = load_case(folder)
    case_id = str(case.meta.get("case_id", folder.name))
    native, sd = case.native.data.astype(np.float32), case.standard_dose.data.astype(np.float32)
    brain = np.asarray(brain_mask(native), dtype=bool)
    params = fit_normalization(native, brain, "percentile")
    ce = np.asarray(ce_mask(native, sd, 0.1, mask=brain), dtype=bool)
    prepared = [s.prepare(native, sd) for s in synths]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for dose in doses:
        acquired = match_dose(case.low_doses, dose)
        if acquired is None:
            skipped.append(f"{case_id}: dose {dose:g} not acquired")
            continue
        ref = apply_normalization(case.low_doses[acquired].data, params)
        outputs = [linear_baseline(native, sd, dose)]
        outputs += [
            s.synthesize_prepared(p, dose, case.field_strength, seed=seed)
            for s, p in zip(synths, prepared, strict=True)
        ]
        for method, x in zip(methods, outputs, strict=True):
            for metric, value in case_metrics(apply_normalization(x, params), ref, brain, ce).items():
                rows.append(
                    {"case_id": case_id, "dose": dose, "method": method, "metric": metric, "value": value}
                )
    return case_id, rows, skipped


def _write_report(
    out: Path,
    results: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    methods: Sequence[str],
    doses: Sequence[float],
    info: dict[str, Any],
) -> None:
    """``results.csv``, ``summary.csv``, ``report.md`` and ``report.html`` in ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", results, RESULT_FIELDS)
    _write_csv(out / "summary.csv", summary, SUMMARY_FIELDS)
    (out / "report.md").write_text(markdown_report(summary, methods, doses, info))
    write_html(out / "report.html", results, methods, doses)


def summarize(
    results: list[dict[str, Any]], methods: Sequence[str], doses: Sequence[float]
) -> list[dict[str, Any]]:
    """Mean ± SD over cases per (method, dose, metric), with the paired Wilcoxon p-value on the compared row.

    The p-value compares ``methods[2]`` with ``methods[1]`` (the first two models) per case; with a single
    model it compares ``methods[1]`` with the linear baseline. Empty when the test is undefined.
    """
    from vce_core.metrics import paired_test

    table: dict[tuple[str, float, str], dict[str, float]] = {}
    for r in results:
        table.setdefault((r["method"], r["dose"], r["metric"]), {})[r["case_id"]] = r["value"]
    a, b = (
        (methods[1], methods[2])
        if len(methods) > 2
        else (methods[0], methods[1])
        if len(methods) > 1
        else (None, None)
    )
    rows = []
    for method in methods:
        for dose in doses:
            for metric in METRICS:
                values = table.get((method, dose, metric), {})
                finite = np.array([v for v in values.values() if math.isfinite(v)])
                row: dict[str, Any] = {
                    "method": method,
                    "dose": dose,
                    "metric": metric,
                    "mean": float(finite.mean()) if finite.size else float("nan"),
                    "sd": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                    "n": int(finite.size),
                    "p_value": "",
                    "compared_with": "",
                }
                if method == b and a is not None:
                    va, vb = table.get((a, dose, metric), {}), values
                    keys = [k for k in vb if k in va and math.isfinite(va[k]) and math.isfinite(vb[k])]
                    try:
                        row["p_value"] = paired_test([vb[k] for k in keys], [va[k] for k in keys])[1]
                    except VCEInputError:
                        row["p_value"] = ""
                    row["compared_with"] = a
                rows.append(row)
    return rows


def _fmt(mean: float, sd: float, metric: str) -> str:
    if not math.isfinite(mean):
        return "–"
    digits = 2 if metric == "psnr" else 4
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if math.isfinite(sd) else f"{mean:.{digits}f}"


def markdown_report(
    summary: list[dict[str, Any]], methods: Sequence[str], doses: Sequence[float], info: dict[str, Any]
) -> str:
    """Report text: provenance, then one Table-1-style table per dose (rows methods, columns metrics)."""
    index = {(r["method"], r["dose"], r["metric"]): r for r in summary}
    lines = ["# Low-dose synthesis evaluation", ""]
    if info.get("command"):
        lines += [f"Command: `{info['command']}`", ""]
    lines += [
        f"Cases: {len(info['cases'])} ({', '.join(info['cases'])}); "
        f"doses: {', '.join(f'{d:g}' for d in doses)}; "
        f"noise seed {info['seed']}; wall time {info['wall_time_s']:.0f} s.",
        "",
    ]
    lines += ["Models:", ""]
    for m in info["models"]:
        lines.append(
            f"- **{m['display_name']}**: `{m['folder']}` "
            f"(card name {m['name']}, {m['iterations']} iterations)"
        )
    lines += [
        "",
        "Images normalised per case with the native image's 0.5/99.5 percentiles inside the brain "
        "(→ 0/1) for every method; metrics inside the brain mask; CE mask = standard dose − native ≥ 10 % "
        "of the native 0.95-quantile (brain); MAE_σ on brain ∖ CE. Mean ± SD over cases.",
        "",
    ]
    compared = next((r for r in summary if r["compared_with"]), None)
    for dose in doses:
        lines += [f"## Dose {dose:g} ({dose * 100:g} %)", ""]
        lines.append("| Method | " + " | ".join(LABELS[m] for m in METRICS) + " | n |")
        lines.append("|---|" + "---|" * (len(METRICS) + 1))
        for method in methods:
            cells = [
                _fmt(index[(method, dose, m)]["mean"], index[(method, dose, m)]["sd"], m) for m in METRICS
            ]
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {index[(method, dose, METRICS[0])]['n']} |"
            )
        if compared is not None:
            b, a = compared["method"], compared["compared_with"]
            ps = []
            for m in METRICS:
                p = index[(b, dose, m)]["p_value"]
                ps.append("–" if p == "" else (f"{p:.3g}" + ("*" if p < 0.05 else "")))
            lines.append(f"| p ({b} vs {a}) | " + " | ".join(ps) + " | |")
        lines.append("")
    if compared is not None:
        lines += [
            "p: two-sided Wilcoxon signed-rank test over cases (vce_core.metrics.paired_test); * p < 0.05.",
            "",
        ]
    if info["skipped"]:
        lines += ["Skipped (dose not acquired):", "", *[f"- {s}" for s in info["skipped"]], ""]
    return "\n".join(lines)


def write_html(
    path: Path, results: list[dict[str, Any]], methods: Sequence[str], doses: Sequence[float]
) -> None:
    """Plotly box plots: one panel per metric, x = dose, one box per method (self-contained HTML)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[LABELS[m] for m in METRICS])
    for i, metric in enumerate(METRICS):
        for j, method in enumerate(methods):
            rows = [
                r
                for r in results
                if r["metric"] == metric and r["method"] == method and math.isfinite(r["value"])
            ]
            fig.add_trace(
                go.Box(
                    x=[f"{r['dose']:g}" for r in rows],
                    y=[r["value"] for r in rows],
                    name=method,
                    legendgroup=method,
                    showlegend=i == 0,
                    marker_color=_COLORS[j % len(_COLORS)],
                    boxpoints="all",
                ),
                row=i // 2 + 1,
                col=i % 2 + 1,
            )
    fig.update_layout(boxmode="group", title="Low-dose synthesis: metrics per dose (over cases)", height=800)
    fig.update_xaxes(title_text="dose (fraction of standard dose)")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


_COLORS = ("#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def update_card(
    folder: str | PathLike, method: str, result: dict[str, Any], command: str, report: str | PathLike
) -> checkpoint.ModelCard:
    """Record a model's held-out figures (``method``: its row in ``result``) in its ``card.json``.

    ``held_out`` holds each metric's mean over every evaluated case and dose, the per-dose means, the
    doses, the number of cases, the report folder and the command that produced the figures. The card is
    rewritten atomically by :func:`vce_core.checkpoint.update_card`; returns the updated card.
    """
    rows = [r for r in result["results"] if r["method"] == method and math.isfinite(r["value"])]
    doses = sorted({r["dose"] for r in rows})
    held_out = {
        **{m: float(np.mean([r["value"] for r in rows if r["metric"] == m])) for m in METRICS},
        "by_dose": {
            f"{d:g}": {
                m: float(np.mean([r["value"] for r in rows if r["metric"] == m and r["dose"] == d]))
                for m in METRICS
            }
            for d in doses
        },
        "doses": doses,
        "cases": len(result["cases"]),
        "report": str(report),
        "command": command,
    }
    return checkpoint.update_card(folder, held_out=held_out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vce_core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", required=True, help="checkpoint folders (first two are compared)"
    )
    parser.add_argument("--data", nargs="+", required=True, help="test case folders or roots holding them")
    parser.add_argument("--doses", nargs="+", type=float, default=[0.1, 0.2, 0.33])
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the generators")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--update-cards",
        action="store_true",
        help="write each model's held-out figures (mean over cases and doses) into its card.json",
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "vce_core.evaluate", *(sys.argv[1:] if argv is None else argv)])
    try:
        result = evaluate(
            args.models, args.data, args.doses, args.out, seed=args.seed, device=args.device, command=command
        )
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.update_cards:
        for folder, method in zip(args.models, result["methods"][1:], strict=True):
            update_card(folder, method, result, command, args.out)
    print((Path(args.out) / "report.md").read_text())
    print(f"{len(result['results'])} results for {len(result['cases'])} cases written to {args.out}")
    return 0
