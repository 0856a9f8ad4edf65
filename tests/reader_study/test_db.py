"""Storage: constraints in the schema, schema version, portable DDL, and the default database location."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from reader_study import __main__ as cli
from reader_study.db import SchemaVersionError, default_url, open_database
from reader_study.models import Answer, Study
from support import LIKERT_ANSWERS
from vce_core.settings import Settings, sqlite_url


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


def test_schema_version_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    db = open_database(url)
    with db.write() as s:
        s.execute(text("UPDATE schema_version SET version = 99"))
    db.dispose()
    with pytest.raises(SchemaVersionError, match="schema version \\[99\\].*needs 1"):
        open_database(url)


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


def test_default_database_follows_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VCE_DB_URL", "VCE_DATA_DIR", "VCE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # the same default as app.py: data/ in the current working directory
    assert default_url() == Settings.resolve().db_url == sqlite_url(tmp_path / "data" / "reader_study.db")
    open_database().dispose()
    assert (tmp_path / "data" / "reader_study.db").is_file()
    monkeypatch.setenv("VCE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_url() == sqlite_url(tmp_path / "elsewhere" / "reader_study.db")
    monkeypatch.setenv("VCE_DB_URL", sqlite_url(tmp_path / "env.db"))
    assert default_url() == sqlite_url(tmp_path / "env.db")


def test_cli_database_follows_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VCE_DB_URL", "VCE_DATA_DIR", "VCE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list"]) == 0
    assert (tmp_path / "data" / "reader_study.db").is_file()
    assert cli.main(["list", "--data-dir", str(tmp_path / "d")]) == 0  # the flag moves the database too
    assert (tmp_path / "d" / "reader_study.db").is_file()
    assert cli.main(["--db", sqlite_url(tmp_path / "flag.db"), "list", "--data-dir", "d"]) == 0
    assert (tmp_path / "flag.db").is_file()
