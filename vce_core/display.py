"""The one renderer: volume slices → the images people look at (explorer, upload preview, reader study).

Conventions shared by every image the project shows:

* volume arrays are indexed ``[i, j, k]`` in RAS+ (see :mod:`vce_core.io`): axial ``[:, :, k]``, coronal
  ``[:, j, :]``, sagittal ``[i, :, :]``;
* a slice index outside the volume is an error (:func:`take_slice` raises :class:`VCEInputError`); a
  caller that follows a slider clamps first, explicitly, with :func:`clamp_index`;
* displayed images follow the radiological convention: patient right on the viewer's left (axial and
  coronal), anterior on the left (sagittal), anterior (axial) or superior (coronal, sagittal) at the top;
* pixels are resampled to squares from the voxel spacing (mm), so anatomy keeps its true aspect ratio;
* intensities are mapped to ``uint8`` by a :class:`Window` (level/width in image units) applied by us;
  colour images are ``uint8`` RGB;
* images are stored and sent as lossless PNG without any text chunk (no file name, no metadata).

numpy, Pillow and scipy only: no Gradio, no database.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .errors import VCEInputError

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
"""The three orthogonal planes, in the order the user interface lists them."""

_PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}

# ------------------------------------------------------------------------------------------------ slicing


def plane_axis(plane: str) -> int:
    """Array axis that a plane cuts through: axial → 2 (k), coronal → 1 (j), sagittal → 0 (i)."""
    try:
        return _PLANE_AXIS[plane]
    except (KeyError, TypeError):
        raise VCEInputError(f"unknown plane {plane!r}", expected=f"one of {', '.join(PLANES)}") from None


def n_slices(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices of a volume of ``shape`` ``(I, J, K)`` in ``plane``."""
    return int(shape[plane_axis(plane)])


def clamp_index(shape: tuple[int, ...], plane: str, index: int) -> int:
    """``index`` moved into ``0 … n_slices - 1`` (for callers that follow a slider)."""
    return int(np.clip(int(index), 0, n_slices(shape, plane) - 1))


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2-D slice of an ``(I, J, K)`` array in volume orientation: ``[:, :, k]``, ``[:, j, :]``, ``[i, :, :]``.

    Raises :class:`VCEInputError` for an unknown plane or an index outside ``0 … n_slices - 1``.
    """
    axis = plane_axis(plane)
    count = volume.shape[axis]
    if not 0 <= int(index) < count:
        raise VCEInputError(f"slice {index} is outside 0..{count - 1} of the {plane} plane")
    return np.take(volume, int(index), axis=axis)


def slice_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """Pixel spacing (mm) of a volume-orientation slice along its first and second array axes."""
    axes = [a for a in range(3) if a != plane_axis(plane)]
    return float(spacing[axes[0]]), float(spacing[axes[1]])


# ------------------------------------------------------------------------------- orientation and geometry


def to_display(slice2d: np.ndarray, pixel_spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Orient a volume-orientation slice for display and resample it to square pixels.

    Parameters
    ----------
    slice2d: float array ``(A, B)`` as returned by :func:`take_slice`.
    pixel_spacing: spacing in mm along ``A`` and ``B`` (:func:`slice_spacing`).

    Returns
    -------
    float32 array ``(rows, cols)``: rows run anterior/superior → posterior/inferior, columns patient
    right → left (anterior → posterior for sagittal), every pixel ``min(spacing)`` mm wide and tall
    (linear interpolation; no resampling when the spacing is already square).
    """
    img = np.asarray(slice2d, dtype=np.float32).T[::-1, ::-1]
    row_mm, col_mm = float(pixel_spacing[1]), float(pixel_spacing[0])
    target = min(row_mm, col_mm)
    zoom = (row_mm / target, col_mm / target)
    if abs(zoom[0] - 1.0) > 1e-3 or abs(zoom[1] - 1.0) > 1e-3:
        img = ndimage.zoom(img, zoom, order=1, mode="nearest", grid_mode=True)
    return np.ascontiguousarray(img, dtype=np.float32)


def display_slice(
    volume: np.ndarray, plane: str, index: int, spacing: tuple[float, float, float]
) -> np.ndarray:
    """:func:`take_slice` then :func:`to_display`, pixel spacing from the voxel ``spacing`` (mm)."""
    return to_display(take_slice(volume, plane, index), slice_spacing(spacing, plane))


# ------------------------------------------------------------------------------------------ window, uint8


@dataclass(frozen=True)
class Window:
    """Display window in image intensity units: ``level`` (centre) and ``width`` (> 0)."""

    level: float
    width: float

    @property
    def low(self) -> float:
        """Intensity shown black."""
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        """Intensity shown white."""
        return self.level + self.width / 2

    @classmethod
    def from_range(cls, low: float, high: float) -> Window:
        """Window that maps ``low`` to black and ``high`` to white."""
        high = max(high, low + 1e-6)
        return cls(level=(low + high) / 2, width=high - low)


def apply_window(image: np.ndarray, window: Window) -> np.ndarray:
    """Map intensities to ``uint8``: ``window.low`` → 0, ``window.high`` → 255, clipped; NaN → 0.

    Works on float slices in image units and on stored ``uint8`` images alike (a reader's window/level on
    display units: ``Window(127.5, 255)`` returns a ``uint8`` image unchanged).
    """
    width = max(float(window.width), 1e-6)
    low = float(window.level) - width / 2
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=low)
    return np.clip(np.rint((values - low) * (255.0 / width)), 0, 255).astype(np.uint8)


WINDOW_PRESETS: tuple[str, ...] = ("Brain T1", "Enhancement", "Wide", "Auto (percentile)")


def window_presets(standard_dose: np.ndarray, brain: np.ndarray | None = None) -> dict[str, Window]:
    """Case-level window presets computed from the standard-dose volume (intensity units of the case).

    * ``Brain T1``: 1st–99th percentile of the brain,
    * ``Enhancement``: brain median to the 99.9th percentile (lesion rims and vessels stand out),
    * ``Wide``: 0 to the maximum of the volume,
    * ``Auto (percentile)``: 0.5th–99.5th percentile of the whole volume (:func:`slice_auto_window`
      refines it per slice in the explorer).
    """
    sd = np.asarray(standard_dose, dtype=np.float32)
    finite = sd[np.isfinite(sd)]
    if finite.size == 0:
        finite = np.zeros(1, dtype=np.float32)
    inside = finite if brain is None else sd[np.asarray(brain, dtype=bool) & np.isfinite(sd)]
    if inside.size < 16:
        inside = finite
    p1, p50, p99, p999 = np.percentile(inside, [1, 50, 99, 99.9])
    a, b = np.percentile(finite, [0.5, 99.5])
    return {
        "Brain T1": Window.from_range(float(p1), float(p99)),
        "Enhancement": Window.from_range(float(p50), float(p999)),
        "Wide": Window.from_range(min(0.0, float(finite.min())), float(finite.max())),
        "Auto (percentile)": Window.from_range(float(a), float(b)),
    }


def slice_auto_window(image: np.ndarray) -> Window:
    """0.5th–99.5th percentile window of one slice (``Window(0.5, 1)`` when nothing is finite)."""
    finite = np.asarray(image, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return Window(0.5, 1.0)
    a, b = np.percentile(finite, [0.5, 99.5])
    return Window.from_range(float(a), float(b))


# ----------------------------------------------------------------------------------------------------- PNG


def encode_png(image: np.ndarray) -> bytes:
    """Lossless greyscale PNG of a 2-D ``uint8`` array, without any text or metadata chunk."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise VCEInputError(
            f"cannot encode an array of dtype {arr.dtype} and shape {arr.shape}", expected="2-D uint8"
        )
    buffer = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """2-D ``uint8`` array from PNG bytes (through numpy, so no PIL metadata travels on)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("L"), dtype=np.uint8)


# ------------------------------------------------------------------------------------- colour and panels

# Diverging colour map (ColorBrewer RdBu, reversed: negative blue, zero white, positive red).
_RDBU = np.array(
    [
        [5, 48, 97],
        [33, 102, 172],
        [67, 147, 195],
        [146, 197, 222],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [244, 165, 130],
        [214, 96, 77],
        [178, 24, 43],
        [103, 0, 31],
    ],
    dtype=np.float32,
)


def diverging_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    """Colour ``values`` in ``[-limit, +limit]`` with a blue–white–red map; ``uint8`` RGB ``(..., 3)``."""
    limit = max(float(limit), 1e-6)
    t = np.clip((np.nan_to_num(np.asarray(values, dtype=np.float32)) / limit + 1.0) / 2.0, 0.0, 1.0)
    pos = t * (len(_RDBU) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(_RDBU) - 1)
    frac = (pos - lo)[..., None]
    rgb = _RDBU[lo] * (1.0 - frac) + _RDBU[hi] * frac
    return np.rint(rgb).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        return ImageFont.load_default()


def _signed(value: float) -> str:
    """Colour-bar label: ``0``, ``+250``, ``+2.5``, ``-0.0125``."""
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 100:
        return f"{value:+.0f}"
    if mag >= 1:
        return f"{value:+.1f}"
    return f"{value:+.3g}"


def difference_panel(diff: np.ndarray, limit: float, units: str, *, min_height: int = 320) -> np.ndarray:
    """Difference map (already in display orientation) with a labelled colour bar on its right.

    Parameters
    ----------
    diff: float array ``(rows, cols)``, e.g. synthetic − real, in image intensity units.
    limit: colour-scale half range: ``-limit`` is dark blue, 0 white, ``+limit`` dark red.
    units: unit label printed under the colour bar (``"a.u."`` for MRI signal).
    min_height: the map is enlarged by an integer factor (nearest neighbour) to at least this height so
        that the colour-bar labels stay legible.

    Returns
    -------
    ``uint8`` RGB image ``(H, W + bar, 3)``.
    """
    rgb = diverging_rgb(diff, limit)
    factor = max(1, int(np.ceil(min_height / max(rgb.shape[0], 1))))
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    h, w = rgb.shape[:2]
    font_size = max(11, h // 24)
    bar_w = max(14, h // 22)
    label_w = int(font_size * 4.2)
    margin = font_size
    canvas = Image.new("RGB", (w + bar_w + label_w + 12, h), (255, 255, 255))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    top, bottom = margin, h - 2 * margin - font_size
    ramp = np.linspace(limit, -limit, max(bottom - top, 2), dtype=np.float32)
    bar = np.repeat(diverging_rgb(ramp, limit)[:, None, :], bar_w, axis=1)
    x0 = w + 6
    canvas.paste(Image.fromarray(bar), (x0, top))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    draw.rectangle([x0, top, x0 + bar_w - 1, top + bar.shape[0] - 1], outline=(60, 60, 60))
    for value, y in ((limit, top), (0.0, top + bar.shape[0] // 2), (-limit, top + bar.shape[0] - 1)):
        draw.line([x0 + bar_w, y, x0 + bar_w + 4, y], fill=(60, 60, 60))
        draw.text((x0 + bar_w + 6, y), _signed(value), fill=(20, 20, 20), font=font, anchor="lm")
    draw.text((x0, h - margin // 2), units, fill=(20, 20, 20), font=font, anchor="ls")
    return np.asarray(canvas, dtype=np.uint8)


def placeholder_panel(shape: tuple[int, int], text: str) -> np.ndarray:
    """Grey ``uint8`` image of ``shape`` (at least 64 × 64) with a centred message (``\\n`` splits lines)."""
    h, w = max(int(shape[0]), 64), max(int(shape[1]), 64)
    canvas = Image.new("L", (w, h), 40)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(10, min(w, h) // 16))
    lines = text.split("\n")
    line_h = max(12, min(w, h) // 12)
    y0 = h // 2 - (len(lines) - 1) * line_h // 2
    for n, line in enumerate(lines):
        draw.text((w // 2, y0 + n * line_h), line, fill=220, font=font, anchor="mm")
    return np.asarray(canvas, dtype=np.uint8)
