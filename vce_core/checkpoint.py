"""The checkpoint format: a folder with ``weights.safetensors`` and ``card.json`` (the model card).

This module is the only code that reads or writes a card. The card is a :class:`ModelCard`; on disk it is
JSON in the ``vce-model-card`` format, version :data:`CARD_VERSION`::

    folder/
        weights.safetensors   the generator's state dict (written by the trainer: the EMA generator)
        card.json             everything needed to rebuild the generator and to cite it

* :func:`write_checkpoint` writes both files, :func:`write_card` and :func:`update_card` only the card; every
  file is written to a temporary name in the folder and renamed over the old one, so a reader never sees a
  half-written file and a failed write leaves the previous file as it was.
* :func:`read_card` validates: a missing required key, a value of the wrong type, another format or another
  version raises :class:`vce_core.errors.VCEModelError` naming the card file and the key. Keys this version
  does not know are kept in :attr:`ModelCard.extra` and written back unchanged.
* :func:`list_checkpoints` lists the checkpoint folders of a models folder for one task (low-dose synthesis by
  default, virtual contrast on request), the card marked ``"default": true`` first.

Tasks: a card's ``task`` is ``low_dose`` (seed 000: the generator takes native, standard dose, dose, field
strength and noise and returns residuals; the default, so cards written before tasks existed read as
low-dose cards) or ``virtual_contrast`` (seeds 001–004: the generator takes the ``inputs`` the card lists —
``optional_inputs`` may be absent and are then zero images — and returns the ``target``, the standard dose).

Versions: version 1 is the only version so far (the trainer has written it from the start); a card of any
other version is refused with a message saying which version this code reads. A future version bump adds an
upgrade step from the previous version to :func:`ModelCard.from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from vce_core.errors import VCEInputError, VCEModelError

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_VERSION",
    "DATA_MODES",
    "TASKS",
    "WEIGHTS_FILE",
    "ModelCard",
    "atomic_write",
    "is_checkpoint",
    "list_checkpoints",
    "read_card",
    "read_weights",
    "training_lineage",
    "update_card",
    "write_card",
    "write_checkpoint",
]

CARD_FORMAT = "vce-model-card"
CARD_VERSION = 1
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
TASKS = ("low_dose", "virtual_contrast")
"""What a generator synthesizes: a low dose from native + standard dose, or the standard dose from inputs."""
DATA_MODES = ("2d", "2.5d", "3d")
"""How a generator sees the images: axial slices, stacks of ``2·context + 1`` axial slices, or 3-D patches."""


# ============================================================================================== validation
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _names(value: Any) -> bool:
    """A list of distinct non-empty strings."""
    return (
        isinstance(value, list)
        and all(isinstance(v, str) and v.strip() for v in value)
        and len(set(value)) == len(value)
    )


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "display_name": (lambda v: isinstance(v, str), "a string (the label in reports)"),
    "model": (lambda v: isinstance(v, str) and bool(v), "the registered name of the generator"),
    "config": (lambda v: isinstance(v, dict), "a mapping of the generator's constructor arguments"),
    "critic": (
        _optional(
            lambda v: (
                isinstance(v, dict) and isinstance(v.get("model"), str) and isinstance(v.get("config"), dict)
            )
        ),
        'null or {"model": "<registered name>", "config": {...}}',
    ),
    "data_mode": (lambda v: v in DATA_MODES, " or ".join(DATA_MODES)),
    "context": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0 (2.5-D: slices on each side)"),
    "patch_size": (lambda v: _is_int(v) and v >= 1, "a positive whole number (training crop edge, voxels)"),
    "normalization": (
        lambda v: isinstance(v, dict) and isinstance(v.get("method"), str),
        '{"method": "percentile" or "zscore", ...}',
    ),
    "content_loss": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "content_space": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "dose_range": (
        _optional(lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))),
        "null or [lowest, highest] dose fraction",
    ),
    "weights": (lambda v: v == WEIGHTS_FILE, f'"{WEIGHTS_FILE}"'),
    "weights_are": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "training": (lambda v: isinstance(v, dict), "a mapping"),
    "data": (lambda v: isinstance(v, dict), "a mapping"),
    "validation": (lambda v: isinstance(v, dict), "a mapping of metric names to values"),
    "validation_history": (
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "a list of metric mappings",
    ),
    "default": (lambda v: isinstance(v, bool), "true or false"),
    "held_out": (_optional(lambda v: isinstance(v, dict)), "null or a mapping of metric names to values"),
    "task": (lambda v: v in TASKS, " or ".join(TASKS)),
    "inputs": (_names, 'a list of distinct input names, e.g. ["native", "t2", "adc"]'),
    "optional_inputs": (_names, "a list of distinct input names (a subset of inputs)"),
    "target": (_optional(lambda v: isinstance(v, str) and bool(v)), "null or the target's name"),
}
"""Type rule and its plain description for every key of a card except ``format`` and ``version``."""

_REQUIRED = ("name", "model", "config", "data_mode", "context", "patch_size", "normalization")
"""Keys every card has: without them the generator cannot be rebuilt or fed like in training."""

_KEYS = (
    "format",
    "version",
    "name",
    "display_name",
    "model",
    "config",
    "critic",
    "data_mode",
    "context",
    "patch_size",
    "normalization",
    "content_loss",
    "content_space",
    "dose_range",
    "weights",
    "weights_are",
    "training",
    "data",
    "validation",
    "validation_history",
    "default",
    "held_out",
    "task",
    "inputs",
    "optional_inputs",
    "target",
)
"""The keys of this card version, in the order they are written."""


def _check_format(values: Mapping[str, Any], source: str) -> None:
    for key in ("format", "version"):
        if key not in values:
            raise VCEModelError(
                f"the model card has no {key!r}",
                path=source,
                expected=f'a card with "format": "{CARD_FORMAT}" and "version": {CARD_VERSION}',
            )
    if values["format"] != CARD_FORMAT:
        raise VCEModelError(
            f"the model card's format is {values['format']!r}", path=source, expected=f'"{CARD_FORMAT}"'
        )
    version = values["version"]
    if version != CARD_VERSION or not _is_int(version):
        raise VCEModelError(
            f"the model card has version {version!r}, which this code does not read",
            path=source,
            expected=f"version {CARD_VERSION} (retrain or re-export the checkpoint with this vce_core)",
        )


def _check_keys(values: Mapping[str, Any], source: str) -> None:
    for key in _REQUIRED:
        if key not in values:
            raise VCEModelError(f"the model card has no {key!r}", path=source, expected=_RULES[key][1])
    for key, (check, expected) in _RULES.items():
        if key in values and not check(values[key]):
            raise VCEModelError(
                f"the model card's {key!r} is {values[key]!r}", path=source, expected=expected
            )
    if values.get("task") == "virtual_contrast" and not values.get("inputs"):
        raise VCEModelError(
            "the virtual-contrast model card lists no inputs", path=source, expected="inputs: [native, ...]"
        )
    extra_optional = sorted(set(values.get("optional_inputs") or []) - set(values.get("inputs") or []))
    if extra_optional:
        raise VCEModelError(
            f"the model card's optional_inputs {extra_optional} are not among its inputs",
            path=source,
            expected="optional_inputs ⊆ inputs",
        )
    dims = values["config"].get("spatial_dims")
    wanted = 3 if values["data_mode"] == "3d" else 2
    if dims is not None and dims != wanted:
        raise VCEModelError(
            f"the model card's config has spatial_dims {dims!r} but data_mode {values['data_mode']!r}",
            path=source,
            expected=f"spatial_dims {wanted} for data_mode {values['data_mode']!r}",
        )


# ============================================================================================== the card
@dataclass
class ModelCard(Mapping[str, Any]):
    """A model card: how to rebuild a generator, how to feed it, and how it was trained and evaluated.

    Required (every card): ``name`` (folder / model name), ``model`` (registered generator name) and
    ``config`` (its constructor arguments: ``build_model(model, **config)``), ``data_mode`` (one of
    :data:`DATA_MODES`), ``context`` (2.5-D: slices on each side of the centre slice, else 0),
    ``patch_size`` (training crop edge in voxels; the 3-D sliding-window size) and ``normalization``
    (``{"method": "percentile" | "zscore", ...}``, fitted per case on the native image in its brain mask).

    Optional, with these defaults when absent: ``display_name`` (label in reports; ``name``), ``critic``
    (``{"model", "config"}`` of the training critic; None for content-only training), ``content_loss``,
    ``content_space``, ``dose_range`` (``[lo, hi]`` dose fractions generated in training), ``weights_are``
    (None), ``weights`` (:data:`WEIGHTS_FILE`), ``training`` (config, command, iterations, wall time,
    hardware, deviations), ``data`` (``{"train": ..., "val": ...}`` descriptions of the case sets),
    ``validation`` (last validation metrics, normalised units), ``validation_history`` (all of them),
    ``default`` (False; True marks the app's default generator), ``held_out`` (None, or the figures of
    :func:`vce_core.evaluate.update_card`), ``task`` (``"low_dose"``; or ``"virtual_contrast"``),
    ``inputs`` (virtual contrast: the input names in the model's channel order; ``[]`` for low dose, whose
    inputs are native and standard dose), ``optional_inputs`` (inputs that may be absent: zero images) and
    ``target`` (virtual contrast: ``"standard_dose"``). ``extra`` holds keys this version does not know; they
    are written back unchanged.

    The card is also a read-only mapping over its JSON keys (``card["model"]``, ``card.get("held_out")``,
    ``dict(card)``) for code written against the JSON; new code reads the attributes.
    """

    name: str
    model: str
    config: dict[str, Any]
    data_mode: str
    context: int
    patch_size: int
    normalization: dict[str, Any]
    display_name: str = ""
    critic: dict[str, Any] | None = None
    content_loss: str | None = None
    content_space: str | None = None
    dose_range: list[float] | None = None
    weights: str = WEIGHTS_FILE
    weights_are: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    validation_history: list[dict[str, Any]] = field(default_factory=list)
    default: bool = False
    held_out: dict[str, Any] | None = None
    task: str = "low_dose"
    inputs: list[str] = field(default_factory=list)
    optional_inputs: list[str] = field(default_factory=list)
    target: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = CARD_FORMAT
    version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if not self.display_name:
            self.display_name = self.name
        clash = sorted(set(self.extra) & set(_KEYS))
        if clash:
            raise ValueError(f"extra keys {clash} are fields of ModelCard; set the fields instead")

    # ------------------------------------------------------------------------------------------ derived
    @property
    def spatial_dims(self) -> int:
        """2 for slice-wise generators (``2d``, ``2.5d``), 3 for volume generators (``3d``)."""
        return 3 if self.data_mode == "3d" else 2

    @property
    def input_names(self) -> list[str]:
        """The images the generator reads: the card's ``inputs``, or native + standard dose for low dose."""
        return list(self.inputs) if self.task == "virtual_contrast" else ["native", "standard_dose"]

    @property
    def normalization_method(self) -> str:
        """``percentile`` or ``zscore``: how native and standard dose are normalised before the model."""
        return str(self.normalization["method"])

    # ------------------------------------------------------------------------------------------ JSON
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | PathLike = "model card") -> ModelCard:
        """A validated card from its JSON mapping; :class:`VCEModelError` naming ``source`` and the key."""
        source = str(source)
        if not isinstance(values, Mapping):
            raise VCEModelError(
                f"the model card is a JSON {type(values).__name__}", path=source, expected="a JSON object"
            )
        _check_format(values, source)
        _check_keys(values, source)
        known = {k: values[k] for k in _KEYS if k in values}
        extra = {k: v for k, v in values.items() if k not in _KEYS}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON mapping: every key of this version in a fixed order, then the unknown keys.

        A new dict; nested values are the card's own objects (copy them before changing them).
        """
        return {**{key: getattr(self, key) for key in _KEYS}, **self.extra}

    def to_json(self) -> str:
        """``card.json`` text (2-space indented; NumPy scalars and paths become JSON numbers and strings)."""
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def with_changes(self, **changes: Any) -> ModelCard:
        """A copy with ``changes`` applied: known keys set their field, any other key goes to ``extra``."""
        fields = {k: v for k, v in changes.items() if k in _KEYS}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in _KEYS}}
        return dataclasses.replace(self, **fields, extra=extra)

    # ------------------------------------------------------------------------------------------ mapping
    def __getitem__(self, key: str) -> Any:
        if key in _KEYS:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*_KEYS, *self.extra))

    def __len__(self) -> int:
        return len(_KEYS) + len(self.extra)


def training_lineage(training: Mapping[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """The runs behind a card's ``training`` record, the first (trained from scratch) first: ``(name,
    record)`` per run, following ``initialised_from`` (which the trainer writes for ``init_from``: the
    parent's ``name`` and ``training`` record). The last entry is ``training`` itself, with name None."""
    runs: list[tuple[str | None, dict[str, Any]]] = [(None, dict(training))]
    while True:
        parent = runs[0][1].get("initialised_from")
        if not (isinstance(parent, Mapping) and isinstance(parent.get("training"), Mapping)):
            return runs
        runs.insert(0, (parent.get("name"), dict(parent["training"])))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.floating | np.integer):
        return obj.item()
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


# ============================================================================================== files
def atomic_write(path: str | PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(temporary_path)`` in the same folder, then rename it over ``path``.

    Readers see the old file or the new one, never a partial one; when ``write`` fails, the temporary file
    is removed, ``path`` is unchanged and the error propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _checked(card: ModelCard, folder: Path) -> str:
    """The card's JSON text, after checking that :func:`read_card` will accept it."""
    if not isinstance(card, ModelCard):
        raise TypeError(f"card is a {type(card).__name__}, not a ModelCard")
    text = card.to_json()
    ModelCard.from_dict(json.loads(text), source=folder / CARD_FILE)
    return text


def write_card(folder: str | PathLike, card: ModelCard) -> Path:
    """Write ``folder/card.json`` atomically (validated first); returns its path."""
    folder = Path(folder)
    text = _checked(card, folder)
    return atomic_write(folder / CARD_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def write_checkpoint(folder: str | PathLike, model_state: Mapping[str, Any], card: ModelCard) -> Path:
    """Write a checkpoint folder: ``weights.safetensors`` from ``model_state``, then ``card.json``.

    ``model_state`` is a module's ``state_dict()`` (tensors on any device). The card is validated before
    anything is written; each file is replaced atomically, the card last, so a folder whose card is new
    has the new weights. Returns the folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    text = _checked(card, folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(folder / CARD_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    return folder


def read_card(folder: str | PathLike) -> ModelCard:
    """The validated card of the checkpoint ``folder``.

    Raises :class:`VCEModelError` (a :class:`VCEInputError`) for a missing folder or card, a card that is
    not JSON, another format or version, or a missing or mistyped key (the message names both).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VCEModelError(
            "the model folder does not exist",
            path=folder,
            expected=f"a checkpoint folder with {CARD_FILE} and {WEIGHTS_FILE}",
        )
    path = folder / CARD_FILE
    if not path.is_file():
        raise VCEModelError(
            f"{CARD_FILE} is missing", path=folder, expected="a checkpoint folder written by vce_core.train"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VCEModelError(
            f"{CARD_FILE} cannot be read ({err})", path=path, expected="a JSON model card"
        ) from err
    return ModelCard.from_dict(values, source=path)


def read_weights(folder: str | PathLike) -> dict[str, Any]:
    """The state dict (CPU tensors) in ``folder/weights.safetensors``; :class:`VCEModelError` if unusable."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise VCEModelError(
            f"{WEIGHTS_FILE} is missing",
            path=folder,
            expected="a checkpoint folder written by vce_core.train",
        )
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise VCEModelError(f"{WEIGHTS_FILE} cannot be read ({err})", path=path) from err


def update_card(folder: str | PathLike, **changes: Any) -> ModelCard:
    """Read ``folder/card.json``, apply ``changes`` (see :meth:`ModelCard.with_changes`), write it back.

    The new card is validated before it replaces the old one atomically; returns it.
    """
    card = read_card(folder).with_changes(**changes)
    write_card(folder, card)
    return card


# ============================================================================================== folders
def is_checkpoint(folder: str | PathLike) -> bool:
    """Whether ``folder`` holds both files of a checkpoint (the card is not validated)."""
    folder = Path(folder)
    return folder.is_dir() and (folder / CARD_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def _marked_default(folder: Path) -> bool:
    """Whether the card marks the checkpoint as the default (an unreadable or invalid card does not)."""
    try:
        return read_card(folder).default
    except VCEInputError:
        return False


def _task_of(folder: Path) -> str | None:
    """The card's task, or None for an unreadable or invalid card."""
    try:
        return read_card(folder).task
    except VCEInputError:
        return None


def list_checkpoints(models_dir: str | PathLike, task: str | None = "low_dose") -> list[Path]:
    """Checkpoint folders (``card.json`` + ``weights.safetensors``) directly below ``models_dir``.

    ``task`` selects the generators of one task (:data:`TASKS`; default ``"low_dose"``, what the dose
    explorer and the reader study load) or, with None, every checkpoint. The checkpoint whose card says
    ``"default": true`` comes first (the app's and the demo study's default generator), the others follow
    sorted by folder name. Folders with an invalid card are listed for every task, so that loading them
    reports why. A missing ``models_dir`` has no checkpoints (``[]``); a path that is a file or an unknown
    task raises :class:`VCEInputError`.
    """
    if task is not None and task not in TASKS:
        raise VCEInputError(f"unknown task {task!r}", expected=" or ".join(TASKS))
    root = Path(models_dir)
    if not root.exists():
        return []
    if not root.is_dir():
        raise VCEInputError("is not a folder", path=root, expected="a folder of model checkpoints")
    folders = [p for p in root.iterdir() if is_checkpoint(p)]
    if task is not None:
        folders = [p for p in folders if _task_of(p) in (task, None)]
    return sorted(folders, key=lambda p: (not _marked_default(p), p.name))
