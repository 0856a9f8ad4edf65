"""vce_core.viewer: payload encoding, orientation, number formatting, and the script in a real Chromium.

The browser tests load a static page (``head_html()`` + one viewer) into Debian's Chromium with Playwright,
then scroll with the mouse wheel and the keyboard and drag window/level, reading the canvas pixels back.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from support import CHROMIUM, CHROMIUM_ARGS, require_chromium
from vce_core.display import Window, slice_spacing, take_slice, to_display
from vce_core.errors import VCEInputError
from vce_core.viewer import (
    Encoding,
    Panel,
    Stack,
    format_value,
    head_html,
    orientation_markers,
    oriented,
    payload,
    stack_html,
    viewer_js,
)


def _payload_of(markup: str) -> dict[str, Any]:
    match = re.search(r'data-vce-viewer="([^"]*)"', markup)
    assert match, markup[:200]
    return json.loads(html.unescape(match.group(1)))


# ------------------------------------------------------------------------------------------ pure Python
def test_markers_follow_the_radiological_convention() -> None:
    assert orientation_markers("axial") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert orientation_markers("coronal") == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert orientation_markers("sagittal") == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    with pytest.raises(VCEInputError, match="unknown plane"):
        orientation_markers("oblique")


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_oriented_matches_the_display_module(plane: str) -> None:
    """Same orientation as vce_core.display.to_display (which also resamples; square voxels here)."""
    volume = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    spacing = (1.0, 1.0, 1.0)
    sl = take_slice(volume, plane, 2)
    image, pixel = oriented(sl, slice_spacing(spacing, plane))
    np.testing.assert_array_equal(image, to_display(sl))
    assert pixel == (1.0, 1.0)


def test_oriented_reports_rectangular_pixels_instead_of_resampling() -> None:
    sl = np.zeros((4, 3), np.float32)  # axis A 0.5 mm, axis B 2 mm
    image, pixel = oriented(sl, (0.5, 2.0))
    assert image.shape == (3, 4)
    assert pixel == (2.0, 0.5)  # rows run along B, columns along A


def test_uint16_encoding_round_trips_within_half_a_step() -> None:
    rng = np.random.default_rng(1)
    image = rng.uniform(-50, 1500, size=(17, 23)).astype(np.float32)
    enc = Encoding.for_range(-50, 1500)
    back = enc.decode(enc.encode(image), image.shape)
    assert np.max(np.abs(back - image)) <= enc.scale / 2 + 1e-3
    assert enc.stored(np.array([[-1e9, 1e9]])).tolist() == [[0, 65535]]  # clipped, not wrapped


def test_uint8_identity_sends_display_values_unchanged() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    enc = Encoding("uint8")
    np.testing.assert_array_equal(enc.decode(enc.encode(image), (16, 16)), image.astype(np.float32))


def test_stored_codes_of_codes_are_the_codes_and_agree_with_the_general_path() -> None:
    """The shortcut for arrays that already hold the codes (uint8 images, identity encoding) gives what the
    rounding path gives for the same values as floats, for both dtypes."""
    rng = np.random.default_rng(3)
    for dtype, top in (("uint8", 255), ("uint16", 65535)):
        enc = Encoding(dtype)
        codes = rng.integers(0, top + 1, (9, 7)).astype(enc.numpy_dtype)
        fast = enc.stored(codes)
        np.testing.assert_array_equal(fast, enc.stored(codes.astype(np.float32)))
        assert fast.dtype == enc.numpy_dtype and fast.flags.c_contiguous
        np.testing.assert_array_equal(enc.stored(codes.T), codes.T)  # a view is made contiguous
    shifted = Encoding("uint8", 1.0, 10.0)  # not the identity: the general path subtracts the offset
    assert shifted.stored(np.array([[10, 255]], np.uint8)).tolist() == [[0, 245]]


def test_encoded_size_does_not_depend_on_content() -> None:
    """A reader study's fixed-shape uint8 slices: flat, noisy and structured images encode to one size."""
    rng = np.random.default_rng(2)
    shape = (48, 40)
    images = [
        np.zeros(shape, np.uint8),
        rng.integers(0, 256, shape).astype(np.uint8),
        np.tile(np.arange(40, dtype=np.uint8), (48, 1)),
    ]
    enc = Encoding("uint8")
    lengths = {len(enc.encode(im)) for im in images}
    assert lengths == {enc.encoded_length(shape)}
    pages = {
        len(
            stack_html(
                np.stack([im] * 3),
                spacing=(1, 1),
                plane="axial",
                window=Window(127.5, 255),
                element_id="item",
            )
        )
        for im in images
    }
    assert len(pages) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1208.2396, "1208"),
        (-250.4, "-250"),
        (99.94, "99.9"),
        (12.5, "12.5"),
        (3.0, "3"),
        (0.03456, "0.035"),
        (0.0, "0"),
        (float("nan"), "–"),
        (-0.5, "-0.5"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def test_payload_checks_its_input() -> None:
    enc = Encoding("uint8")
    good = dict(
        group="g",
        panels=[Panel("a", "A", stack="s")],
        stacks={"s": Stack(enc)},
        count=3,
        index=1,
        shape=(4, 4),
        spacing=(1.0, 1.0),
        window=(100.0, 50.0),
    )
    data = payload(**good, plane="coronal", presets={"Wide": Window(0, 200)})
    assert data["markers"]["top"] == "S" and data["presets"]["Wide"] == [0.0, 200.0]
    with pytest.raises(VCEInputError, match="unknown stacks"):
        payload(**{**good, "panels": [Panel("a", "A", derive=Panel.difference("s", "t"))]})
    with pytest.raises(VCEInputError, match="slice 3 of 3"):
        payload(**{**good, "index": 3})
    with pytest.raises(VCEInputError, match="width"):
        payload(**{**good, "window": (1.0, 0.0)})


def test_stack_html_carries_every_slice_inline() -> None:
    slices = np.stack([np.full((6, 5), 10 * k, np.uint8) for k in range(4)])
    markup = stack_html(
        slices, spacing=(1.0, 2.0), plane="sagittal", window=(127.5, 255), element_id="x", index=2
    )
    data = _payload_of(markup)
    stack = data["stacks"]["x-stack"]
    assert sorted(stack["slices"]) == ["0", "1", "2", "3"] and stack["lazy"] is False
    assert data["index"] == 2 and data["spacing"] == [1.0, 2.0] and data["markers"]["left"] == "A"
    assert "<script" not in markup


def test_the_page_head_is_self_contained() -> None:
    head = head_html()
    assert head.startswith("<script>") and "window.VCEViewer" in head and ".vce-panel" in head
    assert not re.search(r"(src|href)\s*=|https?://|import\s*\(", viewer_js())  # nothing fetched from a CDN


# ------------------------------------------------------------------------------------------- the browser
STEP = 20  # slice k is uniform with value 20·k + a left-to-right ramp


def _test_stack(n: int = 8, shape: tuple[int, int] = (32, 24)) -> np.ndarray:
    ramp = np.linspace(0, 10, shape[1], dtype=np.float32)[None, :]
    return np.stack([np.full(shape, STEP * k, np.float32) + ramp for k in range(n)])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _stack_payload(slices: np.ndarray, **fields: Any) -> dict[str, Any]:
    """A viewer payload over ``slices``: their count and shape, 1 mm pixels, the window (100, 200)."""
    return payload(
        count=len(slices), shape=slices.shape[1:], spacing=(1.0, 1.0), window=(100.0, 200.0), **fields
    )


def _open(browser: Any, body: str) -> Any:
    """A new 800 × 600 page holding the viewer's ``<head>`` and ``body``."""
    pg = browser.new_page(viewport={"width": 800, "height": 600})
    pg.set_content(f"<html><head>{head_html()}</head><body style='width:700px'>{body}</body></html>")
    return pg


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    slices = _test_stack()
    enc = Encoding.for_range(0, 200)
    data = _stack_payload(
        slices,
        group="t",
        panels=[
            Panel("image", "Image", stack="img"),
            Panel(
                "diff", "Image − flat", derive=Panel.difference("img", "flat"), colormap="diverging", limit=50
            ),
        ],
        stacks={
            "img": Stack(enc, {k: enc.encode(s) for k, s in enumerate(slices)}, lazy=False),
            "flat": Stack(
                enc, {k: enc.encode(np.full_like(s, 70.0)) for k, s in enumerate(slices)}, lazy=False
            ),
        },
        index=2,
        preset="Full",
        presets={"Full": (100.0, 200.0), "Narrow": (60.0, 40.0)},
        plane="axial",
        panel_height=240,
    )
    pg = _open(browser, viewer_html_of(data))
    pg.wait_for_function("window.VCEViewer && VCEViewer.state('t') !== null")
    yield pg
    pg.close()


def viewer_html_of(data: dict[str, Any]) -> str:
    from vce_core.viewer import viewer_html

    return viewer_html(data, element_id="viewer")


def _centre_grey(pg: Any, panel: int = 0) -> list[int]:
    """RGB at the centre of a panel's canvas."""
    return pg.evaluate(
        """(n) => { const c = document.querySelectorAll('.vce-canvas')[n];
        const d = c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data;
        return [d[0], d[1], d[2]]; }""",
        panel,
    )


def _state(pg: Any) -> dict[str, Any]:
    return pg.evaluate("VCEViewer.state('t')")


def _expected_grey(value: float, level: float, width: float) -> float:
    return float(np.clip((value - (level - width / 2)) * 255 / width, 0, 255))


@pytest.mark.browser
def test_wheel_and_keys_scroll_every_linked_panel(page: Any) -> None:
    pg = page
    assert _state(pg)["index"] == 2  # opens on the given slice
    assert pg.locator(".vce-info").first.inner_text() == "Slice 3 / 8"
    pg.locator(".vce-canvas").first.hover()
    pg.mouse.wheel(0, 100)  # two notches of 50 px
    pg.wait_for_function("VCEViewer.state('t').index === 4")
    centre = 5.0  # ramp value in the middle column (about 10 · 11.5/23)
    level, width = _state(pg)["level"], _state(pg)["width"]
    assert abs(_centre_grey(pg)[0] - _expected_grey(STEP * 4 + centre, level, width)) <= 3
    # the linked difference panel shows slice 4 − 70 = +15 on a ±50 blue-white-red map: light red
    r, g, b = _centre_grey(pg, 1)
    assert r > g and r > b
    pg.mouse.wheel(0, -50)
    pg.wait_for_function("VCEViewer.state('t').index === 3")
    pg.locator(".vce-viewer").focus()
    for key, expected in (("ArrowDown", 4), ("End", 7), ("ArrowDown", 7), ("Home", 0), ("PageDown", 7)):
        pg.keyboard.press(key)
        assert _state(pg)["index"] == expected, key
    assert pg.locator(".vce-info").first.inner_text() == "Slice 8 / 8"
    assert [m.inner_text() for m in pg.locator(".vce-panel").first.locator(".vce-marker").all()] == [
        "A",
        "P",
        "R",
        "L",
    ]


@pytest.mark.browser
def test_drag_adjusts_window_and_level_and_presets_show_the_state(page: Any) -> None:
    pg = page
    pg.locator(".vce-preset", has_text="Full").click()
    before = _state(pg)
    assert before["preset"] == "Full" and "vce-active" in pg.locator(
        ".vce-preset", has_text="Full"
    ).get_attribute("class")
    grey_before = _centre_grey(pg)[0]
    box = pg.locator(".vce-canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(x, y)
    pg.mouse.down()
    pg.mouse.move(x - 60, y + 40, steps=6)  # left: narrower window; down: higher level
    pg.mouse.up()
    after = _state(pg)
    assert after["width"] < before["width"] and after["level"] > before["level"]
    assert after["preset"] == ""
    assert pg.locator(".vce-preset-state").inner_text() == "custom window"
    assert pg.locator(".vce-preset.vce-active").count() == 0
    grey_after = _centre_grey(pg)[0]
    value = STEP * after["index"] + 5.0
    assert abs(grey_after - _expected_grey(value, after["level"], after["width"])) <= 3
    assert grey_after != grey_before
    winfo = pg.locator(".vce-winfo").first.inner_text()
    assert winfo == f"W {format_value(after['width'])} L {format_value(after['level'])}"
    pg.locator(".vce-preset", has_text="Narrow").click()
    assert _state(pg)["level"] == 60 and _state(pg)["width"] == 40 and _state(pg)["preset"] == "Narrow"


@pytest.mark.browser
def test_javascript_formats_numbers_like_python(page: Any) -> None:
    values = [1208.2396, -250.4, 99.94, 12.5, 3.0, 0.03456, 0.0, -0.5, 0.00012345]
    shown = page.evaluate("(vs) => vs.map((v) => VCEViewer.format(v))", values)
    assert shown == [format_value(v) for v in values]


@pytest.mark.browser
def test_lazy_loader_fills_slices_and_overlays_tell_what_is_missing(browser: Any) -> None:
    """One slice inline, the rest from a page loader that never has slice 5; busy and message panels."""
    slices = _test_stack()
    enc = Encoding.for_range(0, 200)
    encoded = {k: enc.encode(s) for k, s in enumerate(slices)}
    data = _stack_payload(
        slices,
        group="lazy",
        panels=[
            Panel("image", "Image", stack="img"),
            Panel("soon", "Soon", stack="img", busy="synthesizing…"),
            Panel("none", "None", stack="img", message="no acquisition at 50 % dose"),
        ],
        stacks={"img": Stack(enc, {3: encoded[3]})},
        index=3,
        plane="coronal",
        prefetch=1,
    )
    served = {str(k): v for k, v in encoded.items() if k != 5}
    loader = (
        "<script>window.ASKED = []; const S = " + json.dumps(served) + ";"
        "VCEViewer.setLoader('lazy', async (reqs) => { const out = {img: {}};"
        " for (const r of reqs) { ASKED.push(r.index); if (S[r.index]) out.img[r.index] = S[r.index]; }"
        " return out; });</script>"
    )
    pg = _open(browser, viewer_html_of(data) + loader)
    pg.wait_for_function("window.ASKED && ASKED.length >= 2")
    assert sorted(pg.evaluate("ASKED")) == [2, 4]  # the neighbours of slice 3, not slice 3 itself
    busy = pg.locator(".vce-busy")
    assert busy.nth(0).is_hidden()
    assert (
        busy.nth(1).inner_text() == "synthesizing…"
        and busy.nth(2).inner_text() == "no acquisition at 50 % dose"
    )
    assert [m.inner_text() for m in pg.locator(".vce-panel").first.locator(".vce-marker").all()] == [
        "S",
        "I",
        "R",
        "L",
    ]
    pg.locator(".vce-viewer").focus()
    pg.keyboard.press("ArrowDown")  # slice 4: arrives from the loader
    pg.wait_for_function("document.querySelector('.vce-busy').style.display === 'none'")
    pg.keyboard.press("ArrowDown")  # slice 5: the loader never has it
    pg.wait_for_function("ASKED.includes(5)")
    pg.wait_for_timeout(300)
    assert busy.nth(0).inner_text() == "loading slice 6…"
    asked = pg.evaluate("ASKED.length")
    pg.wait_for_timeout(1000)
    assert pg.evaluate("ASKED.length") == asked  # asked again only while answers brought slices
    pg.close()


def test_serve_slices_reads_only_well_formed_requests() -> None:
    from vce_core.viewer import MAX_SLICE_REQUESTS, serve_slices

    asked: list[tuple[str, list[int]]] = []

    def lookup(stack: str, indices: list[int]) -> dict[int, str]:
        asked.append((stack, indices))
        if stack == "bad":
            raise VCEInputError("unknown stack")
        return {k: f"s{k}" for k in indices if k < 3}

    requests = [
        {"stack": "a", "index": 1},
        {"stack": "a", "index": 5},  # the lookup cannot serve it: left out
        {"stack": "b", "index": True},  # a bool is no slice index
        {"stack": 7, "index": 1},
        "junk",
        {"stack": "bad", "index": 0},
        {"stack": "c", "index": "2"},
    ]
    assert serve_slices(requests, lookup) == {"a": {"1": "s1"}}
    assert asked == [("a", [1, 5]), ("bad", [0])]
    assert serve_slices(None, lookup) == {}
    many = [{"stack": "a", "index": 0}] * (MAX_SLICE_REQUESTS + 10)
    asked.clear()
    serve_slices(many, lookup)
    assert asked == [("a", [0] * MAX_SLICE_REQUESTS)]
