"""Tests of vce_core.losses against independent references (POT's exact OT, skimage's SSIM, numpy)."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm as normal_dist
from skimage.metrics import structural_similarity

from support import random_vgg_state
from vce_core import losses as L
from vce_core.errors import VCEInputError


def _emd2_per_patch(pred_patches: torch.Tensor, target_patches: torch.Tensor) -> np.ndarray:
    """POT reference: exact OT cost with C_ij = |x̂_i - x_j| and uniform weights, one value per patch."""
    p = pred_patches.reshape(-1, pred_patches.shape[-1]).double().numpy()
    t = target_patches.reshape(-1, target_patches.shape[-1]).double().numpy()
    n = p.shape[1]
    w = np.full(n, 1.0 / n)
    return np.array([ot.emd2(w, w, np.abs(a[:, None] - b[None, :])) for a, b in zip(p, t, strict=True)])


def _rician_pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Rician-noise realisations of one smooth MRI-like image (magnitude of complex Gaussian noise)."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    radius = np.sqrt(sum(a**2 for a in axes))
    signal = 0.6 * np.exp(-3 * radius**2) + 0.3 * (radius < 0.5) + 0.1 * np.cos(4 * axes[0])
    sigma = 0.05

    def realisation() -> np.ndarray:
        real = signal + sigma * rng.standard_normal(shape)
        imag = sigma * rng.standard_normal(shape)
        return np.sqrt(real**2 + imag**2)

    return (
        torch.from_numpy(realisation())[None, None],
        torch.from_numpy(realisation())[None, None],
    )


# ---------------------------------------------------------------------------------------------------------
# Noise-preserving loss
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 1, 16, 16, 16)])
def test_patch_wasserstein_equals_pot_emd2_on_random_patches(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(shape, generator=gen, dtype=torch.float64)
    target = 0.5 * torch.rand(shape, generator=gen, dtype=torch.float64) + 0.3
    offset = (1, 2, 0)[: len(shape) - 2]
    exact = L.patchwise_wasserstein(pred, target, 4, offset)
    ref = _emd2_per_patch(L.extract_patches(pred, 4, offset), L.extract_patches(target, 4, offset))
    np.testing.assert_allclose(exact.flatten().numpy(), ref, rtol=0, atol=1e-6)
    # the loss is the per-patch sum averaged over the batch
    loss = L.np_loss(pred, target, offset=offset)
    assert loss.item() == pytest.approx(ref.sum() / shape[0], abs=1e-6)


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)])
def test_patch_wasserstein_equals_pot_emd2_on_rician_mri_like_patches(spatial: tuple[int, ...]) -> None:
    pred, target = _rician_pair(spatial, seed=1)
    exact = L.patchwise_wasserstein(pred, target, 4, None)
    ref = _emd2_per_patch(L.extract_patches(pred, 4), L.extract_patches(target, 4))
    np.testing.assert_allclose(exact.flatten().numpy(), ref, rtol=0, atol=1e-6)
    # float32 (as in training) stays within 1e-6 relative of the float64 reference
    exact32 = L.np_loss(pred.float(), target.float(), offset=False)
    assert abs(exact32.item() - ref.sum()) / ref.sum() < 1e-6


def test_ipot_approaches_emd2_and_improves_with_iterations() -> None:
    pred, target = _rician_pair((16, 16, 16), seed=2)
    p, t = L.extract_patches(pred, 4)[0, 0, :4], L.extract_patches(target, 4)[0, 0, :4]
    ref = _emd2_per_patch(p, t)
    errors = []
    for iters in (10, 100, 1000):
        approx = L.ipot_wasserstein(p, t, iters=iters).numpy()
        errors.append(np.abs(approx - ref).sum() / ref.sum())
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] < 2e-2  # the paper's 100 iterations
    assert errors[2] < 1e-4
    # np_loss(method="ipot") runs the same solver over all patches of an image
    pred2, target2 = _rician_pair((16, 16), seed=2)
    ref2 = _emd2_per_patch(L.extract_patches(pred2, 4), L.extract_patches(target2, 4))
    loss = L.np_loss(pred2, target2, offset=False, method="ipot", ipot_iters=1000)
    assert loss.item() == pytest.approx(ref2.sum(), rel=1e-4)


def test_ipot_fixed_eps_and_float32_stay_finite() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(8, 64, generator=gen) * 3
    b = torch.randn(8, 64, generator=gen)
    out = L.ipot_wasserstein(a, b, iters=100)
    assert torch.isfinite(out).all()
    fixed = L.ipot_wasserstein(a.double(), b.double(), iters=300, eps=0.5)
    np.testing.assert_allclose(fixed.numpy(), L.wasserstein_1d(a, b).double().numpy(), rtol=1e-3)
    with pytest.raises(VCEInputError):
        L.ipot_wasserstein(a, b, eps=0.0)


def test_gaussian_closed_form() -> None:
    # exact normal quantiles: W1(N(μ1, σ), N(μ2, σ)) = |μ1 - μ2| (sorted samples differ by the shift)
    levels = (np.arange(64) + 0.5) / 64
    q = torch.from_numpy(normal_dist.ppf(levels))
    mu1, mu2, sigma = 0.7, -0.2, 0.3
    a = (mu1 + sigma * q)[torch.randperm(64)]
    b = (mu2 + sigma * q)[torch.randperm(64)]
    assert L.wasserstein_1d(a, b).item() == pytest.approx(abs(mu1 - mu2), abs=1e-12)
    # large random samples: W1 -> |μ1 - μ2| for equal σ
    gen = torch.Generator().manual_seed(4)
    x = mu1 + sigma * torch.randn(100_000, generator=gen, dtype=torch.float64)
    y = mu2 + sigma * torch.randn(100_000, generator=gen, dtype=torch.float64)
    assert L.wasserstein_1d(x, y).item() == pytest.approx(abs(mu1 - mu2), abs=5e-3)
    # an image shifted by c: every patch costs c, so the loss is c times the number of patches
    img = torch.rand(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    assert L.np_loss(img + 0.25, img).item() == pytest.approx(0.25 * 16, abs=1e-12)


@pytest.mark.parametrize("method", ["exact", "ipot"])
def test_np_loss_gradients_finite_and_nonzero(method: str) -> None:
    pred, target = _rician_pair((16, 16, 16), seed=5)
    pred = pred.float().requires_grad_(True)
    loss = L.np_loss(pred, target.float(), method=method, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


def test_wasserstein_1d_gradcheck() -> None:
    gen = torch.Generator().manual_seed(6)
    a = torch.randn(5, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.wasserstein_1d(x, b), (a,))


def test_offset_periodic_boundary_pairing_and_invariance() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.arange(64, dtype=torch.float64).reshape(1, 1, 8, 8)
    patches = L.extract_patches(x, 4, (1, 2))
    # the first patch starts at the offset; the last one wraps around both borders
    torch.testing.assert_close(patches[0, 0, 0], x[0, 0, 1:5, 2:6].flatten())
    wrapped = x[0, 0][torch.tensor([5, 6, 7, 0])][:, torch.tensor([6, 7, 0, 1])]
    torch.testing.assert_close(patches[0, 0, 3], wrapped.flatten())
    # every value appears exactly once: the patches tile the (periodic) image
    assert sorted(patches.flatten().tolist()) == list(range(64))

    img = torch.rand(2, 1, 16, 16, generator=gen)
    other = torch.rand(2, 1, 16, 16, generator=gen)
    losses_same = {L.np_loss(img, img, offset=o).item() for o in [(0, 0), (1, 2), (2, 1), (2, 2)]}
    assert losses_same == {0.0}
    losses_diff = [L.np_loss(other, img, offset=o).item() for o in [(0, 0), (1, 2), (2, 1)]]
    assert len(set(losses_diff)) == 3  # a different pairing of patches gives a different loss
    offsets = {L.sample_patch_offset(4, 3, gen) for _ in range(200)}
    assert {v for o in offsets for v in o} == {0, 1, 2}  # {0, ..., ceil(n/2)}
    assert L.np_loss(other, img, generator=torch.Generator().manual_seed(9)).item() == pytest.approx(
        L.np_loss(other, img, generator=torch.Generator().manual_seed(9)).item()
    )


def test_np_loss_multiscale_heads_use_pooled_targets_and_weights() -> None:
    gen = torch.Generator().manual_seed(8)
    target = torch.rand(2, 1, 32, 32, generator=gen)
    heads = [torch.rand(2, 1, 32 // 2**k, 32 // 2**k, generator=gen) for k in range(3)]
    weights = [1.0, 0.5, 0.25]
    total = L.np_loss(heads, target, offset=(1, 1), scales=weights)
    expected = sum(
        w * L.np_loss(h, F.avg_pool2d(target, 2**k), offset=(1, 1))
        for k, (w, h) in enumerate(zip(weights, heads, strict=True))
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(VCEInputError, match="multiple of 4"):
        L.np_loss(torch.rand(1, 1, 10, 12), torch.rand(1, 1, 10, 12))
    with pytest.raises(VCEInputError):
        L.np_loss(heads, target, scales=[1.0])


# ---------------------------------------------------------------------------------------------------------
# Adversarial losses
# ---------------------------------------------------------------------------------------------------------


class _LinearCritic(torch.nn.Module):
    """f(r, native, standard_dose, dose, B) = <w, (r, native, standard_dose, dose, B)> with ‖w‖ = scale."""

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [math.prod(shape)] * 3 + [1, 1]
        w = torch.randn(sum(sizes), generator=gen, dtype=torch.float64)
        w = scale * w / w.norm()
        self.parts = [p.reshape(shape) if p.numel() > 1 else p for p in w.split(sizes)]

    def forward(self, residual, native, standard_dose, dose, field_strength):  # noqa: ANN001, ANN201
        dims = tuple(range(1, residual.ndim))
        return (
            (residual * self.parts[0]).sum(dims)
            + (native * self.parts[1]).sum(dims)
            + (standard_dose * self.parts[2]).sum(dims)
            + dose * self.parts[3]
            + field_strength * self.parts[4]
        )


def test_gradient_penalty_zero_for_unit_lipschitz_linear_critic() -> None:
    gen = torch.Generator().manual_seed(10)
    shape = (1, 8, 8)
    real, fake = torch.randn(4, *shape, generator=gen, dtype=torch.float64).unbind(0)[:2]
    real, fake = real[None].repeat(3, 1, 1, 1), fake[None].repeat(3, 1, 1, 1)
    native = torch.rand(3, *shape, generator=gen, dtype=torch.float64)
    sd = native + 0.2
    field = torch.tensor([1.5, 3.0, 3.0], dtype=torch.float64)
    cond_real = (native, sd, torch.tensor([0.1, 0.2, 0.33], dtype=torch.float64), field)
    cond_fake = (native, sd, torch.tensor([0.4, 0.05, 0.25], dtype=torch.float64), field)
    critic = _LinearCritic(shape)
    gp = L.gradient_penalty(critic, real, fake, cond_real, cond_fake, lambda_gp=100.0, generator=gen)
    assert abs(gp.item()) < 1e-6
    # dict conditions are passed as keyword arguments
    keys = ("native", "standard_dose", "dose", "field_strength")
    gp_dict = L.gradient_penalty(
        critic, real, fake, dict(zip(keys, cond_real, strict=True)), dict(zip(keys, cond_fake, strict=True))
    )
    assert abs(gp_dict.item()) < 1e-6
    # a 2-Lipschitz critic: (2 - 1)² · λ
    gp2 = L.gradient_penalty(_LinearCritic(shape, scale=2.0), real, fake, cond_real, cond_fake, 100.0)
    assert gp2.item() == pytest.approx(100.0, rel=1e-9)
    # image-only penalty misses the condition part of the gradient, so it is no longer zero
    gp_img = L.gradient_penalty(critic, real, fake, cond_real, cond_fake, condition_gradient=False)
    assert gp_img.item() > 1e-3


def test_gradient_penalty_interpolates_conditions() -> None:
    seen: dict[str, torch.Tensor] = {}

    def critic(residual, dose):  # noqa: ANN001, ANN202
        seen["residual"], seen["dose"] = residual.detach(), dose.detach()
        return (residual.flatten(1).sum(1) + dose) * 0.5

    real, fake = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    gp = L.gradient_penalty(critic, real, fake, (torch.zeros(2),), (torch.ones(2),), lambda_gp=1.0)
    alpha = seen["residual"][:, 0, 0, 0]
    torch.testing.assert_close(seen["dose"], alpha)  # the same α for image and condition
    torch.testing.assert_close(seen["residual"], alpha.reshape(2, 1, 1, 1).expand(2, 1, 4, 4))
    # ‖∇‖ = 0.5·sqrt(16 + 1)
    assert gp.item() == pytest.approx((0.5 * math.sqrt(17) - 1) ** 2, rel=1e-5)


def test_wgan_losses_and_dose_sampling() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert L.wgan_critic_loss(real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert L.wgan_generator_loss(fake).item() == pytest.approx(0.5)
    gen = torch.Generator().manual_seed(11)
    doses = L.sample_generated_doses(20_000, generator=gen)
    assert doses.shape == (20_000,) and doses.min() >= 0.05 and doses.max() <= 0.5
    assert doses.mean().item() == pytest.approx(0.275, abs=5e-3)
    real_doses = torch.full((20_000,), 0.33)
    smoothed = L.smooth_dose_labels(real_doses, generator=gen)
    assert (smoothed - real_doses).std().item() == pytest.approx(0.05, rel=0.05)
    assert (smoothed - real_doses).mean().item() == pytest.approx(0.0, abs=2e-3)
    low = L.smooth_dose_labels(torch.full((1000,), 0.01), generator=gen)
    assert low.min() >= 0.0 and low.max() <= 1.0


def test_lsgan_and_bce_mse_losses_match_manual_values() -> None:
    real, fake = torch.tensor([0.9, 1.2]), torch.tensor([0.1, -0.3])
    out = L.lsgan_losses(real, fake)
    assert out.discriminator.item() == pytest.approx(0.5 * ((0.01 + 0.04) / 2 + (0.01 + 0.09) / 2))
    assert out.generator.item() == pytest.approx(0.5 * ((0.81 + 1.69) / 2))

    def bce(x: float, y: float) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (
        (bce(0.9, 1) + bce(1.2, 1)) / 2
        + (bce(0.1, 0) + bce(-0.3, 0)) / 2
        + (0.01 + 0.04) / 2
        + (0.01 + 0.09) / 2
    )
    assert L.bce_mse_discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    expected_g = (bce(0.1, 1) + bce(-0.3, 1)) / 2 + (0.81 + 1.69) / 2
    assert L.bce_mse_generator_loss(fake).item() == pytest.approx(expected_g, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Pixel, structural, local and gradient losses
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)])
def test_ssim_loss_matches_skimage(spatial: tuple[int, ...]) -> None:
    rng = np.random.default_rng(12)
    a = rng.random(spatial)
    b = a + 0.1 * rng.standard_normal(spatial)
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    ta = torch.from_numpy(a)[None, None].requires_grad_(True)
    loss = L.ssim_loss(ta, torch.from_numpy(b)[None, None], data_range=1.0)
    assert 1 - loss.item() == pytest.approx(ref, abs=1e-10)
    loss.backward()
    assert torch.isfinite(ta.grad).all() and ta.grad.abs().sum() > 0
    assert L.ssim_loss(ta, ta, data_range=1.0).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(VCEInputError, match="smaller than the SSIM window"):
        L.ssim_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_l1_mse_and_local_loss() -> None:
    gen = torch.Generator().manual_seed(13)
    pred, target = torch.rand(2, 1, 8, 8, 8, generator=gen), torch.rand(2, 1, 8, 8, 8, generator=gen)
    assert L.l1_loss(pred, target).item() == pytest.approx((pred - target).abs().mean().item())
    assert L.mse_loss(pred, target).item() == pytest.approx(((pred - target) ** 2).mean().item())
    mask = torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 3:6, 1:4] = True
    diff = (pred - target).abs()[mask]
    assert L.local_loss(pred, target, mask).item() == pytest.approx(diff.sum().item() / pred.numel())
    assert L.local_loss(pred, target, mask, "mask_mean").item() == pytest.approx(diff.mean().item())
    assert L.local_loss(pred, target, mask, "sum").item() == pytest.approx(diff.sum().item(), rel=1e-6)
    # anything outside the mask is ignored
    changed = pred.clone()
    changed[~mask] += 5.0
    assert L.local_loss(changed, target, mask).item() == pytest.approx(
        L.local_loss(pred, target, mask).item()
    )
    with pytest.raises(VCEInputError):
        L.local_loss(pred, target, mask[:, :, :4])


def _gradient_loss_reference(pred: np.ndarray, target: np.ndarray, eps: float) -> float:
    """Numpy transcription of seed 002 eq. 1-2 on one image, summed over pixels."""

    def normalised(x: np.ndarray) -> np.ndarray:
        crop = tuple(slice(0, s - 1) for s in x.shape)
        grads = np.stack([np.diff(x, axis=a)[crop] for a in range(x.ndim)])
        return grads / (np.sqrt((grads**2).sum(0)) + eps)

    return float(-((normalised(pred) * normalised(target)).sum(0) ** 2).sum())


@pytest.mark.parametrize("spatial", [(12, 10), (6, 7, 5)])
def test_pixelwise_gradient_loss_matches_equation(spatial: tuple[int, ...]) -> None:
    rng = np.random.default_rng(14)
    a, b = rng.random((2, *spatial)), rng.random((2, *spatial))
    ta = torch.from_numpy(a)[:, None].requires_grad_(True)
    tb = torch.from_numpy(b)[:, None]
    ref = [_gradient_loss_reference(a[i], b[i], 1e-6) for i in range(2)]
    assert L.pixelwise_gradient_loss(ta, tb, reduction="sum").item() == pytest.approx(np.mean(ref), rel=1e-10)
    n_pixels = math.prod(s - 1 for s in spatial)
    mean = L.pixelwise_gradient_loss(ta, tb)
    assert mean.item() == pytest.approx(np.mean(ref) / n_pixels, rel=1e-10)
    mean.backward()
    assert torch.isfinite(ta.grad).all() and ta.grad.abs().sum() > 0
    # same shape (parallel or anti-parallel edges): -1 per pixel; orthogonal edges: 0
    assert L.pixelwise_gradient_loss(ta, ta).item() == pytest.approx(-1.0, abs=1e-4)
    assert L.pixelwise_gradient_loss(ta, -ta).item() == pytest.approx(-1.0, abs=1e-4)
    ramp = torch.arange(spatial[0], dtype=torch.float64).reshape(1, 1, -1, *([1] * (len(spatial) - 1)))
    other = torch.arange(spatial[1], dtype=torch.float64).reshape(1, 1, 1, -1, *([1] * (len(spatial) - 2)))
    assert L.pixelwise_gradient_loss(
        ramp.expand(1, 1, *spatial), other.expand(1, 1, *spatial)
    ).item() == pytest.approx(0.0, abs=1e-12)
    flat = torch.zeros(1, 1, *spatial, dtype=torch.float64, requires_grad=True)
    L.pixelwise_gradient_loss(flat, tb[:1]).backward()
    assert torch.isfinite(flat.grad).all()


# ---------------------------------------------------------------------------------------------------------
# VGG perceptual loss
# ---------------------------------------------------------------------------------------------------------


def test_vgg_perceptual_loss_loads_safetensors_and_pth(tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    state = {**random_vgg_state(), "classifier.0.weight": torch.zeros(2, 2)}  # extra keys are ignored
    save_file(state, str(tmp_path / "vgg16.safetensors"))
    torch.save(state, tmp_path / "vgg16.pth")
    loss_st = L.VGGPerceptualLoss(tmp_path / "vgg16.safetensors")
    loss_pth = L.VGGPerceptualLoss(tmp_path / "vgg16.pth")
    assert not any(p.requires_grad for p in loss_st.parameters())

    gen = torch.Generator().manual_seed(15)
    pred = torch.rand(2, 1, 16, 16, generator=gen, requires_grad=True)
    target = torch.rand(2, 1, 16, 16, generator=gen)
    value = loss_st(pred, target)
    assert value.item() == pytest.approx(loss_pth(pred, target).item())
    assert value.item() > 0 and loss_st(target, target).item() == 0.0
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0

    # the first layer really is features.0 on the ImageNet-normalised gray image repeated to RGB
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    rgb = (target.expand(-1, 3, -1, -1) - mean) / std
    first = F.relu(F.conv2d(rgb, state["features.0.weight"], state["features.0.bias"], padding=1))
    torch.testing.assert_close(loss_st.features[:2](loss_st._as_rgb_slices(target)), first)

    # 3-D volumes are compared slice by slice along the last (axial) axis
    vol_p = torch.rand(1, 1, 16, 16, 4, generator=gen)
    vol_t = torch.rand(1, 1, 16, 16, 4, generator=gen)
    per_slice = [loss_st(vol_p[..., k], vol_t[..., k]).item() for k in range(4)]
    assert loss_st(vol_p, vol_t).item() == pytest.approx(np.mean(per_slice), rel=1e-5)


def test_vgg_perceptual_loss_missing_or_wrong_file_errors(tmp_path) -> None:  # noqa: ANN001
    missing = tmp_path / "nowhere" / "vgg16.safetensors"
    with pytest.raises(VCEInputError, match="nowhere/vgg16.safetensors") as err:
        L.VGGPerceptualLoss(missing)
    assert "features.N.weight" in str(err.value)
    state = random_vgg_state()
    del state["features.14.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(VCEInputError, match="features.14.weight"):
        L.VGGPerceptualLoss(tmp_path / "partial.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VCEInputError, match="garbage.pth"):
        L.VGGPerceptualLoss(tmp_path / "garbage.pth")
