"""The shared stack viewer: slices → what the browser viewer needs (no Gradio, no server round trips).

The browser side is ``static/viewer.js`` + ``static/viewer.css`` (no dependencies, shipped as package
data; pass :func:`head_html` to ``launch(head=...)`` or any page's ``<head>``). Every element carrying a
``data-vce-viewer`` attribute with a payload of :func:`payload` is mounted automatically, so the viewer
works inside HTML that a framework inserts later (``gr.HTML``). In the browser it gives, without any
server round trip once slices are there:

* mouse-wheel and arrow-key slice scrolling (↑/↓/←/→ one slice, PageUp/PageDown ten, Home/End), on
  every linked panel of a group at once;
* mouse-drag window/level (OHIF convention: right widens the window, down raises the level), preset
  buttons that show which preset is active (and "custom window" after a drag), double-click to reset;
* orientation markers (radiological convention, :func:`orientation_markers`), slice number and window in
  the corners, numbers formatted for people (:func:`format_value`, the same rule as the JavaScript);
* smooth (interpolated, not pixel-replicated) enlargement with square pixels from the pixel spacing;
* derived panels computed in the browser (``lerp``: ``a + t·(b − a)``; ``sub``: ``a − b``) with a
  grey or a blue–white–red map and colour bar;
* slices either inline in the payload, or fetched lazily through a loader the page registers with
  ``VCEViewer.setLoader(group, fn)`` (nearest slices first) and cached in the browser.

Payload encoding: every stack has one :class:`Encoding` (``uint8`` or ``uint16`` with ``value = offset +
scale · stored``) and slices travel as base64 of the raw little-endian array in display orientation. The
encoded length depends only on the slice shape and dtype (:meth:`Encoding.encoded_length`), never on the
content: a reader study can send fixed-shape ``uint8`` slices whose byte size carries no information.

Why not a WebGL library: chosen by measurement (``python -m benchmarks.viewer_speed``, Chromium, a 189 ×
233 × 197 ``uint16`` stack in two linked panels, 2026-12-02): this script and style weigh 22.6 KiB (7.2 KiB
gzip) against 2231 KiB (774 KiB gzip) for NiiVue 0.69.0's ``niivue.umd.js`` (BSD-2-Clause, from ``npm
pack @niivue/niivue@0.69.0``, not bundled); first paint 0.47 s after navigation; a wheel step is redrawn
within the next animation frame (p50 16.7 ms, p95 19.8 ms). A 2-D canvas needs no WebGL (headless and
remote-desktop browsers often lack it), takes fixed-size ``uint8`` slices for reader studies, and draws
the explorer's derived panels (baseline, difference) without a volume format.

Slices are given in display orientation (:func:`oriented`: rows anterior/superior → posterior/inferior,
columns patient right → left, or anterior → posterior for sagittal), the convention of
:mod:`vce_core.display`, and are not resampled: the browser scales them to square pixels.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import numpy as np

from vce_core.display import PLANES, Window
from vce_core.errors import VCEInputError

__all__ = [
    "Encoding",
    "Panel",
    "Stack",
    "format_value",
    "head_html",
    "oriented",
    "orientation_markers",
    "payload",
    "serve_slices",
    "stack_html",
    "viewer_css",
    "viewer_html",
    "viewer_js",
]

PAYLOAD_VERSION = 1

_MARKERS: dict[str, dict[str, str]] = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
}


def orientation_markers(plane: str) -> dict[str, str]:
    """Letters at the four edges of a displayed slice (radiological convention).

    Axial: A top, P bottom, R left, L right; coronal: S, I, R, L; sagittal: S, I, A, P.
    """
    if plane not in _MARKERS:
        raise VCEInputError(f"unknown plane {plane!r}", expected=f"one of {', '.join(PLANES)}")
    return dict(_MARKERS[plane])


def oriented(
    slice2d: np.ndarray, pixel_spacing: tuple[float, float]
) -> tuple[np.ndarray, tuple[float, float]]:
    """A volume-orientation slice ``(A, B)`` turned into display orientation, not resampled.

    ``pixel_spacing`` is the spacing (mm) along ``A`` and ``B`` (:func:`vce_core.display.slice_spacing`).
    Returns the ``(rows, cols) = (B, A)`` image (the orientation of :func:`vce_core.display.to_display`)
    and its ``(row_mm, col_mm)`` spacing, which the browser uses to draw square pixels.
    """
    image = np.ascontiguousarray(np.asarray(slice2d).T[::-1, ::-1])
    return image, (float(pixel_spacing[1]), float(pixel_spacing[0]))


def format_value(value: float) -> str:
    """A number for people (window values, colour-bar labels): the rule of the viewer's JavaScript.

    ``|v| ≥ 100``: an integer (``1208``); ``1 ≤ |v| < 100``: at most one decimal (``12.5``); below 1: two
    significant digits (``0.034``); ``0`` stays ``0``; non-finite values are ``–``.
    """
    v = float(value)
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 100:
        return str(int(np.round(v)))
    if a >= 1:
        return f"{round(v, 1):g}"
    if a == 0:
        return "0"
    return f"{float(f'{v:.2g}'):g}"


@dataclass(frozen=True)
class Encoding:
    """How a stack's slices travel: ``value = offset + scale · stored`` with ``stored`` uint8 or uint16."""

    dtype: Literal["uint8", "uint16"] = "uint8"
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.dtype not in ("uint8", "uint16"):
            raise VCEInputError(f"viewer dtype {self.dtype!r}", expected="'uint8' or 'uint16'")
        if not (np.isfinite(self.scale) and self.scale > 0 and np.isfinite(self.offset)):
            raise VCEInputError(
                f"viewer encoding scale {self.scale!r} / offset {self.offset!r}",
                expected="a positive finite scale and a finite offset",
            )

    @classmethod
    def for_range(cls, low: float, high: float, dtype: Literal["uint8", "uint16"] = "uint16") -> Encoding:
        """The encoding that spans ``[low, high]`` (image units) with every code of ``dtype``."""
        top = 255 if dtype == "uint8" else 65535
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise VCEInputError(f"value range {low!r}..{high!r}", expected="finite numbers")
        return cls(dtype, max(high - low, 1e-6) / top, low)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype("<u1" if self.dtype == "uint8" else "<u2")

    def stored(self, image: np.ndarray) -> np.ndarray:
        """The stored codes of ``image`` (rounded, clipped to the dtype's range; NaN → 0)."""
        top = 255 if self.dtype == "uint8" else 65535
        arr = np.asarray(image)
        if arr.dtype == self.numpy_dtype and self.scale == 1 and self.offset == 0:
            return np.ascontiguousarray(arr)  # already the codes (e.g. stored reader images): no copy
        values = np.nan_to_num(arr.astype(np.float64), nan=self.offset)
        codes = np.clip(np.rint((values - self.offset) / self.scale), 0, top)
        return np.ascontiguousarray(codes.astype(self.numpy_dtype))

    def encode(self, image: np.ndarray) -> str:
        """Base64 text of the 2-D ``image`` (display orientation) as raw little-endian codes."""
        arr = np.asarray(image)
        if arr.ndim != 2 or min(arr.shape) < 1:
            raise VCEInputError(f"a viewer slice has shape {arr.shape}", expected="a non-empty 2-D image")
        return base64.b64encode(self.stored(arr).tobytes()).decode("ascii")

    def decode(self, text: str, shape: tuple[int, int]) -> np.ndarray:
        """float32 values of an encoded slice (what the browser computes)."""
        codes = np.frombuffer(base64.b64decode(text), dtype=self.numpy_dtype).reshape(shape)
        return (self.offset + self.scale * codes.astype(np.float64)).astype(np.float32)

    def encoded_length(self, shape: tuple[int, int]) -> int:
        """Characters of one encoded slice of ``shape``: fixed, whatever the content."""
        raw = int(shape[0]) * int(shape[1]) * self.numpy_dtype.itemsize
        return 4 * ((raw + 2) // 3)

    def meta(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "scale": float(self.scale), "offset": float(self.offset)}


@dataclass
class Panel:
    """One panel of a viewer group.

    ``stack``: id of the stack it shows; or ``derive``: ``{"op": "lerp", "a": id, "b": id, "t": 0.33}``
    (``a + t·(b − a)``) or ``{"op": "sub", "a": id, "b": id}`` (``a − b``), computed in the browser.
    ``colormap``: ``gray`` (the group's window) or ``diverging`` (blue–white–red over ``±limit``, or
    ``±limit_from_width × window width`` when ``limit`` is None, with a colour bar in ``units``).
    ``message``: text shown instead of an image (nothing to show); ``busy``: text shown over the image
    while it is being recomputed (True: "computing…").
    """

    key: str
    title: str
    stack: str | None = None
    derive: dict[str, Any] | None = None
    colormap: Literal["gray", "diverging"] = "gray"
    units: str = ""
    limit: float | None = None
    limit_from_width: float = 0.25
    message: str | None = None
    busy: str | bool | None = None

    @staticmethod
    def lerp(a: str, b: str, t: float) -> dict[str, Any]:
        """Derivation ``a + t·(b − a)`` (e.g. the linear dose baseline from native and standard dose)."""
        return {"op": "lerp", "a": a, "b": b, "t": float(t)}

    @staticmethod
    def difference(a: str, b: str) -> dict[str, Any]:
        """Derivation ``a − b``."""
        return {"op": "sub", "a": a, "b": b}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "title": self.title,
            "colormap": self.colormap,
            "limit_from_width": float(self.limit_from_width),
        }
        for name in ("stack", "derive", "units", "limit", "message", "busy"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = value
        return out


@dataclass
class Stack:
    """A stack of ``count`` slices of one encoding; ``slices`` maps 0-based indices to encoded slices."""

    encoding: Encoding
    slices: dict[int, str] = field(default_factory=dict)
    lazy: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.encoding.meta(),
            "slices": {str(k): v for k, v in self.slices.items()},
            "lazy": self.lazy,
        }


MAX_SLICE_REQUESTS = 64
"""The most slices one loader call answers (the browser asks for the nearest ones first)."""


def serve_slices(
    requests: Any, lookup: Callable[[str, list[int]], dict[int, str]]
) -> dict[str, dict[str, str]]:
    """Answer the browser loader's ``[{stack, index}, ...]`` with ``{stack: {index: base64}}``.

    Malformed entries are ignored and at most :data:`MAX_SLICE_REQUESTS` are read; ``lookup(stack,
    indices)`` returns the encoded slices it can serve (an unknown stack: nothing, or a
    :class:`VCEInputError`, which is treated the same way). Whatever is missing the viewer asks for again.
    """
    wanted: dict[str, list[int]] = {}
    for item in list(requests or [])[:MAX_SLICE_REQUESTS]:
        if isinstance(item, dict) and isinstance(item.get("stack"), str):
            index = item.get("index")
            if isinstance(index, int) and not isinstance(index, bool):
                wanted.setdefault(item["stack"], []).append(index)
    out: dict[str, dict[str, str]] = {}
    for stack, indices in wanted.items():
        try:
            got = lookup(stack, indices)
        except VCEInputError:
            continue
        if got:
            out[stack] = {str(k): v for k, v in got.items()}
    return out


def _window_tuple(window: Window | tuple[float, float]) -> tuple[float, float]:
    level, width = (window.level, window.width) if isinstance(window, Window) else window
    if not (np.isfinite(level) and np.isfinite(width) and width > 0):
        raise VCEInputError(f"window level {level!r} / width {width!r}", expected="finite, width > 0")
    return float(level), float(width)


def payload(
    *,
    group: str,
    panels: list[Panel],
    stacks: dict[str, Stack],
    count: int,
    index: int,
    shape: tuple[int, int],
    spacing: tuple[float, float],
    window: Window | tuple[float, float],
    preset: str = "",
    presets: dict[str, Window | tuple[float, float]] | None = None,
    plane: str | None = None,
    context: str = "",
    columns: int | None = None,
    panel_height: int | None = None,
    prefetch: int = 3,
    drag_scale: float | None = None,
    hint: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready payload of one viewer group (see the module docstring).

    Parameters
    ----------
    group: id shared by linked panels (one slice index and one window); also the loader's key.
    panels: what each panel shows (:class:`Panel`); stacks: their stacks by id.
    count, index: number of slices and the slice the viewer opens on (0-based).
    shape, spacing: ``(rows, cols)`` of every slice and its ``(row_mm, col_mm)`` spacing.
    window, preset, presets: the window the viewer opens with (level/width in the stacks' units), the
        name of the preset it is (``""`` for none) and the preset buttons.
    plane: ``axial``/``coronal``/``sagittal`` for orientation markers (None: no markers).
    context: when it changes (another case or plane) the browser resets slice and window to the
        payload's; otherwise it keeps what the person scrolled to and the window they dragged.
    columns, panel_height: grid columns (default: all panels in one row) and a fixed panel height (px).
    prefetch: slices fetched on each side of the current one through the loader.
    drag_scale: window units per dragged pixel (default: 1/256 of the window width).
    """
    if count < 1 or not 0 <= index < count:
        raise VCEInputError(f"slice {index} of {count}", expected="0 <= index < count, count >= 1")
    level, width = _window_tuple(window)
    for p in panels:
        refs = [p.stack] if p.stack else []
        refs += [p.derive["a"], p.derive["b"]] if p.derive else []
        missing = [r for r in refs if r not in stacks]
        if missing:
            raise VCEInputError(f"panel {p.key!r} refers to unknown stacks {missing}")
    out: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "group": group,
        "context": context,
        "count": int(count),
        "index": int(index),
        "rows": int(shape[0]),
        "cols": int(shape[1]),
        "spacing": [float(spacing[0]), float(spacing[1])],
        "markers": orientation_markers(plane) if plane else {},
        "window": {"level": level, "width": width, "preset": preset},
        "presets": {name: list(_window_tuple(w)) for name, w in (presets or {}).items()},
        "panels": [p.as_dict() for p in panels],
        "stacks": {sid: s.as_dict() for sid, s in stacks.items()},
        "columns": int(columns or len(panels)),
        "prefetch": int(prefetch),
    }
    if panel_height:
        out["panel_height"] = int(panel_height)
    if drag_scale:
        out["drag_scale"] = float(drag_scale)
    if hint:
        out["hint"] = hint
    return out


def viewer_html(data: dict[str, Any], *, element_id: str | None = None, css_class: str = "") -> str:
    """The element the browser script mounts: ``<div data-vce-viewer="{payload JSON}">``."""
    attrs = f' id="{html.escape(element_id, quote=True)}"' if element_id else ""
    classes = html.escape(f"vce-viewer-host {css_class}".strip(), quote=True)
    text = html.escape(json.dumps(data, separators=(",", ":"), allow_nan=False), quote=True)
    return f'<div class="{classes}"{attrs} data-vce-viewer="{text}"></div>'


def stack_html(
    slices: np.ndarray | list[np.ndarray],
    *,
    spacing: tuple[float, float],
    plane: str | None,
    window: Window | tuple[float, float],
    element_id: str,
    index: int = 0,
    presets: dict[str, Window | tuple[float, float]] | None = None,
    preset: str = "",
    title: str = "",
    encoding: Encoding | None = None,
    context: str = "",
    panel_height: int | None = None,
) -> str:
    """One panel with every slice inline (no loader needed), e.g. a reader-study item.

    ``slices``: ``(n, rows, cols)`` in display orientation (:func:`oriented`), ``uint8`` display units by
    default (``encoding`` None means ``Encoding("uint8")``: values are sent as they are, so the encoded
    size is fixed by ``n`` and the shape); ``spacing``: ``(row_mm, col_mm)``.
    """
    stack = np.asarray(slices)
    if stack.ndim != 3 or min(stack.shape) < 1:
        raise VCEInputError(f"slices have shape {stack.shape}", expected="(n, rows, cols)")
    enc = encoding or Encoding("uint8")
    sid = f"{element_id}-stack"
    data = payload(
        group=element_id,
        panels=[Panel("image", title, stack=sid)],
        stacks={sid: Stack(enc, {k: enc.encode(s) for k, s in enumerate(stack)}, lazy=False)},
        count=stack.shape[0],
        index=index,
        shape=(stack.shape[1], stack.shape[2]),
        spacing=spacing,
        window=window,
        preset=preset,
        presets=presets,
        plane=plane,
        context=context or element_id,
        columns=1,
        panel_height=panel_height,
        prefetch=0,
    )
    return viewer_html(data, element_id=element_id)


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def viewer_js() -> str:
    """The browser script (defines ``window.VCEViewer`` and mounts every ``data-vce-viewer`` element)."""
    return _static("viewer.js")


def viewer_css() -> str:
    """The viewer's style sheet."""
    return _static("viewer.css")


def head_html() -> str:
    """``<script>`` + ``<style>`` to put in the page's ``<head>`` (Gradio: ``launch(head=head_html())``)."""
    return f"<script>\n{viewer_js()}\n</script>\n<style>\n{viewer_css()}\n</style>"
