"""Fixtures of the reader-study tests."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from reader_study.auth import SYSTEM
from reader_study.ui import READER_JS, mount_reader_study
from support import make_service, spec_dict, write_disc_cases


@pytest.fixture()
def study(tmp_path: Path):
    """(service, [reader 1, reader 2] actors, create_study output) of an open 3-case study ``t-study``."""
    write_disc_cases(tmp_path, 3)
    svc = make_service(tmp_path)
    out = svc.create_study(SYSTEM, spec_dict(tmp_path))
    readers = [svc.authenticate(r["token"]) for r in out["readers"]]
    return svc, readers, out


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
