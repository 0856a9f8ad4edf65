"""What the evaluation reports share: method labels, CSV tables, summary statistics and the command line.

Used by :mod:`vce_core.evaluate.lowdose` (with :mod:`vce_core.evaluate.report`),
:mod:`vce_core.evaluate.virtual_contrast`, :mod:`vce_core.evaluate.augmentation` and
:mod:`vce_core.evaluate.subsets`, whose command lines hand their options to the function that does the
work by name (:func:`run_cli`).
"""

from __future__ import annotations

import argparse
import csv
import inspect
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


def by_case(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(method, metric): {case_id: value}}`` of result rows (``case_id``, ``method``, ``metric``,
    ``value``); NaN values (undefined metrics) are left out."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if math.isfinite(r["value"]):
            table.setdefault((r["method"], r["metric"]), {})[r["case_id"]] = r["value"]
    return table


PAIRED_FIELDS = ["n", "mean_difference", "ci_low", "ci_high", "p_value"]
"""CSV columns of a :func:`paired` comparison (after those naming the two methods and the metric)."""


def paired(a: dict[str, float], b: dict[str, float], *, lower_is_better: bool) -> dict[str, Any] | None:
    """Paired comparison (:func:`vce_core.evaluate.stats.compare`) of two methods' ``{case_id: value}``
    over the cases both hold: ``n``, ``mean_difference`` (A − B), ``ci_low``, ``ci_high``, ``p_value`` and
    ``wins`` (cases where A is better); None with fewer than 2 shared cases."""
    from vce_core.evaluate.stats import compare

    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        return None
    c = compare([a[k] for k in keys], [b[k] for k in keys], lower_is_better=lower_is_better)
    return {
        "n": c.n,
        "mean_difference": c.mean_difference,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p_value": c.p_value,
        "wins": c.wins,
    }


def format_p(p: float | None, *, star: bool = False) -> str:
    """A p-value as the reports print it: ``< 0.001`` or three decimals, ``–`` when undefined (None or
    NaN); with ``star``, ``*`` after a p below 0.05."""
    if p is None or not math.isfinite(p):
        return "–"
    return ("< 0.001" if p < 0.001 else f"{p:.3f}") + ("*" if star and p < 0.05 else "")


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


def run_cli(run: Callable[..., T], options: argparse.Namespace | None = None, **given: Any) -> T | None:
    """``run`` called for a command-line entry point with the parsed ``options``: every parameter of
    ``run`` named like an option takes that option's value, ``given`` adds or replaces values, and the
    other parameters keep their defaults. On :class:`VCEInputError` its message is printed as ``error: …``
    on stderr and None returned (the caller exits with status 2)."""
    names = inspect.signature(run).parameters if options is not None else {}
    values = {name: getattr(options, name) for name in names if hasattr(options, name)}
    try:
        return run(**(values | given))
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
