"""Seed 000's augmentation experiment: does a standard-dose predictor gain from synthetic low doses?

    python -m vce_core.evaluate.augmentation --data data/phantom/train --val-data data/phantom/val \\
        --test data/heldout_s4242/test --work runs/augmentation_s4242 --out reports/augmentation_s4242 \\
        [--generator assets/models/<name>] [--iterations N] [--reuse] [--steps synthesize,train,evaluate]

Seed 000 (Pinetz et al., Table 1 right columns and the site-2 paragraph) trains a 2.5-D U-Net that predicts
the standard dose from the native and a 33 % low-dose image on real low doses, on low doses synthesized by its
GAN, and on both, and scores every predictor on *real* low-dose test images. The same three arms here:

1. **synthesize** — for every training case, a synthetic case folder ``<work>/synthetic/<case>`` whose
   ``synthetic_low_dose_<pct>.nii.gz`` is the generator's low dose at ``--dose`` (default: the low-dose
   generator marked default in ``assets/models``), noise seed ``SeedSequence([--seed, case index])``. Every
   other image of the source case is a *hard link* to the source file (one copy on disk; not a symbolic
   link, which :func:`vce_core.io.load_case` refuses as a file outside the case folder; a copy when the work
   folder is on another file system); the source's real low doses are
   neither linked nor listed (the synthetic-only arm must not see a real low dose), and ``case.json`` is the
   source's manifest with that one low dose and ``meta.augmentation`` (generator, dose, seed, source). The
   generator runs on the brain's bounding box (+8 voxels); outside it the synthetic low dose is the native
   image (no contrast reaches the background; the predictor's crops stay within +4 voxels of the brain).
2. **train** — :mod:`vce_core.train` with ``--config`` (``configs/sd_predictor_2_5d.yaml``: native +
   ``low_dose@<dose>`` → standard dose) three times: ``real`` (the training cases), ``synthetic`` (the
   synthetic folders only) and ``real+synthetic`` (the union of both folder sets), each for ``--iterations``
   generator updates (the same budget), validated on the real ``--val-data`` cases.
3. **evaluate** — each predictor on the real low-dose test cases: PSNR, SSIM (3-D, scikit-image's
   definition) and MAE of the predicted standard dose inside the brain against the acquired standard dose and
   (phantom cases) against the phantom's noise-free standard dose, and MAE inside the truly enhancing tissue
   (the phantom's ``ce_mask``), every image in the case's native percentile normalisation (0.5/99.5 % in the
   brain → 0/1). Reference rows (no training): the real low dose rescaled linearly,
   ``x_NA + (x_LD − x_NA)/d``, and the acquired standard dose against the noise-free one (its noise). Paired
   comparisons between the three arms per metric: mean difference, 95 % bootstrap CI over cases, two-sided
   Wilcoxon p, and Holm's adjustment over every comparison of the report (:mod:`vce_core.evaluate.stats`).

``--reuse`` keeps finished work: complete synthetic folders and runs that reached the requested iterations;
a run that stopped short of them (the config's ``max_minutes`` on a busy CPU, an interruption) is resumed, so
the three arms always get the same number of iterations. ``--steps`` runs a subset (a GPU can train, a CPU
evaluate). Outputs in ``--out``:
``results.csv`` (case_id, method, metric, value), ``summary.csv``, ``comparisons.csv``, ``noise.csv``
(subtraction noise of the real and synthetic training low doses) and ``report.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import format_p

__all__ = [
    "ARMS",
    "compare_arms",
    "evaluate_case",
    "evaluate_predictors",
    "main",
    "run",
    "train_arms",
    "write_synthetic_case",
    "write_synthetic_cases",
]

ARMS = ("real", "synthetic", "real+synthetic")
"""The training sets: real low doses, synthetic low doses only, both folder sets together."""
RUN_NAMES = {"real": "real_only", "synthetic": "synthetic_only", "real+synthetic": "real_plus_synthetic"}
LINEAR = "real low dose, rescaled (reference)"
ACQUIRED = "acquired standard dose (reference)"
METRICS = ("brain_psnr", "brain_ssim", "brain_mae", "clean_psnr", "clean_ssim", "clean_mae", "enhancing_mae")
LABELS = {
    "brain_psnr": "PSNR (dB) vs acquired SD, brain",
    "brain_ssim": "SSIM vs acquired SD, brain",
    "brain_mae": "MAE vs acquired SD, brain",
    "clean_psnr": "PSNR (dB) vs noise-free SD, brain",
    "clean_ssim": "SSIM vs noise-free SD, brain",
    "clean_mae": "MAE vs noise-free SD, brain",
    "enhancing_mae": "MAE vs acquired SD, enhancing tissue",
}
STEPS = ("synthesize", "train", "evaluate")
MARGIN = 8


def _arm_label(arm: str) -> str:
    return f"trained on {arm}"


# ============================================================================================== synthesis
def _low_dose_name(dose: float) -> str:
    return f"synthetic_low_dose_{round(dose * 100):03d}.nii.gz"


def _case_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _brain_crop(native: np.ndarray) -> tuple[slice, ...]:
    from vce_core.preprocess import brain_mask

    idx = np.nonzero(np.asarray(brain_mask(native), dtype=bool))
    if not idx[0].size:
        raise VCEInputError("the native image has no brain voxels", expected="a brain MRI case")
    return tuple(
        slice(max(int(a.min()) - MARGIN, 0), min(int(a.max()) + 1 + MARGIN, n))
        for a, n in zip(idx, native.shape, strict=True)
    )


def _stored_dtype(path: Path) -> str:
    """The voxel type of a NIfTI file if the exporter supports it, else float32."""
    import nibabel as nib

    from vce_core.io.nifti import NIFTI_EXPORT_DTYPES

    name = str(nib.load(str(path)).get_data_dtype())
    return name if name in NIFTI_EXPORT_DTYPES else "float32"


def _link(source: Path, dest: Path) -> None:
    """A hard link ``dest`` to ``source`` (a copy across file systems). Not a symbolic link:
    :func:`vce_core.io.load_case` refuses files that resolve outside the case folder."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def write_synthetic_case(
    source: str | PathLike, dest: str | PathLike, synth: Any, dose: float, seed: int, generator: str
) -> Path:
    """Write the synthetic twin of case folder ``source`` at ``dest`` (module docstring, step 1).

    ``synth`` is a low-dose :class:`vce_core.synthesis.Synthesizer`; ``seed`` the noise seed of this case;
    ``generator`` the checkpoint folder recorded in ``case.json``. The folder is built under a temporary name
    and renamed into place, so a failure leaves nothing half-written. Returns ``dest``.
    """
    from vce_core.baselines import case_tr_flip
    from vce_core.io import Volume, load_case, save_nifti

    t0 = time.perf_counter()
    source, dest = Path(source).resolve(), Path(dest)
    manifest = json.loads((source / "case.json").read_text())
    case = load_case(source)
    native = np.asarray(case.native.data, dtype=np.float32)
    crop = _brain_crop(native)
    out = native.copy()
    out[crop] = synth.synthesize(
        native[crop],
        np.asarray(case.standard_dose.data, dtype=np.float32)[crop],
        dose,
        case.field_strength,
        seed=seed,
        sequence=case_tr_flip(case),
    )
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    real_low = {str(entry["file"]) for entry in manifest.get("low_doses", [])}
    for f in sorted(source.iterdir()):
        if f.is_file() and f.name != "case.json" and f.name not in real_low:
            _link(f, tmp / f.name)
    name = _low_dose_name(dose)
    volume = Volume(out, affine=case.native.affine, spacing=case.native.spacing, meta={"synthetic": True})
    save_nifti(volume, tmp / name, dtype=_stored_dtype(source / str(manifest["native"])))
    manifest["low_doses"] = [{"dose": float(dose), "file": name}]
    manifest.setdefault("meta", {})["augmentation"] = {
        "synthetic_low_dose": name,
        "dose": float(dose),
        "generator": generator,
        "generator_name": synth.name,
        "noise_seed": int(seed),
        "source": str(source),
        "note": "only the low dose is synthetic; every other image is a hard link to the source case's",
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (tmp / "case.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _write_generator_record(root: Path, generator: Path) -> None:
    """``<root>/generator.json``: which generator made the twins (folder, card, SHA-256 of the weights), so a
    report names it even after the bundled model of that name has changed."""
    import hashlib

    from vce_core.checkpoint import read_card

    card = read_card(generator)
    digest = hashlib.sha256((generator / card.weights).read_bytes()).hexdigest()
    record = {"folder": str(generator), "card": json.loads((generator / "card.json").read_text())}
    (root / "generator.json").write_text(json.dumps({**record, "weights_sha256": digest}, indent=2))


def generator_record(root: Path) -> dict[str, Any] | None:
    """The generator of the twins under ``root`` (see :func:`write_synthetic_cases`), or None."""
    path = root / "generator.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    card = record.get("card", {})
    return {
        "generator": record.get("folder"),
        "generator_name": card.get("name"),
        "generator_base": (card.get("config") or {}).get("base"),
        "generator_content_loss": card.get("content_loss"),
        "generator_content_space": card.get("content_space"),
        "generator_critic": bool(card.get("critic")),
        "generator_sha256": record.get("weights_sha256"),
    }


def _complete(folder: Path, dose: float) -> bool:
    return (folder / "case.json").is_file() and (folder / _low_dose_name(dose)).is_file()


def write_synthetic_cases(
    folders: Sequence[Path],
    root: str | PathLike,
    generator: str | PathLike,
    *,
    dose: float = 0.33,
    seed: int = 0,
    device: str = "auto",
    reuse: bool = False,
    log: Any = print,
) -> tuple[list[Path], float]:
    """Synthetic twins of ``folders`` under ``root`` (one per case, same folder name); complete ones are
    kept with ``reuse``. Returns the folders and the seconds their synthesis took (load, synthesis, writing;
    summed over the twins from their ``case.json``, so reused twins count with their own time)."""
    from vce_core.synthesis import Synthesizer

    synth = Synthesizer.from_checkpoint(generator, device=device)
    if synth.task == "virtual_contrast":
        raise VCEInputError(f"{generator} is a virtual-contrast model", expected="a low-dose generator")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (reuse and (root / "generator.json").is_file()):
        _write_generator_record(root, Path(generator))
    out, t0 = [], time.perf_counter()
    for i, folder in enumerate(folders):
        dest = root / Path(folder).name
        if not (reuse and _complete(dest, dose)):
            write_synthetic_case(folder, dest, synth, dose, _case_seed(seed, i), str(generator))
            log(f"synthesized {dest.name} ({i + 1}/{len(folders)}, {time.perf_counter() - t0:.0f} s)")
        out.append(dest)
    seconds = sum(
        float(json.loads((f / "case.json").read_text())["meta"]["augmentation"].get("seconds", 0.0))
        for f in out
    )
    return out, seconds


# ============================================================================================== training
def _run_state(run_dir: Path, iterations: int) -> str:
    """``done`` (a run that reached ``iterations``), ``partial`` (a run aiming at ``iterations`` that stopped
    short of it — time cap or interruption — and can be resumed) or ``none``."""
    from vce_core.checkpoint import read_card

    if not (run_dir / "card.json").is_file():
        return "none"
    training = read_card(run_dir).training
    if training.get("target_iterations") != iterations:
        return "none"
    if int(training.get("iterations", 0)) >= iterations:
        return "done"
    return "partial" if (run_dir / "resume.pt").is_file() else "none"


def train_arms(
    config: str | PathLike,
    arms: dict[str, list[Path]],
    work: str | PathLike,
    *,
    iterations: int | None = None,
    overrides: Sequence[str] = (),
    val_data: Sequence[str | PathLike] = (),
    reuse: bool = False,
    log: Any = print,
) -> dict[str, dict[str, Any]]:
    """Train one predictor per arm (``{arm: case folders}``) into ``<work>/<run name>`` for the same number of
    iterations. With ``reuse`` a run that reached them is kept and one that stopped short (``max_minutes``,
    interruption) is resumed to them, so every arm gets the same budget. Returns ``{arm: {"run": folder,
    "seconds": this call's wall time, "reused": bool, "resumed": bool}}``.
    """
    from dataclasses import replace

    from vce_core.evaluate.common import command_line
    from vce_core.train import train
    from vce_core.train_config import load_config

    out = {}
    for arm, folders in arms.items():
        run_dir = Path(work) / RUN_NAMES[arm]
        cfg = load_config(config, list(overrides))
        cfg = replace(
            cfg,
            name=f"{cfg.name}_{RUN_NAMES[arm]}",
            display_name=_arm_label(arm),
            data=[str(f) for f in folders],
            val_data=[str(v) for v in val_data] or cfg.val_data,
            iterations=int(iterations or cfg.iterations),
        )
        state = _run_state(run_dir, cfg.iterations) if reuse else "none"
        if state == "done":
            log(f"reusing {run_dir}")
            out[arm] = {"run": run_dir, "seconds": 0.0, "reused": True, "resumed": False}
            continue
        command = command_line("vce_core.evaluate.augmentation", None)
        resume = run_dir if state == "partial" else None
        log(f"training {arm}: {len(folders)} cases, {cfg.iterations} iterations -> {run_dir}")
        t0 = time.perf_counter()
        card = train(cfg, run_dir=run_dir, resume=resume, command=command)
        out[arm] = {
            "run": run_dir,
            "seconds": time.perf_counter() - t0,
            "reused": False,
            "resumed": bool(resume),
        }
        _record_training_time(Path(work), arm, out[arm])
        log(f"{arm}: {card.training['iterations']} iterations, stopped by {card.training['stopped_by']}")
    return out


# ============================================================================================== evaluation
def _errors(x: np.ndarray, ref: np.ndarray, region: np.ndarray, prefix: str) -> dict[str, float]:
    """MAE, PSNR (data range: the reference's range in the region) and mean SSIM of ``x`` in ``region``."""
    from vce_core import metrics

    data_range = float(ref[region].max() - ref[region].min())
    smap = metrics.ssim_map(x, ref, data_range)
    interior = tuple(slice(3, n - 3) for n in smap.shape)
    return {
        f"{prefix}_mae": metrics.mae(x, ref, region),
        f"{prefix}_psnr": metrics.psnr(x, ref, data_range=data_range, mask=region),
        f"{prefix}_ssim": float(smap[interior][region[interior]].mean()),
    }


def _acquired_doses(folder: Path) -> list[float]:
    """The acquired low doses of a case folder, from its ``case.json`` (without loading the images)."""
    from vce_core.io import load_case

    manifest = folder / "case.json"
    if not manifest.is_file():
        return sorted(load_case(folder).low_doses)
    try:
        entries = json.loads(manifest.read_text()).get("low_doses", [])
        return sorted(float(e["dose"]) for e in entries)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise VCEInputError(f"case.json cannot be read ({err})", path=manifest) from err


def _require_low_dose(folder: Path, dose: float, role: str = "test") -> None:
    """:class:`VCEInputError` unless the case folder holds a real low dose at ``dose``."""
    from vce_core.domain import match_dose

    acquired = _acquired_doses(Path(folder))
    if match_dose(acquired, dose) is None:
        raise VCEInputError(
            f"the {role} case has no real {dose:g} low dose (acquired: {acquired or 'none'})",
            path=folder,
            expected=f"{role} cases with an acquired low dose at {dose:g}",
        )


def evaluate_case(folder: str | PathLike, synths: dict[str, Any], dose: float) -> list[dict[str, Any]]:
    """Metric rows ``{case_id, method, metric, value}`` of every predictor and the references on one real
    case, cropped to its brain's bounding box (+8 voxels). Raises :class:`VCEInputError` when the case has
    no real low dose at ``dose``."""
    from vce_core.data import apply_normalization, fit_normalization, parse_input
    from vce_core.domain import match_dose
    from vce_core.io import load_case
    from vce_core.phantom import phantom_from_case
    from vce_core.preprocess import brain_mask

    folder = Path(folder)
    _require_low_dose(folder, dose)
    case = load_case(folder)
    case_id = str(case.meta.get("case_id", folder.name))
    crop = _brain_crop(np.asarray(case.native.data, dtype=np.float32))
    native = np.ascontiguousarray(np.asarray(case.native.data, dtype=np.float32)[crop])
    low = np.asarray(case.low_doses[match_dose(case.low_doses, dose)].data, dtype=np.float32)[crop]
    sd = np.asarray(case.standard_dose.data, dtype=np.float32)[crop]
    brain = np.asarray(brain_mask(native), dtype=bool)
    norm = lambda a: apply_normalization(a, fit_normalization(native, brain, "percentile"))  # noqa: E731
    ref = norm(sd)
    phantom = phantom_from_case(case)
    clean = None if phantom is None else norm(np.asarray(phantom.noise_free(1.0).data, np.float32)[crop])
    ce = case.extra.get("ce_mask")
    enhancing = None if ce is None else (np.asarray(ce.data)[crop] > 0.5) & brain
    outputs = {LINEAR: native + (low - native) / np.float32(dose)}
    for arm, synth in synths.items():
        images = {n: low if parse_input(n).role == "low_dose" else native for n in synth.inputs}
        outputs[_arm_label(arm)] = synth.synthesize_contrast({**images, "native": native})
    rows = []
    for method, image in outputs.items():
        x = norm(image)
        values = _errors(x, ref, brain, "brain")
        if clean is not None:
            values |= _errors(x, clean, brain, "clean")
        if enhancing is not None and enhancing.any():
            values["enhancing_mae"] = float(np.abs(x - ref)[enhancing].mean())
        rows += [
            {"case_id": case_id, "method": method, "metric": k, "value": float(v)} for k, v in values.items()
        ]
    if clean is not None:
        rows += [
            {"case_id": case_id, "method": ACQUIRED, "metric": k, "value": float(v)}
            for k, v in _errors(ref, clean, brain, "clean").items()
        ]
    return rows


def _check_predictor(synth: Any, dose: float) -> None:
    from vce_core.data import parse_input
    from vce_core.domain import match_dose

    roles = {parse_input(n).role: parse_input(n) for n in synth.inputs}
    low = roles.get("low_dose")
    if synth.task != "virtual_contrast" or set(roles) != {"native", "low_dose"} or low is None:
        raise VCEInputError(
            f"{synth.name} takes {synth.inputs}", expected=f"a predictor of native + low_dose@{dose:g}"
        )
    if match_dose([low.dose], dose) is None:
        raise VCEInputError(f"{synth.name} takes {low.name}", expected=f"low_dose@{dose:g}")


def evaluate_predictors(
    runs: dict[str, Path], test: Sequence[str | PathLike], *, dose: float = 0.33, device: str = "auto"
) -> list[dict[str, Any]]:
    """Every metric row of the predictors ``{arm: run folder}`` on the real test cases in ``test``.

    Every test case is checked for a real low dose at ``dose`` before any work (:class:`VCEInputError`
    naming the first case without one)."""
    from vce_core.data import find_case_folders
    from vce_core.synthesis import Synthesizer

    synths = {arm: Synthesizer.from_checkpoint(run, device=device) for arm, run in runs.items()}
    for synth in synths.values():
        _check_predictor(synth, dose)
    folders = find_case_folders(test)
    for folder in folders:
        _require_low_dose(folder, dose)
    rows: list[dict[str, Any]] = []
    for folder in folders:
        rows += evaluate_case(folder, synths, dose)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, SD, bootstrap 95 % CI of the mean and n over cases per (method, metric)."""
    from vce_core.evaluate.common import by_case, describe
    from vce_core.evaluate.stats import bootstrap_ci

    out = []
    for (method, metric), values in by_case(rows).items():
        v = np.array(list(values.values()))
        low, high = bootstrap_ci(v)
        stats = describe(v)
        out.append(
            {
                "method": method,
                "metric": metric,
                "mean": stats["mean"],
                "sd": stats["sd"],
                "ci_low": low,
                "ci_high": high,
                "n": stats["n"],
            }
        )
    return out


def compare_arms(rows: list[dict[str, Any]], arms: Sequence[str] = ARMS) -> list[dict[str, Any]]:
    """Every pair of arms on every metric: mean paired difference A − B over the cases both have, its 95 %
    bootstrap CI, the Wilcoxon p, Holm's adjustment over all the comparisons returned, and the cases where
    A is better (higher PSNR/SSIM, lower MAE)."""
    from vce_core.evaluate.common import by_case, paired
    from vce_core.evaluate.stats import holm

    table = by_case(rows)
    out = []
    pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :]]
    for metric in METRICS:
        for a, b in pairs:
            x, y = table.get((_arm_label(a), metric), {}), table.get((_arm_label(b), metric), {})
            c = paired(x, y, lower_is_better=not metric.endswith(("psnr", "ssim")))
            if c is not None:
                wins = c.pop("wins")
                out.append({"a": a, "b": b, "metric": metric, **c, "a_better": wins})
    for row, adjusted in zip(out, holm([r["p_value"] for r in out]), strict=True):
        row["p_holm"] = adjusted
    return out


def _subtraction(folder: Path, dose: float) -> tuple[np.ndarray, np.ndarray]:
    """``x_LD − x_NA`` of a case folder's low dose at ``dose`` and the mask of its brain without enhancing
    tissue (the phantom's ``ce_mask`` when the case has one), reading only the files needed."""
    from vce_core.domain import match_dose
    from vce_core.io import load_volume
    from vce_core.preprocess import brain_mask

    manifest = json.loads((folder / "case.json").read_text())
    entry = next(e for e in manifest["low_doses"] if match_dose([float(e["dose"])], dose) is not None)
    native = np.asarray(load_volume(folder / manifest["native"]).data, dtype=np.float32)
    low = np.asarray(load_volume(folder / entry["file"]).data, dtype=np.float32)
    mask = np.asarray(brain_mask(native), dtype=bool)
    ce = manifest.get("extra", {}).get("ce_mask")
    if ce:
        mask &= ~(np.asarray(load_volume(folder / ce).data) > 0.5)
    return low - native, mask


def subtraction_noise(
    sources: Sequence[Path], twins: Sequence[Path], dose: float = 0.33
) -> list[dict[str, Any]]:
    """Per training case: the noise SD of the real and of the synthetic subtraction image ``x_LD − x_NA``
    (:func:`vce_core.metrics.noise_sigma`, 3-D, inside the brain without enhancing tissue, image units) and
    their ratio — how much of the acquisition's noise the synthetic low doses the predictor learns from
    carry (1 = all of it)."""
    from vce_core.metrics import noise_sigma

    rows = []
    for source, twin in zip(sources, twins, strict=True):
        real, mask = _subtraction(Path(source), dose)
        synthetic, _ = _subtraction(Path(twin), dose)
        s_real, s_syn = noise_sigma(real, mask), noise_sigma(synthetic, mask)
        rows.append(
            {
                "case": Path(source).name,
                "sigma_real": s_real,
                "sigma_synthetic": s_syn,
                "ratio": s_syn / s_real,
            }
        )
    return rows


# ============================================================================================== the run
def _timings(work: Path) -> dict[str, Any]:
    path = work / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_timings(work: Path, timings: dict[str, Any]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "timings.json").write_text(json.dumps(timings, indent=2))


def _record_training_time(work: Path, arm: str, result: dict[str, Any]) -> None:
    """Add one arm's training call (data preparation included) to ``<work>/timings.json`` (summed over
    resumed calls)."""
    timings = _timings(work)
    key = f"train_{RUN_NAMES[arm]}_s"
    previous = timings.get(key, 0.0) if result["resumed"] else 0.0
    timings[key] = round(previous + result["seconds"], 1)
    _save_timings(work, timings)


def run(
    *,
    data: Sequence[str | PathLike],
    test: Sequence[str | PathLike],
    work: str | PathLike,
    out: str | PathLike,
    config: str | PathLike = "configs/sd_predictor_2_5d.yaml",
    generator: str | PathLike | None = None,
    val_data: Sequence[str | PathLike] = (),
    dose: float = 0.33,
    seed: int = 0,
    iterations: int | None = None,
    overrides: Sequence[str] = (),
    steps: Sequence[str] = STEPS,
    reuse: bool = False,
    device: str = "auto",
    threads: int = 1,
    command: str = "",
    log: Any = print,
) -> dict[str, Any]:
    """The whole experiment (module docstring). Returns ``{"rows", "summary", "comparisons", "info"}`` when
    it evaluates (``{"info"}`` otherwise). Every input is checked before anything is written."""
    import torch

    if threads > 0:
        torch.set_num_threads(int(threads))
        overrides = [f"threads={int(threads)}", *overrides]
    dose, generator, folders, test_folders = _check_run(data, test, dose, steps, generator)
    work = Path(work)
    timings = _timings(work)
    synthetic = _synthetic_twins(
        folders,
        work,
        generator,
        "synthesize" in steps,
        timings,
        dose=dose,
        seed=seed,
        device=device,
        reuse=reuse,
        log=log,
    )
    arms = {"real": folders, "synthetic": synthetic, "real+synthetic": [*folders, *synthetic]}
    runs = {arm: work / RUN_NAMES[arm] for arm in ARMS}
    if "train" in steps:
        train_arms(
            config,
            arms,
            work,
            iterations=iterations,
            overrides=overrides,
            val_data=val_data,
            reuse=reuse,
            log=log,
        )
        timings = _timings(work)  # train_arms records each arm's time as soon as it is trained
    info = {
        "command": command,
        **_generator_info(work / "synthetic", generator),
        "dose": dose,
        "seed": seed,
        "data": [str(d) for d in data],
        "val_data": [str(v) for v in val_data],
        "test": [str(t) for t in test],
        "train_cases": len(folders),
        "test_cases": len(test_folders),
        "timings": timings,
    }
    if "evaluate" not in steps:
        return {"info": info}
    t0 = time.perf_counter()
    rows = evaluate_predictors(runs, test, dose=dose, device=device)
    timings["evaluation_s"] = round(time.perf_counter() - t0, 1)
    _save_timings(work, timings)
    info["runs"] = {arm: _run_info(runs[arm]) for arm in ARMS}
    info["noise"] = subtraction_noise(folders, synthetic, dose)
    summary, comparisons = summarize(rows), compare_arms(rows)
    write_report(Path(out), rows, summary, comparisons, info)
    return {"rows": rows, "summary": summary, "comparisons": comparisons, "info": info}


def _check_run(
    data: Sequence[str | PathLike],
    test: Sequence[str | PathLike],
    dose: float,
    steps: Sequence[str],
    generator: str | PathLike | None,
) -> tuple[float, Path, list[Path], list[Path]]:
    """The checked dose, the generator folder (default: the bundled one), the training and test case
    folders, each of which must hold an acquired scan at ``dose``; VCEInputError before anything is written.
    """
    from vce_core.data import find_case_folders
    from vce_core.domain import check_dose

    dose = check_dose(dose, positive=True)
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        raise VCEInputError(f"steps {list(steps)}", expected=f"a non-empty subset of {', '.join(STEPS)}")
    generator = Path(generator) if generator is not None else _default_generator()
    folders, test_folders = find_case_folders(data), find_case_folders(test)
    for folder in test_folders:
        _require_low_dose(folder, dose)
    for folder in folders:  # the real arm trains on the real low dose
        _require_low_dose(folder, dose, "training")
    return dose, generator, folders, test_folders


def _synthetic_twins(
    folders: Sequence[Path],
    work: Path,
    generator: Path,
    synthesize: bool,
    timings: dict[str, Any],
    **options: Any,
) -> list[Path]:
    """The synthetic twins of ``folders`` under ``work/synthetic``: written now (``synthesize``, timed in
    ``timings``; ``options``: dose, seed, device, reuse, log of :func:`write_synthetic_cases`) or checked
    complete from an earlier run (VCEInputError naming the first missing one)."""
    if synthesize:
        synthetic, seconds = write_synthetic_cases(folders, work / "synthetic", generator, **options)
        timings["synthesis_s"] = round(seconds, 1)
        _save_timings(work, timings)
        return synthetic
    synthetic = [work / "synthetic" / f.name for f in folders]
    missing = [str(f) for f in synthetic if not _complete(f, options["dose"])]
    if missing:
        raise VCEInputError(
            f"{len(missing)} synthetic case(s) are missing, e.g. {missing[0]}",
            expected="the synthesize step first (--steps synthesize,...)",
        )
    return synthetic


def _generator_info(root: Path, generator: Path) -> dict[str, Any]:
    """The twins' generator from their record, else ``generator``'s card."""
    from vce_core.checkpoint import read_card

    recorded = generator_record(root)
    if recorded is not None:
        return recorded
    card = read_card(generator)
    return {
        "generator": str(generator),
        "generator_name": card.name,
        "generator_base": (card.config or {}).get("base"),
        "generator_content_loss": card.get("content_loss"),
        "generator_content_space": card.get("content_space"),
        "generator_critic": card.critic is not None,
        "generator_sha256": None,
    }


def _default_generator() -> Path:
    """The low-dose generator marked default in the models folder (:class:`vce_core.settings.Settings`)."""
    from vce_core.checkpoint import list_checkpoints
    from vce_core.settings import Settings

    models = Settings.resolve().models_dir
    found = list_checkpoints(models)
    if not found:
        raise VCEInputError("no low-dose generator in the models folder", path=models, expected="--generator")
    return Path(found[0])


def _run_info(run_dir: Path) -> dict[str, Any]:
    from vce_core.checkpoint import read_card

    card = read_card(run_dir)
    t = card.training
    return {
        "folder": str(run_dir),
        "iterations": t.get("iterations"),
        "target_iterations": t.get("target_iterations"),
        "stopped_by": t.get("stopped_by"),
        "wall_time_s": t.get("wall_time_s"),
        "it_per_s": t.get("it_per_s"),
        "device": t.get("device"),
        "train_cases": len(card.data.get("train", {}).get("folders", [])) if card.data else None,
        "validation": card.validation,
        "final_loss": _final_loss(run_dir / "log.csv"),
    }


def _final_loss(log: Path, fraction: float = 0.1) -> dict[str, float]:
    """Mean of each logged loss over the last ``fraction`` of the logged iterations (``{}`` without a log)."""
    if not log.is_file():
        return {}
    with log.open() as f:
        rows = list(csv.DictReader(f))
    tail = rows[-max(1, int(round(len(rows) * fraction))) :] if rows else []
    keys = [k for k in ("l1", "ssim_loss") if tail and k in tail[0]]
    return {k: float(np.mean([float(r[k]) for r in tail])) for k in keys}


# ============================================================================================== the report
def _f(v: Any, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def write_report(
    out: Path,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    info: dict[str, Any],
) -> None:
    """``results.csv``, ``summary.csv``, ``comparisons.csv``, ``noise.csv`` and ``report.md`` in ``out``."""
    from vce_core.evaluate.common import PAIRED_FIELDS
    from vce_core.evaluate.common import write_csv as _csv

    out.mkdir(parents=True, exist_ok=True)
    _csv(out / "results.csv", rows, ["case_id", "method", "metric", "value"])
    _csv(out / "summary.csv", summary, ["method", "metric", "mean", "sd", "ci_low", "ci_high", "n"])
    fields = ["a", "b", "metric", *PAIRED_FIELDS, "p_holm", "a_better"]
    _csv(out / "comparisons.csv", comparisons, fields)
    _csv(out / "noise.csv", info.get("noise", []), ["case", "sigma_real", "sigma_synthetic", "ratio"])
    (out / "report.md").write_text(markdown_report(summary, comparisons, info))


def _summary_table(summary: list[dict[str, Any]]) -> list[str]:
    index = {(r["method"], r["metric"]): r for r in summary}
    methods = [*(_arm_label(a) for a in ARMS), LINEAR, ACQUIRED]
    lines = ["| method | " + " | ".join(LABELS[m] for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for method in methods:
        cells = []
        for metric in METRICS:
            r = index.get((method, metric))
            digits = 2 if metric.endswith("psnr") else 4
            cells.append(
                ""
                if r is None
                else f"{_f(r['mean'], digits)} [{_f(r['ci_low'], digits)}, {_f(r['ci_high'], digits)}]"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _comparison_table(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| metric | A | B | mean A − B [95 % CI] | Wilcoxon p | Holm p | cases A better |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        digits = 2 if c["metric"].endswith("psnr") else 4
        lines.append(
            f"| {LABELS[c['metric']]} | {c['a']} | {c['b']} | {_f(c['mean_difference'], digits)} "
            f"[{_f(c['ci_low'], digits)}, {_f(c['ci_high'], digits)}] | {format_p(c['p_value'])} | "
            f"{format_p(c['p_holm'])} | {c['a_better']}/{c['n']} |"
        )
    return lines


def _runs_table(info: dict[str, Any]) -> list[str]:
    timings = info.get("timings", {})
    lines = [
        "| arm | run folder | training cases | iterations | stopped by | training loop (s) "
        "| call incl. data (s) | it/s | training L1 / 1 − SSIM (last 10 %) "
        "| val PSNR / SSIM (real val cases) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        r = info["runs"][arm]
        v, loss = r.get("validation") or {}, r.get("final_loss") or {}
        lines.append(
            f"| {arm} | `{r['folder']}` | {r['train_cases']} | "
            f"{r['iterations']} / {r['target_iterations']} | "
            f"{r['stopped_by']} | {r['wall_time_s']} | {timings.get(f'train_{RUN_NAMES[arm]}_s', '–')} | "
            f"{r['it_per_s']} | {_f(loss.get('l1'))} / {_f(loss.get('ssim_loss'))} | "
            f"{_f(v.get('psnr'), 2)} / {_f(v.get('ssim'))} |"
        )
    return lines


def _reading(summary: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: which arm is best on each primary metric and whether the differences hold."""
    index = {(r["method"], r["metric"]): r for r in summary}
    lines = []
    for metric in ("brain_psnr", "brain_ssim", "brain_mae", "clean_psnr", "enhancing_mae"):
        means = {a: index[(_arm_label(a), metric)]["mean"] for a in ARMS if (_arm_label(a), metric) in index}
        if len(means) < len(ARMS):
            continue
        pick = max if metric.endswith(("psnr", "ssim")) else min
        best = pick(means, key=means.get)
        held = [
            c
            for c in comparisons
            if c["metric"] == metric and best in (c["a"], c["b"]) and math.isfinite(c["p_holm"])
        ]
        sig = [c for c in held if c["p_holm"] < 0.05]
        digits = 2 if metric.endswith("psnr") else 4
        vs = "; ".join(
            f"vs {c['b'] if c['a'] == best else c['a']}: "
            f"{_f(abs(c['mean_difference']), digits)} (Holm p {format_p(c['p_holm'])})"
            for c in held
        )
        lines.append(
            f"- {LABELS[metric]}: best **{best}** ({_f(means[best], digits)}); {vs}; "
            f"{len(sig)} of {len(held)} differences significant after Holm."
        )
    return lines


PAPER = {
    "synthetic": "Table 1 (site 1, real 33 % test images): real 39.07 dB / SSIM 0.974, NP-synthesized only "
    "37.15 dB / 0.960, i.e. −1.92 dB",
    "real+synthetic": "site 2: real 40.04 dB, real + NP-synthesized 40.37 dB (+0.33 dB, p < 0.001)",
}


def _answers(comparisons: list[dict[str, Any]]) -> list[str]:
    """The experiment's two questions answered from the comparisons with the real arm (arm − real)."""
    index = {(c["a"], c["b"], c["metric"]): c for c in comparisons}
    lines = []
    for arm, question in (
        ("synthetic", "Synthetic low doses *instead of* real ones"),
        ("real+synthetic", "Synthetic low doses *added to* the real ones"),
    ):
        parts, verdict = [], "not measured"
        for metric, unit, digits in (
            ("brain_psnr", " dB", 2),
            ("brain_ssim", "", 4),
            ("brain_mae", "", 4),
            ("clean_psnr", " dB", 2),
        ):
            c = index.get(("real", arm, metric))
            if c is None:
                continue
            d, lo, hi = -c["mean_difference"], -c["ci_high"], -c["ci_low"]
            parts.append(
                f"{LABELS[metric]} {d:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}] "
                f"(Holm p {format_p(c['p_holm'])}, {c['n'] - c['a_better']}/{c['n']} cases better)"
            )
            if metric == "brain_psnr":
                significant = math.isfinite(c["p_holm"]) and c["p_holm"] < 0.05
                verdict = (
                    "no significant difference in PSNR"
                    if not significant
                    else ("it helps (PSNR)" if d > 0 else "it hurts (PSNR)")
                )
        lines.append(
            f"- **{question}** ({arm} − real, mean [95 % CI]): {'; '.join(parts) or 'no comparison'}. "
            f"Verdict: {verdict}. The paper: {PAPER[arm]}."
        )
    return lines


def _noise_lines(noise: list[dict[str, Any]]) -> list[str]:
    from vce_core.evaluate.stats import bootstrap_ci

    if not noise:
        return []
    ratio = np.array([r["ratio"] for r in noise])
    low, high = bootstrap_ci(ratio)
    real = np.mean([r["sigma_real"] for r in noise])
    syn = np.mean([r["sigma_synthetic"] for r in noise])
    consequence = (
        "The synthetic arm learns from low doses cleaner than the real ones it is tested on."
        if high < 1
        else "The synthetic arm learns from low doses noisier than the real ones."
        if low > 1
        else "The interval includes 1."
    )
    return [
        "## Noise of the training low doses",
        "",
        "Noise SD of the subtraction image `x_LD − x_NA` (`vce_core.metrics.noise_sigma`, 3-D, brain "
        f"without enhancing tissue) over the {len(noise)} training cases (`noise.csv`): real {real:.2f}, "
        f"synthetic {syn:.2f} (scanner units); ratio synthetic / real {ratio.mean():.3f} "
        f"[{low:.3f}, {high:.3f}] (1 = the synthetic low doses carry the acquisition's noise). {consequence}",
        "",
    ]


def _generator_note(info: dict[str, Any]) -> list[str]:
    """What the synthetic arm's training pairs are made of (from the generator's card)."""
    base = info.get("generator_base")
    lines = [
        f"The generator (content loss `{info.get('generator_content_loss')}` in "
        f"`{info.get('generator_content_space')}` space, "
        f"{'with' if info.get('generator_critic') else 'without'} a critic, base `{base}`) is conditioned "
        "on the standard dose: each synthetic low dose is computed from the very standard dose the predictor "
        "is trained to output."
    ]
    if base == "linear":
        lines.append(
            "With the linear base, `x̂_LD = x_NA + d·(x_SD − x_NA) + G(·)`: the synthetic low dose carries "
            "the target's own noise scaled by d, so in the synthetic pairs the target is nearly a function "
            "of the input (compare the arms' training losses above)."
        )
    elif base == "physics":
        lines.append(
            "With the physics base, `x̂_LD = x_NA + r_phys(x_NA, x_SD, d) + G(·)`, the physics baseline's "
            "residual (the SPGR signal inverted from x_NA and x_SD, ΔR1 scaled by d) plus texture-only "
            "heads: the synthetic low dose carries the target's own noise scaled by about d, and the "
            "heads add noise of their own (compare the arms' training losses above)."
        )
    return [" ".join(lines), ""]


def markdown_report(
    summary: list[dict[str, Any]], comparisons: list[dict[str, Any]], info: dict[str, Any]
) -> str:
    """The Markdown report (figures from the CSVs written next to it)."""
    timings = info.get("timings", {})
    lines = [
        "# Seed 000's augmentation experiment: real vs synthetic vs real + synthetic low doses",
        "",
        f"Command: `{info['command']}`",
        "",
        f"A 2.5-D U-Net standard-dose predictor (native + {info['dose']:g} low dose, 3 adjacent slices → "
        "standard dose; `vce_core/models/sd_predictor.py`, `configs/sd_predictor_2_5d.yaml`) trained three "
        f"times on the {info['train_cases']} training cases of {', '.join(info['data'])}, then evaluated on "
        f"the *real* {info['dose']:g} low doses of the {info['test_cases']} held-out cases in "
        f"{', '.join(info['test'])}.",
        "",
        f"- Synthetic low doses: generator `{info['generator']}` (`{info['generator_name']}`, weights "
        f"SHA-256 `{(info.get('generator_sha256') or '–')[:16]}…`), dose "
        f"{info['dose']:g}, noise seed `SeedSequence([{info['seed']}, case index])` per case; one synthetic "
        "case folder per training case, every image but the low dose a link to the real case "
        f"(synthesis {timings.get('synthesis_s', '–')} s in all, one CPU thread).",
        "- Arms: **real** (real low doses), **synthetic** (synthetic low doses only), **real+synthetic** "
        "(both folder sets, twice the cases, the same iteration budget).",
        f"- Evaluation: {timings.get('evaluation_s', '–')} s. Every image in the case's native percentile "
        "normalisation (0.5/99.5 % of the native brain → 0/1); brain mask of the native image; PSNR's data "
        "range is the reference's range in the brain; SSIM is scikit-image's 7-voxel 3-D SSIM averaged over "
        "the brain.",
        "",
        "## Training runs",
        "",
        *_runs_table(info),
        "",
        *_generator_note(info),
        "## Results (mean over cases [95 % bootstrap CI])",
        "",
        *_summary_table(summary),
        "",
        f"*{LINEAR}*: `x_NA + (x_LD − x_NA)/d`, no training (the classic dose-scaling baseline: it amplifies "
        f"the low dose's noise by 1/d). *{ACQUIRED}*: the acquisition against the phantom's noise-free "
        "standard dose, i.e. the noise floor of the metrics against the acquired reference.",
        "",
        "## Paired comparisons between the arms",
        "",
        "Mean paired difference A − B over cases with its 95 % bootstrap CI, two-sided Wilcoxon signed-rank "
        "p, and Holm's adjustment over every comparison in this table.",
        "",
        *_comparison_table(comparisons),
        "",
        *_noise_lines(info.get("noise", [])),
        "## Reading (generated from the figures above)",
        "",
        *_answers(comparisons),
        "",
        "Best arm per metric:",
        "",
        *_reading(summary, comparisons),
        "",
    ]
    return "\n".join(lines)


# ============================================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    from vce_core.evaluate.common import command_line, run_cli

    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.augmentation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", nargs="+", default=["data/phantom/train"], help="real training cases")
    parser.add_argument("--val-data", nargs="*", default=["data/phantom/val"], help="real validation cases")
    parser.add_argument("--test", nargs="+", default=["data/heldout_s4242/test"], help="real test cases")
    parser.add_argument("--work", default="runs/augmentation_s4242", help="synthetic cases and runs")
    parser.add_argument("--out", default="reports/augmentation_s4242", help="report folder")
    parser.add_argument("--config", default="configs/sd_predictor_2_5d.yaml", help="predictor config")
    parser.add_argument("--generator", help="low-dose generator (default: the default one in assets/models)")
    parser.add_argument("--dose", type=float, default=0.33, help="low dose of the predictor (fraction)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the synthesis")
    parser.add_argument("--iterations", type=int, help="iterations per arm (default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS)
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep complete synthetic cases and finished runs"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    result = run_cli(run, args, steps=steps, command=command_line("vce_core.evaluate.augmentation", argv))
    if result is None:
        return 2
    if "summary" in result:
        print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
