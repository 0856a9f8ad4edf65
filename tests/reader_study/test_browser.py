"""End to end in a real browser (Debian's Chromium via Playwright).

1. A reader who uses only the mouse runs a whole study on the reader deployment: the item opens on its
   most relevant slice, the wheel moves through the slices, a drag and a preset change the window, a submit
   with questions missing highlights just those questions and keeps every choice, and every answer arrives
   in the database exactly as clicked.
2. A reader answers an item with the keyboard only (keys 1–5, then Enter) in the all-in-one app.

Skipped without Chromium, a failure when ``CI`` is set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from reader_study.auth import SYSTEM
from reader_study.models import Assignment, Case, Item
from reader_study.ui import launch_kwargs, reader_app
from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    open_study,
    require_chromium,
)

pytestmark = pytest.mark.browser
TIMEOUT_MS = 60_000


def _browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _log_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.__rsKeys === true && !!window.VCEViewer", timeout=TIMEOUT_MS)
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Log in").first.click()
    page.locator("#rs-reading").wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator("#rs-viewer .vce-canvas").first.wait_for(timeout=TIMEOUT_MS)


def _groups(page: Any) -> Any:
    """The visible radio groups of the answer form, in screen order."""
    return page.locator("#rs-reading .rs-q:visible").filter(has=page.locator("input[type=radio]"))


def _wait_for_counter(page: Any, text: str) -> None:
    page.locator("#rs-counter", has_text=text).wait_for(timeout=TIMEOUT_MS)


def _focus_of_current(svc: Any, reader_id: int) -> int:
    with svc.db.read() as s:
        return s.scalar(
            select(Case.focus)
            .join(Item, Item.case_id == Case.id)
            .join(Assignment, Assignment.item_id == Item.id)
            .where(Assignment.reader_id == reader_id, Assignment.completed_at.is_(None))
            .order_by(Assignment.position)
            .limit(1)
        )


def _state(page: Any) -> dict[str, Any]:
    return page.evaluate("VCEViewer.state('rs-item')")


def _viewer_checks(page: Any, focus: int) -> None:
    """Wheel, drag and a preset on the shared stack viewer, checked through its state."""
    page.wait_for_function("() => VCEViewer.state('rs-item') !== null", timeout=TIMEOUT_MS)
    start = _state(page)
    assert start["index"] == focus and start["count"] == 3  # opens on the most relevant slice
    box = page.locator("#rs-viewer .vce-canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, 120 if focus == 0 else -120)
    page.wait_for_function(f"() => VCEViewer.state('rs-item').index !== {focus}", timeout=TIMEOUT_MS)
    assert _state(page)["index"] == (1 if focus == 0 else focus - 1)
    page.mouse.down()
    page.mouse.move(cx + 60, cy - 40, steps=6)  # right: wider window; up: lower level
    page.mouse.up()
    dragged = _state(page)
    assert dragged["width"] > start["width"] and dragged["level"] < start["level"] and dragged["preset"] == ""
    page.locator("#rs-viewer .vce-preset", has_text="Brain").click()
    chosen = _state(page)
    assert (chosen["level"], chosen["width"], chosen["preset"]) == (110.0, 180.0, "Brain")
    assert box["width"] >= 3 * 24  # enlarged (drawn with interpolation) well beyond the 24-px slices


def _outlines(page: Any, groups: Any) -> list[bool]:
    """Whether each radio group is outlined (highlighted as missing)."""
    return [
        groups.nth(g).evaluate("e => getComputedStyle(e).outlineStyle === 'solid'")
        for g in range(groups.count())
    ]


def _answer_item(page: Any, index: int) -> list[str]:
    """Click answers into every radio group; the first item first tries a submit with two missing."""
    groups = _groups(page)
    n = groups.count()
    assert n >= 2
    chosen: list[str] = []
    skip = {1, n - 1} if index == 0 else set()
    for g in range(n):
        if g in skip:
            continue
        labels = groups.nth(g).locator("label")
        labels.nth((index + g) % labels.count()).click()
    if skip:
        page.locator("#rs-submit").click()
        page.locator("#rs-message", has_text="highlighted").wait_for(timeout=TIMEOUT_MS)
        assert _outlines(page, groups) == [g in skip for g in range(n)]  # just the missing ones
        checked = page.eval_on_selector_all("#rs-reading .rs-q input:checked", "els => els.length")
        assert checked == n - len(skip)  # what was chosen stays chosen
        for g in sorted(skip):
            labels = groups.nth(g).locator("label")
            labels.nth((index + g) % labels.count()).click()
        assert not any(_outlines(page, groups))  # the highlight clears once answered
    chosen = page.eval_on_selector_all("#rs-reading .rs-q input:checked", "els => els.map((e) => e.value)")
    assert len(chosen) == n
    page.locator("#rs-submit").click()
    return chosen


def test_a_mouse_only_reader_runs_a_whole_study(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()
    svc, out = open_study(tmp_path, 2, readers=1)
    blocks = reader_app(svc)
    _, url, _ = blocks.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(svc, ("reader",)))
    reader_id = out["readers"][0]["reader_id"]
    clicked: list[list[str]] = []
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            _log_in(page, url, out["readers"][0]["token"])
            for index in range(out["items"]):
                _wait_for_counter(page, f"{index + 1} / {out['items']}")
                if index < 2:
                    _viewer_checks(page, _focus_of_current(svc, reader_id))
                clicked.append(_answer_item(page, index))
                if index == 0:
                    OUTPUT.mkdir(exist_ok=True)
                    page.screenshot(path=str(OUTPUT / "browser_reader_mouse.png"), full_page=True)
            page.locator("#rs-message", has_text="All items are answered").wait_for(timeout=TIMEOUT_MS)
            browser.close()
    finally:
        blocks.close()
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert len(frame) == out["items"] * 4 and frame.groupby("item").size().eq(4).all()
    stored = frame.sort_values(["created_at"], kind="stable").groupby("item", sort=False)
    for values, (_, rows) in zip(clicked, stored, strict=True):
        likert = [v for v in values if v.isdigit()]
        rvs = rows[rows["question_kind"] == "real_vs_synthetic"].iloc[0]
        assert list(rows[rows["question_kind"] == "likert"]["value"]) == likert[:3]
        assert rvs["value"] in values and str(int(rvs["confidence"])) == likert[3]


def test_reader_answers_with_keys_and_enter(app: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()
    svc, study = app["svc"], app["study"]
    admin = svc.authenticate(app["admin"])
    questions = svc.questions(admin, study)
    keys = [str(2 + i % 4) for i, q in enumerate(questions) if q.kind == "likert"] + ["2", "4"]
    before = len(svc.answers_frame(admin, study))
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            _log_in(page, app["url"], app["readers"][0])
            page.locator("#rs-reading .rs-q input[type=radio]").first.wait_for(timeout=TIMEOUT_MS)
            page.locator("#rs-counter").click()  # focus on the page, not in a text field
            for key in keys:
                page.keyboard.press(key)
                time.sleep(0.1)
            checked = page.eval_on_selector_all(
                "#rs-reading .rs-q input[type=radio]:checked", "els => els.map((e) => e.value)"
            )
            assert len(checked) == len(keys), checked
            page.keyboard.press("Enter")
            deadline = time.monotonic() + 60
            frame = svc.answers_frame(admin, study)
            while len(frame) < before + len(questions) and time.monotonic() < deadline:
                time.sleep(0.25)
                frame = svc.answers_frame(admin, study)
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "browser_reader_keys.png"), full_page=True)
        finally:
            browser.close()
    mine = frame[frame["reader"] == "Reader 1"]
    assert len(mine) == len(questions) and mine["item"].nunique() == 1
    likert = mine[mine["question_kind"] == "likert"]
    assert list(likert["value"]) == checked[: len(likert)]
    rvs = mine[mine["question_kind"] == "real_vs_synthetic"].iloc[0]
    assert rvs["value"] == checked[-2] and int(rvs["confidence"]) == 4
