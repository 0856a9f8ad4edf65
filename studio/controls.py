"""View controls shared by the tabs that show one case at a time (dose explorer, virtual contrast).

Gradio components only; each tab lays them out in its own column and wires them to its own handlers.
"""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from vce_core.display import PLANES


def case_label(case_id: str) -> str:
    """Dropdown label of a case id ``group/.../case``: the case name, then its folder in brackets."""
    return case_id.split("/")[-1] + (f"  ({case_id.rsplit('/', 1)[0]})" if "/" in case_id else "")


def case_dropdown(case_ids: Sequence[str], first: str | None, *, elem_id: str | None = None) -> gr.Dropdown:
    """The case picker: readable labels, case ids as values."""
    choices = [(case_label(c), c) for c in case_ids]
    return gr.Dropdown(choices=choices, value=first, label="Case", elem_id=elem_id)


def plane_and_slice(index: int, count: int, *, info: str, prefix: str = "") -> tuple[gr.Radio, gr.Slider]:
    """The plane radio (axial first; ``info`` says what another plane costs) and the 1-based slice slider
    of ``count`` slices at ``index`` (0-based); element ids ``{prefix}plane-radio`` and ``{prefix}slice``
    (the explorer's slider keeps its historic id ``slice-slider``)."""
    plane = gr.Radio(list(PLANES), value="axial", label="Plane", info=info, elem_id=f"{prefix}plane-radio")
    slice_id = f"{prefix}slice" if prefix else "slice-slider"
    slice_sl = gr.Slider(1, max(count, 2), value=index + 1, step=1, label="Slice", elem_id=slice_id)
    return plane, slice_sl
