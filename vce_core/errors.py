"""Errors raised for bad input.

Every bad input (a file that cannot be read, a dose out of range, grids that do not match, ...) ends in
:class:`VCEInputError`, a :class:`ValueError` whose message names the file (when there is one), says
what is wrong and what would be accepted. The app shows the message as-is to the user, so it is written
for a person, not for a developer.
"""

from __future__ import annotations

import logging
import secrets
from os import PathLike

_log = logging.getLogger("vce")


class VCEInputError(ValueError):
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


class VCEModelError(VCEInputError):
    """A checkpoint or model folder that cannot be loaded (missing weights, unknown model, bad card)."""


def user_message(exc: BaseException, action: str, logger: logging.Logger | None = None) -> str:
    """The one error policy of every user interface: what to show a person for ``exc``.

    * Expected errors (:class:`VCEInputError`, a ``ValueError`` raised for bad input) are shown as they are:
      their message is written for a person.
    * Anything else is a bug or an outage: it is logged with its traceback and a short reference id, and
      the person sees a plain sentence naming ``action`` and that id (never a traceback or an internal
      message, which could leak file names or identifiers).

    ``action`` is a gerund phrase ("opening the case"). Returns the message to show.
    """
    if isinstance(exc, VCEInputError):
        return str(exc)
    reference = secrets.token_hex(4)
    (logger or _log).error("unexpected error while %s [ref %s]", action, reference, exc_info=exc)
    return (
        f"Something went wrong while {action}. Please try again; if it happens again, tell the "
        f"administrator the reference {reference} (the details are in the server log)."
    )
