"""Medical image I/O: :class:`Volume`, :class:`Case`, NIfTI, DICOM and case folders.

Array index order
-----------------
``Volume.data[i, j, k]`` is float32 with voxel indices along the affine's first, second and third
axes. Loaders reorient to the closest canonical RAS+ orientation, so ``i`` runs left → right, ``j``
posterior → anterior and ``k`` inferior → superior: an axial slice is ``data[:, :, k]``, a coronal slice
``data[:, j, :]``, a sagittal slice ``data[i, :, :]``. ``spacing`` is the voxel size in millimetres along
``i, j, k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 3-D image on a grid.

    Attributes
    ----------
    data: float32 array of shape (I, J, K), see the module docstring for the index order.
    affine: 4×4 voxel → world (RAS+, mm) matrix.
    spacing: voxel size in mm along (i, j, k).
    meta: free-form metadata: ``modality``, ``series_description``, ``source_path``, ...
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


@dataclass
class Case:
    """One subject: native (pre-contrast) T1, standard-dose T1 and optional acquired low doses.

    Attributes
    ----------
    native: pre-contrast T1-weighted volume (x_NA).
    standard_dose: T1-weighted volume after the standard dose (x_SD, dose 1.0).
    low_doses: acquired low-dose volumes keyed by dose as a fraction of the standard dose, in (0, 1].
    field_strength: main field in tesla (1.5 or 3.0 typically).
    agent: contrast agent name (``gadobutrol``, ``gadoterate``, ``gadopiclenol``, ...).
    extra: further volumes on the same grid (``t2``, ``flair``, ``adc``, ``labels``, ``ce_truth``, ...).
    meta: free-form metadata (``case_id``, ``sequence``, provenance, ...).
    """

    native: Volume
    standard_dose: Volume
    low_doses: dict[float, Volume] = field(default_factory=dict)
    field_strength: float = 3.0
    agent: str = "gadobutrol"
    extra: dict[str, Volume] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
