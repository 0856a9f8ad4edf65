"""DICOM export: a :class:`~vce_core.io.Volume` as an MR Image Storage series, marked synthetic when it is."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from os import PathLike
from pathlib import Path

import numpy as np
import pydicom
import pydicom.errors
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from vce_core.domain import check_dose
from vce_core.errors import VCEInputError

from .dicom_read import read_dicom_file
from .volume import (
    LPS_TO_RAS,
    Volume,
    check_for_file,
    check_volume,
    folder_replaced_on_success,
    has_dicom_magic,
)

#: Patient, study and frame-of-reference attributes copied from a reference so the series joins its study.
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


# --------------------------------------------------------------------------------------------------
# Reference study
# --------------------------------------------------------------------------------------------------


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
    if ref.is_file() and ref.name.lower().endswith(".zip"):
        return _reference_from_zip(ref)
    if ref.is_dir():
        for file in sorted(p for p in ref.rglob("*") if p.is_file()):
            if has_dicom_magic(file):
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
    return read_dicom_file(ref)


# --------------------------------------------------------------------------------------------------
# Geometry and pixel encoding
# --------------------------------------------------------------------------------------------------


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


@dataclass(frozen=True)
class _Geometry:
    """Plane geometry of the written slices (LPS, mm), all of it from the voxel → LPS affine; slice ``k`` is
    ``data[:, :, k]``."""

    affine_lps: np.ndarray  # voxel (i = column, j = row, k = slice) → LPS

    @cached_property
    def spacing_c(self) -> float:
        """Between columns."""
        return float(np.linalg.norm(self.affine_lps[:3, 0]))

    @cached_property
    def spacing_r(self) -> float:
        """Between rows."""
        return float(np.linalg.norm(self.affine_lps[:3, 1]))

    @cached_property
    def row_cos(self) -> np.ndarray:
        """Direction of increasing column index."""
        return self.affine_lps[:3, 0] / self.spacing_c

    @cached_property
    def col_cos(self) -> np.ndarray:
        """Direction of increasing row index."""
        return self.affine_lps[:3, 1] / self.spacing_r

    @cached_property
    def normal(self) -> np.ndarray:
        """``row_cos × col_cos``."""
        return np.cross(self.row_cos, self.col_cos)

    @cached_property
    def slice_spacing(self) -> float:
        """Between slices, along the normal."""
        return abs(float(self.affine_lps[:3, 2] @ self.normal))

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice ``k`` (LPS, mm)."""
        return self.affine_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + self.affine_lps[:3, 3]


def _radiological_geometry(
    data: np.ndarray, affine: np.ndarray, out_dir: Path
) -> tuple[np.ndarray, _Geometry]:
    """Flip in-plane axes pointing "backwards" so viewers show the usual radiological view.

    Returns the (possibly flipped) data and its geometry; refuses an in-plane shear, which DICOM cannot
    represent.
    """
    affine_lps = LPS_TO_RAS @ affine
    for axis in (0, 1):
        direction = affine_lps[:3, axis]
        if direction[np.argmax(np.abs(direction))] < 0:
            data = np.flip(data, axis)
            affine_lps[:3, 3] += direction * (data.shape[axis] - 1)
            affine_lps[:3, axis] = -direction
    geometry = _Geometry(affine_lps)
    if abs(geometry.row_cos @ geometry.col_cos) > 1e-4:
        raise VCEInputError(
            "the affine's first two axes are not orthogonal (in-plane shear), which DICOM cannot represent",
            path=out_dir,
            expected="a volume whose axial slices are rectangular grids",
        )
    return data, geometry


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


@dataclass(frozen=True)
class _Encoding:
    """Stored int16 pixels with the series' rescale and display window."""

    stored: np.ndarray  # int16 (I, J, K): value = stored * slope + intercept
    slope: float
    intercept: float
    window_center: float
    window_width: float


def _encode(data: np.ndarray) -> _Encoding:
    """Quantise float ``data`` (I, J, K) to int16 and choose a 0.5–99.5 % percentile window."""
    slope, intercept = _quantisation(data)
    stored = np.clip(np.round((data.astype(np.float64) - intercept) / slope), -32768, 32767).astype(np.int16)
    low, high = np.percentile(data, [0.5, 99.5])
    return _Encoding(
        stored=stored,
        slope=slope,
        intercept=intercept,
        window_center=(low + high) / 2,
        window_width=max(float(high - low), 1e-3),
    )


# --------------------------------------------------------------------------------------------------
# Series header and slice datasets
# --------------------------------------------------------------------------------------------------


def _synthetic_statement(model_name: str | None, dose: float | None) -> str:
    text = "SYNTHETIC"
    if dose is not None:
        text += f" {100 * dose:.3g}% dose"
    if model_name:
        text += f" (model {model_name})"
    return text + " - not an acquired image"


@dataclass(frozen=True)
class _SeriesHeader:
    """What every file of one written series shares."""

    description: str  # SeriesDescription
    patient_id: str
    date: str
    time: str
    study_uid: str
    frame_uid: str
    series_uid: str
    series_number: int
    image_comments: str | None  # set for synthetic series only
    derivation_description: str | None  # set for synthetic series only
    reference: Dataset | None  # patient/study identity to copy


def _series_header(
    volume: Volume,
    series_description: str,
    *,
    synthetic: bool,
    model_name: str | None,
    dose: float | None,
    series_number: int,
    reference: Dataset | None,
) -> _SeriesHeader:
    """New study, frame-of-reference and series UIDs, dated now; the synthetic statement when synthetic."""
    now = datetime.now()
    description = series_description.strip()
    comments = derivation = None
    if synthetic:
        statement = _synthetic_statement(model_name, dose)
        comments = f"{statement}. {description}"
        derivation = (
            f"{statement}; computed from acquired images"
            + (f" by the generator '{model_name}'" if model_name else "")
        )[:1024]
        if not description.upper().startswith("SYNTHETIC"):
            description = f"SYNTHETIC {description}"
    return _SeriesHeader(
        description=description[:64],
        patient_id=str(volume.meta.get("case_id", "ANONYMOUS"))[:64],
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M%S.%f"),
        study_uid=generate_uid(),
        frame_uid=generate_uid(),
        series_uid=generate_uid(),
        series_number=int(series_number),
        image_comments=comments,
        derivation_description=derivation,
        reference=reference,
    )


def _set_identity(ds: Dataset, header: _SeriesHeader) -> None:
    """Patient, study and series attributes; those of the reference (when given) win."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate, ds.StudyTime = header.date, header.time
    ds.SeriesDate, ds.SeriesTime = header.date, header.time
    ds.ContentDate, ds.ContentTime = header.date, header.time
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "vce-studio"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = header.description
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = header.study_uid
    ds.StudyID = ""
    ds.FrameOfReferenceUID = header.frame_uid
    ds.PositionReferenceIndicator = ""
    if header.reference is not None:
        for keyword in _REFERENCE_KEYWORDS:
            if keyword in header.reference:
                setattr(ds, keyword, header.reference.data_element(keyword).value)
    ds.SeriesInstanceUID = header.series_uid
    ds.SeriesNumber = header.series_number
    ds.ScanningSequence = "RM"  # research mode: not produced by a scan
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.EchoTime = None
    ds.RepetitionTime = None
    ds.EchoTrainLength = None
    ds.BurnedInAnnotation = "NO"
    if header.image_comments is not None:
        ds.ImageComments = header.image_comments
    if header.derivation_description is not None:
        ds.DerivationDescription = header.derivation_description


def _set_image(ds: Dataset, geometry: _Geometry, encoding: _Encoding, k: int) -> None:
    """Plane geometry, rescale, window and pixels of slice ``k``."""
    position = geometry.position(k)
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in (*geometry.row_cos, *geometry.col_cos)]
    ds.PixelSpacing = [_ds(geometry.spacing_r), _ds(geometry.spacing_c)]
    ds.SliceThickness = _ds(geometry.slice_spacing)
    ds.SpacingBetweenSlices = _ds(geometry.slice_spacing)
    ds.SliceLocation = _ds(float(position @ geometry.normal))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(encoding.stored.shape[1]), int(encoding.stored.shape[0])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = _ds(encoding.slope), _ds(encoding.intercept)
    ds.RescaleType = "US"
    ds.WindowCenter, ds.WindowWidth = _ds(encoding.window_center), _ds(encoding.window_width)
    ds.PixelData = np.ascontiguousarray(encoding.stored[:, :, k].T).tobytes()  # (rows=j, columns=i)


def _slice_dataset(header: _SeriesHeader, geometry: _Geometry, encoding: _Encoding, k: int) -> Dataset:
    """The complete MR Image Storage dataset of slice ``k``, with a new SOPInstanceUID."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = sop_uid
    _set_identity(ds, header)
    _set_image(ds, geometry, encoding, k)
    return ds


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def _check_series_arguments(out_dir: Path, series_description: object, dose: float | None) -> float | None:
    """Refuse an empty description, a dose outside [0, 1] and a non-empty ``out_dir``; return the dose."""
    if not isinstance(series_description, str) or not series_description.strip():
        raise VCEInputError(
            "series_description is empty", path=out_dir, expected="a short description of the series"
        )
    if dose is not None:
        dose = check_for_file(check_dose, dose, out_dir, name="dose")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise VCEInputError(
            "already exists and is not an empty folder", path=out_dir, expected="a new or empty output folder"
        )
    return dose


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
    data, affine = check_volume(volume, out_dir)
    dose = _check_series_arguments(out_dir, series_description, dose)
    ref = None if reference is None else _reference_dataset(reference)
    data, geometry = _radiological_geometry(data, affine, out_dir)
    encoding = _encode(data)
    header = _series_header(
        volume,
        series_description,
        synthetic=synthetic,
        model_name=model_name,
        dose=dose,
        series_number=series_number,
        reference=ref,
    )
    names = [f"IM{k + 1:05d}.dcm" for k in range(data.shape[2])]
    with folder_replaced_on_success(out_dir) as tmp_dir:
        for k, name in enumerate(names):
            _slice_dataset(header, geometry, encoding, k).save_as(tmp_dir / name, enforce_file_format=True)
    return [out_dir / name for name in names]
