"""Virtual-contrast view logic: a case's inputs, a zero-dose model's synthesized standard dose, the real
standard dose and their difference, with metrics, from a case library and the virtual-contrast models.

No Gradio here: methods take plain values (a :class:`ContrastView`: case id, model name, plane, slice index)
and return viewer payloads (:mod:`vce_core.viewer`, the explorer's viewer) and Markdown, so they are
testable without a browser.

What the browser gets: one linked viewer group (:data:`GROUP`) with a panel per input the model's card
declares (native T1 first, then e.g. T2, FLAIR, ADC; an optional input the case lacks says that the model
gets a zero image), the virtual contrast, the real standard dose and the difference virtual − real
(computed in the browser). Slices travel as ``uint16`` in the case's encoding (the explorer's). The group
has one window: inputs that are not T1-weighted are shown intensity-matched — their 0.5–99.5 % brain
percentiles mapped linearly onto the T1 window ``Brain T1`` — so one drag windows every panel alike; their
titles say so.

Cost and caching: a model sees whole axial slices, and coronal/sagittal views need every axial slice, so the
whole virtual-contrast volume is synthesized once per (case, model) in a background thread (progress
reported) and kept in an :class:`~vce_core.cache.LRU`; plane and slice changes only slice it. A case's
extra images (T2, FLAIR, ADC, labels), its brain mask and its normalisation are loaded once per case.

Metrics (:func:`region_errors`) follow the held-out evaluation (``vce_core.evaluate.virtual_contrast``):
images are mapped with the case's native percentile normalisation (0.5 / 99.5 % inside the native brain
mask → 0 / 1), the same map for every row and for the reference; MAE, PSNR (data range: the real standard
dose's range in the brain) and SSIM (scikit-image's 7-pixel window, averaged over the region's pixels at
least 3 from the border) against the real standard dose, inside the brain and inside the lesion labels
(tumour tissue, edema excluded) where the case has labels; rows: the model and the native image (the
trivial baseline). Slice scope: the slice on screen (2-D SSIM); volume scope: the brain's bounding box
(+8 voxels, 3-D SSIM).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.cases import CaseLibrary
from studio.explorer import Explorer
from studio.generators import GeneratorRegistry
from vce_core.cache import LRU
from vce_core.display import clamp_index, n_slices, slice_auto_window, slice_spacing, take_slice
from vce_core.errors import VCEInputError
from vce_core.viewer import Panel, Stack, oriented

GROUP = "contrast"
"""The viewer group of the virtual-contrast view (its loader and its events use this id)."""
TASK = "virtual_contrast"
LESION_LABELS = (7, 8, 10, 11, 12, 13)
"""Phantom labels of tumour tissue (rim, necrosis, metastasis, meningioma, weak and non-enhancing lesion;
edema excluded): the lesion region of ``vce_core.evaluate.virtual_contrast``."""
SSIM_BORDER = 3
"""SSIM is averaged over pixels at least this far from the image border (the 7-pixel window's half)."""
CROP_MARGIN = 8
"""Voxels kept around the brain's bounding box for the per-volume metrics."""
NAMES = {"native": "Native T1 (pre-contrast)", "t2": "T2", "flair": "FLAIR", "adc": "ADC"}
METRIC_NOTE = (
    "MAE in native-normalised units (0.5 / 99.5 % of the native brain → 0 / 1); PSNR with the real "
    "standard dose's range in the brain; SSIM: scikit-image, 7-pixel window, mean over the region."
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ContrastView:
    """What the view shows: a case, a virtual-contrast model (None: none installed), a plane and a slice
    (0-based, clamped to the plane)."""

    case_id: str
    model: str | None
    plane: str
    index: int

    def describe(self, scope: str = "slice") -> str:
        """``case · model · plane slice k`` (``· whole volume`` for the volume scope)."""
        where = f"{self.plane} slice {self.index + 1}" if scope == "slice" else "whole volume"
        return f"{self.case_id} · {self.model or 'no virtual-contrast model'} · {where}"


@dataclass
class CaseImages:
    """What a case needs beyond the explorer's :class:`LoadedCase`: its extra images (T2, FLAIR, ADC,
    labels; the explorer frees them), the native brain mask and the native percentile normalisation."""

    case: Any  # vce_core.io.Case with its extra images
    brain: np.ndarray
    params: dict[str, Any]
    lesion: np.ndarray | None  # bool (I, J, K) from the labels, None when the case has none

    def normalise(self, x: np.ndarray) -> np.ndarray:
        from vce_core.data import apply_normalization

        return np.asarray(apply_normalization(np.asarray(x, dtype=np.float32), self.params), np.float32)


def region_errors(
    x: np.ndarray, ref: np.ndarray, regions: dict[str, np.ndarray | None], data_range: float
) -> dict[str, dict[str, float]]:
    """MAE, PSNR (dB) and SSIM of ``x`` against ``ref`` in each region (2-D or 3-D, same shape).

    ``regions`` maps a name to a bool mask (None or empty: NaN metrics). The SSIM map (scikit-image's
    definition, 7-pixel window) is computed once and averaged per region over the pixels at least
    :data:`SSIM_BORDER` from the border. Returns ``{region: {"mae", "psnr", "ssim"}}``.
    """
    from vce_core import metrics

    smap = metrics.ssim_map(x, ref, data_range)
    interior = tuple(slice(SSIM_BORDER, max(n - SSIM_BORDER, SSIM_BORDER)) for n in smap.shape)
    out: dict[str, dict[str, float]] = {}
    for name, region in regions.items():
        if region is None or not region.any():
            out[name] = {"mae": float("nan"), "psnr": float("nan"), "ssim": float("nan")}
            continue
        inside = region[interior]
        out[name] = {
            "mae": metrics.mae(x, ref, region),
            "psnr": metrics.psnr(x, ref, data_range=data_range, mask=region),
            "ssim": float(smap[interior][inside].mean()) if inside.any() else float("nan"),
        }
    return out


def _fmt(value: float, spec: str) -> str:
    return "–" if not np.isfinite(value) else format(value, spec)


def _crop(brain: np.ndarray) -> tuple[slice, ...]:
    idx = np.nonzero(brain)
    return tuple(
        slice(max(int(a.min()) - CROP_MARGIN, 0), min(int(a.max()) + 1 + CROP_MARGIN, n))
        for a, n in zip(idx, brain.shape, strict=True)
    )


class Contrast:
    """Computes every virtual-contrast view from a :class:`CaseLibrary` and the virtual-contrast models
    (a :class:`GeneratorRegistry` of task ``virtual_contrast``)."""

    def __init__(self, library: CaseLibrary, models: GeneratorRegistry, explorer: Explorer) -> None:
        self.library = library
        self.models = models
        self.explorer = explorer  # its encodings and window presets: one look for both views
        self._images: LRU[CaseImages] = LRU(2)
        self._prepared: LRU[Any] = LRU(4)
        self.volumes: LRU[np.ndarray] = LRU(4)
        self._slices: LRU[np.ndarray] = LRU(512)
        self._jobs: dict[tuple[str, str], Future] = {}
        self._progress: dict[tuple[str, str], float] = {}
        self._jobs_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vce-contrast")
        self._specs: LRU[tuple[str, str, str, str | None]] = LRU(1024)
        self._matches: LRU[tuple[float, float]] = LRU(64)

    # -- models and cases ----------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Names of the installed virtual-contrast models (default first)."""
        return self.models.names()

    def model_or_default(self, model: str | None) -> str | None:
        """``model`` if installed, else the first installed one, else None."""
        names = self.model_names()
        return model if model in names else (names[0] if names else None)

    def images(self, case_id: str) -> CaseImages:
        """The case's extra images, native brain mask and normalisation (loaded once, cached)."""
        lc = self.library.get(case_id)

        def load() -> CaseImages:
            from vce_core.data import fit_normalization
            from vce_core.io import load_case
            from vce_core.preprocess import brain_mask

            full = load_case(self.library.data_dir / lc.case_id)
            case = copy.copy(lc.case)
            case.extra = {k: v for k, v in full.extra.items() if k in ("t2", "flair", "adc", "labels")}
            native = np.asarray(case.native.data, dtype=np.float32)
            brain = np.asarray(brain_mask(native), dtype=bool)
            labels = case.extra.get("labels")
            lesion = None
            if labels is not None and labels.data.shape == native.shape:
                lesion = np.isin(np.rint(labels.data).astype(np.int32), LESION_LABELS)
            return CaseImages(case, brain, fit_normalization(native, brain, "percentile"), lesion)

        return self._images.get_or_compute(lc.case_id, load)

    def inputs_of(self, model: str | None) -> list[str]:
        """The model card's input names (``["native"]`` without a model)."""
        return list(self.models.get(model).inputs) if model else ["native"]

    def prepared(self, case_id: str, model: str) -> Any:
        """The model's :class:`~vce_core.synthesis.PreparedContrast` of the case (cached). A required input
        the case lacks is a :class:`VCEInputError` naming the case and the input."""
        synth = self.models.get(model)

        def prepare() -> Any:
            try:
                return synth.prepare_case(self.images(case_id).case)
            except VCEInputError as exc:
                raise VCEInputError(f"case {case_id}: {exc.problem}", expected=exc.expected) from None

        return self._prepared.get_or_compute((case_id, model), prepare)

    # -- the virtual-contrast volume (background, cached) -----------------------------------------

    def volume(self, case_id: str, model: str) -> np.ndarray | None:
        """The synthesized standard dose of the case (float32, native units) if it is ready, else None."""
        return self.volumes.get((case_id, model))

    def start(self, case_id: str, model: str) -> Future:
        """Start (or join) synthesizing the whole volume; the future's result is the volume."""
        key = (case_id, model)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None and not job.done():
                return job
            done: Future = Future()
            cached = self.volumes.get(key)
            if cached is not None:
                done.set_result(cached)
                return done
            self._progress[key] = 0.0
            job = self._pool.submit(self._synthesize, key)
            self._jobs[key] = job
            return job

    def progress(self, case_id: str, model: str) -> float:
        """Fraction of the volume synthesized so far (1 when ready)."""
        if (case_id, model) in self.volumes:
            return 1.0
        return self._progress.get((case_id, model), 0.0)

    def _synthesize(self, key: tuple[str, str]) -> np.ndarray:
        case_id, model = key
        synth = self.models.get(model)

        def report(done: int, total: int) -> None:
            self._progress[key] = done / max(total, 1)

        try:
            volume = synth.synthesize_prepared(self.prepared(case_id, model), progress=report)
            return self.volumes.put(key, np.asarray(volume, dtype=np.float32))
        finally:
            self._progress.pop(key, None)

    def compute_volume(self, case_id: str, model: str) -> np.ndarray:
        """The whole volume, waiting for it (computed once per (case, model))."""
        return self.start(case_id, model).result()

    def virtual_slice(
        self, case_id: str, model: str, plane: str, index: int, *, wait: bool = True
    ) -> np.ndarray | None:
        """One slice of the virtual contrast (volume orientation, native units).

        From the volume when it is ready; an axial slice otherwise alone (the model's plane; cached, equal
        to that slice of the volume); a coronal or sagittal one needs the volume: waited for when ``wait``,
        else None.
        """
        volume = self.volume(case_id, model)
        if volume is not None:
            return take_slice(volume, plane, index)
        if plane == "axial":
            synth = self.models.get(model)
            return self._slices.get_or_compute(
                (case_id, model, index),
                lambda: np.asarray(
                    synth.synthesize_slice(self.prepared(case_id, model), plane="axial", index=index),
                    dtype=np.float32,
                ),
            )
        return take_slice(self.compute_volume(case_id, model), plane, index) if wait else None

    # -- the viewer ------------------------------------------------------------------------------

    def _stack(self, case_id: str, kind: str, plane: str, model: str | None = None) -> str:
        spec = (case_id, kind, plane, model)
        sid = "vc-" + hashlib.sha1(repr(spec).encode()).hexdigest()[:16]
        self._specs.put(sid, spec)
        return sid

    def _match(self, case_id: str, name: str) -> tuple[float, float]:
        """``(a, b)`` mapping input ``name`` onto the T1 window: shown value = a + b·value."""

        def compute() -> tuple[float, float]:
            if name.startswith("low_dose"):
                return 0.0, 1.0  # T1-weighted: shown as it is
            img = self.images(case_id)
            volume = np.asarray(self.input_volume(case_id, name).data, dtype=np.float32)
            low, high = (float(v) for v in np.percentile(volume[img.brain], [0.5, 99.5]))
            t1 = self.library.get(case_id).presets["Brain T1"]
            t_low, t_high = t1.level - t1.width / 2, t1.level + t1.width / 2
            b = (t_high - t_low) / max(high - low, 1e-6)
            return t_low - b * low, b

        return self._matches.get_or_compute((case_id, name), compute)

    def _slice_of(self, spec: tuple[str, str, str, str | None], index: int) -> np.ndarray | None:
        case_id, kind, plane, model = spec
        lc = self.library.get(case_id)
        if kind == "native":
            return take_slice(lc.case.native.data, plane, index)
        if kind == "standard":
            return take_slice(lc.case.standard_dose.data, plane, index)
        if kind == "virtual":
            try:
                return self.virtual_slice(case_id, model, plane, index, wait=False) if model else None
            except VCEInputError:  # a missing input: the panel says which (viewer_payload)
                return None
        extra = self.input_volume(case_id, kind)
        if extra is None:
            return None
        a, b = self._match(case_id, kind)
        return a + b * take_slice(np.asarray(extra.data, dtype=np.float32), plane, index)

    def input_volume(self, case_id: str, name: str) -> Any | None:
        """The case's image of input ``name`` (``t2``, ``low_dose@0.33``, ...), None when it has none."""
        from vce_core.data import input_volume, parse_input

        return input_volume(self.images(case_id).case, parse_input(name))

    def stack_slices(self, stack_id: str, indices: list[int]) -> dict[int, str]:
        """Encoded slices (display orientation) of a stack this view made; what is not ready is left out."""
        spec = self._specs.get(stack_id)
        if spec is None:
            return {}
        lc = self.library.get(spec[0])
        count = n_slices(lc.shape, spec[2])
        encoding = self.explorer.encoding(spec[0])
        pixel = slice_spacing(lc.spacing, spec[2])
        out: dict[int, str] = {}
        for k in indices:
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < count:
                continue
            values = self._slice_of(spec, k)
            if values is not None:
                out[k] = encoding.encode(oriented(values, pixel)[0])
        return out

    def clamp(self, case_id: str, plane: str, index: int) -> int:
        """``index`` moved into the plane's slices."""
        return clamp_index(self.library.get(case_id).shape, plane, index)

    def viewer_payload(self, view: ContrastView, *, busy: str | None = None) -> dict[str, Any]:
        """The viewer group of ``view`` with the slice on screen inline.

        The virtual-contrast and difference panels show ``busy`` while the volume is synthesized, the
        :class:`VCEInputError` message when the case lacks a required input of the model, or that no
        virtual-contrast model is installed.
        """
        lc = self.library.get(view.case_id)
        plane, index, model = view.plane, self.clamp(view.case_id, view.plane, view.index), view.model
        problem = None if model else self.models.empty_message().split("\n\n")[0]
        missing: tuple[str, ...] = ()
        if model:
            try:
                missing = self.prepared(view.case_id, model).missing
            except VCEInputError as exc:
                problem = str(exc)
        ids = {"native": self._stack(view.case_id, "native", plane)}
        extras = [n for n in self.inputs_of(model) if n != "native"]
        for name in extras:
            ids[name] = self._stack(view.case_id, name, plane)
        ids["virtual"] = self._stack(view.case_id, "virtual", plane, model)
        ids["standard"] = self._stack(view.case_id, "standard", plane)
        encoding = self.explorer.encoding(view.case_id)
        stacks = {sid: Stack(encoding, self.stack_slices(sid, [index])) for sid in ids.values()}
        ready = bool(stacks[ids["virtual"]].slices)
        pending = None if ready or problem else (busy or "synthesizing the virtual contrast…")
        panels = self._panels(view, ids, extras, missing, problem, pending)
        presets = self.explorer.presets(view.case_id, plane, index)
        presets["Auto (percentile)"] = slice_auto_window(take_slice(lc.case.standard_dose.data, plane, index))
        columns = 3 if len(panels) > 4 else len(panels)
        return self.explorer.case_payload(lc, plane, index, GROUP, panels, stacks, presets, columns=columns)

    def _panels(
        self,
        view: ContrastView,
        ids: dict[str, str],
        extras: list[str],
        missing: tuple[str, ...],
        problem: str | None,
        pending: str | None,
    ) -> list[Panel]:
        """Inputs, virtual contrast, real standard dose, difference; titles name the model."""
        panels = [Panel("native", f"Input · {NAMES['native']}", stack=ids["native"])]
        for name in extras:
            label = NAMES.get(name, name)
            message = None
            if name in missing:
                message = f"no {label} in this case: the model gets a zero image"
            elif self.input_volume(view.case_id, name) is None:
                message = f"no {label} in this case"
            matched = "" if name.startswith("low_dose") else " (intensity-matched to the T1 window)"
            title = f"Input · {label}{matched}"
            panels.append(Panel(f"input-{name}", title, stack=ids[name], message=message))
        label = self.models.get(view.model).display_name if view.model else "no model"
        panels += [
            Panel(
                "virtual",
                f"Virtual contrast · {label}",
                stack=ids["virtual"],
                message=problem,
                busy=pending,
            ),
            Panel("standard", "Real standard dose (100 %)", stack=ids["standard"]),
            Panel(
                "difference",
                "Virtual − real (±25 % of window width)",
                derive=Panel.difference(ids["virtual"], ids["standard"]),
                colormap="diverging",
                units="a.u.",
                message=problem,
                busy=pending,
            ),
        ]
        return panels

    # -- metrics -----------------------------------------------------------------------------------

    def metrics(self, view: ContrastView, scope: str = "slice") -> str:
        """Markdown metrics of the virtual contrast and the native baseline vs the real standard dose.

        ``scope``: ``slice`` (the slice on screen) or ``volume`` (the brain's bounding box). The heading
        names case, model, plane and slice (or whole volume). Needs the volume (waits for it).
        """
        if scope not in ("slice", "volume"):
            raise VCEInputError(f"unknown metric scope {scope!r}", expected="slice or volume")
        index = self.clamp(view.case_id, view.plane, view.index)
        view = ContrastView(view.case_id, self.model_or_default(view.model), view.plane, index)
        title = "Per-slice" if scope == "slice" else "Per-volume"
        heading = f"**{title} metrics vs the real standard dose** · {view.describe(scope)}"
        img = self.images(view.case_id)
        if scope == "slice":
            cut = lambda a: take_slice(a, view.plane, index)  # noqa: E731
        else:
            box = _crop(img.brain)
            cut = lambda a: a[box]  # noqa: E731
        rows: list[tuple[str, np.ndarray]] = []
        note = ""
        if view.model:
            try:
                if scope == "slice":
                    image = self.virtual_slice(view.case_id, view.model, view.plane, index)
                else:
                    image = cut(self.compute_volume(view.case_id, view.model))
                rows.append((self.models.get(view.model).display_name, image))
            except VCEInputError as exc:
                note = f"\n\n{exc}"
        else:
            note = "\n\n" + self.models.empty_message().split("\n\n")[0]
        rows.append(("Native (baseline)", cut(np.asarray(img.case.native.data, dtype=np.float32))))
        brain = cut(img.brain)
        lesion = None if img.lesion is None else cut(img.lesion)
        if not brain.any():
            return f"{heading}{note}\n\nNo brain on this slice."
        reference = img.normalise(cut(np.asarray(img.case.standard_dose.data, dtype=np.float32)))
        data_range = float(reference[brain].max() - reference[brain].min())
        return heading + note + "\n\n" + self._table(rows, img, reference, brain, lesion, data_range)

    @staticmethod
    def _table(
        rows: list[tuple[str, np.ndarray]],
        img: CaseImages,
        reference: np.ndarray,
        brain: np.ndarray,
        lesion: np.ndarray | None,
        data_range: float,
    ) -> str:
        lines = [
            "| image | brain MAE | brain PSNR (dB) | brain SSIM "
            "| lesion MAE | lesion PSNR (dB) | lesion SSIM |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, image in rows:
            found = region_errors(
                img.normalise(image), reference, {"brain": brain, "lesion": lesion}, data_range
            )
            cells = [
                _fmt(found[r][m], f)
                for r in ("brain", "lesion")
                for m, f in (("mae", ".4f"), ("psnr", ".2f"), ("ssim", ".4f"))
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if lesion is None:
            lines.append("\nNo lesion labels in this case: lesion metrics are not available.")
        elif not lesion.any():
            lines.append("\nNo lesion here: lesion metrics are not available.")
        return "\n".join(lines) + f"\n\n<span class='vce-caption'>{METRIC_NOTE}</span>"

    def case_info(self, case_id: str, model: str | None) -> str:
        """One line: the case, the images it has, and which inputs of the model it lacks."""
        lc = self.library.get(case_id)
        present = ["native", *(n for n in self.images(case_id).case.extra if n != "labels")]
        line = f"**{lc.case_id}** · {lc.case.field_strength:g} T · images: "
        line += ", ".join(NAMES.get(n, n) for n in present)
        wanted = self.inputs_of(model) if model else []
        lacking = [NAMES.get(n, n) for n in wanted if self.input_volume(case_id, n) is None]
        return line + (f" · lacks {', '.join(lacking)} for this model" if lacking else "")

    def default_index(self, case_id: str, plane: str) -> int:
        """Slice through the largest enhancing lesion in ``plane`` (0-based)."""
        return self.library.get(case_id).lesion_index[plane]

    def slice_count(self, case_id: str, plane: str) -> int:
        """Number of slices of the case in ``plane``."""
        return n_slices(self.library.get(case_id).shape, plane)
