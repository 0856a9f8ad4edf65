"""Physics-based digital brain phantom: contrast-enhanced T1 at any dose, field strength, agent and sequence.

Anatomy from the MNI ICBM152 2009a template (nilearn), randomly deformed per case, with venous sinuses,
choroid plexus, dura and lesions; signal from the spoiled gradient-echo equation with agent relaxivity and
tissue concentration linear in dose; Rician noise. See ``docs/phantom.md``.

>>> case = make_case(7, resolution=2)                      # doctest: +SKIP
>>> low = case.acquire(0.25)                               # any dose in [0, 2]
>>> img = case.acquire_slice(0.25, "axial", 40)            # one slice, fast
"""

from .case import PhantomCase, make_case, phantom_from_case
from .physics import AGENTS, LABELS, SEQUENCE_PRESETS, TISSUES, Agent, Sequence, Tissue
from .structures import LesionSpec

__all__ = [
    "AGENTS",
    "LABELS",
    "SEQUENCE_PRESETS",
    "TISSUES",
    "Agent",
    "LesionSpec",
    "PhantomCase",
    "Sequence",
    "Tissue",
    "make_case",
    "phantom_from_case",
]
