"""Reader studies with virtual-contrast items: the spec, the checks of the model (unknown, wrong task, a case
lacking an input), the rendered pixels, the exports and the statistics (VC is its own arm and synthetic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from reader_study import analysis, export, render
from reader_study.auth import SYSTEM
from reader_study.db import open_database
from reader_study.models import Case, Item, ItemImage
from reader_study.service import ReaderStudyService
from reader_study.spec import ConditionSpec, parse_spec
from support import (
    FakeContrast,
    make_service,
    spec_dict,
    write_checkpoint,
    write_contrast_cases,
    write_disc_cases,
    write_vc_checkpoint,
)
from vce_core import display
from vce_core.errors import VCEInputError
from vce_core.io import load_case

VC = {"condition": "virtual_contrast", "generator": "fakevc"}


def test_spec_names_the_model_of_a_virtual_contrast_condition(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 1)
    spec = spec_dict(tmp_path)
    spec["conditions"] = ["real_standard_dose", VC, "virtual_contrast"]
    parsed = parse_spec(spec, tmp_path).conditions
    assert parsed[1] == ConditionSpec("virtual_contrast", None, "fakevc")
    assert parsed[2] == ConditionSpec("virtual_contrast", None, None)  # the case's precomputed volume
    for entry, words in (
        ({"condition": "linear_baseline", "generator": "fakevc"}, "takes no generator"),
        ({"condition": "virtual_contrast", "generator": ""}, "not a checkpoint folder name"),
        ({"condition": "virtual_contrast", "generator": 3}, "not a checkpoint folder name"),
    ):
        spec["conditions"] = [entry]
        with pytest.raises(VCEInputError, match=words):
            parse_spec(spec, tmp_path)


@pytest.fixture()
def real_models(tmp_path: Path) -> tuple[ReaderStudyService, Path]:
    """A service without an injected loader over two disc cases (no T2), with a low-dose generator ``ld``
    and a virtual-contrast model ``vc`` needing native and T2."""
    write_disc_cases(tmp_path, 2)
    models = tmp_path / "models"
    write_checkpoint(models / "ld")
    write_vc_checkpoint(models / "vc", inputs=("native", "t2"))
    db = open_database(f"sqlite:///{tmp_path / 'rs.db'}")
    return ReaderStudyService(db, data_root=tmp_path, models_dir=models), tmp_path


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ({"condition": "virtual_contrast", "generator": "ld"}, "'ld' is not a virtual-contrast model"),
        (
            {"condition": "synthetic_low_dose", "generator": "vc", "dose": 0.33},
            "'vc' is not a low-dose model",
        ),
        (
            {"condition": "virtual_contrast", "generator": "nope"},
            "no virtual-contrast generator named 'nope'",
        ),
        (
            {"condition": "virtual_contrast", "generator": "default"},
            r"case phantom-000\d.*t2 of vc are missing",
        ),
    ],
)
def test_wrong_models_and_missing_inputs_are_refused(real_models, condition: dict, words: str) -> None:
    svc, root = real_models
    spec = spec_dict(root)
    spec["conditions"] = ["real_standard_dose", condition]
    with pytest.raises(VCEInputError, match=words):
        svc.create_study(SYSTEM, spec)
    assert svc.list_studies(SYSTEM) == []  # nothing stored half-way


def test_an_injected_generator_of_the_wrong_task_is_refused(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 1)
    svc = make_service(tmp_path)  # "fakegen" is a low-dose fake, "fakevc" a virtual-contrast fake
    spec = spec_dict(tmp_path)
    spec["conditions"] = [{"condition": "virtual_contrast", "generator": "fakegen"}]
    with pytest.raises(VCEInputError, match="'fakegen' is a low-dose model; condition virtual_contrast"):
        svc.create_study(SYSTEM, spec)
    spec["conditions"] = [{"condition": "synthetic_low_dose", "generator": "fakevc", "dose": 0.33}]
    with pytest.raises(VCEInputError, match="'fakevc' is a virtual-contrast model"):
        svc.create_study(SYSTEM, spec)
    spec["conditions"] = [{"condition": "virtual_contrast", "generator": "fakevc-t2"}]
    with pytest.raises(VCEInputError, match="case phantom-0000, condition virtual_contrast: .*t2"):
        svc.create_study(SYSTEM, spec)


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_a_real_model_renders_the_slices_of_its_volume(tmp_path: Path, plane: str) -> None:
    from vce_core.synthesis import Synthesizer

    folder = write_contrast_cases(tmp_path / "cases", 1)[0]
    synth = Synthesizer.from_checkpoint(write_vc_checkpoint(tmp_path / "vc"), device="cpu")
    case = load_case(folder)
    volume = synth.synthesize_contrast(case)
    pixel = display.slice_spacing(tuple(case.native.spacing), plane)
    got = render.render_condition(case, "virtual_contrast", None, synth, plane, [3, 5])
    for g, k in zip(got, [3, 5], strict=True):
        want = display.to_display(display.take_slice(volume, plane, k), pixel)
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-2)


def _answer_all(svc: ReaderStudyService, tokens: list[str]) -> pd.DataFrame:
    for k, token in enumerate(tokens):
        actor = svc.authenticate(token)
        n = 0
        while (item := svc.next_item(actor, "t-study")).status == "item":
            said = "synthetic" if (n + k) % 3 else "real"
            answers = {
                "overall_quality": 1 + (n + k) % 5,
                "lesion_conspicuity": 3,
                "noise": 4,
                "real_or_synthetic": (said, 1 + n % 5),
            }
            svc.submit_answers(actor, "t-study", item.public_id, answers)
            n += 1
    return svc.answers_frame(SYSTEM, "t-study")


def test_vc_items_render_export_and_count_as_synthetic(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    spec = spec_dict(tmp_path, readers=2)
    spec["conditions"] = ["real_standard_dose", "real_low_dose", VC]
    out = svc.create_study(SYSTEM, spec)
    with svc.db.read() as s:
        for item, case in s.execute(select(Item, Case).join(Case, Item.case_id == Case.id)).all():
            if item.condition != "virtual_contrast":
                continue
            assert item.generator == FakeContrast.name and item.dose is None
            source = load_case(Path(case.source_path))
            volume = FakeContrast().synthesize_contrast(source)
            pixel = display.slice_spacing(tuple(source.native.spacing), case.plane)
            floats = [
                display.to_display(display.take_slice(volume, case.plane, k), pixel) for k in case.slices
            ]
            want = render.render_stack(floats, (case.window_low, case.window_high))
            pngs = s.scalars(
                select(ItemImage.png).where(ItemImage.item_id == item.id).order_by(ItemImage.position)
            )
            assert list(pngs) == want
    answers = _answer_all(svc, [r["token"] for r in out["readers"]])
    long = pd.read_csv(export.export_answers(answers, "long", tmp_path / "long.csv"), keep_default_na=False)
    vc_rows = long[long["condition"] == "virtual_contrast"]
    assert len(vc_rows) == 2 * 2 * 4 and set(vc_rows["generator"]) == {FakeContrast.name}  # readers×cases×Qs
    scores = analysis.score_summary(answers)
    assert f"virtual_contrast ({FakeContrast.name})" in set(scores["arm"])
    per_arm = scores[scores["question"] == "overall_quality"].set_index("arm")["n"]
    assert per_arm[f"virtual_contrast ({FakeContrast.name})"] == 4
    turing = analysis.turing(answers).set_index("reader")
    rvs = answers[answers["question_kind"] == "real_vs_synthetic"]
    assert turing.loc["all", "n_synthetic"] == (rvs["condition"] == "virtual_contrast").sum() == 4
    counts, _ = export.parse_imrmc(export.imrmc_text(answers))
    assert counts["N1"] == 2 and counts["N0"] == 4  # VC items are synthetic (truth 1), acquisitions real
