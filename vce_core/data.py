"""Torch datasets over case folders: 2-D slices, 2.5-D slice stacks and 3-D patches.

Every sample is one acquired low dose of one case, as in seed 000: ``(x_NA, x_SD, y_LD = x_LD - x_NA, d, B)``,
returned as a dict of tensors::

    native          float32 [C, *S]   normalised native image x_NA (C = 1, or 2·context+1 slices for 2.5-D)
    standard_dose   float32 [C, *S]   normalised standard-dose image x_SD
    residual        float32 [1, *S]   y_LD = x_LD - x_NA in normalised units (centre slice for 2.5-D)
    brain           bool    [1, *S]   brain mask (centre slice for 2.5-D)
    dose            float32 []        acquired dose as a fraction of the standard dose, in (0, 1]
    field_strength  float32 []        main field in tesla
    case_id         str

``*S`` is ``(H, W)`` for 2-D/2.5-D axial slices (``H`` along i, ``W`` along j: ``data[:, :, k]``) and
``(D, H, W)`` along ``(i, j, k)`` for 3-D patches.

Normalisation (one parameter set per case): :func:`vce_core.preprocess.normalize` is fitted on the native
image inside its brain mask, and the same affine map is applied to native, standard dose and each low dose, so
the residual ``y_LD`` keeps its meaning and the map can be inverted exactly (:func:`apply_normalization`,
:func:`invert_normalization`). Only affine methods (``percentile``, ``zscore``) are accepted, since a residual
in a non-linear intensity space would not add back to the native image.

Memory and workers: each case is loaded with :func:`vce_core.io.load_case`, cropped to its brain bounding box
(plus a margin), normalised and kept as float16 (default) in a small per-process LRU cache; arrays are read
fully into memory, so no file handle outlives a load and DataLoader workers never share one. All random
choices of a sample (crop position, flips, 3-D patch centre) come from the key the sampler passes
(``(index, sample_seed)``, see :class:`ResumableSampler`), so a sample is a pure function of that key: the
same in every worker, after a resume, and on every DDP rank layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vce_core.cache import LRU
from vce_core.errors import VCEInputError

AFFINE_METHODS = ("percentile", "zscore")
MODES = ("2d", "2.5d", "3d")

__all__ = [
    "AFFINE_METHODS",
    "MODES",
    "CaseDataset",
    "PatchDataset",
    "PreparedCase",
    "ResumableSampler",
    "SliceDataset",
    "apply_normalization",
    "build_dataset",
    "fit_normalization",
    "find_case_folders",
    "invert_normalization",
    "prepare_case",
    "split_by_case",
]


# --------------------------------------------------------------------------------------------- normalisation
def fit_normalization(native: np.ndarray, brain: np.ndarray, method: str = "percentile") -> dict[str, Any]:
    """Fit the per-case normalisation on the native image inside the brain mask.

    Parameters
    ----------
    native: float array (I, J, K), native T1 in scanner units.
    brain: bool array (I, J, K), brain mask.
    method: ``percentile`` or ``zscore`` (affine methods of :func:`vce_core.preprocess.normalize`).

    Returns
    -------
    The JSON-serialisable parameter dict of :func:`vce_core.preprocess.normalize`; use it with
    :func:`apply_normalization` (for native, standard dose and low doses alike) and
    :func:`invert_normalization`.
    """
    from vce_core.preprocess import normalize

    if method not in AFFINE_METHODS:
        raise VCEInputError(
            f"normalisation {method!r} is not affine, so residuals y_LD = x_LD - x_NA would not add back",
            expected=f"one of {', '.join(AFFINE_METHODS)}",
        )
    mask = brain if brain.any() else None
    _, params = normalize(np.asarray(native, dtype=np.float32), method, mask=mask)
    offset, scale = _affine_of(params)
    if not (math.isfinite(offset) and math.isfinite(scale)) or scale <= 0:
        raise VCEInputError(
            f"the native image cannot be normalised ({method}: offset {offset}, scale {scale})",
            expected="a native image with signal inside the brain",
        )
    return params


def _affine_of(params: dict[str, Any]) -> tuple[float, float]:
    """``(offset, scale)`` with ``x = offset + scale * y`` of an affine parameter set (via denormalize)."""
    from vce_core.preprocess import denormalize

    probe = np.asarray(denormalize(np.array([0.0, 1.0, 0.5], dtype=np.float64), params), dtype=np.float64)
    offset, scale = float(probe[0]), float(probe[1] - probe[0])
    if not math.isclose(probe[2], offset + 0.5 * scale, rel_tol=1e-5, abs_tol=1e-6 * max(1.0, abs(scale))):
        raise VCEInputError(
            f"normalisation parameters {params!r} are not affine", expected="percentile or zscore parameters"
        )
    return offset, scale


def apply_normalization(x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Map scanner units to normalised units with a case's parameters: float32, same shape as ``x``."""
    offset, scale = _affine_of(params)
    return ((np.asarray(x, dtype=np.float32) - np.float32(offset)) / np.float32(scale)).astype(np.float32)


def invert_normalization(y: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Exact inverse of :func:`apply_normalization` (normalised → scanner units), float32."""
    offset, scale = _affine_of(params)
    return (np.asarray(y, dtype=np.float32) * np.float32(scale) + np.float32(offset)).astype(np.float32)


# --------------------------------------------------------------------------------------------- case folders
def find_case_folders(paths: str | PathLike | Sequence[str | PathLike]) -> list[Path]:
    """Case folders at or below each path (:func:`vce_core.io.iter_case_folders`), without duplicates.

    Raises :class:`VCEInputError` if a path is not an existing folder or no case folder is found.
    """
    from vce_core.io import iter_case_folders

    if isinstance(paths, str | PathLike):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        found.extend(iter_case_folders(p))
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if not unique:
        raise VCEInputError(
            "no case folder found",
            path=", ".join(str(p) for p in paths),
            expected="folders holding case.json (or BraTS-style T1/T1ce files)",
        )
    return unique


def split_by_case(
    folders: Sequence[Path], val_fraction: float, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split case folders into (train, val) by case, never by slice; at least one of each when possible."""
    if not 0.0 <= val_fraction < 1.0:
        raise VCEInputError(f"val_fraction {val_fraction} is out of range", expected="a fraction in [0, 1)")
    folders = sorted(folders)
    n_val = round(len(folders) * val_fraction)
    if val_fraction > 0 and len(folders) > 1:
        n_val = min(max(n_val, 1), len(folders) - 1)
    order = np.random.default_rng(seed).permutation(len(folders))
    val = sorted(folders[i] for i in order[:n_val])
    train = sorted(folders[i] for i in order[n_val:])
    return train, val


# --------------------------------------------------------------------------------------------- prepared cases
@dataclass
class PreparedCase:
    """One case, cropped to the brain bounding box and normalised, as held in the dataset cache.

    Attributes
    ----------
    case_id, field_strength (T), folder.
    native, standard_dose: arrays (I', J', K') in normalised units (cache dtype).
    residuals: ``{dose: x_LD - x_NA}`` in normalised units, same shape.
    brain: bool (I', J', K').
    bbox: the crop in the original grid, ``((i0, i1), (j0, j1), (k0, k1))``.
    params: normalisation parameters (see :func:`fit_normalization`).
    background: the normalised value of a raw 0 (used to pad images).
    """

    case_id: str
    field_strength: float
    folder: Path
    native: np.ndarray
    standard_dose: np.ndarray
    residuals: dict[float, np.ndarray]
    brain: np.ndarray
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    params: dict[str, Any]
    background: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.native.shape)  # type: ignore[return-value]


def prepare_case(
    folder: str | PathLike,
    *,
    normalization: str = "percentile",
    margin: int = 4,
    dtype: str = "float16",
) -> PreparedCase:
    """Load a case folder, crop it to the brain bounding box (+ ``margin`` voxels) and normalise it.

    Raises :class:`VCEInputError` if the case has no acquired low dose or its volumes do not share one grid.
    """
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask

    folder = Path(folder)
    case = load_case(folder)
    case_id = str(case.meta.get("case_id", folder.name))
    native = np.asarray(case.native.data, dtype=np.float32)
    if not case.low_doses:
        raise VCEInputError(
            "the case has no acquired low dose to train on", path=folder, expected="low_doses in case.json"
        )
    for name, vol in [
        ("standard_dose", case.standard_dose),
        *[(f"low dose {d}", v) for d, v in case.low_doses.items()],
    ]:
        if tuple(vol.data.shape) != native.shape:
            raise VCEInputError(
                f"{name} has shape {tuple(vol.data.shape)} but the native image has {native.shape}",
                path=folder,
                expected="all volumes of a case on one grid",
            )
    brain = np.asarray(brain_mask(case.native), dtype=bool)
    if brain.any():
        idx = np.nonzero(brain)
        bbox = tuple(
            (max(int(a.min()) - margin, 0), min(int(a.max()) + 1 + margin, n))
            for a, n in zip(idx, native.shape, strict=False)
        )
    else:
        bbox = tuple((0, n) for n in native.shape)
    crop = tuple(slice(a, b) for a, b in bbox)
    params = fit_normalization(native, brain, normalization)
    store = np.dtype(dtype)
    nat = apply_normalization(native[crop], params)
    residuals = {
        float(d): (apply_normalization(np.asarray(v.data, dtype=np.float32)[crop], params) - nat).astype(
            store
        )
        for d, v in sorted(case.low_doses.items())
    }
    return PreparedCase(
        case_id=case_id,
        field_strength=float(case.field_strength),
        folder=folder,
        native=nat.astype(store),
        standard_dose=apply_normalization(
            np.asarray(case.standard_dose.data, dtype=np.float32)[crop], params
        ).astype(store),
        residuals=residuals,
        brain=np.ascontiguousarray(brain[crop]),
        bbox=bbox,  # type: ignore[arg-type]
        params=params,
        background=float(apply_normalization(np.zeros(1, np.float32), params)[0]),
    )


# --------------------------------------------------------------------------------------------- sampling
class ResumableSampler(Sampler):
    """Infinite, resumable, rank-sharded sampler yielding ``(index, sample_seed)`` keys.

    The ``t``-th key of rank ``r`` is global draw ``g = t·world_size + r``: epoch ``g // n`` uses the
    permutation drawn from ``(seed, epoch)`` (like :class:`torch.utils.data.DistributedSampler` with
    ``set_epoch``: every rank sees a disjoint share of each epoch), and the sample seed is derived from
    ``(seed, g)``. Nothing but ``start`` (draws already consumed by this rank) is state, so a resumed run
    continues the exact stream with ``start = batches drawn · per-rank batch size``.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ):
        if n <= 0:
            raise VCEInputError("the dataset is empty", expected="at least one sample (brain slice or patch)")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.start, self.shuffle = start, shuffle

    def _perm(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        t = self.start
        epoch, perm = -1, np.arange(0)
        while True:
            g = t * self.world_size + self.rank
            if g // self.n != epoch:
                epoch = g // self.n
                perm = self._perm(epoch)
            yield int(perm[g % self.n]), int(np.random.default_rng([self.seed, 7919, g]).integers(2**31))
            t += 1

    def __len__(self) -> int:  # an epoch's worth; the iterator itself is infinite
        return math.ceil(self.n / self.world_size)


# --------------------------------------------------------------------------------------------- datasets
class CaseDataset(Dataset):
    """Base class: case folders → lazily loaded, cached :class:`PreparedCase` objects and a sample index.

    Parameters
    ----------
    folders: case folders (see :func:`find_case_folders`).
    normalization: ``percentile`` or ``zscore``.
    crop: training crop edge in voxels (multiple of 8), or ``None`` for full (bounding-box) slices/volumes
        padded to a multiple of 8.
    flips: random flips along every spatial axis (p = 0.5 each) when ``crop`` is set.
    cache_size: cases kept in memory per process (LRU).
    dtype: cache dtype, ``float16`` (default) or ``float32``.
    margin: voxels kept around the brain bounding box.
    """

    spatial_dims = 2

    def __init__(
        self,
        folders: Sequence[str | PathLike],
        *,
        normalization: str = "percentile",
        crop: int | None = None,
        flips: bool = False,
        cache_size: int = 32,
        dtype: str = "float16",
        margin: int = 4,
    ):
        if crop is not None and (crop <= 0 or crop % 8):
            raise VCEInputError(f"crop {crop} is not a positive multiple of 8", expected="e.g. 64, 96 or 128")
        if normalization not in AFFINE_METHODS:
            raise VCEInputError(
                f"normalisation {normalization!r} is not supported", expected=" or ".join(AFFINE_METHODS)
            )
        self.folders = [Path(f) for f in folders]
        if not self.folders:
            raise VCEInputError("no case folders given", expected="at least one case folder")
        self.normalization, self.crop, self.flips = normalization, crop, flips
        self.cache_size, self.dtype, self.margin = max(1, int(cache_size)), dtype, margin
        self._cache: LRU[PreparedCase] = LRU(self.cache_size)
        self.case_ids: list[str] = []
        self.field_strengths: list[float] = []
        self.doses: list[tuple[float, ...]] = []
        self.items: list[tuple[int, float, int]] = []
        from tqdm import tqdm

        for ci in tqdm(
            range(len(self.folders)), desc="preparing cases", unit="case", disable=len(self.folders) < 4
        ):
            case = self.case(ci)
            self.case_ids.append(case.case_id)
            self.field_strengths.append(case.field_strength)
            self.doses.append(tuple(case.residuals))
            self.items.extend(self._index_case(ci, case))

    def _index_case(self, ci: int, case: PreparedCase) -> list[tuple[int, float, int]]:
        """Sample index entries ``(case index, dose, position)`` of one case."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state (DataLoader workers started by spawn): all but the case cache."""
        state = self.__dict__.copy()
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = LRU(self.cache_size)

    def case(self, ci: int) -> PreparedCase:
        """The prepared case number ``ci`` (loaded on first use, then cached per process)."""
        return self._cache.get_or_compute(
            ci,
            lambda: prepare_case(
                self.folders[ci], normalization=self.normalization, margin=self.margin, dtype=self.dtype
            ),
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, sample_seed = (key, int(key)) if isinstance(key, int | np.integer) else key
        ci, dose, pos = self.items[int(index)]
        case = self.case(ci)
        rng = np.random.default_rng([int(sample_seed), 1])
        native, sd, res, brain = self._extract(case, dose, pos, rng)
        if self.crop is not None and self.flips:
            for axis in range(1, native.ndim):
                if rng.random() < 0.5:
                    native, sd, res, brain = (np.flip(a, axis) for a in (native, sd, res, brain))
        return {
            "native": torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32)),
            "standard_dose": torch.from_numpy(np.ascontiguousarray(sd, dtype=np.float32)),
            "residual": torch.from_numpy(np.ascontiguousarray(res, dtype=np.float32)),
            "brain": torch.from_numpy(np.ascontiguousarray(brain, dtype=bool)),
            "dose": torch.tensor(dose, dtype=torch.float32),
            "field_strength": torch.tensor(case.field_strength, dtype=torch.float32),
            "case_id": case.case_id,
        }

    def _extract(
        self, case: PreparedCase, dose: float, pos: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description for the model card."""
        return {
            "folders": [str(f) for f in self.folders],
            "case_ids": list(self.case_ids),
            "count": len(self.folders),
            "samples": len(self),
            "doses": sorted({d for ds in self.doses for d in ds}),
            "field_strengths": sorted(set(self.field_strengths)),
            "normalization": self.normalization,
        }


def _window(n: int, size: int, start: int) -> tuple[slice, tuple[int, int]]:
    """Slice of length ≤ size from ``start`` inside ``[0, n)`` and the (before, after) padding to ``size``."""
    a, b = max(start, 0), min(start + size, n)
    return slice(a, b), (a - start, start + size - b)


def _crop(
    arrays: Sequence[np.ndarray], starts: Sequence[int], size: Sequence[int], pads: Sequence[float]
) -> list[np.ndarray]:
    """Crop the trailing ``len(starts)`` axes of each array to ``size`` at ``starts``, pad with ``pads``."""
    out = []
    lead = arrays[0].ndim - len(starts)
    windows = [_window(arrays[0].shape[lead + d], size[d], starts[d]) for d in range(len(starts))]
    for arr, pad in zip(arrays, pads, strict=False):
        piece = arr[(slice(None),) * lead + tuple(w[0] for w in windows)]
        widths = [(0, 0)] * lead + [w[1] for w in windows]
        if any(p for w in widths for p in w):
            piece = np.pad(piece, widths, constant_values=pad)
        out.append(piece)
    return out


def padded_size(n: int, multiple: int = 8) -> int:
    """Smallest multiple of ``multiple`` ≥ ``n``."""
    return -(-n // multiple) * multiple


class SliceDataset(CaseDataset):
    """Axial 2-D slices (``context = 0``) or 2.5-D stacks of ``2·context + 1`` adjacent slices as channels.

    Only brain slices are indexed: slices whose brain-mask fraction (of the bounding-box slice area) exceeds
    ``brain_fraction``. With ``crop`` set, a random ``crop × crop`` window of the slice is returned (padded
    when the slice is smaller); otherwise the whole bounding-box slice, padded to a multiple of 8.
    Edge slices of a stack repeat the nearest slice. Shapes: native/standard_dose ``[C, H, W]``,
    residual/brain ``[1, H, W]``.
    """

    spatial_dims = 2

    def __init__(
        self,
        folders: Sequence[str | PathLike],
        *,
        context: int = 0,
        brain_fraction: float = 0.1,
        ce_focus: float = 0.0,
        **kwargs: Any,
    ):
        if context < 0:
            raise VCEInputError(
                f"context {context} is negative", expected="0 (2-D) or a positive half-width (2.5-D)"
            )
        if not 0.0 <= ce_focus <= 1.0:
            raise VCEInputError(f"ce_focus {ce_focus} is outside [0, 1]", expected="a probability")
        self.context, self.brain_fraction, self.ce_focus = context, brain_fraction, ce_focus
        super().__init__(folders, **kwargs)

    def _index_case(self, ci: int, case: PreparedCase) -> list[tuple[int, float, int]]:
        frac = case.brain.reshape(-1, case.brain.shape[2]).mean(axis=0)
        slices = [int(k) for k in np.nonzero(frac > self.brain_fraction)[0]]
        return [(ci, d, k) for d in case.residuals for k in slices]

    def _extract(self, case, dose, pos, rng):  # noqa: ANN001, ANN202 - see base class
        K = case.shape[2]
        ks = np.clip(np.arange(pos - self.context, pos + self.context + 1), 0, K - 1)
        native = np.moveaxis(case.native[:, :, ks], 2, 0)
        sd = np.moveaxis(case.standard_dose[:, :, ks], 2, 0)
        res = case.residuals[dose][None, :, :, pos]
        brain = case.brain[None, :, :, pos]
        H, W = case.shape[:2]
        if self.crop is not None:
            size = (self.crop, self.crop)
            centre = self._ce_centre(case, pos, rng) if rng.random() < self.ce_focus else None
            if centre is not None:
                starts = [
                    int(c) - s // 2 + int(rng.integers(-(s // 4), s // 4 + 1))
                    for c, s in zip(centre, size, strict=True)
                ]
            else:
                starts = [
                    int(rng.integers(min(0, n - s), max(0, n - s) + 1))
                    for n, s in zip((H, W), size, strict=False)
                ]
        else:
            size = (padded_size(H), padded_size(W))
            starts = [0, 0]
        return tuple(
            _crop([native, sd, res, brain], starts, size, [case.background, case.background, 0.0, False])
        )

    @staticmethod
    def _ce_centre(case: PreparedCase, pos: int, rng: np.random.Generator) -> tuple[int, int] | None:
        """A random contrast-enhancing voxel of axial slice ``pos`` (seed 000's CE criterion), or None.

        Enhancing tissue is a small fraction of the brain, so uniformly placed crops rarely show the model
        what it must learn (the dose response of enhancement); ``ce_focus`` centres that share of the
        training crops on CE voxels instead.
        """
        native = np.asarray(case.native[:, :, pos], dtype=np.float32)
        brain = case.brain[:, :, pos]
        if not brain.any():
            return None
        enhancement = np.asarray(case.standard_dose[:, :, pos], dtype=np.float32) - native
        candidates = np.argwhere((enhancement >= 0.1 * float(np.quantile(native[brain], 0.95))) & brain)
        if len(candidates) == 0:
            return None
        i, j = candidates[int(rng.integers(len(candidates)))]
        return int(i), int(j)


class PatchDataset(CaseDataset):
    """3-D patches of ``crop³`` voxels (seed 000: 64³), centred on a random brain voxel with probability
    ``brain_probability`` and on a uniformly random voxel otherwise. ``patches_per_case`` index entries per
    (case, dose) make an epoch. Shapes: native/standard_dose/residual/brain ``[1, D, H, W]``.
    With ``crop=None`` the whole bounding-box volume is returned, padded to a multiple of 8 (validation).
    """

    spatial_dims = 3

    def __init__(
        self,
        folders: Sequence[str | PathLike],
        *,
        patches_per_case: int = 16,
        brain_probability: float = 0.9,
        **kwargs: Any,
    ):
        self.patches_per_case, self.brain_probability = patches_per_case, brain_probability
        super().__init__(folders, **kwargs)

    def _index_case(self, ci: int, case: PreparedCase) -> list[tuple[int, float, int]]:
        per = self.patches_per_case if self.crop is not None else 1
        return [(ci, d, p) for d in case.residuals for p in range(per)]

    def _extract(self, case, dose, pos, rng):  # noqa: ANN001, ANN202 - see base class
        arrays = [case.native[None], case.standard_dose[None], case.residuals[dose][None], case.brain[None]]
        pads = [case.background, case.background, 0.0, False]
        if self.crop is None:
            return tuple(_crop(arrays, [0, 0, 0], [padded_size(n) for n in case.shape], pads))
        if rng.random() < self.brain_probability and case.brain.any():
            flat = np.flatnonzero(case.brain)
            center = np.unravel_index(int(flat[rng.integers(len(flat))]), case.shape)
        else:
            center = [int(rng.integers(n)) for n in case.shape]
        starts = [int(c) - self.crop // 2 for c in center]
        return tuple(_crop(arrays, starts, [self.crop] * 3, pads))


def build_dataset(
    mode: str,
    folders: Sequence[str | PathLike],
    *,
    context: int = 1,
    crop: int | None = None,
    normalization: str = "percentile",
    brain_fraction: float = 0.1,
    flips: bool = False,
    cache_size: int = 32,
    dtype: str = "float16",
    patches_per_case: int = 16,
    ce_focus: float = 0.0,
) -> CaseDataset:
    """The dataset of a mode: ``2d`` / ``2.5d`` → :class:`SliceDataset`, ``3d`` → :class:`PatchDataset`."""
    common = dict(normalization=normalization, crop=crop, flips=flips, cache_size=cache_size, dtype=dtype)
    if mode == "2d":
        return SliceDataset(folders, context=0, brain_fraction=brain_fraction, ce_focus=ce_focus, **common)
    if mode == "2.5d":
        return SliceDataset(
            folders, context=context, brain_fraction=brain_fraction, ce_focus=ce_focus, **common
        )
    if mode == "3d":
        return PatchDataset(folders, patches_per_case=patches_per_case, **common)
    raise VCEInputError(f"unknown data mode {mode!r}", expected=" or ".join(MODES))
