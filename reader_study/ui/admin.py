"""The Study-admin tab: studies (create from a spec, open, close), enrolment, progress, results, export.

:class:`AdminHandlers` holds the handlers (callable directly, without a browser); :func:`mount_admin_tab`
lays out the components and wires them to the handlers.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import analysis, export
from ..auth import Actor
from ..demo import DEMO_SPEC
from ..service import ReaderStudyService
from .common import actor_of, refuse, shows_errors

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


class AdminHandlers:
    """The Study-admin tab's handlers over ``service``; ``state`` is the per-session ``{"actor": Actor}``."""

    def __init__(self, service: ReaderStudyService) -> None:
        self.service = service

    def studies(self, actor: Actor, selected: str | None = None) -> tuple[Any, pd.DataFrame]:
        """(study dropdown update keeping ``selected`` or the newest study, table of every study)."""
        rows = self.service.list_studies(actor)
        names = [r["name"] for r in rows]
        value = selected if selected in names else (names[-1] if names else None)
        return gr.update(choices=names, value=value), pd.DataFrame(rows)

    @shows_errors("logging in")
    def login(self, token: str) -> tuple[Any, ...]:
        """(state, cleared token, message, panel, study dropdown, studies table)."""
        actor = self.service.authenticate(token or "")
        if actor.role != "admin":
            refuse("This is not an admin token.")
        dropdown, table = self.studies(actor)
        note = f"Logged in as **{actor.display_name}** (admin)."
        return {"actor": actor}, "", note, gr.update(visible=True), dropdown, table

    @shows_errors("refreshing the studies")
    def refresh(self, state: dict[str, Any], name: str | None) -> tuple[Any, ...]:
        """(study dropdown, studies table, progress of study ``name``)."""
        actor = actor_of(state, admin=True)
        dropdown, table = self.studies(actor, name)
        progress = self.service.progress_all(actor, name) if name else pd.DataFrame()
        return dropdown, table, progress

    @shows_errors("changing the study status")
    def set_status(self, state: dict[str, Any], name: str | None, status: str) -> tuple[Any, ...]:
        """(study dropdown, studies table, message) after moving study ``name`` to ``status``."""
        actor = actor_of(state, admin=True)
        self.service.set_status(actor, _chosen(name), status)
        return (*self.studies(actor, name), f"Study **{name}** is now {status}.")

    @shows_errors("reading the spec file")
    def upload(self, state: dict[str, Any], path: str | None) -> Any:
        """The text of an uploaded spec file (unchanged editor without a file)."""
        actor_of(state, admin=True)
        if not path:
            return gr.update()
        return Path(path).read_text(encoding="utf-8")

    @shows_errors("loading the template")
    def template(self, state: dict[str, Any]) -> str:
        """The demo spec as a starting point."""
        actor_of(state, admin=True)
        return DEMO_SPEC.read_text(encoding="utf-8")

    @shows_errors("creating the study")
    def create(self, state: dict[str, Any], text: str) -> tuple[Any, ...]:
        """(report with the reader tokens shown once, study dropdown, studies table)."""
        actor = actor_of(state, admin=True)
        out = self.service.create_study(actor, text or "")
        lines = [f"Created **{out['study']}** ({out['status']}): {out['cases']} cases, {out['items']} items."]
        if out["readers"]:
            lines.append("Reader tokens (shown once):\n")
            lines += [f"- {r['name']}: `{r['token']}`" for r in out["readers"]]
        dropdown, table = self.studies(actor, out["study"])
        return "\n".join(lines), dropdown, table

    @shows_errors("enrolling the reader")
    def enroll(self, state: dict[str, Any], name: str | None, display: str) -> tuple[str, pd.DataFrame]:
        """(the new reader's token, shown once; progress of the study)."""
        actor = actor_of(state, admin=True)
        _, token = self.service.enroll_reader(actor, _chosen(name), display)
        return token, self.service.progress_all(actor, name)

    @shows_errors("computing the results")
    def results(self, state: dict[str, Any], name: str | None, question: str | None) -> tuple[Any, ...]:
        """The :data:`RESULT_OUTPUTS`: figures, summary tables and a message."""
        actor = actor_of(state, admin=True)
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
    def case_plot(self, state: dict[str, Any], name: str | None, question: str | None) -> Any:
        """Per-case means of Likert ``question`` (None without answers)."""
        actor = actor_of(state, admin=True)
        if not name or not question:
            return None
        answers = self.service.answers_frame(actor, name)
        return None if answers.empty else analysis.case_means_figure(answers, question)

    @shows_errors("exporting the answers")
    def export(self, state: dict[str, Any], name: str | None, kind: str) -> str:
        """Path of a new export of the study's answers in format ``kind``."""
        actor = actor_of(state, admin=True)
        answers = self.service.answers_frame(actor, _chosen(name))
        return str(export.export_answers(answers, kind, _export_path(name, kind)))


@dataclass
class AdminLayout:
    """The Study-admin tab's components (``tables``: one per :data:`SUMMARY_TABLES` entry)."""

    state: Any
    token: Any
    login: Any
    message: Any
    panel: Any
    study: Any
    refresh: Any
    open_btn: Any
    close_btn: Any
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


def admin_layout() -> AdminLayout:
    """Create the Study-admin tab's components inside the current Gradio context."""
    parts: dict[str, Any] = {"state": gr.State(None)}
    with gr.Row():
        parts["token"] = gr.Textbox(label="Admin token", type="password", scale=4, max_lines=1)
        parts["login"] = gr.Button("Log in", scale=1)
    parts["message"] = gr.Markdown("")
    with gr.Column(visible=False) as parts["panel"]:
        with gr.Row():
            parts["study"] = gr.Dropdown(label="Study", choices=[], interactive=True, scale=3)
            parts["refresh"] = gr.Button("Refresh", scale=1)
            parts["open_btn"] = gr.Button("Open", scale=1)
            parts["close_btn"] = gr.Button("Close", scale=1, variant="stop")
        parts["studies_table"] = gr.Dataframe(label="Studies", interactive=False)
        with gr.Accordion("Create a study from a spec", open=False):
            parts["upload"] = gr.File(label="Spec (YAML)", file_types=[".yaml", ".yml"], type="filepath")
            parts["template"] = gr.Button("Load the demo spec as a template", size="sm")
            # empty at first: the initial value of a component is in /config, which readers can fetch too
            parts["spec_text"] = gr.Code(value="", language="yaml", label="Spec")
            parts["create"] = gr.Button(
                "Create study (renders every item; may take a while)", variant="primary"
            )
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
    return AdminLayout(**parts)


def _wire(ui: AdminLayout, h: AdminHandlers) -> None:
    """Connect the components to the handlers."""
    session = [ui.state, ui.token, ui.message, ui.panel, ui.study, ui.studies_table]
    ui.login.click(h.login, [ui.token], session, api_name="a_login")
    listing = [ui.study, ui.studies_table, ui.progress]
    ui.refresh.click(h.refresh, [ui.state, ui.study], listing, api_name="a_refresh")
    ui.study.input(h.refresh, [ui.state, ui.study], listing, api_visibility="private")
    status_outputs = [ui.study, ui.studies_table, ui.message]
    for button, status, api in ((ui.open_btn, "open", "a_open"), (ui.close_btn, "closed", "a_close")):
        button.click(
            functools.partial(h.set_status, status=status), [ui.state, ui.study], status_outputs, api_name=api
        )
    ui.upload.upload(h.upload, [ui.state, ui.upload], [ui.spec_text], api_visibility="private")
    ui.template.click(h.template, [ui.state], [ui.spec_text], api_visibility="private")
    ui.create.click(
        h.create, [ui.state, ui.spec_text], [ui.created, ui.study, ui.studies_table], api_name="a_create"
    )
    ui.enroll.click(
        h.enroll, [ui.state, ui.study, ui.reader_name], [ui.new_token, ui.progress], api_name="a_enroll"
    )
    ui.results.click(h.results, [ui.state, ui.study, ui.question], ui.result_outputs(), api_name="a_results")
    ui.question.input(
        h.case_plot, [ui.state, ui.study, ui.question], [ui.case_plot], api_visibility="private"
    )
    ui.export.click(h.export, [ui.state, ui.study, ui.fmt], [ui.exported], api_name="a_export")


def mount_admin_tab(service: ReaderStudyService) -> AdminHandlers:
    """Lay out the Study-admin tab in the current Gradio context and wire it; returns its handlers."""
    handlers = AdminHandlers(service)
    _wire(admin_layout(), handlers)
    return handlers
