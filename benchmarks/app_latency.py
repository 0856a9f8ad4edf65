"""Round trip of a dose-slider change vs a trivial image event of the same size, through gradio_client.

Starts ``python app.py`` (a separate process, like a real deployment), then, in one run and interleaved:

* ``/dose``: what the dose slider triggers first: synthesize the current slice at a dose not seen before
  (no cache hit), window it and return the PNG panel;
* ``/echo_image``: a trivial event returning the cached native panel of the same size (the floor: queue,
  PNG encoding, file serving and the client round trip);
* ``/dose_panels``: the follow-up event of the slider (real, baseline, difference, swipe, metrics, noise
  chart), for information.

Prints p50/p95 of each and the ratio p50(dose) / p50(echo) (target ≤ 2).

    python -m benchmarks.app_latency [--data DIR] [--models DIR] [--n 40] [--port 7871]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def drain(stream: Any) -> None:
    """Keep reading the app's output so that its pipe never fills up."""
    for _ in stream:
        pass


def start_app(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Start the app on ``args.port``; return the process and its URL once it serves."""
    cmd = [sys.executable, str(REPO / "app.py"), "--port", str(args.port)]
    if args.data:
        cmd += ["--data", str(args.data)]
    if args.models:
        cmd += ["--models", str(args.models)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"  app | {line.rstrip()}")
        if "Serving the dose-reduction review studio on" in line:
            threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
            return proc, line.rsplit(" ", 1)[-1].strip()
    raise SystemExit(f"the app exited with status {proc.wait()} before serving")


def defaults(client: Any, api_name: str) -> list[Any]:
    """Initial values of an endpoint's inputs (the page's first view)."""
    info = client.view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"][api_name]["parameters"]
    return [p["parameter_default"] for p in params]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: app.py's default)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: assets/models)")
    parser.add_argument("--n", type=int, default=40, help="measured round trips per endpoint")
    parser.add_argument("--port", type=int, default=7871)
    args = parser.parse_args()

    from gradio_client import Client

    proc, url = start_app(args)
    try:
        client = Client(url, verbose=False)
        view = defaults(client, "/dose")  # case, generator, dose, plane, slice, level, width
        case_id, generator, _, plane, index, level, width = view
        print(f"case {case_id}, generator {generator}, {plane} slice {index}, window {level:g}/{width:g}")
        echo_args = [case_id, plane, index, level, width]
        doses = list(range(1, 100))
        random.Random(0).shuffle(doses)
        for dose in doses[:3]:  # warm-up: prepare, first synthesis, file cache
            client.predict(case_id, generator, dose, plane, index, level, width, api_name="/dose")
            client.predict(*echo_args, api_name="/echo_image")
        timings: dict[str, list[float]] = {"/dose": [], "/echo_image": [], "/dose_panels": []}
        for dose in doses[3 : 3 + args.n]:
            t0 = time.perf_counter()
            client.predict(*echo_args, api_name="/echo_image")
            timings["/echo_image"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.predict(case_id, generator, dose, plane, index, level, width, api_name="/dose")
            timings["/dose"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.predict(case_id, generator, dose, plane, index, level, width, api_name="/dose_panels")
            timings["/dose_panels"].append(time.perf_counter() - t0)
        n = len(timings["/dose"])
        print(f"\n{n} round trips each, every dose new (no cache hit), {os.cpu_count()} CPUs")
        print(f"{'endpoint':<14} {'p50 (ms)':>9} {'p95 (ms)':>9} {'mean (ms)':>10}")
        for name, values in timings.items():
            ms = [v * 1000 for v in values]
            print(
                f"{name:<14} {percentile(ms, 50):9.1f} {percentile(ms, 95):9.1f} {statistics.mean(ms):10.1f}"
            )
        ratio = percentile(timings["/dose"], 50) / percentile(timings["/echo_image"], 50)
        print(f"\nratio p50(/dose) / p50(/echo_image) = {ratio:.2f} (target ≤ 2)")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
