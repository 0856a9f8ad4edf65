"""Upload logic without Gradio: session folders, validation rules, and the whole "Synthesize" action."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.upload import UploadArea, UploadedCase, synthesize_upload, validate_uploads
from support import disc_case
from vce_core.errors import VCEInputError


class LinearGenerator:
    """Stands in for a Synthesizer: the linear baseline, with the progress callback of the real one."""

    name = "linear-test"

    def synthesize(self, native, standard_dose, dose, field_strength, seed=None, progress=None):  # noqa: ANN001, ANN201
        if progress:
            progress(1, 1)
        return native.data + dose * (standard_dose.data - native.data)


def test_session_folder_is_deleted_at_session_end(tmp_path: Path) -> None:
    area = UploadArea(tmp_path)
    source = tmp_path / "gradio-tmp" / "native.nii.gz"
    source.parent.mkdir()
    source.write_bytes(b"x")
    copied = area.ingest("abc123", source, "native")
    assert copied is not None and copied.is_file()
    area.end_session("abc123")
    assert not (tmp_path / "uploads" / "abc123").exists() and not source.exists()


@pytest.mark.parametrize(
    ("field", "words"), [(None, "not a number"), (0, "out of range"), (13, "out of range")]
)
def test_field_strength_has_one_rule(tmp_path: Path, field: float | None, words: str) -> None:
    native = tmp_path / "native.nii.gz"
    with pytest.raises(VCEInputError, match=f"field strength .*{words}"):
        validate_uploads(native, native, None, None, field)


def test_synthesize_upload_previews_exports_and_compares(tmp_path: Path) -> None:
    case = disc_case(1)
    uploaded = UploadedCase(case.native, case.standard_dose, case.low_doses[0.33], 0.33, 3.0)
    seen: list[float] = []
    result = synthesize_upload(
        LinearGenerator(),
        uploaded,
        [0.1],
        tmp_path / "export",
        "NIfTI",
        model_name="linear-test",
        progress=lambda fraction, what: seen.append(fraction),
    )
    assert "**Done:** 2 dose(s) (10 %, 33 %) with linear-test, exported as NIfTI" in result.report
    assert "Synthetic vs your acquired 33 % dose" in result.report and "PSNR" in result.report
    assert result.archive.name == "synthetic_linear-test_nifti.zip" and result.archive.is_file()
    assert result.preview_index == case.native.shape[2] // 2 and result.preview_dose == 0.1
    assert result.preview_native.dtype == np.uint8
    assert result.preview_native.shape == result.preview_synthetic.shape == case.native.shape[1::-1]
    assert seen == sorted(seen) and seen[-1] == 1.0
