"""The Virtual contrast tab in the launched studio: its endpoints through gradio_client (labels follow the
selected case, model, plane and slice; a missing input is a message, not a traceback), and the tab flow in
Chromium (pick case and model, panels render, plane switch). Data: the 2 mm phantom case (T2, FLAIR, ADC,
labels) and a copy without T2; a low-dose generator and two tiny virtual-contrast models."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    copy_case,
    free_port,
    phantom_case,
    require_chromium,
    update_value,
    write_app_checkpoint,
    write_vc_checkpoint,
)
from vce_core.io import load_case, save_case

gradio_client = pytest.importorskip("gradio_client")
VIRTUAL = "#contrast-viewer-host .vce-panel[data-panel=virtual]"


def title_starts(text: str) -> str:
    """A page condition: the virtual-contrast panel's title starts with ``text``."""
    return f"document.querySelector('{VIRTUAL} .vce-title').innerText.startsWith('{text}')"


def shows_model(page: Any, host: Any, title: str, input_panel: str) -> None:
    """Wait until the virtual-contrast panel's title starts with ``title`` and the viewer ``host`` shows
    exactly one element matching ``input_panel`` (the selected model's input)."""
    page.wait_for_function(title_starts(title), timeout=60_000)
    shown = host.locator(input_panel)
    shown.wait_for(timeout=30_000)
    assert shown.count() == 1


@pytest.fixture(scope="module")
def vc_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import app
    from vce_core.settings import Settings

    root = tmp_path_factory.mktemp("vc-studio")
    full = copy_case(phantom_case(tmp_path_factory), root / "data")
    case = load_case(full)
    case.extra = {k: v for k, v in case.extra.items() if k != "t2"}
    case.meta["case_id"] = "no-t2"
    save_case(case, root / "data" / "demo" / "no-t2")
    write_app_checkpoint(root / "models" / "ld")
    write_vc_checkpoint(root / "models" / "vc-t2", display_name="VC from T2")
    write_vc_checkpoint(root / "models" / "vc-flair", inputs=("native", "flair", "adc"), optional=("adc",))
    settings = Settings.resolve(data_dir=root / "data", models_dir=root / "models", environ={})
    studio = app.build_app(settings, reader_study=False)
    _, url, _ = app.launch(studio, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield {"studio": studio, "url": url, "case": f"demo/{full.name}", "no_t2": "demo/no-t2"}
    finally:
        studio.close()
        shutil.rmtree(root, ignore_errors=True)


def payload_of(markup: str) -> dict[str, Any]:
    return json.loads(html.unescape(re.search(r'data-vce-viewer="([^"]*)"', markup).group(1)))


def test_endpoints_follow_the_selection(vc_studio: dict[str, Any]) -> None:
    from gradio_client import Client

    client = Client(vc_studio["url"], verbose=False)
    tab = vc_studio["studio"].contrast_tab
    assert tab.model_names == ["vc-flair", "vc-t2"]  # low-dose "ld" is the explorer's only
    assert vc_studio["studio"].explorer_tab.generator_names == ["ld"]
    case = vc_studio["case"]
    k = tab.contrast.default_index(case, "axial") + 1
    seen = set()
    for model, plane, index in (
        ("vc-t2", "axial", k),
        ("vc-flair", "axial", k - 1),
        ("vc-flair", "coronal", 20),
    ):
        data = payload_of(client.predict(case, model, plane, index, api_name="/vc_view"))
        panels = {p["key"]: p for p in data["panels"]}
        name = "VC from T2" if model == "vc-t2" else "vc-flair"
        assert panels["virtual"]["title"] == f"Virtual contrast · {name}" and "busy" not in panels["virtual"]
        wanted = {"vc-t2": {"input-t2"}, "vc-flair": {"input-flair", "input-adc"}}[model]
        assert {p for p in panels if p.startswith("input-")} == wanted
        assert data["index"] == index - 1 and data["markers"]["top"] == ("A" if plane == "axial" else "S")
        metrics = client.predict(case, model, plane, index, api_name="/vc_metrics")
        label = f"{case} · {model} · {plane} slice {index}"
        assert label in metrics and "| Native (baseline) |" in metrics and "lesion SSIM" in metrics
        seen.add(metrics)
    assert len(seen) == 3
    slider, info, volume_hint = client.predict(vc_studio["no_t2"], "vc-t2", "sagittal", api_name="/vc_case")
    assert (
        "lacks T2 for this model" in info
        and update_value(slider) == tab.contrast.default_index(vc_studio["no_t2"], "sagittal") + 1
    )
    card, _, _ = client.predict(case, "vc-flair", api_name="/vc_model")
    assert "adc (optional: a zero image when absent)" in card
    data = payload_of(client.predict(vc_studio["no_t2"], "vc-t2", "axial", 10, api_name="/vc_view"))
    message = next(p for p in data["panels"] if p["key"] == "virtual")["message"]
    assert "the required input(s) t2 of VC from T2 are missing" in message and "Traceback" not in message
    volume = client.predict(case, "vc-t2", "axial", api_name="/vc_volume_metrics")
    assert f"{case} · vc-t2 · whole volume" in volume


@pytest.mark.browser
def test_tab_flow_in_chromium(vc_studio: dict[str, Any]) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(vc_studio["url"])
            page.get_by_role("tab", name="Virtual contrast").click()
            page.wait_for_function("window.VCEViewer && VCEViewer.state('contrast') !== null", timeout=60_000)
            host = page.locator("#contrast-viewer-host")
            title = host.locator('.vce-panel[data-panel="virtual"] .vce-title')
            shows_model(
                page,
                host,
                "Virtual contrast · vc-flair",
                '.vce-panel[data-panel="input-flair"] canvas.vce-canvas',
            )
            page.wait_for_function(
                "document.querySelector('#vc-metrics') && document.querySelector('#vc-metrics').innerText"
                ".includes('vc-flair · axial slice')",
                timeout=60_000,
            )
            # the full phantom case (the first one lacks T2), then the other model: panels and metrics follow
            page.locator("#vc-case").get_by_label("Case").click()
            page.get_by_role("option", name=re.compile("phantom-")).click()
            page.wait_for_function(
                "document.querySelector('#vc-metrics').innerText.includes('phantom-')", timeout=60_000
            )
            page.get_by_label("Virtual-contrast model").click()
            page.get_by_role("option", name="vc-t2").click()
            shows_model(page, host, "Virtual contrast · VC from T2", '.vce-panel[data-panel="input-t2"]')
            # plane switch: coronal markers, slice of the coronal plane, metrics relabelled
            page.locator("#vc-plane-radio").get_by_text("coronal", exact=True).click()
            page.wait_for_function(
                "VCEViewer.state('contrast') && document.querySelector('#vc-metrics').innerText"
                ".includes('vc-t2 · coronal slice')",
                timeout=90_000,
            )
            page.wait_for_function(
                f"!document.querySelector('{VIRTUAL} .vce-busy') || "
                f"getComputedStyle(document.querySelector('{VIRTUAL} .vce-busy')).display === 'none'",
                timeout=90_000,
            )
            markers = host.locator('.vce-panel[data-panel="standard"]').inner_text()
            assert "S" in markers and "I" in markers
            assert title.inner_text().startswith("Virtual contrast · VC from T2")
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "browser_virtual_contrast.png"))
        finally:
            browser.close()
