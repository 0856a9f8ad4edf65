"""Noise calibration of a low-dose generator with a base: scale its heads so that its subtraction noise is
the acquisition's by one measure, on cases it was not trained on.

    python -m vce_core.evaluate.calibrate --model assets/models/<m> --data data/phantom/val \
        --doses 0.1 0.2 0.33 --noise-seeds 0 --measure sigma|residual --target 1.0 \
        --out assets/models/<m>_nc [--name ...]

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

Choose the calibration cases outside every test set (the phantom's ``val`` split): the scale is fitted on
them, so a report on them would not be held out.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, run_cli

__all__ = ["NoiseScans", "calibrate_noise", "measure_scans", "ratio_at", "write_calibrated"]

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
    from tqdm import tqdm

    from vce_core.checkpoint import read_card
    from vce_core.data import apply_normalization, find_case_folders, fit_normalization
    from vce_core.evaluate.heldout import load_eval_case
    from vce_core.evaluate.lowdose import _check_doses, _check_seeds, heads_off_synthesizer
    from vce_core.preprocess import brain_mask

    doses, seeds = _check_doses(doses), _check_seeds(noise_seeds)
    synth = heads_off_synthesizer(model, device=device)  # VCEInputError without a base
    scales = (0.0, 1.0) if split else (float(read_card(model).config.get("texture_scale", 1.0)),)
    scans = NoiseScans()
    for folder in tqdm(find_case_folders(data), desc="cases", disable=not show_progress):
        ec = load_eval_case(folder, lesion_slices=lesion_slices, extra_slices=extra_slices)
        for seed in ec.noise_seeds(list(seeds)):
            native, sd = ec.inputs(seed)
            params = fit_normalization(native, np.asarray(brain_mask(native), dtype=bool), "percentile")
            prep = synth.prepare(native, sd, sequence=ec.sequence)
            norm = lambda a, p=params: apply_normalization(a, p)  # noqa: E731
            nat = norm(native[:, :, ec.slices])
            mask = ec.noise_mask[:, :, ec.slices]
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
                truth = None if t_d is None or t_0 is None else norm(t_d) - norm(t_0)
                heads = out[1] - out[0] if split else np.zeros_like(out[0])
                scans.add(ec.case_id, dose, out[0], heads, mask, norm(acquired) - nat, truth)
    if not len(scans):
        raise VCEInputError(
            f"no case acquired any of the doses {doses}", expected="phantom cases with these low doses"
        )
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
    """Write the calibrated copy of checkpoint ``model`` to ``out`` (a new folder; module docstring)."""
    from vce_core.checkpoint import WEIGHTS_FILE, read_card, write_card

    model, out = Path(model), Path(out)
    if out.exists():
        raise VCEInputError(
            "the output folder exists", path=out, expected="a new folder for the calibrated copy"
        )
    card = read_card(model)
    scale = float(fit["texture_scale"])
    per_dose = lambda r: {f"{d:g}": round(v, 4) for d, v in r.items() if d != "mean"}  # noqa: E731
    label = MEASURES[fit["measure"]].split(" (")[0]
    record = {
        "parent": str(model),
        "texture_scale": scale,
        "measure": fit["measure"],
        "target": fit["target"],
        "data": [str(d) for d in data],
        "cases": fit["cases"],
        "noise_seeds": list(noise_seeds),
        "ratio_as_trained": per_dose(fit["ratio_as_trained"]),
        "ratio_calibrated": per_dose(fit["ratio_calibrated"]),
        "command": command,
    }
    if "other" in fit:
        other = fit["other"]
        record[f"{other['measure']}_as_trained"] = per_dose(other["as_trained"])
        record[f"{other['measure']}_calibrated"] = per_dose(other["calibrated"])
    training = dict(card.training)
    training["noise_calibration"] = record
    config_rec = dict(training.get("config", {}))
    deviations = list(config_rec.get("deviations", []))
    deviations.append(
        f"noise calibrated after training: heads × {scale:.3f} so that the subtraction's {label} is "
        f"{fit['target']:g} on {fit['cases']} cases of {', '.join(map(str, data))} "
        f"(as trained {fit['ratio_as_trained']['mean']:.3f})"
    )
    config_rec["deviations"] = deviations
    training["config"] = config_rec
    name = name or out.name
    new = card.with_changes(
        name=name,
        display_name=display_name or f"{card.display_name}, noise calibrated",
        config={**card.config, "texture_scale": scale},
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


def main(argv: Sequence[str] | None = None) -> int:
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
    parser.add_argument("--out", help="write the calibrated copy to this new checkpoint folder")
    parser.add_argument("--name", help="its card's name (default: the folder's name)")
    parser.add_argument(
        "--display-name", help="its label in reports (default: the parent's + ', noise calibrated')"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    command = command_line("vce_core.evaluate.calibrate", argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.out and Path(args.out).exists():  # before minutes of measuring
        print(f"error: the output folder exists: {args.out}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    scans = run_cli(measure_scans, args)
    fit = None if scans is None else run_cli(calibrate_noise, args, scans=scans)
    if fit is None:
        return 2
    _print_fit(fit)
    print(f"measured in {time.perf_counter() - t0:.0f} s")
    if args.out:
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


if __name__ == "__main__":
    raise SystemExit(main())
