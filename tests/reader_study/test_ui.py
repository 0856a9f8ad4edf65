"""The mounted reader-study views over HTTP: nothing works without a session, a Gradio session hash is
not an identity, missing answers are highlighted in place, replays and second tabs are harmless, the admin
view computes results and exports; the handlers are also called directly."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pandas as pd
import pytest
from gradio_client import Client

from reader_study.auth import SYSTEM
from reader_study.ui import AdminHandlers, ReaderHandlers
from reader_study.ui.admin import RESULT_OUTPUTS
from reader_study.ui.reader import ITEM_OUTPUTS, VIEW_OUTPUTS
from reader_study.ui.session import HEADERS
from support import (
    empty_slots,
    make_service,
    open_study,
    shown_item,
    slot_answers,
    spec_dict,
    write_disc_cases,
)


def session(url: str, token: str, role: str = "reader") -> tuple[int, str | None]:
    """(HTTP status, session secret) of a log-in through ``POST /rs/session``."""
    r = httpx.post(url + "rs/session", params={"role": role}, json={"token": token})
    return r.status_code, r.cookies.get("rs_session" if role == "reader" else "rs_admin")


def client(url: str, secret: str | None = None, role: str = "reader") -> Client:
    headers = {HEADERS[role]: secret} if secret else None
    return Client(url, verbose=False, headers=headers, download_files=False)


def answers(likert: str = "4") -> list[Any]:
    return slot_answers(likert, "synthetic", "3")


def item_of(result: tuple[Any, ...]) -> str:
    item = shown_item(result)
    assert item is not None, "no item shown"
    return item


def test_nothing_works_without_a_session(app) -> None:
    url = app["url"]
    anonymous = client(url)
    calls = [
        ("/r_login", ["", None]),
        ("/r_submit", ["x" * 22 + " " + "y" * 16, "t-study", *empty_slots()]),
        ("/r_back", ["", "t-study"]),
        ("/r_study", ["t-study"]),
        ("/a_refresh", [None]),
        ("/a_results", [None, None]),
        ("/a_export", [None, "long"]),
        ("/a_create", ["name: x"]),
        ("/a_enroll", [None, "Mallory"]),
        ("/a_open", [None]),
        ("/a_close", [None]),
    ]
    for api, args in calls:
        result = None
        try:
            result = anonymous.predict(*args, api_name=api)
        except Exception as exc:  # noqa: BLE001 - a refusal as a toast
            assert "log in" in str(exc).lower(), (api, exc)
        if result is not None:  # a refusal shown in place
            assert "log in" in str(result[0]).lower(), (api, result[0])
    assert session(url, "guess-guess-guess")[0] == 401
    assert session(url, app["admin"])[0] == 403  # an admin token is not a reader log-in
    assert session(url, app["readers"][0], role="admin")[0] == 403
    # a forged session header is refused
    with pytest.raises(Exception, match="log in"):
        client(url, "forged-forged-forged-forged").predict("", None, api_name="/r_login")
    # a reader session does not open the admin endpoints
    _, secret = session(url, app["readers"][1])
    with pytest.raises(Exception, match="not an admin"):
        client(url, secret, role="admin").predict(None, "long", api_name="/a_export")
    assert app["svc"].progress(SYSTEM, "t-study", reader_id=2)["done"] == 0


def test_a_session_hash_is_not_an_identity(app) -> None:
    url = app["url"]
    _, secret = session(url, app["readers"][0])
    victim = client(url, secret)
    victim.predict("", None, api_name="/r_login")
    thief = client(url)
    thief.session_hash = victim.session_hash  # the reader's Gradio session, without the cookie
    with pytest.raises(Exception, match="log in"):
        thief.predict("", None, api_name="/r_login")
    out = thief.predict("x" * 22 + " " + "y" * 16, "t-study", *answers(), api_name="/r_submit")
    assert "log in" in out[0].lower()
    assert app["svc"].progress(SYSTEM, "t-study", reader_id=1)["done"] == 0


def test_missing_answers_are_highlighted_in_place_and_replays_are_harmless(app) -> None:
    svc, url = app["svc"], app["url"]
    _, secret = session(url, app["readers"][1])
    reader = client(url, secret)
    shown = reader.predict("", None, api_name="/r_login")
    item = item_of(shown)
    partial = answers()
    partial[3] = partial[10] = None  # question 2 and the confidence of question 4 left out
    out = reader.predict(item, "t-study", *partial, api_name="/r_submit")
    assert "highlighted" in out[0]
    outlined = set(re.findall(r"#rs-slot-(\d+)\{outline:2px", out[0]))
    assert outlined == {"3", "10"}  # exactly the two missing answers
    unchanged = {"__type__": "update"}
    for u in out[1 : len(ITEM_OUTPUTS)]:  # nothing else changes (gr.HTML spells it with empty props)
        assert isinstance(u, dict) and u.get("props", unchanged) == unchanged and u["__type__"] == "update", u
    given = [v for v in out[len(ITEM_OUTPUTS) :]]
    assert given[:11] == [("" if v is None and k % 3 == 2 else v) for k, v in enumerate(partial[:11])]
    before = len(svc.answers_frame(SYSTEM, "t-study"))
    first = reader.predict(item, "t-study", *answers("2"), api_name="/r_submit")
    assert "2 / 6" in " ".join(str(v) for v in first)
    for _ in range(3):  # replay the same request: stored once, the reader stays where they are
        again = reader.predict(item, "t-study", *answers("5"), api_name="/r_submit")
        assert "already saved" in again[0] and "2 / 6" in " ".join(str(v) for v in again)
    second_tab = client(url, secret)
    resumed = second_tab.predict("", None, api_name="/r_login")
    assert item_of(resumed) != item and "2 / 6" in " ".join(str(v) for v in resumed)
    frame = svc.answers_frame(SYSTEM, "t-study")
    assert len(frame) == before + 4
    mine = frame[frame["reader"] == "Reader 2"]
    assert set(mine["value"][mine["question_kind"] == "likert"]) == {"2"}


def test_admin_view_results_and_export(app) -> None:
    url = app["url"]
    status, secret = session(url, app["admin"], role="admin")
    assert status == 200
    admin = client(url, secret, role="admin")
    admin.predict("", api_name="/a_login")
    results = admin.predict("t-study", None, api_name="/a_results")
    assert "answers" in results[-1] or "No answers" in results[-1]
    path = admin.predict("t-study", "long", api_name="/a_export")
    long = pd.read_csv(path["path"] if isinstance(path, dict) else path)
    assert {"condition", "dose", "generator"} <= set(long.columns)
    token = admin.predict("t-study", "New reader", api_name="/a_enroll")[0]
    assert len(token) > 20 and app["svc"].authenticate(token).display_name == "New reader"


def _request(secret: str, role: str = "reader") -> gr.Request:
    return gr.Request(headers={HEADERS[role]: secret}, cookies={})


def test_handlers_are_called_directly(tmp_path: Path) -> None:
    svc, out = open_study(tmp_path, 2, readers=1)
    reader = ReaderHandlers(svc)
    request = _request(svc.login(out["readers"][0]["token"])[1])
    shown = dict(zip(VIEW_OUTPUTS + ITEM_OUTPUTS, reader.login(request, "", None), strict=False))
    assert shown["counter"] == "**1 / 6**" and "Logged in as Reader 1" in shown["status"]
    assert "data-vce-viewer=" in shown["viewer"] and shown["login_box"]["visible"] is False
    after = dict(
        zip(ITEM_OUTPUTS, reader.submit(request, shown["item"], "t-study", *answers("2")), strict=False)
    )
    assert after["counter"] == "**2 / 6**" and after["item"] != shown["item"]
    assert svc.progress(SYSTEM, "t-study", reader_id=1)["done"] == 1
    refused = reader.submit(gr.Request(headers={}, cookies={}), after["item"], "t-study", *answers())
    assert "log in" in refused[0].lower() and all(v == gr.update() for v in refused[1:])
    assert "data-missing" in reader.submit(request, after["item"], "t-study", *empty_slots())[0]
    with pytest.raises(gr.Error, match="does not allow going back"):  # a refusal of the service
        reader.back(request, after["item"], "t-study")
    assert reader.logged_out()[VIEW_OUTPUTS.index("login_box")]["visible"] is True

    admin = AdminHandlers(svc)
    admin_request = _request(svc.login(svc.create_admin(SYSTEM, "Admin")[1])[1], "admin")
    with pytest.raises(gr.Error, match="not an admin token"):  # a reader session under the admin header
        admin.refresh(_request(request.kwargs["headers"][HEADERS["reader"]], "admin"), "t-study")
    results = dict(zip(RESULT_OUTPUTS, admin.results(admin_request, "t-study", None), strict=True))
    assert results["message"] == "4 answers." and list(results["scores_table"]["question"]) != []
    assert results["question"]["value"] == "overall_quality"  # the first Likert question
    assert len(pd.read_csv(admin.export(admin_request, "t-study", "long"))) == 4
    progress = admin.progress(admin.actor(admin_request), "t-study")
    assert progress["last_answer"].iloc[0] != "—" and "NaT" not in progress.to_string()
    with pytest.raises(gr.Error, match="Choose a study"):
        admin.export(admin_request, None, "long")
    with pytest.raises(gr.Error, match="study spec: cases must be"):  # bad input is shown as it is
        admin.create(admin_request, "name: x")


def test_status_buttons_offer_only_possible_transitions_and_closing_asks(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    svc.create_study(SYSTEM, {**spec_dict(tmp_path, readers=1), "status": "draft"})
    admin = AdminHandlers(svc)
    request = _request(svc.login(svc.create_admin(SYSTEM, "Admin")[1])[1], "admin")

    def buttons(out: tuple[Any, ...]) -> tuple[bool, bool]:
        return out[2]["visible"], out[3]["visible"]  # (Open, Close…)

    assert buttons(admin.refresh(request, "t-study")) == (True, True)  # draft: open or close
    confirm = admin.confirm_close(request, "t-study")
    assert confirm[0]["visible"] is True and "for good" in confirm[1]
    assert svc.list_studies(SYSTEM)[0]["status"] == "draft"  # asking changed nothing
    assert buttons(admin.open(request, "t-study")) == (False, True)  # open: only close
    assert buttons(admin.close(request, "t-study")) == (False, False)  # closed: final
    with pytest.raises(gr.Error, match="cannot become open"):
        admin.open(request, "t-study")


def test_unexpected_errors_are_logged_with_a_reference(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def session_actor(self, secret: str) -> None:
            raise KeyError("/secret/path/case-17")

    with caplog.at_level(logging.ERROR, logger="reader_study.ui"), pytest.raises(gr.Error) as info:
        ReaderHandlers(Broken()).login(_request("s" * 43), "", None)  # type: ignore[arg-type]
    message = info.value.message
    assert "while logging in" in message and "secret" not in message and "case-17" not in message
    reference = re.search(r"reference ([0-9a-f]{8})", message)
    assert reference is not None
    record = caplog.records[-1]
    assert reference.group(1) in record.getMessage() and record.exc_info is not None
