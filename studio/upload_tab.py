"""The "Upload & synthesize" tab: layout, events and handlers over :mod:`studio.upload`.

Mount inside the app's ``gr.Blocks`` and ``gr.Tabs`` with ``UploadTab(uploads, generators).mount(demo)``.
The handlers move values between components and :mod:`studio.upload` (which reads, validates,
synthesizes, exports and compares). Errors stay on the page in an error panel (not a fading toast), written
by the one error policy (:func:`vce_core.errors.user_message`). Doses are typed in percent here and are
fractions below (:mod:`vce_core.domain`).

The result is previewed in the shared viewer (:mod:`vce_core.viewer`): native, standard dose and every
synthetic dose, linked, with wheel scrolling and drag window/level; slices come through the viewer's loader
under unguessable stack ids that only this session's page has seen. Synthesis runs once; both download
formats are written from it, so changing the format only swaps the file offered.

Public endpoints (``api_name``): ``/check_upload``, ``/synthesize_upload`` and ``/export_format``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from studio.errors import log
from studio.forms import form_handler
from studio.generators import GeneratorRegistry
from studio.upload import (
    EXPORT_FORMATS,
    UploadArea,
    UploadedCase,
    dicom_reference,
    synthesize_upload,
    validate_uploads,
)
from vce_core.cache import LRU
from vce_core.display import slice_spacing, take_slice, window_presets
from vce_core.domain import format_dose, parse_percent_list
from vce_core.errors import user_message
from vce_core.viewer import Encoding, Panel, Stack, oriented, payload, serve_slices, viewer_html

UPLOAD_TYPES = [".nii", ".gz", ".zip", ".dcm"]
GROUP = "upload"
VIEWER_JS = f"VCEViewer.setLoader('{GROUP}', (requests) => server.preview_slices(requests));"


@dataclass(frozen=True)
class UploadForm:
    """The uploaded files and what the person says of them, in the order of
    :attr:`UploadComponents.upload_inputs` (the first inputs of ``/check_upload`` and
    ``/synthesize_upload``): temporary file paths from Gradio (``None`` when empty), the acquired low
    dose in percent and the field strength in tesla as typed."""

    native: str | None
    standard: str | None
    low: str | None
    low_pct: float | None
    field: float | None


def error_panel(message: str | None) -> Any:
    """The persistent error panel: visible with ``message``, hidden without."""
    if not message:
        return gr.Markdown("", visible=False)
    return gr.Markdown(f"**Could not continue:** {message}", visible=True)


def remaining(started: float, fraction: float) -> str:
    """``about 40 s left`` from the elapsed time and the fraction done (empty before 3 %)."""
    if fraction < 0.03:
        return ""
    left = (time.perf_counter() - started) * (1 - fraction) / fraction
    return f" · about {left:.0f} s left" if left >= 1 else " · finishing"


@dataclass
class UploadComponents:
    """The tab's Gradio components."""

    native: gr.File
    standard_dose: gr.File
    low_dose: gr.File
    low_dose_pct: gr.Number
    field_strength: gr.Number
    tr_ms: gr.Number
    flip_deg: gr.Number
    generator: gr.Dropdown
    doses: gr.Textbox
    check_btn: gr.Button
    synth_btn: gr.Button
    errors: gr.Markdown
    status: gr.Markdown
    preview: gr.HTML
    fmt: gr.Radio
    download: gr.DownloadButton
    exports: gr.State

    @property
    def upload_inputs(self) -> list[Any]:
        return [self.native, self.standard_dose, self.low_dose, self.low_dose_pct, self.field_strength]

    @property
    def sequence_inputs(self) -> list[Any]:
        """TR and flip angle: last in every event's inputs (optional; the handlers default them to None)."""
        return [self.tr_ms, self.flip_deg]


class UploadTab:
    """Upload a co-registered native + standard dose, synthesize whole volumes at chosen doses, download."""

    def __init__(self, uploads: UploadArea, generators: GeneratorRegistry) -> None:
        self.uploads = uploads
        self.generators = generators
        # preview stacks of the latest uploads (about four uploads of five panels; arrays are shared)
        self._stacks: LRU[tuple[Encoding, np.ndarray, tuple[float, float]]] = LRU(20)

    # -- handlers --------------------------------------------------------------------------------

    def _uploaded(
        self, request: gr.Request | None, form: UploadForm, tr_ms: float | None, flip_deg: float | None
    ) -> tuple[UploadedCase, Path | None]:
        """Copy the uploads into the session folder and validate them with the typed T1 sequence (TR ms,
        flip °); also returns the native's copy."""
        session = request.session_hash if request is not None else None
        na = self.uploads.ingest(session, form.native, "native")
        sd = self.uploads.ingest(session, form.standard, "standard_dose")
        ld = self.uploads.ingest(session, form.low, "low_dose")
        limits = self.uploads.limits
        uploaded = validate_uploads(
            na, sd, ld, form.low_pct, form.field, limits, tr_ms=tr_ms, flip_deg=flip_deg
        )
        return uploaded, na

    @form_handler(UploadForm)
    def on_check(
        self,
        form: UploadForm,
        tr_ms: float | None = None,
        flip_deg: float | None = None,
        request: gr.Request | None = None,
    ) -> tuple[Any, str]:
        """Validate the uploaded files: (error panel, description)."""
        try:
            uploaded, _ = self._uploaded(request, form, tr_ms, flip_deg)
        except Exception as exc:  # noqa: BLE001 - the one error policy decides what is shown
            return error_panel(user_message(exc, "checking the uploads", log)), ""
        return error_panel(None), uploaded.describe()

    @form_handler(UploadForm)
    def on_synthesize(
        self,
        form: UploadForm,
        generator: str,
        doses_text: str,
        fmt: str,
        tr_ms: float | None = None,
        flip_deg: float | None = None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple[Any, ...]]:
        """Validate, synthesize every dose once, write both exports, preview: yields (error panel, status,
        preview, download, exports) updates, the status with the time remaining."""
        started = time.perf_counter()
        try:
            synth = self.generators.get(generator)
            doses = parse_percent_list(doses_text)
            progress(0.0, desc="reading the uploads")
            uploaded, native_path = self._uploaded(request, form, tr_ms, flip_deg)
            yield (
                error_panel(None),
                uploaded.describe() + " Synthesizing…",
                gr.HTML(),
                gr.DownloadButton(),
                {},
            )

            def report(fraction: float, what: str) -> None:
                progress(fraction, desc=what + remaining(started, fraction))

            result = synthesize_upload(
                synth,
                uploaded,
                doses,
                self.uploads.session_dir(request.session_hash if request else None) / "export",
                model_name=generator,
                reference=dicom_reference(native_path) if native_path is not None else None,
                progress=report,
            )
        except Exception as exc:  # noqa: BLE001 - the one error policy decides what is shown
            message = user_message(exc, "synthesizing the uploaded volume", log)
            yield error_panel(message), "", gr.HTML(), gr.DownloadButton(visible=False), {}
            return
        exports = {name: str(path) for name, path in result.exports.items()}
        yield (
            error_panel(None),
            result.report,
            self.preview_value(uploaded, result.volumes),
            self._download(exports, fmt),
            exports,
        )

    @staticmethod
    def _download(exports: dict[str, str], fmt: str) -> Any:
        path = exports.get(fmt)
        if not path:
            return gr.DownloadButton(visible=False)
        return gr.DownloadButton(value=path, label=f"Download {Path(path).name}", visible=True)

    def on_format(self, fmt: str, exports: dict[str, str] | None) -> Any:
        """Download format changed: offer the other file already written (no new synthesis)."""
        return self._download(exports or {}, fmt)

    def on_unload(self, request: gr.Request) -> None:
        """Delete the session's uploads when its page closes."""
        self.uploads.end_session(request.session_hash)

    # -- preview ---------------------------------------------------------------------------------

    def preview_value(self, uploaded: UploadedCase, volumes: dict[float, Any]) -> str:
        """The viewer of native, standard dose and each synthetic dose (axial, linked, lazily loaded)."""
        sd = uploaded.standard_dose.data
        presets = window_presets(sd)
        low = min(0.0, float(uploaded.native.data.min()), float(sd.min()))
        encoding = Encoding.for_range(
            low, 1.5 * max(float(sd.max()), float(uploaded.native.data.max()), low + 1)
        )
        pixel = slice_spacing(tuple(uploaded.native.spacing), "axial")
        sources = [("Native", uploaded.native.data), ("Standard dose", sd)]
        sources += [(f"Synthetic · {format_dose(d)}", v.data) for d, v in volumes.items()]
        index = sd.shape[2] // 2
        panels, stacks = [], {}
        for title, data in sources:
            sid = secrets.token_urlsafe(12)
            self._stacks.put(sid, (encoding, data, pixel))
            stacks[sid] = Stack(encoding, {index: encoding.encode(oriented(data[:, :, index], pixel)[0])})
            panels.append(Panel(sid[:8], title, stack=sid))
        view = payload(
            group=GROUP,
            panels=panels,
            stacks=stacks,
            count=sd.shape[2],
            index=index,
            shape=(sd.shape[1], sd.shape[0]),
            spacing=(pixel[1], pixel[0]),
            window=presets["Auto (percentile)"],
            preset="Auto (percentile)",
            presets=presets,
            plane="axial",
            context=secrets.token_hex(4),
            columns=min(len(panels), 5),
            panel_height=240,
        )
        return viewer_html(view, element_id="upload-viewer")

    def preview_slices(self, requests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        """The preview's loader: slices of stacks this tab registered (unknown ids give nothing)."""

        def lookup(stack: str, indices: list[int]) -> dict[int, str]:
            entry = self._stacks.get(stack)
            if entry is None:
                return {}
            encoding, data, pixel = entry
            return {
                k: encoding.encode(oriented(take_slice(data, "axial", k), pixel)[0])
                for k in indices
                if 0 <= k < data.shape[2]
            }

        return serve_slices(requests, lookup)

    # -- layout and events -----------------------------------------------------------------------

    def mount(self, demo: gr.Blocks) -> UploadComponents:
        """Add the tab (inside ``gr.Tabs``) and wire its events; returns its components."""
        names = self.generators.names()

        def preview_slices(requests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
            return self.preview_slices(requests)  # a plain function: Gradio marks it as a server function

        with gr.Tab("Upload & synthesize", id="upload"):
            gr.Markdown(
                "Upload a co-registered **native** and **standard-dose** T1 (NIfTI `.nii`/`.nii.gz`, "
                "or a `.zip` of one DICOM series). Optionally add an **acquired low-dose** image with "
                "its dose to compare. Uploads are kept on the server only while this page is open, in a "
                "folder only this page can use."
            )
            inputs = self._inputs(names)
            outputs = self._outputs(preview_slices)
        c = UploadComponents(**inputs, **outputs)
        self._wire(demo, c)
        return c

    def _inputs(self, names: list[str]) -> dict[str, Any]:
        """The upload fields, generator and doses, and the two buttons."""
        with gr.Row():
            native = gr.File(label="Native (pre-contrast)", file_types=UPLOAD_TYPES)
            standard_dose = gr.File(label="Standard dose", file_types=UPLOAD_TYPES)
            with gr.Column():
                low_dose = gr.File(label="Acquired low dose (optional)", file_types=UPLOAD_TYPES)
                low_dose_pct = gr.Number(
                    label="Its dose (% of standard dose; needed with an acquired low dose)",
                    value=None,
                    minimum=1,
                    maximum=100,
                    placeholder="e.g. 33",
                )
        with gr.Row():
            field_strength = gr.Number(label="Field strength (T)", value=3.0, minimum=0.1, maximum=12)
            generator = gr.Dropdown(
                choices=names,
                value=names[0] if names else None,
                label="Generator",
                interactive=bool(names),
            )
            doses = gr.Textbox(label="Doses to synthesize (% of standard dose)", value="10, 25, 33")
        with gr.Row():
            tr_ms = gr.Number(
                label="TR of the T1 sequence (ms; optional)",
                value=None,
                minimum=0,
                placeholder="e.g. 6.8",
                info="Needed by generators built on the physics baseline; "
                "read from a DICOM native when empty.",
            )
            flip_deg = gr.Number(
                label="Flip angle (°; optional)", value=None, minimum=0, maximum=180, placeholder="e.g. 8"
            )
        with gr.Row():
            check_btn = gr.Button("Check files")
            synth_btn = gr.Button("Synthesize", variant="primary", interactive=bool(names))
        if not names:
            gr.Markdown(self.generators.empty_message())
        return {
            "native": native,
            "standard_dose": standard_dose,
            "low_dose": low_dose,
            "low_dose_pct": low_dose_pct,
            "field_strength": field_strength,
            "tr_ms": tr_ms,
            "flip_deg": flip_deg,
            "generator": generator,
            "doses": doses,
            "check_btn": check_btn,
            "synth_btn": synth_btn,
        }

    @staticmethod
    def _outputs(preview_slices: Any) -> dict[str, Any]:
        """Error panel, status, the preview viewer (``preview_slices`` its loader) and the download."""
        errors = gr.Markdown(visible=False, elem_id="upload-errors", elem_classes=["vce-error"])
        status = gr.Markdown(elem_id="upload-status")
        preview = gr.HTML(js_on_load=VIEWER_JS, server_functions=[preview_slices], elem_id="upload-preview")
        with gr.Row():
            fmt = gr.Radio(list(EXPORT_FORMATS), value="NIfTI", label="Download as", scale=1)
            download = gr.DownloadButton("Download", visible=False, scale=2)
        exports = gr.State({})
        return {
            "errors": errors,
            "status": status,
            "preview": preview,
            "fmt": fmt,
            "download": download,
            "exports": exports,
        }

    def _wire(self, demo: gr.Blocks, c: UploadComponents) -> None:
        """Events: check, synthesize (one synthesis writes both exports), format switch, page close."""
        c.check_btn.click(
            self.on_check,
            [*c.upload_inputs, *c.sequence_inputs],
            [c.errors, c.status],
            api_name="check_upload",
        )
        c.synth_btn.click(
            self.on_synthesize,
            [*c.upload_inputs, c.generator, c.doses, c.fmt, *c.sequence_inputs],
            [c.errors, c.status, c.preview, c.download, c.exports],
            api_name="synthesize_upload",
            concurrency_limit=1,
            show_progress_on=[c.status],
        )
        c.fmt.change(self.on_format, [c.fmt, c.exports], [c.download], api_name="export_format")
        demo.unload(self.on_unload)
