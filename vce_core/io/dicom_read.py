"""DICOM reading: a single file (classic or enhanced multi-frame) or a folder holding one series.

DICOM geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing) becomes an LPS affine,
converted to RAS and reoriented like a NIfTI file, so a series and the NIfTI made from it give the same
:class:`~vce_core.io.Volume`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pydicom.errors
from pydicom.dataset import Dataset

from vce_core.errors import VCEInputError

from .limits import DEFAULT_LIMITS, Limits
from .volume import ACCEPTED, LPS_TO_RAS, Volume, finish_array, has_dicom_magic

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass
class _Slice:
    """One 2-D DICOM image: ``pixels[r, c]`` (float64, rescaled) with its plane geometry (LPS, mm)."""

    pixels: np.ndarray
    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,): row cosines then column cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slice_spacing: float | None  # SpacingBetweenSlices or SliceThickness, used for a single slice
    label: str  # file name (and frame) for messages


# --------------------------------------------------------------------------------------------------
# One dataset → 2-D slices
# --------------------------------------------------------------------------------------------------


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


def _check_decoder(ds: Dataset, label: str, path: Path) -> None:
    """Refuse a compressed dataset whose transfer syntax pydicom cannot decode here, naming the package."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
    if tsyntax is None or not tsyntax.is_compressed:
        return
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


def _decode_pixels(ds: Dataset, label: str, path: Path) -> np.ndarray:
    """``ds.pixel_array``; a missing decoder or a corrupt pixel block becomes a VCEInputError."""
    if not any(tag in ds for tag in _PIXEL_TAGS):
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
    _check_decoder(ds, label, path)
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


def _frame_slice(
    ds: Dataset, frame: int, enhanced: bool, pixels: np.ndarray, label: str, path: Path
) -> _Slice:
    """Frame ``frame`` of ``ds`` (stored ``pixels[r, c]``) rescaled and placed by its plane geometry."""
    if enhanced:
        position_item = _group_item(ds, frame, "PlanePositionSequence")
        orientation_item = _group_item(ds, frame, "PlaneOrientationSequence")
        measures_item = _group_item(ds, frame, "PixelMeasuresSequence")
        slope, intercept = _rescale(_group_item(ds, frame, "PixelValueTransformationSequence"), ds)
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
            f"{label} has no {', '.join(missing)}, so it cannot be placed in space",
            path=path,
            expected="DICOM images with patient geometry (MR, CT, ...), not screenshots",
        )
    pixel_spacing = _floats(spacing, 2, "PixelSpacing", label, path)
    if np.any(pixel_spacing <= 0):
        raise VCEInputError(f"{label}: PixelSpacing {spacing} is not positive", path=path)
    thickness = None
    if measures_item is not None:
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            value = measures_item.get(key)
            if value not in (None, "") and float(value) > 0:
                thickness = float(value)
                break
    return _Slice(
        pixels=pixels.astype(np.float64) * slope + intercept,
        position=_floats(ipp, 3, "ImagePositionPatient", label, path),
        orientation=_floats(iop, 6, "ImageOrientationPatient", label, path),
        pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        slice_spacing=thickness,
        label=label,
    )


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
    return [
        _frame_slice(ds, f, enhanced, pixels[f], f"{label} frame {f + 1}" if n_frames > 1 else label, path)
        for f in range(n_frames)
    ]


# --------------------------------------------------------------------------------------------------
# 2-D slices → a volume
# --------------------------------------------------------------------------------------------------


def _check_one_stack(slices: list[_Slice], path: Path) -> None:
    """Every slice has the first one's size, orientation and pixel spacing."""
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


def _row_and_column(first: _Slice, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines (LPS) of ``first``, checked to be orthonormal."""
    row = first.orientation[:3]
    col = first.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise VCEInputError(
            f"{first.label}: ImageOrientationPatient {first.orientation.tolist()} "
            "is not two orthogonal unit vectors",
            path=path,
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _slice_step(slices: list[_Slice], normal: np.ndarray, path: Path) -> np.ndarray:
    """The LPS vector (mm) from one slice to the next of ``slices`` (sorted along ``normal``).

    Refuses two slices at one position (several volumes in one series) and uneven spacing (missing
    slices or mixed stacks); a single slice steps by its slice spacing (1 mm when not recorded).
    """
    if len(slices) == 1:
        return normal * (slices[0].slice_spacing or 1.0)
    distances = np.array([s.position @ normal for s in slices])
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
    return step


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


def _volume_from_slices(slices: list[_Slice], path: Path, meta: dict[str, Any]) -> Volume:
    """Sort slices along the slice normal, check the geometry and build a canonical RAS :class:`Volume`."""
    _check_one_stack(slices, path)
    first = slices[0]
    row, col = _row_and_column(first, path)
    normal = np.cross(row, col)
    slices = sorted(slices, key=lambda s: float(s.position @ normal))
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row * first.pixel_spacing[1]  # column index c moves along the row direction
    affine_lps[:3, 1] = col * first.pixel_spacing[0]  # row index r moves along the column direction
    affine_lps[:3, 2] = _slice_step(slices, normal, path)
    affine_lps[:3, 3] = slices[0].position
    data = np.stack([s.pixels.T for s in slices], axis=-1)  # (columns, rows, slices) = (c, r, s)
    data = finish_array(data, path)
    data, affine, zooms = _canonical(data, LPS_TO_RAS @ affine_lps)
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
    for keyword, key in (("RepetitionTime", "repetition_time_ms"), ("FlipAngle", "flip_angle_deg")):
        try:
            value = float(ds.get(keyword))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            meta[key] = value  # the T1 sequence, for generators built on the physics baseline
    comments = ds.get("ImageComments")
    if comments:
        meta["image_comments"] = str(comments)
    meta["synthetic"] = (
        "SYNTHETIC" in meta["series_description"].upper() or "SYNTHETIC" in str(comments or "").upper()
    )
    return meta


# --------------------------------------------------------------------------------------------------
# Files and folders
# --------------------------------------------------------------------------------------------------


def read_dicom_file(path: Path) -> Dataset:
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
            expected=ACCEPTED,
        )
    return ds


def _claimed_shape(datasets: list[Dataset]) -> list[int]:
    """Largest rows and columns and the total number of frames the headers claim."""
    rows = max(int(ds.get("Rows", 0) or 0) for ds in datasets)
    cols = max(int(ds.get("Columns", 0) or 0) for ds in datasets)
    frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)
    return [rows, cols, frames]


def _check_claims(datasets: list[Dataset], path: Path, limits: Limits) -> None:
    """Refuse a series whose headers claim more voxels or bytes than ``limits``, before decoding pixels."""
    # the reader decodes every image to float64 (rescale), so that is the memory the claim stands for
    limits.check_image(_claimed_shape(datasets), 8, path, what="the DICOM series")


def _checked(volume: Volume, path: Path, limits: Limits) -> Volume:
    limits.check_spacing(volume.spacing, path)
    return volume


def load_dicom_file(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """One DICOM file (a single image or an enhanced multi-frame volume) as a canonical RAS+ Volume.

    Rows × Columns × NumberOfFrames is checked against ``limits`` before the pixels are decoded.
    """
    ds = read_dicom_file(path)
    _check_claims([ds], path, limits)
    slices = _slices_from_dataset(ds, "the image", path)
    return _checked(_volume_from_slices(slices, path, _dicom_meta(ds, path, len(slices))), path, limits)


_Series = dict[str, list[tuple[Path, Dataset]]]


def _series_summary(uid: str, entries: list[tuple[Path, Dataset]]) -> str:
    description = str(entries[0][1].get("SeriesDescription", "") or "").strip() or "(no description)"
    n_images = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in entries)
    return f"{uid} '{description}' ({n_images} images)"


def _series_in_folder(folder: Path, shown: Path) -> _Series:
    """DICOM images below ``folder`` (hidden entries and DICOMDIR skipped) grouped by SeriesInstanceUID.

    Refuses a folder without any image, telling what was looked at; messages name ``shown``.
    """
    series: _Series = {}
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
        if not has_dicom_magic(file):
            continue
        try:
            ds = pydicom.dcmread(str(file), defer_size="4 KB")
        except Exception:  # unreadable files among the series are reported below if nothing usable remains
            continue
        if not any(tag in ds for tag in _PIXEL_TAGS):
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
        raise VCEInputError(f"no DICOM images found: {detail}", path=shown, expected=ACCEPTED)
    return series


def _choose_series(series: _Series, series_uid: str | None, shown: Path) -> list[tuple[Path, Dataset]]:
    """The series named ``series_uid``, or the only one; otherwise an error listing every series."""
    listing = "; ".join(_series_summary(uid, entries) for uid, entries in sorted(series.items()))
    if series_uid is not None:
        if series_uid not in series:
            raise VCEInputError(
                f"holds no series with SeriesInstanceUID {series_uid}; it holds: {listing}",
                path=shown,
                expected="series_uid= one of the listed SeriesInstanceUIDs",
            )
        return series[series_uid]
    if len(series) > 1:
        raise VCEInputError(
            f"holds {len(series)} DICOM series: {listing}",
            path=shown,
            expected="a folder holding one series, or series_uid= naming one of them",
        )
    return next(iter(series.values()))


def load_dicom_folder(
    folder: Path, series_uid: str | None, shown: Path, limits: Limits = DEFAULT_LIMITS
) -> Volume:
    """Load the single (or the selected) DICOM series below ``folder``; messages name ``shown``.

    The headers' claimed size (all images together) is checked against ``limits`` before any pixel
    data is decoded; the voxel spacing after the volume is built.
    """
    chosen = _choose_series(_series_in_folder(folder, shown), series_uid, shown)
    _check_claims([ds for _, ds in chosen], shown, limits)
    slices: list[_Slice] = []
    for file, ds in chosen:
        slices.extend(_slices_from_dataset(ds, file.relative_to(folder).as_posix(), shown))
    meta = _dicom_meta(chosen[0][1], shown, len(slices))
    return _checked(_volume_from_slices(slices, shown, meta), shown, limits)
