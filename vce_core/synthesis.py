"""Synthesize images from a trained checkpoint: low doses ``x̂_LD = x_NA + ŷ_LD`` at any dose in [0, 1]
(seed 000), or the standard dose from images acquired without contrast (virtual contrast, seeds 001–004).

A checkpoint is a folder with ``card.json`` and ``weights.safetensors`` written by :mod:`vce_core.train`
(format: :mod:`vce_core.checkpoint`); :meth:`Synthesizer.from_checkpoint` rebuilds the generator from the
card alone. ``list_checkpoints`` is re-exported from :mod:`vce_core.checkpoint`.

Intensities: the native image is normalised exactly as in training (the card's method, fitted on the native
image inside its brain mask); the generator's residual is mapped back with the same affine scale and added
to the *unnormalised* native image, so the output is on the input grid, in the input's units, and a model
that predicts a zero residual returns the native image exactly.

Slice-wise (2-D / 2.5-D) models run on axial slices ``[:, :, k]`` (their training plane), batched and padded
to a multiple of the model's size multiple (8), then cropped back. Noise for slice ``k`` is drawn from
``(seed, k)``, so :meth:`Synthesizer.synthesize_slice` (axial) returns exactly the slice of
:meth:`Synthesizer.synthesize` for the same seed. For coronal/sagittal planes a slice-wise model needs every
axial slice, so ``synthesize_slice`` synthesizes the full volume once per ``(dose, field_strength, seed)``
and keeps it on the :class:`Prepared` object (a small LRU cache); the app should expect the first
non-axial request per dose to take a full-volume time. 3-D models use a sliding window (the training patch
size, 50 % overlap, Gaussian blending); ``synthesize_slice`` evaluates only the windows that intersect the
requested plane, so it too equals the corresponding slice of ``synthesize``.

Virtual contrast (a card with ``task: virtual_contrast``): the same class serves zero-dose models. Their
inputs are the card's ``inputs`` (``native``, ``t2``, ``flair``, ``adc``, ``low_dose@0.33`` …), given as a
mapping (:meth:`Synthesizer.prepare_inputs`), as keyword arguments of :meth:`Synthesizer.prepare` or taken
from a case (:meth:`Synthesizer.prepare_case`). A required input that is missing raises
:class:`VCEInputError` naming it; an ``optional_inputs`` entry that is missing becomes a zero image (seed 001)
and is listed in :attr:`PreparedContrast.missing`, so a user interface can say so. ``dose`` is absent or 0
(no agent is given); :meth:`Synthesizer.synthesize_prepared` returns the synthesized standard dose for the
whole volume (``progress(done, total)`` per batch of slices or window) and
:meth:`Synthesizer.synthesize_slice` one slice of any plane, equal to that slice of the volume. Each input is
normalised like in training and the output is mapped back with the native image's parameters
(:func:`vce_core.preprocess.denormalize`, exact for every method), so it is in the native image's units.

CLI::

    python -m vce_core.synthesis --model assets/models/<name> --case <case folder> --dose 0.25
        [--dose 0.1 ...] --out <dir> [--format nifti|dicom] [--seed 0] [--device auto]
    python -m vce_core.synthesis --model assets/models/hrfcn_2d --case <case folder> --out <dir>
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vce_core.baselines import as_volume_array, linear_baseline, volume_pair
from vce_core.cache import LRU
from vce_core.checkpoint import ModelCard, list_checkpoints, read_card, read_weights
from vce_core.data import _affine_of, apply_normalization, fit_normalization
from vce_core.display import plane_axis
from vce_core.domain import check_dose, check_field_strength, check_t1_sequence
from vce_core.errors import VCEInputError, VCEModelError

__all__ = ["Prepared", "PreparedContrast", "Synthesizer", "linear_baseline", "list_checkpoints"]

_VOLUME_CACHE = 4  # full volumes kept per Prepared for non-axial planes of slice-wise models

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called after every batch (2-D) or window (3-D)."""


# ======================================================================================== prepared inputs
@dataclass(kw_only=True)
class _PreparedSubject:
    """What every prepared subject holds (see :class:`Prepared` and :class:`PreparedContrast`).

    Attributes
    ----------
    native_raw: float32 (I, J, K), the native image in its own units (the output's grid and units).
    brain: bool (I, J, K) brain mask of the native image (the normalisation is fitted in it).
    volumes: full synthetic volumes of slice-wise models, kept for coronal/sagittal slices (least recently
        used dropped beyond ``_VOLUME_CACHE``).
    """

    native_raw: np.ndarray
    brain: np.ndarray
    volumes: LRU[np.ndarray] = field(default_factory=lambda: LRU(_VOLUME_CACHE), repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.native_raw.shape)  # type: ignore[return-value]

    def slice_position(self, plane: str, index: Any) -> tuple[int, int]:
        """``(axis, index)`` of slice ``index`` of ``plane`` (VCEInputError if out of range or not an int)."""
        axis = plane_axis(plane)
        n = self.shape[axis]
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= int(index) < n:
            raise VCEInputError(
                f"{plane} slice index {index!r} is out of range", expected=f"an integer in [0, {n - 1}]"
            )
        return axis, int(index)


@dataclass(kw_only=True)
class Prepared(_PreparedSubject):
    """Native and standard dose of one subject, normalised once for repeated synthesis (cacheable).

    Attributes besides ``native_raw`` (outputs are added to it), ``brain`` and ``volumes`` (keyed by
    ``(dose, field_strength, seed)``):

    native, standard_dose: float32 (I, J, K) in normalised units.
    params: normalisation parameters (JSON-serialisable; see :func:`vce_core.data.fit_normalization`).
    scale: intensity units per normalised unit (residuals are multiplied by it).
    background: normalised value of a raw 0, used to pad.
    sequence: ``(TR in ms, flip angle in degrees)`` of the T1 sequence, or None (needed by generators
        whose base is the physics baseline, see :attr:`Synthesizer.needs_sequence`).
    """

    native: np.ndarray
    standard_dose: np.ndarray
    params: dict[str, Any]
    scale: float
    background: float
    sequence: tuple[float, float] | None = None


@dataclass(kw_only=True)
class PreparedContrast(_PreparedSubject):
    """The inputs of a virtual-contrast model for one subject, normalised once (cacheable).

    Attributes besides ``native_raw``, ``brain`` and ``volumes``:

    names: the card's input names, in the model's channel order.
    inputs: float32 (M, I, J, K) normalised inputs; an absent optional input is zeros.
    present: per input, whether it was given.
    params: normalisation parameters per given input and for ``"native"`` (which also maps the output back).
    backgrounds: per input, the normalised value of a raw 0 (0 for an absent input), used to pad.
    """

    names: tuple[str, ...]
    inputs: np.ndarray
    present: tuple[bool, ...]
    params: dict[str, dict[str, Any]]
    backgrounds: tuple[float, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Inputs that were absent and enter the model as zero images (seed 001's missing modality)."""
        return tuple(n for n, p in zip(self.names, self.present, strict=True) if not p)


# ============================================================================================== synthesizer
class Synthesizer:
    """A trained generator plus everything needed to apply it (normalisation, data mode, patch size).

    Build with :meth:`from_checkpoint`. ``card`` is the checkpoint's :class:`vce_core.checkpoint.ModelCard`
    (also a read-only mapping of the card's JSON keys), ``name`` its name, ``display_name`` the label for
    reports. ``batch_size`` (axial slices per forward pass) can be changed.
    """

    def __init__(self, model: nn.Module, card: ModelCard, device: torch.device, folder: Path | None = None):
        self.model = model.eval().requires_grad_(False)
        self.card = card
        self.device = device
        self.folder = folder
        self.name: str = card.name
        self.display_name: str = card.display_name
        self.spatial_dims = card.spatial_dims
        self.context = card.context
        self.patch_size = card.patch_size
        self.normalization = card.normalization_method
        self.size_multiple = int(getattr(model, "size_multiple", 8))
        self.batch_size = 8
        self.overlap = 0.5
        self.task: str = card.task
        self.inputs: list[str] = card.input_names
        self.optional_inputs: list[str] = list(card.optional_inputs)
        self.needs_sequence: bool = card.config.get("base") == "physics"
        """True for generators built on the physics baseline: :meth:`prepare` needs the T1 sequence."""

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, folder: str | PathLike, device: str | torch.device = "auto") -> Synthesizer:
        """Rebuild the generator from ``folder/card.json`` and load ``folder/weights.safetensors``.

        Raises :class:`VCEModelError` (a VCEInputError) for a missing folder/file, an invalid card (see
        :func:`vce_core.checkpoint.read_card`), an unknown model or weights that do not fit the architecture.
        """
        from vce_core.models import build_model

        folder = Path(folder)
        card = read_card(folder)
        state = read_weights(folder)
        model = build_model(card.model, **card.config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise VCEModelError(
                f"the weights do not fit the model in card.json ({err})", path=folder / card.weights
            ) from err
        dev = (
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
            if str(device) == "auto"
            else torch.device(device)
        )
        return cls(model.to(dev), card, dev, folder)

    # ------------------------------------------------------------------------------------------ public API
    def prepare(
        self, native: Any, standard_dose: Any = None, *, sequence: Any = None, **inputs: Any
    ) -> Prepared | PreparedContrast:
        """Normalise a subject's images once (brain mask + the card's normalisation fitted on native).

        Low dose: ``native`` and ``standard_dose`` → :class:`Prepared`; ``sequence`` is the T1 sequence
        (a mapping with ``tr_ms`` and ``flip_deg`` such as a case's ``meta["sequence"]``, or a
        ``(TR ms, flip °)`` pair), required when :attr:`needs_sequence` (VCEInputError naming it) and
        otherwise kept but unused. Virtual contrast: ``native`` and the card's other inputs as keyword
        arguments (``t2=…, adc=…``) → :class:`PreparedContrast` (see :meth:`prepare_inputs`; names with
        ``@`` go through that method).
        """
        from vce_core.preprocess import brain_mask

        if self.task == "virtual_contrast":
            given = {"native": native, **inputs}
            if standard_dose is not None:
                given["standard_dose"] = standard_dose
            return self.prepare_inputs(given)
        if standard_dose is None:
            raise VCEInputError("no standard-dose image was given", expected="native and standard dose")
        tr_flip = self._tr_flip(sequence)
        nat, sd = volume_pair(native, standard_dose)
        brain = np.asarray(brain_mask(nat), dtype=bool)
        params = fit_normalization(nat, brain, self.normalization)
        _, scale = _affine_of(params)
        return Prepared(
            native_raw=nat,
            native=apply_normalization(nat, params),
            standard_dose=apply_normalization(sd, params),
            params=params,
            scale=scale,
            background=float(apply_normalization(np.zeros(1, np.float32), params)[0]),
            brain=brain,
            sequence=tr_flip,
        )

    def _tr_flip(self, sequence: Any) -> tuple[float, float] | None:
        """The ``(TR ms, flip °)`` of ``sequence``; VCEInputError if unreadable, or absent but needed."""
        if sequence is None:
            if self.needs_sequence:
                raise VCEInputError(
                    f"{self.display_name} builds on the physics baseline and needs the T1 sequence's "
                    "repetition time (TR) and flip angle",
                    expected="TR (ms) and flip angle (°) of the T1 sequence, or a generator without the "
                    "physics base",
                )
            return None
        try:
            tr, flip = (
                (sequence["tr_ms"], sequence["flip_deg"]) if isinstance(sequence, Mapping) else sequence
            )
        except (KeyError, TypeError, ValueError) as err:
            raise VCEInputError(
                f"the T1 sequence {sequence!r} is not readable ({err})",
                expected='{"tr_ms": ..., "flip_deg": ...} or (TR ms, flip angle °)',
            ) from err
        return check_t1_sequence(tr, flip)

    def _sequence(self, prep: Prepared, n: int) -> Tensor | None:
        """``[n, 3]`` sequence tensor of a prepared subject for the model (None when it records none)."""
        from vce_core.models.ld_cgan import sequence_tensor

        if prep.sequence is None:
            return None
        return sequence_tensor(prep.background, *prep.sequence).expand(n, 3).to(self.device)

    def synthesize(
        self,
        native: Any,
        standard_dose: Any,
        dose: float,
        field_strength: float,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        *,
        sequence: Any = None,
    ) -> np.ndarray:
        """Synthetic low dose ``x̂_LD`` for the whole volume: float32 (I, J, K), input grid and units.

        ``native``/``standard_dose``: 3-D arrays or Volumes on one grid (scanner units); ``dose``: fraction
        of the standard dose in [0, 1]; ``field_strength``: tesla; ``seed``: noise seed (None = random);
        ``progress(done, total)``: optional callback; ``sequence``: the T1 sequence (see :meth:`prepare`).
        """
        d, b = check_dose(dose), check_field_strength(field_strength)
        prepared = self.prepare(native, standard_dose, sequence=sequence)
        return self._volume(prepared, d, b, seed, progress)

    def synthesize_prepared(
        self,
        prepared: Prepared | PreparedContrast,
        dose: float | None = None,
        field_strength: float | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """:meth:`synthesize` on an already prepared subject (several doses without re-normalising).

        Virtual contrast (a :class:`PreparedContrast`): the synthesized standard dose, float32 (I, J, K) in
        the native image's units; ``dose`` must be None or 0, ``field_strength`` and ``seed`` are unused.
        """
        self._check_prepared(prepared)
        if isinstance(prepared, PreparedContrast):
            self._check_zero_dose(dose)
            return self._contrast_volume(prepared, progress)
        if not isinstance(prepared, Prepared):
            raise VCEInputError(
                f"prepared is a {type(prepared).__name__}", expected="the result of Synthesizer.prepare()"
            )
        return self._volume(prepared, check_dose(dose), check_field_strength(field_strength), seed, progress)

    def synthesize_slice(
        self,
        prepared: Prepared | PreparedContrast,
        dose: float | None = None,
        field_strength: float | None = None,
        *,
        plane: str = "axial",
        index: int,
        seed: int | None = None,
    ) -> np.ndarray:
        """One 2-D slice of ``x̂_LD`` (float32, input units), oriented like slicing the volume.

        ``plane``: ``axial`` → ``[:, :, index]`` (I, J); ``coronal`` → ``[:, index, :]`` (I, K);
        ``sagittal`` → ``[index, :, :]`` (J, K). Equal to the same slice of :meth:`synthesize` with the
        same seed. See the module docstring for what non-axial planes cost with slice-wise models.
        Virtual contrast: the same slice of the synthesized standard dose (``dose`` None or 0).
        """
        self._check_prepared(prepared)
        if isinstance(prepared, PreparedContrast):
            self._check_zero_dose(dose)
            return self._contrast_slice(prepared, plane, index)
        if not isinstance(prepared, Prepared):
            raise VCEInputError(
                f"prepared is a {type(prepared).__name__}", expected="the result of Synthesizer.prepare()"
            )
        d, b = check_dose(dose), check_field_strength(field_strength)
        axis, index = prepared.slice_position(plane, index)
        if self.spatial_dims == 2:
            if axis == 2:
                residual = self._residual_slices(prepared, [index], d, b, _resolve_seed(seed))[0]
                return (prepared.native_raw[:, :, index] + np.float32(prepared.scale) * residual).astype(
                    np.float32
                )
            # seed None: one random draw per (dose, field strength), reused while cached
            volume = prepared.volumes.get_or_compute(
                (d, b, seed), lambda: self._volume(prepared, d, b, seed, None)
            )
            return np.take(volume, index, axis=axis).copy()
        residual = self._residual_3d(prepared, d, b, _resolve_seed(seed), None, plane=(axis, index))
        return (
            np.take(prepared.native_raw, index, axis=axis) + np.float32(prepared.scale) * residual
        ).astype(np.float32)

    # ------------------------------------------------------------------------------------------ internals
    def _volume(
        self,
        prep: Prepared,
        dose: float,
        field_strength: float,
        seed: int | None,
        progress: ProgressFn | None,
    ) -> np.ndarray:
        seed = _resolve_seed(seed)
        if self.spatial_dims == 2:
            K = prep.shape[2]
            residual = np.empty(prep.shape, np.float32)
            ks = list(range(K))
            total = math.ceil(K / self.batch_size)
            for i, start in enumerate(range(0, K, self.batch_size)):
                chunk = ks[start : start + self.batch_size]
                residual[:, :, chunk] = np.moveaxis(
                    self._residual_slices(prep, chunk, dose, field_strength, seed), 0, 2
                )
                if progress is not None:
                    progress(i + 1, total)
        else:
            residual = self._residual_3d(prep, dose, field_strength, seed, progress)
        return (prep.native_raw + np.float32(prep.scale) * residual).astype(np.float32)

    @torch.inference_mode()
    def _residual_slices(
        self, prep: Prepared, ks: Sequence[int], dose: float, field_strength: float, seed: int
    ) -> np.ndarray:
        """Normalised residuals ``[len(ks), I, J]`` for axial slices ``ks`` (one forward pass)."""
        I, J, K = prep.shape
        m = self.size_multiple
        H, W = -(-I // m) * m, -(-J // m) * m
        c = self.context
        idx = np.clip(np.asarray(ks)[:, None] + np.arange(-c, c + 1)[None, :], 0, K - 1)  # [n, C]
        n = len(ks)
        nat = np.full((n, 2 * c + 1, H, W), prep.background, np.float32)
        sd = np.full_like(nat, prep.background)
        nat[:, :, :I, :J] = np.transpose(prep.native[:, :, idx], (2, 3, 0, 1))
        sd[:, :, :I, :J] = np.transpose(prep.standard_dose[:, :, idx], (2, 3, 0, 1))
        noise = torch.stack([_noise((1, H, W), seed, k) for k in ks])
        t = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        out = self.model(
            t(nat),
            t(sd),
            torch.full((n,), dose, device=self.device),
            torch.full((n,), field_strength, device=self.device),
            noise.to(self.device),
            sequence=self._sequence(prep, n),
        )[0]
        return out[:, 0, :I, :J].float().cpu().numpy()

    def _windows(self, shape: Sequence[int]) -> tuple[list[int], list[list[int]]]:
        """Padded volume size and window starts per axis for the 3-D sliding window."""
        P = self.patch_size
        padded, starts = [], []
        for n in shape:
            size = max(P, -(-n // self.size_multiple) * self.size_multiple)
            padded.append(size)
            if size <= P:
                starts.append([0])
                continue
            stride = max(1, int(P * (1 - self.overlap)))
            count = math.ceil((size - P) / stride) + 1
            starts.append(sorted({int(round(s)) for s in np.linspace(0, size - P, count)}))
        return padded, starts

    @torch.inference_mode()
    def _residual_3d(
        self,
        prep: Prepared,
        dose: float,
        field_strength: float,
        seed: int,
        progress: ProgressFn | None,
        plane: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Sliding-window normalised residual: the whole (I, J, K) volume, or one plane ``(axis, index)``."""
        shape = prep.shape
        padded, _ = self._windows(shape)
        nat = np.full(padded, prep.background, np.float32)
        sd = np.full(padded, prep.background, np.float32)
        nat[: shape[0], : shape[1], : shape[2]] = prep.native
        sd[: shape[0], : shape[1], : shape[2]] = prep.standard_dose
        noise = _noise(tuple(padded), seed, -1)
        dose_t = torch.full((1,), dose, device=self.device)
        field_t = torch.full((1,), field_strength, device=self.device)
        seq_t = self._sequence(prep, 1)

        def predict(sl: tuple[slice, ...]) -> Tensor:
            x = torch.from_numpy(np.ascontiguousarray(nat[sl]))[None, None].to(self.device)
            s = torch.from_numpy(np.ascontiguousarray(sd[sl]))[None, None].to(self.device)
            z = noise[sl][None, None].to(self.device)
            return self.model(x, s, dose_t, field_t, z, sequence=seq_t)[0][0, 0]

        return self._blend_windows(shape, predict, progress, plane)

    def _blend_windows(
        self,
        shape: tuple[int, int, int],
        predict: Callable[[tuple[slice, ...]], Tensor],
        progress: ProgressFn | None,
        plane: tuple[int, int] | None,
    ) -> np.ndarray:
        """Gaussian-blended sliding windows over the padded ``shape``: ``predict(window)`` is the model's
        ``[P, P, P]`` output on one window (of the padded grid). Returns the float32 (I, J, K) volume, or
        only the windows over one plane ``(axis, index)`` and that slice."""
        P = self.patch_size
        padded, starts = self._windows(shape)
        weight = torch.from_numpy(_blend_weight(P))
        if plane is not None:
            starts[plane[0]] = [s for s in starts[plane[0]] if s <= plane[1] < s + P]
        acc, wsum = torch.zeros(padded), torch.zeros(padded)
        windows = [(a, b_, c) for a in starts[0] for b_ in starts[1] for c in starts[2]]
        for w, (a, b_, c) in enumerate(windows):
            sl = (slice(a, a + P), slice(b_, b_ + P), slice(c, c + P))
            acc[sl] += predict(sl).float().cpu() * weight
            wsum[sl] += weight
            if progress is not None:
                progress(w + 1, len(windows))
        res = (acc / wsum.clamp_min(1e-12))[: shape[0], : shape[1], : shape[2]].numpy()
        if plane is not None:
            return np.take(res, plane[1], axis=plane[0]).astype(np.float32)
        return res.astype(np.float32)

    # ------------------------------------------------------------------------------------ virtual contrast
    def prepare_inputs(self, images: Mapping[str, Any]) -> PreparedContrast:
        """Normalise a virtual-contrast model's inputs once: ``images`` maps input names to 3-D arrays or
        Volumes on one grid (None or absent = not acquired); ``"native"`` is always needed (it is the
        output's grid, units and normalisation). Names that are not inputs of the card are ignored.

        Raises :class:`VCEInputError` naming the missing required inputs (and listing the optional ones),
        an image of another shape than the native image, or non-finite values.
        """
        from vce_core.data import check_inputs, normalize_inputs
        from vce_core.preprocess import brain_mask

        self._require_task("virtual_contrast", "prepare_inputs")
        if not isinstance(images, Mapping):
            raise VCEInputError(
                f"images is a {type(images).__name__}", expected="a mapping of input names to images"
            )
        specs = check_inputs(self.inputs, self.optional_inputs, self.card.target or "standard_dose")
        required = [s.name for s in specs if s.name not in self.optional_inputs]
        absent = [n for n in dict.fromkeys(["native", *required]) if images.get(n) is None]
        if absent:
            optional = f"; optional (a zero image when absent): {', '.join(self.optional_inputs)}"
            raise VCEInputError(
                f"the required input(s) {', '.join(absent)} of {self.display_name} are missing",
                expected=f"images for {', '.join(dict.fromkeys(['native', *required]))}"
                + (optional if self.optional_inputs else ""),
            )
        native = as_volume_array(images["native"], "native")
        arrays: dict[str, np.ndarray | None] = {"native": native}
        for spec in specs:
            given = images.get(spec.name)
            arrays[spec.name] = None if given is None else as_volume_array(given, spec.name)
            if arrays[spec.name] is not None and arrays[spec.name].shape != native.shape:
                raise VCEInputError(
                    f"the {spec.name} image has shape {arrays[spec.name].shape} but the native image has "
                    f"{native.shape}",
                    expected="co-registered images on one grid",
                )
        brain = np.asarray(brain_mask(native), dtype=bool)
        stack, present, params, backgrounds = normalize_inputs(arrays, specs, brain, self.normalization)
        return PreparedContrast(
            native_raw=native,
            names=tuple(s.name for s in specs),
            inputs=stack,
            present=tuple(present),
            params=params,
            backgrounds=tuple(backgrounds),
            brain=brain,
        )

    def prepare_case(self, case: Any) -> Prepared | PreparedContrast:
        """Prepare a :class:`vce_core.io.Case` (or a case folder): its native and standard dose for a
        low-dose model, the inputs the card lists (extras, acquired low doses) for a virtual-contrast one."""
        from vce_core.baselines import case_tr_flip
        from vce_core.data import input_volume, parse_input
        from vce_core.io import Case, load_case

        if not isinstance(case, Case):
            case = load_case(case)
        if self.task != "virtual_contrast":
            return self.prepare(case.native, case.standard_dose, sequence=case_tr_flip(case))
        images = {name: input_volume(case, parse_input(name)) for name in self.inputs}
        return self.prepare_inputs({**images, "native": case.native})

    def synthesize_contrast(self, images: Any, progress: ProgressFn | None = None) -> np.ndarray:
        """The synthesized standard dose for a whole volume from a mapping of inputs or a case (folder):
        float32 (I, J, K) in the native image's units. ``progress(done, total)`` per batch or window."""
        prepared = self.prepare_inputs(images) if isinstance(images, Mapping) else self.prepare_case(images)
        return self.synthesize_prepared(prepared, progress=progress)

    def _require_task(self, task: str, what: str) -> None:
        if self.task != task:
            raise VCEInputError(
                f"{self.display_name} is a {self.task.replace('_', '-')} model; {what} is for {task} models",
                expected=f"a {task.replace('_', '-')} model",
            )

    def _check_prepared(self, prepared: object) -> None:
        wanted = PreparedContrast if self.task == "virtual_contrast" else Prepared
        if not isinstance(prepared, wanted):
            raise VCEInputError(
                f"prepared is a {type(prepared).__name__}, not a {wanted.__name__}",
                expected=f"the result of {self.display_name}'s Synthesizer.prepare()",
            )

    def _check_zero_dose(self, dose: float | None) -> None:
        if dose is not None and check_dose(dose) != 0.0:
            raise VCEInputError(
                f"{self.display_name} synthesizes the standard dose from images acquired without contrast, "
                f"so dose {dose!r} does not apply",
                expected="dose 0 or no dose",
            )

    def _contrast_volume(self, prep: PreparedContrast, progress: ProgressFn | None) -> np.ndarray:
        from vce_core.preprocess import denormalize

        if self.spatial_dims == 3:
            normalised = self._contrast_3d(prep, progress)
        else:
            K = prep.shape[2]
            normalised = np.empty(prep.shape, np.float32)
            total = math.ceil(K / self.batch_size)
            for i, start in enumerate(range(0, K, self.batch_size)):
                chunk = list(range(start, min(start + self.batch_size, K)))
                normalised[:, :, chunk] = np.moveaxis(self._contrast_slices(prep, chunk), 0, 2)
                if progress is not None:
                    progress(i + 1, total)
        return np.asarray(denormalize(normalised, prep.params["native"]), dtype=np.float32)

    def _contrast_slice(self, prep: PreparedContrast, plane: str, index: int) -> np.ndarray:
        from vce_core.preprocess import denormalize

        axis, index = prep.slice_position(plane, index)
        if self.spatial_dims == 2 and axis != 2:
            volume = prep.volumes.get_or_compute("volume", lambda: self._contrast_volume(prep, None))
            return np.take(volume, index, axis=axis).copy()
        if self.spatial_dims == 2:
            normalised = self._contrast_slices(prep, [index])[0]
        else:
            normalised = self._contrast_3d(prep, None, plane=(axis, index))
        return np.asarray(denormalize(normalised, prep.params["native"]), dtype=np.float32)

    @torch.inference_mode()
    def _contrast_slices(self, prep: PreparedContrast, ks: Sequence[int]) -> np.ndarray:
        """Normalised synthesized slices ``[len(ks), I, J]`` for axial slices ``ks`` (one forward pass)."""
        I, J, K = prep.shape
        m = self.size_multiple
        H, W = -(-I // m) * m, -(-J // m) * m
        c = self.context
        idx = np.clip(np.asarray(ks)[:, None] + np.arange(-c, c + 1)[None, :], 0, K - 1)  # [n, C]
        x = np.empty((len(ks), len(prep.names), 2 * c + 1, H, W), np.float32)
        for mi, background in enumerate(prep.backgrounds):
            x[:, mi] = background
            x[:, mi, :, :I, :J] = np.transpose(prep.inputs[mi][:, :, idx], (2, 3, 0, 1))
        out = self.model(torch.from_numpy(x.reshape(len(ks), -1, H, W)).to(self.device))
        return out[:, out.shape[1] // 2, :I, :J].float().cpu().numpy()

    @torch.inference_mode()
    def _contrast_3d(
        self, prep: PreparedContrast, progress: ProgressFn | None, plane: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Sliding-window normalised output: the whole (I, J, K) volume, or one plane ``(axis, index)``."""
        shape = prep.shape
        padded, _ = self._windows(shape)
        x = np.empty((len(prep.names), *padded), np.float32)
        for mi, background in enumerate(prep.backgrounds):
            x[mi] = background
            x[mi, : shape[0], : shape[1], : shape[2]] = prep.inputs[mi]

        def predict(sl: tuple[slice, ...]) -> Tensor:
            patch = torch.from_numpy(np.ascontiguousarray(x[(slice(None), *sl)]))[None].to(self.device)
            out = self.model(patch)
            return out[0, out.shape[1] // 2]

        return self._blend_windows(shape, predict, progress, plane)


def _blend_weight(size: int) -> np.ndarray:
    """Gaussian blending weight (σ = size / 8) of a ``size³`` sliding window, +1e-6 so it is never 0."""
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / (size / 8.0)) ** 2).astype(np.float32)
    return np.einsum("i,j,k->ijk", g, g, g) + np.float32(1e-6)


def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbits(62)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise VCEInputError(f"seed {seed!r} is not an integer", expected="an integer or None")
    return int(seed)


def _noise(shape: tuple[int, ...], seed: int, key: int) -> torch.Tensor:
    """Standard normal noise of ``shape`` determined by ``(seed, key)`` (key = axial slice, −1 = volume)."""
    state = np.random.SeedSequence([abs(int(seed)), int(seed < 0), key + 1]).generate_state(2, np.uint64)
    gen = torch.Generator().manual_seed(int(state[0] % (2**63)))
    return torch.randn(shape, generator=gen)


# ============================================================================================== CLI
def _progress_bar(desc: str) -> tuple[Any, ProgressFn]:
    """A tqdm bar and the ``progress(done, total)`` callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc=desc, unit="batch")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def _write_output(
    data: np.ndarray, case: Any, path_stem: Path, fmt: str, description: str, **info: Any
) -> Path:
    """Write a synthesized volume on the native grid as NIfTI or a DICOM series marked SYNTHETIC."""
    from vce_core.io import Volume, save_dicom_series, save_nifti

    meta = {**case.native.meta, "synthetic": True, **info}
    volume = Volume(data=data, affine=case.native.affine, spacing=case.native.spacing, meta=meta)
    if fmt == "nifti":
        path = path_stem.with_name(f"{path_stem.name}.nii.gz")
        save_nifti(volume, path)
        return path
    save_dicom_series(
        volume,
        path_stem,
        series_description=description,
        synthetic=True,
        model_name=info["model"],
        dose=info["dose"],
    )
    return path_stem


def main(argv: Sequence[str] | None = None) -> int:
    from vce_core.io import load_case

    parser = argparse.ArgumentParser(
        prog="python -m vce_core.synthesis",
        description="Synthesize low-dose images (or, with a virtual-contrast model, the standard dose) "
        "from a checkpoint.",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (card.json + weights.safetensors)")
    parser.add_argument(
        "--case",
        required=True,
        help="case folder (case.json, BraTS-style or DICOM; see vce_core.io.load_case)",
    )
    parser.add_argument(
        "--dose",
        type=float,
        action="append",
        default=[],
        help="dose fraction in [0, 1]; repeatable (low-dose models; virtual-contrast models take none)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        doses = [check_dose(d) for d in args.dose]
        synth = Synthesizer.from_checkpoint(args.model, device=args.device)
        case = load_case(args.case)
        case_id = str(case.meta.get("case_id", Path(args.case).name))
        if synth.task == "virtual_contrast":
            for d in doses:
                synth._check_zero_dose(d)
        elif not doses:
            raise VCEInputError("no --dose was given", expected="--dose <fraction> (repeatable)")
        prepared = synth.prepare_case(case)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if synth.task == "virtual_contrast":
            bar, progress = _progress_bar(f"{case_id} virtual contrast")
            with bar:
                data = synth.synthesize_prepared(prepared, progress=progress)
            description = f"SYNTHETIC {synth.display_name} virtual contrast (no agent given)"
            stem = out / f"{case_id}_{synth.name}_virtual_contrast"
            print(_write_output(data, case, stem, args.format, description, model=synth.name, dose=1.0))
            return 0
        field_strength = check_field_strength(case.field_strength)
        for d in doses:
            bar, progress = _progress_bar(f"{case_id} dose {d:g}")
            with bar:
                data = synth.synthesize_prepared(prepared, d, field_strength, args.seed, progress)
            description = f"SYNTHETIC {synth.display_name} {d * 100:g}% dose"
            stem = out / f"{case_id}_{synth.name}_dose{round(d * 100):03d}"
            print(
                _write_output(
                    data, case, stem, args.format, description, model=synth.name, dose=d, seed=args.seed
                )
            )
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
