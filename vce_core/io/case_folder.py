"""Case folders: ``case.json`` + NIfTI files (read and written) and BraTS-style folders (read).

The manifest's schema is in ``docs/case-format.md``. Field strength and doses follow
:mod:`vce_core.domain`: field strength in tesla in (0, 12], acquired low doses as fractions of the
standard dose in (0, 1].
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from vce_core.domain import check_dose, check_field_strength
from vce_core.errors import VCEInputError

from .load import load_volume
from .nifti import save_nifti
from .volume import (
    Case,
    Volume,
    check_for_file,
    check_same_grid,
    check_volume,
    folder_replaced_on_success,
    is_nifti_name,
)

CASE_FORMAT = "vce-case"
CASE_VERSION = 1
CASE_FILE = "case.json"

_AGENT_UNKNOWN = "unknown"
_NATIVE_FILE = "native.nii.gz"
_STANDARD_DOSE_FILE = "standard_dose.nii.gz"
_EXTRA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: BraTS naming: (role, suffixes) — 2018-2021 style (``_t1ce``) and 2023 style (``-t1c``).
_BRATS_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("native", ("_t1", "-t1n")),
    ("standard_dose", ("_t1ce", "-t1c")),
    ("t2", ("_t2", "-t2w")),
    ("flair", ("_flair", "-t2f")),
    ("labels", ("_seg", "-seg")),
)


def _brats_files(folder: Path) -> dict[str, list[Path]]:
    """NIfTI files of ``folder`` by BraTS role: native, standard_dose, t2, flair, labels."""
    found: dict[str, list[Path]] = {}
    for file in sorted(folder.iterdir()):
        if not file.is_file() or not is_nifti_name(file):
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


def _load_on_native_grid(files: list[tuple[str, Path]], folder: Path) -> dict[str, Volume]:
    """Load ``files`` (key, path), the first one native; every other volume must share its grid."""
    (native_key, native_file), *others = files
    volumes = {native_key: load_volume(native_file)}
    for key, file in others:
        volumes[key] = load_volume(file)
        check_same_grid(volumes[native_key], native_file.name, volumes[key], file.name, folder)
    return volumes


# --------------------------------------------------------------------------------------------------
# Reading case.json
# --------------------------------------------------------------------------------------------------


def _read_manifest(manifest: Path) -> dict[str, Any]:
    """The parsed case.json: a JSON object of this format and version holding the required keys."""
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
    return spec


def _manifest_number(
    check: Callable[..., float], value: Any, manifest: Path, name: str, **kwargs: Any
) -> float:
    """``value`` from case.json checked by a :mod:`vce_core.domain` rule; numbers written as text are
    refused, since the manifest stores them as JSON numbers."""
    if isinstance(value, str):
        raise VCEInputError(f"{name} is the text {value!r}", path=manifest, expected="a JSON number")
    return check_for_file(check, value, manifest, name=name, **kwargs)


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


def _manifest_low_doses(
    folder: Path, manifest: Path, low_specs: list[Any]
) -> tuple[list[float], list[tuple[str, Path]]]:
    """The acquired doses of ``low_specs`` (each in (0, 1], listed once) and their files."""
    doses: list[float] = []
    files: list[tuple[str, Path]] = []
    for n, item in enumerate(low_specs):
        if not isinstance(item, dict) or "dose" not in item or "file" not in item:
            raise VCEInputError(
                f"low_doses[{n}] is {item!r}", path=manifest, expected='{"dose": fraction, "file": name}'
            )
        dose = _manifest_number(check_dose, item["dose"], manifest, f"low_doses[{n}].dose", positive=True)
        if any(math.isclose(dose, d, abs_tol=1e-9) for d in doses):
            raise VCEInputError(
                f"the dose {item['dose']} is listed twice in low_doses",
                path=manifest,
                expected="distinct doses",
            )
        doses.append(dose)
        files.append(
            (f"low_doses[{n}]", _manifest_file(folder, manifest, item["file"], f"low_doses[{n}].file"))
        )
    return doses, files


def _load_manifest_case(folder: Path, manifest: Path) -> Case:
    spec = _read_manifest(manifest)
    field_strength = _manifest_number(
        check_field_strength, spec["field_strength"], manifest, "'field_strength'"
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

    files = [
        ("native", _manifest_file(folder, manifest, spec["native"], "native")),
        ("standard_dose", _manifest_file(folder, manifest, spec["standard_dose"], "standard_dose")),
    ]
    doses, low_dose_files = _manifest_low_doses(folder, manifest, low_specs)
    files += low_dose_files
    for name, file_name in extra_specs.items():
        files.append((f"extra.{name}", _manifest_file(folder, manifest, file_name, f"extra.{name}")))

    volumes = _load_on_native_grid(files, folder)
    return Case(
        native=volumes["native"],
        standard_dose=volumes["standard_dose"],
        low_doses={d: volumes[f"low_doses[{n}]"] for n, d in enumerate(doses)},
        field_strength=field_strength,
        agent=agent.strip(),
        extra={name: volumes[f"extra.{name}"] for name in extra_specs},
        meta={**meta, "case_id": str(spec.get("case_id") or folder.name), "source_path": str(folder)},
    )


# --------------------------------------------------------------------------------------------------
# Reading a BraTS folder
# --------------------------------------------------------------------------------------------------


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
    files = [("native", found["native"][0])]
    files += [(role, role_files[0]) for role, role_files in found.items() if role != "native"]
    volumes = _load_on_native_grid(files, folder)
    native = volumes.pop("native")
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
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise VCEInputError(problem, path=folder, expected="a case folder with case.json or BraTS files")
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


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

_Entry = tuple[str, str, Volume]
"""(what, for messages; file name in the case folder; volume)."""


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


def _case_files(case: Case, folder: Path) -> tuple[list[_Entry], list[dict[str, Any]], dict[str, str]]:
    """Every volume of ``case`` with its file name; the manifest's ``low_doses`` list and ``extra`` map.

    Low doses must lie in (0, 1]; extra names must be usable as file names; no two volumes share a file.
    """
    entries: list[_Entry] = [
        ("native", _NATIVE_FILE, case.native),
        ("standard_dose", _STANDARD_DOSE_FILE, case.standard_dose),
    ]
    names_used = {_NATIVE_FILE, _STANDARD_DOSE_FILE, CASE_FILE}
    checked = [
        (check_for_file(check_dose, dose, folder, name="low dose", positive=True), volume)
        for dose, volume in case.low_doses.items()
    ]
    low_doses: list[dict[str, Any]] = []
    for dose, volume in sorted(checked, key=lambda item: item[0]):
        name = _dose_file_name(dose)
        if name in names_used:
            raise VCEInputError(
                f"the low doses collide on the file name {name}", path=folder, expected="distinct doses"
            )
        names_used.add(name)
        entries.append((f"low dose {dose}", name, volume))
        low_doses.append({"dose": dose, "file": name})
    extra: dict[str, str] = {}
    for key, volume in case.extra.items():
        if not isinstance(key, str) or not _EXTRA_NAME.fullmatch(key):
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
        entries.append((f"extra '{key}'", name, volume))
    return entries, low_doses, extra


def _manifest_text(spec: dict[str, Any], folder: Path) -> str:
    """``spec`` as indented JSON; metadata that JSON cannot hold is refused."""
    try:
        return json.dumps(spec, indent=2, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VCEInputError(
            f"case.meta cannot be written as JSON ({exc})",
            path=folder,
            expected="JSON-serialisable metadata (numbers, strings, lists, dicts)",
        ) from exc


def _check_replaceable(folder: Path, case_id: str, overwrite: bool) -> None:
    """``folder`` may be written: absent, empty, or a case folder holding ``case_id`` (any case with
    ``overwrite``); a non-empty folder without case.json never."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise VCEInputError("exists and is not a folder", path=folder, expected="a case folder")
    if not any(folder.iterdir()):
        return
    existing = folder / CASE_FILE
    if not existing.is_file():
        raise VCEInputError(
            "is a non-empty folder without case.json; refusing to replace it",
            path=folder,
            expected="a new, empty or existing case folder",
        )
    if overwrite:
        return
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
    folder without case.json is never replaced. Field strength must lie in (0, 12] T and low doses in
    (0, 1] (:mod:`vce_core.domain`).
    """
    folder = Path(folder)
    if not isinstance(case, Case):
        raise VCEInputError(f"got a {type(case).__name__}", path=folder, expected="a vce_core.io.Case")
    if dtype not in ("float32", "int16"):
        raise VCEInputError(f"dtype '{dtype}' is not supported", path=folder, expected="'float32' or 'int16'")
    field_strength = check_for_file(check_field_strength, case.field_strength, folder, name="field_strength")
    if not isinstance(case.agent, str) or not case.agent.strip():
        raise VCEInputError(f"agent is {case.agent!r}", path=folder, expected="a contrast agent name")
    case_id = str(case.meta.get("case_id") or folder.name)
    entries, low_doses, extra = _case_files(case, folder)
    for what, _, volume in entries:
        check_volume(volume, folder, what)
    for _, name, volume in entries[1:]:
        check_same_grid(case.native, _NATIVE_FILE, volume, name, folder)
    text = _manifest_text(
        {
            "format": CASE_FORMAT,
            "version": CASE_VERSION,
            "case_id": case_id,
            "field_strength": field_strength,
            "agent": case.agent.strip(),
            "native": _NATIVE_FILE,
            "standard_dose": _STANDARD_DOSE_FILE,
            "low_doses": low_doses,
            "extra": extra,
            "meta": {k: v for k, v in case.meta.items() if k not in ("case_id", "source_path")},
        },
        folder,
    )
    _check_replaceable(folder, case_id, overwrite)
    with folder_replaced_on_success(folder) as tmp:
        for _, name, volume in entries:
            save_nifti(volume, tmp / name, dtype=dtype)
        (tmp / CASE_FILE).write_text(text + "\n", encoding="utf-8")
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
