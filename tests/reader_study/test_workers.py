"""Two app processes' worth of reader deployments on one database (SQLite and PostgreSQL): a session made
on one works on the other, a reader resumes on either at the right item, and the same submit sent to both
at once is stored once."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client
from sqlalchemy import func, select

from reader_study.auth import SYSTEM
from reader_study.models import Answer
from reader_study.ui import launch_kwargs, reader_app
from support import make_service, shown_item, slot_answers, spec_dict, write_disc_cases

POSITION = re.compile(r"\*\*(\d+) / (\d+)\*\*")


def _answers(k: int) -> list[Any]:
    return slot_answers(str(1 + k % 5))


def _shown(out: tuple[Any, ...]) -> tuple[int, str]:
    text = " ".join(str(v)[:100] for v in out)
    item = shown_item(out) or ""
    m = POSITION.search(text)
    return (int(m.group(1)) if m else 0), item


def test_workers_share_sessions_and_never_double_an_answer(tmp_path: Path, db_url: str) -> None:
    write_disc_cases(tmp_path, 2)
    services = [make_service(tmp_path, db_url) for _ in range(2)]  # one service per "process"
    out = services[0].create_study(SYSTEM, spec_dict(tmp_path, readers=2))
    apps = [reader_app(s) for s in services]
    urls = [
        app.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(svc, ("reader",)))[1]
        for app, svc in zip(apps, services, strict=True)
    ]
    try:
        secret = httpx.post(urls[0] + "rs/session", json={"token": out["readers"][0]["token"]}).cookies[
            "rs_session"
        ]
        a, b = (
            Client(u, verbose=False, download_files=False, headers={"x-reader-session": secret}) for u in urls
        )
        position, item = _shown(a.predict("", None, api_name="/r_login"))
        assert position == 1
        position, item = _shown(a.predict(item, "t-study", *_answers(0), api_name="/r_submit"))
        assert position == 2
        assert _shown(b.predict("", None, api_name="/r_login"))[0] == 2  # resumes on the other worker
        results: list[Any] = []

        def send(client: Client) -> None:
            results.append(client.predict(item, "t-study", *_answers(1), api_name="/r_submit"))

        threads = [threading.Thread(target=send, args=(c,)) for c in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(_shown(r)[0] for r in results) == [3, 3, 3, 3]
        while position:  # the rest alternating between the workers
            client = (a, b)[position % 2]
            position, item = _shown(
                client.predict(item, "t-study", *_answers(position), api_name="/r_submit")
            )
    finally:
        for app in apps:
            app.close()
    frame = services[0].answers_frame(SYSTEM, "t-study")
    assert len(frame) == out["items"] * 4 and frame.groupby("item").size().eq(4).all()
    with services[0].db.read() as s:
        assert s.scalar(select(func.count(Answer.id))) == out["items"] * 4
    for s in services:
        s.db.dispose()
