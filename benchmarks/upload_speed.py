"""Upload & synthesize end to end: read two uploaded NIfTI files, synthesize 3 doses, write both exports.

What the "Synthesize" button does (``studio.upload.validate_uploads`` + ``synthesize_upload``), without the
browser: the native and standard dose of a demo case are written as int16 NIfTI files (like an upload),
read back with the I/O limits, normalised once, synthesized at every dose, exported as NIfTI (int16, the
input's type) and as one DICOM study. Prints the wall and process CPU time (all threads) of each stage
and the total (target: 3 doses of a 1 mm case ≤ 60 s wall on 2 CPU cores); on a shared machine the CPU time
tells the work done, the wall time how long it took beside the other jobs.

    python -m benchmarks.upload_speed [--case data/demo/<case>] [--model assets/models/ld_cgan_2d_np_linear]
        [--doses 10 25 33] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.processes import REPO, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", type=Path, default=None, help="case folder (default: the first demo case)")
    parser.add_argument("--model", type=Path, default=REPO / "assets" / "models" / "ld_cgan_2d_np_linear")
    parser.add_argument("--doses", type=float, nargs="+", default=[10, 25, 33], help="percent")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import nibabel as nib
    import numpy as np
    import torch

    from studio.upload import synthesize_upload, validate_uploads
    from vce_core.baselines import case_tr_flip
    from vce_core.io import iter_case_folders, load_case
    from vce_core.synthesis import Synthesizer

    torch.set_num_threads(args.threads)
    folder = args.case or next(iter(iter_case_folders(REPO / "data" / "demo")), None)
    if folder is None:
        raise SystemExit("no case: run `python app.py` once to build the demo cases, or pass --case")
    case = load_case(folder)
    synth = Synthesizer.from_checkpoint(args.model, device="cpu")
    with tempfile.TemporaryDirectory(prefix="vce-upload-bench-") as tmp:
        root = Path(tmp)
        paths = {}
        for name, volume in (("native", case.native), ("standard", case.standard_dose)):
            paths[name] = root / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(np.rint(volume.data).astype(np.int16), volume.affine), str(paths[name]))
        stages: list[tuple[float, float, str]] = [(0.0, 0.0, "reading and checking the uploads")]
        t0, c0 = time.perf_counter(), time.process_time()
        tr, flip = case_tr_flip(case) or (None, None)  # typed into the form, as a user would
        uploaded = validate_uploads(
            paths["native"], paths["standard"], None, None, case.field_strength, tr_ms=tr, flip_deg=flip
        )
        last = [""]

        def progress(fraction: float, what: str) -> None:
            stage = what.split(" dose")[0] if what.startswith("synthesizing") else what
            if stage != last[0]:
                stages.append((time.perf_counter() - t0, time.process_time() - c0, stage))
                last[0] = stage

        result = synthesize_upload(
            synth,
            uploaded,
            [d / 100 for d in args.doses],
            root / "export",
            model_name=synth.name,
            progress=progress,
        )
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        sizes = {fmt: path.stat().st_size / 1024**2 for fmt, path in result.exports.items()}
    print(
        f"case {folder.name}: {' × '.join(map(str, case.native.shape))} voxels of "
        f"{' × '.join(f'{s:g}' for s in case.native.spacing)} mm; {synth.name}; {args.threads} threads; "
        f"{machine()}"
    )
    print(f"  {'stage':<45} {'wall':>7} {'CPU':>7}")
    for (start, cstart, what), (end, cend, _) in zip(stages, [*stages[1:], (total, cpu, "")], strict=True):
        if what != "done":
            print(f"  {what:<45} {end - start:6.1f}s {cend - cstart:6.1f}s")
    print(f"exports: NIfTI {sizes['NIfTI']:.1f} MiB, DICOM {sizes['DICOM']:.1f} MiB")
    print(
        f"total {total:.1f} s wall, {cpu:.1f} s CPU (all threads) for {len(args.doses)} doses "
        f"(target ≤ 60 s wall on 2 cores); load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
