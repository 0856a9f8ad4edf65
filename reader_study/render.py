"""Items → blinded uint8 images.

Every image a reader sees is made here, once, when a study is created:

1. the slices of a case are chosen (the ``count`` slices with the most contrast-enhancing voxels, the central
   ones, or explicit indices);
2. each condition of the case is rendered to float slices in image units (acquired volumes are sliced;
   synthetic low dose comes from :class:`vce_core.synthesis.Synthesizer`, and so does virtual contrast from
   a zero-dose model given the case's images without contrast; the linear baseline from
   :func:`vce_core.synthesis.linear_baseline`);
3. one display window per case — the 0.5 and 99.5 percentiles of the standard-dose image inside the brain
   mask of the chosen slices — maps every condition of the case to uint8, so conditions differ only by
   their content, never by their windowing;
4. slices are oriented for display (radiological convention: anterior up, patient's right on the left),
   resampled to square pixels from the case's voxel spacing, windowed and encoded as greyscale PNG from
   numpy, with no text chunks (no file name, no metadata).

Slicing, orientation, square pixels, window and PNG are :mod:`vce_core.display`, the renderer the explorer
uses too. Readers adjust window/level *on the stored uint8 image* with :func:`vce_core.display.apply_window`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vce_core import display
from vce_core.baselines import case_tr_flip
from vce_core.display import PLANES, Window, decode_png
from vce_core.domain import check_dose, match_dose
from vce_core.errors import VCEInputError
from vce_core.preprocess import brain_mask, ce_mask

from .models import CONDITIONS

__all__ = [
    "ContrastSynthesizerLike",
    "GeneratorLoader",
    "SynthesizerLike",
    "case_window",
    "check_task",
    "choose_slices",
    "contrast_slices",
    "decode_png",
    "focus_position",
    "load_generator",
    "render_condition",
    "render_stack",
    "resolve_generator",
    "slice_scores",
]


class SynthesizerLike(Protocol):
    """What rendering needs from :class:`vce_core.synthesis.Synthesizer`.

    When the object also has ``prepare`` and ``synthesize_slice`` (the real Synthesizer does), only the
    shown slices are synthesized.
    """

    name: str

    def synthesize(
        self,
        native: np.ndarray,
        standard_dose: np.ndarray,
        dose: float,
        field_strength: float,
        seed: int | None = None,
    ) -> np.ndarray: ...


class ContrastSynthesizerLike(Protocol):
    """What rendering a ``virtual_contrast`` item needs from :class:`vce_core.synthesis.Synthesizer` with
    ``task == "virtual_contrast"``: the standard dose synthesized from a :class:`vce_core.io.Case` (its
    native image and the inputs the card lists). With ``prepare_case`` and ``synthesize_slice`` (the real
    Synthesizer has both), only the shown slices are synthesized."""

    name: str
    task: str

    def synthesize_contrast(self, images: Any) -> np.ndarray: ...


def choose_slices(
    native: np.ndarray, standard_dose: np.ndarray, spec: dict[str, Any] | None
) -> tuple[str, list[int]]:
    """Pick the slices shown for a case.

    Parameters
    ----------
    native, standard_dose:
        float volumes (I, J, K) of the case, same grid.
    spec:
        ``{"select": "most_enhancing" | "center", "count": n, "plane": "axial"}`` or
        ``{"indices": [k1, k2, ...], "plane": "axial"}``; None means 5 most enhancing axial slices.
        ``most_enhancing`` ranks slices by the number of contrast-enhanced voxels
        (:func:`vce_core.preprocess.ce_mask` inside the brain mask); ties and enhancement-free cases fall
        back to the slices with the most brain.

    Returns
    -------
    (plane, ascending slice indices).
    """
    spec = dict(spec or {})
    plane = str(spec.get("plane", "axial"))
    if plane not in PLANES:
        raise VCEInputError(
            f"unknown plane {plane!r} in the slices spec", expected=f"one of {', '.join(PLANES)}"
        )
    axis = display.plane_axis(plane)
    n = native.shape[axis]
    if "indices" in spec:
        indices = spec["indices"]
        if (
            not isinstance(indices, list)
            or not indices
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
        ):
            raise VCEInputError(
                f"slices.indices {indices!r} is not a list of integers", expected="e.g. [40, 44, 48]"
            )
        for i in indices:
            if not 0 <= i < n:
                raise VCEInputError(f"slice index {i} is outside 0..{n - 1} of the {plane} plane")
        return plane, sorted(set(indices))
    select = spec.get("select", "most_enhancing")
    count = spec.get("count", 5)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise VCEInputError(f"slices.count {count!r} is not a positive integer")
    count = min(count, n)
    if select == "center":
        start = max(0, n // 2 - count // 2)
        return plane, list(range(start, min(n, start + count)))
    if select != "most_enhancing":
        raise VCEInputError(
            f"unknown slice selection {select!r}", expected="most_enhancing, center or indices"
        )
    order = np.argsort(-slice_scores(native, standard_dose, plane), kind="stable")[:count]
    return plane, sorted(int(i) for i in order)


def slice_scores(native: np.ndarray, standard_dose: np.ndarray, plane: str) -> np.ndarray:
    """Relevance of every slice of ``plane``: its contrast-enhanced voxels
    (:func:`vce_core.preprocess.ce_mask` inside the brain mask) plus its brain fraction (< 1, the
    tie-break). Shape ``(n slices,)``, float64."""
    axes = tuple(a for a in range(3) if a != display.plane_axis(plane))
    brain = brain_mask(standard_dose)
    enhancing = ce_mask(native, standard_dose, mask=brain)
    return enhancing.sum(axis=axes).astype(np.float64) + brain.sum(axis=axes) / (brain.size + 1.0)


def focus_position(native: np.ndarray, standard_dose: np.ndarray, plane: str, slices: Sequence[int]) -> int:
    """0-based position in ``slices`` of the most relevant slice (:func:`slice_scores`; first on ties):
    where every item of the case opens. Computed from the case, never from a condition."""
    scores = slice_scores(native, standard_dose, plane)
    return int(np.argmax([scores[k] for k in slices]))


def case_window(standard_dose: np.ndarray, plane: str, slices: Sequence[int]) -> tuple[float, float]:
    """Display window (low, high) of a case: 0.5/99.5 percentiles of the standard dose in the brain."""
    stack = np.stack([display.take_slice(standard_dose, plane, k) for k in slices])
    try:
        mask = brain_mask(stack.astype(np.float32))
        values = stack[mask] if mask.any() else stack.ravel()
    except VCEInputError:
        values = stack.ravel()
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if not high > low:
        high = low + 1.0
    return low, high


def _low_dose_volume(case: Any, dose: float) -> np.ndarray:
    """The acquired low dose of ``case`` at ``dose`` (matched with :func:`vce_core.domain.match_dose`)."""
    acquired = {float(d): vol for d, vol in case.low_doses.items()}
    found = match_dose(acquired, dose)
    if found is not None:
        return np.asarray(acquired[found].data, dtype=np.float32)
    have = ", ".join(f"{d:g}" for d in sorted(acquired)) or "none"
    raise VCEInputError(
        f"case {case.meta.get('case_id', '?')} has no acquired low dose {dose:g} (it has: {have})",
        expected="a dose listed in the case's case.json",
    )


def render_condition(
    case: Any,
    condition: str,
    dose: float | None,
    synthesizer: SynthesizerLike | ContrastSynthesizerLike | None,
    plane: str,
    slices: Sequence[int],
    *,
    seed: int = 0,
) -> list[np.ndarray]:
    """Display-ready float slices (image units) of one case under one condition.

    Conditions: ``real_standard_dose``, ``native``, ``real_low_dose`` (acquired dose from the case folder),
    ``synthetic_low_dose`` (generator at ``dose``), ``linear_baseline`` (``linear_baseline`` at ``dose``),
    ``virtual_contrast`` (with a ``synthesizer``: a virtual-contrast model given the inputs its card lists,
    see :func:`contrast_slices`; without one: the case's extra volume ``virtual_contrast``). ``dose`` is a
    fraction of the standard dose in [0, 1].

    Each slice is oriented for display and resampled to square pixels from the case's voxel spacing
    (:func:`vce_core.display.to_display`, the explorer's geometry), so a coronal slice of 1 × 1 × 3 mm data
    keeps its true aspect ratio. Returns float32 arrays ``(rows, cols)``, one per slice.
    """
    pixel_spacing = display.slice_spacing(tuple(case.native.spacing), plane)
    if condition == "synthetic_low_dose":
        volume_slices = _synthetic_slices(case, dose, synthesizer, plane, slices, seed)  # type: ignore[arg-type]
    elif condition == "virtual_contrast" and synthesizer is not None:
        volume_slices = contrast_slices(case, synthesizer, plane, slices)  # type: ignore[arg-type]
    else:
        volume = _condition_volume(case, condition, dose)
        volume_slices = _slices_of(case, condition, volume, plane, slices)
    return [display.to_display(s, pixel_spacing) for s in volume_slices]


def _condition_volume(case: Any, condition: str, dose: float | None) -> np.ndarray:
    """The float32 volume of every condition but ``synthetic_low_dose`` (see :func:`render_condition`)."""
    if condition == "real_standard_dose":
        return np.asarray(case.standard_dose.data, dtype=np.float32)
    if condition == "native":
        return np.asarray(case.native.data, dtype=np.float32)
    if condition == "real_low_dose":
        return _low_dose_volume(case, _need_dose(condition, dose))
    if condition == "linear_baseline":
        from vce_core.synthesis import linear_baseline

        native = np.asarray(case.native.data, dtype=np.float32)
        standard = np.asarray(case.standard_dose.data, dtype=np.float32)
        return np.asarray(linear_baseline(native, standard, _need_dose(condition, dose)), dtype=np.float32)
    if condition == "virtual_contrast":
        if "virtual_contrast" not in case.extra:
            raise VCEInputError(
                f"case {case.meta.get('case_id', '?')} has no virtual_contrast volume",
                expected="an extra volume named virtual_contrast in case.json",
            )
        return np.asarray(case.extra["virtual_contrast"].data, dtype=np.float32)
    raise VCEInputError(f"unknown condition {condition!r}", expected="one of " + ", ".join(CONDITIONS))


def _synthetic_slices(
    case: Any,
    dose: float | None,
    synthesizer: SynthesizerLike | None,
    plane: str,
    slices: Sequence[int],
    seed: int,
) -> list[np.ndarray]:
    """The generator's slices at ``dose`` in volume orientation: only the shown ones when it can
    (equal to slicing the synthesized volume with the same seed), else from the whole volume."""
    if synthesizer is None:
        raise VCEInputError(
            "condition synthetic_low_dose needs a generator", expected="generator: <checkpoint folder>"
        )
    d, field = _need_dose("synthetic_low_dose", dose), float(case.field_strength)
    native = np.asarray(case.native.data, dtype=np.float32)
    standard = np.asarray(case.standard_dose.data, dtype=np.float32)
    extra = {"sequence": case_tr_flip(case)} if getattr(synthesizer, "needs_sequence", False) else {}
    if hasattr(synthesizer, "prepare") and hasattr(synthesizer, "synthesize_slice"):
        prepared = synthesizer.prepare(native, standard, **extra)
        return [
            np.asarray(
                synthesizer.synthesize_slice(prepared, d, field, plane=plane, index=k, seed=seed),
                np.float32,
            )
            for k in slices
        ]
    volume = synthesizer.synthesize(native, standard, d, field, seed=seed, **extra)
    volume = np.asarray(volume, dtype=np.float32)
    return _slices_of(case, "synthetic_low_dose", volume, plane, slices)


def contrast_slices(
    case: Any, synthesizer: ContrastSynthesizerLike, plane: str, slices: Sequence[int]
) -> list[np.ndarray]:
    """A virtual-contrast model's slices of ``case`` (volume orientation, the native image's units).

    Only the shown slices when the model can (``prepare_case`` + ``synthesize_slice``: equal to slicing the
    synthesized volume), else from ``synthesize_contrast(case)``. A case lacking a required input of the
    model is a :class:`VCEInputError` naming the case and the input.
    """
    try:
        if hasattr(synthesizer, "prepare_case") and hasattr(synthesizer, "synthesize_slice"):
            prepared = synthesizer.prepare_case(case)
            return [
                np.asarray(synthesizer.synthesize_slice(prepared, plane=plane, index=k), np.float32)
                for k in slices
            ]
        volume = np.asarray(synthesizer.synthesize_contrast(case), dtype=np.float32)
    except VCEInputError as exc:
        raise VCEInputError(
            f"case {case.meta.get('case_id', '?')}, condition virtual_contrast: {exc.problem}",
            expected=exc.expected,
        ) from None
    return _slices_of(case, "virtual_contrast", volume, plane, slices)


def _slices_of(
    case: Any, condition: str, volume: np.ndarray, plane: str, slices: Sequence[int]
) -> list[np.ndarray]:
    """``slices`` of a condition's ``volume``, which must lie on the case's grid."""
    grid = np.shape(case.native.data)
    if volume.shape != grid:
        raise VCEInputError(f"condition {condition} rendered shape {volume.shape}, the case grid is {grid}")
    return [display.take_slice(volume, plane, k) for k in slices]


def _need_dose(condition: str, dose: float | None) -> float:
    if dose is None:
        raise VCEInputError(f"condition {condition} needs a dose", expected="a fraction of the standard dose")
    return check_dose(dose, name=f"the dose of condition {condition}")


def render_stack(slices: Sequence[np.ndarray], window: tuple[float, float]) -> list[bytes]:
    """PNG bytes of each display-ready slice (:func:`render_condition`) under the case window.

    ``window`` is ``(low, high)`` in image units (:func:`case_window`): ``low`` → 0, ``high`` → 255.
    A slice holding NaN or infinite values is refused (:class:`VCEInputError`): a study never stores one.
    """
    shown = Window.from_range(*window)
    pngs = []
    for image in slices:
        if not np.isfinite(image).all():
            raise VCEInputError("the rendered slice contains NaN or infinite values")
        pngs.append(display.encode_png(display.apply_window(image, shown)))
    return pngs


def _task_words(task: str) -> str:
    return task.replace("_", "-")


def resolve_generator(name: str, models_dir: str | Path, task: str = "low_dose") -> Path:
    """Checkpoint folder of generator ``name`` of ``task`` (``low_dose`` or ``virtual_contrast``) under
    ``models_dir``; ``"default"`` is the first one of that task listed (the card marked ``"default": true``,
    see :func:`vce_core.synthesis.list_checkpoints`). A checkpoint of another task is refused by name."""
    models_dir = Path(models_dir)
    from vce_core.synthesis import list_checkpoints

    folders = [Path(p) for p in list_checkpoints(models_dir, task=task)]
    if name == "default":
        if not folders:
            raise VCEInputError(
                f"no trained {_task_words(task)} generator found",
                path=models_dir,
                expected=f"a checkpoint folder (weights + card.json) whose card's task is {task}",
            )
        return folders[0]
    for folder in folders:
        if folder.name == name:
            return folder
    others = [Path(p).name for p in list_checkpoints(models_dir, task=None)]
    if name in others:
        raise VCEInputError(
            f"generator {name!r} is not a {_task_words(task)} model",
            path=models_dir,
            expected=f"a {_task_words(task)} generator: "
            + (", ".join(sorted(f.name for f in folders)) or "none"),
        )
    known = ", ".join(sorted(f.name for f in folders)) or "none"
    raise VCEInputError(
        f"no {_task_words(task)} generator named {name!r} (available: {known})", path=models_dir
    )


def load_generator(name: str, models_dir: str | Path, task: str = "low_dose") -> SynthesizerLike:
    """A ready :class:`vce_core.synthesis.Synthesizer` for generator ``name`` of ``task``."""
    from vce_core.synthesis import Synthesizer

    return Synthesizer.from_checkpoint(resolve_generator(name, models_dir, task))


def check_task(synthesizer: Any, name: str, condition: str, task: str) -> None:
    """Refuse a loaded generator whose ``task`` (``low_dose`` when it has none) is not the condition's."""
    has = getattr(synthesizer, "task", "low_dose")
    if has != task:
        raise VCEInputError(
            f"generator {name!r} is a {_task_words(has)} model; condition {condition} needs a "
            f"{_task_words(task)} model",
            expected=f"a checkpoint whose card says task {task}",
        )


GeneratorLoader = Callable[[str], SynthesizerLike]
