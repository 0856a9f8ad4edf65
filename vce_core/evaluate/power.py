"""Several low-dose reports pooled: the paired tests over all their cases, and how often a draw of n cases
would pass.

    python -m vce_core.evaluate.power --reports reports/<a> <dir of another draw's report> ... \\
        [--baselines "linear baseline" "physics baseline"] [--sizes 24 36 48 72] [--out reports/<name>]

A report of :mod:`vce_core.evaluate.lowdose` tests every model against every baseline over the cases of one
draw (Wilcoxon signed-rank over cases, per-case values averaged over noise seeds and doses). Whether one
draw passes "better than the baseline with p < 0.05" depends on how many cases it holds and on which: a
method that wins most cases by a little and loses some by a lot, or the reverse, passes some draws and not
others. This command reads several reports on *different* draws (distinct case ids;
the same case twice is refused) and prints, per method present in every report:

* each report's test again (n, cases where the method is better, p: the report's own figures);
* the pooled test over every case of every report (cases from independent draws are independent subjects):
  n, wins, the mean paired difference with its bootstrap 95 % CI, the Wilcoxon p;
* the **power of a draw of n cases**: the fraction of ``--resamples`` sets of n cases, drawn with
  replacement from the pooled cases (numpy generator seeded with ``--seed``), in which the method is
  better than the baseline with p < ``--alpha`` (two-sided Wilcoxon, the report's test, and a mean paired
  difference in the method's favour); and in which it is better than every ``--baselines`` at once (the
  same resampled cases for each). This treats the pooled cases as the population future draws come from,
  which holds for phantom draws (independent cases of one generator) and says nothing about real data.

One metric is read (``--metric``): by default the primary endpoint ``lesion_error``, the mean over a
case's lesions of ``|E − E_true|``, recomputed from the report's ``lesions.csv`` (committed with every
report; ``lesion_error:<type>`` likewise); any other metric comes from ``results.csv``, which the
report's command writes but the repository does not keep. Only cases with a value count (a case without an
enhancing lesion has no lesion error: a draw of 24 phantom cases gives about 22). With ``--out`` it writes
``power.md`` (what is printed, with the command) and ``cases.csv`` (draw, case_id, method, value: the
per-case values every figure is computed from).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import command_line, format_p, run_cli, write_csv
from vce_core.evaluate.lowdose import ALL_DOSES, BASELINES, LOWER_IS_BETTER, PRIMARY, per_case
from vce_core.evaluate.stats import compare
from vce_core.metrics import paired_test

__all__ = ["main", "pool_reports", "pooled_power", "read_case_values"]

_RESULT_COLUMNS = ("case_id", "dose", "method", "metric", "value")
_LESION_COLUMNS = ("case_id", "noise_seed", "dose", "method", "type", "abs_error")


def _read_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise VCEInputError(
                    f"{path.name} lacks the columns {missing}",
                    path=path,
                    expected=f"the {path.name} of a low-dose report (python -m vce_core.evaluate)",
                )
            return list(reader)
    except OSError as err:
        raise VCEInputError(
            f"cannot read the report's {path.name} ({err.strerror or err})",
            path=path,
            expected="the --out folder of python -m vce_core.evaluate",
        ) from err


def read_case_values(report: str | PathLike, metric: str = PRIMARY) -> dict[str, dict[str, float]]:
    """``{method: {case_id: value}}`` of one report: ``metric`` per case, averaged over noise seeds and then
    over doses exactly as the report does (:func:`~vce_core.evaluate.lowdose.per_case`, dose ``"all"``).

    The lesion errors (``lesion_error``, ``lesion_error:<type>``) are recomputed from ``lesions.csv``, which
    is committed with every report: per scan (case, noise seed, dose) and method, the mean of ``abs_error``
    over the lesions (of that type), as the report computes them. Other metrics come from ``results.csv``
    (not committed: the report's command writes it)."""
    folder = Path(report)
    name, _, kind = metric.partition(":")
    rows: list[dict[str, Any]] = []
    if name == PRIMARY:
        path = folder / "lesions.csv"
        scans: dict[tuple[str, float, str, str], list[float]] = {}
        for r in _read_rows(path, _LESION_COLUMNS):
            if kind and r["type"] != kind:
                continue
            key = (r["case_id"], _number(r["dose"], path), r["noise_seed"], r["method"])
            scans.setdefault(key, []).append(_number(r["abs_error"], path))
        rows = [
            {"case_id": c, "dose": d, "method": m, "metric": metric, "value": float(np.mean(v))}
            for (c, d, _, m), v in scans.items()
        ]
    else:
        path = folder / "results.csv"
        rows = [
            {
                "case_id": r["case_id"],
                "dose": _number(r["dose"], path),
                "method": r["method"],
                "metric": metric,
                "value": _number(r["value"], path),
            }
            for r in _read_rows(path, _RESULT_COLUMNS)
            if r["metric"] == metric
        ]
    if not rows:
        raise VCEInputError(
            f"{path.name} holds no {metric!r} values",
            path=path,
            expected=f"a metric the report wrote (the primary endpoint is {PRIMARY})",
        )
    table = per_case(rows)
    return {method: cases for (method, dose, m), cases in table.items() if dose == ALL_DOSES and m == metric}


def _number(text: str, path: Path) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise VCEInputError(f"{path.name} holds a value that is not a number ({text!r})", path=path) from err


def pool_reports(
    reports: Sequence[str | PathLike], metric: str = PRIMARY, aliases: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, str], list[str]]:
    """``(values, draw_of, methods)``: ``{method: {case_id: value}}`` over every report, ``{case_id: report
    folder name}``, and the methods that every report holds (in the first report's order). A case id found
    in two reports is refused: the reports must be on different draws, or the pooled test would count a
    case twice. ``aliases`` renames methods as they are read (``{name in a report: name to pool under}``):
    the same model evaluated under another display name in some reports."""
    if not reports:
        raise VCEInputError("no reports were given", expected="one or more --reports folders")
    values: dict[str, dict[str, float]] = {}
    draw_of: dict[str, str] = {}
    methods: list[str] | None = None
    for report in reports:
        name = Path(report).name
        table = read_case_values(report, metric)
        for old, new in (aliases or {}).items():
            if old in table:
                if new in table:
                    raise VCEInputError(
                        f"the alias {old!r} → {new!r} would merge two methods of one report",
                        path=report,
                        expected="an alias for a name the report does not already hold",
                    )
                table[new] = table.pop(old)
        cases = {c for per in table.values() for c in per}
        twice = sorted(cases & set(draw_of))
        if twice:
            raise VCEInputError(
                f"case {twice[0]} is in {draw_of[twice[0]]} and in {name} ({len(twice)} cases in both)",
                path=report,
                expected="reports on different draws (each case once)",
            )
        draw_of |= dict.fromkeys(sorted(cases), name)
        for method, per in table.items():
            values.setdefault(method, {}).update(per)
        methods = [m for m in (methods if methods is not None else table) if m in table]
    return values, draw_of, methods or []


def _passes(diffs: np.ndarray, alpha: float) -> bool:
    """The report's test passes: two-sided Wilcoxon p < alpha with the mean difference (method − baseline,
    lower is better) below 0."""
    if not diffs.mean() < 0 or not np.any(diffs != 0):
        return False
    return paired_test(diffs, np.zeros_like(diffs))[1] < alpha


def pooled_power(
    diffs: np.ndarray, sizes: Sequence[int], *, resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[int, dict[str, Any]]:
    """Per size ``n``: ``each`` (per column of ``diffs``, the fraction of resampled draws that pass) and
    ``all`` (the fraction passing every column with the same cases). ``diffs``: ``[cases, baselines]``
    paired differences oriented so that lower is better for the method."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim != 2 or diffs.shape[0] < 2 or not np.all(np.isfinite(diffs)):
        raise VCEInputError(
            f"paired differences of shape {diffs.shape}", expected="[cases ≥ 2, baselines], finite"
        )
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, Any]] = {}
    for n in sizes:
        passed = np.zeros((resamples, diffs.shape[1]), dtype=bool)
        for i in range(resamples):
            sample = diffs[rng.integers(0, diffs.shape[0], size=n)]
            passed[i] = [_passes(sample[:, j], alpha) for j in range(diffs.shape[1])]
        out[int(n)] = {"each": passed.mean(axis=0).tolist(), "all": float(passed.all(axis=1).mean())}
    return out


def _check(sizes: Sequence[int], resamples: int, alpha: float) -> None:
    if not sizes or any(int(n) < 14 for n in sizes):
        # below 14 pairs SciPy's Wilcoxon runs a permutation test on tied samples (a resampled draw has
        # ties), about 0.5 s each; the evaluation asks for 20 cases or more anyway
        raise VCEInputError(f"--sizes {list(sizes)}", expected="draw sizes of at least 14 cases")
    if resamples < 100:
        raise VCEInputError(f"--resamples {resamples}", expected="at least 100")
    if not 0 < alpha < 1:
        raise VCEInputError(f"--alpha {alpha}", expected="a level in (0, 1), e.g. 0.05")


def _test_method(
    values: dict[str, dict[str, float]],
    draw_of: dict[str, str],
    names: Sequence[str],
    method: str,
    baselines: Sequence[str],
    *,
    sign: float,
) -> dict[str, Any]:
    """``per_report`` and ``pooled`` comparisons of ``method`` with each baseline, and ``diffs`` (``[cases,
    baselines]``, oriented so that lower is better) for :func:`pooled_power`."""
    keys = sorted(set(values[method]).intersection(*(values[b] for b in baselines)))
    if len(keys) < 2:
        raise VCEInputError(f"{method} shares fewer than 2 cases with the baselines", expected="≥ 2 cases")

    def test(b: str, cases: list[str]) -> Any:
        return compare(
            [values[method][k] for k in cases], [values[b][k] for k in cases], lower_is_better=sign > 0
        )

    own = {name: [k for k in keys if draw_of[k] == name] for name in names}
    return {
        "per_report": {(n, b): test(b, own[n]) for n in names for b in baselines if len(own[n]) >= 2},
        "pooled": {b: test(b, keys) for b in baselines},
        "diffs": np.array([[sign * (values[method][k] - values[b][k]) for b in baselines] for k in keys]),
    }


def _method_lines(
    method: str,
    tested: dict[str, Any],
    names: Sequence[str],
    baselines: Sequence[str],
    *,
    alpha: float,
    sign: float,
) -> list[str]:
    """The Markdown section of one method: per-report and pooled tests, draws passed, power per size."""
    per_report, pooled = tested["per_report"], tested["pooled"]
    lines = ["", f"## {method}", "", "| draw | baseline | n | better in | mean difference [95 % CI] | p |"]
    lines.append("|---|---|---|---|---|---|")
    rows = [(name, b, c, format_p(c.p_value)) for (name, b), c in per_report.items()]
    rows += [("**pooled**", b, c, f"{c.p_value:.2g}") for b, c in pooled.items()]
    for name, b, c, p in rows:
        lines.append(
            f"| {name} | {b} | {c.n} | {c.wins} / {c.n} | {c.mean_difference:+.4f} "
            f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] | {p} |"
        )
    passed = [
        name
        for name in names
        if all(
            (name, b) in per_report
            and per_report[name, b].p_value < alpha
            and sign * per_report[name, b].mean_difference < 0
            for b in baselines
        )
    ]
    header = " | ".join(f"P(pass) vs {b}" for b in baselines)
    lines += [
        "",
        f"Draws on which it is better than every baseline with p < {alpha:g}: {len(passed)} of {len(names)}.",
        "",
        f"| cases with a value in a draw | {header} | P(pass) vs all |",
        "|---|" + "---|" * (len(baselines) + 1),
    ]
    for n, p in tested["power"].items():
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in p["each"]) + f" | {p['all']:.3f} |")
    return lines


def analyse(
    reports: Sequence[str | PathLike],
    *,
    metric: str = PRIMARY,
    baselines: Sequence[str] = BASELINES,
    methods: Sequence[str] | None = None,
    sizes: Sequence[int] = (24, 36, 48, 72),
    resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    aliases: dict[str, str] | None = None,
    out: str | PathLike | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Pool ``reports`` (:func:`pool_reports`), test every method against ``baselines`` per report and
    pooled, and estimate the power of draws of ``sizes`` cases (:func:`pooled_power`). Returns ``{"text":
    markdown, "methods": {method: {"per_report", "pooled", "power"}}}``; with ``out`` also writes
    ``power.md`` and ``cases.csv`` there."""
    _check(sizes, resamples, alpha)
    started = time.perf_counter()
    values, draw_of, common = pool_reports(reports, metric, aliases)
    absent = [b for b in baselines if b not in common]
    if absent or not baselines:
        raise VCEInputError(
            f"the baselines {absent} are not in every report",
            expected="methods every report holds: " + "; ".join(common),
        )
    chosen = [m for m in common if m not in baselines] if methods is None else list(methods)
    unknown = [m for m in chosen if m not in common]
    if unknown or not chosen:
        raise VCEInputError(
            f"the methods {unknown} are not in every report" if unknown else "no method to test",
            expected="methods every report holds: " + "; ".join(common),
        )
    sign = 1.0 if LOWER_IS_BETTER.get(metric, True) else -1.0
    names = [Path(r).name for r in reports]
    result: dict[str, Any] = {"methods": {}}
    lines = [
        f"# Pooled tests and the power of a draw: {metric}",
        "",
        f"Command: `{command}`" if command else "",
        "",
        f"Reports (draws): {', '.join(names)}. Cases with a value: "
        + ", ".join(f"{n} {sum(1 for d in draw_of.values() if d == n)}" for n in names)
        + f". Power: {resamples} draws of n cases with replacement from the pooled cases (seed {seed}); "
        f"a draw passes when the two-sided Wilcoxon p < {alpha:g} and the mean paired difference favours "
        "the method.",
    ]
    for method in chosen:
        tested = _test_method(values, draw_of, names, method, baselines, sign=sign)
        tested["power"] = pooled_power(
            tested.pop("diffs"), sizes, resamples=resamples, alpha=alpha, seed=seed
        )
        result["methods"][method] = tested
        lines += _method_lines(method, tested, names, baselines, alpha=alpha, sign=sign)
    lines += ["", f"Wall time {time.perf_counter() - started:.1f} s."]
    text = "\n".join(lines) + "\n"
    result["text"] = text
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "power.md").write_text(text)
        write_csv(
            folder / "cases.csv",
            [
                {"draw": draw_of[c], "case_id": c, "method": m, "value": v}
                for m in [*chosen, *baselines]
                for c, v in sorted(values[m].items())
            ],
            ["draw", "case_id", "method", "value"],
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.power", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--reports", nargs="+", required=True, help="report folders of different draws")
    parser.add_argument("--metric", default=PRIMARY, help=f"a metric of results.csv ({PRIMARY})")
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), help="the methods tested against")
    parser.add_argument("--methods", nargs="+", help="methods to test (default: every other method)")
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=[24, 36, 48, 72],
        help="cases with a value in a resampled draw",
    )
    parser.add_argument("--resamples", type=int, default=2000, help="resampled draws per size (2000)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of the test (0.05)")
    parser.add_argument("--seed", type=int, default=0, help="resampling seed (0)")
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=POOLED NAME",
        help="pool a method shown under another name in some reports (repeatable)",
    )
    parser.add_argument("--out", help="folder for power.md and cases.csv")
    args = parser.parse_args(argv)
    aliases = {}
    for given in args.alias:
        old, sep, new = given.partition("=")
        if not sep or not old.strip() or not new.strip():
            parser.error(f"--alias {given!r}: write it as 'name in a report=name to pool under'")
        aliases[old.strip()] = new.strip()
    command = command_line("vce_core.evaluate.power", argv)
    result = run_cli(analyse, args, command=command, aliases=aliases)
    if result is None:
        return 2
    print(result["text"], end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
