"""The demo study: built once, idempotent, documented tokens, the four default arms."""

from __future__ import annotations

from pathlib import Path

from reader_study.demo import DEMO_ADMIN_TOKEN, DEMO_READER_TOKENS, ensure_demo_study
from reader_study.models import Item
from reader_study.service import SYSTEM
from support import FakeGenerator, make_service, write_disc_cases


def test_demo_study_is_built_once(tmp_path: Path) -> None:
    folders = write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    first = ensure_demo_study(svc, folders, tmp_path / "models")
    assert first["created"] and first["items"] == 2 * 4
    assert DEMO_ADMIN_TOKEN in first["message"] and all(t in first["message"] for t in DEMO_READER_TOKENS)
    again = ensure_demo_study(svc, folders, tmp_path / "models")
    assert not again["created"] and again["items"] == first["items"]
    with svc.db.read() as s:
        arms = {(i.condition, i.dose, i.generator) for i in s.query(Item)}
    assert arms == {
        ("real_standard_dose", 1.0, None),  # acquired at the full dose
        ("real_low_dose", 0.33, None),
        ("synthetic_low_dose", 0.33, FakeGenerator.name),
        ("linear_baseline", 0.33, None),
    }
    admin = svc.authenticate(DEMO_ADMIN_TOKEN)
    assert admin.role == "admin"
    progress = svc.progress_all(admin, first["study"])
    assert list(progress["reader"]) == ["Reader 1", "Reader 2", "Reader 3"]
    reader = svc.authenticate(DEMO_READER_TOKENS[0])
    assert svc.next_item(reader, first["study"]).status == "item"
    assert svc.list_studies(SYSTEM)[0]["status"] == "open"
