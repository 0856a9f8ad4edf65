"""vce_core.io.nifti: NIfTI reading against nibabel and its shipped files; writing round trips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as NIBABEL_DATA

from vce_core.errors import VCEInputError
from vce_core.io import (
    Volume,
    load_volume,
    save_nifti,
)


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


def test_save_nifti_float32_exact_and_int16_within_slope(
    tmp_path: Path, make_volume: Callable[..., Volume], make_affine: Callable[..., np.ndarray]
) -> None:
    volume = make_volume(affine=make_affine(angles=(0.3, -0.2)))
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


def test_int16_label_map_reloads_exactly(tmp_path):
    labels = np.zeros((6, 5, 4), dtype=np.float32)
    labels[1:3, 1:4, 1:3] = 6
    labels[4, 2, 2] = 13
    path = save_nifti(Volume(labels), tmp_path / "labels.nii.gz", dtype="int16")
    back = load_volume(path).data
    np.testing.assert_array_equal(back, labels)


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int32"])
def test_save_nifti_in_the_type_of_the_input_scan(
    dtype: str, tmp_path: Path, make_volume: Callable[..., Volume]
) -> None:
    """Float data stored in another integer type: nibabel's slope/intercept, error at most half a slope."""
    volume = make_volume(scale=900.0)
    path = save_nifti(volume, tmp_path / f"v-{dtype}.nii.gz", dtype=dtype)
    image = nib.load(path)
    assert image.get_data_dtype() == np.dtype(dtype)
    slope = float(image.dataobj.slope)
    span = float(volume.data.max() - volume.data.min())
    assert 0 < slope <= span / (np.iinfo(dtype).max - np.iinfo(dtype).min) * 1.01
    assert np.abs(load_volume(path).data - volume.data).max() <= slope / 2 + 1e-3


def test_integer_valued_data_fitting_the_type_is_stored_as_it_is(tmp_path: Path) -> None:
    data = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    path = save_nifti(Volume(data), tmp_path / "u8.nii", dtype="uint8")
    image = nib.load(path)
    assert image.get_data_dtype() == np.uint8
    assert (float(image.dataobj.slope), float(image.dataobj.inter)) == (1.0, 0.0)
    np.testing.assert_array_equal(load_volume(path).data, data)
