"""Held-out evaluation of virtual-contrast models (seeds 001–004): the synthesized vs the real standard dose.

    python -m vce_core.evaluate.virtual_contrast --models assets/models/hrfcn_2d assets/models/... \\
        --data data/phantom_s12/test --baseline-data data/phantom/train --out reports/<name> [--update-cards]

Methods: two trivial baselines — the **native** image itself, and the native image **rescaled by a global
factor** ``k = Σ x_NA·x_SD / Σ x_NA²`` (least squares over the brain voxels of ``--baseline-data``, the
training cases) — and each model (its card's ``display_name``), synthesized from the inputs its card lists.

Every image is mapped with the case's native percentile normalisation (0.5 / 99.5 % inside the brain → 0 / 1),
the same map for every method and for the references, then (per case):

* **seed 001, Table II layout**: MAE, PSNR and SSIM (3-D, scikit-image's definition) against the acquired
  standard dose inside the **brain** mask and inside the **lesion** mask (the phantom's tumour labels:
  enhancing rim, necrosis, metastasis, meningioma, weakly and non-enhancing lesions; edema excluded), plus
  the same inside the truly **enhancing** tissue (the phantom's ``ce_mask``: lesions, vessels, choroid
  plexus, dura). PSNR's data range is the reference's range in the brain; SSIM is averaged over the region.
* **against the noise-free standard dose** (``phantom_from_case(case).noise_free(1.0)``): the same three
  metrics in the brain, so a method is not rewarded for reproducing the acquisition's noise; the acquired
  standard dose is listed as a reference row (its error is the noise).
* **seed 002, Table 2**: the texture metrics TMSVPMI, TAVPMI, TFPMI, VFPMI of every output (and of the
  acquired and the noise-free standard dose) on the brain (zero outside it, cropped to its bounding box).

Statistics: mean ± SD over cases; each model against each baseline per metric with the mean paired
difference, its 95 % bootstrap confidence interval over cases and the two-sided Wilcoxon signed-rank p
(:func:`vce_core.evaluate.stats.compare`). Cases without a lesion do not count for the lesion metrics.

Outputs in ``--out``: ``results.csv`` (case_id, method, metric, value), ``summary.csv``, ``comparisons.csv``,
``report.md`` and ``report.html`` (box plots). ``--update-cards`` writes each model's figures into its card's
``held_out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core import checkpoint
from vce_core.errors import VCEInputError
from vce_core.evaluate.common import (
    PAIRED_FIELDS,
    by_case,
    command_line,
    describe,
    method_names,
    paired,
    run_cli,
    write_csv,
)

__all__ = [
    "LESION_LABELS",
    "METRICS",
    "case_metrics",
    "evaluate",
    "fit_global_factor",
    "main",
    "summarize",
]

NATIVE, SCALED = "native (baseline)", "native × k (baseline)"
ACQUIRED, NOISE_FREE = "acquired standard dose", "noise-free standard dose"
LESION_LABELS = (7, 8, 10, 11, 12, 13)
MIN_SLAB = 8
"""The thinnest slab (axial slices) the 3-D SSIM window (7 voxels, 3 trimmed at each border) can measure."""
"""Phantom labels of tumour tissue (``vce_core.phantom.LABELS``): rim, necrosis, metastasis, meningioma, weak
and non-enhancing lesion. Edema (9) is not tumour."""
REGIONS = ("brain", "lesion", "enhancing", "clean")
ERRORS = ("mae", "psnr", "ssim")
TEXTURE = ("TMSVPMI", "TAVPMI", "TFPMI", "VFPMI")
METRICS = tuple(f"{r}_{e}" for r in REGIONS for e in ERRORS) + TEXTURE
LABELS = {"mae": "MAE", "psnr": "PSNR (dB)", "ssim": "SSIM"}
HIGHER_IS_BETTER = {"psnr", "ssim"}
MARGIN = 8


# ============================================================================================== metrics
def fit_global_factor(folders: Sequence[Path]) -> float:
    """``k = Σ x_NA·x_SD / Σ x_NA²`` over the brain voxels of the case folders (least squares, no offset)."""
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask

    num = den = 0.0
    for folder in folders:
        case = load_case(folder)
        native = np.asarray(case.native.data, dtype=np.float64)
        brain = np.asarray(brain_mask(native), dtype=bool)
        sd = np.asarray(case.standard_dose.data, dtype=np.float64)
        num += float((native[brain] * sd[brain]).sum())
        den += float((native[brain] ** 2).sum())
    if not den > 0:
        raise VCEInputError("the baseline cases have no brain signal", expected="training cases")
    return num / den


def _errors(
    x: np.ndarray, ref: np.ndarray, regions: dict[str, np.ndarray], data_range: float
) -> dict[str, float]:
    """MAE, PSNR and SSIM of ``x`` against ``ref`` in each region (``{region}_{metric}``; NaN for an empty
    region). The SSIM map (scikit-image's 7-voxel window) is computed once and averaged per region over the
    voxels at least 3 from the border, as :func:`vce_core.metrics.ssim` does."""
    from vce_core import metrics

    smap = metrics.ssim_map(x, ref, data_range)
    interior = tuple(slice(3, n - 3) for n in smap.shape)
    out: dict[str, float] = {}
    for name, region in regions.items():
        inside = region[interior]
        out[f"{name}_mae"] = metrics.mae(x, ref, region) if region.any() else float("nan")
        out[f"{name}_psnr"] = (
            metrics.psnr(x, ref, data_range=data_range, mask=region) if region.any() else float("nan")
        )
        out[f"{name}_ssim"] = float(smap[interior][inside].mean()) if inside.any() else float("nan")
    return out


def texture_of(x: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Seed 002's texture metrics of ``x`` on the brain (zero outside it)."""
    from vce_core.metrics import texture_metrics

    try:
        return texture_metrics(np.where(brain, x, 0.0))
    except VCEInputError:
        return {k: float("nan") for k in TEXTURE}


def case_metrics(
    x: np.ndarray, ref: np.ndarray, clean: np.ndarray | None, masks: dict[str, np.ndarray]
) -> dict[str, float]:
    """Every metric of ``x`` (normalised units) against the acquired (``ref``) and noise-free (``clean``)
    standard dose; ``masks`` holds ``brain``, ``lesion`` and ``enhancing`` (bool, same shape)."""
    brain = masks["brain"]
    data_range = float(ref[brain].max() - ref[brain].min())
    regions = {name: masks[name] for name in ("brain", "lesion", "enhancing")}
    out = _errors(x, ref, regions, data_range)
    if clean is not None:
        out |= _errors(x, clean, {"clean": brain}, float(clean[brain].max() - clean[brain].min()))
    else:
        out |= {f"clean_{k}": float("nan") for k in ERRORS}
    return out | texture_of(x, brain)


# ============================================================================================== per case
def _crop(shape: Sequence[int], brain: np.ndarray) -> tuple[slice, ...]:
    idx = np.nonzero(brain)
    return tuple(
        slice(max(int(a.min()) - MARGIN, 0), min(int(a.max()) + 1 + MARGIN, n))
        for a, n in zip(idx, shape, strict=True)
    )


def _slab(crop: tuple[slice, ...], labels: Any, slab: int | None) -> tuple[slice, ...]:
    """``crop`` with its axial range cut to ``slab`` contiguous slices centred on the slice with the most
    lesion voxels (the crop's centre without labels or lesions); unchanged when ``slab`` is None or
    covers the crop."""
    z = crop[2]
    if slab is None or z.stop - z.start <= slab:
        return crop
    centre = (z.start + z.stop) // 2
    if labels is not None:
        counts = np.isin(np.rint(np.asarray(labels.data)[crop]), LESION_LABELS).sum(axis=(0, 1))
        if counts.any():
            centre = z.start + int(np.argmax(counts))
    start = min(max(centre - slab // 2, z.start), z.stop - slab)
    return (crop[0], crop[1], slice(start, start + slab))


def _case_references(case: Any, crop: tuple[slice, ...]) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The noise-free standard dose (phantom cases) and the lesion / enhancing masks, cropped."""
    from vce_core.phantom import phantom_from_case

    phantom = phantom_from_case(case)
    clean = None if phantom is None else np.asarray(phantom.noise_free(1.0).data, dtype=np.float32)[crop]
    labels = case.extra.get("labels")
    lesion = (
        np.isin(np.rint(labels.data[crop]), LESION_LABELS) if labels is not None else np.zeros((0,), bool)
    )
    enhancing = case.extra.get("ce_mask")
    masks = {
        "lesion": lesion,
        "enhancing": (np.asarray(enhancing.data[crop]) > 0.5)
        if enhancing is not None
        else np.zeros((0,), bool),
    }
    return clean, masks


def _cropped_case(case: Any, crop: tuple[slice, ...]) -> Any:
    """A copy of ``case`` with every volume cropped (the models see the brain's bounding box only)."""
    import copy

    from vce_core.io import Volume

    vol = lambda v: Volume(np.ascontiguousarray(np.asarray(v.data, dtype=np.float32)[crop]))  # noqa: E731
    out = copy.copy(case)
    out.native, out.standard_dose = vol(case.native), vol(case.standard_dose)
    out.extra = {k: vol(v) for k, v in case.extra.items()}
    out.low_doses = {d: vol(v) for d, v in case.low_doses.items()}
    return out


def evaluate_case(
    folder: Path, synths: Sequence[Any], names: Sequence[str], factor: float, slab: int | None = None
) -> dict[str, Any]:
    """Metric rows of the baselines, every model and the two references for one case folder.

    The case is cropped to its brain's bounding box (+8 voxels) first: every metric lives inside the brain,
    and the slice-wise models then skip the empty slices. With ``slab``, only that many contiguous axial
    slices are kept, centred on the slice with the most lesion voxels (:func:`_slab`); the models see the
    slab alone (2.5-D inputs at its two end slices are padded as at a volume's ends).
    """
    from vce_core.data import apply_normalization, fit_normalization
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask

    full = load_case(folder)
    case_id = str(full.meta.get("case_id", folder.name))
    native_full = np.asarray(full.native.data, dtype=np.float32)
    crop = _crop(native_full.shape, np.asarray(brain_mask(native_full), dtype=bool))
    crop = _slab(crop, full.extra.get("labels"), slab)
    clean, masks = _case_references(full, crop)
    case = _cropped_case(full, crop)
    native, sd = case.native.data, case.standard_dose.data
    brain = np.asarray(brain_mask(native), dtype=bool)
    masks = {"brain": brain, **{k: _fit_mask(v, brain) for k, v in masks.items()}}
    params = fit_normalization(native, brain, "percentile")
    norm = lambda a: apply_normalization(a, params)  # noqa: E731
    outputs = {NATIVE: native, SCALED: np.float32(factor) * native}
    for name, synth in zip(names, synths, strict=True):
        outputs[name] = synth.synthesize_prepared(synth.prepare_case(case))
    ref, clean_n = norm(sd), None if clean is None else norm(clean)
    rows = []
    for method, x in outputs.items():
        rows += _rows(case_id, method, case_metrics(norm(x), ref, clean_n, masks))
    rows += _rows(case_id, ACQUIRED, texture_of(ref, brain))
    if clean_n is not None:
        clean_range = float(clean_n[brain].max() - clean_n[brain].min())
        errors = _errors(ref, clean_n, {"clean": brain}, clean_range)
        rows += _rows(case_id, ACQUIRED, errors) + _rows(case_id, NOISE_FREE, texture_of(clean_n, brain))
    k = _example_slice(masks)
    panels = {"native": norm(native), "T2": _input_panel(case, "t2")}
    panels |= {m: norm(x) for m, x in outputs.items() if m != NATIVE} | {ACQUIRED: ref}
    if clean_n is not None:
        panels[NOISE_FREE] = clean_n
    example = {
        "case_id": case_id,
        "slice": k,
        "panels": {m: v[:, :, k] for m, v in panels.items() if v is not None},
    }
    return {"case_id": case_id, "rows": rows, "lesion_voxels": int(masks["lesion"].sum()), "example": example}


def _example_slice(masks: dict[str, np.ndarray]) -> int:
    """The axial slice with the most lesion voxels (the most brain voxels when there is no lesion)."""
    region = masks["lesion"] if masks["lesion"].any() else masks["brain"]
    return int(np.argmax(region.sum(axis=(0, 1))))


def _input_panel(case: Any, name: str) -> np.ndarray | None:
    """An extra input (e.g. T2) scaled to the native display range by its own 0.5/99.5 brain percentiles."""
    volume = case.extra.get(name)
    if volume is None:
        return None
    from vce_core.preprocess import brain_mask

    data = np.asarray(volume.data, dtype=np.float32)
    lo, hi = np.percentile(data[brain_mask(case.native.data)], [0.5, 99.5])
    return (data - lo) / max(hi - lo, 1e-6)


def write_example(path: Path, example: dict[str, Any]) -> None:
    """One axial slice per method side by side (radiological orientation, one window for all: the acquired
    standard dose's 1st–99th brain percentile), each captioned; a PNG without metadata."""
    from PIL import Image, ImageDraw

    from vce_core.display import Window, apply_window, encode_png, to_display

    panels = {m: to_display(v) for m, v in example["panels"].items()}
    ref = panels[ACQUIRED]
    lo, hi = np.percentile(ref[ref > 0.05], [1, 99.5]) if (ref > 0.05).any() else (0.0, 1.0)
    window = Window.from_range(float(lo), float(hi))
    h, w = ref.shape
    caption = 14
    canvas = Image.new("L", (w * len(panels), h + caption), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (name, image) in enumerate(panels.items()):
        canvas.paste(Image.fromarray(apply_window(image, window)), (i * w, caption))
        draw.text((i * w + 2, 1), name.replace(" (baseline)", "")[: max(4, w // 6)], fill=255)
    path.write_bytes(encode_png(np.asarray(canvas)))


def _fit_mask(mask: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return (mask & brain) if mask.shape == brain.shape else np.zeros_like(brain)


def _rows(case_id: str, method: str, values: dict[str, float]) -> list[dict[str, Any]]:
    return [{"case_id": case_id, "method": method, "metric": k, "value": float(v)} for k, v in values.items()]


# ============================================================================================== the report
def evaluate(
    models: Sequence[str | PathLike],
    data: Sequence[str | PathLike],
    out: str | PathLike,
    *,
    baseline_data: Sequence[str | PathLike] | None = None,
    factor: float | None = None,
    device: str = "auto",
    command: str | None = None,
    show_progress: bool = True,
    slab: int | None = None,
) -> dict[str, Any]:
    """Evaluate virtual-contrast ``models`` (checkpoint folders) on the case folders in ``data``; write the
    report to ``out``. The scaled-native factor is ``factor`` or fitted on ``baseline_data`` (one is needed).
    ``slab``: evaluate that many contiguous axial slices per case around its lesions (None: the whole brain).

    Returns ``{"results", "summary", "comparisons", "methods", "cases", "factor"}``. Raises
    :class:`VCEInputError` for a low-dose model, missing folders, or a case without a model's inputs.
    """
    from tqdm import tqdm

    from vce_core.data import find_case_folders
    from vce_core.synthesis import Synthesizer

    if slab is not None and slab < MIN_SLAB:
        raise VCEInputError(f"a slab of {slab} slices is too thin", expected=f"--slab {MIN_SLAB} or more")
    synths = [Synthesizer.from_checkpoint(m, device=device) for m in models]
    for s in synths:
        if s.task != "virtual_contrast":
            raise VCEInputError(f"{s.name} is a {s.task} model", expected="virtual-contrast checkpoints")
    names = method_names(synths, reserved=(NATIVE, SCALED, ACQUIRED, NOISE_FREE))
    t0 = time.perf_counter()
    if factor is None:
        if not baseline_data:
            raise VCEInputError("no factor and no baseline data", expected="--baseline-data <training cases>")
        factor = fit_global_factor(find_case_folders(baseline_data))
    results, cases, example = [], [], None
    for folder in tqdm(find_case_folders(data), desc="cases", disable=not show_progress):
        case = evaluate_case(folder, synths, names, factor, slab)
        results += case["rows"]
        if example is None or case["lesion_voxels"] > example[0]:
            example = (case["lesion_voxels"], case.pop("example"))
        cases.append({k: v for k, v in case.items() if k != "example"})
    methods = [NATIVE, SCALED, *names]
    summary = summarize(results, [*methods, ACQUIRED, NOISE_FREE])
    comparisons = compare_methods(results, names, [NATIVE, SCALED])
    info = {
        "command": command or "",
        "models": [
            {"folder": str(m), "name": s.name, "display_name": n, "card": s.card}
            for m, s, n in zip(models, synths, names, strict=True)
        ],
        "data": [str(d) for d in data],
        "baseline_data": [str(d) for d in baseline_data or []],
        "cases": [c["case_id"] for c in cases],
        "lesion_cases": sum(c["lesion_voxels"] > 0 for c in cases),
        "factor": factor,
        "slab": slab,
        "wall_time_s": time.perf_counter() - t0,
        "example": {k: v for k, v in example[1].items() if k != "panels"} if example else None,
    }
    _write(Path(out), results, summary, comparisons, methods, info)
    if example is not None:
        write_example(Path(out) / "example.png", example[1])
    return {
        "results": results,
        "summary": summary,
        "comparisons": comparisons,
        "methods": methods,
        "cases": info["cases"],
        "factor": factor,
    }


def summarize(results: list[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Mean, SD and n over cases per (method, metric) — NaN values (undefined metrics) left out."""
    table = by_case(results)
    rows = []
    for method in methods:
        for metric in METRICS:
            values = np.array(list(table.get((method, metric), {}).values()))
            if values.size:
                rows.append({"method": method, "metric": metric, **describe(values)})
    return rows


def compare_methods(
    results: list[dict[str, Any]], models: Sequence[str], baselines: Sequence[str]
) -> list[dict[str, Any]]:
    """Each model against each baseline on every error metric: mean paired difference (model − baseline),
    95 % bootstrap CI, Wilcoxon p, and the cases where the model is better (lower error, higher PSNR/SSIM)."""

    table = by_case(results)
    rows = []
    for model in models:
        for baseline in baselines:
            for metric in METRICS[: len(REGIONS) * len(ERRORS)]:
                a, b = table.get((model, metric), {}), table.get((baseline, metric), {})
                c = paired(a, b, lower_is_better=not _higher(metric))
                if c is not None:
                    wins = c.pop("wins")
                    rows.append(
                        {"model": model, "baseline": baseline, "metric": metric, **c, "model_better": wins}
                    )
    return rows


def _higher(metric: str) -> bool:
    return metric.rsplit("_", 1)[-1] in HIGHER_IS_BETTER


# ============================================================================================== writing
def _write(
    out: Path,
    results: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    methods: Sequence[str],
    info: dict[str, Any],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", results, ["case_id", "method", "metric", "value"])
    write_csv(out / "summary.csv", summary, ["method", "metric", "mean", "sd", "n"])
    fields = ["model", "baseline", "metric", *PAIRED_FIELDS, "model_better"]
    write_csv(out / "comparisons.csv", comparisons, fields)
    (out / "report.md").write_text(markdown_report(summary, comparisons, methods, info))
    write_html(out / "report.html", results, methods)


def _cell(index: dict[tuple[str, str], dict[str, Any]], method: str, metric: str) -> str:
    row = index.get((method, metric))
    if row is None:
        return "–"
    digits = 2 if metric.endswith("psnr") else 4 if not metric.endswith(TEXTURE) else 3
    sd = f" ± {row['sd']:.{digits}f}" if math.isfinite(row["sd"]) else ""
    return f"{row['mean']:.{digits}f}{sd}"


def _table_lines(
    index: dict[tuple[str, str], dict[str, Any]],
    methods: Sequence[str],
    metrics: Sequence[str],
    header: list[str],
) -> list[str]:
    lines = ["| Method | " + " | ".join(header) + " | n |", "|---|" + "---|" * (len(header) + 1)]
    for method in methods:
        if not any((method, m) in index for m in metrics):
            continue
        n = max(index[(method, m)]["n"] for m in metrics if (method, m) in index)
        lines.append(f"| {method} | " + " | ".join(_cell(index, method, m) for m in metrics) + f" | {n} |")
    return lines + [""]


def _provenance(info: dict[str, Any]) -> list[str]:
    lines = ["# Virtual-contrast evaluation (seeds 001–004)", ""]
    if info["command"]:
        lines += [f"Command: `{info['command']}`", ""]
    lines += [
        f"Held-out cases: {len(info['cases'])} from {', '.join(info['data'])} ({info['lesion_cases']} with "
        f"tumour voxels); wall time {info['wall_time_s'] / 60:.1f} min. Scaled-native baseline: "
        f"k = {info['factor']:.4f}, fitted on the brain voxels of "
        f"{', '.join(info['baseline_data']) or 'given'}.",
        "",
        "Volume evaluated per case: "
        + (
            f"a slab of {info['slab']} contiguous axial slices of the brain's bounding box, centred on the "
            "slice with the most tumour voxels (the brain's middle slice without tumour); the models see "
            "the slab alone."
            if info.get("slab")
            else "the brain's bounding box (+8 voxels)."
        ),
        "",
        "Models:",
        "",
    ]
    for m in info["models"]:
        card = m["card"]
        t = card.training
        wall = t.get("wall_time_s")
        lines.append(
            f"- **{m['display_name']}**: `{m['folder']}` ({card.model}, {card.data_mode}, inputs "
            f"{', '.join(card.inputs)}; {t.get('iterations', '?')} iterations"
            + (f", {wall / 60:.0f} min training" if isinstance(wall, int | float) else "")
            + ")"
        )
    lines += [
        "",
        "All images are mapped with each case's native 0.5/99.5 % brain percentiles (→ 0/1), the same map "
        "for every method and reference. Mean ± SD over cases. PSNR: data range of the reference in the "
        "brain. SSIM: 3-D (7-voxel window) averaged over the region.",
        "",
    ]
    return lines


def markdown_report(
    summary: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    methods: Sequence[str],
    info: dict[str, Any],
) -> str:
    """The report text: provenance, the Table II-style errors, noise-free errors, texture, statistics."""
    index = {(r["method"], r["metric"]): r for r in summary}
    errors = [f"{r}_{e}" for r in ("brain", "lesion", "enhancing") for e in ERRORS]
    lines = _provenance(info)
    lines += ["## Errors against the acquired standard dose (seed 001, Table II layout)", ""]
    header = [f"{r.capitalize()} {LABELS[e]}" for r in ("brain", "lesion", "enhancing") for e in ERRORS]
    lines += _table_lines(index, methods, errors, header)
    lines += ["## Errors against the noise-free standard dose (brain)", ""]
    lines += _table_lines(
        index, [*methods, ACQUIRED], [f"clean_{e}" for e in ERRORS], [LABELS[e] for e in ERRORS]
    )
    lines += ["## Texture (seed 002, Table 2; larger = rougher)", ""]
    lines += _table_lines(index, [NOISE_FREE, ACQUIRED, *methods], list(TEXTURE), list(TEXTURE))
    lines += _comparison_lines(comparisons)
    lines += _losses_lines(comparisons)
    if info.get("example"):
        ex = info["example"]
        lines += [
            f"## Example: case {ex['case_id']}, axial slice {ex['slice']} of its brain box "
            "(the case with the most tumour voxels)",
            "",
            "![one axial slice per method, one window for all](example.png)",
            "",
        ]
    return "\n".join(lines)


def _comparison_lines(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Paired comparisons with the baselines",
        "",
        "Mean paired difference model − baseline over cases, 95 % bootstrap CI, two-sided Wilcoxon "
        "signed-rank p, and the cases where the model is better (lower MAE, higher PSNR/SSIM).",
        "",
        "| Model | Baseline | Metric | Difference [95 % CI] | p | Model better |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        digits = 2 if c["metric"].endswith("psnr") else 4
        p = f"{c['p_value']:.3g}" if math.isfinite(c["p_value"]) else "–"
        lines.append(
            f"| {c['model']} | {c['baseline']} | {c['metric']} | {c['mean_difference']:+.{digits}f} "
            f"[{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}] | {p} | {c['model_better']}/{c['n']} |"
        )
    return lines + [""]


def _losses_lines(comparisons: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: where each model is worse than the better trivial baseline (CI excluding 0)."""
    lines = ["## Where the systems lose", ""]
    for model in dict.fromkeys(c["model"] for c in comparisons):
        worse = []
        for c in comparisons:
            if c["model"] != model or c["baseline"] != SCALED:
                continue
            hi = _higher(c["metric"])
            if (c["ci_high"] < 0) if hi else (c["ci_low"] > 0):
                worse.append(
                    f"{c['metric']} ({c['mean_difference']:+.3g}, better in {c['model_better']}/{c['n']})"
                )
        if worse:
            lines.append(f"- **{model}** is worse than {SCALED} on: " + "; ".join(worse) + ".")
        else:
            lines.append(f"- **{model}**: not significantly worse than {SCALED} on any error metric.")
    return lines + [""]


def write_html(path: Path, results: list[dict[str, Any]], methods: Sequence[str]) -> None:
    """Plotly box plots of the main metrics, one box per method (self-contained HTML)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = ["brain_psnr", "brain_ssim", "lesion_psnr", "lesion_mae", "clean_mae", "TFPMI"]
    fig = make_subplots(rows=2, cols=3, subplot_titles=shown)
    for i, metric in enumerate(shown):
        for j, method in enumerate([*methods, ACQUIRED, NOISE_FREE]):
            values = [r["value"] for r in results if r["metric"] == metric and r["method"] == method]
            values = [v for v in values if math.isfinite(v)]
            if not values:
                continue
            fig.add_trace(
                go.Box(
                    y=values,
                    name=method,
                    legendgroup=method,
                    showlegend=i == 0,
                    boxpoints="all",
                    marker_color=_COLORS[j % len(_COLORS)],
                ),
                row=i // 3 + 1,
                col=i % 3 + 1,
            )
    fig.update_layout(title="Virtual contrast: metrics over held-out cases", height=800)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


_COLORS = ("#7f7f7f", "#bcbd22", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def update_cards(
    folders: Sequence[str | PathLike],
    names: Sequence[str],
    summary: list[dict[str, Any]],
    info: dict[str, Any],
) -> None:
    """Record each model's held-out means (brain PSNR/SSIM/MAE as ``psnr``/``ssim``/``mae``, and every
    other metric by name) in its card's ``held_out``, with the case count, report folder and command."""
    index = {(r["method"], r["metric"]): r["mean"] for r in summary}
    for folder, name in zip(folders, names, strict=True):
        figures = {m: index[(name, m)] for m in METRICS if (name, m) in index}
        held_out = {
            "psnr": figures.get("brain_psnr"),
            "ssim": figures.get("brain_ssim"),
            "mae": figures.get("brain_mae"),
            **figures,
            "cases": len(info["cases"]),
            "reference": "acquired standard dose (clean_*: noise-free standard dose)",
            "report": info["report"],
            "command": info["command"],
        }
        checkpoint.update_card(folder, held_out=held_out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.virtual_contrast", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--models", nargs="+", required=True, help="virtual-contrast checkpoint folders")
    parser.add_argument(
        "--data", nargs="+", required=True, help="held-out case folders or roots holding them"
    )
    parser.add_argument("--baseline-data", nargs="+", help="training cases for the scaled-native factor k")
    parser.add_argument("--factor", type=float, help="use this k instead of fitting it")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument(
        "--slab",
        type=int,
        help="evaluate this many contiguous axial slices per case, centred on its lesions (default: all)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--update-cards", action="store_true", help="write the figures into each card")
    args = parser.parse_args(argv)
    command = command_line("vce_core.evaluate.virtual_contrast", argv)
    result = run_cli(evaluate, args, command=command)
    if result is None:
        return 2
    if args.update_cards:
        info = {"cases": result["cases"], "report": str(args.out), "command": command}
        update_cards(args.models, result["methods"][2:], result["summary"], info)
    print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
