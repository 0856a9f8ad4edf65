"""The low-dose conditional GAN of seed 000 (Pinetz et al., noise-preserving conditional GANs).

``ld_cgan_generator`` (:class:`LowDoseGenerator`) predicts the residual ``ŷ_LD`` of a low-dose image
(``x̂_LD = x_NA + ŷ_LD``) from the native image ``x_NA``, the standard-dose image ``x_SD`` and a noise
image ``z ~ N(0, Id)``, conditioned on the dose ``d̂`` (fraction of the standard dose) and the field
strength ``B`` (tesla). ``ld_cgan_critic`` (:class:`LowDoseCritic`) scores a residual given the same
conditions (WGAN critic, one unbounded score per sample).

Architecture (paper's supplementary, Fig. 5, and the choices made where it is silent):

* Metadata ``(d̂, (B - 2.25) / 0.75)`` -> two-layer MLP with 128 features -> a learnable
  ``SiLU -> Linear`` projection into every conditional residual block (scale/shift, guided-diffusion).
  The critic has its own embedding (not shared: the paper's Table 3 ablation).
* U-Net with 4 scales; 12 channels at the finest scale, doubled after each 2x max-pooling; all
  convolutions 3x3x3 (3x3 in 2-D). Per scale ``num_res_blocks`` CRBs on the encoding side and as many on
  the decoding side (chosen: 2, guided-diffusion's default); local attention blocks (self-attention in a
  3x3x3 window) after every CRB of the coarser scales (all but the finest). Decoder: nearest upsampling +
  3x3 conv, concatenation with the encoder features of that scale (chosen, standard U-Net).
* Normalisation: GroupNorm (chosen; per-sample, so compatible with the critic's gradient penalty).
* Output heads ``GN -> SiLU -> conv`` at the finest ``output_heads`` decoder scales (full, 1/2, 1/4 by
  default) for the multi-scale noise-preserving loss; index 0 is the prediction used at inference.
* ``base="linear"`` (our option, not in the paper): every head predicts a correction to the linear
  baseline's residual, ``ŷ_LD = d̂ · (x_SD − x_NA) + G(·)`` (average-pooled for the coarser heads), with
  the heads' last convolutions zero-initialised, so the untrained generator *is* the linear baseline and
  training only has to learn the non-linear dose response and the noise. ``base="physics"`` (our option):
  the same with the physics baseline's residual (:func:`physics_residual`, the SPGR signal equation of
  :mod:`vce_core.baselines` with the sequence's TR and flip angle, passed per sample as ``sequence``), so
  training only has to learn the noise and what the assumed native T1 gets wrong; ``learn_t1`` learns that
  T1 as a per-voxel map fed to the signal equation, ``texture_sigma`` high-passes the heads so that they
  only add texture. ``base="native"`` (default, the paper) predicts ``ŷ_LD`` from scratch.
* Inputs are channel-concatenated ``[x_NA, x_SD, z]``. For 2.5-D models (``spatial_dims=2``,
  ``in_slices = k`` odd) native and standard dose each bring ``k`` adjacent slices as channels and the
  output is the centre slice (``out_channels=1``); ``z`` is always one channel.
* Critic: the encoding side with 5 scales and no attention, input ``[ŷ, x_NA, x_SD]``, then
  ``GN -> SiLU -> global average -> Linear`` to one score. Pooling uses ``ceil_mode`` so any size works.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vce_core.errors import VCEInputError
from vce_core.models import register_model
from vce_core.models.blocks import (
    ConditionalResBlock,
    EmbedSequential,
    LocalAttention,
    MetadataEmbedding,
    Upsample,
    check_images,
    check_spatial_dims,
    constructor_config,
    conv_nd,
    group_norm,
    max_pool_nd,
    positive_int,
    zero_module,
)
from vce_core.models.objective import Objective, register_objective

__all__ = [
    "BASES",
    "LowDoseCritic",
    "LowDoseGenerator",
    "LowDoseObjective",
    "bias_loss",
    "t1_class_loss",
    "t1_class_table",
    "t1_loss",
    "content_loss",
    "physics_residual",
    "sequence_tensor",
]

BASES: tuple[str, ...] = ("native", "linear", "physics")
"""What the generator's heads add their output to: nothing (the paper), the linear or the physics baseline."""


T1_LOG_RANGE = 0.5
"""A learned T1 map (``learn_t1``) multiplies the assumed native T1 by ``exp(t)``, ``|t| ≤ T1_LOG_RANGE``
(0.61–1.65 ×: the literature T1 of brain tissues and lesions at one field strength lie within it)."""

LOW_FIELD_BELOW = 2.25
"""Tesla: a sample below it takes the 1.5 T value of a per-field-strength setting (default native T1, T1
class table row, ``native_slope``), from it the 3 T value."""


def low_field(field_strength: Tensor) -> Tensor:
    """Bool per sample: ``field_strength`` below :data:`LOW_FIELD_BELOW` (the 1.5 T values apply)."""
    return field_strength.float() < LOW_FIELD_BELOW


def t1_class_table() -> tuple[tuple[str, ...], Tensor]:
    """The classes of a tissue-class T1 head (``t1_classes``): the phantom's enhancing tissues
    (:data:`vce_core.phantom.TISSUES` with ``enhancing``, in table order), and their native-T1 log factors
    ``log(T1_tissue / DEFAULT_T1_S[B0])`` as a ``[2, K]`` float32 tensor, row 0 at 1.5 T and row 1 at 3 T
    (the target :func:`vce_core.data.true_t1_log_factor` gives their voxels). A generator stores the table
    as a buffer, so its checkpoint keeps the values it was trained with."""
    from vce_core.data import tissue_t1_factor
    from vce_core.phantom import TISSUES

    tissues = [t for t in TISSUES.values() if t.enhancing]
    rows = [[math.log(tissue_t1_factor(t, fs)) for t in tissues] for fs in (1.5, 3.0)]
    return tuple(t.name for t in tissues), torch.tensor(rows, dtype=torch.float32)


def _check_physics_options(
    base: object, learn_t1: object, texture_sigma: object, t1_hidden: object = 0, t1_classes: object = False
) -> None:
    """``learn_t1`` needs the physics base; ``t1_hidden`` a width ≥ 0, > 0 only with ``learn_t1``;
    ``t1_classes`` a bool, true only with ``learn_t1``; ``texture_sigma`` ≥ 0 and only with a base
    (VCEInputError)."""
    if not isinstance(learn_t1, bool):
        raise VCEInputError(f"learn_t1 is {learn_t1!r}", expected="true or false")
    if not isinstance(t1_classes, bool):
        raise VCEInputError(f"t1_classes is {t1_classes!r}", expected="true or false")
    if t1_classes and not learn_t1:
        raise VCEInputError(
            "t1_classes without learn_t1", expected="learn_t1: true (t1_classes is how its head maps T1)"
        )
    if learn_t1 and base != "physics":
        raise VCEInputError(f'learn_t1 with base "{base}"', expected='base "physics" (it learns that T1)')
    if isinstance(t1_hidden, bool) or not isinstance(t1_hidden, int) or t1_hidden < 0:
        raise VCEInputError(f"t1_hidden is {t1_hidden!r}", expected="0 (one convolution) or a width > 0")
    if t1_hidden and not learn_t1:
        raise VCEInputError(
            "t1_hidden without learn_t1", expected="learn_t1: true (t1_hidden widens its head)"
        )
    try:
        sigma = float(texture_sigma)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        sigma = float("nan")
    if not sigma >= 0 or sigma == float("inf"):
        raise VCEInputError(
            f"texture_sigma is {texture_sigma!r}", expected="0 (off) or a width in voxels > 0"
        )
    if sigma > 0 and base == "native":
        raise VCEInputError('texture_sigma with base "native"', expected='base "linear" or "physics"')


def _check_texture_scale(texture_scale: object, base: object) -> float:
    """``texture_scale`` as a float: finite and ≥ 0, and 1 with ``base="native"`` (whose heads are the whole
    output); VCEInputError otherwise."""
    if isinstance(texture_scale, bool) or not isinstance(texture_scale, int | float):
        raise VCEInputError(f"texture_scale is {texture_scale!r}", expected="a number >= 0 (1: as trained)")
    scale = float(texture_scale)
    if not 0 <= scale < float("inf"):
        raise VCEInputError(
            f"texture_scale is {texture_scale!r}", expected="a finite number >= 0 (1: as trained)"
        )
    if scale != 1.0 and base == "native":
        raise VCEInputError(
            f'texture_scale {scale:g} with base "native"',
            expected='1 (its heads are the whole output), or a generator with base "linear" or "physics"',
        )
    return scale


def _check_native_slope(native_slope: object, texture_sigma: object) -> float | list[float]:
    """``native_slope`` as a finite float or a list of two (1.5 T, 3 T), all 0 without ``texture_sigma``
    (the high-pass it removes is the heads' own width); VCEInputError otherwise."""
    values = list(native_slope) if isinstance(native_slope, list | tuple) else [native_slope]
    expected = "a number, or [1.5 T, 3 T] slopes (0: off)"
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if len(values) not in (1, 2) or not numbers:
        raise VCEInputError(f"native_slope is {native_slope!r}", expected=expected)
    slopes = [float(v) for v in values]
    if not all(math.isfinite(v) for v in slopes):
        raise VCEInputError(f"native_slope is {native_slope!r}", expected="finite " + expected)
    if any(slopes) and not float(texture_sigma) > 0:  # type: ignore[arg-type]
        raise VCEInputError(
            f"native_slope {native_slope!r} without texture_sigma",
            expected="texture_sigma > 0 (the width of the high-pass it removes), or native_slope 0",
        )
    return slopes if isinstance(native_slope, list | tuple) else slopes[0]


def _lowpass(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian filter (``sigma`` in voxels, ±3σ, edges replicated) of ``[B, C, *S]``, same size."""
    if sigma <= 0:
        return torch.zeros_like(x)
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    dims = x.ndim - 2
    out = x
    b, c = x.shape[:2]
    for axis in range(dims):
        shape = [1] * dims
        shape[axis] = kernel.numel()
        k = kernel.view(1, 1, *shape).expand(c, 1, *shape)
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        out = (F.conv2d if dims == 2 else F.conv3d)(padded, k, groups=c)
    return out


def sequence_tensor(background: float, tr_ms: float, flip_deg: float) -> Tensor:
    """The per-sample ``sequence`` of a ``base="physics"`` generator: ``[background, TR (s), flip (rad)]``.

    ``background`` is the normalised value of a raw 0 (the per-case normalisation's offset, so that
    ``x − background`` is proportional to the scanner signal); ``tr_ms``/``flip_deg`` the T1 sequence's
    repetition time (ms) and flip angle (degrees), checked by :func:`vce_core.domain.check_t1_sequence`.
    """
    from vce_core.domain import check_t1_sequence

    tr, flip = check_t1_sequence(tr_ms, flip_deg)
    if not math.isfinite(float(background)):
        raise VCEInputError(f"the background is {background!r}", expected="a finite normalised value")
    return torch.tensor([float(background), tr * 1e-3, math.radians(flip)], dtype=torch.float32)


def _spgr(r1: Tensor, tr: Tensor, alpha: Tensor) -> Tensor:
    """``f(R1) = sin α (1 − E1) / (1 − cos α E1)`` (see :func:`vce_core.baselines.spgr_relative_signal`)."""
    e1 = torch.exp(-tr * r1)
    return torch.sin(alpha) * (1.0 - e1) / (1.0 - torch.cos(alpha) * e1)


def physics_residual(
    native: Tensor,
    standard_dose: Tensor,
    dose: Tensor,
    field_strength: Tensor,
    sequence: Tensor,
    *,
    t1_log: Tensor | None = None,
) -> Tensor:
    """The physics baseline's residual ``x̂_d − x_NA`` in normalised units, per voxel (dtype of ``native``).

    :func:`vce_core.baselines.physics_baseline` in torch: ``native``/``standard_dose`` ``[B, C, *S]``
    normalised images, ``dose``/``field_strength`` ``[B]``, ``sequence`` ``[B, 3]`` from
    :func:`sequence_tensor`. The signal is ``x − background``; the assumed native T1 is
    :data:`vce_core.baselines.DEFAULT_T1_S` of the nearer field strength (1.5 or 3 T). Voxels whose native
    signal is at most 5 % of the normalised range's top (``1 − background``, the native brain's 99.5th
    percentile) get the linear residual ``d (x_SD − x_NA)`` (padding, background, noise), as the baseline's
    ``min_signal`` does. ``t1_log`` (``[B, 1, *S]``, optional) multiplies the assumed native T1 of every
    voxel by ``exp(t1_log)``; the result is differentiable in it (a generator's learned T1 map).
    """
    from vce_core.baselines import DEFAULT_T1_S, R1_MAX, R1_MIN

    with torch.autocast(native.device.type, enabled=False):
        shape = (-1,) + (1,) * (native.ndim - 1)
        nat, sd = native.float(), standard_dose.float()
        d = dose.float().view(shape)
        bg, tr, alpha = (sequence[:, i].float().view(shape) for i in range(3))
        t1 = torch.where(low_field(field_strength), DEFAULT_T1_S[1.5], DEFAULT_T1_S[3.0]).view(shape)
        if t1_log is not None:
            t1 = t1 * torch.exp(t1_log.float())
        r10 = 1.0 / t1
        s_na, s_sd = nat - bg, sd - bg
        valid = s_na > 0.05 * (1.0 - bg)
        f0 = _spgr(r10, tr, alpha)
        lo = _spgr(torch.full_like(tr, R1_MIN), tr, alpha)
        hi = _spgr(torch.full_like(tr, R1_MAX), tr, alpha)
        f_sd = torch.minimum(torch.maximum(s_sd / torch.where(valid, s_na, 1.0) * f0, lo), hi)
        sin_a, cos_a = torch.sin(alpha), torch.cos(alpha)
        e1 = (sin_a - f_sd) / (sin_a - f_sd * cos_a)
        r1_sd = (-torch.log(e1.clamp_min(1e-30)) / tr).clamp(R1_MIN, R1_MAX)
        r1_d = (r10 + d * (r1_sd - r10)).clamp(R1_MIN, R1_MAX)
        physics = s_na * (_spgr(r1_d, tr, alpha) / f0 - 1.0)
        out = torch.where(valid, physics, d * (sd - nat))
    return out.to(native.dtype)


def _check_in_slices(in_slices: object) -> int:
    in_slices = positive_int("in_slices", in_slices)
    if in_slices % 2 == 0:
        raise VCEInputError(
            f"in_slices is {in_slices}", expected="an odd number of adjacent slices (1, 3, 5, ...)"
        )
    return in_slices


def _per_sample(name: str, value: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """``value`` (a number, a 0-d tensor or ``[B]``) as a float tensor ``[B]`` on ``like``'s device."""
    t = torch.as_tensor(value, device=like.device)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise VCEInputError(
            f"{name} has shape {tuple(t.shape)}", expected=f"one value per sample, shape ({batch},)"
        )
    if not bool(torch.isfinite(t).all()):
        raise VCEInputError(f"{name} contains non-finite values", expected="finite numbers")
    return t


def _check_images(
    spatial_dims: int, channels: int, native: Tensor, standard_dose: Tensor
) -> tuple[int, tuple[int, ...]]:
    """Check ``native``/``standard_dose`` are ``[B, channels, *S]`` alike; return ``(B, S)``."""
    check_images(native, spatial_dims, channels, name="native")
    check_images(standard_dose, spatial_dims, channels, name="standard_dose")
    if native.shape != standard_dose.shape:
        raise VCEInputError(
            f"native {tuple(native.shape)} and standard_dose {tuple(standard_dose.shape)} differ in shape",
            expected="images on the same grid",
        )
    return native.shape[0], tuple(native.shape[2:])


def _check_dropout(dropout: object) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise VCEInputError(f"dropout is {dropout!r}", expected="a probability in [0, 1)")
    return float(dropout)


def _check_generator_args(
    spatial_dims: int,
    in_slices: object,
    out_channels: object,
    base_channels: object,
    num_scales: object,
    num_res_blocks: object,
    emb_features: object,
    output_heads: object,
    dropout: object,
    base: object,
) -> int:
    """Check the arguments of :class:`LowDoseGenerator` (VCEInputError if bad); return ``in_slices``."""
    check_spatial_dims(spatial_dims)
    in_slices = _check_in_slices(in_slices)
    if base not in BASES:
        raise VCEInputError(f"base is {base!r}", expected=" or ".join(f'"{b}"' for b in BASES))
    if base != "native" and out_channels not in (1, in_slices):
        raise VCEInputError(
            f'base "{base}" with out_channels {out_channels} and in_slices {in_slices}',
            expected="out_channels 1 (the centre slice) or equal to in_slices",
        )
    for name, value in (
        ("out_channels", out_channels),
        ("base_channels", base_channels),
        ("num_res_blocks", num_res_blocks),
        ("emb_features", emb_features),
    ):
        positive_int(name, value)
    num_scales = positive_int("num_scales", num_scales, minimum=2)
    if not isinstance(output_heads, int) or not 1 <= output_heads <= num_scales:
        raise VCEInputError(f"output_heads is {output_heads!r}", expected=f"an integer in [1, {num_scales}]")
    _check_dropout(dropout)
    return in_slices


def _unet_level(
    spatial_dims: int,
    in_channels: int,
    channels: int,
    *,
    attention: bool,
    num_res_blocks: int,
    emb_features: int,
    dropout: float,
    attention_window: int,
    head_channels: int,
) -> nn.ModuleList:
    """One side of one U-Net scale: ``num_res_blocks`` conditional residual blocks (the first maps
    ``in_channels`` to ``channels``), each followed by local attention when ``attention``."""
    blocks = nn.ModuleList()
    for i in range(num_res_blocks):
        layers: list[nn.Module] = [
            ConditionalResBlock(
                spatial_dims, in_channels if i == 0 else channels, channels, emb_features, dropout
            )
        ]
        if attention:
            layers.append(
                LocalAttention(spatial_dims, channels, attention_window, head_channels=head_channels)
            )
        blocks.append(EmbedSequential(*layers))
    return blocks


def _t1_head(spatial_dims: int, in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """The T1 head: the log T1 factor of every voxel (:meth:`LowDoseGenerator.t1_log_map`), zero-initialised
    (the regression head starts at the default T1, the class head at the mean of its table row). With
    ``hidden`` channels it is wider and deeper: 3x3 convolutions dilated 1, 2, 4 (and the 3x3 output) reach
    ±8 voxels; without, one convolution."""
    d = spatial_dims
    if not hidden:
        return nn.Sequential(
            group_norm(in_channels), nn.SiLU(), zero_module(conv_nd(d, in_channels, out_channels))
        )
    layers: list[nn.Module] = [group_norm(in_channels), nn.SiLU(), conv_nd(d, in_channels, hidden)]
    for dilation in (2, 4):
        layers += [group_norm(hidden), nn.SiLU(), conv_nd(d, hidden, hidden, dilation=dilation)]
    layers += [group_norm(hidden), nn.SiLU(), zero_module(conv_nd(d, hidden, out_channels))]
    return nn.Sequential(*layers)


@register_model("ld_cgan_generator")
class LowDoseGenerator(nn.Module):
    """Conditional U-Net generator of residual low-dose images (seed 000, Fig. 5). Trained by
    :class:`LowDoseObjective` (``objective = "ld_cgan"``).

    Parameters
    ----------
    spatial_dims:
        3 for volumes (the paper), 2 for slices / 2.5-D stacks.
    in_slices:
        Channels of ``native`` and of ``standard_dose`` each (odd; > 1 only for 2.5-D).
    out_channels:
        Channels of the predicted residual (1: the centre slice or the volume).
    base_channels:
        Channels at the finest scale (12), doubled at every coarser scale; also the attention head width.
    num_scales:
        Number of U-Net scales (4); spatial sizes must be divisible by ``2 ** (num_scales - 1)``.
    num_res_blocks:
        Conditional residual blocks per scale on each side of the U-Net.
    emb_features:
        Width of the metadata embedding (128).
    attention_window:
        Window of the local attention blocks (3 -> 3x3x3), used at every scale but the finest.
    output_heads:
        Number of output scales (1 <= output_heads <= num_scales): full, 1/2, 1/4, ...
    dropout:
        Dropout in the residual blocks.
    base:
        ``"native"`` (the paper): the heads predict the residual ``ŷ_LD`` itself. ``"linear"``: the heads
        predict a correction that is added to the linear baseline's residual ``d̂ · (x_SD − x_NA)`` (centre
        slice for 2.5-D); the heads' last convolutions start at zero, so training starts from the baseline.
        ``"physics"``: the same on the physics baseline's residual (:func:`physics_residual`); every call
        then needs the samples' ``sequence``.
    learn_t1:
        ``base="physics"`` only (our option): a head on the finest decoder features predicts a per-voxel
        native T1 factor ``exp(t)``, ``|t| ≤`` :data:`T1_LOG_RANGE` (zero-initialised: the default T1), and
        the physics residual is computed with it. The one unknown of the physics baseline is learned, and
        what it changes scales with the dose as the signal equation says.
    t1_hidden:
        0 (default): the T1 head is one 3×3 convolution of the finest decoder features. A width > 0 (our
        option, with ``learn_t1``): three 3×3 convolutions of that width, dilated 1, 2 and 4, before it, so
        the head reaches ±8 voxels of the finest features (a rim around necrosis vs a solid lesion).
    t1_classes:
        ``False`` (default): the T1 head regresses the log factor ``t`` (``T1_LOG_RANGE · tanh``). ``True``
        (our option, with ``learn_t1``): the head classifies every voxel into the phantom's enhancing
        tissues (:func:`t1_class_table`) and ``t`` is the softmax-weighted mean of their tabulated log
        factors at the sample's field strength; the objective then trains it with a cross-entropy on the
        tissue labels (``loss_weights.t1``), in which telling the enhancing rim from a metastasis counts as
        much as telling it from the dura, however close their T1.
    texture_sigma:
        0 (default) or a width in voxels (our option, with a base): the heads' outputs are high-passed,
        ``G − Gauss_σ(G)`` (σ halved at each coarser head), so they carry no mean over regions much wider
        than σ, and changes of the mean signal at that scale go through the base (with ``learn_t1``, the
        T1 map). Over a region a few σ wide, such as a lesion, they can still shift the mean: measured on
        the bundled default (σ = 2) at 3 T, about +0.0075 on metastases and −0.0026 on weakly enhancing
        lesions (README, "On those lesions the default loses by a bias its texture heads add").
    texture_scale:
        1 (default) or a factor ≥ 0 (with a base): the heads' outputs are multiplied by it before the base
        is added. Not trained: set after training by the noise calibration
        (:mod:`vce_core.evaluate.calibrate`, which picks the factor that matches the acquired
        subtraction's noise by one measure on cases outside training); 0 leaves the base alone
        (``vce_core.evaluate --heads-off``).
    native_slope:
        0 (default), a slope ``k``, or ``[k_1.5T, k_3T]`` (below / from 2.25 T) (our option, with
        ``texture_sigma``): before the heads are scaled, ``k · (x_NA − Gauss_σ(x_NA))`` (native centre
        slice, σ = ``texture_sigma``; average-pooled to the coarser heads) is added to their outputs.
        Trained on noisy acquisitions, the heads learn to copy minus the native image's high-pass, lesion
        contrast included (on the default's parent a slope over the brain of about 0.15 at 1.5 T and 0.07
        at 3 T, where the native image is less noisy). The part of it that is noise cancels some of the
        native noise in ``x̂_LD``; the part that is anatomy shifts the mean of every small lesion that
        stands out on the native image. Not trained: set after training to the least-squares slope of the
        heads' mean contribution on the mean ``−HP(x_NA)`` over the weakly enhancing lesions of phantom
        cases outside training (:mod:`vce_core.evaluate.calibrate` ``--fit native-slope``; 0.055 at 1.5 T
        and 0.062 at 3 T for the bundled default), so that the corrected heads no longer copy those
        lesions' native contrast.
    """

    objective = "ld_cgan"

    def __init__(
        self,
        spatial_dims: int = 3,
        in_slices: int = 1,
        out_channels: int = 1,
        base_channels: int = 12,
        num_scales: int = 4,
        num_res_blocks: int = 2,
        emb_features: int = 128,
        attention_window: int = 3,
        output_heads: int = 3,
        dropout: float = 0.0,
        base: str = "native",
        learn_t1: bool = False,
        texture_sigma: float = 0.0,
        t1_hidden: int = 0,
        t1_classes: bool = False,
        texture_scale: float = 1.0,
        native_slope: float | list[float] = 0.0,
    ):
        super().__init__()
        _check_physics_options(base, learn_t1, texture_sigma, t1_hidden, t1_classes)
        texture_scale = _check_texture_scale(texture_scale, base)
        native_slope = _check_native_slope(native_slope, texture_sigma)
        in_slices = _check_generator_args(
            spatial_dims,
            in_slices,
            out_channels,
            base_channels,
            num_scales,
            num_res_blocks,
            emb_features,
            output_heads,
            dropout,
            base,
        )
        dropout = float(dropout)
        self.config = constructor_config(LowDoseGenerator, locals())
        self.base = base
        self.spatial_dims = spatial_dims
        self.in_slices = in_slices
        self.out_channels = out_channels
        self.num_scales = num_scales
        d = spatial_dims
        widths = [base_channels * 2**s for s in range(num_scales)]
        level = partial(
            _unet_level,
            d,
            num_res_blocks=num_res_blocks,
            emb_features=emb_features,
            dropout=dropout,
            attention_window=attention_window,
            head_channels=base_channels,
        )
        self.embedding = MetadataEmbedding(emb_features)
        self.input_conv = conv_nd(d, 2 * in_slices + 1, base_channels)
        self.encoder = nn.ModuleList(
            level(widths[max(s - 1, 0)], widths[s], attention=s > 0) for s in range(num_scales)
        )
        self.pool = max_pool_nd(d)
        self.upsample = nn.ModuleList(Upsample(d, widths[s + 1], widths[s]) for s in range(num_scales - 1))
        self.decoder = nn.ModuleList(
            level(2 * widths[s], widths[s], attention=s > 0) for s in range(num_scales - 1)
        )
        self.heads = nn.ModuleList(
            nn.Sequential(group_norm(widths[s]), nn.SiLU(), conv_nd(d, widths[s], out_channels))
            for s in range(output_heads)
        )
        if base != "native":
            for head in self.heads:
                zero_module(head[-1])
        self.learn_t1, self.texture_sigma = bool(learn_t1), float(texture_sigma)
        # the heads' outputs are multiplied by it before the base is added (class docstring)
        self.texture_scale = texture_scale
        # k · HP(x_NA) is added to the heads before they are scaled (class docstring); (1.5 T, 3 T)
        self._slope_pair = native_slope if isinstance(native_slope, list) else [native_slope] * 2
        # t1_classes: the class table (a buffer, saved with the weights); None otherwise
        table = t1_class_table()[1] if t1_classes else None
        self.register_buffer("t1_table", table)
        t1_out = 1 if table is None else table.shape[1]
        self.t1_head = _t1_head(d, widths[0], t1_hidden, t1_out) if learn_t1 else None

    def t1_log_map(self, head_out: Tensor, field_strength: Tensor) -> Tensor:
        """The native-T1 log factor ``t`` ``[B, 1, *S]`` from the T1 head's output ``head_out``:
        ``T1_LOG_RANGE · tanh`` of it, or (``t1_classes``) the softmax-weighted mean of the class table's
        log factors at each sample's ``field_strength`` (``[B]``, tesla)."""
        if self.t1_table is None:
            return T1_LOG_RANGE * torch.tanh(head_out.float())
        rows = self.t1_rows(field_strength)
        probs = torch.softmax(head_out.float(), dim=1)
        return (probs * rows.view(*rows.shape, *([1] * self.spatial_dims))).sum(1, keepdim=True)

    def t1_rows(self, field_strength: Tensor) -> Tensor:
        """``[B, K]``: the class table's row of each sample's field strength (1.5 T row below 2.25 T)."""
        if self.t1_table is None:
            raise VCEInputError("this generator's T1 head has no tissue classes", expected="t1_classes: true")
        low = low_field(field_strength.to(self.t1_table.device)).view(-1, 1)
        return torch.where(low, self.t1_table[0], self.t1_table[1])

    @property
    def size_multiple(self) -> int:
        """Every spatial size must be a multiple of this (``2 ** (num_scales - 1)``)."""
        return 2 ** (self.num_scales - 1)

    def forward(
        self,
        native: Tensor,
        standard_dose: Tensor,
        dose: Tensor | float,
        field_strength: Tensor | float,
        noise: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        sequence: Tensor | None = None,
    ) -> list[Tensor]:
        """Predict residual low-dose images at every output scale.

        Parameters
        ----------
        native, standard_dose:
            ``[B, in_slices, *S]`` float images (normalised units), ``S`` divisible by
            :attr:`size_multiple` (8 with the default 4 scales).
        dose:
            ``[B]`` (or one number for all) dose as a fraction of the standard dose (0.1 = 10 %).
        field_strength:
            ``[B]`` (or one number) field strength in tesla (1.5 or 3).
        noise:
            ``[B, 1, *S]`` noise image ``z``; drawn from ``N(0, 1)`` when ``None`` (with ``generator``
            when given, for reproducible samples).
        sequence:
            ``[B, 3]`` (or ``[3]`` for all) :func:`sequence_tensor` of each sample: needed by
            ``base="physics"`` (VCEInputError without it), ignored otherwise.

        Returns
        -------
        list[Tensor]
            ``output_heads`` residual predictions ``ŷ_LD``: index 0 ``[B, out_channels, *S]``, then
            ``[B, out_channels, *S/2]``, ``[B, out_channels, *S/4]``, ...
        """
        heads, t1_log, dose_t, field_t = self._parts(
            (native, standard_dose, dose, field_strength, noise), generator
        )
        if self.base == "native":
            return heads
        base = self.base_residual(native, standard_dose, dose_t, field_t, sequence, t1_log=t1_log)
        return [o + self._pooled(base.to(o.dtype), o) for o in heads]

    def _parts(
        self, inputs: tuple[Any, ...], generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], Tensor | None, Tensor, Tensor]:
        """What :meth:`forward` adds the base to: ``(heads, t1_log, dose, field_strength)``.

        ``inputs`` are :meth:`forward`'s ``(native, standard_dose, dose, field_strength, noise)``. ``heads``
        are the output heads (high-passed and scaled; as they are for ``base="native"``, whose output they
        are), ``t1_log`` the learned native-T1 log factor ``[B, 1, *S]`` (:meth:`_learned_t1`; None without
        ``learn_t1``), ``dose``/``field_strength`` the per-sample ``[B]`` tensors.
        """
        native, standard_dose, dose, field_strength, noise = inputs
        batch, spatial = _check_images(self.spatial_dims, self.in_slices, native, standard_dose)
        bad = [s for s in spatial if s % self.size_multiple]
        if bad:
            raise VCEInputError(
                f"spatial size {spatial} is not divisible by {self.size_multiple}",
                expected=f"every spatial size a multiple of {self.size_multiple} (pad or crop the input)",
            )
        dose_t = _per_sample("dose", dose, batch, native)
        field_t = _per_sample("field_strength", field_strength, batch, native)
        if noise is None:
            noise = torch.randn(
                (batch, 1, *spatial), generator=generator, device=native.device, dtype=native.dtype
            )
        elif tuple(noise.shape) != (batch, 1, *spatial):
            raise VCEInputError(
                f"noise has shape {tuple(noise.shape)}", expected=f"shape {(batch, 1, *spatial)}"
            )

        emb = self.embedding(dose_t, field_t)
        h = self.input_conv(torch.cat([native, standard_dose, noise.to(native.dtype)], dim=1))
        skips = []
        for s, blocks in enumerate(self.encoder):
            if s > 0:
                h = self.pool(h)
            for block in blocks:
                h = block(h, emb)
            skips.append(h)

        outputs: list[Tensor | None] = [None] * len(self.heads)
        coarsest = self.num_scales - 1
        if coarsest < len(self.heads):
            outputs[coarsest] = self.heads[coarsest](h)
        for s in reversed(range(self.num_scales - 1)):
            h = torch.cat([self.upsample[s](h), skips[s]], dim=1)
            for block in self.decoder[s]:
                h = block(h, emb)
            if s < len(self.heads):
                outputs[s] = self.heads[s](h)
        heads = [o for o in outputs if o is not None]
        if self.base == "native":
            return heads, None, dose_t, field_t
        if self.texture_sigma > 0:
            heads = [o - _lowpass(o, self.texture_sigma / 2**k) for k, o in enumerate(heads)]
        if any(self._slope_pair):  # [0, 0] as well as 0: nothing to add
            c = self.in_slices // 2
            centre = native[:, c : c + 1] if self.out_channels == 1 else native
            k = self._native_slopes(field_t).view(-1, *([1] * (centre.ndim - 1)))
            detail = k.to(centre.dtype) * (centre - _lowpass(centre, self.texture_sigma))
            heads = [o + self._pooled(detail.to(o.dtype), o) for o in heads]
        if self.texture_scale != 1.0:
            heads = [o * self.texture_scale for o in heads]
        t1_log = self._learned_t1(h, field_t, (native, standard_dose, dose, field_strength, noise))
        return heads, t1_log, dose_t, field_t

    def _native_slopes(self, field_strength: Tensor) -> Tensor:
        """``[B]``: each sample's ``native_slope`` (the 1.5 T value below 2.25 T when there are two)."""
        slopes = self._slope_pair
        return torch.where(low_field(field_strength), slopes[0], slopes[1]).to(field_strength.device)

    def _learned_t1(self, h: Tensor, field_strength: Tensor, inputs: tuple[Any, ...]) -> Tensor | None:
        """The learned T1 log map from the top decoder features ``h`` (None without ``learn_t1``).
        ``inputs`` (as :meth:`_parts`, the noise drawn) are for subclasses that combine several maps."""
        return None if self.t1_head is None else self.t1_log_map(self.t1_head(h), field_strength)

    def base_residual(
        self,
        native: Tensor,
        standard_dose: Tensor,
        dose: Tensor,
        field_strength: Tensor,
        sequence: Tensor | None = None,
        *,
        t1_log: Tensor | None = None,
    ) -> Tensor:
        """The residual the heads correct: ``d̂ · (x_SD − x_NA)`` (``linear``) or :func:`physics_residual`
        (``physics``, with the assumed native T1 multiplied by ``exp(t1_log)`` when given, ``[B, 1, *S]``),
        centre slice for 2.5-D; zeros for ``native``. Shapes as in :meth:`forward`."""
        if self.out_channels == 1 and self.in_slices > 1:
            c = self.in_slices // 2
            native, standard_dose = native[:, c : c + 1], standard_dose[:, c : c + 1]
        if self.base == "native":
            return torch.zeros_like(native)
        if self.base == "linear":
            return dose.to(native.dtype).view(-1, *([1] * (native.ndim - 1))) * (standard_dose - native)
        if sequence is None:
            raise VCEInputError(
                "this generator's base is the physics baseline, which needs the T1 sequence",
                expected="sequence = [background, TR (s), flip angle (rad)] per sample (sequence_tensor)",
            )
        batch = native.shape[0]
        seq = torch.as_tensor(sequence, device=native.device, dtype=torch.float32)
        if seq.shape == (3,):
            seq = seq.expand(batch, 3)
        if tuple(seq.shape) != (batch, 3) or not bool(torch.isfinite(seq).all()):
            raise VCEInputError(
                f"sequence has shape {tuple(seq.shape)} or non-finite values",
                expected=f"finite [background, TR (s), flip (rad)] per sample, shape ({batch}, 3)",
            )
        return physics_residual(native, standard_dose, dose, field_strength, seq, t1_log=t1_log)

    def _pooled(self, base: Tensor, like: Tensor) -> Tensor:
        """``base`` average-pooled to the size of the head ``like``."""
        factor = base.shape[-1] // like.shape[-1]
        if factor > 1:
            pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
            base = pool(base, factor)
        return base


@register_model("ld_cgan_critic")
class LowDoseCritic(nn.Module):
    """Conditional WGAN critic (seed 000): the generator's encoding side, 5 scales, no attention.

    Every argument is keyword-only. The image geometry (``spatial_dims``, ``in_slices``, ``out_channels``)
    has no default: a critic judges one generator's images and takes its geometry, which the trainer passes
    (:func:`vce_core.train_config.model_kwargs`).

    Parameters
    ----------
    spatial_dims, in_slices, out_channels:
        As for :class:`LowDoseGenerator`.
    base_channels, num_res_blocks, emb_features, dropout:
        As for :class:`LowDoseGenerator` (the paper uses identical hyperparameters).
    num_scales:
        Number of scales (5); pooling uses ``ceil_mode``, so any spatial size is accepted.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_slices: int,
        out_channels: int,
        base_channels: int = 12,
        num_scales: int = 5,
        num_res_blocks: int = 2,
        emb_features: int = 128,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_spatial_dims(spatial_dims)
        in_slices = _check_in_slices(in_slices)
        dropout = _check_dropout(dropout)
        self.config = constructor_config(
            LowDoseCritic,
            locals(),
            positive=("base_channels", "num_scales", "num_res_blocks", "emb_features"),
        )
        self.spatial_dims = spatial_dims
        self.in_slices = in_slices
        self.out_channels = out_channels
        d = spatial_dims
        widths = [base_channels * 2**s for s in range(num_scales)]
        self.embedding = MetadataEmbedding(emb_features)
        self.input_conv = conv_nd(d, out_channels + 2 * in_slices, base_channels)
        self.encoder = nn.ModuleList(
            EmbedSequential(
                *(
                    ConditionalResBlock(
                        d, widths[max(s - 1, 0)] if i == 0 else widths[s], widths[s], emb_features, dropout
                    )
                    for i in range(num_res_blocks)
                )
            )
            for s in range(num_scales)
        )
        self.pool = max_pool_nd(d, ceil_mode=True)
        self.out = nn.Sequential(group_norm(widths[-1]), nn.SiLU())
        self.score = nn.Linear(widths[-1], 1)

    def forward(
        self,
        residual: Tensor,
        native: Tensor,
        standard_dose: Tensor,
        dose: Tensor | float,
        field_strength: Tensor | float,
    ) -> Tensor:
        """Score residual images under their conditions.

        Parameters
        ----------
        residual:
            ``[B, out_channels, *S]`` real ``y_LD`` or generated ``ŷ_LD`` residual.
        native, standard_dose:
            ``[B, in_slices, *S]`` conditioning images.
        dose:
            ``[B]`` (or one number) dose, fraction of the standard dose (smoothed for real samples).
        field_strength:
            ``[B]`` (or one number) field strength in tesla.

        Returns
        -------
        Tensor
            ``[B]`` unbounded critic scores (higher = judged real).
        """
        batch, spatial = _check_images(self.spatial_dims, self.in_slices, native, standard_dose)
        if not isinstance(residual, Tensor) or tuple(residual.shape) != (batch, self.out_channels, *spatial):
            shape = tuple(residual.shape) if isinstance(residual, Tensor) else type(residual).__name__
            raise VCEInputError(
                f"residual has shape {shape}", expected=f"shape {(batch, self.out_channels, *spatial)}"
            )
        emb = self.embedding(
            _per_sample("dose", dose, batch, native),
            _per_sample("field_strength", field_strength, batch, native),
        )
        h = self.input_conv(torch.cat([residual, native, standard_dose], dim=1))
        for s, blocks in enumerate(self.encoder):
            if s > 0:
                h = self.pool(h)
            h = blocks(h, emb)
        h = self.out(h).flatten(2).mean(2)
        return self.score(h).squeeze(1)


# ============================================================================================== objective
def bias_loss(pred: Tensor, target: Tensor, pool: int = 8) -> Tensor:
    """``‖pool_k(ŷ) − pool_k(y)‖₁`` summed over the ``k``-wide blocks (``k = pool``; ceil mode at the
    edges), averaged over the batch: the local-mean (offset) error of ``pred`` ``[B, C, *S]`` vs ``target``,
    with the noise averaged out of both. VCEInputError for different shapes or ``pool`` < 1."""
    if tuple(pred.shape) != tuple(target.shape):
        raise VCEInputError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape",
            expected="tensors of one shape [B, C, *S]",
        )
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise VCEInputError(f"bias_pool is {pool!r}", expected="a positive integer block width")
    avg = F.avg_pool2d if pred.ndim == 4 else F.avg_pool3d
    diff = avg(pred - target, pool, ceil_mode=True)
    return diff.abs().flatten(1).sum(1).mean()


def _group_means(values: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` ``[N]`` over each distinct key (``keys`` ``[N]`` or ``[N, k]``, rows compared
    whole) and each group's count: ``(means [G], counts [G])``, differentiable in ``values``."""
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    count = torch.bincount(group)
    total = torch.zeros(count.shape[0], dtype=values.dtype, device=values.device).index_add(0, group, values)
    return total / count.to(values.dtype), count


def lesion_bias_loss(pred: Tensor, target: Tensor, regions: Tensor, min_voxels: int = 16) -> Tensor:
    """``Σ_regions |mean_R(ŷ − y)|`` per sample, averaged over the batch: the offset of ``pred`` vs
    ``target`` (``[B, C, *S]``) over each labelled region, the noise averaged out of both as in
    :func:`bias_loss`, but over a tissue's own voxels instead of fixed blocks, so a lesion is weighed as a
    whole however it falls on the block grid.

    ``regions`` ``[B, 1, *S]``: NaN outside every region, one value per region within a sample (the
    phantom's true T1 log factor of :func:`vce_core.data.true_t1_log_factor` is such a map: one value per
    tissue and field strength). Regions of fewer than ``min_voxels`` voxels in the sample (a lesion cut by
    the crop's edge) are left out: their mean is mostly noise. Zero (still differentiable) when no region
    is left; VCEInputError for mismatched shapes or ``min_voxels`` < 1."""
    if tuple(pred.shape) != tuple(target.shape) or regions.shape[0] != pred.shape[0] or regions.shape[1] != 1:
        raise VCEInputError(
            f"prediction {tuple(pred.shape)}, target {tuple(target.shape)}, regions {tuple(regions.shape)}",
            expected="prediction and target of one shape [B, C, *S], regions [B, 1, *S]",
        )
    if tuple(regions.shape[2:]) != tuple(pred.shape[2:]):
        raise VCEInputError(
            f"regions {tuple(regions.shape)} and prediction {tuple(pred.shape)} differ in size",
            expected="one spatial size",
        )
    if isinstance(min_voxels, bool) or not isinstance(min_voxels, int) or min_voxels < 1:
        raise VCEInputError(f"lesion_min_voxels is {min_voxels!r}", expected="a positive integer")
    known = torch.isfinite(regions).expand_as(pred)
    if not bool(known.any()):
        return pred.sum() * 0.0
    diff = (pred - target)[known]
    sample = torch.arange(pred.shape[0], device=pred.device).view(-1, *([1] * (pred.ndim - 1)))
    keys = torch.stack(
        [sample.expand_as(pred)[known].to(torch.float64), regions.expand_as(pred)[known].to(torch.float64)], 1
    )
    means, count = _group_means(diff, keys)
    return means.abs()[count >= min_voxels].sum() / pred.shape[0]


def t1_loss(t1_log: Tensor, target: Tensor, *, balance: bool = False) -> Tensor:
    """``mean |t − t_true|`` over the voxels with a finite target: the L1 error of a learned native-T1 log
    factor ``t1_log`` ``[B, 1, *S]`` against the phantom's true one (:func:`vce_core.data.true_t1_log_factor`,
    NaN where unknown), the target clipped to ±0.95 · :data:`T1_LOG_RANGE` (what the bounded head can
    reach). Zero (still differentiable) when no voxel has a target; VCEInputError for different shapes.

    ``balance``: the mean over the distinct target values in the batch of each value's mean error, so that
    every tissue (one T1 per tissue and field strength) counts alike however many voxels it holds; without
    it the dura, ten times the voxels of any lesion type, sets the map. Tissues that share a T1 share a
    group, which changes nothing they are asked to learn."""
    if tuple(t1_log.shape) != tuple(target.shape):
        raise VCEInputError(
            f"T1 map {tuple(t1_log.shape)} and target {tuple(target.shape)} differ in shape",
            expected="tensors of one shape [B, 1, *S]",
        )
    known = torch.isfinite(target)
    if not bool(known.any()):
        return t1_log.sum() * 0.0
    bound = 0.95 * T1_LOG_RANGE
    goal = target[known]
    err = (t1_log[known] - goal.clamp(-bound, bound)).abs()
    if not balance:
        return err.mean()
    return _group_means(err, goal)[0].mean()


def t1_class_loss(logits: Tensor, target: Tensor, rows: Tensor, *, balance: bool = False) -> Tensor:
    """Cross-entropy of a tissue-class T1 head (``t1_classes``) on the voxels with a finite target.

    ``logits`` ``[B, K, *S]``; ``target`` ``[B, 1, *S]`` the true log factor
    (:func:`vce_core.data.true_t1_log_factor`, NaN where unknown); ``rows`` ``[B, K]`` each sample's log
    factor of every class (:meth:`LowDoseGenerator.t1_rows`). A voxel's classes are those whose factor is
    its target (within 5e-3; distinct tissues differ by ≥ 0.02): tissues that share a T1 at a field
    strength (choroid plexus and metastasis at 1.5 T) form one set and the loss is ``−log Σ_set p``, since
    either gives the right T1. ``balance`` as in :func:`t1_loss`. Zero (still differentiable) when no voxel
    has a target; VCEInputError for mismatched shapes or a target no class holds."""
    if logits.ndim != target.ndim or logits.shape[0] != target.shape[0] or target.shape[1] != 1:
        raise VCEInputError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match",
            expected="logits [B, K, *S] and target [B, 1, *S]",
        )
    if tuple(logits.shape[2:]) != tuple(target.shape[2:]) or tuple(rows.shape) != tuple(logits.shape[:2]):
        raise VCEInputError(
            f"logits {tuple(logits.shape)}, target {tuple(target.shape)}, rows {tuple(rows.shape)}",
            expected="one spatial size, rows [B, K]",
        )
    known = torch.isfinite(target[:, 0])
    if not bool(known.any()):
        return logits.sum() * 0.0
    table = rows.to(logits.device).float().view(*rows.shape, *([1] * (logits.ndim - 2)))
    member = (table - target.float()).abs() < 5e-3
    orphan = known & ~member.any(1)
    if bool(orphan.any()):
        bad = sorted({round(float(v), 4) for v in target[:, 0][orphan][:8]})
        raise VCEInputError(
            f"T1 targets {bad} match no tissue class", expected="targets from true_t1_log_factor"
        )
    member = member | ~known.unsqueeze(1)  # unknown voxels: any class (finite, and not selected below)
    logp = torch.log_softmax(logits.float(), dim=1)
    nll = -torch.logsumexp(logp.masked_fill(~member, float("-inf")), dim=1)[known]
    if not balance:
        return nll.mean()
    return _group_means(nll, target[:, 0][known])[0].mean()


def content_loss(
    cfg: Any, preds: list[Tensor], target: Tensor, native: Tensor, vgg: nn.Module | None = None
) -> Tensor:
    """Content loss of the generator heads vs. the full-resolution target residual (paper's definitions).

    ``np`` = Σ over patches of the per-patch Wasserstein distance (:func:`vce_core.losses.np_loss`), ``l1`` =
    ``‖ŷ − y‖₁`` summed over the image, ``vgg`` = the mean VGG-16 relu3_3 feature error
    (:class:`vce_core.losses.VGGPerceptualLoss`, weights from ``cfg.perceptual_weights``); each averaged over
    the batch and summed over the output heads. With ``content_space: image`` the centre slice of ``native``
    (average-pooled to each head) is added to heads and target first, so the loss compares low-dose images
    ``x̂_LD`` with ``x_LD``.
    """
    from vce_core.losses import downsample_like, l1_loss, multiscale_loss, np_loss

    if cfg.content_space == "image":
        c = native.shape[1] // 2 if target.shape[1] == 1 else slice(None)
        base = native[:, c : c + 1] if isinstance(c, int) else native
        preds = [p + downsample_like(base, p) for p in preds]
        target = target + base
    if cfg.content_loss == "np":
        return np_loss(preds, target, **cfg.content_loss_kwargs)
    if cfg.content_loss == "vgg":
        assert vgg is not None
        return multiscale_loss(vgg, preds, target)
    return multiscale_loss(lambda p, t: l1_loss(p, t) * p[0].numel(), preds, target)  # ‖ŷ − y‖₁ per sample


@register_objective("ld_cgan")
class LowDoseObjective(Objective):
    """Seed 000's objective (eq. 1): WGAN critic loss + λ_GP · gradient penalty for the critic (images *and*
    doses interpolated), ``n_critic`` critic updates per generator update, and for the generator
    ``λ_C · content(g(z, c), y_LD) + λ_adv · (−f(g(z, ĉ), ĉ))``.

    Our second addition (phantom data only, off unless the config sets ``loss_weights: {t1: λ_T}``; needs
    ``generator_kwargs.learn_t1``): ``λ_T · mean |t − t_true|`` (:func:`t1_loss`), the learned T1 map's
    log factor against the phantom's true one on the voxels of enhancing tissues (the dataset then loads
    it as ``t1_target``). Without it the map is learned only through the images, where lesion types whose
    native signals differ by a few per cent get one factor. ``objective_kwargs.t1_balance: true`` weights
    every tissue alike (``t1_loss(balance=True)``) instead of every voxel; ``objective_kwargs.t1_tissues:
    all`` supervises the map on every labelled tissue (grey and white matter, CSF, necrosis, edema … as
    well; targets beyond the head's range are clipped, :func:`t1_loss`), ``lesions`` on the enhancing
    lesions only (not the dura, vessels and choroid plexus), instead of every enhancing tissue.

    Our first addition (not in the paper, off unless the config sets ``loss_weights: {bias: λ_B}``):
    ``λ_B · ‖pool_k(ŷ_LD) − pool_k(y_LD)‖₁`` (:func:`bias_loss`; ``k`` = ``objective_kwargs.bias_pool``,
    default 8), the L1 distance of the k×k block means of the full-resolution head and the target. Neither
    the per-patch Wasserstein distance nor the critic sees an offset much smaller than the noise, while
    lesion enhancement is a mean over many voxels; block means average the noise out, so this term pins the
    local mean without asking the generator to remove the noise.

    Our third addition (phantom labels, off unless the config sets ``loss_weights: {lesion: λ_L}``):
    ``λ_L · Σ_R |mean_R(ŷ_LD − y_LD)|`` (:func:`lesion_bias_loss`) over each tissue region ``R`` of a sample
    that ``objective_kwargs.t1_tissues`` names (``lesions``: the enhancing lesions), regions under
    ``objective_kwargs.lesion_min_voxels`` (16) voxels left out. It is the bias term over a lesion's own
    voxels: the target is the acquired (noisy) residual, so it asks for the right mean enhancement of each
    lesion, not for less noise; only the labels are phantom-only (a real dataset would need lesion
    segmentations).

    The content term compares residuals generated at the *acquired* doses with the real ones (every output
    head against the average-pooled target); the adversarial term scores residuals generated at *random*
    doses ``d̂ ~ U[dose_range]``. Real doses shown to the critic are label-smoothed (``+ N(0, 0.05²)``).
    Both generator passes run as one batch of ``2B``. Without a critic (``critic: ""``) or during
    ``warmup_iterations`` the generator is trained on its other terms alone (content; bias and T1 when
    set).
    """

    loss_terms = ("bias", "t1", "lesion")
    options = ("bias_pool", "t1_balance", "t1_tissues", "lesion_min_voxels")

    def __init__(self, trainer: Any):
        super().__init__(trainer)
        self.vgg: nn.Module | None = None
        if trainer.cfg.content_loss == "vgg":
            from vce_core.losses import VGGPerceptualLoss

            if not trainer.cfg.perceptual_weights:
                raise VCEInputError(
                    "content_loss vgg needs the VGG-16 weights file",
                    expected="perceptual_weights: <path to a local VGG-16 .safetensors or .pth>",
                )
            self.vgg = VGGPerceptualLoss(trainer.cfg.perceptual_weights).to(trainer.device)
        # the largest T1 weight of any stage; > 0: the trainer's datasets load the phantom's T1 target
        self.t1_weight = max((float(st.loss_weights.get("t1", 0.0)) for st in trainer.stages), default=0.0)
        # the largest lesion-term weight of any stage; > 0: the same target, read as the tissue regions
        self.lesion_weight = max(
            (float(st.loss_weights.get("lesion", 0.0)) for st in trainer.stages), default=0.0
        )
        self.lesion_min_voxels = trainer.cfg.objective_kwargs.get("lesion_min_voxels", 16)
        low = self.lesion_min_voxels
        if isinstance(low, bool) or not isinstance(low, int) or low < 1:
            raise VCEInputError(f"objective_kwargs.lesion_min_voxels is {low!r}", expected="an integer ≥ 1")
        if self.t1_weight and getattr(trainer.generator, "t1_head", None) is None:
            raise VCEInputError(
                "loss_weights.t1 supervises a learned T1 map, but this generator has none",
                expected="generator_kwargs: {base: physics, learn_t1: true} (or drop loss_weights.t1)",
            )
        self.t1_balance = trainer.cfg.objective_kwargs.get("t1_balance", False)
        if not isinstance(self.t1_balance, bool):
            raise VCEInputError(
                f"objective_kwargs.t1_balance is {self.t1_balance!r}", expected="true or false"
            )
        from vce_core.data import T1_TARGET_TISSUES

        self.t1_tissues = trainer.cfg.objective_kwargs.get("t1_tissues", "enhancing")
        if not isinstance(self.t1_tissues, str) or self.t1_tissues not in T1_TARGET_TISSUES:
            raise VCEInputError(
                f"objective_kwargs.t1_tissues is {self.t1_tissues!r}", expected=" or ".join(T1_TARGET_TISSUES)
            )
        if self.t1_tissues != "enhancing" and getattr(trainer.generator, "t1_table", None) is not None:
            raise VCEInputError(
                f"objective_kwargs.t1_tissues {self.t1_tissues} with a tissue-class T1 head (its classes are "
                "the enhancing tissues)",
                expected='t1_tissues "enhancing", or generator_kwargs.t1_classes false',
            )

    @property
    def t1_target(self) -> str | bool:
        """What the trainer's datasets load as ``t1_target``: the tissue scope when the T1 term or the
        lesion term is on, else False."""
        return self.t1_tissues if self.t1_weight or self.lesion_weight else False

    def _noise(self, like: Tensor, n: int) -> Tensor:
        return torch.randn((n, 1, *like.shape[2:]), device=self.trainer.device)

    def _sample_doses(self, n: int) -> Tensor:
        from vce_core.losses import sample_generated_doses

        lo, hi = self.trainer.cfg.dose_range
        return sample_generated_doses(n, lo, hi).to(self.trainer.device)

    def step(self) -> dict[str, float]:
        """``n_critic`` critic updates (once warm-up is over), then one generator update."""
        t = self.trainer
        adversarial = "critic" in t.nets and t.step >= t.cfg.warmup_iterations
        stats: dict[str, float] = {}
        if adversarial:
            for _ in range(t.cfg.n_critic):
                stats = self.critic_step(t.next_batch())
        return stats | self.generator_step(t.next_batch(), adversarial)

    def critic_step(self, b: dict[str, Any]) -> dict[str, float]:
        """One critic update: WGAN loss on (real y_LD, smoothed d) vs (g(z, ĉ), d̂) + λ_GP · GP."""
        from vce_core.losses import gradient_penalty, smooth_dose_labels, wgan_critic_loss

        t = self.trainer
        critic, d_train = t.nets["critic"], t.train_nets["critic"]
        nat, sd, res, fs = b["native"], b["standard_dose"], b["residual"], b["field_strength"]
        n = nat.shape[0]
        fake_dose = self._sample_doses(n)
        with torch.no_grad(), t.autocast():
            fake = t.generator(nat, sd, fake_dose, fs, self._noise(nat, n), sequence=b.get("sequence"))[0]
            fake = fake.float()
        real_dose = smooth_dose_labels(b["dose"], t.cfg.dose_label_std)
        with t.autocast():
            # real and fake scored in one pass (one DDP forward per backward)
            scores = d_train(
                torch.cat([res, fake]),
                torch.cat([nat, nat]),
                torch.cat([sd, sd]),
                torch.cat([real_dose, fake_dose]),
                torch.cat([fs, fs]),
            ).float()
            gp = gradient_penalty(
                critic, res, fake, (nat, sd, real_dose, fs), (nat, sd, fake_dose, fs), t.cfg.lambda_gp
            )
        wgan = wgan_critic_loss(scores[:n], scores[n:])
        loss = wgan + gp.float()
        # The penalty ran through the unwrapped critic; autograd sums both uses of a parameter before its
        # gradient-accumulation hook fires once, so DDP still averages the complete critic gradient.
        t.update("d", loss)
        return {"loss_d": loss.item(), "wasserstein": -wgan.item(), "gp": gp.item()}

    def generator_step(self, b: dict[str, Any], adversarial: bool) -> dict[str, float]:
        """One generator update: λ_C · content at acquired doses (+ λ_adv · −f(g(z, ĉ), ĉ), random doses)."""
        from vce_core.losses import wgan_generator_loss

        t = self.trainer
        nat, sd, res, dose, fs = (
            b["native"],
            b["standard_dose"],
            b["residual"],
            b["dose"],
            b["field_strength"],
        )
        n = nat.shape[0]
        seq = b.get("sequence")
        if adversarial:
            fake_dose = self._sample_doses(n)
            inputs = (
                torch.cat([nat, nat]),
                torch.cat([sd, sd]),
                torch.cat([dose, fake_dose]),
                torch.cat([fs, fs]),
            )
            seq = None if seq is None else torch.cat([seq, seq])
        else:
            inputs = (nat, sd, dose, fs)
        lambda_t1 = t.weight("t1", 0.0)
        seen: list[Tensor] = []
        hook = (
            t.generator.t1_head.register_forward_hook(lambda _m, _i, o: seen.append(o)) if lambda_t1 else None
        )
        try:
            with t.autocast():
                preds = t.g_train(*inputs, self._noise(nat, inputs[0].shape[0]), sequence=seq)
        finally:
            if hook is not None:
                hook.remove()
        preds = [p.float() for p in preds]
        content = content_loss(t.cfg, [p[:n] for p in preds], res, nat, self.vgg)
        loss = t.cfg.lambda_content * content
        out = {"content": content.item()}
        lambda_bias = t.weight("bias", 0.0)
        if lambda_bias:
            bias = bias_loss(preds[0][:n], res, int(t.cfg.objective_kwargs.get("bias_pool", 8)))
            loss = loss + lambda_bias * bias
            out["bias"] = bias.item()
        lambda_lesion = t.weight("lesion", 0.0)
        if (lambda_t1 or lambda_lesion) and "t1_target" not in b:
            raise VCEInputError(
                "loss_weights.t1 or .lesion is set but the batch holds no t1_target",
                expected="a dataset built with t1_target=True (the trainer builds it so)",
            )
        if lambda_lesion:
            lesion = lesion_bias_loss(preds[0][:n], res, b["t1_target"], self.lesion_min_voxels)
            loss = loss + lambda_lesion * lesion
            out["lesion"] = lesion.item()
        if lambda_t1:
            if not seen:  # e.g. a compiled generator whose submodule hooks do not run
                raise VCEInputError(
                    "loss_weights.t1 could not read the generator's T1 map during the forward pass",
                    expected="compile: false with loss_weights.t1",
                )
            gen = t.generator
            if getattr(gen, "t1_table", None) is not None:
                t1 = t1_class_loss(seen[-1][:n], b["t1_target"], gen.t1_rows(fs), balance=self.t1_balance)
            else:
                t1_log = gen.t1_log_map(seen[-1][:n], fs)
                t1 = t1_loss(t1_log, b["t1_target"], balance=self.t1_balance)
            loss = loss + lambda_t1 * t1
            out["t1"] = t1.item()
        if adversarial:
            critic = t.nets["critic"]
            critic.requires_grad_(False)  # unwrapped critic: no DDP reduction, no critic grads
            with t.autocast():
                adv = wgan_generator_loss(critic(preds[0][n:], nat, sd, fake_dose, fs).float())
            critic.requires_grad_(True)
            loss = loss + t.cfg.lambda_adv * adv
            out["adv"] = adv.item()
        t.update("g", loss)
        out["loss_g"] = loss.item()
        return out

    def deviations(self) -> list[str]:
        cfg = self.trainer.cfg
        out = []
        if not cfg.critic or cfg.lambda_adv == 0:
            out.append("content-only training: no critic, no adversarial term (the paper trains a GAN)")
        if cfg.warmup_iterations:
            out.append(
                f"warm-up without the critic for the first {cfg.warmup_iterations} of {cfg.iterations} "
                "generator iterations (only the generator's non-adversarial terms)"
            )
        if cfg.loss_weights.get("bias"):
            k = int(cfg.objective_kwargs.get("bias_pool", 8))
            out.append(
                f"bias term (ours): {cfg.loss_weights['bias']:g} x L1 of the {k}x{k} block means of the "
                "full-resolution head and the target residual"
            )
        if self.lesion_weight:
            out.append(
                f"lesion term (ours, phantom labels): {self.lesion_weight:g} x L1 of the mean of the "
                "full-resolution head minus the target residual over each "
                + {"all": "labelled tissue", "lesions": "enhancing lesion tissue"}.get(
                    self.t1_tissues, "enhancing tissue"
                )
                + " of a sample"
            )
        if self.t1_weight:
            classes = getattr(self.trainer.generator, "t1_table", None) is not None
            what = (
                "cross-entropy of the T1 head's tissue classes (T1 from the phantom's table) against the "
                "phantom's labels"
                if classes
                else "L1 of the learned T1 map's log factor against the phantom's true native T1"
            )
            out.append(
                f"T1 supervision (ours, phantom only): {self.t1_weight:g} x {what} on "
                + {"all": "every labelled tissue", "lesions": "the enhancing lesions"}.get(
                    self.t1_tissues, "enhancing tissue"
                )
                + (", each tissue weighted alike" if self.t1_balance else "")
            )
        return out

    def card_fields(self) -> dict[str, Any]:
        cfg = self.trainer.cfg
        return {
            "content_loss": cfg.content_loss,
            "content_space": cfg.content_space,
            "dose_range": list(cfg.dose_range),
        }
