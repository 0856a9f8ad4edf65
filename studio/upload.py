"""Upload & synthesize: per-session upload folders, validation of uploaded volumes, whole-volume export.

Uploaded files live in ``<data dir>/uploads/<session hash>/`` only while the browser session needs them:
the folder is deleted when the session ends (``demo.unload``) and every leftover folder is deleted when
the app starts (sessions do not survive a restart).

:func:`synthesize_upload` is the whole "Synthesize" action: synthesis at every requested dose, export,
preview slices and, when an acquired low dose was uploaded, its metrics against the synthesis. No Gradio
here: the Upload tab (:mod:`studio.upload_tab`) only wires these functions to its components.
"""

from __future__ import annotations

import re
import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.domain import check_field_strength, dose_from_percent, format_dose
from vce_core.errors import VCEInputError

UPLOADS = "uploads"
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
Progress = Callable[[float, str], None]
"""``progress(fraction done in [0, 1], what is being done)``."""

_ROLES = {
    "native": "native image",
    "standard_dose": "standard-dose image",
    "low_dose": "acquired low-dose image",
}


class UploadArea:
    """The ``uploads`` folder of a data directory, one sub-folder per browser session."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir) / UPLOADS
        self._lock = threading.Lock()
        self._sources: dict[str, set[Path]] = {}

    def clear_stale(self) -> int:
        """Delete every session folder left by an earlier run; return how many were removed."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for child in self.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
            else:
                child.unlink(missing_ok=True)
        return removed

    def session_dir(self, session_hash: str | None) -> Path:
        """The (created) folder of one session."""
        if not session_hash or not _SESSION_RE.match(session_hash):
            raise VCEInputError("this browser session has no valid id", expected="a page opened in a browser")
        folder = self.root / session_hash
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def ingest(self, session_hash: str | None, upload: str | Path | None, role: str) -> Path | None:
        """Copy an uploaded file into the session folder as ``<role>-<original name>``; None if no file.

        The path of Gradio's temporary copy is remembered so that :meth:`end_session` deletes it too.
        """
        if upload is None or str(upload) == "":
            return None
        source = Path(upload)
        if not source.is_file():
            raise VCEInputError(
                f"the uploaded {_ROLES.get(role, role)} is no longer available",
                path=source.name,
                expected="the file uploaded again",
            )
        target = self.session_dir(session_hash) / f"{role}-{source.name}"
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
        with self._lock:
            self._sources.setdefault(str(session_hash), set()).add(source)
        return target

    def end_session(self, session_hash: str | None) -> None:
        """Delete the session's folder and Gradio's temporary copies of its uploads."""
        if not session_hash or not _SESSION_RE.match(session_hash):
            return
        shutil.rmtree(self.root / session_hash, ignore_errors=True)
        with self._lock:
            sources = self._sources.pop(session_hash, set())
        for source in sources:
            source.unlink(missing_ok=True)
            try:
                source.parent.rmdir()
            except OSError:
                pass


def _read(path: Path, role: str) -> Any:
    """``load_volume`` with every failure turned into a :class:`VCEInputError` that names the role."""
    from vce_core.io import load_volume

    label = _ROLES[role]
    shown = path.name.split("-", 1)[-1]
    try:
        volume = load_volume(path)
    except VCEInputError as exc:
        message = str(exc).replace(str(path), shown)
        raise VCEInputError(f"the {label} could not be used: {message}") from exc
    except Exception as exc:  # a reader library failing in a way io did not anticipate
        raise VCEInputError(
            f"the {label} ({shown}) could not be read ({type(exc).__name__})",
            expected="a NIfTI file (.nii or .nii.gz), a DICOM file or a .zip of one DICOM series",
        ) from exc
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise VCEInputError(f"the {label} ({shown}) has {data.ndim} dimensions", expected="a 3-D volume")
    if not np.all(np.isfinite(data)):
        raise VCEInputError(
            f"the {label} ({shown}) holds NaN or infinite values", expected="finite intensities"
        )
    if float(data.max()) <= float(data.min()):
        raise VCEInputError(
            f"the {label} ({shown}) is constant (every voxel {float(data.min()):g})", expected="an MR image"
        )
    if min(data.shape) < 8:
        raise VCEInputError(
            f"the {label} ({shown}) is only {data.shape} voxels", expected="at least 8 voxels per axis"
        )
    return volume


@dataclass
class UploadedCase:
    """Validated uploads: native, standard dose and an optional acquired low dose on one grid.

    ``low_dose_fraction`` is the acquired low dose as a fraction of the standard dose; ``field_strength``
    is in tesla.
    """

    native: Any
    standard_dose: Any
    low_dose: Any | None
    low_dose_fraction: float | None
    field_strength: float

    def describe(self) -> str:
        """One-paragraph Markdown summary (shape, spacing, doses)."""
        sp = " × ".join(f"{s:.3g}" for s in self.native.spacing)
        shape = " × ".join(map(str, self.native.shape))
        text = f"**Ready:** {shape} voxels of {sp} mm, {self.field_strength:g} T."
        if self.low_dose is not None and self.low_dose_fraction is not None:
            text += (
                f" The acquired low dose ({format_dose(self.low_dose_fraction)}) will be compared with the "
                "synthesis."
            )
        return text


def validate_uploads(
    native: Path | None,
    standard_dose: Path | None,
    low_dose: Path | None,
    low_dose_pct: float | None,
    field_strength: float | None,
) -> UploadedCase:
    """Read and check the uploaded volumes; every problem is a :class:`VCEInputError` in plain words.

    ``low_dose_pct`` is the acquired low dose in percent of the standard dose as typed by the user (needed
    when ``low_dose`` is given); ``field_strength`` is in tesla.
    """
    if native is None:
        raise VCEInputError(
            "no native (pre-contrast) image was uploaded", expected="a NIfTI file or a zipped DICOM series"
        )
    if standard_dose is None:
        raise VCEInputError(
            "no standard-dose image was uploaded", expected="a NIfTI file or a zipped DICOM series"
        )
    field = check_field_strength(field_strength, name="the field strength")
    na = _read(native, "native")
    sd = _read(standard_dose, "standard_dose")
    _check_grid(na, sd, "standard-dose image")
    ld = None
    fraction = None
    if low_dose is not None:
        fraction = dose_from_percent(
            low_dose_pct, name="the dose of the acquired low-dose image", positive=True
        )
        ld = _read(low_dose, "low_dose")
        _check_grid(na, ld, "acquired low-dose image")
    return UploadedCase(na, sd, ld, fraction, field)


def _check_grid(native: Any, other: Any, name: str) -> None:
    if native.same_grid(other):
        return

    def describe(v: Any) -> str:
        return f"{' × '.join(map(str, v.shape))} voxels of {' × '.join(f'{s:.3g}' for s in v.spacing)} mm"

    raise VCEInputError(
        f"the native image ({describe(native)}) and the {name} ({describe(other)}) are not on the same grid",
        expected="co-registered volumes with the same size, voxel spacing and position (resample first)",
    )


def synthesize_volumes(
    synth: Any,
    uploaded: UploadedCase,
    doses: list[float],
    progress: Progress | None = None,
) -> dict[float, Any]:
    """Synthesize the whole volume at every dose (fraction); returns ``{dose: Volume}`` on the native grid."""
    from vce_core.io import Volume

    out: dict[float, Any] = {}
    for n, dose in enumerate(doses):

        def relay(done: int, total: int, _n: int = n, _dose: float = dose) -> None:
            if progress:
                frac = done / max(total, 1)
                progress((_n + frac) / len(doses), f"synthesizing {format_dose(_dose)} dose")

        if progress:
            progress(n / len(doses), f"synthesizing {format_dose(dose)} dose")
        data = synth.synthesize(
            uploaded.native, uploaded.standard_dose, dose, uploaded.field_strength, seed=0, progress=relay
        )
        out[dose] = Volume(
            data=np.asarray(data, dtype=np.float32),
            affine=np.asarray(uploaded.native.affine, dtype=np.float64).copy(),
            spacing=tuple(uploaded.native.spacing),
            meta={"series_description": f"SYNTHETIC {dose * 100:.3g}% dose", "synthetic": True},
        )
    return out


def export(
    volumes: dict[float, Any], out_dir: Path, fmt: str, *, model_name: str, reference: Path | None = None
) -> Path:
    """Write synthetic volumes as NIfTI (one ``.nii.gz``, or a zip of several) or a zip of DICOM series.

    DICOM series are marked synthetic (SeriesDescription ``SYNTHETIC …``, ImageComments); when the native
    was a DICOM upload it is used as ``reference`` so the series join the same study.
    """
    from vce_core.io import save_dicom_series, save_nifti

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("synthetic*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name)[:40]
    if fmt == "NIfTI":
        files = []
        for dose, volume in volumes.items():
            path = out_dir / f"synthetic_{tag}_{dose * 100:g}pct.nii.gz"
            save_nifti(volume, path)
            files.append(path)
        if len(files) == 1:
            return files[0]
        archive = out_dir / f"synthetic_{tag}_nifti.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in files:
                zf.write(path, path.name)
        return archive
    if fmt == "DICOM":
        archive = out_dir / f"synthetic_{tag}_dicom.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for n, (dose, volume) in enumerate(volumes.items()):
                series_dir = out_dir / f"synthetic_series_{dose * 100:g}pct"
                files = save_dicom_series(
                    volume,
                    series_dir,
                    series_description=f"SYNTHETIC {dose * 100:.3g}% dose ({model_name})"[:64],
                    synthetic=True,
                    reference=reference,
                    model_name=model_name,
                    dose=dose,
                    series_number=900 + n,
                )
                for file in files:
                    zf.write(file, f"{series_dir.name}/{file.name}")
        return archive
    raise VCEInputError(f"unknown export format {fmt!r}", expected="NIfTI or DICOM")


def dicom_reference(native_upload: Path) -> Path | None:
    """The uploaded native file when it is DICOM (a .dcm or a .zip of a series), else None."""
    name = native_upload.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return None
    if name.endswith(".zip"):
        target = native_upload.parent / "native-dicom-reference"
        reference = target / "reference.dcm"
        if not reference.is_file():
            with zipfile.ZipFile(native_upload) as zf:
                for member in zf.infolist():
                    if member.is_dir() or member.file_size > 64 * 1024**2:
                        continue
                    with zf.open(member) as fh:
                        head = fh.read(132)
                    if head[128:132] == b"DICM":
                        target.mkdir(exist_ok=True)
                        reference.write_bytes(zf.read(member))
                        break
                else:
                    return None
        return target
    return native_upload


@dataclass
class UploadResult:
    """What the "Synthesize" action shows: a Markdown report, preview slices and the export to download.

    ``preview_native`` and ``preview_synthetic`` are ``uint8`` display images of axial slice
    ``preview_index`` (0-based) of the native and of the synthesis at ``preview_dose`` (fraction).
    """

    report: str
    preview_native: np.ndarray
    preview_synthetic: np.ndarray
    preview_index: int
    preview_dose: float
    archive: Path


def preview_slices(uploaded: UploadedCase, synthetic: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Middle axial slice of the native and of a synthetic volume, square pixels, one window.

    The window is the standard dose's "Auto (percentile)" preset. Returns ``(native, synthetic, index)``
    with ``uint8`` images in display orientation (:mod:`vce_core.display`).
    """
    from vce_core.display import apply_window, display_slice, window_presets

    sd = uploaded.standard_dose.data
    index = sd.shape[2] // 2
    window = window_presets(sd)["Auto (percentile)"]
    spacing = tuple(uploaded.native.spacing)
    native = apply_window(display_slice(uploaded.native.data, "axial", index, spacing), window)
    syn = apply_window(display_slice(synthetic.data, "axial", index, spacing), window)
    return native, syn, index


def compare_with_acquired(uploaded: UploadedCase, synthetic: Any) -> str:
    """Markdown metric table of a synthetic volume vs the uploaded acquired low dose, whole brain.

    Brain and CE masks come from :mod:`vce_core.preprocess`; PSNR/SSIM use the 0.1–99.9 percentile range
    of the standard dose inside the brain.
    """
    from studio.figures import metric_table
    from vce_core.preprocess import brain_mask, ce_mask

    assert uploaded.low_dose is not None and uploaded.low_dose_fraction is not None
    sd = uploaded.standard_dose.data
    brain = brain_mask(sd)
    ce = ce_mask(uploaded.native.data, sd, mask=brain)
    inside = sd[brain]
    data_range = float(np.percentile(inside, 99.9) - np.percentile(inside, 0.1))
    table = metric_table(
        [("Synthetic", synthetic.data)], uploaded.low_dose.data, brain, ce, max(data_range, 1e-6)
    )
    return (
        f"**Synthetic vs your acquired {format_dose(uploaded.low_dose_fraction)} dose** "
        f"(whole volume)\n\n{table}"
    )


def synthesize_upload(
    synth: Any,
    uploaded: UploadedCase,
    doses: list[float],
    out_dir: Path,
    fmt: str,
    *,
    model_name: str,
    reference: Path | None = None,
    progress: Progress | None = None,
) -> UploadResult:
    """Synthesize at every dose (fractions; the acquired low dose is added), export, preview and compare.

    ``fmt`` is ``"NIfTI"`` or ``"DICOM"`` (:func:`export`); ``reference`` is the native DICOM upload
    (:func:`dicom_reference`) so that DICOM series join its study.
    """
    report = progress or (lambda fraction, what: None)
    if uploaded.low_dose_fraction is not None:
        doses = sorted({*doses, uploaded.low_dose_fraction})
    volumes = synthesize_volumes(
        synth, uploaded, doses, progress=lambda f, what: report(0.05 + 0.8 * f, what)
    )
    report(0.9, f"writing {fmt}")
    archive = export(volumes, out_dir, fmt, model_name=model_name, reference=reference)
    first = doses[0]
    native, syn, index = preview_slices(uploaded, volumes[first])
    text = (
        f"**Done:** {len(doses)} dose(s) ({', '.join(format_dose(d) for d in doses)}) with "
        f"{model_name}, exported as {fmt}. Files are deleted when you close this page."
    )
    if uploaded.low_dose is not None:
        text += "\n\n" + compare_with_acquired(uploaded, volumes[uploaded.low_dose_fraction])
    report(1.0, "done")
    return UploadResult(text, native, syn, index, first, archive)
