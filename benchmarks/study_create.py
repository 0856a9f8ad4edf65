"""Time to create a reader study: the demo study rendered serially and in parallel, side by side.

    python -m benchmarks.study_create                      # the demo study over the 4 demo phantom cases
    python -m benchmarks.study_create --cases /work/main/data/phantom/test --limit 6

The cases are the app's demo phantom cases (1 mm, built into a temporary folder first) unless ``--cases``
names a folder of case folders. Each run creates ``configs/studies/demo.yaml`` (4 conditions, 5 slices, the
default generator) in a fresh SQLite database: once with one rendering thread, once with ``--workers``
threads (default: one per CPU core), in alternating order over ``--repeats`` rounds. Printed: the time of
each run, the median per setting, the speed-up, and the progress messages the admin view shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cases(args: argparse.Namespace, work: Path) -> list[Path]:
    from vce_core.io import iter_case_folders

    if args.cases:
        return sorted(iter_case_folders(Path(args.cases)))[: args.limit]
    from studio.demo import ensure_demo_cases

    t0 = time.perf_counter()
    folders = ensure_demo_cases(work / "data")
    print(f"built {len(folders)} demo phantom cases in {time.perf_counter() - t0:.1f} s")
    return folders[: args.limit]


def _create(cases: list[Path], work: Path, workers: int, tag: str) -> tuple[float, list[str]]:
    """Seconds to create the demo study over ``cases`` with ``workers`` threads, and the progress lines."""
    from reader_study.auth import SYSTEM
    from reader_study.db import open_database
    from reader_study.demo import demo_spec
    from reader_study.service import ReaderStudyService

    service = ReaderStudyService(open_database(f"sqlite:///{work / f'{tag}.db'}"), data_root=work)
    lines: list[str] = []
    t0 = time.perf_counter()
    service.create_study(
        SYSTEM,
        demo_spec(cases, with_generator=service.has_generator()),
        workers=workers,
        progress=lambda done, total, message: lines.append(f"{time.perf_counter() - t0:5.1f} s  {message}"),
    )
    elapsed = time.perf_counter() - t0
    service.db.dispose()
    return elapsed, lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", help="a folder of case folders (default: build the demo phantom cases)")
    p.add_argument("--limit", type=int, default=4, help="cases to use (default 4, like the demo)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rs-create-"))
    cases = _cases(args, work)
    times: dict[int, list[float]] = {1: [], args.workers: []}
    shown: list[str] = []
    for r in range(args.repeats):
        order = (1, args.workers) if r % 2 == 0 else (args.workers, 1)
        for workers in order:
            elapsed, lines = _create(cases, work, workers, f"r{r}w{workers}")
            times[workers].append(elapsed)
            shown = lines if workers == args.workers else shown
            print(f"round {r + 1}: {workers} thread(s): {elapsed:.1f} s")
    serial, parallel = statistics.median(times[1]), statistics.median(times[args.workers])
    print(f"{len(cases)} cases × 4 conditions: serial {serial:.1f} s, {args.workers} threads "
          f"{parallel:.1f} s (median of {args.repeats}), speed-up {serial / parallel:.2f}×")  # fmt: skip
    print("progress shown while creating (parallel run):")
    for line in shown:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
