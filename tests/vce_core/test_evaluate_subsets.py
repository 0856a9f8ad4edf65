"""Training subsets that hold a group out (generalisation rows): links, record, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vce_core.evaluate.subsets import main, write_random_subset, write_subset

CASES = [
    ("c0", "train", 3.0, "gadobutrol"),
    ("c1", "train", 1.5, "gadoterate"),
    ("c2", "train", 1.5, "gadobutrol"),
    ("c3", "val", 3.0, "gadoterate"),
    ("c4", "test", 1.5, "gadopiclenol"),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "phantom"
    entries = []
    for case_id, split, field, agent in CASES:
        (root / split / case_id).mkdir(parents=True)
        (root / split / case_id / "case.json").write_text(json.dumps({"case_id": case_id, "agent": agent}))
        entries.append(
            {
                "case_id": case_id,
                "split": split,
                "path": f"{split}/{case_id}",
                "field_strength": field,
                "agent": agent,
            }
        )
    (root / "manifest.json").write_text(json.dumps({"cases": entries}))
    return root


def test_excludes_an_agent_and_a_field(dataset: Path, tmp_path: Path) -> None:
    record = write_subset(dataset, "agent=GADOTERATE", tmp_path / "no_gadoterate")
    assert record["cases"] == {"test": ["c4"], "train": ["c0", "c2"]}
    link = tmp_path / "no_gadoterate" / "train" / "c2"
    assert link.is_symlink() and json.loads((link / "case.json").read_text())["agent"] == "gadobutrol"
    assert not (tmp_path / "no_gadoterate" / "val").exists()
    assert (
        main(["--dataset", str(dataset), "--exclude", "field_strength=1.5", "--out", str(tmp_path / "f")])
        == 0
    )
    saved = json.loads((tmp_path / "f" / "subset.json").read_text())
    assert saved["cases"] == {"train": ["c0"], "val": ["c3"]} and saved["exclude"] == {
        "field_strength": "1.5"
    }
    assert "--exclude field_strength=1.5" in saved["command"]


@pytest.mark.parametrize("exclude", ["agent", "colour=red", "agent=gadovist", "field_strength=abc"])
def test_refusals(dataset: Path, tmp_path: Path, exclude: str) -> None:
    assert main(["--dataset", str(dataset), "--exclude", exclude, "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_refuses_missing_manifest_and_full_output(dataset: Path, tmp_path: Path) -> None:
    assert (
        main(["--dataset", str(tmp_path / "none"), "--exclude", "agent=x", "--out", str(tmp_path / "y")]) == 2
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    assert (
        main(["--dataset", str(dataset), "--exclude", "agent=gadoterate", "--out", str(tmp_path / "full")])
        == 2
    )


def test_size_matched_control(dataset: Path, tmp_path: Path) -> None:
    """The control holds as many cases per split as the subset, drawn from every group, reproducibly."""
    write_subset(dataset, "field_strength=3", tmp_path / "no_3t")  # train c1 c2, test c4
    runs = []
    for name, seed in (("a", 5), ("b", 5)):
        args = ["--dataset", str(dataset), "--size-of", str(tmp_path / "no_3t"), "--seed", str(seed)]
        assert main([*args, "--out", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name / "subset.json").read_text()))
    assert runs[0]["cases"] == runs[1]["cases"]  # the seed fixes the draw
    assert {s: len(ids) for s, ids in runs[0]["cases"].items()} == {"train": 2, "test": 1}
    assert set(runs[0]["cases"]["train"]) <= {"c0", "c1", "c2"} and runs[0]["size_of"].endswith("no_3t")
    drawn = set()
    for seed in range(30):  # over seeds, the held-out group (the 3 T case c0) is drawn too
        drawn |= set(
            write_random_subset(dataset, tmp_path / "no_3t", tmp_path / f"s{seed}", seed)["cases"]["train"]
        )
    assert drawn == {"c0", "c1", "c2"}
    link = tmp_path / "a" / "test" / "c4"
    assert link.is_symlink() and json.loads((link / "case.json").read_text())["case_id"] == "c4"


def test_control_refusals(dataset: Path, tmp_path: Path) -> None:
    base = ["--dataset", str(dataset), "--out", str(tmp_path / "x")]
    assert main([*base, "--size-of", str(tmp_path / "none")]) == 2  # no subset.json
    big = tmp_path / "big"
    big.mkdir()
    (big / "subset.json").write_text(json.dumps({"cases": {"train": ["a", "b", "c", "d"]}}))
    assert main([*base, "--size-of", str(big)]) == 2  # more cases than the split holds
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):  # one way to choose the subset, not both
        main([*base, "--size-of", str(big), "--exclude", "agent=x"])
