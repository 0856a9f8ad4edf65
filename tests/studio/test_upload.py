"""Upload logic without Gradio: session folders, validation rules, and the whole "Synthesize" action."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.upload import UploadArea, UploadedCase, synthesize_upload, validate_uploads
from support import disc_case
from vce_core.errors import VCEInputError


class LinearGenerator:
    """Stands in for a Synthesizer: the linear baseline, with the progress callback of the real one."""

    name = "linear-test"

    def prepare(self, native, standard_dose, sequence=None):  # noqa: ANN001, ANN201
        self.prepared = getattr(self, "prepared", 0) + 1
        self.sequence = sequence
        return (native.data, standard_dose.data)

    def synthesize_prepared(self, prepared, dose, field_strength, seed=None, progress=None):  # noqa: ANN001, ANN201
        if progress:
            progress(1, 1)
        native, standard = prepared
        return native + dose * (standard - native)


def test_session_folders_are_private_and_only_their_own_is_deleted(tmp_path: Path) -> None:
    """Two visitors upload the same file: Gradio shares its cached copy (content hash); closing one page
    deletes that page's private copy only, never the shared file or the other visitor's copy."""
    area = UploadArea(tmp_path)
    shared = tmp_path / "gradio-cache" / "3f2a" / "native.nii.gz"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"same bytes")
    mine = area.ingest("session-a", shared, "native")
    theirs = area.ingest("session-b", shared, "native")
    assert mine is not None and theirs is not None and mine.parent != theirs.parent
    for folder in (mine.parent, theirs.parent):
        assert folder.stat().st_mode & 0o777 == 0o700
        assert "session" not in folder.name  # random name, not the session hash
    area.end_session("session-a")
    assert not mine.exists() and theirs.is_file() and shared.is_file()
    area.end_session("session-a")  # twice is harmless
    area.end_session("../session-b")
    assert theirs.is_file()


@pytest.mark.parametrize(
    ("field", "words"), [(None, "not a number"), (0, "out of range"), (13, "out of range")]
)
def test_field_strength_has_one_rule(tmp_path: Path, field: float | None, words: str) -> None:
    native = tmp_path / "native.nii.gz"
    with pytest.raises(VCEInputError, match=f"field strength .*{words}"):
        validate_uploads(native, native, None, None, field)


def test_synthesize_upload_once_writes_both_exports_and_compares(tmp_path: Path) -> None:
    case = disc_case(1)
    uploaded = UploadedCase(case.native, case.standard_dose, case.low_doses[0.33], 0.33, 3.0)
    seen: list[float] = []
    generator = LinearGenerator()
    result = synthesize_upload(
        generator,
        uploaded,
        [0.1],
        tmp_path / "export",
        model_name="linear-test",
        progress=lambda fraction, what: seen.append(fraction),
    )
    assert generator.prepared == 1  # normalised once for every dose
    assert "**Done:** 2 dose(s) (10 %, 33 %) with linear-test" in result.report
    assert "Synthetic and linear baseline vs your acquired 33 % dose" in result.report
    assert "| Linear baseline |" in result.report
    assert set(result.exports) == {"NIfTI", "DICOM"} and all(p.is_file() for p in result.exports.values())
    assert sorted(result.volumes) == [0.1, 0.33]
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_sequence_typed_or_from_the_dicom_header(tmp_path: Path) -> None:
    """TR and flip angle: both typed, or both empty (then a DICOM native's header, else unknown); one alone
    or out of range is refused in plain words; the sequence reaches the generator's prepare."""
    from support import write_tiny_cases
    from vce_core.io import load_case, save_dicom_series

    folder = write_tiny_cases(tmp_path / "cases", 1)[0]
    native, standard = folder / "native.nii.gz", folder / "standard_dose.nii.gz"
    assert validate_uploads(native, standard, None, None, 3.0).sequence is None
    typed = validate_uploads(native, standard, None, None, 3.0, tr_ms=6.8, flip_deg=8)
    assert typed.sequence == (6.8, 8.0) and "TR 6.8 ms, flip angle 8°" in typed.describe()
    with pytest.raises(VCEInputError, match="only one of TR and flip angle"):
        validate_uploads(native, standard, None, None, 3.0, tr_ms=6.8)
    with pytest.raises(VCEInputError, match="flip angle 200° is out of range"):
        validate_uploads(native, standard, None, None, 3.0, tr_ms=6.8, flip_deg=200)
    with pytest.raises(VCEInputError, match="TR -1 ms is out of range"):
        validate_uploads(native, standard, None, None, 3.0, tr_ms=-1, flip_deg=8)
    # a DICOM native whose header has RepetitionTime and FlipAngle
    case = load_case(folder)
    files = save_dicom_series(case.native, tmp_path / "dicom", series_description="T1", synthetic=False)
    import zipfile

    import pydicom

    archive = tmp_path / "native.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            ds = pydicom.dcmread(f)
            ds.RepetitionTime, ds.FlipAngle = 7.3, 8
            ds.save_as(f)
            zf.write(f, f.name)
    assert validate_uploads(archive, standard, None, None, 3.0).sequence == (7.3, 8.0)
    typed_wins = validate_uploads(archive, standard, None, None, 3.0, tr_ms=15.4, flip_deg=30)
    assert typed_wins.sequence == (15.4, 30.0)
    generator = LinearGenerator()
    synthesize_upload(generator, typed, [0.1], tmp_path / "export", model_name="linear-test")
    assert generator.sequence == (6.8, 8.0)


def test_a_field_strength_the_generator_never_saw_is_flagged_in_the_report(tmp_path: Path) -> None:
    """The bundled default was trained at 1.5 and 3 T (its card says so): an upload at 7 T is synthesized
    but the report cautions that those images are not validated; at a trained field strength, or with a card
    that does not record them, nothing is added."""
    from types import SimpleNamespace

    from studio.generators import field_strength_caveat
    from vce_core.checkpoint import read_card
    from vce_core.settings import REPO_ROOT

    card = read_card(REPO_ROOT / "assets/models/ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32")
    assert card.data["train"]["field_strengths"] == [1.5, 3.0]
    assert field_strength_caveat(card, 1.5) is None and field_strength_caveat(card, 3.0) is None
    caution = field_strength_caveat(card, 7.0)
    assert caution is not None and "trained at 1.5 T / 3 T only" in caution and "at 7 T" in caution
    assert field_strength_caveat(SimpleNamespace(data={"train": {"count": 3}}), 7.0) is None

    case = disc_case(1)
    generator = LinearGenerator()
    generator.card = card
    for field, flagged in ((3.0, False), (7.0, True)):
        uploaded = UploadedCase(case.native, case.standard_dose, None, None, field)
        result = synthesize_upload(generator, uploaded, [0.1], tmp_path / "export", model_name="m")
        assert ("**Caution:**" in result.report) is flagged
        assert sorted(result.volumes) == [0.1]  # synthesized either way
