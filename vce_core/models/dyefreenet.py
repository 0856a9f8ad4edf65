"""DyeFreeNet: the cascade of two high-resolution GANs of seed 003 (Liu et al.), self-supervised pretraining.

Seed 003 synthesizes contrast CT from non-contrast CT; here the same system maps the native T1 (three
adjacent axial slices as channels, "mimics the RGB channels") to the standard dose. Section 2:

* **High-resolution generator** (:class:`HighResGenerator`, "an encoder-decoder network similar to U-Net"):
  the encoder's block ``l`` takes the concatenation of *all* previous blocks' outputs (average-pooled to
  its resolution; block 0 takes the input), "inspired by HRNet"; the decoder "gradually combines high-level
  features with low-level features" through U-Net skip connections; "the feature map from the last block
  was concatenated with the input features followed by two convolution layers". Blocks are two
  Conv-BN-ReLU (the paper names no normalisation or activation; these are pix2pix's), widths double per
  level from ``width``; 2x max-pooling / nearest upsampling + 3x3 convolution between levels.
* **Self-supervised intensity-level pretraining** (section 2.1, eq. 1): the generator's encoder
  classifies which of the intensity coefficients 0.5, 1.0, 1.5, 2.0 was applied to an input slice stack,
  through "three fully connected layers with a softmax" on its globally averaged deepest features;
  cross-entropy averaged over the four transformed copies. Here the coefficients multiply the
  *normalised* native images of the training cases (the paper uses 41,589 NLST CT slices).
* **Cascade** (section 2.2): the "primary learning GAN" takes the three slices down-sampled to half size
  and generates the initial contrast image (three slices); the "intensity refinement GAN", initialised with
  the primary's trained weights, takes that initial image and refines it; "finally, an up-sampling layer"
  (bilinear / trilinear, no parameters) gives the full-resolution output. For the refinement network to be
  initialised from the primary one its input must have as many channels as the primary's, so both map
  ``3 → 3`` channels (the target's three slices: ``target_context``) and the output is the centre one.
* **Objective** (:class:`DyeFreeNetObjective`, eqs. 2–5): discriminator ``D_MSE + D_BCE`` on (input ⊕
  real) vs (input ⊕ synthesized), generator adversarial term ``+ λ·MSE`` (λ = 0.01) ``+ Σ_j ℓ_feat^j``
  (Johnson's feature reconstruction loss at every encoder block of the frozen pretrained backbone, or of
  VGG-16 from a local weights file with ``objective_kwargs.perceptual: vgg``). Phases (config ``stages``):
  ``pretrain`` → ``primary`` (half resolution) → ``refine`` (full resolution, primary frozen).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.errors import VCEInputError
from vce_core.models import register_model
from vce_core.models.blocks import ConvNormAct, check_images, constructor_config, positive_int
from vce_core.models.objective import Objective, frozen, register_objective

__all__ = [
    "INTENSITY_LEVELS",
    "DyeFreeNet",
    "DyeFreeNetObjective",
    "HighResGenerator",
    "feature_loss",
    "intensity_batch",
]

INTENSITY_LEVELS = (0.5, 1.0, 1.5, 2.0)
"""Seed 003's intensity coefficients; class ``k`` is ``INTENSITY_LEVELS[k]``."""
PHASES = ("pretrain", "primary", "refine")


def _block(d: int, c_in: int, c_out: int, norm: str) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(d, c_in, c_out, norm=norm), ConvNormAct(d, c_out, c_out, norm=norm))


def _pool(x: Tensor, factor: int) -> Tensor:
    if factor == 1:
        return x
    return (F.avg_pool2d if x.ndim == 4 else F.avg_pool3d)(x, factor)


class HighResGenerator(nn.Module):
    """Seed 003's "high-resolution generator" (module docstring): dense encoder, U-Net decoder, input skip.

    Shapes: ``[B, in_channels, *S]`` (``S_i`` multiples of ``2^(levels−1)``) → ``[B, out_channels, *S]``.
    :meth:`encode` returns the encoder blocks' outputs (full resolution first).
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, width: int, levels: int, norm: str
    ):
        super().__init__()
        d = spatial_dims
        widths = [width * 2**level for level in range(levels)]
        self.encoder = nn.ModuleList(
            _block(d, in_channels if level == 0 else sum(widths[:level]), widths[level], norm)
            for level in range(levels)
        )
        self.up = nn.ModuleList(
            ConvNormAct(d, widths[lv + 1], widths[lv], norm=norm) for lv in range(levels - 1)
        )
        self.decoder = nn.ModuleList(_block(d, 2 * widths[lv], widths[lv], norm) for lv in range(levels - 1))
        conv = nn.Conv2d if d == 2 else nn.Conv3d
        self.out = nn.Sequential(
            ConvNormAct(d, widths[0] + in_channels, widths[0], norm=norm),
            conv(widths[0], out_channels, 3, padding=1),
        )
        self.widths = widths

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder features ``h_l``: block ``l`` sees every previous block, pooled to its resolution."""
        feats = [self.encoder[0](x)]
        for level in range(1, len(self.encoder)):
            dense = torch.cat([_pool(h, 2 ** (level - k)) for k, h in enumerate(feats)], dim=1)
            feats.append(self.encoder[level](dense))
        return feats

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encode(x)
        h = feats[-1]
        for level in range(len(feats) - 2, -1, -1):
            up = self.up[level](F.interpolate(h, size=feats[level].shape[2:], mode="nearest"))
            h = self.decoder[level](torch.cat([up, feats[level]], dim=1))
        return self.out(torch.cat([h, x.to(h.dtype)], dim=1))


@register_model("dyefreenet")
class DyeFreeNet(nn.Module):
    """The DyeFreeNet cascade: ``y = U₂(G_refine(G_primary(D₂(x))))`` and the pretraining classifier.

    Parameters
    ----------
    spatial_dims:
        2 (the paper: slices) or 3.
    in_modalities, in_slices:
        Inputs (the paper: 1 modality × 3 adjacent slices).
    out_channels:
        Channels of the synthesized image (3: the three slices; the centre one is the output).
    width, levels:
        Width of the first encoder level and the number of levels of each high-resolution generator.
    classifier_features:
        Widths of the first two of the three fully connected layers of the pretraining classifier.
    norm:
        ``batch`` or ``instance``.

    ``forward(x, part="full")``: ``x [B, M·C, *S]`` (``S_i`` multiples of ``2^levels``) → ``[B, T, *S]``;
    ``part="primary"`` → the initial contrast image ``[B, T, *S/2]``; ``part="classify"`` → intensity-level
    logits ``[B, 4]`` of the primary's encoder on the half-size input.
    """

    objective = "dyefreenet"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_modalities: int = 1,
        in_slices: int = 3,
        out_channels: int = 3,
        width: int = 16,
        levels: int = 4,
        classifier_features: tuple[int, int] | list[int] = (128, 64),
        norm: str = "batch",
    ):
        super().__init__()
        classifier_features = [int(f) for f in classifier_features]
        self.config = constructor_config(
            DyeFreeNet,
            locals(),
            positive=("width", "levels"),
        )
        hidden = [positive_int("classifier_features", f) for f in classifier_features]
        self.spatial_dims, self.in_channels, self.out_channels = (
            spatial_dims,
            in_modalities * in_slices,
            out_channels,
        )
        self.size_multiple = 2**levels
        self.primary = HighResGenerator(spatial_dims, self.in_channels, out_channels, width, levels, norm)
        self.refine = HighResGenerator(spatial_dims, out_channels, out_channels, width, levels, norm)
        deepest = self.primary.widths[-1]
        self.classifier = nn.Sequential(
            nn.Linear(deepest, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], len(INTENSITY_LEVELS)),
        )

    def forward(self, x: Tensor, part: str = "full") -> Tensor:
        check_images(x, self.spatial_dims, self.in_channels, self.size_multiple)
        half = _pool(x, 2)
        if part == "classify":
            return self.classifier(self.primary.encode(half)[-1].flatten(2).mean(2))
        initial = self.primary(half)
        if part == "primary":
            return initial
        if part != "full":
            raise VCEInputError(f"part {part!r}", expected="full, primary or classify")
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return F.interpolate(self.refine(initial), scale_factor=2, mode=mode, align_corners=False)

    def init_refine_from_primary(self) -> int:
        """Copy the primary generator's weights into the refinement generator (section 3: "initialized
        using the weights of the trained primary learning model"); tensors whose shapes differ (the first
        convolution when the input has other channels than the output) keep their own. Returns the count
        of copied tensors."""
        own = self.refine.state_dict()
        copied = {k: v for k, v in self.primary.state_dict().items() if k in own and own[k].shape == v.shape}
        self.refine.load_state_dict({**own, **copied})
        return len(copied)


def intensity_batch(x: Tensor) -> tuple[Tensor, Tensor]:
    """Seed 003's self-supervised samples: every input scaled by each of :data:`INTENSITY_LEVELS`.

    ``x [B, …]`` → ``([K·B, …], labels [K·B])`` with copy ``k·B + b`` = ``INTENSITY_LEVELS[k] · x[b]``.
    """
    levels = torch.tensor(INTENSITY_LEVELS, dtype=x.dtype, device=x.device)
    scaled = levels.reshape(-1, *([1] * x.ndim)) * x.unsqueeze(0)
    labels = torch.arange(len(INTENSITY_LEVELS), device=x.device).repeat_interleave(x.shape[0])
    return scaled.flatten(0, 1), labels


def feature_loss(features: Any, pred: Tensor, target: Tensor) -> Tensor:
    """``Σ_j ℓ_feat^j = Σ_j ‖φ_j(ŷ) − φ_j(y)‖²₂ / (C_j·H_j·W_j)`` over the blocks ``features(·)`` returns."""
    with torch.no_grad():
        real = features(target)
    return sum(F.mse_loss(a, b) for a, b in zip(features(pred), real, strict=True))


@register_objective("dyefreenet")
class DyeFreeNetObjective(Objective):
    """Seed 003's training, by the stage's ``phase`` (``pretrain``, ``primary``, ``refine``).

    ``pretrain``: cross-entropy of the intensity-level classifier (eq. 1), optimiser ``g``. ``primary`` /
    ``refine``: one discriminator step ``D_MSE + D_BCE`` (eq. 4) then one generator step
    ``w_adv · (BCE + MSE)(D(G(x), x), 1) + w_mse · MSE(G(x), y) + w_perceptual · Σ_j ℓ_feat^j`` (eq. 5,
    ``mse`` = λ = 0.01). The primary GAN works at half resolution against the average-pooled target with
    its own discriminator (``critic``); the refinement GAN at full resolution with ``critic_refine``, the
    primary generator frozen. At the start of ``primary`` the perceptual network becomes a frozen copy of
    the pretrained encoder; at the start of ``refine`` the refinement generator takes the primary's weights.
    """

    loss_terms = ("adv", "mse", "perceptual")
    options = ("perceptual",)

    ddp_find_unused = True

    def __init__(self, trainer: Any):
        super().__init__(trainer)
        kind = trainer.cfg.objective_kwargs.get("perceptual", "backbone")
        if kind not in ("backbone", "vgg", "none"):
            raise VCEInputError(f"perceptual {kind!r}", expected="backbone, vgg or none")
        self.kind = kind
        self.vgg: nn.Module | None = None
        if kind == "vgg":
            from vce_core.losses import VGGPerceptualLoss

            self.vgg = VGGPerceptualLoss(trainer.cfg.perceptual_weights).to(trainer.device)
        for stage in trainer.stages:
            if stage.phase not in PHASES:
                raise VCEInputError(
                    f"stage {stage.name!r} has phase {stage.phase!r}", expected=" → ".join(PHASES)
                )

    def build_networks(self) -> dict[str, nn.Module]:
        from vce_core.models import build_model
        from vce_core.train_config import model_kwargs

        t = self.trainer
        gen = t.generator
        if self.kind == "backbone" and gen.in_channels != gen.out_channels:
            raise VCEInputError(
                f"the backbone perceptual loss needs as many input as output channels ({gen.in_channels} vs "
                f"{gen.out_channels})",
                expected="one input modality with target_context, or objective_kwargs.perceptual: vgg/none",
            )
        nets = {
            "critic": build_model(t.cfg.critic, **model_kwargs(t.cfg, "critic")).to(t.device),
            "critic_refine": build_model(t.cfg.critic, **model_kwargs(t.cfg, "critic")).to(t.device),
        }
        if self.kind == "backbone":
            nets["perceptual"] = copy.deepcopy(gen.primary).requires_grad_(False).eval()
        return nets

    def optimizer_parameters(self) -> dict[str, Any]:
        nets = self.trainer.nets
        return {
            "g": self.trainer.generator.parameters(),
            "d": [*nets["critic"].parameters(), *nets["critic_refine"].parameters()],
        }

    def begin_stage(self, stage: Any, first_time: bool) -> None:
        gen = self.trainer.generator
        if first_time and stage.phase == "primary" and "perceptual" in self.trainer.nets:
            self.trainer.nets["perceptual"].load_state_dict(gen.primary.state_dict())
        if first_time and stage.phase == "refine":
            gen.init_refine_from_primary()
        gen.primary.requires_grad_(stage.phase != "refine")
        gen.primary.train(stage.phase != "refine")  # frozen: its batch-norm statistics too
        gen.classifier.requires_grad_(stage.phase == "pretrain")

    def _perceptual(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.kind == "vgg":
            assert self.vgg is not None
            return self.vgg(pred, target)
        if self.kind == "none":
            return pred.new_zeros(())
        return feature_loss(self.trainer.nets["perceptual"].encode, pred, target)

    def pretrain_loss(self, b: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Eq. 1: cross-entropy of the intensity level over the four scaled copies of every input."""
        t = self.trainer
        scaled, labels = intensity_batch(b["inputs"])
        with t.autocast():
            logits = t.g_train(scaled, part="classify").float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return loss, {"pretrain_ce": loss.item(), "pretrain_accuracy": accuracy.item()}

    def pair(self, b: dict[str, Any], refine: bool) -> tuple[Tensor, Tensor]:
        """The inputs and target of a GAN phase: half size for ``primary``, full size for ``refine``."""
        x, y = b["inputs"], b["target"]
        return (x, y) if refine else (_pool(x, 2), _pool(y, 2))

    def discriminator_loss(self, b: dict[str, Any], fake: Tensor, refine: bool) -> Tensor:
        """Eq. 4, ``D_MSE + D_BCE``, real (label 1) and synthesized (label 0) with the inputs."""
        from vce_core.losses import bce_mse_discriminator_loss

        x, y = self.pair(b, refine)
        d_train = self.trainer.train_nets["critic_refine" if refine else "critic"]
        with self.trainer.autocast():
            real, generated = d_train(torch.cat([y, fake.detach()]), torch.cat([x, x])).float().chunk(2)
        return bce_mse_discriminator_loss(real, generated)

    def generator_loss(
        self, b: dict[str, Any], fake: Tensor, refine: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """Eq. 5 for the generator: ``w_adv · adversarial + w_mse · MSE + w_perceptual · Σ_j ℓ_feat^j``."""
        from vce_core.losses import bce_mse_generator_loss, mse_loss

        t = self.trainer
        x, y = self.pair(b, refine)
        critic = t.nets["critic_refine" if refine else "critic"]
        with frozen(critic), t.autocast():
            adv = bce_mse_generator_loss(critic(fake, x).float())
        mse = mse_loss(fake, y)
        feat = self._perceptual(fake, y)
        loss = t.weight("adv", 1.0) * adv + t.weight("mse", 0.01) * mse + t.weight("perceptual", 1.0) * feat
        terms = {"adv": adv, "mse": mse, "perceptual": feat, "loss_g": loss}
        return loss, {k: v.item() for k, v in terms.items()}

    def step(self) -> dict[str, float]:
        t = self.trainer
        b = t.next_batch()
        if t.stage.phase == "pretrain":
            loss, stats = self.pretrain_loss(b)
            t.update("g", loss)
            return stats
        refine = t.stage.phase == "refine"
        with t.autocast():
            fake = t.g_train(b["inputs"], part="full" if refine else "primary").float()
        loss_d = self.discriminator_loss(b, fake, refine)
        t.update("d", loss_d)
        loss_g, stats = self.generator_loss(b, fake, refine)
        t.update("g", loss_g)
        return {"loss_d": loss_d.item(), **stats}
