"""Lesion enhancement against ground truth: regions, enhancement, enhancement ratio and CNR per lesion.

A lesion's *enhancement* in a subtraction image ``s = x − x_NA`` is the mean of ``s`` over the lesion's truly
enhancing voxels (its region). Averaging over the region removes the noise that dominates voxel-wise
errors (a noise-floor metric such as MAE_CE over a thresholded mask measures mostly noise and normal grey
matter), so the enhancement error ``|E_method − E_true|`` measures whether a method gets the *amount* of
contrast right, which is what low-dose synthesis is for. ``E_true`` is the same mean over the noise-free
subtraction ``T_d − T_0`` of the phantom.

Regions (:func:`lesion_regions`) come from the phantom's ground truth: voxels whose dominant tissue is an
enhancing lesion label (:data:`LESION_LABELS`) *and* where that lesion holds at least half of the voxel,
so the necrotic core of a glioblastoma or a ring metastasis and the edema are excluded, and two lesions
never share a voxel. The *shell* of a lesion (for CNR) is the ring 2–5 voxels outside its footprint
(in-plane, per slice), inside the brain, minus every enhancing or lesion voxel.

CNR (:func:`cnr`) is ``(mean_region s − mean_shell s) / SD_shell s``: how conspicuous the lesion is in the
subtraction image against its local background noise. A synthetic image that is too clean makes weak lesions
more conspicuous than they are at that dose; one that is too noisy hides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from vce_core.errors import VCEInputError

__all__ = [
    "LESION_KINDS",
    "LESION_LABELS",
    "SMALL_LESION_VOXELS",
    "Region",
    "cnr",
    "enhancement",
    "lesion_regions",
    "shell",
]

LESION_LABELS: dict[int, str] = {
    7: "enhancing rim",
    10: "metastasis",
    11: "meningioma",
    12: "weakly enhancing",
}
"""Enhancing lesion labels of the phantom (``docs/phantom.md``) → the lesion type reported."""

LESION_KINDS: dict[str, int] = {"glioblastoma": 7, "metastasis": 10, "meningioma": 11, "weakly_enhancing": 12}
"""Phantom lesion kind (``LesionSpec.kind``) → its enhancing label."""

SMALL_LESION_VOXELS = 500
"""A lesion with fewer enhancing voxels (≈ a sphere of 5 mm radius at 1 mm) counts as small."""

_SHELL_INNER, _SHELL_OUTER = 2, 5


@dataclass(frozen=True)
class Region:
    """One enhancing lesion: ``index`` in the case's lesion list, ``kind`` (phantom kind), ``label``,
    ``type`` (reported name), ``mask`` (bool (I, J, K), its enhancing voxels) and ``voxels`` (count)."""

    index: int
    kind: str
    label: int
    type: str
    mask: np.ndarray
    voxels: int

    @property
    def small_or_weak(self) -> bool:
        """Weakly enhancing, or fewer than :data:`SMALL_LESION_VOXELS` enhancing voxels."""
        return self.label == 12 or self.voxels < SMALL_LESION_VOXELS

    def slices(self) -> np.ndarray:
        """Axial slice indices ``k`` that hold at least one voxel of the region."""
        return np.flatnonzero(self.mask.any(axis=(0, 1)))


def lesion_regions(labels: Any, kinds: list[str], fraction: Any) -> list[Region]:
    """Enhancing regions of a phantom case's lesions (module docstring).

    ``labels``: (I, J, K) label map; ``kinds``: the kind of every lesion, in the case's order
    (``meta["phantom"]["resolved"]["lesions"]``); ``fraction(i)``: volume fraction (I, J, K) of lesion ``i``
    (:meth:`vce_core.phantom.PhantomCase.lesion_fraction`). Lesions without an enhancing label
    (non-enhancing) or without a voxel are left out.
    """
    lab = np.asarray(labels)
    regions = []
    for i, kind in enumerate(kinds):
        label = LESION_KINDS.get(kind)
        if label is None:
            continue
        frac = np.asarray(fraction(i))
        if frac.shape != lab.shape:
            raise VCEInputError(
                f"lesion {i} fraction has shape {frac.shape}, labels {lab.shape}", expected="one grid"
            )
        mask = (lab == label) & (frac >= 0.5)
        if mask.any():
            regions.append(Region(i, kind, label, LESION_LABELS[label], mask, int(mask.sum())))
    return regions


def enhancement(subtraction: Any, mask: Any) -> float:
    """Mean of ``subtraction`` over ``mask`` (NaN for an empty mask)."""
    s = np.asarray(subtraction, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if s.shape != m.shape:
        raise VCEInputError(f"image {s.shape} and mask {m.shape}", expected="the same shape")
    return float(s[m].mean()) if m.any() else float("nan")


def _disk(radius: int) -> np.ndarray:
    """In-plane diamond of ``radius`` voxels as a 3-D structuring element (I, J, 1)."""
    return ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), radius)[..., None]


def shell(region: Any, brain: Any, exclude: Any) -> np.ndarray:
    """The in-plane ring 2–5 voxels around ``region`` (I, J, K), inside ``brain``, outside ``exclude``."""
    r = np.asarray(region, dtype=bool)
    outer = ndimage.binary_dilation(r, structure=_disk(_SHELL_OUTER))
    inner = ndimage.binary_dilation(r, structure=_disk(_SHELL_INNER))
    return outer & ~inner & np.asarray(brain, dtype=bool) & ~np.asarray(exclude, dtype=bool)


def cnr(subtraction: Any, region: Any, background: Any) -> float:
    """``(mean_region − mean_background) / SD_background`` of ``subtraction`` (NaN if undefined)."""
    s = np.asarray(subtraction, dtype=np.float64)
    r, b = np.asarray(region, dtype=bool), np.asarray(background, dtype=bool)
    if not r.any() or b.sum() < 3:
        return float("nan")
    sd = float(s[b].std(ddof=1))
    return float((s[r].mean() - s[b].mean()) / sd) if sd > 0 else float("nan")
