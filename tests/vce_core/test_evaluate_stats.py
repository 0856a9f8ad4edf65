"""Statistics of the reports: bootstrap CI against scipy's bootstrap, paired comparison against Wilcoxon."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vce_core.errors import VCEInputError
from vce_core.evaluate.stats import bootstrap_ci, compare


def test_bootstrap_ci_agrees_with_scipy() -> None:
    values = np.random.default_rng(3).normal(2.0, 1.0, 40)
    low, high = bootstrap_ci(values, resamples=20_000)
    ref = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile", random_state=1)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert low < values.mean() < high
    assert bootstrap_ci([5.0]) == (5.0, 5.0)
    assert bootstrap_ci(values, seed=4) == bootstrap_ci(values, seed=4)


def test_compare_matches_wilcoxon_and_counts_wins() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(1.0, 0.1, 20)
    a = b - 0.05 + rng.normal(0, 0.02, 20)
    c = compare(a, b)
    assert c.n == 20 and c.wins == int(np.sum(a < b))
    assert c.p_value == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert c.mean_difference == pytest.approx(float(np.mean(a - b)))
    assert c.ci_low < c.mean_difference < c.ci_high < 0
    assert np.isnan(compare(b, b).p_value)


@pytest.mark.parametrize("bad", [[], [1.0, np.nan]])
def test_bad_samples(bad: list[float]) -> None:
    with pytest.raises(VCEInputError):
        bootstrap_ci(bad)
    with pytest.raises(VCEInputError):
        compare([1.0, 2.0], [1.0])


def test_holm_by_hand_and_direction() -> None:
    from vce_core.evaluate.stats import holm

    # sorted p: 0.01·4 = 0.04, 0.02·3 = 0.06, 0.03·2 = 0.06 (monotone), 0.5·1 = 0.5; NaN stays out
    adjusted = holm([0.03, np.nan, 0.01, 0.5, 0.02])
    assert adjusted[0] == pytest.approx(0.06) and np.isnan(adjusted[1])
    assert adjusted[2:] == pytest.approx([0.04, 0.5, 0.06])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    higher_better = compare([30.0, 31.0, 29.0], [29.0, 30.0, 30.0], lower_is_better=False)
    assert higher_better.wins == 2 and higher_better.mean_difference == pytest.approx(1 / 3)


def test_p_values_print_alike_in_every_report() -> None:
    from vce_core.evaluate.common import format_p

    assert [format_p(p) for p in (0.0004, 0.04, 0.2)] == ["< 0.001", "0.040", "0.200"]
    assert [format_p(p, star=True) for p in (0.0004, 0.0499, 0.05)] == ["< 0.001*", "0.050*", "0.050"]
    assert format_p(float("nan")) == format_p(None, star=True) == "–"
