"""Gradio pieces of the reader study: the Reader tab and the Study-admin tab (thin: they call the service).

Mount inside the app's ``gr.Blocks``, or build a one-role deployment::

    configure_server_process()               # before building: Gradio's queue reads its settings then
    with gr.Blocks() as demo:
        ...
        mount_reader_study(service)          # adds the tabs "Reader study" and "Study admin"
    demo.launch(**launch_kwargs(service))     # log-in routes, viewer, keys 1-5 / Enter

    reader_app(service).launch(**launch_kwargs(service, ("reader",)))  # the blinded reader deployment

Each tab is a module: :mod:`.reader` and :mod:`.admin` hold a handler class (callable directly, e.g. by
tests) and a layout that is wired to it; :mod:`.common` holds the error policy of the handlers
(:func:`vce_core.errors.user_message`) and what both tabs share.

Blinding, following ``gradio-notes.md``:

- identity is never in the page: the log-in posts the token to ``/rs/session`` (:mod:`.session`), which
  sets an HttpOnly cookie; every handler resolves the caller from it (or from a header, for API clients)
  and the service re-checks role and ownership;
- images leave as the shared stack viewer's payload (:mod:`vce_core.viewer`: raw uint8 bytes, so the
  size depends on the slice shape only); the item's public id stays on the server, the page holds only
  a random ticket of the reader's assignment;
- reader endpoints have neutral ``api_name`` values (``/r_login``, ``/r_submit``, ...), and no condition,
  dose, generator, case id or file name is in any value, label or choice sent to a reader;
- :func:`reader_app` builds a deployment with the reader view only (no explorer, no admin endpoint).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from vce_core.settings import configure_server_process
from vce_core.viewer import head_html

from ..service import ReaderStudyService
from .admin import AdminHandlers, mount_admin_tab
from .common import MAX_QUESTIONS, READER_CSS, READER_JS
from .reader import ReaderHandlers, mount_reader_tab
from .session import session_routes

__all__ = [
    "MAX_QUESTIONS",
    "PAGE_CSS",
    "PAGE_JS",
    "AdminHandlers",
    "ReaderHandlers",
    "admin_app",
    "launch_kwargs",
    "mount_admin_tab",
    "mount_reader_study",
    "mount_reader_tab",
    "reader_app",
]

PAGE_JS = READER_JS
"""The reader view's keyboard script: ``launch(js=PAGE_JS)``."""
PAGE_CSS = READER_CSS
"""Style of the reader-study views: ``launch(css=PAGE_CSS)``."""
READER_TITLE = "Reader study"


def mount_reader_study(service: ReaderStudyService, notice: str = "") -> tuple[ReaderHandlers, AdminHandlers]:
    """Create the tabs "Reader study" and "Study admin" inside the current ``gr.Tabs`` context (the
    all-in-one demo; not blinded, see :func:`reader_app`), each headed by ``notice`` (Markdown) when given.
    Returns the tabs' handlers."""
    with gr.Tab("Reader study", elem_id="rs-reader-tab"):
        if notice:
            gr.Markdown(notice, elem_id="rs-not-blinded")
        reader = mount_reader_tab(service)
    with gr.Tab("Study admin", elem_id="rs-admin-tab"):
        if notice:
            gr.Markdown(notice, elem_id="rs-not-blinded-admin")
        admin = mount_admin_tab(service)
    return reader, admin


def reader_app(service: ReaderStudyService) -> gr.Blocks:
    """A blinded reader deployment: the reader view and nothing else (no explorer, no admin endpoint).
    Sets the server process's defaults first: Gradio's queue reads them when the Blocks are built."""
    configure_server_process()
    with gr.Blocks(title=READER_TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(f"## {READER_TITLE}")
        mount_reader_tab(service, blocks)
    return blocks


def admin_app(service: ReaderStudyService) -> gr.Blocks:
    """The study-admin deployment: the admin view behind its own log-in, and nothing else (server process
    defaults set first, as :func:`reader_app`)."""
    configure_server_process()
    with gr.Blocks(title="Study admin", analytics_enabled=False) as blocks:
        gr.Markdown("## Study admin")
        mount_admin_tab(service, blocks)
    return blocks


def launch_kwargs(
    service: ReaderStudyService, roles: tuple[str, ...] = ("reader", "admin")
) -> dict[str, Any]:
    """What ``Blocks.launch`` needs for the reader-study views: the log-in routes of ``roles``, the shared
    stack viewer (``head``), the page script and style, no footer links, errors shown (they are written
    for people). The server process's defaults (:func:`vce_core.settings.configure_server_process`) are
    not set here: Gradio's queue reads them when the Blocks are built, so :func:`reader_app`,
    :func:`admin_app` and ``app.build_app`` set them before building."""
    return {
        "app_kwargs": {"routes": session_routes(service, roles)},
        "head": head_html(),
        "js": PAGE_JS,
        "css": PAGE_CSS,
        "footer_links": [],
        "show_error": True,
    }
