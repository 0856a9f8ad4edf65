"""Exports of a study's answers: long CSV, wide CSV, iMRMC input — all views of the one-row-per-answer table.

CSV-injection safety
--------------------
Spreadsheet programs execute cells that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return.
Every *text* cell starting with one of these is prefixed with an apostrophe (``'=cmd|...`` is shown as text),
with one deliberate exception: a text cell that is a plain decimal number (``-3``, ``+0.5``, ``-1e-3``) is
kept as it is, so negative numbers stay numbers; such a cell cannot contain a formula. Numeric columns are
written unchanged. Readers' free-text answers and display names are the cells this protects.

iMRMC
-----
The real-vs-synthetic question becomes an iMRMC input file (FDA iMRMC, "visual Turing test"): truth 1 =
synthetic image, 0 = real acquisition; every item is an iMRMC *case*; one modality (``turing``); the score
of an answer is 1–10, higher meaning "more confident it is synthetic": ``synthetic`` with confidence c →
5 + c, ``real`` with confidence c → 6 − c. Only one reading iteration is exported (iMRMC has no repeated
reads), the first by default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from vce_core.errors import VCEInputError

from .models import REAL_CONDITIONS

LONG_COLUMNS = [
    "study",
    "reader_id",
    "reader",
    "case",
    "item",
    "condition",
    "dose",
    "generator",
    "question",
    "value",
    "confidence",
    "iteration",
    "created_at",
    "duration_ms",
]
ITEM_COLUMNS = ["study", "reader_id", "reader", "case", "item", "condition", "dose", "generator", "iteration"]
FORMATS = ("long", "wide", "imrmc")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralize(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet would run as a formula with an apostrophe (see module doc)."""
    if isinstance(value, str) and value.startswith(_DANGEROUS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` with every text cell (and text column name) passed through :func:`neutralize`."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralize)
    out.columns = [neutralize(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write an injection-safe CSV (UTF-8, no index)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_frame(frame).to_csv(path, index=False)
    return path


def long_table(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per answer with :data:`LONG_COLUMNS` (from :meth:`ReaderStudyService.answers_frame`)."""
    return answers[LONG_COLUMNS].reset_index(drop=True)


def wide_table(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per reader × item × iteration, one column per question (``<key>_confidence`` for the
    real-vs-synthetic confidence), plus ``duration_ms`` and ``created_at`` of the item's answers."""
    if answers.empty:
        return pd.DataFrame(columns=[*ITEM_COLUMNS, "duration_ms", "created_at"])
    keys = ["reader_id", "item", "iteration"]
    meta = answers.groupby(keys, sort=False).agg(
        {**{c: "first" for c in ITEM_COLUMNS if c not in keys}, "duration_ms": "max", "created_at": "max"}
    )
    values = answers.pivot_table(index=keys, columns="question", values="value", aggfunc="first")
    order = list(dict.fromkeys(answers["question"]))
    values = values[order]
    parts = [meta, values]
    rvs = answers[answers["question_kind"] == "real_vs_synthetic"]
    if not rvs.empty:
        conf = rvs.pivot_table(index=keys, columns="question", values="confidence", aggfunc="first")
        conf.columns = [f"{c}_confidence" for c in conf.columns]
        parts.append(conf)
    wide = pd.concat(parts, axis=1).reset_index()
    wide.columns.name = None
    rest = [c for c in wide.columns if c not in ITEM_COLUMNS and c not in ("duration_ms", "created_at")]
    return wide[[*ITEM_COLUMNS, *rest, "duration_ms", "created_at"]]


def turing_score(value: str, confidence: Any) -> int:
    """1–10 score, higher = more confident the image is synthetic (see module doc)."""
    c = int(confidence)
    return 5 + c if value == "synthetic" else 6 - c


def imrmc_text(answers: pd.DataFrame, question: str | None = None, iteration: int = 1) -> str:
    """iMRMC input text for the real-vs-synthetic question (``question`` key; the only one if None)."""
    if answers.empty:
        raise VCEInputError("the study has no answers yet: there is nothing to export for iMRMC")
    rvs = answers[answers["question_kind"] == "real_vs_synthetic"]
    keys = sorted(set(rvs["question"]))
    if not keys:
        raise VCEInputError(
            "no answers to a real-vs-synthetic question: iMRMC export needs them",
            expected="a study with a real_vs_synthetic question, or the long or wide format",
        )
    if question is None:
        if len(keys) != 1:
            raise VCEInputError(f"the study has {len(keys)} real-vs-synthetic questions ({keys}); name one")
        question = keys[0]
    rows = rvs[(rvs["question"] == question) & (rvs["iteration"] == iteration)]
    if rows.empty:
        raise VCEInputError(
            f"no answers to the real-vs-synthetic question {question!r} in iteration {iteration}"
        )
    study = str(rows["study"].iloc[0])
    items = rows.drop_duplicates("item")[["item", "condition"]].sort_values("item")
    truth = {
        it: 0 if cond in REAL_CONDITIONS else 1
        for it, cond in zip(items["item"], items["condition"], strict=True)
    }
    lines = [
        f"iMRMC input: real-vs-synthetic reads, study {study!r}, question {question}, iteration {iteration}",
        "truth: 1 = synthetic image, 0 = real acquisition; score 1-10, higher = more confident synthetic",
        "(synthetic with confidence c -> 5 + c, real with confidence c -> 6 - c); caseID = item id",
        f"NR: {rows['reader_id'].nunique()}",
        f"N0: {sum(1 for t in truth.values() if t == 0)}",
        f"N1: {sum(1 for t in truth.values() if t == 1)}",
        "NM: 1",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{item},0,{t}" for item, t in truth.items()]
    for r in rows.sort_values(["reader_id", "item"]).itertuples(index=False):
        lines.append(f"{r.reader_id},{r.item},turing,{turing_score(r.value, r.confidence)}")
    return "\n".join(lines) + "\n"


def export_answers(answers: pd.DataFrame, fmt: str, out: str | Path, *, question: str | None = None) -> Path:
    """Write the answers table in ``fmt`` (long, wide or imrmc) to ``out``."""
    if fmt not in FORMATS:
        raise VCEInputError(f"unknown export format {fmt!r}", expected=f"one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "long":
        return write_csv(long_table(answers), out)
    if fmt == "wide":
        return write_csv(wide_table(answers), out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(imrmc_text(answers, question), encoding="utf-8")
    return out


def parse_imrmc(text: str) -> tuple[dict[str, int], pd.DataFrame]:
    """Read an iMRMC input back: (counts NR/N0/N1/NM, rows readerID, caseID, modalityID, score)."""
    head, _, data = text.partition("BEGIN DATA:")
    counts = {}
    for line in head.splitlines():
        m = re.fullmatch(r"(NR|N0|N1|NM):\s*(\d+)", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    rows = [line.split(",") for line in data.strip().splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=["readerID", "caseID", "modalityID", "score"])
    frame["score"] = frame["score"].astype(int)
    return counts, frame
