"""vce_core.io.volume: grids, the shared write-then-swap helper and the package's public names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vce_core.io as vio
from vce_core.domain import check_field_strength
from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume
from vce_core.io.volume import GRID_ATOL_MM, check_for_file, check_same_grid, folder_replaced_on_success


def test_package_exports_what_callers_import() -> None:
    for name in vio.__all__:
        assert getattr(vio, name) is not None, name
    imported_by_callers = (
        "Volume Case load_volume save_nifti save_dicom_series load_case save_case iter_case_folders "
        "CASE_FORMAT CASE_VERSION MAX_ZIP_TOTAL_BYTES"
    )
    assert set(imported_by_callers.split()) <= set(vio.__all__)
    assert vio.Volume.__module__ == "vce_core.io.volume"
    assert vio.load_volume.__module__ == "vce_core.io.load"


def test_same_grid_within_tolerance_only() -> None:
    base = Volume(np.zeros((4, 5, 6), np.float32))
    near, far = np.eye(4), np.eye(4)
    near[0, 3] = GRID_ATOL_MM / 2
    far[0, 3] = GRID_ATOL_MM * 2
    assert base.same_grid(Volume(np.ones((4, 5, 6), np.float32), near))
    assert not base.same_grid(Volume(np.ones((4, 5, 6), np.float32), far))
    assert not base.same_grid(Volume(np.ones((4, 5, 7), np.float32)))
    assert Volume(np.zeros((2, 2, 2)), far).origin == (GRID_ATOL_MM * 2, 0.0, 0.0)


def test_check_same_grid_names_both_files(tmp_path: Path) -> None:
    with pytest.raises(VCEInputError) as info:
        check_same_grid(Volume(np.zeros((2, 2, 2))), "a.nii", Volume(np.zeros((2, 2, 3))), "b.nii", tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path)) and "a.nii" in message and "b.nii" in message
    assert "(2, 2, 2)" in message and "(2, 2, 3)" in message


def test_case_id_from_meta() -> None:
    volume = Volume(np.zeros((2, 2, 2)))
    assert Case(volume, volume).case_id is None
    assert Case(volume, volume, meta={"case_id": 7}).case_id == "7"


def test_domain_rule_errors_name_the_file(tmp_path: Path) -> None:
    assert check_for_file(check_field_strength, 3, tmp_path / "case.json") == 3.0
    with pytest.raises(VCEInputError) as info:
        check_for_file(check_field_strength, 20.0, tmp_path / "case.json", name="'field_strength'")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "case.json")) and "'field_strength' 20.0" in message
    assert "(0, 12]" in message


def test_folder_replaced_on_success(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with folder_replaced_on_success(folder) as tmp:
        assert tmp.parent == tmp_path and tmp != folder
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt"]


def test_folder_kept_when_writing_fails(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), folder_replaced_on_success(folder) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]
    assert (folder / "old.txt").read_text() == "old" and not (folder / "half.txt").exists()
