"""Training objectives: the training-step hook of each model family, behind one registry.

The trainer (:mod:`vce_core.train`) is the same for every model: data, devices, AMP, DDP, stages and
learning-rate schedules, EMA, checkpoints, resume, validation. What differs between the seed papers — which
extra networks exist (critics, discriminators, classifier heads), which losses are computed and in which
order the optimisers step — is an :class:`Objective`, registered under a name with
:func:`register_objective`. A generator class names its own objective (``objective = "hrfcn"``); a config may
choose another with ``objective: <name>``.

An objective sees the trainer through a small surface (see :class:`Objective`): the config, the device and
autocast context, the generator (raw and as trained: DDP-wrapped or compiled), its own extra networks (raw and
as trained), the optimisers ``g`` (generator side) and ``d`` (discriminator side), the batch stream, the
current stage and its loss weights, and :meth:`Trainer.update` (zero_grad → backward → clip → step). Loss
weights and learning rates come from the config's stages, never from constants in an objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from torch import nn

from vce_core.errors import VCEModelError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from vce_core.train import Trainer
    from vce_core.train_config import Stage

__all__ = ["Objective", "build_objective", "frozen", "list_objectives", "register_objective"]

_OBJECTIVES: dict[str, type[Objective]] = {}

O = TypeVar("O", bound="type[Objective]")


class Objective:
    """How one model family trains. Subclasses implement :meth:`step` (one iteration = one generator update).

    Attributes an objective may use: ``self.trainer`` (the :class:`vce_core.train.Trainer`) with
    ``cfg``, ``device``, ``autocast()`` (a context manager), ``generator`` / ``g_train``, ``nets`` /
    ``train_nets`` (this objective's extra networks, raw / as trained), ``opts`` (``{"g": …, "d": …}``),
    ``next_batch()``, ``step``, ``stage`` and ``weight(name, default)``, and ``update(which, loss)``.

    Class attributes: ``name`` (registry name), ``ddp_find_unused`` (True when some trainable parameters do
    not take part in every step, e.g. a cascade trained in stages), ``loss_terms`` (the names this objective
    reads with ``weight(name, default)``: the trainer refuses a ``loss_weights`` key outside them, so a
    misspelt term fails before training instead of training silently without it), ``options`` (likewise
    the ``objective_kwargs`` keys it reads).
    """

    name: ClassVar[str] = ""
    ddp_find_unused: ClassVar[bool] = False
    loss_terms: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    # ------------------------------------------------------------------------------------------ networks
    def build_networks(self) -> dict[str, nn.Module]:
        """Extra networks (on the trainer's device), built right after the generator with the same RNG.

        Default: the config's ``critic`` (if any) as ``{"critic": …}``.
        """
        from vce_core.models import build_model
        from vce_core.train_config import model_kwargs

        cfg = self.trainer.cfg
        if not cfg.critic:
            return {}
        return {"critic": build_model(cfg.critic, **model_kwargs(cfg, "critic")).to(self.trainer.device)}

    def optimizer_parameters(self) -> dict[str, Iterable[nn.Parameter]]:
        """Parameters of the optimisers ``g`` and (when there is a critic) ``d``."""
        groups: dict[str, Iterable[nn.Parameter]] = {"g": self.trainer.generator.parameters()}
        if "critic" in self.trainer.nets:
            groups["d"] = self.trainer.nets["critic"].parameters()
        return groups

    # ------------------------------------------------------------------------------------------ training
    def begin_stage(self, stage: Stage, first_time: bool) -> None:
        """Called when a stage starts (``first_time``) and again after a resume inside it (not first time).

        One-time transitions (copying weights between networks) belong under ``first_time``; settings that
        must hold throughout the stage (which parts are frozen) are applied in both cases.
        """

    def step(self) -> dict[str, float]:
        """One training iteration (one generator update); returns the losses to log (plain floats)."""
        raise NotImplementedError

    def deviations(self) -> list[str]:
        """Deviations from the paper the objective can tell from the config (added to the card)."""
        return []

    def card_fields(self) -> dict[str, Any]:
        """Extra card fields of this family (e.g. seed 000's ``content_loss`` and ``dose_range``)."""
        return {}


def register_objective(name: str) -> Callable[[O], O]:
    """Register an :class:`Objective` subclass: ``build_objective(name, trainer)`` builds it."""

    def decorator(cls: O) -> O:
        existing = _OBJECTIVES.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise VCEModelError(
                f"the objective name {name!r} is registered twice", expected="one class per objective"
            )
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return decorator


def list_objectives() -> list[str]:
    """Names of the registered objectives (importing every model module first)."""
    from vce_core.models import list_models

    list_models()
    return sorted(_OBJECTIVES)


def build_objective(name: str, trainer: Trainer) -> Objective:
    """The objective registered as ``name`` for ``trainer``; :class:`VCEModelError` for an unknown name."""
    if name not in list_objectives():
        raise VCEModelError(
            f"unknown objective {name!r}", expected=f"one of: {', '.join(sorted(_OBJECTIVES))}"
        )
    return _OBJECTIVES[name](trainer)


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Within the block, ``modules`` take no gradients (a generator loss through a discriminator); the
    ``requires_grad`` flags are restored afterwards."""
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, fs in zip(modules, flags, strict=True):
            for p, f in zip(m.parameters(), fs, strict=True):
                p.requires_grad_(f)
