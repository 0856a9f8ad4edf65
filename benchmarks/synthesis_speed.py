"""Synthesis speed: one 197×233 axial slice (p50 over repeats) and one full 1 mm volume 197×233×189.

    python -m benchmarks.synthesis_speed [--model assets/models/<name>] [--config configs/ld_cgan_2d_np.yaml]
        [--threads 2] [--repeats 20] [--device cpu] [--no-volume]

With ``--model`` the checkpoint is timed; otherwise a freshly initialised generator built from the config's
``generator``/``generator_kwargs`` (default: configs/ld_cgan_2d_np.yaml) — the speed does not depend on the
weights. Inputs are a synthetic ellipsoid head on the 1 mm MNI-like grid; virtual-contrast models (seeds
001–004) get the inputs their card lists (synthetic T2/FLAIR/ADC) and synthesize the standard dose.
Targets on 2 CPU cores: slice ≤ 100 ms, volume ≤ 30 s. Prints p50/p90 slice time, volume time and peak
memory (RSS / GPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vce_core.checkpoint import ModelCard, write_checkpoint
from vce_core.models import build_model
from vce_core.synthesis import Synthesizer
from vce_core.train_config import load_config, model_kwargs

SHAPE = (197, 233, 189)
SEQUENCE = {"tr_ms": 6.8, "flip_deg": 8.0}
"""T1 sequence of the synthetic head (a 3-D SPGR); only generators built on the physics baseline use it."""


def fresh_checkpoint(config: str, folder: Path) -> Path:
    """A checkpoint folder with a freshly initialised generator of ``config``."""
    cfg = load_config(config)
    model = build_model(cfg.generator, **model_kwargs(cfg, "generator"))
    task = (
        {"task": cfg.task, "inputs": cfg.inputs, "optional_inputs": cfg.optional_inputs, "target": cfg.target}
        if cfg.task == "virtual_contrast"
        else {}
    )
    card = ModelCard(
        name=f"{cfg.name}-untrained",
        model=cfg.generator,
        config=model.config,
        data_mode=cfg.mode,
        context=cfg.context if cfg.mode == "2.5d" else 0,
        patch_size=cfg.crop,
        normalization={"method": cfg.normalization},
        **task,
    )
    return write_checkpoint(folder, model.state_dict(), card)


def head(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic native and standard-dose volumes (ellipsoid brain with texture, one enhancing blob)."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, s, dtype=np.float32) for s in shape), indexing="ij")
    brain = (i / 0.8) ** 2 + (j / 0.85) ** 2 + (k / 0.8) ** 2 < 1
    native = np.where(brain, 300 + 60 * np.sin(7 * i) * np.cos(5 * j), 0) + rng.normal(0, 8, shape)
    enh = 250 * np.exp(-((i - 0.3) ** 2 + (j + 0.2) ** 2 + k**2) / 0.01) * brain
    return native.astype(np.float32), (native + enh).astype(np.float32)


def contrast_inputs(names: list[str], native: np.ndarray, sd: np.ndarray) -> dict[str, np.ndarray]:
    """Synthetic images for a virtual-contrast model's inputs (T2, FLAIR, ADC, low doses) on the head grid."""
    brain = native > 0.5 * native.max()
    extra = {"t2": 800.0, "flair": 600.0, "adc": 0.9}
    images = {"native": native}
    for name in names:
        if name.startswith("low_dose@"):
            d = float(name.split("@", 1)[1])
            images[name] = (native + d * (sd - native)).astype(np.float32)
        elif name != "native":
            images[name] = np.where(brain, extra.get(name, 500.0) * (1.2 - native / native.max()), 0).astype(
                np.float32
            )
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: fresh model from --config)")
    parser.add_argument("--config", default="configs/ld_cgan_2d_np.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-volume", action="store_true", help="skip the full-volume timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else fresh_checkpoint(args.config, Path(tmp) / "fresh")
        synth = Synthesizer.from_checkpoint(folder, device=args.device)
        native, sd = head()
        contrast = synth.task == "virtual_contrast"
        t = time.perf_counter()
        if contrast:
            prepared = synth.prepare_inputs(contrast_inputs(synth.inputs, native, sd))
        else:
            prepared = synth.prepare(native, sd, sequence=SEQUENCE)
        t_prepare = time.perf_counter() - t
        sync = torch.cuda.synchronize if synth.device.type == "cuda" else (lambda: None)
        k = SHAPE[2] // 2

        def one_slice(r: int) -> None:
            if contrast:
                synth.synthesize_slice(prepared, plane="axial", index=k)
            else:
                dose = 0.05 + 0.45 * r / max(args.repeats - 1, 1)
                synth.synthesize_slice(prepared, dose, 3.0, plane="axial", index=k, seed=r)

        one_slice(0)  # warm-up
        times = []
        for r in range(args.repeats):
            sync()
            t = time.perf_counter()
            one_slice(r)
            sync()
            times.append(time.perf_counter() - t)
        print(f"model {synth.name} ({synth.card.model} {json.dumps(synth.card.config)})")
        print(f"device {synth.device}, torch threads {torch.get_num_threads()}")
        print(f"prepare (brain mask + normalisation) {SHAPE}: {t_prepare:.2f} s")
        print(
            f"axial slice {SHAPE[0]}x{SHAPE[1]}: p50 {1000 * np.median(times):.1f} ms, "
            f"p90 {1000 * np.percentile(times, 90):.1f} ms over {args.repeats} repeats (target <= 100 ms)"
        )
        if not args.no_volume:
            sync()
            t = time.perf_counter()
            if contrast:
                synth.synthesize_prepared(prepared)
            else:
                synth.synthesize_prepared(prepared, 0.2, 3.0, seed=0)
            sync()
            print(f"full volume {SHAPE}: {time.perf_counter() - t:.1f} s (target <= 30 s)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if synth.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
