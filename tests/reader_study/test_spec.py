"""Study specs: defaults, doses as fractions of the standard dose, and bad specs refused before rendering."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reader_study.auth import SYSTEM
from reader_study.spec import (
    DEFAULT_QUESTIONS,
    DEFAULT_SLICES,
    OPTION_DEFAULTS,
    ConditionSpec,
    parse_question,
    parse_spec,
    resolve_cases,
)
from support import make_service, spec_dict, write_disc_cases
from vce_core.errors import VCEInputError


def test_bad_specs_are_refused_before_rendering(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 1)
    svc = make_service(tmp_path)
    base = spec_dict(tmp_path)
    for change, message in (
        ({"conditions": ["blurry"]}, "unknown"),
        (
            {"questions": [{"key": "q", "kind": "likert", "text": "Q", "anchors": {1: "a", 2: "b"}}]},
            "exactly",
        ),
        ({"cases": {"glob": "nothing/*"}}, "no case folder"),
        ({"options": {"warp": True}}, "options"),
        ({"conditions": ["synthetic_low_dose"], "generator": None}, "needs a generator"),
    ):
        with pytest.raises(VCEInputError, match=message):
            svc.create_study(SYSTEM, {**base, **change})
    svc.create_study(SYSTEM, base)
    with pytest.raises(VCEInputError, match="already exists"):
        svc.create_study(SYSTEM, base)


def test_defaults_of_a_minimal_spec(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 2)
    spec = parse_spec(
        "name: ' minimal '\ncases: {glob: 'cases/*', limit: 1}\nconditions: [real_standard_dose]\n", tmp_path
    )
    assert (spec.name, spec.seed, spec.status, spec.instructions, spec.readers) == (
        "minimal",
        0,
        "draft",
        "",
        [],
    )
    assert [q.key for q in spec.questions] == [q["key"] for q in DEFAULT_QUESTIONS]
    assert spec.options == OPTION_DEFAULTS and isinstance(spec.options["washout_days"], float)
    assert spec.slices == DEFAULT_SLICES
    assert spec.conditions == [ConditionSpec("real_standard_dose")]
    assert spec.case_folders == [tmp_path / "cases" / "phantom-0000"]


def test_doses_are_fractions_of_the_standard_dose(tmp_path: Path) -> None:
    write_disc_cases(tmp_path, 1)
    base = {"name": "d", "cases": {"glob": "cases/*"}}
    spec = parse_spec(
        {
            **base,
            "conditions": ["real_low_dose", {"condition": "linear_baseline", "dose": 0}],
            "doses": [0.5, 0.1],
        },
        tmp_path,
    )
    assert spec.conditions == [
        ConditionSpec("real_low_dose", 0.5),
        ConditionSpec("real_low_dose", 0.1),
        ConditionSpec("linear_baseline", 0.0),
    ]
    assert all(isinstance(c.dose, float) for c in spec.conditions)
    for bad in (1.5, -0.1, True, "a lot", float("nan")):
        with pytest.raises(
            VCEInputError,
            match=r"^study spec: dose of real_low_dose .*Expected a fraction of the standard dose",
        ):
            parse_spec({**base, "conditions": ["real_low_dose"], "doses": [bad]}, tmp_path)
    with pytest.raises(VCEInputError, match="repeat the same"):
        parse_spec({**base, "conditions": ["real_low_dose"], "doses": [0.33, 0.33]}, tmp_path)
    with pytest.raises(VCEInputError, match="needs a dose"):
        parse_spec({**base, "conditions": ["real_low_dose"]}, tmp_path)
    with pytest.raises(VCEInputError, match="doses must be a list"):
        parse_spec({**base, "conditions": ["real_low_dose"], "doses": 0.33}, tmp_path)


def test_questions_of_every_kind() -> None:
    choice = parse_question(
        {"key": "side", "kind": "single_choice", "text": " Side ", "choices": ["L", "R"]}, 0
    )
    assert (choice.text, choice.options, choice.required) == ("Side", {"choices": ["L", "R"]}, True)
    text = parse_question({"key": "note", "kind": "free_text", "text": "Note", "required": False}, 1)
    assert (text.options, text.required) == ({}, False)
    rvs = parse_question({"key": "rvs", "kind": "real_vs_synthetic", "text": "Real?"}, 2)
    assert sorted(rvs.options["confidence_anchors"]) == ["1", "2", "3", "4", "5"]
    for raw, message in (
        ({"key": "side", "kind": "single_choice", "text": "S", "choices": ["L", "L"]}, "two distinct"),
        ({"key": "not an id", "kind": "likert", "text": "Q"}, "short identifier"),
        ({"key": "q", "kind": "likert", "text": " "}, "has no text"),
        ({"key": "q", "kind": "likert", "text": "Q", "required": "yes"}, "true or false"),
    ):
        with pytest.raises(VCEInputError, match=message):
            parse_question(raw, 0)


def test_listed_cases_and_the_stored_spec(tmp_path: Path) -> None:
    folders = write_disc_cases(tmp_path, 2)
    assert resolve_cases(["cases/phantom-0001", str(folders[0])], tmp_path) == [folders[1], folders[0]]
    with pytest.raises(VCEInputError, match="same folder twice"):
        resolve_cases(["cases/phantom-0001", str(folders[1])], tmp_path)
    with pytest.raises(VCEInputError, match="case folder not found"):
        resolve_cases(["cases/nothing"], tmp_path)
    raw = {**spec_dict(tmp_path), "cases": [folders[0]], "instructions": dt.date(2026, 1, 2)}
    stored = parse_spec(raw, tmp_path).raw_json()
    assert stored["cases"] == [str(folders[0])] and stored["instructions"] == "2026-01-02"
    assert stored["options"] == {"min_distance": 2}
