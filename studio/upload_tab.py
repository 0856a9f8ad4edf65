"""The "Upload & synthesize" tab: layout, events and handlers over :mod:`studio.upload`.

Mount inside the app's ``gr.Blocks`` and ``gr.Tabs`` with ``UploadTab(uploads, generators).mount(demo)``.
The handlers only move values between components and :mod:`studio.upload` (which reads, validates,
synthesizes, exports and compares); each goes through the studio's one error policy
(:func:`studio.errors.handler`). Doses are typed in percent here and are fractions below
(:mod:`vce_core.domain`).

Public endpoints (``api_name``): ``/check_upload`` and ``/synthesize_upload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import handler
from studio.generators import GeneratorRegistry
from studio.upload import UploadArea, UploadedCase, dicom_reference, synthesize_upload, validate_uploads
from vce_core.domain import format_dose, parse_percent_list

UPLOAD_TYPES = [".nii", ".gz", ".zip", ".dcm"]


@dataclass
class UploadComponents:
    """The tab's Gradio components."""

    native: gr.File
    standard_dose: gr.File
    low_dose: gr.File
    low_dose_pct: gr.Number
    field_strength: gr.Number
    generator: gr.Dropdown
    doses: gr.Textbox
    fmt: gr.Radio
    check_btn: gr.Button
    synth_btn: gr.Button
    status: gr.Markdown
    preview_native: gr.Image
    preview_synthetic: gr.Image
    download: gr.DownloadButton

    @property
    def upload_inputs(self) -> list[Any]:
        return [self.native, self.standard_dose, self.low_dose, self.low_dose_pct, self.field_strength]


class UploadTab:
    """Upload a co-registered native + standard dose, synthesize whole volumes at chosen doses, download."""

    def __init__(self, uploads: UploadArea, generators: GeneratorRegistry) -> None:
        self.uploads = uploads
        self.generators = generators

    # -- handlers --------------------------------------------------------------------------------

    def _uploaded(
        self,
        request: gr.Request | None,
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
    ) -> tuple[UploadedCase, Path | None]:
        """Copy the uploads into the session folder and validate them; also returns the native's copy."""
        session = request.session_hash if request is not None else None
        na = self.uploads.ingest(session, native, "native")
        sd = self.uploads.ingest(session, standard, "standard_dose")
        ld = self.uploads.ingest(session, low, "low_dose")
        return validate_uploads(na, sd, ld, low_pct, field), na

    @handler("checking the uploads")
    def on_check(
        self,
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
        request: gr.Request,
    ) -> str:
        """Validate the uploaded files and describe them."""
        uploaded, _ = self._uploaded(request, native, standard, low, low_pct, field)
        return uploaded.describe()

    @handler("synthesizing the uploaded volume")
    def on_synthesize(
        self,
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
        generator: str,
        doses_text: str,
        fmt: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[Any, ...]:
        """Validate, synthesize the whole volume at every dose, export, and preview the middle slice."""
        synth = self.generators.get(generator)
        doses = parse_percent_list(doses_text)
        progress(0.0, desc="reading the uploads")
        uploaded, native_path = self._uploaded(request, native, standard, low, low_pct, field)
        reference = dicom_reference(native_path) if fmt == "DICOM" and native_path is not None else None
        result = synthesize_upload(
            synth,
            uploaded,
            doses,
            self.uploads.session_dir(request.session_hash) / "export",
            fmt,
            model_name=generator,
            reference=reference,
            progress=lambda f, what: progress(f, desc=what),
        )
        k = result.preview_index + 1
        return (
            result.report,
            gr.Image(value=result.preview_native, label=f"Native · axial slice {k}"),
            gr.Image(
                value=result.preview_synthetic,
                label=f"Synthetic · {format_dose(result.preview_dose)} dose · axial slice {k}",
            ),
            gr.DownloadButton(
                value=str(result.archive), label=f"Download {result.archive.name}", visible=True
            ),
        )

    def on_unload(self, request: gr.Request) -> None:
        """Delete the session's uploads when its page closes."""
        self.uploads.end_session(request.session_hash)

    # -- layout and events -----------------------------------------------------------------------

    def mount(self, demo: gr.Blocks) -> UploadComponents:
        """Add the tab (inside ``gr.Tabs``) and wire its events; returns its components."""
        names = self.generators.names()
        with gr.Tab("Upload & synthesize", id="upload"):
            gr.Markdown(
                "Upload a co-registered **native** and **standard-dose** T1 (NIfTI `.nii`/`.nii.gz`, "
                "or a `.zip` of one DICOM series). Optionally add an **acquired low-dose** image with "
                "its dose to compare. Uploads are kept on the server only while this page is open."
            )
            with gr.Row():
                native = gr.File(label="Native (pre-contrast)", file_types=UPLOAD_TYPES)
                standard_dose = gr.File(label="Standard dose", file_types=UPLOAD_TYPES)
                with gr.Column():
                    low_dose = gr.File(label="Acquired low dose (optional)", file_types=UPLOAD_TYPES)
                    low_dose_pct = gr.Number(
                        label="Its dose (% of standard dose)", value=None, minimum=0, maximum=100
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
                fmt = gr.Radio(["NIfTI", "DICOM"], value="NIfTI", label="Download as")
            with gr.Row():
                check_btn = gr.Button("Check files")
                synth_btn = gr.Button("Synthesize", variant="primary", interactive=bool(names))
            if not names:
                gr.Markdown(self.generators.empty_message())
            status = gr.Markdown()
            with gr.Row():
                preview_native = gr.Image(label="Native", format="png", interactive=False, height=300)
                preview_synthetic = gr.Image(label="Synthetic", format="png", interactive=False, height=300)
            download = gr.DownloadButton("Download", visible=False)
        c = UploadComponents(
            native=native,
            standard_dose=standard_dose,
            low_dose=low_dose,
            low_dose_pct=low_dose_pct,
            field_strength=field_strength,
            generator=generator,
            doses=doses,
            fmt=fmt,
            check_btn=check_btn,
            synth_btn=synth_btn,
            status=status,
            preview_native=preview_native,
            preview_synthetic=preview_synthetic,
            download=download,
        )
        c.check_btn.click(self.on_check, c.upload_inputs, [c.status], api_name="check_upload")
        c.synth_btn.click(
            self.on_synthesize,
            [*c.upload_inputs, c.generator, c.doses, c.fmt],
            [c.status, c.preview_native, c.preview_synthetic, c.download],
            api_name="synthesize_upload",
            concurrency_limit=1,
        )
        demo.unload(self.on_unload)
        return c
