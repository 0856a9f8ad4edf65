"""Probe: does the default's texture heads' offset on a lesion follow the native image's own detail there?

The heads' contribution ``h`` is the generator's residual with its heads on minus the same with them off
(``texture_scale`` 0; same inputs, same noise seed 0), in the model's normalised units. ``−HP`` is minus the
high-pass of the native image at the heads' own width, ``−(x_NA − Gauss₂(x_NA))``: what a texture that
imitates the real subtraction's ``−n_NA`` would copy from the native image, anatomy included. For each lesion
type and dose this prints, over axial slices through the lesions (up to four per lesion type and case):
the mean of ``h`` and of ``−HP`` over the lesion, their correlation over slices, and the least-squares
slope of ``h`` on ``−HP`` over the brain. A slope ``k`` with ``k · mean(−HP)`` near ``mean(h)`` on a lesion
type says the offset there is the heads copying the lesion's native contrast; a mean ``h`` against the sign
of ``−HP`` is a correction of their own.

Run from the repository root (about one minute on one thread for six cases):
``PYTHONPATH=. python reports/lowdose_t1sup_lf25_w8k_t1h32_s4242/native_highpass_probe.py --model
assets/models/ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32 --cases <case folders>`` (the README names the six
3 T cases of ``heldout_s4242`` with weakly enhancing lesions it was run on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vce_core.synthesis import Synthesizer

TYPES = ("weak_lesion", "metastasis", "enhancing_rim", "meningioma")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--cases", nargs="+", required=True, type=Path, help="phantom case folders")
    parser.add_argument("--doses", nargs="+", type=float, default=[0.1, 0.33])
    args = parser.parse_args()
    torch.set_num_threads(1)
    on = Synthesizer.from_checkpoint(args.model, device="cpu")
    off = Synthesizer.from_checkpoint(args.model, device="cpu")
    off.model.texture_scale = 0.0
    acc: dict[tuple[str, float], dict[str, list]] = {}
    for case in args.cases:
        meta = json.loads((case / "case.json").read_text())
        native, standard = (
            np.asarray(nib.load(case / name).dataobj, dtype=np.float32)
            for name in ("native.nii.gz", "standard_dose.nii.gz")
        )
        labels = np.asarray(nib.load(case / "labels.nii.gz").dataobj)
        codes = {v: int(k) for k, v in meta["meta"]["labels"].items()}
        prep = on.prepare(native, standard, sequence=meta["meta"]["sequence"])
        field = float(meta["field_strength"])
        for kind in TYPES:
            inside = labels == codes[kind]
            ks = [int(k) for k in np.nonzero(inside.any(axis=(0, 1)))[0]]
            ks = ks[:: max(1, len(ks) // 4)][:4]
            if not ks:
                continue
            for dose in args.doses:
                h = on._residual_slices(prep, ks, dose, field, 0)
                h = h - off._residual_slices(prep, ks, dose, field, 0)
                for i, k in enumerate(ks):
                    x = prep.native[:, :, k]
                    hp = -(x - gaussian_filter(x, 2.0))
                    m, brain = inside[:, :, k], prep.brain[:, :, k]
                    a = acc.setdefault((kind, dose), {"h": [], "hp": [], "hb": [], "hpb": []})
                    a["h"].append(float(h[i][m].mean()))
                    a["hp"].append(float(hp[m].mean()))
                    a["hb"].append(h[i][brain])
                    a["hpb"].append(hp[brain])
    print(f"{args.model}: heads' contribution h vs minus the native high-pass (−HP), normalised units")
    print("lesion type | dose | slices | mean h | mean −HP | corr over slices | brain slope k | k · mean −HP")
    for (kind, dose), a in sorted(acc.items()):
        hb, hpb = np.concatenate(a["hb"]), np.concatenate(a["hpb"])
        k = float((hb * hpb).mean() / (hpb * hpb).mean())
        r = float(np.corrcoef(a["h"], a["hp"])[0, 1]) if len(a["h"]) > 2 else float("nan")
        mh, mhp = float(np.mean(a["h"])), float(np.mean(a["hp"]))
        cells = [kind, f"{dose:g}", str(len(a["h"])), f"{mh:+.4f}", f"{mhp:+.4f}", f"{r:+.2f}", f"{k:+.3f}"]
        print(" | ".join([*cells, f"{k * mhp:+.4f}"]))


if __name__ == "__main__":
    main()
