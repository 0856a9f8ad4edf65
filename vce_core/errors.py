"""Errors raised for bad input.

Every bad input (a file that cannot be read, a dose out of range, grids that do not match, ...) ends in
:class:`VCEInputError`, a :class:`ValueError` whose message names the file (when there is one), says
what is wrong and what would be accepted. The app shows the message as-is to the user, so it is written
for a person, not for a developer.
"""

from __future__ import annotations

from os import PathLike


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
