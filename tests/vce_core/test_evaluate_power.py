"""Pooled tests over several low-dose reports and the power of a draw's size (vce_core.evaluate.power)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vce_core.errors import VCEInputError
from vce_core.evaluate.power import analyse, main, pool_reports, pooled_power, read_case_values

ROOT = Path(__file__).resolve().parents[2]
RESULT_COLUMNS = ["case_id", "agent", "field_strength", "noise_seed", "dose", "method", "metric", "value"]
METHODS = ("model", "linear baseline", "physics baseline")


def _write_report(folder: Path, seed: int, n: int, shift: float) -> dict[str, dict[str, float]]:
    """A report's lesions.csv and results.csv: ``n`` cases, 2 noise seeds, 2 doses, 3 methods, two lesions
    per scan (a metastasis and a weakly enhancing lesion); returns the expected per-case lesion error (mean
    over lesions per scan, over seeds, then over doses)."""
    rng = np.random.default_rng(seed)
    results, lesions, expected = [], [], {m: {} for m in METHODS}
    for i in range(n):
        case = f"phantom-s{seed}-{i:04d}"
        dose_means: dict[str, list[float]] = {m: [] for m in METHODS}
        for dose in (0.1, 0.33):
            for m in METHODS:
                base = {"model": 0.004 + shift, "linear baseline": 0.04, "physics baseline": 0.009}[m]
                scans = []
                for k in range(2):
                    errors = np.abs(base + rng.normal(0, 0.003, size=2))
                    for j, (kind, e) in enumerate(
                        zip(("metastasis", "weakly enhancing"), errors, strict=True)
                    ):
                        lesions.append([case, k, dose, m, j, kind, e])
                    scans.append(errors.mean())
                    results.append([case, "gadobutrol", 1.5, k, dose, m, "lesion_error", errors.mean()])
                    results.append([case, "gadobutrol", 1.5, k, dose, m, "psnr", 30.0 + errors[0]])
                dose_means[m].append(float(np.mean(scans)))
        for m in METHODS:
            expected[m][case] = float(np.mean(dose_means[m]))
    folder.mkdir(parents=True)
    for name, header, rows in (
        ("results.csv", RESULT_COLUMNS, results),
        ("lesions.csv", ["case_id", "noise_seed", "dose", "method", "lesion", "type", "abs_error"], lesions),
    ):
        with (folder / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return expected


@pytest.fixture
def reports(tmp_path: Path) -> tuple[list[Path], list[dict[str, dict[str, float]]]]:
    folders = [tmp_path / "draw_a", tmp_path / "draw_b"]
    expected = [_write_report(folders[0], 11, 9, 0.0), _write_report(folders[1], 12, 7, 0.001)]
    return folders, expected


def test_case_values_are_the_reports_seed_then_dose_means(reports) -> None:
    folders, expected = reports
    got = read_case_values(folders[0])  # the lesion error from lesions.csv
    assert set(got) == set(METHODS)
    for m in METHODS:
        assert got[m].keys() == expected[0][m].keys()
        assert all(math.isclose(got[m][c], v, rel_tol=1e-12) for c, v in expected[0][m].items())
    psnr = read_case_values(folders[0], "psnr")  # another metric from results.csv
    assert psnr["model"].keys() == expected[0]["model"].keys()
    assert all(30.0 < v < 30.02 for v in psnr["model"].values())
    weak = read_case_values(folders[0], "lesion_error:weakly enhancing")
    metastasis = read_case_values(folders[0], "lesion_error:metastasis")
    for c, v in expected[0]["model"].items():  # the two lesions' errors average to the case's
        assert math.isclose((weak["model"][c] + metastasis["model"][c]) / 2, v, rel_tol=1e-9)
        assert not math.isclose(weak["model"][c], v, rel_tol=1e-6)


def test_pooled_and_per_draw_tests_match_scipy(reports, tmp_path: Path) -> None:
    folders, expected = reports
    result = analyse(folders, methods=["model"], sizes=[14, 16], resamples=100, out=tmp_path / "out")
    model = result["methods"]["model"]
    keys = sorted(set(expected[0]["model"]) | set(expected[1]["model"]))
    both = {m: {**expected[0][m], **expected[1][m]} for m in METHODS}
    for b in ("linear baseline", "physics baseline"):
        diff = np.array([both["model"][k] - both[b][k] for k in keys])
        pooled = model["pooled"][b]
        assert pooled.n == 16
        assert math.isclose(pooled.p_value, stats.wilcoxon(diff).pvalue, rel_tol=1e-9)
        assert pooled.wins == int((diff < 0).sum())
        for folder, exp in zip(folders, expected, strict=True):
            own = np.array([exp["model"][k] - exp[b][k] for k in sorted(exp["model"])])
            c = model["per_report"][folder.name, b]
            assert c.n == own.size and math.isclose(c.p_value, stats.wilcoxon(own).pvalue, rel_tol=1e-9)
    text = (tmp_path / "out" / "power.md").read_text()
    assert "| **pooled** | physics baseline | 16 |" in text and "| 16 |" in text
    with (tmp_path / "out" / "cases.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 16
    assert {r["draw"] for r in rows if r["case_id"].startswith("phantom-s12-")} == {"draw_b"}


def test_power_follows_the_effect_and_needs_every_baseline_for_all() -> None:
    rng = np.random.default_rng(0)
    clear = -0.01 + 0.001 * rng.standard_normal(200)  # always better
    half = rng.standard_normal(100)
    null = np.concatenate([half, -half])  # symmetric about 0: passes about α/2 of draws (one direction)
    worse = 0.01 + 0.001 * rng.standard_normal(200)  # always worse
    power = pooled_power(np.stack([clear, null, worse], axis=1), [14, 48], resamples=400, seed=1)
    for n in (14, 48):
        assert power[n]["each"][0] == 1.0
        assert power[n]["each"][1] < 0.08
        assert power[n]["each"][2] == 0.0
        assert power[n]["all"] == 0.0
    assert pooled_power(np.stack([clear, null], axis=1), [14], resamples=100, seed=1) == pooled_power(
        np.stack([clear, null], axis=1), [14], resamples=100, seed=1
    )
    # a modest effect: more cases per draw, more draws pass
    z = rng.standard_normal(300)
    modest = -0.4 + (z - z.mean()) / z.std()  # effect of 0.4 SD
    small, large = (pooled_power(modest[:, None], [n], resamples=400)[n]["each"][0] for n in (14, 72))
    assert small < 0.5 and large > 0.85


def test_refusals(reports, tmp_path: Path) -> None:
    folders, _ = reports
    with pytest.raises(VCEInputError, match="phantom-s11-0000 is in draw_a and in"):
        pool_reports([folders[0], folders[0]])
    with pytest.raises(VCEInputError, match="cannot read the report's lesions.csv"):
        pool_reports([tmp_path / "nowhere"])
    with pytest.raises(VCEInputError, match="no 'mae' values"):
        read_case_values(folders[0], "mae")
    with pytest.raises(VCEInputError, match="not in every report"):
        analyse(folders, baselines=["physics baseline (T1 × 0.8)"])
    with pytest.raises(VCEInputError, match="not in every report"):
        analyse(folders, methods=["another model"])
    with pytest.raises(VCEInputError, match="at least 14 cases"):
        analyse(folders, sizes=[13])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "lesions.csv").write_text("case_id,method\nx,y\n")
    with pytest.raises(VCEInputError, match="lesions.csv lacks the columns"):
        read_case_values(bad)
    (bad / "results.csv").write_text("case_id,dose,method,metric,value\nx,0.1,y,psnr,high\n")
    with pytest.raises(VCEInputError, match="not a number"):
        read_case_values(bad, "psnr")


def test_cli_prints_and_fails_cleanly(reports, capsys) -> None:
    folders, _ = reports
    assert main(["--reports", *map(str, folders), "--sizes", "14", "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "## model" in out and "Draws on which it is better than every baseline" in out
    assert main(["--reports", str(folders[0]), str(folders[0])]) == 2
    assert "case phantom-s11-0000 is in draw_a and in draw_a" in capsys.readouterr().err


def test_a_committed_reports_own_test_is_reproduced() -> None:
    report = ROOT / "reports" / "lowdose_t1h32_ns_s4242"
    with (report / "comparisons.csv").open() as f:
        row = next(
            r
            for r in csv.DictReader(f)
            if r["baseline"] == "physics baseline"
            and r["dose"] == "all"
            and r["metric"] == "lesion_error"
            and r["model"].startswith("NP loss")
        )
    result = analyse([report], methods=[row["model"]], sizes=[14], resamples=100)
    c = result["methods"][row["model"]]["per_report"][report.name, "physics baseline"]
    assert c.n == int(row["n"]) and c.wins == int(row["wins"])
    assert math.isclose(c.p_value, float(row["p_value"]), rel_tol=1e-9)
    assert math.isclose(c.mean_difference, float(row["mean_difference"]), rel_tol=1e-9)


def test_an_alias_pools_a_model_shown_under_another_name(reports) -> None:
    folders, expected = reports
    for name in ("lesions.csv", "results.csv"):
        path = folders[1] / name
        path.write_text(path.read_text().replace(",model,", ",model (old name),"))
    with pytest.raises(VCEInputError, match=r"the methods \['model'\] are not in every report"):
        analyse(folders, methods=["model"], sizes=[14], resamples=100)
    result = analyse(
        folders, methods=["model"], sizes=[14], resamples=100, aliases={"model (old name)": "model"}
    )
    assert result["methods"]["model"]["pooled"]["physics baseline"].n == 16
    with pytest.raises(VCEInputError, match="would merge two methods of one report"):
        pool_reports(folders, aliases={"linear baseline": "physics baseline"})
    with pytest.raises(SystemExit) as stop:
        main(["--reports", str(folders[0]), "--alias", "no equals sign"])
    assert stop.value.code == 2
