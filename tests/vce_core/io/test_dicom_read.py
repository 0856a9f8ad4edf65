"""vce_core.io.dicom_read: DICOM files and series against pydicom/nibabel and pydicom's shipped files.

Synthetic series are written with ``save_dicom_series`` and read back.
"""

from __future__ import annotations

import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from vce_core.errors import VCEInputError
from vce_core.io import (
    Volume,
    load_volume,
    save_dicom_series,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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
    # the sequence (physics-base generators): pydicom's values, absent keys when the file has none
    for keyword, key in (("RepetitionTime", "repetition_time_ms"), ("FlipAngle", "flip_angle_deg")):
        if ds.get(keyword) is None:
            assert key not in volume.meta
        else:
            assert volume.meta[key] == pytest.approx(float(ds.get(keyword)))


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


def test_enhanced_multiframe_per_frame_geometry_and_rescale(
    tmp_path: Path, make_volume: Callable[..., Volume], make_affine: Callable[..., np.ndarray]
) -> None:
    volume = make_volume(shape=(9, 7, 6), affine=make_affine(angles=(0.2, 0.1)), scale=200.0)
    _enhanced_mr(volume, tmp_path / "enhanced.dcm", order=[3, 0, 5, 1, 4, 2])
    back = load_volume(tmp_path / "enhanced.dcm")
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-3)
    # per-frame slopes 0.01..0.06: quantisation error at most half the largest
    assert np.abs(back.data - volume.data).max() <= 0.03 + 1e-4
    assert back.meta["n_images"] == 6


def test_shuffled_names_without_extension_sort_by_position(
    tmp_path: Path, make_volume: Callable[..., Volume]
) -> None:
    volume = make_volume(shape=(8, 6, 7))
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


def test_two_series_listed_and_selectable(tmp_path: Path, make_volume: Callable[..., Volume]) -> None:
    first, second = make_volume(seed=1), make_volume(seed=2, shape=(12, 10, 3))
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
