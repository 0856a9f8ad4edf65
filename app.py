"""Dose-reduction review studio: Dose explorer · Upload & synthesize · Reader study · Study admin.

Run ``python app.py`` (no arguments): builds a few demo phantom cases under ``data/demo/`` on the first
run, loads every generator in ``assets/models/``, opens the reader-study database and serves the studio
on http://127.0.0.1:7860. Options: ``--host``, ``--port``, ``--data DIR`` (a folder of case folders, real
or phantom), ``--models DIR``, ``--db URL`` (default ``$VCE_DB_URL`` or ``sqlite:///<data>/reader_study.db``).

Tests and benchmarks build the app with :func:`build_app` and launch it themselves.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from reader_study.ui import READER_JS  # noqa: E402
from studio.explorer import (  # noqa: E402
    CaseLibrary,
    Explorer,
    GeneratorRegistry,
    View,
)
from studio.render import PLANES, WINDOW_PRESETS, Window  # noqa: E402
from studio.upload import (  # noqa: E402
    UploadArea,
    dicom_reference,
    export,
    parse_doses,
    synthesize_volumes,
    validate_uploads,
)
from vce_core.errors import VCEInputError  # noqa: E402

log = logging.getLogger("vce.app")

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = Path("data")
DEFAULT_MODELS = REPO_ROOT / "assets" / "models"
DEMO_SEEDS: tuple[int, ...] = (11, 12, 13, 14)
DEMO_DOSES: tuple[float, ...] = (0.1, 0.2, 0.33)
DEFAULT_DOSE_PCT = 33
IMAGE_EVENT_CONCURRENCY = 2

CSS = """
.vce-panel .image-container, .vce-panel .image-frame { background: #000; }
.vce-panel img, .vce-diff img { width: 100% !important; height: 100% !important; object-fit: contain; }
.vce-caption { font-size: 0.85em; color: var(--body-text-color-subdued); }
footer { display: none !important; }
"""

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(action: str) -> Callable[[F], F]:
    """Decorator for event handlers: bad input → ``gr.Error`` with the plain-words message, never a traceback.

    :class:`VCEInputError` messages are shown as they are; anything else is logged with its traceback on
    the server and shown as a short apology naming ``action``.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except VCEInputError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except Exception:
                log.exception("unexpected error while %s", action)
                raise gr.Error(
                    f"Something went wrong while {action}. The details are in the server log.",
                    print_exception=False,
                ) from None

        return inner  # type: ignore[return-value]

    return wrap


# ----------------------------------------------------------------------------------------------------
# demo data


def ensure_demo_cases(
    data_dir: Path, *, seeds: tuple[int, ...] = DEMO_SEEDS, resolution: float = 1.0
) -> list[Path]:
    """Create the demo phantom cases under ``data_dir/demo`` unless ``data_dir`` already holds cases.

    Each case is ``vce_core.phantom.make_case(seed, doses=(0.1, 0.2, 0.33), resolution=resolution)``
    saved with ``vce_core.io.save_case``; progress is printed. Returns the case folders created.
    """
    from vce_core.io import iter_case_folders, save_case

    data_dir.mkdir(parents=True, exist_ok=True)
    existing = [f for f in iter_case_folders(data_dir) if f.relative_to(data_dir).parts[:1] != ("uploads",)]
    if existing:
        return []
    from vce_core.phantom import make_case

    created = []
    print(f"Building {len(seeds)} demo phantom cases in {data_dir / 'demo'} (first run only) ...", flush=True)
    for n, seed in enumerate(seeds, start=1):
        t0 = time.perf_counter()
        case = make_case(seed, doses=DEMO_DOSES, resolution=resolution)
        case_id = case.meta.get("case_id") or f"phantom-{seed:04d}"
        folder = data_dir / "demo" / str(case_id)
        save_case(case, folder)
        created.append(folder)
        print(f"  [{n}/{len(seeds)}] {case_id} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return created


# ----------------------------------------------------------------------------------------------------
# reader study


def open_reader_study(
    db_url: str | None, data_dir: Path, models_dir: Path | None, *, demo_study: bool = False
) -> tuple[Any | None, str | None]:
    """Open the reader-study database and its service (the tabs are mounted later, inside the Blocks).

    With ``demo_study`` the demo study over the demo phantom cases is created once
    (``reader_study.demo.ensure_demo_study``) and its tokens are printed. Returns ``(service, None)``, or
    ``(None, message)`` with a plain-words reason (package not installed, database that cannot be opened).
    """
    try:
        from reader_study import ui  # noqa: F401  (mounted later; fail here, not inside the layout)
        from reader_study.db import SchemaVersionError, open_database
        from reader_study.service import ReaderStudyService
    except ImportError as exc:
        return None, f"The reader study is not available in this installation ({exc})."
    url = db_url or os.environ.get("VCE_DB_URL") or f"sqlite:///{(data_dir / 'reader_study.db').resolve()}"
    try:
        database = open_database(url)
    except (VCEInputError, SchemaVersionError) as exc:
        return None, f"The reader-study database could not be opened: {exc}"
    service = ReaderStudyService(database, data_root=data_dir, models_dir=models_dir)
    if demo_study:
        from reader_study.demo import ensure_demo_study
        from vce_core.io import iter_case_folders

        demo_cases = iter_case_folders(data_dir / "demo") if (data_dir / "demo").is_dir() else None
        try:
            print(ensure_demo_study(service, demo_cases, models_dir)["message"], flush=True)
        except VCEInputError as exc:
            print(f"The demo reader study was not created: {exc}", flush=True)
    return service, None


# ----------------------------------------------------------------------------------------------------
# the app


def _case_label(explorer: Explorer, case_id: str) -> str:
    return case_id.split("/")[-1] + (f"  ({case_id.rsplit('/', 1)[0]})" if "/" in case_id else "")


def build_app(
    data_dir: str | Path = DEFAULT_DATA,
    models_dir: str | Path | None = DEFAULT_MODELS,
    db_url: str | None = None,
    *,
    reader_study: bool = True,
    demo_study: bool = False,
) -> gr.Blocks:
    """Build the studio as a ``gr.Blocks`` (not launched).

    Parameters
    ----------
    data_dir: folder of case folders (searched recursively); uploads go to ``data_dir/uploads``.
    models_dir: folder of generator checkpoints (each ``weights.safetensors`` + ``card.json``).
    db_url: SQLAlchemy URL of the reader-study database (default ``$VCE_DB_URL`` or SQLite in ``data_dir``).
    reader_study: mount the Reader and Study-admin tabs when the ``reader_study`` package is installed.
    demo_study: create the demo reader study over the demo cases (``python app.py`` without ``--data``).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    library = CaseLibrary(data_dir)
    uploads = UploadArea(data_dir)
    uploads.clear_stale()
    case_ids = library.case_ids()
    # The generators (torch), the first case and the reader-study database load side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vce-start") as pool:
        generators_future = pool.submit(GeneratorRegistry, models_dir)
        if case_ids:
            pool.submit(library.get, case_ids[0])  # errors resurface (and are shown) when the case is used
        study_service, study_message = (
            open_reader_study(
                db_url, data_dir, None if models_dir is None else Path(models_dir), demo_study=demo_study
            )
            if reader_study
            else (None, None)
        )
        generators = generators_future.result()
    explorer = Explorer(library, generators)

    gen_names = generators.names()
    first_case = case_ids[0] if case_ids else None
    first_gen = gen_names[0] if gen_names else None

    # ---- handlers (closures over the explorer) ------------------------------------------------------

    def view_of(case_id: str, generator: str | None, dose_pct: float, plane: str, index: float) -> View:
        """``index`` is the 1-based slice number shown on the slider."""
        return View(str(case_id), generator or None, float(dose_pct), str(plane), int(index) - 1)

    def window_of(level: float, width: float) -> Window:
        return Window(float(level), max(float(width), 1e-6))

    def real_label(case_id: str, dose_pct: float, available: bool) -> str:
        if not available:
            return f"Real · {dose_pct:.0f} % dose · not acquired"
        kind = "simulated acquisition" if library.get(case_id).is_phantom else "acquired"
        return f"Real · {dose_pct:.0f} % dose · {kind}"

    def syn_label(generator: str | None, dose_pct: float) -> str:
        return f"Synthetic · {float(dose_pct):.0f} % dose" + (f" · {generator}" if generator else "")

    @user_errors("updating the synthetic image")
    def on_dose(
        case_id: str, generator: str, dose_pct: float, plane: str, index: float, level: float, width: float
    ):
        """Fast path of the dose slider: the synthetic panel only (+ its label with the dose)."""
        view = view_of(case_id, generator, dose_pct, plane, index)
        image = explorer.synthetic_panel(view, window_of(level, width))
        return gr.Image(value=image, label=syn_label(generator, dose_pct))

    @user_errors("updating the dose panels")
    def on_dose_rest(
        case_id: str, generator: str, dose_pct: float, plane: str, index: float, level: float, width: float
    ):
        """Everything else that depends on the dose: real, baseline, difference, swipe, metrics, noise."""
        view = view_of(case_id, generator, dose_pct, plane, index)
        panels = explorer.dose_panels(view, window_of(level, width))
        return (
            gr.Image(value=panels.real, label=real_label(case_id, dose_pct, panels.real_available)),
            gr.Image(value=panels.baseline, label=f"Linear baseline · {float(dose_pct):.0f} % dose"),
            panels.difference,
            gr.ImageSlider(value=panels.swipe, visible=panels.swipe is not None),
            panels.metrics_md,
            explorer.noise_chart(view),
        )

    def compute_all(
        case_id: str,
        generator: str | None,
        dose_pct: float,
        plane: str,
        index: float,
        level: float,
        width: float,
    ) -> dict[str, Any]:
        """Raw values of every image panel and their labels."""
        view = view_of(case_id, generator, dose_pct, plane, index)
        window = window_of(level, width)
        native, standard = explorer.static_panels(view, window)
        panels = explorer.dose_panels(view, window)
        return {
            "native": native,
            "standard": standard,
            "synthetic": panels.synthetic,
            "synthetic_label": syn_label(generator, dose_pct),
            "real": panels.real,
            "real_label": real_label(case_id, dose_pct, panels.real_available),
            "baseline": panels.baseline,
            "baseline_label": f"Linear baseline · {float(dose_pct):.0f} % dose",
            "difference": panels.difference,
            "swipe": panels.swipe,
            "metrics": panels.metrics_md,
        }

    @user_errors("rendering the panels")
    def on_render(
        case_id: str, generator: str, dose_pct: float, plane: str, index: float, level: float, width: float
    ):
        """Every image panel (window/level change, slice change)."""
        v = compute_all(case_id, generator, dose_pct, plane, index, level, width)
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

    @user_errors("drawing the charts")
    def on_charts(case_id: str, generator: str, dose_pct: float, plane: str, index: float):
        """Dose–response and noise charts of the current slice."""
        view = view_of(case_id, generator, dose_pct, plane, index)
        return explorer.dose_response(view), explorer.noise_chart(view)

    @user_errors("applying the window preset")
    def on_preset(case_id: str, preset: str, plane: str, index: float):
        """Window preset → level and width sliders."""
        window = explorer.window_for(case_id, preset, plane, int(index) - 1)
        return gr.Slider(value=round(window.level, 4)), gr.Slider(value=round(window.width, 4))

    def case_info(case_id: str) -> str:
        lc = library.get(case_id)
        case = lc.case
        spacing = " × ".join(f"{s:.3g}" for s in lc.spacing)
        kind = (
            "digital phantom: the real image is simulated at any dose"
            if lc.is_phantom
            else ("acquired data: real images only at acquired doses")
        )
        doses = ", ".join(f"{d * 100:.0f} %" for d in lc.acquired_doses)
        return (
            f"**{case_id}** · {case.field_strength:g} T · {case.agent} · {spacing} mm · "
            f"acquired doses {doses} · {kind}"
        )

    @user_errors("opening the case")
    def on_case(case_id: str, preset: str, plane: str):
        """Case change: slice slider (through the largest lesion), window sliders, case summary."""
        lc = library.get(case_id)
        index = explorer.default_index(case_id, plane)
        lo, hi = explorer.window_range(case_id)
        window = explorer.window_for(case_id, preset, plane, index)
        return (
            gr.Slider(minimum=1, maximum=explorer.slice_count(case_id, plane), value=index + 1),
            gr.Slider(minimum=lo, maximum=hi, step=hi / 1000, value=round(window.level, 4)),
            gr.Slider(minimum=hi / 1000, maximum=hi, step=hi / 1000, value=round(window.width, 4)),
            case_info(lc.case_id),
        )

    @user_errors("changing the plane")
    def on_plane(case_id: str, plane: str):
        """Plane change: slice slider range and the lesion slice of that plane."""
        index = explorer.default_index(case_id, plane)
        return gr.Slider(minimum=1, maximum=explorer.slice_count(case_id, plane), value=index + 1)

    def on_warm(case_id: str) -> None:
        """Start re-creating a phantom case's subject in the background (real images at any dose)."""
        try:
            library.get(case_id).start_phantom()
        except VCEInputError:
            pass

    def on_generator(generator: str) -> str:
        return generators.summary(generator)

    @user_errors("computing the per-volume metrics")
    def on_volume_metrics(
        case_id: str,
        generator: str,
        dose_pct: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ):
        """Per-volume metrics at the current dose (whole-volume synthesis; cached)."""
        return explorer.volume_metrics(
            case_id, generator, dose_pct, progress=lambda f, d: progress(f, desc=d)
        )

    @user_errors("echoing the image")
    def echo_image(case_id: str, plane: str, index: float, level: float, width: float):
        """Benchmark reference: the cached native panel of the same size as the synthetic one."""
        view = view_of(case_id, None, 0, plane, index)
        return explorer.static_panels(view, window_of(level, width))[0]

    # ---- upload handlers --------------------------------------------------------------------------

    def _uploaded(
        request: gr.Request,
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
    ) -> tuple[Any, Path | None]:
        session = request.session_hash if request is not None else None
        na = uploads.ingest(session, native, "native")
        sd = uploads.ingest(session, standard, "standard_dose")
        ld = uploads.ingest(session, low, "low_dose")
        return validate_uploads(na, sd, ld, low_pct, field), na

    @user_errors("checking the uploads")
    def on_check(
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
        request: gr.Request,
    ):
        """Validate the uploaded files and describe them."""
        uploaded, _ = _uploaded(request, native, standard, low, low_pct, field)
        return uploaded.describe()

    @user_errors("synthesizing the uploaded volume")
    def on_synthesize(
        native: str | None,
        standard: str | None,
        low: str | None,
        low_pct: float | None,
        field: float | None,
        generator: str,
        doses_text: str,
        fmt: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008,
    ):
        """Validate, synthesize the whole volume at every dose, export, and preview the middle slice."""
        from studio.explorer import metric_table
        from studio.render import apply_window, slice_spacing, take_slice, to_display, window_presets

        synth = generators.get(generator)
        doses = parse_doses(doses_text)
        progress(0.0, desc="reading the uploads")
        uploaded, native_path = _uploaded(request, native, standard, low, low_pct, field)
        if uploaded.low_dose_fraction is not None and uploaded.low_dose_fraction not in doses:
            doses = sorted({*doses, round(uploaded.low_dose_fraction, 4)})
        volumes = synthesize_volumes(
            synth, uploaded, doses, progress=lambda f, d: progress(0.05 + 0.8 * f, desc=d)
        )
        progress(0.9, desc=f"writing {fmt}")
        out_dir = uploads.session_dir(request.session_hash) / "export"
        reference = dicom_reference(native_path) if fmt == "DICOM" and native_path is not None else None
        archive = export(volumes, out_dir, fmt, model_name=generator, reference=reference)
        # preview: middle axial slice of the native and of the first synthetic dose
        sd = uploaded.standard_dose.data
        k = sd.shape[2] // 2
        window = window_presets(sd)["Auto (percentile)"]
        sp = slice_spacing(tuple(uploaded.native.spacing), "axial")
        first = doses[0]
        preview_na = apply_window(to_display(take_slice(uploaded.native.data, "axial", k), sp), window)
        preview_syn = apply_window(to_display(take_slice(volumes[first].data, "axial", k), sp), window)
        report = (
            f"**Done:** {len(doses)} dose(s) ({', '.join(f'{d * 100:.3g} %' for d in doses)}) with "
            f"{generator}, exported as {fmt}. Files are deleted when you close this page."
        )
        if uploaded.low_dose is not None:
            from vce_core.preprocess import brain_mask, ce_mask

            brain = brain_mask(sd)
            ce = ce_mask(uploaded.native.data, sd, mask=brain)
            inside = sd[brain]
            data_range = float(np.percentile(inside, 99.9) - np.percentile(inside, 0.1))
            table = metric_table(
                [("Synthetic", volumes[round(uploaded.low_dose_fraction, 4)].data)],
                uploaded.low_dose.data,
                brain,
                ce,
                max(data_range, 1e-6),
            )
            report += (
                f"\n\n**Synthetic vs your acquired {uploaded.low_dose_fraction * 100:.3g} % dose** "
                f"(whole volume)\n\n{table}"
            )
        progress(1.0, desc="done")
        return (
            report,
            gr.Image(value=preview_na, label=f"Native · axial slice {k + 1}"),
            gr.Image(value=preview_syn, label=f"Synthetic · {first * 100:.3g} % dose · axial slice {k + 1}"),
            gr.DownloadButton(value=str(archive), label=f"Download {archive.name}", visible=True),
        )

    def on_unload(request: gr.Request) -> None:
        uploads.end_session(request.session_hash)

    # ---- initial view ---------------------------------------------------------------------------------

    initial: dict[str, Any] = {}
    if first_case is not None:
        try:
            index0 = explorer.default_index(first_case, "axial")
            window0 = explorer.window_for(first_case, "Brain T1", "axial", index0)
            lo0, hi0 = explorer.window_range(first_case)
            threading.Thread(target=explorer.warm_up, args=(first_case, first_gen), daemon=True).start()
            view0 = View(first_case, first_gen, DEFAULT_DOSE_PCT, "axial", index0)
            native0, standard0 = explorer.static_panels(view0, window0)
            real0, real_ok0, baseline0 = explorer.reference_panels(view0, window0)
            initial = {
                "index": index0,
                "n": explorer.slice_count(first_case, "axial"),
                "window": window0,
                "range": (lo0, hi0),
                "values": {
                    "native": native0,
                    "standard": standard0,
                    "synthetic_label": syn_label(first_gen, DEFAULT_DOSE_PCT),
                    "real": real0,
                    "real_label": real_label(first_case, DEFAULT_DOSE_PCT, real_ok0),
                    "baseline": baseline0,
                    "baseline_label": f"Linear baseline · {DEFAULT_DOSE_PCT} % dose",
                },
                "info": case_info(first_case),
            }
        except VCEInputError as exc:
            initial = {"error": str(exc)}

    def init(key: str, default: Any = None) -> Any:
        return initial.get("values", {}).get(key, default)

    # ---- layout ---------------------------------------------------------------------------------------

    with gr.Blocks(title="Dose-reduction review studio", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## Dose-reduction review studio · contrast-enhanced brain MRI")
        with gr.Tabs():
            with gr.Tab("Dose explorer", id="explorer"):
                if first_case is None:
                    gr.Markdown(
                        f"**No cases found in `{data_dir}`.** Start the app with `--data DIR` pointing to "
                        "a folder of case folders (each with case.json), or run `python app.py` without "
                        "`--data` to build the demo phantom cases."
                    )
                if "error" in initial:
                    gr.Markdown(f"**The first case could not be opened:** {initial['error']}")
                case_md = gr.Markdown(initial.get("info", ""), elem_classes=["vce-caption"])
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=260):
                        case_dd = gr.Dropdown(
                            choices=[(_case_label(explorer, c), c) for c in case_ids],
                            value=first_case,
                            label="Case",
                            interactive=True,
                        )
                        gen_dd = gr.Dropdown(
                            choices=gen_names,
                            value=first_gen,
                            label="Generator",
                            interactive=bool(gen_names),
                        )
                        with gr.Accordion("Model card", open=not gen_names):
                            card_md = gr.Markdown(generators.summary(first_gen))
                        dose = gr.Slider(
                            0,
                            100,
                            value=DEFAULT_DOSE_PCT,
                            step=1,
                            label="Dose (% of standard dose)",
                            elem_id="dose-slider",
                        )
                        plane = gr.Radio(
                            list(PLANES),
                            value="axial",
                            label="Plane",
                            info="Coronal/sagittal: a 2-D generator synthesizes the whole volume once per "
                            "new dose (slower).",
                        )
                        slice_sl = gr.Slider(
                            1,
                            max(initial.get("n", 2), 2),
                            value=initial.get("index", 0) + 1,
                            step=1,
                            label="Slice",
                            elem_id="slice-slider",
                        )
                        preset = gr.Radio(list(WINDOW_PRESETS), value="Brain T1", label="Window preset")
                        lo, hi = initial.get("range", (0.0, 1.0))
                        w0 = initial.get("window", Window(0.5, 1.0))
                        level = gr.Slider(
                            lo,
                            hi,
                            step=hi / 1000,
                            value=round(w0.level, 4),
                            label="Window level (a.u.)",
                            elem_id="level-slider",
                        )
                        width = gr.Slider(
                            hi / 1000,
                            hi,
                            step=hi / 1000,
                            value=round(w0.width, 4),
                            label="Window width (a.u.)",
                            elem_id="width-slider",
                        )
                    with gr.Column(scale=4):
                        with gr.Row():
                            img_kw = {
                                "format": "png",
                                "type": "numpy",
                                "interactive": False,
                                "elem_classes": ["vce-panel"],
                                "buttons": ["fullscreen"],
                                "height": 300,
                            }
                            native_img = gr.Image(init("native"), label="Native (pre-contrast)", **img_kw)
                            syn_img = gr.Image(
                                init("synthetic"),
                                label=init("synthetic_label", "Synthetic"),
                                elem_id="synthetic-panel",
                                **{k: v for k, v in img_kw.items()},
                            )
                            real_img = gr.Image(
                                init("real"), label=init("real_label", "Real"), elem_id="real-panel", **img_kw
                            )
                        with gr.Row():
                            sd_img = gr.Image(init("standard"), label="Standard dose (100 %)", **img_kw)
                            base_img = gr.Image(
                                init("baseline"), label=init("baseline_label", "Linear baseline"), **img_kw
                            )
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
                with gr.Row():
                    response_plot = gr.Plot(label="Dose–response")
                    noise_plot = gr.Plot(label="Noise")

                api_echo = gr.Button(visible=False)

            with gr.Tab("Upload & synthesize", id="upload"):
                gr.Markdown(
                    "Upload a co-registered **native** and **standard-dose** T1 (NIfTI `.nii`/`.nii.gz`, "
                    "or a `.zip` of one DICOM series). Optionally add an **acquired low-dose** image with "
                    "its dose to compare. Uploads are kept on the server only while this page is open."
                )
                with gr.Row():
                    up_native = gr.File(
                        label="Native (pre-contrast)", file_types=[".nii", ".gz", ".zip", ".dcm"]
                    )
                    up_sd = gr.File(label="Standard dose", file_types=[".nii", ".gz", ".zip", ".dcm"])
                    with gr.Column():
                        up_ld = gr.File(
                            label="Acquired low dose (optional)", file_types=[".nii", ".gz", ".zip", ".dcm"]
                        )
                        up_ld_pct = gr.Number(
                            label="Its dose (% of standard dose)", value=None, minimum=0, maximum=100
                        )
                with gr.Row():
                    up_field = gr.Number(label="Field strength (T)", value=3.0, minimum=0.1, maximum=12)
                    up_gen = gr.Dropdown(
                        choices=gen_names, value=first_gen, label="Generator", interactive=bool(gen_names)
                    )
                    up_doses = gr.Textbox(
                        label="Doses to synthesize (% of standard dose)", value="10, 25, 33"
                    )
                    up_fmt = gr.Radio(["NIfTI", "DICOM"], value="NIfTI", label="Download as")
                with gr.Row():
                    check_btn = gr.Button("Check files")
                    synth_btn = gr.Button("Synthesize", variant="primary", interactive=bool(gen_names))
                if not gen_names:
                    gr.Markdown(generators.empty_message())
                up_status = gr.Markdown()
                with gr.Row():
                    up_prev_na = gr.Image(label="Native", format="png", interactive=False, height=300)
                    up_prev_syn = gr.Image(label="Synthetic", format="png", interactive=False, height=300)
                download = gr.DownloadButton("Download", visible=False)

            if study_service is not None:
                from reader_study.ui import mount_reader_study

                mount_reader_study(study_service)
            elif study_message:
                with gr.Tab("Reader study"):
                    gr.Markdown(study_message)

        # ---- events -------------------------------------------------------------------------------------
        view_inputs = [case_dd, gen_dd, dose, plane, slice_sl, level, width]
        image_outputs = [native_img, sd_img, syn_img, real_img, base_img, diff_img, swipe, metrics_md]
        chart_inputs = [case_dd, gen_dd, dose, plane, slice_sl]
        fast = {
            "trigger_mode": "always_last",
            "concurrency_limit": IMAGE_EVENT_CONCURRENCY,
            "show_progress": "hidden",
        }

        dose.change(on_dose, view_inputs, [syn_img], api_name="dose", **fast).then(
            on_dose_rest,
            view_inputs,
            [real_img, base_img, diff_img, swipe, metrics_md, noise_plot],
            api_name="dose_panels",
            **{**fast, "show_progress": "minimal"},
        )
        slice_sl.input(on_render, view_inputs, image_outputs, api_name="render", **fast).then(
            on_charts,
            chart_inputs,
            [response_plot, noise_plot],
            api_name="charts",
            **fast,
        )
        level.input(on_render, view_inputs, image_outputs, api_visibility="private", **fast)
        width.input(on_render, view_inputs, image_outputs, api_visibility="private", **fast)
        preset.input(
            on_preset, [case_dd, preset, plane, slice_sl], [level, width], api_name="window_preset"
        ).then(
            on_render,
            view_inputs,
            image_outputs,
            api_visibility="private",
            **fast,
        )
        plane.input(on_plane, [case_dd, plane], [slice_sl], api_name="plane").then(
            on_render,
            view_inputs,
            image_outputs,
            api_visibility="private",
            **fast,
        ).then(on_charts, chart_inputs, [response_plot, noise_plot], api_visibility="private", **fast)
        case_dd.input(
            on_case, [case_dd, preset, plane], [slice_sl, level, width, case_md], api_name="case"
        ).then(
            on_render,
            view_inputs,
            image_outputs,
            api_visibility="private",
            **fast,
        ).then(on_charts, chart_inputs, [response_plot, noise_plot], api_visibility="private", **fast).then(
            on_warm, [case_dd], None, api_visibility="private", show_progress="hidden"
        )
        gen_dd.input(on_generator, [gen_dd], [card_md], api_name="model_card").then(
            on_render,
            view_inputs,
            image_outputs,
            api_visibility="private",
            **fast,
        ).then(on_charts, chart_inputs, [response_plot, noise_plot], api_visibility="private", **fast)
        vol_btn.click(
            on_volume_metrics,
            [case_dd, gen_dd, dose],
            [vol_md],
            api_name="volume_metrics",
            concurrency_limit=1,
        )
        api_echo.click(
            echo_image, [case_dd, plane, slice_sl, level, width], [native_img], api_name="echo_image", **fast
        )
        if first_case is not None:
            demo.load(on_render, view_inputs, image_outputs, api_visibility="private", **fast).then(
                on_charts, chart_inputs, [response_plot, noise_plot], api_visibility="private", **fast
            ).then(on_warm, [case_dd], None, api_visibility="private", show_progress="hidden")

        up_inputs = [up_native, up_sd, up_ld, up_ld_pct, up_field]
        check_btn.click(on_check, up_inputs, [up_status], api_name="check_upload")
        synth_btn.click(
            on_synthesize,
            [*up_inputs, up_gen, up_doses, up_fmt],
            [up_status, up_prev_na, up_prev_syn, download],
            api_name="synthesize_upload",
            concurrency_limit=1,
        )
        demo.unload(on_unload)

    demo.vce_allowed_paths = [str(uploads.root.resolve())]  # type: ignore[attr-defined]
    demo.vce_css = CSS  # type: ignore[attr-defined]
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> tuple[Any, str, str]:
    """Launch a studio built by :func:`build_app` with its CSS, footer and file-access settings."""
    return demo.launch(
        server_name=host,
        server_port=port,
        css=getattr(demo, "vce_css", CSS),
        js=READER_JS,  # reader tab keyboard: 1-5 answer, Enter submits (inactive outside that tab)
        footer_links=[],
        allowed_paths=getattr(demo, "vce_allowed_paths", None),
        show_error=True,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: build demo data if needed, build the app and serve it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of case folders (default ./data, with demo phantom cases built on first run)",
    )
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="folder of generator checkpoints")
    parser.add_argument(
        "--db", default=None, help="reader-study database URL (default $VCE_DB_URL or SQLite in data)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    data_dir = args.data if args.data is not None else DEFAULT_DATA
    if args.data is None:
        ensure_demo_cases(data_dir)
    elif not data_dir.is_dir():
        parser.error(f"--data {data_dir}: no such folder")
    demo = build_app(data_dir, args.models, args.db, demo_study=args.data is None)
    print(f"Built the app in {time.perf_counter() - t0:.1f} s", flush=True)
    _, url, _ = launch(demo, args.host, args.port, prevent_thread_lock=True, quiet=True)
    print(f"Serving the dose-reduction review studio on {url}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
