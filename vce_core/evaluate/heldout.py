"""Held-out cases for the low-dose report: ground truth, lesion regions, evaluated slices, repeat scans.

:func:`load_eval_case` reads a case folder. For a phantom case (``case.json`` records ``meta["phantom"]``) it
re-creates the subject (:func:`vce_core.phantom.phantom_from_case`), which gives

* the noise-free image at any dose (``T_d``; :meth:`EvalCase.truth`),
* independent repeat scans: noise seed ``k`` acquires the native, standard dose and each low dose with
  their own Rician realisations (:meth:`EvalCase.inputs`, :meth:`EvalCase.low_dose`), so a result is not
  the result of one noise draw,
* the label map and each lesion's enhancing region (:func:`vce_core.evaluate.enhancement.lesion_regions`).

A real case (no phantom record) has one acquisition (noise seed ``None``), no truth and no lesion regions;
the report then shows the metrics against the acquisition only.

Evaluated slices (2-D axial ``[:, :, k]``; :func:`choose_slices`): for every enhancing lesion up to
``lesion_slices`` slices evenly spaced over its extent (always its largest cross-section), plus
``extra_slices`` brain slices evenly spaced over the slices whose brain area is at least a quarter of the
largest, not already chosen. Enhancement is measured on the lesion voxels of these slices; noise and image
metrics on all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy import ndimage

from vce_core.errors import VCEInputError
from vce_core.evaluate.enhancement import Region, lesion_regions

__all__ = ["EvalCase", "choose_slices", "load_eval_case"]

_NOISE_MARGIN = 200.0
"""Voxels whose true standard-dose enhancement exceeds this (a.u.; white matter reads 1000) are left out of
the noise mask: above the parenchyma's own enhancement (grey matter ≈ 120, 99th percentile ≈ 145), so
partial volumes of vessels, dura and choroid plexus go, normal brain stays."""


@dataclass
class EvalCase:
    """One held-out case prepared for evaluation (see the module docstring).

    ``slices``: evaluated axial indices (sorted); ``brain``: bool (I, J, K); ``noise_mask``: bool (I, J, K)
    of brain voxels without true enhancement (±1 voxel in-plane) for the noise metrics; ``enhancing``: bool
    (I, J, K) of truly enhancing tissue (labels 4–7, 10–12), None for real cases.
    """

    case_id: str
    folder: Path
    field_strength: float
    agent: str
    sequence: dict[str, Any] | None
    slices: np.ndarray
    brain: np.ndarray
    noise_mask: np.ndarray
    regions: list[Region] = field(default_factory=list)
    enhancing: np.ndarray | None = None
    phantom: Any = None
    case: Any = None
    _truth: dict[float, np.ndarray] = field(default_factory=dict, repr=False)
    _lesions: list[tuple[Region, np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

    @property
    def has_truth(self) -> bool:
        return self.phantom is not None

    def noise_seeds(self, seeds: list[int]) -> list[int | None]:
        """Noise seeds to evaluate: ``seeds`` for a phantom case, ``[None]`` (its acquisition) otherwise."""
        return list(seeds) if self.has_truth else [None]

    def inputs(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Native and standard dose (full volumes, float32, scanner units) of repeat scan ``seed``."""
        if self.phantom is None:
            return self.case.native.data.astype(np.float32), self.case.standard_dose.data.astype(np.float32)
        return self.phantom.acquire(0.0, noise_seed=seed).data, self.phantom.acquire(
            1.0, noise_seed=seed
        ).data

    def low_dose(self, dose: float, seed: int | None) -> np.ndarray | None:
        """The acquired low dose on the evaluated slices (I, J, n) of scan ``seed``; None if not acquired."""
        if self.phantom is not None:
            return np.stack(
                [self.phantom.acquire_slice(dose, "axial", int(k), noise_seed=seed) for k in self.slices],
                axis=-1,
            )
        from vce_core.domain import match_dose

        acquired = match_dose(self.case.low_doses, dose)
        return None if acquired is None else self.case.low_doses[acquired].data[:, :, self.slices]

    def lesion_masks(self) -> list[tuple[Region, np.ndarray, np.ndarray]]:
        """``(region, its voxels on the evaluated slices, its background shell there)`` for each lesion
        with voxels on those slices (:func:`vce_core.evaluate.enhancement.shell` within the noise mask)."""
        from vce_core.evaluate.enhancement import shell

        if self._lesions is None:
            noise = self.noise_mask[:, :, self.slices]
            masks = [(r, r.mask[:, :, self.slices]) for r in self.regions]
            self._lesions = [(r, m, shell(m, noise, ~noise)) for r, m in masks if m.any()]
        return self._lesions

    def truth(self, dose: float) -> np.ndarray | None:
        """Noise-free image at ``dose`` on the evaluated slices (I, J, n); None for a real case."""
        if self.phantom is None:
            return None
        if dose not in self._truth:
            self._truth[dose] = self.phantom.noise_free(dose).data[:, :, self.slices]
        return self._truth[dose]


def choose_slices(
    brain: np.ndarray, regions: list[Region], lesion_slices: int = 3, extra_slices: int = 4
) -> np.ndarray:
    """Evaluated axial slices (sorted, unique) — see the module docstring."""
    chosen: set[int] = set()
    for region in regions:
        ks = region.slices()
        areas = region.mask[:, :, ks].sum(axis=(0, 1))
        picks = ks[np.unique(np.round(np.linspace(0, len(ks) - 1, min(lesion_slices, len(ks)))).astype(int))]
        chosen |= {int(k) for k in picks} | {int(ks[int(np.argmax(areas))])}
    area = brain.sum(axis=(0, 1))
    candidates = [int(k) for k in np.flatnonzero(area >= 0.25 * area.max()) if int(k) not in chosen]
    if candidates and extra_slices > 0:
        idx = np.unique(np.round(np.linspace(0, len(candidates) - 1, min(extra_slices, len(candidates)))))
        chosen |= {candidates[int(i)] for i in idx}
    return np.array(sorted(chosen), dtype=int)


def _in_plane_dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    structure = ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), radius)[..., None]
    return ndimage.binary_dilation(mask, structure=structure)


def _manifest(folder: Path) -> tuple[str, dict[str, Any] | None]:
    """``(case_id, meta)`` of ``folder/case.json``; ``(folder name, None)`` if missing or unreadable."""
    path = folder / "case.json" if folder.is_dir() else folder
    try:
        manifest = json.loads(path.read_text())
        meta = manifest.get("meta")
    except (OSError, ValueError, AttributeError):
        return folder.name, None
    return str(manifest.get("case_id") or folder.name), meta if isinstance(meta, dict) else None


def load_eval_case(folder: str | Path, *, lesion_slices: int = 3, extra_slices: int = 4) -> EvalCase:
    """Prepare one case folder for evaluation (phantom: re-created from its record; real: loaded)."""
    from vce_core.phantom import phantom_from_case

    folder = Path(folder)
    case_id, meta = _manifest(folder)
    phantom = phantom_from_case(SimpleNamespace(meta=meta)) if meta and "phantom" in meta else None
    if phantom is None:
        return _real_case(folder, extra_slices)
    labels = phantom.extra["labels"].data.astype(np.int16)
    brain = labels > 0
    kinds = [str(spec.kind) for spec in phantom.lesions]
    regions = lesion_regions(labels, kinds, phantom.lesion_fraction)
    enhancing = np.isin(labels, [4, 5, 6, 7, 10, 11, 12])
    lesion_any = np.zeros_like(brain)
    for i in range(len(phantom.lesions)):
        lesion_any |= phantom.lesion_fraction(i) > 0
    enhances = phantom.extra["ce_truth"].data > _NOISE_MARGIN
    noise_mask = brain & ~_in_plane_dilation(enhancing | lesion_any | enhances, 1)
    return EvalCase(
        case_id=case_id,
        folder=folder,
        field_strength=float(phantom.field_strength),
        agent=str(phantom.agent),
        sequence=dict(meta.get("sequence") or phantom.meta["sequence"]),
        slices=choose_slices(brain, regions, lesion_slices, extra_slices),
        brain=brain,
        noise_mask=noise_mask,
        regions=regions,
        enhancing=enhancing,
        phantom=phantom,
    )


def _real_case(folder: Path, extra_slices: int) -> EvalCase:
    """A real case: its acquisitions only; CE voxels (seed 000's mask) are kept out of the noise mask."""
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask, ce_mask

    case = load_case(folder)
    if not case.low_doses:
        raise VCEInputError(
            "the case has no acquired low dose", path=folder, expected="low_doses in case.json"
        )
    native = case.native.data.astype(np.float32)
    brain = np.asarray(brain_mask(native), dtype=bool)
    ce = np.asarray(ce_mask(native, case.standard_dose.data, 0.1, mask=brain), dtype=bool)
    seq = case.meta.get("sequence")
    return EvalCase(
        case_id=str(case.meta.get("case_id", folder.name)),
        folder=folder,
        field_strength=float(case.field_strength),
        agent=str(case.agent or "unknown"),
        sequence=dict(seq) if isinstance(seq, dict) else None,
        slices=choose_slices(brain, [], 0, max(extra_slices, 12)),
        brain=brain,
        noise_mask=brain & ~_in_plane_dilation(ce, 1),
        case=case,
    )
