"""app.py itself: settings in, one Studio out (Blocks + tab objects), every endpoint name kept, launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ENDPOINTS = {
    "/dose",
    "/analysis",
    "/plane",
    "/case",
    "/model_card",
    "/volume_metrics",
    "/echo_image",
    "/check_upload",
    "/synthesize_upload",
    "/export_format",
}


def test_stale_upload_folders_are_removed_at_start(
    served: dict[str, Any], workspace: dict[str, Path]
) -> None:
    assert not workspace["stale"].exists()


def test_settings_reach_every_part(served: dict[str, Any], workspace: dict[str, Path]) -> None:
    studio, settings = served["studio"], served["settings"]
    assert (workspace["root"] / "rs.db").is_file()  # the reader-study database is the one of the settings
    assert studio.max_file_size == studio.upload_tab.uploads.limits.max_bytes
    assert studio.explorer_tab.data_dir == settings.data_dir
    assert studio.explorer_tab.case_ids == [served["case_id"]]
    assert studio.upload_tab.uploads.root == settings.uploads_dir


def test_every_endpoint_name_is_kept(served: dict[str, Any]) -> None:
    info = served["client"].view_api(return_format="dict", print_info=False)
    assert ENDPOINTS <= set(info["named_endpoints"])


def test_app_without_generator_builds_and_says_so(workspace: dict[str, Path], tmp_path: Path) -> None:
    import app
    from studio.generators import GeneratorRegistry
    from vce_core.settings import Settings

    registry = GeneratorRegistry(tmp_path / "no-models")
    assert "No generator installed" in registry.summary(None)
    settings = Settings.resolve(data_dir=workspace["data"], models_dir=tmp_path / "no-models", environ={})
    studio = app.build_app(settings, reader_study=False)
    assert studio.explorer_tab.explorer.generators.names() == []


def test_missing_data_folder_is_a_command_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import app

    with pytest.raises(SystemExit) as exit_info:
        app.main(["--data", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_taken_port_is_one_plain_line(capsys: pytest.CaptureFixture) -> None:
    import socket

    import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            app.main(["--port", str(port), "--data", "."])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: port {port} on 127.0.0.1 is already in use; choose another one with --port"


def test_the_page_head_carries_the_viewer(served: dict[str, Any]) -> None:
    import urllib.request

    with urllib.request.urlopen(served["url"]) as page:
        text = page.read().decode()
    assert "window.VCEViewer" in text and "vce-viewer" in text
