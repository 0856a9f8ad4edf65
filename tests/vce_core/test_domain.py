"""Domain values: one rule each for dose (fraction, percent only at the UI edge) and field strength."""

from __future__ import annotations

import math

import pytest

from vce_core.domain import (
    DOSE_MAX_PHANTOM,
    DOSE_TOLERANCE,
    check_dose,
    check_doses,
    check_field_strength,
    check_t1_sequence,
    dose_from_percent,
    format_dose,
    match_dose,
    parse_percent_list,
)
from vce_core.errors import VCEInputError


@pytest.mark.parametrize("value", [0, 0.0, 0.33, 1, "0.5", 1.0])
def test_check_dose_accepts_fractions(value: object) -> None:
    assert check_dose(value) == float(value)


@pytest.mark.parametrize("value", [-0.01, 1.0001, 33, math.nan, math.inf, "x", None, True, [0.1]])
def test_check_dose_refuses_with_the_rule(value: object) -> None:
    with pytest.raises(VCEInputError, match=r"fraction of the standard dose in \[0, 1\]"):
        check_dose(value)


def test_positive_and_phantom_maximum() -> None:
    with pytest.raises(VCEInputError, match=r"in \(0, 1\]"):
        check_dose(0, positive=True)
    assert check_dose(2.0, maximum=DOSE_MAX_PHANTOM) == 2.0
    with pytest.raises(VCEInputError):
        check_dose(2.0)


def test_check_doses_sorts_and_deduplicates() -> None:
    assert check_doses([0.33, 0.1, 0.33]) == [0.1, 0.33]
    for bad in ([], "0.1", 0.1, [0.1, 2]):
        with pytest.raises(VCEInputError):
            check_doses(bad)


def test_percent_only_at_the_edge() -> None:
    assert dose_from_percent(33) == 0.33
    assert dose_from_percent("12.5") == 0.125
    with pytest.raises(VCEInputError, match="101 % is out of range"):
        dose_from_percent(101)
    with pytest.raises(VCEInputError):
        dose_from_percent(0, positive=True)
    assert parse_percent_list("33, 10;25 10%") == [0.1, 0.25, 0.33]
    for bad in ("", None, "ten", "0", "150"):
        with pytest.raises(VCEInputError):
            parse_percent_list(bad)
    assert format_dose(0.33) == "33 %" and format_dose(0.125) == "12.5 %" and format_dose(1) == "100 %"


def test_match_dose_uses_one_tolerance() -> None:
    acquired = [0.1, 1 / 3, 0.5]
    assert match_dose(acquired, 0.33) == pytest.approx(1 / 3)  # the slider's 33 % finds 0.333
    assert match_dose(acquired, 0.1 + DOSE_TOLERANCE * 0.99) == 0.1
    assert match_dose(acquired, 0.1 + DOSE_TOLERANCE * 1.01) is None
    assert match_dose([0.3, 0.304], 0.303) == 0.304  # nearest wins
    assert match_dose([], 0.3) is None


def test_field_strength() -> None:
    assert check_field_strength("3") == 3.0 and check_field_strength(11.7) == 11.7
    for bad in (0, -1.5, 12.5, "x", math.nan, True):
        with pytest.raises(VCEInputError, match=r"tesla in \(0, 12\]"):
            check_field_strength(bad)


def test_t1_sequence() -> None:
    assert check_t1_sequence("6.8", 8) == (6.8, 8.0) and check_t1_sequence(10000, 179.9) == (10000.0, 179.9)
    for bad in (0, -1, 10000.5, "x", math.nan, None, True):
        with pytest.raises(VCEInputError, match=r"repetition time in \(0, 10000\] ms"):
            check_t1_sequence(bad, 8)
    for bad in (0, 180, -5, math.inf, None):
        with pytest.raises(VCEInputError, match=r"flip angle in \(0, 180\)°"):
            check_t1_sequence(6.8, bad)


def test_user_message_policy(caplog: pytest.LogCaptureFixture) -> None:
    from vce_core.errors import user_message

    assert user_message(VCEInputError("dose 2 is out of range"), "x") == "dose 2 is out of range."
    with caplog.at_level("ERROR"):
        text = user_message(KeyError("/secret/path/case-17"), "opening the case")
    assert "opening the case" in text and "secret" not in text and "case-17" not in text
    reference = text.split("reference ")[1].split(" ")[0]
    assert len(reference) == 8 and any(reference in r.getMessage() for r in caplog.records)
    assert caplog.records[-1].exc_info is not None  # the traceback is in the log
