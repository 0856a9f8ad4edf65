"""Upload & synthesize: per-session upload folders, validation of uploaded volumes, whole-volume export.

Uploaded files live in ``<data dir>/uploads/<session hash>/`` only while the browser session needs them:
the folder is deleted when the session ends (``demo.unload``) and every leftover folder is deleted when
the app starts (sessions do not survive a restart).

:func:`synthesize_upload` is the whole "Synthesize" action: synthesis once at every requested dose (the
inputs normalised once), both exports written from it (NIfTI in the input's stored type, DICOM with one
series per dose in one study), and, when an acquired low dose was uploaded, its metrics against the
synthesis and the linear baseline. No Gradio here: the Upload tab (:mod:`studio.upload_tab`) wires these
functions to its components.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.generators import field_strength_caveat
from vce_core.domain import check_field_strength, check_t1_sequence, dose_from_percent, format_dose
from vce_core.errors import VCEInputError
from vce_core.io import DEFAULT_LIMITS, Limits
from vce_core.io.nifti import NIFTI_EXPORT_DTYPES

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
    """The ``uploads`` folder of a data directory: one private folder per browser session.

    A session's folder has a random name (not the session hash, so knowing a session hash reveals
    nothing), mode 0700, and is reachable only through that session's own id; it is never served over
    HTTP. Gradio's temporary upload copies are content-addressed and shared between visitors who upload
    identical files, so they are only copied from, never deleted here (Gradio's cache expiry does that).
    """

    def __init__(self, data_dir: Path | str, limits: Limits | None = None) -> None:
        self.root = Path(data_dir) / UPLOADS
        self.limits = limits or DEFAULT_LIMITS
        self._lock = threading.Lock()
        self._folders: dict[str, Path] = {}

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
        """The (created, private) folder of one session."""
        if not session_hash or not _SESSION_RE.match(session_hash):
            raise VCEInputError("this browser session has no valid id", expected="a page opened in a browser")
        with self._lock:
            folder = self._folders.get(session_hash)
            if folder is None or not folder.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                folder = self.root / secrets.token_urlsafe(16)
                folder.mkdir(mode=0o700)
                self._folders[session_hash] = folder
        return folder

    def ingest(self, session_hash: str | None, upload: str | Path | None, role: str) -> Path | None:
        """Copy an uploaded file into the session folder as ``<role>-<original name>``; None if no file."""
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
            target.chmod(0o600)
        return target

    def end_session(self, session_hash: str | None) -> None:
        """Delete this session's folder (and nothing else: not Gradio's shared upload cache)."""
        if not session_hash:
            return
        with self._lock:
            folder = self._folders.pop(session_hash, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path, role: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """``load_volume`` with every failure turned into a :class:`VCEInputError` that names the role."""
    from vce_core.io import load_volume

    label = _ROLES[role]
    shown = path.name.split("-", 1)[-1]
    try:
        volume = load_volume(path, limits=limits)
    except VCEInputError as exc:
        message = str(exc).replace(str(path), shown)
        raise VCEInputError(f"the {label} could not be used: {message}") from exc
    except Exception as exc:  # a reader library failing in a way io did not anticipate
        raise VCEInputError(
            f"the {label} ({shown}) could not be read ({type(exc).__name__})",
            expected="a NIfTI file (.nii or .nii.gz), a DICOM file or a .zip of one DICOM series",
        ) from exc
    data = np.asarray(volume.data)
    if float(data.max()) <= float(data.min()):
        raise VCEInputError(
            f"the {label} ({shown}) is constant (every voxel {float(data.min()):g})", expected="an MR image"
        )
    if min(data.shape) < 8:
        raise VCEInputError(
            f"the {label} ({shown}) is only {data.shape} voxels", expected="at least 8 voxels per axis"
        )
    volume.meta["stored_dtype"] = stored_dtype(path)
    return volume


def stored_dtype(path: Path) -> str:
    """The voxel type the upload was stored in (NIfTI header; DICOM: int16), for exports in that type."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        dtype = np.dtype(nib.load(str(path)).get_data_dtype())
        return dtype.name if dtype.name in NIFTI_EXPORT_DTYPES else "float32"
    return "int16"


@dataclass
class UploadedCase:
    """Validated uploads: native, standard dose and an optional acquired low dose on one grid.

    ``low_dose_fraction`` is the acquired low dose as a fraction of the standard dose; ``field_strength``
    is in tesla; ``sequence`` the T1 sequence's ``(TR ms, flip angle °)`` as typed or read from the native
    DICOM series, None when unknown (only generators built on the physics baseline need it).
    """

    native: Any
    standard_dose: Any
    low_dose: Any | None
    low_dose_fraction: float | None
    field_strength: float
    sequence: tuple[float, float] | None = None

    @property
    def dtype(self) -> str:
        """The native upload's stored voxel type (NIfTI exports use it)."""
        return str(self.native.meta.get("stored_dtype", "float32"))

    def describe(self) -> str:
        """One-paragraph Markdown summary (shape, spacing, type, doses)."""
        sp = " × ".join(f"{s:.3g}" for s in self.native.spacing)
        shape = " × ".join(map(str, self.native.shape))
        text = f"**Ready:** {shape} voxels of {sp} mm ({self.dtype}), {self.field_strength:g} T"
        if self.sequence is not None:
            text += f", TR {self.sequence[0]:g} ms, flip angle {self.sequence[1]:g}°"
        text += "."
        if self.low_dose is not None and self.low_dose_fraction is not None:
            text += (
                f" The acquired low dose ({format_dose(self.low_dose_fraction)}) will be compared with the "
                "synthesis and the linear baseline."
            )
        return text


def validate_uploads(
    native: Path | None,
    standard_dose: Path | None,
    low_dose: Path | None,
    low_dose_pct: float | None,
    field_strength: float | None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    tr_ms: float | None = None,
    flip_deg: float | None = None,
) -> UploadedCase:
    """Read and check the uploaded volumes; every problem is a :class:`VCEInputError` in plain words.

    ``low_dose_pct`` is the acquired low dose in percent of the standard dose as typed by the user (needed
    when ``low_dose`` is given); ``field_strength`` is in tesla; ``limits`` bound what a header may claim;
    ``tr_ms``/``flip_deg`` the T1 sequence as typed (both or neither; when neither, a native DICOM
    series' RepetitionTime and FlipAngle are used if it has them).
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
    typed = _typed_sequence(tr_ms, flip_deg)
    fraction = None
    if low_dose is not None:
        fraction = dose_from_percent(
            low_dose_pct, name="the dose of the acquired low-dose image", positive=True
        )
    na = _read(native, "native", limits)
    sd = _read(standard_dose, "standard_dose", limits)
    _check_grid(na, sd, "standard-dose image")
    ld = None
    if low_dose is not None:
        ld = _read(low_dose, "low_dose", limits)
        _check_grid(na, ld, "acquired low-dose image")
    return UploadedCase(na, sd, ld, fraction, field, typed or _header_sequence(na))


def _typed_sequence(tr_ms: float | None, flip_deg: float | None) -> tuple[float, float] | None:
    """The typed ``(TR ms, flip °)``, None when both fields are empty; VCEInputError when one is missing or
    a value is out of range."""
    if tr_ms is None and flip_deg is None:
        return None
    if tr_ms is None or flip_deg is None:
        raise VCEInputError(
            "only one of TR and flip angle was entered",
            expected="both the repetition time (ms) and the flip angle (°) of the T1 sequence, or neither",
        )
    return check_t1_sequence(tr_ms, flip_deg)


def _header_sequence(native: Any) -> tuple[float, float] | None:
    """``(TR ms, flip °)`` from a DICOM native's header (see :mod:`vce_core.io.dicom_read`), else None."""
    meta = getattr(native, "meta", {}) or {}
    try:
        return check_t1_sequence(meta.get("repetition_time_ms"), meta.get("flip_angle_deg"))
    except VCEInputError:  # absent or implausible in the header: unknown
        return None


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
    """Synthesize the whole volume at every dose (fraction), normalising the inputs once.

    Returns ``{dose: Volume}`` on the native grid (float32, seed 0 so a rerun gives the same images).
    """
    from vce_core.io import Volume

    report = progress or (lambda fraction, what: None)
    report(0.0, "normalising the inputs")
    prepared = synth.prepare(uploaded.native, uploaded.standard_dose, sequence=uploaded.sequence)
    out: dict[float, Any] = {}
    for n, dose in enumerate(doses):

        def relay(done: int, total: int, _n: int = n, _dose: float = dose) -> None:
            report((_n + done / max(total, 1)) / len(doses), f"synthesizing {format_dose(_dose)} dose")

        report(n / len(doses), f"synthesizing {format_dose(dose)} dose")
        data = synth.synthesize_prepared(prepared, dose, uploaded.field_strength, seed=0, progress=relay)
        out[dose] = Volume(
            data=np.asarray(data, dtype=np.float32),
            affine=np.asarray(uploaded.native.affine, dtype=np.float64).copy(),
            spacing=tuple(uploaded.native.spacing),
            meta={"series_description": f"SYNTHETIC {dose * 100:.3g}% dose", "synthetic": True},
        )
    return out


def _tag(model_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name)[:40]


def export_nifti(
    volumes: dict[float, Any], out_dir: Path, *, model_name: str, dtype: str = "float32"
) -> Path:
    """Synthetic volumes as NIfTI-1 in ``dtype`` (the input's stored type; integer types get a
    slope/intercept chosen from the data): one ``.nii.gz``, or a zip of one per dose."""
    from vce_core.io import save_nifti

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for dose, volume in volumes.items():
        path = out_dir / f"synthetic_{_tag(model_name)}_{dose * 100:g}pct.nii.gz"
        save_nifti(volume, path, dtype=dtype)  # type: ignore[arg-type]
        files.append(path)
    if len(files) == 1:
        return files[0]
    archive = out_dir / f"synthetic_{_tag(model_name)}_nifti.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            zf.write(path, path.name)
    return archive


def study_reference(reference: Path | None) -> Any:
    """The study every exported series joins: the uploaded native's DICOM study when there is one, else a
    new study (one StudyInstanceUID and FrameOfReferenceUID for all doses of this upload)."""
    if reference is not None:
        return reference
    from datetime import datetime

    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    now = datetime.now()
    ds = Dataset()
    ds.StudyInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.StudyDescription = "SYNTHETIC low-dose series (vce-studio)"
    ds.PatientID = "ANONYMOUS"
    return ds


def export_dicom(
    volumes: dict[float, Any], out_dir: Path, *, model_name: str, reference: Path | None = None
) -> Path:
    """A zip of one DICOM series per dose, all in one study (:func:`study_reference`), marked synthetic
    (SeriesDescription ``SYNTHETIC …``, ImageComments, DERIVED\\SECONDARY, new series UIDs)."""
    from vce_core.io import save_dicom_series

    out_dir.mkdir(parents=True, exist_ok=True)
    study = study_reference(reference)
    archive = out_dir / f"synthetic_{_tag(model_name)}_dicom.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for n, (dose, volume) in enumerate(volumes.items()):
            series_dir = out_dir / f"synthetic_series_{dose * 100:g}pct"
            files = save_dicom_series(
                volume,
                series_dir,
                series_description=f"SYNTHETIC {dose * 100:.3g}% dose ({model_name})"[:64],
                synthetic=True,
                reference=study,
                model_name=model_name,
                dose=dose,
                series_number=900 + n,
            )
            for file in files:
                zf.write(file, f"{series_dir.name}/{file.name}")
            shutil.rmtree(series_dir, ignore_errors=True)
    return archive


EXPORT_FORMATS = ("NIfTI", "DICOM")


def dicom_reference(native_upload: Path) -> Path | None:
    """The uploaded native file when it is DICOM (a .dcm or a .zip of a series), else None."""
    name = native_upload.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return None
    return native_upload


def compare_with_acquired(uploaded: UploadedCase, synthetic: Any) -> str:
    """Markdown metric table of the synthesis and the linear baseline vs the uploaded acquired low dose.

    Whole brain; brain and CE masks from :mod:`vce_core.preprocess`; PSNR/SSIM use the 0.1–99.9
    percentile range of the standard dose inside the brain.
    """
    from studio.figures import metric_table
    from vce_core.preprocess import brain_mask, ce_mask

    assert uploaded.low_dose is not None and uploaded.low_dose_fraction is not None
    na, sd, dose = uploaded.native.data, uploaded.standard_dose.data, uploaded.low_dose_fraction
    brain = brain_mask(sd)
    ce = ce_mask(na, sd, mask=brain)
    inside = sd[brain]
    data_range = float(np.percentile(inside, 99.9) - np.percentile(inside, 0.1))
    baseline = (na + np.float32(dose) * (sd - na)).astype(np.float32)
    table = metric_table(
        [("Synthetic", synthetic.data), ("Linear baseline", baseline)],
        uploaded.low_dose.data,
        brain,
        ce,
        max(data_range, 1e-6),
    )
    heading = f"**Synthetic and linear baseline vs your acquired {format_dose(dose)} dose** (whole brain)"
    return f"{heading}\n\n{table}"


@dataclass
class UploadResult:
    """What the "Synthesize" action produced: a Markdown report, the volumes and both exports."""

    report: str
    volumes: dict[float, Any]
    exports: dict[str, Path]
    seconds: float


def synthesize_upload(
    synth: Any,
    uploaded: UploadedCase,
    doses: list[float],
    out_dir: Path,
    *,
    model_name: str,
    reference: Path | None = None,
    progress: Progress | None = None,
) -> UploadResult:
    """Synthesize once at every dose (fractions; the acquired low dose is added), then write both exports
    (NIfTI in the input's type, DICOM in one study) so that changing the download format costs nothing,
    and compare with the acquired low dose when there is one."""
    import time

    t0 = time.perf_counter()
    report = progress or (lambda fraction, what: None)
    if uploaded.low_dose_fraction is not None:
        doses = sorted({*doses, uploaded.low_dose_fraction})
    volumes = synthesize_volumes(synth, uploaded, doses, progress=lambda f, what: report(0.8 * f, what))
    if out_dir.exists():
        shutil.rmtree(out_dir, ignore_errors=True)
    report(0.8, f"writing NIfTI ({uploaded.dtype})")
    exports = {"NIfTI": export_nifti(volumes, out_dir / "nifti", model_name=model_name, dtype=uploaded.dtype)}
    report(0.88, "writing DICOM")
    exports["DICOM"] = export_dicom(volumes, out_dir / "dicom", model_name=model_name, reference=reference)
    text = (
        f"**Done:** {len(doses)} dose(s) ({', '.join(format_dose(d) for d in doses)}) with {model_name} in "
        f"{time.perf_counter() - t0:.0f} s. NIfTI in the input's type ({uploaded.dtype}); DICOM: one study, "
        "one series per dose, marked SYNTHETIC. Files are deleted when you close this page."
    )
    caveat = field_strength_caveat(getattr(synth, "card", None), uploaded.field_strength)
    if caveat:
        text += "\n\n" + caveat
    if uploaded.low_dose is not None:
        report(0.95, "comparing with the acquired low dose")
        text += "\n\n" + compare_with_acquired(uploaded, volumes[uploaded.low_dose_fraction])
    report(1.0, "done")
    return UploadResult(text, volumes, exports, time.perf_counter() - t0)
