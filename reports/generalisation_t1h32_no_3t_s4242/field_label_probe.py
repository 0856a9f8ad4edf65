"""Why the generator trained without 3 T adds no texture at 3 T: the same 3 T slices with the field-strength
input set to 3 T (the truth) and to 1.5 T (a value it was trained on).

Run from the repository root after the two training commands of the README's generalisation section
(``runs/t1h32_no_3t``) and the held-out draw (``data/heldout_s4242``)::

    python reports/generalisation_t1h32_no_3t_s4242/field_label_probe.py

For the first ``--cases`` 3 T cases it prints, on the middle axial slice at 20 % dose (noise seed 0), the
texture of the subtraction x̂_LD − x_NA: the median absolute deviation of its Laplacian over the brain
(scanner units; a high-pass measure of the noise, like the report's σ̂). The acquired 20 % scan's
subtraction is the reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import laplace

from vce_core.io import load_case
from vce_core.synthesis import Synthesizer


def texture(subtraction: np.ndarray, brain: np.ndarray) -> float:
    """Median absolute deviation of the Laplacian of a 2-D subtraction over the brain voxels."""
    lap = laplace(subtraction.astype(np.float64))[brain]
    return float(np.median(np.abs(lap - np.median(lap))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/heldout_s4242/test")
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["assets/models/ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32", "runs/t1h32_no_3t"],
    )
    args = parser.parse_args()
    folders = [
        f
        for f in sorted(Path(args.data).iterdir())
        if (f / "case.json").is_file() and json.loads((f / "case.json").read_text())["field_strength"] == 3.0
    ][: args.cases]
    for model in args.models:
        synth = Synthesizer.from_checkpoint(model, device="cpu")
        for folder in folders:
            case = load_case(folder)
            prep = synth.prepare(case.native, case.standard_dose, sequence=case.meta.get("sequence"))
            k = prep.native.shape[2] // 2
            native = case.native.data[:, :, k].astype(np.float32)
            brain = prep.brain[:, :, k]
            real = texture(case.low_doses[0.2].data[:, :, k] - native, brain)
            shown = []
            for field in (3.0, 1.5):
                x = synth.synthesize_slice(prep, 0.2, field, plane="axial", index=k, seed=0)
                shown.append(texture(np.asarray(x, np.float32) - native, brain))
            print(
                f"{Path(model).name} {folder.name}: field input 3 T {shown[0]:.1f}, 1.5 T {shown[1]:.1f}; "
                f"acquired scan {real:.1f}"
            )


if __name__ == "__main__":
    main()
