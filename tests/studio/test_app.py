"""The studio's public endpoints through gradio_client, against an app launched in the test.

Data: one 2 mm phantom case (``make_case``) and a freshly initialised tiny generator checkpoint
(``build_model`` + safetensors + card.json in the ``vce-model-card`` format). Images come back as PNG files
and are compared with a direct computation through :mod:`studio.explorer` (PNG is lossless).
"""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from support import GENERATOR, copy_case, explorer_of, free_port, phantom_case, write_app_checkpoint

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("studio")
    data = root / "data"
    case_dir = copy_case(phantom_case(tmp_path_factory), data)
    stale = data / "uploads" / "stale-session"
    stale.mkdir(parents=True)
    (stale / "native-old.nii.gz").write_bytes(b"left over from an earlier run")
    models = root / "models"
    write_app_checkpoint(models / GENERATOR)
    return {"root": root, "data": data, "models": models, "case": case_dir, "stale": stale}


@pytest.fixture(scope="module")
def served(workspace: dict[str, Path]) -> Iterator[dict[str, Any]]:
    import app

    demo = app.build_app(workspace["data"], workspace["models"], f"sqlite:///{workspace['root'] / 'rs.db'}")
    _, url, _ = app.launch(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False)
    case_id = f"demo/{workspace['case'].name}"
    try:
        yield {"demo": demo, "url": url, "client": client, "case_id": case_id}
    finally:
        demo.close()


def png(path: Any) -> np.ndarray:
    """Pixels of an image returned by gradio_client (a file path or a dict with ``path``)."""
    if isinstance(path, dict):
        path = path.get("path") or path.get("value")
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def value_of(update: Any) -> Any:
    """The value of a component update returned by gradio_client (a dict with ``value``) or a plain value."""
    return update.get("value") if isinstance(update, dict) and "value" in update else update


def gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img[..., 0]


def view_args(served: dict[str, Any], dose: float = 33, plane: str = "axial") -> list[Any]:
    explorer = explorer_of(served["demo"])
    case_id = served["case_id"]
    index = explorer.default_index(case_id, plane)
    window = explorer.window_for(case_id, "Brain T1", plane, index)
    return [case_id, GENERATOR, dose, plane, index + 1, window.level, window.width]


# ------------------------------------------------------------------------------------------ explorer


def test_stale_upload_folders_are_removed_at_start(
    served: dict[str, Any], workspace: dict[str, Path]
) -> None:
    assert not workspace["stale"].exists()


def test_dose_endpoint_matches_direct_synthesis(served: dict[str, Any]) -> None:
    from studio.explorer import View
    from studio.render import Window

    args = view_args(served, dose=47)
    out = served["client"].predict(*args, api_name="/dose")
    explorer = explorer_of(served["demo"])
    expected = explorer.synthetic_panel(
        View(args[0], GENERATOR, 47, "axial", args[4] - 1), Window(float(args[5]), float(args[6]))
    )
    got = gray(png(out))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_dose_panels_show_real_phantom_image_and_metrics(served: dict[str, Any]) -> None:
    real, baseline, diff, swipe, metrics, noise = served["client"].predict(
        *view_args(served, dose=25), api_name="/dose_panels"
    )
    assert png(real).shape == png(baseline).shape
    assert png(diff).ndim == 3  # RGB difference map with colour bar
    assert "PSNR" in metrics and "SSIM" in metrics and "MAE_CE" in metrics
    assert noise is not None
    assert swipe is not None


def test_render_returns_every_panel(served: dict[str, Any], workspace: dict[str, Path]) -> None:
    from vce_core.io import load_case

    outputs = served["client"].predict(*view_args(served), api_name="/render")
    native, standard, synthetic, real, baseline, diff, swipe, metrics = outputs
    nx, ny, _ = load_case(workspace["case"]).native.shape
    for image in (native, standard, synthetic, real, baseline):
        assert png(image).shape[:2] == (ny, nx)  # axial: rows anterior → posterior, columns right → left
    assert "Per-slice metrics" in metrics


def test_display_orientation_and_square_pixels() -> None:
    from studio.render import slice_spacing, take_slice, to_display

    volume = np.zeros((4, 6, 5), np.float32)
    volume[3, 0, 4] = 1.0  # patient right (max i), posterior (j = 0), superior (max k)
    spacing = (1.0, 1.0, 2.0)
    coronal = to_display(take_slice(volume, "coronal", 0), slice_spacing(spacing, "coronal"))
    assert coronal.shape == (10, 4)  # 5 slices of 2 mm → 10 rows of 1 mm; 4 columns
    rows, cols = np.nonzero(coronal > 0.5)
    assert rows.min() == 0 and cols.min() == 0  # superior at the top, patient right on the viewer's left
    axial = to_display(take_slice(volume, "axial", 4), slice_spacing(spacing, "axial"))
    assert axial.shape == (6, 4) and axial[-1, 0] == 1.0  # posterior at the bottom, right on the left


def test_charts_endpoint_returns_two_plotly_figures(served: dict[str, Any]) -> None:
    args = view_args(served)
    response, noise = served["client"].predict(*args[:5], api_name="/charts")
    for fig in (response, noise):
        assert fig["type"] == "plotly"
    plot = json.loads(response["plot"])
    names = [trace["name"] for trace in plot["data"]]
    assert (
        any("Real" in n for n in names)
        and "Linear baseline" in names
        and any("Synthetic" in n for n in names)
    )


def test_case_plane_preset_and_model_card_endpoints(served: dict[str, Any]) -> None:
    client, case_id = served["client"], served["case_id"]
    slider, level, width, info = (
        value_of(v) for v in client.predict(case_id, "Brain T1", "axial", api_name="/case")
    )
    assert slider >= 1 and width > 0 and "3 T" in info
    assert value_of(client.predict(case_id, "sagittal", api_name="/plane")) >= 1
    level2, width2 = (
        value_of(v) for v in client.predict(case_id, "Wide", "axial", slider, api_name="/window_preset")
    )
    assert width2 > width
    card = client.predict(GENERATOR, api_name="/model_card")
    assert "ld_cgan_generator" in card and "PSNR" in card


def test_echo_image_has_the_size_of_the_synthetic_panel(served: dict[str, Any]) -> None:
    args = view_args(served)
    echo = served["client"].predict(args[0], args[3], args[4], args[5], args[6], api_name="/echo_image")
    dose = served["client"].predict(*args, api_name="/dose")
    assert png(echo).shape[:2] == png(dose).shape[:2]


def test_volume_metrics(served: dict[str, Any]) -> None:
    text = served["client"].predict(served["case_id"], GENERATOR, 33, api_name="/volume_metrics")
    assert "Per-volume metrics" in text and "Synthetic" in text and "Linear baseline" in text


def test_unknown_case_is_a_plain_error(served: dict[str, Any]) -> None:
    args = view_args(served)
    args[0] = "demo/no-such-case"
    with pytest.raises(AppError) as err:
        served["client"].predict(*args, api_name="/dose")
    message = str(err.value)
    assert "no-such-case" in message and "Traceback" not in message


# ------------------------------------------------------------------------------------------ uploads


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
    assert png(prev_na).shape == png(prev_syn).shape
    path = Path(value_of(download))
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
    with zipfile.ZipFile(value_of(download)) as zf:
        first = sorted(n for n in zf.namelist() if not n.endswith("/"))[0]
        ds = pydicom.dcmread(zf.open(first))
    assert str(ds.SeriesDescription).startswith("SYNTHETIC")


def test_session_folder_is_deleted_at_session_end(workspace: dict[str, Path], tmp_path: Path) -> None:
    from studio.upload import UploadArea

    area = UploadArea(tmp_path)
    source = tmp_path / "gradio-tmp" / "native.nii.gz"
    source.parent.mkdir()
    source.write_bytes(b"x")
    copied = area.ingest("abc123", source, "native")
    assert copied is not None and copied.is_file()
    area.end_session("abc123")
    assert not (tmp_path / "uploads" / "abc123").exists() and not source.exists()


def test_app_without_generator_builds_and_says_so(workspace: dict[str, Path], tmp_path: Path) -> None:
    import app
    from studio.explorer import GeneratorRegistry

    registry = GeneratorRegistry(tmp_path / "no-models")
    assert "No generator installed" in registry.summary(None)
    demo = app.build_app(workspace["data"], tmp_path / "no-models", None, reader_study=False)
    explorer = explorer_of(demo)
    assert explorer.generators.names() == []
