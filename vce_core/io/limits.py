"""Limits on what a reader accepts, checked from headers before any voxel array is allocated.

A hostile or broken file must not make the server allocate what its header claims: the loaders compare the
header's image size (voxels and decoded bytes), its voxel spacing and, for archives, the declared and
actual extraction sizes with one :class:`Limits` object before reading pixel data. The defaults suit brain
MRI (a 512 × 512 × 256 volume fits); a deployment sets its own with :meth:`Limits.from_env` or by passing
``limits=`` to :func:`vce_core.io.load_volume`.

=============================  ======================  =================================================
limit                          environment variable    default
=============================  ======================  =================================================
``max_voxels``                 ``VCE_MAX_VOXELS``      2²⁶ = 67,108,864 voxels per image
``max_bytes``                  ``VCE_MAX_IMAGE_MB``    1024 MiB of decoded voxel data per image
``max_zip_total_bytes``        ``VCE_MAX_ZIP_MB``      512 MiB extracted from one archive
``max_zip_members``            —                       20,000 files per archive
``max_zip_ratio``              —                       100 (every member and the whole archive)
``spacing_mm``                 —                       every voxel size in [0.01, 30] mm
=============================  ======================  =================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vce_core.errors import VCEInputError

ENV_MAX_VOXELS = "VCE_MAX_VOXELS"
ENV_MAX_IMAGE_MB = "VCE_MAX_IMAGE_MB"
ENV_MAX_ZIP_MB = "VCE_MAX_ZIP_MB"
_MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    """What one image or archive may claim (see the module docstring for the defaults)."""

    max_voxels: int = 2**26
    max_bytes: int = 1024 * _MIB
    max_zip_members: int = 20_000
    max_zip_total_bytes: int = 512 * _MIB
    max_zip_ratio: float = 100.0
    spacing_mm: tuple[float, float] = (0.01, 30.0)

    def __post_init__(self) -> None:
        numbers = (self.max_voxels, self.max_bytes, self.max_zip_members, self.max_zip_total_bytes)
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in numbers):
            raise VCEInputError("an I/O limit is not a positive integer", expected="positive integers")
        low, high = self.spacing_mm
        if not (0 < low < high and self.max_zip_ratio > 1):
            raise VCEInputError(
                "the spacing or ratio limit is not sensible", expected="0 < low < high, ratio > 1"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults overridden by ``VCE_MAX_VOXELS``, ``VCE_MAX_IMAGE_MB`` and ``VCE_MAX_ZIP_MB``."""
        env = os.environ if environ is None else environ
        changes: dict[str, int] = {}
        for name, key, factor in (
            (ENV_MAX_VOXELS, "max_voxels", 1),
            (ENV_MAX_IMAGE_MB, "max_bytes", _MIB),
            (ENV_MAX_ZIP_MB, "max_zip_total_bytes", _MIB),
        ):
            text = env.get(name)
            if text:
                try:
                    changes[key] = int(float(text) * factor)
                except ValueError:
                    raise VCEInputError(f"${name} is {text!r}", expected="a positive number") from None
        return cls(**changes)

    def check_image(
        self, shape: Sequence[int], itemsize: int, path: Path | None, what: str = "the image"
    ) -> None:
        """Refuse an image whose header claims more than ``max_voxels`` or ``max_bytes`` (decoded)."""
        dims = [int(s) for s in shape]
        voxels = math.prod(dims)
        size = " × ".join(map(str, dims))
        if voxels > self.max_voxels:
            raise VCEInputError(
                f"{what} claims {size} = {voxels:,} voxels",
                path=path,
                expected=f"at most {self.max_voxels:,} voxels per image (limit of this server)",
            )
        if voxels * int(itemsize) > self.max_bytes:
            raise VCEInputError(
                f"{what} claims {voxels * int(itemsize) / _MIB:,.0f} MiB of voxel data "
                f"({size} × {itemsize} bytes)",
                path=path,
                expected=f"at most {self.max_bytes / _MIB:,.0f} MiB per image (limit of this server)",
            )

    def check_spacing(self, spacing: Sequence[float], path: Path | None) -> None:
        """Refuse voxel sizes outside ``spacing_mm`` (a corrupt header: 0, 1e6 mm, NaN)."""
        low, high = self.spacing_mm
        values = [float(s) for s in spacing]
        if not all(math.isfinite(s) and low <= s <= high for s in values):
            shown = ", ".join(f"{s:g}" for s in values)
            raise VCEInputError(
                f"the voxel sizes ({shown} mm) are not those of an MR image (corrupt header?)",
                path=path,
                expected=f"voxel sizes between {low:g} and {high:g} mm",
            )


DEFAULT_LIMITS = Limits()
"""The limits :func:`vce_core.io.load_volume` applies when none are given."""
