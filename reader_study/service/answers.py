"""Answers as a reader gives them → the ``(value, confidence)`` pairs stored per question."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError

from ..models import Question

MAX_TEXT = 5000
"""Longest free-text answer, in characters."""

StoredAnswer = tuple[str, int | None]
"""(value as text, confidence 1–5 or None)."""


def score(raw: Any, what: str) -> int:
    """A 1–5 score from 4, "4" or "4 – good"; ``what`` names the question in the error."""
    if isinstance(raw, bool):
        raise VCEInputError(f"{what}: {raw!r} is not a score from 1 to 5")
    if isinstance(raw, int | np.integer):
        value = int(raw)
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip()[:1].isdigit():
        value = int(raw.strip()[0])
    else:
        raise VCEInputError(f"{what}: {raw!r} is not a score from 1 to 5")
    if not 1 <= value <= 5:
        raise VCEInputError(f"{what}: {value} is not a score from 1 to 5")
    return value


def _real_vs_synthetic(question: Question, raw: Any) -> StoredAnswer:
    """``{"value": "real"|"synthetic", "confidence": 1–5}`` or a 2-tuple → (value, confidence)."""
    confidence = None
    if isinstance(raw, Mapping):
        raw, confidence = raw.get("value"), raw.get("confidence")
    elif isinstance(raw, tuple | list) and len(raw) == 2:
        raw, confidence = raw
    if raw not in ("real", "synthetic"):
        raise VCEInputError(f"{question.text}: answer 'real' or 'synthetic'")
    if confidence is None:
        raise VCEInputError(f"please give your confidence for: {question.text}")
    return str(raw), score(confidence, f"{question.text} (confidence)")


def _answer(question: Question, raw: Any) -> StoredAnswer:
    """One given answer (not empty) checked against its question."""
    if question.kind == "likert":
        return str(score(raw, question.text)), None
    if question.kind == "real_vs_synthetic":
        return _real_vs_synthetic(question, raw)
    if question.kind == "single_choice":
        if str(raw) not in question.options.get("choices", []):
            raise VCEInputError(f"{question.text}: {raw!r} is not one of the choices")
        return str(raw), None
    text = str(raw).strip()
    if len(text) > MAX_TEXT:
        raise VCEInputError(f"{question.text}: the text is longer than {MAX_TEXT} characters")
    return text, None


def validate_answers(questions: Sequence[Question], answers: Mapping[str, Any]) -> dict[int, StoredAnswer]:
    """Check the answers of one item against the study's questions.

    ``answers`` maps question keys to values: likert 1–5 (int or "4"), single choice (one of the choices),
    real_vs_synthetic ``{"value": "real"|"synthetic", "confidence": 1–5}`` (or a 2-tuple), free text.
    Unanswered optional questions are left out. Returns ``{question id: (value, confidence)}``.
    """
    known = {q.key for q in questions}
    unknown = set(answers) - known
    if unknown:
        raise VCEInputError(f"unknown questions {sorted(unknown)}", expected=f"keys from {sorted(known)}")
    out: dict[int, StoredAnswer] = {}
    for q in questions:
        raw = answers.get(q.key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if q.required:
                raise VCEInputError(f"please answer: {q.text}")
            continue
        out[q.id] = _answer(q, raw)
    return out
