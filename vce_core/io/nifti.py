"""NIfTI-1/-2 reading (reoriented to canonical RAS+) and NIfTI-1 writing (float32 or int16)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from os import PathLike
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vce_core.errors import VCEInputError

from .limits import DEFAULT_LIMITS, Limits
from .volume import Volume, check_volume, finish_array, is_nifti_name

_HEADER_SIZES = {348: "NIfTI-1", 540: "NIfTI-2"}
#: Voxel types :func:`save_nifti` writes: float32, or integers with a slope/intercept fitted to the data.
NIFTI_EXPORT_DTYPES = ("float32", "float64", "int16", "uint16", "int32", "uint32", "int8", "uint8")
_CHUNK = 1024 * 1024


def _open_raw(path: Path):  # noqa: ANN202 - a binary file object
    """The file's bytes as stored in the NIfTI format (decompressed on the fly for ``.gz``)."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _check_sizeof_hdr(path: Path) -> None:
    """Refuse a file whose first field (``sizeof_hdr``) is neither 348 (NIfTI-1) nor 540 (NIfTI-2)."""
    try:
        with _open_raw(path) as fh:
            head = fh.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        raise VCEInputError(
            f"cannot be read as NIfTI ({exc})", path=path, expected="a valid .nii or .nii.gz file"
        ) from exc
    if len(head) < 4:
        raise VCEInputError(
            "is too short to hold a NIfTI header", path=path, expected="a valid .nii or .nii.gz file"
        )
    little, big = struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]
    if little not in _HEADER_SIZES and big not in _HEADER_SIZES:
        raise VCEInputError(
            f"the header is corrupt: sizeof_hdr is {little}",
            path=path,
            expected="a NIfTI header (sizeof_hdr 348 for NIfTI-1 or 540 for NIfTI-2)",
        )


def _check_data_type(image: nib.Nifti1Image | nib.Nifti2Image, path: Path) -> np.dtype:
    """The stored voxel type, refusing complex and RGB data (no imaginary part is silently dropped)."""
    dtype = image.header.get_data_dtype()
    if dtype.kind == "c":
        raise VCEInputError(
            f"holds complex voxels ({dtype}); taking the real part would silently change the image",
            path=path,
            expected="real-valued voxels (a magnitude image)",
        )
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise VCEInputError(
            f"holds voxels of type {dtype} (RGB or another compound type)",
            path=path,
            expected="greyscale voxels (integers or floating point)",
        )
    return dtype


def _check_complete(image: nib.Nifti1Image | nib.Nifti2Image, path: Path, dtype: np.dtype) -> None:
    """Refuse a voxel block shorter than the header says; read in chunks, nothing is kept."""
    needed = int(image.header.get_data_offset()) + math.prod(image.shape) * dtype.itemsize
    if not path.name.lower().endswith(".gz"):
        if path.stat().st_size >= needed:
            return
        have = path.stat().st_size
    else:
        have = 0
        try:
            with gzip.open(path, "rb") as fh:
                while have < needed and (chunk := fh.read(min(_CHUNK, needed - have))):
                    have += len(chunk)
        except (OSError, EOFError, zlib.error):
            pass  # a corrupt stream counts as ending here
        if have >= needed:
            return
    raise VCEInputError(
        f"the voxel data is truncated ({have:,} of {needed:,} bytes); the file may be truncated or corrupt",
        path=path,
        expected="a complete .nii or .nii.gz file",
    )


def _check_nifti_header(image: nib.Nifti1Image | nib.Nifti2Image, path: Path) -> None:
    """Refuse 2-D, 4-D (beyond a singleton fourth axis) and empty arrays and an unusable affine."""
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
            "not a single volume",
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


def _description(image: nib.Nifti1Image | nib.Nifti2Image) -> str:
    """The header's ``descrip`` field as text ("" when absent)."""
    descrip = image.header.get("descrip")
    if descrip is None:
        return ""
    return bytes(np.asarray(descrip).item()).split(b"\x00")[0].decode("latin-1").strip()


def load_nifti(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """Read a NIfTI file as a canonical RAS+ float32 :class:`Volume` (see :func:`vce_core.io.load_volume`).

    Before any voxel array is allocated: ``sizeof_hdr`` must be 348 or 540, the data type real and
    greyscale, the claimed size within ``limits`` (voxels and decoded bytes), the voxel sizes plausible,
    and the voxel block complete (read in chunks; nothing is kept).
    """
    _check_sizeof_hdr(path)
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
    _check_nifti_header(image, path)
    dtype = _check_data_type(image, path)
    limits.check_image(image.shape, dtype.itemsize, path)
    limits.check_spacing(image.header.get_zooms()[:3], path)
    limits.check_spacing(np.linalg.norm(np.asarray(image.affine)[:3, :3], axis=0), path)
    _check_complete(image, path, dtype)
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
    data = finish_array(data.reshape(data.shape[:3]), path)
    # float32 header zooms, written back as the shortest decimal that rounds to them (0.9, not 0.8999999761)
    zooms = tuple(float(str(np.float32(z))) for z in canonical.header.get_zooms()[:3])
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise VCEInputError(
            f"the voxel sizes {zooms} are not positive", path=path, expected="positive voxel sizes (mm)"
        )
    meta: dict[str, Any] = {
        "format": "nifti2" if isinstance(image, nib.Nifti2Image) else "nifti1",
        "source_path": str(path),
        "series_description": _description(image),
    }
    return Volume(data=data, affine=np.array(canonical.affine, dtype=np.float64), spacing=zooms, meta=meta)  # type: ignore[arg-type]


def _fits_exactly(data: np.ndarray, dtype: np.dtype) -> bool:
    """True when every voxel is an integer within ``dtype``'s range (label maps, masks, integer scans)."""
    info = np.iinfo(dtype)
    if data.size == 0 or data.min() < info.min or data.max() > info.max:
        return False
    return bool(np.array_equal(data, np.round(data)))


def _nifti_image(data: np.ndarray, affine: np.ndarray, dtype: str) -> nib.Nifti1Image:
    """NIfTI-1 image in mm with the affine as sform and qform (code 1); integer data stored exactly."""
    target = np.dtype(dtype)
    exact = target.kind in "iu" and _fits_exactly(data, target)
    image = nib.Nifti1Image(data.astype(target) if exact else data, affine)
    image.header.set_xyzt_units("mm")
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if exact:
        # integer-valued data: stored as it is (slope 1, intercept 0), so it reloads exactly
        image.header.set_slope_inter(1.0, 0.0)
    else:
        image.set_data_dtype(target)
    return image


def save_nifti(volume: Volume, path: str | PathLike, *, dtype: str = "float32") -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``, compressed when the name ends in ``.gz``).

    The affine is stored as both sform and qform (code 1, scanner). ``dtype`` is one of
    :data:`NIFTI_EXPORT_DTYPES`: floating types store the voxels exactly; integer types (e.g. the type of
    the scan a volume was made from) store them with ``scl_slope``/``scl_inter`` chosen by nibabel from the
    data range (error at most half a slope), and integer-valued volumes that fit the type (labels, masks)
    with slope 1 and intercept 0, so they reload exactly. The file is written to a temporary name in the
    same folder and renamed into place, so a failure leaves no partial file. Returns the path written.
    """
    path = Path(path)
    if not is_nifti_name(path):
        raise VCEInputError(
            f"the file name has the unsupported extension '{''.join(path.suffixes) or '(none)'}'",
            path=path,
            expected="a name ending in .nii or .nii.gz",
        )
    if dtype not in NIFTI_EXPORT_DTYPES:
        raise VCEInputError(
            f"dtype '{dtype}' is not supported",
            path=path,
            expected=f"one of {', '.join(NIFTI_EXPORT_DTYPES)}",
        )
    data, affine = check_volume(volume, path)
    if path.is_dir():
        raise VCEInputError("is an existing folder", path=path, expected="a file name")
    image = _nifti_image(data, affine, dtype)
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
