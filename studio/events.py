"""Event options and event wiring shared by the tabs that show one case at a time (dose explorer, virtual
contrast).

``FAST`` for the viewer events, ``ANALYSIS`` for the metrics and charts, ``PRIVATE`` for the events of the
controls themselves (the public endpoints are the named ones); :func:`wire_volume_metrics` for the
per-volume metrics button.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gradio as gr

FAST = {"trigger_mode": "always_last", "concurrency_limit": 2, "show_progress": "hidden"}
"""Event options of the viewer events (the last value wins)."""
ANALYSIS = {"trigger_mode": "always_last", "concurrency_limit": 1, "show_progress": "full"}
"""Event options of metrics and charts (Gradio's busy overlay on each output while it is recomputed)."""
PRIVATE = {"api_visibility": "private"}
"""Event option that keeps an event out of the public API."""


class VolumeMetricsComponents(Protocol):
    """A tab's components with a per-volume metrics button and the Markdown it fills."""

    vol_btn: gr.Button
    vol_md: gr.Markdown


def wire_volume_metrics(
    c: VolumeMetricsComponents, compute: Callable[..., str], inputs: list[Any], *, api_name: str
) -> None:
    """The per-volume metrics button ``c.vol_btn``: ``compute`` over ``inputs`` into ``c.vol_md``, also
    public as ``api_name``. Each computation may synthesize a whole volume, so one runs at a time."""
    c.vol_btn.click(compute, inputs, [c.vol_md], api_name=api_name, concurrency_limit=1)
