"""``.zip`` of a DICOM series: safe extraction (no path traversal, links or zip bombs) and loading."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from vce_core.errors import VCEInputError

from .dicom_read import load_dicom_folder
from .volume import Volume

#: Limits applied when extracting a ``.zip`` of a DICOM series (zip-bomb guard).
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3
MAX_ZIP_RATIO = 200.0
#: Below this uncompressed size a member's compression ratio is not checked (tiny files compress well).
ZIP_RATIO_MIN_BYTES = 1024**2


def _check_archive_size(members: list[zipfile.ZipInfo], path: Path) -> None:
    """Refuse more than :data:`MAX_ZIP_MEMBERS` files or more than :data:`MAX_ZIP_TOTAL_BYTES` declared."""
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


def _member_destination(member: zipfile.ZipInfo, target: Path, path: Path) -> Path:
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
    return destination


def _copy_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, written: int, path: Path
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
    return written


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
        _check_archive_size(members, path)
        written = 0
        for member in members:
            destination = _member_destination(member, target, path)
            written = _copy_member(archive, member, destination, written, path)


def load_zip(path: Path, series_uid: str | None) -> Volume:
    """The DICOM series in the ``.zip`` at ``path`` (extracted into a temporary folder, then removed)."""
    with tempfile.TemporaryDirectory(prefix="vce-zip-") as tmp:
        target = Path(tmp)
        _extract_zip(path, target)
        volume = load_dicom_folder(target, series_uid, path)
    return volume
