"""Synthesize low-dose images from a trained checkpoint: ``x̂_LD = x_NA + ŷ_LD`` at any dose in [0, 1].

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

CLI::

    python -m vce_core.synthesis --model assets/models/<name> --case <case folder> --dose 0.25
        [--dose 0.1 ...] --out <dir> [--format nifti|dicom] [--seed 0] [--device auto]
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vce_core.cache import LRU
from vce_core.checkpoint import ModelCard, list_checkpoints, read_card, read_weights
from vce_core.data import _affine_of, apply_normalization, fit_normalization
from vce_core.display import plane_axis
from vce_core.domain import check_dose, check_field_strength
from vce_core.errors import VCEInputError, VCEModelError

__all__ = ["Prepared", "Synthesizer", "linear_baseline", "list_checkpoints"]

_VOLUME_CACHE = 4  # full volumes kept per Prepared for non-axial planes of slice-wise models

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called after every batch (2-D) or window (3-D)."""


# ============================================================================================== input checks
def _as_volume_array(x: Any, name: str) -> np.ndarray:
    """A finite float32 3-D array from an ndarray or a :class:`vce_core.io.Volume`."""
    data = getattr(x, "data", x)
    try:
        arr = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise VCEInputError(
            f"the {name} image is not numeric ({err})", expected="a 3-D float array or Volume"
        ) from err
    if arr.ndim != 3:
        raise VCEInputError(f"the {name} image has shape {arr.shape}", expected="a 3-D volume (I, J, K)")
    if min(arr.shape) < 1:
        raise VCEInputError(
            f"the {name} image is empty (shape {arr.shape})", expected="a non-empty 3-D volume"
        )
    if not np.isfinite(arr).all():
        raise VCEInputError(
            f"the {name} image contains NaN or infinite values", expected="finite intensities"
        )
    return arr


def _pair(native: Any, standard_dose: Any) -> tuple[np.ndarray, np.ndarray]:
    nat = _as_volume_array(native, "native")
    sd = _as_volume_array(standard_dose, "standard-dose")
    if nat.shape != sd.shape:
        raise VCEInputError(
            f"the native image has shape {nat.shape} but the standard dose has {sd.shape}",
            expected="co-registered images on one grid",
        )
    return nat, sd


def linear_baseline(native: Any, standard_dose: Any, dose: float) -> np.ndarray:
    """The linear dose baseline ``x_NA + d · (x_SD − x_NA)``: float32 (I, J, K) in the inputs' units.

    ``native``/``standard_dose`` are 3-D arrays or Volumes on one grid; ``dose`` a fraction in [0, 1].
    """
    nat, sd = _pair(native, standard_dose)
    d = np.float32(check_dose(dose))
    return (nat + d * (sd - nat)).astype(np.float32)


# ======================================================================================== prepared inputs
@dataclass
class Prepared:
    """Native and standard dose of one subject, normalised once for repeated synthesis (cacheable).

    Attributes
    ----------
    native_raw: float32 (I, J, K), the native image in its own units (outputs are added to it).
    native, standard_dose: float32 (I, J, K) in normalised units.
    params: normalisation parameters (JSON-serialisable; see :func:`vce_core.data.fit_normalization`).
    scale: intensity units per normalised unit (residuals are multiplied by it).
    background: normalised value of a raw 0, used to pad.
    brain: bool (I, J, K) brain mask the normalisation was fitted in.
    volumes: full synthetic volumes of slice-wise models by ``(dose, field_strength, seed)``, kept for
        coronal/sagittal slices (least recently used dropped beyond ``_VOLUME_CACHE``).
    """

    native_raw: np.ndarray
    native: np.ndarray
    standard_dose: np.ndarray
    params: dict[str, Any]
    scale: float
    background: float
    brain: np.ndarray
    volumes: LRU[np.ndarray] = field(default_factory=lambda: LRU(_VOLUME_CACHE), repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.native.shape)  # type: ignore[return-value]


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
    def prepare(self, native: Any, standard_dose: Any) -> Prepared:
        """Normalise native and standard dose once (brain mask + card's normalisation fitted on native)."""
        from vce_core.preprocess import brain_mask

        nat, sd = _pair(native, standard_dose)
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
        )

    def synthesize(
        self,
        native: Any,
        standard_dose: Any,
        dose: float,
        field_strength: float,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Synthetic low dose ``x̂_LD`` for the whole volume: float32 (I, J, K), input grid and units.

        ``native``/``standard_dose``: 3-D arrays or Volumes on one grid (scanner units); ``dose``: fraction
        of the standard dose in [0, 1]; ``field_strength``: tesla; ``seed``: noise seed (None = random);
        ``progress(done, total)``: optional callback.
        """
        d, b = check_dose(dose), check_field_strength(field_strength)
        return self._volume(self.prepare(native, standard_dose), d, b, seed, progress)

    def synthesize_prepared(
        self,
        prepared: Prepared,
        dose: float,
        field_strength: float,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """:meth:`synthesize` on an already prepared subject (several doses without re-normalising)."""
        if not isinstance(prepared, Prepared):
            raise VCEInputError(
                f"prepared is a {type(prepared).__name__}", expected="the result of Synthesizer.prepare()"
            )
        return self._volume(prepared, check_dose(dose), check_field_strength(field_strength), seed, progress)

    def synthesize_slice(
        self,
        prepared: Prepared,
        dose: float,
        field_strength: float,
        *,
        plane: str = "axial",
        index: int,
        seed: int | None = None,
    ) -> np.ndarray:
        """One 2-D slice of ``x̂_LD`` (float32, input units), oriented like slicing the volume.

        ``plane``: ``axial`` → ``[:, :, index]`` (I, J); ``coronal`` → ``[:, index, :]`` (I, K);
        ``sagittal`` → ``[index, :, :]`` (J, K). Equal to the same slice of :meth:`synthesize` with the
        same seed. See the module docstring for what non-axial planes cost with slice-wise models.
        """
        if not isinstance(prepared, Prepared):
            raise VCEInputError(
                f"prepared is a {type(prepared).__name__}", expected="the result of Synthesizer.prepare()"
            )
        d, b = check_dose(dose), check_field_strength(field_strength)
        axis = plane_axis(plane)
        n = prepared.shape[axis]
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= int(index) < n:
            raise VCEInputError(
                f"{plane} slice index {index!r} is out of range", expected=f"an integer in [0, {n - 1}]"
            )
        index = int(index)
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
        P = self.patch_size
        shape = prep.shape
        padded, starts = self._windows(shape)
        nat = np.full(padded, prep.background, np.float32)
        sd = np.full(padded, prep.background, np.float32)
        nat[: shape[0], : shape[1], : shape[2]] = prep.native
        sd[: shape[0], : shape[1], : shape[2]] = prep.standard_dose
        noise = _noise(tuple(padded), seed, -1)
        sigma = P / 8.0
        g = np.exp(-0.5 * ((np.arange(P) - (P - 1) / 2) / sigma) ** 2).astype(np.float32)
        weight = torch.from_numpy(np.einsum("i,j,k->ijk", g, g, g) + 1e-6)
        if plane is not None:
            axis, index = plane
            starts[axis] = [s for s in starts[axis] if s <= index < s + P]
        acc = torch.zeros(padded)
        wsum = torch.zeros(padded)
        windows = [(a, b_, c) for a in starts[0] for b_ in starts[1] for c in starts[2]]
        dose_t = torch.full((1,), dose, device=self.device)
        field_t = torch.full((1,), field_strength, device=self.device)
        for w, (a, b_, c) in enumerate(windows):
            sl = (slice(a, a + P), slice(b_, b_ + P), slice(c, c + P))
            x = torch.from_numpy(np.ascontiguousarray(nat[sl]))[None, None].to(self.device)
            s = torch.from_numpy(np.ascontiguousarray(sd[sl]))[None, None].to(self.device)
            z = noise[sl][None, None].to(self.device)
            out = self.model(x, s, dose_t, field_t, z)[0][0, 0].float().cpu()
            acc[sl] += out * weight
            wsum[sl] += weight
            if progress is not None:
                progress(w + 1, len(windows))
        res = (acc / wsum.clamp_min(1e-12))[: shape[0], : shape[1], : shape[2]].numpy()
        if plane is not None:
            return np.take(res, plane[1], axis=plane[0]).astype(np.float32)
        return res.astype(np.float32)


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
def main(argv: Sequence[str] | None = None) -> int:
    from tqdm import tqdm

    from vce_core.io import Volume, load_case, save_dicom_series, save_nifti

    parser = argparse.ArgumentParser(
        prog="python -m vce_core.synthesis", description="Synthesize low-dose images from a checkpoint."
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (card.json + weights.safetensors)")
    parser.add_argument(
        "--case",
        required=True,
        help="case folder (case.json, BraTS-style or DICOM; see vce_core.io.load_case)",
    )
    parser.add_argument(
        "--dose", type=float, action="append", required=True, help="dose fraction in [0, 1]; repeatable"
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
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        prepared = synth.prepare(case.native, case.standard_dose)
        field_strength = check_field_strength(case.field_strength)
        for d in doses:
            with tqdm(total=1, desc=f"{case_id} dose {d:g}", unit="batch") as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                data = synth.synthesize_prepared(prepared, d, field_strength, args.seed, progress)
            meta = {**case.native.meta, "synthetic": True, "model": synth.name, "dose": d, "seed": args.seed}
            volume = Volume(data=data, affine=case.native.affine, spacing=case.native.spacing, meta=meta)
            stem = f"{case_id}_{synth.name}_dose{round(d * 100):03d}"
            if args.format == "nifti":
                path = out / f"{stem}.nii.gz"
                save_nifti(volume, path)
            else:
                path = out / stem
                save_dicom_series(
                    volume,
                    path,
                    series_description=f"SYNTHETIC {synth.display_name} {d * 100:g}% dose",
                    synthetic=True,
                    model_name=synth.name,
                    dose=d,
                )
            print(path)
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
