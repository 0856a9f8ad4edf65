"""Domain values with one validation rule each: dose, field strength and the T1 sequence.

* **Dose** is a fraction of the standard dose everywhere in the code: 0 is the native (pre-contrast)
  image, 1 the standard dose, 0.33 a third of it. Percent appears only at the user-interface edge
  (:func:`dose_from_percent`, :func:`parse_percent_list`, :func:`format_dose`).
* **Field strength** is in tesla, in ``(0, 12]`` (clinical 0.55–3 T, research up to 11.7 T).
* **T1 sequence** (what the physics baseline and physics-base generators need): repetition time in ms,
  ``(0, 10000]``, and flip angle in degrees, ``(0, 180)`` (:func:`check_t1_sequence`).
* **Acquired doses** are looked up with one tolerance, :data:`DOSE_TOLERANCE` (half of the user
  interface's 1 % step), so "33 %" finds an acquisition stored as 0.333.

Every rule raises :class:`vce_core.errors.VCEInputError` (a ``ValueError``) with the value, its name and
what is accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .errors import VCEInputError

DOSE_MAX = 1.0
"""Largest dose of the product: the standard dose (the phantom goes to :data:`DOSE_MAX_PHANTOM`)."""

DOSE_MAX_PHANTOM = 2.0
"""Largest dose the phantom simulates (double-dose protocols)."""

DOSE_TOLERANCE = 0.005
"""Two doses closer than this (as fractions) are the same acquisition: half a percentage point."""

FIELD_STRENGTH_MAX_T = 12.0
"""Largest accepted field strength in tesla."""

TR_MAX_MS = 10_000.0
"""Longest accepted repetition time of the T1 sequence, in ms."""

_SPLIT = re.compile(r"[\s,;]+")


def _number(value: Any, name: str, expected: str) -> float:
    if isinstance(value, bool):
        raise VCEInputError(f"{name} {value!r} is not a number", expected=expected)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VCEInputError(f"{name} {value!r} is not a number", expected=expected) from None
    if not math.isfinite(number):
        raise VCEInputError(f"{name} {value!r} is not a finite number", expected=expected)
    return number


def check_dose(value: Any, *, name: str = "dose", positive: bool = False, maximum: float = DOSE_MAX) -> float:
    """``value`` as a dose fraction in ``[0, maximum]`` (``(0, maximum]`` when ``positive``).

    ``positive`` is for acquisitions and requested syntheses that must contain contrast agent; ``maximum``
    is :data:`DOSE_MAX` except in the phantom, which can simulate up to :data:`DOSE_MAX_PHANTOM`.
    """
    low = "(0" if positive else "[0"
    expected = f"a fraction of the standard dose in {low}, {maximum:g}] (0.25 = 25 %)"
    dose = _number(value, name, expected)
    if dose < 0 or dose > maximum or (positive and dose == 0):
        raise VCEInputError(f"{name} {value!r} is out of range", expected=expected)
    return dose


def check_doses(values: Iterable[Any], *, name: str = "doses", positive: bool = False) -> list[float]:
    """Non-empty doses → sorted list without duplicates, each checked by :func:`check_dose`."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise VCEInputError(f"{name} {values!r} is not a list of doses", expected="e.g. [0.1, 0.33]")
    doses = sorted(
        {check_dose(v, name=name[:-1] if name.endswith("s") else name, positive=positive) for v in values}
    )
    if not doses:
        raise VCEInputError(f"no {name} were given", expected="one or more fractions of the standard dose")
    return doses


def dose_from_percent(value: Any, *, name: str = "dose", positive: bool = False) -> float:
    """A dose typed in percent of the standard dose (user interface) → fraction, checked."""
    low = "above 0" if positive else "from 0"
    expected = f"a percentage of the standard dose {low} to 100"
    percent = _number(value, name, expected)
    if percent < 0 or percent > 100 or (positive and percent == 0):
        raise VCEInputError(f"{name} {_pct(percent)} % is out of range", expected=expected)
    return round(percent / 100.0, 6)


def parse_percent_list(text: str | None, *, name: str = "doses") -> list[float]:
    """Doses typed in percent ("10, 25, 33") → sorted unique fractions in ``(0, 1]``."""
    parts = [p for p in _SPLIT.split(str(text or "").strip()) if p]
    if not parts:
        raise VCEInputError(f"no {name} were given", expected="one or more doses in percent, e.g. 10, 25, 33")
    doses = set()
    for part in parts:
        try:
            percent = float(part.rstrip("%"))
        except ValueError:
            raise VCEInputError(
                f"'{part}' is not a number", expected="doses in percent, e.g. 10, 25, 33"
            ) from None
        doses.add(dose_from_percent(percent, name="the dose", positive=True))
    return sorted(doses)


def dose_percent(dose: float) -> float:
    """Dose fraction → percent (for display)."""
    return float(dose) * 100.0


def _pct(percent: float) -> str:
    return f"{percent:.3g}" if abs(percent) < 1000 else f"{percent:g}"


def format_dose(dose: float) -> str:
    """Dose fraction as a short percent label: 0.33 → ``"33 %"``, 0.125 → ``"12.5 %"``."""
    return f"{_pct(dose_percent(dose))} %"


def match_dose(available: Iterable[float], dose: float, tolerance: float = DOSE_TOLERANCE) -> float | None:
    """The dose of ``available`` nearest to ``dose`` if it lies within ``tolerance``, else None."""
    best = None
    for candidate in available:
        gap = abs(float(candidate) - float(dose))
        if gap <= tolerance and (best is None or gap < abs(best - float(dose))):
            best = float(candidate)
    return best


def check_field_strength(value: Any, *, name: str = "field strength") -> float:
    """``value`` in tesla, in ``(0, FIELD_STRENGTH_MAX_T]``."""
    expected = f"tesla in (0, {FIELD_STRENGTH_MAX_T:g}], e.g. 1.5 or 3"
    tesla = _number(value, name, expected)
    if not 0 < tesla <= FIELD_STRENGTH_MAX_T:
        raise VCEInputError(f"{name} {value!r} T is out of range", expected=expected)
    return tesla


def check_t1_sequence(tr_ms: Any, flip_deg: Any) -> tuple[float, float]:
    """``(TR in ms, flip angle in degrees)`` of a T1 sequence: TR in ``(0, TR_MAX_MS]``, flip in (0, 180)."""
    tr_expected = f"a repetition time in (0, {TR_MAX_MS:g}] ms"
    tr = _number(tr_ms, "TR", tr_expected)
    if not 0 < tr <= TR_MAX_MS:
        raise VCEInputError(f"TR {tr_ms!r} ms is out of range", expected=tr_expected)
    flip_expected = "a flip angle in (0, 180)°"
    flip = _number(flip_deg, "flip angle", flip_expected)
    if not 0 < flip < 180:
        raise VCEInputError(f"flip angle {flip_deg!r}° is out of range", expected=flip_expected)
    return tr, flip
