"""Seed 000's augmentation experiment (vce_core.evaluate.augmentation) on tiny 2 mm phantom cases: synthetic
twins, the three arms, the evaluation's figures, the paired tests, and refusals of bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from support import phantom_case, write_checkpoint
from vce_core.errors import VCEInputError
from vce_core.evaluate import augmentation as aug
from vce_core.io import load_case

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sd_predictor_2_5d.yaml"
TINY = [
    "crop=32",
    "generator_kwargs.widths=[4, 8]",
    "batch_size=2",
    "val_every=0",
    "ckpt_every=0",
    "log_every=1",
    "cache_dtype=float32",
]


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _copy(source: Path, dest: Path, case_id: str, *, truth: bool = True, low_doses: bool = True) -> Path:
    """A copy of a case folder with its own case id; without the phantom description (no noise-free truth,
    which costs a phantom simulation per case) or without low doses if asked."""
    shutil.copytree(source, dest)
    manifest = json.loads((dest / "case.json").read_text())
    manifest["case_id"] = case_id
    if not truth:
        manifest["meta"].pop("phantom")
    if not low_doses:
        manifest["low_doses"] = [e for e in manifest["low_doses"] if abs(e["dose"] - 0.33) > 0.01]
    (dest / "case.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two training and two test copies of one 2 mm phantom case (low doses 0.1 and 0.33) and a tiny
    untrained low-dose generator."""
    source = phantom_case(tmp_path_factory)
    root = tmp_path_factory.mktemp("augmentation")
    train = [_copy(source, root / "train" / f"tr-{i}", f"tr-{i}", truth=False) for i in range(2)]
    test = [_copy(source, root / "test" / f"te-{i}", f"te-{i}", truth=False) for i in range(2)]
    generator = write_checkpoint(root / "generator", dose_visible=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    twins, _ = aug.write_synthetic_cases(train, root / "synthetic", generator, seed=3, log=lambda *_: None)
    torch.set_num_threads(threads)
    return {"root": root, "train": train, "test": test, "generator": generator, "twins": twins}


def test_synthetic_twins_link_everything_but_the_low_dose(study: dict[str, Any]) -> None:
    import hashlib

    from vce_core.synthesis import Synthesizer

    synth = Synthesizer.from_checkpoint(study["generator"], device="cpu")
    record = aug.generator_record(study["root"] / "synthetic")
    weights = (study["generator"] / "weights.safetensors").read_bytes()
    assert record["generator"] == str(study["generator"]) and record["generator_name"] == "generator"
    assert record["generator_sha256"] == hashlib.sha256(weights).hexdigest()
    for i, (source, twin) in enumerate(zip(study["train"], study["twins"], strict=True)):
        real_lows = {e["file"] for e in json.loads((source / "case.json").read_text())["low_doses"]}
        linked = {f.name for f in source.iterdir()} - real_lows - {"case.json"}
        assert {f.name for f in twin.iterdir()} == linked | {"case.json", "synthetic_low_dose_033.nii.gz"}
        for name in linked:  # the same file on disk, and not a symbolic link (load_case refuses those)
            assert os.path.samefile(source / name, twin / name) and not (twin / name).is_symlink()
        assert not any(
            os.path.samefile(source / n, twin / "synthetic_low_dose_033.nii.gz") for n in real_lows
        )
        real, case = load_case(source), load_case(twin)
        assert list(case.low_doses) == [0.33]  # no real low dose reaches the synthetic arm
        meta = case.meta["augmentation"]
        assert meta["generator"] == str(study["generator"]) and meta["noise_seed"] == aug._case_seed(3, i)
        assert not np.allclose(case.low_doses[0.33].data, real.low_doses[0.33].data)
        np.testing.assert_array_equal(case.standard_dose.data, real.standard_dose.data)
        if i:
            continue  # one independent re-synthesis is enough
        native = np.asarray(real.native.data, np.float32)
        crop = aug._brain_crop(native)
        expected = native.copy()
        expected[crop] = synth.synthesize(
            native[crop],
            np.asarray(real.standard_dose.data, np.float32)[crop],
            0.33,
            3.0,
            seed=meta["noise_seed"],
        )
        np.testing.assert_allclose(case.low_doses[0.33].data, expected, rtol=0, atol=1e-3)


def test_reuse_keeps_complete_twins_and_redoes_partial_ones(study: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    shutil.copytree(study["root"] / "synthetic", root)
    stamps = [(root / f.name / "case.json").stat().st_mtime_ns for f in study["twins"]]
    (root / study["twins"][1].name / "synthetic_low_dose_033.nii.gz").unlink()  # an interrupted twin
    again, _ = aug.write_synthetic_cases(study["train"], root, study["generator"], reuse=True, seed=3)
    assert (again[0] / "case.json").stat().st_mtime_ns == stamps[0]
    assert (again[1] / "synthetic_low_dose_033.nii.gz").is_file()
    assert (again[1] / "case.json").stat().st_mtime_ns != stamps[1]
    assert not list(root.glob("*.partial"))


def _run(study: dict[str, Any], work: Path, out: Path, **kwargs: Any) -> dict[str, Any]:
    args = {
        "data": study["train"],
        "test": study["test"],
        "val_data": [study["test"][0]],
        "work": work,
        "out": out,
        "config": CONFIG,
        "generator": study["generator"],
        "iterations": 2,
        "overrides": TINY,
        "device": "cpu",
        "command": "python -m vce_core.evaluate.augmentation (test)",
        "log": lambda *_: None,
    }
    return aug.run(**{**args, **kwargs})


def test_the_experiment_trains_three_arms_and_reports_them(study: dict[str, Any], tmp_path: Path) -> None:
    from vce_core.checkpoint import read_card

    result = _run(study, tmp_path / "work", tmp_path / "report")
    cards = {arm: read_card(tmp_path / "work" / aug.RUN_NAMES[arm]) for arm in aug.ARMS}
    folders = {arm: set(card.data["train"]["folders"]) for arm, card in cards.items()}
    assert folders["real"] == {str(f.resolve()) for f in study["train"]}
    assert len(folders["synthetic"]) == 2 and not folders["synthetic"] & folders["real"]
    assert folders["real+synthetic"] == folders["real"] | folders["synthetic"]
    for card in cards.values():
        assert card.training["iterations"] == 2 and card.inputs == ["native", "low_dose@0.33"]
    methods = {r["method"] for r in result["rows"]}
    assert methods == {aug.LINEAR, *(f"trained on {a}" for a in aug.ARMS)}
    report = (tmp_path / "report" / "report.md").read_text()
    for arm in aug.ARMS:
        assert f"| {arm} | `{tmp_path / 'work' / aug.RUN_NAMES[arm]}` |" in report
        assert f"| trained on {arm} |" in report
    assert "python -m vce_core.evaluate.augmentation (test)" in report
    with (tmp_path / "report" / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(result["rows"])
    with (tmp_path / "report" / "noise.csv").open() as f:
        assert [r["case"] for r in csv.DictReader(f)] == ["tr-0", "tr-1"]
    assert "## Noise of the training low doses" in report and "Verdict:" in report
    pairs = {(c["a"], c["b"]) for c in result["comparisons"]}
    assert pairs == {("real", "synthetic"), ("real", "real+synthetic"), ("synthetic", "real+synthetic")}
    stamp = (tmp_path / "work" / "real_only" / "card.json").stat().st_mtime_ns
    _run(study, tmp_path / "work", tmp_path / "report", reuse=True, steps=["train"])
    assert (tmp_path / "work" / "real_only" / "card.json").stat().st_mtime_ns == stamp


def test_a_missing_real_low_dose_is_an_input_error(study: dict[str, Any], tmp_path: Path) -> None:
    bad = _copy(study["test"][0], tmp_path / "cases" / "no-low", "no-low", low_doses=False)
    with pytest.raises(VCEInputError, match="test case has no real 0.33 low dose") as err:
        _run(study, tmp_path / "work", tmp_path / "report", test=[*study["test"], bad])
    assert "no-low" in str(err.value) and "acquired: [0.1]" in str(err.value)
    with pytest.raises(VCEInputError, match="training case has no real 0.33 low dose"):
        _run(study, tmp_path / "work", tmp_path / "report", data=[*study["train"], bad])
    assert not (tmp_path / "work").exists() and not (tmp_path / "report").exists()  # nothing written
    with pytest.raises(VCEInputError, match="steps"):
        _run(study, tmp_path / "work", tmp_path / "report", steps=["predict"])
    with pytest.raises(VCEInputError, match="synthetic case.s. are missing"):
        _run(study, tmp_path / "work", tmp_path / "report", steps=["train"])
    assert not (tmp_path / "work").exists()


def test_the_evaluation_figures_against_independent_computations(
    study: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linear reference's MAE and PSNR recomputed with numpy; with the acquired standard dose standing
    in for the noise-free truth, every "vs noise-free" figure equals its "vs acquired" twin."""
    import vce_core.phantom
    from vce_core.data import apply_normalization, fit_normalization
    from vce_core.preprocess import brain_mask

    class Truth:
        def __init__(self, case: Any):
            self.case = case

        def noise_free(self, dose: float) -> Any:
            return self.case.standard_dose

    monkeypatch.setattr(vce_core.phantom, "phantom_from_case", Truth)
    rows = aug.evaluate_case(study["test"][0], {}, 0.33)
    got = {(r["method"], r["metric"]): r["value"] for r in rows}
    case = load_case(study["test"][0])
    crop = aug._brain_crop(np.asarray(case.native.data, np.float32))
    native, low, sd = (
        np.asarray(v.data, np.float32)[crop] for v in (case.native, case.low_doses[0.33], case.standard_dose)
    )
    brain = np.asarray(brain_mask(native), bool)
    params = fit_normalization(native, brain, "percentile")
    x = apply_normalization(native + (low - native) / np.float32(0.33), params).astype(np.float64)
    ref = apply_normalization(sd, params).astype(np.float64)
    data_range = ref[brain].max() - ref[brain].min()
    mse = np.mean((x[brain] - ref[brain]) ** 2)
    assert got[(aug.LINEAR, "brain_mae")] == pytest.approx(np.mean(np.abs(x - ref)[brain]), rel=1e-5)
    assert got[(aug.LINEAR, "brain_psnr")] == pytest.approx(10 * np.log10(data_range**2 / mse), rel=1e-5)
    for metric in ("mae", "psnr", "ssim"):
        assert got[(aug.LINEAR, f"clean_{metric}")] == pytest.approx(got[(aug.LINEAR, f"brain_{metric}")])
    assert got[(aug.ACQUIRED, "clean_mae")] == 0.0


def test_compare_arms_is_wilcoxon_with_bootstrap_and_holm() -> None:
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    base = rng.normal(0.1, 0.01, 8)
    values = {"real": base, "synthetic": base + rng.normal(0.01, 0.005, 8), "real+synthetic": base - 0.002}
    rows = [
        {"case_id": f"c{k}", "method": f"trained on {arm}", "metric": "brain_mae", "value": float(v[k])}
        for arm, v in values.items()
        for k in range(8)
    ]
    out = aug.compare_arms(rows)
    assert [(c["a"], c["b"]) for c in out] == [
        ("real", "synthetic"),
        ("real", "real+synthetic"),
        ("synthetic", "real+synthetic"),
    ]
    p = [wilcoxon(values[c["a"]], values[c["b"]]).pvalue for c in out]
    order = np.argsort(p)
    holm = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * p[i]))
        holm[i] = running
    for c, p_i, h in zip(out, p, holm, strict=True):
        assert c["p_value"] == pytest.approx(p_i) and c["p_holm"] == pytest.approx(h)
        diff = values[c["a"]] - values[c["b"]]
        assert c["mean_difference"] == pytest.approx(diff.mean())
        assert c["ci_low"] <= diff.mean() <= c["ci_high"]
        assert c["a_better"] == int(np.sum(diff < 0))  # MAE: lower is better


def test_subtraction_noise_compares_the_synthetic_with_the_real_subtraction(study: dict[str, Any]) -> None:
    from vce_core.metrics import noise_sigma
    from vce_core.preprocess import brain_mask

    same = aug.subtraction_noise(study["train"][:1], study["train"][:1])
    assert same[0]["ratio"] == 1.0 and same[0]["sigma_real"] > 0
    row = aug.subtraction_noise(study["train"][:1], study["twins"][:1])[0]
    real, twin = load_case(study["train"][0]), load_case(study["twins"][0])
    native = np.asarray(real.native.data, np.float32)
    mask = np.asarray(brain_mask(native), bool) & ~(np.asarray(real.extra["ce_mask"].data) > 0.5)
    expected = noise_sigma(np.asarray(twin.low_doses[0.33].data) - native, mask)
    assert row["sigma_synthetic"] == pytest.approx(expected, rel=1e-6)
    assert row["ratio"] == pytest.approx(expected / same[0]["sigma_real"], rel=1e-6)


def test_reuse_resumes_a_run_cut_short_to_the_same_iterations(study: dict[str, Any], tmp_path: Path) -> None:
    from vce_core.checkpoint import read_card

    arms = {"real": study["train"]}
    common = {"iterations": 3, "val_data": [study["test"][0]], "log": lambda *_: None}
    capped = [*TINY, "threads=1", "max_minutes=1e-9"]  # stops after the first iteration
    aug.train_arms(CONFIG, arms, tmp_path, overrides=capped, **common)
    card = read_card(tmp_path / "real_only")
    assert card.training["stopped_by"] == "max_minutes" and card.training["iterations"] == 1
    first = json.loads((tmp_path / "timings.json").read_text())["train_real_only_s"]
    result = aug.train_arms(CONFIG, arms, tmp_path, overrides=[*TINY, "threads=1"], reuse=True, **common)
    assert result["real"]["resumed"] and read_card(tmp_path / "real_only").training["iterations"] == 3
    total = json.loads((tmp_path / "timings.json").read_text())["train_real_only_s"]
    assert total == pytest.approx(first + result["real"]["seconds"], abs=0.1)
    again = aug.train_arms(CONFIG, arms, tmp_path, overrides=[*TINY, "threads=1"], reuse=True, **common)
    assert again["real"]["reused"]
    fresh = aug.train_arms(CONFIG, arms, tmp_path, overrides=[*TINY, "threads=1"], reuse=False, **common)
    assert not fresh["real"]["reused"] and not fresh["real"]["resumed"]
