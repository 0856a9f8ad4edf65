"""Shared helpers of the reader-study tests (tiny real case folders, a fake generator) + render tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reader_study import render
from reader_study.db import open_database
from reader_study.service import ReaderStudyService
from vce_core.io import Case, Volume, save_case

SHAPE = (24, 24, 8)


def make_case(seed: int) -> Case:
    """A tiny brain-like case: a bright disc with one enhancing blob; acquired low dose 0.33."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    disc = ((i - 12) ** 2 + (j - 12) ** 2 < 81).astype(np.float32)
    native = np.repeat(disc[:, :, None] * 100.0, SHAPE[2], axis=2)
    enhancement = np.zeros(SHAPE, np.float32)
    k0 = 2 + seed % 4
    enhancement[9:14, 9:14, k0 : k0 + 2] = 80.0
    native = native + rng.normal(0, 1.0, SHAPE).astype(np.float32)
    standard = native + enhancement
    low = native + 0.33 * enhancement + rng.normal(0, 1.0, SHAPE).astype(np.float32)
    vol = lambda a: Volume(a.astype(np.float32))  # noqa: E731
    return Case(
        native=vol(native),
        standard_dose=vol(standard),
        low_doses={0.33: vol(low)},
        field_strength=3.0,
        agent="gadobutrol",
        meta={"case_id": f"phantom-{seed:04d}"},
    )


def write_cases(root: Path, n: int) -> list[Path]:
    """Write ``n`` tiny case folders under ``root/cases``."""
    folders = []
    for k in range(n):
        folder = root / "cases" / f"phantom-{k:04d}"
        save_case(make_case(k), folder)
        folders.append(folder)
    return folders


class FakeGenerator:
    """Stands in for vce_core.synthesis.Synthesizer: linear dose scaling plus seeded noise."""

    name = "fakegen-v1"

    def synthesize(self, native, standard_dose, dose, field_strength, seed=None):  # noqa: ANN001, ANN201
        rng = np.random.default_rng(seed)
        return native + dose * (standard_dose - native) + rng.normal(0, 1.0, native.shape).astype(np.float32)


def spec_dict(root: Path, name: str = "t-study", readers: int = 2, **options: object) -> dict:
    """A small spec: 3 cases × 3 conditions, 3 slices each, the default questions."""
    return {
        "name": name,
        "instructions": "Rate each image.",
        "seed": 7,
        "cases": {"glob": "cases/*"},
        "conditions": ["real_standard_dose", "real_low_dose", "synthetic_low_dose"],
        "doses": [0.33],
        "generator": "fakegen",
        "slices": {"select": "most_enhancing", "count": 3},
        "readers": [f"Reader {k + 1}" for k in range(readers)],
        "options": {"min_distance": 2, **options},
        "status": "open",
    }


def make_service(root: Path, url: str | None = None) -> ReaderStudyService:
    """A service over ``root/rs.db`` with cases under ``root`` and the fake generator."""
    db = open_database(url or f"sqlite:///{root / 'rs.db'}")
    return ReaderStudyService(db, data_root=root, generator_loader=lambda name: FakeGenerator())


LIKERT_ANSWERS = {
    "overall_quality": 4,
    "lesion_conspicuity": 3,
    "noise": 5,
    "real_or_synthetic": {"value": "real", "confidence": 4},
}


def test_png_has_no_text_chunks_and_roundtrips() -> None:
    img = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    data = render.encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
        assert chunk not in data
    np.testing.assert_array_equal(render.decode_png(data), img)


def test_same_window_for_every_condition_of_a_case() -> None:
    case = make_case(1)
    native, standard = case.native.data, case.standard_dose.data
    plane, slices = render.choose_slices(native, standard, {"select": "most_enhancing", "count": 2})
    assert plane == "axial" and slices == [3, 4]  # the enhancing blob of seed 1 sits at k = 3, 4
    window = render.case_window(standard, plane, slices)
    sd = render.render_stack(
        render.render_condition(case, "real_standard_dose", None, None, plane, slices), window
    )
    ld = render.render_stack(
        render.render_condition(case, "real_low_dose", 0.33, None, plane, slices), window
    )
    a, b = render.decode_png(sd[0]), render.decode_png(ld[0])
    # same window: background and healthy tissue map to the same grey levels, the blob is darker at low dose
    assert abs(int(np.median(a)) - int(np.median(b))) <= 2
    assert a.max() > b[a == a.max()].mean()
    with pytest.raises(Exception, match="no acquired low dose 0.1"):
        render.render_condition(case, "real_low_dose", 0.1, None, plane, slices)


def test_apply_window_identity_and_stretch() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(render.apply_window(img, 127.5, 255), img)
    narrow = render.apply_window(img, 128, 64)
    assert narrow.min() == 0 and narrow.max() == 255
