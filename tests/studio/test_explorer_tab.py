"""The Dose explorer tab: its public endpoints through gradio_client, and its handlers called directly.

Data: one 2 mm phantom case and a freshly initialised tiny generator (``tests/studio/conftest.py``). Images
come back as PNG files and are compared with a direct computation through the tab's Explorer
(``studio.explorer_tab.explorer``; PNG is lossless).
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import numpy as np
import pytest

from support import GENERATOR, image_pixels, update_value
from vce_core.domain import dose_from_percent

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402


def gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img[..., 0]


def view_args(served: dict[str, Any], dose: float = 33, plane: str = "axial") -> list[Any]:
    """The tab's view inputs: case, generator, dose (%), plane, slice (1-based), level, width."""
    explorer = served["studio"].explorer_tab.explorer
    case_id = served["case_id"]
    index = explorer.default_index(case_id, plane)
    window = explorer.window_for(case_id, "Brain T1", plane, index)
    return [case_id, GENERATOR, dose, plane, index + 1, window.level, window.width]


# ------------------------------------------------------------------------------------------ endpoints


def test_dose_endpoint_matches_direct_synthesis(served: dict[str, Any]) -> None:
    from studio.explorer import View
    from vce_core.display import Window

    args = view_args(served, dose=47)
    out = served["client"].predict(*args, api_name="/dose")
    explorer = served["studio"].explorer_tab.explorer
    expected = explorer.synthetic_panel(
        View(args[0], GENERATOR, dose_from_percent(47), "axial", args[4] - 1),
        Window(float(args[5]), float(args[6])),
    )
    got = gray(image_pixels(out))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_dose_panels_show_real_phantom_image_and_metrics(served: dict[str, Any]) -> None:
    real, baseline, diff, swipe, metrics, noise = served["client"].predict(
        *view_args(served, dose=25), api_name="/dose_panels"
    )
    assert image_pixels(real).shape == image_pixels(baseline).shape
    assert image_pixels(diff).ndim == 3  # RGB difference map with colour bar
    assert "PSNR" in metrics and "SSIM" in metrics and "MAE_CE" in metrics
    assert noise is not None
    assert swipe is not None


def test_render_returns_every_panel(served: dict[str, Any], workspace: dict[str, Any]) -> None:
    from vce_core.io import load_case

    outputs = served["client"].predict(*view_args(served), api_name="/render")
    native, standard, synthetic, real, baseline, diff, swipe, metrics = outputs
    nx, ny, _ = load_case(workspace["case"]).native.shape
    for image in (native, standard, synthetic, real, baseline):
        # axial: rows anterior → posterior, columns right → left
        assert image_pixels(image).shape[:2] == (ny, nx)
    assert "Per-slice metrics" in metrics


def test_charts_endpoint_returns_two_plotly_figures(served: dict[str, Any]) -> None:
    args = view_args(served)
    response, noise = served["client"].predict(*args[:5], api_name="/charts")
    for fig in (response, noise):
        assert fig["type"] == "plotly"
    plot = json.loads(response["plot"])
    names = [trace["name"] for trace in plot["data"]]
    assert (
        any("Real" in n for n in names)
        and "Linear baseline" in names
        and any("Synthetic" in n for n in names)
    )


def test_case_plane_preset_and_model_card_endpoints(served: dict[str, Any]) -> None:
    client, case_id = served["client"], served["case_id"]
    slider, level, width, info = (
        update_value(v) for v in client.predict(case_id, "Brain T1", "axial", api_name="/case")
    )
    assert slider >= 1 and width > 0 and "3 T" in info
    assert update_value(client.predict(case_id, "sagittal", api_name="/plane")) >= 1
    level2, width2 = (
        update_value(v) for v in client.predict(case_id, "Wide", "axial", slider, api_name="/window_preset")
    )
    assert width2 > width
    card = client.predict(GENERATOR, api_name="/model_card")
    assert "ld_cgan_generator" in card and "PSNR" in card


def test_echo_image_has_the_size_of_the_synthetic_panel(served: dict[str, Any]) -> None:
    args = view_args(served)
    echo = served["client"].predict(args[0], args[3], args[4], args[5], args[6], api_name="/echo_image")
    dose = served["client"].predict(*args, api_name="/dose")
    assert image_pixels(echo).shape[:2] == image_pixels(dose).shape[:2]


def test_volume_metrics(served: dict[str, Any]) -> None:
    text = served["client"].predict(served["case_id"], GENERATOR, 33, api_name="/volume_metrics")
    assert "Per-volume metrics" in text and "Synthetic" in text and "Linear baseline" in text


def test_unknown_case_is_a_plain_error(served: dict[str, Any]) -> None:
    args = view_args(served)
    args[0] = "demo/no-such-case"
    with pytest.raises(AppError) as err:
        served["client"].predict(*args, api_name="/dose")
    message = str(err.value)
    assert "no-such-case" in message and "Traceback" not in message


# ------------------------------------------------------------------------------------ handlers, direct


def test_handlers_are_plain_methods(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    args = view_args(served, dose=10)
    update = tab.on_dose(*args)
    assert isinstance(update, gr.Image) and update.label.startswith("Synthetic · 10 % dose")
    native, standard, synthetic, real, *_ = tab.on_render(*args)
    assert native.dtype == np.uint8 and native.shape == standard.shape
    assert real.label == "Real · 10 % dose · simulated acquisition"
    slider = tab.on_plane(served["case_id"], "coronal")
    assert slider.maximum == tab.explorer.slice_count(served["case_id"], "coronal")


def test_dose_out_of_range_is_a_plain_error(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    args = view_args(served)
    args[2] = 150
    with pytest.raises(gr.Error, match="150 % is out of range"):
        tab.on_dose(*args)


def test_initial_view_shows_the_first_case(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    initial = tab.initial_view()
    assert initial.error is None and initial.index == tab.explorer.default_index(served["case_id"], "axial")
    assert initial.image("native").dtype == np.uint8
    assert initial.image("synthetic_label") == f"Synthetic · 33 % dose · {GENERATOR}"
