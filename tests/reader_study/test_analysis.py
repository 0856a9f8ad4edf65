"""Analysis agrees with direct computation (sklearn kappa/AUC, scipy wilcoxon, krippendorff, pingouin)."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from reader_study import analysis


def _frame(seed: int = 0, readers: int = 3, cases: int = 8) -> pd.DataFrame:
    """Answers of ``readers`` readers on ``cases`` cases × 2 arms: one Likert + one real-vs-synthetic."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(cases):
        for arm, (cond, dose, gen) in enumerate(
            [("real_low_dose", 0.33, None), ("synthetic_low_dose", 0.33, "g1")]
        ):
            item = f"i{c}_{arm}"
            true = 3 + arm - (c % 3 == 0)
            for r in range(readers):
                score = int(np.clip(true + rng.integers(-1, 2), 1, 5))
                common = {
                    "study": "s",
                    "reader": f"R{r}",
                    "reader_id": r + 1,
                    "case": f"case{c}",
                    "item": item,
                    "condition": cond,
                    "dose": dose,
                    "generator": gen,
                    "iteration": 1,
                }
                rows.append(
                    {
                        **common,
                        "question": "q",
                        "question_kind": "likert",
                        "value": str(score),
                        "confidence": None,
                    }
                )
                said = "synthetic" if rng.random() < 0.4 + 0.3 * arm else "real"
                rows.append(
                    {
                        **common,
                        "question": "rvs",
                        "question_kind": "real_vs_synthetic",
                        "value": said,
                        "confidence": int(rng.integers(1, 6)),
                    }
                )
    return pd.DataFrame(rows)


def test_paired_wilcoxon_matches_scipy() -> None:
    answers = _frame()
    table = analysis.paired_tests(answers, "q")
    assert len(table) == 1
    row = table.iloc[0]
    means = analysis.case_means(answers, "q")
    expected = wilcoxon(means[row["arm_a"]], means[row["arm_b"]])
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert row["n_cases"] == 8
    assert set(table[["arm_a", "arm_b"]].iloc[0]) == {"real_low_dose 0.33", "synthetic_low_dose 0.33 (g1)"}
    direct = answers[answers["question"] == "q"].assign(v=lambda d: d["value"].astype(int))
    assert means.loc["case0", "real_low_dose 0.33"] == pytest.approx(
        direct[(direct["case"] == "case0") & (direct["condition"] == "real_low_dose")]["v"].mean()
    )


def test_agreement_matches_direct_computation() -> None:
    answers = _frame(seed=3)
    result = analysis.agreement(answers)
    matrix = analysis.reliability_matrix(answers, "q")
    direct_alpha = krippendorff.alpha(
        reliability_data=matrix.to_numpy(float), level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
    )
    assert result["alpha"].iloc[0]["krippendorff_alpha"] == pytest.approx(direct_alpha)
    kappa = result["kappa"]
    assert len(kappa) == 3  # 3 reader pairs
    first = kappa.iloc[0]
    a = matrix.loc[first["reader_a"]].astype(int)
    b = matrix.loc[first["reader_b"]].astype(int)
    assert first["kappa"] == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    icc = result["icc"]
    assert {"ICC(A,1)", "ICC(C,1)"} <= set(icc["Type"]) and icc["ICC"].between(-1, 1).all()
    # missing ratings are allowed in alpha
    holes = answers.drop(index=answers.index[(answers["reader_id"] == 1) & (answers["case"] == "case0")])
    assert np.isfinite(analysis.agreement(holes)["alpha"].iloc[0]["krippendorff_alpha"])


def test_turing_accuracy_and_auc() -> None:
    answers = _frame(seed=5)
    table = analysis.turing(answers).set_index("reader")
    rows = answers[answers["question_kind"] == "real_vs_synthetic"]
    truth = (rows["condition"] == "synthetic_low_dose").astype(int)
    score = [
        5 + c if v == "synthetic" else 6 - c for v, c in zip(rows["value"], rows["confidence"], strict=True)
    ]
    assert table.loc["all", "auc"] == pytest.approx(roc_auc_score(truth, score))
    assert table.loc["all", "accuracy"] == pytest.approx(
        ((rows["value"] == "synthetic") == truth.astype(bool)).mean()
    )
    assert table.loc["all", "n"] == len(rows) and len(table) == 4


def test_degenerate_data_gives_nan_not_errors() -> None:
    answers = _frame(readers=1, cases=2)
    answers.loc[answers["question"] == "q", "value"] = "3"
    result = analysis.summarize(answers)
    assert np.isnan(result["alpha"].iloc[0]["krippendorff_alpha"])
    assert np.isnan(result["paired"].iloc[0]["p_value"])
    assert result["icc"].empty
    for fig in (
        analysis.score_figure(answers),
        analysis.case_means_figure(answers, "q"),
        analysis.turing_figure(answers),
    ):
        assert fig.to_dict()["data"]


def test_score_figure_shows_percent_per_arm_with_room_for_every_question() -> None:
    answers = _frame(readers=3, cases=8)
    second = answers[answers["question"] == "q"].assign(question="q2")
    both = pd.concat([answers, second], ignore_index=True)
    one, two = analysis.score_figure(answers).to_dict(), analysis.score_figure(both).to_dict()
    assert two["layout"]["height"] > one["layout"]["height"]  # grows instead of squashing
    assert [a["text"] for a in two["layout"]["annotations"]] == ["q", "q2"]  # one panel per question
    summary = analysis.score_summary(answers)
    bars = [d for d in one["data"] if d["type"] == "bar"]
    for k, arm in enumerate(bars[0]["y"]):
        assert sum(b["x"][k] for b in bars) == pytest.approx(100, abs=0.3)  # percent of that arm's answers
        counts = summary[summary["arm"] == arm][[str(v) for v in range(1, 6)]].iloc[0].tolist()
        assert [b["customdata"][k] for b in bars] == counts
