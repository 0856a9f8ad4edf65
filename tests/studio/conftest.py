"""Fixtures of the studio tests: one data folder with a 2 mm phantom case and a tiny generator, and one
studio built from it and launched once for every test module that calls its endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import GENERATOR, copy_case, free_port, phantom_case, write_app_checkpoint


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``data`` (one phantom case under demo/ and a stale upload folder), ``models`` (one generator)."""
    root = tmp_path_factory.mktemp("studio")
    data = root / "data"
    case_dir = copy_case(phantom_case(tmp_path_factory), data)
    stale = data / "uploads" / "stale-session"
    stale.mkdir(parents=True)
    (stale / "native-old.nii.gz").write_bytes(b"left over from an earlier run")
    models = root / "models"
    write_app_checkpoint(models / GENERATOR)
    return {"root": root, "data": data, "models": models, "case": case_dir, "stale": stale}


@pytest.fixture(scope="session")
def served(workspace: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """The studio of :func:`workspace`, launched: ``studio`` (app.Studio), ``url``, ``client``, ``case_id``,
    ``settings``."""
    from gradio_client import Client

    import app
    from vce_core.settings import Settings

    settings = Settings.resolve(
        data_dir=workspace["data"],
        models_dir=workspace["models"],
        db_url=f"sqlite:///{workspace['root'] / 'rs.db'}",
    )
    studio = app.build_app(settings)
    _, url, _ = app.launch(studio, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False)
    case_id = f"demo/{workspace['case'].name}"
    try:
        yield {"studio": studio, "url": url, "client": client, "case_id": case_id, "settings": settings}
    finally:
        studio.close()
