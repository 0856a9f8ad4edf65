"""Reading: what a reader sees — the study's instructions, the next item (exact resume), back navigation
and the item's images. Answers are stored by :mod:`reader_study.service.answering`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload

from ..auth import Actor, check_actor, enrolled_study
from ..errors import AccessDenied
from ..models import Answer, Assignment, Item, Question, Reader, Study, utcnow
from .base import ServiceBase, audit_denials, current_iteration, first_open_position, study_named
from .views import QuestionView, ServedItem

Images = Callable[[Session, int], list[np.ndarray]]
"""``images(session, item id)``: an item's slices read in that session (``ServiceBase._decoded``)."""


def _iteration_queue(reader: Reader, study: Study, iteration: int) -> Select[tuple[Assignment]]:
    """The reader's assignments of one iteration of ``study``."""
    return select(Assignment).where(
        Assignment.reader_id == reader.id,
        Assignment.study_id == study.id,
        Assignment.iteration == iteration,
    )


def _count(s: Session, query: Select[Any]) -> int:
    return s.scalar(select(func.count()).select_from(query.subquery())) or 0


def _answers_of(s: Session, a: Assignment) -> dict[str, Any]:
    """Stored answers of assignment ``a`` by question key (real-vs-synthetic as value and confidence)."""
    rows = s.execute(
        select(Question.key, Question.kind, Answer.value, Answer.confidence)
        .join(Question, Question.id == Answer.question_id)
        .where(Answer.reader_id == a.reader_id, Answer.item_id == a.item_id, Answer.iteration == a.iteration)
    )
    return {
        k: ({"value": v, "confidence": c} if kind == "real_vs_synthetic" else v) for k, kind, v, c in rows
    }


def _serve(s: Session, study: Study, a: Assignment, total: int, done: int, images: Images) -> ServedItem:
    """Stamp ``a`` as served now and describe it, with its slices (``images(s, item id)``)."""
    a.served_at = utcnow()
    return ServedItem(
        status="item",
        public_id=a.item.public_id,
        ticket=a.ticket,
        focus=a.item.case.focus,
        plane=a.item.case.plane,
        position=a.position + 1,
        total=total,
        iteration=a.iteration,
        iterations=study.repeat_reads,
        n_slices=a.item.n_slices,
        done=done,
        can_back=study.allow_back and a.position > 0,
        answers=_answers_of(s, a) if a.completed_at is not None else {},
        images=tuple(images(s, a.item_id)),
    )


def next_in(s: Session, reader: Reader, st: Study, images: Images) -> ServedItem:
    """The reader's next unanswered item of ``st``, stamped as served, with its slices (``images``), inside
    the caller's write session."""
    if st.status != "open":
        return ServedItem(status="closed", iterations=st.repeat_reads)
    iteration, opens = current_iteration(s, st, reader)
    if iteration is None:
        total = _count(s, _iteration_queue(reader, st, st.repeat_reads))
        return ServedItem(
            status="done", total=total, done=total, iteration=st.repeat_reads, iterations=st.repeat_reads
        )
    if opens is not None and opens > utcnow():
        return ServedItem(
            status="washout", iteration=iteration, iterations=st.repeat_reads, available_at=opens
        )
    queue = _iteration_queue(reader, st, iteration).subquery()
    total, done = s.execute(select(func.count(), func.count(queue.c.completed_at))).one()
    a = s.scalar(
        _iteration_queue(reader, st, iteration)
        .where(Assignment.completed_at.is_(None))
        .order_by(Assignment.position)
        .limit(1)
        .options(joinedload(Assignment.item).joinedload(Item.case))  # what _serve reads, in one query
    )
    assert a is not None
    return _serve(s, st, a, total, done, images)


def _owns(s: Session, reader: Reader, item: Item) -> bool:
    """Whether ``item`` is in the reader's queue (any iteration)."""
    owned = s.scalar(
        select(Assignment.id).where(Assignment.reader_id == reader.id, Assignment.item_id == item.id).limit(1)
    )
    return owned is not None


class Reading(ServiceBase):
    """The reader's side of a study (every call checks enrolment)."""

    @audit_denials
    def study_view(self, actor: Actor, study: str) -> dict[str, Any]:
        """What a reader needs to start: instructions, questions, options (nothing about conditions)."""
        with self.db.read() as s:
            _, st = enrolled_study(s, actor, study)
            return {
                "name": st.name,
                "instructions": st.instructions,
                "allow_back": st.allow_back,
                "show_reference": st.show_reference,
                "iterations": st.repeat_reads,
                "questions": [QuestionView.of(q) for q in st.questions],
            }

    @audit_denials
    def next_item(self, actor: Actor, study: str) -> ServedItem:
        """The reader's next unanswered item (exact resume) and stamp the time it is served."""
        with self.db.write() as s:
            reader, st = enrolled_study(s, actor, study)
            return next_in(s, reader, st, self._decoded)

    @audit_denials
    def item_at(self, actor: Actor, study: str, position: int) -> ServedItem:
        """Back navigation: the item at 1-based ``position`` of the current iteration, if the study allows it
        and the position is not beyond the next unanswered item."""
        with self.db.write() as s:
            reader, st = enrolled_study(s, actor, study)
            if st.status != "open":
                return ServedItem(status="closed", iterations=st.repeat_reads)
            iteration = current_iteration(s, st, reader)[0] or st.repeat_reads
            queue = _iteration_queue(reader, st, iteration)
            first_open = first_open_position(s, reader.id, st.id, iteration)
            total = _count(s, queue)
            limit = total - 1 if first_open is None else first_open
            if not st.allow_back and position - 1 != limit:
                raise AccessDenied("This study does not allow going back to earlier items.")
            if not 0 <= position - 1 <= limit:
                raise AccessDenied("That item is not available yet.")
            a = s.scalar(queue.where(Assignment.position == position - 1))
            assert a is not None
            done = _count(s, queue.where(Assignment.completed_at.is_not(None)))
            return _serve(s, st, a, total, done, self._decoded)

    @audit_denials
    def item_images(self, actor: Actor, study: str, public_id: str) -> list[np.ndarray]:
        """The item's slices as read-only 2-D uint8 arrays, for a reader assigned to it (or an admin)."""
        with self.db.read() as s:
            reader = check_actor(s, actor)
            is_admin = reader is None or reader.role == "admin"
            st = study_named(s, study) if is_admin else enrolled_study(s, actor, study)[1]
            item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == st.id))
            if item is None or not (is_admin or _owns(s, reader, item)):
                raise AccessDenied("No such item in your study.")
            return self._decoded(s, item.id)

    @audit_denials
    def reference_images(self, actor: Actor, study: str, public_id: str) -> list[np.ndarray]:
        """The standard-dose reference slices of the item's case (studies with ``show_reference``)."""
        with self.db.read() as s:
            reader, st = enrolled_study(s, actor, study)
            item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == st.id))
            if item is None or not _owns(s, reader, item) or not st.show_reference:
                raise AccessDenied("No reference for this item.")
            ref = s.scalar(select(Item.id).where(Item.case_id == item.case_id, Item.is_reference.is_(True)))
            if ref is None:
                raise AccessDenied("No reference for this item.")
            return self._decoded(s, ref)

    def _ticket_item(self, s: Session, actor: Actor, ticket: str) -> tuple[Reader, Assignment]:
        """The caller's assignment named ``ticket`` (another reader's ticket is refused like a wrong one)."""
        reader = check_actor(s, actor)
        a = s.scalar(select(Assignment).where(Assignment.ticket == str(ticket or "")[:64]))
        if reader is None or a is None or a.reader_id != reader.id:
            raise AccessDenied("No such item in your study.")
        return reader, a

    @audit_denials
    def ticket_reference(self, actor: Actor, ticket: str) -> list[np.ndarray]:
        """The standard-dose reference slices of the case of the caller's item ``ticket``
        (studies with ``show_reference``)."""
        with self.db.read() as s:
            _, a = self._ticket_item(s, actor, ticket)
            st = s.get(Study, a.study_id)
            ref = s.scalar(select(Item.id).where(Item.case_id == a.item.case_id, Item.is_reference.is_(True)))
            if st is None or not st.show_reference or ref is None:
                raise AccessDenied("No reference for this item.")
            return self._decoded(s, ref)

    def previous_item(self, actor: Actor, ticket: str) -> ServedItem:
        """Back navigation from the caller's item ``ticket``: the item before it (see :meth:`item_at`)."""
        with self.db.read() as s:
            _, a = self._ticket_item(s, actor, ticket)
            study = s.get(Study, a.study_id)
            assert study is not None
            name, position = study.name, a.position
        if position < 1:
            raise AccessDenied("There is no earlier item.")
        return self.item_at(actor, name, position)
