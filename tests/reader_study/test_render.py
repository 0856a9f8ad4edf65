"""Items → blinded images: slice choice, one window per case, square pixels, PNG without metadata."""

from __future__ import annotations

import numpy as np
import pytest

from reader_study import render
from support import disc_case
from vce_core import display
from vce_core.io import Case, Volume

ANISOTROPIC_SHAPE = (20, 16, 6)  # I, J, K all different, so a transposed image would show
ANISOTROPIC_SPACING = (1.0, 1.0, 3.0)
# displayed (rows, cols) with 1 mm pixels: axial J × I, coronal 3K × I, sagittal 3K × J
SQUARE_PIXEL_SHAPE = {"axial": (16, 20), "coronal": (18, 20), "sagittal": (18, 16)}


def anisotropic_case() -> Case:
    """A 1 × 1 × 3 mm case whose standard dose has one bright voxel at the right-anterior-superior corner."""
    native = np.full(ANISOTROPIC_SHAPE, 10.0, np.float32)
    standard = native.copy()
    standard[-1, -1, -1] = 1000.0
    affine = np.diag([*ANISOTROPIC_SPACING, 1.0])

    def volume(data: np.ndarray) -> Volume:
        return Volume(data, affine=affine, spacing=ANISOTROPIC_SPACING)

    return Case(
        native=volume(native),
        standard_dose=volume(standard),
        low_doses={0.33: volume(native + 0.33 * (standard - native))},
        field_strength=3.0,
        meta={"case_id": "anisotropic"},
    )


def test_png_has_no_text_chunks_and_roundtrips() -> None:
    case = disc_case(1)
    slices = render.render_condition(case, "real_standard_dose", None, None, "axial", [3])
    window = render.case_window(case.standard_dose.data, "axial", [3])
    (data,) = render.render_stack(slices, window)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
        assert chunk not in data
    decoded = render.decode_png(data)
    expected = display.apply_window(slices[0], display.Window.from_range(*window))
    np.testing.assert_array_equal(decoded, expected)  # lossless


def test_same_window_for_every_condition_of_a_case() -> None:
    case = disc_case(1)
    native, standard = case.native.data, case.standard_dose.data
    plane, slices = render.choose_slices(native, standard, {"select": "most_enhancing", "count": 2})
    assert plane == "axial" and slices == [3, 4]  # the enhancing blob of seed 1 sits at k = 3, 4
    window = render.case_window(standard, plane, slices)
    sd = render.render_stack(
        render.render_condition(case, "real_standard_dose", None, None, plane, slices), window
    )
    ld = render.render_stack(
        render.render_condition(case, "real_low_dose", 0.33, None, plane, slices), window
    )
    a, b = render.decode_png(sd[0]), render.decode_png(ld[0])
    # same window: background and healthy tissue map to the same grey levels, the blob is darker at low dose
    assert abs(int(np.median(a)) - int(np.median(b))) <= 2
    assert a.max() > b[a == a.max()].mean()
    with pytest.raises(Exception, match="no acquired low dose 0.1"):
        render.render_condition(case, "real_low_dose", 0.1, None, plane, slices)


def test_acquired_low_dose_is_found_with_the_domain_tolerance() -> None:
    case = disc_case(1)
    exact = render.render_condition(case, "real_low_dose", 0.33, None, "axial", [3])
    near = render.render_condition(case, "real_low_dose", 0.333, None, "axial", [3])
    np.testing.assert_array_equal(exact[0], near[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_items_open_on_the_slice_with_the_enhancing_lesion(seed: int) -> None:
    case = disc_case(seed)  # the enhancing blob fills slices k0 and k0 + 1, k0 = 2 + seed % 4
    native, standard = case.native.data, case.standard_dose.data
    plane, slices = render.choose_slices(native, standard, {"select": "center", "count": 5})
    focus = render.focus_position(native, standard, plane, slices)
    k0 = 2 + seed % 4
    assert slices[focus] == k0 if k0 in slices else slices[focus] == k0 + 1
    enhanced = [int(((standard - native)[:, :, k] > 40).sum()) for k in slices]  # independent count
    assert enhanced[focus] == max(enhanced)


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_reader_images_of_anisotropic_data_have_square_pixels(plane: str) -> None:
    case = anisotropic_case()
    last = ANISOTROPIC_SHAPE[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]] - 1
    for condition, dose in (("real_standard_dose", None), ("real_low_dose", 0.33), ("linear_baseline", 0.5)):
        slices = render.render_condition(case, condition, dose, None, plane, [last])
        (png,) = render.render_stack(slices, (10.0, 1000.0))
        image = render.decode_png(png)
        assert image.shape == SQUARE_PIXEL_SHAPE[plane], condition
    # radiological orientation: the right-anterior-superior corner is at the top left
    rows, cols = np.nonzero(image > 20)
    assert rows.min() == 0 and cols.min() == 0


class WholeVolumes:
    """A generator that only synthesizes whole volumes: the linear dose scaling plus seeded noise."""

    name = "whole"

    def __init__(self, grid: tuple[int, ...] | None = None) -> None:
        self.grid = grid  # a wrong output grid, to check that it is refused

    def synthesize(self, native, standard_dose, dose, field_strength, seed=None):  # noqa: ANN001, ANN201
        noise = np.random.default_rng(seed).normal(0, 1.0, native.shape).astype(np.float32)
        out = native + dose * (standard_dose - native) + noise * field_strength
        return out if self.grid is None else np.zeros(self.grid, np.float32)


class SliceWise(WholeVolumes):
    """The same generator, able to synthesize single slices (as the real Synthesizer is)."""

    name = "slices"

    def prepare(self, native, standard_dose):  # noqa: ANN001, ANN201
        return native, standard_dose

    def synthesize_slice(self, prepared, dose, field_strength, *, plane, index, seed=None):  # noqa: ANN001, ANN201
        return display.take_slice(self.synthesize(*prepared, dose, field_strength, seed), plane, index)


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_every_condition_shows_its_own_volume(plane: str) -> None:
    """Each condition against the volume it names, sliced and displayed independently of render."""
    case = anisotropic_case()
    case.extra["virtual_contrast"] = Volume(case.native.data * 2.0, affine=case.native.affine)
    native, standard = case.native.data, case.standard_dose.data
    noise = np.random.default_rng(4).normal(0, 1.0, native.shape).astype(np.float32)
    expected = {
        ("native", None): native,
        ("real_standard_dose", None): standard,
        ("real_low_dose", 0.33): case.low_doses[0.33].data,
        ("linear_baseline", 0.5): native + np.float32(0.5) * (standard - native),
        ("virtual_contrast", None): native * 2.0,
        ("synthetic_low_dose", 0.2): native + 0.2 * (standard - native) + noise * 3.0,
    }
    pixel = display.slice_spacing(ANISOTROPIC_SPACING, plane)
    slices = [0, 2]
    for (condition, dose), volume in expected.items():
        want = [display.to_display(display.take_slice(volume, plane, k), pixel) for k in slices]
        for synth in (WholeVolumes(), SliceWise()):
            given = synth if condition == "synthetic_low_dose" else None  # a model only where one is named
            got = render.render_condition(case, condition, dose, given, plane, slices, seed=4)
            assert len(got) == len(want), condition
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4, err_msg=f"{condition} {synth.name}")


@pytest.mark.parametrize(
    ("condition", "dose", "synth", "words"),
    [
        ("synthetic_low_dose", None, None, "needs a generator"),  # the generator is named first
        ("synthetic_low_dose", None, WholeVolumes(), "needs a dose"),
        ("synthetic_low_dose", 0.2, WholeVolumes(grid=(4, 4, 4)), "rendered shape \\(4, 4, 4\\)"),
        ("real_low_dose", None, None, "needs a dose"),
        ("linear_baseline", 1.5, None, "dose"),
        ("virtual_contrast", None, None, "no virtual_contrast volume"),
        ("blurry", None, None, "unknown condition 'blurry'"),
    ],
)
def test_a_condition_that_cannot_be_rendered_says_why(
    condition: str, dose: float | None, synth: WholeVolumes | None, words: str
) -> None:
    from vce_core.errors import VCEInputError

    with pytest.raises(VCEInputError, match=words):
        render.render_condition(anisotropic_case(), condition, dose, synth, "axial", [0])
