"""What both tabs share: the error policy of their handlers, the logged-in actor, display constants."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import gradio as gr

from vce_core.errors import guarded

MAX_QUESTIONS = 8
"""Questions the reader view can show (answer slots laid out in advance)."""

READER_JS = """
() => {
  if (window.__rsKeys) return;
  window.__rsKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || t.isContentEditable ||
        (t.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(t.type)))) return;
    const root = document.querySelector('#rs-reading');
    if (!root || root.offsetParent === null) return;
    if (e.key >= '1' && e.key <= '9' && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const groups = [...root.querySelectorAll('.rs-q')].filter((g) => g.offsetParent !== null
        && g.querySelector('input[type=radio]'));
      const open = groups.find((g) => !g.querySelector('input[type=radio]:checked'))
        || groups[groups.length - 1];
      if (!open) return;
      const inputs = open.querySelectorAll('input[type=radio]');
      const choice = inputs[parseInt(e.key, 10) - 1];
      if (choice) { choice.click(); e.preventDefault(); }
    } else if (e.key === 'Enter') {
      const button = document.querySelector('#rs-submit');
      if (button) { button.click(); e.preventDefault(); }
    }
  });
}
"""
"""Keyboard shortcuts of the Reader view (keys 1-5 answer the first open question, Enter submits)."""

READER_CSS = """
.rs-status { font-weight: 600; min-height: 1.2em; }
#rs-back { display: none; }
.rs-bar { height: 10px; border-radius: 5px; background: #e5e7eb; overflow: hidden; min-width: 160px; }
.rs-bar > div { height: 10px; background: #2563eb; }
"""
"""Style of the Reader view (the highlight of missing answers comes with the status line)."""

_log = logging.getLogger("reader_study.ui")

F = TypeVar("F", bound=Callable[..., Any])


def refuse(message: str) -> NoReturn:
    """Stop a handler and show ``message`` to the person (an error toast, no traceback)."""
    raise gr.Error(message, print_exception=False)


def shows_errors(action: str) -> Callable[[F], F]:
    """Handler decorator: every error ends as a toast, following :func:`vce_core.errors.user_message`.

    ``action`` is a gerund phrase ("storing your answers"). A :class:`gradio.Error` (see :func:`refuse`)
    passes as it is; a refusal of the service (:class:`reader_study.errors.ReaderStudyError`: not logged
    in, not enrolled, study closed, ...) is written for the person and is shown as it is, like bad input;
    anything else is logged with a reference id and the person sees a plain sentence with that id.
    """
    return guarded(action, shown_as=_toast, passthrough=(gr.Error,), logger=_log)


class _ShownInPlace(Exception):
    """A message the handler shows in its own message area instead of raising a toast."""


def notes_errors(
    action: str, n_outputs: int, message_index: int, shown: Callable[[str], Any] = str
) -> Callable[[F], F]:
    """Handler decorator like :func:`shows_errors`, but ``shown(message)`` replaces output
    ``message_index`` and every other of the ``n_outputs`` outputs stays as it is (a toast would mark
    every output of a big view as failed and lose what the person was doing). The same policy decides
    the message."""

    def decorate(fn: F) -> F:
        inner = guarded(action, shown_as=_ShownInPlace, passthrough=(), logger=_log)(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except _ShownInPlace as exc:
                out: list[Any] = [gr.update()] * n_outputs
                out[message_index] = shown(str(exc))
                return out

        return wrapper  # type: ignore[return-value]

    return decorate


def _toast(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)
