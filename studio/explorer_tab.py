"""The "Dose explorer" tab: layout, events and handlers over a :class:`~studio.explorer.Explorer`.

Mount inside the app's ``gr.Blocks`` and ``gr.Tabs``::

    tab = ExplorerTab(Explorer(library, generators), data_dir)
    with gr.Blocks() as demo, gr.Tabs():
        tab.mount(demo)

Handlers are plain methods (``tab.on_dose(...)``, ``tab.on_render(...)``) that tests call directly; each
goes through the studio's one error policy (:func:`studio.errors.handler`). The dose is in percent of the
standard dose only here, at the slider; it is a fraction everywhere below (:mod:`vce_core.domain`).

Public endpoints (``api_name``): ``/dose`` (synthetic panel, the latency-critical path), ``/dose_panels``,
``/render``, ``/charts``, ``/window_preset``, ``/plane``, ``/case``, ``/model_card``, ``/volume_metrics`` and
``/echo_image`` (benchmark reference).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import handler
from studio.explorer import Explorer, View
from vce_core.display import PLANES, WINDOW_PRESETS, Window
from vce_core.domain import dose_from_percent, format_dose
from vce_core.errors import VCEInputError

DEFAULT_DOSE_PCT = 33
"""Dose slider position when the page opens (percent of the standard dose)."""

DEFAULT_PRESET = "Brain T1"
IMAGE_EVENT_CONCURRENCY = 2
FAST = {
    "trigger_mode": "always_last",
    "concurrency_limit": IMAGE_EVENT_CONCURRENCY,
    "show_progress": "hidden",
}
"""Event options of every image event (``.change``/``.input`` with the last value winning)."""

PRIVATE = {**FAST, "api_visibility": "private"}


def case_label(case_id: str) -> str:
    """Dropdown label of a case id ``group/.../case``: the case name, then its folder in brackets."""
    return case_id.split("/")[-1] + (f"  ({case_id.rsplit('/', 1)[0]})" if "/" in case_id else "")


def window_of(level: float, width: float) -> Window:
    """The window of the level/width sliders (image units; width kept positive)."""
    return Window(float(level), max(float(width), 1e-6))


def synthetic_label(generator: str | None, dose: float) -> str:
    """Label of the synthetic panel, e.g. ``Synthetic · 33 % dose · ld_cgan``."""
    return f"Synthetic · {format_dose(dose)} dose" + (f" · {generator}" if generator else "")


def baseline_label(dose: float) -> str:
    """Label of the linear-baseline panel."""
    return f"Linear baseline · {format_dose(dose)} dose"


@dataclass
class InitialView:
    """The first screen, computed when the app is built so that the page opens with images."""

    index: int = 0
    count: int = 2
    window: Window = field(default_factory=lambda: Window(0.5, 1.0))
    range: tuple[float, float] = (0.0, 1.0)
    images: dict[str, Any] = field(default_factory=dict)
    info: str = ""
    error: str | None = None

    def image(self, key: str, default: Any = None) -> Any:
        """An initial panel value (image or label) by name."""
        return self.images.get(key, default)


@dataclass
class ExplorerComponents:
    """The tab's Gradio components (inputs of the view, image panels, charts)."""

    case_md: gr.Markdown
    case_dd: gr.Dropdown
    gen_dd: gr.Dropdown
    card_md: gr.Markdown
    dose: gr.Slider
    plane: gr.Radio
    slice_sl: gr.Slider
    preset: gr.Radio
    level: gr.Slider
    width: gr.Slider
    native_img: gr.Image
    syn_img: gr.Image
    real_img: gr.Image
    sd_img: gr.Image
    base_img: gr.Image
    diff_img: gr.Image
    swipe: gr.ImageSlider
    metrics_md: gr.Markdown
    vol_btn: gr.Button
    vol_md: gr.Markdown
    response_plot: gr.Plot
    noise_plot: gr.Plot
    api_echo: gr.Button

    @property
    def view_inputs(self) -> list[Any]:
        return [self.case_dd, self.gen_dd, self.dose, self.plane, self.slice_sl, self.level, self.width]

    @property
    def image_outputs(self) -> list[Any]:
        return [
            self.native_img,
            self.sd_img,
            self.syn_img,
            self.real_img,
            self.base_img,
            self.diff_img,
            self.swipe,
            self.metrics_md,
        ]

    @property
    def chart_inputs(self) -> list[Any]:
        return [self.case_dd, self.gen_dd, self.dose, self.plane, self.slice_sl]

    @property
    def chart_outputs(self) -> list[Any]:
        return [self.response_plot, self.noise_plot]


class ExplorerTab:
    """The Dose explorer: real vs synthetic vs linear baseline at the slider's dose, metrics and charts."""

    def __init__(self, explorer: Explorer, data_dir: Path) -> None:
        self.explorer = explorer
        self.data_dir = Path(data_dir)
        self.case_ids = explorer.library.case_ids()
        self.generator_names = explorer.generators.names()
        self.first_case = self.case_ids[0] if self.case_ids else None
        self.first_generator = self.generator_names[0] if self.generator_names else None

    # -- values of the view ---------------------------------------------------------------------

    @staticmethod
    def view_of(case_id: str, generator: str | None, dose_pct: float, plane: str, index: float) -> View:
        """The view of the sliders: ``dose_pct`` in percent, ``index`` the 1-based slice number shown."""
        dose = dose_from_percent(dose_pct, name="the dose")
        return View(str(case_id), generator or None, dose, str(plane), int(index) - 1)

    def real_label(self, case_id: str, dose: float, available: bool) -> str:
        """Label of the real panel: acquired, simulated (phantom) or not acquired at ``dose``."""
        if not available:
            return f"Real · {format_dose(dose)} dose · not acquired"
        kind = "simulated acquisition" if self.explorer.library.get(case_id).is_phantom else "acquired"
        return f"Real · {format_dose(dose)} dose · {kind}"

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

    def all_panels(
        self, case_id: str, generator: str | None, dose_pct: float, plane: str, index: float, window: Window
    ) -> dict[str, Any]:
        """Raw values of every image panel and their labels."""
        view = self.view_of(case_id, generator, dose_pct, plane, index)
        native, standard = self.explorer.static_panels(view, window)
        panels = self.explorer.dose_panels(view, window)
        return {
            "native": native,
            "standard": standard,
            "synthetic": panels.synthetic,
            "synthetic_label": synthetic_label(generator, view.dose),
            "real": panels.real,
            "real_label": self.real_label(case_id, view.dose, panels.real_available),
            "baseline": panels.baseline,
            "baseline_label": baseline_label(view.dose),
            "difference": panels.difference,
            "swipe": panels.swipe,
            "metrics": panels.metrics_md,
        }

    # -- handlers --------------------------------------------------------------------------------

    @handler("updating the synthetic image")
    def on_dose(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        plane: str,
        index: float,
        level: float,
        width: float,
    ) -> gr.Image:
        """Fast path of the dose slider: the synthetic panel only (+ its label with the dose)."""
        view = self.view_of(case_id, generator, dose_pct, plane, index)
        image = self.explorer.synthetic_panel(view, window_of(level, width))
        return gr.Image(value=image, label=synthetic_label(generator, view.dose))

    @handler("updating the dose panels")
    def on_dose_rest(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        plane: str,
        index: float,
        level: float,
        width: float,
    ) -> tuple[Any, ...]:
        """Everything else that depends on the dose: real, baseline, difference, swipe, metrics, noise."""
        view = self.view_of(case_id, generator, dose_pct, plane, index)
        panels = self.explorer.dose_panels(view, window_of(level, width))
        return (
            gr.Image(value=panels.real, label=self.real_label(case_id, view.dose, panels.real_available)),
            gr.Image(value=panels.baseline, label=baseline_label(view.dose)),
            panels.difference,
            gr.ImageSlider(value=panels.swipe, visible=panels.swipe is not None),
            panels.metrics_md,
            self.explorer.noise_chart(view),
        )

    @handler("rendering the panels")
    def on_render(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        plane: str,
        index: float,
        level: float,
        width: float,
    ) -> tuple[Any, ...]:
        """Every image panel (window/level change, slice change)."""
        v = self.all_panels(case_id, generator, dose_pct, plane, index, window_of(level, width))
        return (
            v["native"],
            v["standard"],
            gr.Image(value=v["synthetic"], label=v["synthetic_label"]),
            gr.Image(value=v["real"], label=v["real_label"]),
            gr.Image(value=v["baseline"], label=v["baseline_label"]),
            v["difference"],
            gr.ImageSlider(value=v["swipe"], visible=v["swipe"] is not None),
            v["metrics"],
        )

    @handler("drawing the charts")
    def on_charts(
        self, case_id: str, generator: str, dose_pct: float, plane: str, index: float
    ) -> tuple[Any, Any]:
        """Dose–response and noise charts of the current slice."""
        view = self.view_of(case_id, generator, dose_pct, plane, index)
        return self.explorer.dose_response(view), self.explorer.noise_chart(view)

    @handler("applying the window preset")
    def on_preset(self, case_id: str, preset: str, plane: str, index: float) -> tuple[gr.Slider, gr.Slider]:
        """Window preset → level and width sliders."""
        window = self.explorer.window_for(case_id, preset, plane, int(index) - 1)
        return gr.Slider(value=round(window.level, 4)), gr.Slider(value=round(window.width, 4))

    @handler("opening the case")
    def on_case(self, case_id: str, preset: str, plane: str) -> tuple[Any, ...]:
        """Case change: slice slider (through the largest lesion), window sliders, case summary."""
        explorer = self.explorer
        index = explorer.default_index(case_id, plane)
        lo, hi = explorer.window_range(case_id)
        window = explorer.window_for(case_id, preset, plane, index)
        return (
            gr.Slider(minimum=1, maximum=explorer.slice_count(case_id, plane), value=index + 1),
            gr.Slider(minimum=lo, maximum=hi, step=hi / 1000, value=round(window.level, 4)),
            gr.Slider(minimum=hi / 1000, maximum=hi, step=hi / 1000, value=round(window.width, 4)),
            self.case_info(explorer.library.get(case_id).case_id),
        )

    @handler("changing the plane")
    def on_plane(self, case_id: str, plane: str) -> gr.Slider:
        """Plane change: slice slider range and the lesion slice of that plane."""
        index = self.explorer.default_index(case_id, plane)
        return gr.Slider(minimum=1, maximum=self.explorer.slice_count(case_id, plane), value=index + 1)

    @handler("preparing the case")
    def on_warm(self, case_id: str) -> None:
        """Start re-creating a phantom case's subject in the background (real images at any dose)."""
        try:
            self.explorer.library.get(case_id).start_phantom()
        except VCEInputError:
            pass  # the case could not be opened: the image events already said so

    @handler("showing the model card")
    def on_generator(self, generator: str) -> str:
        """Model card summary of the selected generator."""
        return self.explorer.generators.summary(generator)

    @handler("computing the per-volume metrics")
    def on_volume_metrics(
        self,
        case_id: str,
        generator: str,
        dose_pct: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        """Per-volume metrics at the current dose (whole-volume synthesis; cached)."""
        dose = dose_from_percent(dose_pct, name="the dose")
        return self.explorer.volume_metrics(
            case_id, generator, dose, progress=lambda f, what: progress(f, desc=what)
        )

    @handler("echoing the image")
    def echo_image(self, case_id: str, plane: str, index: float, level: float, width: float) -> Any:
        """Benchmark reference: the cached native panel of the same size as the synthetic one."""
        view = self.view_of(case_id, None, 0, plane, index)
        return self.explorer.static_panels(view, window_of(level, width))[0]

    # -- first screen ----------------------------------------------------------------------------

    def initial_view(self) -> InitialView:
        """The first case's panels at the default dose, slice and window (an error message if it fails)."""
        case_id, generator = self.first_case, self.first_generator
        if case_id is None:
            return InitialView()
        explorer, dose = self.explorer, dose_from_percent(DEFAULT_DOSE_PCT)
        try:
            index = explorer.default_index(case_id, "axial")
            window = explorer.window_for(case_id, DEFAULT_PRESET, "axial", index)
            view = View(case_id, generator, dose, "axial", index)
            native, standard = explorer.static_panels(view, window)
            real, real_available, baseline = explorer.reference_panels(view, window)
            return InitialView(
                index=index,
                count=explorer.slice_count(case_id, "axial"),
                window=window,
                range=explorer.window_range(case_id),
                images={
                    "native": native,
                    "standard": standard,
                    "synthetic_label": synthetic_label(generator, dose),
                    "real": real,
                    "real_label": self.real_label(case_id, dose, real_available),
                    "baseline": baseline,
                    "baseline_label": baseline_label(dose),
                },
                info=self.case_info(case_id),
            )
        except VCEInputError as exc:
            return InitialView(error=str(exc))

    # -- layout and events -----------------------------------------------------------------------

    def mount(self, demo: gr.Blocks) -> ExplorerComponents:
        """Add the tab (inside ``gr.Tabs``) and wire its events; returns its components."""
        if self.first_case is not None:
            threading.Thread(
                target=self.explorer.warm_up, args=(self.first_case, self.first_generator), daemon=True
            ).start()
        initial = self.initial_view()
        with gr.Tab("Dose explorer", id="explorer"):
            if self.first_case is None:
                gr.Markdown(
                    f"**No cases found in `{self.data_dir}`.** Start the app with `--data DIR` pointing to "
                    "a folder of case folders (each with case.json), or run `python app.py` without "
                    "`--data` to build the demo phantom cases."
                )
            if initial.error is not None:
                gr.Markdown(f"**The first case could not be opened:** {initial.error}")
            case_md = gr.Markdown(initial.info, elem_classes=["vce-caption"])
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=260):
                    controls = self._controls(initial)
                with gr.Column(scale=4):
                    panels = self._panels(initial)
            with gr.Row():
                charts = {
                    "response_plot": gr.Plot(label="Dose–response"),
                    "noise_plot": gr.Plot(label="Noise"),
                }
            api_echo = gr.Button(visible=False)
        c = ExplorerComponents(case_md=case_md, **controls, **panels, **charts, api_echo=api_echo)
        self._wire(demo, c)
        return c

    def _controls(self, initial: InitialView) -> dict[str, Any]:
        """Left column: case, generator, model card, dose, plane, slice, window preset, level, width."""
        names = self.generator_names
        case_dd = gr.Dropdown(
            choices=[(case_label(c), c) for c in self.case_ids],
            value=self.first_case,
            label="Case",
            interactive=True,
        )
        gen_dd = gr.Dropdown(
            choices=names, value=self.first_generator, label="Generator", interactive=bool(names)
        )
        with gr.Accordion("Model card", open=not names):
            card_md = gr.Markdown(self.explorer.generators.summary(self.first_generator))
        dose = gr.Slider(
            0, 100, value=DEFAULT_DOSE_PCT, step=1, label="Dose (% of standard dose)", elem_id="dose-slider"
        )
        plane = gr.Radio(
            list(PLANES),
            value="axial",
            label="Plane",
            info="Coronal/sagittal: a 2-D generator synthesizes the whole volume once per new dose (slower).",
        )
        slice_sl = gr.Slider(
            1, max(initial.count, 2), value=initial.index + 1, step=1, label="Slice", elem_id="slice-slider"
        )
        preset = gr.Radio(list(WINDOW_PRESETS), value=DEFAULT_PRESET, label="Window preset")
        lo, hi = initial.range
        level = gr.Slider(
            lo,
            hi,
            step=hi / 1000,
            value=round(initial.window.level, 4),
            label="Window level (a.u.)",
            elem_id="level-slider",
        )
        width = gr.Slider(
            hi / 1000,
            hi,
            step=hi / 1000,
            value=round(initial.window.width, 4),
            label="Window width (a.u.)",
            elem_id="width-slider",
        )
        return {
            "case_dd": case_dd,
            "gen_dd": gen_dd,
            "card_md": card_md,
            "dose": dose,
            "plane": plane,
            "slice_sl": slice_sl,
            "preset": preset,
            "level": level,
            "width": width,
        }

    @staticmethod
    def _panels(initial: InitialView) -> dict[str, Any]:
        """Right column: the six image panels, the swipe comparison and the metrics."""
        init = initial.image
        img_kw: dict[str, Any] = {
            "format": "png",
            "type": "numpy",
            "interactive": False,
            "elem_classes": ["vce-panel"],
            "buttons": ["fullscreen"],
            "height": 300,
        }
        with gr.Row():
            native_img = gr.Image(init("native"), label="Native (pre-contrast)", **img_kw)
            syn_img = gr.Image(
                init("synthetic"),
                label=init("synthetic_label", "Synthetic"),
                elem_id="synthetic-panel",
                **img_kw,
            )
            real_img = gr.Image(
                init("real"), label=init("real_label", "Real"), elem_id="real-panel", **img_kw
            )
        with gr.Row():
            sd_img = gr.Image(init("standard"), label="Standard dose (100 %)", **img_kw)
            base_img = gr.Image(init("baseline"), label=init("baseline_label", "Linear baseline"), **img_kw)
            diff_img = gr.Image(
                init("difference"),
                label="Difference: synthetic − real (±25 % of window width)",
                **{**img_kw, "elem_classes": ["vce-diff"]},
            )
        with gr.Row():
            swipe_value = init("swipe")
            swipe = gr.ImageSlider(
                swipe_value,
                label="Swipe: synthetic (left) vs real (right)",
                format="png",
                interactive=False,
                visible=swipe_value is not None,
                buttons=["fullscreen"],
                max_height=420,
            )
            with gr.Column():
                metrics_md = gr.Markdown(init("metrics", ""))
                vol_btn = gr.Button("Compute per-volume metrics at this dose", size="sm")
                vol_md = gr.Markdown()
        return {
            "native_img": native_img,
            "syn_img": syn_img,
            "real_img": real_img,
            "sd_img": sd_img,
            "base_img": base_img,
            "diff_img": diff_img,
            "swipe": swipe,
            "metrics_md": metrics_md,
            "vol_btn": vol_btn,
            "vol_md": vol_md,
        }

    def _wire(self, demo: gr.Blocks, c: ExplorerComponents) -> None:
        """Events of the tab: each control updates what depends on it, the page load fills the rest."""
        view, images, charts = c.view_inputs, c.image_outputs, c.chart_outputs
        c.dose.change(self.on_dose, view, [c.syn_img], api_name="dose", **FAST).then(
            self.on_dose_rest,
            view,
            [c.real_img, c.base_img, c.diff_img, c.swipe, c.metrics_md, c.noise_plot],
            api_name="dose_panels",
            **{**FAST, "show_progress": "minimal"},
        )
        c.slice_sl.input(self.on_render, view, images, api_name="render", **FAST).then(
            self.on_charts, c.chart_inputs, charts, api_name="charts", **FAST
        )
        c.level.input(self.on_render, view, images, **PRIVATE)
        c.width.input(self.on_render, view, images, **PRIVATE)
        c.preset.input(
            self.on_preset,
            [c.case_dd, c.preset, c.plane, c.slice_sl],
            [c.level, c.width],
            api_name="window_preset",
        ).then(self.on_render, view, images, **PRIVATE)
        c.plane.input(self.on_plane, [c.case_dd, c.plane], [c.slice_sl], api_name="plane").then(
            self.on_render, view, images, **PRIVATE
        ).then(self.on_charts, c.chart_inputs, charts, **PRIVATE)
        c.case_dd.input(
            self.on_case,
            [c.case_dd, c.preset, c.plane],
            [c.slice_sl, c.level, c.width, c.case_md],
            api_name="case",
        ).then(self.on_render, view, images, **PRIVATE).then(
            self.on_charts, c.chart_inputs, charts, **PRIVATE
        ).then(self.on_warm, [c.case_dd], None, api_visibility="private", show_progress="hidden")
        c.gen_dd.input(self.on_generator, [c.gen_dd], [c.card_md], api_name="model_card").then(
            self.on_render, view, images, **PRIVATE
        ).then(self.on_charts, c.chart_inputs, charts, **PRIVATE)
        c.vol_btn.click(
            self.on_volume_metrics,
            [c.case_dd, c.gen_dd, c.dose],
            [c.vol_md],
            api_name="volume_metrics",
            concurrency_limit=1,
        )
        c.api_echo.click(
            self.echo_image,
            [c.case_dd, c.plane, c.slice_sl, c.level, c.width],
            [c.native_img],
            api_name="echo_image",
            **FAST,
        )
        if self.first_case is not None:
            demo.load(self.on_render, view, images, **PRIVATE).then(
                self.on_charts, c.chart_inputs, charts, **PRIVATE
            ).then(self.on_warm, [c.case_dd], None, api_visibility="private", show_progress="hidden")
