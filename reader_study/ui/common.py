"""What both tabs share: the error policy of their handlers, the logged-in actor, display constants."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import gradio as gr
import numpy as np

from vce_core.display import Window
from vce_core.errors import guarded

from ..auth import Actor

MAX_QUESTIONS = 8
"""Questions the reader view can show (answer slots laid out in advance)."""
DEFAULT_LEVEL = 127.5
DEFAULT_WIDTH = 255.0
DISPLAY_PIXELS = 512
"""Long side of a reader image on screen in pixels, reached by integer pixel replication."""

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
      const groups = [...root.querySelectorAll('.rs-q')].filter((g) => g.offsetParent !== null);
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
"""Keyboard shortcuts of the Reader tab; pass to ``launch(js=READER_JS)``."""

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


def _toast(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def reader_window(level: float, width: float) -> Window:
    """The reader's window on a stored ``uint8`` image (display units 0–255; width at least 1).

    Level 127.5 and width 255 leave the image unchanged.
    """
    return Window(float(level), max(float(width), 1.0))


def actor_of(state: dict[str, Any] | None, *, admin: bool = False) -> Actor:
    """The actor logged in in this browser session (an admin when ``admin``), else a refusal."""
    actor = (state or {}).get("actor")
    if not isinstance(actor, Actor) or (admin and actor.role != "admin"):
        refuse("Please log in with your access token first.")
    return actor


def enlarge(image: np.ndarray, target: int = DISPLAY_PIXELS) -> np.ndarray:
    """Integer nearest-neighbour enlargement of a 2-D image so the long side is close to ``target`` pixels.

    Browsers show a small PNG at its own size; 1 mm brain slices (~200 px) would be read as thumbnails.
    Pixel replication keeps every grey value exact (no interpolation a reader could mistake for texture).
    """
    factor = max(1, target // max(image.shape))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image
