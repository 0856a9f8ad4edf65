"""Reader-study service: the only way the UI, the CLI and the benchmarks touch a study (no Gradio here).

Callers identify themselves with an :class:`Actor` obtained from :meth:`ReaderStudyService.authenticate`
(an access token) — or :data:`SYSTEM` for trusted local code (CLI, demo builder). Every method re-reads the
actor's role from the database and checks ownership: a reader reaches only their own queue, images and
answers of studies they are enrolled in; admin functions refuse readers (:class:`AccessDenied`).

Reading flow: :meth:`next_item` returns the exact next unanswered item of the reader's seeded order (and
stamps ``served_at``), :meth:`item_images` the item's uint8 slices, :meth:`submit_answers` stores the answers
of one item in one transaction. Submitting the same answers twice (double click, retry after a timeout)
stores one row per question: the database's UNIQUE(reader, item, question, iteration) makes a duplicate
impossible; the service inserts, catches the IntegrityError and compares with what is stored (portable, no
dialect-specific ON CONFLICT). ``duration_ms`` is the server time between serving and storing the item.

Study specs (YAML) are parsed and validated by :func:`parse_spec` before anything is rendered; see
``configs/studies/demo.yaml``.
"""

from __future__ import annotations

import functools
import glob as globlib
import hashlib
import hmac
import random
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vce_core.errors import VCEInputError

from . import render
from .db import Database, data_dir
from .models import (
    CONDITIONS,
    QUESTION_KINDS,
    Answer,
    Assignment,
    AuditEvent,
    Case,
    Enrollment,
    Item,
    ItemImage,
    Question,
    Reader,
    Study,
    utcnow,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN_ID_LENGTH = 8
MIN_TOKEN_LENGTH = 10
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class ReaderStudyError(RuntimeError):
    """Base of the service's errors that are not bad input."""


class AccessDenied(ReaderStudyError, PermissionError):
    """The caller may not do this (wrong role, not enrolled, not their data, invalid token)."""


class StudyStateError(ReaderStudyError):
    """The study is not in a state that allows this (closed, draft, washout running, ...)."""


class AnswerConflict(ReaderStudyError):
    """Different answers for an item that is already answered, and the study does not allow changes."""


# --------------------------------------------------------------------------------------------- study specs
DOSE_CONDITIONS = frozenset({"real_low_dose", "synthetic_low_dose", "linear_baseline"})
GENERATOR_CONDITIONS = frozenset({"synthetic_low_dose"})

DEFAULT_LIKERT_ANCHORS = {1: "non-diagnostic", 2: "poor", 3: "acceptable", 4: "good", 5: "excellent"}
DEFAULT_CONFIDENCE_ANCHORS = {1: "guessing", 2: "unsure", 3: "moderately sure", 4: "sure", 5: "certain"}
DEFAULT_QUESTIONS: list[dict[str, Any]] = [
    {
        "key": "overall_quality",
        "kind": "likert",
        "text": "Overall image quality",
        "anchors": DEFAULT_LIKERT_ANCHORS,
    },
    {
        "key": "lesion_conspicuity",
        "kind": "likert",
        "text": "Conspicuity of enhancing lesions",
        "anchors": {1: "not visible", 2: "barely visible", 3: "visible", 4: "well seen", 5: "excellent"},
    },
    {
        "key": "noise",
        "kind": "likert",
        "text": "Image noise (5 = no disturbing noise)",
        "anchors": {1: "severe", 2: "marked", 3: "moderate", 4: "mild", 5: "none"},
    },
    {
        "key": "real_or_synthetic",
        "kind": "real_vs_synthetic",
        "text": "Is this image a real acquisition or synthetic?",
        "confidence_anchors": DEFAULT_CONFIDENCE_ANCHORS,
    },
]
OPTION_DEFAULTS: dict[str, Any] = {
    "allow_back": False,
    "show_reference": False,
    "repeat_reads": 1,
    "washout_days": 0.0,
    "min_distance": 2,
}


@dataclass(frozen=True)
class ConditionSpec:
    """A condition of every case: ``condition`` at ``dose`` (fraction of standard dose) by ``generator``."""

    condition: str
    dose: float | None = None
    generator: str | None = None


@dataclass(frozen=True)
class QuestionSpec:
    """A question; ``options`` as stored in :class:`reader_study.models.Question`."""

    key: str
    kind: str
    text: str
    required: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudySpec:
    """A validated study spec."""

    name: str
    instructions: str
    seed: int
    case_folders: list[Path]
    conditions: list[ConditionSpec]
    slices: dict[str, Any]
    questions: list[QuestionSpec]
    readers: list[str]
    options: dict[str, Any]
    status: str = "draft"
    raw: dict[str, Any] = field(default_factory=dict)


def _err(problem: str, expected: str | None = None) -> VCEInputError:
    return VCEInputError(f"study spec: {problem}", expected=expected)


def _anchors(raw: Any, what: str, default: dict[int, str]) -> dict[str, str]:
    if raw is None:
        raw = default
    if not isinstance(raw, dict):
        raise _err(
            f"{what} must be a mapping 1..5 → label",
            "e.g. {1: poor, 2: fair, 3: acceptable, 4: good, 5: excellent}",
        )
    out: dict[str, str] = {}
    for k, v in raw.items():
        try:
            ik = int(k)
        except (TypeError, ValueError):
            raise _err(f"{what} key {k!r} is not an integer 1..5") from None
        out[str(ik)] = str(v)
    if sorted(out) != ["1", "2", "3", "4", "5"]:
        raise _err(f"{what} must label exactly the scores 1, 2, 3, 4, 5 (got {sorted(out)})")
    return out


def parse_question(raw: Any, index: int) -> QuestionSpec:
    """Validate one question entry."""
    if not isinstance(raw, dict):
        raise _err(f"questions[{index}] is not a mapping")
    kind = raw.get("kind")
    if kind not in QUESTION_KINDS:
        raise _err(f"questions[{index}].kind {kind!r} is unknown", f"one of {', '.join(QUESTION_KINDS)}")
    key = raw.get("key")
    if not isinstance(key, str) or not key.isidentifier():
        raise _err(f"questions[{index}].key {key!r} is not a short identifier", "e.g. overall_quality")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _err(f"questions[{index}] ({key}) has no text")
    options: dict[str, Any] = {}
    if kind == "likert":
        options["anchors"] = _anchors(
            raw.get("anchors"), f"questions[{index}].anchors", DEFAULT_LIKERT_ANCHORS
        )
    elif kind == "real_vs_synthetic":
        options["confidence_anchors"] = _anchors(
            raw.get("confidence_anchors"),
            f"questions[{index}].confidence_anchors",
            DEFAULT_CONFIDENCE_ANCHORS,
        )
    elif kind == "single_choice":
        choices = raw.get("choices")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or len({str(c) for c in choices}) != len(choices)
        ):
            raise _err(f"questions[{index}].choices must list at least two distinct choices")
        options["choices"] = [str(c) for c in choices]
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise _err(f"questions[{index}].required must be true or false")
    return QuestionSpec(key=key, kind=kind, text=text.strip(), required=required, options=options)


def _conditions(raw: dict[str, Any]) -> list[ConditionSpec]:
    entries = raw.get("conditions")
    if not isinstance(entries, list) or not entries:
        raise _err("conditions must be a non-empty list", f"entries from {', '.join(CONDITIONS)}")
    doses = raw.get("doses", [])
    if not isinstance(doses, list):
        raise _err("doses must be a list of fractions of the standard dose, e.g. [0.33]")
    default_generator = raw.get("generator")
    out: list[ConditionSpec] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"condition": entry}
        if not isinstance(entry, dict):
            raise _err(f"conditions[{i}] must be a name or a mapping")
        name = entry.get("condition")
        if name not in CONDITIONS:
            raise _err(f"conditions[{i}] {name!r} is unknown", f"one of {', '.join(CONDITIONS)}")
        entry_doses = [entry["dose"]] if "dose" in entry else (doses if name in DOSE_CONDITIONS else [None])
        if name in DOSE_CONDITIONS and not entry_doses:
            raise _err(f"condition {name} needs a dose (give 'dose' or top-level 'doses')")
        generator = entry.get("generator", default_generator if name in GENERATOR_CONDITIONS else None)
        if name in GENERATOR_CONDITIONS and not generator:
            raise _err(
                f"condition {name} needs a generator (a checkpoint folder under assets/models, or 'default')"
            )
        for dose in entry_doses:
            if dose is not None:
                if (
                    isinstance(dose, bool)
                    or not isinstance(dose, int | float)
                    or not 0.0 <= float(dose) <= 1.0
                ):
                    raise _err(f"dose {dose!r} of {name} is not a fraction in [0, 1]")
                dose = float(dose)
            out.append(ConditionSpec(name, dose, None if generator is None else str(generator)))
    if len(set(out)) != len(out):
        raise _err("conditions repeat the same condition/dose/generator")
    return out


def resolve_cases(raw: Any, data_dir: Path) -> list[Path]:
    """Case folders of a spec: a list of folders or ``{glob: pattern, limit: n}`` under ``data_dir``."""
    if isinstance(raw, dict):
        pattern = raw.get("glob")
        if not isinstance(pattern, str):
            raise _err("cases.glob must be a glob pattern under the data directory, e.g. phantom/test/*")
        base = pattern if Path(pattern).is_absolute() else str(data_dir / pattern)
        folders = sorted(Path(p) for p in globlib.glob(base) if Path(p).is_dir())
        limit = raw.get("limit")
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise _err("cases.limit must be a positive integer")
            folders = folders[:limit]
        if not folders:
            raise VCEInputError(f"study spec: no case folder matches {pattern!r}", path=data_dir)
        return folders
    if isinstance(raw, list) and raw:
        folders = []
        for entry in raw:
            p = Path(str(entry))
            p = p if p.is_absolute() else data_dir / p
            if not p.is_dir():
                raise VCEInputError(
                    "study spec: case folder not found", path=p, expected="a case folder with case.json"
                )
            folders.append(p)
        if len(set(folders)) != len(folders):
            raise _err("cases lists the same folder twice")
        return folders
    raise _err("cases must be a list of case folders or {glob: pattern}")


def parse_spec(source: str | dict[str, Any], data_dir: Path) -> StudySpec:
    """Validate a study spec given as YAML text or an already-parsed mapping.

    Raises
    ------
    VCEInputError
        Any problem, with the offending entry named.
    """
    if isinstance(source, str):
        try:
            raw = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise _err(f"not valid YAML ({exc})") from None
    else:
        raw = source
    if not isinstance(raw, dict):
        raise _err("the top level must be a mapping (name, cases, conditions, ...)")
    unknown = set(raw) - {
        "name",
        "instructions",
        "seed",
        "cases",
        "conditions",
        "doses",
        "generator",
        "slices",
        "questions",
        "readers",
        "options",
        "status",
    }
    if unknown:
        raise _err(f"unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise _err("name must be a non-empty string (≤ 200 characters)")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _err(f"seed {seed!r} must be an integer")
    questions_raw = raw.get("questions", DEFAULT_QUESTIONS)
    if not isinstance(questions_raw, list) or not questions_raw:
        raise _err("questions must be a non-empty list")
    questions = [parse_question(q, i) for i, q in enumerate(questions_raw)]
    if len({q.key for q in questions}) != len(questions):
        raise _err("question keys must be unique")
    options = dict(OPTION_DEFAULTS)
    given = raw.get("options") or {}
    if not isinstance(given, dict) or set(given) - set(OPTION_DEFAULTS):
        raise _err(f"options must be a mapping with keys from {sorted(OPTION_DEFAULTS)}")
    options.update(given)
    for key in ("allow_back", "show_reference"):
        if not isinstance(options[key], bool):
            raise _err(f"options.{key} must be true or false")
    for key, low in (("repeat_reads", 1), ("min_distance", 0)):
        if isinstance(options[key], bool) or not isinstance(options[key], int) or options[key] < low:
            raise _err(f"options.{key} must be an integer ≥ {low}")
    wash = options["washout_days"]
    if isinstance(wash, bool) or not isinstance(wash, int | float) or wash < 0:
        raise _err("options.washout_days must be a number ≥ 0")
    options["washout_days"] = float(wash)
    readers_raw = raw.get("readers", [])
    if not isinstance(readers_raw, list):
        raise _err("readers must be a list of display names")
    readers = [str(r["name"]) if isinstance(r, dict) and "name" in r else str(r) for r in readers_raw]
    status = raw.get("status", "draft")
    if status not in ("draft", "open"):
        raise _err(f"status {status!r} must be draft or open")
    slices = raw.get("slices") or {"select": "most_enhancing", "count": 5, "plane": "axial"}
    if not isinstance(slices, dict):
        raise _err("slices must be a mapping, e.g. {select: most_enhancing, count: 5}")
    instructions = raw.get("instructions", "")
    return StudySpec(
        name=name.strip(),
        instructions=str(instructions or "").strip(),
        seed=seed,
        case_folders=resolve_cases(raw.get("cases"), data_dir),
        conditions=_conditions(raw),
        slices=slices,
        questions=questions,
        readers=readers,
        options=options,
        status=status,
        raw=raw,
    )


# ------------------------------------------------------------------------------------------------- order
def reading_order(items: Sequence[tuple[int, int]], seed: str, min_distance: int) -> list[int]:
    """Seeded shuffle of ``(item_id, case_id)`` pairs keeping items of the same case apart.

    Two items of the same case end up at positions at least ``min_distance`` apart (1 or 0: no
    constraint) whenever that is possible; the distance is capped at the number of cases (the most any
    order can achieve). Randomised greedy: at each position pick, among the cases allowed there, one at
    random weighted by its squared number of remaining items; on a dead end retry with the next random
    state; after 200 dead ends use the max-remaining greedy (random tie-break), which is optimal for the
    "k apart" scheduling problem. Deterministic for a given ``seed`` and item set.

    Returns
    -------
    item ids in reading order.
    """
    rng = random.Random(seed)
    by_case: dict[int, list[int]] = {}
    for item_id, case_id in sorted(items):
        by_case.setdefault(case_id, []).append(item_id)
    d = max(0, min(int(min_distance), len(by_case)))
    n = len(items)

    def attempt(strict_max: bool) -> list[int] | None:
        remaining = {c: rng.sample(ids, len(ids)) for c, ids in sorted(by_case.items())}
        last: dict[int, int] = {}
        out: list[int] = []
        for pos in range(n):
            allowed = [c for c, ids in remaining.items() if ids and (c not in last or pos - last[c] >= d)]
            if not allowed:
                if not strict_max:
                    return None
                allowed = [c for c, ids in remaining.items() if ids]
                allowed = [min(allowed, key=lambda c: last.get(c, -n))]
            if strict_max:
                top = max(len(remaining[c]) for c in allowed)
                choice = rng.choice([c for c in allowed if len(remaining[c]) == top])
            else:
                choice = rng.choices(allowed, weights=[len(remaining[c]) ** 2 for c in allowed])[0]
            out.append(remaining[choice].pop())
            last[choice] = pos
        return out

    for _ in range(200):
        order = attempt(strict_max=False)
        if order is not None:
            return order
    order = attempt(strict_max=True)
    assert order is not None
    return order


def min_case_distance(case_sequence: Sequence[Any]) -> int | None:
    """Smallest position difference between two equal entries (None if all differ)."""
    last: dict[Any, int] = {}
    best: int | None = None
    for pos, c in enumerate(case_sequence):
        if c in last:
            gap = pos - last[c]
            best = gap if best is None else min(best, gap)
        last[c] = pos
    return best


# ---------------------------------------------------------------------------------------------- tokens
def hash_token(token: str, salt: bytes) -> bytes:
    """Salted scrypt hash of an access token."""
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)


def new_token() -> str:
    """A fresh random access token (~256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: treat them as the UTC they were stored as."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------ value objects
@dataclass(frozen=True)
class Actor:
    """Who calls: a reader/admin id from :meth:`ReaderStudyService.authenticate`, or :data:`SYSTEM`."""

    reader_id: int | None
    role: str
    display_name: str


SYSTEM = Actor(reader_id=None, role="admin", display_name="system")
"""Trusted local code (CLI, demo builder). Only the identical object is accepted, never a copy."""


@dataclass(frozen=True)
class QuestionView:
    """What a reader is asked (no condition, dose, generator or case in it)."""

    key: str
    kind: str
    text: str
    required: bool
    options: dict[str, Any]


@dataclass(frozen=True)
class ServedItem:
    """The item a reader should read now, or why there is none.

    ``status``: ``item`` (read ``public_id``), ``done`` (every iteration answered), ``washout`` (the next
    iteration opens at ``available_at``), ``closed`` (the study is not open). ``position`` is 1-based within
    the iteration; ``answers`` are the stored answers when the item was already answered (back navigation).
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


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of :meth:`ReaderStudyService.submit_answers`: ``stored`` new rows, ``duplicate`` (the same
    answers were already stored: nothing written), or ``changed`` (allowed change of earlier answers)."""

    status: str
    rows: int
    duration_ms: int | None


# ---------------------------------------------------------------------------------------------- service
def _audit_denials(method: Callable[..., Any]) -> Callable[..., Any]:
    """Record refused calls as ``access_denied`` audit events (after the refused transaction ended)."""

    @functools.wraps(method)
    def wrapper(self: ReaderStudyService, actor: Actor, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, actor, *args, **kwargs)
        except AccessDenied:
            actor_id = actor.reader_id if isinstance(actor, Actor) else None
            self._audit(actor_id, None, "access_denied", {"call": method.__name__})
            raise

    return wrapper


class ReaderStudyService:
    """Create and run reader studies over a :class:`reader_study.db.Database`.

    Parameters
    ----------
    db:
        The open database (see :func:`reader_study.db.open_database`).
    data_root:
        Base of relative case paths in specs (default: the data directory).
    models_dir:
        Where generators live (default ``assets/models``).
    case_loader:
        ``folder -> Case`` (default :func:`vce_core.io.load_case`).
    generator_loader:
        ``name -> Synthesizer`` (default :func:`reader_study.render.load_generator` under ``models_dir``).
    """

    def __init__(
        self,
        db: Database,
        *,
        data_root: str | Path | None = None,
        models_dir: str | Path | None = None,
        case_loader: Callable[[Path], Any] | None = None,
        generator_loader: Callable[[str], render.SynthesizerLike] | None = None,
    ) -> None:
        self.db = db
        self.data_root = Path(data_root) if data_root is not None else data_dir()
        self.models_dir = Path(models_dir) if models_dir is not None else REPO_ROOT / "assets" / "models"
        self._case_loader = case_loader
        self._generator_loader = generator_loader
        self._images: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self._images_lock = threading.Lock()

    # ------------------------------------------------------------------ identity and access
    def authenticate(self, token: str) -> Actor:
        """The actor holding ``token``; :class:`AccessDenied` (and an audit event) if none does."""
        token = (token or "").strip()
        if len(token) >= MIN_TOKEN_LENGTH:
            with self.db.read() as s:
                candidates = list(s.scalars(select(Reader).where(Reader.token_id == token[:TOKEN_ID_LENGTH])))
            for reader in candidates:
                if reader.active and hmac.compare_digest(
                    hash_token(token, reader.token_salt), reader.token_hash
                ):
                    actor = Actor(reader.id, reader.role, reader.display_name)
                    self._audit(actor.reader_id, None, "login", {})
                    return actor
        self._audit(None, None, "login_failed", {})
        raise AccessDenied("This access token is not valid.")

    def _check(self, s: Session, actor: Actor, *, admin: bool = False) -> Reader | None:
        if actor is SYSTEM:
            return None
        if not isinstance(actor, Actor) or actor.reader_id is None:
            raise AccessDenied("Please log in with your access token.")
        reader = s.get(Reader, actor.reader_id)
        if reader is None or not reader.active:
            raise AccessDenied("This account is not active.")
        if admin and reader.role != "admin":
            raise AccessDenied("Only a study administrator may do this.")
        return reader

    @staticmethod
    def _study(s: Session, name: str) -> Study:
        study = s.scalar(select(Study).where(Study.name == name))
        if study is None:
            raise VCEInputError(f"there is no study named {name!r}")
        return study

    def _enrolled_study(self, s: Session, actor: Actor, name: str) -> tuple[Reader, Study]:
        reader = self._check(s, actor)
        if reader is None:
            raise AccessDenied("Reading needs a reader account.")
        study = s.scalar(select(Study).where(Study.name == name))
        enrolled = study is not None and s.get(Enrollment, (study.id, reader.id)) is not None
        if not enrolled:
            raise AccessDenied("You are not enrolled in this study.")
        assert study is not None
        return reader, study

    def _audit(self, actor_id: int | None, study_id: int | None, action: str, detail: dict[str, Any]) -> None:
        with self.db.write() as s:
            s.add(AuditEvent(actor_id=actor_id, study_id=study_id, action=action, detail=detail))

    # ------------------------------------------------------------------ accounts
    def _new_reader(self, s: Session, name: str, role: str, token: str | None) -> tuple[Reader, str]:
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise VCEInputError("a reader needs a display name (≤ 200 characters)")
        token = token or new_token()
        if len(token) < MIN_TOKEN_LENGTH:
            raise VCEInputError(f"an access token needs at least {MIN_TOKEN_LENGTH} characters")
        salt = secrets.token_bytes(16)
        reader = Reader(
            display_name=name,
            role=role,
            token_id=token[:TOKEN_ID_LENGTH],
            token_salt=salt,
            token_hash=hash_token(token, salt),
        )
        s.add(reader)
        s.flush()
        return reader, token

    @_audit_denials
    def create_admin(self, actor: Actor, display_name: str, token: str | None = None) -> tuple[int, str]:
        """New admin account; returns ``(id, token)`` — the token is shown once and never stored."""
        with self.db.write() as s:
            me = self._check(s, actor, admin=True)
            reader, token = self._new_reader(s, display_name, "admin", token)
            s.add(AuditEvent(actor_id=me and me.id, action="admin_created", detail={"reader_id": reader.id}))
            return reader.id, token

    @_audit_denials
    def enroll_reader(
        self, actor: Actor, study: str, display_name: str, token: str | None = None
    ) -> tuple[int, str]:
        """Create a reader account, enrol it and lay out its reading order; returns ``(id, token)`` once."""
        with self.db.write() as s:
            me = self._check(s, actor, admin=True)
            st = self._study(s, study)
            if st.status == "closed":
                raise StudyStateError(f"study {study!r} is closed")
            reader, token = self._new_reader(s, display_name, "reader", token)
            self._enroll_audited(s, me, st, reader)
            return reader.id, token

    @_audit_denials
    def enroll_existing(self, actor: Actor, study: str, reader_id: int) -> None:
        """Enrol an existing reader account in another study."""
        with self.db.write() as s:
            me = self._check(s, actor, admin=True)
            st = self._study(s, study)
            reader = s.get(Reader, reader_id)
            if reader is None or reader.role != "reader":
                raise VCEInputError(f"there is no reader with id {reader_id}")
            if s.get(Enrollment, (st.id, reader.id)) is not None:
                return
            self._enroll_audited(s, me, st, reader)

    @classmethod
    def _enroll_audited(cls, s: Session, me: Reader | None, study: Study, reader: Reader) -> None:
        """:meth:`_enroll` by an administrator (None: the system), with a ``reader_enrolled`` audit event."""
        cls._enroll(s, study, reader)
        s.add(
            AuditEvent(
                actor_id=me and me.id,
                study_id=study.id,
                action="reader_enrolled",
                detail={"reader_id": reader.id},
            )
        )

    @staticmethod
    def _enroll(s: Session, study: Study, reader: Reader) -> None:
        s.add(Enrollment(study_id=study.id, reader_id=reader.id))
        pairs = [
            (item_id, case_id)
            for item_id, case_id in s.execute(
                select(Item.id, Item.case_id).where(Item.study_id == study.id, Item.is_reference.is_(False))
            )
        ]
        for iteration in range(1, study.repeat_reads + 1):
            order = reading_order(pairs, f"{study.seed}:{reader.id}:{iteration}", study.min_distance)
            for position, item_id in enumerate(order):
                s.add(
                    Assignment(
                        study_id=study.id,
                        reader_id=reader.id,
                        item_id=item_id,
                        iteration=iteration,
                        position=position,
                    )
                )

    # ------------------------------------------------------------------ studies
    def _load_case(self, folder: Path) -> Any:
        if self._case_loader is not None:
            return self._case_loader(folder)
        from vce_core.io import load_case

        return load_case(folder)

    def _generator(self, name: str, cache: dict[str, render.SynthesizerLike]) -> render.SynthesizerLike:
        if name not in cache:
            if self._generator_loader is not None:
                cache[name] = self._generator_loader(name)
            else:
                cache[name] = render.load_generator(name, self.models_dir)
        return cache[name]

    def has_generator(self, name: str = "default", models_dir: str | Path | None = None) -> bool:
        """Whether generator ``name`` can be loaded (an injected loader counts as yes)."""
        if self._generator_loader is not None:
            return True
        try:
            render.resolve_generator(name, models_dir if models_dir is not None else self.models_dir)
        except (VCEInputError, ImportError):
            return False
        return True

    @_audit_denials
    def create_study(self, actor: Actor, spec: str | Mapping[str, Any] | StudySpec) -> dict[str, Any]:
        """Validate a spec, render every item once and store the study with its readers.

        Returns
        -------
        ``{"study": name, "status", "cases", "items", "readers": [{"name", "reader_id", "token"}]}`` — the
        tokens are shown once.
        """
        with self.db.read() as s:
            self._check(s, actor, admin=True)
        parsed = (
            spec
            if isinstance(spec, StudySpec)
            else parse_spec(dict(spec) if isinstance(spec, Mapping) else spec, self.data_root)
        )
        with self.db.read() as s:
            if s.scalar(select(Study.id).where(Study.name == parsed.name)) is not None:
                raise VCEInputError(f"a study named {parsed.name!r} already exists", expected="a new name")
        generators: dict[str, render.SynthesizerLike] = {}
        rendered: list[dict[str, Any]] = []
        case_keys: set[str] = set()
        for case_index, folder in enumerate(parsed.case_folders):
            case = self._load_case(folder)
            key = str(case.meta.get("case_id") or folder.name)
            if key in case_keys:
                raise VCEInputError(f"two case folders have the same case id {key!r}", path=folder)
            case_keys.add(key)
            native = np.asarray(case.native.data, dtype=np.float32)
            standard = np.asarray(case.standard_dose.data, dtype=np.float32)
            plane, slices = render.choose_slices(native, standard, parsed.slices)
            window = render.case_window(standard, plane, slices)
            stacks = []
            for cond in parsed.conditions:
                synth = (
                    self._generator(cond.generator, generators)
                    if cond.condition == "synthetic_low_dose"
                    else None
                )
                floats = render.render_condition(
                    case,
                    cond.condition,
                    cond.dose,
                    synth,
                    plane,
                    slices,
                    seed=parsed.seed * 1000 + case_index,
                )
                generator_name = None
                if cond.generator is not None:
                    generator_name = getattr(synth, "name", None) or cond.generator
                stacks.append((cond, generator_name, render.render_stack(floats, window), False))
            if parsed.options["show_reference"]:
                floats = render.render_condition(case, "real_standard_dose", None, None, plane, slices)
                stacks.append((None, None, render.render_stack(floats, window), True))
            rendered.append(
                {
                    "key": key,
                    "folder": folder,
                    "plane": plane,
                    "slices": slices,
                    "window": window,
                    "stacks": stacks,
                }
            )

        with self.db.write() as s:
            me = self._check(s, actor, admin=True)
            opts = parsed.options
            study = Study(
                name=parsed.name,
                instructions=parsed.instructions,
                status=parsed.status,
                seed=parsed.seed,
                allow_back=opts["allow_back"],
                show_reference=opts["show_reference"],
                repeat_reads=opts["repeat_reads"],
                washout_days=opts["washout_days"],
                min_distance=opts["min_distance"],
                spec=_jsonable(parsed.raw),
            )
            s.add(study)
            s.flush()
            for position, q in enumerate(parsed.questions):
                s.add(
                    Question(
                        study_id=study.id,
                        key=q.key,
                        position=position,
                        kind=q.kind,
                        text=q.text,
                        required=q.required,
                        options=q.options,
                    )
                )
            n_items = 0
            for rc in rendered:
                case_row = Case(
                    study_id=study.id,
                    case_key=rc["key"],
                    source_path=str(rc["folder"]),
                    window_low=rc["window"][0],
                    window_high=rc["window"][1],
                    slices=rc["slices"],
                    plane=rc["plane"],
                )
                s.add(case_row)
                s.flush()
                for cond, generator_name, pngs, is_reference in rc["stacks"]:
                    item = Item(
                        public_id=_public_id(),
                        study_id=study.id,
                        case_id=case_row.id,
                        condition="real_standard_dose" if is_reference else cond.condition,
                        dose=1.0 if is_reference else cond.dose,
                        generator=generator_name,
                        n_slices=len(pngs),
                        is_reference=is_reference,
                    )
                    s.add(item)
                    s.flush()
                    for position, png in enumerate(pngs):
                        s.add(ItemImage(item_id=item.id, position=position, png=png))
                    n_items += 0 if is_reference else 1
            s.flush()
            readers = []
            for name in parsed.readers:
                reader, token = self._new_reader(s, name, "reader", None)
                self._enroll(s, study, reader)
                readers.append({"name": name, "reader_id": reader.id, "token": token})
            s.add(
                AuditEvent(
                    actor_id=me and me.id,
                    study_id=study.id,
                    action="study_created",
                    detail={"cases": len(rendered), "items": n_items},
                )
            )
            return {
                "study": study.name,
                "status": study.status,
                "cases": len(rendered),
                "items": n_items,
                "readers": readers,
            }

    @_audit_denials
    def set_status(self, actor: Actor, study: str, status: str) -> str:
        """Move a study draft → open → closed (closed is final; open ↔ draft is not allowed)."""
        allowed = {("draft", "open"), ("open", "closed"), ("draft", "closed")}
        with self.db.write() as s:
            me = self._check(s, actor, admin=True)
            st = self._study(s, study)
            if st.status == status:
                return status
            if (st.status, status) not in allowed:
                raise StudyStateError(f"study {study!r} is {st.status}; it cannot become {status}")
            st.status = status
            s.add(AuditEvent(actor_id=me and me.id, study_id=st.id, action=f"study_{status}", detail={}))
            return status

    def open_study(self, actor: Actor, study: str) -> str:
        """Open a study for reading."""
        return self.set_status(actor, study, "open")

    def close_study(self, actor: Actor, study: str) -> str:
        """Close a study: no more answers are accepted."""
        return self.set_status(actor, study, "closed")

    @_audit_denials
    def list_studies(self, actor: Actor) -> list[dict[str, Any]]:
        """Admins: every study with counts; readers: the open studies they are enrolled in (name only)."""
        with self.db.read() as s:
            reader = self._check(s, actor)
            if reader is not None and reader.role != "admin":
                rows = s.scalars(
                    select(Study)
                    .join(Enrollment, Enrollment.study_id == Study.id)
                    .where(Enrollment.reader_id == reader.id, Study.status == "open")
                    .order_by(Study.id)
                )
                return [{"name": st.name} for st in rows]
            out = []
            for st in s.scalars(select(Study).order_by(Study.id)):
                n_items = s.scalar(
                    select(func.count(Item.id)).where(Item.study_id == st.id, Item.is_reference.is_(False))
                )
                n_readers = s.scalar(
                    select(func.count()).select_from(Enrollment).where(Enrollment.study_id == st.id)
                )
                out.append(
                    {
                        "name": st.name,
                        "status": st.status,
                        "items": n_items,
                        "readers": n_readers,
                        "created_at": _aware(st.created_at),
                    }
                )
            return out

    @_audit_denials
    def study_view(self, actor: Actor, study: str) -> dict[str, Any]:
        """What a reader needs to start: instructions, questions, options (nothing about conditions)."""
        with self.db.read() as s:
            _, st = self._enrolled_study(s, actor, study)
            return {
                "name": st.name,
                "instructions": st.instructions,
                "allow_back": st.allow_back,
                "show_reference": st.show_reference,
                "iterations": st.repeat_reads,
                "questions": [
                    QuestionView(q.key, q.kind, q.text, q.required, dict(q.options)) for q in st.questions
                ],
            }

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _current_iteration(s: Session, study: Study, reader: Reader) -> tuple[int | None, datetime | None]:
        """(first iteration with unanswered items or None if all done, time that iteration opens)."""
        pending = s.scalar(
            select(func.min(Assignment.iteration)).where(
                Assignment.reader_id == reader.id,
                Assignment.study_id == study.id,
                Assignment.completed_at.is_(None),
            )
        )
        if pending is None:
            return None, None
        opens = None
        if pending > 1 and study.washout_days > 0:
            finished = _aware(
                s.scalar(
                    select(func.max(Assignment.completed_at)).where(
                        Assignment.reader_id == reader.id,
                        Assignment.study_id == study.id,
                        Assignment.iteration == pending - 1,
                    )
                )
            )
            if finished is not None:
                opens = finished + timedelta(days=study.washout_days)
        return pending, opens

    def _answers_of(self, s: Session, reader_id: int, item_id: int, iteration: int) -> dict[str, Any]:
        rows = s.execute(
            select(Question.key, Question.kind, Answer.value, Answer.confidence)
            .join(Question, Question.id == Answer.question_id)
            .where(Answer.reader_id == reader_id, Answer.item_id == item_id, Answer.iteration == iteration)
        )
        return {
            k: ({"value": v, "confidence": c} if kind == "real_vs_synthetic" else v) for k, kind, v, c in rows
        }

    def _serve(
        self, s: Session, study: Study, reader: Reader, a: Assignment, total: int, done: int
    ) -> ServedItem:
        a.served_at = utcnow()
        return ServedItem(
            status="item",
            public_id=a.item.public_id,
            position=a.position + 1,
            total=total,
            iteration=a.iteration,
            iterations=study.repeat_reads,
            n_slices=a.item.n_slices,
            done=done,
            can_back=study.allow_back and a.position > 0,
            answers=self._answers_of(s, reader.id, a.item_id, a.iteration)
            if a.completed_at is not None
            else {},
        )

    @_audit_denials
    def next_item(self, actor: Actor, study: str) -> ServedItem:
        """The reader's next unanswered item (exact resume) and stamp the time it is served."""
        with self.db.write() as s:
            reader, st = self._enrolled_study(s, actor, study)
            if st.status != "open":
                return ServedItem(status="closed", iterations=st.repeat_reads)
            iteration, opens = self._current_iteration(s, st, reader)
            if iteration is None:
                total = s.scalar(
                    select(func.count(Assignment.id)).where(
                        Assignment.reader_id == reader.id,
                        Assignment.study_id == st.id,
                        Assignment.iteration == st.repeat_reads,
                    )
                )
                return ServedItem(
                    status="done",
                    total=total or 0,
                    done=total or 0,
                    iteration=st.repeat_reads,
                    iterations=st.repeat_reads,
                )
            if opens is not None and opens > utcnow():
                return ServedItem(
                    status="washout", iteration=iteration, iterations=st.repeat_reads, available_at=opens
                )
            base = select(Assignment).where(
                Assignment.reader_id == reader.id,
                Assignment.study_id == st.id,
                Assignment.iteration == iteration,
            )
            a = s.scalar(base.where(Assignment.completed_at.is_(None)).order_by(Assignment.position).limit(1))
            assert a is not None
            total = s.scalar(select(func.count()).select_from(base.subquery()))
            done = s.scalar(
                select(func.count()).select_from(base.where(Assignment.completed_at.is_not(None)).subquery())
            )
            return self._serve(s, st, reader, a, total, done)

    @_audit_denials
    def item_at(self, actor: Actor, study: str, position: int) -> ServedItem:
        """Back navigation: the item at 1-based ``position`` of the current iteration, if the study allows it
        and the position is not beyond the next unanswered item."""
        with self.db.write() as s:
            reader, st = self._enrolled_study(s, actor, study)
            if st.status != "open":
                return ServedItem(status="closed", iterations=st.repeat_reads)
            iteration, _ = self._current_iteration(s, st, reader)
            if iteration is None:
                iteration = st.repeat_reads
            base = select(Assignment).where(
                Assignment.reader_id == reader.id,
                Assignment.study_id == st.id,
                Assignment.iteration == iteration,
            )
            first_open = s.scalar(
                select(func.min(Assignment.position)).where(
                    Assignment.reader_id == reader.id,
                    Assignment.study_id == st.id,
                    Assignment.iteration == iteration,
                    Assignment.completed_at.is_(None),
                )
            )
            total = s.scalar(select(func.count()).select_from(base.subquery())) or 0
            limit = total - 1 if first_open is None else first_open
            if not st.allow_back and position - 1 != limit:
                raise AccessDenied("This study does not allow going back to earlier items.")
            if not 0 <= position - 1 <= limit:
                raise AccessDenied("That item is not available yet.")
            a = s.scalar(base.where(Assignment.position == position - 1))
            assert a is not None
            done = s.scalar(
                select(func.count()).select_from(base.where(Assignment.completed_at.is_not(None)).subquery())
            )
            return self._serve(s, st, reader, a, total, done)

    def _decoded(self, s: Session, item_id: int) -> list[np.ndarray]:
        with self._images_lock:
            if item_id in self._images:
                self._images.move_to_end(item_id)
                return self._images[item_id]
        pngs = s.scalars(
            select(ItemImage.png).where(ItemImage.item_id == item_id).order_by(ItemImage.position)
        )
        stack = [render.decode_png(p) for p in pngs]
        for arr in stack:
            arr.setflags(write=False)
        with self._images_lock:
            self._images[item_id] = stack
            while len(self._images) > 256:
                self._images.popitem(last=False)
        return stack

    @_audit_denials
    def item_images(self, actor: Actor, study: str, public_id: str) -> list[np.ndarray]:
        """The item's slices as read-only 2-D uint8 arrays, for a reader assigned to it (or an admin)."""
        with self.db.read() as s:
            reader = self._check(s, actor)
            st = (
                self._study(s, study)
                if reader is None or reader.role == "admin"
                else self._enrolled_study(s, actor, study)[1]
            )
            item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == st.id))
            if item is None:
                raise AccessDenied("No such item in your study.")
            if reader is not None and reader.role != "admin":
                owned = s.scalar(
                    select(Assignment.id)
                    .where(Assignment.reader_id == reader.id, Assignment.item_id == item.id)
                    .limit(1)
                )
                if owned is None:
                    raise AccessDenied("No such item in your study.")
            return self._decoded(s, item.id)

    @_audit_denials
    def reference_images(self, actor: Actor, study: str, public_id: str) -> list[np.ndarray]:
        """The standard-dose reference slices of the item's case (studies with ``show_reference``)."""
        with self.db.read() as s:
            reader, st = self._enrolled_study(s, actor, study)
            item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == st.id))
            owned = item is not None and s.scalar(
                select(Assignment.id)
                .where(Assignment.reader_id == reader.id, Assignment.item_id == item.id)
                .limit(1)
            )
            if not owned or not st.show_reference:
                raise AccessDenied("No reference for this item.")
            ref = s.scalar(select(Item.id).where(Item.case_id == item.case_id, Item.is_reference.is_(True)))
            if ref is None:
                raise AccessDenied("No reference for this item.")
            return self._decoded(s, ref)

    @staticmethod
    def _validate(
        questions: Sequence[Question], answers: Mapping[str, Any]
    ) -> dict[int, tuple[str, int | None]]:
        known = {q.key for q in questions}
        unknown = set(answers) - known
        if unknown:
            raise VCEInputError(f"unknown questions {sorted(unknown)}", expected=f"keys from {sorted(known)}")
        out: dict[int, tuple[str, int | None]] = {}
        for q in questions:
            raw = answers.get(q.key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if q.required:
                    raise VCEInputError(f"please answer: {q.text}")
                continue
            confidence = None
            if q.kind == "likert":
                value = _score(raw, q.text)
                out[q.id] = (str(value), None)
                continue
            if q.kind == "real_vs_synthetic":
                if isinstance(raw, Mapping):
                    raw, confidence = raw.get("value"), raw.get("confidence")
                elif isinstance(raw, tuple | list) and len(raw) == 2:
                    raw, confidence = raw
                if raw not in ("real", "synthetic"):
                    raise VCEInputError(f"{q.text}: answer 'real' or 'synthetic'")
                if confidence is None:
                    raise VCEInputError(f"please give your confidence for: {q.text}")
                out[q.id] = (str(raw), _score(confidence, f"{q.text} (confidence)"))
                continue
            if q.kind == "single_choice":
                if str(raw) not in q.options.get("choices", []):
                    raise VCEInputError(f"{q.text}: {raw!r} is not one of the choices")
                out[q.id] = (str(raw), None)
                continue
            text = str(raw).strip()
            if len(text) > 5000:
                raise VCEInputError(f"{q.text}: the text is longer than 5000 characters")
            out[q.id] = (text, confidence)
        return out

    @_audit_denials
    def submit_answers(
        self, actor: Actor, study: str, public_id: str, answers: Mapping[str, Any]
    ) -> SubmitResult:
        """Store the answers of one item (all questions at once) for the reader's current iteration.

        ``answers`` maps question keys to values: likert 1–5 (int or "4"), single choice (one of the
        choices), real_vs_synthetic ``{"value": "real"|"synthetic", "confidence": 1–5}`` (or a 2-tuple),
        free text. Idempotent: the same answers again → ``duplicate`` and nothing written. Different answers
        for an answered item → ``changed`` if the study allows going back, else :class:`AnswerConflict`.
        Only the next unanswered item (or, with back navigation, an earlier one) can be answered.
        """
        for attempt in range(2):
            try:
                return self._submit_once(actor, study, public_id, answers)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _submit_once(
        self, actor: Actor, study: str, public_id: str, answers: Mapping[str, Any]
    ) -> SubmitResult:
        with self.db.write() as s:
            reader, st = self._enrolled_study(s, actor, study)
            if st.status != "open":
                raise StudyStateError("This study is not open for reading.")
            item = s.scalar(select(Item).where(Item.public_id == public_id, Item.study_id == st.id))
            if item is None:
                raise AccessDenied("No such item in your study.")
            iteration, opens = self._current_iteration(s, st, reader)
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
                # Already answered (this or an earlier iteration): a retry, or a change after going back.
                done_iterations = [it for it, x in assignments.items() if x.completed_at is not None]
                a = assignments[max(done_iterations)] if done_iterations else None
                if a is None:
                    raise StudyStateError("This item is not open for answers yet.")
            elif opens is not None and opens > utcnow():
                raise StudyStateError("The washout period of the next reading is still running.")
            values = self._validate(st.questions, answers)
            stored = {
                qid: (v, c)
                for qid, v, c in s.execute(
                    select(Answer.question_id, Answer.value, Answer.confidence).where(
                        Answer.reader_id == reader.id,
                        Answer.item_id == item.id,
                        Answer.iteration == a.iteration,
                    )
                )
            }
            if a.completed_at is not None:
                if stored == values:
                    s.add(
                        AuditEvent(
                            actor_id=reader.id,
                            study_id=st.id,
                            action="duplicate_submit",
                            detail={"item": item.public_id, "iteration": a.iteration},
                        )
                    )
                    durations = s.scalars(
                        select(Answer.duration_ms)
                        .where(
                            Answer.reader_id == reader.id,
                            Answer.item_id == item.id,
                            Answer.iteration == a.iteration,
                        )
                        .limit(1)
                    )
                    return SubmitResult("duplicate", 0, next(iter(durations), None))
                if not st.allow_back or a.iteration != iteration and iteration is not None:
                    raise AnswerConflict(
                        "This item is already answered and this study does not allow changes."
                    )
                return self._change(s, st, reader, item, a, stored, values)
            first_open = s.scalar(
                select(func.min(Assignment.position)).where(
                    Assignment.reader_id == reader.id,
                    Assignment.study_id == st.id,
                    Assignment.iteration == a.iteration,
                    Assignment.completed_at.is_(None),
                )
            )
            if a.position != first_open:
                raise StudyStateError("Please answer the items in the order they are shown.")
            now = utcnow()
            duration = _time_on_task(a, now)
            for qid, answer in values.items():
                s.add(_answer_row(st, reader, item, a, qid, answer, now, duration))
            a.completed_at = now
            s.add(
                AuditEvent(
                    actor_id=reader.id,
                    study_id=st.id,
                    action="answer_stored",
                    detail={"item": item.public_id, "iteration": a.iteration, "questions": len(values)},
                )
            )
            s.flush()
            return SubmitResult("stored", len(values), duration)

    @staticmethod
    def _change(
        s: Session,
        st: Study,
        reader: Reader,
        item: Item,
        a: Assignment,
        stored: dict[int, tuple[str, int | None]],
        values: dict[int, tuple[str, int | None]],
    ) -> SubmitResult:
        now = utcnow()
        duration = _time_on_task(a, now)
        changed = 0
        rows = {
            r.question_id: r
            for r in s.scalars(
                select(Answer).where(
                    Answer.reader_id == reader.id, Answer.item_id == item.id, Answer.iteration == a.iteration
                )
            )
        }
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
                s.add(_answer_row(st, reader, item, a, qid, values[qid], now, duration))
        s.add(
            AuditEvent(
                actor_id=reader.id,
                study_id=st.id,
                action="answer_changed",
                detail={
                    "item": item.public_id,
                    "iteration": a.iteration,
                    "before": {str(k): list(v) for k, v in stored.items()},
                },
            )
        )
        return SubmitResult("changed", changed, duration)

    # ------------------------------------------------------------------ progress and data
    @_audit_denials
    def progress(self, actor: Actor, study: str, reader_id: int | None = None) -> dict[str, Any]:
        """``{"done", "total", "iteration", "iterations"}`` over all iterations. Readers: only their own."""
        with self.db.read() as s:
            me = self._check(s, actor)
            if reader_id is None or (me is not None and reader_id == me.id):
                if me is None:
                    raise VCEInputError("progress of which reader?")
                _, st = self._enrolled_study(s, actor, study)
                reader_id = me.id
            else:
                self._check(s, actor, admin=True)
                st = self._study(s, study)
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

    @_audit_denials
    def progress_all(self, actor: Actor, study: str) -> pd.DataFrame:
        """Admin: one row per enrolled reader (reader, reader_id, done, total, percent, last answer)."""
        with self.db.read() as s:
            self._check(s, actor, admin=True)
            st = self._study(s, study)
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
        frame["percent"] = (100.0 * frame["done"] / frame["total"].where(frame["total"] > 0)).round(1)
        return frame[["reader", "reader_id", "done", "total", "percent", "last_answer"]]

    @_audit_denials
    def answers_frame(self, actor: Actor, study: str) -> pd.DataFrame:
        """Admin: every answer of a study as a long table (one row per answer).

        Columns: study, reader, reader_id, case, item, condition, dose, generator, question, question_kind,
        value, confidence, iteration, created_at (UTC ISO 8601), duration_ms.
        """
        with self.db.read() as s:
            self._check(s, actor, admin=True)
            st = self._study(s, study)
            rows = s.execute(
                select(
                    Reader.display_name,
                    Reader.id,
                    Case.case_key,
                    Item.public_id,
                    Item.condition,
                    Item.dose,
                    Item.generator,
                    Question.key,
                    Question.kind,
                    Answer.value,
                    Answer.confidence,
                    Answer.iteration,
                    Answer.created_at,
                    Answer.duration_ms,
                )
                .join(Reader, Reader.id == Answer.reader_id)
                .join(Item, Item.id == Answer.item_id)
                .join(Case, Case.id == Item.case_id)
                .join(Question, Question.id == Answer.question_id)
                .where(Answer.study_id == st.id)
                .order_by(Reader.id, Answer.iteration, Answer.created_at, Item.id, Question.position)
            ).all()
            name = st.name
        columns = [
            "reader",
            "reader_id",
            "case",
            "item",
            "condition",
            "dose",
            "generator",
            "question",
            "question_kind",
            "value",
            "confidence",
            "iteration",
            "created_at",
            "duration_ms",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame.insert(0, "study", name)
        frame["created_at"] = [_aware(t).isoformat(timespec="milliseconds") for t in frame["created_at"]]
        frame["confidence"] = frame["confidence"].astype("Int64")
        frame["duration_ms"] = frame["duration_ms"].astype("Int64")
        return frame

    @_audit_denials
    def questions(self, actor: Actor, study: str) -> list[QuestionView]:
        """Admin: the study's questions in order."""
        with self.db.read() as s:
            self._check(s, actor, admin=True)
            return [
                QuestionView(q.key, q.kind, q.text, q.required, dict(q.options))
                for q in self._study(s, study).questions
            ]

    @_audit_denials
    def audit_log(self, actor: Actor, study: str | None = None, limit: int = 200) -> pd.DataFrame:
        """Admin: the latest audit events (all studies, or one)."""
        with self.db.read() as s:
            self._check(s, actor, admin=True)
            q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if study is not None:
                q = q.where(AuditEvent.study_id == self._study(s, study).id)
            rows = [(_aware(e.created_at), e.actor_id, e.action, e.detail) for e in s.scalars(q)]
        return pd.DataFrame(rows, columns=["created_at", "actor_id", "action", "detail"])


def _public_id() -> str:
    """Opaque random item id (starts with a letter so no spreadsheet reads it as a formula or number)."""
    return "i" + secrets.token_urlsafe(12)


def _score(raw: Any, what: str) -> int:
    """A 1–5 score from 4, "4" or "4 – good"."""
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


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy of a parsed YAML spec (keys to strings, paths/dates to strings)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _time_on_task(a: Assignment, now: datetime) -> int | None:
    """Milliseconds from serving assignment ``a`` to ``now`` (None if it was never served)."""
    served = _aware(a.served_at)
    return None if served is None else max(0, int((now - served).total_seconds() * 1000))


def _answer_row(
    st: Study,
    reader: Reader,
    item: Item,
    a: Assignment,
    question_id: int,
    answer: tuple[str, int | None],
    now: datetime,
    duration: int | None,
) -> Answer:
    """A new Answer row for one question of assignment ``a``: ``answer`` is (value, confidence)."""
    value, confidence = answer
    return Answer(
        study_id=st.id,
        reader_id=reader.id,
        item_id=item.id,
        question_id=question_id,
        assignment_id=a.id,
        iteration=a.iteration,
        value=value,
        confidence=confidence,
        created_at=now,
        duration_ms=duration,
    )
