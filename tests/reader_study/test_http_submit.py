"""``/r_submit`` over HTTP takes the page's raw values (Gradio's pre- and postprocessing are off for it, see
``reader_study.ui.reader._wire``): a hostile client that sends values no radio button offers, or values of
the wrong type, gets the service's refusal in the status line, nothing is stored and the item stays."""

from __future__ import annotations

import html
import json
from typing import Any

import httpx
import pytest
from gradio_client import Client

from reader_study.auth import SYSTEM
from reader_study.ui import launch_kwargs, reader_app
from support import make_service, shown_item, slot_answers, spec_dict, write_disc_cases


def _status(out: Any) -> str:
    return html.unescape(json.dumps(out[0]))


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rs-http-submit")
    write_disc_cases(root, 1)
    svc = make_service(root)
    out = svc.create_study(SYSTEM, spec_dict(root, readers=1))
    blocks = reader_app(svc)
    _, url, _ = blocks.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(svc, ("reader",)))
    secret = httpx.post(url + "rs/session", json={"token": out["readers"][0]["token"]}).cookies["rs_session"]
    client = Client(url, verbose=False, headers={"x-reader-session": secret}, download_files=False)
    yield svc, client
    blocks.close()


HOSTILE = [
    ("a Likert score no button offers", {"s0": "7"}, "not a score from 1 to 5"),
    ("a list for a score", {"s3": ["3", "4"]}, "not a score from 1 to 5"),
    ("a dict for real vs synthetic", {"s9": {"value": "real"}}, "answer 'real' or 'synthetic'"),
    ("an unknown real-vs-synthetic choice", {"s9": "maybe"}, "answer 'real' or 'synthetic'"),
    ("a confidence of 0", {"s10": 0}, "not a score from 1 to 5"),
]


def test_hostile_values_are_refused_in_place_and_nothing_is_stored(reader) -> None:
    svc, client = reader
    shown = client.predict("", None, api_name="/r_login")
    item = shown_item(shown)
    assert item is not None
    for what, changes, message in HOSTILE:
        out = client.predict(item, "t-study", *slot_answers(**changes), api_name="/r_submit")
        status = _status(out)
        assert message in status, (what, status)
        assert shown_item(out) is None, what  # the page keeps its item: nothing else is sent
    for study in (["t-study"], 7, None):
        out = client.predict(item, study, *slot_answers(), api_name="/r_submit")
        assert "no item to answer" in _status(out), study
    for bogus_item in (12345, ["a", "b"], None):
        out = client.predict(bogus_item, "t-study", *slot_answers(), api_name="/r_submit")
        assert "no item to answer" in _status(out), bogus_item
    assert svc.answers_frame(SYSTEM, "t-study").empty
    shown = client.predict(item, "t-study", *slot_answers(), api_name="/r_submit")
    assert shown_item(shown) not in (None, item)  # a valid submit still goes through
    stored = svc.answers_frame(SYSTEM, "t-study")
    assert len(stored) == 4 and "3" in set(stored["value"].astype(str))
