"""Shared helpers of the reader-study tests (tiny real case folders, a fake generator) + render tests."""

from __future__ import annotations

import numpy as np
import pytest

from reader_study import render
from support import disc_case


def test_png_has_no_text_chunks_and_roundtrips() -> None:
    img = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    data = render.encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
        assert chunk not in data
    np.testing.assert_array_equal(render.decode_png(data), img)


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


def test_apply_window_identity_and_stretch() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(render.apply_window(img, 127.5, 255), img)
    narrow = render.apply_window(img, 128, 64)
    assert narrow.min() == 0 and narrow.max() == 255
