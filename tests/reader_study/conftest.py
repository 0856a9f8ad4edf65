"""Fixtures of the reader-study tests."""

from __future__ import annotations

import gradio as gr
import pytest

from reader_study.service import SYSTEM
from reader_study.ui import READER_JS, mount_reader_study
from support import make_service, spec_dict, write_disc_cases


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rs-ui")
    write_disc_cases(root, 2)
    svc = make_service(root)
    out = svc.create_study(SYSTEM, spec_dict(root, readers=2))
    _, admin_token = svc.create_admin(SYSTEM, "Admin")
    with gr.Blocks() as demo:
        mount_reader_study(svc)
    _, url, _ = demo.launch(prevent_thread_lock=True, js=READER_JS, quiet=True)
    yield {
        "svc": svc,
        "url": url,
        "study": out["study"],
        "readers": [r["token"] for r in out["readers"]],
        "admin": admin_token,
    }
    demo.close()
