"""End to end in a real browser: the explorer's viewer scrolled with the wheel, windowed with a drag, the
dose slider moved with the keyboard, and the layout on a 1600 × 1000 screen.

Drives Debian's Chromium (``/usr/bin/chromium``) with Playwright against the studio launched in the test
(one 2 mm phantom case, a tiny untrained generator). Without Chromium the test is skipped, or fails with
a clear message when the environment variable ``CI`` is set. A screenshot is written to ``test-output/``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    GENERATOR,
    OUTPUT,
    copy_case,
    free_port,
    phantom_case,
    require_chromium,
    write_app_checkpoint,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_chromium()
    import app
    from vce_core.settings import Settings

    root = tmp_path_factory.mktemp("browser")
    case_dir = copy_case(phantom_case(tmp_path_factory), root / "data")
    write_app_checkpoint(root / "models" / GENERATOR)
    settings = Settings.resolve(data_dir=root / "data", models_dir=root / "models", environ={})
    studio = app.build_app(settings, reader_study=False)
    _, url, _ = app.launch(studio, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield {"studio": studio, "url": url, "case_id": f"demo/{case_dir.name}"}
    finally:
        studio.close()


def _payload(page: Any) -> dict[str, Any]:
    text = page.locator("#explorer-viewer-host [data-vce-viewer]").get_attribute("data-vce-viewer")
    return json.loads(html.unescape(text))


def _title(page: Any, key: str) -> str:
    return page.locator(f'.vce-panel[data-panel="{key}"] .vce-title').inner_text()


def test_viewer_wheel_drag_and_keyboard_dose(studio: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    from vce_core.display import slice_spacing
    from vce_core.domain import dose_from_percent
    from vce_core.viewer import oriented

    explorer = studio["studio"].explorer_tab.explorer
    case_id = studio["case_id"]
    start = explorer.default_index(case_id, "axial")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(studio["url"])
            page.wait_for_function("window.VCEViewer && VCEViewer.state('explorer') !== null", timeout=60_000)
            assert page.evaluate("VCEViewer.state('explorer').index") == start
            page.wait_for_function(
                "document.querySelector('.vce-metrics') && document.querySelector('.vce-metrics').innerText"
                f".includes('axial slice {start + 1} ')",
                timeout=60_000,
            )

            # layout: viewer, metrics and charts all on one 1600 × 1000 screen, no scrolling
            for selector in ("#explorer-viewer-host", ".vce-metrics table", ".js-plotly-plot"):
                box = page.locator(selector).first.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 1000, (selector, box)

            # wheel: two notches down → two slices on, the slice slider and the metrics follow
            page.locator('.vce-panel[data-panel="native"] canvas.vce-canvas').hover()
            page.mouse.wheel(0, 100)
            page.wait_for_function(f"VCEViewer.state('explorer').index === {start + 2}")
            page.wait_for_function(
                f"document.querySelector('#slice-slider input[type=number]').value === '{start + 3}'",
                timeout=30_000,
            )
            page.wait_for_function(
                f"document.querySelector('.vce-metrics').innerText.includes('axial slice {start + 3} ')",
                timeout=60_000,
            )

            # drag: left narrows the window, down raises the level; the preset no longer applies
            before = page.evaluate("VCEViewer.state('explorer')")
            box = page.locator('.vce-panel[data-panel="standard"] canvas.vce-canvas').bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x - 80, y + 50, steps=8)
            page.mouse.up()
            after = page.evaluate("VCEViewer.state('explorer')")
            assert after["width"] < before["width"] and after["level"] > before["level"]
            assert after["preset"] == "" and page.locator(".vce-preset-state").inner_text() == "custom window"

            # keyboard on the dose slider: the synthetic panel ends at the final dose, the slice kept
            slider = page.locator("#dose-slider input[type=range]")
            slider.focus()
            for _ in range(7):
                page.keyboard.press("ArrowRight")
                page.wait_for_timeout(40)
            page.wait_for_function(
                "document.querySelector('.vce-panel[data-panel=\"synthetic\"] .vce-title').innerText"
                ".startsWith('Synthetic · 40 %')",
                timeout=60_000,
            )
            page.wait_for_timeout(1500)  # anything still in flight would land now
            assert _title(page, "synthetic").startswith("Synthetic · 40 %")
            assert page.evaluate("VCEViewer.state('explorer').index") == start + 2
            data = _payload(page)
            syn = next(p for p in data["panels"] if p["key"] == "synthetic")
            lc = explorer.library.get(case_id)
            expected = explorer.synthetic_slice(lc, GENERATOR, dose_from_percent(40), "axial", data["index"])
            want = oriented(expected, slice_spacing(lc.spacing, "axial"))[0]
            got = explorer.encoding(case_id).decode(
                data["stacks"][syn["stack"]]["slices"][str(data["index"])], (data["rows"], data["cols"])
            )
            assert np.max(np.abs(got - want)) <= explorer.encoding(case_id).scale

            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "browser_dose_explorer.png"))
        finally:
            browser.close()
