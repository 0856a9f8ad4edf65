"""The "Dose explorer" tab: layout, events and handlers over a :class:`~studio.explorer.Explorer`.

Mount inside the app's ``gr.Blocks`` and ``gr.Tabs``::

    tab = ExplorerTab(Explorer(library, generators), data_dir)
    with gr.Blocks() as demo, gr.Tabs():
        tab.mount(demo)

The images are one linked viewer (:mod:`vce_core.viewer`; the page needs ``vce_core.viewer.head_html()``
in its ``<head>``): wheel and arrow keys scroll the slices, a drag sets window/level, presets are buttons,
all in the browser. The server sends a new viewer payload when the case, generator, dose or plane changes
(``/dose``), the viewer fetches further slices through its loader (a server function), and the metrics
and charts follow every change of the view (``/analysis``), each labelled with case, generator, plane,
slice and dose. Handlers are plain methods that tests call directly; each goes through the studio's one
error policy (:func:`studio.errors.handler`). The dose is in percent only here, at the slider.

Public endpoints (``api_name``): ``/dose`` (the viewer payload: what a dose step, plane switch, case or
generator change sends), ``/analysis`` (per-slice metrics, noise and dose–response charts, swipe pair),
``/plane``, ``/case``, ``/model_card``, ``/volume_metrics`` and ``/echo_image`` (benchmark reference).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.controls import case_dropdown, controls_and_viewer, model_card, plane_and_slice, slider_for
from studio.errors import handler
from studio.events import ANALYSIS, FAST, PRIVATE, wire_volume_metrics
from studio.explorer import GROUP, Explorer, View
from studio.forms import form_handler
from vce_core.cache import LRU
from vce_core.display import PLANES, Window
from vce_core.domain import dose_from_percent, format_dose
from vce_core.errors import VCEInputError
from vce_core.viewer import serve_slices, viewer_html

DEFAULT_DOSE_PCT = 33
"""Dose slider position when the page opens (percent of the standard dose)."""

VIEWER_ID = "explorer-viewer"
_WAITING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vce-wait")
"""Threads that wait for whole volumes while the viewer event reports their progress."""
VOLUME_HINT = "Per-volume metrics: press the button to compute them for the view above."

VIEWER_JS = f"""
VCEViewer.setLoader('{GROUP}', (requests) => server.viewer_slices(requests));
element.addEventListener('vce-viewer-change', (e) => {{
  if (e.detail.reason === 'slice') trigger('slice', {{index: e.detail.index}});
}});
"""
"""``js_on_load`` of the viewer component: its loader, and slice changes reported to the server."""

SYNC_SLICE_JS = f"""(c, g, d, p, k) => {{
  if (window.VCEViewer) VCEViewer.setIndex('{GROUP}', k - 1);
  return [c, g, d, p, k];
}}"""
"""The slice slider moves the viewer in the browser before the server recomputes the metrics."""


def _session(request: gr.Request | None) -> str:
    return str(getattr(request, "session_hash", "") or "")


@dataclass(frozen=True)
class ViewControls:
    """The controls that choose the view on screen, in the order of
    :attr:`ExplorerComponents.view_inputs` (the inputs of ``/dose`` and ``/analysis``)."""

    case_id: str
    generator: str | None
    dose_pct: float  # percent of the standard dose (the slider)
    plane: str
    index: float  # the 1-based slice number shown


@dataclass
class ExplorerComponents:
    """The tab's Gradio components."""

    case_md: gr.Markdown
    case_dd: gr.Dropdown
    gen_dd: gr.Dropdown
    card_md: gr.Markdown
    dose: gr.Slider
    plane: gr.Radio
    slice_sl: gr.Slider
    viewer: gr.HTML
    metrics_md: gr.Markdown
    vol_btn: gr.Button
    vol_md: gr.Markdown
    response_plot: gr.Plot
    noise_plot: gr.Plot
    swipe: gr.ImageSlider
    echo_img: gr.Image
    api_echo: gr.Button

    @property
    def view_inputs(self) -> list[Any]:
        return [self.case_dd, self.gen_dd, self.dose, self.plane, self.slice_sl]

    @property
    def analysis_outputs(self) -> list[Any]:
        return [self.metrics_md, self.noise_plot, self.response_plot, self.swipe]


class ExplorerTab:
    """The Dose explorer: real vs synthetic vs linear baseline at the slider's dose, metrics and charts."""

    def __init__(self, explorer: Explorer, data_dir: Path) -> None:
        self.explorer = explorer
        self.data_dir = Path(data_dir)
        self.case_ids = explorer.library.case_ids()
        self.generator_names = explorer.generators.names()
        self.first_case = self.case_ids[0] if self.case_ids else None
        self.first_generator = self.generator_names[0] if self.generator_names else None
        self._contexts: LRU[str] = LRU(1024)  # session → case|plane|slice of its last viewer payload

    # -- values of the view ---------------------------------------------------------------------

    def view_of(self, controls: ViewControls) -> View:
        """The view of the controls (validated: dose, plane; the slice clamped to the case)."""
        dose = dose_from_percent(controls.dose_pct, name="the dose")
        case_id, plane = str(controls.case_id), controls.plane
        if plane not in PLANES:
            raise VCEInputError(f"unknown plane {plane!r}", expected=f"one of {', '.join(PLANES)}")
        k = self.explorer.clamp(case_id, plane, int(controls.index) - 1)
        return View(case_id, self.explorer.generator_or_default(controls.generator or None), dose, plane, k)

    def case_info(self, case_id: str) -> str:
        """One-line Markdown summary of a case (field strength, agent, spacing, acquired doses)."""
        lc = self.explorer.library.get(case_id)
        spacing = " × ".join(f"{s:.3g}" for s in lc.spacing)
        kind = (
            "digital phantom: the real image is simulated at any dose"
            if lc.is_phantom
            else "acquired data: real images only at acquired doses"
        )
        doses = ", ".join(format_dose(d) for d in lc.acquired_doses)
        return (
            f"**{case_id}** · {lc.case.field_strength:g} T · {lc.case.agent} · {spacing} mm · "
            f"acquired doses {doses} · {kind}"
        )

    def viewer_value(
        self, view: View, *, session: str = "", wait: bool = True, busy: str | None = None
    ) -> str:
        """The viewer component's value (HTML carrying the payload) for ``view``.

        The native and standard-dose slice on screen travel only when the session's case, plane or slice
        changed (a dose step leaves them in the browser's cache).
        """
        context = f"{view.case_id}|{view.plane}|{view.index}"
        static = not session or self._contexts.get(session) != context
        data = self.explorer.viewer_payload(view, session=session, wait=wait, busy=busy, static_slices=static)
        if session and wait:
            self._contexts.put(session, context)
        return viewer_html(data, element_id=VIEWER_ID)

    # -- handlers --------------------------------------------------------------------------------

    @handler("updating the images")
    @form_handler(ViewControls)
    def on_view(self, controls: ViewControls, request: gr.Request | None = None) -> Iterator[str]:
        """The viewer for the current controls. A coronal/sagittal dose whose volume is not ready first
        yields the viewer with a busy message on the synthetic panels, then the finished one."""
        view = self.view_of(controls)
        session = _session(request)
        explorer = self.explorer
        if view.plane != "axial" and view.generator:
            key = explorer.volume_key(view.case_id, view.generator, view.dose)
            if explorer.volumes.cached(key) is None:
                yield self.viewer_value(view, session=session, wait=False)
                waiting = _WAITING.submit(explorer.volumes.get, key, session)
                while not waiting.done():
                    try:
                        waiting.result(timeout=2.0)
                    except FutureTimeout:
                        done = explorer.volumes.progress(key) or 0.0
                        what = f"the {format_dose(view.dose)} volume for the {view.plane} view"
                        busy = f"synthesizing {what}… {done:.0%}"
                        yield self.viewer_value(view, session=session, wait=False, busy=busy)
                if waiting.result() is None:
                    return  # the person moved on: the newer request shows its own view
        yield self.viewer_value(view, session=session, wait=True)
        explorer.prefetch_for(view)

    def on_moved(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        plane: str,
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> None:
        """The dose, plane or case is being moved: this session's wait for another volume ends now, so
        the request for the view it lands on does not queue behind a stale one."""
        try:
            dose = dose_from_percent(dose_pct, name="the dose")
        except VCEInputError:
            return
        gen = self.explorer.generator_or_default(generator or None)
        keep = self.explorer.volume_key(str(case_id), gen, dose) if gen and plane != "axial" else None
        self.explorer.volumes.supersede(_session(request), keep=keep)

    def viewer_slices(self, requests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        """The viewer's loader: ``[{stack, index}, ...]`` (at most 64) → ``{stack: {index: base64}}``.

        Only stacks of payloads this explorer made are served; what is not ready yet is left out (the
        viewer asks again with the next payload).
        """
        return serve_slices(requests, self.explorer.stack_slices)

    @handler("computing the metrics and charts")
    @form_handler(ViewControls)
    def on_analysis(self, controls: ViewControls, request: gr.Request | None = None) -> tuple[Any, ...]:
        """Per-slice metrics, noise chart, dose–response chart and swipe pair of the view on screen."""
        view = self.view_of(controls)
        session = _session(request)
        self.explorer.prefetch_for(view)  # while the person looks: this dose's volume, its neighbours
        lc = self.explorer.library.get(view.case_id)
        window: Window = lc.presets["Brain T1"]
        swipe = self.explorer.swipe_pair(view, window)
        return (
            self.explorer.slice_metrics(view, session=session),
            self.explorer.noise_chart(view, session=session),
            self.explorer.dose_response(view),
            gr.ImageSlider(
                value=swipe,
                label=f"Swipe: synthetic (left) vs real (right) · {view.describe()} · Brain T1 window",
                visible=swipe is not None,
            ),
        )

    @handler("following the viewer's slice")
    def on_viewer_slice(self, case_id: str, plane: str, evt: gr.EventData) -> gr.Slider:
        """The viewer scrolled: the slice slider follows (the metrics are recomputed next)."""
        index = int(getattr(evt, "_data", {}).get("index", 0))
        return gr.Slider(value=self.explorer.clamp(case_id, plane, index) + 1)

    @handler("opening the case")
    def on_case(self, case_id: str, plane: str) -> tuple[Any, ...]:
        """Case change: slice slider (lesion slice), case summary; per-volume metrics cleared."""
        return (
            slider_for(self.explorer, case_id, plane),
            self.case_info(self.explorer.library.get(case_id).case_id),
            VOLUME_HINT,
        )

    @handler("changing the plane")
    def on_plane(self, case_id: str, plane: str) -> gr.Slider:
        """Plane change: slice slider range and the lesion slice of that plane."""
        return slider_for(self.explorer, case_id, plane)

    @handler("preparing the case")
    def on_warm(self, case_id: str) -> None:
        """Start re-creating a phantom case's subject in the background (real images at any dose)."""
        try:
            self.explorer.library.get(case_id).start_phantom()
        except VCEInputError:
            pass  # the case could not be opened: the image events already said so

    @handler("showing the model card")
    def on_generator(self, generator: str) -> tuple[str, str]:
        """Model card summary of the selected generator; per-volume metrics cleared."""
        return self.explorer.generators.summary(generator), VOLUME_HINT

    def on_clear_volume(self) -> str:
        """The per-volume metrics belong to another view once the dose changes."""
        return VOLUME_HINT

    @handler("computing the per-volume metrics")
    def on_volume_metrics(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        request: gr.Request = None,  # type: ignore[assignment]
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        """Per-volume metrics at the current dose (whole-volume synthesis; cached)."""
        dose = dose_from_percent(dose_pct, name="the dose")
        return self.explorer.volume_metrics(
            case_id,
            generator,
            dose,
            progress=lambda f, what: progress(f, desc=what),
            session=f"volume-{_session(request)}",
        )

    @handler("echoing the image")
    def echo_image(self, case_id: str, plane: str, index: float) -> Any:
        """Benchmark reference: the cached native slice as a PNG panel (a trivial image event)."""
        view = self.view_of(ViewControls(case_id, None, 0, plane, index))
        return self.explorer.native_panel(view, self.explorer.library.get(case_id).presets["Brain T1"])

    # -- layout and events -----------------------------------------------------------------------

    def initial_value(self) -> tuple[str, int, int, str]:
        """The first screen (viewer value, slice index, slice count, case line); computed at build time."""
        if self.first_case is None:
            return "", 0, 2, ""
        try:
            case_id = self.first_case
            index = self.explorer.default_index(case_id, "axial")
            view = View(case_id, self.first_generator, dose_from_percent(DEFAULT_DOSE_PCT), "axial", index)
            value = self.viewer_value(view)  # precomputation starts when a page opens (on_analysis)
            return value, index, self.explorer.slice_count(case_id, "axial"), self.case_info(case_id)
        except VCEInputError as exc:
            return "", 0, 2, f"**The first case could not be opened:** {exc}"

    def mount(self, demo: gr.Blocks) -> ExplorerComponents:
        """Add the tab (inside ``gr.Tabs``) and wire its events; returns its components."""
        if self.first_case is not None:
            threading.Thread(
                target=self.explorer.warm_up, args=(self.first_case, self.first_generator), daemon=True
            ).start()
        value, index, count, info = self.initial_value()

        with gr.Tab("Dose explorer", id="explorer"):
            if self.first_case is None:
                gr.Markdown(
                    f"**No cases found in `{self.data_dir}`.** Start the app with `--data DIR` pointing to "
                    "a folder of case folders (each with case.json), or run `python app.py` without "
                    "`--data` to build the demo phantom cases."
                )
            controls, case_md, viewer = controls_and_viewer(
                lambda: self._controls(index, count),
                info,
                value,
                js=VIEWER_JS,
                loader=self.viewer_slices,
                elem_id="explorer-viewer-host",
            )
            analysis = self._analysis()
        c = ExplorerComponents(case_md=case_md, viewer=viewer, **controls, **analysis)
        self._wire(demo, c)
        return c

    def _controls(self, index: int, count: int) -> dict[str, Any]:
        """Left column: case, generator, dose, plane, slice, model card."""
        names = self.generator_names
        case_dd = case_dropdown(self.case_ids, self.first_case)
        gen_dd = gr.Dropdown(
            choices=names, value=self.first_generator, label="Generator", interactive=bool(names)
        )
        dose = gr.Slider(
            0, 100, value=DEFAULT_DOSE_PCT, step=1, label="Dose (% of standard dose)", elem_id="dose-slider"
        )
        info = "coronal/sagittal: each new dose needs the whole volume once"
        return {
            "case_dd": case_dd,
            "gen_dd": gen_dd,
            "dose": dose,
            **plane_and_slice(index, count, info=info),
            **model_card(self.explorer.generators.summary(self.first_generator)),
        }

    @staticmethod
    def _analysis() -> dict[str, Any]:
        """Bottom row: per-slice and per-volume metrics, noise and dose–response charts, swipe."""
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                metrics_md = gr.Markdown(elem_classes=["vce-metrics"])
                vol_btn = gr.Button("Compute per-volume metrics for this view", size="sm")
                vol_md = gr.Markdown(VOLUME_HINT, elem_classes=["vce-metrics"])
            with gr.Column(scale=3, min_width=320):
                noise_plot = gr.Plot(label="Noise", show_label=False)
            with gr.Column(scale=3, min_width=320):
                response_plot = gr.Plot(label="Dose–response", show_label=False)
        with gr.Accordion("Swipe comparison", open=False):
            swipe = gr.ImageSlider(
                label="Swipe: synthetic (left) vs real (right)",
                format="png",
                interactive=False,
                buttons=["fullscreen"],
                max_height=420,
            )
        echo_img = gr.Image(visible=False, format="png", type="numpy")
        api_echo = gr.Button(visible=False)
        return {
            "metrics_md": metrics_md,
            "vol_btn": vol_btn,
            "vol_md": vol_md,
            "response_plot": response_plot,
            "noise_plot": noise_plot,
            "swipe": swipe,
            "echo_img": echo_img,
            "api_echo": api_echo,
        }

    def _wire(self, demo: gr.Blocks, c: ExplorerComponents) -> None:
        """Events: each control updates the viewer, then the metrics and charts of the new view."""
        view, outputs = c.view_inputs, c.analysis_outputs

        def then_view_and_analysis(event: Any) -> None:
            event.then(self.on_view, view, [c.viewer], **FAST, **PRIVATE).then(
                self.on_analysis, view, outputs, **ANALYSIS, **PRIVATE
            )

        moved = {"show_progress": "hidden", "trigger_mode": "always_last", **PRIVATE}
        for control in (c.dose, c.plane, c.case_dd, c.gen_dd):
            control.input(self.on_moved, [c.case_dd, c.gen_dd, c.dose, c.plane], None, **moved)
        dose_event = c.dose.change(self.on_view, view, [c.viewer], api_name="dose", **FAST)
        dose_event.then(self.on_analysis, view, outputs, api_name="analysis", **ANALYSIS)
        c.dose.change(self.on_clear_volume, None, [c.vol_md], show_progress="hidden", **PRIVATE)
        c.slice_sl.input(self.on_analysis, view, outputs, js=SYNC_SLICE_JS, **ANALYSIS, **PRIVATE)
        c.viewer.slice(self.on_viewer_slice, [c.case_dd, c.plane], [c.slice_sl], **FAST, **PRIVATE).then(
            self.on_analysis, view, outputs, **ANALYSIS, **PRIVATE
        )
        then_view_and_analysis(
            c.plane.input(self.on_plane, [c.case_dd, c.plane], [c.slice_sl], api_name="plane")
        )
        case_event = c.case_dd.input(
            self.on_case, [c.case_dd, c.plane], [c.slice_sl, c.case_md, c.vol_md], api_name="case"
        )
        then_view_and_analysis(case_event)
        case_event.then(self.on_warm, [c.case_dd], None, show_progress="hidden", **PRIVATE)
        then_view_and_analysis(
            c.gen_dd.input(self.on_generator, [c.gen_dd], [c.card_md, c.vol_md], api_name="model_card")
        )
        wire_volume_metrics(
            c, self.on_volume_metrics, [c.case_dd, c.gen_dd, c.dose], api_name="volume_metrics"
        )
        c.api_echo.click(
            self.echo_image, [c.case_dd, c.plane, c.slice_sl], [c.echo_img], api_name="echo_image", **FAST
        )
        if self.first_case is not None:
            demo.load(self.on_analysis, view, outputs, **ANALYSIS, **PRIVATE).then(
                self.on_warm, [c.case_dd], None, show_progress="hidden", **PRIVATE
            )
