"""The Reader view: log in with a token, read the items of a study one by one in the stack viewer, answer.

:class:`ReaderHandlers` holds the handlers (callable directly, without a browser); :func:`mount_reader_tab`
lays out the components and wires them to the handlers. The handlers keep nothing between calls: the
caller comes from the session cookie/header (:mod:`.session`), the item from the ticket the page holds
(``item``: "<ticket> <idempotency key>"), the study from the study picker. Any app process serving the
same database answers any call the same way (several workers, a restart).

Every handler that shows an item returns the values of :data:`ITEM_OUTPUTS`, then the 3 × MAX_QUESTIONS
answer slots. A submit with answers missing returns the same page with only the missing questions
highlighted and a note; nothing else changes (what is chosen stays chosen).
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from vce_core.cache import LRU
from vce_core.viewer import Encoding, Panel, Stack, payload, viewer_html

from ..errors import AccessDenied, StudyStateError
from ..service import ReaderStudyService
from ..service.views import QuestionView, ServedItem
from .common import MAX_QUESTIONS, notes_errors, refuse, shows_errors
from .session import LOGIN_JS, LOGOUT_JS, caller

VIEW_OUTPUTS = ("token", "login_box", "reading", "study_pick", "instructions", "reference_box")
"""Layout outputs of the handlers that open a view (log-in, page load, study switch, back, log-out)."""
ITEM_OUTPUTS = ("status", "counter", "bar", "viewer", "reference", "item")
"""What every handler returns after the :data:`VIEW_OUTPUTS` (view handlers) or alone (submit), in order;
the 3 × MAX_QUESTIONS answer slots follow. A submit returns plain values only: Gradio rebuilds a component
for every ``gr.update``, which would cost more than storing the answers."""
SLOT_CLASS = "rs-q"
SUBMIT_NOTES = {
    "duplicate": "Answer already saved. ",
    "conflict": "This image was already answered (in another window); here is your next one. ",
}
"""What the status line says after a submit that stored nothing new."""
FULL_RANGE = "Full range"
PRESETS = {FULL_RANGE: (127.5, 255.0), "Brain": (110.0, 180.0), "Contrast": (150.0, 150.0)}
"""Window presets of the reader's viewer, (level, width) on the stored 0–255 images."""


def status_html(message: str, *, missing: tuple[int, ...] = (), form: bool = True, back: bool = False) -> str:
    """The status line with the view's state as a style sheet: the answer form hidden when there is
    nothing to answer, Back shown when allowed, the ``missing`` answer slots outlined until answered."""
    rules = []
    if not form:
        rules.append("#rs-form{display:none}")
    if back:
        rules.append("#rs-back{display:flex}")
    for slot in missing:
        rules.append(f"#rs-slot-{slot}{{outline:2px solid #dc2626;outline-offset:2px;border-radius:8px}}")
        rules.append(f"#rs-slot-{slot}:has(input:checked){{outline:none}}")
    style = f"<style>{''.join(rules)}</style>" if rules else ""
    text = html.escape(message).replace("\n", "<br>")
    return f'<div class="rs-status" role="status"{" data-missing" if missing else ""}>{text}</div>{style}'


def progress_html(done: int, total: int) -> str:
    """A thin progress bar, ``done`` of ``total`` items."""
    percent = 0 if total == 0 else round(100 * done / total)
    return (
        f'<div class="rs-bar" title="{done} of {total} answered"><div style="width:{percent}%"></div></div>'
    )


def _slot_update(index: int, q: QuestionView, given: Any) -> list[Any]:
    """(choice, confidence, text) updates of one question's answer slot (highlight cleared)."""
    label = f"{index + 1}. {q.text}" + ("" if q.required else " (optional)")
    plain = [SLOT_CLASS]
    hidden = gr.update(visible=False, value=None, elem_classes=plain)
    no_text = gr.update(visible=False, value="", elem_classes=plain)
    if q.kind in ("likert", "single_choice"):
        if q.kind == "likert":
            choices = [(f"{k} – {v}", k) for k, v in sorted(q.options["anchors"].items())]
        else:
            choices = [(f"{k + 1} – {c}", c) for k, c in enumerate(q.options["choices"])]
        shown = gr.update(visible=True, label=label, choices=choices, value=given, elem_classes=plain)
        return [shown, hidden, no_text]
    if q.kind == "real_vs_synthetic":
        given = given or {}
        conf = [(f"{k} – {v}", k) for k, v in sorted(q.options["confidence_anchors"].items())]
        confidence = None if given.get("confidence") is None else str(given["confidence"])
        return [
            gr.update(
                visible=True,
                label=label,
                choices=[("1 – Real", "real"), ("2 – Synthetic", "synthetic")],
                value=given.get("value"),
                elem_classes=plain,
            ),
            gr.update(visible=True, label="Confidence", choices=conf, value=confidence, elem_classes=plain),
            no_text,
        ]
    return [hidden, hidden, gr.update(visible=True, label=label, value=given or "", elem_classes=plain)]


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
    """The slots' values (choice, confidence, text per question) → answers for the service."""
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


def missing_slots(questions: list[QuestionView], values: tuple[Any, ...]) -> list[int]:
    """Indices (into the 3 × MAX_QUESTIONS slots) of required answers not given."""
    missing = []
    for i, q in enumerate(questions[:MAX_QUESTIONS]):
        if not q.required:
            continue
        choice, confidence, text = values[3 * i : 3 * i + 3]
        if q.kind == "free_text":
            missing += [] if str(text or "").strip() else [3 * i + 2]
        else:
            missing += [] if choice not in (None, "") else [3 * i]
            if q.kind == "real_vs_synthetic" and confidence in (None, ""):
                missing.append(3 * i + 1)
    return missing


def _status_text(served: ServedItem) -> str:
    """Why there is no item to read."""
    if served.status == "done":
        return "All items are answered. Thank you!"
    if served.status == "washout" and served.available_at is not None:
        return f"Your next reading session opens on {served.available_at:%Y-%m-%d %H:%M} UTC (washout)."
    return "This study is not open for reading at the moment."


def _viewer(stack: list[np.ndarray], focus: int, plane: str, element_id: str, ticket: str) -> str:
    """The shared stack viewer with every slice inline, uint8 as stored (the encoded size depends only on
    the number and shape of the slices). The stack id and context come from the assignment's random
    ticket: the browser caches slices per stack id, and a new context resets slice and window."""
    encoding = Encoding("uint8")
    stack_id = f"{element_id}-{ticket}"
    data = payload(
        group=element_id,
        panels=[Panel("image", "", stack=stack_id)],
        stacks={stack_id: Stack(encoding, {k: encoding.encode(s) for k, s in enumerate(stack)}, lazy=False)},
        count=len(stack),
        index=min(focus, len(stack) - 1),
        shape=stack[0].shape,
        spacing=(1.0, 1.0),
        window=PRESETS[FULL_RANGE],
        preset=FULL_RANGE,
        presets=PRESETS,
        plane=plane,
        context=ticket,
        columns=1,
        prefetch=0,
    )
    return viewer_html(data, element_id=element_id)


def n_outputs(view: bool = False) -> int:
    """How many values a submit (or, with ``view``, a view handler) returns."""
    return (len(VIEW_OUTPUTS) if view else 0) + len(ITEM_OUTPUTS) + 3 * MAX_QUESTIONS


def _cleared(questions: list[QuestionView], answers: dict[str, Any]) -> list[Any]:
    """Plain slot values for the next item of the same study: ``answers`` (back navigation) or empty."""
    out: list[Any] = []
    for i in range(MAX_QUESTIONS):
        q = questions[i] if i < len(questions) else None
        given = answers.get(q.key) if q is not None else None
        if q is not None and q.kind == "real_vs_synthetic":
            given = given or {}
            confidence = given.get("confidence")
            out += [given.get("value"), None if confidence is None else str(confidence), ""]
        elif q is not None and q.kind == "free_text":
            out += [None, None, given or ""]
        else:
            out += [given, None, ""]
    return out


class ReaderHandlers:
    """The Reader view's handlers over ``service`` (stateless: see the module docstring)."""

    def __init__(self, service: ReaderStudyService) -> None:
        self.service = service
        self._views: LRU[dict[str, Any]] = LRU(64)

    def study_view(self, actor: Any, study: str) -> dict[str, Any]:
        """The study's instructions and questions (checked for this reader, then kept per study)."""
        view = self._views.get(study)
        if view is None:
            view = self._views.put(study, self.service.study_view(actor, study))
        return view

    def item(self, actor: Any, study: str, served: ServedItem, note: str = "") -> list[Any]:
        """Plain values of :data:`ITEM_OUTPUTS` and the slots for ``served`` (an item, or why there is
        none) of ``study``."""
        view = self.study_view(actor, study)
        if served.status != "item":
            empty = [None, None, ""] * MAX_QUESTIONS
            return [status_html(note + _status_text(served), form=False), "", "", "", "", "", *empty]
        stack = list(served.images)
        reference = ""
        if view["show_reference"]:
            reference = _viewer(
                self.service.ticket_reference(actor, served.ticket), served.focus, served.plane
            )
        rounds = f" · reading {served.iteration} of {served.iterations}" if served.iterations > 1 else ""
        return [
            status_html(note, back=served.can_back),
            f"**{served.position} / {served.total}**{rounds}",
            progress_html(served.done, served.total),
            _viewer(stack, served.focus, served.plane, "rs-item", served.ticket),
            reference,
            f"{served.ticket} {secrets.token_urlsafe(12)}",
            *_cleared(view["questions"], served.answers),
        ]

    def logged_out(self, note: str = "") -> list[Any]:
        """The log-in form (reading view hidden) with ``note``."""
        hidden = gr.update(visible=False)
        view = ["", gr.update(visible=True), hidden, hidden, hidden, hidden]
        return [*view, status_html(note), *[gr.update()] * (n_outputs() - 1)]

    def enter(self, actor: Any, study: str | None, note: str = "") -> list[Any]:
        """Start or resume ``study`` (default: the reader's first open study) at the next item."""
        studies = [s["name"] for s in self.service.list_studies(actor)]
        if not studies:
            out = self.logged_out("You are not enrolled in an open study.")
            out[VIEW_OUTPUTS.index("login_box")] = gr.update(visible=False)
            return out
        study = study if study in studies else studies[0]
        view = self.study_view(actor, study)
        if len(view["questions"]) > MAX_QUESTIONS:
            refuse(f"This study has more than {MAX_QUESTIONS} questions; the reader view shows at most that.")
        served = self.service.next_item(actor, study)
        items = self.item(actor, study, served, note)
        layout = [
            "",
            gr.update(visible=False),
            gr.update(visible=True),
            gr.update(choices=studies, value=study, visible=len(studies) > 1),
            gr.update(visible=True, value=view["instructions"]),
            gr.update(visible=view["show_reference"]),
        ]
        slots = slot_updates(view["questions"], served.answers)
        return [*layout, *items[: len(ITEM_OUTPUTS)], *slots]

    @shows_errors("opening the reading view")
    def load(self, request: gr.Request, study: str | None) -> list[Any]:
        """Page (re)load: resume where the reader is when the browser holds a session, else the log-in."""
        try:
            actor = caller(self.service, request, "reader")
        except AccessDenied:  # the page already shows the log-in; a log-in made meanwhile stays shown
            return [gr.update()] * n_outputs(view=True)
        return self.enter(actor, study)

    @shows_errors("logging in")
    def login(self, request: gr.Request, note: str, study: str | None) -> list[Any]:
        """After the browser posted the token (``note``: why that failed, empty when it worked)."""
        if note:
            return self.logged_out(note)
        actor = caller(self.service, request, "reader")
        return self.enter(actor, study, f"Logged in as {actor.display_name}. ")

    @shows_errors("logging out")
    def logout(self) -> list[Any]:
        """After the browser ended its session."""
        return self.logged_out("You are logged out.")

    @shows_errors("opening the study")
    def pick(self, request: gr.Request, study: str | None) -> list[Any]:
        """Switch to another of the reader's studies."""
        return self.enter(caller(self.service, request, "reader"), study)

    @notes_errors("storing your answers", n_outputs(), ITEM_OUTPUTS.index("status"), status_html)
    def submit(self, request: gr.Request, item: str, study: str | None, *values: Any) -> list[Any]:
        """Store the answers for the item the page shows (its ticket and idempotency key in ``item``)
        and show the next one; answers missing → only those questions are highlighted."""
        actor = caller(self.service, request, "reader")
        ticket, _, key = (item if isinstance(item, str) else "").partition(" ")
        if not ticket or not isinstance(study, str):
            raise StudyStateError("There is no item to answer; reload the page.")
        questions = self.study_view(actor, study)["questions"]
        missing = missing_slots(questions, tuple(values))
        if missing:
            out: list[Any] = [gr.update()] * n_outputs()
            out[0] = status_html("Please answer the highlighted questions.", missing=tuple(missing))
            out[len(ITEM_OUTPUTS) :] = list(values)  # what was chosen stays chosen
            return out
        answers = answers_from(questions, tuple(values))
        status, served = self.service.submit_and_next(actor, ticket, key, answers, study)
        return self.item(actor, study, served, SUBMIT_NOTES.get(status, ""))

    @shows_errors("going back")
    def back(self, request: gr.Request, item: str, study: str | None) -> list[Any]:
        """Show the previous item (studies that allow going back)."""
        actor = caller(self.service, request, "reader")
        if study is None:
            refuse("There is no earlier item.")
        served = self.service.previous_item(actor, str(item or "").split(" ")[0])
        return [*[gr.update()] * len(VIEW_OUTPUTS), *self.item(actor, study, served)]


@dataclass
class ReaderLayout:
    """The Reader view's components (``slots``: MAX_QUESTIONS × choice, confidence, text)."""

    login_box: Any
    token: Any
    login: Any
    status: Any
    study_pick: Any
    instructions: Any
    reading: Any
    counter: Any
    bar: Any
    viewer: Any
    reference_box: Any
    reference: Any
    item: Any
    slots: list[Any]
    back: Any
    submit: Any
    logout: Any

    def item_outputs(self) -> list[Any]:
        return [getattr(self, name) for name in ITEM_OUTPUTS] + self.slots

    def view_outputs(self) -> list[Any]:
        return [getattr(self, name) for name in VIEW_OUTPUTS] + self.item_outputs()


def _answer_slots() -> list[Any]:
    slots: list[Any] = []
    for i in range(MAX_QUESTIONS):
        for kind in ("choice", "confidence"):
            slot = 3 * i + (kind == "confidence")
            slots.append(
                gr.Radio(choices=[], visible=False, elem_classes=[SLOT_CLASS], elem_id=f"rs-slot-{slot}")
            )
        slots.append(
            gr.Textbox(
                visible=False, lines=2, max_lines=6, elem_classes=[SLOT_CLASS], elem_id=f"rs-slot-{3 * i + 2}"
            )
        )
    return slots


def reader_layout() -> ReaderLayout:
    """Create the Reader view's components inside the current Gradio context."""
    parts: dict[str, Any] = {}
    with gr.Group(visible=True) as parts["login_box"]:
        gr.Markdown("Log in with the personal access token you received for the study.")
        with gr.Row():
            parts["token"] = gr.Textbox(label="Access token", type="password", scale=4, max_lines=1)
            parts["login"] = gr.Button("Log in", variant="primary", scale=1)
    parts["status"] = gr.HTML("", elem_id="rs-message", padding=False)
    parts["study_pick"] = gr.Dropdown(
        label="Study", choices=[], visible=False, interactive=True, allow_custom_value=True
    )
    parts["instructions"] = gr.Markdown("", visible=False)
    with gr.Column(visible=False, elem_id="rs-reading") as parts["reading"]:
        with gr.Row():
            parts["counter"] = gr.Markdown("", elem_id="rs-counter")
            parts["bar"] = gr.HTML("", padding=False)
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    parts["viewer"] = gr.HTML("", elem_id="rs-viewer", padding=False)
                    with gr.Column(visible=False) as parts["reference_box"]:
                        gr.Markdown("Reference")
                        parts["reference"] = gr.HTML("", padding=False)
            with gr.Column(scale=2, elem_id="rs-form"):
                parts["slots"] = _answer_slots()
                parts["item"] = gr.Textbox(visible=False)
                with gr.Row():
                    parts["back"] = gr.Button("Back", elem_id="rs-back")
                    parts["submit"] = gr.Button("Submit", variant="primary", elem_id="rs-submit")
        parts["logout"] = gr.Button("Log out", size="sm", variant="secondary")
    return ReaderLayout(**parts)


def _wire(blocks: gr.Blocks, ui: ReaderLayout, h: ReaderHandlers) -> None:
    """Connect the components to the handlers (neutral api names: nothing about the study in them)."""
    view, items = ui.view_outputs(), ui.item_outputs()
    fast = {"concurrency_limit": None, "show_progress": "hidden"}
    login_js = LOGIN_JS % "reader"
    blocks.load(h.load, [ui.study_pick], view, api_visibility="private", **fast)
    ui.login.click(h.login, [ui.token, ui.study_pick], view, js=login_js, api_name="r_login", **fast)
    ui.token.submit(h.login, [ui.token, ui.study_pick], view, js=login_js, api_visibility="private", **fast)
    ui.study_pick.input(h.pick, [ui.study_pick], view, api_name="r_study", **fast)
    # The submit skips Gradio's per-component pre- and postprocessing (each a hop to a worker thread,
    # 56 per submit): the handler takes the raw values (the service validates every answer) and returns
    # plain values that need none.
    ui.submit.click(
        h.submit,
        [ui.item, ui.study_pick, *ui.slots],
        items,
        api_name="r_submit",
        trigger_mode="once",
        preprocess=False,
        postprocess=False,
        **fast,
    )
    ui.back.click(h.back, [ui.item, ui.study_pick], view, api_name="r_back", **fast)
    ui.logout.click(h.logout, None, view, js=LOGOUT_JS % "reader", api_visibility="private", **fast)


def mount_reader_tab(service: ReaderStudyService, blocks: gr.Blocks | None = None) -> ReaderHandlers:
    """Lay out the Reader view in the current Gradio context and wire it; returns its handlers."""
    handlers = ReaderHandlers(service)
    _wire(blocks or gr.context.Context.root_block, reader_layout(), handlers)
    return handlers
