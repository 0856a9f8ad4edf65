"""Exact (sorting) vs IPOT noise-preserving loss on one batch, and both against POT's exact ``ot.emd2``.

The batch is seed 000's training shape: ``--batch`` (2) MRI-like volumes of ``--size``³ (64³: a smooth
phantom with Rician noise; prediction and target are two noise realisations), patches of ``4³`` -> 4096
patches per volume. Both methods use the same patch offset. IPOT runs all patches at once as batched
matrix iterations (``--iters`` = 100, the paper's setting). Times are the best of ``--repeats`` runs (exact:
forward and forward + backward) and of ``--ipot-repeats`` runs (IPOT: forward; its backward is one
elementwise product with the fixed plan).

Run from the repository root:
``python -m benchmarks.np_loss [--device cpu|cuda] [--size 64] [--batch 2] [--iters 100]``
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
import ot
import torch

from vce_core.losses import extract_patches, np_loss, patchwise_wasserstein, sample_patch_offset


def mri_like_pair(batch: int, size: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Rician-noise realisations ``[batch, 1, size, size, size]`` (float32) of smooth phantoms."""
    gen = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    radius = torch.sqrt(x**2 + y**2 + z**2)
    signal = 0.6 * torch.exp(-3 * radius**2) + 0.3 * (radius < 0.5) + 0.1 * torch.cos(4 * x)
    sigma = 0.05

    def realisation() -> torch.Tensor:
        real = signal + sigma * torch.randn(batch, 1, size, size, size, generator=gen)
        imag = sigma * torch.randn(batch, 1, size, size, size, generator=gen)
        return torch.sqrt(real**2 + imag**2)

    return realisation().to(device), realisation().to(device)


def best_time(fn: Callable[[], torch.Tensor], repeats: int, device: str) -> tuple[float, float]:
    """Best wall time of ``repeats`` calls (seconds) and the value of the last call."""
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        value = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--subset", type=int, default=256, help="patches compared with POT's ot.emd2")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the exact loss (best kept)")
    parser.add_argument("--ipot-repeats", type=int, default=1, help="timed runs of the IPOT loss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    pred, target = mri_like_pair(args.batch, args.size, args.seed, args.device)
    offset = sample_patch_offset(args.patch, 3, torch.Generator().manual_seed(args.seed))
    n_patches = (args.size // args.patch) ** 3
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(
        f"torch {torch.__version__}, device {args.device} ({device_name}), threads {torch.get_num_threads()}"
    )
    print(
        f"batch {args.batch} x {args.size}^3, patches {args.patch}^3 -> {n_patches} per volume "
        f"({args.batch * n_patches} in all), offset {offset}, IPOT iterations {args.iters}"
    )

    def loss(method: str, backward: bool) -> torch.Tensor:
        p = pred.clone().requires_grad_(backward)
        value = np_loss(p, target, args.patch, offset=offset, method=method, ipot_iters=args.iters)
        if backward:
            value.backward()
        return value.detach()

    t_exact, exact = best_time(lambda: loss("exact", False), args.repeats, args.device)
    t_exact_bw, _ = best_time(lambda: loss("exact", True), args.repeats, args.device)
    t_ipot, ipot = best_time(lambda: loss("ipot", False), args.ipot_repeats, args.device)
    print(
        f"exact (sorting):  forward {t_exact * 1e3:10.2f} ms   forward+backward {t_exact_bw * 1e3:10.2f} ms"
    )
    print(f"IPOT ({args.iters} iter.): forward {t_ipot * 1e3:10.2f} ms")
    print(f"speed-up of exact over IPOT (forward): {t_ipot / t_exact:.1f}x")
    print(f"loss: exact {exact:.6f}   IPOT {ipot:.6f}   relative difference {abs(ipot - exact) / exact:.3e}")

    # POT reference on a random subset of patches (float64 cost on the same float32 values)
    per_patch = patchwise_wasserstein(pred, target, args.patch, offset).flatten().double().cpu().numpy()
    p_patches = extract_patches(pred, args.patch, offset).reshape(-1, args.patch**3).double().cpu().numpy()
    t_patches = extract_patches(target, args.patch, offset).reshape(-1, args.patch**3).double().cpu().numpy()
    rng = np.random.default_rng(args.seed)
    subset = rng.choice(len(per_patch), size=min(args.subset, len(per_patch)), replace=False)
    weights = np.full(args.patch**3, 1.0 / args.patch**3)
    start = time.perf_counter()
    reference = np.array(
        [ot.emd2(weights, weights, np.abs(p_patches[i][:, None] - t_patches[i][None, :])) for i in subset]
    )
    t_pot = time.perf_counter() - start
    rel = abs(per_patch[subset].sum() - reference.sum()) / reference.sum()
    max_abs = np.abs(per_patch[subset] - reference).max()
    print(
        f"POT ot.emd2 on {len(subset)} patches ({t_pot * 1e3:.1f} ms): relative difference of the sum "
        f"{rel:.3e}, max per-patch |exact - emd2| {max_abs:.3e}"
    )


if __name__ == "__main__":
    main()
