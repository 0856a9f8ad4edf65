"""Phantom subjects: :func:`make_case` builds a :class:`PhantomCase`, a :class:`~vce_core.io.Case` that
can acquire any dose, noisy or noise-free, as a volume or a single slice.

Partial volumes
---------------
Each voxel holds fractions of *components* (CSF, GM, WM, blood, choroid plexus, dura, and the parts of
every lesion), stored as a sparse matrix ``F`` (voxels × components). Within a voxel the compartments
do not exchange water on the imaging time scale, so the signal is the fraction-weighted sum of the
per-component signals (not the signal of the mixed R1): ``S(x, d) = bias(x)·Σ_c F[x, c]·s_c(d)``.
``s_c(d)`` is a scalar per component and dose, so an acquisition is one sparse mat-vec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

from vce_core import domain
from vce_core.cache import LRU
from vce_core.display import plane_axis
from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume

from . import physics
from .anatomy import check_resolution, load_templates, random_bias, random_deformation, warp_templates
from .physics import (
    AGENTS,
    ENHANCING_LABELS,
    LABELS,
    SEQUENCE_PRESETS,
    TISSUES,
    Sequence,
    add_rician_noise,
    check_agent,
    check_dose,
    check_field_strength,
    resolve_sequence,
    rng_for,
)
from .structures import (
    Layer,
    LesionSpec,
    Mapper,
    choroid_plexus,
    dura,
    lesion_layers,
    random_lesions,
    vessels,
)

PHANTOM_VERSION = 1

# SeedSequence streams: one per random ingredient, so that fixing one argument leaves the others as they were
_CHOICES, _DEFORM, _BIAS, _VESSELS, _LESIONS = 1, 2, 3, 4, 5
_NOISE_T1, _NOISE_T2, _NOISE_FLAIR, _NOISE_ADC, _NOISE_SLICE = 10, 11, 12, 13, 20
_SLICE_CACHE_SIZE = 16
"""Slices whose voxel rows a subject keeps (the dose slider revisits the slice on screen)."""

SliceRows = tuple[np.ndarray, np.ndarray, sparse.csr_array, np.ndarray]


def _dose_key(dose: float) -> int:
    return int(round(dose * 1_000_000))


class _Subject:
    """Everything needed to render an acquisition: components, fractions, bias field and grid."""

    def __init__(
        self,
        *,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        resolution: float,
        flat_index: np.ndarray,
        fractions: sparse.csr_array,
        bias: np.ndarray,
        components: list[tuple[str, float, int | None]],
        labels: np.ndarray,
        field_strength: float,
        agent: physics.Agent,
        sequence: Sequence,
        skull_strip: bool,
        vindex: np.ndarray,
    ):
        self.shape = shape
        self.affine = affine
        self.spacing = (resolution,) * 3
        self.flat_index = flat_index
        self.fractions = fractions
        self.bias = bias
        self.components = components
        self.labels = labels
        self.field_strength = field_strength
        self.agent = agent
        self.sequence = sequence
        self.skull_strip = skull_strip
        self.vindex = vindex
        tissues = [TISSUES[name] for name, _, _ in components]
        self.pd = np.array([t.pd for t in tissues])
        self.t1 = np.array([t.t1_at(field_strength) for t in tissues])
        self.t2 = np.array([t.t2_at(field_strength) for t in tissues])
        self.adc = np.array([t.adc for t in tissues], dtype=np.float32)
        self.c_full = (
            np.array([t.c_full * f for t, (_, f, _) in zip(tissues, components, strict=True)])
            * agent.concentration_scale
        )
        self.r1 = agent.r1_at(field_strength)
        wm = TISSUES["white_matter"]
        wm_t1 = physics.spgr_signal(wm.pd, 1.0 / wm.t1_at(field_strength), wm.t2_at(field_strength), sequence)
        self.t1_scale = physics.WM_SIGNAL / float(wm_t1)
        self.t2_scale = physics.WM_SIGNAL / float(
            physics.t2w_signal(wm.pd, wm.t1_at(field_strength), wm.t2_at(field_strength))
        )
        self.flair_scale = physics.WM_SIGNAL / float(
            physics.flair_signal(wm.pd, wm.t1_at(field_strength), wm.t2_at(field_strength))
        )
        self.sigma = physics.WM_SIGNAL / physics.SNR_WM[field_strength]
        self.total = np.asarray(fractions.sum(axis=1), dtype=np.float32)
        self._slice_cache: LRU[SliceRows] = LRU(_SLICE_CACHE_SIZE)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable / deep-copyable state: all but the slice cache (a copy starts with an empty one)."""
        state = self.__dict__.copy()
        state.pop("_slice_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slice_cache = LRU(_SLICE_CACHE_SIZE)

    # -- per-component signals -------------------------------------------------------------------------
    def concentrations(self, dose: float) -> np.ndarray:
        """Gadolinium concentration (mM) of every component at ``dose`` (fraction of the standard dose)."""
        return dose * self.c_full

    def t1_signals(self, dose: float) -> np.ndarray:
        """Gradient-echo signal of every component at ``dose`` (a.u., pure WM native = 1000), float32."""
        r1 = 1.0 / self.t1 + self.r1 * self.concentrations(dose)
        return (self.t1_scale * physics.spgr_signal(self.pd, r1, self.t2, self.sequence)).astype(np.float32)

    def t2_signals(self) -> np.ndarray:
        return (self.t2_scale * physics.t2w_signal(self.pd, self.t1, self.t2)).astype(np.float32)

    def flair_signals(self) -> np.ndarray:
        return (self.flair_scale * physics.flair_signal(self.pd, self.t1, self.t2)).astype(np.float32)

    # -- rendering ---------------------------------------------------------------------------------------
    def render(self, signals: np.ndarray) -> np.ndarray:
        """Noise-free values (n_voxels,) float32 of an acquisition with per-component ``signals``."""
        vals = self.fractions @ signals
        vals *= self.bias
        return vals.astype(np.float32, copy=False)

    def to_grid(self, vals: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        out.ravel()[self.flat_index] = vals
        return out

    def noisy_grid(self, vals: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Rician acquisition: inside the brain only when skull-stripped, else over the whole grid."""
        if self.skull_strip:
            return self.to_grid(add_rician_noise(vals, sigma, rng))
        return add_rician_noise(self.to_grid(vals), sigma, rng)

    def adc_values(self, rng: np.random.Generator | None) -> np.ndarray:
        vals = self.fractions @ self.adc
        vals /= np.maximum(self.total, np.float32(1e-6))
        if rng is not None:
            vals += rng.standard_normal(vals.shape, dtype=np.float32) * np.float32(physics.ADC_NOISE_SD)
            np.maximum(vals, 0.0, out=vals)
        return vals.astype(np.float32, copy=False)

    def slice_rows(self, plane: str, index: int) -> SliceRows:
        """(in-brain mask of the slice, its voxel rows, their fraction rows, their bias), cached."""
        return self._slice_cache.get_or_compute(
            (plane, index), lambda: self._compute_slice_rows(plane, index)
        )

    def _compute_slice_rows(self, plane: str, index: int) -> SliceRows:
        idx2d = np.take(self.vindex, index, axis=plane_axis(plane))
        sel = idx2d >= 0
        rows = idx2d[sel]
        return sel, rows, self.fractions[rows], self.bias[rows]


class PhantomCase(Case):
    """A :class:`~vce_core.io.Case` from :func:`make_case` that can acquire any dose.

    Volumes are float32 in arbitrary units (pure white matter on the native T1 image reads 1000, times
    the bias field). The case's ``native``, ``standard_dose`` and ``low_doses`` are noisy acquisitions
    (Rician, one independent realisation each); ``extra`` holds ``t2``, ``flair`` (noisy), ``adc``
    (10⁻³ mm²/s), ``labels`` (see ``physics.LABELS``), ``ce_truth`` (noise-free standard dose minus
    noise-free native) and ``ce_mask`` (1 where the dominant tissue truly enhances).
    """

    def __init__(self, subject: _Subject, seed: int, lesions: list[LesionSpec], **case_fields: Any):
        super().__init__(**case_fields)
        self._subject = subject
        self._seed = seed
        self.lesions = lesions

    @property
    def noise_sigma(self) -> float:
        """σ (a.u.) of the Gaussian noise on real and imaginary parts of every T1 acquisition."""
        return self._subject.sigma

    @property
    def seed(self) -> int:
        return self._seed

    def _volume(self, data: np.ndarray, **meta: Any) -> Volume:
        s = self._subject
        return Volume(
            data, s.affine.copy(), s.spacing, {"synthetic": True, "generator": "vce_core.phantom", **meta}
        )

    def noise_free(self, dose: float) -> Volume:
        """Noise-free T1 volume at ``dose`` (fraction of the standard dose, in [0, 2])."""
        dose = check_dose(dose)
        s = self._subject
        return self._volume(
            s.to_grid(s.render(s.t1_signals(dose))),
            modality="T1",
            dose=dose,
            noise_free=True,
            series_description=f"phantom T1 dose {dose:.3g} noise-free",
        )

    def acquire(self, dose: float, noise_seed: int | None = None) -> Volume:
        """Noisy (Rician) T1 volume at ``dose`` in [0, 2].

        The realisation is fixed by (case seed, dose, ``noise_seed``): ``acquire(d)`` reproduces the
        case's own acquisition at dose ``d``; another ``noise_seed`` gives an independent repeat scan.
        """
        dose = check_dose(dose)
        s = self._subject
        rng = rng_for(self._seed, _NOISE_T1, _dose_key(dose), *_noise_keys(noise_seed))
        data = s.noisy_grid(s.render(s.t1_signals(dose)), s.sigma, rng)
        return self._volume(
            data,
            modality="T1",
            dose=dose,
            noise_sigma=s.sigma,
            series_description=f"phantom T1 dose {dose:.3g}",
        )

    def _other_contrasts(self) -> dict[str, Volume]:
        """The case's ``extra`` volumes: noisy T2 and FLAIR, ADC, labels, CE truth and CE mask."""
        s = self._subject
        rng_t2, rng_flair = rng_for(self._seed, _NOISE_T2), rng_for(self._seed, _NOISE_FLAIR)
        return {
            "t2": self._volume(
                s.noisy_grid(s.render(s.t2_signals()), s.sigma, rng_t2),
                modality="T2",
                series_description="phantom T2",
            ),
            "flair": self._volume(
                s.noisy_grid(s.render(s.flair_signals()), s.sigma, rng_flair),
                modality="FLAIR",
                series_description="phantom FLAIR",
            ),
            "adc": self._volume(
                s.to_grid(s.adc_values(rng_for(self._seed, _NOISE_ADC))),
                modality="ADC",
                units="1e-3 mm2/s",
                series_description="phantom ADC",
            ),
            "labels": self._volume(
                s.labels.astype(np.float32), modality="labels", series_description="phantom labels"
            ),
            "ce_truth": self._volume(
                s.to_grid(s.render(s.t1_signals(1.0)) - s.render(s.t1_signals(0.0))),
                modality="ce_truth",
                series_description="phantom noise-free standard dose minus native",
            ),
            "ce_mask": self._volume(
                np.isin(s.labels, ENHANCING_LABELS).astype(np.float32),
                modality="mask",
                series_description="phantom enhancing tissue",
            ),
        }

    def noise_free_slice(self, dose: float, plane: str, index: int) -> np.ndarray:
        """Noise-free 2-D T1 slice (orientation as slicing the volume, see ``acquire_slice``)."""
        return self._slice(dose, plane, index, noise=False, noise_seed=None)

    def acquire_slice(self, dose: float, plane: str, index: int, noise_seed: int | None = None) -> np.ndarray:
        """Noisy 2-D T1 slice at ``dose``, computed on that slice only (a few ms at 1 mm).

        ``plane`` is ``axial`` (``[:, :, index]``), ``coronal`` (``[:, index, :]``) or ``sagittal``
        (``[index, :, :]``). The noise is its own realisation, fixed by (case seed, dose, plane, index,
        ``noise_seed``), with the same σ as the volumes.
        """
        return self._slice(dose, plane, index, noise=True, noise_seed=noise_seed)

    def _slice(
        self, dose: float, plane: str, index: int, *, noise: bool, noise_seed: int | None
    ) -> np.ndarray:
        dose = check_dose(dose)
        s = self._subject
        axis = plane_axis(plane)
        if (
            isinstance(index, bool)
            or not isinstance(index, int | np.integer)
            or not 0 <= index < s.shape[axis]
        ):
            raise VCEInputError(
                f"{plane} slice index {index!r} is out of range",
                expected=f"an integer in [0, {s.shape[axis] - 1}]",
            )
        index = int(index)
        sel, rows, frac, bias = s.slice_rows(plane, index)
        vals = frac @ s.t1_signals(dose)
        vals *= bias
        out = np.zeros(sel.shape, dtype=np.float32)
        if not noise:
            out[sel] = vals
            return out
        rng = rng_for(self._seed, _NOISE_SLICE, _dose_key(dose), axis, index, *_noise_keys(noise_seed))
        if s.skull_strip:
            out[sel] = add_rician_noise(vals.astype(np.float32), s.sigma, rng)
            return out
        out[sel] = vals
        return add_rician_noise(out, s.sigma, rng)

    def tissue_fraction(self, tissue: str) -> np.ndarray:
        """Volume fraction (I, J, K) float32 of ``tissue`` (a name in ``physics.TISSUES``)."""
        if tissue not in TISSUES:
            raise VCEInputError(f"unknown tissue {tissue!r}", expected="one of " + ", ".join(TISSUES))
        return self._columns([i for i, (name, _, _) in enumerate(self._subject.components) if name == tissue])

    def lesion_fraction(self, index: int) -> np.ndarray:
        """Volume fraction (I, J, K) float32 of lesion ``index`` (all its parts, edema excluded)."""
        if not 0 <= index < len(self.lesions):
            raise VCEInputError(
                f"lesion index {index} is out of range", expected=f"0 ≤ index < {len(self.lesions)}"
            )
        return self._columns(
            [
                i
                for i, (name, _, les) in enumerate(self._subject.components)
                if les == index and name != "edema"
            ]
        )

    def _columns(self, cols: list[int]) -> np.ndarray:
        s = self._subject
        if not cols:
            return np.zeros(s.shape, dtype=np.float32)
        vals = np.asarray(s.fractions[:, cols].sum(axis=1), dtype=np.float32).ravel()
        return s.to_grid(vals)


def _noise_keys(noise_seed: int | None) -> tuple[int, ...]:
    if noise_seed is None:
        return (0,)
    if isinstance(noise_seed, bool) or not isinstance(noise_seed, int | np.integer) or noise_seed < 0:
        raise VCEInputError(
            f"noise_seed {noise_seed!r} is not valid", expected="a non-negative integer or None"
        )
    return (1, int(noise_seed))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise VCEInputError(f"seed {seed!r} is not valid", expected="a non-negative integer")
    return int(seed)


def check_low_doses(doses: Iterable[Any]) -> list[float]:
    """Low doses to acquire, in the order given: each a dose of the domain in (0, 1], no duplicates.

    Unlike :func:`vce_core.domain.check_doses` the order is kept and a duplicate is refused rather than
    merged: the list is stored as given in ``meta["phantom"]``, which replays the case.
    """
    if isinstance(doses, str | bytes) or not isinstance(doses, Iterable):
        raise VCEInputError(
            f"doses {doses!r} are not a list of numbers", expected="a list of fractions in (0, 1]"
        )
    values = [domain.check_dose(d, name="low dose", positive=True) for d in doses]
    if len(set(values)) != len(values):
        raise VCEInputError(f"doses {values} contain duplicates", expected="distinct doses")
    return values


def _check_lesions(lesions: Iterable[LesionSpec | dict] | None) -> list[LesionSpec] | None:
    if lesions is None:
        return None
    out = []
    for item in lesions:
        if isinstance(item, LesionSpec):
            out.append(item)
        elif isinstance(item, dict):
            try:
                out.append(LesionSpec.from_dict(item))
            except TypeError as exc:
                raise VCEInputError(
                    f"bad lesion description {item!r} ({exc})", expected="LesionSpec fields"
                ) from exc
        else:
            raise VCEInputError(f"bad lesion {item!r}", expected="a LesionSpec or its dict")
    return out


class _Protocol(NamedTuple):
    """What the scanner does: field strength (T), contrast agent and T1 sequence."""

    field_strength: float
    agent: physics.Agent
    sequence: Sequence


class _Anatomy(NamedTuple):
    """The subject before composition: base tissue fractions, bias field and the structures painted over.

    ``gm``, ``wm``, ``csf`` and ``bias`` are float32 ``(I, J, K)`` on the template grid; ``layers`` are
    the enhancing structures and lesion parts, top first; ``edema`` the lesions' edema regions.
    """

    templates: Any
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    bias: np.ndarray
    layers: list[Layer]
    edema: list[Layer]
    lesions: list[LesionSpec]


def make_case(
    seed: int,
    *,
    doses: Iterable[float] = (0.1, 0.2, 0.33),
    field_strength: float | None = None,
    agent: str | None = None,
    sequence: str | Sequence | dict | None = None,
    resolution: float = 1.0,
    lesions: Iterable[LesionSpec | dict] | None = None,
    skull_strip: bool = True,
) -> PhantomCase:
    """Simulate one subject with native, standard-dose and low-dose T1, T2, FLAIR and ADC images.

    Parameters
    ----------
    seed: non-negative integer; the same arguments give bit-identical arrays on every machine.
    doses: low doses to acquire, fractions of the standard dose in (0, 1].
    field_strength: 1.5 or 3.0 (T); None → the sequence preset's field, else drawn from the seed.
    agent: ``gadobutrol``, ``gadoterate`` or ``gadopiclenol``; None → drawn from the seed.
    sequence: preset name (``physics.SEQUENCE_PRESETS``), a :class:`Sequence` (custom TR/TE/flip) or its
        dict; None → a preset of the field strength drawn from the seed.
    resolution: isotropic voxel size, 1 or 2 mm (grids 197×233×189 or 99×117×95, RAS+).
    lesions: explicit :class:`LesionSpec` list (``[]`` for none); None → random lesions from the seed.
    skull_strip: zero outside the brain (BraTS-like); False keeps Rician noise in the background.

    All arguments, and the random choices they resolve to, are stored in ``meta["phantom"]``.
    """
    seed = _check_seed(seed)
    dose_list = check_low_doses(doses)
    resolution = check_resolution(resolution)
    lesion_list = _check_lesions(lesions)
    arguments = {
        "seed": seed,
        "doses": dose_list,
        "field_strength": None if field_strength is None else check_field_strength(field_strength),
        "agent": None if agent is None else check_agent(agent).name,
        "sequence": None
        if sequence is None
        else (sequence if isinstance(sequence, str) else resolve_sequence(sequence).to_dict()),
        "resolution": resolution,
        "lesions": None if lesion_list is None else [spec.to_dict() for spec in lesion_list],
        "skull_strip": bool(skull_strip),
    }
    protocol = _resolve_protocol(seed, arguments["field_strength"], agent, sequence)
    anatomy = _simulate_anatomy(seed, resolution, lesion_list)
    subject = _compose(anatomy, protocol, skull_strip=bool(skull_strip))
    case = PhantomCase(
        subject,
        seed,
        list(anatomy.lesions),
        native=_placeholder(),
        standard_dose=_placeholder(),
        low_doses={},
        field_strength=protocol.field_strength,
        agent=protocol.agent.name,
        extra={},
        meta=_case_meta(seed, arguments, protocol, anatomy.lesions, subject.sigma),
    )
    case.native = case.acquire(0.0)
    case.standard_dose = case.acquire(1.0)
    case.low_doses = {d: case.acquire(d) for d in dose_list}
    case.extra = case._other_contrasts()
    return case


def _resolve_protocol(
    seed: int, field_strength: float | None, agent: str | None, sequence: str | Sequence | dict | None
) -> _Protocol:
    """The case's protocol: what the arguments fix, the rest drawn from the seed.

    The field strength is the argument's, else the sequence preset's, else drawn; the sequence is the
    argument's, else a preset of that field drawn from the seed. The three draws are made whatever is
    given, so fixing one argument leaves the other choices as they were.
    """
    rng = rng_for(seed, _CHOICES)
    drawn_field = float(rng.choice(physics.FIELD_STRENGTHS))
    drawn_agent = str(rng.choice(list(AGENTS)))
    drawn_preset = float(rng.random())
    seq = None if sequence is None else resolve_sequence(sequence)
    if field_strength is not None:
        fs = field_strength
    elif seq is not None and seq.field_strength is not None:
        fs = seq.field_strength
    else:
        fs = drawn_field
    if seq is None:
        presets = [p for p in SEQUENCE_PRESETS.values() if p.field_strength == fs]
        seq = presets[int(drawn_preset * len(presets))]
    elif seq.field_strength is not None and seq.field_strength != fs:
        raise VCEInputError(
            f"sequence preset {seq.name!r} is a {seq.field_strength:g} T protocol "
            f"but field_strength is {fs:g} T",
            expected="a preset of the same field strength, or a custom Sequence with field_strength=None",
        )
    agent_obj = check_agent(agent) if agent is not None else AGENTS[drawn_agent]
    return _Protocol(fs, agent_obj, seq)


def _simulate_anatomy(seed: int, resolution: float, lesion_list: list[LesionSpec] | None) -> _Anatomy:
    """The deformed brain of ``seed`` at ``resolution`` (mm) with its structures and lesions.

    ``lesion_list`` None draws random lesions from the seed. Each ingredient has its own random stream.
    """
    templates = load_templates(resolution)
    h = resolution
    deformation = random_deformation(templates.shape, h, rng_for(seed, _DEFORM))
    gm, wm, csf, mask = warp_templates(templates, deformation)
    bias = random_bias(templates.shape, h, rng_for(seed, _BIAS))
    normal_layers = _normal_structures(
        mask, csf, Mapper(templates.affine, deformation), h, rng_for(seed, _VESSELS)
    )
    if lesion_list is None:
        lesion_list = random_lesions(gm, wm, mask, templates.affine, h, rng_for(seed, _LESIONS))
    lesion_top, edema_layers = _lesion_parts(lesion_list, templates.affine, h, templates.shape)
    return _Anatomy(templates, gm, wm, csf, bias, lesion_top + normal_layers, edema_layers, lesion_list)


def _normal_structures(
    mask: np.ndarray, csf: np.ndarray, mapper: Mapper, h: float, rng: np.random.Generator
) -> list[Layer]:
    """Venous sinuses and veins, choroid plexus and dura, drawn in this order from one stream."""
    return vessels(mask, mapper, h, rng) + choroid_plexus(csf, mapper, h, rng) + [dura(mask, h, rng)]


def _lesion_parts(
    lesion_list: list[LesionSpec], affine: np.ndarray, h: float, shape: tuple[int, int, int]
) -> tuple[list[Layer], list[Layer]]:
    """Layers of every lesion (top first) and their edema regions; ``center_mm`` goes through ``affine``."""
    inv_affine = np.linalg.inv(affine)
    lesion_top: list[Layer] = []
    edema_layers: list[Layer] = []
    for i, spec in enumerate(lesion_list):
        if spec.center_vox is not None:
            c = np.asarray(spec.center_vox, dtype=np.float64)
        else:
            c = inv_affine[:3, :3] @ np.asarray(spec.center_mm) + inv_affine[:3, 3]
        top, edema = lesion_layers(spec, i, c, h, shape)
        lesion_top += top
        if edema is not None:
            edema_layers.append(edema)
    return lesion_top, edema_layers


def _case_meta(
    seed: int, arguments: dict[str, Any], protocol: _Protocol, lesion_list: list[LesionSpec], sigma: float
) -> dict[str, Any]:
    """``case.meta`` of a phantom case: the arguments as given and what they resolved to (replayable)."""
    resolved = {
        "field_strength": protocol.field_strength,
        "agent": protocol.agent.name,
        "sequence": protocol.sequence.to_dict(),
        "lesions": [spec.to_dict() for spec in lesion_list],
    }
    return {
        "case_id": f"phantom-{seed:04d}",
        "sequence": protocol.sequence.to_dict(),
        "phantom": {"version": PHANTOM_VERSION, "arguments": arguments, "resolved": resolved},
        "labels": {str(k): v for k, v in LABELS.items()},
        "noise_sigma": sigma,
        "synthetic": True,
    }


def _placeholder() -> Volume:
    return Volume(np.zeros((1, 1, 1), dtype=np.float32))


def _compose(anatomy: _Anatomy, protocol: _Protocol, *, skull_strip: bool) -> _Subject:
    """Paint the layers (top first) over the base tissues, convert WM/GM to edema, build the subject.

    A layer with occupancy o claims o of what the layers above it left; the base tissues keep the rest.
    Voxels whose total fraction is ≥ 0.5 are the brain (labelled); the subject keeps those only when
    ``skull_strip``, else every voxel with any tissue.
    """
    gm, wm, csf = anatomy.gm, anatomy.wm, anatomy.csf
    painted = _paint(gm, wm, csf, anatomy.layers)
    painted += _paint_edema(gm, wm, anatomy.edema)
    total = gm + wm
    total += csf
    for layer in painted:
        total[layer.slices] += layer.occupancy
    labels = _label_map(gm, wm, csf, painted)
    inside = total >= 0.5
    labels[~inside] = 0
    flat_index = np.flatnonzero(inside if skull_strip else total > 1e-4)
    vindex = np.full(gm.shape, -1, dtype=np.int32)
    vindex.ravel()[flat_index] = np.arange(len(flat_index), dtype=np.int32)
    components, fractions = _fraction_matrix(gm, wm, csf, painted, flat_index, vindex)
    templates = anatomy.templates
    return _Subject(
        shape=gm.shape,
        affine=templates.affine.copy(),
        resolution=templates.resolution,
        flat_index=flat_index,
        fractions=fractions,
        bias=anatomy.bias.ravel().take(flat_index),
        components=components,
        labels=labels,
        field_strength=protocol.field_strength,
        agent=protocol.agent,
        sequence=protocol.sequence,
        skull_strip=skull_strip,
        vindex=vindex,
    )


def _paint(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, layers: list[Layer]) -> list[Layer]:
    """Layers (top first) with the occupancy each claims; GM, WM and CSF are scaled, in place, to the rest."""
    remaining = np.ones(gm.shape, dtype=np.float32)
    painted: list[Layer] = []
    for layer in layers:
        sub = remaining[layer.slices]
        f = layer.occupancy * sub
        sub -= f
        painted.append(Layer(layer.tissue, layer.slices, f, layer.concentration_factor, layer.lesion))
    gm *= remaining
    wm *= remaining
    csf *= remaining
    return painted


def _paint_edema(gm: np.ndarray, wm: np.ndarray, edema_layers: list[Layer]) -> list[Layer]:
    """Edema layers: each converts 85 % of the WM and 30 % of the GM under its occupancy, in place."""
    painted: list[Layer] = []
    for layer in edema_layers:
        w_sub, g_sub = wm[layer.slices], gm[layer.slices]
        fw = layer.occupancy * np.float32(0.85) * w_sub
        fg = layer.occupancy * np.float32(0.3) * g_sub
        w_sub -= fw
        g_sub -= fg
        painted.append(Layer("edema", layer.slices, fw + fg, 1.0, layer.lesion))
    return painted


def _label_map(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, painted: list[Layer]) -> np.ndarray:
    """Label of every voxel (int16): the tissue of its largest component (ties → the later, upper one)."""
    labels = np.full(gm.shape, TISSUES["csf"].label, dtype=np.int16)
    best = csf.copy()
    for tissue, frac in (("gray_matter", gm), ("white_matter", wm)):
        better = frac > best
        labels[better] = TISSUES[tissue].label
        np.maximum(best, frac, out=best)
    for layer in reversed(painted):
        b = best[layer.slices]
        better = layer.occupancy > b
        labels[layer.slices][better] = TISSUES[layer.tissue].label
        np.maximum(b, layer.occupancy, out=b)
    return labels


def _fraction_matrix(
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    painted: list[Layer],
    flat_index: np.ndarray,
    vindex: np.ndarray,
) -> tuple[list[tuple[str, float, int | None]], sparse.csr_array]:
    """Components ``(tissue, concentration factor, lesion)`` and fractions (kept voxels × components).

    ``flat_index`` are the kept voxels (flat indices of the grid) and ``vindex`` their row per grid voxel
    (-1 where not kept). Layers of the same component share a column; fractions below 1e-5 are dropped.
    """
    n = len(flat_index)
    components: list[tuple[str, float, int | None]] = [
        ("csf", 1.0, None),
        ("gray_matter", 1.0, None),
        ("white_matter", 1.0, None),
    ]
    rows = [np.tile(np.arange(n, dtype=np.int32), 3)]
    cols = [np.repeat(np.arange(3, dtype=np.int32), n)]
    data = [np.concatenate([a.ravel().take(flat_index) for a in (csf, gm, wm)])]
    for layer in painted:
        key = (layer.tissue, float(layer.concentration_factor), layer.lesion)
        if key not in components:
            components.append(key)
        col = components.index(key)
        r = vindex[layer.slices].ravel()
        v = layer.occupancy.ravel()
        ok = (r >= 0) & (v > 1e-5)
        rows.append(r[ok])
        cols.append(np.full(int(ok.sum()), col, dtype=np.int32))
        data.append(v[ok].astype(np.float32))
    fractions = sparse.csr_array(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, len(components)),
        dtype=np.float32,
    )
    fractions.sum_duplicates()
    return components, fractions


def phantom_from_case(case: Case) -> PhantomCase | None:
    """Re-create the phantom subject of a loaded case from ``case.meta["phantom"]``; None for real data."""
    info = case.meta.get("phantom") if isinstance(case.meta, dict) else None
    if not isinstance(info, dict) or "arguments" not in info:
        return None
    args = dict(info["arguments"])
    seed = args.pop("seed")
    try:
        return make_case(seed, **args)
    except TypeError as exc:
        raise VCEInputError(
            f"the phantom description in case.json cannot be replayed ({exc})",
            path=case.meta.get("source_path"),
            expected="a case written by vce_core.phantom",
        ) from exc
