"""vce_core.io.case_folder: case.json round trips, overwrite rules, BraTS folders, case discovery."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vce_core.errors import VCEInputError
from vce_core.io import (
    Case,
    Volume,
    iter_case_folders,
    load_case,
    save_case,
)


@pytest.fixture
def make_case(
    make_volume: Callable[..., Volume], make_affine: Callable[..., np.ndarray]
) -> Callable[..., Case]:
    """``make_case(shape=(10, 9, 6), seed=0)``: a 1.5 T gadoterate case with low doses 0.1 and 0.33."""

    def make_case(shape=(10, 9, 6), seed=0) -> Case:
        affine = make_affine(angles=(0.1, 0.0))
        return Case(
            native=make_volume(shape, affine, seed),
            standard_dose=make_volume(shape, affine, seed + 1),
            low_doses={0.1: make_volume(shape, affine, seed + 2), 0.33: make_volume(shape, affine, seed + 3)},
            field_strength=1.5,
            agent="gadoterate",
            extra={
                "labels": Volume(np.ones(shape, np.float32), affine),
                "t2": make_volume(shape, affine, seed + 4),
            },
            meta={"case_id": "phantom-0007", "sequence": {"name": "MPRAGE", "tr_ms": 2300.0}},
        )

    return make_case


def test_save_load_case_round_trip(tmp_path: Path, make_case: Callable[..., Case]) -> None:
    case = make_case()
    manifest = save_case(case, tmp_path / "case")
    assert manifest == tmp_path / "case" / "case.json"
    spec = json.loads(manifest.read_text())
    assert spec["format"] == "vce-case" and spec["version"] == 1 and spec["case_id"] == "phantom-0007"
    assert spec["low_doses"] == [
        {"dose": 0.1, "file": "low_dose_010.nii.gz"},
        {"dose": 0.33, "file": "low_dose_033.nii.gz"},
    ]
    assert "case_id" not in spec["meta"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # no temp folders left behind
    back = load_case(tmp_path / "case")
    assert back.field_strength == 1.5 and back.agent == "gadoterate"
    assert sorted(back.low_doses) == [0.1, 0.33] and sorted(back.extra) == ["labels", "t2"]
    np.testing.assert_array_equal(back.native.data, case.native.data)
    np.testing.assert_array_equal(back.low_doses[0.33].data, case.low_doses[0.33].data)
    np.testing.assert_allclose(back.standard_dose.affine, case.standard_dose.affine, atol=1e-5)
    assert back.meta["case_id"] == "phantom-0007" and back.meta["source_path"] == str(tmp_path / "case")
    assert back.meta["sequence"] == {"name": "MPRAGE", "tr_ms": 2300.0}
    assert load_case(manifest).meta["case_id"] == "phantom-0007"  # case.json path works too


def test_save_case_int16_is_smaller_and_close(tmp_path: Path, make_case: Callable[..., Case]) -> None:
    case = make_case(shape=(24, 20, 12))
    save_case(case, tmp_path / "f32")
    save_case(case, tmp_path / "i16", dtype="int16")
    size = lambda p: sum(f.stat().st_size for f in p.glob("*.nii.gz"))  # noqa: E731
    assert size(tmp_path / "i16") < size(tmp_path / "f32")
    back = load_case(tmp_path / "i16")
    value_range = float(case.native.data.max() - case.native.data.min())
    assert np.abs(back.native.data - case.native.data).max() <= value_range / 65535 * 0.5 * 1.01


def test_save_case_overwrite_rules(tmp_path: Path, make_case: Callable[..., Case]) -> None:
    save_case(make_case(), tmp_path / "case")
    save_case(make_case(seed=5), tmp_path / "case")  # same case_id: re-saving is allowed
    other = make_case(seed=9)
    other.meta["case_id"] = "another"
    with pytest.raises(VCEInputError, match="different case"):
        save_case(other, tmp_path / "case")
    assert load_case(tmp_path / "case").meta["case_id"] == "phantom-0007"
    save_case(other, tmp_path / "case", overwrite=True)
    back = load_case(tmp_path / "case")
    assert back.meta["case_id"] == "another"
    np.testing.assert_array_equal(back.native.data, other.native.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_brats_folder(tmp_path: Path) -> None:
    folder = tmp_path / "BraTS20_Training_001"
    folder.mkdir()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS files are LPS-stored: they must come back RAS
    rng = np.random.default_rng(0)
    arrays = {s: rng.random((6, 7, 5)).astype(np.float32) for s in ("t1", "t1ce", "t2", "flair")}
    arrays["seg"] = rng.integers(0, 4, (6, 7, 5)).astype(np.uint8)
    for suffix, array in arrays.items():
        nib.save(nib.Nifti1Image(array, affine), folder / f"BraTS20_Training_001_{suffix}.nii.gz")
    case = load_case(folder)
    np.testing.assert_array_equal(case.native.data, arrays["t1"][::-1, ::-1, :])
    np.testing.assert_array_equal(case.standard_dose.data, arrays["t1ce"][::-1, ::-1, :])
    assert sorted(case.extra) == ["flair", "labels", "t2"]
    np.testing.assert_array_equal(case.extra["labels"].data, arrays["seg"][::-1, ::-1, :])
    assert case.low_doses == {} and case.field_strength == 3.0
    assert case.meta["field_strength_assumed"] is True and case.meta["case_id"] == "BraTS20_Training_001"


def test_iter_case_folders(tmp_path: Path, make_case: Callable[..., Case]) -> None:
    save_case(make_case(shape=(4, 4, 3)), tmp_path / "train" / "b")
    save_case(make_case(shape=(4, 4, 3)), tmp_path / "train" / "a")
    brats = tmp_path / "test" / "deep" / "BraTS-001"
    brats.mkdir(parents=True)
    for suffix in ("t1", "t1ce"):
        nib.save(
            nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), brats / f"BraTS-001_{suffix}.nii.gz"
        )
    (tmp_path / "empty").mkdir()
    found = iter_case_folders(tmp_path)
    assert found == [
        tmp_path / "test" / "deep" / "BraTS-001",
        tmp_path / "train" / "a",
        tmp_path / "train" / "b",
    ]
    assert [load_case(f).meta["case_id"] for f in found][1:] == ["phantom-0007", "phantom-0007"]


def test_a_missing_folder_or_a_file_is_no_case(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a case")
    for path, problem in (
        (tmp_path / "absent", "does not exist"),
        (tmp_path / "notes.txt", "is not a folder"),
    ):
        with pytest.raises(VCEInputError, match=problem) as caught:
            load_case(path)
        assert str(path) in str(caught.value) and "case.json or BraTS files" in str(caught.value)
