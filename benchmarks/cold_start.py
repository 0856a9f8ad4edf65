"""Cold start: time from ``python app.py`` to an HTTP 200 on the page, and to the first synthetic panel.

Run it after the demo cases exist (``python app.py`` once builds them). Each run starts a fresh process:

* *page*: the first ``GET /`` answered with HTTP 200 (the explorer's first screen: native, standard dose,
  real and baseline panels are part of the page);
* *synthetic*: then, through gradio_client, the first ``/dose`` round trip at the page's dose (the
  synthetic panel that the page's load event fills in).

    python -m benchmarks.cold_start [--runs 3] [--port 7872] [-- extra app.py arguments]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import urllib.error
import urllib.request

from benchmarks.processes import REPO, machine, start_app, stop


def one_run(port: int, extra: list[str]) -> tuple[float, float]:
    """Start the app, return (seconds to HTTP 200, seconds to the first synthetic panel)."""
    from gradio_client import Client

    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = start_app(port, extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with status {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        page = time.perf_counter() - t0
        client = Client(url, verbose=False)
        info = client.view_api(return_format="dict", print_info=False)
        view = [p["parameter_default"] for p in info["named_endpoints"]["/dose"]["parameters"]]
        client.predict(*view, api_name="/dose")
        synthetic = time.perf_counter() - t0
        return page, synthetic
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted first runs (the first run creates the demo study)"
    )
    parser.add_argument("--port", type=int, default=7872)
    parser.add_argument("extra", nargs="*", help="arguments passed to app.py (after --)")
    args = parser.parse_args()
    if not args.extra and not any((REPO / "data").rglob("case.json")):
        raise SystemExit("no demo cases yet: run `python app.py` once to build them, then measure")
    for n in range(1, args.warmup + 1):
        page, synthetic = one_run(args.port, args.extra)
        print(f"warm-up {n} (not counted): HTTP 200 after {page:.1f} s", flush=True)
    pages, synths = [], []
    for n in range(1, args.runs + 1):
        page, synthetic = one_run(args.port, args.extra)
        pages.append(page)
        synths.append(synthetic)
        print(
            f"run {n}: HTTP 200 after {page:.1f} s, first synthetic panel after {synthetic:.1f} s", flush=True
        )
    print(
        f"\nmedian of {args.runs} ({machine()}): "
        f"page {statistics.median(pages):.1f} s (target ≤ 20 s), first synthetic panel "
        f"{statistics.median(synths):.1f} s"
    )


if __name__ == "__main__":
    main()
