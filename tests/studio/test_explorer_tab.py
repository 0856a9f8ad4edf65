"""The Dose explorer tab: its public endpoints through gradio_client, and its handlers called directly.

Data: one 2 mm phantom case and a freshly initialised tiny generator (``tests/studio/conftest.py``). The
viewer comes back as HTML carrying its payload; slices are decoded as the browser decodes them and
compared with a direct computation through the tab's Explorer.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import gradio as gr
import numpy as np
import pytest

from studio.explorer_tab import ViewControls
from support import GENERATOR, image_pixels, update_value
from vce_core.display import slice_spacing, take_slice
from vce_core.domain import dose_from_percent
from vce_core.viewer import oriented

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402


def payload_of(markup: str) -> dict[str, Any]:
    match = re.search(r'data-vce-viewer="([^"]*)"', markup)
    assert match, markup[:200]
    return json.loads(html.unescape(match.group(1)))


def view_args(served: dict[str, Any], dose: float = 33, plane: str = "axial") -> list[Any]:
    """The tab's view inputs: case, generator, dose (%), plane, slice (1-based)."""
    explorer = served["studio"].explorer_tab.explorer
    index = explorer.default_index(served["case_id"], plane)
    return [served["case_id"], GENERATOR, dose, plane, index + 1]


def on_screen(served: dict[str, Any], data: dict[str, Any], kind: str) -> np.ndarray:
    explorer = served["studio"].explorer_tab.explorer
    panel = next(p for p in data["panels"] if p["key"] == kind)
    text = data["stacks"][panel["stack"]]["slices"][str(data["index"])]
    return explorer.encoding(served["case_id"]).decode(text, (data["rows"], data["cols"]))


# ------------------------------------------------------------------------------------------ endpoints


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_dose_endpoint_shows_the_synthesis_at_that_dose(served: dict[str, Any], plane: str) -> None:
    args = view_args(served, dose=47, plane=plane)
    data = payload_of(served["client"].predict(*args, api_name="/dose"))
    titles = {p["key"]: p["title"] for p in data["panels"]}
    assert titles["synthetic"] == f"Synthetic · 47 % · {GENERATOR}"
    assert titles["real"] == "Real · 47 % · simulated" and titles["baseline"] == "Linear baseline · 47 %"
    explorer = served["studio"].explorer_tab.explorer
    lc = explorer.library.get(served["case_id"])
    expected = explorer.generators.get(GENERATOR).synthesize(
        lc.case.native, lc.case.standard_dose, dose_from_percent(47), 3.0, seed=lc.noise_seed()
    )
    index = args[4] - 1
    want = oriented(take_slice(expected, plane, index), slice_spacing(lc.spacing, plane))[0]
    step = explorer.encoding(served["case_id"]).scale
    assert data["index"] == index and data["markers"]["top"] == ("A" if plane == "axial" else "S")
    assert np.max(np.abs(on_screen(served, data, "synthetic") - want)) <= step


def test_analysis_follows_every_change_of_the_view(served: dict[str, Any]) -> None:
    """Metrics and charts name case, generator, plane, slice and dose, and change with each of them."""
    client, case_id = served["client"], served["case_id"]
    seen = []
    for dose, plane in ((33, "axial"), (20, "axial"), (20, "sagittal")):
        args = view_args(served, dose=dose, plane=plane)
        metrics, noise, response, swipe = client.predict(*args, api_name="/analysis")
        label = f"{case_id} · {GENERATOR} · {plane} slice {args[4]} · {dose} % dose"
        assert label in metrics and "PSNR" in metrics
        noise_title = json.loads(noise["plot"])["layout"]["title"]["text"]
        assert f"{dose} % dose" in noise_title and f"{plane} slice {args[4]}" in noise_title
        response_title = json.loads(response["plot"])["layout"]["title"]["text"]
        assert case_id in response_title
        assert swipe is not None
        seen.append(metrics)
    assert len(set(seen)) == 3


def test_case_plane_generator_and_dose_clear_the_volume_metrics(served: dict[str, Any]) -> None:
    client, case_id = served["client"], served["case_id"]
    text = client.predict(case_id, GENERATOR, 33, api_name="/volume_metrics")
    assert f"{case_id} · {GENERATOR} · 33 % dose" in text and "Linear baseline" in text
    slider, info, volume = client.predict(case_id, "axial", api_name="/case")
    assert update_value(slider) >= 1 and "3 T" in info and "press the button" in volume
    card, volume = client.predict(GENERATOR, api_name="/model_card")
    assert "ld_cgan_generator" in card and "PSNR" in card and "press the button" in volume
    assert "press the button" in served["studio"].explorer_tab.on_clear_volume()
    assert update_value(client.predict(case_id, "sagittal", api_name="/plane")) >= 1


def test_echo_image_is_the_native_slice(served: dict[str, Any]) -> None:
    args = view_args(served)
    echo = image_pixels(served["client"].predict(args[0], args[3], args[4], api_name="/echo_image"))
    assert echo.shape[0] > 8 and echo.dtype == np.uint8


def test_unknown_case_is_a_plain_error(served: dict[str, Any]) -> None:
    args = view_args(served)
    args[0] = "demo/no-such-case"
    with pytest.raises(AppError) as err:
        served["client"].predict(*args, api_name="/dose")
    message = str(err.value)
    assert "no-such-case" in message and "Traceback" not in message


# ------------------------------------------------------------------------------------ handlers, direct


def test_loader_serves_slices_of_payload_stacks_only(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    data = payload_of(tab.viewer_value(tab.view_of(ViewControls(*view_args(served, dose=10)))))
    native = next(p for p in data["panels"] if p["key"] == "native")["stack"]
    got = tab.viewer_slices(
        [{"stack": native, "index": 0}, {"stack": native, "index": 1}, {"stack": "x", "index": 0}]
    )
    assert sorted(got) == [native] and sorted(got[native]) == ["0", "1"]
    assert tab.viewer_slices([{"index": "0"}, "junk", {"stack": native, "index": True}]) == {}  # type: ignore[list-item]
    assert tab.viewer_slices([{"stack": native, "index": k} for k in range(500)])[native].keys() <= {
        str(k) for k in range(64)
    }


def test_coronal_dose_first_says_it_is_busy(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    args = view_args(served, dose=61, plane="coronal")
    updates = list(tab.on_view(*args))
    first, last = payload_of(updates[0]), payload_of(updates[-1])
    if len(updates) == 2:  # the volume was not ready: busy synthetic panels first
        syn = next(p for p in first["panels"] if p["key"] == "synthetic")
        assert "synthesizing the 61 % volume for the coronal view" in syn["busy"]
    syn = next(p for p in last["panels"] if p["key"] == "synthetic")
    assert "busy" not in syn and last["stacks"][syn["stack"]]["slices"]


def test_dose_out_of_range_is_a_plain_error(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    args = view_args(served)
    args[2] = 150
    with pytest.raises(gr.Error, match="150 % is out of range"):
        list(tab.on_view(*args))


def test_viewer_slice_event_moves_the_slider(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab

    class Event:
        _data = {"index": 5}

    assert tab.on_viewer_slice(served["case_id"], "axial", Event()).value == 6  # type: ignore[arg-type]


def test_initial_value_opens_on_the_lesion(served: dict[str, Any]) -> None:
    tab = served["studio"].explorer_tab
    value, index, count, info = tab.initial_value()
    data = payload_of(value)
    assert index == tab.explorer.default_index(served["case_id"], "axial") == data["index"]
    assert count == data["count"] and served["case_id"] in info


def test_a_dose_step_sends_only_what_the_dose_changes(served: dict[str, Any]) -> None:
    client = served["client"]
    first = payload_of(client.predict(*view_args(served, dose=52), api_name="/dose"))
    second = payload_of(client.predict(*view_args(served, dose=53), api_name="/dose"))

    def inline(data: dict[str, Any], key: str) -> bool:
        panel = next(p for p in data["panels"] if p["key"] == key)
        return bool(data["stacks"][panel["stack"]]["slices"])

    assert all(inline(first, k) for k in ("native", "standard", "synthetic", "real"))
    assert not inline(second, "native") and not inline(second, "standard")
    assert inline(second, "synthetic") and inline(second, "real")
    native = next(p for p in second["panels"] if p["key"] == "native")["stack"]
    assert (
        native == next(p for p in first["panels"] if p["key"] == "native")["stack"]
    )  # cached by the browser
