"""The training configuration: every setting of :mod:`vce_core.train`, from YAML plus ``key=value`` overrides.

    cfg = load_config("configs/ld_cgan_2d_np.yaml", ["iterations=2000", "generator_kwargs.base_channels=8"])

:class:`TrainConfig` checks its values when built; :func:`config_from_dict` coerces YAML/CLI values to the
field types and names the closest valid key for a typo; :func:`model_kwargs` derives the generator's
``spatial_dims`` / ``in_slices`` (and, for virtual contrast, ``in_modalities`` / ``out_channels``) from the
data mode, and gives the critic the generator's geometry.

Tasks. ``task: low_dose`` (seed 000) trains on ``(native, standard dose, dose, field strength) → residual of
an acquired low dose``. ``task: virtual_contrast`` (seeds 001–004) trains ``inputs`` (names parsed by
:func:`vce_core.data.parse_input`: ``native``, ``t2``, ``flair``, ``adc``, any other case extra, or an
acquired low dose ``low_dose@0.33``) → ``target`` (the standard dose).

Fine-tuning. ``init_from: <model folder>`` starts the generator from a trained checkpoint (the same registered
generator; the critic starts fresh), ``train_only: [t1_head]`` trains only the generator parameters whose
names start with one of the prefixes. Every weight outside ``train_only`` must be the checkpoint's (same
name and shape); under it a new or resized part (e.g. ``generator_kwargs.t1_hidden``) starts fresh. The
card then keeps the parent's training record (``training.initialised_from``) and its deviations, followed
by this run's.

Stages. ``stages`` is a list of mappings, each taking a ``fraction`` of ``iterations`` in order, with optional
``name``, ``lr_g``, ``lr_d``, ``loss_weights`` (merged over the config's), ``phase`` (read by the model's
objective, e.g. DyeFreeNet's ``pretrain``/``primary``/``refine``) and ``lr_decay`` inside the stage
(``{kind: step, at: 0.8, gamma: 0.1}`` or ``{kind: linear, start: 0.75}``: constant, then linearly to 0).
:func:`resolve_stages` turns them into :class:`Stage` objects with iteration boundaries; without ``stages``
there is one stage with the config's learning rates and loss weights.
"""

from __future__ import annotations

import difflib
import inspect
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vce_core.errors import VCEInputError

__all__ = [
    "CONTENT_LOSSES",
    "TASKS",
    "Stage",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "model_kwargs",
    "resolve_stages",
    "stage_at",
]

TASKS = ("low_dose", "virtual_contrast")
CONTENT_LOSSES = ("np", "l1", "vgg")
_STAGE_KEYS = ("name", "fraction", "lr_g", "lr_d", "loss_weights", "phase", "lr_decay")


@dataclass
class TrainConfig:
    """Every training setting; defaults are seed 000's where the paper states them."""

    # run
    name: str = "ld_cgan"  # run / model name (folder name under assets/models when published)
    display_name: str = ""  # label in reports, e.g. "noise-preserving loss"
    out_dir: str = ""  # run directory; default runs/<name>
    seed: int = 0
    deviations: list[str] = field(default_factory=list)  # deviations from the paper, copied into the card
    # task
    task: str = "low_dose"  # low_dose (seed 000) | virtual_contrast (seeds 001-004)
    inputs: list[str] = field(default_factory=list)  # virtual_contrast: input names, e.g. [native, t2, adc]
    optional_inputs: list[str] = field(default_factory=list)  # inputs that may be absent: zero input
    target: str = "standard_dose"  # virtual_contrast: the image to synthesize
    target_context: bool = False  # 2.5d virtual_contrast: the target holds all 2·context+1 slices
    # data
    data: list[str] = field(default_factory=lambda: ["data/phantom/train"])  # case folders or roots
    val_data: list[str] = field(default_factory=list)  # held-out cases; empty → split off val_fraction
    val_fraction: float = 0.1
    mode: str = "2d"  # 2d | 2.5d | 3d
    context: int = 1  # 2.5d: slices on each side of the centre slice
    crop: int = 96  # training crop edge (2-D: crop², 3-D: crop³), multiple of 8
    normalization: str = "percentile"  # percentile | zscore, fitted per case on the native brain
    brain_fraction: float = 0.1  # 2-D: keep axial slices whose brain fraction exceeds this
    ce_focus: float = 0.0  # 2-D/2.5-D: share of training crops centred on a contrast-enhancing voxel
    lesion_focus: float = 0.0  # low-dose 2-D/2.5-D phantom cases: share of crops centred on a lesion voxel
    patches_per_case: int = 16  # 3-D: index entries per (case, dose) and epoch
    flips: bool = True
    cache_size: int = 64  # cases kept in memory per process
    cache_dtype: str = "float16"
    num_workers: int = 0
    # models
    generator: str = "ld_cgan_generator"
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    critic: str = "ld_cgan_critic"  # "" → content-only training (no adversarial term)
    critic_kwargs: dict[str, Any] = field(default_factory=dict)
    # objective
    objective: str = ""  # the training-step hook; "" = the generator's own (vce_core.models.objective)
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)  # per-term weights of the objective
    stages: list[dict[str, Any]] = field(default_factory=list)  # training stages (module docstring)
    perceptual_weights: str = ""  # local VGG-16 weights file (content_loss: vgg; DyeFreeNet perceptual: vgg)
    content_loss: str = "np"  # np | l1 | vgg (seed 000)
    content_loss_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"method": "ipot"} for np
    # residual: content(ŷ_LD, y_LD) (the paper); image: content(x_NA + ŷ_LD, x_LD), the same for l1, but the
    # np loss then matches the noise of the low-dose *image* rather than of the residual x_LD − x_NA
    content_space: str = "residual"
    lambda_content: float = 1.0
    lambda_adv: float = 1.0
    lambda_gp: float = 100.0
    n_critic: int = 5
    dose_range: list[float] = field(default_factory=lambda: [0.05, 0.5])  # d̂ ~ U[lo, hi] for fakes
    dose_label_std: float = 0.05  # label smoothing of real doses
    warmup_iterations: int = 0  # generator iterations without the critic first (a deviation when > 0)
    # fine-tuning: start the generator (and its EMA) from a model folder's weights (card.json +
    # weights.safetensors; only parts under train_only may differ); train_only: parameter-name prefixes of
    # the generator that are trained, every other generator parameter frozen (empty: all trained)
    init_from: str = ""
    train_only: list[str] = field(default_factory=list)
    # optimisation
    iterations: int = 100_000  # generator updates
    batch_size: int = 12  # global batch (split over DDP ranks)
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0  # Adam's L2 weight decay (DyeFreeNet: 5e-4)
    grad_clip: float = 0.0  # max global grad norm per optimiser, 0 = off
    ema_decay: float = 0.999
    # system
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    compile: bool = False  # torch.compile the generator (the critic needs double backward: not compiled)
    threads: int = 0  # torch CPU threads, 0 = torch default
    max_minutes: float = 0.0  # wall-time budget, 0 = none; stops cleanly with a checkpoint
    # logging
    log_every: int = 10
    val_every: int = 500  # 0 = only at the end
    val_slices: int = 8  # 2-D: slices per (validation case, dose); 3-D: whole bounding-box volumes
    ckpt_every: int = 1000  # 0 = only at the end

    def __post_init__(self) -> None:
        checks = [
            (self.mode in ("2d", "2.5d", "3d"), "mode", "2d, 2.5d or 3d"),
            (self.crop > 0 and self.crop % 8 == 0, "crop", "a positive multiple of 8"),
            (self.task in TASKS, "task", " or ".join(TASKS)),
            (self.content_loss in CONTENT_LOSSES, "content_loss", ", ".join(CONTENT_LOSSES)),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.content_space in ("residual", "image"), "content_space", "residual or image"),
            (self.n_critic >= 1, "n_critic", "at least 1"),
            (self.iterations >= 0, "iterations", ">= 0"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (
                len(self.dose_range) == 2 and 0 <= self.dose_range[0] <= self.dose_range[1] <= 1,
                "dose_range",
                "[lo, hi] within [0, 1]",
            ),
            (len(self.betas) == 2, "betas", "two numbers"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay", "in [0, 1)"),
            (self.amp in ("auto", "bf16", "off"), "amp", "auto, bf16 or off"),
            (self.max_minutes >= 0, "max_minutes", ">= 0"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction", "in [0, 1)"),
            (self.context >= 0, "context", ">= 0 (slices on each side)"),
            (0.0 <= self.brain_fraction < 1.0, "brain_fraction", "in [0, 1)"),
            (0.0 <= self.ce_focus <= 1.0, "ce_focus", "a probability in [0, 1]"),
            (0.0 <= self.lesion_focus <= 1.0, "lesion_focus", "a probability in [0, 1]"),
            (self.patches_per_case >= 1, "patches_per_case", "at least 1"),
            (self.cache_size >= 1, "cache_size", "at least 1"),
            (self.num_workers >= 0, "num_workers", ">= 0"),
            (self.lr_g >= 0, "lr_g", ">= 0"),
            (self.lr_d >= 0, "lr_d", ">= 0"),
            (self.lambda_gp >= 0, "lambda_gp", ">= 0"),
            (self.dose_label_std >= 0, "dose_label_std", ">= 0"),
            (self.warmup_iterations >= 0, "warmup_iterations", ">= 0"),
            (self.grad_clip >= 0, "grad_clip", ">= 0 (0 = off)"),
            (self.threads >= 0, "threads", ">= 0 (0 = torch default)"),
            (self.log_every >= 1, "log_every", "at least 1"),
            (self.val_every >= 0, "val_every", ">= 0 (0 = only at the end)"),
            (self.val_slices >= 1, "val_slices", "at least 1"),
            (self.ckpt_every >= 0, "ckpt_every", ">= 0 (0 = only at the end)"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise VCEInputError(
                    f"config value {key}={getattr(self, key)!r} is invalid", expected=expected
                )
        self._check_task()
        resolve_stages(self)

    def _check_task(self) -> None:
        """Inputs of a virtual-contrast task: parseable names, no duplicates, optional ⊆ inputs, no leak."""
        if self.task == "low_dose":
            if self.inputs or self.optional_inputs:
                raise VCEInputError(
                    "inputs/optional_inputs are set for task low_dose",
                    expected="task: virtual_contrast for models with their own inputs",
                )
            return
        from vce_core.data import check_inputs

        check_inputs(self.inputs, self.optional_inputs, self.target)
        if self.target_context and self.mode != "2.5d":
            raise VCEInputError(
                f"target_context is set for mode {self.mode!r}",
                expected="mode 2.5d (or target_context false)",
            )


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Coerce a YAML/CLI value to the dataclass field type ``hint``; VCEInputError if impossible."""
    origin = typing.get_origin(hint) or hint
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if origin is str:
            return "" if value is None else str(value)
        if origin is list:
            if isinstance(value, str | int | float):
                value = [value]
            (item,) = typing.get_args(hint) or (Any,)
            return [v if item is Any else _coerce(key, v, item) for v in value]
        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError) as err:
        raise VCEInputError(
            f"config value {key}={value!r} does not fit the type {getattr(hint, '__name__', hint)}",
            expected=f"a {getattr(origin, '__name__', origin)}",
        ) from err
    return value


def config_from_dict(values: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Build a :class:`TrainConfig` from a dict plus ``key=value`` overrides (``a.b=v`` sets a dict entry).

    Values of overrides are parsed as YAML (``lr_g=2e-4``, ``flips=false``, ``data=[a, b]``) and coerced to
    the field's type. Unknown keys raise :class:`VCEInputError` naming the closest valid key.
    """
    hints = typing.get_type_hints(TrainConfig)
    merged = dict(values)
    for item in overrides:
        if "=" not in item:
            raise VCEInputError(f"override {item!r} has no '='", expected="key=value, e.g. iterations=2000")
        key, raw = item.split("=", 1)
        key = key.strip()
        parsed = yaml.safe_load(raw) if raw.strip() else ""
        if "." in key:
            top, sub = key.split(".", 1)
            if hints.get(top) is None or (typing.get_origin(hints[top]) or hints[top]) is not dict:
                raise VCEInputError(
                    f"override {key!r}: {top!r} is not a dict setting",
                    expected="e.g. generator_kwargs.base_channels=8",
                )
            merged[top] = {**(merged.get(top) or {}), sub: parsed}
        else:
            merged[key] = parsed
    unknown = [k for k in merged if k not in hints]
    if unknown:
        hint = "; ".join(
            f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, hints, 1)) else repr(k)
            for k in unknown
        )
        raise VCEInputError(
            f"unknown config key(s): {hint}", expected=f"keys of TrainConfig: {', '.join(hints)}"
        )
    return TrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in merged.items()})


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (a mapping of :class:`TrainConfig` keys) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise VCEInputError("the config file does not exist", path=path, expected="a YAML file")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise VCEInputError(f"the config is not valid YAML ({err})", path=path) from err
        if not isinstance(values, dict):
            raise VCEInputError("the config is not a mapping", path=path, expected="key: value lines")
    return config_from_dict(values, overrides)


def model_kwargs(cfg: TrainConfig, which: str) -> dict[str, Any]:
    """Generator/critic kwargs: ``generator_kwargs`` or ``critic_kwargs`` plus the image geometry.

    The generator's ``spatial_dims`` and ``in_slices`` come from the data mode and, for ``task:
    virtual_contrast``, ``in_modalities`` (the number of inputs) and ``out_channels`` (the target's slices:
    ``2·context + 1`` with ``target_context``, else 1), unless ``generator_kwargs`` sets them. A critic judges
    the generator's images, so it gets the generator's geometry (every one of ``spatial_dims``,
    ``in_modalities``, ``in_slices``, ``out_channels`` its constructor takes, the generator's default where
    the generator was not given one); a ``critic_kwargs`` value that differs from it is refused.
    """
    generator = dict(cfg.generator_kwargs)
    generator.setdefault("spatial_dims", 3 if cfg.mode == "3d" else 2)
    generator.setdefault("in_slices", 2 * cfg.context + 1 if cfg.mode == "2.5d" else 1)
    if cfg.task == "virtual_contrast":
        generator.setdefault("in_modalities", len(cfg.inputs))
        generator.setdefault("out_channels", generator["in_slices"] if cfg.target_context else 1)
    if which == "generator":
        return generator
    from vce_core.models import model_class
    from vce_core.models.blocks import GEOMETRY_ARGUMENTS

    generator_parameters = inspect.signature(model_class(cfg.generator)).parameters
    critic_parameters = inspect.signature(model_class(cfg.critic)).parameters
    kwargs = dict(cfg.critic_kwargs)
    for name in GEOMETRY_ARGUMENTS:
        if name not in critic_parameters:
            continue
        if name in generator:
            value = generator[name]
        elif (
            name in generator_parameters and generator_parameters[name].default is not inspect.Parameter.empty
        ):
            value = generator_parameters[name].default
        else:  # the generator has no such argument (LowDoseGenerator: in_modalities): critic_kwargs' own
            continue
        if name in kwargs and kwargs[name] != value:
            raise VCEInputError(
                f"critic_kwargs.{name}={kwargs[name]!r} differs from the generator's {name}={value!r}",
                expected=f"no {name} in critic_kwargs: the critic judges the generator's images and takes "
                "their geometry",
            )
        kwargs[name] = value
    return kwargs


# ============================================================================================== stages
@dataclass(frozen=True)
class Stage:
    """One training stage: iterations ``[start, end)``, its learning rates, loss weights and phase."""

    index: int
    name: str
    start: int
    end: int
    lr_g: float
    lr_d: float
    loss_weights: dict[str, float]
    phase: str = ""
    lr_decay: dict[str, Any] = field(default_factory=dict)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the stage's learning rates at generator iteration ``step`` (its ``lr_decay``)."""
        if not self.lr_decay:
            return 1.0
        length = max(self.end - self.start, 1)
        done = step - self.start
        if self.lr_decay["kind"] == "step":
            return float(self.lr_decay["gamma"]) if done >= float(self.lr_decay["at"]) * length else 1.0
        decay_start = int(round(float(self.lr_decay["start"]) * length))
        return 1.0 - max(0, done - decay_start + 1) / (length - decay_start + 1)

    def lr(self, which: str, step: int) -> float:
        """Learning rate of optimiser ``which`` (``g`` or ``d``) at iteration ``step``."""
        return (self.lr_g if which == "g" else self.lr_d) * self.lr_factor(step)


def _check_lr_decay(decay: Any, where: str) -> dict[str, Any]:
    if not decay:
        return {}
    ok = isinstance(decay, dict) and (
        (decay.get("kind") == "step" and set(decay) == {"kind", "at", "gamma"} and 0 <= decay["at"] <= 1)
        or (decay.get("kind") == "linear" and set(decay) == {"kind", "start"} and 0 <= decay["start"] < 1)
    )
    if not ok:
        raise VCEInputError(
            f"{where}: lr_decay {decay!r} is invalid",
            expected="{kind: step, at: <fraction>, gamma: <factor>} or {kind: linear, start: <fraction>}",
        )
    return dict(decay)


def resolve_stages(cfg: TrainConfig) -> list[Stage]:
    """The config's stages with iteration boundaries (the last ends at ``cfg.iterations``).

    Raises :class:`VCEInputError` for unknown stage keys, fractions that do not sum to 1, or a bad lr_decay.
    """
    specs = cfg.stages or [{"name": "main", "fraction": 1.0}]
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or set(spec) - set(_STAGE_KEYS):
            bad = sorted(set(spec) - set(_STAGE_KEYS)) if isinstance(spec, dict) else spec
            raise VCEInputError(
                f"stage {i}: unknown key(s) {bad}", expected=f"keys of {', '.join(_STAGE_KEYS)}"
            )
        if not isinstance(spec.get("fraction"), int | float) or not 0 < spec["fraction"] <= 1:
            raise VCEInputError(
                f"stage {i}: fraction {spec.get('fraction')!r}", expected="a fraction in (0, 1]"
            )
    total = sum(float(s["fraction"]) for s in specs)
    if abs(total - 1.0) > 1e-6:
        raise VCEInputError(f"the stage fractions sum to {total:g}", expected="fractions summing to 1")
    stages, start, cumulative = [], 0, 0.0
    for i, spec in enumerate(specs):
        cumulative += float(spec["fraction"])
        end = cfg.iterations if i == len(specs) - 1 else int(round(cumulative * cfg.iterations))
        weights = {**cfg.loss_weights, **{k: float(v) for k, v in (spec.get("loss_weights") or {}).items()}}
        stages.append(
            Stage(
                index=i,
                name=str(spec.get("name", f"stage{i + 1}")),
                start=start,
                end=end,
                lr_g=float(spec.get("lr_g", cfg.lr_g)),
                lr_d=float(spec.get("lr_d", cfg.lr_d)),
                loss_weights=weights,
                phase=str(spec.get("phase", "")),
                lr_decay=_check_lr_decay(spec.get("lr_decay"), f"stage {i}"),
            )
        )
        start = end
    return stages


def stage_at(stages: Sequence[Stage], step: int) -> Stage:
    """The stage that generator iteration ``step`` belongs to (the last one at or after the end)."""
    for stage in stages:
        if step < stage.end:
            return stage
    return stages[-1]
