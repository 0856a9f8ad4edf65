"""The images of a new study: every item of one case rendered once (no database here).

Each case gets one plane, one set of slices and one display window (from its standard dose), shared by
all its conditions so that they differ only by their content (see :mod:`reader_study.render`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import render
from ..spec import CONDITION_TASKS, ConditionSpec, StudySpec

ACQUIRED_DOSES = {"real_standard_dose": 1.0, "native": 0.0}
"""Dose (fraction of the standard dose) of the conditions that are acquired at a fixed dose."""
REFERENCE_CONDITION = "real_standard_dose"
"""Condition of the reference image shown next to each item (``show_reference``)."""


@dataclass(frozen=True)
class RenderedItem:
    """One stimulus: ``condition`` at ``dose`` (fraction of the standard dose) by ``generator``, as PNGs.

    ``is_reference``: the case's standard dose shown next to the items, never assigned to a reader.
    """

    condition: str
    dose: float | None
    generator: str | None
    pngs: list[bytes]
    is_reference: bool = False


@dataclass(frozen=True)
class RenderedCase:
    """A case of a new study: its ``key`` (case id), where it came from, and its rendered items."""

    key: str
    folder: Path
    plane: str
    slices: list[int]
    window: tuple[float, float]
    items: list[RenderedItem]
    focus: int = 0


def _render_item(
    case: Any,
    cond: ConditionSpec,
    synth: Any,
    plane: str,
    slices: list[int],
    window: tuple[float, float],
    seed: int,
) -> RenderedItem:
    floats = render.render_condition(case, cond.condition, cond.dose, synth, plane, slices, seed=seed)
    generator_name = None
    if cond.generator is not None:
        generator_name = getattr(synth, "name", None) or cond.generator
    dose = ACQUIRED_DOSES.get(cond.condition, cond.dose)
    return RenderedItem(cond.condition, dose, generator_name, render.render_stack(floats, window))


def render_case(
    case: Any,
    key: str,
    folder: Path,
    spec: StudySpec,
    case_index: int,
    generator: Callable[[str, str], Any],
) -> RenderedCase:
    """Render every condition of ``spec`` (and the reference when shown) for one loaded case.

    ``case`` is a :class:`vce_core.io.Case`; ``generator(name, task)`` returns the synthesizer of a
    condition with a generator (``task``: :data:`reader_study.spec.CONDITION_TASKS` of the condition: a
    low-dose generator, or a virtual-contrast model). Synthesis is seeded with
    ``spec.seed * 1000 + case_index``.
    """
    native = np.asarray(case.native.data, dtype=np.float32)
    standard = np.asarray(case.standard_dose.data, dtype=np.float32)
    plane, slices = render.choose_slices(native, standard, spec.slices)
    focus = render.focus_position(native, standard, plane, slices)
    window = render.case_window(standard, plane, slices)
    seed = spec.seed * 1000 + case_index
    items = []
    for cond in spec.conditions:
        task = CONDITION_TASKS.get(cond.condition)
        synth = generator(cond.generator, task) if task and cond.generator is not None else None
        items.append(_render_item(case, cond, synth, plane, slices, window, seed))
    if spec.options["show_reference"]:
        floats = render.render_condition(case, REFERENCE_CONDITION, None, None, plane, slices)
        items.append(RenderedItem(REFERENCE_CONDITION, 1.0, None, render.render_stack(floats, window), True))
    return RenderedCase(key, folder, plane, slices, window, items, focus)
