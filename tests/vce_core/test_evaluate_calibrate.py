"""Noise calibration (``python -m vce_core.evaluate.calibrate``): the written copy reaches the target σ̂
ratio as the low-dose report measures it, keeps the weights, records how it was made; bad input writes
nothing."""

from __future__ import annotations

import csv
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support import SMALL, write_checkpoint, write_tiny_cases
from vce_core.checkpoint import WEIGHTS_FILE, read_card
from vce_core.evaluate import main as evaluate_main
from vce_core.evaluate.calibrate import calibrate_noise, main, measure_scans, ratio_at
from vce_core.io import save_case
from vce_core.phantom import LesionSpec, make_case

LESIONS = [LesionSpec("metastasis", 5.0, center_mm=(30, 10, 20))]
SLICES = ["--lesion-slices", "2", "--extra-slices", "2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("calibrate")
    case = make_case(33, resolution=2, sequence="achieva_3t", doses=(0.1, 0.33), lesions=LESIONS)
    save_case(case, root / "cases" / "phantom-0033")
    model = write_checkpoint(
        root / "textured", {**SMALL, "base": "physics"}, dose_visible=True, display_name="textured"
    )
    return root, root / "cases", model


REPORTED = {"sigma": "sub_sigma_ratio", "residual": "sub_resid_sd_ratio"}


@pytest.mark.parametrize("measure", ["sigma", "residual"])
def test_the_calibrated_copy_has_the_target_ratio_in_the_report(
    setup: tuple[Path, Path, Path], measure: str
) -> None:
    root, cases, model = setup
    scans = measure_scans(model, [cases], [0.1, 0.33], lesion_slices=2, extra_slices=2, device="cpu")
    off, small, one = (ratio_at(scans, s, measure)["mean"] for s in (0.0, 0.05, 1.0))
    assert off < small < one  # the heads add the noise (untrained, far too much); the base alone has little
    target = round((off + small) / 2, 3)  # reachable, and not the ratio as trained
    out = root / f"calibrated_{measure}"
    args = ["--model", str(model), "--data", str(cases), "--doses", "0.1", "0.33", *SLICES]
    args += ["--measure", measure, "--target", str(target), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0

    card, parent = read_card(out), read_card(model)
    scale = card.config["texture_scale"]
    assert scale != 1.0 and parent.config.get("texture_scale", 1.0) == 1.0
    assert {**card.config, "texture_scale": 1.0} == {**parent.config, "texture_scale": 1.0}
    assert (out / WEIGHTS_FILE).read_bytes() == (model / WEIGHTS_FILE).read_bytes()
    record = card.training["noise_calibration"]
    assert record["texture_scale"] == scale and record["target"] == target and record["cases"] == 1
    other = "residual" if measure == "sigma" else "sigma"
    assert record["measure"] == measure and set(record[f"{other}_calibrated"]) == {"0.1", "0.33"}
    assert "--target" in record["command"] and record["parent"] == str(model)
    assert any("noise calibrated" in line for line in card.training["config"]["deviations"])
    assert card.default is False and card.held_out is None and card.name == out.name

    # the low-dose report, an independent path (full forward passes at the card's scale), gives the target
    report = root / f"report_{measure}"
    assert evaluate_main(["--models", str(out), "--data", str(cases), "--doses", "0.1", "0.33", *SLICES,
                          "--noise-seeds", "0", "--out", str(report), "--device", "cpu"]) == 0  # fmt: skip
    with (report / "results.csv").open() as f:
        ratios = [
            float(r["value"])
            for r in csv.DictReader(f)
            if r["metric"] == REPORTED[measure] and r["method"] == card.display_name
        ]
    assert len(ratios) == 2
    np.testing.assert_allclose(np.mean(ratios), target, atol=2e-3)
    # and the fit agrees with the split passes it was made from
    fit = calibrate_noise(scans, target, measure)
    assert fit["texture_scale"] == pytest.approx(scale, abs=1e-3)
    assert fit["ratio_calibrated"]["mean"] == pytest.approx(target, abs=2e-3)


def test_bad_input_writes_nothing(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cases, model = setup
    args = ["--data", str(cases), "--doses", "0.1", *SLICES, "--device", "cpu"]
    native = write_checkpoint(tmp_path / "native", SMALL)  # no base: its heads are the whole output
    real = tmp_path / "real"
    write_tiny_cases(real, 1, shape=(24, 24, 14))  # real-style: one acquisition, no truth
    for bad in (
        ["--model", str(native)],
        ["--model", str(model), "--target", "0.001"],  # below what the base alone gives
        ["--model", str(model), "--target", "-1"],
        ["--model", str(tmp_path / "missing")],
        ["--model", str(model), "--doses", "1.5"],
    ):
        out = tmp_path / "out"
        assert main([*args, *bad, "--out", str(out)]) == 2
        assert not out.exists()
    # a real-style case (one acquisition, no T1 sequence, no truth): σ̂ can be matched, the residual cannot
    linear = write_checkpoint(tmp_path / "linear", {**SMALL, "base": "linear"}, dose_visible=True)
    args_real = ["--model", str(linear), "--data", str(real), "--doses", "0.1", *SLICES, "--device", "cpu"]
    assert main([*args_real, "--target", "0.5"]) == 0
    assert main([*args_real, "--measure", "residual", "--out", str(tmp_path / "out")]) == 2
    assert "needs the noise-free subtraction" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    assert main([*args, "--model", str(model), "--out", str(taken)]) == 2
    assert list(taken.iterdir()) == []


SLOPE_OPTIONS = {"doses": [0.1, 0.33], "lesion_slices": 2, "extra_slices": 2, "device": "cpu"}
HIGH_PASSED = {**SMALL, "base": "physics", "texture_sigma": 2.0}


@pytest.fixture(scope="module")
def slope_setup(setup: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 3 T case of ``setup`` plus a 1.5 T case with a metastasis and one without lesions; an untrained
    high-passed generator; its native-slope fit on all doses and on 0.1 alone."""
    from vce_core.evaluate.calibrate import fit_native_slope

    root = tmp_path_factory.mktemp("native_slope")
    cases = root / "cases"
    shutil.copytree(setup[1], cases)
    case = make_case(15, resolution=2, sequence="achieva_1.5t", doses=(0.1, 0.33), lesions=LESIONS)
    save_case(case, cases / "phantom-0015")
    plain_case = make_case(16, resolution=2, sequence="achieva_1.5t", doses=(0.1, 0.33), lesions=[])
    save_case(plain_case, cases / "phantom-0016")  # no lesion: a case all the same
    model = write_checkpoint(root / "hp", HIGH_PASSED, dose_visible=True, display_name="high-passed")
    fit = partial(fit_native_slope, show_progress=False, lesion_type="metastasis")
    return {
        "cases": cases,
        "model": model,
        "fit": fit(model, [cases], **SLOPE_OPTIONS),
        "low_only": fit(model, [cases], **{**SLOPE_OPTIONS, "doses": [0.1]}),
        "args": [
            "--model",
            str(model),
            "--data",
            str(cases),
            "--doses",
            "0.1",
            "0.33",
            *SLICES,
            "--device",
            "cpu",
        ],
    }


def test_the_native_slope_fit_leaves_no_slope_and_is_recorded(
    slope_setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--fit native-slope``: on the copy, a second fit finds no slope left on the fitted lesions at either
    field strength, and its lesion error by full forward passes is the one the fit predicted from the split
    passes (the output is linear in the slope); the card records it and keeps the parent's weights."""
    from vce_core.evaluate.calibrate import fit_native_slope

    cases, model, fit, args = (slope_setup[k] for k in ("cases", "model", "fit", "args"))
    assert fit["cases"] == 3 and fit["scans"] == 6 and fit["parent"] == [0.0, 0.0]
    assert {k[0] for k in fit["brain_slope_per_dose"]} == {1.5, 3.0}
    for field in (1.5, 3.0):
        assert fit[field]["lesions"] == 2 and fit[field]["native_slope"] == round(
            fit[field]["lesion_slope"], 5
        )
    assert max(abs(fit[f]["lesion_slope"]) for f in (1.5, 3.0)) > 1e-3  # untrained heads: something to fit
    # the per-dose slopes are each dose's own fit; the pooled slope is their weighted mean, inside its CI
    low_only = slope_setup["low_only"]
    for field in (1.5, 3.0):
        per_dose, slope = fit[field]["lesion_slope_per_dose"], fit[field]["lesion_slope"]
        assert set(per_dose) == {0.1, 0.33}
        assert per_dose[0.1] == pytest.approx(low_only[field]["lesion_slope"], rel=1e-9)
        assert min(per_dose.values()) <= slope <= max(per_dose.values())
        low, high = fit[field]["lesion_slope_ci"]
        assert low <= slope <= high

    out = tmp_path / "sloped"
    assert main([*args, "--fit", "native-slope", "--lesion-type", "metastasis", "--out", str(out)]) == 0
    assert "checked by full forward passes" in capsys.readouterr().out
    card, parent = read_card(out), read_card(model)
    assert card.config["native_slope"] == fit["native_slope"]
    assert {**card.config, "native_slope": 0} == {**parent.config, "native_slope": 0}
    assert (out / WEIGHTS_FILE).read_bytes() == (model / WEIGHTS_FILE).read_bytes()
    record = card.training["native_slope_fit"]
    assert record["native_slope"] == card.config["native_slope"] and record["cases"] == 3
    assert record["lesion_type"] == "metastasis" and set(record["per_field_strength"]) == {"1.5 T", "3 T"}
    assert set(record["per_field_strength"]["3 T"]["lesion_slope_per_dose"]) == {"0.1", "0.33"}
    assert "--fit native-slope" in record["command"]
    assert any("native contrast of metastasis" in line for line in card.training["config"]["deviations"])
    assert card.default is False and card.held_out is None and card.display_name.startswith("high-passed, ")
    again = fit_native_slope(out, [cases], **SLOPE_OPTIONS, show_progress=False, lesion_type="metastasis")
    for field in (1.5, 3.0):
        assert abs(again[field]["lesion_slope"]) < 1e-3 * max(abs(fit[field]["lesion_slope"]), 1e-3)
        assert again[field]["lesion_error"]["parent"] == pytest.approx(
            fit[field]["lesion_error"]["fitted"], rel=1e-3, abs=1e-6
        )


def test_a_native_slope_fit_of_one_field_strength_keeps_the_other(
    slope_setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One field strength fitted (a hold-out trained without 3 T): its slope is the full fit's, the other
    keeps the parent's, its cases are skipped; card, record and deviation say so."""
    from vce_core.evaluate.calibrate import fit_native_slope

    cases, model, fit, args = (slope_setup[k] for k in ("cases", "model", "fit", "args"))
    one = fit_native_slope(
        model, [cases], **SLOPE_OPTIONS, show_progress=False, lesion_type="metastasis", field_strengths=[1.5]
    )
    assert one[3.0] == {"fitted": False, "native_slope": 0.0} and one["cases"] == 2 and one["scans"] == 4
    assert one[1.5]["lesion_slope"] == pytest.approx(fit[1.5]["lesion_slope"], rel=1e-9)
    assert one["native_slope"] == [fit[1.5]["native_slope"], 0.0]
    assert {k[0] for k in one["brain_slope_per_dose"]} == {1.5}
    out15 = tmp_path / "sloped_15"
    assert main([*args, "--fit", "native-slope", "--lesion-type", "metastasis", "--field-strengths", "1.5",
                 "--out", str(out15)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| 3 T | not fitted (--field-strengths)" in printed and "(1.5 T)" in printed
    card15 = read_card(out15)
    assert card15.config["native_slope"] == one["native_slope"]
    assert card15.training["native_slope_fit"]["per_field_strength"]["3 T"] == {
        "fitted": False,
        "native_slope": 0.0,
    }
    assert card15.training["native_slope_fit"]["cases"] == 2
    assert any("at 3 T not fitted" in line for line in card15.training["config"]["deviations"])


def test_a_native_slope_fit_that_cannot_be_made_is_refused_and_writes_nothing(
    setup: tuple[Path, Path, Path],
    slope_setup: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A generator without ``texture_sigma``, cases without the lesion type at a field strength, an unknown
    type, real cases and a field strength without cases are refused and write nothing."""
    cases3, cases, model = setup[1], slope_setup["cases"], slope_setup["model"]
    plain = write_checkpoint(tmp_path / "plain", {**SMALL, "base": "physics"}, dose_visible=True)
    real = tmp_path / "real"
    write_tiny_cases(real, 1, shape=(24, 24, 14))  # real-style: no T1 sequence, so a linear base
    linear = write_checkpoint(tmp_path / "linear", {**HIGH_PASSED, "base": "linear"}, dose_visible=True)
    for bad, data, extra, message in (
        (plain, cases, [], "texture_sigma"),
        (model, cases, [], "no weakly enhancing lesion at 1.5 T"),  # the default type: none here
        (model, cases3, ["--lesion-type", "metastasis"], "no metastasis lesion at 1.5 T"),
        (model, cases, ["--lesion-type", "glioma"], "lesion type 'glioma'"),
        (linear, real, [], "noise-free truth"),
        (model, cases, ["--lesion-type", "metastasis", "--field-strengths", "30"], "field strength"),
        (
            model,
            cases3,
            ["--lesion-type", "metastasis", "--field-strengths", "1.5"],
            "at a field strength not fitted: 3 T",  # the 3 T case only: nothing left to fit
        ),
    ):
        target = tmp_path / "refused"
        bad_args = ["--model", str(bad), "--data", str(data), "--doses", "0.1", *SLICES, "--device", "cpu"]
        assert main([*bad_args, "--fit", "native-slope", *extra, "--out", str(target)]) == 2
        assert message in capsys.readouterr().err and not target.exists()
