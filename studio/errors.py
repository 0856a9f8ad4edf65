"""The one error policy of every studio tab, as a decorator of event handlers.

Expected errors (:class:`~vce_core.errors.VCEInputError`: bad input, written for a person) are shown as
they are; anything else is logged with its traceback and a reference id, and a plain sentence naming the
action and that id is shown (:func:`vce_core.errors.user_message`). Either way the browser gets a
``gr.Error`` toast, never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from vce_core.errors import guarded, user_message

log = logging.getLogger("vce.studio")

F = TypeVar("F", bound=Callable[..., Any])


def handler(action: str) -> Callable[[F], F]:
    """Decorate an event handler: any exception becomes ``gr.Error(user_message(exc, action))``.

    ``action`` is a gerund phrase ("opening the case"). A ``gr.Error`` raised by the handler itself passes
    through unchanged. The wrapped function keeps its signature, so Gradio still injects ``gr.Request``
    and ``gr.Progress`` parameters. Generator handlers (several updates per event) stay generators, and
    an exception between two of their updates gets the same treatment.
    """
    plain = guarded(action, shown_as=_toast, passthrough=(gr.Error,), logger=log)

    def decorate(fn: F) -> F:
        if not inspect.isgeneratorfunction(fn):
            return plain(fn)

        @functools.wraps(fn)
        def updates(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - the one error policy decides what is shown
                raise _toast(user_message(exc, action, log)) from None

        return updates  # type: ignore[return-value]

    return decorate


def _toast(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)
