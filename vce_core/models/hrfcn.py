"""HRFCN: the 3-D high-resolution fully convolutional network of seed 001 (Chen et al., IEEE TBME).

Virtual contrast: pre-contrast T1, T2 and ADC → contrast-enhanced T1 (the standard dose), in 3-D (the paper)
or 2-D (the paper's "Ours (2D)"). The generator follows section III-B and Fig. 2:

* **Stems.** One individual FCN branch per input modality (``φ`` = an FCN module), their feature maps
  concatenated: ``F11 = φ(T1) ⊕ φ(T2) ⊕ φ(ADC)``. Each stem first lifts its modality (``in_slices`` channels)
  to ``stem_channels`` with a Conv-BN-ReLU (how a 1-channel image enters an FCN module is not written).
* **Parallel branches, repeated multi-scale fusion** (``D₂``/``D₄`` 2x/4x down-, ``U₂``/``U₄`` up-sampling):
  ``F12 = D₂(F11)``, ``F21 = φ(F11)``, ``F22 = φ(F12)``, ``F23 = D₂(F22)``;
  ``F31 = φ(F21 ⊕ U₂(F22))``, ``F32 = φ(F22 ⊕ D₂(F21))``, ``F33 = φ(F23 ⊕ D₄(F21))``;
  ``F41 = φ(F31 ⊕ U₂(F32) ⊕ U₄(F33))``, ``F42 = φ(D₂(F31) ⊕ F32 ⊕ U₂(F33))``,
  ``F43 = φ(D₄(F31) ⊕ D₂(F32) ⊕ F33)``; ``F5 = F41 ⊕ U₂(F42) ⊕ U₄(F43)``, then a ResBlock gives the output.
  (The paper prints ``F33 = φ(F23 ⊕ D₄(F21))``; a 4x-downsampled F21 is what matches F23's size.)
* **FCN module** ``φ``: four ResBlocks, each two Conv-BN-ReLU layers (:class:`.blocks.ResBlock`,
  skip = identity or 1x1 conv + BN when the width changes). Branch widths 64, 128, 256 (``widths``).
* **Samplers** (HRNet's, which the paper cites for the design): ``D₂`` a 3x3(x3) convolution with stride 2
  (+ BN), ``D₄`` two of them (ReLU between), each to the destination branch's width; ``U`` a 1x1 convolution
  (+ BN) to the destination width, then nearest-neighbour upsampling.
* **Output:** the ResBlock on ``F5`` (``3·widths[0] → widths[0]``) and a 1x1 convolution to ``out_channels``
  (the paper's Keras code ends in a linear layer; a Conv-BN-ReLU could not output the normalised image).

The loss (section III-C) is :class:`HRFCNObjective`: ``λ₁ MAE + λ₂ (1 − SSIM) + λ₃ ‖(f(X) − Y) ⊙ M‖₁`` with
the enhancement mask ``M = (Y − X_T1 > δ)``, δ = 0.1, and the two-stage schedule of section III-D
(stage 1: λ = (1, 1, 1), lr 1e-4; stage 2: λ = (0.1, 0.1, 10), lr 1e-5), which lives in the config's
``stages``. Missing modalities at inference are zero images (section IV-E): the card lists them as
``optional_inputs``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.errors import VCEInputError
from vce_core.models import register_model
from vce_core.models.blocks import ConvNormAct, ResBlock, check_images, constructor_config, positive_int
from vce_core.models.objective import Objective, register_objective

__all__ = ["FCNModule", "Fuse", "HRFCN", "HRFCNObjective"]


class FCNModule(nn.Sequential):
    """``φ``: ``res_blocks`` ResBlocks (two Conv-BN-ReLU each); the first maps ``in_channels → channels``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, channels: int, res_blocks: int = 4, norm: str = "batch"
    ):
        super().__init__(
            *[
                ResBlock(spatial_dims, in_channels if i == 0 else channels, channels, norm=norm)
                for i in range(res_blocks)
            ]
        )


class Fuse(nn.Module):
    """Moves features from branch ``src`` to branch ``dst`` (0 = full resolution, 1 = 1/2, 2 = 1/4).

    Down (``dst > src``): ``dst − src`` 3x3 convolutions with stride 2 (+ BN, ReLU between them), the last
    to ``out_channels``. Up: 1x1 convolution + BN to ``out_channels``, then nearest upsampling to the size
    of the destination (given at call time). Same branch: identity.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, src: int, dst: int, norm: str):
        super().__init__()
        self.up = dst < src
        if dst > src:
            steps = dst - src
            layers = [
                ConvNormAct(
                    spatial_dims,
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride=2,
                    norm=norm,
                    act="relu" if i < steps - 1 else "none",
                )
                for i in range(steps)
            ]
            self.op: nn.Module = nn.Sequential(*layers)
        elif dst < src:
            self.op = ConvNormAct(
                spatial_dims, in_channels, out_channels, kernel_size=1, norm=norm, act="none"
            )
        else:
            self.op = nn.Identity()

    def forward(self, x: Tensor, size: tuple[int, ...]) -> Tensor:
        x = self.op(x)
        return F.interpolate(x, size=size, mode="nearest") if self.up else x


@register_model("hrfcn")
class HRFCN(nn.Module):
    """Seed 001's high-resolution FCN (see the module docstring for the equations).

    Parameters
    ----------
    spatial_dims:
        3 (the paper) or 2.
    in_modalities:
        Number of input modalities ``M`` (3: T1, T2, ADC), one stem each.
    in_slices:
        Channels per modality (1; adjacent slices for 2.5-D use).
    out_channels:
        Channels of the synthesized image (1).
    widths:
        Widths of the full-, half- and quarter-resolution branches (64, 128, 256).
    stem_channels:
        Width of each modality's stem (default ``widths[0]``).
    res_blocks:
        ResBlocks per FCN module (4).
    norm:
        ``batch`` (the paper's BN) or ``instance``/``none``.

    Shapes: ``x [B, M·in_slices, *S]`` (every ``S_i`` a multiple of 4) → ``[B, out_channels, *S]``.
    """

    objective = "hrfcn"
    size_multiple = 4

    def __init__(
        self,
        spatial_dims: int = 3,
        in_modalities: int = 3,
        in_slices: int = 1,
        out_channels: int = 1,
        widths: tuple[int, int, int] | list[int] = (64, 128, 256),
        stem_channels: int | None = None,
        res_blocks: int = 4,
        norm: str = "batch",
    ):
        super().__init__()
        widths = [positive_int("widths", int(w)) for w in widths]
        if len(widths) != 3:
            raise VCEInputError(f"widths is {widths}", expected="three branch widths, e.g. [64, 128, 256]")
        stem_channels = stem_channels or widths[0]
        self.config = constructor_config(HRFCN, locals(), positive=("stem_channels",))
        d, w, r, stem = spatial_dims, widths, res_blocks, stem_channels
        self.in_modalities, self.in_slices, self.spatial_dims = in_modalities, in_slices, spatial_dims
        self.stems = nn.ModuleList(
            nn.Sequential(ConvNormAct(d, in_slices, stem, norm=norm), FCNModule(d, stem, stem, r, norm))
            for _ in range(in_modalities)
        )
        fused = in_modalities * stem
        self.d12 = Fuse(d, fused, w[1], 0, 1, norm)
        self.phi21 = FCNModule(d, fused, w[0], r, norm)
        self.phi22 = FCNModule(d, w[1], w[1], r, norm)
        self.d23 = Fuse(d, w[1], w[2], 1, 2, norm)
        # stage 3: each branch takes its own features and the full-resolution branch's (and F22 for F31)
        self.f3 = nn.ModuleDict(
            {"u21": Fuse(d, w[1], w[0], 1, 0, norm), "d12": Fuse(d, w[0], w[1], 0, 1, norm)}
        )
        self.f3["d13"] = Fuse(d, w[0], w[2], 0, 2, norm)
        self.phi3 = nn.ModuleList(FCNModule(d, 2 * w[i], w[i], r, norm) for i in range(3))
        # stage 4: full exchange between the three branches
        self.f4 = nn.ModuleDict(
            {f"{s}{t}": Fuse(d, w[s], w[t], s, t, norm) for t in range(3) for s in range(3) if s != t}
        )
        self.phi4 = nn.ModuleList(FCNModule(d, 3 * w[i], w[i], r, norm) for i in range(3))
        # stage 5: everything to full resolution, concatenated, one ResBlock, the output convolution
        self.f5 = nn.ModuleDict({f"{s}0": Fuse(d, w[s], w[0], s, 0, norm) for s in (1, 2)})
        self.final = ResBlock(d, 3 * w[0], w[0], norm=norm)
        self.head = (nn.Conv2d if d == 2 else nn.Conv3d)(w[0], out_channels, kernel_size=1)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Every feature map of the paper's equations (``F11`` … ``F43``, ``F5``) for inputs ``x``."""
        check_images(x, self.spatial_dims, self.in_modalities * self.in_slices, self.size_multiple)
        mods = x.split(self.in_slices, dim=1)
        f: dict[str, Tensor] = {
            "F11": torch.cat([stem(m) for stem, m in zip(self.stems, mods, strict=True)], 1)
        }
        size = lambda t: tuple(t.shape[2:])  # noqa: E731
        f["F12"] = self.d12(f["F11"], ())
        f["F21"], f["F22"] = self.phi21(f["F11"]), self.phi22(f["F12"])
        f["F23"] = self.d23(f["F22"], ())
        f["F31"] = self.phi3[0](torch.cat([f["F21"], self.f3["u21"](f["F22"], size(f["F21"]))], 1))
        f["F32"] = self.phi3[1](torch.cat([f["F22"], self.f3["d12"](f["F21"], ())], 1))
        f["F33"] = self.phi3[2](torch.cat([f["F23"], self.f3["d13"](f["F21"], ())], 1))
        stage3 = [f["F31"], f["F32"], f["F33"]]
        for t in range(3):
            parts = [
                stage3[s] if s == t else self.f4[f"{s}{t}"](stage3[s], size(stage3[t])) for s in range(3)
            ]
            f[f"F4{t + 1}"] = self.phi4[t](torch.cat(parts, 1))
        full = size(f["F41"])
        f["F5"] = torch.cat([f["F41"], self.f5["10"](f["F42"], full), self.f5["20"](f["F43"], full)], 1)
        return f

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final(self.features(x)["F5"]))


def slice_ssim_loss(pred: Tensor, target: Tensor, data_range: float | None) -> Tensor:
    """Seed 001's ``L_SSIM = (1/n) Σᵢ (1 − SSIM(f(X)ᵢ, Yᵢ))`` over 2-D slices (3-D: the axial ones)."""
    from vce_core.losses import ssim_loss

    if pred.ndim == 5:
        b, c, d, h, w = pred.shape
        pred = pred.movedim(-1, 1).reshape(b * w, c, d, h)
        target = target.movedim(-1, 1).reshape(b * w, c, d, h)
    return ssim_loss(pred, target, data_range=data_range)


def enhancement_mask(target: Tensor, native: Tensor, threshold: float) -> Tensor:
    """Seed 001's rough tumour mask ``M = (Y − X_T1 > δ)`` (bool, the target's shape)."""
    return (target - native) > threshold


@register_objective("hrfcn")
class HRFCNObjective(Objective):
    """``λ₁ L_MAE + λ₂ L_SSIM + λ₃ L_local`` (seed 001, eq. 1), one Adam update per iteration.

    Loss weights ``mae``, ``ssim``, ``local`` come from the current stage (``loss_weights``); the mask
    threshold δ is ``objective_kwargs.local_threshold`` (0.1 in normalised units, the paper's images being
    normalised to [0, 1] in the brain), the SSIM data range ``objective_kwargs.ssim_data_range`` (1.0; None:
    the target's range). No discriminator: the paper trains the FCN alone.
    """

    loss_terms = ("mae", "ssim", "local")
    options = ("local_threshold", "ssim_data_range")

    def build_networks(self) -> dict[str, nn.Module]:
        return {}

    def losses(self, b: dict[str, Any], pred: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The weighted loss of ``pred`` on batch ``b`` and its terms (floats, for the log)."""
        from vce_core.losses import l1_loss, local_loss

        t = self.trainer
        kw = t.cfg.objective_kwargs
        target = b["target"]
        mask = enhancement_mask(target, b["native"], float(kw.get("local_threshold", 0.1)))
        mae = l1_loss(pred, target)
        ssim = slice_ssim_loss(pred, target, kw.get("ssim_data_range", 1.0))
        local = local_loss(pred, target, mask)
        loss = t.weight("mae", 1.0) * mae + t.weight("ssim", 1.0) * ssim + t.weight("local", 1.0) * local
        return loss, {
            "mae": mae.item(),
            "ssim_loss": ssim.item(),
            "local": local.item(),
            "loss_g": loss.item(),
        }

    def step(self) -> dict[str, float]:
        t = self.trainer
        b = t.next_batch()
        with t.autocast():
            pred = t.g_train(b["inputs"]).float()
        loss, stats = self.losses(b, pred)
        t.update("g", loss)
        return stats
