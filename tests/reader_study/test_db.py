"""Storage, on SQLite and PostgreSQL: constraints in the schema, schema version and the migration from
schema 1, portable DDL, and the default database location."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from reader_study import __main__ as cli
from reader_study.db import Database, SchemaVersionError, default_url, open_database
from reader_study.models import Answer, Study
from support import LIKERT_ANSWERS
from vce_core.settings import Settings, sqlite_url


def test_duplicate_answer_impossible_at_db_level(study) -> None:  # on both backends
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


def test_schema_version_mismatch_is_a_clear_error(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as s:
        s.execute(text("UPDATE schema_version SET version = 99"))
    db.dispose()
    with pytest.raises(SchemaVersionError, match="schema version \\[99\\].*needs 2"):
        open_database(db_url)


V1_ROWS = [
    "INSERT INTO schema_version (version) VALUES (1)",
    "INSERT INTO study (id, name, instructions, status, seed, allow_back, show_reference, repeat_reads, "
    "washout_days, min_distance, spec, created_at) VALUES (1, 'old', '', 'open', 1, false, false, 1, 0, 0, "
    "'{}', '2026-01-01 00:00:00')",
    "INSERT INTO question (id, study_id, key, position, kind, text, required, options) VALUES "
    '(1, 1, \'q\', 0, \'likert\', \'Quality\', true, \'{"anchors": {"1": "a", "2": "b", '
    '"3": "c", "4": "d", "5": "e"}}\')',
    'INSERT INTO "case" (id, study_id, case_key, source_path, window_low, window_high, slices, plane) '
    "VALUES (1, 1, 'c1', '', 0, 1, '[3, 4, 5, 6, 7]', 'axial')",
    "INSERT INTO item (id, public_id, study_id, case_id, condition, dose, generator, n_slices, is_reference) "
    "VALUES (1, 'ia', 1, 1, 'real_standard_dose', NULL, NULL, 5, false), "
    "(2, 'ib', 1, 1, 'real_low_dose', 0.33, NULL, 5, false)",
    "INSERT INTO reader (id, display_name, role, token_id, token_salt, token_hash, active, created_at) "
    "VALUES (1, 'R', 'reader', 'xxxxxxxx', :salt, :hash, true, '2026-01-01 00:00:00')",
    "INSERT INTO enrollment (study_id, reader_id, enrolled_at) VALUES (1, 1, '2026-01-01 00:00:00')",
    "INSERT INTO assignment (id, study_id, reader_id, item_id, iteration, position) VALUES "
    "(1, 1, 1, 1, 1, 0), (2, 1, 1, 2, 1, 1)",
]


def schema_v1_ddl(dialect: str) -> str:
    """The first release's DDL (``schema_v1.sql``, as SQLite created it) in ``dialect``: PostgreSQL differs
    only in the types SQLAlchemy chose for it (SERIAL keys, BYTEA, TIMESTAMP WITH TIME ZONE)."""
    ddl = (Path(__file__).parent / "schema_v1.sql").read_text()
    if dialect == "postgresql":
        ddl = ddl.replace("BLOB", "BYTEA").replace("DATETIME", "TIMESTAMP WITH TIME ZONE")
        ddl = re.sub(r"^\t(id|version) INTEGER NOT NULL,", r"\t\1 SERIAL NOT NULL,", ddl, flags=re.M)
    return ddl


def test_schema_1_is_migrated(db_url: str) -> None:
    from sqlalchemy import create_engine

    from reader_study.auth import hash_token
    from reader_study.models import Assignment, Case, Item
    from reader_study.service import ReaderStudyService

    ddl = schema_v1_ddl("sqlite" if db_url.startswith("sqlite") else "postgresql")
    engine = create_engine(Database(db_url).url)
    with engine.begin() as conn:
        code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
        for statement in code.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        salt = b"0123456789abcdef"
        for row in V1_ROWS:
            conn.execute(text(row), {"salt": salt, "hash": hash_token("xxxxxxxx-token", salt)})
    engine.dispose()
    db = open_database(db_url)
    with db.read() as s:
        assert list(s.scalars(select(text("version")).select_from(text("schema_version")))) == [2]
        tickets = list(s.scalars(select(Assignment.ticket)))
        assert len(set(tickets)) == 2 and all(len(t) >= 20 for t in tickets)
        assert s.scalar(select(Item.dose).where(Item.public_id == "ia")) == 1.0
        assert s.scalar(select(Case.focus)) == 2
    svc = ReaderStudyService(db)
    actor = svc.authenticate("xxxxxxxx-token")
    served = svc.next_item(actor, "old")
    assert served.public_id == "ia" and served.ticket in tickets
    assert svc.submit(actor, served.ticket, "k" * 10, {"q": 3}).status == "stored"
    assert open_database(db_url).url == db.url  # a second open finds schema 2 and changes nothing


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
