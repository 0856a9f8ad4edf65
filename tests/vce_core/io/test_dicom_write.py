"""vce_core.io.dicom_write: synthetic DICOM series written, checked with pydicom and read back."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from vce_core.io import (
    Volume,
    load_volume,
    save_dicom_series,
    save_nifti,
)


def _slope(folder: Path) -> float:
    ds = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return float(ds.RescaleSlope)


def test_dicom_series_round_trip(tmp_path: Path, make_volume: Callable[..., Volume]) -> None:
    volume = make_volume()
    files = save_dicom_series(
        volume, tmp_path / "series", series_description="T1 post", model_name="ld-cgan-np", dose=0.33
    )
    assert [f.name for f in files] == sorted(p.name for p in (tmp_path / "series").iterdir())
    assert len(files) == volume.shape[2]
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(files)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    for ds in datasets:
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.pixel_array.dtype == np.int16
        assert ds.SeriesDescription.startswith("SYNTHETIC") and len(ds.SeriesDescription) <= 64
        assert "SYNTHETIC 33% dose (model ld-cgan-np)" in ds.ImageComments
        assert "not an acquired image" in ds.ImageComments
        assert "ld-cgan-np" in ds.DerivationDescription
        assert ds.BurnedInAnnotation == "NO"
    # radiological display: rows run to the patient's left (+x LPS), columns to posterior (+y LPS), so the
    # first stored pixel of the first file is the right-anterior corner of the lowest axial slice
    assert [float(v) for v in datasets[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    first = datasets[0].pixel_array[0, 0] * float(datasets[0].RescaleSlope) + float(
        datasets[0].RescaleIntercept
    )
    assert first == pytest.approx(volume.data[-1, -1, 0], abs=float(datasets[0].RescaleSlope))
    back = load_volume(tmp_path / "series")
    assert back.shape == volume.shape
    assert np.abs(back.data - volume.data).max() <= _slope(tmp_path / "series") / 2 + 1e-4
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-4)
    assert back.meta["synthetic"] is True and back.meta["modality"] == "MR"


def test_integer_data_stored_exactly(tmp_path: Path, make_volume: Callable[..., Volume]) -> None:
    volume = make_volume()
    volume.data = np.round(volume.data)
    save_dicom_series(volume, tmp_path / "s", series_description="labels", synthetic=False)
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert (
        float(ds.RescaleSlope) == 1.0
        and "ImageComments" not in ds
        and not ds.SeriesDescription.startswith("SYN")
    )
    np.testing.assert_array_equal(load_volume(tmp_path / "s").data, volume.data)


def test_oblique_series_round_trip(
    tmp_path: Path, make_volume: Callable[..., Volume], make_affine: Callable[..., np.ndarray]
) -> None:
    volume = make_volume(affine=make_affine(spacing=(1.0, 1.2, 3.0), angles=(0.35, -0.25)))
    save_dicom_series(volume, tmp_path / "s", series_description="oblique")
    back = load_volume(tmp_path / "s")
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)
    np.testing.assert_allclose(back.spacing, (1.0, 1.2, 3.0), atol=1e-4)
    assert np.abs(back.data - volume.data).max() <= _slope(tmp_path / "s") / 2 + 1e-4
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert abs(float(ds.ImageOrientationPatient[0]) - 1.0) > 1e-2  # really oblique


def test_non_canonical_volume_comes_back_canonical(
    tmp_path: Path, make_volume: Callable[..., Volume]
) -> None:
    """A sagittal-style (PSR-ordered) volume: the reload equals nibabel's as_closest_canonical of it."""
    affine = np.array([[0, 0, 2.0, -40], [-1.0, 0, 0, 30], [0, -1.2, 0, 50], [0, 0, 0, 1]])
    volume = make_volume(shape=(10, 8, 4), affine=affine)
    save_dicom_series(volume, tmp_path / "s", series_description="sagittal", synthetic=False)
    expected = nib.as_closest_canonical(nib.Nifti1Image(volume.data, affine))
    back = load_volume(tmp_path / "s")
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-3)
    assert np.abs(back.data - expected.get_fdata()).max() <= _slope(tmp_path / "s") / 2 + 1e-4


def test_dicom_series_and_nifti_agree(
    tmp_path: Path, make_volume: Callable[..., Volume], make_affine: Callable[..., np.ndarray]
) -> None:
    volume = make_volume(affine=make_affine(angles=(-0.15, 0.05)))
    save_dicom_series(volume, tmp_path / "s", series_description="x")
    from_dicom = load_volume(tmp_path / "s")
    from_nifti = load_volume(save_nifti(from_dicom, tmp_path / "s.nii.gz"))
    np.testing.assert_array_equal(from_nifti.data, from_dicom.data)
    np.testing.assert_allclose(from_nifti.affine, from_dicom.affine, atol=1e-4)
    np.testing.assert_allclose(from_nifti.spacing, from_dicom.spacing, atol=1e-5)


def test_reference_joins_study(tmp_path: Path, make_volume: Callable[..., Volume]) -> None:
    reference = get_testdata_file("MR_small.dcm")
    ref = pydicom.dcmread(reference)
    files = save_dicom_series(make_volume(), tmp_path / "s", series_description="x", reference=reference)
    ds = pydicom.dcmread(files[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
        assert ds.data_element(keyword).value == ref.data_element(keyword).value
    assert ds.SeriesInstanceUID != ref.SeriesInstanceUID and ds.SOPInstanceUID != ref.SOPInstanceUID


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_reference_from_loaded_volume_source(
    kind: str, tmp_path: Path, make_volume: Callable[..., Volume]
) -> None:
    acquired = save_dicom_series(
        make_volume(), tmp_path / "acquired", series_description="T1", synthetic=False
    )
    source: Path = tmp_path / "acquired"
    if kind == "zip":
        source = tmp_path / "acquired.zip"
        with zipfile.ZipFile(source, "w") as zf:
            for f in acquired:
                zf.write(f, f"dicom/{f.name}")
    loaded = load_volume(source)
    files = save_dicom_series(
        loaded, tmp_path / "synthetic", series_description="x", reference=loaded.meta["source_path"]
    )
    ds = pydicom.dcmread(files[0])
    assert ds.StudyInstanceUID == loaded.meta["study_instance_uid"]
    assert ds.FrameOfReferenceUID == loaded.meta["frame_of_reference_uid"]
    assert ds.SeriesInstanceUID != loaded.meta["series_instance_uid"]
