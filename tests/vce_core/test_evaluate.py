"""The low-dose report end to end on a 2 mm phantom case and a real-style case: files, rows, properties."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from support import SMALL, write_checkpoint, write_tiny_cases
from vce_core.checkpoint import read_card
from vce_core.evaluate import BASELINES, REFERENCE, main
from vce_core.evaluate.lowdose import HEADS_OFF, PRIMARY
from vce_core.evaluate.stats import holm
from vce_core.io import save_case
from vce_core.phantom import LesionSpec, make_case

LESIONS = [
    LesionSpec("metastasis", 5.0, center_mm=(30, 10, 20)),
    LesionSpec("meningioma", 10.0, center_mm=(-20, 20, 45)),
    LesionSpec("weakly_enhancing", 6.0, center_mm=(20, -40, 30)),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("evaluate")
    case = make_case(31, resolution=2, sequence="achieva_3t", doses=(0.1, 0.33), lesions=LESIONS)
    save_case(case, root / "cases" / "phantom-0031")
    write_tiny_cases(root / "cases", 1, shape=(24, 24, 14))  # real-style: no truth, one acquisition
    models = [
        write_checkpoint(root / "models" / "zero", SMALL, zero=True, display_name="zero residual"),
        write_checkpoint(root / "models" / "rand", {**SMALL, "base_channels": 6}, display_name="untrained"),
    ]
    out = root / "report"
    args = ["--models", *map(str, models), "--data", str(root / "cases"), "--doses", "0.1", "0.2", "0.33"]
    args += ["--noise-seeds", "0", "1", "--lesion-slices", "2", "--extra-slices", "2", "--out", str(out)]
    args += ["--physics-t1-scales", "1", "0.7"]
    assert main([*args, "--device", "cpu", "--update-cards"]) == 0
    return out, models


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _mean(rows: list[dict[str, str]], method: str, metric: str, **where: str) -> float:
    vals = [
        float(r["value"])
        for r in rows
        if r["method"] == method and r["metric"] == metric and all(r[k] == v for k, v in where.items())
    ]
    return float(np.mean(vals))


def test_files_methods_and_seeds(report: tuple[Path, list[Path]]) -> None:
    out, _ = report
    for name in ("report.md", "report.html", "results.csv", "lesions.csv", "summary.csv", "comparisons.csv"):
        assert (out / name).is_file()
    rows = _rows(out / "results.csv")
    variants = {"physics baseline (T1 × 1)", "physics baseline (T1 × 0.7)"}
    methods = {REFERENCE, *BASELINES, *variants, "zero residual", "untrained"}
    assert {r["method"] for r in rows} == methods
    phantom = [r for r in rows if r["case_id"] == "phantom-0031"]
    assert {r["noise_seed"] for r in phantom} == {"0", "1"}
    assert {r["dose"] for r in phantom} == {"0.1", "0.2", "0.33"}  # the phantom acquires any dose
    real = [r for r in rows if r["case_id"] == "tiny-00"]
    assert {r["noise_seed"] for r in real} == {""} and {r["dose"] for r in real} == {"0.1", "0.33"}
    assert not any(r["metric"].startswith("lesion") for r in real)  # no truth, no enhancement figures


def test_physical_properties(report: tuple[Path, list[Path]]) -> None:
    """What the figures must show on a saturating 8° protocol, whatever the models are."""
    out, _ = report
    rows = [r for r in _rows(out / "results.csv") if r["case_id"] == "phantom-0031"]
    for dose in ("0.1", "0.33"):
        # the real scan's own subtraction σ̂ ratio is 1; the linear baseline's subtraction is d (x_SD − x_NA)
        assert _mean(rows, REFERENCE, "sub_sigma_ratio", dose=dose) == 1.0
        assert _mean(rows, "linear baseline", "sub_sigma_ratio", dose=dose) == pytest.approx(
            float(dose), rel=0.15
        )
        # a zero residual returns the native image: no enhancement, no subtraction noise
        assert _mean(rows, "zero residual", "lesion_ratio", dose=dose) == pytest.approx(0.0, abs=1e-3)
        # enhancement saturates: linear underestimates, the physics baseline is close, the scan is unbiased
        linear = _mean(rows, "linear baseline", "lesion_ratio", dose=dose)
        physics = _mean(rows, "physics baseline", "lesion_ratio", dose=dose)
        assert linear < 0.8 and 0.85 < physics < 1.05
        assert _mean(rows, "physics baseline", PRIMARY, dose=dose) < _mean(
            rows, "linear baseline", PRIMARY, dose=dose
        )
    lesions = _rows(out / "lesions.csv")
    types = {r["type"] for r in lesions}
    assert types == {"metastasis", "meningioma", "weakly enhancing"}
    acquired = [
        float(r["ratio"]) for r in lesions if r["method"] == REFERENCE and r["type"] != "weakly enhancing"
    ]
    assert np.mean(acquired) == pytest.approx(1.0, abs=0.1)


def test_comparisons_report_and_cards(report: tuple[Path, list[Path]]) -> None:
    out, models = report
    comps = _rows(out / "comparisons.csv")
    pairs = {(r["model"], r["baseline"]) for r in comps}
    baselines = [*BASELINES, "physics baseline (T1 × 1)", "physics baseline (T1 × 0.7)"]
    assert pairs == {(m, b) for m in ("zero residual", "untrained", REFERENCE) for b in baselines}
    sensitivity = [r for r in comps if r["metric"] == PRIMARY and r["baseline"] not in BASELINES]
    assert all(r["p_holm"] == "nan" for r in sensitivity)  # outside the Holm family
    primary = [r for r in comps if r["metric"] == PRIMARY and r["baseline"] in BASELINES]
    assert {r["dose"] for r in primary} == {"0.1", "0.2", "0.33", "all"}
    assert all(r["n"] == "1" for r in primary)  # one phantom case holds lesions
    # the real scan tested like a model, on the lesion errors only, outside the Holm family: the models'
    # adjusted p-values are Holm over their own 2 models x 2 baselines x 4 doses alone
    scan = [r for r in comps if r["model"] == REFERENCE]
    assert {r["metric"].split(":")[0] for r in scan} == {PRIMARY} and all(r["p_holm"] == "nan" for r in scan)
    assert {r["metric"] for r in scan} > {PRIMARY}  # and per lesion type
    assert len([r for r in primary if r["model"] != REFERENCE]) == 16  # 2 models x 2 baselines x 4 doses
    results = [r for r in _rows(out / "results.csv") if r["metric"] == PRIMARY]
    for r in (r for r in scan if r["metric"] == PRIMARY and r["dose"] != "all"):
        assert float(r["model_mean"]) == pytest.approx(_mean(results, REFERENCE, PRIMARY, dose=r["dose"]))
        baseline = _mean(results, r["baseline"], PRIMARY, dose=r["dose"])
        assert float(r["baseline_mean"]) == pytest.approx(baseline)
    text = (out / "report.md").read_text()
    for heading in (
        "Lesion enhancement against the noise-free truth",
        "Noise realism of the subtraction",
        "Per lesion type",
        "Small and weak lesions",
        "Image metrics against the noise-free truth",
        "Subgroups",
    ):
        assert heading in text
    # the primary table opens with the real scan's own error (its noise over the lesion), the floor
    floor = next(line for line in text.splitlines() if line.startswith(f"| {REFERENCE} (noise floor) |"))
    assert f"| {REFERENCE} (the real scan, reference) vs physics baseline | all doses |" in text
    scan_error = _mean(results, REFERENCE, PRIMARY)
    assert 0 < scan_error < 0.05 and f"{scan_error:.4f}" in floor
    # per case: the unit of the paired tests, with a mark where the model beats the physics baseline
    assert "## Per case: lesion enhancement error" in text
    row = next(line for line in text.splitlines() if line.startswith("| phantom-0031 |")).split(" | ")
    assert row[1] == "3 T" and f"{scan_error:.4f}" == row[4]  # the achieva_3t protocol
    physics = _mean(results, "physics baseline", PRIMARY)
    assert row[5] == f"{physics:.4f}"
    for cell, model in zip(row[6:], ("zero residual", "untrained"), strict=True):
        value = _mean(results, model, PRIMARY)
        assert cell.strip(" |") == f"{value:.4f}" + (" ✓" if value < physics else "")
    assert not any(line.startswith("| tiny-00 |") for line in text.splitlines())  # no truth, no row
    assert "--noise-seeds 0 1" in text and "plotly" in (out / "report.html").read_text()[:200000].lower()
    held = read_card(models[0]).held_out
    assert held["lesion_error"] == pytest.approx(
        _mean(results, "zero residual", PRIMARY),
        rel=1e-6,
    )
    assert set(held["lesion_error_vs"]) == set(BASELINES) and held["noise_seeds"] == [0, 1]
    assert held["lesion_error_real_scan"] == pytest.approx(scan_error, rel=1e-6)
    assert held["doses"] == [0.1, 0.2, 0.33] and held["cases"] == 2 and "--update-cards" in held["command"]


@pytest.mark.parametrize(
    "extra",
    [["--doses", "1.5"], ["--doses", "0.5"], ["--noise-seeds", "-1"], ["--noise-seeds", "1", "1"]],
)
def test_bad_input(tmp_path: Path, extra: list[str]) -> None:
    write_tiny_cases(tmp_path / "cases", 1, shape=(16, 16, 6))
    m = write_checkpoint(tmp_path / "m", SMALL)
    args = ["--models", str(m), "--data", str(tmp_path / "cases"), "--out", str(tmp_path / "r"), *extra]
    assert main(args) == 2
    assert not (tmp_path / "r").exists()  # nothing written half-way
    assert main(["--models", str(tmp_path / "missing"), "--data", str(tmp_path / "cases"), "--out", "x"]) == 2


def test_heads_off_rows_are_the_base_alone(tmp_path: Path) -> None:
    """``--heads-off``: the ablation row of a physics-base generator with random heads is what the same
    generator with zeroed heads gives, and differs from the full model; a model without a base is refused."""
    case = make_case(32, resolution=2, sequence="achieva_3t", doses=(0.1,), lesions=LESIONS[:2])
    save_case(case, tmp_path / "cases" / "phantom-0032")
    cfg = {**SMALL, "base": "physics"}
    textured = write_checkpoint(tmp_path / "textured", cfg, dose_visible=True, display_name="textured")
    bare = write_checkpoint(tmp_path / "bare", cfg, zero=True, display_name="bare")
    out = tmp_path / "report"
    args = ["--data", str(tmp_path / "cases"), "--doses", "0.1", "--noise-seeds", "0", "--device", "cpu"]
    args += ["--lesion-slices", "2", "--extra-slices", "1"]
    assert main(["--models", str(textured), str(bare), "--heads-off", "--out", str(out), *args]) == 0
    lesions = _rows(out / "lesions.csv")
    methods = {r["method"] for r in lesions}
    assert {"textured", "bare", "textured" + HEADS_OFF, "bare" + HEADS_OFF} <= methods
    e = {m: np.array([float(r["e_method"]) for r in lesions if r["method"] == m]) for m in methods}
    assert e["bare"].size >= 2
    np.testing.assert_allclose(e["textured" + HEADS_OFF], e["bare"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e["bare" + HEADS_OFF], e["bare"], rtol=1e-5, atol=1e-7)
    assert np.abs(e["textured"] - e["bare"]).max() > 1e-3  # the random heads do change the enhancement
    report = (out / "report.md").read_text()
    assert "textured" + HEADS_OFF in report
    # the bias column of the per-type table is the mean signed error over the lesion rows
    for r in lesions[:1]:
        signed = [
            float(q["e_method"]) - float(q["e_true"])
            for q in lesions
            if q["method"] == r["method"] and q["type"] == r["type"]
        ]
        assert f"| {r['type']} | {r['method']} | {np.mean(signed):+.4f} | " in report

    native = write_checkpoint(tmp_path / "native", SMALL)
    refused = tmp_path / "refused"
    assert main(["--models", str(native), "--heads-off", "--out", str(refused), *args]) == 2
    assert not refused.exists()


def test_reference_rows_are_tested_outside_the_holm_family() -> None:
    """The real scan's lesion errors are tested against each baseline like a model's (Wilcoxon over cases,
    checked against scipy), while the models' Holm adjustment counts the models' tests alone."""
    from scipy.stats import wilcoxon

    from vce_core.evaluate.lowdose import ALL_DOSES, comparisons

    rng = np.random.default_rng(5)
    cases = [f"c{i}" for i in range(9)]
    errors = {
        "model": rng.uniform(0.001, 0.01, 9),
        REFERENCE: rng.uniform(0.001, 0.004, 9),
        "linear baseline": rng.uniform(0.02, 0.08, 9),
        "physics baseline": rng.uniform(0.0005, 0.02, 9),
    }
    table = {
        (m, dose, metric): dict(zip(cases, e * scale, strict=True))
        for m, e in errors.items()
        for dose, scale in ((0.1, 0.8), (0.33, 1.3), (ALL_DOSES, 1.05))
        for metric in (PRIMARY, f"{PRIMARY}:metastasis", "psnr_truth")
    }
    rows = comparisons(table, ["model"], [0.1, 0.33])
    scan = [r for r in rows if r["model"] == REFERENCE]
    assert {r["metric"] for r in scan} == {PRIMARY, f"{PRIMARY}:metastasis"}  # lesion errors only
    assert all(np.isnan(r["p_holm"]) for r in scan)
    for r in scan:
        a = [table[(REFERENCE, r["dose"], r["metric"])][c] for c in cases]
        b = [table[(r["baseline"], r["dose"], r["metric"])][c] for c in cases]
        assert r["p_value"] == pytest.approx(wilcoxon(a, b).pvalue)
        assert r["wins"] == sum(x < y for x, y in zip(a, b, strict=True))
    family = [r for r in rows if r["model"] == "model" and r["metric"] == PRIMARY]
    assert len(family) == 6  # 2 baselines x (2 doses + all)
    assert [r["p_holm"] for r in family] == pytest.approx(holm([r["p_value"] for r in family]))
    assert rows == comparisons(table, ["model"], [0.1, 0.33], reference=None) + scan


def test_a_fine_tuned_model_is_described_with_the_run_it_started_from() -> None:
    """The report's model line gives each run of a card's training record: a head refitted without the
    critic on the trained parent must not read as a GAN of the refit's iterations."""
    from vce_core.evaluate.lowdose import _run_info
    from vce_core.evaluate.report import _training_of

    parent = {
        "iterations": 10000,
        "config": {"critic": "ld_cgan_critic", "n_critic": 5, "warmup_iterations": 8000},
    }
    refit = {
        "iterations": 5000,
        "config": {
            "critic": "",
            "n_critic": 5,
            "lambda_content": 0.0,
            "loss_weights": {"t1": 10.0, "bias": 0.0},
            "train_only": ["t1_head"],
        },
        "initialised_from": {"name": "parent_run", "training": parent},
    }
    # the card keeps its parent's critic: the refit's own config says it trained without one
    assert _training_of(_run_info(refit, critic=True)) == (
        "5000 iterations training only t1_head, no critic, terms t1, from parent_run "
        "(10000 iterations, the first 8000 without the critic, then critic (n_critic 5))"
    )
    assert _training_of(_run_info(parent, critic=True)) == (
        "10000 iterations, the first 8000 without the critic, then critic (n_critic 5)"
    )
    content_only = {"iterations": 300, "config": {"critic": "", "loss_weights": {}}}
    assert _training_of(_run_info(content_only, critic=False)) == "300 iterations, no critic (content only)"
    # a card without a config in its record (hand-made): the card's critic decides
    assert _training_of(_run_info({"iterations": 7}, critic=True)) == "7 iterations, critic (n_critic None)"


def test_a_case_with_nothing_to_evaluate_is_left_out_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--extra-slices 0`` a case without an enhancing lesion has no slice to evaluate: it is left
    out and named in the report's header, and the other cases are scored (it used to stop the run with a
    numpy error)."""
    save_case(make_case(33, resolution=2, doses=(0.1,), lesions=LESIONS[:1]), tmp_path / "cases" / "with")
    save_case(make_case(34, resolution=2, doses=(0.1,), lesions=[]), tmp_path / "cases" / "without")
    model = write_checkpoint(tmp_path / "m", SMALL)
    out = tmp_path / "report"
    args = ["--models", str(model), "--data", str(tmp_path / "cases"), "--doses", "0.1", "--noise-seeds", "0"]
    assert main([*args, "--extra-slices", "0", "--device", "cpu", "--out", str(out)]) == 0
    header = (out / "report.md").read_text().split("**Methods**")[0]
    assert "**Cases**: 1 (" in header
    assert "**Left out**: 1 case(s) with nothing to evaluate" in header
    without = json.loads((tmp_path / "cases" / "without" / "case.json").read_text())["case_id"]
    assert without in header
    assert {r["case_id"] for r in _rows(out / "lesions.csv")} == {
        json.loads((tmp_path / "cases" / "with" / "case.json").read_text())["case_id"]
    }
    # only such cases: a clear error that says why (not "no case acquired any of the doses"), no report
    only = ["--data", str(tmp_path / "cases" / "without"), "--extra-slices", "0", "--device", "cpu"]
    refused = [
        "--models",
        str(model),
        *only,
        "--doses",
        "0.1",
        "--noise-seeds",
        "0",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(refused) == 2
    assert "none of the 1 cases has a slice to evaluate" in capsys.readouterr().err
    assert not (tmp_path / "x" / "report.md").exists()
