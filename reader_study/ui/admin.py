"""The Study-admin tab: studies (create from a spec, open, close), enrolment, progress, results, export.

:class:`AdminHandlers` holds the handlers (callable directly, without a browser); :func:`mount_admin_tab`
lays out the components and wires them to the handlers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import analysis, export
from ..auth import Actor
from ..demo import DEMO_SPEC
from ..errors import AccessDenied
from ..service import ReaderStudyService
from ..service.admin import STATUS_CHANGES
from .common import refuse, shows_errors
from .session import LOGIN_JS, LOGOUT_JS, caller

RESULT_OUTPUTS = (
    "scores_plot",
    "question",
    "case_plot",
    "turing_plot",
    "scores_table",
    "paired_table",
    "alpha_table",
    "kappa_table",
    "icc_table",
    "turing_table",
    "message",
)
"""What :meth:`AdminHandlers.results` returns, in order."""
CREATE_PROGRESS = gr.Progress()
SUMMARY_TABLES = ("scores", "paired", "alpha", "kappa", "icc", "turing")
"""Tables of :func:`reader_study.analysis.summarize` shown, in the order of their components."""


def _chosen(name: str | None) -> str:
    if not name:
        refuse("Choose a study.")
    return name


def _export_path(name: str, kind: str) -> Path:
    """A new temporary file for an export of study ``name`` (a safe file name)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "study"
    suffix = "imrmc" if kind == "imrmc" else "csv"
    return Path(tempfile.mkdtemp(prefix="rs-export-")) / f"{safe}_{kind}.{suffix}"


def status_buttons(status: str | None) -> tuple[Any, Any, Any]:
    """(Open, Close…, confirmation row) updates: only the transitions ``status`` allows are offered."""
    possible = {to for frm, to in STATUS_CHANGES if frm == status}
    return (
        gr.update(visible="open" in possible),
        gr.update(visible="closed" in possible),
        gr.update(visible=False),
    )


class AdminHandlers:
    """The Study-admin view's handlers over ``service``; every call resolves the administrator from the
    admin session cookie/header (:mod:`.session`), nothing is kept in the page."""

    def __init__(self, service: ReaderStudyService) -> None:
        self.service = service

    def actor(self, request: Any) -> Actor:
        """The logged-in administrator making ``request``."""
        return caller(self.service, request, "admin")

    def studies(self, actor: Actor, selected: str | None = None) -> tuple[Any, ...]:
        """(study dropdown keeping ``selected`` or the newest study, table of every study, Open, Close…,
        confirmation row)."""
        rows = self.service.list_studies(actor)
        names = [r["name"] for r in rows]
        value = selected if selected in names else (names[-1] if names else None)
        status = next((r["status"] for r in rows if r["name"] == value), None)
        return gr.update(choices=names, value=value), pd.DataFrame(rows), *status_buttons(status)

    def progress(self, actor: Actor, name: str | None) -> pd.DataFrame:
        """Progress per reader of study ``name`` ("—" before a reader's first answer)."""
        if not name:
            return pd.DataFrame()
        frame = self.service.progress_all(actor, name)
        frame["last_answer"] = frame["last_answer"].fillna("—")
        return frame

    @shows_errors("logging in")
    def login(self, request: gr.Request, note: str) -> tuple[Any, ...]:
        """After the browser posted the token (``note``: why that failed): (token, message, log-in row,
        panel, study dropdown, studies table, Open, Close…, confirmation row, progress)."""
        if note:
            return self.logged_out(note)
        actor = self.actor(request)
        listing = self.studies(actor)
        note = f"Logged in as **{actor.display_name}** (admin)."
        shown = (gr.update(visible=False), gr.update(visible=True))
        return ("", note, *shown, *listing, self.progress(actor, listing[0]["value"]))

    @shows_errors("opening the admin view")
    def load(self, request: gr.Request) -> tuple[Any, ...]:
        """Page (re)load: the admin view when the browser holds an admin session, else the log-in."""
        try:
            self.actor(request)
        except AccessDenied:  # the page already shows the log-in; a log-in made meanwhile stays shown
            return tuple(gr.update() for _ in range(10))
        return self.login(request, "")

    @shows_errors("refreshing the studies")
    def refresh(self, request: gr.Request, name: str | None) -> tuple[Any, ...]:
        """(study dropdown, studies table, Open, Close…, confirmation row, progress of ``name``)."""
        actor = self.actor(request)
        return (*self.studies(actor, name), self.progress(actor, name))

    def set_status(self, request: gr.Request, name: str | None, status: str) -> tuple[Any, ...]:
        """(study dropdown, studies table, Open, Close…, confirmation row, message) after moving study
        ``name`` to ``status``."""
        actor = self.actor(request)
        self.service.set_status(actor, _chosen(name), status)
        return (*self.studies(actor, name), f"Study **{name}** is now {status}.")

    @shows_errors("opening the study")
    def open(self, request: gr.Request, name: str | None) -> tuple[Any, ...]:
        """:meth:`set_status` to open."""
        return self.set_status(request, name, "open")

    @shows_errors("closing the study")
    def close(self, request: gr.Request, name: str | None) -> tuple[Any, ...]:
        """:meth:`set_status` to closed (after the confirmation)."""
        return self.set_status(request, name, "closed")

    @shows_errors("logging out")
    def logged_out(self, note: str = "You are logged out.") -> tuple[Any, ...]:
        """The log-in form with ``note`` (after a log-out, or a failed log-in)."""
        return ("", note, gr.update(visible=True), gr.update(visible=False), *[gr.update()] * 6)

    @shows_errors("asking for confirmation")
    def confirm_close(self, request: gr.Request, name: str | None) -> tuple[Any, Any]:
        """(confirmation row shown, its text) before closing ``name``."""
        self.actor(request)
        text = (
            f"Close **{_chosen(name)}** for good? Readers can no longer answer and a closed study "
            "cannot be opened again. Its answers stay available for results and export."
        )
        return gr.update(visible=True), text

    @shows_errors("reading the spec file")
    def upload(self, request: gr.Request, path: str | None) -> Any:
        """The text of an uploaded spec file (unchanged editor without a file)."""
        self.actor(request)
        if not path:
            return gr.update()
        return Path(path).read_text(encoding="utf-8")

    @shows_errors("loading the template")
    def template(self, request: gr.Request) -> str:
        """The demo spec as a starting point."""
        self.actor(request)
        return DEMO_SPEC.read_text(encoding="utf-8")

    @shows_errors("creating the study")
    def create(
        self, request: gr.Request, text: str, progress: gr.Progress = CREATE_PROGRESS
    ) -> tuple[Any, ...]:
        """(report with the reader tokens shown once, study dropdown, studies table, Open, Close…,
        confirmation row); the cases render in parallel and the progress bar follows them."""
        actor = self.actor(request)

        def report(done: int, total: int, message: str) -> None:
            progress((done, max(total, 1)), desc=message)

        out = self.service.create_study(actor, text or "", progress=report)
        lines = [f"Created **{out['study']}** ({out['status']}): {out['cases']} cases, {out['items']} items."]
        if out["readers"]:
            lines.append("Reader tokens (shown once):\n")
            lines += [f"- {r['name']}: `{r['token']}`" for r in out["readers"]]
        return "\n".join(lines), *self.studies(actor, out["study"])

    @shows_errors("enrolling the reader")
    def enroll(self, request: gr.Request, name: str | None, display: str) -> tuple[str, pd.DataFrame]:
        """(the new reader's token, shown once; progress of the study)."""
        actor = self.actor(request)
        _, token = self.service.enroll_reader(actor, _chosen(name), display)
        return token, self.progress(actor, name)

    @shows_errors("computing the results")
    def results(self, request: gr.Request, name: str | None, question: str | None) -> tuple[Any, ...]:
        """The :data:`RESULT_OUTPUTS`: figures, summary tables and a message."""
        actor = self.actor(request)
        answers = self.service.answers_frame(actor, _chosen(name))
        likert_keys = [q.key for q in self.service.questions(actor, name) if q.kind == "likert"]
        question = question if question in likert_keys else (likert_keys[0] if likert_keys else None)
        dropdown = gr.update(choices=likert_keys, value=question)
        if answers.empty:
            return (None, dropdown, None, None, *[pd.DataFrame()] * len(SUMMARY_TABLES), "No answers yet.")
        summary = analysis.summarize(answers)
        return (
            analysis.score_figure(answers),
            dropdown,
            analysis.case_means_figure(answers, question) if question else None,
            analysis.turing_figure(answers),
            *[summary[key] for key in SUMMARY_TABLES],
            f"{len(answers)} answers.",
        )

    @shows_errors("drawing the per-case means")
    def case_plot(self, request: gr.Request, name: str | None, question: str | None) -> Any:
        """Per-case means of Likert ``question`` (None without answers)."""
        actor = self.actor(request)
        if not name or not question:
            return None
        answers = self.service.answers_frame(actor, name)
        return None if answers.empty else analysis.case_means_figure(answers, question)

    @shows_errors("exporting the answers")
    def export(self, request: gr.Request, name: str | None, kind: str) -> str:
        """Path of a new export of the study's answers in format ``kind``."""
        actor = self.actor(request)
        answers = self.service.answers_frame(actor, _chosen(name))
        return str(export.export_answers(answers, kind, _export_path(name, kind)))


@dataclass
class AdminLayout:
    """The Study-admin view's components (``tables``: one per :data:`SUMMARY_TABLES` entry)."""

    login_box: Any
    token: Any
    login: Any
    message: Any
    panel: Any
    study: Any
    refresh: Any
    open_btn: Any
    close_btn: Any
    confirm_row: Any
    confirm_text: Any
    confirm: Any
    cancel: Any
    studies_table: Any
    upload: Any
    template: Any
    spec_text: Any
    create: Any
    created: Any
    reader_name: Any
    enroll: Any
    new_token: Any
    progress: Any
    results: Any
    scores_plot: Any
    question: Any
    case_plot: Any
    turing_plot: Any
    tables: list[Any]
    fmt: Any
    export: Any
    exported: Any
    logout: Any

    def listing(self) -> list[Any]:
        """What :meth:`AdminHandlers.studies` returns, in order."""
        return [self.study, self.studies_table, self.open_btn, self.close_btn, self.confirm_row]

    def result_outputs(self) -> list[Any]:
        plots = [self.scores_plot, self.question, self.case_plot, self.turing_plot]
        return [*plots, *self.tables, self.message]


def _results_section() -> dict[str, Any]:
    """The Results accordion's components."""
    with gr.Accordion("Results", open=True):
        parts: dict[str, Any] = {"results": gr.Button("Compute results")}
        parts["scores_plot"] = gr.Plot(label="Score distribution")
        with gr.Row():
            parts["question"] = gr.Dropdown(label="Question (per-case means)", choices=[], interactive=True)
            parts["case_plot"] = gr.Plot(label="Per-case means")
        parts["turing_plot"] = gr.Plot(label="Real vs synthetic")
        labels = (
            "Scores per condition",
            "Wilcoxon signed-rank, paired by case",
            "Krippendorff's alpha (ordinal)",
            "Quadratic-weighted kappa per reader pair",
            "ICC",
            "Real vs synthetic per reader",
        )
        parts["tables"] = [gr.Dataframe(label=label, interactive=False) for label in labels]
    return parts


def _study_row(parts: dict[str, Any]) -> None:
    """The study picker with the status changes it allows (closing asks first)."""
    with gr.Row():
        parts["study"] = gr.Dropdown(
            label="Study", choices=[], interactive=True, scale=3, allow_custom_value=True
        )
        parts["refresh"] = gr.Button("Refresh", scale=1)
        parts["open_btn"] = gr.Button("Open for reading", scale=1, visible=False)
        parts["close_btn"] = gr.Button("Close study…", scale=1, variant="stop", visible=False)
    with gr.Row(visible=False) as parts["confirm_row"]:
        parts["confirm_text"] = gr.Markdown("")
        parts["confirm"] = gr.Button("Close for good", variant="stop", scale=0)
        parts["cancel"] = gr.Button("Cancel", scale=0)


def admin_layout() -> AdminLayout:
    """Create the Study-admin view's components inside the current Gradio context."""
    parts: dict[str, Any] = {}
    with gr.Row(visible=True) as parts["login_box"]:
        parts["token"] = gr.Textbox(label="Admin token", type="password", scale=4, max_lines=1)
        parts["login"] = gr.Button("Log in", scale=1, variant="primary")
    parts["message"] = gr.Markdown("")
    with gr.Column(visible=False) as parts["panel"]:
        _study_row(parts)
        parts["studies_table"] = gr.Dataframe(label="Studies", interactive=False)
        with gr.Accordion("Create a study from a spec", open=False):
            parts["upload"] = gr.File(label="Spec (YAML)", file_types=[".yaml", ".yml"], type="filepath")
            parts["template"] = gr.Button("Load the demo spec as a template", size="sm")
            # empty at first: the initial value of a component is in /config
            parts["spec_text"] = gr.Code(value="", language="yaml", label="Spec")
            parts["create"] = gr.Button("Create study (renders every item, with progress)", variant="primary")
            parts["created"] = gr.Markdown("")
        with gr.Accordion("Enrol a reader", open=False):
            with gr.Row():
                parts["reader_name"] = gr.Textbox(label="Display name", scale=3)
                parts["enroll"] = gr.Button("Enrol", scale=1)
            parts["new_token"] = gr.Textbox(
                label="Token (shown once — give it to the reader now)", interactive=False
            )
        parts["progress"] = gr.Dataframe(label="Progress per reader", interactive=False)
        parts.update(_results_section())
        with gr.Row():
            parts["fmt"] = gr.Radio(list(export.FORMATS), value="long", label="Export format")
            parts["export"] = gr.Button("Export")
            parts["exported"] = gr.File(label="Download", interactive=False)
        parts["logout"] = gr.Button("Log out", size="sm")
    return AdminLayout(**parts)


def _wire(blocks: gr.Blocks, ui: AdminLayout, h: AdminHandlers) -> None:
    """Connect the components to the handlers."""
    session = [ui.token, ui.message, ui.login_box, ui.panel, *ui.listing(), ui.progress]
    blocks.load(h.load, None, session, api_visibility="private")
    login_js = LOGIN_JS % "admin"
    ui.login.click(h.login, [ui.token], session, js=login_js, api_name="a_login")
    ui.token.submit(h.login, [ui.token], session, js=login_js, api_visibility="private")
    ui.logout.click(h.logged_out, None, session, js=LOGOUT_JS % "admin", api_visibility="private")
    refreshed = [*ui.listing(), ui.progress]
    ui.refresh.click(h.refresh, [ui.study], refreshed, api_name="a_refresh")
    ui.study.input(h.refresh, [ui.study], refreshed, api_visibility="private")
    status_outputs = [*ui.listing(), ui.message]
    ui.open_btn.click(h.open, [ui.study], status_outputs, api_name="a_open")
    ui.close_btn.click(
        h.confirm_close, [ui.study], [ui.confirm_row, ui.confirm_text], api_visibility="private"
    )
    ui.cancel.click(lambda: gr.update(visible=False), None, [ui.confirm_row], api_visibility="private")
    ui.confirm.click(h.close, [ui.study], status_outputs, api_name="a_close")
    ui.upload.upload(h.upload, [ui.upload], [ui.spec_text], api_visibility="private")
    ui.template.click(h.template, None, [ui.spec_text], api_visibility="private")
    ui.create.click(h.create, [ui.spec_text], [ui.created, *ui.listing()], api_name="a_create")
    ui.enroll.click(h.enroll, [ui.study, ui.reader_name], [ui.new_token, ui.progress], api_name="a_enroll")
    ui.results.click(h.results, [ui.study, ui.question], ui.result_outputs(), api_name="a_results")
    ui.question.input(h.case_plot, [ui.study, ui.question], [ui.case_plot], api_visibility="private")
    ui.export.click(h.export, [ui.study, ui.fmt], [ui.exported], api_name="a_export")


def mount_admin_tab(service: ReaderStudyService, blocks: gr.Blocks | None = None) -> AdminHandlers:
    """Lay out the Study-admin view in the current Gradio context and wire it; returns its handlers."""
    handlers = AdminHandlers(service)
    _wire(blocks or gr.context.Context.root_block, admin_layout(), handlers)
    return handlers
