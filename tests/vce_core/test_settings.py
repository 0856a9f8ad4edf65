"""One settings object: flag > environment variable > default, paths absolute."""

from __future__ import annotations

from pathlib import Path

import pytest

from vce_core.settings import BUNDLED_MODELS, Settings


def test_defaults_are_data_in_cwd_and_bundled_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.resolve(environ={})
    assert s.data_dir == tmp_path / "data" and s.data_dir.is_absolute()
    assert s.models_dir == BUNDLED_MODELS and (BUNDLED_MODELS / "ld_cgan_2d_np" / "card.json").is_file()
    assert s.db_url == f"sqlite:///{tmp_path / 'data' / 'reader_study.db'}"
    assert s.uploads_dir == s.data_dir / "uploads" and s.demo_dir == s.data_dir / "demo"


def test_environment_then_flags_win(tmp_path: Path) -> None:
    env = {
        "VCE_DATA_DIR": str(tmp_path / "d"),
        "VCE_MODELS_DIR": str(tmp_path / "m"),
        "VCE_DB_URL": "sqlite://",
    }
    s = Settings.resolve(environ=env)
    assert (s.data_dir, s.models_dir, s.db_url) == (tmp_path / "d", tmp_path / "m", "sqlite://")
    s = Settings.resolve(data_dir=tmp_path / "x", db_url="postgresql+psycopg://u@h/db", environ=env)
    assert (
        s.data_dir == tmp_path / "x" and s.db_url.startswith("postgresql") and s.models_dir == tmp_path / "m"
    )
    # the database follows the data folder unless it is given
    s = Settings.resolve(data_dir=tmp_path / "y", environ={})
    assert s.db_url == f"sqlite:///{tmp_path / 'y' / 'reader_study.db'}"
