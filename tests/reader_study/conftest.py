"""Fixtures of the reader-study tests.

``db_url`` runs a test on both backends: SQLite (a file in the test's folder) and PostgreSQL (a fresh
database per test on the server named by ``$VCE_TEST_PG_URL``, which ``.ci/run`` starts and exports).
Without that variable the PostgreSQL runs are skipped locally and fail in CI (``CI`` set).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from reader_study.auth import SYSTEM
from reader_study.ui import launch_kwargs, mount_reader_study
from support import open_study

PG_ENV = "VCE_TEST_PG_URL"
BACKENDS = ("sqlite", "postgresql")


def postgres_admin_url() -> str:
    """The PostgreSQL server of the tests; skip (locally) or fail (CI) without one."""
    url = os.environ.get(PG_ENV)
    if url:
        return url
    message = f"${PG_ENV} is not set: no PostgreSQL server for the tests (.ci/run starts one)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _admin_engine(admin_url: str):  # noqa: ANN202
    url = make_url(admin_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url, create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
    url, engine = _admin_engine(postgres_admin_url())
    name = f"rs_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of a test, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rs.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def study(tmp_path: Path, db_url: str):
    """(service, [reader 1, reader 2] actors, create_study output) of an open 3-case study ``t-study``."""
    svc, out = open_study(tmp_path, 3, db_url)
    readers = [svc.authenticate(r["token"]) for r in out["readers"]]
    yield svc, readers, out
    svc.db.dispose()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    """The all-in-one reader and admin tabs over a 2-case study, launched (SQLite)."""
    root = tmp_path_factory.mktemp("rs-ui")
    svc, out = open_study(root, 2, readers=2)
    _, admin_token = svc.create_admin(SYSTEM, "Admin")
    with gr.Blocks() as demo:
        mount_reader_study(svc)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(svc))
    yield {
        "svc": svc,
        "url": url,
        "study": out["study"],
        "readers": [r["token"] for r in out["readers"]],
        "admin": admin_token,
    }
    demo.close()
