"""View controls shared by the tabs that show one case at a time (dose explorer, virtual contrast).

Gradio components only; each tab lays them out in its own column and wires them to its own handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gradio as gr

from vce_core.display import PLANES


def case_label(case_id: str) -> str:
    """Dropdown label of a case id ``group/.../case``: the case name, then its folder in brackets."""
    return case_id.split("/")[-1] + (f"  ({case_id.rsplit('/', 1)[0]})" if "/" in case_id else "")


def case_dropdown(case_ids: Sequence[str], first: str | None, *, elem_id: str | None = None) -> gr.Dropdown:
    """The case picker: readable labels, case ids as values."""
    choices = [(case_label(c), c) for c in case_ids]
    return gr.Dropdown(choices=choices, value=first, label="Case", elem_id=elem_id)


def plane_and_slice(index: int, count: int, *, info: str, prefix: str = "") -> dict[str, Any]:
    """``{"plane", "slice_sl"}``: the plane radio (axial first; ``info`` says what another plane costs)
    and the 1-based slice slider of ``count`` slices at ``index`` (0-based); element ids
    ``{prefix}plane-radio`` and ``{prefix}slice`` (the explorer's slider keeps its id ``slice-slider``)."""
    plane = gr.Radio(list(PLANES), value="axial", label="Plane", info=info, elem_id=f"{prefix}plane-radio")
    slice_id = f"{prefix}slice" if prefix else "slice-slider"
    slice_sl = gr.Slider(1, max(count, 2), value=index + 1, step=1, label="Slice", elem_id=slice_id)
    return {"plane": plane, "slice_sl": slice_sl}


def model_card(summary: str) -> dict[str, Any]:
    """``{"card_md"}``: the selected model's card summary in a closed "Model card" accordion."""
    with gr.Accordion("Model card", open=False):
        return {"card_md": gr.Markdown(summary)}


class SliceSource(Protocol):
    """What a one-case tab's computation tells the slice slider."""

    def default_index(self, case_id: str, plane: str) -> int: ...

    def slice_count(self, case_id: str, plane: str) -> int: ...


def slider_for(source: SliceSource, case_id: str, plane: str) -> gr.Slider:
    """Slice-slider update for a new case or plane: the plane's range, on its lesion slice."""
    index = source.default_index(case_id, plane)
    return gr.Slider(minimum=1, maximum=source.slice_count(case_id, plane), value=index + 1)


def controls_and_viewer(
    build_controls: Callable[[], dict[str, Any]],
    info: str,
    value: str,
    *,
    js: str,
    loader: Callable[[list[dict[str, Any]]], dict[str, dict[str, str]]],
    elem_id: str,
) -> tuple[dict[str, Any], gr.Markdown, gr.HTML]:
    """The top row of a one-case tab: its controls (left) and, right, the case line and the shared viewer
    (``value`` its first payload, ``js`` its mount script, ``loader`` its slice loader)."""

    def viewer_slices(requests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return loader(requests)  # a plain function: Gradio marks it as a server function

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=250):
            controls = build_controls()
        with gr.Column(scale=5):
            case_md = gr.Markdown(info, elem_classes=["vce-caption"])
            viewer = gr.HTML(
                value, js_on_load=js, server_functions=[viewer_slices], elem_id=elem_id, min_height=540
            )
    return controls, case_md, viewer
