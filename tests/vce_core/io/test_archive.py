"""vce_core.io.archive: a ``.zip`` of a DICOM series loads like the folder it came from."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vce_core.io import (
    Volume,
    load_volume,
    save_dicom_series,
)


def test_zip_round_trip(tmp_path: Path, make_volume: Callable[..., Volume]) -> None:
    volume = make_volume()
    files = save_dicom_series(volume, tmp_path / "s", series_description="x")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"export/DICOM/{f.stem}")
        zf.writestr("export/README.txt", "not an image")
    back = load_volume(archive)
    np.testing.assert_array_equal(back.data, load_volume(tmp_path / "s").data)
    assert back.meta["source_path"] == str(archive)
