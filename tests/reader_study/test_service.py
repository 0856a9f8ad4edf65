"""Reader-study storage and service: constraints, idempotent submit, order, roles, schema version."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from reader_study.db import SchemaVersionError, open_database
from reader_study.models import Answer, Assignment, Item, Study
from reader_study.service import (
    SYSTEM,
    AccessDenied,
    Actor,
    AnswerConflict,
    StudyStateError,
    min_case_distance,
    reading_order,
)
from support import LIKERT_ANSWERS, make_service, spec_dict, write_disc_cases
from vce_core.errors import VCEInputError


@pytest.fixture()
def study(tmp_path: Path):
    write_disc_cases(tmp_path, 3)
    svc = make_service(tmp_path)
    out = svc.create_study(SYSTEM, spec_dict(tmp_path))
    readers = [svc.authenticate(r["token"]) for r in out["readers"]]
    return svc, readers, out


def _answer_all(svc, actor, name="t-study", n=None):  # noqa: ANN001, ANN202
    served = []
    while n is None or len(served) < n:
        item = svc.next_item(actor, name)
        if item.status != "item":
            break
        svc.submit_answers(actor, name, item.public_id, LIKERT_ANSWERS)
        served.append(item.public_id)
    return served


def test_duplicate_answer_impossible_at_db_level(study) -> None:
    svc, (r1, _), _ = study
    item = svc.next_item(r1, "t-study")
    svc.submit_answers(r1, "t-study", item.public_id, LIKERT_ANSWERS)
    with svc.db.read() as s:
        row = s.scalars(select(Answer)).first()
        fields = {
            c: getattr(row, c)
            for c in ("study_id", "reader_id", "item_id", "question_id", "assignment_id", "iteration")
        }
    with pytest.raises(IntegrityError), svc.db.write() as s:
        s.add(Answer(**fields, value="1"))
    with pytest.raises(IntegrityError), svc.db.write() as s:
        s.execute(update(Study).values(status="paused"))
    with pytest.raises(IntegrityError), svc.db.write() as s:  # foreign keys are enforced (SQLite pragma)
        s.add(Answer(**{**fields, "item_id": 99999}, value="1"))


def test_submit_is_idempotent_and_changes_are_refused(study) -> None:
    svc, (r1, _), _ = study
    item = svc.next_item(r1, "t-study")
    first = svc.submit_answers(r1, "t-study", item.public_id, LIKERT_ANSWERS)
    again = svc.submit_answers(r1, "t-study", item.public_id, dict(LIKERT_ANSWERS))
    assert (first.status, first.rows) == ("stored", 4)
    assert (again.status, again.rows) == ("duplicate", 0)
    assert first.duration_ms is not None and first.duration_ms >= 0
    with svc.db.read() as s:
        assert s.scalar(select(text("count(*)")).select_from(Answer)) == 4
    with pytest.raises(AnswerConflict):
        svc.submit_answers(r1, "t-study", item.public_id, {**LIKERT_ANSWERS, "noise": 1})
    nxt = svc.next_item(r1, "t-study")
    assert nxt.position == 2 and nxt.public_id != item.public_id
    with pytest.raises(VCEInputError, match="please answer"):
        svc.submit_answers(r1, "t-study", nxt.public_id, {"overall_quality": 3})
    with pytest.raises(VCEInputError, match="score from 1 to 5"):
        svc.submit_answers(r1, "t-study", nxt.public_id, {**LIKERT_ANSWERS, "noise": 7})


def test_only_the_current_item_can_be_answered(study) -> None:
    svc, (r1, _), _ = study
    with svc.db.read() as s:
        later = s.scalar(
            select(Item.public_id)
            .join(Assignment, Assignment.item_id == Item.id)
            .where(Assignment.reader_id == r1.reader_id, Assignment.position == 3)
        )
    with pytest.raises(StudyStateError):
        svc.submit_answers(r1, "t-study", later, LIKERT_ANSWERS)


def test_resume_is_exact_and_order_stable(study, tmp_path: Path) -> None:
    svc, (r1, r2), out = study
    answered = _answer_all(svc, r1, n=4)
    nxt = svc.next_item(r1, "t-study")
    # a new process (new service over the same file) resumes at exactly the same item
    svc2 = make_service(tmp_path)
    again = svc2.authenticate(out["readers"][0]["token"])
    assert svc2.next_item(again, "t-study").public_id == nxt.public_id
    assert svc2.next_item(again, "t-study").position == 5
    with svc.db.read() as s:
        rows = s.execute(
            select(Assignment.position, Item.id, Item.case_id)
            .join(Item)
            .where(Assignment.reader_id == r1.reader_id)
            .order_by(Assignment.position)
        ).all()
    stored_order = [r.id for r in rows]
    assert stored_order == reading_order([(r.id, r.case_id) for r in rows], f"7:{r1.reader_id}:1", 2)
    assert min_case_distance([r.case_id for r in rows]) >= 2
    # readers get different orders
    with svc.db.read() as s:
        other = list(
            s.scalars(
                select(Assignment.item_id)
                .where(Assignment.reader_id == r2.reader_id)
                .order_by(Assignment.position)
            )
        )
    assert other != stored_order and sorted(other) == sorted(stored_order)
    assert svc.progress(r1, "t-study") == {"done": 4, "total": 9, "iterations": 1}
    assert len(answered) == 4


@pytest.mark.parametrize(("cases", "conditions", "distance"), [(10, 4, 4), (6, 5, 6), (3, 3, 3), (2, 3, 1)])
def test_reading_order_keeps_conditions_of_a_case_apart(cases: int, conditions: int, distance: int) -> None:
    items = [(c * 100 + k, c) for c in range(cases) for k in range(conditions)]
    for seed in range(20):
        order = reading_order(items, f"seed{seed}", distance)
        assert sorted(order) == sorted(i for i, _ in items)
        case_of = dict(items)
        assert (min_case_distance([case_of[i] for i in order]) or 99) >= distance
        assert order == reading_order(list(reversed(items)), f"seed{seed}", distance)  # deterministic
    assert (
        reading_order(items, "a", distance) != reading_order(items, "b", distance) or cases * conditions < 4
    )
    # an impossible distance is capped at the number of cases (round robin)
    capped = reading_order(items, "x", cases + 5)
    assert min_case_distance([dict(items)[i] for i in capped]) == cases


def test_roles_and_ownership(study, tmp_path: Path) -> None:
    svc, (r1, r2), _ = study
    for call in (
        lambda: svc.create_study(r1, spec_dict(tmp_path, name="x")),
        lambda: svc.open_study(r1, "t-study"),
        lambda: svc.close_study(r1, "t-study"),
        lambda: svc.enroll_reader(r1, "t-study", "Mallory"),
        lambda: svc.create_admin(r1, "Mallory"),
        lambda: svc.answers_frame(r1, "t-study"),
        lambda: svc.progress_all(r1, "t-study"),
        lambda: svc.progress(r1, "t-study", reader_id=r2.reader_id),
        lambda: svc.audit_log(r1),
        # a forged actor: the role is read from the database, and only the SYSTEM object is trusted
        lambda: svc.answers_frame(Actor(r1.reader_id, "admin", "x"), "t-study"),
        lambda: svc.answers_frame(Actor(None, "admin", "system"), "t-study"),
        lambda: svc.next_item(Actor(None, "reader", "nobody"), "t-study"),
    ):
        with pytest.raises(AccessDenied):
            call()
    with pytest.raises(AccessDenied):
        svc.authenticate("not-a-valid-token")
    with pytest.raises(AccessDenied):
        svc.authenticate("")
    # a reader of another study cannot see this study's items
    write_disc_cases(tmp_path / "other", 2)
    svc_other = svc.create_study(
        SYSTEM, {**spec_dict(tmp_path, name="other", readers=1), "cases": {"glob": "other/cases/*"}}
    )
    outsider = svc.authenticate(svc_other["readers"][0]["token"])
    item = svc.next_item(r1, "t-study")
    for call in (
        lambda: svc.next_item(outsider, "t-study"),
        lambda: svc.item_images(outsider, "t-study", item.public_id),
        lambda: svc.item_images(outsider, "other", item.public_id),
        lambda: svc.submit_answers(outsider, "t-study", item.public_id, LIKERT_ANSWERS),
        lambda: svc.study_view(outsider, "t-study"),
    ):
        with pytest.raises(AccessDenied):
            call()
    assert [s["name"] for s in svc.list_studies(outsider)] == ["other"]
    assert set(svc.list_studies(r1)[0]) == {"name"}  # readers see no counts or conditions
    admin_id, admin_token = svc.create_admin(SYSTEM, "Admin")
    admin = svc.authenticate(admin_token)
    assert admin.role == "admin" and len(svc.answers_frame(admin, "t-study")) == 0
    with pytest.raises(AccessDenied):  # admins do not read
        svc.next_item(admin, "t-study")


def test_status_washout_and_repeat_reads(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    spec = {
        **spec_dict(tmp_path, readers=1, repeat_reads=2, washout_days=1.0),
        "status": "draft",
        "conditions": ["real_standard_dose", "real_low_dose"],
    }
    out = svc.create_study(SYSTEM, spec)
    r = svc.authenticate(out["readers"][0]["token"])
    assert svc.next_item(r, "t-study").status == "closed"
    svc.open_study(SYSTEM, "t-study")
    first = _answer_all(svc, r)
    assert len(first) == 4
    wait = svc.next_item(r, "t-study")
    assert wait.status == "washout" and wait.iteration == 2 and wait.available_at is not None
    with svc.db.write() as s:  # two days pass
        for a in s.scalars(select(Assignment).where(Assignment.iteration == 1)):
            a.completed_at = a.completed_at - timedelta(days=2)
    second = _answer_all(svc, r)
    assert sorted(second) == sorted(first)
    assert svc.next_item(r, "t-study").status == "done"
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert sorted(set(frame["iteration"])) == [1, 2] and len(frame) == 2 * 4 * 4
    svc.close_study(SYSTEM, "t-study")
    with pytest.raises(StudyStateError):
        svc.open_study(SYSTEM, "t-study")


def test_back_navigation_when_allowed(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    out = svc.create_study(SYSTEM, spec_dict(tmp_path, readers=1, allow_back=True))
    r = svc.authenticate(out["readers"][0]["token"])
    ids = _answer_all(svc, r, n=2)
    back = svc.item_at(r, "t-study", 1)
    assert back.public_id == ids[0] and back.answers["noise"] == "5"
    changed = svc.submit_answers(r, "t-study", ids[0], {**LIKERT_ANSWERS, "noise": 2})
    assert (changed.status, changed.rows) == ("changed", 1)
    assert svc.next_item(r, "t-study").position == 3
    with pytest.raises(AccessDenied):
        svc.item_at(r, "t-study", 5)


def test_schema_version_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    db = open_database(url)
    with db.write() as s:
        s.execute(text("UPDATE schema_version SET version = 99"))
    db.dispose()
    with pytest.raises(SchemaVersionError, match="schema version \\[99\\].*needs 1"):
        open_database(url)


def test_bad_specs_are_refused_before_rendering(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 1)
    svc = make_service(tmp_path)
    base = spec_dict(tmp_path)
    for change, message in (
        ({"conditions": ["blurry"]}, "unknown"),
        (
            {"questions": [{"key": "q", "kind": "likert", "text": "Q", "anchors": {1: "a", 2: "b"}}]},
            "exactly",
        ),
        ({"cases": {"glob": "nothing/*"}}, "no case folder"),
        ({"options": {"warp": True}}, "options"),
        ({"conditions": ["synthetic_low_dose"], "generator": None}, "needs a generator"),
    ):
        with pytest.raises(VCEInputError, match=message):
            svc.create_study(SYSTEM, {**base, **change})
    svc.create_study(SYSTEM, base)
    with pytest.raises(VCEInputError, match="already exists"):
        svc.create_study(SYSTEM, base)


def test_schema_compiles_for_postgresql() -> None:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    from reader_study.models import Base

    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=postgresql.dialect()))
        assert "PRAGMA" not in ddl and "AUTOINCREMENT" not in ddl
        for index in table.indexes:
            CreateIndex(index).compile(dialect=postgresql.dialect())
    answer = str(CreateTable(Base.metadata.tables["answer"]).compile(dialect=postgresql.dialect()))
    assert "UNIQUE (reader_id, item_id, question_id, iteration)" in answer


def test_reference_images_and_audit_trail(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    out = svc.create_study(SYSTEM, spec_dict(tmp_path, readers=1, show_reference=True))
    assert out["items"] == 6  # references are stored but never assigned
    r = svc.authenticate(out["readers"][0]["token"])
    item = svc.next_item(r, "t-study")
    ref = svc.reference_images(r, "t-study", item.public_id)
    own = svc.item_images(r, "t-study", item.public_id)
    assert len(ref) == len(own) == 3 and ref[0].dtype == own[0].dtype == "uint8"
    assert svc.progress(r, "t-study")["total"] == 6
    with pytest.raises(AccessDenied):
        svc.answers_frame(r, "t-study")
    actions = list(svc.audit_log(SYSTEM)["action"])
    assert {"study_created", "login", "access_denied"} <= set(actions)
