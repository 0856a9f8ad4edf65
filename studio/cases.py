"""The case library of the studio: case folders under a data directory, loaded on first use and cached.

No Gradio here. A :class:`LoadedCase` holds a case with everything the explorer needs that does not depend
on the dose: foreground and CE masks, window presets, lesion-centred default slices; per-slice brain masks,
the 3-D brain mask and, for phantom cases, the re-created :class:`~vce_core.phantom.PhantomCase` (real
images at doses that were not acquired) follow on first use.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from vce_core.cache import LRU
from vce_core.display import PLANES, Window, plane_axis, take_slice, window_presets
from vce_core.domain import match_dose
from vce_core.errors import VCEInputError

_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vce-phantom")


@dataclass
class LoadedCase:
    """A case in memory with everything that does not depend on the dose.

    Cheap things are computed when the case is loaded (foreground, CE mask, window presets, lesion
    slices); expensive ones on first use: the 3-D brain mask (per-volume metrics), per-slice brain masks,
    and the phantom subject of a phantom case (re-created from ``case.json`` in a background thread, which
    at 1 mm takes tens of seconds; acquired doses never wait for it).
    """

    case_id: str
    case: Any  # vce_core.io.Case
    foreground: np.ndarray
    ce: np.ndarray
    presets: dict[str, Window]
    lesion_index: dict[str, int]
    data_range: float
    is_phantom: bool
    prepared: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _phantom: Future | None = None
    _brain: np.ndarray | None = None
    _brain_slices: LRU = field(default_factory=lambda: LRU(256))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(I, J, K)``."""
        return tuple(self.case.native.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm along ``(i, j, k)``."""
        return tuple(float(s) for s in self.case.native.spacing)  # type: ignore[return-value]

    @property
    def acquired_doses(self) -> list[float]:
        """Doses with a real image: 0 (native), the acquired low doses and 1 (standard dose)."""
        return sorted({0.0, 1.0, *(float(d) for d in self.case.low_doses)})

    def acquired_volume(self, dose: float) -> Any | None:
        """The acquired volume at ``dose`` (fraction): native at 0, standard dose at 1, the case's low doses;
        None when nothing was acquired at that dose (:func:`vce_core.domain.match_dose`)."""
        volumes = {
            0.0: self.case.native,
            1.0: self.case.standard_dose,
            **{float(d): volume for d, volume in self.case.low_doses.items()},
        }
        found = match_dose(volumes, dose)
        return None if found is None else volumes[found]

    def noise_seed(self) -> int:
        """Fixed noise seed of this case's simulated acquisitions (same image for the same dose)."""
        return int(sum(ord(c) * (n + 1) for n, c in enumerate(self.case_id)) % (2**31))

    def start_phantom(self) -> None:
        """Start re-creating the phantom subject in the background (no-op for real data or if started)."""
        if not self.is_phantom:
            return
        with self.lock:
            if self._phantom is None:
                from vce_core.phantom import phantom_from_case

                self._phantom = _BACKGROUND.submit(phantom_from_case, self.case)

    def phantom(self) -> Any | None:
        """The :class:`~vce_core.phantom.PhantomCase` (waits for the background build); None for real data."""
        if not self.is_phantom:
            return None
        self.start_phantom()
        assert self._phantom is not None
        return self._phantom.result()

    def brain_volume(self) -> np.ndarray:
        """3-D brain mask of the standard dose (:func:`vce_core.preprocess.brain_mask`), computed once."""
        from vce_core.preprocess import brain_mask

        with self.lock:
            if self._brain is None:
                self._brain = np.asarray(brain_mask(self.case.standard_dose.data), dtype=bool)
            return self._brain

    def brain_slice(self, plane: str, index: int) -> np.ndarray:
        """Brain mask of one standard-dose slice (2-D :func:`~vce_core.preprocess.brain_mask`), cached."""
        from vce_core.preprocess import brain_mask

        def compute() -> np.ndarray:
            if self._brain is not None:
                return take_slice(self._brain, plane, index)
            try:
                return np.asarray(
                    brain_mask(take_slice(self.case.standard_dose.data, plane, index)), dtype=bool
                )
            except VCEInputError:  # an empty slice outside the head
                return take_slice(self.foreground, plane, index)

        return self._brain_slices.get_or_compute((plane, index), compute)


def foreground_mask(volume: np.ndarray) -> np.ndarray:
    """Cheap head/brain foreground: voxels above 15 % of the 99th percentile (brain_mask's threshold)."""
    data = np.asarray(volume, dtype=np.float32)
    sample = data[:: max(1, data.shape[0] // 64), :: max(1, data.shape[1] // 64), :]
    return data > 0.15 * float(np.percentile(sample, 99.0))


def _lesion_centre(ce: np.ndarray) -> tuple[int, int, int]:
    """Centre of the largest connected CE region (the volume centre if there is none)."""
    if not ce.any():
        return tuple(n // 2 for n in ce.shape)  # type: ignore[return-value]
    labels, n = ndimage.label(ce)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        region = labels == int(np.argmax(sizes))
    else:
        region = labels == 1
    centre = ndimage.center_of_mass(region)
    return tuple(int(round(c)) for c in centre)  # type: ignore[return-value]


_LESION_LABELS = ("enhancing_rim", "necrosis", "metastasis", "meningioma", "weak_lesion")


def _lesion_mask(case: Any, ce: np.ndarray) -> np.ndarray:
    """Voxels used to find a lesion: the phantom's lesion labels if present, else its ground-truth CE map,
    else the CE mask (real data)."""
    labels = case.extra.get("labels")
    if labels is not None and labels.data.shape == ce.shape:
        from vce_core.phantom import LABELS

        values = [k for k, name in LABELS.items() if name in _LESION_LABELS]
        lesion = np.isin(np.rint(labels.data).astype(np.int32), values)
        if lesion.any():
            return lesion
    truth = case.extra.get("ce_truth")
    if truth is not None and truth.data.shape == ce.shape:
        t = np.asarray(truth.data)
        if np.any(t > 0):
            return t > 0.5 * float(np.percentile(t[t > 0], 50))
    return ce


class CaseLibrary:
    """The case folders under a data directory; each case is loaded on first use and cached (LRU)."""

    def __init__(self, data_dir: Path | str, *, capacity: int = 3) -> None:
        from vce_core.io import iter_case_folders

        self.data_dir = Path(data_dir)
        self._folders: dict[str, Path] = {}
        if self.data_dir.is_dir():
            for folder in iter_case_folders(self.data_dir):
                folder = Path(folder)
                if "uploads" in folder.relative_to(self.data_dir).parts[:1]:
                    continue
                self._folders[folder.relative_to(self.data_dir).as_posix()] = folder
        self._cache = LRU(capacity)
        self._locks: dict[str, threading.Lock] = {k: threading.Lock() for k in self._folders}

    def case_ids(self) -> list[str]:
        """Case ids: folder paths relative to the data directory, sorted."""
        return sorted(self._folders)

    def get(self, case_id: str | None) -> LoadedCase:
        """The loaded case; :class:`VCEInputError` for an unknown id or a folder that cannot be read."""
        if case_id not in self._folders:
            if not self._folders:
                raise VCEInputError(
                    f"there are no cases in {self.data_dir}", expected="case folders with case.json"
                )
            raise VCEInputError(f"there is no case {case_id!r} in {self.data_dir}")
        with self._locks[case_id]:
            return self._cache.get_or_compute(case_id, lambda: self._load(case_id))

    def _load(self, case_id: str) -> LoadedCase:
        from vce_core.io import load_case
        from vce_core.preprocess import ce_mask

        case = load_case(self._folders[case_id])
        native, sd = case.native.data, case.standard_dose.data
        foreground = foreground_mask(sd)
        if not foreground.any():
            raise VCEInputError(f"the standard-dose image of case {case_id} is empty")
        ce = ce_mask(native, sd, mask=foreground)
        centre = _lesion_centre(_lesion_mask(case, ce))
        case.extra = {}  # T2, FLAIR, ADC, labels: not shown by the explorer; free the memory
        lesion_index = {plane: int(centre[plane_axis(plane)]) for plane in PLANES}
        presets = window_presets(sd, foreground)
        inside = sd[foreground]
        data_range = float(np.percentile(inside, 99.9) - np.percentile(inside, 0.1))
        phantom_info = case.meta.get("phantom") if isinstance(case.meta, dict) else None
        return LoadedCase(
            case_id=case_id,
            case=case,
            foreground=foreground,
            ce=ce,
            presets=presets,
            lesion_index=lesion_index,
            data_range=max(data_range, 1e-6),
            is_phantom=isinstance(phantom_info, dict),
        )
