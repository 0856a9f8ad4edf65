"""The Reader tab: log in with a token, read the items of a study one by one, answer, go back if allowed.

:class:`ReaderHandlers` holds the handlers (callable directly, without a browser); :func:`mount_reader_tab`
lays out the components and wires them to the handlers. Every handler that shows an item returns the
values of :data:`ITEM_OUTPUTS` in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from vce_core.display import apply_window

from ..service import ReaderStudyService
from ..service.views import QuestionView, ServedItem
from .common import (
    DEFAULT_LEVEL,
    DEFAULT_WIDTH,
    MAX_QUESTIONS,
    actor_of,
    enlarge,
    reader_window,
    refuse,
    shows_errors,
)

ITEM_OUTPUTS = (
    "state",
    "message",
    "instructions",
    "reading",
    "counter",
    "bar",
    "image",
    "reference",
    "slice_no",
    "level",
    "width",
    "back",
)
"""What a handler that shows an item returns, in order; the 3 × MAX_QUESTIONS answer slots follow."""
LOGIN_OUTPUTS = ("login_box", "token", "study_pick")
"""What the login handler returns before the :data:`ITEM_OUTPUTS`."""


def progress_html(done: int, total: int) -> str:
    """A thin progress bar, ``done`` of ``total`` items."""
    percent = 0 if total == 0 else round(100 * done / total)
    return (
        '<div style="height:10px;border-radius:5px;background:#e5e7eb;overflow:hidden">'
        f'<div style="height:10px;width:{percent}%;background:#2563eb"></div></div>'
    )


def _slot_update(index: int, q: QuestionView, given: Any) -> list[Any]:
    """(choice, confidence, text) updates of one question's answer slot."""
    label = f"{index + 1}. {q.text}" + ("" if q.required else " (optional)")
    hidden = gr.update(visible=False, value=None)
    no_text = gr.update(visible=False, value="")
    if q.kind == "likert":
        choices = [(f"{k} – {v}", k) for k, v in sorted(q.options["anchors"].items())]
        return [gr.update(visible=True, label=label, choices=choices, value=given), hidden, no_text]
    if q.kind == "single_choice":
        choices = [(f"{k + 1} – {c}", c) for k, c in enumerate(q.options["choices"])]
        return [gr.update(visible=True, label=label, choices=choices, value=given), hidden, no_text]
    if q.kind == "real_vs_synthetic":
        given = given or {}
        conf = [(f"{k} – {v}", k) for k, v in sorted(q.options["confidence_anchors"].items())]
        return [
            gr.update(
                visible=True,
                label=label,
                choices=[("1 – Real", "real"), ("2 – Synthetic", "synthetic")],
                value=given.get("value"),
            ),
            gr.update(
                visible=True,
                label="Confidence",
                choices=conf,
                value=None if given.get("confidence") is None else str(given["confidence"]),
            ),
            no_text,
        ]
    return [hidden, hidden, gr.update(visible=True, label=label, value=given or "")]


def slot_updates(questions: list[QuestionView], answers: dict[str, Any]) -> list[Any]:
    """Updates of the MAX_QUESTIONS × (choice, confidence, text) answer components."""
    out: list[Any] = []
    for i in range(MAX_QUESTIONS):
        if i < len(questions):
            out += _slot_update(i, questions[i], answers.get(questions[i].key))
        else:
            empty = gr.update(visible=False, value=None)
            out += [empty, empty, gr.update(visible=False, value="")]
    return out


def answers_from(questions: list[QuestionView], values: tuple[Any, ...]) -> dict[str, Any]:
    """The slots' values (choice, confidence, text per question) → answers for ``submit_answers``."""
    answers: dict[str, Any] = {}
    for i, q in enumerate(questions[:MAX_QUESTIONS]):
        choice, confidence, text = values[3 * i : 3 * i + 3]
        if q.kind == "real_vs_synthetic":
            answers[q.key] = None if choice is None else {"value": choice, "confidence": confidence}
        elif q.kind == "free_text":
            answers[q.key] = text
        else:
            answers[q.key] = choice
    return answers


def _status_text(served: ServedItem) -> str:
    """Why there is no item to read."""
    if served.status == "done":
        return "**All items are answered. Thank you!**"
    if served.status == "washout" and served.available_at is not None:
        return f"Your next reading session opens on {served.available_at:%Y-%m-%d %H:%M} UTC (washout)."
    return "This study is not open for reading at the moment."


class ReaderHandlers:
    """The Reader tab's handlers over ``service``; ``state`` is the per-session dict kept in ``gr.State``
    (``actor``, ``study``, ``questions``, ``show_reference``, ``item``) and never sent to the browser."""

    def __init__(self, service: ReaderStudyService) -> None:
        self.service = service

    def images(
        self, state: dict[str, Any], slice_no: float, level: float, width: float
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(image, reference image) of the current item at 1-based slice ``slice_no`` under window/level."""
        actor = actor_of(state)
        item = state.get("item")
        if not item:
            return None, None
        stack = self.service.item_images(actor, state["study"], item["public_id"])
        k = int(np.clip(round(slice_no or 1) - 1, 0, len(stack) - 1))
        image = enlarge(apply_window(stack[k], reader_window(level, width)))
        reference = None
        if state.get("show_reference"):
            ref = self.service.reference_images(actor, state["study"], item["public_id"])
            reference = enlarge(apply_window(ref[min(k, len(ref) - 1)], reader_window(level, width)))
        return image, reference

    def show(self, state: dict[str, Any], served: ServedItem, note: str = "") -> list[Any]:
        """The :data:`ITEM_OUTPUTS` and slots for ``served`` (an item, or why there is none)."""
        if served.status != "item":
            state["item"] = None
            return [
                state,
                _status_text(served),
                gr.update(),
                gr.update(visible=False),
                "",
                "",
                None,
                None,
                gr.update(),
                gr.update(),
                gr.update(),
                gr.update(visible=False),
                *slot_updates([], {}),
            ]
        state["item"] = {"public_id": served.public_id, "position": served.position, "total": served.total}
        img, ref = self.images(state, 1, DEFAULT_LEVEL, DEFAULT_WIDTH)
        round_note = f" · reading {served.iteration} of {served.iterations}" if served.iterations > 1 else ""
        return [
            state,
            note,
            gr.update(visible=True),
            gr.update(visible=True),
            f"**{served.position} / {served.total}**{round_note}",
            progress_html(served.done, served.total),
            img,
            gr.update(value=ref, visible=state.get("show_reference", False)),
            gr.update(minimum=1, maximum=max(served.n_slices, 2), value=1, interactive=served.n_slices > 1),
            DEFAULT_LEVEL,
            DEFAULT_WIDTH,
            gr.update(visible=served.can_back),
            *slot_updates(state["questions"], served.answers),
        ]

    def enter_study(self, state: dict[str, Any], study: str) -> list[Any]:
        """Start (or resume) ``study``: its instructions and the reader's next item."""
        view = self.service.study_view(state["actor"], study)
        state.update(study=study, questions=view["questions"], show_reference=view["show_reference"])
        if len(view["questions"]) > MAX_QUESTIONS:
            refuse(f"This study has more than {MAX_QUESTIONS} questions; the reader view shows at most that.")
        out = self.show(state, self.service.next_item(state["actor"], study))
        out[ITEM_OUTPUTS.index("instructions")] = gr.update(visible=True, value=view["instructions"])
        return out

    @shows_errors("logging in")
    def login(self, token: str) -> list[Any]:
        """Log in with a reader token: :data:`LOGIN_OUTPUTS` then the first study's item outputs."""
        actor = self.service.authenticate(token or "")
        if actor.role != "reader":
            refuse("This is not a reader token (use the Study admin tab).")
        state: dict[str, Any] = {"actor": actor}
        studies = [s["name"] for s in self.service.list_studies(actor)]
        if not studies:
            unchanged = [gr.update()] * (len(ITEM_OUTPUTS) + 3 * MAX_QUESTIONS - 2)
            head = [gr.update(visible=True), "", gr.update(visible=False)]
            return [*head, state, "You are not enrolled in an open study.", *unchanged]
        head = [
            gr.update(visible=False),
            "",
            gr.update(choices=studies, value=studies[0], visible=len(studies) > 1),
        ]
        out = self.enter_study(state, studies[0])
        out[ITEM_OUTPUTS.index("message")] = f"Logged in as **{actor.display_name}**."
        return [*head, *out]

    @shows_errors("opening the study")
    def pick(self, state: dict[str, Any], study: str) -> list[Any]:
        """Switch to another of the reader's studies."""
        actor_of(state)
        return self.enter_study(state, study)

    @shows_errors("showing the image")
    def view(self, state: dict[str, Any], slice_no: float, level: float, width: float) -> tuple[Any, Any]:
        """(image, reference) at another slice or window."""
        return self.images(state, slice_no, level, width)

    @shows_errors("resetting the window")
    def reset(self, state: dict[str, Any]) -> tuple[Any, ...]:
        """(slice 1, default level, default width, image, reference)."""
        img, ref = self.images(state, 1, DEFAULT_LEVEL, DEFAULT_WIDTH)
        return 1, DEFAULT_LEVEL, DEFAULT_WIDTH, img, ref

    @shows_errors("storing your answers")
    def submit(self, state: dict[str, Any], *values: Any) -> list[Any]:
        """Store the slots' answers for the current item and show the next one."""
        actor = actor_of(state)
        if not state.get("item"):
            refuse("There is no item to answer.")
        answers = answers_from(state["questions"], values)
        result = self.service.submit_answers(actor, state["study"], state["item"]["public_id"], answers)
        note = "Answer already saved." if result.status == "duplicate" else ""
        return self.show(state, self.service.next_item(actor, state["study"]), note)

    @shows_errors("going back")
    def back(self, state: dict[str, Any]) -> list[Any]:
        """Show the previous item (studies that allow going back)."""
        actor = actor_of(state)
        if not state.get("item"):
            refuse("There is no earlier item.")
        return self.show(state, self.service.item_at(actor, state["study"], state["item"]["position"] - 1))


@dataclass
class ReaderLayout:
    """The Reader tab's components (``slots``: MAX_QUESTIONS × choice, confidence, text)."""

    state: Any
    login_box: Any
    token: Any
    login: Any
    message: Any
    study_pick: Any
    instructions: Any
    reading: Any
    counter: Any
    bar: Any
    image: Any
    reference: Any
    slice_no: Any
    level: Any
    width: Any
    reset: Any
    slots: list[Any]
    back: Any
    submit: Any

    def item_outputs(self) -> list[Any]:
        return [getattr(self, name) for name in ITEM_OUTPUTS] + self.slots

    def login_outputs(self) -> list[Any]:
        return [getattr(self, name) for name in LOGIN_OUTPUTS] + self.item_outputs()


def _image(**kwargs: Any) -> gr.Image:
    """A read-only PNG image without download or share buttons."""
    return gr.Image(type="numpy", format="png", buttons=[], interactive=False, height=520, **kwargs)


def _answer_slots() -> list[Any]:
    slots: list[Any] = []
    for _ in range(MAX_QUESTIONS):
        slots.append(gr.Radio(choices=[], visible=False, elem_classes=["rs-q"]))
        slots.append(gr.Radio(choices=[], visible=False, elem_classes=["rs-q"]))
        slots.append(gr.Textbox(visible=False, lines=2, max_lines=6))
    return slots


def reader_layout() -> ReaderLayout:
    """Create the Reader tab's components inside the current Gradio context."""
    state = gr.State(None)
    with gr.Group(visible=True) as login_box:
        gr.Markdown("Log in with the personal access token you received for the study.")
        with gr.Row():
            token = gr.Textbox(label="Access token", type="password", scale=4, max_lines=1)
            login = gr.Button("Log in", variant="primary", scale=1)
    message = gr.Markdown("")
    study_pick = gr.Dropdown(label="Study", choices=[], visible=False, interactive=True)
    instructions = gr.Markdown("", visible=False)
    with gr.Column(visible=False, elem_id="rs-reading") as reading:
        with gr.Row():
            counter = gr.Markdown("")
            bar = gr.HTML("")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    image = _image(show_label=False, elem_id="rs-image")
                    reference = _image(label="Reference (standard dose)", visible=False)
                slice_no = gr.Slider(1, 2, value=1, step=1, label="Slice")
                with gr.Row():
                    level = gr.Slider(0, 255, value=DEFAULT_LEVEL, step=0.5, label="Level")
                    width = gr.Slider(1, 255, value=DEFAULT_WIDTH, step=1, label="Width")
                    reset = gr.Button("Reset window", size="sm")
            with gr.Column(scale=2):
                slots = _answer_slots()
                with gr.Row():
                    back = gr.Button("Back", visible=False)
                    submit = gr.Button("Submit", variant="primary", elem_id="rs-submit")
    return ReaderLayout(
        state=state,
        login_box=login_box,
        token=token,
        login=login,
        message=message,
        study_pick=study_pick,
        instructions=instructions,
        reading=reading,
        counter=counter,
        bar=bar,
        image=image,
        reference=reference,
        slice_no=slice_no,
        level=level,
        width=width,
        reset=reset,
        slots=slots,
        back=back,
        submit=submit,
    )


def _wire(ui: ReaderLayout, h: ReaderHandlers) -> None:
    """Connect the components to the handlers (neutral api names: nothing about the study in them)."""
    item_outputs, login_outputs = ui.item_outputs(), ui.login_outputs()
    ui.login.click(h.login, [ui.token], login_outputs, api_name="r_login", concurrency_limit=None)
    ui.token.submit(h.login, [ui.token], login_outputs, api_visibility="private", concurrency_limit=None)
    ui.study_pick.input(
        h.pick, [ui.state, ui.study_pick], item_outputs, api_name="r_study", concurrency_limit=None
    )
    for control in (ui.slice_no, ui.level, ui.width):
        control.input(
            h.view,
            [ui.state, ui.slice_no, ui.level, ui.width],
            [ui.image, ui.reference],
            api_name="r_view" if control is ui.slice_no else None,
            api_visibility="public" if control is ui.slice_no else "private",
            trigger_mode="always_last",
            concurrency_limit=None,
        )
    ui.reset.click(
        h.reset,
        [ui.state],
        [ui.slice_no, ui.level, ui.width, ui.image, ui.reference],
        api_name="r_reset",
        concurrency_limit=None,
    )
    ui.submit.click(
        h.submit,
        [ui.state, *ui.slots],
        item_outputs,
        api_name="r_submit",
        concurrency_limit=None,
        trigger_mode="once",
    )
    ui.back.click(h.back, [ui.state], item_outputs, api_name="r_back", concurrency_limit=None)


def mount_reader_tab(service: ReaderStudyService) -> ReaderHandlers:
    """Lay out the Reader tab in the current Gradio context and wire it; returns its handlers."""
    handlers = ReaderHandlers(service)
    _wire(reader_layout(), handlers)
    return handlers
