"""Probe: the default with its texture heads made odd in the generator's noise input, ``(G(z) − G(−z)) / 2``.

The odd part has zero expectation over the noise, so it cannot add an offset that every scan shares (the
weak-lesion bias the README's weak_lesion_decomposition.py finds); what it keeps of the texture shows how
much of the heads' output depends on ``z`` at all. The T1 map is the mean of the two passes. Not a model
option: this patches :class:`vce_core.models.ld_cgan.LowDoseGenerator` in this process and runs the
evaluation CLI with the arguments given, e.g. from the repository root::

    PYTHONPATH=. python reports/lowdose_t1sup_lf25_w8k_t1h32_s4242/antithetic_probe.py \\
        --models assets/models/ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32 \\
        --data data/heldout_s4242/test/phantom-s4242-0002 ... --extra-slices 0 --threads 1 --out <dir>
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from vce_core.evaluate.lowdose import main
from vce_core.models.ld_cgan import LowDoseGenerator

_parts = LowDoseGenerator._parts


def _odd_in_noise(self: LowDoseGenerator, inputs: tuple[Any, ...], generator: Any = None) -> Any:
    native, standard_dose, dose, field_strength, noise = inputs
    if noise is None:  # drawn as the generator draws it, so the first pass is the default's own
        shape = (native.shape[0], 1, *native.shape[2:])
        noise = torch.randn(shape, generator=generator, device=native.device, dtype=native.dtype)
    plus, t1_plus, dose_t, field_t = _parts(
        self, (native, standard_dose, dose, field_strength, noise), generator
    )
    minus, t1_minus, _, _ = _parts(self, (native, standard_dose, dose, field_strength, -noise), generator)
    heads = [(a - b) / 2 for a, b in zip(plus, minus, strict=True)]
    t1_log = None if t1_plus is None else (t1_plus + t1_minus) / 2
    return heads, t1_log, dose_t, field_t


if __name__ == "__main__":
    LowDoseGenerator._parts = _odd_in_noise  # type: ignore[method-assign]
    sys.exit(main())
