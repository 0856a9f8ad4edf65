"""Conditional patch discriminator (pix2pix's PatchGAN) for the virtual-contrast GANs (seeds 002–004).

``D(y, x)`` scores every overlapping patch of the image ``y`` (real or synthesized) given the inputs ``x``
(channel-concatenated, as pix2pix's conditional discriminator): ``[B, T + M·C, *S] → [B, 1, *S']``.
Layers: ``layers − 1`` 4x4(x4) convolutions (``widths`` doubling from ``base_channels`` up to 8x; stride 2
for the first ``strided`` of them, then 1), each followed by the normalisation and LeakyReLU(0.2), then a
last 4x4 convolution to one channel. ``first_norm`` decides whether the first layer is normalised too.

Seed 004 (AMCGAN) writes "six convolution layers. First five convolution layers are followed by the process
of instance-normalization (IN) and LeakyReLU": ``layers=6, norm="instance", first_norm=True`` (the default
here). Seed 002 (PGMGVCE) and seed 003 (DyeFreeNet) say only "patch-based" / "convolutional networks as
discriminator"; their configs choose this same network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vce_core.models import register_model
from vce_core.models.blocks import activation, check_images, constructor_config, norm_nd, positive_int

__all__ = ["PatchDiscriminator"]


@register_model("patch_discriminator")
class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN ``D(y, x)``; raw (unbounded) scores per patch.

    Every argument is keyword-only. The image geometry (``spatial_dims``, ``in_modalities``, ``in_slices``,
    ``out_channels``) has no default: a discriminator judges one generator's images and takes its geometry,
    which the trainer passes (:func:`vce_core.train_config.model_kwargs`).

    Parameters
    ----------
    spatial_dims:
        2 or 3.
    in_modalities, in_slices:
        The generator's inputs ``x`` have ``in_modalities · in_slices`` channels.
    out_channels:
        Channels ``T`` of the image ``y`` (1, or the slices of a 2.5-D target).
    base_channels:
        Width of the first layer (64), doubled per layer up to ``8 · base_channels``.
    layers:
        Number of convolutions, the last one included (6 for AMCGAN; pix2pix's 70x70 PatchGAN has 5).
    strided:
        How many of the first layers have stride 2 (4).
    norm, first_norm:
        ``instance`` / ``batch`` / ``none``; whether the first layer is normalised.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_modalities: int,
        in_slices: int,
        out_channels: int,
        base_channels: int = 64,
        layers: int = 6,
        strided: int = 4,
        norm: str = "instance",
        first_norm: bool = True,
    ):
        super().__init__()
        self.config = constructor_config(
            PatchDiscriminator,
            locals(),
            positive=("base_channels",),
        )
        positive_int("layers", layers, 2)
        self.spatial_dims, self.out_channels = spatial_dims, out_channels
        self.in_channels = in_modalities * in_slices
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        body: list[nn.Module] = []
        channels = out_channels + self.in_channels
        for i in range(layers - 1):
            width = base_channels * min(2**i, 8)
            normalised = norm != "none" and (i > 0 or first_norm)
            body += [
                conv(channels, width, 4, stride=2 if i < strided else 1, padding=1, bias=not normalised),
                norm_nd(norm if normalised else "none", spatial_dims, width),
                activation("leaky_relu"),
            ]
            channels = width
        body.append(conv(channels, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*body)

    def forward(self, image: Tensor, inputs: Tensor) -> Tensor:
        """``image [B, T, *S]``, ``inputs [B, M·C, *S]`` → patch scores ``[B, 1, *S']``."""
        check_images(image, self.spatial_dims, self.out_channels, name="image")
        check_images(inputs, self.spatial_dims, self.in_channels, name="inputs")
        return self.body(torch.cat([image, inputs.to(image.dtype)], dim=1))
