"""PGMGVCE: the pixelwise-gradient model with GAN of seed 002 (Cheng et al., Cancers 2024).

T1-w + T2-w slices → T1C. The generator follows the five components of section 2.2 (the paper's Figure 1,
which holds the layer dimensions, is not reproduced in its text, so the concrete layers are ours):

1. **Initial feature extraction** per modality: "a series of convolutional layers … progressively
   down-sample the image while increasing the feature map depth" — Conv-BN-ReLU (3x3, ``width``), then two
   stride-2 Conv-BN-ReLU to ``2·width`` and ``4·width``, one path per modality.
2. **Integration module**: "extracts and combines features from each modality" — the modalities' features
   concatenated, Conv-BN-ReLU to ``4·width``: ``g``.
3. **Trainable modality weights** "that adjust dynamically during training, optimizing the contribution of
   each modality": ``α = softmax(θ)``, ``θ ∈ ℝ^M`` learnable (0 at start: equal weights); modality ``m``'s
   features are scaled by ``M·α_m`` (1 at start).
4. **Separate convolutional pathways for each modality, then feature-fusion layers**: a ResBlock per
   modality on ``g + M·α_m·f_m``, the pathways and ``g`` concatenated, Conv-BN-ReLU to ``4·width`` and a
   ResBlock.
5. **Decoder** (implied by the image-sized output): two stride-2 transposed convolutions with BN-ReLU back
   to full resolution, a 3x3 convolution to the output and the activation of the normalisation
   (``none`` for z-score, ``sigmoid`` for sigmoid- or tanh-normalised images, whose values lie in (0, 1)).

Discriminator: "a patch-based approach, where it evaluates the authenticity of different regions of the
image separately" — :class:`vce_core.models.patchgan.PatchDiscriminator` (instance normalisation, so the
per-sample gradient penalty is well defined). Objective (:class:`PGMGVCEObjective`): pixelwise gradient
(eq. 2) + LSGAN (eq. 3) at the paper's best 1:1 ratio, a gradient penalty on the discriminator, Adam
lr 2e-4, β₁ 0.5, 14,000 iterations in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vce_core.models import register_model
from vce_core.models.amcgan import output_activation
from vce_core.models.blocks import (
    ConvNormAct,
    ResBlock,
    check_images,
    constructor_config,
    transposed_upsampling,
)
from vce_core.models.objective import Objective, frozen, register_objective

__all__ = ["ModalityWeights", "PGMGVCEGenerator", "PGMGVCEObjective"]


class ModalityWeights(nn.Module):
    """Trainable modality weights ``M · softmax(θ)`` (``θ`` starts at 0: every weight 1).

    ``forward(features)`` scales the ``m``-th of ``M`` feature maps by its weight; :meth:`weights` returns
    ``[M]``.
    """

    def __init__(self, modalities: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(modalities))

    def weights(self) -> Tensor:
        return self.logits.numel() * self.logits.softmax(0)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        w = self.weights()
        return [w[m].to(f.dtype) * f for m, f in enumerate(features)]


@register_model("pgmgvce_generator")
class PGMGVCEGenerator(nn.Module):
    """Seed 002's generator (module docstring): per-modality encoders, integration, modality weights,
    per-modality pathways and fusion, decoder.

    Parameters
    ----------
    spatial_dims:
        2 (the paper) or 3.
    in_modalities, in_slices:
        ``M`` modalities (2: T1, T2) of ``in_slices`` channels each.
    out_channels:
        Channels of the synthesized image (1).
    width:
        Width of the first layer (doubled twice by the down-sampling layers).
    norm:
        ``batch`` or ``instance``.
    out_activation:
        ``none`` (z-score), ``sigmoid`` (sigmoid/tanh-normalised images) or ``tanh``.

    Shapes: ``x [B, M·C, *S]`` (``S_i`` multiples of 4) → ``[B, out_channels, *S]``.
    """

    objective = "pgmgvce"
    size_multiple = 4

    def __init__(
        self,
        spatial_dims: int = 2,
        in_modalities: int = 2,
        in_slices: int = 1,
        out_channels: int = 1,
        width: int = 32,
        norm: str = "batch",
        out_activation: str = "none",
    ):
        super().__init__()
        self.config = constructor_config(PGMGVCEGenerator, locals(), positive=("width",))
        d, w, m = spatial_dims, width, in_modalities
        self.spatial_dims, self.in_modalities, self.in_slices = d, m, in_slices
        self.encoders = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(d, in_slices, w, norm=norm),
                ConvNormAct(d, w, 2 * w, stride=2, norm=norm),
                ConvNormAct(d, 2 * w, 4 * w, stride=2, norm=norm),
            )
            for _ in range(m)
        )
        self.integrate = ConvNormAct(d, m * 4 * w, 4 * w, norm=norm)
        self.modality_weights = ModalityWeights(m)
        self.pathways = nn.ModuleList(ResBlock(d, 4 * w, 4 * w, norm=norm) for _ in range(m))
        self.fuse = nn.Sequential(
            ConvNormAct(d, (m + 1) * 4 * w, 4 * w, norm=norm), ResBlock(d, 4 * w, 4 * w, norm=norm)
        )
        conv = nn.Conv2d if d == 2 else nn.Conv3d
        self.decoder = nn.Sequential(
            *transposed_upsampling(d, (4 * w, 2 * w, w), norm),
            conv(w, out_channels, 3, padding=1),
            output_activation(out_activation),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.spatial_dims, self.in_modalities * self.in_slices, self.size_multiple)
        feats = [enc(m) for enc, m in zip(self.encoders, x.split(self.in_slices, dim=1), strict=True)]
        g = self.integrate(torch.cat(feats, dim=1))
        weighted = self.modality_weights(feats)
        paths = [path(g + f) for path, f in zip(self.pathways, weighted, strict=True)]
        return self.decoder(self.fuse(torch.cat([g, *paths], dim=1)))


@register_objective("pgmgvce")
class PGMGVCEObjective(Objective):
    """Pixelwise gradient (eq. 2) + LSGAN (eq. 3) with a gradient penalty on the discriminator (seed 002).

    Per iteration, on one batch: the discriminator step ``½ E[(D(y, x) − 1)²] + ½ E[D(G(x), x)²] + λ_GP ·
    GP`` (WGAN-GP's penalty ``E[(‖∇_ŷ D(ŷ, x)‖ − 1)²]`` at interpolates of real and synthesized images,
    ``lambda_gp``), then the generator step ``w_gradient · PG(G(x), y) + w_adv · ½ E[(D(G(x), x) − 1)²]``
    (loss weights ``gradient`` and ``adv``, the paper's best ratio 1:1). The pixelwise-gradient term is eq. 2
    averaged over pixels (``[−1, 0]``), so that the 1:1 ratio does not depend on the image size;
    ``objective_kwargs.gradient_eps`` is eq. 2's ε (1e-3 in normalised units).
    """

    loss_terms = ("gradient", "adv")
    options = ("gradient_eps",)

    def discriminator_loss(self, b: dict[str, Any], fake: Tensor) -> tuple[Tensor, Tensor]:
        """LSGAN ``½ E[(D(y, x) − 1)²] + ½ E[D(G(x), x)²]`` plus ``λ_GP · GP``; returns (total, GP)."""
        from vce_core.losses import gradient_penalty, lsgan_losses

        t = self.trainer
        x, y = b["inputs"], b["target"]
        with t.autocast():
            scores = t.train_nets["critic"](torch.cat([y, fake.detach()]), torch.cat([x, x])).float()
            gp = gradient_penalty(
                t.nets["critic"], y, fake.detach(), (x,), (x,), t.cfg.lambda_gp, condition_gradient=False
            )
        real, generated = scores.chunk(2)
        return lsgan_losses(real, generated).discriminator + gp.float(), gp

    def generator_loss(self, b: dict[str, Any], fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``w_gradient · PG(G(x), y) + w_adv · ½ E[(D(G(x), x) − 1)²]`` (discriminator frozen), its terms."""
        from vce_core.losses import pixelwise_gradient_loss

        t = self.trainer
        with frozen(t.nets["critic"]), t.autocast():
            adv = 0.5 * (t.nets["critic"](fake, b["inputs"]).float() - 1).pow(2).mean()
        eps = float(t.cfg.objective_kwargs.get("gradient_eps", 1e-3))
        pg = pixelwise_gradient_loss(fake, b["target"], eps=eps)
        loss = t.weight("gradient", 1.0) * pg + t.weight("adv", 1.0) * adv
        return loss, {"gradient": pg.item(), "adv": adv.item(), "loss_g": loss.item()}

    def step(self) -> dict[str, float]:
        t = self.trainer
        b = t.next_batch()
        with t.autocast():
            fake = t.g_train(b["inputs"]).float()
        loss_d, gp = self.discriminator_loss(b, fake)
        t.update("d", loss_d)
        loss_g, stats = self.generator_loss(b, fake)
        t.update("g", loss_g)
        return {"loss_d": loss_d.item(), "gp": gp.item(), **stats}
