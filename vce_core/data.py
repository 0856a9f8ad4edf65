"""Torch datasets over case folders: 2-D slices, 2.5-D slice stacks and 3-D patches.

Every sample is one acquired low dose of one case, as in seed 000: ``(x_NA, x_SD, y_LD = x_LD - x_NA, d, B)``,
returned as a dict of tensors::

    native          float32 [C, *S]   normalised native image x_NA (C = 1, or 2·context+1 slices for 2.5-D)
    standard_dose   float32 [C, *S]   normalised standard-dose image x_SD
    residual        float32 [1, *S]   y_LD = x_LD - x_NA in normalised units (centre slice for 2.5-D)
    brain           bool    [1, *S]   brain mask (centre slice for 2.5-D)
    dose            float32 []        acquired dose as a fraction of the standard dose, in (0, 1]
    field_strength  float32 []        main field in tesla
    sequence        float32 [3]       [background, TR (s), flip angle (rad)] of the T1 sequence (case.json
                                      meta.sequence; NaN TR/flip when the case does not record it), for a
                                      generator with the physics baseline as base
                                      (:func:`vce_core.models.ld_cgan.sequence_tensor`)
    case_id         str

``*S`` is ``(H, W)`` for 2-D/2.5-D axial slices (``H`` along i, ``W`` along j: ``data[:, :, k]``) and
``(D, H, W)`` along ``(i, j, k)`` for 3-D patches.

Normalisation (one parameter set per case): :func:`vce_core.preprocess.normalize` is fitted on the native
image inside its brain mask, and the same affine map is applied to native, standard dose and each low dose, so
the residual ``y_LD`` keeps its meaning and the map can be inverted exactly (:func:`apply_normalization`,
:func:`invert_normalization`). Only affine methods (``percentile``, ``zscore``) are accepted, since a residual
in a non-linear intensity space would not add back to the native image.

Virtual contrast (seeds 001–004, ``task: virtual_contrast``): :class:`ContrastSliceDataset` and
:class:`ContrastPatchDataset` return the inputs a model's card declares and the standard dose as target::

    inputs          float32 [M·C, *S]  the M inputs (modality-major; C slices each for 2.5-D), normalised
    target          float32 [T, *S]    standard dose, normalised with the *native* image's parameters
                                       (T = 1, or C with ``target_context``)
    native          float32 [1, *S]    native image (centre slice), same normalisation as the target
    brain           bool    [1, *S]
    present         float32 [M]        1 = acquired, 0 = absent optional input (its channels are zero)
    dose            float32 []         0 (zero dose), field_strength, case_id as above

Input names (:func:`parse_input`): ``native``, ``standard_dose``, ``low_dose@<dose>`` (the acquired low dose
at that fraction), or the name of any other volume of the case's ``extra`` (``t2``, ``flair``, ``adc``, ...).
T1 images (native, low doses, standard dose) share the native image's normalisation, so enhancement keeps its
meaning; every other modality is normalised on its own inside the native brain mask. Any method of
:mod:`vce_core.preprocess` (percentile, zscore, sigmoid, tanh) is accepted here, since the target is an
image, not a residual, and :func:`vce_core.preprocess.denormalize` inverts it exactly. A required input the
case lacks raises :class:`VCEInputError` naming it; an *optional* one is a zero image (seed 001's missing
modality).

Memory and workers: each case is loaded with :func:`vce_core.io.load_case`, cropped to its brain bounding box
(plus a margin), normalised and kept as float16 (default) in a small per-process LRU cache; arrays are read
fully into memory, so no file handle outlives a load and DataLoader workers never share one. All random
choices of a sample (crop position, flips, 3-D patch centre) come from the key the sampler passes
(``(index, sample_seed)``, see :class:`ResumableSampler`), so a sample is a pure function of that key: the
same in every worker, after a resume, and on every DDP rank layout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vce_core.cache import LRU
from vce_core.errors import VCEInputError, as_input_error

AFFINE_METHODS = ("percentile", "zscore")
MODES = ("2d", "2.5d", "3d")
T1_ROLES = ("native", "low_dose", "standard_dose")
"""Input roles that are T1 images: normalised with the native image's parameters."""
TRUTH_NAMES = ("labels", "ce_truth", "ce_mask")
"""Case extras derived from the contrast-enhanced images: never an input (they would leak the target)."""

__all__ = [
    "AFFINE_METHODS",
    "MODES",
    "T1_ROLES",
    "TRUTH_NAMES",
    "CaseDataset",
    "ContrastCase",
    "ContrastPatchDataset",
    "ContrastSliceDataset",
    "InputSpec",
    "PatchDataset",
    "PreparedCase",
    "ResumableSampler",
    "SliceDataset",
    "apply_normalization",
    "build_dataset",
    "check_inputs",
    "fit_normalization",
    "find_case_folders",
    "input_volume",
    "invert_normalization",
    "normalize_inputs",
    "parse_input",
    "prepare_case",
    "prepare_contrast_case",
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


# --------------------------------------------------------------------------------------------- input names
@dataclass(frozen=True)
class InputSpec:
    """A parsed input name: ``name`` as written, its ``role`` and, for ``low_dose@d``, the ``dose``."""

    name: str
    role: str
    dose: float | None = None

    @property
    def is_t1(self) -> bool:
        """Whether the input is a T1 image (normalised with the native image's parameters)."""
        return self.role in T1_ROLES


_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_input(name: str) -> InputSpec:
    """Parse an input name: ``native``, ``standard_dose``, ``low_dose@0.33`` or a case extra (``t2``, ...).

    Raises :class:`VCEInputError` for an empty or malformed name, ``low_dose`` without ``@<dose>``, a dose on
    anything but ``low_dose``, or a dose outside (0, 1].
    """
    from vce_core.domain import check_dose

    if not isinstance(name, str) or not name.strip():
        raise VCEInputError(f"input name {name!r} is empty", expected="e.g. native, t2, adc or low_dose@0.33")
    role, _, dose_text = name.strip().partition("@")
    if not _ROLE_NAME.fullmatch(role):
        raise VCEInputError(
            f"input name {name!r} is malformed", expected="letters, digits, '_', '.', '-' (and @<dose>)"
        )
    if role == "low_dose":
        if not dose_text:
            raise VCEInputError(
                f"input {name!r} has no dose", expected="low_dose@<fraction>, e.g. low_dose@0.33"
            )
        with as_input_error(f"input {name!r}: {dose_text!r} is not a dose", expected="a fraction"):
            value = float(dose_text)
        return InputSpec(name.strip(), role, check_dose(value, name=f"dose of input {name!r}", positive=True))
    if dose_text or "@" in name:
        raise VCEInputError(f"input {name!r} has a dose", expected="@<dose> only after low_dose")
    return InputSpec(role, role)


def check_inputs(
    names: Sequence[str], optional: Sequence[str] = (), target: str = "standard_dose"
) -> list[InputSpec]:
    """Validate a virtual-contrast model's inputs; returns their :class:`InputSpec` in order.

    Rules: at least one input, no duplicates, ``optional`` ⊆ ``names``, the target is a T1 image and is not
    an input, and no input derived from the contrast images (:data:`TRUTH_NAMES`: it would leak the target).
    """
    specs = [parse_input(n) for n in names]
    if not specs:
        raise VCEInputError(
            "a virtual-contrast task has no inputs", expected="e.g. inputs: [native, t2, adc]"
        )
    written = [s.name for s in specs]
    duplicates = sorted({n for n in written if written.count(n) > 1})
    if duplicates:
        raise VCEInputError(f"input(s) {duplicates} are listed twice", expected="each input once")
    unknown = sorted(set(optional) - set(written))
    if unknown:
        raise VCEInputError(f"optional input(s) {unknown} are not inputs", expected=f"a subset of {written}")
    goal = parse_input(target)
    if not goal.is_t1:
        raise VCEInputError(
            f"target {target!r} is not a T1 image", expected="standard_dose or low_dose@<dose>"
        )
    for spec in specs:
        if spec.role in TRUTH_NAMES:
            raise VCEInputError(
                f"input {spec.name!r} is derived from the contrast-enhanced images and would leak the target",
                expected="images acquired without that contrast (native, t2, flair, adc, low_dose@<dose>)",
            )
        if spec == goal or (spec.role == "standard_dose" and goal.role == "standard_dose"):
            raise VCEInputError(f"input {spec.name!r} is the target", expected="inputs other than the target")
    return specs


def input_volume(case: Any, spec: InputSpec) -> Any:
    """The :class:`vce_core.io.Volume` of ``spec`` in a :class:`vce_core.io.Case`, or None when absent."""
    from vce_core.domain import match_dose

    if spec.role == "native":
        return case.native
    if spec.role == "standard_dose":
        return case.standard_dose
    if spec.role == "low_dose":
        acquired = match_dose(case.low_doses, spec.dose)
        return None if acquired is None else case.low_doses[acquired]
    return case.extra.get(spec.role)


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
    sequence: ``(TR in ms, flip angle in degrees)`` of the T1 sequence (case.json ``meta.sequence``), or
        ``None`` when the case does not record it.
    t1_target: ``None``, or (phantom cases, when asked for) the true native-T1 log factor of every voxel of
        an enhancing tissue (or of the lesions only, or of every labelled tissue), NaN elsewhere
        (:func:`true_t1_log_factor`), same shape, float32.
    lesions: ``None``, or (phantom cases, when asked for) ``{tissue name: (N, 3) int32 voxel indices}`` of
        each enhancing lesion tissue the case holds (:data:`LESION_TISSUES`; :func:`lesion_voxels`).
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
    sequence: tuple[float, float] | None = None
    t1_target: np.ndarray | None = None
    lesions: dict[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.native.shape)  # type: ignore[return-value]


def tissue_t1_factor(tissue: Any, field_strength: float) -> float:
    """``T1_tissue / DEFAULT_T1_S[B0]``: the factor a learned T1 map should give a phantom tissue
    (:class:`vce_core.phantom.Tissue`) at 1.5 or 3 T (1.0 for the glioblastoma rim, whose T1 the default
    is)."""
    from vce_core.baselines import DEFAULT_T1_S

    return tissue.t1_at(field_strength) / DEFAULT_T1_S[field_strength]


T1_TARGET_TISSUES = ("enhancing", "lesions", "all")
"""Which voxels a T1 target covers: those of tissues that enhance, of the enhancing lesions only
(:data:`LESION_TISSUES`: not the dura, vessels or choroid plexus), or of every labelled tissue."""


def t1_target_scope(t1_target: bool | str) -> str | None:
    """The tissue scope of a ``t1_target`` argument: False → None, True → ``"enhancing"``, or one of
    :data:`T1_TARGET_TISSUES`; VCEInputError otherwise."""
    if t1_target is False:
        return None
    if t1_target is True:
        return "enhancing"
    if t1_target not in T1_TARGET_TISSUES:
        raise VCEInputError(f"T1 target tissues {t1_target!r}", expected=" or ".join(T1_TARGET_TISSUES))
    return str(t1_target)


def true_t1_log_factor(case: Any, tissues: str = "enhancing") -> np.ndarray:
    """The phantom's true native-T1 log factor ``log(T1_tissue / DEFAULT_T1_S[B0])`` per voxel (float32),
    on the voxels of tissues that enhance (``Tissue.enhancing``: the only ones where the native T1 changes
    a synthesized enhancement noticeably; ``tissues="enhancing"``), of the enhancing lesions only
    (``"lesions"``: :data:`LESION_TISSUES`) or of every labelled tissue (``"all"``), NaN elsewhere; the
    target of a learned T1 map (``loss_weights.t1`` of the ``ld_cgan`` objective).

    ``case``: a loaded phantom case (:func:`vce_core.io.load_case`) with its ``labels`` volume and the
    ``meta.labels`` names. Raises :class:`VCEInputError` for a case without them (not a phantom case), an
    unknown tissue name or a field strength the tissue table does not hold (1.5 and 3 T).
    """
    from vce_core.baselines import DEFAULT_T1_S
    from vce_core.phantom import TISSUES

    scope = t1_target_scope(tissues)
    names = case.meta.get("labels") if isinstance(case.meta, dict) else None
    if "labels" not in case.extra or not isinstance(names, dict):
        raise VCEInputError(
            "the case has no tissue labels, so its true T1 is unknown",
            expected="phantom cases (labels.nii.gz and meta.labels in case.json) for loss_weights.t1",
        )
    fs = float(case.field_strength)
    if fs not in DEFAULT_T1_S:
        raise VCEInputError(
            f"field strength {fs:g} T has no tabulated T1", expected="phantom cases at 1.5 or 3 T"
        )
    labels = np.asarray(case.extra["labels"].data).astype(np.int64)
    out = np.full(labels.shape, np.nan, np.float32)
    for value, name in names.items():
        tissue = TISSUES.get(str(name))
        if tissue is None and str(name) != "background":
            raise VCEInputError(f"unknown tissue {name!r} in the case's labels", expected=", ".join(TISSUES))
        if tissue is None:
            continue
        covered = {"all": True, "lesions": str(name) in LESION_TISSUES}.get(scope, tissue.enhancing)
        if covered:
            out[labels == int(value)] = math.log(tissue_t1_factor(tissue, fs))
    return out


LESION_TISSUES = ("enhancing_rim", "metastasis", "meningioma", "weak_lesion")
"""The phantom's enhancing lesion tissues (``meta.labels`` names): what ``lesion_focus`` centres crops on."""


def lesion_voxels(case: Any) -> dict[str, np.ndarray]:
    """``{tissue: (N, 3) int32 voxel indices}`` of each enhancing lesion tissue (:data:`LESION_TISSUES`)
    of a loaded phantom case (its ``labels`` volume and ``meta.labels``); tissues it lacks are left out.
    Raises :class:`VCEInputError` for a case without tissue labels."""
    names = case.meta.get("labels") if isinstance(case.meta, dict) else None
    if "labels" not in case.extra or not isinstance(names, dict):
        raise VCEInputError(
            "the case has no tissue labels, so its lesions are unknown",
            expected="phantom cases (labels.nii.gz and meta.labels in case.json) for lesion_focus",
        )
    labels = np.asarray(case.extra["labels"].data).astype(np.int64)
    out = {}
    for value, name in names.items():
        if str(name) in LESION_TISSUES:
            idx = np.argwhere(labels == int(value)).astype(np.int32)
            if len(idx):
                out[str(name)] = idx
    return out


def prepare_case(
    folder: str | PathLike,
    *,
    normalization: str = "percentile",
    margin: int = 4,
    dtype: str = "float16",
    t1_target: bool | str = False,
    lesions: bool = False,
) -> PreparedCase:
    """Load a case folder, crop it to the brain bounding box (+ ``margin`` voxels) and normalise it;
    ``t1_target``: also its :func:`true_t1_log_factor` (True or ``"enhancing"``: on enhancing tissues,
    ``"lesions"``: on the enhancing lesions, ``"all"``: on every labelled tissue), ``lesions``: also its
    :func:`lesion_voxels` inside the crop (phantom cases only).

    Raises :class:`VCEInputError` if the case has no acquired low dose or its volumes do not share one grid,
    or (``t1_target``, ``lesions``) has no tissue labels.
    """
    from vce_core.baselines import case_tr_flip
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask

    folder = Path(folder)
    scope = t1_target_scope(t1_target)
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
    bbox = _brain_bbox(brain, margin)
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
        sequence=case_tr_flip(case),
        t1_target=np.ascontiguousarray(true_t1_log_factor(case, scope)[crop]) if scope else None,
        lesions=_cropped_lesions(case, bbox) if lesions else None,
    )


def _cropped_lesions(case: Any, bbox: Sequence[tuple[int, int]]) -> dict[str, np.ndarray]:
    """:func:`lesion_voxels` inside ``bbox``, in the cropped grid's indices."""
    lo, hi = np.array([b[0] for b in bbox]), np.array([b[1] for b in bbox])
    out = {}
    for name, idx in lesion_voxels(case).items():
        inside = idx[((idx >= lo) & (idx < hi)).all(axis=1)] - lo
        if len(inside):
            out[name] = inside.astype(np.int32)
    return out


def _sequence_vector(case: PreparedCase) -> torch.Tensor:
    """A sample's ``sequence`` (:func:`vce_core.models.ld_cgan.sequence_tensor`); NaN TR and flip when the
    case records no sequence (a physics-base generator then refuses it)."""
    from vce_core.models.ld_cgan import sequence_tensor

    if case.sequence is None:
        return torch.tensor([case.background, math.nan, math.nan], dtype=torch.float32)
    return sequence_tensor(case.background, *case.sequence)


def _brain_bbox(brain: np.ndarray, margin: int) -> tuple[tuple[int, int], ...]:
    """The brain's bounding box ``((i0, i1), (j0, j1), (k0, k1))`` plus ``margin`` (whole grid if empty)."""
    if not brain.any():
        return tuple((0, n) for n in brain.shape)
    idx = np.nonzero(brain)
    return tuple(
        (max(int(a.min()) - margin, 0), min(int(a.max()) + 1 + margin, n))
        for a, n in zip(idx, brain.shape, strict=False)
    )


@dataclass
class ContrastCase:
    """One case prepared for a virtual-contrast model (cropped to the brain bounding box, normalised).

    Attributes
    ----------
    case_id, field_strength (T), folder.
    names: the input names, in the model's order.
    inputs: array (M, I', J', K') of the normalised inputs (cache dtype); an absent optional input is zeros.
    present: per input, whether the case has it.
    native: (I', J', K') native image normalised with its own parameters (also the target's).
    standard_dose: (I', J', K') the target normalised with the native image's parameters (None at inference).
    brain: bool (I', J', K'); bbox: the crop in the original grid.
    params: normalisation parameters per input name and for ``"native"`` (the target's).
    backgrounds: per input, the normalised value of a raw 0 (0 for an absent input), used to pad.
    background: the native normalisation's value of a raw 0 (pads native and target).
    display_range: the native image's 0.5 and 99.5 percentiles inside the brain (raw units), the scale of
        the validation metrics.
    """

    case_id: str
    field_strength: float
    folder: Path
    names: tuple[str, ...]
    inputs: np.ndarray
    present: tuple[bool, ...]
    native: np.ndarray
    standard_dose: np.ndarray | None
    brain: np.ndarray
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    params: dict[str, dict[str, Any]]
    backgrounds: tuple[float, ...]
    background: float
    display_range: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.native.shape)  # type: ignore[return-value]


def _check_grid(volume: Any, shape: tuple[int, ...], name: str, folder: Path) -> np.ndarray:
    data = np.asarray(getattr(volume, "data", volume), dtype=np.float32)
    if data.shape != shape:
        raise VCEInputError(
            f"the {name} image has shape {data.shape} but the native image has {shape}",
            path=folder,
            expected="all volumes of a case on one grid",
        )
    return data


def normalize_inputs(
    images: dict[str, np.ndarray | None],
    specs: Sequence[InputSpec],
    brain: np.ndarray,
    method: str,
    crop: tuple[slice, ...] = (),
) -> tuple[np.ndarray, list[bool], dict[str, dict[str, Any]], list[float]]:
    """Normalise raw inputs ``images[name]`` (None = absent) for a virtual-contrast model.

    T1 inputs use ``images["native"]``'s parameters, any other modality its own, fitted inside ``brain``;
    absent inputs become zeros. Returns ``(stack [M, *crop shape] float32, present, params, backgrounds)``;
    ``params`` also holds ``"native"``.
    """
    from vce_core.preprocess import normalize, normalize_with

    native = images["native"]
    _, native_params = normalize(native, method, mask=brain)
    params: dict[str, dict[str, Any]] = {"native": native_params}
    planes, present, backgrounds = [], [], []
    for spec in specs:
        raw = images.get(spec.name)
        if raw is None:
            planes.append(np.zeros(native[crop].shape, np.float32))
            present.append(False)
            backgrounds.append(0.0)
            continue
        p = native_params if spec.is_t1 else normalize(raw, method, mask=brain)[1]
        params[spec.name] = p
        planes.append(np.asarray(normalize_with(raw[crop], p), dtype=np.float32))
        present.append(True)
        backgrounds.append(float(normalize_with(np.zeros(1, np.float32), p)[0]))
    return np.stack(planes), present, params, backgrounds


def prepare_contrast_case(
    folder: str | PathLike,
    inputs: Sequence[str],
    optional: Sequence[str] = (),
    *,
    target: str | None = "standard_dose",
    normalization: str = "percentile",
    margin: int = 4,
    dtype: str = "float16",
) -> ContrastCase:
    """Load a case folder for a virtual-contrast model: its inputs, the target, cropped and normalised.

    Raises :class:`VCEInputError` naming the case folder and the input when a required input (not in
    ``optional``) or the target is missing, or when a volume is not on the native grid.
    """
    from vce_core.io import load_case
    from vce_core.preprocess import brain_mask, normalize_with

    folder = Path(folder)
    specs = check_inputs(inputs, optional, target or "standard_dose")
    case = load_case(folder)
    native = np.asarray(case.native.data, dtype=np.float32)
    images: dict[str, np.ndarray | None] = {"native": native}
    for spec in specs:
        volume = input_volume(case, spec)
        if volume is None and spec.name not in optional:
            raise VCEInputError(
                f"the case has no {spec.name!r} image, a required input of this model",
                path=folder,
                expected=f"a case with {', '.join(s.name for s in specs if s.name not in optional)}",
            )
        images[spec.name] = None if volume is None else _check_grid(volume, native.shape, spec.name, folder)
    brain = np.asarray(brain_mask(native), dtype=bool)
    bbox = _brain_bbox(brain, margin)
    crop = tuple(slice(a, b) for a, b in bbox)
    stack, present, params, backgrounds = normalize_inputs(images, specs, brain, normalization, crop)
    store = np.dtype(dtype)
    goal = None
    if target is not None:
        volume = input_volume(case, parse_input(target))
        if volume is None:
            raise VCEInputError(f"the case has no {target!r} image (the target)", path=folder)
        goal = normalize_with(_check_grid(volume, native.shape, target, folder)[crop], params["native"])
    lo, hi = np.percentile(native[brain] if brain.any() else native, [0.5, 99.5])
    return ContrastCase(
        case_id=str(case.meta.get("case_id", folder.name)),
        field_strength=float(case.field_strength),
        folder=folder,
        names=tuple(s.name for s in specs),
        inputs=stack.astype(store),
        present=tuple(present),
        native=np.asarray(normalize_with(native[crop], params["native"]), dtype=np.float32).astype(store),
        standard_dose=None if goal is None else np.asarray(goal, dtype=np.float32).astype(store),
        brain=np.ascontiguousarray(brain[crop]),
        bbox=bbox,  # type: ignore[arg-type]
        params=params,
        backgrounds=tuple(backgrounds),
        background=float(normalize_with(np.zeros(1, np.float32), params["native"])[0]),
        display_range=(float(lo), float(max(hi, lo + 1e-6))),
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
    t1_target: also load each case's true native-T1 log factor (:func:`true_t1_log_factor`, phantom cases
        only) and return it with every sample as ``t1_target`` (NaN where unknown or padded), cropped and
        flipped with the images; True or ``"enhancing"``: on enhancing tissues, ``"lesions"``: on the
        enhancing lesions, ``"all"``: on every labelled tissue (:func:`t1_target_scope`).
    lesion_voxels: also load where each case's enhancing lesions are (:func:`lesion_voxels`, phantom cases
        only), for datasets that centre crops on them.
    """

    spatial_dims = 2
    normalizations: tuple[str, ...] = AFFINE_METHODS

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
        t1_target: bool | str = False,
        lesion_voxels: bool = False,
    ):
        if crop is not None and (crop <= 0 or crop % 8):
            raise VCEInputError(f"crop {crop} is not a positive multiple of 8", expected="e.g. 64, 96 or 128")
        if normalization not in self.normalizations:
            raise VCEInputError(
                f"normalisation {normalization!r} is not supported",
                expected=" or ".join(self.normalizations),
            )
        self.folders = [Path(f) for f in folders]
        if not self.folders:
            raise VCEInputError("no case folders given", expected="at least one case folder")
        self.normalization, self.crop, self.flips = normalization, crop, flips
        self.cache_size, self.dtype, self.margin = max(1, int(cache_size)), dtype, margin
        self.t1_target, self.lesion_voxels = t1_target_scope(t1_target) or False, bool(lesion_voxels)
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
            self.doses.append(self._case_doses(case))
            self.items.extend(self._index_case(ci, case))

    def _case_doses(self, case: Any) -> tuple[float, ...]:
        """The acquired doses a case contributes (for :meth:`describe`)."""
        return tuple(case.residuals)

    def _prepare(self, folder: Path) -> Any:
        """Load and prepare one case folder (cached by :meth:`case`)."""
        return prepare_case(
            folder,
            normalization=self.normalization,
            margin=self.margin,
            dtype=self.dtype,
            t1_target=self.t1_target,
            lesions=self.lesion_voxels,
        )

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

    def case(self, ci: int) -> Any:
        """The prepared case number ``ci`` (loaded on first use, then cached per process)."""
        return self._cache.get_or_compute(ci, lambda: self._prepare(self.folders[ci]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, sample_seed = (key, int(key)) if isinstance(key, int | np.integer) else key
        ci, dose, pos = self.items[int(index)]
        return self._sample(self.case(ci), dose, pos, np.random.default_rng([int(sample_seed), 1]))

    def _flip(self, arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Random flips (p = 0.5 per spatial axis) of arrays ``[C, *S]`` alike, when cropping with flips."""
        arrays = list(arrays)
        if self.crop is not None and self.flips:
            for axis in range(1, arrays[0].ndim):
                if rng.random() < 0.5:
                    arrays = [np.flip(a, axis) for a in arrays]
        return arrays

    def _sample(self, case: PreparedCase, dose: float, pos: int, rng: np.random.Generator) -> dict[str, Any]:
        """The sample of index entry ``(case, dose, pos)`` with the random choices of ``rng``."""
        native, sd, res, brain, *t1 = self._flip(self._extract(case, dose, pos, rng), rng)
        extra = {"t1_target": torch.from_numpy(np.ascontiguousarray(t1[0], dtype=np.float32))} if t1 else {}
        return {
            "native": torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32)),
            "standard_dose": torch.from_numpy(np.ascontiguousarray(sd, dtype=np.float32)),
            "residual": torch.from_numpy(np.ascontiguousarray(res, dtype=np.float32)),
            "brain": torch.from_numpy(np.ascontiguousarray(brain, dtype=bool)),
            "dose": torch.tensor(dose, dtype=torch.float32),
            "field_strength": torch.tensor(case.field_strength, dtype=torch.float32),
            "sequence": _sequence_vector(case),
            "case_id": case.case_id,
            **extra,
        }

    def _extract(
        self, case: PreparedCase, dose: float, pos: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """``[native, standard_dose, residual, brain]`` of the sample, plus ``t1_target`` when the case
        holds one, cropped alike."""
        raise NotImplementedError

    @staticmethod
    def _with_t1(case: PreparedCase, arrays: list[np.ndarray], pads: list[Any], t1: Any) -> None:
        """Append the case's ``t1_target`` (``t1``: a function of the full array → the sample's array; NaN
        padding) to ``arrays`` and ``pads`` when the case holds one."""
        if case.t1_target is not None:
            arrays.append(t1(case.t1_target))
            pads.append(np.nan)

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
        lesion_focus: float = 0.0,
        **kwargs: Any,
    ):
        if context < 0:
            raise VCEInputError(
                f"context {context} is negative", expected="0 (2-D) or a positive half-width (2.5-D)"
            )
        for name, value in (("ce_focus", ce_focus), ("lesion_focus", lesion_focus)):
            if not 0.0 <= value <= 1.0:
                raise VCEInputError(f"{name} {value} is outside [0, 1]", expected="a probability")
        self.context, self.brain_fraction, self.ce_focus = context, brain_fraction, ce_focus
        self.lesion_focus = float(lesion_focus)
        if self.lesion_focus:
            kwargs["lesion_voxels"] = True
        super().__init__(folders, **kwargs)

    def _index_case(self, ci: int, case: PreparedCase) -> list[tuple[int, float, int]]:
        frac = case.brain.reshape(-1, case.brain.shape[2]).mean(axis=0)
        slices = [int(k) for k in np.nonzero(frac > self.brain_fraction)[0]]
        return [(ci, d, k) for d in case.residuals for k in slices]

    def _extract(self, case, dose, pos, rng):  # noqa: ANN001, ANN202 - see base class
        K = case.shape[2]
        centre = None
        if self.crop is not None and self.lesion_focus and case.lesions and rng.random() < self.lesion_focus:
            pos, centre = self._lesion_centre(case, rng)
        ks = np.clip(np.arange(pos - self.context, pos + self.context + 1), 0, K - 1)
        native = np.moveaxis(case.native[:, :, ks], 2, 0)
        sd = np.moveaxis(case.standard_dose[:, :, ks], 2, 0)
        res = case.residuals[dose][None, :, :, pos]
        brain = case.brain[None, :, :, pos]
        arrays, pads = [native, sd, res, brain], [case.background, case.background, 0.0, False]
        self._with_t1(case, arrays, pads, lambda t: t[None, :, :, pos])
        starts, size = self._window(case, pos, rng, centre)
        return _crop(arrays, starts, size, pads)

    @staticmethod
    def _lesion_centre(case: PreparedCase, rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
        """``(slice, (i, j))`` of a random voxel of a lesion tissue drawn uniformly among the case's
        (so a glioblastoma's large rim is not drawn more often than a small metastasis)."""
        assert case.lesions
        names = sorted(case.lesions)
        voxels = case.lesions[names[int(rng.integers(len(names)))]]
        i, j, k = voxels[int(rng.integers(len(voxels)))]
        return int(k), (int(i), int(j))

    def _window(
        self, case: Any, pos: int, rng: np.random.Generator, centre: tuple[int, int] | None = None
    ) -> tuple[list[int], tuple[int, int]]:
        """Start and size of the in-plane window of axial slice ``pos``: a random, CE-centred or (``centre``
        given) lesion-centred crop, or the whole slice padded to a multiple of 8."""
        H, W = case.shape[:2]
        if self.crop is not None:
            size = (self.crop, self.crop)
            if centre is None:
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
        return starts, size

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
    :attr:`brain_probability` (seed 000's 0.9) and on a uniformly random voxel otherwise.
    ``patches_per_case`` index entries per (case, dose) make an epoch. Shapes: native/standard_dose/residual/
    brain ``[1, D, H, W]``. With ``crop=None`` the whole bounding-box volume is returned, padded to a multiple
    of 8 (validation).
    """

    spatial_dims = 3
    brain_probability = 0.9
    """Share of the patches centred on a brain voxel (seed 000's; the training config does not set it)."""

    def __init__(
        self,
        folders: Sequence[str | PathLike],
        *,
        patches_per_case: int = 16,
        **kwargs: Any,
    ):
        if (
            isinstance(patches_per_case, bool)
            or not isinstance(patches_per_case, int)
            or patches_per_case < 1
        ):
            raise VCEInputError(
                f"patches_per_case is {patches_per_case!r}",
                expected="a whole number ≥ 1 (patches per case and dose)",
            )
        self.patches_per_case = patches_per_case
        super().__init__(folders, **kwargs)

    def _index_case(self, ci: int, case: PreparedCase) -> list[tuple[int, float, int]]:
        per = self.patches_per_case if self.crop is not None else 1
        return [(ci, d, p) for d in case.residuals for p in range(per)]

    def _extract(self, case, dose, pos, rng):  # noqa: ANN001, ANN202 - see base class
        arrays = [case.native[None], case.standard_dose[None], case.residuals[dose][None], case.brain[None]]
        pads = [case.background, case.background, 0.0, False]
        self._with_t1(case, arrays, pads, lambda t: t[None])
        starts, size = self._window(case, rng)
        return _crop(arrays, starts, size, pads)

    def _window(self, case: Any, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """Start and size of a patch (centred on a brain voxel with ``brain_probability``), or the whole
        volume padded to a multiple of 8 when ``crop`` is None."""
        if self.crop is None:
            return [0, 0, 0], [padded_size(n) for n in case.shape]
        if rng.random() < self.brain_probability and case.brain.any():
            flat = np.flatnonzero(case.brain)
            center = np.unravel_index(int(flat[rng.integers(len(flat))]), case.shape)
        else:
            center = [int(rng.integers(n)) for n in case.shape]
        return [int(c) - self.crop // 2 for c in center], [self.crop] * 3


class _ContrastData:
    """Virtual-contrast behaviour shared by the slice and patch datasets (mixed in before them)."""

    normalizations: tuple[str, ...] = ("percentile", "zscore", "sigmoid", "tanh")
    input_names: tuple[str, ...]
    optional_inputs: tuple[str, ...]
    target: str

    def __init__(
        self,
        folders: Sequence[str | PathLike],
        *,
        inputs: Sequence[str],
        optional_inputs: Sequence[str] = (),
        target: str = "standard_dose",
        **kwargs: Any,
    ):
        """The model's input names (card order), the optional ones and the target; the rest of ``kwargs``
        goes to the slice or patch dataset mixed in after this class."""
        check_inputs(inputs, optional_inputs, target)
        self.input_names, self.optional_inputs, self.target = tuple(inputs), tuple(optional_inputs), target
        super().__init__(folders, **kwargs)  # type: ignore[call-arg]

    def _prepare(self, folder: Path) -> ContrastCase:
        return prepare_contrast_case(
            folder,
            self.input_names,
            self.optional_inputs,
            target=self.target,
            normalization=self.normalization,  # type: ignore[attr-defined]
            margin=self.margin,  # type: ignore[attr-defined]
            dtype=self.dtype,  # type: ignore[attr-defined]
        )

    def _case_doses(self, case: ContrastCase) -> tuple[float, ...]:
        return ()

    def _contrast_sample(
        self,
        case: ContrastCase,
        inputs: Sequence[np.ndarray],
        rest: Sequence[np.ndarray],
        window: tuple[Sequence[int], Sequence[int]],
        rng: np.random.Generator,
    ) -> dict[str, Any]:
        """Crop every input (padded with its own background) and ``rest = [target, native, brain]`` to
        ``window``, flip them alike, and build the sample dict."""
        pads = [*case.backgrounds, case.background, case.background, False]
        arrays = self._flip(_crop([*inputs, *rest], *window, pads), rng)  # type: ignore[attr-defined]
        m = len(inputs)
        target, native, brain = arrays[m:]
        return {
            "inputs": torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays[:m]), dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "native": torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32)),
            "brain": torch.from_numpy(np.ascontiguousarray(brain, dtype=bool)),
            "present": torch.tensor([float(p) for p in case.present], dtype=torch.float32),
            "dose": torch.tensor(0.0, dtype=torch.float32),
            "field_strength": torch.tensor(case.field_strength, dtype=torch.float32),
            "case_id": case.case_id,
        }

    def describe(self) -> dict[str, Any]:
        """The dataset's card description, with its inputs (and no doses)."""
        out = super().describe()  # type: ignore[misc]
        out.pop("doses", None)
        return {**out, "inputs": list(self.input_names), "optional_inputs": list(self.optional_inputs)}


class ContrastSliceDataset(_ContrastData, SliceDataset):
    """Virtual contrast on axial slices (``context = 0``) or 2.5-D stacks: inputs → standard dose.

    One item per brain slice (the slice selection, crops, CE focus and flips of :class:`SliceDataset`).
    ``inputs`` ``[M·C, H, W]`` holds input ``m``'s slices ``k − c … k + c`` at channels ``m·C … m·C + C − 1``;
    ``target`` is the centre slice ``[1, H, W]``, or all ``C`` slices with ``target_context``.
    """

    def __init__(self, folders: Sequence[str | PathLike], *, target_context: bool = False, **kwargs: Any):
        self.target_context = target_context
        super().__init__(folders, **kwargs)

    def _index_case(self, ci: int, case: ContrastCase) -> list[tuple[int, float, int]]:
        frac = case.brain.reshape(-1, case.brain.shape[2]).mean(axis=0)
        return [(ci, 0.0, int(k)) for k in np.nonzero(frac > self.brain_fraction)[0]]

    def _sample(self, case: ContrastCase, dose: float, pos: int, rng: np.random.Generator) -> dict[str, Any]:
        K = case.shape[2]
        ks = np.clip(np.arange(pos - self.context, pos + self.context + 1), 0, K - 1)
        inputs = [np.moveaxis(x[:, :, ks], 2, 0) for x in case.inputs]  # M × [C, I, J]
        target = np.moveaxis(case.standard_dose[:, :, ks if self.target_context else [pos]], 2, 0)
        rest = [target, case.native[None, :, :, pos], case.brain[None, :, :, pos]]
        return self._contrast_sample(case, inputs, rest, self._window(case, pos, rng), rng)


class ContrastPatchDataset(_ContrastData, PatchDataset):
    """Virtual contrast on 3-D patches (``crop³``; the whole bounding-box volume when ``crop`` is None).

    ``inputs [M, D, H, W]``, ``target``/``native``/``brain`` ``[1, D, H, W]``; ``patches_per_case`` items per
    case and epoch, centred like :class:`PatchDataset`'s.
    """

    target_context = False

    def _index_case(self, ci: int, case: ContrastCase) -> list[tuple[int, float, int]]:
        return [(ci, 0.0, p) for p in range(self.patches_per_case if self.crop is not None else 1)]

    def _sample(self, case: ContrastCase, dose: float, pos: int, rng: np.random.Generator) -> dict[str, Any]:
        inputs = [x[None] for x in case.inputs]
        rest = [case.standard_dose[None], case.native[None], case.brain[None]]
        return self._contrast_sample(case, inputs, rest, self._window(case, rng), rng)


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
    lesion_focus: float = 0.0,
    task: str = "low_dose",
    inputs: Sequence[str] = (),
    optional_inputs: Sequence[str] = (),
    target: str = "standard_dose",
    target_context: bool = False,
    t1_target: bool | str = False,
) -> CaseDataset:
    """The dataset of a mode and task.

    ``low_dose``: ``2d`` / ``2.5d`` → :class:`SliceDataset`, ``3d`` → :class:`PatchDataset`;
    ``virtual_contrast``: :class:`ContrastSliceDataset` / :class:`ContrastPatchDataset` over ``inputs``.
    ``lesion_focus`` (low-dose 2-D / 2.5-D, phantom cases): the share of crops centred on a lesion.
    """
    common = dict(normalization=normalization, crop=crop, flips=flips, cache_size=cache_size, dtype=dtype)
    if lesion_focus and (task != "low_dose" or mode == "3d"):
        raise VCEInputError(
            f"lesion_focus {lesion_focus} for {task} / {mode}",
            expected="lesion_focus 0, or a low-dose 2-D / 2.5-D dataset of phantom cases",
        )
    if task == "virtual_contrast":
        if t1_target:
            raise VCEInputError(
                "a T1 target is for low-dose generators with a learned T1 map", expected="task low_dose"
            )
        spec = dict(inputs=inputs, optional_inputs=optional_inputs, target=target)
        if mode == "3d":
            return ContrastPatchDataset(folders, patches_per_case=patches_per_case, **spec, **common)
        if mode not in MODES:
            raise VCEInputError(f"unknown data mode {mode!r}", expected=" or ".join(MODES))
        context = context if mode == "2.5d" else 0
        return ContrastSliceDataset(
            folders,
            context=context,
            brain_fraction=brain_fraction,
            ce_focus=ce_focus,
            target_context=target_context,
            **spec,
            **common,
        )
    common["t1_target"] = t1_target
    if mode in ("2d", "2.5d"):
        return SliceDataset(
            folders,
            context=context if mode == "2.5d" else 0,
            brain_fraction=brain_fraction,
            ce_focus=ce_focus,
            lesion_focus=lesion_focus,
            **common,
        )
    if mode == "3d":
        return PatchDataset(folders, patches_per_case=patches_per_case, **common)
    raise VCEInputError(f"unknown data mode {mode!r}", expected=" or ".join(MODES))
