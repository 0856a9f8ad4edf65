""":func:`load_volume`: the one entry point for reading an image, dispatching on what ``path`` is."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from vce_core.errors import VCEInputError

from .archive import load_zip
from .dicom_read import load_dicom_file, load_dicom_folder
from .limits import DEFAULT_LIMITS, Limits
from .nifti import load_nifti
from .volume import ACCEPTED, NIFTI_SUFFIXES, Volume, has_dicom_magic

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".dic")


def load_volume(
    path: str | PathLike, series_uid: str | None = None, *, limits: Limits = DEFAULT_LIMITS
) -> Volume:
    """Read one 3-D image as a canonical RAS+ float32 :class:`Volume`.

    Parameters
    ----------
    path:
        A NIfTI file (``.nii``, ``.nii.gz``), a DICOM file (``.dcm``/``.dicom``/``.ima`` or any name whose
        content starts with the DICOM preamble), a folder holding one DICOM series (searched recursively,
        files with or without extension) or a ``.zip`` of such a folder.
    series_uid:
        SeriesInstanceUID selecting one series when a folder or zip holds several.
    limits:
        Image size (voxels, decoded bytes), voxel spacing and archive limits, checked from the headers
        before any voxel array is allocated (:class:`vce_core.io.limits.Limits`).

    Returns
    -------
    Volume with ``data`` float32 ``(I, J, K)`` in RAS+ index order, ``affine`` voxel → RAS mm, ``spacing``
    in mm and ``meta`` with ``format`` (``nifti1``/``nifti2``/``dicom``), ``source_path``,
    ``series_description`` and, for DICOM, ``modality``, ``series_instance_uid``, ``study_instance_uid``,
    ``frame_of_reference_uid``, ``n_images``, ``synthetic`` and ``field_strength`` (T) when recorded.

    Raises
    ------
    VCEInputError: missing path, unsupported extension, unreadable/truncated file, no pixel data, several
    series without ``series_uid``, inconsistent geometry, a 4-D or 2-D NIfTI array, zero-sized dimension,
    NaN/Inf voxels, a compressed DICOM without an installed decoder, a size or spacing beyond ``limits``,
    complex or RGB voxels, a corrupt NIfTI header (``sizeof_hdr``), a zip bomb.
    """
    path = Path(path)
    if not path.exists():
        raise VCEInputError("does not exist", path=path, expected=ACCEPTED)
    if path.is_dir():
        return load_dicom_folder(path, series_uid, path, limits)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return load_nifti(path, limits)
    if name.endswith(".zip"):
        return load_zip(path, series_uid, limits)
    if (
        name.endswith(_DICOM_SUFFIXES)
        or path.suffix == ""
        or path.suffix[1:].isdigit()
        or has_dicom_magic(path)
    ):
        volume = load_dicom_file(path, limits)
        if series_uid is not None and volume.meta.get("series_instance_uid") != series_uid:
            raise VCEInputError(
                f"belongs to series {volume.meta.get('series_instance_uid')}, not {series_uid}", path=path
            )
        return volume
    raise VCEInputError(
        f"the extension '{''.join(path.suffixes)}' is not supported", path=path, expected=ACCEPTED
    )
