"""Medical image I/O: :class:`Volume`, :class:`Case`, NIfTI, DICOM and case folders.

Array index order
-----------------
``Volume.data[i, j, k]`` is float32 with voxel indices along the affine's first, second and third
axes. Loaders reorient to the closest canonical RAS+ orientation, so ``i`` runs left → right, ``j``
posterior → anterior and ``k`` inferior → superior: an axial slice is ``data[:, :, k]``, a coronal slice
``data[:, j, :]``, a sagittal slice ``data[i, :, :]``. ``spacing`` is the voxel size in millimetres along
``i, j, k``.

What is read
------------
:func:`load_volume` reads a NIfTI-1/-2 file (``.nii``, ``.nii.gz``), a single DICOM file (classic single
frame or enhanced multi-frame), a folder holding one DICOM series (files with or without ``.dcm``,
searched recursively) or a ``.zip`` of such a folder. DICOM geometry (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing) becomes an LPS affine, is converted to RAS and reoriented like a
NIfTI file, so a DICOM series and the NIfTI made from it give the same :class:`Volume`.

A single 2-D DICOM image is accepted as a one-slice 3-D volume (shape ``(I, J, 1)``, slice spacing from
SpacingBetweenSlices, else SliceThickness, else 1 mm); a NIfTI file whose array has two dimensions is
refused, while a NIfTI array of shape ``(I, J, 1)`` (what :func:`save_nifti` writes for such a volume)
is accepted. Arrays with a fourth dimension are accepted only when it is 1.

Every bad input raises :class:`vce_core.errors.VCEInputError`; writers validate first and write into a
temporary file or folder that is renamed into place, so a failure leaves nothing behind.

Modules
-------
``volume`` (:class:`Volume`, :class:`Case`, grid checks), ``nifti``, ``dicom_read``, ``dicom_write``,
``archive`` (``.zip`` of a series), ``limits`` (:class:`Limits`: sizes and spacing checked from headers
before any allocation), ``load`` (:func:`load_volume`, dispatching on the path) and
``case_folder`` (``case.json`` and BraTS folders). Import from ``vce_core.io``; the modules are its rooms.
"""

from __future__ import annotations

from .archive import MAX_ZIP_MEMBERS, MAX_ZIP_RATIO, MAX_ZIP_TOTAL_BYTES
from .case_folder import CASE_FILE, CASE_FORMAT, CASE_VERSION, iter_case_folders, load_case, save_case
from .dicom_write import save_dicom_series
from .limits import DEFAULT_LIMITS, Limits
from .load import load_volume
from .nifti import save_nifti
from .volume import GRID_ATOL_MM, Case, Volume

__all__ = [
    "Volume",
    "Case",
    "load_volume",
    "save_nifti",
    "save_dicom_series",
    "load_case",
    "save_case",
    "iter_case_folders",
    "CASE_FORMAT",
    "CASE_VERSION",
    "CASE_FILE",
    "GRID_ATOL_MM",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_TOTAL_BYTES",
    "MAX_ZIP_RATIO",
    "Limits",
    "DEFAULT_LIMITS",
]
