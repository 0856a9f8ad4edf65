"""vce_core.io: every bad input ends in a VCEInputError naming the file, and writers leave nothing behind."""

from __future__ import annotations

import gzip
import io as stdio
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from vce_core.errors import VCEInputError
from vce_core.io import Case, Limits, Volume, load_case, load_volume, save_case, save_dicom_series, save_nifti


def _vol(shape=(6, 5, 4), affine=None, seed=0) -> Volume:
    data = np.random.default_rng(seed).random(shape).astype(np.float32) * 100
    return Volume(data=data, affine=np.eye(4) if affine is None else affine)


def _nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def _series(folder: Path, volume: Volume | None = None, description: str = "s") -> list[Path]:
    return save_dicom_series(volume or _vol(), folder, series_description=description, synthetic=False)


# ------------------------------------------------------------------------------------------ readers
# Each maker builds the bad input under tmp_path and returns (path given to the loader, name that the
# message must contain, text that the message must contain).


def _truncated_nii_gz(tmp: Path) -> tuple[Path, str, str]:
    good = _nifti(tmp / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    raw = good.read_bytes()
    (tmp / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    return tmp / "cut.nii.gz", "cut.nii.gz", "truncated"


def _not_gzip_nii_gz(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "plain.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    return tmp / "plain.nii.gz", "plain.nii.gz", "NIfTI"


def _random_dcm(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "noise.dcm").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return tmp / "noise.dcm", "noise.dcm", "not a DICOM file"


def _dicom_without_pixels(tmp: Path) -> tuple[Path, str, str]:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp / "header_only.dcm")
    return tmp / "header_only.dcm", "header_only.dcm", "no pixel data"


def _rtplan(tmp: Path) -> tuple[Path, str, str]:
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp / "plan.dcm")
    return tmp / "plan.dcm", "plan.dcm", "no pixel data"


def _truncated_dicom(tmp: Path) -> tuple[Path, str, str]:
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp / "short.dcm")
    return tmp / "short.dcm", "short.dcm", "cannot be decoded"


def _two_series(tmp: Path) -> tuple[Path, str, str]:
    _series(tmp / "both" / "a", description="pre")
    _series(tmp / "both" / "b", _vol(seed=1), description="post")
    return tmp / "both", "both", "2 DICOM series"


def _no_images(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "notes.txt").write_text("no images here")
    return tmp / "docs", "docs", "no DICOM images"


def _empty_folder(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "empty").mkdir()
    return tmp / "empty", "empty", "no DICOM images"


def _nifti_4d(tmp: Path) -> tuple[Path, str, str]:
    return _nifti(tmp / "fmri.nii.gz", np.ones((4, 4, 4, 3), np.float32)), "fmri.nii.gz", "4-D"


def _nifti_2d(tmp: Path) -> tuple[Path, str, str]:
    return _nifti(tmp / "slice.nii", np.ones((8, 8), np.float32)), "slice.nii", "2-D"


def _nifti_nan(tmp: Path) -> tuple[Path, str, str]:
    array = np.ones((4, 4, 4), np.float32)
    array[1, 2, 3] = np.nan
    return _nifti(tmp / "nan.nii.gz", array), "nan.nii.gz", "NaN"


def _nifti_inf(tmp: Path) -> tuple[Path, str, str]:
    array = np.ones((4, 4, 4), np.float32)
    array[0, 0, 0] = -np.inf
    return _nifti(tmp / "inf.nii", array), "inf.nii", "infinite"


def _nifti_zero_sized(tmp: Path) -> tuple[Path, str, str]:
    return _nifti(tmp / "zero.nii", np.ones((4, 0, 4), np.float32)), "zero.nii", "zero-sized"


def _unsupported_extension(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return tmp / "picture.png", "picture.png", "not supported"


def _missing_path(tmp: Path) -> tuple[Path, str, str]:
    return tmp / "nowhere.nii.gz", "nowhere.nii.gz", "does not exist"


def _slice_gap(tmp: Path) -> tuple[Path, str, str]:
    files = _series(tmp / "gap", _vol(shape=(6, 5, 6)))
    files[2].unlink()
    return tmp / "gap", "gap", "inconsistent slice spacing"


def _mixed_orientation(tmp: Path) -> tuple[Path, str, str]:
    files = _series(tmp / "mixed", _vol(shape=(6, 5, 4)))
    ds = pydicom.dcmread(files[1])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(files[1])
    return tmp / "mixed", "mixed", "inconsistent ImageOrientationPatient"


def _duplicate_positions(tmp: Path) -> tuple[Path, str, str]:
    files = _series(tmp / "echoes", _vol(shape=(6, 5, 3)))
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp / "echoes" / "echo2.dcm")
    return tmp / "echoes", "echoes", "same position"


def _zip_traversal(tmp: Path) -> tuple[Path, str, str]:
    files = _series(tmp / "s")
    with zipfile.ZipFile(tmp / "evil.zip", "w") as zf:
        zf.write(files[0], "../../escaped.dcm")
    return tmp / "evil.zip", "evil.zip", "outside the archive"


def _zip_absolute(tmp: Path) -> tuple[Path, str, str]:
    with zipfile.ZipFile(tmp / "abs.zip", "w") as zf:
        info = zipfile.ZipInfo("placeholder")
        info.filename = "/etc/escaped.dcm"
        zf.writestr(info, b"x")
    return tmp / "abs.zip", "abs.zip", "outside the archive"


def _zip_bomb(tmp: Path) -> tuple[Path, str, str]:
    with zipfile.ZipFile(tmp / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", bytes(3 * 1024 * 1024))
    return tmp / "bomb.zip", "bomb.zip", "zip bomb"


def _not_a_zip(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "fake.zip").write_bytes(b"PK but not really")
    return tmp / "fake.zip", "fake.zip", "not a readable zip"


def _compressed_without_decoder(tmp: Path) -> tuple[Path, str, str]:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    shutil.copy(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), tmp / "jls.dcm")
    return tmp / "jls.dcm", "jls.dcm", "pip install"


# Hostile inputs (issue 15): sizes claimed by headers, bombs, corrupt headers. Each must be refused before
# anything large is allocated (test_refused_uploads_stay_small measures the peak memory).


def _nifti_header(
    shape: tuple[int, ...], dtype: type = np.int16, zooms: tuple[float, ...] | None = None
) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    if zooms is not None:
        header.set_zooms(zooms)
    header.set_sform(np.diag([*(zooms or (1.0, 1.0, 1.0)), 1.0]), code=1)
    return header.binaryblock + b"\x00" * 4  # + empty extension flag, then the voxel block would start


def _nifti_header_bomb(tmp: Path) -> tuple[Path, str, str]:
    """71 bytes of gzip whose header claims 1200³ int16 (3.3 GB)."""
    (tmp / "bomb.nii.gz").write_bytes(gzip.compress(_nifti_header((1200, 1200, 1200))))
    return tmp / "bomb.nii.gz", "bomb.nii.gz", "1,728,000,000 voxels"


def _nifti_truncated_claim(tmp: Path) -> tuple[Path, str, str]:
    """A header within the limits (300³ int16, 54 MB) followed by 1 KiB of data."""
    data = _nifti_header((300, 300, 300)) + bytes(1024)
    (tmp / "short.nii.gz").write_bytes(gzip.compress(data))
    return tmp / "short.nii.gz", "short.nii.gz", "truncated"


def _nifti_truncated_uncompressed(tmp: Path) -> tuple[Path, str, str]:
    (tmp / "short.nii").write_bytes(_nifti_header((300, 300, 300)) + bytes(1024))
    return tmp / "short.nii", "short.nii", "truncated"


def _nifti_huge_spacing(tmp: Path) -> tuple[Path, str, str]:
    image = nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.diag([1e6, 1.0, 1.0, 1.0]))
    nib.save(image, tmp / "far.nii.gz")
    return tmp / "far.nii.gz", "far.nii.gz", "1e+06"


def _nifti_complex(tmp: Path) -> tuple[Path, str, str]:
    data = (np.ones((8, 8, 8)) + 1j * np.ones((8, 8, 8))).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp / "complex.nii.gz")
    return tmp / "complex.nii.gz", "complex.nii.gz", "complex"


def _nifti_rgb(tmp: Path) -> tuple[Path, str, str]:
    rgb = np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp / "rgb.nii.gz")
    return tmp / "rgb.nii.gz", "rgb.nii.gz", "RGB"


def _nifti_bad_sizeof_hdr(tmp: Path) -> tuple[Path, str, str]:
    raw = bytearray(_nifti_header((8, 8, 8)) + np.ones((8, 8, 8), np.int16).tobytes())
    raw[:4] = (999).to_bytes(4, "little")
    (tmp / "corrupt.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    return tmp / "corrupt.nii.gz", "corrupt.nii.gz", "sizeof_hdr is 999"


def _zip_of_many_small_zeros(tmp: Path) -> tuple[Path, str, str]:
    """1000 members of 1 MiB zeros: 1 GB from about 1 MB (the issue's bomb; every member is checked)."""
    with zipfile.ZipFile(tmp / "zeros.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(1000):
            zf.writestr(f"IM{n:04d}.dcm", bytes(1024 * 1024))
    return tmp / "zeros.zip", "zeros.zip", "expand"


def _zip_of_small_zeros_under_the_cap(tmp: Path) -> tuple[Path, str, str]:
    """200 × 1 MiB zeros: under the total cap, refused by the per-member ratio."""
    with zipfile.ZipFile(tmp / "zeros200.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(200):
            zf.writestr(f"IM{n:04d}.dcm", bytes(1024 * 1024))
    return tmp / "zeros200.zip", "zeros200.zip", "zip bomb"


def _dicom_header_bomb(tmp: Path) -> tuple[Path, str, str]:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 16
    ds.save_as(tmp / "huge.dcm")
    return tmp / "huge.dcm", "huge.dcm", "claims 65535 × 65535 × 16"


HOSTILE = (
    _nifti_header_bomb,
    _nifti_truncated_claim,
    _nifti_truncated_uncompressed,
    _nifti_huge_spacing,
    _nifti_complex,
    _nifti_rgb,
    _nifti_bad_sizeof_hdr,
    _zip_of_many_small_zeros,
    _zip_of_small_zeros_under_the_cap,
    _dicom_header_bomb,
)


READERS: dict[str, Callable[[Path], tuple[Path, str, str]]] = {
    f.__name__.lstrip("_"): f
    for f in (
        *HOSTILE,
        _truncated_nii_gz,
        _not_gzip_nii_gz,
        _random_dcm,
        _dicom_without_pixels,
        _rtplan,
        _truncated_dicom,
        _two_series,
        _no_images,
        _empty_folder,
        _nifti_4d,
        _nifti_2d,
        _nifti_nan,
        _nifti_inf,
        _nifti_zero_sized,
        _unsupported_extension,
        _missing_path,
        _slice_gap,
        _mixed_orientation,
        _duplicate_positions,
        _zip_traversal,
        _zip_absolute,
        _zip_bomb,
        _not_a_zip,
        _compressed_without_decoder,
    )
}


@pytest.mark.parametrize("case", sorted(READERS))
def test_load_volume_refuses(case: str, tmp_path: Path) -> None:
    path, name, text = READERS[case](tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(VCEInputError) as info:
        load_volume(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert name in message, message
    assert text in message, message
    assert "Expected" in message, message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing extracted or left


_PROBE = """
import json, sys
from pathlib import Path
from vce_core.io import load_volume

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

out = {}
for path in sys.argv[1:]:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current resident size
        reset = True
    except OSError:
        reset = False
    before = status("VmRSS:")
    hwm_before = status("VmHWM:")
    try:
        load_volume(path)
        refused = False
    except ValueError:
        refused = True
    peak = status("VmHWM:")
    out[Path(path).name] = {"refused": refused, "peak_increase": peak - (before if reset else hwm_before)}
print(json.dumps(out))
"""


def test_refused_uploads_stay_small(tmp_path: Path) -> None:
    """Peak memory (VmHWM, reset before each load) of loading every hostile file in a fresh process.

    A valid 200³ float32 file is loaded too, as the probe's positive control: it must show its 32 MB.
    """
    import json
    import subprocess
    import sys

    paths = [maker(tmp_path)[0] for maker in HOSTILE]
    control = _nifti(tmp_path / "control.nii", np.ones((200, 200, 200), np.float32))
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, paths), str(control)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result.pop("control.nii") == {"refused": False, "peak_increase": pytest.approx(64e6, rel=0.6)}
    for name, probe in result.items():
        assert probe["refused"], name
        assert probe["peak_increase"] <= 100 * 1024**2, (name, probe)


def test_unknown_series_uid_lists_available(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    with pytest.raises(VCEInputError) as info:
        load_volume(tmp_path / "s", series_uid="1.2.3.4")
    assert "1.2.3.4" in str(info.value) and uid in str(info.value) and str(tmp_path / "s") in str(info.value)


def test_zip_limits_are_enforced_on_total_size(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    with zipfile.ZipFile(tmp_path / "big.zip", "w") as zf:
        for f in files:
            zf.write(f, f.name)
    assert load_volume(tmp_path / "big.zip").shape == (6, 5, 4)
    with pytest.raises(VCEInputError, match="big.zip.*expand"):
        load_volume(tmp_path / "big.zip", limits=Limits(max_zip_total_bytes=1000))
    with pytest.raises(VCEInputError, match="big.zip.*4 files"):
        load_volume(tmp_path / "big.zip", limits=Limits(max_zip_members=3))


def test_image_limits_are_configurable(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "ok.nii.gz", np.ones((10, 10, 10), np.int16))
    assert load_volume(path).shape == (10, 10, 10)
    with pytest.raises(VCEInputError, match="1,000 voxels.*at most 999"):
        load_volume(path, limits=Limits(max_voxels=999))
    with pytest.raises(VCEInputError, match="MiB"):
        load_volume(path, limits=Limits(max_bytes=1000))
    with pytest.raises(VCEInputError, match="voxel sizes"):
        load_volume(path, limits=Limits(spacing_mm=(2.0, 3.0)))
    series = _series(tmp_path / "dcm")
    with pytest.raises(VCEInputError, match="DICOM series claims 5 × 6 × 4 = 120 voxels"):
        load_volume(series[0].parent, limits=Limits(max_voxels=100))


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env({"VCE_MAX_VOXELS": "1000", "VCE_MAX_IMAGE_MB": "2", "VCE_MAX_ZIP_MB": "0.5"})
    assert (limits.max_voxels, limits.max_bytes, limits.max_zip_total_bytes) == (1000, 2 * 2**20, 2**19)
    assert Limits.from_env({}) == Limits()
    with pytest.raises(VCEInputError, match="VCE_MAX_VOXELS"):
        Limits.from_env({"VCE_MAX_VOXELS": "lots"})


# ------------------------------------------------------------------------------------------ case.json


def _write_case(
    folder: Path, spec: dict | str, shapes: dict[str, tuple[int, int, int]] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shapes = shapes or {}
    for name in ("native.nii.gz", "sd.nii.gz", "ld10.nii.gz", "ld20.nii.gz"):
        _nifti(folder / name, np.ones(shapes.get(name, (4, 4, 3)), np.float32))
    (folder / "case.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return folder


def _spec(**changes) -> dict:
    spec = {
        "format": "vce-case",
        "version": 1,
        "case_id": "c1",
        "field_strength": 3.0,
        "agent": "gadobutrol",
        "native": "native.nii.gz",
        "standard_dose": "sd.nii.gz",
        "low_doses": [{"dose": 0.1, "file": "ld10.nii.gz"}],
    }
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


BAD_MANIFESTS: dict[str, tuple[dict | str, str, str]] = {
    "not_json": ("{ this is not json", "case.json", "not valid JSON"),
    "not_object": ("[1, 2]", "case.json", "JSON list"),
    "missing_native": (_spec(native=None), "case.json", "native"),
    "missing_field_strength": (_spec(field_strength=None), "case.json", "field_strength"),
    "file_missing": (_spec(standard_dose="absent.nii.gz"), "absent.nii.gz", "does not exist"),
    "dose_zero": (_spec(low_doses=[{"dose": 0, "file": "ld10.nii.gz"}]), "case.json", "(0, 1]"),
    "dose_above_one": (_spec(low_doses=[{"dose": 1.5, "file": "ld10.nii.gz"}]), "case.json", "(0, 1]"),
    "dose_negative": (_spec(low_doses=[{"dose": -0.1, "file": "ld10.nii.gz"}]), "case.json", "(0, 1]"),
    "dose_duplicated": (
        _spec(low_doses=[{"dose": 0.1, "file": "ld10.nii.gz"}, {"dose": 0.1, "file": "ld20.nii.gz"}]),
        "case.json",
        "listed twice",
    ),
    "field_strength_text": (_spec(field_strength="3T"), "case.json", "field_strength"),
    "field_strength_number_as_text": (_spec(field_strength="3"), "case.json", "JSON number"),
    "field_strength_above_12": (_spec(field_strength=14.1), "case.json", "(0, 12]"),
    "field_strength_zero": (_spec(field_strength=0), "case.json", "(0, 12]"),
    "wrong_format": (_spec(format="something-else"), "case.json", "format"),
    "escaping_path": (_spec(native="../outside.nii.gz"), "case.json", "outside the case folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_load_case_refuses_bad_manifest(case: str, tmp_path: Path) -> None:
    spec, name, text = BAD_MANIFESTS[case]
    folder = _write_case(tmp_path / "case", spec)
    with pytest.raises(VCEInputError) as info:
        load_case(folder)
    assert name in str(info.value) and text in str(info.value), str(info.value)


def test_load_case_grid_mismatch_names_both_files(tmp_path: Path) -> None:
    folder = _write_case(tmp_path / "case", _spec(), shapes={"ld10.nii.gz": (4, 5, 3)})
    with pytest.raises(VCEInputError) as info:
        load_case(folder)
    message = str(info.value)
    assert "native.nii.gz" in message and "ld10.nii.gz" in message
    assert "(4, 4, 3)" in message and "(4, 5, 3)" in message and "spacing" in message and "origin" in message


def test_load_case_shifted_origin_is_a_mismatch(tmp_path: Path) -> None:
    folder = _write_case(tmp_path / "case", _spec())
    shifted = np.eye(4)
    shifted[0, 3] = 0.01  # 10 µm is above the 1e-3 mm tolerance
    _nifti(folder / "sd.nii.gz", np.ones((4, 4, 3), np.float32), shifted)
    with pytest.raises(VCEInputError, match="sd.nii.gz"):
        load_case(folder)


@pytest.mark.parametrize("what", ["missing", "file", "no_case"])
def test_load_case_refuses_non_case_paths(what: str, tmp_path: Path) -> None:
    target = {"missing": tmp_path / "gone", "file": tmp_path / "x.txt", "no_case": tmp_path / "plain"}[what]
    if what == "file":
        target.write_text("x")
    if what == "no_case":
        target.mkdir()
        (target / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(VCEInputError) as info:
        load_case(target)
    assert target.name in str(info.value)


def test_brats_folder_without_t1ce(tmp_path: Path) -> None:
    folder = tmp_path / "BraTS_002"
    folder.mkdir()
    _nifti(folder / "BraTS_002_t1.nii.gz", np.ones((3, 3, 3), np.float32))
    with pytest.raises(VCEInputError, match="standard_dose") as info:
        load_case(folder)
    assert "BraTS_002" in str(info.value)


# ------------------------------------------------------------------------------------------ writers


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


NAN_VOLUME = Volume(np.full((4, 4, 3), np.nan, np.float32), np.eye(4))
VOLUME_4D = Volume(np.ones((4, 4, 3, 2), np.float32), np.eye(4))
SINGULAR = Volume(np.ones((4, 4, 3), np.float32), np.diag([1.0, 0.0, 1.0, 1.0]))

BAD_NIFTI_WRITES = {
    "nan": (NAN_VOLUME, "out.nii.gz", "NaN"),
    "four_d": (VOLUME_4D, "out.nii.gz", "4 dimensions"),
    "singular_affine": (SINGULAR, "out.nii.gz", "singular"),
    "bad_extension": (_vol(), "out.mha", "extension"),
    "not_a_volume": (np.ones((3, 3, 3)), "out.nii", "ndarray"),
}


@pytest.mark.parametrize("case", sorted(BAD_NIFTI_WRITES))
def test_save_nifti_refuses_and_writes_nothing(case: str, tmp_path: Path) -> None:
    volume, name, text = BAD_NIFTI_WRITES[case]
    with pytest.raises(VCEInputError) as info:
        save_nifti(volume, tmp_path / "sub" / name)
    assert name in str(info.value) and text in str(info.value), str(info.value)
    assert _listing(tmp_path) == []


def test_save_nifti_bad_dtype(tmp_path: Path) -> None:
    with pytest.raises(VCEInputError, match="out.nii.*complex64"):
        save_nifti(_vol(), tmp_path / "out.nii", dtype="complex64")
    assert _listing(tmp_path) == []


BAD_DICOM_WRITES = {
    "nan": (dict(volume=NAN_VOLUME), "NaN"),
    "four_d": (dict(volume=VOLUME_4D), "4 dimensions"),
    "dose_out_of_range": (dict(dose=1.5), "dose"),
    "dose_negative": (dict(dose=-0.1), "[0, 1]"),
    "empty_description": (dict(series_description="  "), "series_description"),
    "sheared": (
        dict(
            volume=Volume(
                np.ones((4, 4, 3), np.float32),
                np.array([[1.0, 0.5, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]),
            )
        ),
        "shear",
    ),
    "missing_reference": (dict(reference="no_such_ref.dcm"), "no_such_ref.dcm"),
}


@pytest.mark.parametrize("case", sorted(BAD_DICOM_WRITES))
def test_save_dicom_series_refuses_and_writes_nothing(case: str, tmp_path: Path) -> None:
    changes, text = BAD_DICOM_WRITES[case]
    kwargs = {"volume": _vol(), "series_description": "x", **changes}
    if case == "missing_reference":
        kwargs["reference"] = tmp_path / "no_such_ref.dcm"
    volume = kwargs.pop("volume")
    with pytest.raises(VCEInputError) as info:
        save_dicom_series(volume, tmp_path / "out_series", **kwargs)
    assert "out_series" in str(info.value) or "no_such_ref" in str(info.value)
    assert text in str(info.value), str(info.value)
    assert _listing(tmp_path) == []


def test_save_dicom_series_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(VCEInputError, match="out.*not an empty folder"):
        save_dicom_series(_vol(), tmp_path / "out", series_description="x")
    assert _listing(tmp_path) == ["out", "out/keep.txt"]


def _good_case() -> Case:
    return Case(
        native=_vol(), standard_dose=_vol(seed=1), low_doses={0.2: _vol(seed=2)}, meta={"case_id": "c1"}
    )


def test_save_case_grid_mismatch_writes_nothing(tmp_path: Path) -> None:
    case = _good_case()
    case.low_doses[0.2] = _vol(shape=(6, 5, 5))
    with pytest.raises(VCEInputError) as info:
        save_case(case, tmp_path / "case")
    assert "native.nii.gz" in str(info.value) and "low_dose_020.nii.gz" in str(info.value)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "change, text",
    [
        (lambda c: c.low_doses.update({1.5: _vol()}), "1.5"),
        (lambda c: setattr(c, "field_strength", -3.0), "field_strength"),
        (lambda c: setattr(c, "field_strength", 14.1), "(0, 12]"),
        (lambda c: c.low_doses.update({0.0: _vol()}), "(0, 1]"),
        (lambda c: c.meta.update({"bad": object()}), "JSON"),
        (lambda c: c.extra.update({"../evil": _vol()}), "evil"),
        (lambda c: setattr(c, "native", NAN_VOLUME), "NaN"),
        (lambda c: c.low_doses.update({"high": _vol()}), "'high'"),
        (lambda c: c.low_doses.update({float("nan"): _vol()}), "nan"),
    ],
)
def test_save_case_refuses_bad_case(change, text: str, tmp_path: Path) -> None:
    case = _good_case()
    change(case)
    with pytest.raises(VCEInputError) as info:
        save_case(case, tmp_path / "case")
    assert "case" in str(info.value) and text in str(info.value), str(info.value)
    assert _listing(tmp_path) == []


def test_save_case_keeps_existing_different_case(tmp_path: Path) -> None:
    save_case(_good_case(), tmp_path / "case")
    before = {p.name: p.read_bytes() for p in (tmp_path / "case").iterdir()}
    other = _good_case()
    other.meta["case_id"] = "c2"
    with pytest.raises(VCEInputError, match="c1"):
        save_case(other, tmp_path / "case")
    assert {p.name: p.read_bytes() for p in (tmp_path / "case").iterdir()} == before
    assert _listing(tmp_path) == sorted(["case", *(f"case/{n}" for n in before)])


def test_save_case_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(VCEInputError, match="home"):
        save_case(_good_case(), tmp_path / "home", overwrite=True)
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_gzip_of_garbage_named_nii_gz(tmp_path: Path) -> None:
    buffer = stdio.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz:
        gz.write(b"\x00" * 400)
    (tmp_path / "zeros.nii.gz").write_bytes(buffer.getvalue())
    with pytest.raises(VCEInputError, match="zeros.nii.gz"):
        load_volume(tmp_path / "zeros.nii.gz")
