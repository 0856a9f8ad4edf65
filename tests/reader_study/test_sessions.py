"""Sessions and ticket submits on SQLite and PostgreSQL: log-in, expiry, log-out, the failed-log-in limit;
replays, reused keys, second tabs and concurrent submits never store an answer for another item."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from reader_study.auth import SYSTEM
from reader_study.errors import AccessDenied, AnswerConflict
from reader_study.models import Answer, Reader, ReaderSession, Submission, utcnow
from reader_study.service import ReaderStudyService
from reader_study.service.sessions import MAX_FAILED_LOGINS
from support import LIKERT_ANSWERS


def _rows(svc: ReaderStudyService) -> int:
    with svc.db.read() as s:
        return s.scalar(select(func.count(Answer.id))) or 0


def test_session_log_in_expiry_and_log_out(study) -> None:
    svc, _, out = study
    actor, secret = svc.login(out["readers"][0]["token"], "10.0.0.1")
    assert svc.session_actor(secret) == actor and len(secret) >= 40
    with svc.db.read() as s:  # only the hash is stored
        stored = list(s.scalars(select(ReaderSession.secret_hash)))
    assert secret not in stored and len(stored) == 1
    for bad in ("", None, secret[:-1] + "x", "x" * 500):
        with pytest.raises(AccessDenied, match="log in"):
            svc.session_actor(bad)
    fresh = ReaderStudyService(svc.db)  # another worker: no cache, same answer
    assert fresh.session_actor(secret) == actor
    with svc.db.write() as s:
        s.execute(update(ReaderSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(AccessDenied, match="session has ended"):
        ReaderStudyService(svc.db).session_actor(secret)
    _, second = svc.login(out["readers"][0]["token"])
    svc.logout(second)
    with pytest.raises(AccessDenied):
        svc.session_actor(second)
    _, third = svc.login(out["readers"][1]["token"])
    with svc.db.write() as s:
        s.execute(update(Reader).where(Reader.id == out["readers"][1]["reader_id"]).values(active=False))
    with pytest.raises(AccessDenied):
        ReaderStudyService(svc.db).session_actor(third)


def test_failed_log_ins_are_limited_per_address(study) -> None:
    svc, _, out = study
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied, match="not valid"):
            svc.login("wrong-token-guess", "10.0.0.66")
    with pytest.raises(AccessDenied, match="Too many"):  # even the right token, from that address
        svc.login(out["readers"][0]["token"], "10.0.0.66")
    assert svc.login(out["readers"][0]["token"], "10.0.0.7")[0].display_name == "Reader 1"


def test_replays_reused_keys_and_foreign_tickets(study) -> None:
    svc, (r1, r2), _ = study
    first = svc.next_item(r1, "t-study")
    stored = svc.submit(r1, first.ticket, "key-0001", LIKERT_ANSWERS)
    assert stored.status == "stored" and stored.duration_ms is not None
    for _ in range(3):  # the same request replayed: nothing more is stored, whatever it says
        assert svc.submit(r1, first.ticket, "key-0001", {**LIKERT_ANSWERS, "noise": 1}).status == "duplicate"
    assert _rows(svc) == 4
    second = svc.next_item(r1, "t-study")
    with pytest.raises(AnswerConflict, match="another image"):  # a key is bound to its item
        svc.submit(r1, second.ticket, "key-0001", LIKERT_ANSWERS)
    other = svc.next_item(r2, "t-study")
    with pytest.raises(AccessDenied, match="No such item"):  # another reader's ticket
        svc.submit(r1, other.ticket, "key-0002", LIKERT_ANSWERS)
    with pytest.raises(AccessDenied, match="No such item"):
        svc.submit(r1, "not-a-ticket", "key-0003", LIKERT_ANSWERS)
    assert _rows(svc) == 4
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert set(frame["item"]) == {first.public_id}


def test_a_second_tab_cannot_answer_another_item(study) -> None:
    svc, (r1, _), _ = study
    tab_a = svc.next_item(r1, "t-study")
    tab_b = svc.next_item(r1, "t-study")  # the same item, served again in another tab
    assert tab_a.ticket == tab_b.ticket
    svc.submit(r1, tab_a.ticket, "tab-a-key", LIKERT_ANSWERS)
    same = svc.submit(r1, tab_b.ticket, "tab-b-key", dict(LIKERT_ANSWERS))
    assert same.status == "duplicate"
    with pytest.raises(AnswerConflict):
        svc.submit(r1, tab_b.ticket, "tab-b-key2", {**LIKERT_ANSWERS, "noise": 2})
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert len(frame) == 4 and set(frame["item"]) == {tab_a.public_id}
    assert svc.next_item(r1, "t-study").position == 2


def test_concurrent_submits_store_once(study) -> None:
    svc, (r1, _), _ = study
    item = svc.next_item(r1, "t-study")
    results: list[str] = []
    errors: list[BaseException] = []

    def go(key: str) -> None:
        try:
            results.append(svc.submit(r1, item.ticket, key, LIKERT_ANSWERS).status)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(f"key-{k % 3:04d}",)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results).count("stored") == 1 and results.count("duplicate") == 11
    assert _rows(svc) == 4
    with svc.db.read() as s:  # one outcome per key, one of them the stored one
        assert sorted(s.scalars(select(Submission.status))) == ["duplicate", "duplicate", "stored"]


def test_time_on_task_is_measured(study) -> None:
    svc, (r1, _), _ = study
    item = svc.next_item(r1, "t-study")
    time.sleep(0.3)
    result = svc.submit(r1, item.ticket, "timed-key", LIKERT_ANSWERS)
    assert 300 <= result.duration_ms < 10_000
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert (frame["duration_ms"] == result.duration_ms).all()
