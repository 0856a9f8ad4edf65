"""The native-T1 map a physics-base generator learned, against the phantom's true T1, per tissue.

    python -m vce_core.evaluate.t1map --model assets/models/ld_cgan_2d_np_physics_t1 \\
        --data data/heldout_s4242/test [--dose 0.1] [--slices 3] [--out t1map.csv]

A generator with ``generator_kwargs.learn_t1`` computes the physics baseline's residual with the assumed
native T1 (:data:`vce_core.baselines.DEFAULT_T1_S`: 1.40 s at 1.5 T, 1.85 s at 3 T) multiplied by a
per-voxel factor ``exp(t)``. On a phantom case the right factor of each tissue is known:
``T1_tissue / DEFAULT_T1_S[field strength]`` (1.0 for the glioblastoma rim, whose T1 the default is). This
tool prints, per field strength and tissue, the mean learned factor over the voxels of that tissue label
beside the true factor, so that a reviewer sees which lesions the map gets wrong and in which direction: a
factor below the true one (T1 assumed too short) over-enhances the lesion at low dose, one above it
under-enhances.

Slices: up to ``--slices`` axial slices per case through its enhancing lesions (evenly spread), noise seed 0
of the synthesizer, the case's own acquisition as input. Slice-wise (2-D / 2.5-D) generators only.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError
from vce_core.evaluate.common import run_cli

__all__ = ["LESION_LABELS", "learned_t1_factor", "main", "t1_table"]

LESION_LABELS = (7, 10, 11, 12)
"""Phantom labels of enhancing lesions (rim, metastasis, meningioma, weakly enhancing): slices go through
them."""

_COLUMNS = ("field_strength", "tissue", "label", "voxels", "slices", "learned", "learned_sd", "true")


def learned_t1_factor(
    synth: Any, prepared: Any, dose: float, field_strength: float, index: int
) -> np.ndarray:
    """The learned factor ``exp(t)`` (I, J) on axial slice ``index`` of ``prepared`` (noise seed 0).

    ``synth``: a :class:`vce_core.synthesis.Synthesizer` of a slice-wise generator with ``learn_t1``.
    Raises :class:`VCEInputError` for a generator without a learned T1 map or a 3-D one.
    """
    import torch

    others = getattr(synth.model, "others", None)
    if others is not None:
        raise VCEInputError(
            f"{synth.display_name} is an ensemble of {len(others) + 1} generators (its map is their mean)",
            expected="one member's checkpoint (the card's training.ensemble_of lists them)",
        )
    head = getattr(synth.model, "t1_head", None)
    if head is None:
        raise VCEInputError(
            f"{synth.display_name} has no learned T1 map",
            expected="a generator trained with generator_kwargs.base=physics and learn_t1=true",
        )
    if getattr(synth.model, "spatial_dims", 2) != 2:
        raise VCEInputError(
            f"{synth.display_name} is a 3-D generator", expected="a slice-wise (2-D / 2.5-D) generator"
        )
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().float()))
    try:
        synth.synthesize_slice(prepared, dose, field_strength, plane="axial", index=int(index), seed=0)
    finally:
        hook.remove()
    I, J = prepared.shape[:2]
    t = synth.model.t1_log_map(seen[-1][:1], torch.tensor([float(field_strength)]))[0, 0, :I, :J]
    return torch.exp(t).numpy()


def _lesion_slices(labels: np.ndarray, count: int) -> list[int]:
    ks = np.flatnonzero(np.isin(labels, LESION_LABELS).any(axis=(0, 1)))
    if ks.size == 0:
        return []
    pick = np.unique(np.round(np.linspace(0, ks.size - 1, min(count, ks.size))).astype(int))
    return [int(ks[i]) for i in pick]


def t1_table(
    model: str | Path, data: Sequence[str | Path], *, dose: float = 0.1, slices: int = 3
) -> list[dict[str, Any]]:
    """Rows ``field_strength, tissue, label, voxels, slices, learned, learned_sd, true`` (module docstring).

    ``learned`` is the mean factor over all voxels of the tissue on the chosen slices, ``learned_sd`` the SD
    of the per-slice means. Raises :class:`VCEInputError` for a non-phantom case (no ``labels``), a model
    without a learned T1 map or no lesion slice in ``data``.
    """
    from vce_core.data import find_case_folders, tissue_t1_factor
    from vce_core.domain import check_dose
    from vce_core.io import load_case
    from vce_core.phantom import LABELS, TISSUES
    from vce_core.synthesis import Synthesizer

    dose = check_dose(dose)
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise VCEInputError(f"slices is {slices!r}", expected="a positive number of slices per case")
    synth = Synthesizer.from_checkpoint(model, device="cpu")
    by_label = {t.label: t for t in TISSUES.values()}
    # (field strength, label) -> per slice: (sum of the factor over the tissue's voxels, their number)
    per_slice: dict[tuple[float, int], list[tuple[float, int]]] = {}
    for folder in find_case_folders(data):
        case = load_case(folder)
        if "labels" not in case.extra:
            raise VCEInputError("the case has no tissue labels", path=folder, expected="a phantom case")
        labels = np.asarray(case.extra["labels"].data).astype(int)
        ks = _lesion_slices(labels, slices)
        if not ks:
            continue
        fs = float(case.field_strength)
        prepared = synth.prepare_case(case)
        for k in ks:
            factor, lab = learned_t1_factor(synth, prepared, dose, fs, k), labels[:, :, k]
            for value in np.unique(lab):
                if int(value) in by_label:
                    sel = factor[lab == value]
                    per_slice.setdefault((fs, int(value)), []).append((float(sel.sum()), int(sel.size)))
    if not per_slice:
        raise VCEInputError("no case holds an enhancing lesion", expected="phantom cases with lesions")
    rows = []
    for (fs, value), parts in sorted(per_slice.items()):
        sums, counts = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
        means = sums / counts
        rows.append(
            {
                "field_strength": fs,
                "tissue": LABELS[value],
                "label": value,
                "voxels": int(counts.sum()),
                "slices": len(parts),
                "learned": float(sums.sum() / counts.sum()),
                "learned_sd": float(np.std(means, ddof=1)) if len(parts) > 1 else math.nan,
                "true": tissue_t1_factor(by_label[value], fs),
            }
        )
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| field (T) | tissue | voxels | slices | learned factor (SD over slices) | true factor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        sd = "" if math.isnan(r["learned_sd"]) else f" ({r['learned_sd']:.3f})"
        lines.append(
            f"| {r['field_strength']:g} | {r['tissue']} | {r['voxels']} | {r['slices']} | "
            f"{r['learned']:.3f}{sd} | {r['true']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.evaluate.t1map", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, help="model folder (card.json + weights.safetensors)")
    parser.add_argument("--data", required=True, nargs="+", help="phantom case folders or folders of them")
    parser.add_argument("--dose", type=float, default=0.1, help="dose fraction the map is computed at")
    parser.add_argument("--slices", type=int, default=3, help="lesion slices per case")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--out", help="also write the rows to this CSV file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    rows = run_cli(t1_table, args)
    if rows is None:
        return 2
    print(_markdown(rows))
    if args.out:
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
