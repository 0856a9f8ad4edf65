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
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pydicom
import pydicom.errors
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from vce_core.errors import VCEInputError

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
]

CASE_FORMAT = "vce-case"
CASE_VERSION = 1
CASE_FILE = "case.json"

#: Grid tolerance: two volumes share a grid when shapes are equal and affines agree within this (mm).
GRID_ATOL_MM = 1e-3
#: Limits applied when extracting a ``.zip`` of a DICOM series (zip-bomb guard).
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3
MAX_ZIP_RATIO = 200.0
#: Below this uncompressed size a member's compression ratio is not checked (tiny files compress well).
ZIP_RATIO_MIN_BYTES = 1024**2

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".dic")
_ACCEPTED = (
    "a NIfTI file (.nii or .nii.gz), a DICOM file (.dcm), a folder holding one DICOM series or a .zip of one"
)
_AGENT_UNKNOWN = "unknown"


@dataclass
class Volume:
    """A 3-D image on a grid.

    Attributes
    ----------
    data: float32 array of shape (I, J, K), see the module docstring for the index order.
    affine: 4×4 voxel → world (RAS+, mm) matrix.
    spacing: voxel size in mm along (i, j, k).
    meta: free-form metadata: ``modality``, ``series_description``, ``source_path``, ...
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """World (RAS+, mm) position of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in np.asarray(self.affine)[:3, 3])  # type: ignore[return-value]

    def same_grid(self, other: Volume, atol: float = GRID_ATOL_MM) -> bool:
        """True when ``other`` has the same shape and an affine equal within ``atol`` (mm)."""
        return self.shape == other.shape and bool(
            np.allclose(np.asarray(self.affine, float), np.asarray(other.affine, float), rtol=0.0, atol=atol)
        )


@dataclass
class Case:
    """One subject: native (pre-contrast) T1, standard-dose T1 and optional acquired low doses.

    Attributes
    ----------
    native: pre-contrast T1-weighted volume (x_NA).
    standard_dose: T1-weighted volume after the standard dose (x_SD, dose 1.0).
    low_doses: acquired low-dose volumes keyed by dose as a fraction of the standard dose, in (0, 1].
    field_strength: main field in tesla (1.5 or 3.0 typically).
    agent: contrast agent name (``gadobutrol``, ``gadoterate``, ``gadopiclenol``, ...).
    extra: further volumes on the same grid (``t2``, ``flair``, ``adc``, ``labels``, ``ce_truth``, ...).
    meta: free-form metadata (``case_id``, ``sequence``, provenance, ...).
    """

    native: Volume
    standard_dose: Volume
    low_doses: dict[float, Volume] = field(default_factory=dict)
    field_strength: float = 3.0
    agent: str = "gadobutrol"
    extra: dict[str, Volume] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def case_id(self) -> str | None:
        """``meta["case_id"]`` when present."""
        value = self.meta.get("case_id")
        return None if value is None else str(value)


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    """A finite real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and math.isfinite(value)


def _name_of(path: Path) -> str:
    return path.name.lower()


def _is_nifti_name(path: Path) -> bool:
    return _name_of(path).endswith(_NIFTI_SUFFIXES)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _finish_array(data: np.ndarray, path: Path) -> np.ndarray:
    """Check a reoriented 3-D array: no zero-sized dimension, only finite values; return it as float32."""
    if data.ndim != 3:
        raise VCEInputError(
            f"the image has {data.ndim} dimensions (shape {tuple(data.shape)})",
            path=path,
            expected="a 3-D volume",
        )
    if 0 in data.shape:
        raise VCEInputError(
            f"the image has a zero-sized dimension (shape {tuple(data.shape)})",
            path=path,
            expected="a 3-D volume with at least one voxel along each axis",
        )
    data = np.ascontiguousarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum() - n_nan)
        raise VCEInputError(
            f"the image holds {n_nan} NaN and {n_inf} infinite voxel values",
            path=path,
            expected="finite voxel values only",
        )
    return data


def _canonical(
    data: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Reorient ``data`` (I, J, K) with voxel→RAS ``affine`` to the closest canonical RAS+ orientation.

    Returns the reoriented array, its affine and the voxel sizes (mm: lengths of the affine's columns,
    the float64 values of what the reoriented header's zooms hold in float32).
    """
    image = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    zooms = tuple(float(z) for z in np.linalg.norm(np.asarray(image.affine)[:3, :3], axis=0))
    return np.asarray(image.dataobj), np.array(image.affine, dtype=np.float64), zooms  # type: ignore[return-value]


def _check_affine(affine: Any, path: Path | None) -> np.ndarray:
    try:
        a = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise VCEInputError(f"the affine is not numeric ({exc})", path=path, expected="a 4×4 matrix") from exc
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise VCEInputError(
            f"the affine has shape {a.shape} or non-finite entries", path=path, expected="a finite 4×4 matrix"
        )
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise VCEInputError(
            "the affine is singular (a voxel size is zero)", path=path, expected="an invertible affine"
        )
    return a


def _check_volume(volume: Any, path: Path | None, what: str = "the volume") -> tuple[np.ndarray, np.ndarray]:
    """Validate a :class:`Volume` before writing it; return (float32 data, float64 affine)."""
    if not isinstance(volume, Volume):
        raise VCEInputError(
            f"{what} is a {type(volume).__name__}", path=path, expected="a vce_core.io.Volume"
        )
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise VCEInputError(
            f"{what} has {data.ndim} dimensions (shape {tuple(data.shape)})",
            path=path,
            expected="a 3-D volume",
        )
    if 0 in data.shape:
        raise VCEInputError(
            f"{what} has a zero-sized dimension (shape {tuple(data.shape)})",
            path=path,
            expected="at least one voxel along each axis",
        )
    if data.dtype.kind not in "biuf":
        raise VCEInputError(f"{what} has data type {data.dtype}", path=path, expected="real-valued voxels")
    data = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise VCEInputError(
            f"{what} holds NaN or infinite voxels", path=path, expected="finite voxel values only"
        )
    return data, _check_affine(volume.affine, path)


# --------------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------------


def _load_nifti(path: Path) -> Volume:
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, OSError, ...)
        raise VCEInputError(
            f"cannot be read as NIfTI ({exc})", path=path, expected="a valid .nii or .nii.gz file"
        ) from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise VCEInputError(
            f"is a {type(image).__name__}, not a NIfTI image", path=path, expected="a NIfTI-1 or NIfTI-2 file"
        )
    shape = tuple(int(s) for s in image.shape)
    if len(shape) < 3:
        raise VCEInputError(
            f"the image is {len(shape)}-D (shape {shape})",
            path=path,
            expected="a 3-D volume (a 2-D slice must be stored with shape (I, J, 1))",
        )
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise VCEInputError(
            f"the image is {len(shape)}-D (shape {shape}); a 4-D series (fMRI, DWI, several echoes) is "
            "not "
            "a single volume",
            path=path,
            expected="a 3-D volume (a fourth dimension of size 1 is accepted)",
        )
    if 0 in shape:
        raise VCEInputError(
            f"the image has a zero-sized dimension (shape {shape})",
            path=path,
            expected="a 3-D volume with at least one voxel along each axis",
        )
    affine = image.affine
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VCEInputError(
            "the header's affine is missing, singular or not finite",
            path=path,
            expected="a valid voxel-to-world affine",
        )
    try:
        canonical = nib.as_closest_canonical(image)
        data = canonical.get_fdata(dtype=np.float32)
    except Exception as exc:  # truncated or corrupt data block, unsupported data type
        raise VCEInputError(
            f"the voxel data cannot be read ({type(exc).__name__}: {exc}); "
            "the file may be truncated or corrupt",
            path=path,
            expected="a complete .nii or .nii.gz file",
        ) from exc
    data = _finish_array(data.reshape(data.shape[:3]), path)
    # float32 header zooms, written back as the shortest decimal that rounds to them (0.9, not 0.8999999761)
    zooms = tuple(float(str(np.float32(z))) for z in canonical.header.get_zooms()[:3])
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise VCEInputError(
            f"the voxel sizes {zooms} are not positive", path=path, expected="positive voxel sizes (mm)"
        )
    descrip = image.header.get("descrip")
    description = ""
    if descrip is not None:
        description = bytes(np.asarray(descrip).item()).split(b"\x00")[0].decode("latin-1").strip()
    meta: dict[str, Any] = {
        "format": "nifti2" if isinstance(image, nib.Nifti2Image) else "nifti1",
        "source_path": str(path),
        "series_description": description,
    }
    return Volume(data=data, affine=np.array(canonical.affine, dtype=np.float64), spacing=zooms, meta=meta)  # type: ignore[arg-type]


def _fits_int16_exactly(data: np.ndarray) -> bool:
    """True when every voxel is an integer in the int16 range (label maps, masks)."""
    if data.size == 0 or data.min() < -32768 or data.max() > 32767:
        return False
    return bool(np.array_equal(data, np.round(data)))


def save_nifti(
    volume: Volume, path: str | PathLike, *, dtype: Literal["float32", "int16"] = "float32"
) -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``, compressed when the name ends in ``.gz``).

    The affine is stored as both sform and qform (code 1, scanner); ``dtype="float32"`` stores the voxels
    exactly, ``dtype="int16"`` stores them as int16 with ``scl_slope``/``scl_inter`` chosen by nibabel
    from the data range (error at most half a slope); integer-valued volumes (labels, masks) are stored
    with slope 1 and intercept 0 and reload exactly. The file is written to a temporary name in the same
    folder and renamed into place, so a failure leaves no partial file. Returns the path written.
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise VCEInputError(
            f"the file name has the unsupported extension '{''.join(path.suffixes) or '(none)'}'",
            path=path,
            expected="a name ending in .nii or .nii.gz",
        )
    if dtype not in ("float32", "int16"):
        raise VCEInputError(f"dtype '{dtype}' is not supported", path=path, expected="'float32' or 'int16'")
    data, affine = _check_volume(volume, path)
    if path.is_dir():
        raise VCEInputError("is an existing folder", path=path, expected="a file name")
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if dtype == "int16" and _fits_int16_exactly(data):
        # label maps and masks: store the integers as they are (slope 1, intercept 0), so they reload exactly
        image = nib.Nifti1Image(data.astype(np.int16), affine)
        image.header.set_xyzt_units("mm")
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=1)
        image.header.set_slope_inter(1.0, 0.0)
    else:
        image.set_data_dtype(np.float32 if dtype == "float32" else np.int16)
    description = str(volume.meta.get("series_description", ""))[:79]
    image.header["descrip"] = description.encode("ascii", "replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix="-" + path.name, dir=path.parent)
    os.close(fd)
    try:
        nib.save(image, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------------
# DICOM reading
# --------------------------------------------------------------------------------------------------


@dataclass
class _Slice:
    """One 2-D DICOM image: ``pixels[r, c]`` (float64, rescaled) with its plane geometry (LPS, mm)."""

    pixels: np.ndarray
    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,): row cosines then column cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slice_spacing: float | None  # SpacingBetweenSlices or SliceThickness, used for a single slice
    label: str  # file name (and frame) for messages


def _floats(value: Any, n: int, what: str, label: str, path: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise VCEInputError(f"{label}: {what} is not numeric ({value!r})", path=path) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise VCEInputError(
            f"{label}: {what} has {arr.size} values ({value!r})", path=path, expected=f"{n} numbers"
        )
    return arr


def _decode_pixels(ds: Dataset, label: str, path: Path) -> np.ndarray:
    """``ds.pixel_array``; a missing decoder or a corrupt pixel block becomes a VCEInputError."""
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise VCEInputError(
            f"{label} holds no pixel data (SOP class {ds.get('SOPClassUID', 'unknown')})",
            path=path,
            expected="a DICOM image (MR, CT, ...) with pixel data",
        )
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise VCEInputError(
            f"{label} is a colour image ({ds.get('PhotometricInterpretation', '?')})",
            path=path,
            expected="a greyscale image (SamplesPerPixel 1)",
        )
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
    if tsyntax is not None and tsyntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as exc:
            raise VCEInputError(
                f"{label} uses the transfer syntax {tsyntax.name}, which pydicom cannot decode",
                path=path,
                expected="an uncompressed or JPEG/JPEG-LS/JPEG 2000/RLE compressed DICOM file",
            ) from exc
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies)
            raise VCEInputError(
                f"{label} is compressed with {tsyntax.name} and no decoder for it is installed",
                path=path,
                expected=f"one of these decoder packages to be installed (pip install ...): {missing}",
            )
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises ValueError, RuntimeError, AttributeError, ... on bad pixel data
        raise VCEInputError(
            f"{label}: the pixel data cannot be decoded ({type(exc).__name__}: {exc})",
            path=path,
            expected="a complete, readable DICOM image",
        ) from exc


def _rescale(item: Dataset | None, fallback: Dataset) -> tuple[float, float]:
    for source in (item, fallback):
        if source is not None and "RescaleSlope" in source:
            slope = float(source.RescaleSlope)
            intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
            return (slope if slope != 0 else 1.0), intercept
    return 1.0, 0.0


def _group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of functional group ``sequence`` for ``frame``: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        seq = per_frame[frame].get(sequence)
        if seq:
            return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq:
            return seq[0]
    return None


def _slices_from_dataset(ds: Dataset, label: str, path: Path) -> list[_Slice]:
    """Every 2-D image in ``ds`` (one for a classic image, one per frame for enhanced multi-frame)."""
    pixels = _decode_pixels(ds, label, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if n_frames > 1 and not enhanced:
        raise VCEInputError(
            f"{label} is a multi-frame image with {n_frames} frames but no per-frame geometry",
            path=path,
            expected="single-frame images or an enhanced multi-frame image with PlanePositionSequence",
        )
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise VCEInputError(
            f"{label}: the pixel data has shape {pixels.shape}, which does not match {n_frames} frame(s)",
            path=path,
        )
    slices: list[_Slice] = []
    for f in range(n_frames):
        frame_label = f"{label} frame {f + 1}" if n_frames > 1 else label
        if enhanced:
            position_item = _group_item(ds, f, "PlanePositionSequence")
            orientation_item = _group_item(ds, f, "PlaneOrientationSequence")
            measures_item = _group_item(ds, f, "PixelMeasuresSequence")
            slope, intercept = _rescale(_group_item(ds, f, "PixelValueTransformationSequence"), ds)
        else:
            position_item = orientation_item = measures_item = ds
            slope, intercept = _rescale(None, ds)
        ipp = None if position_item is None else position_item.get("ImagePositionPatient")
        iop = None if orientation_item is None else orientation_item.get("ImageOrientationPatient")
        spacing = None if measures_item is None else measures_item.get("PixelSpacing")
        missing = [
            name
            for name, value in (
                ("ImagePositionPatient", ipp),
                ("ImageOrientationPatient", iop),
                ("PixelSpacing", spacing),
            )
            if value is None or len(value) == 0
        ]
        if missing:
            raise VCEInputError(
                f"{frame_label} has no {', '.join(missing)}, so it cannot be placed in space",
                path=path,
                expected="DICOM images with patient geometry (MR, CT, ...), not screenshots",
            )
        pixel_spacing = _floats(spacing, 2, "PixelSpacing", frame_label, path)
        if np.any(pixel_spacing <= 0):
            raise VCEInputError(f"{frame_label}: PixelSpacing {spacing} is not positive", path=path)
        thickness = None
        if measures_item is not None:
            for key in ("SpacingBetweenSlices", "SliceThickness"):
                value = measures_item.get(key)
                if value not in (None, "") and float(value) > 0:
                    thickness = float(value)
                    break
        slices.append(
            _Slice(
                pixels=pixels[f].astype(np.float64) * slope + intercept,
                position=_floats(ipp, 3, "ImagePositionPatient", frame_label, path),
                orientation=_floats(iop, 6, "ImageOrientationPatient", frame_label, path),
                pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
                slice_spacing=thickness,
                label=frame_label,
            )
        )
    return slices


def _volume_from_slices(slices: list[_Slice], path: Path, meta: dict[str, Any]) -> Volume:
    """Sort slices along the slice normal, check the geometry and build a canonical RAS :class:`Volume`."""
    first = slices[0]
    for s in slices[1:]:
        if s.pixels.shape != first.pixels.shape:
            raise VCEInputError(
                f"images have different sizes: {first.label} is "
                f"{first.pixels.shape[0]}×{first.pixels.shape[1]}, "
                f"{s.label} is {s.pixels.shape[0]}×{s.pixels.shape[1]} (rows×columns)",
                path=path,
                expected="one series of equally sized images",
            )
        if not np.allclose(s.orientation, first.orientation, atol=1e-4):
            raise VCEInputError(
                f"inconsistent ImageOrientationPatient: {first.label} has "
                f"{first.orientation.round(5).tolist()}, "
                f"{s.label} has {s.orientation.round(5).tolist()} (a localizer or a mixed series?)",
                path=path,
                expected="one series of parallel slices",
            )
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-5):
            raise VCEInputError(
                f"inconsistent PixelSpacing: {first.label} has {list(first.pixel_spacing)}, "
                f"{s.label} has {list(s.pixel_spacing)}",
                path=path,
                expected="one series with the same pixel spacing in every image",
            )
    row = first.orientation[:3]
    col = first.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise VCEInputError(
            f"{first.label}: ImageOrientationPatient {first.orientation.tolist()} "
            "is not two orthogonal unit vectors",
            path=path,
        )
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    order = sorted(range(len(slices)), key=lambda n: float(slices[n].position @ normal))
    slices = [slices[n] for n in order]
    distances = np.array([s.position @ normal for s in slices])
    if len(slices) > 1:
        gaps = np.diff(distances)
        dup = int(np.argmin(gaps))
        if gaps[dup] < 1e-3:
            raise VCEInputError(
                f"{slices[dup].label} and {slices[dup + 1].label} lie at the same position "
                f"({distances[dup]:.3f} mm along the slice normal); the series holds several volumes "
                "(echoes, time points or repeats)",
                path=path,
                expected="one 3-D volume (select one echo/time point before loading)",
            )
        step = (slices[-1].position - slices[0].position) / (len(slices) - 1)
        tolerance = max(1e-3, 0.01 * float(np.linalg.norm(step)))
        for n, s in enumerate(slices):
            error = float(np.linalg.norm(s.position - (slices[0].position + n * step)))
            if error > tolerance:
                raise VCEInputError(
                    f"inconsistent slice spacing: {s.label} is {error:.3f} mm away from where an evenly "
                    f"spaced series would put it (slice gaps {np.round(gaps, 3).tolist()} mm); slices are "
                    "missing or the series mixes stacks",
                    path=path,
                    expected="evenly spaced parallel slices",
                )
    else:
        step = normal * (first.slice_spacing or 1.0)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row * first.pixel_spacing[1]  # column index c moves along the row direction
    affine_lps[:3, 1] = col * first.pixel_spacing[0]  # row index r moves along the column direction
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = slices[0].position
    data = np.stack([s.pixels.T for s in slices], axis=-1)  # (columns, rows, slices) = (c, r, s)
    data = _finish_array(data, path)
    data, affine, zooms = _canonical(data, _LPS_TO_RAS @ affine_lps)
    return Volume(data=np.ascontiguousarray(data, dtype=np.float32), affine=affine, spacing=zooms, meta=meta)


def _dicom_meta(ds: Dataset, path: Path, n_images: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format": "dicom",
        "source_path": str(path),
        "modality": str(ds.get("Modality", "") or ""),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        "n_images": n_images,
    }
    image_type = ds.get("ImageType")
    if image_type:
        meta["image_type"] = [
            str(v) for v in (image_type if isinstance(image_type, list | tuple) else [image_type])
        ]
    strength = ds.get("MagneticFieldStrength")
    if strength not in (None, ""):
        meta["field_strength"] = float(strength)
    comments = ds.get("ImageComments")
    if comments:
        meta["image_comments"] = str(comments)
    meta["synthetic"] = (
        "SYNTHETIC" in meta["series_description"].upper() or "SYNTHETIC" in str(comments or "").upper()
    )
    return meta


def _read_dicom_file(path: Path) -> Dataset:
    """``dcmread`` with a fallback for files without the 128-byte preamble; a non-DICOM file is refused."""
    try:
        return pydicom.dcmread(str(path))
    except pydicom.errors.InvalidDicomError:
        pass
    except Exception as exc:
        raise VCEInputError(
            f"cannot be read as DICOM ({type(exc).__name__}: {exc})",
            path=path,
            expected="a complete DICOM file",
        ) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), force=True)
        ok = "Rows" in ds and "Columns" in ds and ("SOPClassUID" in ds or "Modality" in ds)
    except Exception:  # random bytes parsed with force=True fail in many ways
        ok = False
    if not ok:
        raise VCEInputError(
            "is not a DICOM file (no 'DICM' marker and no image header)",
            path=path,
            expected=_ACCEPTED,
        )
    return ds


def _load_dicom_file(path: Path) -> Volume:
    ds = _read_dicom_file(path)
    slices = _slices_from_dataset(ds, "the image", path)
    return _volume_from_slices(slices, path, _dicom_meta(ds, path, len(slices)))


def _series_summary(uid: str, entries: list[tuple[Path, Dataset]]) -> str:
    description = str(entries[0][1].get("SeriesDescription", "") or "").strip() or "(no description)"
    n_images = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in entries)
    return f"{uid} '{description}' ({n_images} images)"


def _load_dicom_folder(folder: Path, series_uid: str | None, shown: Path) -> Volume:
    """Load the single (or the selected) DICOM series below ``folder``; messages name ``shown``."""
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    looked_at: list[str] = []
    without_pixels: list[str] = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        if (
            any(part.startswith(".") for part in file.relative_to(folder).parts)
            or file.name.upper() == "DICOMDIR"
        ):
            continue
        looked_at.append(rel)
        if not _has_dicom_magic(file):
            continue
        try:
            ds = pydicom.dcmread(str(file), defer_size="4 KB")
        except Exception:  # unreadable files among the series are reported below if nothing usable remains
            continue
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            without_pixels.append(rel)
            continue
        series.setdefault(str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)"), []).append(
            (file, ds)
        )
    if not series:
        detail = f"looked at {len(looked_at)} file(s)"
        if looked_at:
            detail += f" ({', '.join(looked_at[:5])}{', ...' if len(looked_at) > 5 else ''})"
        if without_pixels:
            detail += f"; {len(without_pixels)} DICOM file(s) without pixel data"
        raise VCEInputError(f"no DICOM images found: {detail}", path=shown, expected=_ACCEPTED)
    if series_uid is not None:
        if series_uid not in series:
            listing = "; ".join(_series_summary(uid, entries) for uid, entries in sorted(series.items()))
            raise VCEInputError(
                f"holds no series with SeriesInstanceUID {series_uid}; it holds: {listing}",
                path=shown,
                expected="series_uid= one of the listed SeriesInstanceUIDs",
            )
        chosen = series[series_uid]
    elif len(series) > 1:
        listing = "; ".join(_series_summary(uid, entries) for uid, entries in sorted(series.items()))
        raise VCEInputError(
            f"holds {len(series)} DICOM series: {listing}",
            path=shown,
            expected="a folder holding one series, or series_uid= naming one of them",
        )
    else:
        chosen = next(iter(series.values()))
    slices: list[_Slice] = []
    for file, ds in chosen:
        slices.extend(_slices_from_dataset(ds, file.relative_to(folder).as_posix(), shown))
    meta = _dicom_meta(chosen[0][1], shown, len(slices))
    return _volume_from_slices(slices, shown, meta)


def _extract_zip(path: Path, target: Path) -> None:
    """Extract ``path`` into ``target``, refusing path traversal, links and zip bombs."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VCEInputError(
            f"is not a readable zip archive ({exc})", path=path, expected="a valid .zip file"
        ) from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise VCEInputError(
                f"the archive holds {len(members)} files",
                path=path,
                expected=f"at most {MAX_ZIP_MEMBERS} files",
            )
        declared = sum(m.file_size for m in members)
        if declared > MAX_ZIP_TOTAL_BYTES:
            raise VCEInputError(
                f"the archive would expand to {declared / 1024**2:.0f} MiB",
                path=path,
                expected=f"at most {MAX_ZIP_TOTAL_BYTES / 1024**2:.0f} MiB uncompressed",
            )
        written = 0
        for member in members:
            name = member.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise VCEInputError(
                    f"the archive member '{member.filename}' points outside the archive folder",
                    path=path,
                    expected="relative member names without '..'",
                )
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise VCEInputError(
                    f"the archive member '{member.filename}' is a symbolic link",
                    path=path,
                    expected="plain files only",
                )
            if member.file_size > ZIP_RATIO_MIN_BYTES and member.file_size > MAX_ZIP_RATIO * max(
                member.compress_size, 1
            ):
                raise VCEInputError(
                    f"the archive member '{member.filename}' expands "
                    f"{member.file_size / max(member.compress_size, 1):.0f}"
                    " times (a zip bomb?)",
                    path=path,
                    expected=f"a compression ratio below {MAX_ZIP_RATIO:.0f}",
                )
            destination = target.joinpath(*parts)
            if not destination.resolve().is_relative_to(target.resolve()):
                raise VCEInputError(
                    f"the archive member '{member.filename}' points outside the archive folder", path=path
                )
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as src, open(destination, "wb") as dst:
                    remaining = member.file_size
                    while chunk := src.read(1024 * 1024):
                        written += len(chunk)
                        remaining -= len(chunk)
                        if remaining < 0 or written > MAX_ZIP_TOTAL_BYTES:
                            raise VCEInputError(
                                f"the archive member '{member.filename}' expands beyond its declared size",
                                path=path,
                                expected="a well-formed zip archive",
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                raise VCEInputError(
                    f"the archive member '{member.filename}' cannot be extracted ({exc})",
                    path=path,
                    expected="a complete, unencrypted .zip file",
                ) from exc


def _load_zip(path: Path, series_uid: str | None) -> Volume:
    with tempfile.TemporaryDirectory(prefix="vce-zip-") as tmp:
        target = Path(tmp)
        _extract_zip(path, target)
        volume = _load_dicom_folder(target, series_uid, path)
    return volume


def load_volume(path: str | PathLike, series_uid: str | None = None) -> Volume:
    """Read one 3-D image as a canonical RAS+ float32 :class:`Volume`.

    Parameters
    ----------
    path:
        A NIfTI file (``.nii``, ``.nii.gz``), a DICOM file (``.dcm``/``.dicom``/``.ima`` or any name whose
        content starts with the DICOM preamble), a folder holding one DICOM series (searched recursively,
        files with or without extension) or a ``.zip`` of such a folder.
    series_uid:
        SeriesInstanceUID selecting one series when a folder or zip holds several.

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
    NaN/Inf voxels, a compressed DICOM without an installed decoder.
    """
    path = Path(path)
    if not path.exists():
        raise VCEInputError("does not exist", path=path, expected=_ACCEPTED)
    if path.is_dir():
        return _load_dicom_folder(path, series_uid, path)
    name = _name_of(path)
    if name.endswith(_NIFTI_SUFFIXES):
        return _load_nifti(path)
    if name.endswith(".zip"):
        return _load_zip(path, series_uid)
    if (
        name.endswith(_DICOM_SUFFIXES)
        or path.suffix == ""
        or path.suffix[1:].isdigit()
        or _has_dicom_magic(path)
    ):
        volume = _load_dicom_file(path)
        if series_uid is not None and volume.meta.get("series_instance_uid") != series_uid:
            raise VCEInputError(
                f"belongs to series {volume.meta.get('series_instance_uid')}, not {series_uid}", path=path
            )
        return volume
    raise VCEInputError(
        f"the extension '{''.join(path.suffixes)}' is not supported", path=path, expected=_ACCEPTED
    )


# --------------------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------------------

_REFERENCE_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "BodyPartExamined",
    "PatientPosition",
    "MagneticFieldStrength",
)


def _reference_from_zip(ref: Path) -> Dataset:
    """Header (no pixels) of the first DICOM member of a ``.zip``."""
    try:
        with zipfile.ZipFile(ref) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                with archive.open(member) as fh:
                    head = fh.read(132)
                if head[128:132] != b"DICM":
                    continue
                with archive.open(member) as fh:
                    return pydicom.dcmread(fh, stop_before_pixels=True)
    except (zipfile.BadZipFile, OSError, RuntimeError, pydicom.errors.InvalidDicomError) as exc:
        raise VCEInputError(
            f"the reference archive cannot be read ({exc})", path=ref, expected="a .zip of a DICOM series"
        ) from exc
    raise VCEInputError(
        "the reference archive holds no DICOM file", path=ref, expected="a .zip of a DICOM series"
    )


def _reference_dataset(reference: Dataset | str | PathLike) -> Dataset:
    """The Dataset whose patient/study identity a written series copies: given, or read from a path."""
    if isinstance(reference, Dataset):
        return reference
    ref = Path(reference)
    if ref.is_file() and _name_of(ref).endswith(".zip"):
        return _reference_from_zip(ref)
    if ref.is_dir():
        for file in sorted(p for p in ref.rglob("*") if p.is_file()):
            if _has_dicom_magic(file):
                ref = file
                break
        else:
            raise VCEInputError(
                "the reference folder holds no DICOM file", path=ref, expected="a DICOM file or series"
            )
    if not ref.is_file():
        raise VCEInputError(
            "the reference does not exist", path=ref, expected="a DICOM file, a folder or a Dataset"
        )
    return _read_dicom_file(ref)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _synthetic_statement(model_name: str | None, dose: float | None) -> str:
    text = "SYNTHETIC"
    if dose is not None:
        text += f" {100 * dose:.3g}% dose"
    if model_name:
        text += f" (model {model_name})"
    return text + " - not an acquired image"


def _quantisation(data: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) as exactly representable DS values so that int16 covers ``data``."""
    lo, hi = float(data.min()), float(data.max())
    if np.all(data == np.round(data)) and lo >= -32768 and hi <= 32767:
        return 1.0, 0.0
    intercept = float(_ds((lo + hi) / 2))
    half_range = max(hi - intercept, intercept - lo)
    slope = half_range / 32000.0 if half_range > 0 else 1.0
    slope = float(_ds(slope))
    while (
        max(abs(hi - intercept), abs(lo - intercept)) / slope > 32767
    ):  # DS rounding made the slope too small
        slope = float(_ds(slope * 1.0001))
    return slope, intercept


def save_dicom_series(
    volume: Volume,
    out_dir: str | PathLike,
    *,
    series_description: str,
    synthetic: bool = True,
    reference: Dataset | str | PathLike | None = None,
    model_name: str | None = None,
    dose: float | None = None,
    series_number: int = 900,
) -> list[Path]:
    """Write ``volume`` as an MR Image Storage series, one file per slice ``data[:, :, k]`` (axial for a
    canonical RAS volume), in-plane axes ordered for the usual radiological display.

    Pixels are int16 with one RescaleSlope/RescaleIntercept for the series (slope 1, intercept 0 when the
    data are integers that fit int16), so ``load_volume(out_dir)`` returns the data within half a slope and
    the same affine and spacing (exactly the input's when it is in canonical RAS orientation, as every
    loaded volume is). ImageType is DERIVED\\SECONDARY; all UIDs are new, except patient/study identity and
    FrameOfReferenceUID copied from ``reference`` (a pydicom Dataset, a DICOM file, a series folder or
    ``.zip``, e.g. the ``meta["source_path"]`` of a volume loaded from DICOM) so the series joins that
    study. With ``synthetic=True`` SeriesDescription starts with ``SYNTHETIC`` and
    ImageComments/DerivationDescription state that the image is synthetic, with ``model_name`` and ``dose``
    (fraction of the standard dose, in [0, 1]). Files are written into a temporary folder renamed to
    ``out_dir`` (which must not exist or be empty). Returns the written file paths in slice order.
    """
    out_dir = Path(out_dir)
    data, affine = _check_volume(volume, out_dir)
    if not isinstance(series_description, str) or not series_description.strip():
        raise VCEInputError(
            "series_description is empty", path=out_dir, expected="a short description of the series"
        )
    if dose is not None and not (_is_real(dose) and 0.0 <= float(dose) <= 1.0):
        raise VCEInputError(
            f"dose {dose!r} is out of range",
            path=out_dir,
            expected="a fraction of the standard dose in [0, 1]",
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise VCEInputError(
            "already exists and is not an empty folder", path=out_dir, expected="a new or empty output folder"
        )
    ref = None if reference is None else _reference_dataset(reference)

    affine_lps = _LPS_TO_RAS @ affine
    for axis in (0, 1):  # flip in-plane axes pointing "backwards" so viewers show the usual radiological view
        direction = affine_lps[:3, axis]
        if direction[np.argmax(np.abs(direction))] < 0:
            data = np.flip(data, axis)
            affine_lps[:3, 3] += direction * (data.shape[axis] - 1)
            affine_lps[:3, axis] = -direction
    columns_vec, rows_vec, step = affine_lps[:3, 0], affine_lps[:3, 1], affine_lps[:3, 2]
    spacing_c, spacing_r = float(np.linalg.norm(columns_vec)), float(np.linalg.norm(rows_vec))
    row_cos, col_cos = columns_vec / spacing_c, rows_vec / spacing_r
    if abs(row_cos @ col_cos) > 1e-4:
        raise VCEInputError(
            "the affine's first two axes are not orthogonal (in-plane shear), which DICOM cannot represent",
            path=out_dir,
            expected="a volume whose axial slices are rectangular grids",
        )
    normal = np.cross(row_cos, col_cos)
    slice_spacing = abs(float(step @ normal))
    slope, intercept = _quantisation(data)
    stored = np.clip(np.round((data.astype(np.float64) - intercept) / slope), -32768, 32767).astype(np.int16)

    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    study_uid, frame_uid, series_uid = generate_uid(), generate_uid(), generate_uid()
    description = series_description.strip()
    statement = _synthetic_statement(model_name, dose) if synthetic else ""
    if synthetic and not description.upper().startswith("SYNTHETIC"):
        description = f"SYNTHETIC {description}"
    low, high = np.percentile(data, [0.5, 99.5])
    width = max(float(high - low), 1e-3)

    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=parent))
    try:
        names: list[str] = []
        for k in range(data.shape[2]):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            sop_uid = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.ImageType = ["DERIVED", "SECONDARY"]
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate, ds.StudyTime = date, time
            ds.SeriesDate, ds.SeriesTime = date, time
            ds.ContentDate, ds.ContentTime = date, time
            ds.AccessionNumber = ""
            ds.Modality = "MR"
            ds.Manufacturer = "vce-studio"
            ds.ReferringPhysicianName = ""
            ds.SeriesDescription = description[:64]
            ds.PatientName = "ANONYMOUS"
            ds.PatientID = str(volume.meta.get("case_id", "ANONYMOUS"))[:64]
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.StudyInstanceUID = study_uid
            ds.StudyID = ""
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            if ref is not None:
                for keyword in _REFERENCE_KEYWORDS:
                    if keyword in ref:
                        setattr(ds, keyword, ref.data_element(keyword).value)
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.InstanceNumber = k + 1
            ds.ScanningSequence = "RM"  # research mode: not produced by a scan
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.EchoTime = None
            ds.RepetitionTime = None
            ds.EchoTrainLength = None
            position = affine_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine_lps[:3, 3]
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
            ds.PixelSpacing = [_ds(spacing_r), _ds(spacing_c)]
            ds.SliceThickness = _ds(slice_spacing)
            ds.SpacingBetweenSlices = _ds(slice_spacing)
            ds.SliceLocation = _ds(float(position @ normal))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[0])
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
            ds.RescaleType = "US"
            ds.WindowCenter, ds.WindowWidth = _ds((low + high) / 2), _ds(width)
            ds.BurnedInAnnotation = "NO"
            if synthetic:
                ds.ImageComments = f"{statement}. {series_description.strip()}"
                ds.DerivationDescription = (
                    f"{statement}; computed from acquired images"
                    + (f" by the generator '{model_name}'" if model_name else "")
                )[:1024]
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (rows=j, columns=i)
            name = f"IM{k + 1:05d}.dcm"
            ds.save_as(tmp_dir / name, enforce_file_format=True)
            names.append(name)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return [out_dir / name for name in names]


# --------------------------------------------------------------------------------------------------
# Case folders
# --------------------------------------------------------------------------------------------------

#: BraTS naming: (role, suffixes) — 2018-2021 style (``_t1ce``) and 2023 style (``-t1c``).
_BRATS_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("native", ("_t1", "-t1n")),
    ("standard_dose", ("_t1ce", "-t1c")),
    ("t2", ("_t2", "-t2w")),
    ("flair", ("_flair", "-t2f")),
    ("labels", ("_seg", "-seg")),
)


def _brats_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for file in sorted(folder.iterdir()):
        if not file.is_file() or not _is_nifti_name(file):
            continue
        stem = (
            file.name[: -len(".nii.gz")]
            if file.name.lower().endswith(".nii.gz")
            else file.name[: -len(".nii")]
        )
        for role, suffixes in _BRATS_ROLES:
            if stem.lower().endswith(suffixes):
                found.setdefault(role, []).append(file)
    return found


def _check_same_grid(reference: Volume, ref_name: str, other: Volume, other_name: str, folder: Path) -> None:
    if reference.same_grid(other):
        return

    def describe(v: Volume) -> str:
        spacing = tuple(round(float(s), 4) for s in v.spacing)
        origin = tuple(round(float(o), 3) for o in v.origin)
        return f"shape {v.shape}, spacing {spacing} mm, origin {origin} mm"

    raise VCEInputError(
        f"{ref_name} and {other_name} are not on the same grid: {ref_name} has {describe(reference)}, "
        f"{other_name} has {describe(other)}",
        path=folder,
        expected=f"all volumes of a case with equal shapes and affines (within {GRID_ATOL_MM} mm); "
        "resample first",
    )


def _manifest_file(folder: Path, manifest: Path, name: Any, key: str) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise VCEInputError(
            f"'{key}' is {name!r}", path=manifest, expected="a file name relative to the case folder"
        )
    file = folder / name
    if Path(name).is_absolute() or not file.resolve().is_relative_to(folder.resolve()):
        raise VCEInputError(
            f"'{key}' names '{name}', which lies outside the case folder",
            path=manifest,
            expected="a file name relative to the case folder",
        )
    if not file.exists():
        raise VCEInputError(
            f"'{key}' names '{name}', which does not exist in {folder}",
            path=manifest,
            expected="every file named in case.json to be present",
        )
    return file


def _load_manifest_case(folder: Path, manifest: Path) -> Case:
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise VCEInputError(
            f"is not UTF-8 text ({exc})", path=manifest, expected="a JSON case manifest"
        ) from exc
    except json.JSONDecodeError as exc:
        raise VCEInputError(
            f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            path=manifest,
            expected="a JSON case manifest (see docs/case-format.md)",
        ) from exc
    if not isinstance(spec, dict):
        raise VCEInputError(f"holds a JSON {type(spec).__name__}", path=manifest, expected="a JSON object")
    if spec.get("format", CASE_FORMAT) != CASE_FORMAT:
        raise VCEInputError(f"'format' is {spec.get('format')!r}", path=manifest, expected=f"'{CASE_FORMAT}'")
    version = spec.get("version", CASE_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > CASE_VERSION or version < 1:
        raise VCEInputError(f"'version' is {version!r}", path=manifest, expected=f"version {CASE_VERSION}")
    missing = [key for key in ("native", "standard_dose", "field_strength", "agent") if key not in spec]
    if missing:
        raise VCEInputError(
            f"the key(s) {', '.join(missing)} are missing",
            path=manifest,
            expected="native, standard_dose, field_strength and agent (see docs/case-format.md)",
        )
    strength = spec["field_strength"]
    if not _is_real(strength) or not (0 < float(strength) <= 20):
        raise VCEInputError(
            f"'field_strength' is {strength!r}",
            path=manifest,
            expected="a field strength in tesla in (0, 20]",
        )
    agent = spec["agent"]
    if not isinstance(agent, str) or not agent.strip():
        raise VCEInputError(f"'agent' is {agent!r}", path=manifest, expected="a contrast agent name")
    low_specs = spec.get("low_doses", [])
    if not isinstance(low_specs, list):
        raise VCEInputError(
            "'low_doses' is not a list", path=manifest, expected='a list of {"dose": d, "file": name}'
        )
    extra_specs = spec.get("extra", {})
    if not isinstance(extra_specs, dict):
        raise VCEInputError("'extra' is not an object", path=manifest, expected='an object {"name": file}')
    meta = spec.get("meta", {})
    if not isinstance(meta, dict):
        raise VCEInputError("'meta' is not an object", path=manifest, expected="a JSON object")

    files: list[tuple[str, Path]] = [
        ("native", _manifest_file(folder, manifest, spec["native"], "native")),
        ("standard_dose", _manifest_file(folder, manifest, spec["standard_dose"], "standard_dose")),
    ]
    doses: list[float] = []
    for n, item in enumerate(low_specs):
        if not isinstance(item, dict) or "dose" not in item or "file" not in item:
            raise VCEInputError(
                f"low_doses[{n}] is {item!r}", path=manifest, expected='{"dose": fraction, "file": name}'
            )
        dose = item["dose"]
        if not _is_real(dose) or not (0 < float(dose) <= 1):
            raise VCEInputError(
                f"low_doses[{n}] has dose {dose!r}",
                path=manifest,
                expected="a dose as a fraction of the standard dose in (0, 1]",
            )
        if any(math.isclose(float(dose), d, abs_tol=1e-9) for d in doses):
            raise VCEInputError(
                f"the dose {dose} is listed twice in low_doses", path=manifest, expected="distinct doses"
            )
        doses.append(float(dose))
        files.append(
            (f"low_doses[{n}]", _manifest_file(folder, manifest, item["file"], f"low_doses[{n}].file"))
        )
    for name, file_name in extra_specs.items():
        files.append((f"extra.{name}", _manifest_file(folder, manifest, file_name, f"extra.{name}")))

    volumes: dict[str, Volume] = {}
    for key, file in files:
        volumes[key] = load_volume(file)
        if key != "native":
            _check_same_grid(volumes["native"], files[0][1].name, volumes[key], file.name, folder)
    case_meta = dict(meta)
    case_meta["case_id"] = str(spec.get("case_id") or folder.name)
    case_meta["source_path"] = str(folder)
    return Case(
        native=volumes["native"],
        standard_dose=volumes["standard_dose"],
        low_doses={d: volumes[f"low_doses[{n}]"] for n, d in enumerate(doses)},
        field_strength=float(strength),
        agent=agent.strip(),
        extra={name: volumes[f"extra.{name}"] for name in extra_specs},
        meta=case_meta,
    )


def _load_brats_case(folder: Path, found: dict[str, list[Path]]) -> Case:
    for role, files in found.items():
        if len(files) > 1:
            raise VCEInputError(
                f"several files match the BraTS role '{role}': {', '.join(f.name for f in files)}",
                path=folder,
                expected="one file per role",
            )
    missing = [role for role in ("native", "standard_dose") if role not in found]
    if missing:
        raise VCEInputError(
            f"the BraTS folder lacks the {' and '.join(missing)} image",
            path=folder,
            expected="*_t1.nii.gz (native) and *_t1ce.nii.gz (standard dose), or *-t1n / *-t1c",
        )
    native_file = found["native"][0]
    native = load_volume(native_file)
    volumes: dict[str, Volume] = {}
    for role, files in found.items():
        if role == "native":
            continue
        volumes[role] = load_volume(files[0])
        _check_same_grid(native, native_file.name, volumes[role], files[0].name, folder)
    return Case(
        native=native,
        standard_dose=volumes.pop("standard_dose"),
        low_doses={},
        field_strength=3.0,
        agent=_AGENT_UNKNOWN,
        extra=volumes,
        meta={
            "case_id": folder.name,
            "source_path": str(folder),
            "source_format": "brats",
            "field_strength_assumed": True,
            "agent_assumed": True,
            "note": "BraTS folder: field strength unknown, 3.0 T assumed; contrast agent unknown",
        },
    )


def load_case(folder: str | PathLike) -> Case:
    """Read a case folder: ``case.json`` + volumes, or a BraTS-style folder.

    ``folder`` may also be the ``case.json`` file itself. The manifest's schema is in
    ``docs/case-format.md``; BraTS folders map ``*_t1`` → native, ``*_t1ce`` → standard dose and ``*_t2``,
    ``*_flair``, ``*_seg`` → ``extra["t2"]``, ``extra["flair"]``, ``extra["labels"]`` (2023 names ``-t1n``,
    ``-t1c``, ``-t2w``, ``-t2f``, ``-seg`` too), with field strength 3.0 T marked as assumed in ``meta``.
    Every volume must share the native volume's grid. ``case.meta`` holds the manifest's ``meta`` plus
    ``case_id`` and ``source_path``.
    """
    folder = Path(folder)
    if folder.is_file() and folder.name == CASE_FILE:
        folder = folder.parent
    if not folder.exists():
        raise VCEInputError(
            "does not exist", path=folder, expected="a case folder with case.json or BraTS files"
        )
    if not folder.is_dir():
        raise VCEInputError(
            "is not a folder", path=folder, expected="a case folder with case.json or BraTS files"
        )
    manifest = folder / CASE_FILE
    if manifest.is_file():
        return _load_manifest_case(folder, manifest)
    found = _brats_files(folder)
    if found:
        return _load_brats_case(folder, found)
    raise VCEInputError(
        "holds neither case.json nor BraTS files",
        path=folder,
        expected="a case folder with case.json (docs/case-format.md) or *_t1.nii.gz + *_t1ce.nii.gz",
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path | PurePosixPath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dose_file_name(dose: float) -> str:
    percent = 100.0 * dose
    if math.isclose(percent, round(percent), abs_tol=1e-6):
        return f"low_dose_{round(percent):03d}.nii.gz"
    return f"low_dose_{percent:07.3f}".replace(".", "p") + ".nii.gz"


def save_case(
    case: Case,
    folder: str | PathLike,
    *,
    overwrite: bool = False,
    dtype: Literal["float32", "int16"] = "float32",
) -> Path:
    """Write ``case`` as ``folder/case.json`` plus one ``.nii.gz`` per volume; return the case.json path.

    Volumes are stored as float32 (exact) or, with ``dtype="int16"``, as int16 with scl_slope/scl_inter
    chosen from each volume's range (error at most half a slope; files about half the size). The case is
    written into a temporary sibling folder and swapped into place. An existing non-empty ``folder`` is
    replaced only when it holds a case with the same ``case_id`` or when ``overwrite=True``; a non-empty
    folder without case.json is never replaced.
    """
    folder = Path(folder)
    if not isinstance(case, Case):
        raise VCEInputError(f"got a {type(case).__name__}", path=folder, expected="a vce_core.io.Case")
    if dtype not in ("float32", "int16"):
        raise VCEInputError(f"dtype '{dtype}' is not supported", path=folder, expected="'float32' or 'int16'")
    strength = case.field_strength
    if not _is_real(strength) or not (0 < float(strength) <= 20):
        raise VCEInputError(f"field_strength is {strength!r}", path=folder, expected="tesla in (0, 20]")
    if not isinstance(case.agent, str) or not case.agent.strip():
        raise VCEInputError(f"agent is {case.agent!r}", path=folder, expected="a contrast agent name")
    case_id = str(case.meta.get("case_id") or folder.name)

    entries: list[tuple[str, str, Volume]] = [
        ("native", "native.nii.gz", case.native),
        ("standard_dose", "standard_dose.nii.gz", case.standard_dose),
    ]
    low_doses: list[dict[str, Any]] = []
    names_used = {"native.nii.gz", "standard_dose.nii.gz", CASE_FILE}
    bad_doses = [dose for dose in case.low_doses if not (_is_real(dose) and 0 < float(dose) <= 1)]
    if bad_doses:
        raise VCEInputError(
            f"low dose(s) {', '.join(repr(d) for d in bad_doses)} out of range",
            path=folder,
            expected="doses as fractions of the standard dose in (0, 1]",
        )
    for dose in sorted(case.low_doses):
        name = _dose_file_name(float(dose))
        if name in names_used:
            raise VCEInputError(
                f"the low doses collide on the file name {name}", path=folder, expected="distinct doses"
            )
        names_used.add(name)
        entries.append((f"low dose {dose}", name, case.low_doses[dose]))
        low_doses.append({"dose": float(dose), "file": name})
    extra: dict[str, str] = {}
    for key in case.extra:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", key):
            raise VCEInputError(
                f"extra volume name {key!r} is not usable as a file name",
                path=folder,
                expected="letters, digits, '_', '-', '.'",
            )
        name = f"{key}.nii.gz"
        if name in names_used:
            raise VCEInputError(f"extra volume '{key}' collides with another file name", path=folder)
        names_used.add(name)
        extra[key] = name
        entries.append((f"extra '{key}'", name, case.extra[key]))
    for what, _, volume in entries:
        _check_volume(volume, folder, what)
    for _, name, volume in entries[1:]:
        _check_same_grid(case.native, "native.nii.gz", volume, name, folder)
    meta = {k: v for k, v in case.meta.items() if k not in ("case_id", "source_path")}
    spec = {
        "format": CASE_FORMAT,
        "version": CASE_VERSION,
        "case_id": case_id,
        "field_strength": float(strength),
        "agent": case.agent.strip(),
        "native": "native.nii.gz",
        "standard_dose": "standard_dose.nii.gz",
        "low_doses": low_doses,
        "extra": extra,
        "meta": meta,
    }
    try:
        text = json.dumps(spec, indent=2, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VCEInputError(
            f"case.meta cannot be written as JSON ({exc})",
            path=folder,
            expected="JSON-serialisable metadata (numbers, strings, lists, dicts)",
        ) from exc

    if folder.exists():
        if not folder.is_dir():
            raise VCEInputError("exists and is not a folder", path=folder, expected="a case folder")
        if any(folder.iterdir()):
            existing = folder / CASE_FILE
            if not existing.is_file():
                raise VCEInputError(
                    "is a non-empty folder without case.json; refusing to replace it",
                    path=folder,
                    expected="a new, empty or existing case folder",
                )
            if not overwrite:
                try:
                    old_id = json.loads(existing.read_text(encoding="utf-8")).get("case_id")
                except (ValueError, AttributeError, UnicodeDecodeError):
                    old_id = None
                if old_id != case_id:
                    raise VCEInputError(
                        f"already holds a different case ({old_id!r}, not {case_id!r})",
                        path=folder,
                        expected="overwrite=True to replace it, or another folder",
                    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    backup: Path | None = None
    try:
        for _, name, volume in entries:
            save_nifti(volume, tmp / name, dtype=dtype)
        (tmp / CASE_FILE).write_text(text + "\n", encoding="utf-8")
        if folder.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".old-{folder.name}-", dir=folder.parent))
            backup.rmdir()
            os.replace(folder, backup)
        os.replace(tmp, folder)
    except BaseException:
        if backup is not None and backup.exists() and not folder.exists():
            os.replace(backup, folder)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return folder / CASE_FILE


def iter_case_folders(root: str | PathLike) -> list[Path]:
    """Case folders below ``root`` (``root`` included): those holding case.json or BraTS T1/T1ce files.

    Searched recursively (hidden folders skipped; a case folder's subfolders are not searched further);
    returned sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise VCEInputError("is not an existing folder", path=root, expected="a folder holding case folders")
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        if (folder / CASE_FILE).is_file() or "standard_dose" in _brats_files(folder):
            found.append(folder)
            continue
        stack.extend(c for c in children if c.is_dir() and not c.name.startswith("."))
    return sorted(found)
