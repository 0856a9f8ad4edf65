"""The Upload & synthesize tab through its public endpoints (``/check_upload``, ``/synthesize_upload``,
``/export_format``): errors in the persistent panel, exports from one synthesis, one DICOM study, the
preview viewer, and uploads that no other visitor can reach."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support import GENERATOR, update_value

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402


@pytest.fixture(scope="module")
def nifti_pair(workspace: dict[str, Path]) -> dict[str, Path]:
    import nibabel as nib

    from vce_core.io import load_case

    case = load_case(workspace["case"])
    out = workspace["root"] / "uploads-src"
    out.mkdir()
    files = {}
    for name, volume in (
        ("native", case.native),
        ("standard", case.standard_dose),
        ("low", case.low_doses[0.33]),
    ):
        path = out / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(volume.data, volume.affine), str(path))
        files[name] = path
        as_int = out / f"{name}_int16.nii.gz"
        nib.save(nib.Nifti1Image(np.rint(volume.data).astype(np.int16), volume.affine), str(as_int))
        files[f"{name}_int16"] = as_int
    bomb = nib.Nifti1Header()
    bomb.set_data_shape((1200, 1200, 1200))
    bomb.set_data_dtype(np.int16)
    (out / "bomb.nii.gz").write_bytes(gzip.compress(bomb.binaryblock + bytes(4)))
    files["bomb"] = out / "bomb.nii.gz"
    data = case.native.data
    bad = {
        "truncated": out / "truncated.nii.gz",
        "random": out / "random.dcm",
        "four_d": out / "four_d.nii.gz",
        "other_grid": out / "other_grid.nii.gz",
        "nan": out / "nan.nii.gz",
    }
    raw = files["native"].read_bytes()
    bad["truncated"].write_bytes(raw[: len(raw) // 3])
    bad["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), case.native.affine), str(bad["four_d"]))
    nib.save(nib.Nifti1Image(data[:-4], case.native.affine), str(bad["other_grid"]))
    with_nan = data.copy()
    with_nan[10, 10, 10] = np.nan
    nib.save(nib.Nifti1Image(with_nan, case.native.affine), str(bad["nan"]))
    files.update(bad)
    assert gzip.decompress(raw)  # the good file is a valid gzip stream
    return files


def _visible(update: Any) -> bool:
    return bool(update.get("visible")) if isinstance(update, dict) else bool(update)


def _payload(markup: str) -> dict[str, Any]:
    import html
    import json
    import re

    match = re.search(r'data-vce-viewer="([^"]*)"', markup)
    assert match
    return json.loads(html.unescape(match.group(1)))


def _file(path: Path | None) -> Any:
    return None if path is None else handle_file(str(path))


def _check(served: dict[str, Any], native: Path, standard: Path | None) -> tuple[Any, str]:
    """``/check_upload`` of a native and standard dose at 3 T: (error panel, description)."""
    return served["client"].predict(_file(native), _file(standard), None, None, 3.0, api_name="/check_upload")


def _synthesize(
    served: dict[str, Any],
    uploads: tuple[Path, Path, Path | None],
    doses: str,
    fmt: str,
    low_pct: float | None = None,
) -> tuple[Any, ...]:
    """``/synthesize_upload`` of (native, standard dose, acquired low dose or None) at 3 T with the test
    generator: (error panel, status, preview, download)."""
    files = [_file(path) for path in uploads]
    return served["client"].predict(
        *files, low_pct, 3.0, GENERATOR, doses, fmt, api_name="/synthesize_upload"
    )


def test_check_upload_accepts_a_good_pair(served: dict[str, Any], nifti_pair: dict[str, Path]) -> None:
    errors, text = _check(served, nifti_pair["native_int16"], nifti_pair["standard_int16"])
    assert not _visible(errors)
    assert text.startswith("**Ready:**") and "(int16)" in text


def test_check_upload_takes_the_t1_sequence(served: dict[str, Any], nifti_pair: dict[str, Path]) -> None:
    """TR and flip angle (the last two inputs): both shown in the description; one alone is a plain error."""
    files = _file(nifti_pair["native"]), _file(nifti_pair["standard"])
    errors, text = served["client"].predict(*files, None, None, 3.0, 6.8, 8, api_name="/check_upload")
    assert not _visible(errors) and "TR 6.8 ms, flip angle 8°" in text
    errors, text = served["client"].predict(*files, None, None, 3.0, 6.8, None, api_name="/check_upload")
    assert _visible(errors) and "only one of TR and flip angle" in update_value(errors) and text == ""


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("truncated", "could not be used"),
        ("random", "could not be used"),
        ("four_d", "could not be used"),
        ("other_grid", "not on the same grid"),
        ("nan", "NaN"),
        ("bomb", "1,728,000,000 voxels"),
    ],
)
def test_bad_uploads_stay_in_the_error_panel(
    served: dict[str, Any], nifti_pair: dict[str, Path], which: str, words: str
) -> None:
    native = nifti_pair["native"] if which == "other_grid" else nifti_pair[which]
    standard = nifti_pair["other_grid"] if which == "other_grid" else nifti_pair["standard"]
    errors, text = _check(served, native, standard)
    message = update_value(errors)
    assert _visible(errors) and text == ""
    assert words in message, message
    assert "Traceback" not in message and 'File "' not in message


def test_missing_upload_and_bad_doses_are_plain_errors(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    errors, _ = _check(served, nifti_pair["native"], None)
    assert "no standard-dose image" in update_value(errors)
    uploads = (nifti_pair["native"], nifti_pair["standard"], None)
    errors, status, _, download = _synthesize(served, uploads, "10, 250", "NIfTI")
    assert _visible(errors) and "out of range" in update_value(errors) and not _visible(download)


def test_synthesis_once_exports_in_the_input_type_and_compares_with_the_baseline(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    import nibabel as nib

    from vce_core.io import load_volume

    uploads = (nifti_pair["native_int16"], nifti_pair["standard_int16"], nifti_pair["low_int16"])
    errors, report, preview, download = _synthesize(served, uploads, "20, 33", "NIfTI", low_pct=33)
    assert not _visible(errors) and "Done" in report and "in the input's type (int16)" in report
    assert "| Synthetic |" in report and "| Linear baseline |" in report
    path = Path(update_value(download))
    assert path.name.endswith("_nifti.zip")
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(n for n in names if n.endswith(".nii.gz")) and len(names) == 2
        zf.extract(names[0], path.parent / "x")
    image = nib.load(str(path.parent / "x" / names[0]))
    assert image.get_data_dtype() == np.int16
    assert load_volume(path.parent / "x" / names[0]).shape == load_volume(nifti_pair["native"]).shape
    data = _payload(update_value(preview))
    titles = [p["title"] for p in data["panels"]]
    assert titles == ["Native", "Standard dose", "Synthetic · 20 %", "Synthetic · 33 %"]
    assert data["markers"]["top"] == "A" and len(data["presets"]) >= 3
    # changing the format only swaps the file: the DICOM archive was written by the same synthesis
    dicom = Path(update_value(served["client"].predict("DICOM", api_name="/export_format")))
    assert dicom.name.endswith("_dicom.zip") and dicom.stat().st_mtime <= path.stat().st_mtime + 60


def test_dicom_export_is_one_study_with_one_series_per_dose(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    import pydicom

    *_, download = _synthesize(
        served, (nifti_pair["native"], nifti_pair["standard"], None), "10, 25, 33", "DICOM"
    )
    studies, series, descriptions = set(), set(), set()
    with zipfile.ZipFile(update_value(download)) as zf:
        for name in zf.namelist():
            if name.endswith(".dcm"):
                ds = pydicom.dcmread(zf.open(name), stop_before_pixels=True)
                studies.add(ds.StudyInstanceUID)
                series.add(ds.SeriesInstanceUID)
                descriptions.add(str(ds.SeriesDescription))
    assert len(studies) == 1 and len(series) == 3
    assert all(d.startswith("SYNTHETIC") for d in descriptions)


def test_preview_loader_serves_only_its_own_stacks(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    from studio.upload import validate_uploads

    tab = served["studio"].upload_tab
    uploaded = validate_uploads(nifti_pair["native"], nifti_pair["standard"], None, None, 3.0)
    data = _payload(tab.preview_value(uploaded, {0.5: uploaded.native}))
    stack = data["panels"][0]["stack"]
    assert len(stack) >= 16  # an unguessable token, not a file name or a session hash
    got = tab.preview_slices([{"stack": stack, "index": 0}, {"stack": "guess", "index": 0}])
    assert list(got) == [stack] and list(got[stack]) == ["0"]


def test_uploads_are_never_served_over_http(served: dict[str, Any], nifti_pair: dict[str, Path]) -> None:
    import urllib.error
    import urllib.request

    _check(served, nifti_pair["native"], nifti_pair["standard"])
    uploads = served["settings"].uploads_dir
    copies = [p for p in uploads.rglob("*") if p.is_file()]
    assert copies, "the check copied the uploads into a session folder"
    for copy in copies[:2]:
        assert copy.stat().st_mode & 0o077 == 0  # only the server's user may read it
        url = served["url"] + f"gradio_api/file={copy}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code in (403, 404)
