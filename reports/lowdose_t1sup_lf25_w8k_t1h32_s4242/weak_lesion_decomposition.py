"""Probe of this report's lesions.csv: is a method's error on weakly enhancing lesions noise, or bias?

The report scores every case with three repeat scans (noise seeds 0, 1, 2; a model's noise seed is the
scan's). For each weakly enhancing lesion and dose this splits a method's signed error E − E_true into
- its *systematic* part: the mean over the three scans (what the method gets wrong on that lesion whatever
  the noise), printed as the mean of its absolute value over lesions and doses, and as its mean (the bias);
- its *noise* part: the standard deviation over the three scans, averaged over lesions and doses.
A method whose loss on these lesions is its noise has a small systematic part and a large noise part (the
acquired scan); one whose loss is bias has the reverse.

Run from the repository root:
``python reports/lowdose_t1sup_lf25_w8k_t1h32_s4242/weak_lesion_decomposition.py``
(``--lesions`` another report's lesions.csv, ``--type`` another lesion type).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=Path, default=HERE / "lesions.csv")
    parser.add_argument("--type", default="weakly enhancing")
    args = parser.parse_args()
    # (method, field strength, dose, case, lesion) -> signed errors over the noise seeds
    errors: dict[tuple[str, float, float, str, str], list[float]] = defaultdict(list)
    with args.lesions.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["type"] != args.type:
                continue
            key = (
                row["method"],
                float(row["field_strength"]),
                float(row["dose"]),
                row["case_id"],
                row["lesion"],
            )
            errors[key].append(float(row["e_method"]) - float(row["e_true"]))
    methods = sorted({k[0] for k in errors})
    print(f"{args.type} lesions of {args.lesions}: signed error E − E_true over the repeat scans")
    print("method | field | dose | lesions | systematic |mean| | bias (mean) | noise (SD over scans)")
    for method in methods:
        for field in (None, 1.5, 3.0):
            for dose in (None, *sorted({k[2] for k in errors})):
                groups = [
                    v
                    for k, v in errors.items()
                    if k[0] == method and field in (None, k[1]) and dose in (None, k[2]) and len(v) > 1
                ]
                if not groups:
                    continue
                means = [statistics.fmean(v) for v in groups]
                sds = [statistics.stdev(v) for v in groups]
                label = method if len(method) <= 48 else f"{method[:20]}…{method[-27:]}"
                print(
                    f"{label} | {'all' if field is None else f'{field:g} T'} | "
                    f"{'all' if dose is None else f'{dose:g}'} | {len(groups)} | "
                    f"{statistics.fmean(abs(m) for m in means):.5f} | {statistics.fmean(means):+.5f} | "
                    f"{statistics.fmean(sds):.5f}"
                )


if __name__ == "__main__":
    main()
