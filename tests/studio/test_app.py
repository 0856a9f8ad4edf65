"""app.py itself: settings in, one Studio out (Blocks + tab objects), every endpoint name kept, launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ENDPOINTS = {
    "/dose",
    "/dose_panels",
    "/render",
    "/charts",
    "/window_preset",
    "/plane",
    "/case",
    "/model_card",
    "/volume_metrics",
    "/echo_image",
    "/check_upload",
    "/synthesize_upload",
}


def test_stale_upload_folders_are_removed_at_start(
    served: dict[str, Any], workspace: dict[str, Path]
) -> None:
    assert not workspace["stale"].exists()


def test_settings_reach_every_part(served: dict[str, Any], workspace: dict[str, Path]) -> None:
    studio, settings = served["studio"], served["settings"]
    assert (workspace["root"] / "rs.db").is_file()  # the reader-study database is the one of the settings
    assert studio.allowed_paths == [str(settings.uploads_dir)]
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
