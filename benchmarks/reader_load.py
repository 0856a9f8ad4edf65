"""Load test of the reader deployment over HTTP: N concurrent readers answer every item with gradio_client.

    python -m benchmarks.reader_load                               # 50 readers × 52 items, 2 s think time
    python -m benchmarks.reader_load --think 0                     # no pause between items (saturation)
    python -m benchmarks.reader_load --workers 2 --db postgresql://postgres@127.0.0.1:5432/postgres
    python -m benchmarks.reader_load --kill                        # kill -9 a worker mid-load, then verify
    python -m benchmarks.reader_load --busy 1                      # a contended host: one core kept busy
    python -m benchmarks.reader_load --handler-times --switch-interval 0.005   # server-side handler times,
                                                                   # at Python's default switch interval

A study of ``--cases`` synthetic cases (``--size``² pixels, 5 slices shown) × 4 conditions (standard dose
and acquired 10/20/33 % doses), one Likert and one real-vs-synthetic question, and ``--readers`` readers is
created in a fresh database: a temporary SQLite file, or a new database on the PostgreSQL server of
``--db``. ``--workers`` server processes each serve the reader deployment (``reader_study.ui.reader_app``,
what ``python app.py --role reader`` serves) on their own port against that one database; reader *k* uses
worker *k mod W*. Each reader is a thread: it logs in through ``POST /rs/session``, then calls ``/r_login``
and ``/r_submit`` with its own ``gradio_client.Client``, pausing ``--think`` seconds (uniform 0.5–1.5 ×)
before each submit, the time a person looks at the image (real readers take 10–60 s).

Printed: acknowledged vs stored answers, duplicate rows, p50/p95/max submit latency (the round trip of one
``/r_submit``: store the answers, serve the next item with its images), throughput, the CPU time the server
processes used during the run (from ``/proc``; per submit = that time over the acknowledged submits, the
log-ins included; not printed after a kill); with ``--kill``: the
submits lost in flight, whether every acknowledged answer is stored and whether every reader resumed at the
right item. Exit status 1 when a check fails. ``--busy N`` runs N processes that keep a core busy (a Python
busy loop each) for the whole run: a contended host, made the same way every time.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.processes import stop  # noqa: E402

DOSES = (0.1, 0.2, 0.33)
N_QUESTIONS = 2
START_TIMEOUT_S = 600  # a loaded 2-core machine needs minutes to import gradio and start a server
POSITION = re.compile(r"\*\*(\d+) / (\d+)\*\*")
ITEM = re.compile(r"[\w-]{22} [\w-]{16}")
READY = "reader_load server ready on port"


def _write_cases(root: Path, n: int, size: int) -> None:
    from vce_core.io import Case, Volume, save_case

    shape = (size, size, 12)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    disc = ((i - size / 2) ** 2 + (j - size / 2) ** 2 < (0.4 * size) ** 2).astype(np.float32)
    for k in range(n):
        rng = np.random.default_rng(k)
        native = np.repeat(disc[:, :, None] * 100.0, shape[2], axis=2) + rng.normal(0, 2, shape)
        enhancement = np.zeros(shape, np.float32)
        c = size // 2
        enhancement[c - 4 : c + 4, c - 4 : c + 4, 4:8] = 80.0
        lows = {
            d: Volume((native + d * enhancement + rng.normal(0, 2, shape)).astype(np.float32)) for d in DOSES
        }
        case = Case(
            native=Volume(native.astype(np.float32)),
            standard_dose=Volume((native + enhancement).astype(np.float32)),
            low_doses=lows,
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
        "slices": {"select": "center", "count": 5},
        "questions": [
            {"key": "quality", "kind": "likert", "text": "Overall image quality"},
            {"key": "rvs", "kind": "real_vs_synthetic", "text": "Real or synthetic?"},
        ],
        "readers": [f"Reader {k + 1}" for k in range(n_readers)],
        "options": {"min_distance": 3},
    }


def _time_submits(log: Path) -> None:
    """Append ``wall_ms,cpu_ms`` of every ``/r_submit`` handler call of this server process to ``log``
    (the handler as Gradio calls it: store the answers, build the next item)."""
    import functools

    from reader_study.ui.reader import ReaderHandlers

    submit = ReaderHandlers.submit
    lock = threading.Lock()

    @functools.wraps(submit)  # keeps the signature: Gradio passes the request by its annotation
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return submit(self, *args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            with lock, log.open("a") as f:
                f.write(f"{wall * 1000:.2f},{cpu * 1000:.2f}\n")

    ReaderHandlers.submit = timed  # type: ignore[method-assign]


def serve(db_url: str, port: int, handler_log: Path | None, switch_interval: float | None) -> None:
    """Server process: the reader deployment on ``127.0.0.1:port`` until killed."""
    from reader_study.db import open_database
    from reader_study.service import ReaderStudyService
    from reader_study.ui import launch_kwargs, reader_app

    if handler_log is not None:
        _time_submits(handler_log)
    service = ReaderStudyService(open_database(db_url))
    blocks = reader_app(service)
    options = launch_kwargs(service, ("reader",))
    if switch_interval is not None:  # after reader_app, which sets the deployment's own value
        sys.setswitchinterval(switch_interval)
    blocks.launch(server_name="127.0.0.1", server_port=port, quiet=True, prevent_thread_lock=True, **options)
    print(f"{READY} {port}", flush=True)  # launch() returned: its own start-up checks passed
    blocks.block_thread()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(db_url: str, port: int, log: Path, extra: list[str]) -> subprocess.Popen:
    """Start a server process and wait until it says it serves. Gradio's launch() checks that the page
    answers within 3 s and exits otherwise, which a restart under a herd of reconnecting readers on a
    loaded machine can miss: such a start is tried again (up to 3 times) and reported."""
    for attempt in range(1, 4):
        ready = f"{READY} {port}"
        before = log.read_text(errors="replace").count(ready) if log.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--db", db_url, "--port", str(port), *extra],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline and proc.poll() is None:
            if log.read_text(errors="replace").count(ready) > before:
                return proc
            time.sleep(0.3)
        if proc.poll() is None:
            proc.kill()
            raise RuntimeError(f"the server did not start within {START_TIMEOUT_S} s")
        print(f"server start {attempt} on port {port} failed (exit {proc.returncode}); see {log}", flush=True)
    raise RuntimeError(f"the server did not start; see {log}")


def _answers(k: int) -> list[Any]:
    from reader_study.ui import MAX_QUESTIONS

    values: list[Any] = [None, None, ""] * MAX_QUESTIONS
    values[0] = str(1 + k % 5)
    values[3], values[4] = ("synthetic" if k % 2 else "real"), str(1 + (k * 3) % 5)
    return values


def _shown(out: tuple[Any, ...]) -> tuple[int, str | None]:
    """(1-based position shown or 0 when done, the item field "<ticket> <key>")."""
    text = " ".join(str(v)[:200] for v in out)
    m = POSITION.search(text)
    item = next((v for v in out if isinstance(v, str) and ITEM.fullmatch(v)), None)
    return (int(m.group(1)) if m else 0), item


class ReaderThread(threading.Thread):
    """One reader: log in, answer until done; on a connection loss, log in again and check the position."""

    def __init__(
        self, url: str, token: str, reader_id: int, progress: Callable[[int], int], think: float
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.reader_id, self.progress, self.think = (
            url,
            token,
            reader_id,
            progress,
            think,
        )
        self.rng = random.Random(reader_id)
        self.acknowledged = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.started: list[float] = []  # perf_counter() at each acknowledged submit's start
        self.resumes: list[tuple[int, int]] = []  # (position shown after re-login, stored done + 1)
        self.error: str | None = None
        self.login_retries = 0

    def _login(self, resumed: bool) -> tuple[Any, int, str | None]:
        import httpx
        from gradio_client import Client

        deadline = time.time() + START_TIMEOUT_S + 60
        attempt = 0
        while True:
            try:
                r = httpx.post(self.url + "rs/session", json={"token": self.token}, timeout=60)
                r.raise_for_status()
                headers = {"x-reader-session": r.cookies["rs_session"]}
                # plain HTTP on loopback: ssl_verify=False only spares gradio_client building a TLS
                # context (loading the CA bundle, ~20 ms of CPU) for every request it sends
                client = Client(
                    self.url, verbose=False, download_files=False, headers=headers, ssl_verify=False
                )
                out = client.predict("", None, api_name="/r_login")
                break
            except Exception:  # noqa: BLE001 - the server is restarting: retry until the deadline
                self.login_retries += 1
                attempt += 1
                if time.time() > deadline:
                    raise
                # like a browser that retries: back off (0.5 s doubling up to 8 s, jittered)
                time.sleep(min(8.0, 0.5 * 2 ** min(attempt, 4)) * self.rng.uniform(0.5, 1.0))
        position, item = _shown(out)
        if resumed:
            self.resumes.append((position, self.progress(self.reader_id) + 1))
        return client, position, item

    def run(self) -> None:
        try:
            client, position, item = self._login(resumed=False)
            k = 0
            while position:
                if self.think > 0:
                    time.sleep(self.think * self.rng.uniform(0.5, 1.5))
                t0 = time.perf_counter()
                try:
                    out = client.predict(item, "load", *_answers(k), api_name="/r_submit")
                except Exception as exc:  # noqa: BLE001 - connection lost (kill mode): log in again
                    self.failed += 1
                    print(f"reader {self.reader_id}: submit failed ({type(exc).__name__})", file=sys.stderr)
                    client, position, item = self._login(resumed=True)
                    continue
                self.latencies.append(time.perf_counter() - t0)
                self.started.append(t0)
                self.acknowledged += 1
                k += 1
                position, item = _shown(out)
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            self.error = f"{type(exc).__name__}: {exc}"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readers", type=int, default=50)
    p.add_argument("--cases", type=int, default=13, help="items per reader = 4 × cases (default 52)")
    p.add_argument("--size", type=int, default=192, help="image side in pixels (default 192)")
    p.add_argument("--think", type=float, default=2.0, help="mean seconds a reader looks before submitting")
    p.add_argument("--workers", type=int, default=1, help="server processes on one database (default 1)")
    p.add_argument("--db", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL server URL")
    p.add_argument("--kill", action="store_true", help="kill -9 worker 0 mid-load, restart, verify")
    p.add_argument("--kill-after", type=float, default=0.4, help="kill when this fraction of answers is in")
    p.add_argument("--busy", type=int, default=0, help="processes that keep a core busy during the run")
    p.add_argument("--dump", type=Path, help="write every submit (reader, start s, latency ms) to this CSV")
    p.add_argument(
        "--handler-times",
        action="store_true",
        help="also print the server-side wall and CPU time of the /r_submit handler (p50/p95)",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        help="the servers' Python thread switch interval in s (default: the deployment's, "
        "vce_core.settings.SWITCH_INTERVAL_S)",
    )
    p.add_argument("--handler-log", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _database(spec: str, work: Path) -> tuple[str, Callable[[], None]]:
    """(URL of a fresh database, cleanup): a SQLite file in ``work`` or a new PostgreSQL database."""
    if spec == "sqlite":
        return f"sqlite:///{work / 'load.db'}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from reader_study.db import Database

    server = Database(spec).url
    name = f"rs_load_{uuid.uuid4().hex[:10]}"
    engine = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return server.set(database=name).render_as_string(hide_password=False), drop


def _create_study(work: Path, db_url: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Write the cases and create the study; returns (service, ``create_study`` output)."""
    from reader_study.auth import SYSTEM
    from reader_study.db import open_database
    from reader_study.service import ReaderStudyService

    _write_cases(work, args.cases, args.size)
    service = ReaderStudyService(open_database(db_url), data_root=work)
    t0 = time.time()
    created = service.create_study(SYSTEM, _spec(args.readers))
    print(f"study: {created['items']} items × {args.readers} readers (created in {time.time() - t0:.1f} s)")
    return service, created


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_readers(
    threads: list[ReaderThread],
    servers: list[subprocess.Popen],
    restart: Callable[[], subprocess.Popen],
    kill_at: float | None,
) -> tuple[bool, float, float | None]:
    """Run the reader threads until done; kill -9 worker 0 (and ``restart()`` it) once ``kill_at``
    answers are acknowledged, when given. Returns (killed, wall time in s, CPU seconds the servers used
    meanwhile; None when a server was restarted or ``/proc`` is not there)."""
    cpu0 = [_cpu_seconds(s.pid) for s in servers]
    start = time.time()
    for t in threads:
        t.start()
    killed = False
    cpu: float | None = None
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if kill_at is not None and not killed and sum(t.acknowledged for t in threads) >= kill_at:
                os.kill(servers[0].pid, signal.SIGKILL)
                servers[0].wait()
                kill_time = time.time()
                print(f"kill -9 worker 0 after {sum(t.acknowledged for t in threads)} acknowledged items")
                killed = True
                servers[0] = restart()
                print(f"worker 0 restarted in {time.time() - kill_time:.1f} s")
        cpu1 = [_cpu_seconds(s.pid) for s in servers]
        if not killed and None not in cpu0 + cpu1:
            cpu = sum(cpu1) - sum(cpu0)  # type: ignore[arg-type]
    finally:
        for server in servers:
            stop(server, signal.SIGTERM)
    return killed, time.time() - start, cpu


def _stored(service: Any) -> tuple[int, int]:
    """(answer rows, duplicate (reader, item, question, iteration) groups) in the database."""
    from sqlalchemy import func, select

    from reader_study.models import Answer

    with service.db.read() as s:
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
    items: int,
    run: tuple[bool, float, float | None],
) -> bool:
    """Print the figures and checks; True when every check passes."""
    from reader_study.auth import SYSTEM

    killed, wall, cpu = run
    acknowledged_items = sum(t.acknowledged for t in threads)
    acknowledged = acknowledged_items * N_QUESTIONS
    stored, duplicates = _stored(service)
    done = {t.reader_id: service.progress(SYSTEM, "load", reader_id=t.reader_id)["done"] for t in threads}
    per_reader_ok = all(done[t.reader_id] in (t.acknowledged, t.acknowledged + 1) for t in threads)
    latencies = np.array([x for t in threads for x in t.latencies]) * 1000
    errors = [t.error for t in threads if t.error]
    print(f"backend: {service.db.url.get_backend_name()}, workers: {args.workers}, readers: {args.readers}, "
          f"items each: {items}, think time {args.think:g} s, images {args.size}² × 5 slices, "
          f"busy processes beside: {args.busy}")  # fmt: skip
    print(f"wall time {wall:.1f} s, {acknowledged_items / wall:.1f} submits/s")
    if cpu is not None and acknowledged_items:
        print(f"server CPU: {cpu:.1f} s in all ({cpu / wall:.2f} of a core), "
              f"{1000 * cpu / acknowledged_items:.1f} ms per submit")  # fmt: skip
    print(f"acknowledged answers: {acknowledged} ({acknowledged_items} items); stored answers: {stored}")
    retried = sum(t.login_retries for t in threads)
    print(f"duplicate answer rows: {duplicates}; login attempts retried: {retried}")
    if latencies.size:
        p50, p95 = np.percentile(latencies, [50, 95])
        worst, n = latencies.max(), latencies.size
        print(f"submit latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms (n={n})")
    ok = not errors and duplicates == 0 and per_reader_ok
    if args.kill:
        resumes = [r for t in threads for r in t.resumes]
        right = sum(1 for shown, expected in resumes if shown == expected)
        print(f"after the restart: {len(resumes)} re-logins, {right} resumed at the right item; "
              f"{sum(t.failed for t in threads)} submits lost in flight (not acknowledged)")  # fmt: skip
        print(f"every acknowledged answer stored: {stored >= acknowledged and per_reader_ok}")
        ok = ok and killed and right == len(resumes) and stored >= acknowledged
    else:
        ok = ok and stored == acknowledged and acknowledged_items == args.readers * items
    for e in errors:
        print(f"reader error: {e}")
    if args.dump:
        t0 = min((t.started[0] for t in threads if t.started), default=0.0)
        pairs = [(t.reader_id, s, x) for t in threads for s, x in zip(t.started, t.latencies, strict=True)]
        rows = sorted((s - t0, r, x) for r, s, x in pairs)
        lines = [f"{r},{s:.3f},{x * 1000:.1f}" for s, r, x in rows]
        args.dump.write_text("reader,start_s,latency_ms\n" + "\n".join(lines) + "\n")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 0 when every check passes."""
    args = _arguments(argv)
    if args.serve:
        serve(args.db, args.port, args.handler_log, args.switch_interval)
        return 0
    work = Path(tempfile.mkdtemp(prefix="rs-load-"))
    db_url, drop = _database(args.db, work)
    try:
        service, created = _create_study(work, db_url, args)
        from reader_study.auth import SYSTEM

        ports = [_free_port() for _ in range(args.workers)]
        log = work / "server.log"
        handler_log = work / "handler_times.csv"
        extra = ["--handler-log", str(handler_log)] if args.handler_times else []
        if args.switch_interval is not None:
            extra += ["--switch-interval", str(args.switch_interval)]
        servers = [_start_server(db_url, port, log, extra) for port in ports]
        urls = [f"http://127.0.0.1:{port}/" for port in ports]

        def progress(reader_id: int) -> int:
            return service.progress(SYSTEM, "load", reader_id=reader_id)["done"]

        threads = [
            ReaderThread(urls[k % len(urls)], r["token"], r["reader_id"], progress, args.think)
            for k, r in enumerate(created["readers"])
        ]
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        kill_at = args.kill_after * args.readers * created["items"] if args.kill else None
        try:
            run = _run_readers(threads, servers, lambda: _start_server(db_url, ports[0], log, extra), kill_at)
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        ok = _report(args, threads, service, created["items"], run)
        if args.handler_times and handler_log.exists():
            times = np.loadtxt(handler_log, delimiter=",", ndmin=2)
            (w50, w95), (c50, c95) = (np.percentile(times[:, k], [50, 95]) for k in (0, 1))
            print(f"/r_submit handler in the server (n={len(times)}): wall p50 {w50:.0f} ms, "
                  f"p95 {w95:.0f} ms; CPU p50 {c50:.0f} ms, p95 {c95:.0f} ms")  # fmt: skip
        service.db.dispose()
    finally:
        drop()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
