"""Gradio pieces of the reader study: the Reader tab and the Study-admin tab (thin: they call the service).

Mount inside the app's ``gr.Blocks``::

    with gr.Blocks() as demo:
        ...
        mount_reader_study(service)          # adds the tabs "Reader study" and "Study admin"
    demo.launch(js=READER_JS)                 # keys 1-5 answer, Enter submits

Each tab is a module: :mod:`.reader` and :mod:`.admin` hold a handler class (callable directly, e.g. by
tests) and a layout that is wired to it; :mod:`.common` holds the error policy of the handlers
(:func:`vce_core.errors.user_message`) and what both tabs share.

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

import gradio as gr

from ..service import ReaderStudyService
from .admin import AdminHandlers, mount_admin_tab
from .common import MAX_QUESTIONS, READER_JS
from .reader import ReaderHandlers, mount_reader_tab

__all__ = [
    "MAX_QUESTIONS",
    "READER_JS",
    "AdminHandlers",
    "ReaderHandlers",
    "mount_admin_tab",
    "mount_reader_study",
    "mount_reader_tab",
]


def mount_reader_study(service: ReaderStudyService) -> tuple[ReaderHandlers, AdminHandlers]:
    """Create the tabs "Reader study" and "Study admin" inside the current ``gr.Blocks`` context.

    Returns the tabs' handlers (the same objects the components call).
    """
    with gr.Tab("Reader study", elem_id="rs-reader-tab"):
        reader = mount_reader_tab(service)
    with gr.Tab("Study admin", elem_id="rs-admin-tab"):
        admin = mount_admin_tab(service)
    return reader, admin
