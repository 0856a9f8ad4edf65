"""Load test of the reader study over HTTP: N concurrent readers answer every item through gradio_client.

    python -m benchmarks.reader_load                      # 20 readers × 52 items, prints the figures
    python -m benchmarks.reader_load --readers 5 --cases 4
    python -m benchmarks.reader_load --kill               # kill -9 the server mid-load, restart, verify

A temporary SQLite database gets a study of ``--cases`` small synthetic cases × 4 conditions (standard dose
and acquired 10/20/33 % doses), one Likert and one real-vs-synthetic question, and ``--readers`` readers.
A server process mounts :func:`reader_study.ui.mount_reader_study` in a bare ``gr.Blocks``; each reader is a
thread with its own ``gradio_client.Client`` that logs in with its token and submits until done.

Printed: acknowledged vs stored answers (must be equal without ``--kill``; with ``--kill`` every acknowledged
answer must be stored and at most one unacknowledged item per reader may be stored too), duplicate rows
(0: the database forbids them), p50/p95 submit latency, and with ``--kill`` whether every reader resumed at
the right position after the restart. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402

DOSES = (0.1, 0.2, 0.33)
START_TIMEOUT_S = 600  # a loaded 2-core machine needs minutes to import gradio and start a server
POSITION = re.compile(r"\*\*(\d+) / (\d+)\*\*")


def _write_cases(root: Path, n: int) -> None:
    from vce_core.io import Case, Volume, save_case

    shape = (64, 64, 12)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = ((i - 32) ** 2 + (j - 32) ** 2 < 26**2).astype(np.float32)
    for k in range(n):
        rng = np.random.default_rng(k)
        native = np.repeat(disc[:, :, None] * 100.0, shape[2], axis=2) + rng.normal(0, 2, shape)
        enhancement = np.zeros(shape, np.float32)
        enhancement[28:36, 28:36, 4:8] = 80.0
        volumes = {
            d: Volume((native + d * enhancement + rng.normal(0, 2, shape)).astype(np.float32)) for d in DOSES
        }
        case = Case(
            native=Volume(native.astype(np.float32)),
            standard_dose=Volume((native + enhancement).astype(np.float32)),
            low_doses=volumes,
            meta={"case_id": f"load-{k:03d}"},
        )
        save_case(case, root / "cases" / f"load-{k:03d}")


def _spec(n_readers: int) -> dict[str, Any]:
    return {
        "name": "load",
        "seed": 1,
        "cases": {"glob": "cases/*"},
        "status": "open",
        "conditions": ["real_standard_dose", "real_low_dose"],
        "doses": list(DOSES),
        "slices": {"select": "center", "count": 3},
        "questions": [
            {"key": "quality", "kind": "likert", "text": "Overall image quality"},
            {"key": "rvs", "kind": "real_vs_synthetic", "text": "Real or synthetic?"},
        ],
        "readers": [f"Reader {k + 1}" for k in range(n_readers)],
        "options": {"min_distance": 3},
    }


def serve(db_url: str, port: int) -> None:
    """Server process: the reader-study tabs on ``127.0.0.1:port`` until killed."""
    import gradio as gr

    from reader_study.db import open_database
    from reader_study.service import ReaderStudyService
    from reader_study.ui import READER_JS, mount_reader_study

    service = ReaderStudyService(open_database(db_url))
    with gr.Blocks() as demo:
        mount_reader_study(service)
    demo.queue(default_concurrency_limit=None)
    demo.launch(server_name="127.0.0.1", server_port=port, js=READER_JS, quiet=True, footer_links=[])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(db_url: str, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--db", db_url, "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not start within {START_TIMEOUT_S} s")


def _answers(n_slots: int, k: int) -> list[Any]:
    values: list[Any] = []
    for _ in range(n_slots):
        values += [None, None, ""]
    values[0] = str(1 + k % 5)
    values[3], values[4] = ("synthetic" if k % 2 else "real"), str(1 + (k * 3) % 5)
    return values


class ReaderThread(threading.Thread):
    """One reader: log in, submit until done; on a connection loss, log in again and check the position."""

    def __init__(self, url: str, token: str, reader_id: int, service: Any, study: str, n_slots: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.reader_id = url, token, reader_id
        self.service, self.study, self.n_slots = service, study, n_slots
        self.acknowledged = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.resumes: list[tuple[int, int]] = []  # (position shown after re-login, stored done + 1)
        self.error: str | None = None
        self.failures: list[str] = []
        self.login_retries = 0

    def _login(self, resumed: bool) -> tuple[Any, int, int]:
        from gradio_client import Client

        from reader_study.auth import SYSTEM

        deadline = time.time() + START_TIMEOUT_S + 60
        while True:
            try:
                client = Client(self.url, verbose=False, download_files=False)
                out = client.predict(self.token, api_name="/r_login")
                break
            except Exception:  # noqa: BLE001 - the server is restarting: retry until the deadline
                self.login_retries += 1
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        text = " ".join(str(v) for v in out)
        m = POSITION.search(text)
        if m is None:
            return client, 0, 0
        position, total = int(m.group(1)), int(m.group(2))
        if resumed:
            done = self.service.progress(SYSTEM, self.study, reader_id=self.reader_id)["done"]
            self.resumes.append((position, done + 1))
        return client, position, total

    def run(self) -> None:
        try:
            client, position, total = self._login(resumed=False)
            k = 0
            while position:
                t0 = time.perf_counter()
                try:
                    out = client.predict(*_answers(self.n_slots, k), api_name="/r_submit")
                except Exception as exc:  # noqa: BLE001 - connection lost (kill mode): log in again
                    self.failed += 1
                    self.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    note = f"reader {self.reader_id}: submit failed ({self.failures[-1]})"
                    print(note, file=sys.stderr, flush=True)
                    client, position, total = self._login(resumed=True)
                    continue
                self.latencies.append(time.perf_counter() - t0)
                self.acknowledged += 1
                k += 1
                m = POSITION.search(" ".join(str(v) for v in out))
                position = int(m.group(1)) if m else 0
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            self.error = f"{type(exc).__name__}: {exc}"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readers", type=int, default=20)
    p.add_argument("--cases", type=int, default=13, help="items per reader = 4 × cases (default 52)")
    p.add_argument("--kill", action="store_true", help="kill -9 the server mid-load, restart, verify")
    p.add_argument("--kill-after", type=float, default=0.4, help="kill when this fraction of answers is in")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _create_study(work: Path, db_url: str, n_cases: int, n_readers: int) -> tuple[Any, dict[str, Any]]:
    """Write the cases and create the study; returns (service, ``create_study`` output)."""
    from reader_study.auth import SYSTEM
    from reader_study.db import open_database
    from reader_study.service import ReaderStudyService

    _write_cases(work, n_cases)
    service = ReaderStudyService(open_database(db_url), data_root=work)
    t0 = time.time()
    created = service.create_study(SYSTEM, _spec(n_readers))
    elapsed = time.time() - t0
    print(f"study: {created['items']} items, {n_readers} readers (created in {elapsed:.1f} s) in {work}")
    return service, created


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def _run_readers(
    threads: list[ReaderThread],
    server: subprocess.Popen,
    restart: Callable[[], subprocess.Popen],
    kill_at: float | None,
) -> tuple[bool, float]:
    """Run the reader threads until done; kill -9 the server (and ``restart()`` it) once ``kill_at``
    answers are acknowledged, when given. Returns (killed, wall time in s)."""
    start = time.time()
    for t in threads:
        t.start()
    killed = False
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if kill_at is not None and not killed and sum(t.acknowledged for t in threads) >= kill_at:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
                kill_time = time.time()
                killed_at = sum(t.acknowledged for t in threads)
                print(f"kill -9 the server after {killed_at} acknowledged items; restarting")
                killed = True
                server = restart()
                print(f"server restarted in {time.time() - kill_time:.1f} s")
    finally:
        _stop(server)
    return killed, time.time() - start


def _stored(db_url: str) -> tuple[int, int]:
    """(answer rows, duplicate (reader, item, question, iteration) groups) in the database."""
    from sqlalchemy import func, select

    from reader_study.db import open_database
    from reader_study.models import Answer

    with open_database(db_url).read() as s:
        stored = s.scalar(select(func.count(Answer.id)))
        duplicates = s.scalar(
            select(func.count()).select_from(
                select(Answer.reader_id, Answer.item_id, Answer.question_id, Answer.iteration)
                .group_by(Answer.reader_id, Answer.item_id, Answer.question_id, Answer.iteration)
                .having(func.count() > 1)
                .subquery()
            )
        )
    return stored, duplicates


def _report(
    args: argparse.Namespace,
    threads: list[ReaderThread],
    service: Any,
    created: dict[str, Any],
    killed: bool,
    wall: float,
    db_url: str,
) -> bool:
    """Print the figures and checks; True when every check passes."""
    from reader_study.auth import SYSTEM

    n_questions = 2
    acknowledged_items = sum(t.acknowledged for t in threads)
    acknowledged = acknowledged_items * n_questions
    stored, duplicates = _stored(db_url)
    done = {t.reader_id: service.progress(SYSTEM, "load", reader_id=t.reader_id)["done"] for t in threads}
    per_reader_ok = all(done[t.reader_id] in (t.acknowledged, t.acknowledged + 1) for t in threads)
    latencies = np.array([x for t in threads for x in t.latencies]) * 1000
    errors = [t.error for t in threads if t.error]
    print(f"readers: {args.readers}, items each: {created['items']}, wall time {wall:.1f} s")
    print(f"acknowledged answers: {acknowledged} ({acknowledged_items} items); stored answers: {stored}")
    print(f"duplicate answer rows: {duplicates}")
    print(f"login attempts retried: {sum(t.login_retries for t in threads)}")
    if latencies.size:
        p50, p95 = np.percentile(latencies, [50, 95])
        worst = latencies.max()
        print(f"submit latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms (n={latencies.size})")
    ok = not errors and duplicates == 0 and per_reader_ok
    if args.kill:
        resumes = [r for t in threads for r in t.resumes]
        right = sum(1 for shown, expected in resumes if shown == expected)
        failed = sum(t.failed for t in threads)
        print(
            f"after the restart: {len(resumes)} re-logins, {right} resumed at the right position; "
            f"{failed} submits lost in flight (not acknowledged)"
        )
        print(f"every acknowledged answer stored: {stored >= acknowledged and per_reader_ok}")
        ok = ok and killed and right == len(resumes) and stored >= acknowledged
    else:
        ok = ok and stored == acknowledged and acknowledged_items == args.readers * created["items"]
    for e in errors:
        print(f"reader error: {e}")
    for f in sorted({f for t in threads for f in t.failures}):
        print(f"submit failure seen: {f}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 0 when every check passes."""
    args = _arguments(argv)
    if args.serve:
        serve(args.db, args.port)
        return 0
    work = Path(tempfile.mkdtemp(prefix="rs-load-"))
    db_url = f"sqlite:///{work / 'load.db'}"
    service, created = _create_study(work, db_url, args.cases, args.readers)
    port = _free_port()
    log = work / "server.log"
    server = _start_server(db_url, port, log)
    url = f"http://127.0.0.1:{port}/"
    threads = [ReaderThread(url, r["token"], r["reader_id"], service, "load", 8) for r in created["readers"]]
    kill_at = args.kill_after * args.readers * created["items"] if args.kill else None
    killed, wall = _run_readers(threads, server, lambda: _start_server(db_url, port, log), kill_at)
    ok = _report(args, threads, service, created, killed, wall, db_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
