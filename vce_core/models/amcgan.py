"""AMCGAN: the attention-based multi-scale GAN of seed 004 (Pan et al.) for contrast-enhanced MRI synthesis.

Generator (section III-A to III-C, Fig. 1–3), 2-D (the paper) or 3-D:

* **MSFC** — multi-scale feature capture: four parallel convolutions on the input, with kernel sizes 1, 3
  and 5 and one dilated 3x3 convolution (dilation 3), "four sets of convolutional kernels with four
  scales" (receptive fields 1, 3, 5, 7; the kernel sizes are not printed), each Conv-BN-ReLU to
  ``msfc_channels``; the four features ``f¹ … f⁴`` are concatenated into ``Z`` (``C = 4·msfc_channels``).
* **FAM** — feature attention (eqs. 1–2), DANet's channel attention: ``Z`` reshaped to ``C × N``,
  ``X_ij = exp(Z_i · Z_j) / Σ_i exp(Z_i · Z_j)`` (the printed eq. 1 drops the numerator's ``exp``: a
  softmax is what the text describes), ``A_j = β Σ_i X_ij Z_i + Z_j`` with a learnable scale ``β``
  (initialised to 0 as in DANet, so training starts from the identity).
* **Encoder–decoder based on pix2pix** (Isola et al.; the ResNet generator): three encoder blocks
  Conv-BN-ReLU (7x7 to ``ngf``, then two 3x3 stride-2 to ``2·ngf`` and ``4·ngf``), six ResNet blocks
  ("constructed by two paths": the residual path Conv-BN-ReLU-Dropout-Conv-BN and the identity) with
  dropout 0.5, and a decoder where "the convolution layer is replaced by the deconvolution layer" (two
  3x3 stride-2 transposed convolutions with BN-ReLU, then the 7x7 output convolution).
* Output activation: pix2pix's ``tanh`` expects images in [−1, 1]; normalised standard-dose intensities
  exceed 1 in enhancing tissue, so the configs use ``out_activation: none`` (a listed deviation).

Discriminator: :class:`vce_core.models.patchgan.PatchDiscriminator` with six convolutions, the first five
followed by instance normalisation and LeakyReLU. Objective (:class:`AMCGANObjective`, eqs. 3–5):
``L_cGAN(G, D) + λ L_L1(G)``; Adam 2e-4 for the first 300 of 400 epochs, then a linear decay to 0 (the
config's ``lr_decay: {kind: linear, start: 0.75}``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.models import register_model
from vce_core.models.blocks import (
    ConvNormAct,
    check_images,
    constructor_config,
    norm_nd,
    transposed_upsampling,
)
from vce_core.models.objective import Objective, frozen, register_objective

__all__ = ["AMCGANGenerator", "AMCGANObjective", "FeatureAttention", "MultiScaleCapture", "PixResBlock"]

OUT_ACTIVATIONS = ("none", "tanh", "sigmoid")


def output_activation(kind: str) -> nn.Module:
    """The generator's last activation: ``none``, ``tanh`` (pix2pix) or ``sigmoid``."""
    from vce_core.errors import VCEInputError

    if kind not in OUT_ACTIVATIONS:
        raise VCEInputError(f"out_activation {kind!r}", expected=" or ".join(OUT_ACTIVATIONS))
    return {"none": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]()


class MultiScaleCapture(nn.Module):
    """MSFC: four parallel Conv-BN-ReLU branches (kernels 1, 3, 5 and 3 dilated by 3), concatenated.

    Shapes: ``[B, in_channels, *S]`` → ``[B, 4·channels, *S]`` (``f¹ ⊕ f² ⊕ f³ ⊕ f⁴``).
    """

    KERNELS = ((1, 1), (3, 1), (5, 1), (3, 3))  # (kernel size, dilation) per branch

    def __init__(self, spatial_dims: int, in_channels: int, channels: int, norm: str = "batch"):
        super().__init__()
        self.branches = nn.ModuleList(
            ConvNormAct(spatial_dims, in_channels, channels, k, dilation=dil, norm=norm)
            for k, dil in self.KERNELS
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class FeatureAttention(nn.Module):
    """FAM (eqs. 1–2): ``X = softmax_i(Z Zᵀ)``, ``A_j = β Σ_i X_ij Z_i + Z_j``; ``β`` learnable (starts at 0).

    Shapes: ``Z [B, C, *S]`` → ``A [B, C, *S]``. :meth:`attention` returns ``X [B, C, C]``.
    """

    def __init__(self, beta: float = 0.0):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    @staticmethod
    def attention(z: Tensor) -> Tensor:
        """``X [B, C, C]`` with ``X[b, i, j] = exp(Z_i·Z_j) / Σ_i exp(Z_i·Z_j)`` (float32 for stability)."""
        flat = z.flatten(2).float()
        return torch.bmm(flat, flat.transpose(1, 2)).softmax(dim=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.attention(z)
        flat = z.flatten(2)
        weighted = torch.bmm(x.transpose(1, 2).to(flat.dtype), flat)  # [B, C(j), N] = Σ_i X_ij Z_i
        return self.beta.to(z.dtype) * weighted.reshape(z.shape) + z


class PixResBlock(nn.Module):
    """pix2pix's ResNet block: ``x + Conv-BN-ReLU-Dropout-Conv-BN(x)`` (reflection padding)."""

    def __init__(self, spatial_dims: int, channels: int, norm: str = "batch", dropout: float = 0.5):
        super().__init__()
        pad = nn.ReflectionPad2d if spatial_dims == 2 else nn.ReflectionPad3d
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.body = nn.Sequential(
            pad(1),
            conv(channels, channels, 3, bias=norm == "none"),
            norm_nd(norm, spatial_dims, channels),
            nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            pad(1),
            conv(channels, channels, 3, bias=norm == "none"),
            norm_nd(norm, spatial_dims, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register_model("amcgan_generator")
class AMCGANGenerator(nn.Module):
    """Seed 004's generator: MSFC → FAM → pix2pix ResNet encoder–decoder (module docstring).

    Parameters
    ----------
    spatial_dims:
        2 (the paper) or 3.
    in_modalities, in_slices:
        Inputs: ``in_modalities`` images of ``in_slices`` channels each.
    out_channels:
        Channels of the synthesized image (1).
    msfc_channels:
        Width of each MSFC branch (``Z`` has four times as many channels).
    ngf:
        Width of the first encoder block (pix2pix: 64), doubled by the two down-sampling blocks.
    res_blocks:
        ResNet blocks between encoder and decoder (6).
    dropout:
        Dropout in the ResNet blocks (pix2pix: 0.5).
    norm:
        ``batch`` (pix2pix's default) or ``instance``.
    out_activation:
        ``none``, ``tanh`` (pix2pix) or ``sigmoid``.

    Shapes: ``x [B, M·C, *S]`` (``S_i`` multiples of 4) → ``[B, out_channels, *S]``.
    """

    objective = "amcgan"
    size_multiple = 4

    def __init__(
        self,
        spatial_dims: int = 2,
        in_modalities: int = 1,
        in_slices: int = 1,
        out_channels: int = 1,
        msfc_channels: int = 16,
        ngf: int = 64,
        res_blocks: int = 6,
        dropout: float = 0.5,
        norm: str = "batch",
        out_activation: str = "none",
    ):
        super().__init__()
        self.config = constructor_config(
            AMCGANGenerator,
            locals(),
            positive=("msfc_channels", "ngf", "res_blocks"),
        )
        d = spatial_dims
        self.spatial_dims, self.in_channels = d, in_modalities * in_slices
        self.msfc = MultiScaleCapture(d, self.in_channels, msfc_channels, norm)
        self.fam = FeatureAttention()
        pad = nn.ReflectionPad2d if d == 2 else nn.ReflectionPad3d
        conv = nn.Conv2d if d == 2 else nn.Conv3d
        self.encoder = nn.Sequential(
            pad(3),
            ConvNormAct(d, 4 * msfc_channels, ngf, 7, norm=norm, padding=0),
            ConvNormAct(d, ngf, 2 * ngf, stride=2, norm=norm),
            ConvNormAct(d, 2 * ngf, 4 * ngf, stride=2, norm=norm),
        )
        self.blocks = nn.Sequential(*[PixResBlock(d, 4 * ngf, norm, dropout) for _ in range(res_blocks)])
        self.decoder = nn.Sequential(
            *transposed_upsampling(d, (4 * ngf, 2 * ngf, ngf), norm),
            pad(3),
            conv(ngf, out_channels, 7),
            output_activation(out_activation),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.spatial_dims, self.in_channels, self.size_multiple)
        return self.decoder(self.blocks(self.encoder(self.fam(self.msfc(x)))))


@register_objective("amcgan")
class AMCGANObjective(Objective):
    """``G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G)`` (seed 004, eqs. 3–5), pix2pix's alternating updates.

    Per iteration, on one batch: the discriminator step ``½ [BCE(D(y, x), 1) + BCE(D(G(x), x), 0)]``
    (pix2pix halves D's objective), then the generator step ``BCE(D(G(x), x), 1) + λ ‖y − G(x)‖₁`` with
    the loss weights ``adv`` (1) and ``l1`` (λ; pix2pix's 100, which the paper does not change).
    """

    loss_terms = ("adv", "l1")

    def discriminator_loss(self, b: dict[str, Any], fake: Tensor) -> Tensor:
        """``½ [BCE(D(y, x), 1) + BCE(D(G(x), x), 0)]`` through the (DDP-wrapped) discriminator."""
        d_train = self.trainer.train_nets["critic"]
        with self.trainer.autocast():
            real_scores = d_train(b["target"], b["inputs"]).float()
            fake_scores = d_train(fake.detach(), b["inputs"]).float()
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
            + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        )

    def generator_loss(self, b: dict[str, Any], fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``w_adv · BCE(D(G(x), x), 1) + w_l1 · ‖y − G(x)‖₁`` (the discriminator frozen) and its terms."""
        t = self.trainer
        with frozen(t.nets["critic"]), t.autocast():
            scores = t.nets["critic"](fake, b["inputs"]).float()
        adv = F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
        l1 = (fake - b["target"]).abs().mean()
        loss = t.weight("adv", 1.0) * adv + t.weight("l1", 100.0) * l1
        return loss, {"adv": adv.item(), "l1": l1.item(), "loss_g": loss.item()}

    def step(self) -> dict[str, float]:
        t = self.trainer
        b = t.next_batch()
        with t.autocast():
            fake = t.g_train(b["inputs"]).float()
        loss_d = self.discriminator_loss(b, fake)
        t.update("d", loss_d)
        loss_g, stats = self.generator_loss(b, fake)
        t.update("g", loss_g)
        return {"loss_d": loss_d.item(), **stats}
