"""Errors raised for bad input.

Every bad input (a file that cannot be read, a dose out of range, grids that do not match, ...) ends in
:class:`VCEInputError`, a :class:`ValueError` whose message names the file (when there is one), says
what is wrong and what would be accepted. The app shows the message as-is to the user, so it is written
for a person, not for a developer.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from typing import Any, TypeVar

_log = logging.getLogger("vce")


class UserFacingError(Exception):
    """An error whose message is written for the person who caused it: bad input, a refused action.

    The user interfaces show such messages as they are (:func:`user_message`); every other exception is
    treated as a bug or an outage.
    """


class VCEInputError(ValueError, UserFacingError):
    """Bad input: unreadable or malformed file, wrong shape, value out of range, ...

    Parameters
    ----------
    problem:
        What is wrong, in plain words ("the file is truncated").
    path:
        The offending file or folder, if any; it is named at the start of the message.
    expected:
        What would be accepted ("a NIfTI file (.nii or .nii.gz) or a DICOM series").
    """

    def __init__(self, problem: str, *, path: str | PathLike | None = None, expected: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.expected = expected
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}: ")
        parts.append(problem.rstrip("."))
        parts.append(".")
        if expected:
            parts.append(f" Expected {expected.rstrip('.')}.")
        super().__init__("".join(parts))


@contextmanager
def as_input_error(
    problem: str,
    *,
    catch: type[Exception] | tuple[type[Exception], ...] = ValueError,
    path: str | PathLike | None = None,
    expected: str | None = None,
) -> Iterator[None]:
    """Within the block, an exception of a ``catch`` type means bad input: it is raised again as
    ``VCEInputError(problem, path=path, expected=expected)``, chained to the original.

    >>> with as_input_error("'x' is not a number", expected="a number"):
    ...     float("x")
    Traceback (most recent call last):
    ...
    vce_core.errors.VCEInputError: 'x' is not a number. Expected a number.
    """
    try:
        yield
    except catch as exc:
        raise VCEInputError(problem, path=path, expected=expected) from exc


class VCEModelError(VCEInputError):
    """A checkpoint or model folder that cannot be loaded (missing weights, unknown model, bad card)."""


def user_message(exc: BaseException, action: str, logger: logging.Logger | None = None) -> str:
    """The one error policy of every user interface: what to show a person for ``exc``.

    * Expected errors (:class:`UserFacingError`: :class:`VCEInputError` for bad input, the reader-study
      service's refusals) are shown as they are: their message is written for a person.
    * Anything else is a bug or an outage: it is logged with its traceback and a short reference id, and
      the person sees a plain sentence naming ``action`` and that id (never a traceback or an internal
      message, which could leak file names or identifiers).

    ``action`` is a gerund phrase ("opening the case"). Returns the message to show.
    """
    if isinstance(exc, UserFacingError):
        return str(exc)
    reference = secrets.token_hex(4)
    (logger or _log).error("unexpected error while %s [ref %s]", action, reference, exc_info=exc)
    return (
        f"Something went wrong while {action}. Please try again; if it happens again, tell the "
        f"administrator the reference {reference} (the details are in the server log)."
    )


F = TypeVar("F", bound=Callable[..., Any])


def guarded(
    action: str,
    *,
    shown_as: Callable[[str], BaseException],
    passthrough: tuple[type[BaseException], ...] = (),
    logger: logging.Logger | None = None,
) -> Callable[[F], F]:
    """Decorator applying :func:`user_message` to every exception of a user-interface handler.

    Any exception other than ``passthrough`` ones becomes ``shown_as(user_message(exc, action))``, raised
    without chaining (so no traceback reaches the person). The user interfaces bind ``shown_as`` to their
    toolkit's error (``gr.Error``); :mod:`vce_core` itself stays free of user-interface code. The wrapped
    function keeps its signature (Gradio inspects it to inject ``gr.Request``/``gr.Progress``).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except passthrough:
                raise
            except Exception as exc:  # noqa: BLE001 - the one error policy decides what is shown
                raise shown_as(user_message(exc, action, logger)) from None

        return wrapper  # type: ignore[return-value]

    return decorate
