"""Datasets over case folders: shapes, dtypes, residual definition, split by case, brain slices, inversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from support import TINY_DOSES, TINY_SHAPE, record_sequence, write_tiny_cases
from vce_core.data import (
    PatchDataset,
    ResumableSampler,
    SliceDataset,
    apply_normalization,
    find_case_folders,
    fit_normalization,
    invert_normalization,
    prepare_case,
    split_by_case,
)
from vce_core.errors import VCEInputError
from vce_core.io import load_case


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_tiny_cases(tmp_path_factory.mktemp("cases"), 3)


def test_normalization_is_affine_and_inverts(cases: list[Path]) -> None:
    case = load_case(cases[0])
    native = case.native.data
    brain = native > 50
    for method in ("percentile", "zscore"):
        params = fit_normalization(native, brain, method)
        y = apply_normalization(case.standard_dose.data, params)
        np.testing.assert_allclose(
            invert_normalization(y, params), case.standard_dose.data, rtol=1e-5, atol=1e-3
        )
    with pytest.raises(VCEInputError):
        fit_normalization(native, brain, "sigmoid")


def test_slice_dataset_shapes_residual_and_brain_slices(cases: list[Path]) -> None:
    ds = SliceDataset(cases, crop=16, dtype="float32", flips=False)
    s = ds[0]
    assert s["native"].shape == (1, 16, 16) and s["native"].dtype == torch.float32
    assert s["standard_dose"].shape == (1, 16, 16) and s["residual"].shape == (1, 16, 16)
    assert s["brain"].dtype == torch.bool and s["dose"].dtype == torch.float32 and s["dose"].ndim == 0
    assert min(abs(float(s["dose"]) - d) for d in TINY_DOSES) < 1e-6 and float(s["field_strength"]) in (
        1.5,
        3.0,
    )
    # every indexed slice is a brain slice, and there are (doses × brain slices) items per case
    for ci, _dose, k in ds.items:
        prep = ds.case(ci)
        assert prep.brain[:, :, k].mean() > ds.brain_fraction
    # y_LD = x_LD − x_NA in normalised units (full slices, float32 cache)
    full = SliceDataset(cases[:1], crop=None, dtype="float32")
    case = load_case(cases[0])
    prep = full.case(0)
    ci, dose, k = full.items[len(full.items) // 2]
    s = full[len(full.items) // 2]
    (i0, i1), (j0, j1), (k0, _) = prep.bbox
    x_na = apply_normalization(case.native.data[i0:i1, j0:j1, k0 + k], prep.params)
    x_ld = apply_normalization(case.low_doses[dose].data[i0:i1, j0:j1, k0 + k], prep.params)
    h, w = x_na.shape
    assert s["native"].shape[1] % 8 == 0 and s["native"].shape[2] % 8 == 0
    np.testing.assert_allclose(s["residual"][0, :h, :w].numpy(), x_ld - x_na, atol=1e-5)
    np.testing.assert_allclose(s["native"][0, :h, :w].numpy(), x_na, atol=1e-6)


def test_stack_and_patch_datasets(cases: list[Path]) -> None:
    stack = SliceDataset(cases[:1], context=1, crop=8, flips=True)
    s = stack[(3, 123)]
    assert s["native"].shape == (3, 8, 8) and s["residual"].shape == (1, 8, 8)
    # a sample is a pure function of its key
    assert torch.equal(stack[(3, 123)]["native"], s["native"])
    patches = PatchDataset(cases[:1], crop=16, patches_per_case=2)
    p = patches[0]
    assert p["native"].shape == (1, 16, 16, 16) and p["residual"].shape == (1, 16, 16, 16)
    assert len(patches) == 2 * len(TINY_DOSES)
    with pytest.raises(VCEInputError):
        SliceDataset(cases[:1], crop=12)
    # an empty or impossible patch schedule is refused up front, not an IndexError at the first batch
    for bad in ({"patches_per_case": 0}, {"patches_per_case": -2}, {"patches_per_case": 2.5}):
        with pytest.raises(VCEInputError, match="patches_per_case"):
            PatchDataset(cases[:1], crop=16, **bad)
    # patch centres: on a brain voxel with brain_probability (seed 000's 0.9), else anywhere in the volume
    assert PatchDataset.brain_probability == 0.9
    case, rng = patches.case(0), np.random.default_rng(0)
    half = patches.crop // 2

    def in_brain_share(probability: float) -> float:
        patches.brain_probability = probability
        centres = [np.add(patches._window(case, rng)[0], half) for _ in range(200)]
        return float(np.mean([case.brain[tuple(c)] for c in centres]))

    assert in_brain_share(1.0) == 1.0
    uniform = in_brain_share(0.0)
    assert uniform < 0.9 and abs(uniform - case.brain.mean()) < 0.1  # a uniform voxel is brain by chance


def test_split_by_case_and_sampler(cases: list[Path], tmp_path: Path) -> None:
    folders = find_case_folders(cases[0].parent)
    assert len(folders) == 3
    train, val = split_by_case(folders, 0.34, seed=1)
    assert len(val) == 1 and not set(train) & set(val)
    ds = SliceDataset(val, crop=8)
    assert set(ds.case_ids) == {load_case(val[0]).meta["case_id"]}
    with pytest.raises(VCEInputError):
        find_case_folders(tmp_path / "missing")
    # resumable sampler: restarting at t continues the same stream; ranks are disjoint within an epoch
    full = list(zip(range(10), ResumableSampler(7, seed=3), strict=False))
    restarted = list(zip(range(4), ResumableSampler(7, seed=3, start=6), strict=False))
    assert [k for _, k in full[6:]] == [k for _, k in restarted]
    r0 = [k[0] for _, k in zip(range(3), ResumableSampler(6, rank=0, world_size=2), strict=False)]
    r1 = [k[0] for _, k in zip(range(3), ResumableSampler(6, rank=1, world_size=2), strict=False)]
    assert sorted(r0 + r1) == list(range(6))


def test_prepare_case_float16_cache(cases: list[Path]) -> None:
    prep = prepare_case(cases[1])
    assert prep.native.dtype == np.float16 and prep.brain.dtype == bool
    assert prep.shape[0] <= TINY_SHAPE[0] and set(prep.residuals) == set(TINY_DOSES)


def test_ce_focus_centres_crops_on_enhancement(cases: list[Path]) -> None:
    """With ce_focus=1 every crop that can be centred on enhancement shows it; uniform crops often miss it."""

    def enhancing_share(ds: SliceDataset) -> float:
        hits = 0
        for idx in range(len(ds.items)):
            s = ds[idx]
            enh = (s["standard_dose"][0] - s["native"][0]).numpy()
            hits += bool((enh > 0.3).any())
        return hits / len(ds.items)

    uniform = SliceDataset(cases, crop=8, dtype="float32", flips=False, ce_focus=0.0)
    focused = SliceDataset(cases, crop=8, dtype="float32", flips=False, ce_focus=1.0)
    with_enhancement = sum(
        bool(
            (
                (focused.case(ci).standard_dose[:, :, k] - focused.case(ci).native[:, :, k]).astype(
                    np.float32
                )
                > 0.3
            ).any()
        )
        for ci, _d, k in focused.items
    ) / len(focused.items)
    assert enhancing_share(focused) >= 0.9 * with_enhancement
    assert enhancing_share(focused) > enhancing_share(uniform) + 0.1
    with pytest.raises(VCEInputError):
        SliceDataset(cases, crop=8, ce_focus=1.5)


def test_case_cache_is_bounded_and_datasets_pickle(cases: list[Path]) -> None:
    import pickle

    ds = SliceDataset(cases, crop=8, flips=True, cache_size=2)
    assert len(ds._cache) == 2 and 0 not in ds._cache and 2 in ds._cache  # least recently used evicted
    ds.case(0)
    assert 0 in ds._cache and 1 not in ds._cache
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers started by spawn receive the dataset so
    assert len(clone._cache) == 0 and clone.items == ds.items
    for key in ((0, 5), (len(ds) - 1, 9)):
        a, b = ds[key], clone[key]
        assert a["case_id"] == b["case_id"]
        for name in ("native", "standard_dose", "residual", "brain", "dose", "field_strength"):
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


# ======================================================================================== virtual contrast
@pytest.fixture(scope="module")
def vc_cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from support import write_contrast_cases

    return write_contrast_cases(tmp_path_factory.mktemp("vc"), 2, shape=(24, 24, 12))


def test_input_names_parse_and_leaks_are_refused() -> None:
    from vce_core.data import InputSpec, check_inputs, parse_input

    assert parse_input("t2") == InputSpec("t2", "t2") and not parse_input("t2").is_t1
    spec = parse_input("low_dose@0.33")
    assert spec.role == "low_dose" and spec.dose == pytest.approx(0.33) and spec.is_t1
    assert [s.name for s in check_inputs(["native", "low_dose@0.33"])] == ["native", "low_dose@0.33"]
    for bad, match in (
        ("low_dose", "no dose"),
        ("low_dose@abc", "not a dose"),
        ("low_dose@1.5", "dose"),
        ("t2@0.5", "has a dose"),
        ("", "empty"),
        ("../etc", "malformed"),
    ):
        with pytest.raises(VCEInputError, match=match):
            parse_input(bad)
    for names, optional, match in (
        (["native", "ce_mask"], (), "leak"),
        (["native", "ce_truth"], (), "leak"),
        (["native", "labels"], (), "leak"),
        (["native", "standard_dose"], (), "is the target"),
        (["native", "t2", "t2"], (), "twice"),
        (["native"], ("adc",), "not inputs"),
    ):
        with pytest.raises(VCEInputError, match=match):
            check_inputs(names, optional)
    with pytest.raises(VCEInputError, match="not a T1 image"):
        check_inputs(["native"], target="t2")


@pytest.mark.parametrize("method", ["percentile", "zscore", "sigmoid", "tanh"])
def test_contrast_slices_inputs_target_and_exact_inverse(vc_cases: list[Path], method: str) -> None:
    from vce_core.data import ContrastSliceDataset
    from vce_core.preprocess import brain_mask, denormalize, normalize

    ds = ContrastSliceDataset(vc_cases, inputs=["native", "t2", "adc"], normalization=method, dtype="float32")
    s = ds[3]
    assert s["inputs"].shape[0] == 3 and s["target"].shape[0] == 1 and s["present"].tolist() == [1, 1, 1]
    assert s["dose"].item() == 0.0 and s["inputs"].shape[1:] == s["target"].shape[1:] == s["brain"].shape[1:]
    ci, _, k = ds.items[3]
    case = ds.case(ci)
    i0, i1 = case.bbox[0]
    j0, j1 = case.bbox[1]
    raw = load_case(vc_cases[ci])
    brain = brain_mask(raw.native.data)
    # the native and T2 channels are each normalised with their own statistics inside the native brain mask
    for channel, volume in ((0, raw.native.data), (1, raw.extra["t2"].data)):
        expected, _ = normalize(volume, method, mask=brain)
        np.testing.assert_allclose(
            s["inputs"][channel, : i1 - i0, : j1 - j0], expected[i0:i1, j0:j1, k], atol=1e-5
        )
    # the target uses the native image's parameters, so denormalize() returns the standard dose exactly
    back = denormalize(s["target"][0, : i1 - i0, : j1 - j0].numpy(), case.params["native"])
    rtol = 1e-3 if method == "sigmoid" else 1e-5
    np.testing.assert_allclose(back, raw.standard_dose.data[i0:i1, j0:j1, k], rtol=rtol, atol=2e-2)
    assert ds.describe()["inputs"] == ["native", "t2", "adc"] and "doses" not in ds.describe()


def test_contrast_stacks_patches_and_low_dose_input(vc_cases: list[Path]) -> None:
    from vce_core.data import ContrastPatchDataset, build_dataset

    stack = build_dataset(
        "2.5d",
        vc_cases,
        task="virtual_contrast",
        inputs=["native", "flair"],
        context=1,
        target_context=True,
        crop=16,
    )
    s = stack[(0, 5)]
    assert s["inputs"].shape == (6, 16, 16) and s["target"].shape == (3, 16, 16)
    ci, _, k = stack.items[0]
    case = stack.case(ci)
    # modality-major channels: native k-1, k, k+1 then flair k-1, k, k+1 (edges repeat the nearest slice)
    full = build_dataset("2.5d", vc_cases, task="virtual_contrast", inputs=["native", "flair"], context=1)
    f = full[0]
    h, w = case.shape[:2]
    for m in range(2):
        for c, kk in enumerate(np.clip([k - 1, k, k + 1], 0, case.shape[2] - 1)):
            np.testing.assert_allclose(f["inputs"][3 * m + c, :h, :w], case.inputs[m][:, :, kk], atol=1e-3)
    patches = build_dataset("3d", vc_cases, task="virtual_contrast", inputs=["native", "t2"], crop=8)
    assert isinstance(patches, ContrastPatchDataset)
    p = patches[(1, 3)]
    assert p["inputs"].shape == (2, 8, 8, 8) and p["target"].shape == (1, 8, 8, 8)
    low = build_dataset("2d", vc_cases, task="virtual_contrast", inputs=["native", "low_dose@0.33"])
    lc = low.case(0)
    raw = load_case(vc_cases[0])
    (i0, i1), (j0, j1), (k0, k1) = lc.bbox
    from vce_core.preprocess import normalize_with

    expected = normalize_with(raw.low_doses[0.33].data[i0:i1, j0:j1, k0:k1], lc.params["native"])
    np.testing.assert_allclose(lc.inputs[1], expected, atol=1e-3)  # T1 inputs share the native's parameters


def test_missing_inputs_required_refused_optional_zero(vc_cases: list[Path], tmp_path: Path) -> None:
    from support import write_contrast_cases
    from vce_core.data import ContrastSliceDataset

    partial = write_contrast_cases(tmp_path, 1, shape=(24, 24, 12), extras=("t2",))[0]
    with pytest.raises(VCEInputError, match="'adc'") as err:
        ContrastSliceDataset([partial], inputs=["native", "t2", "adc"])
    assert str(partial) in str(err.value) and "required input" in str(err.value)
    ds = ContrastSliceDataset([partial], inputs=["native", "t2", "adc"], optional_inputs=["adc"], crop=16)
    s = ds[(0, 1)]
    assert s["present"].tolist() == [1.0, 1.0, 0.0] and not s["inputs"][2].any()
    assert s["inputs"][1].abs().sum() > 0
    with pytest.raises(VCEInputError, match="'low_dose@0.5'"):
        ContrastSliceDataset(vc_cases, inputs=["native", "low_dose@0.5"])


def test_brats_folders_give_their_t2_and_flair(vc_cases: list[Path], tmp_path: Path) -> None:
    """A BraTS-style folder (T1, T1ce, T2, FLAIR, seg; no ADC) feeds a T1+T2+FLAIR model, and a T1+T2+ADC
    model when ADC is optional (seed 001's zero input); its segmentation is never an input."""
    import nibabel as nib

    from vce_core.data import ContrastSliceDataset

    case = load_case(vc_cases[0])
    folder = tmp_path / "BraTS20_Training_007"
    folder.mkdir()
    for suffix, volume in (
        ("t1", case.native),
        ("t1ce", case.standard_dose),
        ("t2", case.extra["t2"]),
        ("flair", case.extra["flair"]),
    ):
        nib.save(nib.Nifti1Image(volume.data, np.eye(4)), folder / f"BraTS20_Training_007_{suffix}.nii.gz")
    ds = ContrastSliceDataset([folder], inputs=["native", "t2", "flair"], dtype="float32")
    assert ds.case_ids == ["BraTS20_Training_007"] and ds[0]["present"].tolist() == [1, 1, 1]
    with pytest.raises(VCEInputError, match="'adc'"):
        ContrastSliceDataset([folder], inputs=["native", "t2", "adc"])
    optional = ContrastSliceDataset([folder], inputs=["native", "t2", "adc"], optional_inputs=["adc"])
    assert optional[0]["present"].tolist() == [1, 1, 0]


def test_samples_carry_the_t1_sequence(cases: list[Path], tmp_path: Path) -> None:
    """``sequence`` = [normalised raw 0, TR (s), flip (rad)] from case.json's meta.sequence; NaN TR/flip when
    the case records none (a physics-base generator then refuses the sample)."""
    import math
    import shutil

    s = SliceDataset(cases[:1], crop=16, dtype="float32")[0]
    prep = SliceDataset(cases[:1], crop=16, dtype="float32").case(0)
    assert prep.sequence is None
    assert s["sequence"].shape == (3,) and torch.isnan(s["sequence"][1:]).all()
    assert float(s["sequence"][0]) == pytest.approx(prep.background)
    folder = tmp_path / "with-sequence"
    record_sequence(shutil.copytree(cases[0], folder), tr_ms=7.3, flip_deg=8.0)
    ds = SliceDataset([folder], crop=16, dtype="float32")
    s = ds[0]
    bg = float(apply_normalization(np.zeros(1, np.float32), ds.case(0).params)[0])
    np.testing.assert_allclose(s["sequence"].numpy(), [bg, 7.3e-3, math.radians(8.0)], rtol=1e-6)


def test_t1_target_is_the_tissue_table_cropped_and_flipped_with_the_images(
    cases: list[Path], tmp_path: Path
) -> None:
    """``t1_target``: log(T1 / DEFAULT_T1_S) of the tissue on enhancing voxels, NaN elsewhere and in the
    padding; it travels with the crop and the flips (its known voxels are exactly the sample's brain here,
    where every brain voxel is labelled rim or meningioma)."""
    import math
    import shutil

    from support import record_labels
    from vce_core.baselines import DEFAULT_T1_S
    from vce_core.data import true_t1_log_factor
    from vce_core.phantom import TISSUES

    folders = [shutil.copytree(c, tmp_path / c.name) for c in cases[:2]]
    for folder in folders:
        labels = record_labels(folder)
        case = load_case(folder)
        fs = float(case.field_strength)
        rim, men = (
            math.log(TISSUES[t].t1_at(fs) / DEFAULT_T1_S[fs]) for t in ("enhancing_rim", "meningioma")
        )
        t1 = true_t1_log_factor(case)
        assert np.isnan(t1[labels == 0]).all()
        np.testing.assert_allclose(t1[labels == 7], rim)
        np.testing.assert_allclose(t1[labels == 11], men, rtol=1e-6)
        assert men < rim - 0.2  # the meningioma's native T1 is much shorter than the rim's
    for ds in (
        SliceDataset(folders, crop=16, flips=True, dtype="float32", t1_target=True),
        PatchDataset(folders, crop=8, flips=True, dtype="float32", t1_target=True),
    ):
        for ci in range(len(folders)):
            # the cached case's native image is made a copy of its T1 target, so that a sample shows
            # whether the target was cropped and flipped exactly as the images were
            prep = ds.case(ci)
            assert prep.t1_target is not None and prep.t1_target.shape == prep.shape
            prep.native = np.nan_to_num(prep.t1_target, nan=-9.0)
        for i in range(0, len(ds), 3):
            s = ds[i]
            t1, native = s["t1_target"], s["native"][s["native"].shape[0] // 2 :][:1]
            known = torch.isfinite(t1)
            assert t1.shape == s["brain"].shape and torch.equal(known, s["brain"])
            assert torch.equal(t1[known], native[known])
            background = ds.case(ds.items[i][0]).background
            assert bool(((native[~known] == -9.0) | (native[~known] == background)).all())
    assert "t1_target" not in SliceDataset(folders, crop=16, dtype="float32")[0]


def test_t1_target_of_every_tissue_covers_every_labelled_voxel(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``tissues="all"`` (a real phantom case): every labelled voxel gets its tissue's log factor (grey
    matter, CSF and necrosis too), the enhancing tissues the same values as the default scope;
    ``"lesions"``: exactly the voxels of the four enhancing lesion tissues, with the default's values; other
    scopes are refused."""
    import math

    from support import phantom_case
    from vce_core.baselines import DEFAULT_T1_S
    from vce_core.data import t1_target_scope, true_t1_log_factor
    from vce_core.phantom import LABELS, TISSUES

    case = load_case(phantom_case(tmp_path_factory))
    labels = np.asarray(case.extra["labels"].data).astype(np.int64)
    fs = float(case.field_strength)
    enhancing, everywhere = true_t1_log_factor(case), true_t1_log_factor(case, "all")
    np.testing.assert_array_equal(np.isfinite(everywhere), labels > 0)
    known = np.isfinite(enhancing)
    assert 0 < known.sum() < (labels > 0).sum()
    np.testing.assert_array_equal(everywhere[known], enhancing[known])
    names = {str(v): int(k) for k, v in LABELS.items()}
    for tissue in ("gray_matter", "white_matter", "csf"):
        value = math.log(TISSUES[tissue].t1_at(fs) / DEFAULT_T1_S[fs])
        np.testing.assert_allclose(everywhere[labels == names[tissue]], value, rtol=1e-6)
        assert np.isnan(enhancing[labels == names[tissue]]).all()
    lesions = true_t1_log_factor(case, "lesions")
    lesion_labels = [names[t] for t in ("enhancing_rim", "metastasis", "meningioma", "weak_lesion")]
    in_lesion = np.isin(labels, lesion_labels)
    assert in_lesion.any() and (known & ~in_lesion).any()  # the dura and vessels enhance but are no lesion
    np.testing.assert_array_equal(np.isfinite(lesions), in_lesion)
    np.testing.assert_array_equal(lesions[in_lesion], enhancing[in_lesion])
    assert t1_target_scope(True) == "enhancing" and t1_target_scope(False) is None
    assert t1_target_scope("all") == "all" and t1_target_scope("lesions") == "lesions"
    for bad in ("tumour", "", 1):
        with pytest.raises(VCEInputError, match="T1 target tissues"):
            t1_target_scope(bad)
    with pytest.raises(VCEInputError, match="T1 target tissues"):
        true_t1_log_factor(case, "tumour")


def test_t1_target_needs_phantom_labels(cases: list[Path]) -> None:
    from vce_core.data import build_dataset, true_t1_log_factor

    with pytest.raises(VCEInputError, match="no tissue labels"):
        true_t1_log_factor(load_case(cases[0]))
    with pytest.raises(VCEInputError, match="no tissue labels"):
        SliceDataset(cases[:1], crop=16, t1_target=True)
    with pytest.raises(VCEInputError, match="low-dose"):
        build_dataset("2d", cases[:1], task="virtual_contrast", inputs=["native"], t1_target=True)


def test_lesion_focus_centres_crops_on_each_lesion_tissue_alike(cases: list[Path], tmp_path: Path) -> None:
    """``lesion_focus=1``: every crop holds a lesion voxel, and each lesion tissue of the case is drawn
    about equally often however few voxels it has (a 27-voxel metastasis beside a 1-voxel weak lesion);
    ``lesion_focus=0`` leaves the samples as they were; cases without labels and 3-D data are refused."""
    import shutil

    from support import record_labels
    from vce_core.data import build_dataset, lesion_voxels
    from vce_core.io import Volume, save_case
    from vce_core.phantom import LABELS

    folder = shutil.copytree(cases[0], tmp_path / cases[0].name)
    record_labels(folder)
    case = load_case(folder)
    labels = np.zeros(TINY_SHAPE, np.int16)
    labels[4:7, 5:8, 3:6] = 10  # metastasis, 27 voxels
    labels[17, 16, 8] = 12  # weakly enhancing, 1 voxel
    case.extra["labels"] = Volume(labels.astype(np.float32))
    case.meta["labels"] = {str(k): v for k, v in LABELS.items()}
    save_case(case, folder, overwrite=True)
    found = lesion_voxels(load_case(folder))
    assert set(found) == {"metastasis", "weak_lesion"} and len(found["metastasis"]) == 27
    np.testing.assert_array_equal(found["weak_lesion"], [[17, 16, 8]])

    ds = SliceDataset([folder], crop=8, dtype="float32", flips=False, lesion_focus=1.0)
    prep = ds.case(0)
    marker = np.zeros(prep.shape, np.float32)  # the cached native image marks the lesion voxels
    for name, value in (("metastasis", 1.0), ("weak_lesion", 2.0)):
        i, j, k = prep.lesions[name].T
        marker[i, j, k] = value
    prep.native = marker
    seen = [float(ds[(idx % len(ds), idx)]["native"].max()) for idx in range(200)]
    assert min(seen) >= 1.0  # every crop shows a lesion voxel
    weak = sum(v == 2.0 for v in seen) / len(seen)
    assert 0.35 < weak < 0.65  # drawn per tissue, not per voxel (per voxel: 1 / 28)

    plain = SliceDataset([folder], crop=8, dtype="float32", flips=True)
    unfocused = SliceDataset([folder], crop=8, dtype="float32", flips=True, lesion_focus=0.0)
    for idx in range(0, len(plain), 5):
        torch.testing.assert_close(plain[idx]["native"], unfocused[idx]["native"])

    with pytest.raises(VCEInputError, match="no tissue labels"):
        SliceDataset(cases[1:2], crop=8, lesion_focus=0.5)
    with pytest.raises(VCEInputError, match="lesion_focus"):
        SliceDataset([folder], crop=8, lesion_focus=1.5)
    with pytest.raises(VCEInputError, match="lesion_focus"):
        build_dataset("3d", [folder], crop=8, lesion_focus=0.5)
