"""vce_core.io: NIfTI and DICOM reading against nibabel/pydicom and their shipped files; round trips.

The shipped files (``nibabel.testing.data_path``, ``pydicom.data.get_testdata_file``) are the independent
references; synthetic series are written here and read back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIBABEL_DATA
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from vce_core.errors import VCEInputError
from vce_core.io import (
    Case,
    Volume,
    iter_case_folders,
    load_case,
    load_volume,
    save_case,
    save_dicom_series,
    save_nifti,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _rotation(ax: float, az: float) -> np.ndarray:
    """Rotation by ``ax`` radians about x then ``az`` about z (3×3)."""
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affine(spacing=(0.9, 1.1, 2.0), origin=(-50.0, -60.0, 10.0), rotation=None) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = (np.eye(3) if rotation is None else rotation) @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def _volume(shape=(12, 10, 5), affine=None, seed=0, scale=300.0) -> Volume:
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * scale - 20.0).astype(np.float32)
    affine = _affine() if affine is None else affine
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Volume(data=data, affine=affine, spacing=spacing, meta={"series_description": "test"})


def _slope(folder: Path) -> float:
    ds = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return float(ds.RescaleSlope)


# ------------------------------------------------------------------------------------------ NIfTI


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz"])
def test_nifti_matches_nibabel_canonical(name: str) -> None:
    path = os.path.join(NIBABEL_DATA, name)
    reference = nib.as_closest_canonical(nib.load(path))
    volume = load_volume(path)
    assert volume.data.dtype == np.float32
    assert volume.shape == reference.shape[:3]
    np.testing.assert_array_equal(volume.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-6)
    np.testing.assert_allclose(volume.spacing, reference.header.get_zooms()[:3], rtol=1e-6)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.meta["format"] == "nifti1"
    assert volume.meta["source_path"] == path


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii"])
def test_nifti_4d_refused(name: str) -> None:
    with pytest.raises(VCEInputError, match="4-D") as info:
        load_volume(os.path.join(NIBABEL_DATA, name))
    assert name in str(info.value)


def test_nifti_reoriented_to_ras_keeps_world_positions(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.array([[0, 0, -2.0, 30], [-1.5, 0, 0, 20], [0, 1.0, 0, -10], [0, 0, 0, 1]])  # PSL-ish
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "psl.nii.gz")
    volume = load_volume(tmp_path / "psl.nii.gz")
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.shape == (6, 4, 5)
    np.testing.assert_allclose(volume.spacing, (2.0, 1.5, 1.0))
    # every value sits at the same world position before and after reorientation
    for value in (0.0, 17.0, 119.0):
        src = np.argwhere(data == value)[0]
        dst = np.argwhere(volume.data == value)[0]
        np.testing.assert_allclose(
            nib.affines.apply_affine(affine, src), nib.affines.apply_affine(volume.affine, dst)
        )


def test_nifti_singleton_dims_accepted(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.int16), np.eye(4)), tmp_path / "a.nii")
    nib.save(nib.Nifti1Image(np.ones((4, 5, 1), np.float32), np.eye(4)), tmp_path / "b.nii")
    assert load_volume(tmp_path / "a.nii").shape == (4, 5, 6)
    assert load_volume(tmp_path / "b.nii").shape == (4, 5, 1)


def test_save_nifti_float32_exact_and_int16_within_slope(tmp_path: Path) -> None:
    volume = _volume(affine=_affine(rotation=_rotation(0.3, -0.2)))
    out = save_nifti(volume, tmp_path / "sub" / "v.nii.gz")
    assert out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["v.nii.gz"]
    image = nib.load(out)
    assert image.get_data_dtype() == np.float32
    back = load_volume(out)
    np.testing.assert_array_equal(back.data, volume.data)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-5)

    out16 = save_nifti(volume, tmp_path / "v16.nii.gz", dtype="int16")
    image16 = nib.load(out16)
    assert image16.get_data_dtype() == np.int16
    slope = float(image16.dataobj.slope)
    assert 0 < slope < (volume.data.max() - volume.data.min()) / 60000
    assert np.abs(load_volume(out16).data - volume.data).max() <= slope / 2 + 1e-4


# ------------------------------------------------------------------------------------------ DICOM files


def _reference_from_pydicom(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Data and affine of a single-frame file from pydicom + nibabel's DICOM wrapper, canonical RAS."""
    ds = pydicom.dcmread(path)
    values = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_data

        affine_lps = wrapper_from_data(ds).affine  # index order (row, column, slice), LPS
    image = nib.as_closest_canonical(
        nib.Nifti1Image(values[:, :, None].astype(np.float32), LPS_TO_RAS @ affine_lps)
    )
    return image.get_fdata(dtype=np.float32), image.affine


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "CT_small.dcm"]
)
def test_single_dicom_file_matches_pydicom_and_nibabel(name: str) -> None:
    path = get_testdata_file(name)
    expected, expected_affine = _reference_from_pydicom(path)
    volume = load_volume(path)
    assert volume.data.dtype == np.float32 and volume.shape[2] == 1
    np.testing.assert_array_equal(volume.data, expected)
    np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-4)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    spacing = [float(v) for v in ds.PixelSpacing]
    np.testing.assert_allclose(volume.spacing, (spacing[1], spacing[0], float(ds.SliceThickness)), rtol=1e-6)
    assert volume.meta["modality"] == ds.Modality
    assert volume.meta["series_instance_uid"] == ds.SeriesInstanceUID


def test_rescale_applied_ct() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert float(ds.RescaleIntercept) != 0  # the check below would be vacuous otherwise
    volume = load_volume(get_testdata_file("CT_small.dcm"))
    assert volume.data.min() == pytest.approx(
        ds.pixel_array.min() * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    )


def test_jpeg_ls_decoded_or_decoder_named() -> None:
    compressed = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:
        np.testing.assert_array_equal(
            load_volume(compressed).data, load_volume(get_testdata_file("MR_small.dcm")).data
        )
    else:
        with pytest.raises(VCEInputError, match="pylibjpeg") as info:
            load_volume(compressed)
        assert "MR_small_jpeg_ls_lossless.dcm" in str(info.value)


def _enhanced_mr(volume: Volume, path: Path, order: list[int]) -> None:
    """Write ``volume`` as one Enhanced MR file, frames in ``order``, each frame with its own rescale."""
    affine_lps = LPS_TO_RAS @ volume.affine
    ps = np.linalg.norm(affine_lps[:3, :2], axis=0)
    row_cos, col_cos = affine_lps[:3, 0] / ps[0], affine_lps[:3, 1] / ps[1]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, uid
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = "MR", generate_uid(), "enhanced"
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{v:.10f}" for v in (*row_cos, *col_cos)]
    measures.PixelSpacing = [f"{ps[1]:.10f}", f"{ps[0]:.10f}"]
    measures.SliceThickness = "2.0"
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, per_frame = [], []
    for n, k in enumerate(order):
        slope, intercept = 0.01 * (n + 1), -25.0 + n
        stored = np.round((volume.data[:, :, k].T.astype(np.float64) - intercept) / slope).astype(np.int16)
        frames.append(stored)
        item, position, transform = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [
            f"{v:.8f}" for v in affine_lps[:3, :3] @ [0, 0, k] + affine_lps[:3, 3]
        ]
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = (
            f"{slope:g}",
            f"{intercept:g}",
            "US",
        )
        item.PlanePositionSequence, item.PixelValueTransformationSequence = [position], [transform]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_multiframe_per_frame_geometry_and_rescale(tmp_path: Path) -> None:
    volume = _volume(shape=(9, 7, 6), affine=_affine(rotation=_rotation(0.2, 0.1)), scale=200.0)
    _enhanced_mr(volume, tmp_path / "enhanced.dcm", order=[3, 0, 5, 1, 4, 2])
    back = load_volume(tmp_path / "enhanced.dcm")
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)
    # per-frame slopes 0.01..0.06: quantisation error at most half the largest
    assert np.abs(back.data - volume.data).max() <= 0.03 + 1e-4
    assert back.meta["n_images"] == 6


# ------------------------------------------------------------------------------------------ DICOM series


def test_dicom_series_round_trip(tmp_path: Path) -> None:
    volume = _volume()
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


def test_integer_data_stored_exactly(tmp_path: Path) -> None:
    volume = _volume()
    volume.data = np.round(volume.data)
    save_dicom_series(volume, tmp_path / "s", series_description="labels", synthetic=False)
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert (
        float(ds.RescaleSlope) == 1.0
        and "ImageComments" not in ds
        and not ds.SeriesDescription.startswith("SYN")
    )
    np.testing.assert_array_equal(load_volume(tmp_path / "s").data, volume.data)


def test_shuffled_names_without_extension_sort_by_position(tmp_path: Path) -> None:
    volume = _volume(shape=(8, 6, 7))
    files = save_dicom_series(volume, tmp_path / "s", series_description="x")
    names = [f"{n:02d}" for n in range(len(files))]
    random.Random(3).shuffle(names)
    shuffled = tmp_path / "shuffled" / "nested"
    shuffled.mkdir(parents=True)
    for file, name in zip(files, names, strict=True):
        shutil.copy(file, shuffled / name)
    assert names != sorted(names)
    back = load_volume(tmp_path / "shuffled")
    np.testing.assert_array_equal(back.data, load_volume(tmp_path / "s").data)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)


def test_oblique_series_round_trip(tmp_path: Path) -> None:
    volume = _volume(affine=_affine(spacing=(1.0, 1.2, 3.0), rotation=_rotation(0.35, -0.25)))
    save_dicom_series(volume, tmp_path / "s", series_description="oblique")
    back = load_volume(tmp_path / "s")
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)
    np.testing.assert_allclose(back.spacing, (1.0, 1.2, 3.0), atol=1e-4)
    assert np.abs(back.data - volume.data).max() <= _slope(tmp_path / "s") / 2 + 1e-4
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert abs(float(ds.ImageOrientationPatient[0]) - 1.0) > 1e-2  # really oblique


def test_non_canonical_volume_comes_back_canonical(tmp_path: Path) -> None:
    """A sagittal-style (PSR-ordered) volume: the reload equals nibabel's as_closest_canonical of it."""
    affine = np.array([[0, 0, 2.0, -40], [-1.0, 0, 0, 30], [0, -1.2, 0, 50], [0, 0, 0, 1]])
    volume = _volume(shape=(10, 8, 4), affine=affine)
    save_dicom_series(volume, tmp_path / "s", series_description="sagittal", synthetic=False)
    expected = nib.as_closest_canonical(nib.Nifti1Image(volume.data, affine))
    back = load_volume(tmp_path / "s")
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-3)
    assert np.abs(back.data - expected.get_fdata()).max() <= _slope(tmp_path / "s") / 2 + 1e-4


def test_dicom_series_and_nifti_agree(tmp_path: Path) -> None:
    volume = _volume(affine=_affine(rotation=_rotation(-0.15, 0.05)))
    save_dicom_series(volume, tmp_path / "s", series_description="x")
    from_dicom = load_volume(tmp_path / "s")
    from_nifti = load_volume(save_nifti(from_dicom, tmp_path / "s.nii.gz"))
    np.testing.assert_array_equal(from_nifti.data, from_dicom.data)
    np.testing.assert_allclose(from_nifti.affine, from_dicom.affine, atol=1e-4)
    np.testing.assert_allclose(from_nifti.spacing, from_dicom.spacing, atol=1e-5)


def test_zip_round_trip(tmp_path: Path) -> None:
    volume = _volume()
    files = save_dicom_series(volume, tmp_path / "s", series_description="x")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"export/DICOM/{f.stem}")
        zf.writestr("export/README.txt", "not an image")
    back = load_volume(archive)
    np.testing.assert_array_equal(back.data, load_volume(tmp_path / "s").data)
    assert back.meta["source_path"] == str(archive)


def test_two_series_listed_and_selectable(tmp_path: Path) -> None:
    first, second = _volume(seed=1), _volume(seed=2, shape=(12, 10, 3))
    save_dicom_series(first, tmp_path / "a", series_description="first one", synthetic=False)
    save_dicom_series(second, tmp_path / "b", series_description="second one", synthetic=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "a", mixed / "a")
    shutil.copytree(tmp_path / "b", mixed / "b")
    uid_a = pydicom.dcmread(next((tmp_path / "a").iterdir())).SeriesInstanceUID
    uid_b = pydicom.dcmread(next((tmp_path / "b").iterdir())).SeriesInstanceUID
    with pytest.raises(VCEInputError) as info:
        load_volume(mixed)
    message = str(info.value)
    assert str(mixed) in message and "2 DICOM series" in message
    assert uid_a in message and uid_b in message
    assert "'first one' (5 images)" in message and "'second one' (3 images)" in message
    assert load_volume(mixed, series_uid=uid_a).shape == (12, 10, 5)
    np.testing.assert_array_equal(load_volume(mixed, series_uid=uid_b).data, load_volume(tmp_path / "b").data)


def test_reference_joins_study(tmp_path: Path) -> None:
    reference = get_testdata_file("MR_small.dcm")
    ref = pydicom.dcmread(reference)
    files = save_dicom_series(_volume(), tmp_path / "s", series_description="x", reference=reference)
    ds = pydicom.dcmread(files[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
        assert ds.data_element(keyword).value == ref.data_element(keyword).value
    assert ds.SeriesInstanceUID != ref.SeriesInstanceUID and ds.SOPInstanceUID != ref.SOPInstanceUID


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_reference_from_loaded_volume_source(kind: str, tmp_path: Path) -> None:
    acquired = save_dicom_series(_volume(), tmp_path / "acquired", series_description="T1", synthetic=False)
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


# ------------------------------------------------------------------------------------------ cases


def _case(shape=(10, 9, 6), seed=0) -> Case:
    affine = _affine(rotation=_rotation(0.1, 0.0))
    return Case(
        native=_volume(shape, affine, seed),
        standard_dose=_volume(shape, affine, seed + 1),
        low_doses={0.1: _volume(shape, affine, seed + 2), 0.33: _volume(shape, affine, seed + 3)},
        field_strength=1.5,
        agent="gadoterate",
        extra={"labels": Volume(np.ones(shape, np.float32), affine), "t2": _volume(shape, affine, seed + 4)},
        meta={"case_id": "phantom-0007", "sequence": {"name": "MPRAGE", "tr_ms": 2300.0}},
    )


def test_save_load_case_round_trip(tmp_path: Path) -> None:
    case = _case()
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


def test_save_case_int16_is_smaller_and_close(tmp_path: Path) -> None:
    case = _case(shape=(24, 20, 12))
    save_case(case, tmp_path / "f32")
    save_case(case, tmp_path / "i16", dtype="int16")
    size = lambda p: sum(f.stat().st_size for f in p.glob("*.nii.gz"))  # noqa: E731
    assert size(tmp_path / "i16") < size(tmp_path / "f32")
    back = load_case(tmp_path / "i16")
    value_range = float(case.native.data.max() - case.native.data.min())
    assert np.abs(back.native.data - case.native.data).max() <= value_range / 65535 * 0.5 * 1.01


def test_save_case_overwrite_rules(tmp_path: Path) -> None:
    save_case(_case(), tmp_path / "case")
    save_case(_case(seed=5), tmp_path / "case")  # same case_id: re-saving is allowed
    other = _case(seed=9)
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


def test_iter_case_folders(tmp_path: Path) -> None:
    save_case(_case(shape=(4, 4, 3)), tmp_path / "train" / "b")
    save_case(_case(shape=(4, 4, 3)), tmp_path / "train" / "a")
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


def test_int16_label_map_reloads_exactly(tmp_path):
    labels = np.zeros((6, 5, 4), dtype=np.float32)
    labels[1:3, 1:4, 1:3] = 6
    labels[4, 2, 2] = 13
    path = save_nifti(Volume(labels), tmp_path / "labels.nii.gz", dtype="int16")
    back = load_volume(path).data
    np.testing.assert_array_equal(back, labels)
