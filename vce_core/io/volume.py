""":class:`Volume` and :class:`Case`, grid checks and the small helpers the readers and writers share.

Names without a leading underscore here are used by the sibling modules of :mod:`vce_core.io`; the
package's public API is what ``vce_core/io/__init__.py`` exports.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError

#: Grid tolerance: two volumes share a grid when shapes are equal and affines agree within this (mm).
GRID_ATOL_MM = 1e-3

#: DICOM's patient coordinates (LPS) ↔ NIfTI's world coordinates (RAS): flip x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: What :func:`vce_core.io.load_volume` accepts, for error messages.
ACCEPTED = (
    "a NIfTI file (.nii or .nii.gz), a DICOM file (.dcm), a folder holding one DICOM series or a .zip of one"
)


@dataclass
class Volume:
    """A 3-D image on a grid.

    Attributes
    ----------
    data: float32 array of shape (I, J, K), indexed in RAS+ order (see :mod:`vce_core.io`).
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
    field_strength: main field in tesla, in (0, 12] (1.5 or 3.0 typically).
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
# Values and names
# --------------------------------------------------------------------------------------------------


def is_real(value: Any) -> bool:
    """A finite real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and math.isfinite(value)


def check_for_file(check: Callable[..., float], value: Any, path: Path, **kwargs: Any) -> float:
    """``check(value, **kwargs)``, a :mod:`vce_core.domain` rule, with its error naming ``path``."""
    try:
        return check(value, **kwargs)
    except VCEInputError as exc:
        raise VCEInputError(exc.problem, path=path, expected=exc.expected) from exc


def is_nifti_name(path: Path) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def has_dicom_magic(path: Path) -> bool:
    """True when the file holds the ``DICM`` marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Arrays, affines and grids
# --------------------------------------------------------------------------------------------------


def _check_3d(data: np.ndarray, path: Path | None, what: str) -> None:
    """Refuse an array that is not 3-D or has a zero-sized dimension; messages call it ``what``."""
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
            expected="a 3-D volume with at least one voxel along each axis",
        )


def finish_array(data: np.ndarray, path: Path) -> np.ndarray:
    """Check a reoriented 3-D array: no zero-sized dimension, only finite values; return it as float32."""
    _check_3d(data, path, "the image")
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


def check_volume(volume: Any, path: Path | None, what: str = "the volume") -> tuple[np.ndarray, np.ndarray]:
    """Validate a :class:`Volume` before writing it; return (float32 data, float64 affine)."""
    if not isinstance(volume, Volume):
        raise VCEInputError(
            f"{what} is a {type(volume).__name__}", path=path, expected="a vce_core.io.Volume"
        )
    data = np.asarray(volume.data)
    _check_3d(data, path, what)
    if data.dtype.kind not in "biuf":
        raise VCEInputError(f"{what} has data type {data.dtype}", path=path, expected="real-valued voxels")
    data = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise VCEInputError(
            f"{what} holds NaN or infinite voxels", path=path, expected="finite voxel values only"
        )
    return data, _check_affine(volume.affine, path)


def check_same_grid(reference: Volume, ref_name: str, other: Volume, other_name: str, folder: Path) -> None:
    """Refuse ``other`` unless it lies on ``reference``'s grid; the message describes both grids."""
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


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


@contextmanager
def folder_replaced_on_success(folder: Path) -> Iterator[Path]:
    """Yield a new temporary sibling of ``folder`` to write into; it replaces ``folder`` on success.

    On any failure the temporary folder is removed and an existing ``folder`` is left as it was; the
    caller decides beforehand whether ``folder`` may be replaced.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    backup: Path | None = None
    try:
        yield tmp
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
