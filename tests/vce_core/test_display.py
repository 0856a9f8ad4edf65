"""The one renderer: planes, slicing, radiological orientation, square pixels, window, uint8 and PNG.

The reader-study path (``reader_study.render``) and the explorer path (``studio.explorer``) are checked on
an anisotropic volume in ``tests/reader_study/test_render.py`` and ``tests/studio/test_explorer.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from vce_core import display
from vce_core.display import Window
from vce_core.errors import VCEInputError

SHAPE = (20, 16, 6)  # I (right-left), J (posterior-anterior), K (inferior-superior): all different
SPACING = (1.0, 1.0, 3.0)  # 1 × 1 × 3 mm voxels

# displayed (rows, cols) of each plane in mm per pixel of the smallest spacing: rows are J (axial) or K,
# columns are I (axial, coronal) or J (sagittal)
EXPECTED_SHAPE = {"axial": (16, 20), "coronal": (18, 20), "sagittal": (18, 16)}


def marked_volume() -> np.ndarray:
    """Zeros with one voxel at the patient's right (max i), anterior (max j), superior (max k) corner."""
    volume = np.zeros(SHAPE, np.float32)
    volume[-1, -1, -1] = 1.0
    return volume


def test_planes_and_axes() -> None:
    assert display.PLANES == ("axial", "coronal", "sagittal")
    assert [display.plane_axis(p) for p in display.PLANES] == [2, 1, 0]
    assert [display.n_slices(SHAPE, p) for p in display.PLANES] == [6, 16, 20]
    with pytest.raises(VCEInputError, match="unknown plane 'oblique'"):
        display.plane_axis("oblique")


def test_take_slice_raises_out_of_range_and_clamp_index_is_explicit() -> None:
    volume = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    np.testing.assert_array_equal(display.take_slice(volume, "axial", 5), volume[:, :, 5])
    np.testing.assert_array_equal(display.take_slice(volume, "coronal", 3), volume[:, 3, :])
    np.testing.assert_array_equal(display.take_slice(volume, "sagittal", 0), volume[0, :, :])
    for index in (-1, 6):
        with pytest.raises(VCEInputError, match=rf"slice {index} is outside 0\.\.5 of the axial plane"):
            display.take_slice(volume, "axial", index)
    assert display.clamp_index(SHAPE, "axial", 99) == 5
    assert display.clamp_index(SHAPE, "sagittal", -3) == 0
    assert display.clamp_index(SHAPE, "coronal", 7) == 7


def test_display_orientation_and_square_pixels() -> None:
    volume = np.zeros((4, 6, 5), np.float32)
    volume[3, 0, 4] = 1.0  # patient right (max i), posterior (j = 0), superior (max k)
    spacing = (1.0, 1.0, 2.0)
    coronal = display.to_display(
        display.take_slice(volume, "coronal", 0), display.slice_spacing(spacing, "coronal")
    )
    assert coronal.shape == (10, 4)  # 5 slices of 2 mm → 10 rows of 1 mm; 4 columns
    rows, cols = np.nonzero(coronal > 0.5)
    assert rows.min() == 0 and cols.min() == 0  # superior at the top, patient right on the viewer's left
    axial = display.to_display(
        display.take_slice(volume, "axial", 4), display.slice_spacing(spacing, "axial")
    )
    assert axial.shape == (6, 4) and axial[-1, 0] == 1.0  # posterior at the bottom, right on the left


@pytest.mark.parametrize("plane", display.PLANES)
def test_anisotropic_volume_is_shown_with_square_pixels(plane: str) -> None:
    volume = marked_volume()
    image = display.display_slice(volume, plane, display.n_slices(SHAPE, plane) - 1, SPACING)
    assert image.dtype == np.float32
    assert image.shape == EXPECTED_SHAPE[plane]
    # every displayed pixel is 1 mm: the image has the physical aspect ratio of the slice
    axes = [a for a in range(3) if a != display.plane_axis(plane)]
    extent_mm = [SHAPE[a] * SPACING[a] for a in axes]  # along the slice's first and second array axes
    assert image.shape[0] / image.shape[1] == pytest.approx(extent_mm[1] / extent_mm[0])


@pytest.mark.parametrize("plane", display.PLANES)
def test_radiological_orientation(plane: str) -> None:
    """Patient right on the viewer's left (sagittal: anterior on the left), anterior/superior up."""
    image = display.display_slice(marked_volume(), plane, display.n_slices(SHAPE, plane) - 1, SPACING)
    rows, cols = np.nonzero(image > 0.25)
    assert rows.min() == 0, "anterior (axial) or superior (coronal, sagittal) is at the top"
    assert cols.min() == 0, "patient right (axial, coronal) or anterior (sagittal) is on the left"


def test_window_mapping() -> None:
    window = Window(level=100.0, width=200.0)
    assert (window.low, window.high) == (0.0, 200.0)
    values = np.array([[-50.0, 0.0, 50.0, 200.0, 500.0, np.nan]], np.float32)
    np.testing.assert_array_equal(display.apply_window(values, window), [[0, 0, 64, 255, 255, 0]])
    assert display.apply_window(values, window).dtype == np.uint8
    assert Window.from_range(10.0, 30.0) == Window(20.0, 20.0)
    assert Window.from_range(5.0, 5.0).width > 0


def test_apply_window_on_stored_uint8_images() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(display.apply_window(img, Window(127.5, 255)), img)
    narrow = display.apply_window(img, Window(128, 64))
    assert narrow.min() == 0 and narrow.max() == 255


def test_window_presets_and_slice_auto_window() -> None:
    rng = np.random.default_rng(0)
    sd = rng.uniform(0, 100, SHAPE).astype(np.float32)
    presets = display.window_presets(sd)
    assert list(presets) == list(display.WINDOW_PRESETS)
    assert presets["Wide"].low == 0.0 and presets["Wide"].high == pytest.approx(float(sd.max()))
    assert presets["Brain T1"].width < presets["Wide"].width
    auto = display.slice_auto_window(sd[:, :, 0])
    assert 0 < auto.low < auto.high < 100
    assert display.slice_auto_window(np.full((4, 4), np.nan)) == Window(0.5, 1.0)


def test_png_has_no_text_chunks_and_roundtrips() -> None:
    img = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    data = display.encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
        assert chunk not in data
    np.testing.assert_array_equal(display.decode_png(data), img)
    with pytest.raises(VCEInputError, match="2-D uint8"):
        display.encode_png(img.astype(np.float32))


def test_difference_and_placeholder_panels() -> None:
    diff = np.zeros((40, 30), np.float32)
    diff[0, 0], diff[0, 1] = -10.0, 10.0
    panel = display.difference_panel(diff, 10.0, "a.u.")
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[0] >= 320
    factor = panel.shape[0] // 40
    np.testing.assert_array_equal(panel[0, 0], [5, 48, 97])  # -limit: dark blue
    np.testing.assert_array_equal(panel[0, factor], [103, 0, 31])  # +limit: dark red
    np.testing.assert_array_equal(panel[factor * 20, factor * 15], [247, 247, 247])  # zero: white
    placeholder = display.placeholder_panel((10, 300), "no acquisition at\n33 % dose")
    assert placeholder.shape == (64, 300) and placeholder.dtype == np.uint8
    assert placeholder.max() > 40  # the text is drawn
