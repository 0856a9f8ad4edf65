"""Dose explorer logic: everything the explorer panels show, from a case library and a generator registry.

No Gradio here: methods take plain values (a :class:`View`: case id, generator name, dose as a fraction of
the standard dose, plane, slice index; a :class:`~vce_core.display.Window`) and return ``uint8`` images,
Markdown strings and Plotly figures, so they are testable without a browser and reusable by the
benchmarks. Every image goes through :mod:`vce_core.display` (orientation, square pixels, window).

Caching (everything that does not depend on the dose is computed once):

* cases are loaded on first selection (:class:`~studio.cases.CaseLibrary`);
* ``Synthesizer.prepare`` runs once per (case, generator);
* float slices in volume orientation (native, standard dose, real, synthetic) are cached per key, so a
  window/level change only re-windows; the dose slider only computes the synthetic slice (and the
  simulated real slice) for a dose it has not seen yet.

"Real" images: the acquired image when the dose matches an acquired one (native at 0, the case's low
doses, standard dose at 1, matched by :func:`vce_core.domain.match_dose`); otherwise, for phantom cases,
``PhantomCase.acquire_slice`` at exactly that dose; otherwise (real data) none, and the panel says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from studio.cases import CaseLibrary, LoadedCase
from studio.figures import SIGNAL_UNITS, dose_response_figure, metric_table, noise_figure
from studio.generators import GeneratorRegistry
from vce_core.cache import LRU
from vce_core.display import (
    Window,
    apply_window,
    clamp_index,
    difference_panel,
    n_slices,
    placeholder_panel,
    slice_auto_window,
    slice_spacing,
    take_slice,
    to_display,
)
from vce_core.domain import format_dose
from vce_core.errors import VCEInputError

#: Doses (fraction of the standard dose) sampled by the dose–response chart.
RESPONSE_DOSES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))

Progress = Callable[[float, str], None]
"""``progress(fraction done in [0, 1], what is being done)``."""


@dataclass(frozen=True)
class View:
    """What the explorer shows: a case, a generator, a dose and a slice.

    ``dose`` is a fraction of the standard dose in [0, 1]; ``index`` is 0-based and clamped to the plane.
    """

    case_id: str
    generator: str | None
    dose: float
    plane: str
    index: int


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


def nice_ceiling(value: float) -> float:
    """Smallest of 1, 2, 2.5, 5 × 10ⁿ that is ≥ ``value`` (slider ranges without long decimals)."""
    value = max(float(value), 1e-6)
    base = 10.0 ** np.floor(np.log10(value))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * base >= value * (1 - 1e-9):
            return float(m * base)
    return float(10 * base)


class Explorer:
    """Computes every explorer panel from a :class:`CaseLibrary` and a :class:`GeneratorRegistry`."""

    def __init__(self, library: CaseLibrary, generators: GeneratorRegistry) -> None:
        self.library = library
        self.generators = generators
        self._slices: LRU[np.ndarray] = LRU(512)
        self._charts: LRU[go.Figure] = LRU(64)
        self._volume_metrics: LRU[str] = LRU(64)

    # -- geometry ---------------------------------------------------------------------------------

    def slice_count(self, case_id: str, plane: str) -> int:
        """Number of slices of the case in ``plane``."""
        return n_slices(self.library.get(case_id).shape, plane)

    def default_index(self, case_id: str, plane: str) -> int:
        """Slice through the largest enhancing lesion in ``plane`` (0-based)."""
        return self.library.get(case_id).lesion_index[plane]

    @staticmethod
    def _clamp(lc: LoadedCase, plane: str, index: int) -> int:
        """The slider's index moved into the plane (the explorer clamps; :func:`take_slice` would raise)."""
        return clamp_index(lc.shape, plane, index)

    @staticmethod
    def _display(lc: LoadedCase, plane: str, slice2d: np.ndarray) -> np.ndarray:
        return to_display(slice2d, slice_spacing(lc.spacing, plane))

    def _shown(self, lc: LoadedCase, plane: str, slice2d: np.ndarray, window: Window) -> np.ndarray:
        return apply_window(self._display(lc, plane, slice2d), window)

    def _panel_shape(self, lc: LoadedCase, plane: str, index: int) -> tuple[int, int]:
        """Displayed ``(rows, cols)`` of a slice (placeholders get the size of the image they replace)."""
        return self._display(lc, plane, self._volume_slice(lc, "native", plane, index)).shape

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
        acquired = lc.acquired_volume(dose)
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

    def _generator_or_default(self, generator: str | None) -> str | None:
        """``generator`` if it is installed, else the default one, else None (no generator installed)."""
        names = self.generators.names()
        if generator in names:
            return generator
        return names[0] if names else None

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
        plane, index = view.plane, self._clamp(lc, view.plane, view.index)
        return (
            self._shown(lc, plane, self._volume_slice(lc, "native", plane, index), window),
            self._shown(lc, plane, self._volume_slice(lc, "standard_dose", plane, index), window),
        )

    def reference_panels(self, view: View, window: Window) -> tuple[np.ndarray, bool, np.ndarray]:
        """Real panel (or its placeholder), whether a real image exists, and the linear-baseline panel."""
        lc = self.library.get(view.case_id)
        plane, index = view.plane, self._clamp(lc, view.plane, view.index)
        real = self.real_slice(lc, view.dose, plane, index)
        base = self.baseline_slice(lc, view.dose, plane, index)
        if real is None:
            real_img = placeholder_panel(
                self._panel_shape(lc, plane, index), f"no acquisition at\n{format_dose(view.dose)} dose"
            )
        else:
            real_img = self._shown(lc, plane, real, window)
        return real_img, real is not None, self._shown(lc, plane, base, window)

    def warm_up(self, case_id: str, generator: str | None) -> None:
        """Do the dose-independent work for a (case, generator) ahead of the first request."""
        lc = self.library.get(case_id)
        if generator in self.generators.names():
            self._prepared(lc, generator, self.generators.get(generator))

    def synthetic_panel(self, view: View, window: Window) -> np.ndarray:
        """The synthetic panel alone (the latency-critical path of the dose slider)."""
        lc = self.library.get(view.case_id)
        plane, index = view.plane, self._clamp(lc, view.plane, view.index)
        if not self.generators.names():
            return placeholder_panel(self._panel_shape(lc, plane, index), "no generator installed")
        generator = view.generator or self.generators.names()[0]
        return self._shown(lc, plane, self.synthetic_slice(lc, generator, view.dose, plane, index), window)

    def dose_panels(self, view: View, window: Window) -> DosePanels:
        """Synthetic, real, baseline, difference map, swipe pair and per-slice metrics at the view's dose."""
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self._clamp(lc, view.plane, view.index), view.dose
        shape = self._panel_shape(lc, plane, index)
        generator = self._generator_or_default(view.generator)
        syn = self.synthetic_slice(lc, generator, dose, plane, index) if generator else None
        real = self.real_slice(lc, dose, plane, index)
        base = self.baseline_slice(lc, dose, plane, index)

        syn_img = (
            self._shown(lc, plane, syn, window)
            if syn is not None
            else placeholder_panel(shape, "no generator installed")
        )
        real_img = (
            self._shown(lc, plane, real, window)
            if real is not None
            else placeholder_panel(shape, f"no acquisition at\n{format_dose(dose)} dose")
        )
        limit = max(float(f"{0.25 * window.width:.2g}"), 1e-6)
        if syn is not None and real is not None:
            diff = difference_panel(self._display(lc, plane, syn - real), limit, SIGNAL_UNITS)
            swipe = (syn_img, real_img)
        else:
            missing = "no real image at this dose" if real is None else "no generator installed"
            diff = placeholder_panel(shape, f"difference map:\n{missing}")
            swipe = None
        metrics_md = self._slice_metrics_md(lc, view, index, syn, real, base)
        base_img = self._shown(lc, plane, base, window)
        return DosePanels(syn_img, real_img, base_img, diff, swipe, metrics_md, real is not None)

    def _slice_metrics_md(
        self,
        lc: LoadedCase,
        view: View,
        index: int,
        syn: np.ndarray | None,
        real: np.ndarray | None,
        base: np.ndarray,
    ) -> str:
        if real is None:
            acquired = ", ".join(format_dose(d) for d in lc.acquired_doses)
            return (
                f"**Per-slice metrics:** this case has no real image at {format_dose(view.dose)} of the "
                f"standard dose (acquired: {acquired})."
            )
        rows = [("Linear baseline", base)]
        if syn is not None:
            rows.insert(0, ("Synthetic", syn))
        brain = lc.brain_slice(view.plane, index)
        ce = take_slice(lc.ce, view.plane, index) & brain
        table = metric_table(rows, real, brain, ce, lc.data_range)
        where = f"{view.plane} slice {index + 1}, {format_dose(view.dose)} dose"
        return f"**Per-slice metrics vs real** ({where})\n\n{table}"

    # -- volume metrics -----------------------------------------------------------------------------

    def volume_metrics(
        self, case_id: str, generator: str | None, dose: float, progress: Progress | None = None
    ) -> str:
        """Per-volume metrics of synthetic and linear baseline vs the real volume at ``dose`` (cached).

        ``dose`` is a fraction of the standard dose. The real volume is the acquired one, or for a phantom
        case a simulated acquisition; real data without an acquisition at ``dose`` is a
        :class:`VCEInputError`. ``progress`` is told what happens during the whole-volume synthesis.
        """
        lc = self.library.get(case_id)
        report = progress or (lambda fraction, what: None)

        def compute() -> str:
            from vce_core.synthesis import linear_baseline

            real = self._real_volume(lc, dose, report)
            rows: list[tuple[str, np.ndarray]] = []
            if generator in self.generators.names():
                rows.append(("Synthetic", self._synthetic_volume(lc, generator, dose, report)))
            baseline = linear_baseline(lc.case.native.data, lc.case.standard_dose.data, dose)
            rows.append(("Linear baseline", np.asarray(baseline)))
            report(0.95, "computing metrics")
            brain = lc.brain_volume()
            table = metric_table(rows, real, brain, lc.ce & brain, lc.data_range)
            return f"**Per-volume metrics vs real** ({format_dose(dose)} dose, whole brain)\n\n{table}"

        return self._volume_metrics.get_or_compute((case_id, generator, round(dose, 4)), compute)

    @staticmethod
    def _real_volume(lc: LoadedCase, dose: float, report: Progress) -> np.ndarray:
        volume = lc.acquired_volume(dose)
        if volume is not None:
            return np.asarray(volume.data, dtype=np.float32)
        if not lc.is_phantom:
            acquired = ", ".join(format_dose(d) for d in lc.acquired_doses)
            raise VCEInputError(
                f"this case has no acquisition at {format_dose(dose)} of the standard dose",
                expected=f"one of the acquired doses ({acquired})",
            )
        report(0.05, "simulating the real acquisition")
        return np.asarray(lc.phantom().acquire(dose, noise_seed=lc.noise_seed()).data, dtype=np.float32)

    def _synthetic_volume(self, lc: LoadedCase, generator: str, dose: float, report: Progress) -> np.ndarray:
        synth = self.generators.get(generator)
        report(0.15, "synthesizing the whole volume")

        def relay(done: int, total: int) -> None:
            report(0.15 + 0.75 * done / max(total, 1), "synthesizing the whole volume")

        case = lc.case
        syn = synth.synthesize(
            case.native, case.standard_dose, dose, case.field_strength, seed=lc.noise_seed(), progress=relay
        )
        return np.asarray(syn, dtype=np.float32)

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

            def enh(img: np.ndarray | None) -> float:
                return (
                    float(np.mean((img - na)[region])) if img is not None and region.any() else float("nan")
                )

            real = [(d, enh(self.real_slice(lc, d, plane, index))) for d in lc.acquired_doses]
            synthetic = None
            if generator:
                points = [
                    (d, enh(self.synthetic_slice(lc, generator, d, plane, index))) for d in RESPONSE_DOSES
                ]
                synthetic = (generator, points)
            baseline = [(d, enh(self.baseline_slice(lc, d, plane, index))) for d in RESPONSE_DOSES]
            return dose_response_figure(real, synthetic, baseline, scope)

        return self._charts.get_or_compute(("response", view.case_id, generator, plane, index), compute)

    def noise_chart(self, view: View) -> go.Figure:
        """Histogram of the local noise SD in non-enhancing brain: real, synthetic and linear baseline."""
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self._clamp(lc, view.plane, view.index), view.dose
        generator = view.generator if view.generator in self.generators.names() else None
        region = ndimage.binary_erosion(lc.brain_slice(plane, index) & ~take_slice(lc.ce, plane, index))
        images: list[tuple[str, np.ndarray]] = []
        real = self.real_slice(lc, dose, plane, index)
        if real is not None:
            images.append(("Real", real))
        if generator:
            images.append(
                (f"Synthetic ({generator})", self.synthetic_slice(lc, generator, dose, plane, index))
            )
        images.append(("Linear baseline", self.baseline_slice(lc, dose, plane, index)))
        return noise_figure(images, region, dose)
