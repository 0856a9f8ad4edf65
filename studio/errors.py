"""The one error policy of every studio tab, as a decorator of event handlers.

Expected errors (:class:`~vce_core.errors.VCEInputError`: bad input, written for a person) are shown as
they are; anything else is logged with its traceback and a reference id, and a plain sentence naming the
action and that id is shown (:func:`vce_core.errors.user_message`). Either way the browser gets a
``gr.Error`` toast, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from vce_core.errors import guarded

log = logging.getLogger("vce.studio")

F = TypeVar("F", bound=Callable[..., Any])


def handler(action: str) -> Callable[[F], F]:
    """Decorate an event handler: any exception becomes ``gr.Error(user_message(exc, action))``.

    ``action`` is a gerund phrase ("opening the case"). A ``gr.Error`` raised by the handler itself passes
    through unchanged. The wrapped function keeps its signature, so Gradio still injects ``gr.Request``
    and ``gr.Progress`` parameters.
    """
    return guarded(action, shown_as=_toast, passthrough=(gr.Error,), logger=log)


def _toast(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)
