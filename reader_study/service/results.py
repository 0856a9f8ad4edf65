"""Results: progress per reader, every answer as a long table, the questions and the audit trail."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import func, select

from vce_core.errors import VCEInputError

from ..auth import Actor, check_actor, enrolled_study
from ..models import Answer, Assignment, AuditEvent, Case, Item, Question, Reader, as_utc
from .base import ServiceBase, audit_denials, study_named
from .views import QuestionView

_ANSWER_FIELDS = {
    "reader": Reader.display_name,
    "reader_id": Reader.id,
    "case": Case.case_key,
    "item": Item.public_id,
    "condition": Item.condition,
    "dose": Item.dose,
    "generator": Item.generator,
    "question": Question.key,
    "question_kind": Question.kind,
    "value": Answer.value,
    "confidence": Answer.confidence,
    "iteration": Answer.iteration,
    "created_at": Answer.created_at,
    "duration_ms": Answer.duration_ms,
}
"""Columns of :meth:`Results.answers_frame` after ``study``, each with what the query reads into it."""
ANSWER_COLUMNS = list(_ANSWER_FIELDS)

_ANSWER_QUERY = (
    select(*_ANSWER_FIELDS.values())
    .join(Reader, Reader.id == Answer.reader_id)
    .join(Item, Item.id == Answer.item_id)
    .join(Case, Case.id == Item.case_id)
    .join(Question, Question.id == Answer.question_id)
    .order_by(Reader.id, Answer.iteration, Answer.created_at, Item.id, Question.position)
)


class Results(ServiceBase):
    """What an administrator reads out of a study (readers: only their own progress)."""

    @audit_denials
    def progress(self, actor: Actor, study: str, reader_id: int | None = None) -> dict[str, Any]:
        """``{"done", "total", "iterations"}`` over all iterations. Readers: only their own."""
        with self.db.read() as s:
            me = check_actor(s, actor)
            if reader_id is None or (me is not None and reader_id == me.id):
                if me is None:
                    raise VCEInputError("progress of which reader?")
                _, st = enrolled_study(s, actor, study)
                reader_id = me.id
            else:
                check_actor(s, actor, admin=True)
                st = study_named(s, study)
            base = (
                select(Assignment)
                .where(Assignment.reader_id == reader_id, Assignment.study_id == st.id)
                .subquery()
            )
            total = s.scalar(select(func.count()).select_from(base)) or 0
            done = (
                s.scalar(select(func.count()).select_from(base).where(base.c.completed_at.is_not(None))) or 0
            )
            return {"done": done, "total": total, "iterations": st.repeat_reads}

    @audit_denials
    def progress_all(self, actor: Actor, study: str) -> pd.DataFrame:
        """Admin: one row per enrolled reader (reader, reader_id, done, total, percent, last answer as UTC
        ISO 8601 text, None before the first answer)."""
        with self.db.read() as s:
            check_actor(s, actor, admin=True)
            st = study_named(s, study)
            rows = s.execute(
                select(
                    Reader.id,
                    Reader.display_name,
                    func.count(Assignment.id),
                    func.count(Assignment.completed_at),
                    func.max(Assignment.completed_at),
                )
                .join(Assignment, Assignment.reader_id == Reader.id)
                .where(Assignment.study_id == st.id)
                .group_by(Reader.id, Reader.display_name)
                .order_by(Reader.id)
            ).all()
        frame = pd.DataFrame(rows, columns=["reader_id", "reader", "total", "done", "last_answer"])
        frame["last_answer"] = [
            None if t is None or pd.isna(t) else as_utc(t).isoformat(timespec="seconds")
            for t in frame["last_answer"]
        ]
        frame["percent"] = (100.0 * frame["done"] / frame["total"].where(frame["total"] > 0)).round(1)
        return frame[["reader", "reader_id", "done", "total", "percent", "last_answer"]]

    @audit_denials
    def answers_frame(self, actor: Actor, study: str) -> pd.DataFrame:
        """Admin: every answer of a study as a long table (one row per answer).

        Columns: study, reader, reader_id, case, item, condition, dose, generator, question, question_kind,
        value, confidence, iteration, created_at (UTC ISO 8601), duration_ms.
        """
        with self.db.read() as s:
            check_actor(s, actor, admin=True)
            st = study_named(s, study)
            rows = s.execute(_ANSWER_QUERY.where(Answer.study_id == st.id)).all()
            name = st.name
        frame = pd.DataFrame(rows, columns=ANSWER_COLUMNS)
        frame.insert(0, "study", name)
        frame["created_at"] = [as_utc(t).isoformat(timespec="milliseconds") for t in frame["created_at"]]
        frame["confidence"] = frame["confidence"].astype("Int64")
        frame["duration_ms"] = frame["duration_ms"].astype("Int64")
        return frame

    @audit_denials
    def questions(self, actor: Actor, study: str) -> list[QuestionView]:
        """Admin: the study's questions in order."""
        with self.db.read() as s:
            check_actor(s, actor, admin=True)
            return [QuestionView.of(q) for q in study_named(s, study).questions]

    @audit_denials
    def audit_log(self, actor: Actor, study: str | None = None, limit: int = 200) -> pd.DataFrame:
        """Admin: the latest audit events (all studies, or one), newest first."""
        with self.db.read() as s:
            check_actor(s, actor, admin=True)
            q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if study is not None:
                q = q.where(AuditEvent.study_id == study_named(s, study).id)
            rows = [(as_utc(e.created_at), e.actor_id, e.action, e.detail) for e in s.scalars(q)]
        return pd.DataFrame(rows, columns=["created_at", "actor_id", "action", "detail"])
