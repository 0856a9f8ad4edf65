"""Training subsets that hold a group out, for the report's generalisation rows.

    python -m vce_core.evaluate.subsets --dataset data/phantom --exclude agent=gadoterate \\
        --out data/subsets/no_gadoterate
    python -m vce_core.evaluate.subsets --dataset data/phantom --exclude field_strength=1.5 \\
        --out data/subsets/no_1.5t

Reads the data set's ``manifest.json`` (written by ``python -m vce_core.phantom``) and writes, for each split
(``train``, ``val``, ``test``) that keeps at least one case, ``out/<split>/<case_id>`` as a symbolic link to
the case folder, leaving out every case whose manifest entry has the excluded value. A model trained on
``out/train`` (validated on ``out/val``) has never seen the group; the evaluation then shows it next to the
model trained on everything, on held-out cases of that group. ``subset.json`` in ``out`` records the
command, the exclusion and the case ids.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, run_cli

__all__ = ["KEYS", "main", "write_subset"]

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


def write_subset(dataset: str | Path, exclude: str, out: str | Path, command: str = "") -> dict[str, Any]:
    """Link the cases of ``dataset`` (its ``manifest.json``) without ``exclude`` (``key=value``) into ``out``.

    Returns the ``subset.json`` record. Raises :class:`VCEInputError` for a missing manifest, an unknown key,
    an exclusion that matches no case or every case, or a non-empty ``out``.
    """
    dataset, out = Path(dataset), Path(out)
    try:
        manifest = json.loads((dataset / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise VCEInputError(
            f"cannot read the data set's manifest ({err})",
            path=dataset / "manifest.json",
            expected="a folder written by python -m vce_core.phantom",
        ) from err
    key, sep, value = exclude.partition("=")
    if not sep or key not in KEYS or not value:
        raise VCEInputError(f"exclusion {exclude!r}", expected=f"key=value with key one of {', '.join(KEYS)}")
    cases = manifest.get("cases") or []
    kept = [c for c in cases if not _matches(c, key, value)]
    if len(kept) == len(cases) or not kept:
        raise VCEInputError(
            f"{exclude} matches {len(cases) - len(kept)} of {len(cases)} cases",
            expected="an exclusion that leaves some cases out and keeps others",
        )
    if out.exists() and any(out.iterdir()):
        raise VCEInputError("the output folder is not empty", path=out, expected="a new or empty folder")
    for c in kept:
        link = out / c["split"] / c["case_id"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((dataset / c["path"]).resolve(), target_is_directory=True)
    record = {
        "dataset": str(dataset),
        "exclude": {key: value},
        "command": command,
        "cases": {
            s: sorted(c["case_id"] for c in kept if c["split"] == s)
            for s in sorted({c["split"] for c in kept})
        },
    }
    (out / "subset.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.subsets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="data set folder holding manifest.json")
    parser.add_argument(
        "--exclude", required=True, help="key=value, e.g. agent=gadoterate or field_strength=1.5"
    )
    parser.add_argument("--out", required=True, help="new folder for the subset (symbolic links)")
    args = parser.parse_args(argv)
    command = command_line("vce_core.evaluate.subsets", argv)
    record = run_cli(write_subset, args, command=command)
    if record is None:
        return 2
    print(
        ", ".join(f"{split}: {len(ids)} cases" for split, ids in record["cases"].items()) + f" in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
