"""The learned-T1 diagnostic: per-tissue mean factor of a generator's T1 head against the phantom's truth."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from support import SMALL, phantom_case, write_checkpoint, write_model, write_tiny_cases
from vce_core.errors import VCEInputError
from vce_core.evaluate.t1map import LESION_LABELS, main, t1_table
from vce_core.io import load_case

C = 0.6  # constant T1-head output: factor exp(0.5 tanh C) everywhere


def _t1_model(folder: Path) -> Path:
    from vce_core.models import build_model

    torch.manual_seed(0)
    model = build_model("ld_cgan_generator", **{**SMALL, "base": "physics", "learn_t1": True})
    with torch.no_grad():
        model.t1_head[-1].weight.zero_()
        model.t1_head[-1].bias.fill_(C)
    return write_model(folder, "ld_cgan_generator", model)


def test_constant_map_against_the_tissue_table(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    case_dir = phantom_case(tmp_path_factory)
    rows = t1_table(_t1_model(tmp_path / "m"), [case_dir], dose=0.2, slices=2)
    factor = float(np.exp(0.5 * np.tanh(C)))
    labels = np.asarray(load_case(case_dir).extra["labels"].data).astype(int)
    ks = np.flatnonzero(np.isin(labels, LESION_LABELS).any(axis=(0, 1)))
    chosen = [int(ks[0]), int(ks[-1])] if ks.size > 1 else [int(ks[0])]
    by_tissue = {r["tissue"]: r for r in rows}
    # the phantom case is 3 T: true factor = T1 at 3 T / 1.85 s (docs/phantom.md tissue table)
    assert by_tissue["white_matter"]["true"] == pytest.approx(1.084 / 1.85)
    assert by_tissue["gray_matter"]["true"] == pytest.approx(1.820 / 1.85)
    for r in rows:
        assert r["field_strength"] == 3.0
        assert r["learned"] == pytest.approx(factor, rel=1e-5)
        assert r["voxels"] == int((labels[:, :, chosen] == r["label"]).sum())
        assert r["slices"] == sum(bool((labels[:, :, k] == r["label"]).any()) for k in chosen)
    lesions = [r for r in rows if r["label"] in LESION_LABELS]
    assert lesions, "the test case holds an enhancing lesion"


def test_class_head_map_is_the_table_factor_of_its_class(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A tissue-class T1 head (``t1_classes``) certain of one class gives that class's tabulated factor at
    the case's field strength on every voxel, read back through the saved checkpoint."""
    from vce_core.models import build_model
    from vce_core.models.ld_cgan import t1_class_table

    names, table = t1_class_table()
    k = names.index("meningioma")
    torch.manual_seed(0)
    model = build_model(
        "ld_cgan_generator", **{**SMALL, "base": "physics", "learn_t1": True, "t1_classes": True}
    )
    with torch.no_grad():
        model.t1_head[-1].weight.zero_()
        model.t1_head[-1].bias.zero_()
        model.t1_head[-1].bias[k] = 40.0
    folder = write_model(tmp_path / "m", "ld_cgan_generator", model)
    rows = t1_table(folder, [phantom_case(tmp_path_factory)], dose=0.2, slices=1)
    assert rows and all(r["field_strength"] == 3.0 for r in rows)
    for r in rows:
        assert r["learned"] == pytest.approx(math.exp(float(table[1, k])), rel=1e-5)


def test_bad_inputs(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    case_dir = phantom_case(tmp_path_factory)
    plain = write_checkpoint(tmp_path / "plain", {**SMALL, "base": "physics"})
    with pytest.raises(VCEInputError, match="no learned T1 map"):
        t1_table(plain, [case_dir])
    tiny = write_tiny_cases(tmp_path / "tiny", 1, shape=(16, 16, 4))[0]
    model = _t1_model(tmp_path / "m")
    with pytest.raises(VCEInputError, match="no tissue labels"):
        t1_table(model, [tiny])
    with pytest.raises(VCEInputError, match="not an existing folder"):
        t1_table(model, [tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(VCEInputError, match="no case folder"):
        t1_table(model, [tmp_path / "empty"])
    with pytest.raises(VCEInputError, match="slices"):
        t1_table(model, [case_dir], slices=0)
    from vce_core.models import build_model

    volumetric = build_model(
        "ld_cgan_generator", **{**SMALL, "spatial_dims": 3, "base": "physics", "learn_t1": True}
    )
    with pytest.raises(VCEInputError, match="3-D generator"):
        t1_table(write_model(tmp_path / "v", "ld_cgan_generator", volumetric), [case_dir])
    from vce_core.models.ld_cgan_ensemble import assemble

    textured = build_model(
        "ld_cgan_generator", **{**SMALL, "base": "physics", "learn_t1": True, "texture_sigma": 2.0}
    )
    member = write_model(tmp_path / "t", "ld_cgan_generator", textured)
    ensemble = assemble([member, member], tmp_path / "ens", name="ens")
    with pytest.raises(VCEInputError, match="ensemble of 2 generators"):
        t1_table(ensemble, [case_dir])


def test_cli(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture) -> None:
    case_dir = phantom_case(tmp_path_factory)
    model = _t1_model(tmp_path / "m")
    out = tmp_path / "t1.csv"
    assert main(["--model", str(model), "--data", str(case_dir), "--slices", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 3 | white_matter |" in printed
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["tissue"] for r in rows} >= {"white_matter", "gray_matter"}
    assert main(["--model", str(tmp_path / "nope"), "--data", str(case_dir)]) == 2
    assert "error:" in capsys.readouterr().err
