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

import difflib
import importlib
import inspect
import json
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from vce_core.errors import VCEInputError, VCEModelError

__all__ = ["build_model", "list_models", "model_class", "register_model"]

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


def model_class(name: str) -> Callable[..., nn.Module]:
    """The class (factory) registered as ``name``; :class:`VCEModelError` for an unknown name."""
    _discover()
    if name not in _REGISTRY:
        raise VCEModelError(
            f"unknown model {name!r}", expected=f"one of: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        )
    return _REGISTRY[name]


def _check_arguments(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, object]) -> None:
    """:class:`VCEInputError` for an argument the constructor does not take (with the closest one it does)
    or one it requires and ``kwargs`` lacks, instead of Python's ``TypeError``."""
    signature = inspect.signature(factory)
    parameters = signature.parameters
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        unknown = [k for k in kwargs if k not in parameters]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(parameters), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problem = f"model {name!r} has no argument {unknown[0]!r}{hint}"
        else:
            missing = [
                n for n, q in parameters.items() if q.default is inspect.Parameter.empty and n not in kwargs
            ]
            problem = f"model {name!r} needs {', '.join(missing)}" if missing else f"model {name!r}: {err}"
        raise VCEInputError(problem, expected=f"arguments among: {', '.join(parameters)}") from err


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` with constructor ``kwargs``.

    The returned module has ``config`` (a JSON-serialisable dict of its constructor arguments, defaults
    included) so that ``build_model(name, **model.config)`` rebuilds the same architecture.

    Raises
    ------
    VCEModelError
        Unknown name, or a model whose ``config`` is missing or not JSON-serialisable.
    VCEInputError
        An argument the model does not take or a required one missing, or invalid values (raised by the
        model itself).
    """
    factory = model_class(name)
    _check_arguments(name, factory, kwargs)
    model = factory(**kwargs)
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
