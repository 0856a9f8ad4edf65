"""``python app.py --role reader|admin``: one-role deployments built by ``studio.wiring.build_role_app``;
the all-in-one app carries the not-blinded warning."""

from __future__ import annotations

from pathlib import Path

import pytest

import app
from reader_study.auth import SYSTEM
from studio.wiring import NOT_BLINDED, build_role_app
from support import make_service, spec_dict, write_disc_cases
from vce_core.errors import VCEInputError
from vce_core.settings import Settings, sqlite_url


def _endpoints(blocks) -> set[str]:  # noqa: ANN001
    return {str(d.get("api_name")) for d in blocks.get_config_file()["dependencies"]}


def test_role_deployments_serve_one_view(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    make_service(tmp_path).create_study(SYSTEM, spec_dict(tmp_path, readers=1))
    settings = Settings.resolve(
        data_dir=tmp_path, models_dir=tmp_path / "models", db_url=sqlite_url(tmp_path / "rs.db")
    )
    reader = build_role_app(settings, "reader")
    admin = build_role_app(settings, "admin")
    assert {"r_login", "r_submit"} <= _endpoints(reader.blocks)
    assert not any(e.startswith("a_") for e in _endpoints(reader.blocks))
    assert {"a_login", "a_export", "a_close"} <= _endpoints(admin.blocks)
    assert not any(e.startswith("r_") for e in _endpoints(admin.blocks))
    labels = " ".join(
        str(c.get("props", {}).get("label")) for c in reader.blocks.get_config_file()["components"]
    )
    assert "dose" not in labels.lower() and "generator" not in labels.lower()
    routes = [r.path for r in reader.launch_options["app_kwargs"]["routes"]]
    assert routes == ["/rs/session", "/rs/session"] and "head" in reader.launch_options
    with pytest.raises(VCEInputError, match="unknown role"):
        build_role_app(settings, "explorer")
    assert app.parse_args(["--role", "reader"])[1].role == "reader"
    assert app.parse_args([])[1].role == "all"
    assert "not blinded" in NOT_BLINDED and "--role reader" in NOT_BLINDED


def test_every_deployment_builds_its_queue_with_the_project_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradio's queue reads GRADIO_ANALYTICS_* when the Blocks are built, not at launch: every app factory
    sets them first (the reader server once summarised 10,000 events after every submit)."""
    from reader_study.ui import admin_app, reader_app
    from vce_core.settings import GRADIO_ENV

    for key in GRADIO_ENV:
        monkeypatch.delenv(key, raising=False)
    service = make_service(tmp_path)
    settings = Settings.resolve(
        data_dir=tmp_path, models_dir=tmp_path / "models", db_url=sqlite_url(tmp_path / "rs.db")
    )
    built = [reader_app(service), admin_app(service)]
    for key in GRADIO_ENV:  # app.build_app must not rely on app.py's import having set them
        monkeypatch.delenv(key, raising=False)
    studio = app.build_app(settings, reader_study=False)
    for blocks in [*built, studio.blocks]:
        queue = blocks._queue
        assert queue.ANAYLTICS_CACHE_FREQUENCY == int(GRADIO_ENV["GRADIO_ANALYTICS_CACHE_FREQUENCY"])
        assert queue.ANALYTICS_MAX_EVENTS == int(GRADIO_ENV["GRADIO_ANALYTICS_MAX_EVENTS"])


def test_all_in_one_app_heads_both_study_tabs_with_the_not_blinded_notice(tmp_path: Path) -> None:
    """The notice sits inside the Reader-study and Study-admin tabs (a component directly in gr.Tabs is not
    shown as a tab's content; pytest turns Gradio's warning about it into an error)."""
    write_disc_cases(tmp_path, 2)
    settings = Settings.resolve(
        data_dir=tmp_path, models_dir=tmp_path / "models", db_url=sqlite_url(tmp_path / "rs.db")
    )
    config = app.build_app(settings).blocks.get_config_file()
    components = {c["id"]: c for c in config["components"]}
    found: dict[str, str | None] = {}

    def walk(node: dict, tab: str | None) -> None:
        comp = components.get(node["id"], {})
        props = comp.get("props", {})
        if comp.get("type") == "tabitem":
            tab = props.get("elem_id")
        if comp.get("type") == "markdown" and props.get("value") == NOT_BLINDED:
            found[props.get("elem_id")] = tab
        for child in node.get("children", []):
            walk(child, tab)

    walk(config["layout"], None)
    assert found == {"rs-not-blinded": "rs-reader-tab", "rs-not-blinded-admin": "rs-admin-tab"}
