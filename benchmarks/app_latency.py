"""Dose steps and plane switches in every plane vs a trivial image event, through gradio_client.

Starts ``python app.py`` (a separate process, like a real deployment), opens the first demo case and, in
one run, for axial, coronal and sagittal in turn:

* **plane switch**: ``/plane`` then ``/dose`` (what the plane radio triggers: slice slider, then the
  viewer payload of the new plane at the current dose, synthetic slice included), after the person has
  looked at the previous plane for ``--dwell`` seconds;
* **dose steps**: ``--n`` steps of +1 percentage point, every dose new (``/dose``: the viewer payload
  with the synthetic and real slice on screen), each after ``--dwell`` seconds of looking, interleaved with
  ``/echo_image`` (a trivial event returning the cached native slice as PNG: queue, encoding and client
  round trip, the floor);
* **cold dose**: one jump of +7 points without waiting (a dose nobody has precomputed); the next plane
  switch happens at that dose after a dwell.

Prints p50/p95 per plane and the ratio p50(dose step) / p50(echo) (target ≤ 1.5) and the plane switch
times (target ≤ 2 s). The dwell is what a person spends looking at an image; with ``--dwell 0`` the steps
measure the synthesis itself (in coronal/sagittal: a whole volume per dose).

    python -m benchmarks.app_latency [--n 6] [--dwell 20] [--port 7871] [--data DIR] [--models DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.processes import machine, start_app, stop

PLANES = ("axial", "coronal", "sagittal")


def drain(stream: Any) -> None:
    """Keep reading the app's output so that its pipe never fills up."""
    for _ in stream:
        pass


def serving_app(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Start the app on ``args.port``; return the process and its URL once it serves."""
    extra: list[str] = []
    if args.data:
        extra += ["--data", str(args.data)]
    if args.models:
        extra += ["--models", str(args.models)]
    proc = start_app(args.port, extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"  app | {line.rstrip()}")
        if "Serving the dose-reduction review studio on" in line:
            threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
            return proc, line.rsplit(" ", 1)[-1].strip()
    raise SystemExit(f"the app exited with status {proc.wait()} before serving")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def measure_plane(
    client: Any, case_id: str, generator: str, plane: str, dose: int, args: argparse.Namespace
) -> tuple[dict, int]:
    """Plane switch at ``dose`` (%), dose steps of +1 % with dwell (every dose new), one cold jump of
    +7 %; returns seconds and the dose shown at the end."""
    switch_plane, slider = timed(client.predict, case_id, plane, api_name="/plane")
    index = slider["value"] if isinstance(slider, dict) else slider
    switch_view, _ = timed(client.predict, case_id, generator, dose, plane, index, api_name="/dose")
    steps, echoes = [], []
    for _ in range(args.n):
        time.sleep(args.dwell)
        dose += 1
        echo, _ = timed(client.predict, case_id, plane, index, api_name="/echo_image")
        step, _ = timed(client.predict, case_id, generator, dose, plane, index, api_name="/dose")
        echoes.append(echo)
        steps.append(step)
    dose += 7
    cold, _ = timed(client.predict, case_id, generator, dose, plane, index, api_name="/dose")
    time.sleep(args.dwell)  # look at the result before the next plane switch
    return {"switch": switch_plane + switch_view, "steps": steps, "echoes": echoes, "cold": cold}, dose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: app.py's default)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: assets/models)")
    parser.add_argument("--n", type=int, default=6, help="dose steps per plane")
    parser.add_argument("--dwell", type=float, default=20.0, help="seconds of looking before each step")
    parser.add_argument("--port", type=int, default=7871)
    args = parser.parse_args()

    from gradio_client import Client

    proc, url = serving_app(args)
    try:
        client = Client(url, verbose=False)
        info = client.view_api(return_format="dict", print_info=False)
        defaults = [p["parameter_default"] for p in info["named_endpoints"]["/dose"]["parameters"]]
        case_id, generator = defaults[0], defaults[1]
        print(f"case {case_id}, generator {generator}, dwell {args.dwell:g} s, {args.n} steps per plane")
        time.sleep(args.dwell)  # the page was opened: the person looks at the first image
        results, dose = {}, 33
        for plane in PLANES:
            results[plane], dose = measure_plane(client, case_id, generator, plane, dose, args)
        print(f"\n{machine()} at the end; times in ms")
        head = ("plane", "echo p50", "step p50", "step p95", "ratio", "switch", "cold")
        print(f"{head[0]:<9} {head[1]:>9} {head[2]:>9} {head[3]:>9} {head[4]:>6} {head[5]:>8} {head[6]:>8}")
        for plane, r in results.items():
            echo = percentile(r["echoes"], 50) * 1000
            step = percentile(r["steps"], 50) * 1000
            print(
                f"{plane:<9} {echo:9.0f} {step:9.0f} {percentile(r['steps'], 95) * 1000:9.0f} "
                f"{step / echo:6.2f} {r['switch'] * 1000:8.0f} {r['cold'] * 1000:8.0f}"
            )
        worst = max(percentile(r["steps"], 50) / percentile(r["echoes"], 50) for r in results.values())
        slowest = max(r["switch"] for r in results.values())
        echo_mean = statistics.mean(e for r in results.values() for e in r["echoes"]) * 1000
        print(
            f"\nworst dose-step ratio {worst:.2f} (target ≤ 1.5); slowest plane switch {slowest:.1f} s "
            f"(target ≤ 2 s); mean echo {echo_mean:.0f} ms"
        )
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
