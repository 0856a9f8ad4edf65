"""Refusals of the reader-study service (bad input is :class:`vce_core.errors.VCEInputError`).

A refusal is an expected outcome whose message is written for the person who asked: the CLI prints it
(exit status 3) and the user interface shows it as it is.
"""

from __future__ import annotations

from vce_core.errors import UserFacingError


class ReaderStudyError(RuntimeError, UserFacingError):
    """Base of the service's errors that are not bad input."""


class AccessDenied(ReaderStudyError, PermissionError):
    """The caller may not do this (wrong role, not enrolled, not their data, invalid token)."""


class StudyStateError(ReaderStudyError):
    """The study is not in a state that allows this (closed, draft, washout running, ...)."""


class AnswerConflict(ReaderStudyError):
    """Different answers for an item that is already answered, and the study does not allow changes."""
