"""Server processes of the benchmarks: started as a deployment would be, stopped cleanly, on a named machine.

The app benchmarks (``app_latency``, ``cold_start``) start ``python app.py`` in its own process, and
``reader_load`` starts reader-deployment workers; each stops them with :func:`stop`. :func:`machine` is the
line every benchmark prints beside its figures (how many cores, how loaded while it measured).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vce_core.settings import GRADIO_ENV

REPO = Path(__file__).resolve().parent.parent


def start_app(port: int, extra: Sequence[str] = (), **popen: Any) -> subprocess.Popen:
    """``python app.py --port PORT *extra`` from the repository root; ``popen`` goes to ``subprocess.Popen``
    (where its output goes)."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--port", str(port), *extra],
        cwd=REPO,
        env={**GRADIO_ENV, **os.environ},
        **popen,
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> None:
    """Ask a running ``proc`` to end with ``sig`` (Ctrl-C by default: the app's own shutdown); kill it
    when it has not ended after ``timeout_s`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def machine() -> str:
    """``"<n> CPUs, load average <1-minute load>"``: what the figures printed beside it were measured on."""
    return f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
