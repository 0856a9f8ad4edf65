"""Generators and critics behind one registry.

Every model is a class (or factory) registered under a name with :func:`register_model`; it is built with
:func:`build_model` from JSON-serialisable keyword arguments, which the model keeps in ``model.config`` so
that a checkpoint card can rebuild it with ``build_model(card["model"], **card["config"])``.

Model modules in this package are imported on first use of the registry, so a new file that decorates its
class with ``@register_model("name")`` is found without editing this file (``blocks`` and ``objective`` are
skipped: they hold shared building blocks and the training-objective registry,
:mod:`vce_core.models.objective`).

>>> from vce_core.models import build_model, list_models
>>> "ld_cgan_generator" in list_models()
True
>>> generator = build_model("ld_cgan_generator", spatial_dims=2)
>>> generator.config["spatial_dims"]
2
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from vce_core.errors import VCEModelError

__all__ = ["build_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_NOT_MODEL_MODULES = {"blocks", "objective"}
_discovered = False

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Class decorator: make the model buildable as ``build_model(name, **kwargs)``.

    Raises :class:`VCEModelError` if ``name`` is already taken by a different class.
    """

    def decorator(factory: F) -> F:
        existing = _REGISTRY.get(name)
        same = existing is not None and (
            existing is factory
            or (existing.__module__, existing.__qualname__) == (factory.__module__, factory.__qualname__)
        )
        if existing is not None and not same:
            raise VCEModelError(
                f"the model name {name!r} is registered twice ({existing.__qualname__} and "
                f"{factory.__qualname__})",
                expected="one registered class per model name",
            )
        _REGISTRY[name] = factory
        return factory

    return decorator


def _discover() -> None:
    """Import every model module of this package once, so that their decorators run."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_MODEL_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _discover()
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` with constructor ``kwargs``.

    The returned module has ``config`` (a JSON-serialisable dict of its constructor arguments, defaults
    included) so that ``build_model(name, **model.config)`` rebuilds the same architecture.

    Raises
    ------
    VCEModelError
        Unknown name, or a model whose ``config`` is missing or not JSON-serialisable.
    VCEInputError
        Invalid constructor arguments (raised by the model itself).
    """
    _discover()
    if name not in _REGISTRY:
        raise VCEModelError(
            f"unknown model {name!r}", expected=f"one of: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        )
    model = _REGISTRY[name](**kwargs)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise VCEModelError(f"model {name!r} has no config dict", expected="model.config = {kwargs}")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as err:
        raise VCEModelError(
            f"the config of model {name!r} is not JSON-serialisable ({err})",
            expected="constructor arguments made of numbers, strings, booleans, lists and dicts",
        ) from err
    return model
