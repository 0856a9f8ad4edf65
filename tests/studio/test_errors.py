"""The one error policy of every studio tab (studio.errors.handler over vce_core.errors.user_message)."""

from __future__ import annotations

import logging
import re
from typing import Any

import gradio as gr
import pytest

from studio.errors import handler
from vce_core.errors import VCEInputError

REFERENCE = re.compile(r"reference ([0-9a-f]{8})")


@handler("testing the policy")
def fails_with(exc: Exception) -> None:
    raise exc


def test_expected_error_is_shown_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(gr.Error) as err:
        fails_with(VCEInputError("the dose 150 % is out of range", expected="0 to 100 %"))
    assert err.value.message == "the dose 150 % is out of range. Expected 0 to 100 %."
    assert not caplog.records


def test_gradio_errors_pass_through() -> None:
    original = gr.Error("Please log in")
    with pytest.raises(gr.Error) as err:
        fails_with(original)
    assert err.value is original


def test_unexpected_error_is_logged_with_a_reference_and_shown_plainly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as err:
        fails_with(KeyError("/srv/secret/case-17.nii.gz"))
    message = err.value.message
    assert message.startswith("Something went wrong while testing the policy.")
    assert "secret" not in message and "KeyError" not in message and "Traceback" not in message
    reference = REFERENCE.search(message).group(1)
    (record,) = caplog.records
    assert reference in record.getMessage() and record.exc_info[0] is KeyError  # the traceback is logged


def test_unexpected_error_in_a_tab_handler(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gradio_client.exceptions import AppError

    tab = served["studio"].explorer_tab

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("internal detail /srv/secret")

    case_id = served["case_id"]
    args = [case_id, None, 20, "axial", 1]
    monkeypatch.setattr(tab.explorer, "viewer_payload", broken)
    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as err:
        list(tab.on_view(*args))  # called directly (a generator handler)
    assert "Something went wrong while updating the images" in err.value.message
    assert "secret" not in err.value.message
    reference = REFERENCE.search(err.value.message).group(1)
    assert any(reference in r.getMessage() and r.exc_info[0] is RuntimeError for r in caplog.records)

    with pytest.raises(AppError) as remote:  # and through the endpoint
        served["client"].predict(*args, api_name="/dose")
    assert REFERENCE.search(str(remote.value)) and "secret" not in str(remote.value)
