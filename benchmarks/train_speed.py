"""Training speed (generator iterations per second) of a config, with the real trainer code.

    python -m benchmarks.train_speed --config configs/ld_cgan_2d_np.yaml [--set key=value ...]
        [--device cpu|cuda] [--threads 1] [--iterations 10] [--warmup 2] [--data <case folders>]

Without ``--data`` it writes a few synthetic cases (ellipsoid "brain", an enhancing blob, noisy low doses at
0.1/0.2/0.33, T2/FLAIR/ADC extras for virtual-contrast configs, 2 mm-like size) to a temporary folder, so
only the model, loss and optimiser cost is measured on the config's crop/batch (and the objective's steps).
Prints it/s, s/it, the projected iterations in the config's ``max_minutes`` and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vce_core.io import Case, Volume, save_case
from vce_core.train import Trainer
from vce_core.train_config import load_config


def synthetic_cases(root: Path, n: int = 3, shape: tuple[int, int, int] = (100, 116, 24)) -> list[str]:
    """Write ``n`` synthetic cases of ``shape`` voxels under ``root``; return their folders."""
    rng = np.random.default_rng(0)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    brain = (i / 0.85) ** 2 + (j / 0.85) ** 2 + (k / 0.9) ** 2 < 1
    folders = []
    for c in range(n):
        native = np.where(brain, 100 + 20 * np.sin(5 * i + c) + rng.normal(0, 3, shape), 0).astype(np.float32)
        enh = 60 * np.exp(-((i - 0.3) ** 2 + (j + 0.2) ** 2 + k**2) / 0.02) * brain
        sd = native + enh + rng.normal(0, 3, shape) * brain
        lows = {
            d: Volume((native + d * enh + rng.normal(0, 3, shape) * brain).astype(np.float32))
            for d in (0.1, 0.2, 0.33)
        }
        extra = {
            name: Volume(np.where(brain, level - 30 * np.cos(4 * j + c), 0).astype(np.float32))
            for name, level in (("t2", 80.0), ("flair", 120.0), ("adc", 0.9))
        }
        case = Case(
            Volume(native),
            Volume(sd.astype(np.float32)),
            lows,
            3.0,
            extra=extra,
            meta={"case_id": f"bench-{c}"},
        )
        folder = root / f"bench-{c}"
        save_case(case, folder)
        folders.append(str(folder))
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the config's)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--data", nargs="*", help="case folders (default: synthetic cases)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthetic_cases(Path(tmp) / "cases")
        overrides = [*args.overrides, f"device={args.device}", "val_fraction=0", "val_data=[]"]
        if args.threads:
            overrides.append(f"threads={args.threads}")
        cfg = load_config(args.config, overrides)
        cfg.data = list(data)
        trainer = Trainer(cfg, run_dir=Path(tmp) / "run")
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

        for _ in range(args.warmup):
            trainer.iteration()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            trainer.iteration()
        sync()
        dt = (time.perf_counter() - t0) / args.iterations
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"config {args.config} {' '.join(args.overrides)}")
    print(
        f"device {trainer.device}, torch threads {torch.get_num_threads()}, mode {cfg.mode}, "
        f"crop {cfg.crop}, "
        f"batch {cfg.batch_size}, task {cfg.task}, objective {trainer.objective.name}"
    )
    print(f"{1 / dt:.3f} it/s ({dt:.3f} s/it) over {args.iterations} iterations after {args.warmup} warm-up")
    if cfg.max_minutes:
        print(f"projected iterations in max_minutes={cfg.max_minutes:g}: {int(60 * cfg.max_minutes / dt)}")
    if trainer.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"peak RSS {peak_mb:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
