"""Lesion regions, enhancement, CNR and the held-out case preparation (truth, repeat scans, slices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import write_tiny_cases
from vce_core.evaluate.enhancement import LESION_LABELS, cnr, enhancement, lesion_regions, shell
from vce_core.evaluate.heldout import choose_slices, load_eval_case
from vce_core.io import save_case
from vce_core.phantom import LesionSpec, make_case

LESIONS = [
    LesionSpec("metastasis", 4.0, center_mm=(30, 10, 20)),
    LesionSpec("glioblastoma", 14.0, center_mm=(-25, -30, 10)),
    LesionSpec("weakly_enhancing", 6.0, center_mm=(20, -40, 30)),
    LesionSpec("non_enhancing", 6.0, center_mm=(-30, 30, 30)),
]


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("heldout") / "phantom-case"
    save_case(make_case(21, resolution=2, field_strength=1.5, doses=(0.1, 0.33), lesions=LESIONS), folder)
    return folder


def test_regions_take_enhancing_voxels_of_each_lesion_only() -> None:
    labels = np.full((20, 20, 6), 3)
    labels[2:6, 2:6, 1:3] = 10  # metastasis
    labels[10:16, 10:16, 2:5] = 7  # rim ...
    labels[12:14, 12:14, 3:4] = 8  # ... around necrosis
    fractions = [np.zeros(labels.shape), np.zeros(labels.shape), np.ones(labels.shape)]
    fractions[0][2:6, 2:6, 1:3] = 0.9
    fractions[0][2:3, 2:6, 1:3] = 0.4  # partial volume: not this lesion's voxel
    fractions[1][10:16, 10:16, 2:5] = 1.0
    regions = lesion_regions(labels, ["metastasis", "glioblastoma", "non_enhancing"], lambda i: fractions[i])
    assert [(r.index, r.type) for r in regions] == [(0, "metastasis"), (1, "enhancing rim")]
    assert regions[0].voxels == 3 * 4 * 2
    assert regions[1].voxels == 6 * 6 * 3 - 2 * 2
    assert not regions[1].mask[12, 12, 3]
    assert list(regions[0].slices()) == [1, 2]
    assert regions[0].small_or_weak


def test_enhancement_shell_and_cnr() -> None:
    rng = np.random.default_rng(0)
    sub = rng.normal(0.0, 2.0, (40, 40, 3))
    region = np.zeros(sub.shape, dtype=bool)
    region[18:22, 18:22, :] = True
    sub[region] += 10.0
    brain = np.ones(sub.shape, dtype=bool)
    ring = shell(region, brain, np.zeros(sub.shape, dtype=bool))
    assert not (ring & region).any()
    dist = np.array([[max(abs(i - 19.5), abs(j - 19.5)) for j in range(40)] for i in range(40)])
    assert dist[ring[:, :, 0]].min() > 2 and dist[ring[:, :, 0]].max() < 8
    assert enhancement(sub, region) == pytest.approx(sub[region].mean())
    assert cnr(sub, region, ring) == pytest.approx(
        (sub[region].mean() - sub[ring].mean()) / sub[ring].std(ddof=1)
    )
    assert 3.5 < cnr(sub, region, ring) < 6.5  # contrast 10 over noise 2
    assert np.isnan(cnr(sub, region, np.zeros(sub.shape, dtype=bool)))
    assert np.isnan(enhancement(sub, np.zeros(sub.shape, dtype=bool)))


def test_choose_slices() -> None:
    brain = np.zeros((10, 10, 40), dtype=bool)
    brain[:, :, 5:35] = True
    labels = np.zeros(brain.shape, dtype=int)
    labels[3:6, 3:6, 10:22] = 10
    labels[3:6, 3:6, 15] = 3  # the region's largest cross-section is not at 15
    labels[2:8, 2:8, 18] = 10
    (region,) = lesion_regions(labels, ["metastasis"], lambda i: np.ones(labels.shape))
    slices = choose_slices(brain, [region], lesion_slices=3, extra_slices=4)
    # 3 evenly over the 11 lesion slices (15 holds none) plus the largest cross-section, then 4 brain slices
    assert {10, 16, 21, 18} <= set(slices)
    assert len(slices) == 4 + 4 and all(5 <= k < 35 for k in slices)


def test_load_phantom_case(phantom_folder: Path) -> None:
    ec = load_eval_case(phantom_folder, lesion_slices=3, extra_slices=2)
    assert ec.has_truth and ec.field_strength == 1.5 and ec.noise_seeds([0, 4]) == [0, 4]
    assert sorted(r.type for r in ec.regions) == sorted(
        [LESION_LABELS[10], LESION_LABELS[7], LESION_LABELS[12]]
    )
    reference = make_case(21, resolution=2, field_strength=1.5, doses=(0.1, 0.33), lesions=LESIONS)
    assert np.array_equal(ec.truth(0.33), reference.noise_free(0.33).data[:, :, ec.slices])
    nat0, sd0 = ec.inputs(0)
    nat1, _ = ec.inputs(1)
    assert np.array_equal(nat0, ec.inputs(0)[0]) and not np.array_equal(nat0, nat1)
    # repeat scans differ by noise only: σ√2 between two scans of the same subject
    diff = (nat0 - nat1)[ec.noise_mask]
    assert diff.std() == pytest.approx(np.sqrt(2) * reference.noise_sigma, rel=0.1)
    low = ec.low_dose(0.1, 0)
    assert low.shape == (*nat0.shape[:2], len(ec.slices))
    assert not (ec.noise_mask & np.isin(reference.extra["labels"].data, [4, 5, 6, 7, 10, 11, 12])).any()
    assert (sd0 - nat0)[ec.regions[0].mask].mean() > 5 * reference.noise_sigma


def test_load_real_case(tmp_path: Path) -> None:
    (folder,) = write_tiny_cases(tmp_path, 1, shape=(24, 24, 14))
    ec = load_eval_case(folder)
    assert not ec.has_truth and ec.noise_seeds([0, 1]) == [None] and ec.regions == []
    assert ec.truth(0.1) is None and ec.low_dose(0.2, None) is None
    assert ec.low_dose(0.1, None).shape == (24, 24, len(ec.slices))
