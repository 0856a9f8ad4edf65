"""The virtual-contrast report: baselines, region metrics against hand computation, noise-free reference,
texture, paired comparisons, the cards' held-out figures and the refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from support import write_checkpoint, write_contrast_model
from vce_core import metrics
from vce_core.checkpoint import read_card
from vce_core.errors import VCEInputError
from vce_core.evaluate import virtual_contrast as vc
from vce_core.io import load_case, save_case
from vce_core.models import build_model


@pytest.fixture(scope="module")
def phantom_cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 2 mm phantom cases (T2, FLAIR, ADC, labels, CE mask, replayable for the noise-free image)."""
    from vce_core.phantom import make_case

    root = tmp_path_factory.mktemp("vc_eval")
    folders = []
    for seed in (11, 12):
        folder = root / f"case-{seed}"
        save_case(make_case(seed, doses=(0.33,), resolution=2.0, field_strength=3.0), folder)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(
        "hrfcn", spatial_dims=2, in_modalities=2, widths=[4, 8, 8], stem_channels=4, res_blocks=1
    )
    folder = tmp_path_factory.mktemp("vc_model") / "tiny-hrfcn"
    return write_contrast_model(
        folder, "hrfcn", model, display_name="tiny HRFCN", inputs=["native", "t2"], training={"iterations": 0}
    )


def test_global_factor_is_least_squares(phantom_cases: list[Path]) -> None:
    from vce_core.preprocess import brain_mask

    k = vc.fit_global_factor(phantom_cases)
    xs, ys = [], []
    for folder in phantom_cases:
        case = load_case(folder)
        brain = brain_mask(case.native.data)
        xs.append(case.native.data[brain].astype(np.float64))
        ys.append(case.standard_dose.data[brain].astype(np.float64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert k == pytest.approx(float(np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]), rel=1e-9)
    assert k > 1  # contrast brightens the brain on average


@pytest.fixture(scope="module")
def report(phantom_cases: list[Path], model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the CLI (with --update-cards) on the two phantom cases, k fitted on the first."""
    out = tmp_path_factory.mktemp("vc_report") / "r"
    args = ["--models", str(model_folder), "--data", *map(str, phantom_cases), "--out", str(out)]
    assert vc.main([*args, "--baseline-data", str(phantom_cases[0]), "--update-cards"]) == 0
    return out


def _rows(report: Path) -> dict[tuple[str, str, str], float]:
    with (report / "results.csv").open() as f:
        return {(r["case_id"], r["method"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def test_report_rows_match_hand_computed_metrics(phantom_cases: list[Path], report: Path) -> None:
    from vce_core.data import apply_normalization, fit_normalization
    from vce_core.phantom import phantom_from_case
    from vce_core.preprocess import brain_mask

    rows = _rows(report)
    assert {m for _, m, _ in rows} == {vc.NATIVE, vc.SCALED, "tiny HRFCN", vc.ACQUIRED, vc.NOISE_FREE}
    k = vc.fit_global_factor(phantom_cases[:1])
    case = load_case(phantom_cases[0])
    case_id = case.meta["case_id"]
    brain = brain_mask(case.native.data)
    params = fit_normalization(case.native.data, brain, "percentile")
    nat, sd = (
        apply_normalization(case.native.data, params),
        apply_normalization(case.standard_dose.data, params),
    )
    rng = float(sd[brain].max() - sd[brain].min())
    assert rows[(case_id, vc.NATIVE, "brain_mae")] == pytest.approx(metrics.mae(nat, sd, brain), rel=1e-5)
    # the case is cropped to the brain's box + 8 voxels: brain windows (7 voxels) never reach the crop
    native_ssim = metrics.ssim(nat, sd, rng, brain)
    assert rows[(case_id, vc.NATIVE, "brain_ssim")] == pytest.approx(native_ssim, rel=1e-5)
    scaled = apply_normalization(np.float32(k) * case.native.data, params)
    assert rows[(case_id, vc.SCALED, "brain_psnr")] == pytest.approx(
        metrics.psnr(scaled, sd, data_range=rng, mask=brain), rel=1e-5
    )
    lesion = np.isin(np.rint(case.extra["labels"].data), vc.LESION_LABELS) & brain
    assert lesion.any()
    assert rows[(case_id, vc.NATIVE, "lesion_mae")] == pytest.approx(metrics.mae(nat, sd, lesion), rel=1e-5)
    clean = apply_normalization(phantom_from_case(case).noise_free(1.0).data, params)
    assert rows[(case_id, vc.ACQUIRED, "clean_mae")] == pytest.approx(metrics.mae(sd, clean, brain), rel=1e-5)
    texture = metrics.texture_metrics(np.where(brain, clean, 0.0))
    # the report crops to the brain's bounding box: the texture of the masked image barely changes
    assert rows[(case_id, vc.NOISE_FREE, "TFPMI")] == pytest.approx(texture["TFPMI"], rel=0.05)

    text = (report / "report.md").read_text()
    for heading in ("Table II layout", "noise-free standard dose", "Texture", "Paired comparisons", "lose"):
        assert heading in text
    with (report / "comparisons.csv").open() as f:
        comparisons = list(csv.DictReader(f))
    assert {c["baseline"] for c in comparisons} == {vc.NATIVE, vc.SCALED}
    assert all(float(c["ci_low"]) <= float(c["mean_difference"]) <= float(c["ci_high"]) for c in comparisons)
    assert (report / "report.html").stat().st_size > 10_000
    from vce_core.display import decode_png

    example = decode_png((report / "example.png").read_bytes())  # native, T2, native × k, model, SD, clean
    assert example.ndim == 2 and example.shape[1] % 6 == 0 and "example.png" in text


def test_cards_get_the_figures_and_low_dose_models_are_refused(
    phantom_cases: list[Path], model_folder: Path, report: Path, tmp_path: Path
) -> None:
    held_out = read_card(model_folder).held_out
    assert held_out["cases"] == 2 and held_out["psnr"] == held_out["brain_psnr"]
    assert "--update-cards" in held_out["command"] and held_out["report"] == str(report)
    args = ["--models", str(model_folder), "--data", str(phantom_cases[0]), "--out", str(tmp_path / "x")]
    assert vc.main(args) == 2  # neither a factor nor baseline data
    with pytest.raises(VCEInputError, match="low_dose model"):
        vc.evaluate([write_checkpoint(tmp_path / "ld")], phantom_cases, tmp_path / "x", factor=1.0)


def test_slab_is_centred_on_the_lesions_and_stays_inside_the_crop(phantom_cases: list[Path]) -> None:
    from vce_core.io import Volume

    crop = (slice(2, 50), slice(3, 60), slice(10, 70))
    labels = np.zeros((64, 64, 80), np.float32)
    labels[20:25, 20:25, 62:66] = vc.LESION_LABELS[0]  # the most lesion voxels on slices 62–65
    labels[20:22, 20:22, 30] = vc.LESION_LABELS[0]
    got = vc._slab(crop, Volume(labels), 16)
    assert got[:2] == crop[:2] and got[2].stop - got[2].start == 16
    assert got[2].start <= 62 < got[2].stop and got[2].stop <= 70  # clipped to the crop, lesion inside
    assert vc._slab(crop, None, 16)[2] == slice(32, 48)  # no labels: the crop's centre
    assert vc._slab(crop, Volume(labels), 100) == crop and vc._slab(crop, Volume(labels), None) == crop


def test_a_slab_evaluates_only_its_slices(
    phantom_cases: list[Path], model_folder: Path, tmp_path: Path
) -> None:
    out = vc.evaluate(
        [model_folder], phantom_cases[:1], tmp_path / "slab", factor=1.2, show_progress=False, slab=8
    )
    assert (
        out["cases"]
        and "a slab of 8 contiguous axial slices" in (tmp_path / "slab" / "report.md").read_text()
    )
    rows = [r for r in out["results"] if r["method"] == vc.NATIVE and r["metric"] == "brain_mae"]
    full = vc.evaluate([model_folder], phantom_cases[:1], tmp_path / "full", factor=1.2, show_progress=False)
    full_rows = [r for r in full["results"] if r["method"] == vc.NATIVE and r["metric"] == "brain_mae"]
    assert rows[0]["value"] != full_rows[0]["value"]  # a different (smaller) volume was measured
    with pytest.raises(VCEInputError, match="too thin"):
        vc.evaluate([model_folder], phantom_cases[:1], tmp_path / "thin", factor=1.2, slab=4)
