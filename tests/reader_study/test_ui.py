"""The mounted Gradio tabs: direct endpoint calls are refused without login; readers receive nothing that
reveals the condition, dose, generator, case or file; the admin tab computes results and exports."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from gradio_client import Client

from reader_study.auth import SYSTEM
from reader_study.render import decode_png
from reader_study.ui import MAX_QUESTIONS, AdminHandlers, ReaderHandlers
from reader_study.ui.admin import RESULT_OUTPUTS
from reader_study.ui.common import enlarge
from reader_study.ui.reader import ITEM_OUTPUTS, LOGIN_OUTPUTS
from support import FakeGenerator, make_service, spec_dict, write_disc_cases

# ("33%" is not listed: the progress bar after 2 of 6 items is legitimately "width:33%")
FORBIDDEN = [
    "real_standard_dose",
    "real_low_dose",
    "synthetic_low_dose",
    "linear_baseline",
    "0.33",
    "33 %",
    FakeGenerator.name,
    "fakegen",
    "phantom-",
    "case.json",
    ".nii",
    "low_dose",
    "standard_dose",
]


def _empty() -> list[object]:
    values: list[object] = []
    for _ in range(MAX_QUESTIONS):
        values += [None, None, ""]
    return values


def _answers(likert: str = "4") -> list[object]:
    values = _empty()
    values[0] = values[3] = values[6] = likert
    values[9], values[10] = "synthetic", "3"
    return values


def test_endpoints_refuse_callers_without_login(app) -> None:
    client = Client(app["url"], verbose=False)
    calls = [
        ("/r_submit", _empty()),
        ("/r_view", [1]),
        ("/r_reset", []),
        ("/r_back", []),
        ("/r_study", [None]),
        ("/a_refresh", [None]),
        ("/a_results", [None, None]),
        ("/a_export", [None, "long"]),
        ("/a_create", ["name: x"]),
        ("/a_enroll", [None, "Mallory"]),
        ("/a_open", [None]),
        ("/a_close", [None]),
    ]
    for api, args in calls:
        with pytest.raises(Exception, match="log in"):
            client.predict(*args, api_name=api)
    with pytest.raises(Exception, match="not an admin token"):
        client.predict(app["readers"][0], api_name="/a_login")
    with pytest.raises(Exception, match="not a reader token"):
        client.predict(app["admin"], api_name="/r_login")
    with pytest.raises(Exception, match="not valid"):
        client.predict("guess-guess-guess", api_name="/r_login")
    # a reader logged in on another client does not unlock this one
    other = Client(app["url"], verbose=False)
    other.predict(app["readers"][1], api_name="/r_login")
    with pytest.raises(Exception, match="log in"):
        client.predict(*_empty(), api_name="/r_submit")
    with pytest.raises(Exception, match="not in the list of choices"):  # this session has no question yet
        client.predict(*_answers(), api_name="/r_submit")
    with pytest.raises(Exception, match="log in"):  # a reader session cannot call admin endpoints
        other.predict(None, "long", api_name="/a_export")
    assert app["svc"].progress(SYSTEM, "t-study", reader_id=2)["done"] == 0


def test_reader_sees_nothing_that_unblinds(app) -> None:
    svc = app["svc"]
    client = Client(app["url"], verbose=False)
    seen: list[str] = []
    images: list[str] = []

    def record(result: object) -> None:
        seen.append(json.dumps(result, default=str))
        for value in result if isinstance(result, tuple) else [result]:
            if isinstance(value, str) and value.endswith(".png"):
                images.append(value)

    record(client.predict(app["readers"][0], api_name="/r_login"))
    record(client.predict(2, api_name="/r_view"))
    record(client.predict(api_name="/r_reset"))
    for k in range(6):
        result = client.predict(*_answers(str(1 + k % 5)), api_name="/r_submit")
        record(result)
    assert "All items are answered" in seen[-1]
    with urllib.request.urlopen(app["url"] + "config") as r:
        seen.append(r.read().decode())
    seen.append(json.dumps(client.view_api(print_info=False, return_format="dict")))
    text = "\n".join(seen)
    for word in FORBIDDEN:
        assert word not in text, word
    public_ids = set(svc.answers_frame(SYSTEM, "t-study")["item"])
    assert public_ids and not any(p in text for p in public_ids)
    assert len(images) >= 7 and {Path(p).name for p in images} == {"image.png"}
    for path in images:
        data = Path(path).read_bytes()
        assert not any(chunk in data for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"))
        assert decode_png(data).ndim == 2
    answers = svc.answers_frame(SYSTEM, "t-study")
    mine = answers[answers["reader"] == "Reader 1"]
    assert len(mine) == 6 * 4 and mine.groupby("item").size().eq(4).all()


def test_admin_tab_results_and_export(app) -> None:
    client = Client(app["url"], verbose=False)
    client.predict(app["admin"], api_name="/a_login")
    results = client.predict("t-study", None, api_name="/a_results")
    assert "answers" in results[-1]
    path = client.predict("t-study", "long", api_name="/a_export")
    long = pd.read_csv(path)
    assert {"condition", "dose", "generator"} <= set(long.columns) and len(long) > 0
    token = client.predict("t-study", "New reader", api_name="/a_enroll")[0]
    assert len(token) > 20 and app["svc"].authenticate(token).display_name == "New reader"


def test_reader_images_are_enlarged_by_exact_pixel_replication() -> None:
    small = np.arange(200 * 150, dtype=np.uint8).reshape(200, 150)
    big = enlarge(small)
    assert big.shape == (400, 300) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::2, ::2], small)
    np.testing.assert_array_equal(big[1::2, 1::2], small)
    large = np.zeros((600, 500), np.uint8)
    assert enlarge(large) is large


def test_handlers_are_called_directly(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    out = svc.create_study(SYSTEM, spec_dict(tmp_path, readers=1))
    reader = ReaderHandlers(svc)
    shown = dict(zip(LOGIN_OUTPUTS + ITEM_OUTPUTS, reader.login(out["readers"][0]["token"]), strict=False))
    state = shown["state"]
    assert shown["counter"] == "**1 / 6**" and shown["message"] == "Logged in as **Reader 1**."
    assert shown["image"].dtype == np.uint8 and max(shown["image"].shape) >= 256
    slice_3, _ = reader.view(state, 3, 127.5, 255.0)
    assert slice_3.shape == shown["image"].shape and not np.array_equal(slice_3, shown["image"])
    after = dict(zip(ITEM_OUTPUTS, reader.submit(state, *_answers("2")), strict=False))
    assert after["counter"] == "**2 / 6**" and after["state"] is state
    assert svc.progress(SYSTEM, "t-study", reader_id=state["actor"].reader_id)["done"] == 1
    with pytest.raises(gr.Error, match="log in"):
        reader.submit({}, *_answers())
    with pytest.raises(gr.Error, match="does not allow going back"):  # a refusal of the service
        reader.back(state)

    admin = AdminHandlers(svc)
    with pytest.raises(gr.Error, match="not an admin token"):
        admin.login(out["readers"][0]["token"])
    admin_state = admin.login(svc.create_admin(SYSTEM, "Admin")[1])[0]
    results = dict(zip(RESULT_OUTPUTS, admin.results(admin_state, "t-study", None), strict=True))
    assert results["message"] == "4 answers." and list(results["scores_table"]["question"]) != []
    assert results["question"]["value"] == "overall_quality"  # the first Likert question
    assert len(pd.read_csv(admin.export(admin_state, "t-study", "long"))) == 4
    with pytest.raises(gr.Error, match="Choose a study"):
        admin.export(admin_state, None, "long")
    with pytest.raises(gr.Error, match="study spec: cases must be"):  # bad input is shown as it is
        admin.create(admin_state, "name: x")


def test_unexpected_errors_are_logged_with_a_reference(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def authenticate(self, token: str) -> None:
            raise KeyError("/secret/path/case-17")

    with caplog.at_level(logging.ERROR, logger="reader_study.ui"), pytest.raises(gr.Error) as info:
        ReaderHandlers(Broken()).login("token-token-token")  # type: ignore[arg-type]
    message = info.value.message
    assert "while logging in" in message and "secret" not in message and "case-17" not in message
    reference = re.search(r"reference ([0-9a-f]{8})", message)
    assert reference is not None
    record = caplog.records[-1]
    assert reference.group(1) in record.getMessage() and record.exc_info is not None
