"""End to end in a real browser: a reader answers an item with the keyboard only (keys 1–5, then Enter).

Drives Debian's Chromium with Playwright against the reader tab mounted with ``READER_JS``; the answers must
arrive in the database exactly as typed. Skipped without Chromium, a failure when ``CI`` is set.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from support import CHROMIUM, CHROMIUM_ARGS, OUTPUT, require_chromium

pytestmark = pytest.mark.browser


def test_reader_answers_with_keys_and_enter(app: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()

    svc, study = app["svc"], app["study"]
    admin = svc.authenticate(app["admin"])
    questions = svc.questions(admin, study)
    # one key per radio group, in screen order: Likert value, or real/synthetic then its confidence
    keys: list[str] = []
    expected: dict[str, tuple[str, Any]] = {}
    for i, q in enumerate(questions):
        if q.kind == "likert":
            key = str(2 + i % 4)
            keys.append(key)
            expected[q.key] = (key, None)
        elif q.kind == "real_vs_synthetic":
            keys += ["2", "4"]  # the second choice, confidence 4
            expected[q.key] = ("", 4)  # the value is the second choice shown: read from the page below
    assert expected, "the demo spec has no radio questions"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(app["url"])
            page.get_by_label("Access token").fill(app["readers"][0])
            page.get_by_role("button", name="Log in").first.click()
            page.locator("#rs-reading").wait_for(state="visible", timeout=60_000)
            page.locator("#rs-reading .rs-q input[type=radio]").first.wait_for(timeout=60_000)
            page.locator("#rs-image").click()  # focus on the page, not in a text field
            for key in keys:
                page.keyboard.press(key)
                time.sleep(0.1)
            checked = page.eval_on_selector_all(
                "#rs-reading .rs-q input[type=radio]:checked", "els => els.map((e) => e.value)"
            )
            assert len(checked) == len(keys), f"{checked}: radio groups answered by {len(keys)} key presses"
            page.keyboard.press("Enter")

            deadline = time.monotonic() + 60
            frame = svc.answers_frame(admin, study)
            while len(frame) < len(expected) and time.monotonic() < deadline:
                time.sleep(0.25)
                frame = svc.answers_frame(admin, study)
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "browser_reader_keys.png"), full_page=True)
        finally:
            browser.close()

    # what the reader saw selected, group by group, is what was stored
    shown = iter(checked)
    for q in questions:
        if q.kind == "likert":
            assert next(shown) == expected[q.key][0]
        elif q.kind == "real_vs_synthetic":
            expected[q.key] = (next(shown), int(next(shown)))
    assert len(frame) == len(expected), frame
    assert frame["item"].nunique() == 1  # exactly one item answered, once
    for q in questions:
        row = frame[frame["question"] == q.key].iloc[0]
        value, confidence = expected[q.key]
        if q.kind == "likert":
            assert str(row["value"]) == value, (q.key, row["value"])
        else:
            assert str(row["value"]).lower() == value.lower() and int(row["confidence"]) == confidence == 4
