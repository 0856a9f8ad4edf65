"""Time and memory of the phantom: ``python -m benchmarks.phantom [--repeats N]``.

Prints wall and CPU time (CPU time is the honest figure on a shared machine) to build one 1 mm case
(native, standard dose, three low doses, T2, FLAIR, ADC, labels, CE truth) and one 2 mm case with the
templates cached; the template load (once per process, the first includes importing nilearn); the peak
resident memory of the process; and the latency of ``acquire_slice`` (the dose slider's call) at 1 mm.
Targets on 2 CPU cores: 1 mm ≤ 10 s and ≤ 2 GB, 2 mm ≤ 1 s.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="case builds per resolution (median reported)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")

    t = time.perf_counter()
    from vce_core.phantom import make_case
    from vce_core.phantom.anatomy import load_templates

    print(f"import vce_core.phantom: {time.perf_counter() - t:.2f} s")
    for resolution in (2.0, 1.0):
        t = time.perf_counter()
        load_templates(resolution)
        print(
            f"{resolution:g} mm templates, first load (the first includes importing nilearn): "
            f"{time.perf_counter() - t:.2f} s"
        )
    case = None
    for resolution in (2.0, 1.0):
        times, cpu = [], []
        for seed in range(args.repeats):
            case = None  # one case alive at a time: the peak is that of building one case
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            case = make_case(seed, resolution=resolution, doses=(0.1, 0.2, 0.33))
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(
            f"{resolution:g} mm case {case.native.shape}: wall median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}), CPU time median {statistics.median(cpu):.2f} s, "
            f"over {len(times)} builds; peak RSS so far {_peak_rss_gb():.2f} GB"
        )
    index = case.native.shape[2] // 2
    case.acquire_slice(0.5, "axial", index)  # fills the slice cache
    n = 50
    for plane, idx in (
        ("axial", index),
        ("coronal", case.native.shape[1] // 2),
        ("sagittal", case.native.shape[0] // 2),
    ):
        case.acquire_slice(0.5, plane, idx)
        t = time.perf_counter()
        for k in range(n):
            case.acquire_slice(k / n, plane, idx)
        print(
            f"1 mm acquire_slice {plane}, same slice, new dose: {(time.perf_counter() - t) / n * 1e3:.2f} ms"
        )
    t = time.perf_counter()
    for k in range(10):
        case.acquire_slice(0.5, "axial", 20 + k)
    print(
        f"1 mm acquire_slice axial, new slice each call: {(time.perf_counter() - t) / 10 * 1e3:.2f} ms/call"
    )
    t = time.perf_counter()
    case.acquire(0.42)
    print(f"1 mm acquire (one more noisy volume): {time.perf_counter() - t:.2f} s")
    print(f"peak RSS: {_peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
