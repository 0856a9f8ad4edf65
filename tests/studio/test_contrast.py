"""The virtual-contrast view's computation (studio.contrast): metrics against scikit-image and hand
formulas, one synthesis per (case, model) whatever the plane and slice, the missing-input message, and
which models each view lists."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from studio.cases import CaseLibrary
from studio.contrast import LESION_LABELS, Contrast, ContrastView, region_errors
from studio.explorer import Explorer
from studio.generators import GeneratorRegistry
from support import write_app_checkpoint, write_contrast_cases, write_vc_checkpoint
from vce_core.display import slice_spacing, take_slice
from vce_core.io import Volume, load_case, save_case
from vce_core.viewer import oriented


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two tiny cases (``tiny-00`` with T2/FLAIR/ADC and lesion labels, ``tiny-01`` with FLAIR only), a
    low-dose generator ``ld`` and two virtual-contrast models: ``vc-t2`` (native + T2) and ``vc-adc``
    (native + ADC, ADC optional)."""
    root = tmp_path_factory.mktemp("contrast")
    first = write_contrast_cases(root / "data", 1)[0]
    case = load_case(first)
    blob = case.standard_dose.data - case.native.data > 40
    case.extra["labels"] = Volume(np.where(blob, LESION_LABELS[2], 1).astype(np.float32))
    save_case(case, first, overwrite=True)
    write_contrast_cases(root / "more", 2, extras=("flair",))[1].rename(root / "data" / "tiny-01")
    models = root / "models"
    write_app_checkpoint(models / "ld")
    write_vc_checkpoint(models / "vc-t2", display_name="VC from T2")
    write_vc_checkpoint(models / "vc-adc", inputs=("native", "adc"), optional=("adc",))
    library = CaseLibrary(root / "data")
    explorer = Explorer(library, GeneratorRegistry(models))
    contrast = Contrast(library, GeneratorRegistry(models, task="virtual_contrast"), explorer)
    return {"contrast": contrast, "explorer": explorer, "models": models, "root": root}


def payload_of(data: dict[str, Any]) -> dict[str, Any]:
    return {p["key"]: p for p in data["panels"]}


def test_region_errors_match_scikit_image_and_hand_formulas() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0.5, 0.2, (40, 36)).astype(np.float32)
    x = (ref + rng.normal(0, 0.05, ref.shape)).astype(np.float32)
    region = np.zeros(ref.shape, bool)
    region[5:30, 8:33] = True
    data_range = float(ref[region].max() - ref[region].min())
    got = region_errors(x, ref, {"brain": region, "none": None}, data_range)["brain"]
    assert got["mae"] == pytest.approx(np.abs(x - ref)[region].mean(), rel=1e-6)
    mse = ((x.astype(np.float64) - ref) ** 2)[region].mean()
    assert got["psnr"] == pytest.approx(10 * np.log10(data_range**2 / mse), rel=1e-6)
    _, smap = structural_similarity(ref, x, data_range=data_range, full=True)
    inner = region.copy()
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    assert got["ssim"] == pytest.approx(smap[inner].mean(), abs=1e-6)
    assert np.isnan(region_errors(x, ref, {"none": None}, data_range)["none"]["ssim"])


def test_views_list_only_their_task(world: dict[str, Any]) -> None:
    assert world["explorer"].generators.names() == ["ld"]  # the dose explorer: low-dose generators only
    assert world["contrast"].model_names() == ["vc-adc", "vc-t2"]
    empty = GeneratorRegistry(world["root"] / "no-models", task="virtual_contrast")
    assert empty.names() == [] and "No virtual-contrast model is installed" in empty.empty_message()


def test_panels_show_inputs_virtual_real_and_difference(world: dict[str, Any]) -> None:
    contrast: Contrast = world["contrast"]
    view = ContrastView("tiny-00", "vc-t2", "axial", 6)
    data = contrast.viewer_payload(view)
    panels = payload_of(data)
    assert list(panels) == ["native", "input-t2", "virtual", "standard", "difference"]
    assert panels["virtual"]["title"] == "Virtual contrast · VC from T2"
    assert panels["difference"]["derive"] == {
        "op": "sub",
        "a": panels["virtual"]["stack"],
        "b": panels["standard"]["stack"],
    }
    synth = contrast.models.get("vc-t2")
    want = synth.synthesize_contrast(contrast.images("tiny-00").case)[:, :, 6]
    lc = contrast.library.get("tiny-00")
    encoding = world["explorer"].encoding("tiny-00")
    got = encoding.decode(
        data["stacks"][panels["virtual"]["stack"]]["slices"]["6"], (data["rows"], data["cols"])
    )
    assert (
        np.max(np.abs(got - oriented(want, slice_spacing(lc.spacing, "axial"))[0])) <= encoding.scale + 1e-3
    )
    adc = payload_of(contrast.viewer_payload(ContrastView("tiny-01", "vc-adc", "axial", 6)))["input-adc"]
    assert adc["message"] == "no ADC in this case: the model gets a zero image"


def test_missing_required_input_is_named_not_raised(world: dict[str, Any]) -> None:
    contrast: Contrast = world["contrast"]
    panels = payload_of(contrast.viewer_payload(ContrastView("tiny-01", "vc-t2", "coronal", 5)))
    assert "case tiny-01: the required input(s) t2 of VC from T2 are missing" in panels["virtual"]["message"]
    assert panels["input-t2"]["message"] == "no T2 in this case" and "message" not in panels["standard"]
    text = contrast.metrics(ContrastView("tiny-01", "vc-t2", "axial", 5))
    assert "t2 of VC from T2 are missing" in text and "| Native (baseline) |" in text
    assert "lacks T2 for this model" in contrast.case_info("tiny-01", "vc-t2")


def test_one_synthesis_per_case_and_model(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    contrast = Contrast(world["contrast"].library, world["contrast"].models, world["explorer"])
    synth = contrast.models.get("vc-t2")
    calls: list[str] = []
    original = synth.synthesize_prepared
    monkeypatch.setattr(synth, "synthesize_prepared", lambda *a, **k: calls.append("v") or original(*a, **k))
    volume = contrast.compute_volume("tiny-00", "vc-t2")
    for plane in ("coronal", "sagittal", "axial"):
        for index in (3, 7):
            data = contrast.viewer_payload(ContrastView("tiny-00", "vc-t2", plane, index))
            assert data["stacks"][payload_of(data)["virtual"]["stack"]]["slices"]
            np.testing.assert_array_equal(
                contrast.virtual_slice("tiny-00", "vc-t2", plane, index), take_slice(volume, plane, index)
            )
    contrast.metrics(ContrastView("tiny-00", "vc-t2", "sagittal", 4), "volume")
    assert calls == ["v"] and contrast.progress("tiny-00", "vc-t2") == 1.0


def test_metrics_are_those_of_the_regions(world: dict[str, Any]) -> None:
    """The table's numbers are region_errors of the normalised images on the slice / in the brain box."""
    contrast: Contrast = world["contrast"]
    view = ContrastView("tiny-00", "vc-t2", "coronal", 9)
    text = contrast.metrics(view)
    assert "tiny-00 · vc-t2 · coronal slice 10" in text and "whole volume" not in text
    img = contrast.images("tiny-00")
    ref = img.normalise(take_slice(img.case.standard_dose.data, "coronal", 9))
    brain = take_slice(img.brain, "coronal", 9)
    lesion = take_slice(img.lesion, "coronal", 9)
    assert lesion.any()
    native = img.normalise(take_slice(img.case.native.data, "coronal", 9))
    want = region_errors(native, ref, {"brain": brain, "lesion": lesion}, float(np.ptp(ref[brain])))
    row = next(line for line in text.splitlines() if line.startswith("| Native (baseline)"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    expected = [want[r][m] for r in ("brain", "lesion") for m in ("mae", "psnr", "ssim")]
    np.testing.assert_allclose(cells, expected, rtol=1e-3, atol=1e-4)
    volume = contrast.metrics(view, "volume")
    assert "tiny-00 · vc-t2 · whole volume" in volume and "| VC from T2 |" in volume


def test_no_model_installed(world: dict[str, Any]) -> None:
    contrast = Contrast(
        world["contrast"].library, GeneratorRegistry(None, task="virtual_contrast"), world["explorer"]
    )
    panels = payload_of(contrast.viewer_payload(ContrastView("tiny-00", None, "axial", 5)))
    assert panels["virtual"]["message"].startswith("No virtual-contrast model is installed")
    assert list(panels)[:1] == ["native"] and "No virtual-contrast model" in contrast.metrics(
        ContrastView("tiny-00", None, "axial", 5)
    )


def test_viewer_markup_round_trip(world: dict[str, Any]) -> None:
    from vce_core.viewer import viewer_html

    markup = viewer_html(world["contrast"].viewer_payload(ContrastView("tiny-00", "vc-t2", "axial", 6)))
    data = json.loads(html.unescape(re.search(r'data-vce-viewer="([^"]*)"', markup).group(1)))
    assert data["group"] == "contrast" and data["markers"]["top"] == "A"
