"""What the evaluation reports share: method labels, CSV tables, summary statistics and the command line.

Used by :mod:`vce_core.evaluate.lowdose` (with :mod:`vce_core.evaluate.report`),
:mod:`vce_core.evaluate.virtual_contrast` and :mod:`vce_core.evaluate.subsets`.
"""

from __future__ import annotations

import csv
import math
import shlex
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vce_core.errors import VCEInputError

__all__ = ["command_line", "describe", "method_names", "run_cli", "write_csv"]

T = TypeVar("T")


def method_names(synths: Sequence[Any], reserved: Collection[str] = ()) -> list[str]:
    """Report labels, one per synthesizer: its card's ``display_name``, made unique with the card name
    (also when it collides with a ``reserved`` label, e.g. a baseline's), then with the iterations, then
    with primes."""
    names: list[str] = []
    for s in synths:
        name = s.display_name
        if name in names or name in reserved:
            name = f"{name} ({s.name})"
        if name in names:
            name = f"{name[:-1]}, {s.card.training.get('iterations')} it)"
        while name in names:
            name += "'"
        names.append(name)
    return names


def describe(values: np.ndarray) -> dict[str, float | int]:
    """``mean``, ``sd`` (ddof 1; NaN for one value) and ``n`` of a non-empty 1-D array."""
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
        "n": int(values.size),
    }


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """Write ``rows`` as a CSV table with the columns ``fields`` (other keys of a row are left out)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The shell command that repeats this run: ``python -m <module>`` and its arguments (quoted)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def run_cli(run: Callable[[], T]) -> T | None:
    """``run()`` for a command-line entry point; on :class:`VCEInputError` its message is printed as
    ``error: …`` on stderr and None returned (the caller exits with status 2)."""
    try:
        return run()
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
