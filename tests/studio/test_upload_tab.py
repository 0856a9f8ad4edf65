"""The Upload & synthesize tab through its public endpoints (``/check_upload``, ``/synthesize_upload``)."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support import GENERATOR, image_pixels, update_value

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


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


def test_check_upload_accepts_a_good_pair(served: dict[str, Any], nifti_pair: dict[str, Path]) -> None:
    text = served["client"].predict(
        handle_file(str(nifti_pair["native"])),
        handle_file(str(nifti_pair["standard"])),
        None,
        None,
        3.0,
        api_name="/check_upload",
    )
    assert text.startswith("**Ready:**")


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("truncated", "could not be used"),
        ("random", "could not be used"),
        ("four_d", "could not be used"),
        ("other_grid", "not on the same grid"),
        ("nan", "NaN"),
    ],
)
def test_bad_uploads_give_plain_messages(
    served: dict[str, Any], nifti_pair: dict[str, Path], which: str, words: str
) -> None:
    native = nifti_pair["native"] if which == "other_grid" else nifti_pair[which]
    standard = nifti_pair["other_grid"] if which == "other_grid" else nifti_pair["standard"]
    with pytest.raises(AppError) as err:
        served["client"].predict(
            handle_file(str(native)), handle_file(str(standard)), None, None, 3.0, api_name="/check_upload"
        )
    message = str(err.value)
    assert words in message, message
    assert "Traceback" not in message and 'File "' not in message


def test_missing_upload_and_bad_doses_are_plain_errors(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    client = served["client"]
    with pytest.raises(AppError, match="no standard-dose image"):
        client.predict(
            handle_file(str(nifti_pair["native"])), None, None, None, 3.0, api_name="/check_upload"
        )
    with pytest.raises(AppError, match="out of range"):
        client.predict(
            handle_file(str(nifti_pair["native"])),
            handle_file(str(nifti_pair["standard"])),
            None,
            None,
            3.0,
            GENERATOR,
            "10, 250",
            "NIfTI",
            api_name="/synthesize_upload",
        )


def test_synthesize_upload_nifti_with_acquired_low_dose(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    from vce_core.io import load_volume

    report, prev_na, prev_syn, download = served["client"].predict(
        handle_file(str(nifti_pair["native"])),
        handle_file(str(nifti_pair["standard"])),
        handle_file(str(nifti_pair["low"])),
        33,
        3.0,
        GENERATOR,
        "33",
        "NIfTI",
        api_name="/synthesize_upload",
    )
    assert "Done" in report and "PSNR" in report
    assert image_pixels(prev_na).shape == image_pixels(prev_syn).shape
    path = Path(update_value(download))
    assert path.name.endswith(".nii.gz")
    volume = load_volume(path)
    assert volume.shape == load_volume(nifti_pair["native"]).shape


def test_synthesize_upload_dicom_is_marked_synthetic(
    served: dict[str, Any], nifti_pair: dict[str, Path]
) -> None:
    import pydicom

    *_, download = served["client"].predict(
        handle_file(str(nifti_pair["native"])),
        handle_file(str(nifti_pair["standard"])),
        None,
        None,
        3.0,
        GENERATOR,
        "25",
        "DICOM",
        api_name="/synthesize_upload",
    )
    with zipfile.ZipFile(update_value(download)) as zf:
        first = sorted(n for n in zf.namelist() if not n.endswith("/"))[0]
        ds = pydicom.dcmread(zf.open(first))
    assert str(ds.SeriesDescription).startswith("SYNTHETIC")
