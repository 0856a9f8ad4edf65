"""Building blocks shared by the generators and critics, for 2-D and 3-D alike.

Everything here takes ``spatial_dims`` (2 or 3) so one class serves slices and volumes. Tensors are
``[B, C, *S]`` with ``S`` = ``(H, W)`` or ``(D, H, W)``.

Plain blocks for the virtual-contrast generators (seeds 001–004): :func:`norm_nd` (batch / instance / none),
:func:`activation`, :class:`ConvNormAct` ("Conv-BN-ReLU" and its variants, any stride and dilation),
:class:`ResBlock` (two of them plus a skip) and :func:`transposed_upsampling` (the up-sampling half of
pix2pix's decoder, seeds 002 and 004).

The conditioning follows openai/guided-diffusion (``unet.py``): a metadata embedding ``emb [B, E]`` enters
every :class:`ConditionalResBlock` through its own learnable ``SiLU -> Linear`` projection, applied as a
per-channel scale and shift after the block's second normalisation; the block's last convolution is
zero-initialised so that an untrained block is the identity (up to its skip projection).
:class:`EmbedSequential` routes ``emb`` only to the blocks that take it.

:class:`LocalAttention` is the local attention block (LAB) of seed 000: every voxel attends to the
``window^d`` voxels around it (3 x 3 x 3 in 3-D, 3 x 3 in 2-D).
"""

from __future__ import annotations

import inspect
import itertools
import math
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vce_core.errors import VCEInputError

__all__ = [
    "ConditionalResBlock",
    "ConvNormAct",
    "ResBlock",
    "EmbedBlock",
    "EmbedSequential",
    "LocalAttention",
    "MetadataEmbedding",
    "Upsample",
    "check_images",
    "check_spatial_dims",
    "constructor_config",
    "positive_int",
    "transposed_upsampling",
    "conv_nd",
    "group_norm",
    "max_pool_nd",
    "activation",
    "norm_nd",
    "zero_module",
]


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise :class:`VCEInputError`."""
    if spatial_dims not in (2, 3):
        raise VCEInputError(f"spatial_dims is {spatial_dims!r}", expected="2 (slices) or 3 (volumes)")
    return spatial_dims


def conv_nd(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Module:
    """A ``Conv2d``/``Conv3d`` with "same" padding (odd ``kernel_size``), stride 1, optional ``dilation``."""
    cls = {2: nn.Conv2d, 3: nn.Conv3d}[check_spatial_dims(spatial_dims)]
    return cls(
        in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation
    )


def max_pool_nd(spatial_dims: int, ceil_mode: bool = False) -> nn.Module:
    """2x max-pooling in every spatial axis (``ceil_mode`` keeps odd sizes instead of dropping a row)."""
    cls = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[check_spatial_dims(spatial_dims)]
    return cls(kernel_size=2, stride=2, ceil_mode=ceil_mode)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with ``gcd(channels, 8)`` groups (12 channels -> 4 groups of 3, 24 -> 8 groups of 3).

    Normalisation is per sample, so it is compatible with the per-sample gradient penalty of WGAN-GP
    (batch norm is not).
    """
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it (guided-diffusion's last-conv init)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbedBlock(nn.Module):
    """A block whose ``forward`` takes ``(x, emb)``; :class:`EmbedSequential` passes ``emb`` to it."""

    @abstractmethod
    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - interface
        """``x [B, C, *S]``, ``emb [B, E]`` -> ``[B, C', *S]``."""


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that routes the embedding to :class:`EmbedBlock` children only."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, EmbedBlock) else layer(x)
        return x


class MetadataEmbedding(nn.Module):
    """Two-layer MLP embedding of the metadata ``(dose, field strength)`` (seed 000, supplementary).

    ``m = (dose, (B - 2.25) / 0.75)`` (so 1.5 T -> -1 and 3 T -> +1) goes through
    ``Linear(2, F) -> SiLU -> Linear(F, F)``.

    Parameters
    ----------
    features:
        Width ``F`` of the embedding (128 in the paper).
    """

    FIELD_CENTRE_T = 2.25
    FIELD_HALF_RANGE_T = 0.75

    def __init__(self, features: int = 128):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(2, features), nn.SiLU(), nn.Linear(features, features))

    def forward(self, dose: Tensor, field_strength: Tensor) -> Tensor:
        """``dose [B]`` (fraction of the standard dose), ``field_strength [B]`` (tesla) -> ``[B, F]``."""
        b = (field_strength - self.FIELD_CENTRE_T) / self.FIELD_HALF_RANGE_T
        meta = torch.stack([dose, b], dim=1).to(self.mlp[0].weight.dtype)
        return self.mlp(meta)


class ConditionalResBlock(EmbedBlock):
    """Conditional residual block (CRB): the guided-diffusion ``ResBlock`` with scale/shift conditioning.

    ``h = conv(SiLU(GN(x)))``; ``h = GN(h) * (1 + scale) + shift`` with ``(scale, shift) =
    Linear(SiLU(emb))``; ``out = skip(x) + conv0(dropout(SiLU(h)))`` where ``conv0`` starts at zero and
    ``skip`` is the identity or a 1x1 convolution when the channel count changes.

    Parameters
    ----------
    spatial_dims:
        2 or 3.
    in_channels, out_channels:
        Channels of ``x`` and of the output.
    emb_features:
        Width ``E`` of the embedding it receives.
    dropout:
        Dropout probability before the last convolution.

    Shapes: ``x [B, in_channels, *S]``, ``emb [B, E]`` -> ``[B, out_channels, *S]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        emb_features: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), conv_nd(spatial_dims, in_channels, out_channels)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_features, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(conv_nd(spatial_dims, out_channels, out_channels)),
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else conv_nd(spatial_dims, in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb).to(h.dtype).chunk(2, dim=1)
        view = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        h = self.out_norm(h) * (1 + scale.reshape(view)) + shift.reshape(view)
        return self.skip(x) + self.out_layers(h)


class LocalAttention(nn.Module):
    """Local attention block (LAB): multi-head self-attention inside a ``window^d`` neighbourhood.

    Each voxel's query attends to the keys of the ``window^d`` voxels centred on it (3 x 3 x 3 in 3-D,
    3 x 3 in 2-D), plus a learned relative-position bias per head and offset; neighbours outside the
    image are masked out (not zero-padded into the softmax). The result goes through a zero-initialised
    1x1 projection and is added to the input, so an untrained block is the identity.

    The neighbourhood is gathered with ``window^d`` shifted views of the padded keys and values (the
    same numbers as ``F.unfold`` in 2-D, which has no 3-D counterpart), so memory is
    ``O(window^d * B * C * |S|)``.

    Parameters
    ----------
    spatial_dims:
        2 or 3.
    channels:
        Channels ``C`` of the input; must be divisible by ``head_channels``.
    window:
        Odd window width (3 in the paper).
    head_channels:
        Channels per attention head (``C // head_channels`` heads).

    Shapes: ``x [B, C, *S]`` -> ``[B, C, *S]``.
    """

    def __init__(self, spatial_dims: int, channels: int, window: int = 3, head_channels: int = 12):
        super().__init__()
        check_spatial_dims(spatial_dims)
        if window < 1 or window % 2 == 0:
            raise VCEInputError(f"attention window is {window}", expected="an odd window width (e.g. 3)")
        if channels % head_channels:
            raise VCEInputError(
                f"{channels} channels cannot be split into heads of {head_channels} channels",
                expected="channels divisible by head_channels",
            )
        self.spatial_dims = spatial_dims
        self.window = window
        self.num_heads = channels // head_channels
        self.head_channels = head_channels
        self.norm = group_norm(channels)
        self.qkv = conv_nd(spatial_dims, channels, 3 * channels, kernel_size=1)
        self.proj_out = zero_module(conv_nd(spatial_dims, channels, channels, kernel_size=1))
        self.position_bias = nn.Parameter(torch.zeros(self.num_heads, window**spatial_dims))

    def _shifted(self, t: Tensor, spatial: tuple[int, ...]) -> list[Tensor]:
        """All ``window^d`` shifted views of the padded ``t [..., *(S + 2r)]``, each ``[..., *S]``."""
        views = []
        for offset in itertools.product(range(self.window), repeat=self.spatial_dims):
            index = tuple(slice(o, o + s) for o, s in zip(offset, spatial, strict=True))
            views.append(t[(..., *index)])
        return views

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        spatial_t = tuple(spatial)
        r = self.window // 2
        pad = (r, r) * self.spatial_dims
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, self.head_channels, *spatial)
        q, k, v = qkv.unbind(1)  # each [B, heads, dh, *S]
        keys = self._shifted(F.pad(k, pad), spatial_t)
        values = self._shifted(F.pad(v, pad), spatial_t)
        inside = self._shifted(
            F.pad(torch.ones(spatial_t, dtype=torch.bool, device=x.device), pad), spatial_t
        )

        scale = self.head_channels**-0.5
        logits = torch.stack([(q * kk).sum(2) for kk in keys], dim=2) * scale  # [B, heads, W, *S]
        logits = logits + self.position_bias.reshape(1, self.num_heads, -1, *([1] * self.spatial_dims))
        logits = logits.masked_fill(~torch.stack(inside, dim=0), float("-inf"))
        attn = logits.softmax(dim=2)
        out = sum(attn[:, :, w].unsqueeze(2) * vv for w, vv in enumerate(values))  # [B, heads, dh, *S]
        return x + self.proj_out(out.reshape(b, c, *spatial))


class Upsample(nn.Module):
    """2x nearest-neighbour upsampling followed by a 3x3(x3) convolution (guided-diffusion ``Upsample``).

    Shapes: ``[B, in_channels, *S]`` -> ``[B, out_channels, *(2S)]``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = conv_nd(spatial_dims, in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# ============================================================================================== plain blocks
NORMS = ("batch", "instance", "none")
ACTIVATIONS = ("relu", "leaky_relu", "none")


def norm_nd(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    """``batch`` (BatchNorm), ``instance`` (InstanceNorm, affine, as pix2pix's discriminators) or ``none``."""
    check_spatial_dims(spatial_dims)
    if kind == "batch":
        return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise VCEInputError(f"normalisation {kind!r}", expected=" or ".join(NORMS))


def activation(kind: str, negative_slope: float = 0.2) -> nn.Module:
    """``relu``, ``leaky_relu`` (slope 0.2, pix2pix) or ``none``."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if kind == "none":
        return nn.Identity()
    raise VCEInputError(f"activation {kind!r}", expected=" or ".join(ACTIVATIONS))


class ConvNormAct(nn.Sequential):
    """Convolution → normalisation → activation ("Conv-BN-ReLU" by default).

    Padding keeps the size at stride 1 (``dilation · (kernel_size − 1) / 2``, odd kernels) and halves it at
    stride 2. ``bias`` defaults to True only without a normalisation (a norm's shift replaces it).
    Shapes: ``[B, in_channels, *S]`` → ``[B, out_channels, *S / stride]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
        padding: int | None = None,
    ):
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[check_spatial_dims(spatial_dims)]
        pad = dilation * (kernel_size - 1) // 2 if padding is None else padding
        super().__init__(
            conv(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=pad,
                dilation=dilation,
                bias=norm == "none",
            ),
            norm_nd(norm, spatial_dims, out_channels),
            activation(act),
        )


class ResBlock(nn.Module):
    """Residual block of two :class:`ConvNormAct` layers: ``out = skip(x) + CNA₂(CNA₁(x))``.

    Seed 001: "each ResBlock is composed of two Conv-BN-ReLU layers". ``skip`` is the identity, or a 1x1
    convolution + normalisation when the channel count changes. ``dropout`` (pix2pix's ResNet blocks) sits
    between the two layers.
    Shapes: ``[B, in_channels, *S]`` → ``[B, out_channels, *S]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.0,
        last_act: bool = True,
    ):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, out_channels, norm=norm, act=act),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            ConvNormAct(spatial_dims, out_channels, out_channels, norm=norm, act=act if last_act else "none"),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size=1, norm=norm, act="none")
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def transposed_upsampling(spatial_dims: int, widths: Sequence[int], norm: str) -> list[nn.Module]:
    """The up-sampling half of pix2pix's decoder, as a list of layers to splice into an ``nn.Sequential``.

    Per consecutive pair ``(c_in, c_out)`` of ``widths``: a 3x3 stride-2 transposed convolution that doubles
    every spatial size (bias only without a normalisation), the normalisation and ReLU.
    Shapes: ``[B, widths[0], *S]`` → ``[B, widths[-1], *S · 2^(len(widths) − 1)]``.
    """
    convt = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[check_spatial_dims(spatial_dims)]
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(widths):
        layers += [
            convt(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=norm == "none"),
            norm_nd(norm, spatial_dims, c_out),
            nn.ReLU(),
        ]
    return layers


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an int ≥ ``minimum`` (not a bool), else :class:`VCEInputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VCEInputError(f"{name} is {value!r}", expected=f"an integer >= {minimum}")
    return value


CHANNEL_ARGUMENTS = ("in_modalities", "in_slices", "out_channels")
"""Constructor arguments that size a model's inputs and output; :func:`constructor_config` checks them."""

GEOMETRY_ARGUMENTS = ("spatial_dims", *CHANNEL_ARGUMENTS)
"""A model's image geometry: a critic takes its generator's (:func:`vce_core.train_config.model_kwargs`)."""


def constructor_config(
    cls: type[nn.Module], arguments: Mapping[str, Any], positive: Iterable[str] = ()
) -> dict[str, Any]:
    """A model's ``config``: the arguments of ``cls``'s constructor, in its signature's order.

    ``arguments`` is the constructor's ``locals()`` (taken after any normalisation, so that e.g. ``widths``
    kept as a list is what the config holds). Checks first that ``spatial_dims`` is 2 or 3, then that the
    image-channel arguments the constructor has (:data:`CHANNEL_ARGUMENTS`, the ones
    ``vce_core.train_config.model_kwargs`` fills in) and every argument named in ``positive`` are integers
    ≥ 1 (:class:`VCEInputError` naming the first bad one). ``build_model(name, **config)`` rebuilds the same
    architecture.
    """
    check_spatial_dims(arguments["spatial_dims"])
    names = list(inspect.signature(cls).parameters)
    for name in [n for n in CHANNEL_ARGUMENTS if n in names] + list(positive):
        positive_int(name, arguments[name])
    return {name: arguments[name] for name in names}


def check_images(
    x: object, spatial_dims: int, channels: int, multiple: int = 1, name: str = "inputs"
) -> Tensor:
    """``x`` if it is a float tensor ``[B, channels, *S]`` with every ``S_i`` a multiple of ``multiple``."""
    dims = ", ".join("S" * spatial_dims)
    if not isinstance(x, Tensor) or x.ndim != spatial_dims + 2 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise VCEInputError(f"{name} has shape {shape}", expected=f"a tensor [B, {channels}, {dims}]")
    if any(s % multiple for s in x.shape[2:]):
        raise VCEInputError(
            f"{name} has spatial size {tuple(x.shape[2:])}", expected=f"every size a multiple of {multiple}"
        )
    return x
