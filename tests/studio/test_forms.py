"""``studio.forms.form_handler``: a handler takes a form's controls as one dataclass, while Gradio and
callers still see (and pass) one parameter per control, with ``gr.Request`` / ``gr.Progress`` injected."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pytest
from gradio.helpers import special_args

from studio.errors import handler
from studio.forms import form_handler


@dataclass(frozen=True)
class Controls:
    case_id: str
    dose_pct: float


class Tab:
    @form_handler(Controls)
    def plain(self, controls: Controls, extra: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        return self, controls, extra, request

    @form_handler(Controls)
    def updates(self, controls: Controls, progress: gr.Progress = gr.Progress()) -> Iterator[Any]:  # noqa: B008
        yield controls
        yield progress

    @handler("testing the policy")
    @form_handler(Controls)
    def failing(self, controls: Controls, request: gr.Request | None = None) -> str:
        raise RuntimeError(f"internal detail of {controls.case_id}")


def test_callers_see_one_parameter_per_control_then_the_handlers_own() -> None:
    tab = Tab()
    assert list(inspect.signature(tab.plain).parameters) == ["case_id", "dose_pct", "extra", "request"]
    assert list(inspect.signature(tab.failing).parameters) == ["case_id", "dose_pct", "request"]
    this, controls, extra, request = tab.plain("c1", 33.0, "x")
    assert this is tab and controls == Controls("c1", 33.0) and extra == "x" and request is None
    assert tab.plain(dose_pct=10, case_id="c2", extra="y")[1] == Controls("c2", 10)
    with pytest.raises(TypeError):
        tab.plain("c1", 33.0)  # a parameter of the handler's own is missing


def test_gradio_injects_request_and_progress_after_the_form() -> None:
    tab = Tab()
    request = object()
    inputs, progress_index, _, _ = special_args(tab.plain, ["c1", 20.0, "x"], request=request)  # type: ignore[arg-type]
    assert inputs == ["c1", 20.0, "x", request] and progress_index is None
    assert tab.plain(*inputs)[3] is request
    inputs, progress_index, _, _ = special_args(tab.updates, ["c1", 20.0])
    assert progress_index == 2 and isinstance(inputs[2], gr.Progress)
    inputs, _, _, _ = special_args(tab.failing, ["c1", 20.0], request=request)  # type: ignore[arg-type]
    assert inputs == ["c1", 20.0, request]  # through the error policy's wrapper too


def test_a_generator_handler_stays_a_generator_function() -> None:
    tab = Tab()
    assert inspect.isgeneratorfunction(Tab.updates)
    assert not inspect.isgeneratorfunction(Tab.plain)
    first, second = list(tab.updates("c1", 5.0))
    assert first == Controls("c1", 5.0) and isinstance(second, gr.Progress)


def test_the_error_policy_still_applies() -> None:
    with pytest.raises(gr.Error) as caught:
        Tab().failing("c9", 1.0)
    assert "testing the policy" in str(caught.value) and "internal detail" not in str(caught.value)


def test_misuse_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        form_handler(dict)
    with pytest.raises(TypeError, match="plain parameters"):

        @form_handler(Controls)
        def varargs(self: Any, controls: Controls, *rest: Any) -> None: ...
