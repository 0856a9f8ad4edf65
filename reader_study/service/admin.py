"""Administration: create a study from a spec, accounts and enrolment, study status, the list of studies."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vce_core.errors import VCEInputError

from .. import render
from ..auth import Actor, check_actor, new_account
from ..errors import StudyStateError
from ..models import (
    Assignment,
    AuditEvent,
    Case,
    Enrollment,
    Item,
    ItemImage,
    Question,
    Reader,
    Study,
    as_utc,
)
from ..order import reading_order
from ..spec import CONDITION_TASKS, QuestionSpec, StudySpec, parse_spec
from .base import ServiceBase, audit_denials, study_named
from .build import RenderedCase, render_case

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: cases rendered so far while a study is created."""
STATUS_CHANGES = frozenset({("draft", "open"), ("open", "closed"), ("draft", "closed")})
"""Allowed (from, to) status changes: closed is final; open ↔ draft is not allowed."""


def _public_id() -> str:
    """Opaque random item id (starts with a letter so no spreadsheet reads it as a formula or number)."""
    return "i" + secrets.token_urlsafe(12)


def enroll(s: Session, study: Study, reader: Reader) -> None:
    """Enrol ``reader`` in ``study`` and lay out their seeded reading order for every iteration."""
    s.add(Enrollment(study_id=study.id, reader_id=reader.id))
    pairs = [
        (item_id, case_id)
        for item_id, case_id in s.execute(
            select(Item.id, Item.case_id).where(Item.study_id == study.id, Item.is_reference.is_(False))
        )
    ]
    for iteration in range(1, study.repeat_reads + 1):
        order = reading_order(pairs, f"{study.seed}:{reader.id}:{iteration}", study.min_distance)
        s.add_all(
            Assignment(study_id=study.id, reader_id=reader.id, item_id=i, iteration=iteration, position=k)
            for k, i in enumerate(order)
        )


def _enroll_audited(s: Session, me: Reader | None, study: Study, reader: Reader) -> None:
    """:func:`enroll` by an administrator (None: the system), with a ``reader_enrolled`` audit event."""
    enroll(s, study, reader)
    s.add(
        AuditEvent(
            actor_id=me and me.id,
            study_id=study.id,
            action="reader_enrolled",
            detail={"reader_id": reader.id},
        )
    )


def _store_study(s: Session, spec: StudySpec) -> Study:
    """The Study row of ``spec`` with its questions."""
    opts = spec.options
    study = Study(
        name=spec.name,
        instructions=spec.instructions,
        status=spec.status,
        seed=spec.seed,
        allow_back=opts["allow_back"],
        show_reference=opts["show_reference"],
        repeat_reads=opts["repeat_reads"],
        washout_days=opts["washout_days"],
        min_distance=opts["min_distance"],
        spec=spec.raw_json(),
    )
    s.add(study)
    s.flush()
    _store_questions(s, study, spec.questions)
    return study


def _store_questions(s: Session, study: Study, questions: list[QuestionSpec]) -> None:
    s.add_all(Question(study_id=study.id, position=k, **asdict(q)) for k, q in enumerate(questions))


def _store_case(s: Session, study: Study, rendered: RenderedCase) -> int:
    """Store a rendered case with its items and images; returns how many items readers will read."""
    case_row = Case(
        study_id=study.id,
        case_key=rendered.key,
        source_path=str(rendered.folder),
        window_low=rendered.window[0],
        window_high=rendered.window[1],
        slices=rendered.slices,
        plane=rendered.plane,
        focus=rendered.focus,
    )
    s.add(case_row)
    s.flush()
    for r in rendered.items:
        item = Item(
            public_id=_public_id(),
            study_id=study.id,
            case_id=case_row.id,
            condition=r.condition,
            dose=r.dose,
            generator=r.generator,
            n_slices=len(r.pngs),
            is_reference=r.is_reference,
        )
        s.add(item)
        s.flush()
        for position, png in enumerate(r.pngs):
            s.add(ItemImage(item_id=item.id, position=position, png=png))
    return sum(not r.is_reference for r in rendered.items)


class StudyAdmin(ServiceBase):
    """What an administrator (or :data:`reader_study.auth.SYSTEM`) does to studies and accounts."""

    # ------------------------------------------------------------------ accounts
    @audit_denials
    def create_admin(self, actor: Actor, display_name: str, token: str | None = None) -> tuple[int, str]:
        """New admin account; returns ``(id, token)`` — the token is shown once and never stored."""
        with self.db.write() as s:
            me = check_actor(s, actor, admin=True)
            reader, token = new_account(s, display_name, "admin", token)
            s.add(AuditEvent(actor_id=me and me.id, action="admin_created", detail={"reader_id": reader.id}))
            return reader.id, token

    @audit_denials
    def enroll_reader(
        self, actor: Actor, study: str, display_name: str, token: str | None = None
    ) -> tuple[int, str]:
        """Create a reader account, enrol it and lay out its reading order; returns ``(id, token)`` once."""
        with self.db.write() as s:
            me = check_actor(s, actor, admin=True)
            st = study_named(s, study)
            if st.status == "closed":
                raise StudyStateError(f"study {study!r} is closed")
            reader, token = new_account(s, display_name, "reader", token)
            _enroll_audited(s, me, st, reader)
            return reader.id, token

    @audit_denials
    def enroll_existing(self, actor: Actor, study: str, reader_id: int) -> None:
        """Enrol an existing reader account in another study (nothing happens if already enrolled)."""
        with self.db.write() as s:
            me = check_actor(s, actor, admin=True)
            st = study_named(s, study)
            reader = s.get(Reader, reader_id)
            if reader is None or reader.role != "reader":
                raise VCEInputError(f"there is no reader with id {reader_id}")
            if s.get(Enrollment, (st.id, reader.id)) is not None:
                return
            _enroll_audited(s, me, st, reader)

    # ------------------------------------------------------------------ creating a study
    def _load_case(self, folder: Path) -> Any:
        if self._case_loader is not None:
            return self._case_loader(folder)
        from vce_core.io import load_case

        return load_case(folder)

    def _load_generator(
        self, name: str, task: str = "low_dose", condition: str = "synthetic_low_dose"
    ) -> Any:
        """Generator ``name`` of ``task`` (the injected loader's, or a checkpoint under the models
        directory); one of another task is refused, naming the condition."""
        if self._generator_loader is not None:
            synth = self._generator_loader(name)
        else:
            synth = render.load_generator(name, self.models_dir, task)
        render.check_task(synth, name, condition, task)
        return synth

    def has_generator(self, name: str = "default", models_dir: str | Path | None = None) -> bool:
        """Whether generator ``name`` can be loaded (an injected loader counts as yes)."""
        if self._generator_loader is not None:
            return True
        try:
            render.resolve_generator(name, models_dir if models_dir is not None else self.models_dir)
        except (VCEInputError, ImportError):
            return False
        return True

    def _new_spec(self, spec: str | Mapping[str, Any] | StudySpec) -> StudySpec:
        """``spec`` validated, with a name no study has yet."""
        if not isinstance(spec, StudySpec):
            spec = parse_spec(dict(spec) if isinstance(spec, Mapping) else spec, self.data_root)
        with self.db.read() as s:
            if s.scalar(select(Study.id).where(Study.name == spec.name)) is not None:
                raise VCEInputError(f"a study named {spec.name!r} already exists", expected="a new name")
        return spec

    def _render_cases(
        self, spec: StudySpec, progress: Progress | None, workers: int | None
    ) -> list[RenderedCase]:
        """Load and render every case of ``spec`` on ``workers`` threads (default: one per CPU core).

        Each generator is loaded once, before the workers start. ``progress(done, total, message)`` is
        called after each case. The first failing case stops the others and its error is raised.
        """
        needed = {
            (c.generator, CONDITION_TASKS[c.condition]): c.condition
            for c in spec.conditions
            if c.generator is not None and c.condition in CONDITION_TASKS
        }
        generators = {key: self._load_generator(*key, condition) for key, condition in sorted(needed.items())}
        folders = spec.case_folders
        total = len(folders)
        workers = max(1, min(total, workers or os.cpu_count() or 1))
        if progress is not None:
            progress(0, total, f"rendering {total} cases on {workers} threads")

        def one(index: int) -> RenderedCase:
            case = self._load_case(folders[index])
            key = str(case.meta.get("case_id") or folders[index].name)
            return render_case(
                case, key, folders[index], spec, index, lambda *name_task: generators[name_task]
            )

        rendered: list[RenderedCase | None] = [None] * total
        with ThreadPoolExecutor(workers, thread_name_prefix="rs-render") as pool:
            futures = {pool.submit(one, i): i for i in range(total)}
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    rendered[futures[future]] = future.result()
                    if progress is not None:
                        progress(done, total, f"rendered {done} of {total} cases")
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        out = [r for r in rendered if r is not None]
        keys: dict[str, Path] = {}
        for r in out:
            if r.key in keys:
                raise VCEInputError(f"two case folders have the same case id {r.key!r}", path=r.folder)
            keys[r.key] = r.folder
        return out

    @audit_denials
    def create_study(
        self,
        actor: Actor,
        spec: str | Mapping[str, Any] | StudySpec,
        *,
        progress: Progress | None = None,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Validate a spec, render every item once (cases in parallel) and store the study with its readers.

        ``progress(done, total, message)`` reports each rendered case (then "storing"); ``workers`` threads
        render (default one per CPU core; 1 renders serially). Nothing is stored when any case fails.

        Returns
        -------
        ``{"study": name, "status", "cases", "items", "readers": [{"name", "reader_id", "token"}]}`` — the
        tokens are shown once.
        """
        with self.db.read() as s:
            check_actor(s, actor, admin=True)
        parsed = self._new_spec(spec)
        rendered = self._render_cases(parsed, progress, workers)
        if progress is not None:
            progress(len(rendered), len(rendered), "storing the study")
        with self.db.write() as s:
            me = check_actor(s, actor, admin=True)
            study = _store_study(s, parsed)
            n_items = sum(_store_case(s, study, rc) for rc in rendered)
            s.flush()
            readers = []
            for name in parsed.readers:
                reader, token = new_account(s, name, "reader")
                enroll(s, study, reader)
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

    # ------------------------------------------------------------------ status and overview
    @audit_denials
    def set_status(self, actor: Actor, study: str, status: str) -> str:
        """Move a study draft → open → closed (closed is final; open ↔ draft is not allowed)."""
        with self.db.write() as s:
            me = check_actor(s, actor, admin=True)
            st = study_named(s, study)
            if st.status == status:
                return status
            if (st.status, status) not in STATUS_CHANGES:
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

    @audit_denials
    def list_studies(self, actor: Actor) -> list[dict[str, Any]]:
        """Admins: every study with counts; readers: the open studies they are enrolled in (name only)."""
        with self.db.read() as s:
            reader = check_actor(s, actor)
            if reader is not None and reader.role != "admin":
                rows = s.scalars(
                    select(Study)
                    .join(Enrollment, Enrollment.study_id == Study.id)
                    .where(Enrollment.reader_id == reader.id, Study.status == "open")
                    .order_by(Study.id)
                )
                return [{"name": st.name} for st in rows]
            return [
                {
                    "name": st.name,
                    "status": st.status,
                    "items": s.scalar(
                        select(func.count(Item.id)).where(
                            Item.study_id == st.id, Item.is_reference.is_(False)
                        )
                    ),
                    "readers": s.scalar(
                        select(func.count()).select_from(Enrollment).where(Enrollment.study_id == st.id)
                    ),
                    "created_at": as_utc(st.created_at),
                }
                for st in s.scalars(select(Study).order_by(Study.id))
            ]
