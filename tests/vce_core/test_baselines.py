"""Dose baselines: the SPGR inversion against the phantom's own signal equation and noise-free images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vce_core.baselines import (
    DEFAULT_T1_S,
    case_sequence,
    linear_baseline,
    physics_baseline,
    physics_baseline_for_case,
    spgr_r1,
    spgr_relative_signal,
)
from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume, load_case, save_case
from vce_core.phantom import SEQUENCE_PRESETS, TISSUES, LesionSpec, make_case
from vce_core.phantom.physics import spgr_signal

LESIONS = [
    LesionSpec("metastasis", 7.0, center_mm=(30, 10, 20)),
    LesionSpec("meningioma", 12.0, center_mm=(-20, 20, 45)),
    LesionSpec("glioblastoma", 16.0, center_mm=(-25, -30, 10)),
]


@pytest.fixture(scope="module")
def case_8deg() -> Case:
    """2 mm phantom at 3 T, 8° (Achieva): the strongly saturating protocol where linear fails."""
    return make_case(11, resolution=2, sequence="achieva_3t", agent="gadobutrol", lesions=LESIONS)


@pytest.mark.parametrize("preset", sorted(SEQUENCE_PRESETS))
def test_signal_equation_matches_the_phantom_and_inverts(preset: str) -> None:
    seq = SEQUENCE_PRESETS[preset]
    r1 = np.geomspace(0.2, 80.0, 200)
    # the phantom's own SPGR equation with PD 1 and no T2* decay is the reference
    assert spgr_relative_signal(r1, seq) == pytest.approx(spgr_signal(1.0, r1, 1e12, seq), rel=1e-12)
    assert spgr_r1(spgr_relative_signal(r1, seq), seq) == pytest.approx(r1, rel=1e-8)
    assert spgr_relative_signal(r1, seq.to_dict()) == pytest.approx(spgr_relative_signal(r1, preset))


def _true_t1_map(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """T1 (s) of each voxel's dominant tissue, and the voxels made of one tissue only (fraction ≥ 0.999)."""
    labels = case.extra["labels"].data.astype(int)
    t1 = np.ones(labels.shape)
    pure = np.zeros(labels.shape, dtype=bool)
    for tissue in TISSUES.values():
        here = labels == tissue.label
        t1[here] = tissue.t1_at(case.field_strength)
        pure |= here & (case.tissue_fraction(tissue.name) >= 0.999)
    return t1, pure


def test_true_t1_reproduces_noise_free_images(case_8deg: Case) -> None:
    t1, pure = _true_t1_map(case_8deg)
    nat, sd = case_8deg.noise_free(0.0).data, case_8deg.noise_free(1.0).data
    seq = case_8deg.meta["sequence"]
    for dose in (0.1, 0.33, 0.5):
        truth = case_8deg.noise_free(dose).data
        out = physics_baseline(nat, sd, dose, seq, t1_native_s=t1)
        assert np.abs(out - truth)[pure].max() < 1e-3 * truth[pure].max()
        linear = linear_baseline(nat, sd, dose)
        enhancing = pure & np.isin(case_8deg.extra["labels"].data, [7, 10, 11])
        assert np.abs(linear - truth)[enhancing].mean() > 50 * np.abs(out - truth)[enhancing].mean()


def test_default_prior_on_lesions(case_8deg: Case) -> None:
    """Assumed T1 (enhancing tumour): within 5 % on rim (partial volume with necrosis) and 10 % on metastasis,
    5–20 % low on meningioma (shorter T1), far better than linear on all three."""
    nat, sd = case_8deg.noise_free(0.0).data, case_8deg.noise_free(1.0).data
    labels = case_8deg.extra["labels"].data.astype(int)
    for dose in (0.1, 0.33):
        truth = case_8deg.noise_free(dose).data
        out = physics_baseline(nat, sd, dose, case_8deg.meta["sequence"], field_strength=3.0)
        linear = linear_baseline(nat, sd, dose)
        for label, low, high in ((7, 0.95, 1.01), (10, 0.9, 1.0), (11, 0.8, 0.95)):
            m = labels == label
            e_true = (truth - nat)[m].mean()
            assert low < (out - nat)[m].mean() / e_true < high
            assert (linear - nat)[m].mean() / e_true < 0.75  # saturation: linear underestimates a lot


def test_end_doses_and_fallback() -> None:
    rng = np.random.default_rng(0)
    nat = rng.uniform(500, 1000, (6, 7, 5)).astype(np.float32)
    sd = (nat * rng.uniform(1.0, 2.0, nat.shape)).astype(np.float32)
    nat[0, 0, 0], sd[0, 0, 0] = 1.0, 3.0  # at or below min_signal: linear
    kw = {"sequence": "achieva_1.5t", "field_strength": 1.5}
    assert physics_baseline(nat, sd, 0.0, **kw) == pytest.approx(nat, rel=1e-5)
    assert physics_baseline(nat, sd, 1.0, **kw) == pytest.approx(sd, rel=1e-4)
    half = physics_baseline(nat, sd, 0.5, **kw)
    assert half[0, 0, 0] == pytest.approx(2.0)
    # saturation: half the dose gives more than half the enhancement
    assert np.all((half - nat)[1:] > 0.5 * (sd - nat)[1:])


def test_case_folder_round_trip(tmp_path: Path, case_8deg: Case) -> None:
    small = Case(
        native=Volume(case_8deg.native.data[:, :, 40:44]),
        standard_dose=Volume(case_8deg.standard_dose.data[:, :, 40:44]),
        low_doses={0.1: Volume(case_8deg.low_doses[0.1].data[:, :, 40:44])},
        field_strength=3.0,
        meta={"case_id": "x", "sequence": case_8deg.meta["sequence"]},
    )
    save_case(small, tmp_path / "x")
    loaded = load_case(tmp_path / "x")
    expected = physics_baseline(small.native, small.standard_dose, 0.2, "achieva_3t", field_strength=3.0)
    assert physics_baseline_for_case(loaded, 0.2) == pytest.approx(expected, rel=1e-6)
    loaded.meta.pop("sequence")
    with pytest.raises(VCEInputError, match="sequence"):
        physics_baseline_for_case(loaded, 0.2)
    assert case_sequence(small)["tr_ms"] == 6.8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t1_native_s": -1.0}, "T1"),
        ({"t1_native_s": np.ones((2, 2))}, "shape"),
        ({"field_strength": 7.0}, "7 T"),
        ({}, "field strength"),
        ({"field_strength": 3.0, "sequence": {"tr_ms": 5.0}}, "sequence"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    nat = np.full((3, 3, 3), 100.0, np.float32)
    args = {"sequence": "achieva_3t", **kwargs}
    with pytest.raises(VCEInputError, match=match):
        physics_baseline(nat, nat * 1.5, 0.1, **args)
    with pytest.raises(VCEInputError):
        physics_baseline(nat, nat[:2], 0.1, "achieva_3t", field_strength=3.0)
    assert set(DEFAULT_T1_S) == {1.5, 3.0}
