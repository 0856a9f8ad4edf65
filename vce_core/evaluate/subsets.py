"""Training subsets that hold a group out (the report's generalisation rows) and size-matched controls.

    python -m vce_core.evaluate.subsets --dataset data/phantom --exclude agent=gadoterate \\
        --out data/subsets/no_gadoterate
    python -m vce_core.evaluate.subsets --dataset data/phantom --exclude field_strength=1.5 \\
        --out data/subsets/no_1.5t
    python -m vce_core.evaluate.subsets --dataset data/phantom --size-of data/subsets/no_1.5t --seed 1 \\
        --out data/subsets/random_like_no_1.5t

Reads the data set's ``manifest.json`` (written by ``python -m vce_core.phantom``) and writes, for each split
(``train``, ``val``, ``test``) that keeps at least one case, ``out/<split>/<case_id>`` as a symbolic link to
the case folder, leaving out every case whose manifest entry has the excluded value. A model trained on
``out/train`` (validated on ``out/val``) has never seen the group; the evaluation then shows it next to the
model trained on everything, on held-out cases of that group. ``subset.json`` in ``out`` records the
command, the exclusion and the case ids.

A model trained without a group has fewer training cases too. ``--size-of SUBSET --seed S`` writes the
control that separates the two causes: as many cases per split as ``SUBSET`` holds, drawn at random
(``numpy`` generator seeded with ``S``) from *every* case of that split, so every group can appear in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, run_cli

__all__ = ["KEYS", "main", "write_random_subset", "write_subset"]

KEYS = ("agent", "field_strength", "sequence")
"""Manifest keys a subset can exclude on."""


def _matches(entry: dict[str, Any], key: str, value: str) -> bool:
    have = entry.get(key)
    if key == "field_strength":
        try:
            return abs(float(have) - float(value)) < 1e-6
        except (TypeError, ValueError):
            return False
    return str(have).lower() == value.lower()


def _manifest_cases(dataset: Path) -> list[dict[str, Any]]:
    try:
        manifest = json.loads((dataset / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise VCEInputError(
            f"cannot read the data set's manifest ({err})",
            path=dataset / "manifest.json",
            expected="a folder written by python -m vce_core.phantom",
        ) from err
    return list(manifest.get("cases") or [])


def _check_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise VCEInputError("the output folder is not empty", path=out, expected="a new or empty folder")


def _link(dataset: Path, kept: list[dict[str, Any]], out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Link ``kept`` into ``out/<split>/<case_id>``; write ``subset.json``: ``record`` plus the case ids."""
    for c in kept:
        link = out / c["split"] / c["case_id"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((dataset / c["path"]).resolve(), target_is_directory=True)
    record = {
        **record,
        "cases": {
            s: sorted(c["case_id"] for c in kept if c["split"] == s)
            for s in sorted({c["split"] for c in kept})
        },
    }
    (out / "subset.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def write_subset(dataset: str | Path, exclude: str, out: str | Path, command: str = "") -> dict[str, Any]:
    """Link the cases of ``dataset`` (its ``manifest.json``) without ``exclude`` (``key=value``) into ``out``.

    Returns the ``subset.json`` record. Raises :class:`VCEInputError` for a missing manifest, an unknown key,
    an exclusion that matches no case or every case, or a non-empty ``out``.
    """
    dataset, out = Path(dataset), Path(out)
    cases = _manifest_cases(dataset)
    key, sep, value = exclude.partition("=")
    if not sep or key not in KEYS or not value:
        raise VCEInputError(f"exclusion {exclude!r}", expected=f"key=value with key one of {', '.join(KEYS)}")
    kept = [c for c in cases if not _matches(c, key, value)]
    if len(kept) == len(cases) or not kept:
        raise VCEInputError(
            f"{exclude} matches {len(cases) - len(kept)} of {len(cases)} cases",
            expected="an exclusion that leaves some cases out and keeps others",
        )
    _check_empty(out)
    return _link(dataset, kept, out, {"dataset": str(dataset), "exclude": {key: value}, "command": command})


def write_random_subset(
    dataset: str | Path, size_of: str | Path, out: str | Path, seed: int, command: str = ""
) -> dict[str, Any]:
    """The size-matched control of the subset ``size_of``: per split, as many cases as it holds, drawn at
    random (seed ``seed``) from all the cases of ``dataset`` in that split.

    Raises :class:`VCEInputError` for an unreadable manifest or ``size_of/subset.json``, a subset larger than
    the data set's split, or a non-empty ``out``.
    """
    dataset, size_of, out = Path(dataset), Path(size_of), Path(out)
    cases = _manifest_cases(dataset)
    try:
        sizes = {s: len(ids) for s, ids in json.loads((size_of / "subset.json").read_text())["cases"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise VCEInputError(
            f"cannot read the subset's record ({err})",
            path=size_of / "subset.json",
            expected="a folder written by python -m vce_core.evaluate.subsets",
        ) from err
    rng = np.random.default_rng(seed)
    kept: list[dict[str, Any]] = []
    for split, n in sizes.items():
        pool = sorted((c for c in cases if c.get("split") == split), key=lambda c: str(c["case_id"]))
        if n > len(pool):
            raise VCEInputError(
                f"the subset holds {n} {split} cases, the data set {len(pool)}",
                expected="a subset of this data set",
            )
        kept += [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]
    _check_empty(out)
    record = {"dataset": str(dataset), "size_of": str(size_of), "seed": seed, "command": command}
    return _link(dataset, kept, out, record)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.subsets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="data set folder holding manifest.json")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--exclude", help="key=value, e.g. agent=gadoterate or field_strength=1.5")
    how.add_argument(
        "--size-of", help="a subset folder: draw its size-matched control from every group (with --seed)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random draw of --size-of (0)")
    parser.add_argument("--out", required=True, help="new folder for the subset (symbolic links)")
    args = parser.parse_args(argv)
    command = command_line("vce_core.evaluate.subsets", argv)
    record = run_cli(write_subset if args.exclude is not None else write_random_subset, args, command=command)
    if record is None:
        return 2
    print(
        ", ".join(f"{split}: {len(ids)} cases" for split, ids in record["cases"].items()) + f" in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
