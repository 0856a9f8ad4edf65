"""The reader-study service: idempotent submit, reading order and exact resume, washout and repeat reads,
back navigation, reference images, the decoded-image cache and its defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text

from reader_study.auth import SYSTEM
from reader_study.db import open_database
from reader_study.errors import AccessDenied, AnswerConflict, StudyStateError
from reader_study.models import Answer, Assignment, Item
from reader_study.order import min_case_distance, reading_order
from reader_study.service import ReaderStudyService
from reader_study.service.answers import score
from reader_study.service.base import IMAGE_CACHE_ITEMS
from support import LIKERT_ANSWERS, make_service, open_study, spec_dict, write_disc_cases
from vce_core.cache import LRU
from vce_core.errors import VCEInputError
from vce_core.settings import sqlite_url


def _answer_all(svc, actor, name="t-study", n=None):  # noqa: ANN001, ANN202
    served = []
    while n is None or len(served) < n:
        item = svc.next_item(actor, name)
        if item.status != "item":
            break
        svc.submit_answers(actor, name, item.public_id, LIKERT_ANSWERS)
        served.append(item.public_id)
    return served


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


def test_resume_is_exact_and_order_stable(study, tmp_path: Path, db_url: str) -> None:
    svc, (r1, r2), out = study
    answered = _answer_all(svc, r1, n=4)
    nxt = svc.next_item(r1, "t-study")
    # a new process (new service over the same file) resumes at exactly the same item
    svc2 = make_service(tmp_path, db_url)
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


def test_status_washout_and_repeat_reads(tmp_path: Path, db_url: str) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path, db_url)
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


def test_back_navigation_when_allowed(tmp_path: Path, db_url: str) -> None:
    svc, out = open_study(tmp_path, 2, db_url, readers=1, allow_back=True)
    r = svc.authenticate(out["readers"][0]["token"])
    ids = _answer_all(svc, r, n=2)
    back = svc.item_at(r, "t-study", 1)
    assert back.public_id == ids[0] and back.answers["noise"] == "5"
    changed = svc.submit_answers(r, "t-study", ids[0], {**LIKERT_ANSWERS, "noise": 2})
    assert (changed.status, changed.rows) == ("changed", 1)
    assert svc.next_item(r, "t-study").position == 3
    with pytest.raises(AccessDenied):
        svc.item_at(r, "t-study", 5)


def test_reference_images_and_audit_trail(tmp_path: Path, db_url: str) -> None:
    svc, out = open_study(tmp_path, 2, db_url, readers=1, show_reference=True)
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


def test_decoded_images_are_cached_read_only(study) -> None:
    svc, (r1, _), _ = study
    assert isinstance(svc._images, LRU) and svc._images.capacity == IMAGE_CACHE_ITEMS
    item = svc.next_item(r1, "t-study")
    first = svc.item_images(r1, "t-study", item.public_id)
    assert svc.item_images(SYSTEM, "t-study", item.public_id) is first  # decoded once
    assert len(svc._images) == 1
    assert all(a.dtype == np.uint8 and a.ndim == 2 and not a.flags.writeable for a in first)
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0] = 1


def test_served_items_carry_their_own_slices(study) -> None:
    """The calls that serve an item read its slices in the same transaction (no second round trip): they
    are the item's slices, for the first item and after a submit, and never part of its printed form."""
    svc, (r1, _), _ = study
    item = svc.next_item(r1, "t-study")
    own = svc.item_images(SYSTEM, "t-study", item.public_id)
    assert item.images and all(a is b for a, b in zip(item.images, own, strict=True))
    status, nxt = svc.submit_and_next(r1, item.ticket, "key-0001", LIKERT_ANSWERS, "t-study")
    assert status == "stored" and nxt.public_id != item.public_id
    expected = svc.item_images(SYSTEM, "t-study", nxt.public_id)
    assert len(nxt.images) == len(expected) and all(a is b for a, b in zip(nxt.images, expected, strict=True))
    assert "images" not in repr(nxt)


def test_paths_default_to_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCE_MODELS_DIR", str(tmp_path / "models"))
    svc = ReaderStudyService(open_database(sqlite_url(tmp_path / "rs.db")))
    assert (svc.data_root, svc.models_dir) == (tmp_path / "data", tmp_path / "models")
    given = ReaderStudyService(svc.db, data_root="cases", models_dir=tmp_path)
    assert (given.data_root, given.models_dir) == (Path("cases"), tmp_path)


def test_scores() -> None:
    assert [score(v, "q") for v in (4, "4", "4 – good", 4.0, np.int64(2))] == [4, 4, 4, 4, 2]
    for bad in (True, 0, 6, 3.5, "good", None):
        with pytest.raises(VCEInputError, match="score from 1 to 5"):
            score(bad, "q")
