"""The stack viewer: one image component for every place that shows a stack of slices in a browser.

Python side (no Gradio): :func:`payload` packs display-ready ``uint8`` slices into a JSON-safe dict and
:func:`viewer_html` wraps it in the ``<div class="vce-viewer" data-payload=...>`` element that the browser
side (:data:`VIEWER_JS`, :data:`VIEWER_CSS`; pass them to the page once) turns into a viewer:

- mouse wheel, arrow keys, PageUp/PageDown and on-screen buttons move through the slices;
- dragging with the left button sets the window (right/left: width, up/down: level) on the ``uint8``
  values, window presets are buttons, a double-click resets slice and window;
- orientation markers (radiological convention by default: R on the viewer's left, A at the top) are
  drawn over the image;
- the image is enlarged to the available space with interpolation (canvas ``imageSmoothingQuality``
  "high"), never by pixel replication.

The pixels travel uncompressed (base64 of the raw bytes), so the size of a payload depends only on the
number and shape of its slices, never on their content: a blinded reader learns nothing from byte sizes.
The element's ``data-slice`` and ``data-window`` attributes expose the shown slice and window to tests.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VCEInputError

_HERE = Path(__file__).resolve().parent
VIEWER_JS = (_HERE / "viewer.js").read_text(encoding="utf-8")
"""The browser side: a function expression for ``launch(js=...)`` (idempotent; watches the page)."""
VIEWER_CSS = (_HERE / "viewer.css").read_text(encoding="utf-8")
"""The viewer's style sheet."""

RADIOLOGICAL_MARKERS: dict[str, dict[str, str]] = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
}
"""Orientation markers of :func:`vce_core.display.to_display` images, per plane."""


def payload(
    slices: Sequence[np.ndarray],
    *,
    focus: int = 0,
    plane: str = "axial",
    presets: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The JSON-safe description of a stack for the viewer.

    Parameters
    ----------
    slices:
        2-D ``uint8`` arrays ``(rows, cols)`` of one shape, display-ready (oriented, square pixels).
    focus:
        0-based slice the viewer opens on.
    plane:
        ``axial``, ``coronal`` or ``sagittal``: picks the orientation markers.
    presets:
        ``{name: (level, width)}`` in display units (0–255), shown as buttons.

    Returns
    -------
    ``{"width", "height", "count", "focus", "markers", "presets", "pixels"}``; ``pixels`` is the base64 of
    the slices' raw bytes, row-major, slice after slice.
    """
    if not slices:
        raise VCEInputError("the viewer needs at least one slice")
    stack = [np.asarray(s) for s in slices]
    shape = stack[0].shape
    if any(s.ndim != 2 or s.dtype != np.uint8 or s.shape != shape for s in stack):
        raise VCEInputError("the viewer's slices must be 2-D uint8 arrays of one shape")
    if plane not in RADIOLOGICAL_MARKERS:
        raise VCEInputError(f"unknown plane {plane!r}", expected=", ".join(RADIOLOGICAL_MARKERS))
    if not 0 <= focus < len(stack):
        raise VCEInputError(f"focus slice {focus} is outside 0..{len(stack) - 1}")
    raw = np.ascontiguousarray(np.stack(stack)).tobytes()
    return {
        "width": int(shape[1]),
        "height": int(shape[0]),
        "count": len(stack),
        "focus": int(focus),
        "markers": dict(RADIOLOGICAL_MARKERS[plane]),
        "presets": [
            {"name": str(name), "level": float(level), "width": float(width)}
            for name, (level, width) in (presets or {}).items()
        ],
        "pixels": base64.b64encode(raw).decode("ascii"),
    }


def viewer_html(data: Mapping[str, Any], *, elem_id: str | None = None) -> str:
    """The viewer element holding ``data`` (from :func:`payload`), HTML-escaped."""
    ident = f' id="{html.escape(elem_id, quote=True)}"' if elem_id else ""
    text = html.escape(json.dumps(data, separators=(",", ":")), quote=True)
    return f'<div class="vce-viewer"{ident} tabindex="0" data-payload="{text}"></div>'


def decode_payload(data: Mapping[str, Any]) -> np.ndarray:
    """The slices of a payload as a ``(count, height, width)`` ``uint8`` array (for tests and tools)."""
    raw = base64.b64decode(data["pixels"])
    return np.frombuffer(raw, np.uint8).reshape(data["count"], data["height"], data["width"])


__all__ = [
    "RADIOLOGICAL_MARKERS",
    "VIEWER_CSS",
    "VIEWER_JS",
    "decode_payload",
    "payload",
    "viewer_html",
]
