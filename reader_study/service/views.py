"""What the service hands out: plain frozen values with nothing that unblinds a reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..models import Question


@dataclass(frozen=True)
class QuestionView:
    """What a reader is asked (no condition, dose, generator or case in it)."""

    key: str
    kind: str
    text: str
    required: bool
    options: dict[str, Any]

    @classmethod
    def of(cls, question: Question) -> QuestionView:
        """The view of a stored question."""
        return cls(question.key, question.kind, question.text, question.required, dict(question.options))


@dataclass(frozen=True)
class ServedItem:
    """The item a reader should read now, or why there is none.

    ``status``: ``item`` (read ``public_id``), ``done`` (every iteration answered), ``washout`` (the next
    iteration opens at ``available_at``, UTC), ``closed`` (the study is not open). ``position`` is 1-based
    within the iteration; ``answers`` are the stored answers when the item was already answered (back
    navigation). ``ticket`` names this reader's assignment of the item: what a browser sends back with
    its answers (:meth:`ReaderStudyService.submit`); ``public_id`` stays on the server. ``focus`` is the
    0-based slice the item opens on (its case's most relevant slice). ``images``: the item's slices
    (read-only uint8), read in the transaction that served it (empty when there is no item).
    """

    status: str
    public_id: str | None = None
    position: int = 0
    total: int = 0
    iteration: int = 1
    iterations: int = 1
    n_slices: int = 0
    done: int = 0
    can_back: bool = False
    answers: dict[str, Any] = field(default_factory=dict)
    available_at: datetime | None = None
    ticket: str | None = None
    focus: int = 0
    plane: str = "axial"
    images: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of :meth:`ReaderStudyService.submit_answers`: ``stored`` new rows, ``duplicate`` (the same
    answers were already stored: nothing written), or ``changed`` (allowed change of earlier answers).
    ``duration_ms`` is the server time between serving and storing the item (None if never served)."""

    status: str
    rows: int
    duration_ms: int | None
