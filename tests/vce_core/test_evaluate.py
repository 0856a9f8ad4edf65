"""Evaluation report on two tiny cases: files, rows, columns, p-values."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from support import SMALL, write_checkpoint, write_tiny_cases
from vce_core.checkpoint import read_card
from vce_core.errors import VCEInputError
from vce_core.evaluate import METRICS, main


def test_evaluate_writes_table_1_report(tmp_path: Path) -> None:
    cases = write_tiny_cases(tmp_path / "cases", 2, shape=(22, 22, 10))
    a = write_checkpoint(tmp_path / "models" / "l1", SMALL, display_name="L1 content loss")
    b = write_checkpoint(
        tmp_path / "models" / "np", {**SMALL, "base_channels": 6}, display_name="noise-preserving loss"
    )
    out = tmp_path / "report"
    assert (
        main(
            [
                "--models",
                str(a),
                str(b),
                "--data",
                str(tmp_path / "cases"),
                "--doses",
                "0.1",
                "0.2",
                "0.33",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--update-cards",
            ]
        )
        == 0
    )
    for name in ("report.md", "results.csv", "summary.csv", "report.html"):
        assert (out / name).is_file()
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    # 2 cases × 2 acquired doses (0.1, 0.33; 0.2 not acquired) × 3 methods × 4 metrics
    assert len(rows) == 2 * 2 * 3 * 4
    assert {r["method"] for r in rows} == {"linear baseline", "L1 content loss", "noise-preserving loss"}
    assert {r["metric"] for r in rows} == set(METRICS)
    with (out / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == ["method", "dose", "metric", "mean", "sd", "n", "p_value", "compared_with"]
    compared = [r for r in summary if r["compared_with"]]
    assert compared and {r["method"] for r in compared} == {"noise-preserving loss"}
    assert all(r["compared_with"] == "L1 content loss" for r in compared)
    report = (out / "report.md").read_text()
    assert "| Method | PSNR | SSIM | MAE_CE | MAE_σ | n |" in report
    assert "| linear baseline |" in report and "p (noise-preserving loss vs L1 content loss)" in report
    assert "dose 0.2 not acquired" in report
    assert cases and "plotly" in (out / "report.html").read_text()[:100000].lower()
    # --update-cards: each card's held-out figures are the mean of its own rows in results.csv
    for folder, method in ((a, "L1 content loss"), (b, "noise-preserving loss")):
        held_out = read_card(folder).held_out
        mine = [float(r["value"]) for r in rows if r["method"] == method and r["metric"] == "mae_ce"]
        assert held_out["mae_ce"] == pytest.approx(sum(mine) / len(mine))
        assert held_out["doses"] == [0.1, 0.33] and held_out["cases"] == 2
        assert "--update-cards" in held_out["command"]


def test_evaluate_bad_input(tmp_path: Path) -> None:
    write_tiny_cases(tmp_path / "cases", 1, shape=(16, 16, 6))
    m = write_checkpoint(tmp_path / "m", SMALL)
    assert (
        main(
            [
                "--models",
                str(m),
                "--data",
                str(tmp_path / "cases"),
                "--doses",
                "0.5",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "--models",
                str(tmp_path / "nope"),
                "--data",
                str(tmp_path / "cases"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    with pytest.raises(VCEInputError):
        from vce_core.evaluate import evaluate

        evaluate([m], [tmp_path / "cases"], [1.5], tmp_path / "r")
