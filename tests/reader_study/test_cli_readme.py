"""The README's reader-study CLI example runs as written on the database the app creates."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from reader_study import __main__ as cli
from reader_study.db import open_database
from reader_study.demo import ensure_demo_study
from reader_study.service import ReaderStudyService
from support import FakeGenerator, record_sequence, write_disc_cases
from vce_core.settings import REPO_ROOT, sqlite_url


def readme_commands() -> list[list[str]]:
    """The ``python -m reader_study ...`` lines of the README's "Demo reader study" section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Demo reader study", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(r"^python -m reader_study (.+)$", section, flags=re.M)
    return [shlex.split(line.split("  #")[0]) for line in lines]


def test_the_readme_cli_example_works_on_the_app_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VCE_DB_URL", "VCE_DATA_DIR", "VCE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # stands for the repository root: configs/ and the app's data/
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    folders = [f.rename(data / "demo" / f.name) for f in write_disc_cases(tmp_path, 2)]
    for folder in folders:  # the app's demo phantom cases record their T1 sequence (the default needs it)
        record_sequence(folder)
    # what python app.py leaves: data/reader_study.db holding the demo study
    database = open_database(sqlite_url(data / "reader_study.db"))
    app = ReaderStudyService(database, data_root=data, generator_loader=lambda name: FakeGenerator())
    ensure_demo_study(app, folders)
    database.dispose()
    commands = readme_commands()
    assert [c[0] for c in commands] == ["create", "export"]
    for command in commands:
        assert cli.main(command) == 0, command
    out = tmp_path / "answers.csv"
    assert out.is_file() and {"study", "reader", "item", "condition", "dose"} <= set(pd.read_csv(out).columns)
