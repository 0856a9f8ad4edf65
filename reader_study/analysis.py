"""Statistics of a reader study, computed from the long answers table (``ReaderStudyService.answers_frame``).

- score distribution per condition ("arm": condition + dose + generator) and Likert question;
- per-case means (over readers and iterations) and Wilcoxon signed-rank tests between arms, paired by case
  (``scipy.stats.wilcoxon``);
- inter-reader agreement per Likert question on the first iteration: Krippendorff's alpha (ordinal, missing
  allowed; ``krippendorff.alpha``), pairwise quadratic-weighted Cohen's kappa
  (``sklearn.metrics.cohen_kappa_score``), ICC with 95 % CI on the items every reader rated
  (``pingouin.intraclass_corr``);
- the visual Turing test: accuracy and ROC AUC (1–10 confidence score, see :mod:`reader_study.export`) per
  reader and pooled;
- plotly figures of the above for the admin tab.

A statistic that the data cannot support (one reader, one class, no variation) is NaN, never an exception.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import wilcoxon
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from .export import turing_score
from .models import REAL_CONDITIONS

LIKERT = [1, 2, 3, 4, 5]


def arm_label(condition: str, dose: Any, generator: Any) -> str:
    """Readable name of a condition arm, e.g. ``synthetic_low_dose 0.33 (unet-v1)``."""
    label = condition
    if (
        dose is not None
        and not (isinstance(dose, float) and math.isnan(dose))
        and condition != "real_standard_dose"
    ):
        label += f" {float(dose):g}"
    if generator is not None and not (isinstance(generator, float) and math.isnan(generator)):
        label += f" ({generator})"
    return label


def with_arms(answers: pd.DataFrame) -> pd.DataFrame:
    """``answers`` plus an ``arm`` column."""
    out = answers.copy()
    out["arm"] = [
        arm_label(c, d, g) for c, d, g in zip(out["condition"], out["dose"], out["generator"], strict=True)
    ]
    return out


def likert(answers: pd.DataFrame, question: str | None = None) -> pd.DataFrame:
    """Likert answers (optionally one question) with an integer ``score`` column and ``arm``."""
    rows = answers[answers["question_kind"] == "likert"]
    if question is not None:
        rows = rows[rows["question"] == question]
    rows = with_arms(rows)
    rows["score"] = rows["value"].astype(int)
    return rows


def score_summary(answers: pd.DataFrame) -> pd.DataFrame:
    """Per Likert question × arm: n, mean, sd, median and the count of each score 1–5."""
    rows = likert(answers)
    if rows.empty:
        return pd.DataFrame(columns=["question", "arm", "n", "mean", "sd", "median", *map(str, LIKERT)])
    grouped = rows.groupby(["question", "arm"], sort=False)["score"]
    summary = grouped.agg(n="count", mean="mean", sd="std", median="median").reset_index()
    counts = rows.pivot_table(index=["question", "arm"], columns="score", values="item", aggfunc="count")
    counts = counts.reindex(columns=LIKERT).fillna(0).astype(int)
    counts.columns = [str(c) for c in counts.columns]
    out = summary.merge(counts.reset_index(), on=["question", "arm"])
    return out.round({"mean": 3, "sd": 3})


def case_means(answers: pd.DataFrame, question: str) -> pd.DataFrame:
    """Case × arm table of the mean score of one Likert question (over readers and iterations)."""
    rows = likert(answers, question)
    return rows.pivot_table(index="case", columns="arm", values="score", aggfunc="mean")


def paired_tests(answers: pd.DataFrame, question: str) -> pd.DataFrame:
    """Wilcoxon signed-rank test for every pair of arms, paired by case (per-case mean scores).

    Columns: arm_a, arm_b, n_cases, mean_a, mean_b, median_diff (a − b), statistic, p_value. NaN where
    fewer than one case has both arms or every difference is zero.
    """
    table = case_means(answers, question)
    out = []
    for a, b in itertools.combinations(table.columns, 2):
        pair = table[[a, b]].dropna()
        diff = pair[a] - pair[b]
        stat = p = float("nan")
        if len(pair) >= 1 and (diff != 0).any():
            res = wilcoxon(pair[a], pair[b])
            stat, p = float(res.statistic), float(res.pvalue)
        out.append(
            {
                "question": question,
                "arm_a": a,
                "arm_b": b,
                "n_cases": len(pair),
                "mean_a": pair[a].mean(),
                "mean_b": pair[b].mean(),
                "median_diff": diff.median(),
                "statistic": stat,
                "p_value": p,
            }
        )
    columns = [
        "question",
        "arm_a",
        "arm_b",
        "n_cases",
        "mean_a",
        "mean_b",
        "median_diff",
        "statistic",
        "p_value",
    ]
    return pd.DataFrame(out, columns=columns)


def reliability_matrix(answers: pd.DataFrame, question: str, iteration: int = 1) -> pd.DataFrame:
    """Readers (rows) × items (columns) of one Likert question and iteration, NaN where not rated."""
    rows = likert(answers, question)
    rows = rows[rows["iteration"] == iteration]
    return rows.pivot_table(index="reader_id", columns="item", values="score", aggfunc="first")


def krippendorff_alpha(matrix: pd.DataFrame) -> float:
    """Ordinal Krippendorff's alpha of a readers × items matrix (NaN = missing)."""
    import krippendorff

    if matrix.shape[0] < 2 or matrix.shape[1] < 1:
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = krippendorff.alpha(
                reliability_data=matrix.to_numpy(dtype=float),
                level_of_measurement="ordinal",
                value_domain=LIKERT,
            )
    except (ValueError, ZeroDivisionError):
        return float("nan")
    return float(value)


def pairwise_kappa(matrix: pd.DataFrame) -> pd.DataFrame:
    """Quadratic-weighted Cohen's kappa for every reader pair on the items both rated."""
    out = []
    for a, b in itertools.combinations(matrix.index, 2):
        both = matrix.loc[[a, b]].dropna(axis=1)
        kappa = float("nan")
        if both.shape[1] >= 2:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                kappa = float(
                    cohen_kappa_score(
                        both.loc[a].astype(int), both.loc[b].astype(int), labels=LIKERT, weights="quadratic"
                    )
                )
        out.append({"reader_a": a, "reader_b": b, "n_items": both.shape[1], "kappa": kappa})
    return pd.DataFrame(out, columns=["reader_a", "reader_b", "n_items", "kappa"])


def icc(matrix: pd.DataFrame) -> pd.DataFrame:
    """ICC table (pingouin: ICC(1,1) … ICC(C,k), 95 % CI) on items every reader rated; empty if < 5."""
    import pingouin

    complete = matrix.dropna(axis=1)
    columns = ["Type", "ICC", "F", "df1", "df2", "pval", "CI95"]
    if complete.shape[0] < 2 or complete.shape[1] < 5:
        return pd.DataFrame(columns=columns)
    long = complete.stack().rename("score").reset_index()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            table = pingouin.intraclass_corr(data=long, targets="item", raters="reader_id", ratings="score")
    except (AssertionError, ValueError):
        return pd.DataFrame(columns=columns)
    table = table.rename(columns={"CI95%": "CI95"})
    return table[[c for c in columns if c in table.columns]]


def agreement(answers: pd.DataFrame, iteration: int = 1) -> dict[str, Any]:
    """Per Likert question: ``{"alpha": table, "kappa": table, "icc": table}`` (first iteration)."""
    alphas, kappas, iccs = [], [], []
    for question in dict.fromkeys(answers.loc[answers["question_kind"] == "likert", "question"]):
        matrix = reliability_matrix(answers, question, iteration)
        alphas.append(
            {
                "question": question,
                "readers": matrix.shape[0],
                "items": matrix.shape[1],
                "krippendorff_alpha": krippendorff_alpha(matrix),
            }
        )
        k = pairwise_kappa(matrix)
        k.insert(0, "question", question)
        kappas.append(k)
        table = icc(matrix)
        table.insert(0, "question", question)
        iccs.append(table)
    return {
        "alpha": pd.DataFrame(alphas, columns=["question", "readers", "items", "krippendorff_alpha"]),
        "kappa": pd.concat(kappas, ignore_index=True) if kappas else pd.DataFrame(),
        "icc": pd.concat(iccs, ignore_index=True) if iccs else pd.DataFrame(),
    }


def turing(answers: pd.DataFrame, question: str | None = None) -> pd.DataFrame:
    """Real-vs-synthetic per reader ("name (#id)") and pooled ("all"): n, accuracy, ROC AUC (NaN: one class).

    Truth is "synthetic" for every condition that is not an acquisition (see ``REAL_CONDITIONS``).
    """
    rows = answers[answers["question_kind"] == "real_vs_synthetic"]
    if question is not None:
        rows = rows[rows["question"] == question]
    columns = ["reader", "n", "accuracy", "auc", "n_real", "n_synthetic"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    truth = (~rows["condition"].isin(REAL_CONDITIONS)).astype(int)
    said = (rows["value"] == "synthetic").astype(int)
    score = [turing_score(v, c) for v, c in zip(rows["value"], rows["confidence"], strict=True)]
    names = [f"{n} (#{i})" for n, i in zip(rows["reader"], rows["reader_id"], strict=True)]
    data = pd.DataFrame({"reader": names, "truth": truth.to_numpy(), "said": said.to_numpy(), "score": score})
    out = []
    for name, g in [*data.groupby("reader", sort=False), ("all", data)]:
        auc = float(roc_auc_score(g["truth"], g["score"])) if g["truth"].nunique() == 2 else float("nan")
        accuracy = float((g["truth"] == g["said"]).mean())
        n_real = int((g["truth"] == 0).sum())
        out.append(
            {
                "reader": name,
                "n": len(g),
                "accuracy": accuracy,
                "auc": auc,
                "n_real": n_real,
                "n_synthetic": len(g) - n_real,
            }
        )
    return pd.DataFrame(out, columns=columns)


def summarize(answers: pd.DataFrame) -> dict[str, Any]:
    """Every table at once: scores, paired tests (all Likert questions), agreement, Turing test."""
    questions = list(dict.fromkeys(answers.loc[answers["question_kind"] == "likert", "question"]))
    paired = [paired_tests(answers, q) for q in questions]
    return {
        "scores": score_summary(answers),
        "paired": pd.concat(paired, ignore_index=True) if paired else pd.DataFrame(),
        **agreement(answers),
        "turing": turing(answers),
    }


# ---------------------------------------------------------------------------------------------- figures
def score_figure(answers: pd.DataFrame) -> go.Figure:
    """Distribution of the Likert scores: one panel per question, one horizontal bar per arm, stacked by
    score as percent of that arm's answers (hover: the count). The height grows with questions × arms,
    so long arm names and many questions stay legible."""
    summary = score_summary(answers)
    questions = list(dict.fromkeys(summary["question"]))
    arms = list(dict.fromkeys(summary["arm"]))
    fig = make_subplots(
        rows=max(len(questions), 1),
        cols=1,
        shared_xaxes=True,
        subplot_titles=questions,
        vertical_spacing=0.08,
    )
    colours = ("#b91c1c", "#f97316", "#facc15", "#84cc16", "#15803d")
    for row, question in enumerate(questions, start=1):
        part = summary[summary["question"] == question].set_index("arm").reindex(arms)
        total = part[[str(v) for v in LIKERT]].sum(axis=1).replace(0, np.nan)
        for score, colour in zip(LIKERT, colours, strict=True):
            fig.add_bar(
                row=row,
                col=1,
                orientation="h",
                y=arms,
                x=(100 * part[str(score)] / total).round(1).tolist(),
                customdata=part[str(score)].tolist(),
                name=str(score),
                marker_color=colour,
                legendgroup=str(score),
                showlegend=row == 1,
                hovertemplate="score " + str(score) + ": %{x}% (%{customdata} answers)<extra>%{y}</extra>",
            )
    fig.update_layout(
        barmode="stack",
        title="Score distribution per question and condition (% of answers)",
        legend_title_text="score",
        legend_traceorder="normal",
        height=140 + 60 * max(len(questions), 1) * max(len(arms), 1),
        margin={"l": 10, "r": 10, "t": 80, "b": 40},
    )
    fig.update_xaxes(range=[0, 100], ticksuffix="%")
    fig.update_yaxes(automargin=True)
    return fig


def case_means_figure(answers: pd.DataFrame, question: str) -> go.Figure:
    """Per-case mean score of one question, one line of markers per case across arms."""
    table = case_means(answers, question)
    fig = go.Figure()
    for case, row in table.iterrows():
        fig.add_scatter(x=list(table.columns), y=row.tolist(), mode="lines+markers", name=str(case))
    fig.update_layout(
        title=f"Per-case mean — {question}", yaxis_title="mean score", yaxis_range=[0.5, 5.5], height=420
    )
    return fig


def turing_figure(answers: pd.DataFrame) -> go.Figure:
    """Accuracy and AUC of the real-vs-synthetic question per reader (0.5 = chance)."""
    table = turing(answers)
    fig = go.Figure()
    fig.add_bar(name="accuracy", x=table["reader"].tolist(), y=table["accuracy"].tolist())
    fig.add_bar(name="ROC AUC", x=table["reader"].tolist(), y=table["auc"].tolist())
    fig.add_hline(y=0.5, line_dash="dot")
    fig.update_layout(barmode="group", title="Real vs synthetic", yaxis_range=[0, 1], height=380)
    return fig
