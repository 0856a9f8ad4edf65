"""``.zip`` of a DICOM series: safe extraction (no path traversal, links or zip bombs) and loading."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from vce_core.errors import VCEInputError

from .dicom_read import load_dicom_folder
from .limits import DEFAULT_LIMITS, Limits
from .volume import Volume

#: Default limits applied when extracting a ``.zip`` of a DICOM series (zip-bomb guard); see
#: :class:`vce_core.io.limits.Limits` to change them.
MAX_ZIP_MEMBERS = DEFAULT_LIMITS.max_zip_members
MAX_ZIP_TOTAL_BYTES = DEFAULT_LIMITS.max_zip_total_bytes
MAX_ZIP_RATIO = DEFAULT_LIMITS.max_zip_ratio


def _check_archive_size(members: list[zipfile.ZipInfo], path: Path, limits: Limits) -> None:
    """Refuse too many files, too many bytes declared, or an archive that expands too much as a whole."""
    if len(members) > limits.max_zip_members:
        raise VCEInputError(
            f"the archive holds {len(members)} files",
            path=path,
            expected=f"at most {limits.max_zip_members} files",
        )
    declared = sum(m.file_size for m in members)
    if declared > limits.max_zip_total_bytes:
        raise VCEInputError(
            f"the archive would expand to {declared / 1024**2:.0f} MiB",
            path=path,
            expected=f"at most {limits.max_zip_total_bytes / 1024**2:.0f} MiB uncompressed",
        )
    packed = max(sum(m.compress_size for m in members), 1)
    if declared > limits.max_zip_ratio * packed:
        raise VCEInputError(
            f"the archive expands {declared / packed:.0f} times (a zip bomb?)",
            path=path,
            expected=f"a compression ratio below {limits.max_zip_ratio:.0f}",
        )


def _member_destination(member: zipfile.ZipInfo, target: Path, path: Path, limits: Limits) -> Path:
    """Where ``member`` goes below ``target``; refuses absolute or ``..`` names, links and zip bombs."""
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
    if member.file_size > limits.max_zip_ratio * max(member.compress_size, 1):
        raise VCEInputError(
            f"the archive member '{member.filename}' expands "
            f"{member.file_size / max(member.compress_size, 1):.0f}"
            " times (a zip bomb?)",
            path=path,
            expected=f"a compression ratio below {limits.max_zip_ratio:.0f}",
        )
    destination = target.joinpath(*parts)
    if not destination.resolve().is_relative_to(target.resolve()):
        raise VCEInputError(
            f"the archive member '{member.filename}' points outside the archive folder", path=path
        )
    return destination


def _copy_member(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    destination: Path,
    written: int,
    path: Path,
    limits: Limits,
) -> int:
    """Copy ``member`` to ``destination`` in chunks, never beyond its declared size or the archive limit.

    ``written`` is the number of bytes extracted so far from the archive; returns the new total.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(member) as src, open(destination, "wb") as dst:
            remaining = member.file_size
            while chunk := src.read(1024 * 1024):
                written += len(chunk)
                remaining -= len(chunk)
                if remaining < 0 or written > limits.max_zip_total_bytes:
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
    return written


def _extract_zip(path: Path, target: Path, limits: Limits) -> None:
    """Extract ``path`` into ``target``, refusing path traversal, links and zip bombs.

    Every member is checked before anything is written (names, links, per-member ratio), the archive as
    a whole (count, declared size, overall ratio), and the bytes actually extracted never exceed a
    member's declared size nor the archive limit.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VCEInputError(
            f"is not a readable zip archive ({exc})", path=path, expected="a valid .zip file"
        ) from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        _check_archive_size(members, path, limits)
        destinations = [_member_destination(m, target, path, limits) for m in members]
        written = 0
        for member, destination in zip(members, destinations, strict=True):
            written = _copy_member(archive, member, destination, written, path, limits)


def load_zip(path: Path, series_uid: str | None, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """The DICOM series in the ``.zip`` at ``path`` (extracted into a temporary folder, then removed)."""
    with tempfile.TemporaryDirectory(prefix="vce-zip-") as tmp:
        target = Path(tmp)
        _extract_zip(path, target, limits)
        volume = load_dicom_folder(target, series_uid, path, limits)
    return volume
