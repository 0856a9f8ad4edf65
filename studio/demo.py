"""Demo data of ``python app.py`` without ``--data``: a few phantom cases, built on the first start."""

from __future__ import annotations

import time
from pathlib import Path

from studio.upload import UPLOADS

DEMO_SEEDS: tuple[int, ...] = (11, 12, 13, 14)
DEMO_DOSES: tuple[float, ...] = (0.1, 0.2, 0.33)
"""Acquired low doses of each demo case (fractions of the standard dose)."""


def ensure_demo_cases(
    data_dir: Path, *, seeds: tuple[int, ...] = DEMO_SEEDS, resolution: float = 1.0
) -> list[Path]:
    """Create the demo phantom cases under ``data_dir/demo`` unless ``data_dir`` already holds cases.

    Each case is ``vce_core.phantom.make_case(seed, doses=DEMO_DOSES, resolution=resolution)`` (mm)
    saved with ``vce_core.io.save_case``; progress is printed. Returns the case folders created.
    """
    from vce_core.io import iter_case_folders, save_case

    data_dir.mkdir(parents=True, exist_ok=True)
    existing = [f for f in iter_case_folders(data_dir) if f.relative_to(data_dir).parts[:1] != (UPLOADS,)]
    if existing:
        return []
    from vce_core.phantom import make_case

    created = []
    print(f"Building {len(seeds)} demo phantom cases in {data_dir / 'demo'} (first run only) ...", flush=True)
    for n, seed in enumerate(seeds, start=1):
        t0 = time.perf_counter()
        case = make_case(seed, doses=DEMO_DOSES, resolution=resolution)
        case_id = case.meta.get("case_id") or f"phantom-{seed:04d}"
        folder = data_dir / "demo" / str(case_id)
        save_case(case, folder)
        created.append(folder)
        print(f"  [{n}/{len(seeds)}] {case_id} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return created
