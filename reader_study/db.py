"""Engine and sessions: SQLite by default (WAL, foreign keys, busy timeout), any SQLAlchemy URL otherwise.

The URL comes from :meth:`vce_core.settings.Settings.resolve`, like everywhere in the project: the ``url``
argument (CLI ``--db``), else the environment variable ``VCE_DB_URL``, else the SQLite file
``<data dir>/reader_study.db`` with the data directory ``$VCE_DATA_DIR`` or ``data/`` in the current working
directory (the same file ``app.py`` uses).

SQLite specifics live only in the ``connect``/``begin`` event handlers below: every connection turns on
``journal_mode=WAL``, ``foreign_keys=ON`` and ``busy_timeout``; transactions opened through
:meth:`Database.write` start with ``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of
failing with "database is locked" when a read transaction tries to upgrade to a write. Other databases get
plain SQLAlchemy transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from vce_core.errors import VCEInputError, as_input_error
from vce_core.settings import Settings

from .models import SCHEMA_VERSION, AuditEvent, Base, Case, Item, SchemaVersion, new_ticket

BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 8
"""Pooled connections per process on server databases (PostgreSQL), plus as many on overflow."""


class SchemaVersionError(RuntimeError):
    """The database was written by another schema version of reader_study."""


def default_url() -> str:
    """The database URL of :meth:`Settings.resolve`: ``$VCE_DB_URL`` or ``<data dir>/reader_study.db``."""
    return Settings.resolve().db_url


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not pysqlite) emit BEGIN, so BEGIN IMMEDIATE and SAVEPOINTs behave.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("vce_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus session factories; thread-safe (one session per call).

    Use ``with db.read() as s:`` for queries and ``with db.write() as s:`` for changes (committed on
    success, rolled back on error).
    """

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        url = url or default_url()
        expected = "an SQLAlchemy URL such as sqlite:///x.db"
        with as_input_error(f"{url!r} is not a database URL", catch=ArgumentError, expected=expected):
            parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # the pinned driver (psycopg 3)
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            db_path = parsed.database
            if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_SIZE, pool_timeout=60)
        self.engine = create_engine(parsed, **kwargs)
        if self.is_sqlite:
            _sqlite_events(self.engine)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(vce_write=True), expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; its transaction is released (not committed) when the block ends."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without an exception.

        On SQLite, writers of this process queue on a lock first (fair and without the busy handler's
        sleep-and-retry, which inflates latency when many threads write at once); other processes still
        wait on the busy timeout.
        """
        if self._write_lock is None:
            with self._write() as session, session.begin():
                yield session
            return
        with self._write_lock, self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _where(db: Database) -> str:
    return db.url.render_as_string(hide_password=True)


def open_database(url: str | None = None, *, create: bool = True, echo: bool = False) -> Database:
    """Open (and with ``create``, initialise) the reader-study database and check its schema version.

    Raises
    ------
    SchemaVersionError
        The database holds reader-study tables of another schema version (or none recorded).
    VCEInputError
        Bad URL, or an empty database with ``create=False``.
    """
    db = Database(url, echo=echo)
    tables = set(inspect(db.engine).get_table_names())
    if "schema_version" not in tables:
        ours = {t.name for t in Base.metadata.sorted_tables}
        if tables & ours:
            raise SchemaVersionError(
                f"{_where(db)} has reader-study tables but no schema_version; "
                "it was written by an incompatible version. Use a new database or migrate it."
            )
        if not create:
            raise VCEInputError(
                "the database has no reader-study tables",
                path=str(db.url),
                expected="an initialised database",
            )
        Base.metadata.create_all(db.engine)
        with db.write() as s:
            s.add(SchemaVersion(version=SCHEMA_VERSION))
        return db
    with db.read() as s:
        versions = list(s.scalars(select(SchemaVersion.version)))
    if versions == [1]:
        _migrate_1_to_2(db)
        versions = [SCHEMA_VERSION]
    if versions != [SCHEMA_VERSION]:
        db.dispose()
        raise SchemaVersionError(
            f"{_where(db)} has schema version {versions or 'none'}, this code "
            f"needs {SCHEMA_VERSION}. Use a new database or migrate it."
        )
    return db


def _migrate_1_to_2(db: Database) -> None:
    """Schema 1 → 2 in one transaction: the new tables (submissions, sessions), a random ticket for every
    assignment, the focus slice of every case (the middle one: schema 1 kept no ranking), the audit index
    of the log-in limit, and the dose of acquired standard-dose (1) and native
    (0) items, which schema 1 left empty."""
    with db.write() as s:
        conn = s.connection()
        if conn.execute(select(SchemaVersion.version).with_for_update()).scalar() != 1:
            return  # another process migrated it first
        Base.metadata.create_all(conn, checkfirst=True)
        conn.execute(text("ALTER TABLE assignment ADD COLUMN ticket VARCHAR(32)"))
        ids = [row[0] for row in conn.execute(text("SELECT id FROM assignment"))]
        for assignment_id in ids:
            conn.execute(
                text("UPDATE assignment SET ticket = :t WHERE id = :i"),
                {"t": new_ticket(), "i": assignment_id},
            )
        conn.execute(text("CREATE UNIQUE INDEX uq_assignment_ticket ON assignment (ticket)"))
        conn.execute(text('ALTER TABLE "case" ADD COLUMN focus INTEGER NOT NULL DEFAULT 0'))
        for case_id, slices in conn.execute(select(Case.id, Case.slices)):
            conn.execute(update(Case).where(Case.id == case_id).values(focus=len(slices or [0]) // 2))
        for index in AuditEvent.__table__.indexes:
            index.create(conn, checkfirst=True)
        for condition, dose in (("real_standard_dose", 1.0), ("native", 0.0)):
            conn.execute(
                update(Item).where(Item.condition == condition, Item.dose.is_(None)).values(dose=dose)
            )
        conn.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))
