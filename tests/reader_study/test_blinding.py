"""A curious reader attacks the reader deployment (``reader_app``) with gradio_client and plain HTTP, and
must not learn any item's condition: no explorer or admin endpoint, no identifier in config, API, values,
file names or error text, and payload sizes that are the same for every condition."""

from __future__ import annotations

import base64
import html
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlalchemy import select

from reader_study.auth import SYSTEM
from reader_study.models import Assignment, Item
from reader_study.ui import launch_kwargs, reader_app
from support import (
    FakeContrast,
    FakeGenerator,
    make_service,
    shown_item,
    slot_answers,
    spec_dict,
    write_disc_cases,
)

FORBIDDEN = [
    "real_standard_dose",
    "real_low_dose",
    "synthetic_low_dose",
    "linear_baseline",
    "standard_dose",
    "low_dose",
    "0.33",
    "33 %",
    "virtual_contrast",
    "virtual",
    FakeGenerator.name,
    "fakegen",
    FakeContrast.name,
    "fakevc",
    "phantom-",
    "case.json",
    ".nii",
    "dose explorer",
    "explorer",
    "a_login",
    "a_export",
]
PAYLOAD = re.compile(r'data-vce-viewer="([^"]*)"')


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rs-blind")
    write_disc_cases(root, 2)  # 2 cases × 4 conditions: item counters stay one digit long
    svc = make_service(root)
    spec = spec_dict(root, readers=1)
    spec["conditions"].append({"condition": "virtual_contrast", "generator": "fakevc"})  # a zero-dose model
    out = svc.create_study(SYSTEM, spec)
    blocks = reader_app(svc)
    _, url, _ = blocks.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(svc, ("reader",)))
    yield {"svc": svc, "url": url, "token": out["readers"][0]["token"], "root": root}
    blocks.close()


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


def test_curious_reader_learns_no_condition(deployment) -> None:
    url, svc = deployment["url"], deployment["svc"]
    seen: list[str] = []
    with httpx.Client(base_url=url) as http:
        for path in ("config", "gradio_api/info", "gradio_api/openapi.json", "robots.txt"):
            response = http.get(path)
            seen.append(response.text + json.dumps(dict(response.headers)))
        # no admin log-in, no files of the server, no explorer
        assert http.post("rs/session", params={"role": "admin"}, json={"token": "x"}).status_code == 404
        for probe in ("gradio_api/file=/etc/passwd", f"gradio_api/file={deployment['root']}/rs.db"):
            assert http.get(probe).status_code in (403, 404)
        login = http.post("rs/session", json={"token": deployment["token"]})
        assert login.status_code == 200 and "httponly" in login.headers["set-cookie"].lower()
        secret = login.cookies["rs_session"]
    client = Client(url, verbose=False, headers={"x-reader-session": secret}, download_files=False)
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) <= {"/r_login", "/r_study", "/r_submit", "/r_back"}
    seen.append(json.dumps(api))
    shown = client.predict("", None, api_name="/r_login")
    errors = []
    for bogus in ("i" + "A" * 21 + " " + "k" * 16, "' OR 1=1 --"):
        errors.append(_text(client.predict(bogus, "t-study", *slot_answers(), api_name="/r_submit")[0]))
    seen += errors
    assert all("No such item" in e for e in errors), errors
    features: dict[str, list[tuple[int, int]]] = defaultdict(list)  # condition → (payload, response) sizes
    with svc.db.read() as s:
        truth = dict(s.execute(select(Assignment.ticket, Item.condition).join(Item)).all())
    shown_by_submit = False
    while True:
        text = _text(shown)
        seen.append(text)
        item = shown_item(shown)
        if item is None:
            break
        viewer = next(v for v in shown if isinstance(v, str) and "data-vce-viewer" in v)
        payload = json.loads(html.unescape(PAYLOAD.search(viewer).group(1)))
        (stack,) = payload["stacks"].values()
        assert stack["dtype"] == "uint8" and len(stack["slices"]) == payload["count"] == 3
        pixels = "".join(stack["slices"].values())
        slice_bytes = [len(base64.b64decode(v)) for v in stack["slices"].values()]
        assert slice_bytes == [payload["rows"] * payload["cols"]] * 3  # raw uint8, uncompressed
        without_pixels = text
        for encoded in stack["slices"].values():
            without_pixels = without_pixels.replace(encoded, "")
        if shown_by_submit:  # (the first view also carries the log-in note and the instructions)
            features[truth[item.split(" ")[0]]].append((len(pixels), len(without_pixels)))
        shown = client.predict(item, "t-study", *slot_answers(), api_name="/r_submit")
        shown_by_submit = True
    assert "All items are answered" in text
    everything = "\n".join(seen).lower()
    for word in FORBIDDEN:
        assert word.lower() not in everything, word
    public_ids = set(svc.answers_frame(SYSTEM, "t-study")["item"])
    assert len(public_ids) == 8 and not any(p.lower() in everything for p in public_ids)
    # every condition gives exactly the same sizes: nothing but the pixels themselves differs
    assert len(features) == 4 and "virtual_contrast" in features
    sizes = {condition: set(v) for condition, v in features.items()}
    assert len({json.dumps(sorted(v)) for v in sizes.values()}) == 1, sizes


def test_reader_deployment_has_no_explorer_or_admin(deployment) -> None:
    config = httpx.get(deployment["url"] + "config").json()
    labels = json.dumps([c.get("props", {}).get("label") for c in config["components"]]).lower()
    for word in ("dose", "generator", "explorer", "upload", "admin", "export", "spec"):
        assert word not in labels, word
    names = {d.get("api_name") for d in config["dependencies"]}
    assert not any(str(n).startswith("a_") for n in names)
    assert Path(deployment["root"] / "rs.db").is_file()
