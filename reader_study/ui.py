"""Gradio pieces of the reader study: the Reader tab and the Study-admin tab (thin: they call the service).

Mount inside the app's ``gr.Blocks``::

    with gr.Blocks() as demo:
        ...
        mount_reader_study(service)          # adds the tabs "Reader study" and "Study admin"
    demo.launch(js=READER_JS)                 # keys 1-5 answer, Enter submits

Blinding, following ``gradio-notes.md``:

- identity lives in a ``gr.State`` (server-side), never in a component value; every handler re-checks it and
  the service re-checks the role and ownership (a direct call of an endpoint without logging in inside the
  same session is refused);
- images leave as numpy uint8 arrays (served under an opaque hash + ``image.png``), ``format="png"``,
  ``buttons=[]``; the item's public id stays on the server;
- reader endpoints have neutral ``api_name`` values (``/r_login``, ``/r_view``, ``/r_submit``, ...), and no
  condition, dose, generator, case id or file name is in any value, label or choice sent to a reader.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from vce_core.errors import VCEInputError

from . import analysis, export
from .demo import DEMO_SPEC
from .render import apply_window
from .service import Actor, QuestionView, ReaderStudyError, ReaderStudyService, ServedItem

MAX_QUESTIONS = 8
DEFAULT_LEVEL = 127.5
DEFAULT_WIDTH = 255.0

DISPLAY_PIXELS = 512  # long side of a reader image on screen, reached by integer pixel replication

READER_JS = """
() => {
  if (window.__rsKeys) return;
  window.__rsKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || t.isContentEditable ||
        (t.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(t.type)))) return;
    const root = document.querySelector('#rs-reading');
    if (!root || root.offsetParent === null) return;
    if (e.key >= '1' && e.key <= '9' && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const groups = [...root.querySelectorAll('.rs-q')].filter((g) => g.offsetParent !== null);
      const open = groups.find((g) => !g.querySelector('input[type=radio]:checked'))
        || groups[groups.length - 1];
      if (!open) return;
      const inputs = open.querySelectorAll('input[type=radio]');
      const choice = inputs[parseInt(e.key, 10) - 1];
      if (choice) { choice.click(); e.preventDefault(); }
    } else if (e.key === 'Enter') {
      const button = document.querySelector('#rs-submit');
      if (button) { button.click(); e.preventDefault(); }
    }
  });
}
"""
"""Keyboard shortcuts of the Reader tab; pass to ``launch(js=READER_JS)``."""


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the service's refusals and bad input into a Gradio error toast (no traceback to the browser)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (VCEInputError, ReaderStudyError, PermissionError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


def _actor(state: dict[str, Any] | None, *, admin: bool = False) -> Actor:
    actor = (state or {}).get("actor")
    if not isinstance(actor, Actor) or (admin and actor.role != "admin"):
        raise gr.Error("Please log in with your access token first.", print_exception=False)
    return actor


def _progress_html(done: int, total: int) -> str:
    percent = 0 if total == 0 else round(100 * done / total)
    return (
        '<div style="height:10px;border-radius:5px;background:#e5e7eb;overflow:hidden">'
        f'<div style="height:10px;width:{percent}%;background:#2563eb"></div></div>'
    )


def _slot_updates(questions: list[QuestionView], answers: dict[str, Any]) -> list[Any]:
    """Updates of the MAX_QUESTIONS × (choice, confidence, text) answer components."""
    out: list[Any] = []
    for i in range(MAX_QUESTIONS):
        if i >= len(questions):
            out += [
                gr.update(visible=False, value=None),
                gr.update(visible=False, value=None),
                gr.update(visible=False, value=""),
            ]
            continue
        q = questions[i]
        label = f"{i + 1}. {q.text}" + ("" if q.required else " (optional)")
        given = answers.get(q.key)
        hidden = gr.update(visible=False, value=None)
        if q.kind == "likert":
            choices = [(f"{k} – {v}", k) for k, v in sorted(q.options["anchors"].items())]
            out += [
                gr.update(visible=True, label=label, choices=choices, value=given),
                hidden,
                gr.update(visible=False, value=""),
            ]
        elif q.kind == "single_choice":
            choices = [(f"{k + 1} – {c}", c) for k, c in enumerate(q.options["choices"])]
            out += [
                gr.update(visible=True, label=label, choices=choices, value=given),
                hidden,
                gr.update(visible=False, value=""),
            ]
        elif q.kind == "real_vs_synthetic":
            given = given or {}
            conf = [(f"{k} – {v}", k) for k, v in sorted(q.options["confidence_anchors"].items())]
            out += [
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
                gr.update(visible=False, value=""),
            ]
        else:
            out += [hidden, hidden, gr.update(visible=True, label=label, value=given or "")]
    return out


def _answers_from(questions: list[QuestionView], values: tuple[Any, ...]) -> dict[str, Any]:
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


def _view(service: ReaderStudyService, state: dict[str, Any], slice_no: float, level: float, width: float):
    """(image, reference image) of the current item at 1-based slice ``slice_no`` under window/level."""
    actor = _actor(state)
    item = state.get("item")
    if not item:
        return None, None
    stack = service.item_images(actor, state["study"], item["public_id"])
    k = int(np.clip(round(slice_no or 1) - 1, 0, len(stack) - 1))
    image = _enlarge(apply_window(stack[k], level, width))
    reference = None
    if state.get("show_reference"):
        ref = service.reference_images(actor, state["study"], item["public_id"])
        reference = _enlarge(apply_window(ref[min(k, len(ref) - 1)], level, width))
    return image, reference


def _enlarge(image: np.ndarray, target: int = DISPLAY_PIXELS) -> np.ndarray:
    """Integer nearest-neighbour enlargement so the long side is close to ``target`` pixels.

    Browsers show a small PNG at its own size; 1 mm brain slices (~200 px) would be read as thumbnails.
    Pixel replication keeps every grey value exact (no interpolation a reader could mistake for texture).
    """
    factor = max(1, target // max(image.shape))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def mount_reader_study(service: ReaderStudyService) -> None:
    """Create the tabs "Reader study" and "Study admin" inside the current ``gr.Blocks`` context."""
    with gr.Tab("Reader study", elem_id="rs-reader-tab"):
        _reader_tab(service)
    with gr.Tab("Study admin", elem_id="rs-admin-tab"):
        _admin_tab(service)


# ------------------------------------------------------------------------------------------------- reader
def _reader_tab(service: ReaderStudyService) -> None:
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
                    image = gr.Image(
                        type="numpy",
                        format="png",
                        buttons=[],
                        interactive=False,
                        show_label=False,
                        height=520,
                        elem_id="rs-image",
                    )
                    reference = gr.Image(
                        type="numpy",
                        format="png",
                        buttons=[],
                        interactive=False,
                        label="Reference (standard dose)",
                        height=520,
                        visible=False,
                    )
                slice_no = gr.Slider(1, 2, value=1, step=1, label="Slice")
                with gr.Row():
                    level = gr.Slider(0, 255, value=DEFAULT_LEVEL, step=0.5, label="Level")
                    width = gr.Slider(1, 255, value=DEFAULT_WIDTH, step=1, label="Width")
                    reset = gr.Button("Reset window", size="sm")
            with gr.Column(scale=2):
                slots: list[Any] = []
                for _ in range(MAX_QUESTIONS):
                    slots.append(gr.Radio(choices=[], visible=False, elem_classes=["rs-q"]))
                    slots.append(gr.Radio(choices=[], visible=False, elem_classes=["rs-q"]))
                    slots.append(gr.Textbox(visible=False, lines=2, max_lines=6))
                with gr.Row():
                    back = gr.Button("Back", visible=False)
                    submit = gr.Button("Submit", variant="primary", elem_id="rs-submit")

    item_outputs = [
        state,
        message,
        instructions,
        reading,
        counter,
        bar,
        image,
        reference,
        slice_no,
        level,
        width,
        back,
        *slots,
    ]

    def show(st: dict[str, Any], served: ServedItem, note: str = "") -> list[Any]:
        if served.status != "item":
            st["item"] = None
            if served.status == "done":
                text = "**All items are answered. Thank you!**"
            elif served.status == "washout" and served.available_at is not None:
                text = (
                    f"Your next reading session opens on {served.available_at:%Y-%m-%d %H:%M} UTC (washout)."
                )
            else:
                text = "This study is not open for reading at the moment."
            return [
                st,
                text,
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
                *_slot_updates([], {}),
            ]
        st["item"] = {"public_id": served.public_id, "position": served.position, "total": served.total}
        img, ref = _view(service, st, 1, DEFAULT_LEVEL, DEFAULT_WIDTH)
        round_note = f" · reading {served.iteration} of {served.iterations}" if served.iterations > 1 else ""
        return [
            st,
            note,
            gr.update(visible=True),
            gr.update(visible=True),
            f"**{served.position} / {served.total}**{round_note}",
            _progress_html(served.done, served.total),
            img,
            gr.update(value=ref, visible=st.get("show_reference", False)),
            gr.update(minimum=1, maximum=max(served.n_slices, 2), value=1, interactive=served.n_slices > 1),
            DEFAULT_LEVEL,
            DEFAULT_WIDTH,
            gr.update(visible=served.can_back),
            *_slot_updates(st["questions"], served.answers),
        ]

    def enter_study(st: dict[str, Any], study: str) -> list[Any]:
        view = service.study_view(st["actor"], study)
        st.update(study=study, questions=view["questions"], show_reference=view["show_reference"])
        if len(view["questions"]) > MAX_QUESTIONS:
            raise gr.Error(
                f"This study has more than {MAX_QUESTIONS} questions; the reader view shows at most that."
            )
        out = show(st, service.next_item(st["actor"], study))
        out[2] = gr.update(visible=True, value=view["instructions"])
        return out

    @_guard
    def do_login(token_value: str) -> list[Any]:
        actor = service.authenticate(token_value or "")
        if actor.role != "reader":
            raise gr.Error("This is not a reader token (use the Study admin tab).", print_exception=False)
        st: dict[str, Any] = {"actor": actor}
        studies = [s["name"] for s in service.list_studies(actor)]
        if not studies:
            return [
                gr.update(visible=True),
                "",
                gr.update(visible=False),
                *[st, "You are not enrolled in an open study.", *[gr.update()] * (len(item_outputs) - 2)],
            ]
        head = [
            gr.update(visible=False),
            "",
            gr.update(choices=studies, value=studies[0], visible=len(studies) > 1),
        ]
        out = enter_study(st, studies[0])
        out[1] = f"Logged in as **{actor.display_name}**."
        return [*head, *out]

    @_guard
    def do_pick(st: dict[str, Any], study: str) -> list[Any]:
        _actor(st)
        return enter_study(st, study)

    @_guard
    def do_view(st: dict[str, Any], k: float, lv: float, wd: float):  # noqa: ANN202
        return _view(service, st, k, lv, wd)

    @_guard
    def do_reset(st: dict[str, Any]):  # noqa: ANN202
        img, ref = _view(service, st, 1, DEFAULT_LEVEL, DEFAULT_WIDTH)
        return 1, DEFAULT_LEVEL, DEFAULT_WIDTH, img, ref

    @_guard
    def do_submit(st: dict[str, Any], *values: Any) -> list[Any]:
        actor = _actor(st)
        if not st.get("item"):
            raise gr.Error("There is no item to answer.", print_exception=False)
        answers = _answers_from(st["questions"], values)
        result = service.submit_answers(actor, st["study"], st["item"]["public_id"], answers)
        note = "Answer already saved." if result.status == "duplicate" else ""
        return show(st, service.next_item(actor, st["study"]), note)

    @_guard
    def do_back(st: dict[str, Any]) -> list[Any]:
        actor = _actor(st)
        if not st.get("item"):
            raise gr.Error("There is no earlier item.", print_exception=False)
        return show(st, service.item_at(actor, st["study"], st["item"]["position"] - 1))

    login_outputs = [login_box, token, study_pick, *item_outputs]
    login.click(do_login, [token], login_outputs, api_name="r_login", concurrency_limit=None)
    token.submit(do_login, [token], login_outputs, api_visibility="private", concurrency_limit=None)
    study_pick.input(do_pick, [state, study_pick], item_outputs, api_name="r_study", concurrency_limit=None)
    view_inputs = [state, slice_no, level, width]
    for control in (slice_no, level, width):
        control.input(
            do_view,
            view_inputs,
            [image, reference],
            api_name="r_view" if control is slice_no else None,
            api_visibility="public" if control is slice_no else "private",
            trigger_mode="always_last",
            concurrency_limit=None,
        )
    reset.click(
        do_reset,
        [state],
        [slice_no, level, width, image, reference],
        api_name="r_reset",
        concurrency_limit=None,
    )
    submit.click(
        do_submit,
        [state, *slots],
        item_outputs,
        api_name="r_submit",
        concurrency_limit=None,
        trigger_mode="once",
    )
    back.click(do_back, [state], item_outputs, api_name="r_back", concurrency_limit=None)


# -------------------------------------------------------------------------------------------------- admin
def _admin_tab(service: ReaderStudyService) -> None:
    state = gr.State(None)
    with gr.Row():
        token = gr.Textbox(label="Admin token", type="password", scale=4, max_lines=1)
        login = gr.Button("Log in", scale=1)
    message = gr.Markdown("")
    with gr.Column(visible=False) as panel:
        with gr.Row():
            study = gr.Dropdown(label="Study", choices=[], interactive=True, scale=3)
            refresh = gr.Button("Refresh", scale=1)
            open_btn = gr.Button("Open", scale=1)
            close_btn = gr.Button("Close", scale=1, variant="stop")
        studies_table = gr.Dataframe(label="Studies", interactive=False)
        with gr.Accordion("Create a study from a spec", open=False):
            upload = gr.File(label="Spec (YAML)", file_types=[".yaml", ".yml"], type="filepath")
            template = gr.Button("Load the demo spec as a template", size="sm")
            # empty at first: the initial value of a component is in /config, which readers can fetch too
            spec_text = gr.Code(value="", language="yaml", label="Spec")
            create = gr.Button("Create study (renders every item; may take a while)", variant="primary")
            created = gr.Markdown("")
        with gr.Accordion("Enrol a reader", open=False):
            with gr.Row():
                reader_name = gr.Textbox(label="Display name", scale=3)
                enroll = gr.Button("Enrol", scale=1)
            new_token = gr.Textbox(label="Token (shown once — give it to the reader now)", interactive=False)
        progress = gr.Dataframe(label="Progress per reader", interactive=False)
        with gr.Accordion("Results", open=True):
            results = gr.Button("Compute results")
            scores_plot = gr.Plot(label="Score distribution")
            with gr.Row():
                question = gr.Dropdown(label="Question (per-case means)", choices=[], interactive=True)
                case_plot = gr.Plot(label="Per-case means")
            turing_plot = gr.Plot(label="Real vs synthetic")
            scores_table = gr.Dataframe(label="Scores per condition", interactive=False)
            paired_table = gr.Dataframe(label="Wilcoxon signed-rank, paired by case", interactive=False)
            alpha_table = gr.Dataframe(label="Krippendorff's alpha (ordinal)", interactive=False)
            kappa_table = gr.Dataframe(label="Quadratic-weighted kappa per reader pair", interactive=False)
            icc_table = gr.Dataframe(label="ICC", interactive=False)
            turing_table = gr.Dataframe(label="Real vs synthetic per reader", interactive=False)
        with gr.Row():
            fmt = gr.Radio(list(export.FORMATS), value="long", label="Export format")
            do_export_btn = gr.Button("Export")
            exported = gr.File(label="Download", interactive=False)

    def studies_update(actor: Actor, selected: str | None = None) -> tuple[Any, pd.DataFrame]:
        rows = service.list_studies(actor)
        names = [r["name"] for r in rows]
        value = selected if selected in names else (names[-1] if names else None)
        return gr.update(choices=names, value=value), pd.DataFrame(rows)

    @_guard
    def do_login(token_value: str):  # noqa: ANN202
        actor = service.authenticate(token_value or "")
        if actor.role != "admin":
            raise gr.Error("This is not an admin token.", print_exception=False)
        dropdown, table = studies_update(actor)
        note = f"Logged in as **{actor.display_name}** (admin)."
        return {"actor": actor}, "", note, gr.update(visible=True), dropdown, table

    @_guard
    def do_refresh(st: dict[str, Any], name: str | None):  # noqa: ANN202
        actor = _actor(st, admin=True)
        dropdown, table = studies_update(actor, name)
        prog = service.progress_all(actor, name) if name else pd.DataFrame()
        return dropdown, table, prog

    @_guard
    def do_status(st: dict[str, Any], name: str | None, status: str):  # noqa: ANN202
        actor = _actor(st, admin=True)
        if not name:
            raise gr.Error("Choose a study.", print_exception=False)
        service.set_status(actor, name, status)
        return (*studies_update(actor, name), f"Study **{name}** is now {status}.")

    @_guard
    def do_upload(st: dict[str, Any], path: str | None) -> str:
        _actor(st, admin=True)
        if not path:
            return gr.update()
        return Path(path).read_text(encoding="utf-8")

    @_guard
    def do_template(st: dict[str, Any]) -> str:
        _actor(st, admin=True)
        return DEMO_SPEC.read_text(encoding="utf-8")

    @_guard
    def do_create(st: dict[str, Any], text: str):  # noqa: ANN202
        actor = _actor(st, admin=True)
        out = service.create_study(actor, text or "")
        lines = [f"Created **{out['study']}** ({out['status']}): {out['cases']} cases, {out['items']} items."]
        if out["readers"]:
            lines.append("Reader tokens (shown once):\n")
            lines += [f"- {r['name']}: `{r['token']}`" for r in out["readers"]]
        dropdown, table = studies_update(actor, out["study"])
        return "\n".join(lines), dropdown, table

    @_guard
    def do_enroll(st: dict[str, Any], name: str | None, display: str):  # noqa: ANN202
        actor = _actor(st, admin=True)
        if not name:
            raise gr.Error("Choose a study.", print_exception=False)
        _, tok = service.enroll_reader(actor, name, display)
        return tok, service.progress_all(actor, name)

    @_guard
    def do_results(st: dict[str, Any], name: str | None, q: str | None):  # noqa: ANN202
        actor = _actor(st, admin=True)
        if not name:
            raise gr.Error("Choose a study.", print_exception=False)
        answers = service.answers_frame(actor, name)
        likert_keys = [k.key for k in service.questions(actor, name) if k.kind == "likert"]
        q = q if q in likert_keys else (likert_keys[0] if likert_keys else None)
        if answers.empty:
            empty = pd.DataFrame()
            return (
                None,
                gr.update(choices=likert_keys, value=q),
                None,
                None,
                *[empty] * 6,
                "No answers yet.",
            )
        summary = analysis.summarize(answers)
        case_fig = analysis.case_means_figure(answers, q) if q else None
        return (
            analysis.score_figure(answers),
            gr.update(choices=likert_keys, value=q),
            case_fig,
            analysis.turing_figure(answers),
            summary["scores"],
            summary["paired"],
            summary["alpha"],
            summary["kappa"],
            summary["icc"],
            summary["turing"],
            f"{len(answers)} answers.",
        )

    @_guard
    def do_case_plot(st: dict[str, Any], name: str | None, q: str | None):  # noqa: ANN202
        actor = _actor(st, admin=True)
        if not name or not q:
            return None
        answers = service.answers_frame(actor, name)
        return None if answers.empty else analysis.case_means_figure(answers, q)

    @_guard
    def do_export(st: dict[str, Any], name: str | None, kind: str) -> str:
        actor = _actor(st, admin=True)
        if not name:
            raise gr.Error("Choose a study.", print_exception=False)
        answers = service.answers_frame(actor, name)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "study"
        suffix = "imrmc" if kind == "imrmc" else "csv"
        out = Path(tempfile.mkdtemp(prefix="rs-export-")) / f"{safe}_{kind}.{suffix}"
        return str(export.export_answers(answers, kind, out))

    login.click(do_login, [token], [state, token, message, panel, study, studies_table], api_name="a_login")
    refresh.click(do_refresh, [state, study], [study, studies_table, progress], api_name="a_refresh")
    study.input(do_refresh, [state, study], [study, studies_table, progress], api_visibility="private")
    open_btn.click(
        functools.partial(do_status, status="open"),
        [state, study],
        [study, studies_table, message],
        api_name="a_open",
    )
    close_btn.click(
        functools.partial(do_status, status="closed"),
        [state, study],
        [study, studies_table, message],
        api_name="a_close",
    )
    upload.upload(do_upload, [state, upload], [spec_text], api_visibility="private")
    template.click(do_template, [state], [spec_text], api_visibility="private")
    create.click(do_create, [state, spec_text], [created, study, studies_table], api_name="a_create")
    enroll.click(do_enroll, [state, study, reader_name], [new_token, progress], api_name="a_enroll")
    results.click(
        do_results,
        [state, study, question],
        [
            scores_plot,
            question,
            case_plot,
            turing_plot,
            scores_table,
            paired_table,
            alpha_table,
            kappa_table,
            icc_table,
            turing_table,
            message,
        ],
        api_name="a_results",
    )
    question.input(do_case_plot, [state, study, question], [case_plot], api_visibility="private")
    do_export_btn.click(do_export, [state, study, fmt], [exported], api_name="a_export")
