"""The generators of the studio: every checkpoint of a models folder, loaded once, and its model card.

No Gradio here. The explorer and the upload tab ask :class:`GeneratorRegistry` for a Synthesizer by name;
the model card summary is Markdown for the explorer's "Model card" panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vce_core.checkpoint import ModelCard, training_lineage
from vce_core.domain import format_dose
from vce_core.errors import VCEInputError


def _fmt_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_METRIC_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae_ce": "MAE_CE", "mae_sigma": "MAE_σ"}


def _metrics_line(metrics: Any) -> str | None:
    if not isinstance(metrics, dict):
        return None
    shown = [f"{label} {_fmt_metric(metrics[key])}" for key, label in _METRIC_NAMES.items() if key in metrics]
    return ", ".join(shown) or None


def _describe_set(part: Any) -> str | None:
    if not isinstance(part, dict):
        return None
    bits = [f"{part.get('count', '?')} cases"]
    if part.get("samples") is not None:
        bits.append(f"{part['samples']} samples")
    if part.get("field_strengths"):
        bits.append(" / ".join(f"{b:g} T" for b in part["field_strengths"]))
    if part.get("doses"):
        bits.append("doses " + ", ".join(format_dose(float(d)) for d in part["doses"]))
    return ", ".join(bits)


def field_strength_caveat(card: Any, field_strength: float) -> str | None:
    """A caution (Markdown) when ``field_strength`` (tesla) is none of the field strengths the generator was
    trained at, as its card's ``data.train.field_strengths`` records; None when it is one of them (within
    0.05 T) or the card does not say."""
    data = getattr(card, "data", None)
    train = data.get("train") if isinstance(data, dict) else None
    seen = train.get("field_strengths") if isinstance(train, dict) else None
    if not seen or any(abs(float(b) - float(field_strength)) <= 0.05 for b in seen):
        return None
    trained = " / ".join(f"{float(b):g} T" for b in seen)
    return (
        f"**Caution:** {getattr(card, 'display_name', 'this generator')} was trained at {trained} only, "
        f"so its images at {float(field_strength):g} T are not validated. In this project's hold-out test "
        "generators trained without 3 T gave 3 T images a fifth to a quarter of the real noise (two runs; "
        'README, "Generalisation").'
    )


def card_summary(card: ModelCard) -> str:
    """Markdown summary of a model card (:class:`vce_core.checkpoint.ModelCard`).

    Shows the architecture, the training and validation data, the training effort (iterations, wall time,
    hardware) and the held-out metrics: the card's ``held_out`` evaluation when one was added
    (:func:`vce_core.evaluate.update_card`), else its last ``validation`` metrics.
    """
    lines = [f"**{card.display_name}**", f"Architecture: `{card.model}` ({card.data_mode})"]
    if card.task == "virtual_contrast":
        optional = set(card.optional_inputs)
        names = [f"{n} (optional: a zero image when absent)" if n in optional else n for n in card.inputs]
        lines.append("Virtual contrast (no agent given) from: " + ", ".join(names))
    for label, part in (("Trained on", card.data.get("train")), ("Validated on", card.data.get("val"))):
        described = _describe_set(part)
        if described:
            lines.append(f"{label}: {described}")
    effort = _training_effort(card.training)
    if effort:
        lines.append("Training: " + effort)
    for line in (
        _calibration_line(card.training.get("noise_calibration")),
        _native_slope_line(card.training.get("native_slope_fit")),
    ):
        if line:
            lines.append(line)
    held_out = _metrics_line(card.held_out)
    if held_out:
        figures = card.held_out or {}
        scope = ""
        if figures.get("doses") and figures.get("cases"):
            doses = ", ".join(format_dose(float(d)) for d in figures["doses"])
            scope = f", mean over {figures['cases']} test cases at {doses} dose"
        lines.append(f"Held-out metrics (held-out{scope}): {held_out}")
        lines.extend(_truth_lines(figures))
    else:
        validation = _metrics_line(card.validation)
        lines.append(
            f"Held-out metrics (validation set): {validation}"
            if validation
            else "Held-out metrics: none recorded in the model card"
        )
    return "  \n".join(lines)


def _truth_lines(figures: dict[str, Any]) -> list[str]:
    """What the held-out report measured against the phantom's noise-free truth (seed 000's claims)."""
    lines = []
    error, versus = figures.get("lesion_error"), figures.get("lesion_error_vs") or {}
    if isinstance(error, float):
        rivals = ", ".join(
            f"{name} {value:.3g}" for name, value in versus.items() if isinstance(value, float)
        )
        scan = figures.get("lesion_error_real_scan")
        beside = [f"baselines: {rivals}"] if rivals else []
        if isinstance(scan, float):
            beside.append(f"the real scan at that dose: {scan:.3g}, its noise alone")
        lines.append(
            f"Lesion enhancement error |E − E_true| vs the noise-free truth: {error:.3g}"
            + (f" ({'; '.join(beside)})" if beside else "")
        )
    ratio = figures.get("sub_sigma_ratio")
    if isinstance(ratio, float):
        lines.append(
            f"Subtraction noise σ̂(image − native), synthetic / real: {ratio:.2f} (1 = the real noise)"
        )
    if lines and figures.get("report"):
        lines.append(f"Report: `{figures['report']}`")
    return lines


_MEASURE_LABELS = {"sigma": "σ̂ ratio", "residual": "residual SD ratio"}


def _calibration_line(record: Any) -> str:
    """The noise calibration of :mod:`vce_core.evaluate.calibrate` in one line ('' without one): the
    measure it matched, and the other measure's change beside it when the card has it."""
    if not isinstance(record, dict) or not isinstance(record.get("texture_scale"), int | float):
        return ""

    def change(before: Any, after: Any) -> str | None:
        if not (isinstance(before, dict) and before and isinstance(after, dict) and after):
            return None
        mean = lambda r: sum(r.values()) / len(r)  # noqa: E731
        return f"{mean(before):.2f} → {mean(after):.2f}"

    measure = record.get("measure", "sigma")
    parts = []
    for m in (measure, *(k for k in _MEASURE_LABELS if k != measure)):
        keys = (
            ("ratio_as_trained", "ratio_calibrated")
            if m == measure
            else (f"{m}_as_trained", f"{m}_calibrated")
        )
        moved = change(record.get(keys[0]), record.get(keys[1]))
        if moved:
            parts.append(f"{_MEASURE_LABELS.get(m, m)} {moved}")
    where = (
        f" on {record['cases']} cases of {', '.join(record.get('data') or [])}" if record.get("cases") else ""
    )
    figures = f" ({'; '.join(parts)}, 1 = the real noise)" if parts else ""
    return f"Noise calibrated after training: texture × {record['texture_scale']:.3f}{where}{figures}"


def _native_slope_line(record: Any) -> str:
    """The native-slope fit of :mod:`vce_core.evaluate.calibrate` in one line ('' without one)."""
    slopes = record.get("native_slope") if isinstance(record, dict) else None
    if not (isinstance(slopes, list) and len(slopes) == 2):
        return ""
    on = f" on {record['lesion_type']} lesions" if record.get("lesion_type") else ""
    if record.get("cases"):
        on += f" of {record['cases']} cases of {', '.join(record.get('data') or [])}"
    fields = record.get("per_field_strength") or {}
    parents = record.get("parent_native_slope") or [0.0, 0.0]
    at, cis = [], ""
    for slope, parent, field in zip(slopes, parents, ("1.5 T", "3 T"), strict=True):
        entry = fields.get(field) or {}
        ci = entry.get("lesion_slope_ci")  # of the change, so shifted by the parent's
        if entry.get("fitted") is False:
            at.append(f"{slope:.3f} at {field} (not fitted: the parent's)")
            continue
        at.append(
            f"{slope:.3f}" + (f" [{parent + ci[0]:.3f}, {parent + ci[1]:.3f}]" if ci else "") + f" at {field}"
        )
        cis = " (95 % CI over cases)" if ci else cis
    return (
        f"Native lesion contrast removed after training: the texture heads' copy of the native image's "
        f"detail, slope {' and '.join(at)}{cis}, fitted{on}"
    )


def _training_effort(training: dict[str, Any]) -> str:
    """Iterations, minutes and hardware of each run behind the training record, a fine-tuned run after its
    parent's: ``10000 iterations, 42.2 min, on … (parent_name); then 5000 iterations, 9.6 min, on …,
    training only t1_head``."""
    *parents, (_, own) = training_lineage(training)
    if not parents:
        return _run_effort(own)
    before = [
        f"{_run_effort(run) or 'training not recorded'} ({name or 'the parent run'})" for name, run in parents
    ]
    return "; then ".join([*before, _run_effort(own) or "fine-tuned"])


def _run_effort(training: dict[str, Any]) -> str:
    effort = []
    if training.get("iterations") is not None:
        effort.append(f"{training['iterations']} iterations")
    if training.get("wall_time_s") is not None:
        effort.append(f"{float(training['wall_time_s']) / 60:.1f} min")
    hw = training.get("hardware") or {}
    if isinstance(hw, dict) and (hw.get("gpu") or hw.get("cpu")):
        effort.append(f"on {hw.get('gpu') or hw.get('cpu')}")
    only = (training.get("config") or {}).get("train_only") or []
    if only:
        effort.append(f"training only {', '.join(only)}")
    return ", ".join(effort)


class GeneratorRegistry:
    """Every generator found in a models folder, loaded once at start-up.

    ``task`` picks the generators of one task (:func:`vce_core.checkpoint.list_checkpoints`): ``low_dose``
    for the dose explorer and uploads, ``virtual_contrast`` for the virtual-contrast view. ``errors`` lists,
    in plain words, the checkpoints that could not be loaded; the app shows them.
    """

    def __init__(self, models_dir: Path | str | None, task: str = "low_dose") -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.task = task
        self._synthesizers: dict[str, Any] = {}
        self.errors: list[str] = []
        if self.models_dir is None or not self.models_dir.is_dir():
            return
        from vce_core.synthesis import Synthesizer, list_checkpoints

        for folder in list_checkpoints(self.models_dir, task=task):
            try:
                synth = Synthesizer.from_checkpoint(folder, device="auto")
            except VCEInputError as exc:
                self.errors.append(f"{Path(folder).name}: {exc}")
                continue
            name = str(getattr(synth, "name", "") or Path(folder).name)
            if name in self._synthesizers:
                name = Path(folder).name
            self._synthesizers[name] = synth

    def names(self) -> list[str]:
        """Names of the loaded generators, default (first in the folder order) first."""
        return list(self._synthesizers)

    def get(self, name: str | None) -> Any:
        """The Synthesizer called ``name``; :class:`VCEInputError` if there is none."""
        if not self._synthesizers:
            raise VCEInputError(self.empty_message())
        if name not in self._synthesizers:
            raise VCEInputError(f"there is no generator called {name!r}", expected=", ".join(self.names()))
        return self._synthesizers[name]

    def summary(self, name: str | None) -> str:
        """Markdown card summary of a generator, or the 'nothing installed' message."""
        if not self._synthesizers:
            return self.empty_message()
        try:
            return card_summary(self.get(name).card)
        except VCEInputError as exc:
            return str(exc)

    def empty_message(self) -> str:
        """What to do when no generator is installed (and which checkpoints failed to load)."""
        where = self.models_dir if self.models_dir is not None else "the models folder"
        if self.task == "virtual_contrast":
            text = (
                f"No virtual-contrast model is installed in {where}. Train one (`python -m vce_core.train "
                "--config configs/hrfcn_2d.yaml ...`) or copy a checkpoint folder whose card says "
                '`"task": "virtual_contrast"` there and restart the app.'
            )
        else:
            text = (
                f"No generator installed in {where}. Train one (`python -m vce_core.train ...`) or copy a "
                "checkpoint folder (weights.safetensors + card.json) there and restart the app. Native, "
                "standard-dose, real and linear-baseline panels still work."
            )
        if self.errors:
            text += "\n\nCheckpoints that could not be loaded:\n" + "\n".join(f"- {e}" for e in self.errors)
        return text
