"""Exports (long, wide, iMRMC) parse back; CSV injection is neutralised; the CLI creates and exports."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reader_study import __main__ as cli
from reader_study import export
from reader_study.service import SYSTEM, ReaderStudyService
from support import LIKERT_ANSWERS, FakeGenerator, make_service, spec_dict, write_disc_cases
from vce_core.errors import VCEInputError


def _filled(tmp_path: Path) -> tuple[ReaderStudyService, pd.DataFrame]:
    write_disc_cases(tmp_path, 2)
    svc = make_service(tmp_path)
    spec = spec_dict(tmp_path, readers=2)
    spec["questions"] = [
        {"key": "overall_quality", "kind": "likert", "text": "Overall"},
        {"key": "real_or_synthetic", "kind": "real_vs_synthetic", "text": "Real or synthetic?"},
        {"key": "comment", "kind": "free_text", "text": "Comment", "required": False},
    ]
    spec["readers"] = ['=HYPERLINK("http://evil","x")', "Dr. B"]
    out = svc.create_study(SYSTEM, spec)
    comments = ["+cmd|' /C calc'!A0", "-2", "@SUM(1)", "\tTAB", "plain", "-1.5e3"]
    for k, r in enumerate(out["readers"]):
        actor = svc.authenticate(r["token"])
        n = 0
        while (item := svc.next_item(actor, "t-study")).status == "item":
            value = "synthetic" if n % 2 else "real"
            svc.submit_answers(
                actor,
                "t-study",
                item.public_id,
                {
                    "overall_quality": 1 + (n + k) % 5,
                    "real_or_synthetic": (value, 1 + n % 5),
                    "comment": comments[n % len(comments)],
                },
            )
            n += 1
    return svc, svc.answers_frame(SYSTEM, "t-study")


def test_long_wide_imrmc_roundtrip_and_injection(tmp_path: Path) -> None:
    svc, answers = _filled(tmp_path)
    n_items, n_readers = 6, 2
    long_path = export.export_answers(answers, "long", tmp_path / "long.csv")
    long = pd.read_csv(long_path, keep_default_na=False)
    assert list(long.columns) == export.LONG_COLUMNS
    assert len(long) == len(answers) == n_readers * n_items * 3
    assert set(long["condition"]) == {"real_standard_dose", "real_low_dose", "synthetic_low_dose"}
    assert set(long.loc[long["condition"] == "synthetic_low_dose", "generator"]) == {FakeGenerator.name}
    # injection: formulas get a leading apostrophe; plain negative numbers stay numbers
    assert set(long["reader"]) == {'\'=HYPERLINK("http://evil","x")', "Dr. B"}
    comments = set(long.loc[long["question"] == "comment", "value"])
    # free text is stripped by the service, so "\tTAB" arrives as "TAB"
    assert {"'+cmd|' /C calc'!A0", "'@SUM(1)", "TAB", "plain", "-2", "-1.5e3"} <= comments
    raw = long_path.read_text()
    for bad in ("\n=", ",=", ",+", ",@", ",\t"):
        assert bad not in raw
    wide = pd.read_csv(export.export_answers(answers, "wide", tmp_path / "wide.csv"), keep_default_na=False)
    assert len(wide) == n_readers * n_items
    assert {"overall_quality", "real_or_synthetic", "real_or_synthetic_confidence", "comment"} <= set(
        wide.columns
    )
    merged = long[long["question"] == "overall_quality"].merge(wide, on=["reader_id", "item", "iteration"])
    assert (merged["value"].astype(int) == merged["overall_quality"]).all()
    counts, data = export.parse_imrmc(
        export.export_answers(answers, "imrmc", tmp_path / "t.imrmc").read_text()
    )
    assert counts == {"NR": 2, "N0": 4, "N1": 2, "NM": 1}
    truth = data[data["readerID"] == "-1"]
    assert len(truth) == n_items and set(truth["modalityID"]) == {"0"} and set(truth["score"]) <= {0, 1}
    reads = data[data["readerID"] != "-1"]
    assert len(reads) == n_readers * n_items and reads["score"].between(1, 10).all()
    assert set(reads["caseID"]) == set(truth["caseID"]) == set(long["item"])


def test_neutralize_rules() -> None:
    assert export.neutralize("=1+1") == "'=1+1"
    assert export.neutralize("-1") == "-1" and export.neutralize("+0.5") == "+0.5"
    assert export.neutralize("-1+1") == "'-1+1"
    assert export.neutralize("\rX") == "'\rX" and export.neutralize("ok=1") == "ok=1"
    assert export.neutralize(-3) == -3


def test_cli_create_export_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_disc_cases(tmp_path, 2)
    spec = spec_dict(tmp_path, readers=1)
    spec["conditions"] = ["real_standard_dose", "real_low_dose"]
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["--db", db, "--data-dir", str(tmp_path)]
    assert cli.main(["create", str(spec_path), *base]) == 0  # options may follow the command
    out = capsys.readouterr().out
    assert "4 items" in out and "token " in out
    token = out.split("token ")[1].split()[0]
    svc = ReaderStudyService(cli.open_database(db), data_root=tmp_path)
    actor = svc.authenticate(token)
    item = svc.next_item(actor, "t-study")
    svc.submit_answers(actor, "t-study", item.public_id, LIKERT_ANSWERS)
    for fmt in ("long", "wide", "imrmc"):
        assert (
            cli.main([*base, "export", "--study", "t-study", "--format", fmt, "--out", str(tmp_path / fmt)])
            == 0
        )
    assert len(pd.read_csv(tmp_path / "long")) == 4
    assert "BEGIN DATA:" in (tmp_path / "imrmc").read_text()
    assert cli.main([*base, "analyze", "--study", "t-study"]) == 0
    assert cli.main([*base, "progress", "--study", "t-study"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "create", str(spec_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*base, "export", "--study", "nope", "--out", str(tmp_path / "x")]) == 2
    assert cli.main([*base, "close", "t-study"]) == 0
    assert "closed" in capsys.readouterr().out
    monkeypatch.setenv("VCE_DB_URL", db)
    buf = io.StringIO()
    monkeypatch.setattr("sys.stdout", buf)
    assert cli.main(["list"]) == 0 and "t-study" in buf.getvalue()


def test_exports_of_a_study_without_answers_say_so(study, tmp_path: Path) -> None:
    svc, _, _ = study
    answers = svc.answers_frame(SYSTEM, "t-study")
    assert answers.empty
    with pytest.raises(VCEInputError, match="no answers yet"):
        export.export_answers(answers, "imrmc", tmp_path / "x.imrmc")
    assert not (tmp_path / "x.imrmc").exists()
    assert len(pd.read_csv(export.export_answers(answers, "long", tmp_path / "x.csv"))) == 0


def test_standard_dose_items_export_their_dose(study, tmp_path: Path) -> None:
    svc, (r1, _), _ = study
    for _ in range(9):
        item = svc.next_item(r1, "t-study")
        svc.submit_answers(r1, "t-study", item.public_id, LIKERT_ANSWERS)
    long = pd.read_csv(
        export.export_answers(svc.answers_frame(SYSTEM, "t-study"), "long", tmp_path / "l.csv")
    )
    doses = long.groupby("condition")["dose"].unique()
    assert list(doses["real_standard_dose"]) == [1.0]
    assert list(doses["real_low_dose"]) == [0.33] and long["dose"].notna().all()
