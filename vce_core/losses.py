"""Every loss the seed papers train with, for 2-D ``[B, C, H, W]`` and 3-D ``[B, C, D, H, W]`` tensors.

Adversarial
    :func:`wgan_critic_loss`, :func:`wgan_generator_loss`, :func:`gradient_penalty` (WGAN-GP with
    interpolated conditions, seed 000), :func:`smooth_dose_labels`, :func:`sample_generated_doses`;
    :func:`lsgan_losses` (seed 002); :func:`bce_mse_discriminator_loss` / :func:`bce_mse_generator_loss`
    (seed 003).
Content
    :func:`np_loss` (seed 000's noise-preserving Wasserstein patch loss; exact by sorting, or IPOT as in the
    paper via :func:`ipot_wasserstein`), :func:`l1_loss`, :func:`mse_loss`, :func:`ssim_loss`,
    :func:`local_loss` (seed 001), :func:`pixelwise_gradient_loss` (seed 002, eq. 2),
    :class:`VGGPerceptualLoss` (VGG-16 up to relu3_3; seeds 000 and 003), :func:`multiscale_loss` (any
    content loss over the generator's output heads).

Images are float tensors in normalised units; all losses are differentiable and return 0-d tensors unless
stated otherwise. Scores are the raw (unbounded) outputs of a critic/discriminator, shape ``[B]`` (any shape
is accepted and averaged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.errors import VCEInputError

__all__ = [
    "LSGANLosses",
    "VGGPerceptualLoss",
    "bce_mse_discriminator_loss",
    "bce_mse_generator_loss",
    "downsample_like",
    "extract_patches",
    "gradient_penalty",
    "ipot_wasserstein",
    "l1_loss",
    "local_loss",
    "lsgan_losses",
    "mse_loss",
    "multiscale_loss",
    "np_loss",
    "patchwise_wasserstein",
    "pixelwise_gradient_loss",
    "sample_generated_doses",
    "sample_patch_offset",
    "smooth_dose_labels",
    "ssim_loss",
    "wasserstein_1d",
    "wgan_critic_loss",
    "wgan_generator_loss",
]

Condition = Mapping[str, Tensor | float] | Sequence[Tensor | float]


# ---------------------------------------------------------------------------------------------------------
# Shape helpers
# ---------------------------------------------------------------------------------------------------------


def _spatial_dims(x: Tensor, name: str = "input") -> int:
    if not isinstance(x, Tensor) or x.ndim not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise VCEInputError(
            f"{name} has shape {shape}", expected="[B, C, H, W] (2-D) or [B, C, D, H, W] (3-D)"
        )
    return x.ndim - 2


def _same_shape(pred: Tensor, target: Tensor) -> int:
    d = _spatial_dims(pred, "pred")
    if pred.shape != target.shape:
        raise VCEInputError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape",
            expected="prediction and target of the same shape",
        )
    return d


def downsample_like(target: Tensor, like: Tensor) -> Tensor:
    """Average-pool ``target [B, C, *S]`` to the spatial size of ``like [B, C, *(S / f)]`` (integer ``f``).

    This is how the multi-scale output heads of the generator are compared with the full-resolution target.
    """
    d = _spatial_dims(target, "target")
    size, small = target.shape[2:], like.shape[2:]
    if len(small) != d or any(s % t for s, t in zip(size, small, strict=True)):
        raise VCEInputError(
            f"cannot average-pool a target of size {tuple(size)} to {tuple(small)}",
            expected="output sizes that divide the target size",
        )
    factors = {s // t for s, t in zip(size, small, strict=True)}
    if len(factors) != 1:
        raise VCEInputError(
            f"target {tuple(size)} and output {tuple(small)} differ by unequal factors per axis",
            expected="the same down-sampling factor in every axis",
        )
    factor = factors.pop()
    if factor == 1:
        return target
    pool = F.avg_pool2d if d == 2 else F.avg_pool3d
    return pool(target, factor)


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise VCEInputError(f"{len(weights)} scale weights for {n} outputs", expected="one weight per output")
    return weights


def multiscale_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    preds: Tensor | Sequence[Tensor],
    target: Tensor,
    weights: Sequence[float] | None = None,
) -> Tensor:
    """``sum_k weights[k] * loss_fn(preds[k], downsample_like(target, preds[k]))``.

    ``preds`` is the generator's list of heads (full, 1/2, 1/4 ... resolution) or a single tensor;
    ``target`` is at full resolution. ``weights`` defaults to 1 per head.
    """
    preds = [preds] if isinstance(preds, Tensor) else list(preds)
    weights = _weights(len(preds), weights)
    return sum(w * loss_fn(p, downsample_like(target, p)) for w, p in zip(weights, preds, strict=True))


# ---------------------------------------------------------------------------------------------------------
# Adversarial losses
# ---------------------------------------------------------------------------------------------------------


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Critic side of the Wasserstein GAN loss (minimised): ``mean(f(fake)) - mean(f(real))``.

    ``real_scores``/``fake_scores``: critic outputs ``[B]`` for real residuals (with smoothed real doses)
    and for generated residuals (with their sampled doses; detach the generator output for this step).
    """
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """Generator side of the Wasserstein GAN loss (minimised): ``-mean(f(fake))``, ``fake_scores [B]``."""
    return -fake_scores.mean()


def _condition_items(cond: Condition, name: str) -> tuple[list[object], list[Tensor | float]]:
    if isinstance(cond, Mapping):
        return list(cond.keys()), list(cond.values())
    if isinstance(cond, Sequence) and not isinstance(cond, str | bytes):
        return list(range(len(cond))), list(cond)
    raise VCEInputError(f"{name} is a {type(cond).__name__}", expected="a dict or a tuple of critic inputs")


def gradient_penalty(
    critic: Callable[..., Tensor],
    real: Tensor,
    fake: Tensor,
    cond_real: Condition,
    cond_fake: Condition,
    lambda_gp: float = 100.0,
    *,
    condition_gradient: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Seed 000's ``λ_GP · L_GP``: ``λ E[(‖∇f(h(α, y, ŷ), h(α, c, ĉ))‖₂ - 1)²]`` with ``h = αŷ + (1-α)y``.

    Images AND conditions are interpolated with the same ``α ~ U(0, 1)`` per sample, and the gradient is
    taken with respect to the interpolated image and every floating-point condition (the critic must be
    1-Lipschitz in all its arguments); the norm is over all of them together, per sample.

    Parameters
    ----------
    critic:
        Called as ``critic(residual, *cond)`` for a tuple/list condition or ``critic(residual, **cond)`` for a
        dict; must return ``[B]`` scores. For :class:`~vce_core.models.ld_cgan.LowDoseCritic` the condition is
        ``(native [B,C,*S], standard_dose [B,C,*S], dose [B], field_strength [B])`` (or the same as a
        dict with those keys). Real and fake conditions differ only in the dose (smoothed real vs sampled).
    real, fake:
        ``[B, C, *S]`` real residuals ``y_LD`` and generated ``ŷ_LD`` (detached or not: the penalty only
        differentiates the interpolate).
    cond_real, cond_fake:
        The critic's extra inputs for the real and the generated sample, same structure. Entries may be
        tensors with a leading batch axis, 0-d tensors or numbers (broadcast over the batch); non-floating
        entries must be equal in both and are passed through unchanged.
    lambda_gp:
        Weight λ_GP (100 in the paper).
    condition_gradient:
        ``False`` penalises only the gradient w.r.t. the image (standard WGAN-GP).
    generator:
        Random generator for ``α``.

    Returns
    -------
    Tensor
        0-d penalty, already multiplied by ``lambda_gp``.
    """
    if real.shape != fake.shape:
        raise VCEInputError(
            f"real {tuple(real.shape)} and fake {tuple(fake.shape)} residuals differ in shape",
            expected="residuals of the same shape",
        )
    keys_r, vals_r = _condition_items(cond_real, "cond_real")
    keys_f, vals_f = _condition_items(cond_fake, "cond_fake")
    if keys_r != keys_f:
        raise VCEInputError(
            f"cond_real has entries {keys_r} but cond_fake has {keys_f}",
            expected="the same critic inputs for real and generated samples",
        )
    batch = real.shape[0]
    alpha = torch.rand(batch, generator=generator, device=generator.device if generator else "cpu")
    alpha = alpha.to(device=real.device, dtype=real.dtype)
    image = _interpolate(alpha, real, fake).requires_grad_(True)
    mixed, mixed_floats = _interpolate_conditions(keys_r, vals_r, vals_f, alpha, real)
    differentiate = [image]
    if condition_gradient:
        differentiate += [m.requires_grad_(True) for m in mixed_floats]

    with torch.enable_grad():
        if isinstance(cond_real, Mapping):
            scores = critic(image, **dict(zip(keys_r, mixed, strict=True)))
        else:
            scores = critic(image, *mixed)
        grads = torch.autograd.grad(scores.sum(), differentiate, create_graph=True, allow_unused=True)
    squared = torch.zeros(batch, device=real.device, dtype=real.dtype)
    for g in grads:
        if g is not None:
            squared = squared + g.reshape(batch, -1).pow(2).sum(1)
    norm = torch.sqrt(squared + 1e-12)
    return lambda_gp * (norm - 1).pow(2).mean()


def _interpolate(alpha: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``α·b + (1 − α)·a`` per sample (``alpha [B]`` broadcast over ``a``'s other axes), detached."""
    al = alpha.reshape(alpha.shape[0], *([1] * (a.ndim - 1)))
    return (al * b + (1 - al) * a).detach()


def _interpolate_conditions(
    keys: list[object],
    vals_real: list[Tensor | float],
    vals_fake: list[Tensor | float],
    alpha: Tensor,
    like: Tensor,
) -> tuple[list[object], list[Tensor]]:
    """The critic's conditions at the interpolate, and the floating-point ones among them.

    Floating-point entries (``[B, ...]`` tensors, 0-d tensors or numbers, broadcast over the batch) are
    interpolated with ``alpha [B]`` in ``like``'s dtype and device; other entries must be equal in both and
    pass through unchanged.
    """
    batch = alpha.shape[0]
    mixed: list[object] = []
    floats: list[Tensor] = []
    for key, a, b in zip(keys, vals_real, vals_fake, strict=True):
        ta = torch.as_tensor(a, device=like.device)
        tb = torch.as_tensor(b, device=like.device)
        if not (ta.is_floating_point() and tb.is_floating_point()):
            if not torch.equal(ta, tb):
                raise VCEInputError(
                    f"condition {key!r} is not floating point and differs between real and fake",
                    expected="floating-point conditions, or equal ones",
                )
            mixed.append(a)
            continue
        if ta.ndim == 0:
            ta = ta.expand(batch)
        if tb.ndim == 0:
            tb = tb.expand(batch)
        if ta.shape != tb.shape or ta.shape[0] != batch:
            raise VCEInputError(
                f"condition {key!r} has shapes {tuple(ta.shape)} (real) and {tuple(tb.shape)} (fake)",
                expected=f"equal shapes with a leading batch axis of {batch}",
            )
        m = _interpolate(alpha, ta.to(like.dtype), tb.to(like.dtype))
        floats.append(m)
        mixed.append(m)
    return mixed, floats


def smooth_dose_labels(
    dose: Tensor,
    std: float = 0.05,
    *,
    low: float = 0.0,
    high: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Label smoothing of the real doses (seed 000): ``clip(d + N(0, std²), low, high)``.

    ``dose [B]`` is a fraction of the standard dose; the result is clipped to ``[low, high]`` = ``[0, 1]``
    (a dose is never negative nor above the standard dose), so 0.1 stays within ``0.1 ± 3·0.05`` but never
    crosses 0.
    """
    noise = torch.randn(dose.shape, generator=generator, device=generator.device if generator else "cpu")
    return (dose + std * noise.to(device=dose.device, dtype=dose.dtype)).clamp(low, high)


def sample_generated_doses(
    batch: int,
    low: float = 0.05,
    high: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Artificial doses for generated samples: ``[batch]`` draws of ``d̂ ~ U[low, high]`` (seed 000)."""
    if not 0.0 <= low <= high:
        raise VCEInputError(f"dose range [{low}, {high}]", expected="0 <= low <= high")
    u = torch.rand(batch, generator=generator, device=generator.device if generator else "cpu", dtype=dtype)
    return (low + (high - low) * u).to(device=device)


class LSGANLosses(NamedTuple):
    """Both least-squares GAN objectives (seed 002), 0-d tensors."""

    discriminator: Tensor
    generator: Tensor


def lsgan_losses(real_scores: Tensor, fake_scores: Tensor) -> LSGANLosses:
    """Least-squares GAN (Mao et al., used by seed 002) with labels real = 1, fake = 0.

    ``discriminator = ½ E[(D(real) - 1)²] + ½ E[D(fake)²]`` and ``generator = ½ E[(D(fake) - 1)²]``.
    Scores are raw discriminator outputs (any shape). For the discriminator step pass the scores of a
    detached fake; for the generator step use ``.generator`` computed from non-detached fake scores.
    """
    discriminator = 0.5 * ((real_scores - 1).pow(2).mean() + fake_scores.pow(2).mean())
    generator = 0.5 * (fake_scores - 1).pow(2).mean()
    return LSGANLosses(discriminator, generator)


def bce_mse_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Seed 003's discriminator loss ``D_MSE + D_BCE``: real labelled 1, generated labelled 0.

    ``BCEWithLogits(real, 1) + BCEWithLogits(fake, 0) + MSE(real, 1) + MSE(fake, 0)``, each a mean over
    elements; the MSE is applied to the raw outputs (the paper does not say; this is pix2pix's LSGAN term).
    """
    ones, zeros = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
    bce = F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(
        fake_logits, zeros
    )
    mse = F.mse_loss(real_logits, ones) + F.mse_loss(fake_logits, zeros)
    return bce + mse


def bce_mse_generator_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of seed 003's adversarial loss: ``BCEWithLogits(fake, 1) + MSE(fake, 1)``."""
    ones = torch.ones_like(fake_logits)
    return F.binary_cross_entropy_with_logits(fake_logits, ones) + F.mse_loss(fake_logits, ones)


# ---------------------------------------------------------------------------------------------------------
# Noise-preserving Wasserstein patch loss (seed 000, section 2.2)
# ---------------------------------------------------------------------------------------------------------


def sample_patch_offset(
    patch_size: int, spatial_dims: int, generator: torch.Generator | None = None
) -> tuple[int, ...]:
    """A random patch-grid offset ``o`` uniform in ``{0, 1, ..., ⌈n/2⌉}^d`` (seed 000)."""
    high = math.ceil(patch_size / 2) + 1
    device = generator.device if generator is not None else "cpu"
    return tuple(int(v) for v in torch.randint(0, high, (spatial_dims,), generator=generator, device=device))


def extract_patches(x: Tensor, patch_size: int, offset: Sequence[int] | None = None) -> Tensor:
    """Non-overlapping ``n^d`` patches at ``p + o``, ``p ∈ {0, n, 2n, ...}^d``, periodic boundary.

    Parameters
    ----------
    x:
        ``[B, C, *S]`` with every ``S_i`` divisible by ``patch_size``.
    patch_size:
        Patch width ``n``.
    offset:
        Grid offset ``o`` (one int per spatial axis, default zeros); the image is rolled by ``-o`` so the
        patches that cross the border wrap around (``torch.roll``).

    Returns
    -------
    Tensor
        ``[B, C, P, n^d]`` with ``P = prod(S_i / n)`` patches in raster order.
    """
    d = _spatial_dims(x)
    n = int(patch_size)
    if n < 1:
        raise VCEInputError(f"patch_size is {patch_size}", expected="a positive integer")
    size = tuple(x.shape[2:])
    if any(s % n for s in size):
        raise VCEInputError(
            f"spatial size {size} is not divisible by the patch size {n}",
            expected=f"every spatial size a multiple of {n}",
        )
    offset = (0,) * d if offset is None else tuple(int(o) for o in offset)
    if len(offset) != d:
        raise VCEInputError(f"offset {offset} for {d}-D images", expected=f"{d} integers")
    if any(offset):
        x = torch.roll(x, shifts=[-o for o in offset], dims=list(range(2, 2 + d)))
    b, c = x.shape[:2]
    split = [b, c]
    for s in size:
        split += [s // n, n]
    x = x.reshape(split)
    grid_axes = [2 + 2 * i for i in range(d)]
    inner_axes = [3 + 2 * i for i in range(d)]
    return x.permute(0, 1, *grid_axes, *inner_axes).reshape(b, c, -1, n**d)


def wasserstein_1d(a: Tensor, b: Tensor) -> Tensor:
    """Exact W1 between the uniform empirical distributions of ``a [..., N]`` and ``b [..., N]``.

    In 1-D the optimal plan between equally many, equally weighted samples pairs them in sorted order, so
    ``W1 = mean_i |sort(a)_i - sort(b)_i|`` (the value of seed 000's problem (2), ``C_ij = |a_i - b_j|``).
    Returns ``[...]``; differentiable (almost everywhere).
    """
    if a.shape != b.shape:
        raise VCEInputError(
            f"samples of shapes {tuple(a.shape)} and {tuple(b.shape)}", expected="equal shapes"
        )
    return (a.sort(dim=-1).values - b.sort(dim=-1).values).abs().mean(dim=-1)


def ipot_wasserstein(a: Tensor, b: Tensor, iters: int = 100, eps: float | None = None) -> Tensor:
    """W1 by the inexact proximal point method (IPOT, Xie et al. 2020), as seed 000's implementation.

    For every leading index, ``C_ij = |a_i - b_j|`` (``[..., N, M]``), uniform marginals ``1/N`` and ``1/M``;
    ``G = exp(-C / β)``, ``T = 1 1ᵀ``; each of the ``iters`` iterations does ``Q = G ⊙ T``, one Sinkhorn
    projection ``u = μ / (Q v)``, ``v = ν / (Qᵀ u)`` and ``T = diag(u) Q diag(v)``. All patches run at once
    as batched matrix products. The proximal parameter is ``β = max(C) / 10`` per distribution pair
    (seed 000's ``ε``) unless ``eps`` fixes it.

    The plan is computed without autograd and the result is ``<C, T>``; its gradient is ``T`` applied to
    ``∂C`` (the envelope theorem for the optimal plan), which is what differentiating through the solver
    converges to.

    Parameters
    ----------
    a, b:
        ``[..., N]`` and ``[..., M]`` samples (same leading shape).
    iters:
        Proximal point iterations (100 in the paper).
    eps:
        Fixed proximal parameter ``β`` (same units as the samples), or ``None`` for ``max(C) / 10``.

    Returns
    -------
    Tensor
        ``[...]`` transport costs ``<C, T>``, converging to the exact W1 (the last plan meets the column
        marginals exactly and the row marginals approximately, so it can lie slightly on either side).
    """
    if a.shape[:-1] != b.shape[:-1]:
        raise VCEInputError(
            f"samples of shapes {tuple(a.shape)} and {tuple(b.shape)}", expected="the same leading shape"
        )
    if iters < 1:
        raise VCEInputError(f"iters is {iters}", expected="at least one iteration")
    lead = a.shape[:-1]
    n, m = a.shape[-1], b.shape[-1]
    cost = (a.reshape(-1, n, 1) - b.reshape(-1, 1, m)).abs()  # [K, N, M]
    with torch.no_grad():
        c = cost.detach()
        tiny = torch.finfo(c.dtype).tiny
        if eps is None:
            beta = (c.amax(dim=(1, 2), keepdim=True) / 10).clamp_min(tiny)
        else:
            if eps <= 0:
                raise VCEInputError(f"eps is {eps}", expected="a positive proximal parameter")
            beta = torch.as_tensor(eps, dtype=c.dtype, device=c.device)
        # Entries that fall below `floor` are set to 0: they are negligible next to the marginals (1/N) and
        # would otherwise linger as subnormal numbers, which are slow on CPUs.
        floor = float(tiny / torch.finfo(c.dtype).eps)
        kernel = torch.exp(-c / beta)
        F.threshold_(kernel, floor, 0.0)
        plan = torch.ones_like(c)
        v = torch.full((c.shape[0], m, 1), 1.0 / m, dtype=c.dtype, device=c.device)
        for _ in range(iters):
            plan.mul_(kernel)  # Q = G ⊙ T
            u = (1.0 / n) / torch.bmm(plan, v).clamp_min(tiny)  # [K, N, 1]
            v = (1.0 / m) / torch.bmm(plan.transpose(1, 2), u).clamp_min(tiny)  # [K, M, 1]
            plan.mul_(u).mul_(v.transpose(1, 2))  # T = diag(u) Q diag(v)
            F.threshold_(plan, floor, 0.0)
    return (cost * plan).sum(dim=(1, 2)).reshape(lead)


def patchwise_wasserstein(
    pred: Tensor,
    target: Tensor,
    patch_size: int = 4,
    offset: Sequence[int] | None = None,
    method: Literal["exact", "ipot"] = "exact",
    ipot_iters: int = 100,
) -> Tensor:
    """W1 between the value distributions of paired patches: ``[B, C, P]`` (see :func:`extract_patches`)."""
    _same_shape(pred, target)
    p = extract_patches(pred, patch_size, offset)
    t = extract_patches(target, patch_size, offset)
    if method == "exact":
        return wasserstein_1d(p, t)
    if method == "ipot":
        return ipot_wasserstein(p, t, iters=ipot_iters)
    raise VCEInputError(f"method is {method!r}", expected="'exact' or 'ipot'")


def np_loss(
    pred: Tensor | Sequence[Tensor],
    target: Tensor | Sequence[Tensor],
    patch_size: int = 4,
    offset: bool | Sequence[int] = True,
    scales: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    *,
    method: Literal["exact", "ipot"] = "exact",
    ipot_iters: int = 100,
) -> Tensor:
    """Noise-preserving content loss ``ℓ_NP`` of seed 000 (section 2.2), optionally over several scales.

    ``ℓ_NP(ŷ, y) = Σ_p W(P_{p+o} ŷ, P_{p+o} y)`` over the non-overlapping ``n^d`` patches ``p``, where
    ``W`` is the Wasserstein-1 distance between the empirical value distributions of the paired patches (cost
    ``|ŷ_i - y_j|``, uniform weights), ``o`` one grid offset drawn uniformly from ``{0..⌈n/2⌉}^d`` with
    periodic boundary. Summed over patches (and channels), averaged over the batch.

    Parameters
    ----------
    pred:
        ``[B, C, *S]`` prediction, or the generator's list of heads ``[B, C, *S]``, ``[B, C, *S/2]``, ...
    target:
        ``[B, C, *S]`` full-resolution target (average-pooled to each head's size), or a list matching
        ``pred``.
    patch_size:
        Patch width ``n`` (4 in the paper); every (pooled) spatial size must be a multiple of it.
    offset:
        ``True``: a random offset per scale (the paper, one sample of the expectation); ``False``: none;
        a tuple of ints: that offset at every scale.
    scales:
        Weights of the scales (default 1 each).
    generator:
        Random generator for the offsets.
    method:
        ``"exact"``: W1 by sorting (exact, fast); ``"ipot"``: the paper's 100 IPOT iterations with
        ``ε = max(C)/10``.
    ipot_iters:
        IPOT iterations when ``method="ipot"``.

    Returns
    -------
    Tensor
        0-d loss (intensity units × number of patches).
    """
    preds = [pred] if isinstance(pred, Tensor) else list(pred)
    if isinstance(target, Tensor):
        targets = [downsample_like(target, p) for p in preds]
    else:
        targets = list(target)
        if len(targets) != len(preds):
            raise VCEInputError(
                f"{len(preds)} predictions but {len(targets)} targets", expected="one per scale"
            )
    weights = _weights(len(preds), scales)
    total = torch.zeros((), device=preds[0].device, dtype=preds[0].dtype)
    for w, p, t in zip(weights, preds, targets, strict=True):
        d = _same_shape(p, t)
        if offset is True:
            o: Sequence[int] | None = sample_patch_offset(patch_size, d, generator)
        elif offset is False:
            o = None
        else:
            o = offset
        dist = patchwise_wasserstein(p, t, patch_size, o, method=method, ipot_iters=ipot_iters)
        total = total + w * dist.sum(dim=(1, 2)).mean()
    return total


# ---------------------------------------------------------------------------------------------------------
# Pixel, structural and local losses
# ---------------------------------------------------------------------------------------------------------


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements (seed 000's ℓ1 baseline, seed 001's L_MAE)."""
    _same_shape(pred, target)
    return (pred - target).abs().mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements (seed 003's L_MSE)."""
    _same_shape(pred, target)
    return (pred - target).pow(2).mean()


def local_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    reduction: Literal["mean", "mask_mean", "sum"] = "mean",
) -> Tensor:
    """Seed 001's local loss ``‖(f(X) - Y) ⊙ M‖₁``: L1 inside the enhancement mask ``M``.

    Parameters
    ----------
    pred, target:
        ``[B, C, *S]``.
    mask:
        ``[B, 1 or C, *S]`` binary (bool or 0/1) enhancement mask, e.g. ``(x_SD - x_NA) > 0.1``.
    reduction:
        ``"mean"``: divided by the number of elements, like the MAE term it is weighted against (seed 001's
        λ's assume this); ``"mask_mean"``: mean over the masked elements (0 for an empty mask);
        ``"sum"``: the plain norm.
    """
    _same_shape(pred, target)
    if mask.ndim != pred.ndim or mask.shape[0] != pred.shape[0] or mask.shape[2:] != pred.shape[2:]:
        raise VCEInputError(
            f"mask has shape {tuple(mask.shape)} for images {tuple(pred.shape)}",
            expected="a mask [B, 1 or C, *S] on the image grid",
        )
    weights = mask.to(pred.dtype).expand_as(pred)
    masked = ((pred - target) * weights).abs().sum()
    if reduction == "sum":
        return masked
    if reduction == "mean":
        return masked / pred.numel()
    if reduction == "mask_mean":
        return masked / weights.sum().clamp_min(1.0)
    raise VCEInputError(f"reduction is {reduction!r}", expected="'mean', 'mask_mean' or 'sum'")


def _gaussian_blur_valid(x: Tensor, window_size: int, sigma: float) -> Tensor:
    """Separable Gaussian filter without padding ("valid"): ``[B, C, *S]`` -> ``[B, C, *(S - w + 1)]``."""
    d = x.ndim - 2
    coords = torch.arange(window_size, dtype=x.dtype, device=x.device) - (window_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    channels = x.shape[1]
    conv = F.conv2d if d == 2 else F.conv3d
    for axis in range(d):
        shape = [1, 1] + [1] * d
        shape[2 + axis] = window_size
        x = conv(x, g.reshape(shape).expand(channels, *shape[1:]), groups=channels)
    return x


def ssim_loss(
    pred: Tensor,
    target: Tensor,
    data_range: float | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """``1 - SSIM(pred, target)`` (Wang et al. 2004; seed 001's L_SSIM), 2-D or 3-D, differentiable.

    Local statistics use a Gaussian window (``window_size`` per axis, ``sigma`` in voxels) over the valid
    region (no padding), population (co)variances, ``C1 = (k1 L)²``, ``C2 = (k2 L)²``; the SSIM map is
    averaged over voxels, channels and batch — the same numbers as ``skimage.metrics.structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` in 2-D.

    Parameters
    ----------
    pred, target:
        ``[B, C, *S]``, every ``S_i >= window_size``.
    data_range:
        Dynamic range ``L`` of the images; ``None`` takes ``max(target) - min(target)`` over the batch
        (detached).
    """
    _same_shape(pred, target)
    if window_size < 1 or window_size % 2 == 0:
        raise VCEInputError(f"window_size is {window_size}", expected="an odd positive integer")
    if min(pred.shape[2:]) < window_size:
        raise VCEInputError(
            f"images of size {tuple(pred.shape[2:])} are smaller than the SSIM window {window_size}",
            expected=f"every spatial size >= {window_size} (or a smaller window_size)",
        )
    if data_range is None:
        data_range = float((target.max() - target.min()).detach().clamp_min(1e-8))
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    stacked = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    mu_x, mu_y, xx, yy, xy = _gaussian_blur_valid(stacked, window_size, sigma).chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return 1 - ssim_map.mean()


def _forward_gradient(x: Tensor) -> Tensor:
    """Forward differences (seed 002 eq. 1) on the region where all exist: ``[B, C, d, *(S - 1)]``."""
    d = x.ndim - 2
    crop = [slice(None), slice(None)] + [slice(0, s - 1) for s in x.shape[2:]]
    parts = []
    for axis in range(d):
        shifted = list(crop)
        shifted[2 + axis] = slice(1, x.shape[2 + axis])
        parts.append(x[tuple(shifted)] - x[tuple(crop)])
    return torch.stack(parts, dim=2)


def pixelwise_gradient_loss(
    pred: Tensor,
    target: Tensor,
    eps: float = 1e-6,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """Seed 002's pixelwise gradient loss (eq. 2): ``-Σ_pixel (n_pred · n_target)²``.

    ``∇x(i, j) = (x(i+1, j) - x(i, j), x(i, j+1) - x(i, j))`` (eq. 1; a third component in 3-D) on the
    pixels where every forward difference exists, normalised as ``n = ∇x / (‖∇x‖ + ε)``. The squared dot
    product is 1 where the edges are parallel or anti-parallel and 0 where they are orthogonal or either
    image is flat, so the loss is minimal (``-1`` per pixel) when the shapes agree.

    Parameters
    ----------
    pred, target:
        ``[B, C, *S]``.
    eps:
        ε of the normalisation (in intensity units per voxel).
    reduction:
        ``"sum"``: eq. 2 exactly (sum over pixels and channels), averaged over the batch; ``"mean"``:
        divided by the number of pixels as well, so the loss lies in ``[-1, 0]`` independent of the size.
    """
    _same_shape(pred, target)

    def normalised(x: Tensor) -> Tensor:
        g = _forward_gradient(x)
        norm = torch.sqrt(g.pow(2).sum(dim=2, keepdim=True).clamp_min(1e-30))
        return g / (norm + eps)

    alignment = (normalised(pred) * normalised(target)).sum(dim=2).pow(2)  # [B, C, *(S-1)]
    if reduction == "mean":
        return -alignment.mean()
    if reduction == "sum":
        return -alignment.flatten(1).sum(1).mean()
    raise VCEInputError(f"reduction is {reduction!r}", expected="'mean' or 'sum'")


# ---------------------------------------------------------------------------------------------------------
# Perceptual loss
# ---------------------------------------------------------------------------------------------------------

# VGG-16 ``features`` up to relu3_3: (index in torchvision's ``features``, in, out) per convolution;
# ReLU after every convolution, 2x2 max-pooling after indices 2 and 7.
_VGG16_RELU3_3 = (
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
)
_VGG16_POOL_AFTER = (2, 7)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_vgg_state(path: Path) -> dict[str, Tensor]:
    expected = (
        "VGG-16 weights as .safetensors or .pth with torchvision's keys features.N.weight / features.N.bias "
        "(there is no download: save torchvision.models.vgg16(weights='IMAGENET1K_V1').state_dict() there)"
    )
    if not path.is_file():
        raise VCEInputError("the VGG-16 weights file does not exist", path=path, expected=expected)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif path.suffix in (".pth", ".pt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise VCEInputError(f"unknown weights format {path.suffix!r}", path=path, expected=expected)
    except VCEInputError:
        raise
    except Exception as err:  # any reader failure means an unreadable file
        raise VCEInputError(f"cannot read the weights ({err})", path=path, expected=expected) from err
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise VCEInputError("the file does not hold a state dict", path=path, expected=expected)
    features = {}
    for key, value in state.items():
        if isinstance(key, str) and "features." in key and isinstance(value, Tensor):
            features[key[key.index("features.") :]] = value
    missing, wrong = [], []
    for index, cin, cout in _VGG16_RELU3_3:
        for name, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{index}.{name}"
            if key not in features:
                missing.append(key)
            elif tuple(features[key].shape) != shape:
                wrong.append(f"{key} {tuple(features[key].shape)} instead of {shape}")
    if missing or wrong:
        problem = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"wrong shapes {', '.join(wrong)}" if wrong else "",
            )
            if part
        )
        raise VCEInputError(f"not VGG-16 weights: {problem}", path=path, expected=expected)
    return features


class VGGPerceptualLoss(nn.Module):
    """Perceptual loss ``mean |h(ŷ) - h(y)|`` with ``h`` = VGG-16 features up to relu3_3 (Johnson et al.).

    Seed 000's "VGG" content loss and seed 003's feature loss. The network is built here in plain torch
    (no torchvision) and its frozen weights come from a local file with torchvision's ``features.N.*``
    keys (.safetensors or .pth); nothing is downloaded.

    Input handling: each channel is a grayscale image repeated to RGB and normalised with the ImageNet
    statistics ``(x - mean) / std``, mean ``(0.485, 0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``, which
    assumes intensities roughly in ``[0, 1]``. 3-D inputs ``[B, C, D, H, W]`` are processed as 2-D slices
    along the last axis (the axial plane of a RAS volume, ``data[:, :, k]``), i.e. ``B·C·W`` images of
    ``D x H``; 2-D inputs ``[B, C, H, W]`` as ``B·C`` images.

    Parameters
    ----------
    weights_path:
        The weights file; :class:`VCEInputError` naming it if it is missing or is not VGG-16.
    """

    def __init__(self, weights_path: str | PathLike):
        super().__init__()
        self.weights_path = Path(weights_path)
        state = _load_vgg_state(self.weights_path)
        layers: list[nn.Module] = []
        for index, cin, cout in _VGG16_RELU3_3:
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data.copy_(state[f"features.{index}.weight"])
            conv.bias.data.copy_(state[f"features.{index}.bias"])
            layers += [conv, nn.ReLU(inplace=False)]
            if index in _VGG16_POOL_AFTER:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.features.requires_grad_(False)
        self.features.eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Keep the frozen feature extractor in eval mode whatever the surrounding module does."""
        super().train(mode)
        self.features.eval()
        return self

    def _as_rgb_slices(self, x: Tensor) -> Tensor:
        d = _spatial_dims(x)
        if d == 3:
            x = x.movedim(-1, 2).flatten(0, 2)  # [B, C, W, D, H] -> [B*C*W, D, H]
        else:
            x = x.flatten(0, 1)  # [B*C, H, W]
        x = x.unsqueeze(1).expand(-1, 3, -1, -1).to(self.mean.dtype)
        return (x - self.mean) / self.std

    def features_of(self, x: Tensor) -> Tensor:
        """relu3_3 features ``[N, 256, H/4, W/4]`` of the slices of ``x`` (see the class docstring)."""
        return self.features(self._as_rgb_slices(x))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``, ``target``: ``[B, C, H, W]`` or ``[B, C, D, H, W]`` -> 0-d mean |feature error|."""
        _same_shape(pred, target)
        return (self.features_of(pred) - self.features_of(target)).abs().mean()
