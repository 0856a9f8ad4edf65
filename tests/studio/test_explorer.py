"""Explorer logic without Gradio: square pixels and orientation of every plane, acquired-dose lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.cases import CaseLibrary
from studio.explorer import Explorer, View
from studio.generators import GeneratorRegistry
from vce_core.display import Window
from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume, save_case

SHAPE = (20, 16, 6)  # I, J, K all different, so a transposed image would show
SPACING = (1.0, 1.0, 3.0)
# displayed (rows, cols) with 1 mm pixels: axial J × I, coronal 3K × I, sagittal 3K × J
SQUARE_PIXEL_SHAPE = {"axial": (16, 20), "coronal": (18, 20), "sagittal": (18, 16)}
LAST = {"axial": SHAPE[2] - 1, "coronal": SHAPE[1] - 1, "sagittal": SHAPE[0] - 1}


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    """An explorer over one 1 × 1 × 3 mm case (acquired low dose 0.33) and no generator.

    The standard dose has a bright marker at the right-anterior-superior corner.
    """
    data = tmp_path_factory.mktemp("anisotropic")
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    brain = (i / 0.8) ** 2 + (j / 0.8) ** 2 + (k / 0.9) ** 2 < 1
    native = np.where(brain, 100.0, 0.0).astype(np.float32)
    enhancement = 60.0 * np.exp(-(i**2 + j**2 + k**2) / 0.1) * brain
    standard = (native + enhancement).astype(np.float32)
    standard[-1, -1, -1] = 1000.0
    affine = np.diag([*SPACING, 1.0])

    def volume(values: np.ndarray) -> Volume:
        return Volume(values.astype(np.float32), affine=affine, spacing=SPACING)

    case = Case(
        native=volume(native),
        standard_dose=volume(standard),
        low_doses={0.33: volume(native + 0.33 * enhancement)},
        field_strength=3.0,
        meta={"case_id": "anisotropic"},
    )
    save_case(case, data / "anisotropic")
    return Explorer(CaseLibrary(data), GeneratorRegistry(None))


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_explorer_panels_of_anisotropic_data_have_square_pixels(explorer: Explorer, plane: str) -> None:
    view = View("anisotropic", None, 0.33, plane, LAST[plane])
    window = Window.from_range(0.0, 1000.0)
    native, standard = explorer.static_panels(view, window)
    panels = explorer.dose_panels(view, window)
    for image in (native, standard, panels.real, panels.baseline):  # (no generator: placeholder)
        assert image.shape == SQUARE_PIXEL_SHAPE[plane]
    # radiological orientation: the right-anterior-superior marker is at the top left
    rows, cols = np.nonzero(standard > 127)
    assert rows.min() == 0 and cols.min() == 0


def test_slider_index_is_clamped_by_the_explorer(explorer: Explorer) -> None:
    window = Window.from_range(0.0, 1000.0)
    inside = explorer.static_panels(View("anisotropic", None, 0.0, "axial", LAST["axial"]), window)
    beyond = explorer.static_panels(View("anisotropic", None, 0.0, "axial", 99), window)
    np.testing.assert_array_equal(inside[1], beyond[1])


def test_acquired_doses_are_matched_with_the_domain_tolerance(explorer: Explorer) -> None:
    lc = explorer.library.get("anisotropic")
    assert lc.acquired_doses == [0.0, 0.33, 1.0]
    assert lc.acquired_volume(0.0) is lc.case.native and lc.acquired_volume(1.0) is lc.case.standard_dose
    assert lc.acquired_volume(0.333) is lc.case.low_doses[0.33]  # within half a percentage point
    assert lc.acquired_volume(0.34) is None
    assert explorer.real_slice(lc, 0.5, "axial", 2) is None  # real data: nothing at 50 %


def test_volume_metrics_without_acquisition_is_a_plain_error(explorer: Explorer) -> None:
    with pytest.raises(VCEInputError, match="no acquisition at 50 % of the standard dose"):
        explorer.volume_metrics("anisotropic", None, 0.5)
    assert "Per-volume metrics vs real** (33 % dose" in explorer.volume_metrics("anisotropic", None, 0.33)


def test_unknown_case_and_plane_are_plain_errors(explorer: Explorer, tmp_path: Path) -> None:
    window = Window(0.5, 1.0)
    with pytest.raises(VCEInputError, match="no case 'nope'"):
        explorer.static_panels(View("nope", None, 0.0, "axial", 0), window)
    with pytest.raises(VCEInputError, match="unknown plane 'oblique'"):
        explorer.static_panels(View("anisotropic", None, 0.0, "oblique", 0), window)
    with pytest.raises(VCEInputError, match="no cases in"):
        CaseLibrary(tmp_path).get("anything")
