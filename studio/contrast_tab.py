"""The "Virtual contrast" tab: layout, events and handlers over a :class:`~studio.contrast.Contrast`.

Mount inside the app's ``gr.Blocks`` and ``gr.Tabs``::

    tab = ContrastTab.build(explorer, models_dir)
    with gr.Blocks() as demo, gr.Tabs():
        tab.mount(demo)

Pick a case and a virtual-contrast model (only checkpoints whose card says ``task: virtual_contrast``;
the Dose explorer lists only low-dose generators). The images are one linked viewer (:mod:`vce_core.
viewer`, the explorer's): the model's inputs, the virtual contrast, the real standard dose and the
difference; wheel and arrow keys scroll, a drag sets window/level, presets are buttons, all in the
browser. Plane and slice controls work as in the Dose explorer. Coronal and sagittal views need the whole
synthesized volume (once per case and model, cached): the virtual-contrast panels say how far it is.
Per-slice metrics follow every change of the view; per-volume metrics are computed on request. Each
metric table is headed by case, model, plane and slice (or whole volume).

Handlers are plain methods that tests call directly; each goes through the studio's one error policy
(:func:`studio.errors.handler`). A case that lacks a required input of the model is no error of the app:
the virtual-contrast panels and the metrics show the :class:`~vce_core.errors.VCEInputError` message
naming the missing input, while the inputs and the real standard dose stay visible.

Public endpoints (``api_name``): ``/vc_view`` (the viewer payload), ``/vc_metrics`` (per-slice metrics),
``/vc_volume_metrics``, ``/vc_case``, ``/vc_plane``, ``/vc_model``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.contrast import GROUP, TASK, Contrast, ContrastView
from studio.controls import case_dropdown, controls_and_viewer, model_card, plane_and_slice, slider_for
from studio.errors import handler
from studio.events import ANALYSIS, FAST, PRIVATE, wire_volume_metrics
from studio.explorer import Explorer
from studio.generators import GeneratorRegistry
from vce_core.display import PLANES
from vce_core.errors import VCEInputError
from vce_core.viewer import serve_slices, viewer_html

VIEWER_ID = "contrast-viewer"
VOLUME_HINT = "Per-volume metrics: press the button to compute them for this case and model."
POLL_S = 1.0
"""Seconds between two progress updates while the whole volume is synthesized."""

VIEWER_JS = f"""
VCEViewer.setLoader('{GROUP}', (requests) => server.viewer_slices(requests));
element.addEventListener('vce-viewer-change', (e) => {{
  if (e.detail.reason === 'slice') trigger('slice', {{index: e.detail.index}});
}});
"""
SYNC_SLICE_JS = f"""(c, m, p, k) => {{
  if (window.VCEViewer) VCEViewer.setIndex('{GROUP}', k - 1);
  return [c, m, p, k];
}}"""


@dataclass
class ContrastComponents:
    """The tab's Gradio components."""

    case_dd: gr.Dropdown
    model_dd: gr.Dropdown
    plane: gr.Radio
    slice_sl: gr.Slider
    card_md: gr.Markdown
    case_md: gr.Markdown
    viewer: gr.HTML
    metrics_md: gr.Markdown
    vol_btn: gr.Button
    vol_md: gr.Markdown

    @property
    def view_inputs(self) -> list[Any]:
        return [self.case_dd, self.model_dd, self.plane, self.slice_sl]


class ContrastTab:
    """The virtual-contrast view: inputs, virtual contrast, real standard dose, difference, metrics."""

    def __init__(self, contrast: Contrast) -> None:
        self.contrast = contrast
        self.case_ids = contrast.library.case_ids()
        self.model_names = contrast.model_names()
        self.first_case = self.case_ids[0] if self.case_ids else None
        self.first_model = self.model_names[0] if self.model_names else None

    @classmethod
    def build(cls, explorer: Explorer, models_dir: Path | str | None) -> ContrastTab:
        """The tab over the explorer's case library, with the virtual-contrast models of ``models_dir``."""
        return cls(Contrast(explorer.library, GeneratorRegistry(models_dir, task=TASK), explorer))

    # -- values of the view ---------------------------------------------------------------------

    def view_of(self, case_id: str, model: str | None, plane: str, index: float) -> ContrastView:
        """The view of the controls (``index`` is the 1-based slice number shown)."""
        if plane not in PLANES:
            raise VCEInputError(f"unknown plane {plane!r}", expected=f"one of {', '.join(PLANES)}")
        k = self.contrast.clamp(str(case_id), plane, int(index) - 1)
        return ContrastView(str(case_id), self.contrast.model_or_default(model or None), plane, k)

    def viewer_value(self, view: ContrastView, busy: str | None = None) -> str:
        """The viewer component's value (HTML carrying the payload) for ``view``."""
        return viewer_html(self.contrast.viewer_payload(view, busy=busy), element_id=VIEWER_ID)

    # -- handlers --------------------------------------------------------------------------------

    @handler("showing the virtual contrast")
    def on_view(self, case_id: str, model: str, plane: str, index: float) -> Iterator[str]:
        """The viewer for the controls. A coronal/sagittal view whose volume is not ready first shows the
        inputs and the real standard dose with the synthesis progress, then the finished view."""
        view = self.view_of(case_id, model, plane, index)
        contrast = self.contrast
        if view.model and view.plane != "axial" and contrast.volume(view.case_id, view.model) is None:
            try:
                contrast.prepared(view.case_id, view.model)
            except VCEInputError:
                yield self.viewer_value(view)  # the panels say which input is missing
                return
            job = contrast.start(view.case_id, view.model)
            while not job.done():
                done = contrast.progress(view.case_id, view.model)
                yield self.viewer_value(view, busy=f"synthesizing the whole volume… {done:.0%}")
                try:
                    job.result(timeout=POLL_S)
                except FutureTimeout:
                    continue
        yield self.viewer_value(view)

    def viewer_slices(self, requests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        """The viewer's loader: ``[{stack, index}, ...]`` (at most 64) → ``{stack: {index: base64}}``."""
        return serve_slices(requests, self.contrast.stack_slices)

    @handler("computing the metrics")
    def on_metrics(self, case_id: str, model: str, plane: str, index: float) -> str:
        """Per-slice metrics of the view on screen."""
        return self.contrast.metrics(self.view_of(case_id, model, plane, index), "slice")

    @handler("computing the per-volume metrics")
    def on_volume_metrics(
        self,
        case_id: str,
        model: str,
        plane: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        """Per-volume metrics (waits for the whole volume, with its progress)."""
        view = self.view_of(case_id, model, plane, 1)
        if view.model:
            self.contrast.prepared(view.case_id, view.model)  # a missing input: said at once
            job = self.contrast.start(view.case_id, view.model)
            while not job.done():
                progress(self.contrast.progress(view.case_id, view.model), desc="synthesizing the volume")
                try:
                    job.result(timeout=POLL_S)
                except FutureTimeout:
                    continue
        return self.contrast.metrics(view, "volume")

    @handler("following the viewer's slice")
    def on_viewer_slice(self, case_id: str, plane: str, evt: gr.EventData) -> gr.Slider:
        """The viewer scrolled: the slice slider follows (the metrics are recomputed next)."""
        index = int(getattr(evt, "_data", {}).get("index", 0))
        return gr.Slider(value=self.contrast.clamp(case_id, plane, index) + 1)

    @handler("opening the case")
    def on_case(self, case_id: str, model: str, plane: str) -> tuple[Any, ...]:
        """Case change: slice slider (lesion slice), case line; per-volume metrics cleared."""
        model = self.contrast.model_or_default(model or None)
        return (
            slider_for(self.contrast, case_id, plane),
            self.contrast.case_info(case_id, model),
            VOLUME_HINT,
        )

    @handler("changing the plane")
    def on_plane(self, case_id: str, plane: str) -> gr.Slider:
        """Plane change: slice slider range and the lesion slice of that plane."""
        return slider_for(self.contrast, case_id, plane)

    @handler("showing the model card")
    def on_model(self, case_id: str, model: str) -> tuple[str, str, str]:
        """Model change: its card summary, the case line (what the case lacks for it); volume metrics
        cleared."""
        model = self.contrast.model_or_default(model or None)
        info = self.contrast.case_info(case_id, model) if case_id else ""
        return self.contrast.models.summary(model), info, VOLUME_HINT

    # -- layout and events -----------------------------------------------------------------------

    def initial_value(self) -> tuple[str, int, int, str]:
        """The first screen (viewer value, slice index, slice count, case line), built lazily in the page
        load event so that building the app synthesizes nothing."""
        if self.first_case is None:
            return "", 0, 2, ""
        try:
            index = self.contrast.default_index(self.first_case, "axial")
            count = self.contrast.slice_count(self.first_case, "axial")
            return "", index, count, self.contrast.case_info(self.first_case, self.first_model)
        except VCEInputError as exc:
            return "", 0, 2, f"**The first case could not be opened:** {exc}"

    def mount(self, demo: gr.Blocks) -> ContrastComponents:
        """Add the tab (inside ``gr.Tabs``) and wire its events; returns its components."""
        _, index, count, info = self.initial_value()

        with gr.Tab("Virtual contrast", id="contrast") as tab:
            if self.first_case is None:
                gr.Markdown("**No cases found.** Start the app with `--data DIR` (a folder of case folders).")
            if not self.model_names:
                gr.Markdown(f"**{self.contrast.models.empty_message()}**", elem_id="vc-no-model")
            controls, case_md, viewer = controls_and_viewer(
                lambda: self._controls(index, count),
                info,
                "",
                js=VIEWER_JS,
                loader=self.viewer_slices,
                elem_id="contrast-viewer-host",
            )
            with gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    metrics_md = gr.Markdown(elem_classes=["vce-metrics"], elem_id="vc-metrics")
                with gr.Column(scale=3):
                    vol_btn = gr.Button("Compute per-volume metrics", size="sm")
                    vol_md = gr.Markdown(VOLUME_HINT, elem_classes=["vce-metrics"], elem_id="vc-volume")
            c = ContrastComponents(
                case_md=case_md,
                viewer=viewer,
                metrics_md=metrics_md,
                vol_btn=vol_btn,
                vol_md=vol_md,
                **controls,
            )
            self._wire(demo, tab, c)  # inside the tab: its hidden API button must not sit in gr.Tabs itself
        return c

    def _controls(self, index: int, count: int) -> dict[str, Any]:
        """Left column: case, model, plane, slice, model card."""
        case_dd = case_dropdown(self.case_ids, self.first_case, elem_id="vc-case")
        model_dd = gr.Dropdown(
            choices=self.model_names,
            value=self.first_model,
            label="Virtual-contrast model",
            interactive=bool(self.model_names),
        )
        info = "coronal/sagittal: the whole volume is synthesized once per case and model"
        return {
            "case_dd": case_dd,
            "model_dd": model_dd,
            **plane_and_slice(index, count, info=info, prefix="vc-"),
            **model_card(self.contrast.models.summary(self.first_model)),
        }

    def _wire(self, demo: gr.Blocks, tab: gr.Tab, c: ContrastComponents) -> None:
        """Events: each control updates the viewer, then the per-slice metrics of the new view."""
        view = c.view_inputs

        def then_view_and_metrics(event: Any) -> None:
            event.then(self.on_view, view, [c.viewer], **FAST, **PRIVATE).then(
                self.on_metrics, view, [c.metrics_md], **ANALYSIS, **PRIVATE
            )

        then_view_and_metrics(
            c.plane.input(self.on_plane, [c.case_dd, c.plane], [c.slice_sl], api_name="vc_plane")
        )
        then_view_and_metrics(
            c.case_dd.input(
                self.on_case,
                [c.case_dd, c.model_dd, c.plane],
                [c.slice_sl, c.case_md, c.vol_md],
                api_name="vc_case",
            )
        )
        then_view_and_metrics(
            c.model_dd.input(
                self.on_model, [c.case_dd, c.model_dd], [c.card_md, c.case_md, c.vol_md], api_name="vc_model"
            )
        )
        c.slice_sl.input(self.on_metrics, view, [c.metrics_md], js=SYNC_SLICE_JS, **ANALYSIS, **PRIVATE)
        c.viewer.slice(self.on_viewer_slice, [c.case_dd, c.plane], [c.slice_sl], **FAST, **PRIVATE).then(
            self.on_metrics, view, [c.metrics_md], **ANALYSIS, **PRIVATE
        )
        # public endpoints for scripts and tests (the controls' events above are private)
        api_view = gr.Button(visible=False)
        api_view.click(self.on_view, view, [c.viewer], api_name="vc_view", **FAST)
        api_view.click(self.on_metrics, view, [c.metrics_md], api_name="vc_metrics", **ANALYSIS)
        wire_volume_metrics(
            c, self.on_volume_metrics, [c.case_dd, c.model_dd, c.plane], api_name="vc_volume_metrics"
        )
        if self.first_case is not None:
            then_view_and_metrics(tab.select(lambda: None, None, None, **PRIVATE))
