"""SQLAlchemy 2 ORM of a reader study.

The domain is modelled explicitly and the database enforces the invariants, so that a bug in the service
cannot store a duplicate answer or an assignment twice:

``Study``       one blinded reading experiment (name unique, status draft → open → closed, options).
``Question``    what a reader answers for every item (likert 1–5 with labelled anchors, single choice,
                real-vs-synthetic with a 1–5 confidence, free text).
``Case``        one subject (case folder) of a study, with the display window shared by all its items.
``Item``        one rendered stimulus: a case shown under one *condition* (real standard dose, real low dose,
                synthetic low dose, linear baseline, ...) at a dose (fraction of the standard dose) with a
                generator; ``public_id`` is the only identifier a reader ever sees.
``ItemImage``   the item's rendered slices: uint8 grey PNG bytes (no text chunks), rendered once at creation.
``Reader``      a person (role reader or admin) identified by a hashed access token.
``Enrollment``  reader × study.
``Assignment``  the reader's seeded reading order: (reader, study, iteration, position) → item.
``Answer``      one value per (reader, item, question, iteration); ``duration_ms`` from server timestamps.
``Submission``  one accepted submit per (reader, idempotency key): a replay finds it and stores nothing.
``ReaderSession`` a log-in: the SHA-256 of a random session secret (the browser holds it in an HttpOnly
                cookie, API clients in a header), bound to the account, with an expiry.
``AuditEvent``  who did what, when.
``SchemaVersion`` the schema version, checked when the database is opened.

No SQLite-only SQL: the schema runs on PostgreSQL unchanged.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 2
"""Bump when the schema changes; :func:`reader_study.db.open_database` refuses other versions."""

STUDY_STATUSES = ("draft", "open", "closed")
QUESTION_KINDS = ("likert", "single_choice", "real_vs_synthetic", "free_text")
ROLES = ("reader", "admin")
CONDITIONS = (
    "real_standard_dose",
    "real_low_dose",
    "synthetic_low_dose",
    "linear_baseline",
    "virtual_contrast",
    "native",
)
"""Known conditions. ``real_*`` and ``native`` are acquired images; the others are computed."""
REAL_CONDITIONS = frozenset({"real_standard_dose", "real_low_dose", "native"})
"""Conditions whose images were acquired (truth "real" in the real-vs-synthetic question)."""


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the only clock the service uses)."""
    return datetime.now(UTC)


def as_utc(dt: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (SQLite returns naive datetimes: the UTC they were stored as)."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def new_ticket() -> str:
    """A random 128-bit name (22 URL-safe characters) for an assignment."""
    return secrets.token_urlsafe(16)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of every reader-study table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SchemaVersion(Base):
    """Single-row table holding :data:`SCHEMA_VERSION` of the database."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class Study(Base):
    """A blinded reading experiment."""

    __tablename__ = "study"
    __table_args__ = (
        CheckConstraint(_in("status", STUDY_STATUSES), name="ck_study_status"),
        CheckConstraint("repeat_reads >= 1", name="ck_study_repeat_reads"),
        CheckConstraint("washout_days >= 0", name="ck_study_washout"),
        CheckConstraint("min_distance >= 0", name="ck_study_min_distance"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    instructions: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    allow_back: Mapped[bool] = mapped_column(Boolean, default=False)
    show_reference: Mapped[bool] = mapped_column(Boolean, default=False)
    repeat_reads: Mapped[int] = mapped_column(Integer, default=1)
    washout_days: Mapped[float] = mapped_column(Float, default=0.0)
    min_distance: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    questions: Mapped[list[Question]] = relationship(
        back_populates="study", order_by="Question.position", cascade="all, delete-orphan"
    )
    cases: Mapped[list[Case]] = relationship(back_populates="study", cascade="all, delete-orphan")
    items: Mapped[list[Item]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Question(Base):
    """One question asked for every item of a study.

    ``options`` holds ``{"anchors": {"1": "poor", ..., "5": "excellent"}}`` for likert and the confidence
    anchors of real_vs_synthetic, ``{"choices": [...]}`` for single_choice, ``{}`` for free_text.
    """

    __tablename__ = "question"
    __table_args__ = (
        UniqueConstraint("study_id", "key", name="uq_question_key"),
        UniqueConstraint("study_id", "position", name="uq_question_position"),
        CheckConstraint(_in("kind", QUESTION_KINDS), name="ck_question_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    study: Mapped[Study] = relationship(back_populates="questions")


class Case(Base):
    """One subject of a study; ``window_low``/``window_high`` are the display window of all its items and
    ``focus`` the position (0-based, in ``slices``) of its most relevant slice, where every item opens."""

    __tablename__ = "case"
    __table_args__ = (
        UniqueConstraint("study_id", "case_key", name="uq_case_key"),
        CheckConstraint("window_high > window_low", name="ck_case_window"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    case_key: Mapped[str] = mapped_column(String(200))
    source_path: Mapped[str] = mapped_column(Text, default="")
    window_low: Mapped[float] = mapped_column(Float)
    window_high: Mapped[float] = mapped_column(Float)
    slices: Mapped[list[Any]] = mapped_column(JSON, default=list)
    plane: Mapped[str] = mapped_column(String(16), default="axial")
    focus: Mapped[int] = mapped_column(Integer, default=0)

    study: Mapped[Study] = relationship(back_populates="cases")
    items: Mapped[list[Item]] = relationship(back_populates="case")


class Item(Base):
    """A case under one condition; the reader only ever sees ``public_id``."""

    __tablename__ = "item"
    __table_args__ = (
        CheckConstraint("dose IS NULL OR (dose >= 0 AND dose <= 1)", name="ck_item_dose"),
        CheckConstraint("n_slices >= 1", name="ck_item_slices"),
        Index("ix_item_study_case", "study_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"))
    condition: Mapped[str] = mapped_column(String(64))
    dose: Mapped[float | None] = mapped_column(Float, nullable=True)
    generator: Mapped[str | None] = mapped_column(String(200), nullable=True)
    n_slices: Mapped[int] = mapped_column(Integer)
    is_reference: Mapped[bool] = mapped_column(Boolean, default=False)

    study: Mapped[Study] = relationship(back_populates="items")
    case: Mapped[Case] = relationship(back_populates="items")


class ItemImage(Base):
    """One rendered slice of an item: uint8 greyscale PNG without metadata chunks."""

    __tablename__ = "item_image"
    __table_args__ = (CheckConstraint("position >= 0", name="ck_item_image_position"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class Reader(Base):
    """A person who reads (role ``reader``) or runs studies (role ``admin``).

    The access token is never stored: ``token_id`` is its first :data:`TOKEN_ID_LENGTH` characters (an
    index, not unique) and ``token_hash`` its salted scrypt hash.
    """

    __tablename__ = "reader"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="ck_reader_role"),
        Index("ix_reader_token_id", "token_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="reader")
    token_id: Mapped[str] = mapped_column(String(32))
    token_salt: Mapped[bytes] = mapped_column(LargeBinary)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Enrollment(Base):
    """A reader taking part in a study."""

    __tablename__ = "enrollment"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"), primary_key=True)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """Position ``position`` (0-based) of iteration ``iteration`` (1-based) of a reader's order is ``item``.

    ``served_at`` is the server time the item was last shown (for ``duration_ms``); ``completed_at`` is set
    in the same transaction that stores the item's answers. ``ticket`` is a random name of this assignment:
    the only item identity a reader's browser holds and sends back with its answers (it names neither the
    item across readers nor the case, condition or position).
    """

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("reader_id", "study_id", "iteration", "position", name="uq_assignment_position"),
        UniqueConstraint("reader_id", "item_id", "iteration", name="uq_assignment_item"),
        CheckConstraint("iteration >= 1", name="ck_assignment_iteration"),
        CheckConstraint("position >= 0", name="ck_assignment_position"),
        Index("ix_assignment_reader_study", "reader_id", "study_id", "iteration", "completed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer)
    ticket: Mapped[str] = mapped_column(String(32), unique=True, default=new_ticket)
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    item: Mapped[Item] = relationship()


class Answer(Base):
    """One answer: at most one row per (reader, item, question, iteration), enforced by the database.

    ``value`` is text (``"4"`` for likert, the choice, ``"real"``/``"synthetic"``, free text);
    ``confidence`` (1–5) only for real_vs_synthetic.
    """

    __tablename__ = "answer"
    __table_args__ = (
        UniqueConstraint("reader_id", "item_id", "question_id", "iteration", name="uq_answer"),
        CheckConstraint(
            "confidence IS NULL OR (confidence >= 1 AND confidence <= 5)", name="ck_answer_confidence"
        ),
        CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="ck_answer_duration"),
        Index("ix_answer_study", "study_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[str] = mapped_column(Text)
    confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Submission(Base):
    """An accepted submit: ``key`` is the idempotency key the client sent with it (unique per reader).

    Written in the transaction that stores the answers, so a replay of the same request (same key) finds
    it and returns the first outcome without writing anything.
    """

    __tablename__ = "submission"
    __table_args__ = (UniqueConstraint("reader_id", "key", name="uq_submission_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReaderSession(Base):
    """A log-in of an account: only the SHA-256 (hex) of the session secret is stored."""

    __tablename__ = "reader_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEvent(Base):
    """Append-only log: login, study created/opened/closed, reader enrolled, answer stored/changed, ..."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_study", "study_id", "created_at"),
        Index("ix_audit_action", "action", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("reader.id", ondelete="SET NULL"), nullable=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
