"""Dose explorer logic: case library, generator registry and everything the explorer panels show.

No Gradio here: functions take plain values (case id, generator name, dose in percent of the standard
dose, plane, slice index, window) and return ``uint8`` images, Markdown strings and Plotly figures, so
they are testable without a browser and reusable by the benchmarks.

Caching (everything that does not depend on the dose is computed once):

* a case is loaded on first selection (:class:`CaseLibrary`, LRU of a few cases) together with its
  foreground and CE masks, window presets and lesion-centred default slices; per-slice brain masks, the
  3-D brain mask (per-volume metrics) and, for phantom cases, the re-created
  :class:`~vce_core.phantom.PhantomCase` (real images at doses that were not acquired) follow on first use;
* ``Synthesizer.prepare`` runs once per (case, generator);
* display-oriented float slices (native, standard dose, real, synthetic, baseline) are cached per key, so
  a window/level change only re-windows; the dose slider only computes the synthetic slice (and the
  simulated real slice) for a dose it has not seen yet.

"Real" images: the acquired image when the dose matches an acquired one (native at 0 %, the case's low
doses, standard dose at 100 %); otherwise, for phantom cases, ``PhantomCase.acquire_slice`` at exactly that
dose; otherwise (real data) none, and the panel says so.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from studio.render import (
    PLANES,
    Window,
    apply_window,
    difference_panel,
    n_slices,
    placeholder_panel,
    slice_auto_window,
    slice_spacing,
    take_slice,
    to_display,
    window_presets,
)
from vce_core.errors import VCEInputError

log = logging.getLogger(__name__)

#: Doses (fraction of the standard dose) sampled by the dose–response chart.
RESPONSE_DOSES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Tolerance (in percent of the standard dose) for matching the slider to an acquired dose.
ACQUIRED_TOLERANCE_PCT = 0.5
NO_GENERATOR = "No generator installed"
SIGNAL_UNITS = "a.u."


class LRU:
    """A small thread-safe least-recently-used cache with an explicit capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Return the cached value of ``key`` or compute, store and return it."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# ----------------------------------------------------------------------------------------------------
# generators


def _fmt_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_METRIC_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae_ce": "MAE_CE", "mae_sigma": "MAE_σ"}


def _metrics_line(metrics: Any) -> str | None:
    if not isinstance(metrics, dict):
        return None
    shown = [f"{label} {_fmt_metric(metrics[key])}" for key, label in _METRIC_NAMES.items() if key in metrics]
    return ", ".join(shown) or None


def _describe_set(part: Any) -> str | None:
    if not isinstance(part, dict):
        return None
    bits = [f"{part.get('count', '?')} cases"]
    if part.get("samples") is not None:
        bits.append(f"{part['samples']} samples")
    if part.get("field_strengths"):
        bits.append(" / ".join(f"{b:g} T" for b in part["field_strengths"]))
    if part.get("doses"):
        bits.append("doses " + ", ".join(f"{d * 100:.0f} %" for d in part["doses"]))
    return ", ".join(bits)


def card_summary(card: dict[str, Any]) -> str:
    """Markdown summary of a model card (``vce-model-card`` written by :mod:`vce_core.train`).

    Shows the architecture, the training and validation data, the training effort (iterations, wall time,
    hardware) and the held-out metrics: the card's ``held_out`` evaluation when one was added, else its
    last ``validation`` metrics.
    """
    lines = [f"**{card.get('display_name') or card.get('name') or 'generator'}**"]
    config = card.get("config") or {}
    dims = config.get("spatial_dims") if isinstance(config, dict) else None
    mode = card.get("data_mode") or (f"{dims}-D" if dims else None)
    lines.append(f"Architecture: `{card.get('model', 'unknown')}`" + (f" ({mode})" if mode else ""))
    data = card.get("data") or {}
    train = _describe_set(data.get("train")) if isinstance(data, dict) else None
    if train:
        lines.append(f"Trained on: {train}")
    val = _describe_set(data.get("val")) if isinstance(data, dict) else None
    if val:
        lines.append(f"Validated on: {val}")
    training = card.get("training") or {}
    if isinstance(training, dict) and training:
        effort = []
        if training.get("iterations") is not None:
            effort.append(f"{training['iterations']} iterations")
        if training.get("wall_time_s") is not None:
            effort.append(f"{float(training['wall_time_s']) / 60:.1f} min")
        hw = training.get("hardware") or {}
        if isinstance(hw, dict) and (hw.get("gpu") or hw.get("cpu")):
            effort.append(f"on {hw.get('gpu') or hw.get('cpu')}")
        if effort:
            lines.append("Training: " + ", ".join(effort))
    held_out = None
    for key in ("held_out", "test", "evaluation"):
        held_out = _metrics_line(card.get(key))
        if held_out:
            figures = card[key]
            scope = ""
            if figures.get("doses") and figures.get("cases"):
                doses = ", ".join(f"{float(d) * 100:.0f} %" for d in figures["doses"])
                scope = f", mean over {figures['cases']} test cases at {doses} dose"
            lines.append(f"Held-out metrics ({key.replace('_', '-')}{scope}): {held_out}")
            break
    if not held_out:
        validation = _metrics_line(card.get("validation"))
        lines.append(
            f"Held-out metrics (validation set): {validation}"
            if validation
            else "Held-out metrics: none recorded in the model card"
        )
    return "  \n".join(lines)


class GeneratorRegistry:
    """Every generator found in a models folder, loaded once at start-up.

    ``errors`` lists, in plain words, the checkpoints that could not be loaded; the app shows them.
    """

    def __init__(self, models_dir: Path | str | None) -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self._synthesizers: dict[str, Any] = {}
        self.errors: list[str] = []
        if self.models_dir is None or not self.models_dir.is_dir():
            return
        from vce_core.synthesis import Synthesizer, list_checkpoints

        for folder in list_checkpoints(self.models_dir):
            try:
                synth = Synthesizer.from_checkpoint(folder, device="auto")
            except VCEInputError as exc:
                self.errors.append(f"{Path(folder).name}: {exc}")
                continue
            name = str(getattr(synth, "name", "") or Path(folder).name)
            if name in self._synthesizers:
                name = Path(folder).name
            self._synthesizers[name] = synth

    def names(self) -> list[str]:
        """Names of the loaded generators, default (first in the folder order) first."""
        return list(self._synthesizers)

    def get(self, name: str | None) -> Any:
        """The Synthesizer called ``name``; :class:`VCEInputError` if there is none."""
        if not self._synthesizers:
            raise VCEInputError(self.empty_message())
        if name not in self._synthesizers:
            raise VCEInputError(f"there is no generator called {name!r}", expected=", ".join(self.names()))
        return self._synthesizers[name]

    def summary(self, name: str | None) -> str:
        """Markdown card summary of a generator, or the 'nothing installed' message."""
        if not self._synthesizers:
            return self.empty_message()
        try:
            return card_summary(dict(self.get(name).card))
        except VCEInputError as exc:
            return str(exc)

    def empty_message(self) -> str:
        where = self.models_dir if self.models_dir is not None else "the models folder"
        text = (
            f"No generator installed in {where}. Train one (`python -m vce_core.train ...`) or copy a "
            "checkpoint folder (weights.safetensors + card.json) there and restart the app. Native, "
            "standard-dose, real and linear-baseline panels still work."
        )
        if self.errors:
            text += "\n\nCheckpoints that could not be loaded:\n" + "\n".join(f"- {e}" for e in self.errors)
        return text


# ----------------------------------------------------------------------------------------------------
# cases


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
        return tuple(self.case.native.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.case.native.spacing)  # type: ignore[return-value]

    @property
    def acquired_doses(self) -> list[float]:
        """Doses with a real image: 0 (native), the acquired low doses and 1 (standard dose)."""
        return sorted({0.0, 1.0, *(float(d) for d in self.case.low_doses)})

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
        lesion_index = {
            plane: int(centre[axis]) for plane, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2))
        }
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


# ----------------------------------------------------------------------------------------------------
# the explorer


@dataclass(frozen=True)
class View:
    """What the explorer shows: a case, a generator, a dose (percent of standard dose) and a slice."""

    case_id: str
    generator: str | None
    dose_pct: float
    plane: str
    index: int

    @property
    def dose(self) -> float:
        """Dose as a fraction of the standard dose, in [0, 1]."""
        return float(np.clip(self.dose_pct, 0.0, 100.0)) / 100.0


@dataclass
class DosePanels:
    """Everything that changes with the dose, ready for display."""

    synthetic: np.ndarray
    real: np.ndarray
    baseline: np.ndarray
    difference: np.ndarray
    swipe: tuple[np.ndarray, np.ndarray] | None
    metrics_md: str
    real_available: bool


def dose_label(dose_pct: float, generator: str | None) -> str:
    """Markdown heading of the synthetic panel, e.g. 'Synthetic at **33 %** of the standard dose'."""
    who = f" ({generator})" if generator else ""
    return f"### Synthetic{who} at **{float(dose_pct):.0f} %** of the standard dose"


class Explorer:
    """Computes every explorer panel from a :class:`CaseLibrary` and a :class:`GeneratorRegistry`."""

    def __init__(self, library: CaseLibrary, generators: GeneratorRegistry) -> None:
        self.library = library
        self.generators = generators
        self._slices = LRU(512)
        self._charts = LRU(64)
        self._volume_metrics = LRU(64)

    # -- geometry ---------------------------------------------------------------------------------

    def slice_count(self, case_id: str, plane: str) -> int:
        return n_slices(self.library.get(case_id).shape, plane)

    def default_index(self, case_id: str, plane: str) -> int:
        """Slice through the largest enhancing lesion in ``plane``."""
        return self.library.get(case_id).lesion_index[plane]

    def _clamp(self, lc: LoadedCase, plane: str, index: int) -> int:
        if plane not in PLANES:
            raise VCEInputError(f"unknown plane {plane!r}", expected=", ".join(PLANES))
        return int(np.clip(int(index), 0, n_slices(lc.shape, plane) - 1))

    def _display(self, lc: LoadedCase, plane: str, slice2d: np.ndarray) -> np.ndarray:
        return to_display(slice2d, slice_spacing(lc.spacing, plane))

    # -- float slices in volume orientation (cached) -------------------------------------------------

    def _volume_slice(self, lc: LoadedCase, which: str, plane: str, index: int) -> np.ndarray:
        volume = lc.case.native if which == "native" else lc.case.standard_dose
        return self._slices.get_or_compute(
            (lc.case_id, which, plane, index),
            lambda: take_slice(volume.data, plane, index).astype(np.float32),
        )

    def _prepared(self, lc: LoadedCase, generator: str, synth: Any) -> Any:
        with lc.lock:
            if generator not in lc.prepared:
                lc.prepared[generator] = synth.prepare(lc.case.native, lc.case.standard_dose)
            return lc.prepared[generator]

    def synthetic_slice(
        self, lc: LoadedCase, generator: str, dose: float, plane: str, index: int
    ) -> np.ndarray:
        """Synthetic slice (volume orientation, input units) at ``dose`` (fraction)."""
        synth = self.generators.get(generator)

        def compute() -> np.ndarray:
            prepared = self._prepared(lc, generator, synth)
            out = synth.synthesize_slice(
                prepared, dose, lc.case.field_strength, plane=plane, index=index, seed=lc.noise_seed()
            )
            return np.asarray(out, dtype=np.float32)

        return self._slices.get_or_compute(
            (lc.case_id, "synthetic", generator, round(dose, 4), plane, index), compute
        )

    def baseline_slice(self, lc: LoadedCase, dose: float, plane: str, index: int) -> np.ndarray:
        """Linear baseline ``native + dose · (standard − native)`` on one slice."""
        from vce_core.synthesis import linear_baseline

        na = self._volume_slice(lc, "native", plane, index)
        sd = self._volume_slice(lc, "standard_dose", plane, index)
        return np.asarray(linear_baseline(na[..., None], sd[..., None], dose), dtype=np.float32)[..., 0]

    def real_slice(self, lc: LoadedCase, dose: float, plane: str, index: int) -> np.ndarray | None:
        """Real image at ``dose``: the acquired image when there is one, else (phantom cases) a simulated
        acquisition at exactly that dose; None for real data at a dose that was not acquired."""
        key = (lc.case_id, "real", round(dose, 4), plane, index)
        acquired = self.acquired_volume(lc, dose)
        if acquired is not None:
            return self._slices.get_or_compute(
                key, lambda: take_slice(acquired.data, plane, index).astype(np.float32)
            )
        if not lc.is_phantom:
            return None

        def simulate() -> np.ndarray:
            phantom = lc.phantom()
            return np.asarray(
                phantom.acquire_slice(dose, plane, index, noise_seed=lc.noise_seed()), dtype=np.float32
            )

        return self._slices.get_or_compute(key, simulate)

    @staticmethod
    def acquired_volume(lc: LoadedCase, dose: float) -> Any | None:
        """The acquired volume at ``dose`` (native at 0, standard dose at 1), or None."""
        tol = ACQUIRED_TOLERANCE_PCT / 100.0
        if abs(dose) <= tol:
            return lc.case.native
        if abs(dose - 1.0) <= tol:
            return lc.case.standard_dose
        for d, volume in lc.case.low_doses.items():
            if abs(float(d) - dose) <= tol:
                return volume
        return None

    # -- panels -------------------------------------------------------------------------------------

    def window_for(self, case_id: str, preset: str, plane: str, index: int) -> Window:
        """Window of a preset; 'Auto (percentile)' is computed on the displayed standard-dose slice."""
        lc = self.library.get(case_id)
        if preset == "Auto (percentile)":
            index = self._clamp(lc, plane, index)
            return slice_auto_window(self._volume_slice(lc, "standard_dose", plane, index))
        return lc.presets.get(preset, lc.presets["Brain T1"])

    def window_range(self, case_id: str) -> tuple[float, float]:
        """Slider range for level and width: 0 … a round number ≥ 1.2 × the case maximum (image units)."""
        wide = self.library.get(case_id).presets["Wide"]
        return 0.0, nice_ceiling(float(wide.high) * 1.2)

    def static_panels(self, view: View, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Native and standard-dose panels (``uint8``, display orientation)."""
        lc = self.library.get(view.case_id)
        index = self._clamp(lc, view.plane, view.index)
        na = self._display(lc, view.plane, self._volume_slice(lc, "native", view.plane, index))
        sd = self._display(lc, view.plane, self._volume_slice(lc, "standard_dose", view.plane, index))
        return apply_window(na, window), apply_window(sd, window)

    def reference_panels(self, view: View, window: Window) -> tuple[np.ndarray, bool, np.ndarray]:
        """Real panel (or its placeholder), whether a real image exists, and the linear-baseline panel."""
        lc = self.library.get(view.case_id)
        plane, index = view.plane, self._clamp(lc, view.plane, view.index)
        real = self.real_slice(lc, view.dose, plane, index)
        base = self.baseline_slice(lc, view.dose, plane, index)
        if real is None:
            shape = self._display(lc, plane, self._volume_slice(lc, "native", plane, index)).shape
            real_img = placeholder_panel(shape, f"no acquisition at\n{view.dose_pct:.0f} % dose")
        else:
            real_img = apply_window(self._display(lc, plane, real), window)
        return real_img, real is not None, apply_window(self._display(lc, plane, base), window)

    def warm_up(self, case_id: str, generator: str | None) -> None:
        """Do the dose-independent work for a (case, generator) ahead of the first request."""
        lc = self.library.get(case_id)
        if generator in self.generators.names():
            self._prepared(lc, generator, self.generators.get(generator))

    def synthetic_panel(self, view: View, window: Window) -> np.ndarray:
        """The synthetic panel alone (the latency-critical path of the dose slider)."""
        lc = self.library.get(view.case_id)
        index = self._clamp(lc, view.plane, view.index)
        if not self.generators.names():
            shape = self._display(lc, view.plane, self._volume_slice(lc, "native", view.plane, index)).shape
            return placeholder_panel(shape, "no generator installed")
        syn = self.synthetic_slice(
            lc, view.generator or self.generators.names()[0], view.dose, view.plane, index
        )
        return apply_window(self._display(lc, view.plane, syn), window)

    def dose_panels(self, view: View, window: Window) -> DosePanels:
        """Synthetic, real, baseline, difference map, swipe pair and per-slice metrics at the view's dose."""
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self._clamp(lc, view.plane, view.index), view.dose
        have_gen = bool(self.generators.names())
        generator = view.generator if view.generator in self.generators.names() else None
        if have_gen and generator is None:
            generator = self.generators.names()[0]
        native_disp = self._display(lc, plane, self._volume_slice(lc, "native", plane, index))
        shape = native_disp.shape
        syn = self.synthetic_slice(lc, generator, dose, plane, index) if generator else None
        real = self.real_slice(lc, dose, plane, index)
        base = self.baseline_slice(lc, dose, plane, index)

        syn_img = (
            apply_window(self._display(lc, plane, syn), window)
            if syn is not None
            else placeholder_panel(shape, "no generator installed")
        )
        real_img = (
            apply_window(self._display(lc, plane, real), window)
            if real is not None
            else placeholder_panel(shape, f"no acquisition at\n{view.dose_pct:.0f} % dose")
        )
        base_img = apply_window(self._display(lc, plane, base), window)
        limit = max(float(f"{0.25 * window.width:.2g}"), 1e-6)
        if syn is not None and real is not None:
            diff = difference_panel(self._display(lc, plane, syn - real), limit, SIGNAL_UNITS)
            swipe = (syn_img, real_img)
        else:
            missing = "no real image at this dose" if real is None else "no generator installed"
            diff = placeholder_panel(shape, f"difference map:\n{missing}")
            swipe = None
        metrics_md = self._slice_metrics_md(lc, plane, index, dose, syn, real, base)
        return DosePanels(syn_img, real_img, base_img, diff, swipe, metrics_md, real is not None)

    def _slice_metrics_md(
        self,
        lc: LoadedCase,
        plane: str,
        index: int,
        dose: float,
        syn: np.ndarray | None,
        real: np.ndarray | None,
        base: np.ndarray,
    ) -> str:
        if real is None:
            acquired = ", ".join(f"{d * 100:.0f} %" for d in lc.acquired_doses)
            return (
                f"**Per-slice metrics:** this case has no real image at {dose * 100:.0f} % of the standard "
                f"dose (acquired: {acquired})."
            )
        rows = [("Linear baseline", base)]
        if syn is not None:
            rows.insert(0, ("Synthetic", syn))
        brain = lc.brain_slice(plane, index)
        ce = take_slice(lc.ce, plane, index) & brain
        table = metric_table(rows, real, brain, ce, lc.data_range)
        return (
            f"**Per-slice metrics vs real** ({plane} slice {index + 1}, {dose * 100:.0f} % dose)\n\n{table}"
        )

    # -- volume metrics -----------------------------------------------------------------------------

    def volume_metrics(
        self,
        case_id: str,
        generator: str | None,
        dose_pct: float,
        progress: Callable[[float, str], None] | None = None,
    ) -> str:
        """Per-volume metrics of synthetic and linear baseline vs the real volume at ``dose_pct`` (cached)."""
        dose = float(np.clip(dose_pct, 0, 100)) / 100.0
        lc = self.library.get(case_id)
        key = (case_id, generator, round(dose, 4))

        def compute() -> str:
            from vce_core.synthesis import linear_baseline

            volume = self.acquired_volume(lc, dose)
            if volume is None and lc.is_phantom:
                if progress:
                    progress(0.05, "simulating the real acquisition")
                real = np.asarray(
                    lc.phantom().acquire(dose, noise_seed=lc.noise_seed()).data, dtype=np.float32
                )
            else:
                if volume is None:
                    acquired = ", ".join(f"{d * 100:.0f} %" for d in lc.acquired_doses)
                    raise VCEInputError(
                        f"this case has no acquisition at {dose * 100:.0f} % of the standard dose",
                        expected=f"one of the acquired doses ({acquired})",
                    )
                real = np.asarray(volume.data, dtype=np.float32)
            rows: list[tuple[str, np.ndarray]] = []
            if generator in self.generators.names():
                synth = self.generators.get(generator)
                if progress:
                    progress(0.15, "synthesizing the whole volume")

                def relay(done: int, total: int) -> None:
                    if progress:
                        progress(0.15 + 0.75 * done / max(total, 1), "synthesizing the whole volume")

                syn = synth.synthesize(
                    lc.case.native,
                    lc.case.standard_dose,
                    dose,
                    lc.case.field_strength,
                    seed=lc.noise_seed(),
                    progress=relay,
                )
                rows.append(("Synthetic", np.asarray(syn, dtype=np.float32)))
            rows.append(
                (
                    "Linear baseline",
                    np.asarray(linear_baseline(lc.case.native.data, lc.case.standard_dose.data, dose)),
                )
            )
            if progress:
                progress(0.95, "computing metrics")
            brain = lc.brain_volume()
            table = metric_table(rows, real, brain, lc.ce & brain, lc.data_range)
            return f"**Per-volume metrics vs real** ({dose * 100:.0f} % dose, whole brain)\n\n{table}"

        return self._volume_metrics.get_or_compute(key, compute)

    # -- charts -------------------------------------------------------------------------------------

    def dose_response(self, view: View) -> go.Figure:
        """Mean enhancement (image − native) in the slice's CE region vs dose: real, synthetic, linear."""
        lc = self.library.get(view.case_id)
        plane, index = view.plane, self._clamp(lc, view.plane, view.index)
        generator = view.generator if view.generator in self.generators.names() else None

        def compute() -> go.Figure:
            region = take_slice(lc.ce, plane, index)
            scope = "CE voxels of this slice"
            if not region.any():
                region = lc.brain_slice(plane, index)
                scope = "brain on this slice (no enhancing voxel here)"
            na = self._volume_slice(lc, "native", plane, index)

            def enh(img: np.ndarray) -> float:
                return float(np.mean((img - na)[region])) if region.any() else float("nan")

            fig = go.Figure()
            pct = [d * 100 for d in RESPONSE_DOSES]
            real_doses = tuple(lc.acquired_doses)
            real_vals = []
            for d in real_doses:
                img = self.real_slice(lc, d, plane, index)
                real_vals.append(enh(img) if img is not None else float("nan"))
            fig.add_trace(
                go.Scatter(
                    x=[d * 100 for d in real_doses],
                    y=real_vals,
                    name="Real (acquired doses)",
                    mode="lines+markers",
                )
            )
            if generator:
                syn_vals = [enh(self.synthetic_slice(lc, generator, d, plane, index)) for d in RESPONSE_DOSES]
                fig.add_trace(
                    go.Scatter(x=pct, y=syn_vals, name=f"Synthetic ({generator})", mode="lines+markers")
                )
            base_vals = [enh(self.baseline_slice(lc, d, plane, index)) for d in RESPONSE_DOSES]
            fig.add_trace(
                go.Scatter(x=pct, y=base_vals, name="Linear baseline", mode="lines", line={"dash": "dash"})
            )
            fig.update_layout(
                title={"text": f"Dose–response: mean enhancement in {scope}", "font": {"size": 13}},
                xaxis_title="dose (% of standard dose)",
                yaxis_title=f"mean enhancement, image − native ({SIGNAL_UNITS})",
                margin={"l": 60, "r": 10, "t": 40, "b": 45},
                height=330,
                legend={"orientation": "h", "y": -0.25},
                template="plotly_white",
            )
            return fig

        return self._charts.get_or_compute(("response", view.case_id, generator, plane, index), compute)

    def noise_chart(self, view: View) -> go.Figure:
        """Histogram of the local noise SD in non-enhancing brain: real, synthetic and linear baseline."""
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self._clamp(lc, view.plane, view.index), view.dose
        generator = view.generator if view.generator in self.generators.names() else None
        region = lc.brain_slice(plane, index) & ~take_slice(lc.ce, plane, index)
        region = ndimage.binary_erosion(region)
        images: list[tuple[str, np.ndarray]] = []
        real = self.real_slice(lc, dose, plane, index)
        if real is not None:
            images.append(("Real", real))
        if generator:
            images.append(
                (f"Synthetic ({generator})", self.synthetic_slice(lc, generator, dose, plane, index))
            )
        images.append(("Linear baseline", self.baseline_slice(lc, dose, plane, index)))
        fig = go.Figure()
        if region.sum() < 20:
            fig.add_annotation(text="too little non-enhancing tissue on this slice", showarrow=False)
        else:
            from vce_core.metrics import noise_sigma

            for name, img in images:
                sd_map = local_noise_sd(img)[region]
                try:
                    sigma = noise_sigma(img, region)
                    label = f"{name}: σ̂ = {sigma:.3g}"
                except VCEInputError:
                    label = name
                fig.add_trace(
                    go.Histogram(
                        x=sd_map, name=label, opacity=0.55, nbinsx=40, histnorm="probability density"
                    )
                )
            fig.update_layout(barmode="overlay")
        fig.update_layout(
            title={"text": f"Noise in non-enhancing brain at {dose * 100:.0f} % dose", "font": {"size": 13}},
            xaxis_title=f"local noise SD, 5×5 window ({SIGNAL_UNITS})",
            yaxis_title="density",
            margin={"l": 60, "r": 10, "t": 40, "b": 45},
            height=330,
            legend={"orientation": "h", "y": -0.25},
            template="plotly_white",
        )
        return fig


def nice_ceiling(value: float) -> float:
    """Smallest of 1, 2, 2.5, 5 × 10ⁿ that is ≥ ``value`` (slider ranges without long decimals)."""
    value = max(float(value), 1e-6)
    base = 10.0 ** np.floor(np.log10(value))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * base >= value * (1 - 1e-9):
            return float(m * base)
    return float(10 * base)


def local_noise_sd(img: np.ndarray, size: int = 5) -> np.ndarray:
    """Local SD of the high-pass residual ``img − gaussian(img, 1 px)`` in a ``size × size`` window."""
    img = np.asarray(img, dtype=np.float64)
    residual = img - ndimage.gaussian_filter(img, 1.0, mode="nearest")
    mean = ndimage.uniform_filter(residual, size, mode="nearest")
    mean_sq = ndimage.uniform_filter(residual**2, size, mode="nearest")
    return np.sqrt(np.maximum(mean_sq - mean**2, 0.0))


def metric_table(
    rows: Sequence[tuple[str, np.ndarray]],
    real: np.ndarray,
    brain: np.ndarray,
    ce: np.ndarray,
    data_range: float,
) -> str:
    """Markdown table of PSNR (dB, brain), SSIM, MAE_CE and MAE_σ (image units) of each row vs ``real``."""
    from vce_core.metrics import mae_ce, mae_sigma, psnr, ssim

    non_ce = brain & ~ce

    def safe(fn: Callable[..., float], fmt: str, *args: Any, **kwargs: Any) -> str:
        try:
            return format(fn(*args, **kwargs), fmt)
        except VCEInputError:
            return "n/a"

    lines = [
        f"| image | PSNR (dB) | SSIM | MAE_CE ({SIGNAL_UNITS}) | MAE_σ ({SIGNAL_UNITS}) |",
        "|---|---:|---:|---:|---:|",
    ]
    region = brain if brain.any() else None
    for name, img in rows:
        cells = [
            safe(psnr, ".2f", img, real, data_range=data_range, mask=region),
            safe(ssim, ".4f", img, real, data_range=data_range, mask=region),
            safe(mae_ce, ".4g", img, real, ce) if ce.any() else "no CE voxels",
            safe(mae_sigma, ".4g", img, real, non_ce) if non_ce.any() else "n/a",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
