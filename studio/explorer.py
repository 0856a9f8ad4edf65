"""Dose explorer logic: what the explorer's viewer, metrics and charts show, from a case library and a
generator registry.

No Gradio here: methods take plain values (a :class:`View`: case id, generator name, dose as a fraction of
the standard dose, plane, slice index) and return viewer payloads (:mod:`vce_core.viewer`), Markdown and
Plotly figures, so they are testable without a browser and reusable by the benchmarks.

What the browser gets: one linked viewer group of six panels (native, synthetic, real, standard dose,
linear baseline, synthetic − real). Slices travel as ``uint16`` with one encoding per case
(:meth:`Explorer.encoding`); the baseline and the difference map are computed in the browser from the
stacks it already has, so window/level and scrolling never need the server. Slices beyond the one on
screen are fetched lazily by the viewer's loader (:meth:`Explorer.stack_slices`).

Cost and caching:

* everything that does not depend on the dose is computed once per case (cases, presets, masks) or per
  (case, generator) (``Synthesizer.prepare``); native and standard-dose slices are only sliced;
* axial synthetic slices are synthesized one at a time (the generator's plane) and cached;
* a coronal or sagittal synthetic slice needs the whole volume at that dose (a 2-D generator with
  GroupNorm sees whole axial slices): :class:`~studio.volumes.VolumeJobs` computes volumes newest first,
  drops requests a session no longer waits for and precomputes while idle (the current dose of an axial
  view, the neighbouring doses of a coronal or sagittal view);
* "real" images: the acquired image when the dose matches an acquired one (:func:`vce_core.domain.
  match_dose`); for phantom cases otherwise ``PhantomCase.acquire_slice`` at exactly that dose; for real
  data otherwise none, and the panel says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from studio.cases import CaseLibrary, LoadedCase
from studio.figures import SIGNAL_UNITS, dose_response_figure, metric_table, noise_figure
from studio.generators import GeneratorRegistry, field_strength_caveat
from studio.volumes import VolumeJobs
from vce_core.baselines import case_tr_flip
from vce_core.cache import LRU
from vce_core.display import (
    Window,
    apply_window,
    clamp_index,
    n_slices,
    plane_axis,
    slice_auto_window,
    slice_spacing,
    take_slice,
    to_display,
)
from vce_core.domain import format_dose
from vce_core.errors import VCEInputError
from vce_core.viewer import Encoding, Panel, Stack, oriented, payload

#: Doses (fraction of the standard dose) sampled by the dose–response chart.
RESPONSE_DOSES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
#: Axial slices through the lesion used by the dose–response chart (evenly spread over its extent).
RESPONSE_SLICES = 5
#: Neighbouring doses (fractions) precomputed while a coronal or sagittal view is idle.
NEIGHBOUR_DOSES: tuple[float, ...] = (0.01, -0.01, 0.02, -0.02, 0.05, -0.05)
#: The viewer group of the explorer (its loader and its events use this id).
GROUP = "explorer"

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

    def describe(self) -> str:
        """``case · generator · plane slice k · dose``: the label of everything computed for this view."""
        gen = self.generator or "no generator"
        return f"{self.case_id} · {gen} · {self.plane} slice {self.index + 1} · {format_dose(self.dose)} dose"


@dataclass(frozen=True)
class StackSpec:
    """One stack of the viewer: a kind of image of a case in a plane (``dose``/``generator`` when needed)."""

    case_id: str
    kind: str  # native | standard | synthetic | real
    plane: str
    generator: str | None = None
    dose: float | None = None

    @property
    def id(self) -> str:
        """Opaque, deterministic id (the browser caches slices under it)."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:16]


def nice_ceiling(value: float) -> float:
    """Smallest of 1, 2, 2.5, 5 × 10ⁿ that is ≥ ``value`` (ranges without long decimals)."""
    value = max(float(value), 1e-6)
    base = 10.0 ** np.floor(np.log10(value))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * base >= value * (1 - 1e-9):
            return float(m * base)
    return float(10 * base)


class Explorer:
    """Computes every explorer view from a :class:`CaseLibrary` and a :class:`GeneratorRegistry`."""

    def __init__(self, library: CaseLibrary, generators: GeneratorRegistry) -> None:
        self.library = library
        self.generators = generators
        self._slices: LRU[np.ndarray] = LRU(1024)
        self._charts: LRU[go.Figure] = LRU(64)
        self._volume_metrics: LRU[str] = LRU(64)
        self._specs: LRU[StackSpec] = LRU(4096)
        self._encodings: LRU[Encoding] = LRU(16)
        self.volumes = VolumeJobs(self._compute_volume, capacity=8)

    # -- geometry ---------------------------------------------------------------------------------

    def slice_count(self, case_id: str, plane: str) -> int:
        """Number of slices of the case in ``plane``."""
        return n_slices(self.library.get(case_id).shape, plane)

    def default_index(self, case_id: str, plane: str) -> int:
        """Slice through the largest enhancing lesion in ``plane`` (0-based)."""
        return self.library.get(case_id).lesion_index[plane]

    def clamp(self, case_id: str, plane: str, index: int) -> int:
        """``index`` moved into the plane's slices."""
        return clamp_index(self.library.get(case_id).shape, plane, index)

    def encoding(self, case_id: str) -> Encoding:
        """The case's ``uint16`` encoding of every panel: ±1.5 × the largest magnitude of native and SD
        (synthetic images can overshoot either way; the step stays below 1e-4 of that magnitude)."""
        lc = self.library.get(case_id)

        def compute() -> Encoding:
            top = 1.5 * max(float(np.abs(v.data).max()) for v in (lc.case.native, lc.case.standard_dose))
            return Encoding.for_range(-max(top, 1.0), max(top, 1.0), "uint16")

        return self._encodings.get_or_compute(lc.case_id, compute)

    # -- float slices in volume orientation (cached) ---------------------------------------------

    def _volume_slice(self, lc: LoadedCase, which: str, plane: str, index: int) -> np.ndarray:
        volume = lc.case.native if which == "native" else lc.case.standard_dose
        return self._slices.get_or_compute(
            (lc.case_id, which, plane, index),
            lambda: take_slice(volume.data, plane, index).astype(np.float32),
        )

    def _prepared(self, lc: LoadedCase, generator: str) -> Any:
        synth = self.generators.get(generator)
        with lc.lock:
            if generator not in lc.prepared:
                lc.prepared[generator] = synth.prepare(
                    lc.case.native, lc.case.standard_dose, sequence=case_tr_flip(lc.case)
                )
            return lc.prepared[generator]

    def _compute_volume(self, key: Hashable, progress: Callable[[int, int], None]) -> np.ndarray:
        case_id, generator, dose = key  # type: ignore[misc]
        lc = self.library.get(case_id)
        synth = self.generators.get(generator)
        volume = synth.synthesize_prepared(
            self._prepared(lc, generator),
            dose,
            lc.case.field_strength,
            seed=lc.noise_seed(),
            progress=progress,
        )
        return np.asarray(volume, dtype=np.float32)

    @staticmethod
    def volume_key(case_id: str, generator: str, dose: float) -> tuple[str, str, float]:
        """Key of a whole synthetic volume in :attr:`volumes`."""
        return (case_id, generator, round(float(dose), 4))

    def synthetic_slice(
        self,
        lc: LoadedCase,
        generator: str,
        dose: float,
        plane: str,
        index: int,
        *,
        session: str = "",
        wait: bool = True,
    ) -> np.ndarray | None:
        """Synthetic slice (volume orientation, input units) at ``dose`` (fraction).

        Axial: synthesized alone (cached). Coronal/sagittal: sliced from the whole volume, waiting for it
        when ``wait`` (None if ``session`` asked for another volume meanwhile), or None when not ready.
        Equal to the same slice of ``Synthesizer.synthesize`` with the case's noise seed in every plane.
        """
        key = self.volume_key(lc.case_id, generator, dose)
        volume = self.volumes.cached(key)
        if volume is not None:
            return take_slice(volume, plane, index)
        if plane != "axial":
            volume = self.volumes.get(key, session) if wait else None
            return None if volume is None else take_slice(volume, plane, index)

        def compute() -> np.ndarray:
            synth = self.generators.get(generator)
            with self.volumes.foreground():
                out = synth.synthesize_slice(
                    self._prepared(lc, generator),
                    dose,
                    lc.case.field_strength,
                    plane="axial",
                    index=index,
                    seed=lc.noise_seed(),
                )
            return np.asarray(out, dtype=np.float32)

        return self._slices.get_or_compute((key, "axial", index), compute)

    def baseline_slice(self, lc: LoadedCase, dose: float, plane: str, index: int) -> np.ndarray:
        """Linear baseline ``native + dose · (standard − native)`` on one slice."""
        na = self._volume_slice(lc, "native", plane, index)
        sd = self._volume_slice(lc, "standard_dose", plane, index)
        return (na + np.float32(dose) * (sd - na)).astype(np.float32)

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

    def has_real(self, case_id: str, dose: float) -> bool:
        """Whether a real image exists at ``dose`` (acquired, or simulated for a phantom case)."""
        lc = self.library.get(case_id)
        return lc.is_phantom or lc.acquired_volume(dose) is not None

    def generator_or_default(self, generator: str | None) -> str | None:
        """``generator`` if it is installed, else the default one, else None (no generator installed)."""
        names = self.generators.names()
        if generator in names:
            return generator
        return names[0] if names else None

    # -- the viewer --------------------------------------------------------------------------------

    def _slice_of(self, spec: StackSpec, index: int, session: str, wait: bool) -> np.ndarray | None:
        lc = self.library.get(spec.case_id)
        if spec.kind in ("native", "standard"):
            return self._volume_slice(
                lc, "native" if spec.kind == "native" else "standard_dose", spec.plane, index
            )
        if spec.kind == "real":
            return self.real_slice(lc, float(spec.dose), spec.plane, index)
        if spec.kind == "synthetic" and spec.generator:
            return self.synthetic_slice(
                lc, spec.generator, float(spec.dose), spec.plane, index, session=session, wait=wait
            )
        return None

    def stack_slices(
        self, stack_id: str, indices: list[int], *, session: str = "", wait: bool = False
    ) -> dict[int, str]:
        """Encoded slices (display orientation) of a registered stack; what is not ready is left out.

        ``stack_id`` must come from a payload of this explorer (unknown ids give nothing); indices outside
        the stack are skipped. ``wait`` lets a coronal/sagittal synthetic stack wait for its volume.
        """
        spec = self._specs.get(stack_id)
        if spec is None:
            return {}
        lc = self.library.get(spec.case_id)
        count = n_slices(lc.shape, spec.plane)
        encoding = self.encoding(spec.case_id)
        pixel = slice_spacing(lc.spacing, spec.plane)
        out: dict[int, str] = {}
        for k in indices:
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < count:
                continue
            values = self._slice_of(spec, k, session, wait)
            if values is not None:
                out[k] = encoding.encode(oriented(values, pixel)[0])
        return out

    def _stack(self, spec: StackSpec) -> str:
        sid = spec.id
        self._specs.put(sid, spec)
        return sid

    def presets(self, case_id: str, plane: str, index: int) -> dict[str, Window]:
        """The case's window presets; 'Auto (percentile)' from the standard-dose slice on screen."""
        lc = self.library.get(case_id)
        out = dict(lc.presets)
        out["Auto (percentile)"] = slice_auto_window(self._volume_slice(lc, "standard_dose", plane, index))
        return out

    def viewer_payload(
        self,
        view: View,
        *,
        session: str = "",
        wait: bool = True,
        busy: str | None = None,
        static_slices: bool = True,
    ) -> dict[str, Any]:
        """The explorer's viewer group for ``view`` with the slice on screen inline.

        The synthetic slice is included when it is ready (axial: synthesized now; coronal/sagittal:
        when ``wait``, after its volume is computed); otherwise the synthetic and difference panels show
        ``busy`` until the next payload. ``static_slices=False`` leaves out the native and standard-dose
        slices (a dose step: the browser has them under the same stack ids, or its loader fetches them).
        """
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self.clamp(view.case_id, view.plane, view.index), view.dose
        generator = self.generator_or_default(view.generator)
        native = self._stack(StackSpec(view.case_id, "native", plane))
        standard = self._stack(StackSpec(view.case_id, "standard", plane))
        real = self._stack(StackSpec(view.case_id, "real", plane, dose=round(dose, 4)))
        syn = self._stack(StackSpec(view.case_id, "synthetic", plane, generator, round(dose, 4)))
        ids = {"native": native, "standard": standard, "real": real, "synthetic": syn}
        has_real = self.has_real(view.case_id, dose)
        stacks = {sid: Stack(self.encoding(view.case_id)) for sid in ids.values()}
        for kind, sid in ids.items():
            if kind == "synthetic" and not generator:
                continue
            if kind == "real" and not has_real:
                continue
            if kind in ("native", "standard") and not static_slices:
                continue
            stacks[sid].slices = self.stack_slices(sid, [index], session=session, wait=wait)
        syn_ready = bool(stacks[syn].slices) or not generator
        pending = busy or f"synthesizing the {format_dose(dose)} volume for the {plane} view…"
        acquired = lc.acquired_volume(dose) is not None
        panels = self._panels(ids, dose, generator, has_real, acquired, None if syn_ready else pending)
        presets = self.presets(view.case_id, plane, index)
        return self.case_payload(lc, plane, index, GROUP, panels, stacks, presets, columns=3)

    def case_payload(
        self,
        lc: LoadedCase,
        plane: str,
        index: int,
        group: str,
        panels: list[Panel],
        stacks: dict[str, Stack],
        presets: dict[str, Window],
        *,
        columns: int,
    ) -> dict[str, Any]:
        """The viewer payload of one case's ``plane`` at slice ``index`` (shared by the explorer and the
        virtual-contrast view): display shape and spacing of the case, the "Brain T1" preset first, and
        ``context`` = case and plane, so the browser keeps slice and window while only the dose changes."""
        return payload(
            group=group,
            panels=panels,
            stacks=stacks,
            count=n_slices(lc.shape, plane),
            index=index,
            shape=self._display_shape(lc, plane),
            spacing=self._display_spacing(lc, plane),
            window=presets["Brain T1"],
            preset="Brain T1",
            presets=presets,
            plane=plane,
            context=f"{lc.case_id}|{plane}",
            columns=columns,
            panel_height=240,
            prefetch=4,
            drag_scale=float(presets["Wide"].width) / 600,
        )

    @staticmethod
    def _panels(
        ids: dict[str, str],
        dose: float,
        generator: str | None,
        has_real: bool,
        acquired: bool,
        pending: str | None,
    ) -> list[Panel]:
        """The six panels: titles name the dose and generator; messages say what cannot be shown;
        ``pending`` is the busy text of the synthetic and difference panels (None when ready)."""
        pct = format_dose(dose)
        no_real = f"no acquisition at {pct} dose"
        missing_syn = None if generator else "no generator installed"
        return [
            Panel("native", "Native (pre-contrast)", stack=ids["native"]),
            Panel(
                "synthetic",
                f"Synthetic · {pct} · {generator or 'no generator'}",
                stack=ids["synthetic"],
                message=missing_syn,
                busy=pending,
            ),
            Panel(
                "real",
                f"Real · {pct} · {'acquired' if acquired else 'simulated'}",
                stack=ids["real"],
                message=None if has_real else no_real,
            ),
            Panel("standard", "Standard dose (100 %)", stack=ids["standard"]),
            Panel(
                "baseline",
                f"Linear baseline · {pct}",
                derive=Panel.lerp(ids["native"], ids["standard"], dose),
            ),
            Panel(
                "difference",
                "Synthetic − real (±25 % of window width)",
                derive=Panel.difference(ids["synthetic"], ids["real"]),
                colormap="diverging",
                units=SIGNAL_UNITS,
                message=missing_syn or (None if has_real else no_real),
                busy=pending,
            ),
        ]

    @staticmethod
    def _display_shape(lc: LoadedCase, plane: str) -> tuple[int, int]:
        """``(rows, cols)`` of a displayed slice (:func:`vce_core.viewer.oriented`: ``(B, A)``)."""
        a, b = (n for axis, n in enumerate(lc.shape) if axis != plane_axis(plane))
        return b, a

    @staticmethod
    def _display_spacing(lc: LoadedCase, plane: str) -> tuple[float, float]:
        """``(row_mm, col_mm)`` of a displayed slice."""
        along_a, along_b = slice_spacing(lc.spacing, plane)
        return along_b, along_a

    def prefetch_for(self, view: View) -> None:
        """Queue idle precomputation for ``view``: its dose (plane switches) and, in coronal or sagittal
        views, the neighbouring doses (dose steps)."""
        generator = self.generator_or_default(view.generator)
        if not generator:
            return
        doses = [view.dose]
        if view.plane != "axial":
            doses += [d for off in NEIGHBOUR_DOSES if 0 <= (d := round(view.dose + off, 2)) <= 1]
        self.volumes.prefetch([self.volume_key(view.case_id, generator, d) for d in doses])

    def warm_up(self, case_id: str, generator: str | None) -> None:
        """Do the dose-independent work for a (case, generator) ahead of the first request: the
        generator's prepared inputs, then (phantom cases) the subject that simulates real images at
        doses nobody acquired, which the first such dose would otherwise wait for (seconds)."""
        lc = self.library.get(case_id)
        if generator in self.generators.names():
            self._prepared(lc, generator)
        lc.start_phantom()

    def native_panel(self, view: View, window: Window) -> np.ndarray:
        """The native slice as a ``uint8`` PNG-ready panel (the benchmark's trivial image event)."""
        lc = self.library.get(view.case_id)
        index = self.clamp(view.case_id, view.plane, view.index)
        sl = self._volume_slice(lc, "native", view.plane, index)
        return apply_window(to_display(sl, slice_spacing(lc.spacing, view.plane)), window)

    def swipe_pair(self, view: View, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """Synthetic and real slice (``uint8``, square pixels, ``window``) for the swipe comparison."""
        lc = self.library.get(view.case_id)
        generator = self.generator_or_default(view.generator)
        index = self.clamp(view.case_id, view.plane, view.index)
        real = self.real_slice(lc, view.dose, view.plane, index)
        if not generator or real is None:
            return None
        syn = self.synthetic_slice(lc, generator, view.dose, view.plane, index)
        if syn is None:
            return None
        pixel = slice_spacing(lc.spacing, view.plane)
        return apply_window(to_display(syn, pixel), window), apply_window(to_display(real, pixel), window)

    # -- per-slice metrics ---------------------------------------------------------------------

    def slice_metrics(self, view: View, *, session: str = "") -> str:
        """Per-slice metrics of synthetic and linear baseline vs the real slice, headed by the view."""
        lc = self.library.get(view.case_id)
        index = self.clamp(view.case_id, view.plane, view.index)
        view = View(view.case_id, self.generator_or_default(view.generator), view.dose, view.plane, index)
        heading = f"**Per-slice metrics vs real** · {view.describe()}"
        if view.generator:
            card = getattr(self.generators.get(view.generator), "card", None)
            caveat = field_strength_caveat(card, lc.case.field_strength)
            heading += f"\n\n{caveat}" if caveat else ""
        real = self.real_slice(lc, view.dose, view.plane, index)
        if real is None:
            acquired = ", ".join(format_dose(d) for d in lc.acquired_doses)
            return f"{heading}\n\nNo real image at {format_dose(view.dose)} dose (acquired: {acquired})."
        rows = [("Linear baseline", self.baseline_slice(lc, view.dose, view.plane, index))]
        if view.generator:
            syn = self.synthetic_slice(lc, view.generator, view.dose, view.plane, index, session=session)
            if syn is None:
                return f"{heading}\n\n(superseded by a newer request)"
            rows.insert(0, ("Synthetic", syn))
        brain = lc.brain_slice(view.plane, index)
        ce = take_slice(lc.ce, view.plane, index) & brain
        return f"{heading}\n\n{metric_table(rows, real, brain, ce, lc.data_range)}"

    # -- per-volume metrics ----------------------------------------------------------------------

    def volume_metrics(
        self,
        case_id: str,
        generator: str | None,
        dose: float,
        progress: Progress | None = None,
        *,
        session: str = "",
    ) -> str:
        """Per-volume metrics of synthetic and linear baseline vs the real volume at ``dose`` (cached).

        ``dose`` is a fraction of the standard dose. The real volume is the acquired one, or for a phantom
        case a simulated acquisition; real data without an acquisition at ``dose`` is a
        :class:`VCEInputError`. The synthetic volume is the one the coronal/sagittal views use (shared
        cache). The heading names case, generator and dose.
        """
        lc = self.library.get(case_id)
        generator = self.generator_or_default(generator)
        report = progress or (lambda fraction, what: None)
        heading = (
            f"**Per-volume metrics vs real** · {case_id} · {generator or 'no generator'} · "
            f"{format_dose(dose)} dose · whole brain"
        )

        def compute() -> str:
            real = self._real_volume(lc, dose, report)
            rows: list[tuple[str, np.ndarray]] = []
            if generator:
                report(0.15, "synthesizing the whole volume")
                key = self.volume_key(case_id, generator, dose)
                volume = self.volumes.get(key, session or "volume-metrics")
                if volume is None:
                    raise VCEInputError("the request was replaced by a newer one", expected="the latest view")
                rows.append(("Synthetic", volume))
            baseline = lc.case.native.data + np.float32(dose) * (
                lc.case.standard_dose.data - lc.case.native.data
            )
            rows.append(("Linear baseline", np.asarray(baseline, dtype=np.float32)))
            report(0.95, "computing metrics")
            brain = lc.brain_volume()
            return f"{heading}\n\n{metric_table(rows, real, brain, lc.ce & brain, lc.data_range)}"

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

    # -- charts ------------------------------------------------------------------------------------

    def _response_slices(self, lc: LoadedCase) -> tuple[list[int], np.ndarray]:
        """Up to :data:`RESPONSE_SLICES` axial slices through the largest CE region, and that region."""
        ce = lc.ce
        if ce.any():
            labels, n = ndimage.label(ce)
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            region = labels == int(np.argmax(sizes))
        else:
            region = lc.brain_volume()
        ks = np.flatnonzero(region.any(axis=(0, 1)))
        if ks.size > RESPONSE_SLICES:
            ks = ks[np.round(np.linspace(0, ks.size - 1, RESPONSE_SLICES)).astype(int)]
        return [int(k) for k in ks], region

    def dose_response(self, view: View) -> go.Figure:
        """Mean enhancement (image − native) in the case's largest enhancing lesion vs dose.

        The lesion is the same whatever the plane on screen: its CE voxels on up to five axial slices
        through it (the generator's own plane, so the chart costs slices, not volumes).
        """
        lc = self.library.get(view.case_id)
        generator = self.generator_or_default(view.generator)

        def compute() -> go.Figure:
            ks, region = self._response_slices(lc)

            def mean_enhancement(get: Callable[[int], np.ndarray | None]) -> float:
                values = []
                for k in ks:
                    img = get(k)
                    if img is None:
                        return float("nan")
                    na = self._volume_slice(lc, "native", "axial", k)
                    values.append((img - na)[region[:, :, k]])
                joined = np.concatenate(values) if values else np.zeros(0)
                return float(joined.mean()) if joined.size else float("nan")

            real = [
                (d, mean_enhancement(lambda k, d=d: self.real_slice(lc, d, "axial", k)))
                for d in lc.acquired_doses
            ]
            synthetic = None
            if generator:
                points = [
                    (d, mean_enhancement(lambda k, d=d: self.synthetic_slice(lc, generator, d, "axial", k)))
                    for d in RESPONSE_DOSES
                ]
                synthetic = (generator, points)
            baseline = [
                (d, mean_enhancement(lambda k, d=d: self.baseline_slice(lc, d, "axial", k)))
                for d in RESPONSE_DOSES
            ]
            scope = f"the largest enhancing lesion of {view.case_id} ({len(ks)} axial slices)"
            return dose_response_figure(real, synthetic, baseline, scope)

        return self._charts.get_or_compute(("response", view.case_id, generator), compute)

    def noise_chart(self, view: View, *, session: str = "") -> go.Figure:
        """Histogram of the local noise SD of the subtraction image (image − native) in non-enhancing brain
        on the slice on screen: real, synthetic and linear baseline; the title names case, plane, slice and
        dose. The subtraction is what seed 000's noise-preserving loss is meant to keep realistic: a model
        that only reproduces the native image's noise shows a narrow synthetic histogram here."""
        lc = self.library.get(view.case_id)
        plane, index, dose = view.plane, self.clamp(view.case_id, view.plane, view.index), view.dose
        generator = self.generator_or_default(view.generator)
        region = ndimage.binary_erosion(lc.brain_slice(plane, index) & ~take_slice(lc.ce, plane, index))
        images: list[tuple[str, np.ndarray]] = []
        real = self.real_slice(lc, dose, plane, index)
        if real is not None:
            images.append(("Real", real))
        if generator:
            syn = self.synthetic_slice(lc, generator, dose, plane, index, session=session)
            if syn is not None:
                images.append((f"Synthetic ({generator})", syn))
        images.append(("Linear baseline", self.baseline_slice(lc, dose, plane, index)))
        native = self._volume_slice(lc, "native", plane, index)
        where = f"{view.case_id} · {plane} slice {index + 1}"
        return noise_figure([(name, img - native) for name, img in images], region, dose, where=where)
