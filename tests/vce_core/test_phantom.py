"""Tests of the physics-based phantom (2 mm cases, shared per module to stay fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume
from vce_core.phantom import AGENTS, SEQUENCE_PRESETS, TISSUES, LesionSpec, make_case, phantom_from_case
from vce_core.phantom.physics import enhancement_saturation

LESIONS = [
    LesionSpec(
        "glioblastoma", 14.0, center_mm=(-30.0, -15.0, 25.0), core_fraction=0.5, edema_mm=8.0, shape_seed=1
    ),
    LesionSpec("metastasis", 6.0, center_mm=(32.0, 25.0, 25.0), shape_seed=2),
    LesionSpec("metastasis", 8.0, center_mm=(-30.0, 32.0, 8.0), ring=True, shape_seed=3),
    LesionSpec("meningioma", 12.0, center_mm=(35.0, -30.0, 62.0), irregularity=0.05, shape_seed=4),
    LesionSpec("weakly_enhancing", 8.0, center_mm=(36.0, -55.0, 28.0), irregularity=0.05, shape_seed=5),
    # given in voxels of the 2 mm grid: (−36, −62, 10) mm
    LesionSpec("non_enhancing", 7.0, center_vox=(31.0, 36.0, 41.0), shape_seed=6),
]
ENHANCING = ("blood", "choroid_plexus", "dura", "enhancing_rim", "metastasis", "meningioma", "weak_lesion")


@pytest.fixture(scope="module")
def case3t():
    return make_case(
        11, field_strength=3.0, agent="gadobutrol", sequence="achieva_3t", resolution=2, lesions=LESIONS
    )


@pytest.fixture(scope="module")
def case15():
    return make_case(
        11, field_strength=1.5, agent="gadobutrol", sequence="achieva_1.5t", resolution=2, lesions=LESIONS
    )


@pytest.fixture(scope="module")
def random_case():
    return make_case(5, resolution=2, doses=(0.1, 0.25))


def _pure(case, tissue: str, level: float = 0.95) -> np.ndarray:
    frac = case.tissue_fraction(tissue)
    return frac >= min(level, 0.9 * float(frac.max()))


def test_grid_and_volumes(case3t):
    v = case3t.native
    assert v.shape == (99, 117, 95) and v.data.dtype == np.float32
    assert v.spacing == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(v.affine[:3, 3], (-98.0, -134.0, -72.0))
    assert np.all(np.diag(v.affine)[:3] == 2.0)  # RAS+
    assert sorted(case3t.low_doses) == [0.1, 0.2, 0.33]
    for name in ("t2", "flair", "adc", "labels", "ce_truth", "ce_mask"):
        assert case3t.extra[name].shape == v.shape
    brain = case3t.extra["labels"].data > 0
    assert np.all(v.data[~brain] == 0)  # skull-stripped
    assert 1.2e6 < brain.sum() * 8 < 2.2e6  # brain volume in mm³
    json.dumps(case3t.meta)


def test_signal_equation_saturation():
    """8° presets: enhancement at 0.1 mM ≈ 80–85 % of linear, at 1 mM ≈ 27–36 % (facts file)."""
    for name in ("achieva_3t", "achieva_1.5t", "ingenia_3t"):
        seq = SEQUENCE_PRESETS[name]
        for tissue in ("white_matter", "gray_matter", "enhancing_rim", "meningioma"):
            t1 = TISSUES[tissue].t1_at(seq.field_strength)
            r1 = AGENTS["gadobutrol"].r1_at(seq.field_strength)
            assert 0.77 <= enhancement_saturation(t1, r1, 0.1, seq) <= 0.86
            assert 0.25 <= enhancement_saturation(t1, r1, 1.0, seq) <= 0.36
    seq = SEQUENCE_PRESETS["ingenia_1.5t"]  # 30°, TR 15.4 ms: much closer to linear
    assert enhancement_saturation(0.884, 5.2, 0.1, seq) > 0.9


@pytest.mark.parametrize("which", ["case3t", "case15"])
def test_enhancement_monotonic_and_concave(which, request):
    case = request.getfixturevalue(which)
    doses = np.linspace(0.0, 1.5, 7)
    volumes = [case.noise_free(d).data for d in doses]
    for tissue in ENHANCING:
        sel = _pure(case, tissue)
        assert sel.sum() > 0, tissue
        curve = np.array([v[sel].mean(dtype=np.float64) for v in volumes])
        assert np.all(np.diff(curve) > 0), (tissue, curve)
        assert np.all(np.diff(curve, 2) < 0), (tissue, curve)


def test_saturation_in_images_matches_signal_equation(case3t):
    """Meningioma voxels: enhancement / linear prediction at 0.1 and 1 mM equals the equation's value."""
    sel = _pure(case3t, "meningioma", 0.999)
    c_full = TISSUES["meningioma"].c_full  # gadobutrol: 0.1 mmol/kg, enhancement factor 1
    seq = SEQUENCE_PRESETS["achieva_3t"]
    s0 = case3t.noise_free(0.0).data[sel].astype(np.float64)
    eps = 1e-3
    slope = (case3t.noise_free(eps).data[sel] - s0) / eps
    measured = {}
    for conc in (0.1, 1.0):
        dose = conc / c_full
        measured[conc] = np.median((case3t.noise_free(dose).data[sel] - s0) / (dose * slope))
        expected = enhancement_saturation(
            TISSUES["meningioma"].t1_at(3.0), AGENTS["gadobutrol"].r1_at(3.0), conc, seq
        )
        assert measured[conc] == pytest.approx(expected, rel=0.03)
    assert 0.78 < measured[0.1] < 0.86 and 0.25 < measured[1.0] < 0.36


def test_gadopiclenol_half_dose_matches_gadobutrol(case3t):
    pic = make_case(
        11, field_strength=3.0, agent="gadopiclenol", sequence="achieva_3t", resolution=2, lesions=LESIONS
    )
    np.testing.assert_array_equal(pic.noise_free(0.0).data, case3t.noise_free(0.0).data)  # same subject
    dota = make_case(
        11, field_strength=3.0, agent="gadoterate", sequence="achieva_3t", resolution=2, lesions=LESIONS
    )
    for tissue in ("meningioma", "metastasis", "enhancing_rim", "blood"):
        sel = _pure(case3t, tissue)
        ref = case3t.extra["ce_truth"].data[sel].mean()
        # R1 change r1·C: 11.6 × 0.5 vs 5.0 × 1 at 3 T (+16 %), compressed by saturation
        ratio = pic.extra["ce_truth"].data[sel].mean() / ref
        assert 0.95 < ratio < 1.2, (tissue, ratio)
        # gadoterate: r1 3.5 vs 5.0 (−30 %), again compressed by saturation
        assert 0.7 < dota.extra["ce_truth"].data[sel].mean() / ref < 0.9


def test_non_enhancing_tissue_changes_by_noise_only(case3t):
    native0, sd0 = case3t.noise_free(0.0).data, case3t.noise_free(1.0).data
    sigma = case3t.noise_sigma
    for tissue in ("csf", "nonenhancing_lesion"):
        frac = case3t.tissue_fraction(tissue)
        whole = frac >= 0.99999
        if tissue == "nonenhancing_lesion":
            assert whole.sum() > 20
            np.testing.assert_array_equal(sd0[whole], native0[whole])  # zero concentration: no change at all
        sel = frac >= 0.95
        assert sel.sum() > 20
        assert np.all(np.abs(sd0[sel] - native0[sel]) < 0.03 * native0[sel])  # ≤ 5 % enhancing neighbours
        diff = case3t.standard_dose.data[sel] - case3t.native.data[sel]
        assert abs(diff.mean()) < 4 * sigma * np.sqrt(2.0 / sel.sum())
        assert diff.std() == pytest.approx(np.sqrt(2) * sigma, rel=0.2)
    # absolute enhancement (a.u., pure WM native = 1000): necrosis and edema barely enhance
    gain = {
        t: (sd0 - native0)[_pure(case3t, t)].mean()
        for t in ("necrosis", "edema", "white_matter", "enhancing_rim")
    }
    assert gain["enhancing_rim"] > 500
    assert gain["necrosis"] < 0.3 * gain["enhancing_rim"]
    assert gain["edema"] < 0.1 * gain["enhancing_rim"]
    assert gain["edema"] == pytest.approx(gain["white_matter"], rel=0.5)


def test_weak_lesion_visible_at_standard_dose_lost_at_10_percent(case3t):
    sel = _pure(case3t, "weak_lesion")
    noise = np.sqrt(2) * case3t.noise_sigma  # SD of a difference of two acquisitions
    cnr = {
        d: (case3t.noise_free(d).data[sel] - case3t.noise_free(0.0).data[sel]).mean() / noise
        for d in (0.1, 1.0)
    }
    assert cnr[1.0] > 3.0 and cnr[0.1] < 1.0


def test_background_is_rician_with_custom_sequence():
    from vce_core.phantom import Sequence

    seq = Sequence("custom", tr_ms=20.0, te_ms=4.0, flip_deg=25.0)
    case = make_case(
        3, resolution=2, lesions=[], skull_strip=False, field_strength=1.5, sequence=seq, doses=(0.5,)
    )
    assert case.meta["sequence"]["tr_ms"] == 20.0 and case.field_strength == 1.5 and case.lesions == []
    assert isinstance(case.low_doses[0.5], Volume)
    with pytest.raises(VCEInputError):
        Sequence("bad", tr_ms=5.0, te_ms=6.0, flip_deg=10.0)
    sigma = case.noise_sigma
    assert sigma == pytest.approx(1000 / 30)
    far = case.noise_free(1.0).data == 0
    bg = case.native.data[far]
    assert bg.size > 300_000
    assert bg.mean() / sigma == pytest.approx(np.sqrt(np.pi / 2), rel=0.01)  # 1.253
    assert bg.std() / sigma == pytest.approx(np.sqrt(2 - np.pi / 2), rel=0.01)  # 0.655
    other = case.low_doses[0.5].data[far]
    assert abs(np.corrcoef(bg, other)[0, 1]) < 0.01  # independent realisations


def test_snr_higher_at_3t(case3t, case15):
    snr = {}
    for fs, case in ((3.0, case3t), (1.5, case15)):
        wm = _pure(case, "white_matter", 0.99)
        noise = case.acquire(0.0, noise_seed=1).data[wm] - case.native.data[wm]
        snr[fs] = case.noise_free(0.0).data[wm].mean() / (noise.std() / np.sqrt(2))
    assert snr[3.0] == pytest.approx(50, rel=0.1)
    assert snr[1.5] == pytest.approx(30, rel=0.1)
    assert snr[3.0] > snr[1.5]


def test_determinism_and_replay(random_case, case3t):
    again = phantom_from_case(random_case)
    assert again is not None
    for a, b in ((random_case.native, again.native), (random_case.low_doses[0.25], again.low_doses[0.25])):
        np.testing.assert_array_equal(a.data, b.data)
    for name in ("labels", "t2", "flair", "adc"):
        np.testing.assert_array_equal(random_case.extra[name].data, again.extra[name].data)
    assert not np.array_equal(random_case.native.data, case3t.native.data)
    assert not np.array_equal(
        random_case.extra["labels"].data > 0, case3t.extra["labels"].data > 0
    )  # deformation
    np.testing.assert_array_equal(random_case.acquire(0.4).data, random_case.acquire(0.4).data)
    assert not np.array_equal(random_case.acquire(0.4).data, random_case.acquire(0.4, noise_seed=2).data)
    args = random_case.meta["phantom"]["arguments"]
    assert args["field_strength"] is None and args["lesions"] is None
    resolved = random_case.meta["phantom"]["resolved"]
    assert resolved["field_strength"] == random_case.field_strength and resolved["agent"] == random_case.agent
    assert phantom_from_case(Case(native=random_case.native, standard_dose=random_case.standard_dose)) is None


# Pinned from the simulator as it was before its functions were split (issue 11): a change in any of
# these numbers means the same seed no longer gives the same subject. Float statistics carry a relative
# tolerance of 1e-6 (platforms may differ in the last bit of a float32 exp or cos); counts are exact.
PINNED_SEED_5 = {
    "native": (214.3427839835553, 401.58618074379757),
    "standard_dose": (233.45649235551372, 439.57231875560467),
    "low 0.1": (216.9212033234657, 406.38147636251745),
    "t2": (331.2490634563414, 636.0960552047463),
    "flair": (263.88194992742694, 505.95091753754525),
    "adc": (0.22622316884985408, 0.45621851657794443),
    "ce_truth": (19.125751823071308, 64.90510814963879),
}
PINNED_LABEL_COUNTS_SEED_5 = {0: 852249, 1: 11920, 2: 144342, 3: 80941, 4: 1310, 5: 249, 6: 6328, 11: 3046}
PINNED_RANDOM_LESIONS = {
    20: [("glioblastoma", 18.17, (-19.96, -45.4, 4.47)), ("weakly_enhancing", 8.13, (-8.56, 18.83, 30.45))],
    22: [
        ("metastasis", 8.8, (-33.71, 13.87, 12.81)),
        ("metastasis", 6.96, (17.8, -58.1, 64.13)),
        ("metastasis", 9.33, (12.79, -39.36, 26.71)),
        ("metastasis", 7.7, (-21.48, 26.95, -12.77)),
    ],
}


def test_same_seed_gives_the_pinned_subject(random_case):
    resolved = random_case.meta["phantom"]["resolved"]
    assert (resolved["field_strength"], resolved["agent"], resolved["sequence"]["name"]) == (
        1.5,
        "gadopiclenol",
        "achieva_1.5t",
    )
    assert resolved["lesions"] == [
        {
            "kind": "meningioma",
            "radius_mm": 18.35,
            "center_mm": pytest.approx([57.66993462399586, -78.09338861907231, 19.7176973366157], rel=1e-9),
            "center_vox": None,
            "enhancement": 1.084,
            "ring": False,
            "core_fraction": 0.55,
            "edema_mm": None,
            "irregularity": 0.05,
            "shape_seed": 1340465542,
        }
    ]
    volumes = {
        "native": random_case.native,
        "standard_dose": random_case.standard_dose,
        "low 0.1": random_case.low_doses[0.1],
        **{k: random_case.extra[k] for k in ("t2", "flair", "adc", "ce_truth")},
    }
    for name, (mean, std) in PINNED_SEED_5.items():
        data = volumes[name].data.astype(np.float64)
        assert (data.mean(), data.std()) == pytest.approx((mean, std), rel=1e-6), name
    labels, counts = np.unique(random_case.extra["labels"].data.astype(int), return_counts=True)
    assert dict(zip(labels.tolist(), counts.tolist(), strict=True)) == PINNED_LABEL_COUNTS_SEED_5
    assert random_case.noise_sigma == pytest.approx(1000 / 30)


@pytest.mark.parametrize("seed", sorted(PINNED_RANDOM_LESIONS))
def test_random_lesions_are_pinned_by_the_seed(seed):
    lesions = make_case(seed, resolution=2, doses=(0.1,)).lesions
    got = [(spec.kind, spec.radius_mm, spec.center_mm) for spec in lesions]
    assert len(got) == len(PINNED_RANDOM_LESIONS[seed])
    for (kind, radius, center), expected in zip(got, PINNED_RANDOM_LESIONS[seed], strict=True):
        assert (kind, radius) == expected[:2]
        np.testing.assert_allclose(center, expected[2], atol=0.006)


def test_labels_cover_every_lesion(case3t, random_case):
    for case in (case3t, random_case):
        labels = case.extra["labels"].data
        for i, spec in enumerate(case.lesions):
            inside = case.lesion_fraction(i) >= 0.5
            for tissue in TISSUES_BY_KIND[spec.kind]:
                assert np.any(labels[inside] == TISSUES[tissue].label), (spec.kind, tissue)
        bad = case.extra["ce_mask"].data.astype(bool) & ~np.isin(labels, [4, 5, 6, 7, 10, 11, 12])
        assert not bad.any()
    ring = case3t.lesion_fraction(2) >= 0.5
    assert np.any(case3t.extra["labels"].data[ring] == TISSUES["necrosis"].label)
    assert np.any(case3t.extra["labels"].data == TISSUES["edema"].label)


TISSUES_BY_KIND = {
    "glioblastoma": ("enhancing_rim", "necrosis"),
    "metastasis": ("metastasis",),
    "meningioma": ("meningioma",),
    "weakly_enhancing": ("weak_lesion",),
    "non_enhancing": ("nonenhancing_lesion",),
}


def test_explicit_lesions_are_placed_where_asked(case3t):
    affine = case3t.native.affine
    for i, spec in enumerate(case3t.lesions):
        frac = case3t.lesion_fraction(i)
        centroid_vox = np.average(np.argwhere(frac > 0), axis=0, weights=frac[frac > 0])
        if spec.center_vox is not None:
            asked = np.array(spec.center_vox)
        else:
            asked = np.linalg.solve(affine[:3, :3], np.array(spec.center_mm) - affine[:3, 3])
        assert np.linalg.norm(centroid_vox - asked) < 1.0, spec.kind
        volume_mm3 = frac.sum() * 8.0
        nominal = 4 / 3 * np.pi * spec.radius_mm**3
        assert 0.5 * nominal < volume_mm3 < 1.6 * nominal, spec.kind


def test_ce_mask_finds_enhancing_lesions_and_vessels(case3t):
    from vce_core.preprocess import ce_mask

    found = np.asarray(ce_mask(case3t.native.data, case3t.standard_dose.data, threshold=0.1), dtype=bool)
    labels = case3t.extra["labels"].data
    for tissue in ("enhancing_rim", "metastasis", "meningioma", "blood"):
        sel = labels == TISSUES[tissue].label
        assert found[sel].mean() > 0.5, tissue
    csf = _pure(case3t, "csf")
    assert found[csf].mean() < 0.05


def test_acquire_slice(case3t):
    sigma = case3t.noise_sigma
    for plane, index, take in (
        ("axial", 50, lambda v: v[:, :, 50]),
        ("coronal", 60, lambda v: v[:, 60, :]),
        ("sagittal", 49, lambda v: v[49, :, :]),
    ):
        for dose in (0.0, 0.15, 1.0):
            nf = case3t.noise_free_slice(dose, plane, index)
            np.testing.assert_allclose(nf, take(case3t.noise_free(dose).data), rtol=1e-5, atol=1e-3)
            noisy = case3t.acquire_slice(dose, plane, index)
            np.testing.assert_array_equal(noisy, case3t.acquire_slice(dose, plane, index))
            brain = nf > 5 * sigma
            diff = noisy[brain] - nf[brain]
            assert diff.std() == pytest.approx(sigma, rel=0.1)
            assert abs(diff.mean()) < 0.1 * sigma
            assert np.all(noisy[nf == 0] == 0)
    assert not np.array_equal(
        case3t.acquire_slice(0.3, "axial", 50), case3t.acquire_slice(0.3, "axial", 50, noise_seed=1)
    )


def test_case_pickles_and_deep_copies(random_case):
    import copy
    import pickle

    random_case.acquire_slice(0.3, "axial", 40)  # fills the slice cache (holds a lock)
    for clone in (copy.deepcopy(random_case), pickle.loads(pickle.dumps(random_case))):
        np.testing.assert_array_equal(
            clone.acquire_slice(0.3, "axial", 40), random_case.acquire_slice(0.3, "axial", 40)
        )


def test_bias_field_and_contrasts(case3t):
    wm = _pure(case3t, "white_matter", 0.99)
    native = case3t.noise_free(0.0).data[wm]
    assert native.mean() == pytest.approx(1000, rel=0.1) and 0.02 < native.std() / native.mean() < 0.2
    csf = _pure(case3t, "csf")
    flair, t2, adc = (case3t.extra[k].data for k in ("flair", "t2", "adc"))
    assert flair[csf].mean() < 0.15 * flair[wm].mean()  # CSF nulled
    assert t2[csf].mean() > 2 * t2[wm].mean()
    edema = _pure(case3t, "edema", 0.7)
    assert flair[edema].mean() > 1.3 * flair[wm].mean()
    assert adc[csf].mean() == pytest.approx(3.0, rel=0.05) and adc[wm].mean() == pytest.approx(0.7, rel=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"doses": (0.1, -0.2)},
        {"doses": (0.1, 1.5)},
        {"doses": (0.1, 0.1)},
        {"agent": "gadolinium-x"},
        {"field_strength": 7.0},
        {"sequence": "nonexistent"},
        {"sequence": "achieva_3t", "field_strength": 1.5},
        {"resolution": 1.5},
        {"lesions": ["glioma"]},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(VCEInputError):
        make_case(0, **kwargs)


def test_slice_cache_is_bounded_and_not_copied(random_case):
    import copy

    subject = random_case._subject
    subject._slice_cache.clear()
    for index in range(20):
        random_case.noise_free_slice(0.5, "axial", index)
    assert len(subject._slice_cache) == 16
    assert ("axial", 19) in subject._slice_cache and ("axial", 3) not in subject._slice_cache
    assert len(copy.deepcopy(random_case)._subject._slice_cache) == 0


def test_domain_rules_with_the_phantom_limits():
    from vce_core.phantom.case import check_low_doses
    from vce_core.phantom.physics import check_dose, check_field_strength

    assert check_dose(2.0) == 2.0 and check_dose("0.5") == 0.5
    with pytest.raises(VCEInputError, match=r"dose 2.5 is out of range.*\[0, 2\]"):
        check_dose(2.5)
    assert check_field_strength("3") == 3.0 and check_field_strength(1.5000001) == 1.5
    with pytest.raises(VCEInputError, match="field strength 7.0 T is not tabulated. Expected 1.5 or 3.0"):
        check_field_strength(7.0)  # a field strength of the domain, but not of the phantom's tables
    with pytest.raises(VCEInputError, match=r"field strength 20 T is out of range.*\(0, 12\]"):
        check_field_strength(20)
    with pytest.raises(VCEInputError, match="not a number"):
        check_field_strength("strong")
    assert check_low_doses([0.33, 0.1]) == [0.33, 0.1]  # the order given is the order replayed
    assert check_low_doses([]) == []
    for bad in ([0.1, 0.0], [1.01], [0.1, 0.1], 0.1, ["a"]):
        with pytest.raises(VCEInputError):
            check_low_doses(bad)


def test_cli_refuses_bad_doses(tmp_path, capsys):
    from vce_core.phantom.__main__ import default_split, main

    assert main(["--out", str(tmp_path / "ds"), "--cases", "1", "--doses", "0.1", "1.5"]) == 2
    assert "low dose 1.5 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
    assert default_split(60) == (40, 10, 10) and default_split(1) == (0, 0, 1)


def test_bad_calls(random_case):
    for dose in (-0.01, 2.5, float("nan")):
        with pytest.raises(VCEInputError):
            random_case.acquire(dose)
    with pytest.raises(VCEInputError):
        random_case.acquire_slice(0.5, "oblique", 3)
    with pytest.raises(VCEInputError):
        random_case.acquire_slice(0.5, "axial", 95)
    with pytest.raises(VCEInputError):
        make_case(-1)
    with pytest.raises(VCEInputError):
        LesionSpec("glioblastoma", 10.0)
    with pytest.raises(VCEInputError):
        LesionSpec("tumour", 10.0, center_mm=(0, 0, 0))
    with pytest.raises(VCEInputError):
        LesionSpec("metastasis", 0.1, center_mm=(0, 0, 0))
    assert (
        random_case.acquire(2.0).data.max() > random_case.acquire(1.0).data.max() * 0.9
    )  # double dose allowed


def test_cli_writes_dataset(tmp_path):
    from vce_core.io import load_case
    from vce_core.phantom.__main__ import main

    out = tmp_path / "ds"
    argv = ["--out", str(out), "--cases", "3", "--seed", "0", "--split", "1/1/1", "--resolution", "2"]
    argv += ["--doses", "0.1", "0.33", "--dtype", "int16"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["split"] for c in manifest["cases"]] == ["train", "val", "test"]
    assert manifest["arguments"]["split"] == [1, 1, 1]
    ids = [c["case_id"] for c in manifest["cases"]]
    assert ids == ["phantom-s0-0000", "phantom-s0-0001", "phantom-s0-0002"]
    assert len({c["seed"] for c in manifest["cases"]}) == 3
    entry = manifest["cases"][1]
    loaded = load_case(out / entry["path"])
    assert sorted(loaded.low_doses) == [0.1, 0.33]
    replay = phantom_from_case(loaded)
    assert replay is not None
    step = float(replay.native.data.max()) / 32767  # int16 storage: error ≤ half a step
    np.testing.assert_allclose(loaded.native.data, replay.native.data, rtol=0, atol=step)
    np.testing.assert_array_equal(np.rint(loaded.extra["labels"].data), replay.extra["labels"].data)
    assert main(argv) == 2  # refuses to overwrite without --force
