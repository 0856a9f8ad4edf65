"""End to end in a real browser: the dose slider moved with the keyboard ends at the final dose.

Drives Debian's Chromium (``/usr/bin/chromium``) with Playwright against the studio launched in the test
(one 2 mm phantom case, a tiny untrained generator). Without Chromium the test is skipped, or fails with
a clear message when the environment variable ``CI`` is set. A screenshot is written to ``test-output/``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

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


def _png_from(page: Any, src: str) -> np.ndarray:
    response = page.request.get(src)
    assert response.ok, f"GET {src} -> {response.status}"
    with Image.open(io.BytesIO(response.body())) as im:
        assert im.format == "PNG"
        arr = np.asarray(im)
    return arr if arr.ndim == 2 else arr[..., 0]


def test_keyboard_dose_changes_end_at_the_final_dose(studio: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    from studio.explorer import View
    from vce_core.display import Window
    from vce_core.domain import dose_from_percent

    explorer = studio["studio"].explorer_tab.explorer
    case_id = studio["case_id"]
    index = explorer.default_index(case_id, "axial")
    presses, start = 7, 33
    final = start + presses

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(studio["url"])
            panel = page.locator("#synthetic-panel")
            panel.locator("img").first.wait_for(timeout=60_000)
            page.wait_for_function(
                "document.querySelector('#synthetic-panel').innerText.includes('33 % dose')", timeout=60_000
            )
            first_src = panel.locator("img").first.get_attribute("src")

            slider = page.locator("#dose-slider input[type=range]")
            slider.focus()
            for _ in range(presses):
                page.keyboard.press("ArrowRight")
                time.sleep(0.05)
            page.wait_for_function(
                f"document.querySelector('#synthetic-panel').innerText.includes('{final} % dose')",
                timeout=60_000,
            )
            assert slider.input_value() == str(final)
            page.wait_for_timeout(1500)  # anything still in flight would land now
            assert f"{final} % dose" in panel.inner_text()
            src = panel.locator("img").first.get_attribute("src")
            assert src and src != first_src

            level = float(page.locator("#level-slider input[type=number]").input_value())
            width = float(page.locator("#width-slider input[type=number]").input_value())
            shown = _png_from(page, src)
            expected = explorer.synthetic_panel(
                View(case_id, GENERATOR, dose_from_percent(final), "axial", index), Window(level, width)
            )
            np.testing.assert_array_equal(shown, expected)

            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "browser_dose_explorer.png"), full_page=True)
        finally:
            browser.close()
