"""Statistics of evaluation reports: paired tests between methods and bootstrap confidence intervals.

Per-case values are the unit of analysis (a case is one subject); values from several noise seeds or doses
of one case are averaged per case before a test, so that the tests never treat correlated values as
independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.metrics import paired_test

__all__ = ["Comparison", "bootstrap_ci", "compare", "holm"]


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise VCEInputError(f"{name} holds no values", expected="at least one per-case value")
    if not np.all(np.isfinite(arr)):
        raise VCEInputError(f"{name} holds NaN or infinite values", expected="finite per-case values")
    return arr


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of per-case ``values``.

    Cases are resampled with replacement ``resamples`` times (seeded, so a report is reproducible); the
    interval is the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles of the resampled means.
    One value gives the degenerate interval ``(v, v)``.
    """
    arr = _values(values, "the sample")
    if not 0 < confidence < 1:
        raise VCEInputError(f"confidence {confidence!r} is out of range", expected="a fraction in (0, 1)")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(int(resamples), arr.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """Method A vs method B on the same cases: mean difference ``A − B``, its bootstrap CI, Wilcoxon p."""

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    """Cases where A is better than B: A < B when lower is better (errors), A > B otherwise."""


def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    lower_is_better: bool = True,
) -> Comparison:
    """Paired comparison of per-case values of two methods (same case order).

    ``p_value`` is the two-sided Wilcoxon signed-rank test (:func:`vce_core.metrics.paired_test`; NaN when
    every difference is zero or there are fewer than 2 pairs), the CI is the bootstrap CI of the mean paired
    difference ``A − B``; ``wins`` counts the cases where A is better (``lower_is_better`` says which way).
    """
    x, y = _values(a, "the first sample"), _values(b, "the second sample")
    if x.shape != y.shape:
        raise VCEInputError(
            f"paired samples have {x.size} and {y.size} values", expected="one value per case"
        )
    diff = x - y
    low, high = bootstrap_ci(diff, seed=seed)
    try:
        _, p = paired_test(x, y)
    except VCEInputError:
        p = float("nan")
    return Comparison(
        n=int(x.size),
        mean_difference=float(diff.mean()),
        ci_low=low,
        ci_high=high,
        p_value=p,
        wins=int(np.sum(x < y) if lower_is_better else np.sum(x > y)),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order; NaN stays NaN and is not counted in the family).

    The ``m`` finite p-values sorted ascending get ``min(1, max_{j ≤ i} (m − j) · p_(j))`` (0-based ``j``),
    so rejecting where the adjusted value is below α controls the family-wise error rate at α.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]
