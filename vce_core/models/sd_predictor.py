"""The standard-dose predictor of seed 000's augmentation experiment: a small 2.5-D U-Net.

Seed 000 (Pinetz et al., section 3, Table 1 right columns) trains "the state-of-the-art 2.5D U-Net model
[27, 24, 12], which predicts an SD image given a corresponding native and LD image", with "the
hyperparameters taken from [27]" (Pasumarthi et al., MRM 2021) and an initial image size of 256, on real 33 %
low doses, on synthesized low doses only, and on real + synthesized ones, and evaluates it on *real* 33 %
low-dose test images (PSNR, SSIM). The seed text gives no layer table. As we read the cited work [27] (not in
this repository, so not checked here), it is an encoder-decoder U-Net with skip connections fed adjacent
slices of the pre-contrast and low-dose images and trained with L1, SSIM, perceptual and adversarial terms;
the defaults below are the classic U-Net widths (64 doubling to 512), not figures from the seed text.

This model (``sd_predictor_unet``) is the same kind of network at the width a shared CPU affords:

* input ``x [B, M·C, H, W]`` — ``M`` modalities (native, low dose) of ``C = 2·context + 1`` adjacent axial
  slices each (modality-major, :mod:`vce_core.data`); output ``[B, out_channels, H, W]`` (the centre slice of
  the standard dose, normalised like the native image);
* ``len(widths)`` levels of two Conv-Norm-ReLU each, 2x2 max pooling down, bilinear upsampling + concatenation
  of the skip up, a 1x1 head (``widths`` 64 … 512 by default; 16, 32, 64 in the config here);
* ``residual_input`` (optional): the head's output is added to the centre slice(s) of that input modality
  (``1`` = the low dose), so the network learns the missing enhancement instead of the whole image (our
  choice; the seed text does not say). ``None`` predicts the image directly.

Objective (:class:`SDPredictorObjective`, ``objective: sd_predictor``): ``λ_l1 · L1 + λ_ssim · (1 − SSIM)``
on the predicted standard dose, weights ``l1`` and ``ssim`` from the config's stages (1 and 1 in
``configs/sd_predictor_2_5d.yaml``), one Adam update per iteration, no discriminator and no perceptual term
(a deviation from [27], recorded in the card).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.errors import VCEInputError
from vce_core.models import register_model
from vce_core.models.blocks import ConvNormAct, check_images, constructor_config, positive_int
from vce_core.models.objective import Objective, register_objective

__all__ = ["SDPredictorObjective", "SDPredictorUNet"]


class _DoubleConv(nn.Sequential):
    """Two Conv-Norm-ReLU layers (3x3): ``[B, in, *S]`` → ``[B, out, *S]``."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str):
        super().__init__(
            ConvNormAct(spatial_dims, in_channels, out_channels, norm=norm),
            ConvNormAct(spatial_dims, out_channels, out_channels, norm=norm),
        )


@register_model("sd_predictor_unet")
class SDPredictorUNet(nn.Module):
    """2.5-D U-Net: native + low-dose slice stacks → standard dose (module docstring).

    Parameters
    ----------
    spatial_dims:
        2 (slices and slice stacks, the paper's 2.5-D) or 3 (patches).
    in_modalities:
        ``M`` input images (2: native, low dose).
    in_slices:
        ``C`` adjacent slices per input (3 for 2.5-D with context 1).
    out_channels:
        1 (the centre slice) or ``in_slices`` (every slice of the stack).
    widths:
        Features per level, finest first (at least two levels).
    norm:
        ``batch`` (default), ``instance`` or ``none``.
    residual_input:
        Index of the input modality whose centre slice(s) the output is added to, or ``None``.

    Shapes: ``x [B, M·C, *S]`` (every ``S_i`` a multiple of ``2^(len(widths) − 1)``) → ``[B, out_channels,
    *S]``.
    """

    objective = "sd_predictor"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_modalities: int = 2,
        in_slices: int = 3,
        out_channels: int = 1,
        widths: tuple[int, ...] | list[int] = (64, 128, 256, 512),
        norm: str = "batch",
        residual_input: int | None = 1,
    ):
        super().__init__()
        widths = [positive_int("widths", int(w)) for w in widths]
        self.config: dict[str, Any] = constructor_config(SDPredictorUNet, locals())
        if len(widths) < 2:
            raise VCEInputError(f"widths is {widths}", expected="at least two levels, e.g. [16, 32, 64]")
        if out_channels not in (1, in_slices):
            raise VCEInputError(
                f"out_channels is {out_channels}", expected=f"1 (centre slice) or in_slices ({in_slices})"
            )
        if residual_input is not None and not (
            isinstance(residual_input, int) and 0 <= residual_input < in_modalities
        ):
            raise VCEInputError(
                f"residual_input is {residual_input!r}",
                expected=f"None or an input index in [0, {in_modalities - 1}]",
            )
        d = spatial_dims
        self.spatial_dims, self.in_slices, self.in_modalities = d, in_slices, in_modalities
        self.out_channels, self.residual_input = out_channels, residual_input
        self.size_multiple = 2 ** (len(widths) - 1)
        chans = [in_modalities * in_slices, *widths]
        self.down = nn.ModuleList(_DoubleConv(d, chans[i], chans[i + 1], norm) for i in range(len(widths)))
        self.up = nn.ModuleList(
            _DoubleConv(d, widths[i] + widths[i + 1], widths[i], norm) for i in range(len(widths) - 1)
        )
        self.head = (nn.Conv2d if d == 2 else nn.Conv3d)(widths[0], out_channels, kernel_size=1)
        self.pool = nn.MaxPool2d(2) if d == 2 else nn.MaxPool3d(2)

    def _skip_image(self, x: Tensor) -> Tensor:
        """The centre slice (or all slices) of the residual input modality: ``[B, out_channels, *S]``."""
        start = int(self.residual_input) * self.in_slices
        if self.out_channels == 1:
            start += self.in_slices // 2
        return x[:, start : start + self.out_channels]

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.spatial_dims, self.in_modalities * self.in_slices, self.size_multiple)
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, size=skips[i].shape[2:], mode=mode, align_corners=False)
            h = self.up[i](torch.cat([skips[i], h], 1))
        out = self.head(h)
        return out if self.residual_input is None else out + self._skip_image(x)


@register_objective("sd_predictor")
class SDPredictorObjective(Objective):
    """``λ_l1 · ‖ŷ − y‖₁ + λ_ssim · (1 − SSIM(ŷ, y))`` on the standard dose, one Adam step per iteration.

    Weights ``l1`` (default 1) and ``ssim`` (default 1) come from the current stage; the SSIM data range is
    ``objective_kwargs.ssim_data_range`` (1.0: percentile-normalised images; ``None`` = the target's range).
    3-D patches are scored with the 3-D SSIM. No extra networks.
    """

    loss_terms = ("l1", "ssim")
    options = ("ssim_data_range",)

    def build_networks(self) -> dict[str, nn.Module]:
        return {}

    def losses(self, batch: dict[str, Any], pred: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The weighted loss of ``pred`` on ``batch`` and its terms (floats, for the log)."""
        from vce_core.losses import l1_loss, ssim_loss

        t = self.trainer
        target = batch["target"]
        l1 = l1_loss(pred, target)
        ssim = ssim_loss(pred, target, data_range=t.cfg.objective_kwargs.get("ssim_data_range", 1.0))
        loss = t.weight("l1", 1.0) * l1 + t.weight("ssim", 1.0) * ssim
        return loss, {"l1": l1.item(), "ssim_loss": ssim.item(), "loss_g": loss.item()}

    def step(self) -> dict[str, float]:
        t = self.trainer
        batch = t.next_batch()
        with t.autocast():
            pred = t.g_train(batch["inputs"]).float()
        loss, stats = self.losses(batch, pred)
        t.update("g", loss)
        return stats

    def deviations(self) -> list[str]:
        return ["L1 + SSIM only: no perceptual and no adversarial term (seed 000's [27] uses both)"]
