"""Answering: store the answers of one item in one transaction, idempotently.

Submitting the same answers twice (double click, retry after a timeout) stores one row per question: the
database's UNIQUE(reader, item, question, iteration) makes a duplicate impossible; the service inserts,
catches the IntegrityError and compares with what is stored (portable, no dialect-specific ON CONFLICT).
``duration_ms`` is the server time between serving and storing the item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from vce_core.errors import VCEInputError

from ..auth import Actor, check_actor, enrolled_study
from ..errors import AccessDenied, AnswerConflict, StudyStateError
from ..models import Answer, Assignment, AuditEvent, Item, Reader, Study, Submission, as_utc, utcnow
from .answers import StoredAnswer, validate_answers
from .base import ServiceBase, audit_denials, current_iteration, first_open_position
from .reading import next_in
from .views import ServedItem, SubmitResult


def _time_on_task(a: Assignment, now: datetime) -> int | None:
    """Milliseconds from serving assignment ``a`` to ``now`` (None if it was never served)."""
    served = as_utc(a.served_at)
    return None if served is None else max(0, int((now - served).total_seconds() * 1000))


@dataclass(frozen=True)
class _Target:
    """Where the answers of one submit go: the assignment (reader × item × iteration) of a study."""

    study: Study
    reader: Reader
    item: Item
    assignment: Assignment

    def answers_where(self) -> tuple[ColumnElement[bool], ...]:
        """SQL conditions selecting the answers of this assignment."""
        return (
            Answer.reader_id == self.reader.id,
            Answer.item_id == self.item.id,
            Answer.iteration == self.assignment.iteration,
        )

    def stored(self, s: Session) -> dict[int, StoredAnswer]:
        """``{question id: (value, confidence)}`` stored for this assignment."""
        rows = s.execute(
            select(Answer.question_id, Answer.value, Answer.confidence).where(*self.answers_where())
        )
        return {qid: (value, confidence) for qid, value, confidence in rows}

    def row(self, question_id: int, answer: StoredAnswer, now: datetime, duration: int | None) -> Answer:
        """A new Answer row for one question: ``answer`` is (value, confidence)."""
        value, confidence = answer
        return Answer(
            study_id=self.study.id,
            reader_id=self.reader.id,
            item_id=self.item.id,
            question_id=question_id,
            assignment_id=self.assignment.id,
            iteration=self.assignment.iteration,
            value=value,
            confidence=confidence,
            created_at=now,
            duration_ms=duration,
        )

    def audit(self, action: str, **detail: Any) -> AuditEvent:
        """An audit event of the reader about this item and iteration."""
        return AuditEvent(
            actor_id=self.reader.id,
            study_id=self.study.id,
            action=action,
            detail={"item": self.item.public_id, "iteration": self.assignment.iteration, **detail},
        )


def _target(s: Session, study: Study, reader: Reader, public_id: str) -> tuple[_Target, int | None]:
    """The assignment that answers to item ``public_id`` go to, and the reader's current iteration.

    That is the current iteration's assignment while it is open; once answered (a retry, or a change after
    going back), the latest answered iteration of the item.
    """
    item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == study.id))
    if item is None:
        raise AccessDenied("No such item in your study.")
    iteration, opens = current_iteration(s, study, reader)
    assignments = {
        a.iteration: a
        for a in s.scalars(
            select(Assignment).where(Assignment.reader_id == reader.id, Assignment.item_id == item.id)
        )
    }
    if not assignments:
        raise AccessDenied("No such item in your study.")
    a = assignments.get(iteration) if iteration is not None else None
    if a is None or a.completed_at is not None:
        answered = [it for it, x in assignments.items() if x.completed_at is not None]
        if not answered:
            raise StudyStateError("This item is not open for answers yet.")
        a = assignments[max(answered)]
    elif opens is not None and opens > utcnow():
        raise StudyStateError("The washout period of the next reading is still running.")
    return _Target(study, reader, item, a), iteration


def _store(s: Session, target: _Target, values: dict[int, StoredAnswer]) -> SubmitResult:
    """First answers of an open assignment: it must be the reader's next item."""
    a = target.assignment
    if a.position != first_open_position(s, target.reader.id, target.study.id, a.iteration):
        raise StudyStateError("Please answer the items in the order they are shown.")
    now = utcnow()
    duration = _time_on_task(a, now)
    for qid, answer in values.items():
        s.add(target.row(qid, answer, now, duration))
    a.completed_at = now
    s.add(target.audit("answer_stored", questions=len(values)))
    s.flush()
    return SubmitResult("stored", len(values), duration)


def _duplicate(s: Session, target: _Target) -> SubmitResult:
    """The same answers again: nothing written but an audit event; the first submit's duration."""
    s.add(target.audit("duplicate_submit"))
    durations = s.scalars(select(Answer.duration_ms).where(*target.answers_where()).limit(1))
    return SubmitResult("duplicate", 0, next(iter(durations), None))


def _change(
    s: Session, target: _Target, stored: dict[int, StoredAnswer], values: dict[int, StoredAnswer]
) -> SubmitResult:
    """Replace the stored answers of ``target`` by ``values``; the previous ones go to the audit trail."""
    now = utcnow()
    duration = _time_on_task(target.assignment, now)
    rows = {r.question_id: r for r in s.scalars(select(Answer).where(*target.answers_where()))}
    changed = 0
    for qid in set(stored) | set(values):
        if stored.get(qid) == values.get(qid):
            continue
        changed += 1
        if qid not in values:
            s.delete(rows[qid])
        elif qid in rows:
            rows[qid].value, rows[qid].confidence = values[qid]
            rows[qid].created_at, rows[qid].duration_ms = now, duration
        else:
            s.add(target.row(qid, values[qid], now, duration))
    s.add(target.audit("answer_changed", before={str(k): list(v) for k, v in stored.items()}))
    return SubmitResult("changed", changed, duration)


def _resubmit(
    s: Session, target: _Target, iteration: int | None, values: dict[int, StoredAnswer]
) -> SubmitResult:
    """Answers for an answered assignment: a duplicate, an allowed change, or a conflict."""
    stored = target.stored(s)
    if stored == values:
        return _duplicate(s, target)
    same_iteration = iteration is None or target.assignment.iteration == iteration
    if not target.study.allow_back or not same_iteration:
        raise AnswerConflict("This item is already answered and this study does not allow changes.")
    return _change(s, target, stored, values)


def _ticket_target(s: Session, reader: Reader, ticket: str) -> tuple[_Target, int | None]:
    """The reader's assignment named ``ticket`` and the reader's current iteration of its study.

    Refuses a ticket of another reader exactly like an unknown one, a study that is not open, an
    assignment of an iteration that is not open yet, and one whose washout is still running.
    """
    a = s.scalar(
        select(Assignment)
        .where(Assignment.ticket == str(ticket or "")[:64])
        .options(joinedload(Assignment.item))
    )
    if a is None or a.reader_id != reader.id:
        raise AccessDenied("No such item in your study.")
    study = s.get(Study, a.study_id)
    assert study is not None
    if study.status != "open":
        raise StudyStateError("This study is not open for reading.")
    iteration, opens = current_iteration(s, study, reader)
    if a.completed_at is None:
        if a.iteration != iteration:
            raise StudyStateError("This item is not open for answers yet.")
        if opens is not None and opens > utcnow():
            raise StudyStateError("The washout period of the next reading is still running.")
    return _Target(study, reader, a.item, a), iteration


def _replayed(s: Session, reader: Reader, key: str, target: _Target) -> SubmitResult | None:
    """The outcome of an earlier submit with idempotency ``key`` (None: the key is new)."""
    done = s.scalar(select(Submission).where(Submission.reader_id == reader.id, Submission.key == key))
    if done is None:
        return None
    if done.assignment_id != target.assignment.id:
        raise AnswerConflict("This submission was already used for another image; reload the page.")
    durations = s.scalars(select(Answer.duration_ms).where(*target.answers_where()).limit(1))
    return SubmitResult("duplicate", 0, next(iter(durations), None))


def _submit_in(s: Session, reader: Reader, ticket: str, key: str, answers: Mapping[str, Any]) -> SubmitResult:
    """A submit inside the caller's write session (see :meth:`Answering.submit`)."""
    target, iteration = _ticket_target(s, reader, ticket)
    replay = _replayed(s, reader, key, target)
    if replay is not None:
        return replay
    result = _answer(s, target, iteration, answers)
    s.add(Submission(reader_id=reader.id, key=key, assignment_id=target.assignment.id, status=result.status))
    return result


def _check_key(key: str) -> str:
    key = str(key or "")
    if not 8 <= len(key) <= 64:
        raise VCEInputError("a submission needs an idempotency key of 8 to 64 characters")
    return key


class Answering(ServiceBase):
    """The reader's answers (every call checks enrolment and the reading order)."""

    @audit_denials
    def submit(self, actor: Actor, ticket: str, key: str, answers: Mapping[str, Any]) -> SubmitResult:
        """Store the answers of the assignment named ``ticket`` (see :class:`ServedItem`), once per ``key``.

        ``key`` is the idempotency key of this submit (8–64 characters, unique per reader): replaying the
        same request returns ``duplicate`` and writes nothing; a key reused for another item is refused.
        The ticket names the item, so a replay, a retry or a second browser tab can never store answers
        for any other item. ``answers`` as in :meth:`submit_answers`.
        """
        key = _check_key(key)

        def once() -> SubmitResult:
            with self.db.write() as s:
                return _submit_in(s, _locked_reader(s, actor), ticket, key, answers)

        return _retry_once(once)

    @audit_denials
    def submit_and_next(
        self, actor: Actor, ticket: str, key: str, answers: Mapping[str, Any], study: str
    ) -> tuple[str, ServedItem]:
        """:meth:`submit`, then the reader's next item of ``study`` (:meth:`next_item`), in one transaction.

        Returns the submit's status (``stored``, ``duplicate``, ``changed``, or ``conflict``: the item was
        already answered differently, e.g. in another window; nothing stored) and the next item.
        """
        key = _check_key(key)

        def once() -> tuple[str, ServedItem]:
            with self.db.write() as s:
                reader = _locked_reader(s, actor)
                _, st = enrolled_study(s, actor, study)  # (the ticket's study is then read from the session)
                try:
                    status = _submit_in(s, reader, ticket, key, answers).status
                except AnswerConflict:  # raised before anything is written
                    status = "conflict"
                return status, next_in(s, reader, st, self._decoded)

        return _retry_once(once)

    @audit_denials
    def submit_answers(
        self, actor: Actor, study: str, public_id: str, answers: Mapping[str, Any]
    ) -> SubmitResult:
        """Store the answers of one item (all questions at once) for the reader's current iteration.

        ``answers`` maps question keys to values: likert 1–5 (int or "4"), single choice (one of the
        choices), real_vs_synthetic ``{"value": "real"|"synthetic", "confidence": 1–5}`` (or a 2-tuple),
        free text. Idempotent: the same answers again → ``duplicate`` and nothing written. Different answers
        for an answered item → ``changed`` if the study allows going back, else :class:`AnswerConflict`.
        Only the next unanswered item (or, with back navigation, an earlier one) can be answered.
        Trusted callers (CLI, tests) name the item by its ``public_id``; readers' browsers use :meth:`submit`.
        """

        def once() -> SubmitResult:
            with self.db.write() as s:
                reader, st = enrolled_study(s, actor, study)
                _locked_reader(s, actor)
                if st.status != "open":
                    raise StudyStateError("This study is not open for reading.")
                target, iteration = _target(s, st, reader, public_id)
                return _answer(s, target, iteration, answers)

        return _retry_once(once)


def _answer(s: Session, target: _Target, iteration: int | None, answers: Mapping[str, Any]) -> SubmitResult:
    """Validate ``answers`` and store them for ``target`` (first answers, duplicate or allowed change)."""
    values = validate_answers(target.study.questions, answers)
    if target.assignment.completed_at is not None:
        return _resubmit(s, target, iteration, values)
    return _store(s, target, values)


def _locked_reader(s: Session, actor: Actor) -> Reader:
    """The caller's reader account, row-locked for this transaction (PostgreSQL: ``FOR UPDATE``; a SQLite
    write transaction locks the whole database), so the submits of one reader run one after the other on
    every database and in every worker process."""
    reader = check_actor(s, actor)
    if reader is None:
        raise AccessDenied("Reading needs a reader account.")
    if s.get_bind().dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises all writers
        s.execute(select(Reader.id).where(Reader.id == reader.id).with_for_update())
    return reader


def _retry_once(once: Callable[[], SubmitResult]) -> SubmitResult:
    """Run a submit; on a unique-constraint race (another worker stored the same answers a moment earlier)
    run it once more, which then finds the stored answers."""
    for attempt in range(2):
        try:
            return once()
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")
