"""Study specs: the YAML that describes a reader study, validated into a :class:`StudySpec`.

See ``configs/studies/demo.yaml``. :func:`parse_spec` checks everything before anything is rendered, and
every problem is a :class:`vce_core.errors.VCEInputError` that names the offending entry. Doses are
fractions of the standard dose in ``[0, 1]`` (:func:`vce_core.domain.check_dose`).
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vce_core.domain import check_dose
from vce_core.errors import VCEInputError

from .models import CONDITIONS, QUESTION_KINDS

DOSE_CONDITIONS = frozenset({"real_low_dose", "synthetic_low_dose", "linear_baseline"})
"""Conditions shown at a dose (fraction of the standard dose)."""
GENERATOR_CONDITIONS = frozenset({"synthetic_low_dose"})
"""Conditions that always need a generator (a checkpoint folder under the models directory, or ``default``;
the spec's top-level ``generator`` is their default)."""
CONDITION_TASKS = {"synthetic_low_dose": "low_dose", "virtual_contrast": "virtual_contrast"}
"""The task (``vce_core.checkpoint.TASKS``) a condition's generator must have. ``virtual_contrast`` with a
``generator`` (a virtual-contrast checkpoint folder, or ``default``: the first one) is synthesized from the
case's images without contrast; without one it is the case's precomputed extra volume ``virtual_contrast``."""

DEFAULT_LIKERT_ANCHORS = {1: "non-diagnostic", 2: "poor", 3: "acceptable", 4: "good", 5: "excellent"}
DEFAULT_CONFIDENCE_ANCHORS = {1: "guessing", 2: "unsure", 3: "moderately sure", 4: "sure", 5: "certain"}
DEFAULT_QUESTIONS: list[dict[str, Any]] = [
    {
        "key": "overall_quality",
        "kind": "likert",
        "text": "Overall image quality",
        "anchors": DEFAULT_LIKERT_ANCHORS,
    },
    {
        "key": "lesion_conspicuity",
        "kind": "likert",
        "text": "Conspicuity of enhancing lesions",
        "anchors": {1: "not visible", 2: "barely visible", 3: "visible", 4: "well seen", 5: "excellent"},
    },
    {
        "key": "noise",
        "kind": "likert",
        "text": "Image noise (5 = no disturbing noise)",
        "anchors": {1: "severe", 2: "marked", 3: "moderate", 4: "mild", 5: "none"},
    },
    {
        "key": "real_or_synthetic",
        "kind": "real_vs_synthetic",
        "text": "Is this image a real acquisition or synthetic?",
        "confidence_anchors": DEFAULT_CONFIDENCE_ANCHORS,
    },
]
OPTION_DEFAULTS: dict[str, Any] = {
    "allow_back": False,
    "show_reference": False,
    "repeat_reads": 1,
    "washout_days": 0.0,
    "min_distance": 2,
}
DEFAULT_SLICES: dict[str, Any] = {"select": "most_enhancing", "count": 5, "plane": "axial"}
SPEC_KEYS = frozenset(
    {
        "name",
        "instructions",
        "seed",
        "cases",
        "conditions",
        "doses",
        "generator",
        "slices",
        "questions",
        "readers",
        "options",
        "status",
    }
)


@dataclass(frozen=True)
class ConditionSpec:
    """A condition of every case: ``condition`` at ``dose`` (fraction of standard dose) by ``generator``."""

    condition: str
    dose: float | None = None
    generator: str | None = None


@dataclass(frozen=True)
class QuestionSpec:
    """A question; ``options`` as stored in :class:`reader_study.models.Question`."""

    key: str
    kind: str
    text: str
    required: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudySpec:
    """A validated study spec; ``raw`` is the mapping it was parsed from."""

    name: str
    instructions: str
    seed: int
    case_folders: list[Path]
    conditions: list[ConditionSpec]
    slices: dict[str, Any]
    questions: list[QuestionSpec]
    readers: list[str]
    options: dict[str, Any]
    status: str = "draft"
    raw: dict[str, Any] = field(default_factory=dict)

    def raw_json(self) -> dict[str, Any]:
        """A JSON-safe copy of ``raw`` (keys, paths and dates as strings), stored with the study."""
        return _jsonable(self.raw)


def _err(problem: str, expected: str | None = None) -> VCEInputError:
    return VCEInputError(f"study spec: {problem}", expected=expected)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------- questions
def _anchors(raw: Any, what: str, default: dict[int, str]) -> dict[str, str]:
    """Labels of the scores 1..5 as ``{"1": label, ..., "5": label}`` (``default`` when not given)."""
    if raw is None:
        raw = default
    if not isinstance(raw, dict):
        raise _err(
            f"{what} must be a mapping 1..5 → label",
            "e.g. {1: poor, 2: fair, 3: acceptable, 4: good, 5: excellent}",
        )
    out: dict[str, str] = {}
    for k, v in raw.items():
        try:
            ik = int(k)
        except (TypeError, ValueError):
            raise _err(f"{what} key {k!r} is not an integer 1..5") from None
        out[str(ik)] = str(v)
    if sorted(out) != ["1", "2", "3", "4", "5"]:
        raise _err(f"{what} must label exactly the scores 1, 2, 3, 4, 5 (got {sorted(out)})")
    return out


def _question_options(raw: dict[str, Any], kind: str, index: int) -> dict[str, Any]:
    """What a question of ``kind`` stores besides its text: anchors, confidence anchors or choices."""
    if kind == "likert":
        return {
            "anchors": _anchors(raw.get("anchors"), f"questions[{index}].anchors", DEFAULT_LIKERT_ANCHORS)
        }
    if kind == "real_vs_synthetic":
        return {
            "confidence_anchors": _anchors(
                raw.get("confidence_anchors"),
                f"questions[{index}].confidence_anchors",
                DEFAULT_CONFIDENCE_ANCHORS,
            )
        }
    if kind == "single_choice":
        choices = raw.get("choices")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or len({str(c) for c in choices}) != len(choices)
        ):
            raise _err(f"questions[{index}].choices must list at least two distinct choices")
        return {"choices": [str(c) for c in choices]}
    return {}


def parse_question(raw: Any, index: int) -> QuestionSpec:
    """Validate one question entry (``index`` is its position in ``questions``, for the messages)."""
    if not isinstance(raw, dict):
        raise _err(f"questions[{index}] is not a mapping")
    kind = raw.get("kind")
    if kind not in QUESTION_KINDS:
        raise _err(f"questions[{index}].kind {kind!r} is unknown", f"one of {', '.join(QUESTION_KINDS)}")
    key = raw.get("key")
    if not isinstance(key, str) or not key.isidentifier():
        raise _err(f"questions[{index}].key {key!r} is not a short identifier", "e.g. overall_quality")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _err(f"questions[{index}] ({key}) has no text")
    options = _question_options(raw, kind, index)
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise _err(f"questions[{index}].required must be true or false")
    return QuestionSpec(key=key, kind=kind, text=text.strip(), required=required, options=options)


def _questions(raw: dict[str, Any]) -> list[QuestionSpec]:
    entries = raw.get("questions", DEFAULT_QUESTIONS)
    if not isinstance(entries, list) or not entries:
        raise _err("questions must be a non-empty list")
    questions = [parse_question(q, i) for i, q in enumerate(entries)]
    if len({q.key for q in questions}) != len(questions):
        raise _err("question keys must be unique")
    return questions


# --------------------------------------------------------------------------------------------- conditions
def _dose(value: Any, condition: str) -> float:
    """A dose of ``condition`` as a fraction of the standard dose in ``[0, 1]``."""
    try:
        return check_dose(value, name=f"dose of {condition}")
    except VCEInputError as exc:
        raise _err(exc.problem, exc.expected) from None


def _condition_entry(index: int, entry: Any, doses: list[Any], default_generator: Any) -> list[ConditionSpec]:
    """One entry of ``conditions`` (a name or a mapping) → one ConditionSpec per dose."""
    if isinstance(entry, str):
        entry = {"condition": entry}
    if not isinstance(entry, dict):
        raise _err(f"conditions[{index}] must be a name or a mapping")
    name = entry.get("condition")
    if name not in CONDITIONS:
        raise _err(f"conditions[{index}] {name!r} is unknown", f"one of {', '.join(CONDITIONS)}")
    entry_doses = [entry["dose"]] if "dose" in entry else (doses if name in DOSE_CONDITIONS else [None])
    if name in DOSE_CONDITIONS and not entry_doses:
        raise _err(f"condition {name} needs a dose (give 'dose' or top-level 'doses')")
    generator = entry.get("generator", default_generator if name in GENERATOR_CONDITIONS else None)
    if name in GENERATOR_CONDITIONS and not generator:
        raise _err(
            f"condition {name} needs a generator (a checkpoint folder under assets/models, or 'default')"
        )
    if generator is not None and name not in CONDITION_TASKS:
        raise _err(
            f"conditions[{index}] {name} takes no generator",
            "a generator only on " + ", ".join(sorted(CONDITION_TASKS)),
        )
    if generator is not None and (not isinstance(generator, str) or not generator.strip()):
        raise _err(f"conditions[{index}] {name}: generator {generator!r} is not a checkpoint folder name")
    return [
        ConditionSpec(
            name,
            None if dose is None else _dose(dose, name),
            None if generator is None else str(generator),
        )
        for dose in entry_doses
    ]


def _conditions(raw: dict[str, Any]) -> list[ConditionSpec]:
    """The spec's conditions, expanded over the top-level ``doses`` and ``generator``."""
    entries = raw.get("conditions")
    if not isinstance(entries, list) or not entries:
        raise _err("conditions must be a non-empty list", f"entries from {', '.join(CONDITIONS)}")
    doses = raw.get("doses", [])
    if not isinstance(doses, list):
        raise _err("doses must be a list of fractions of the standard dose, e.g. [0.33]")
    out = [
        spec
        for i, entry in enumerate(entries)
        for spec in _condition_entry(i, entry, doses, raw.get("generator"))
    ]
    if len(set(out)) != len(out):
        raise _err("conditions repeat the same condition/dose/generator")
    return out


# -------------------------------------------------------------------------------------------------- cases
def _glob_cases(raw: dict[str, Any], data_dir: Path) -> list[Path]:
    pattern = raw.get("glob")
    if not isinstance(pattern, str):
        raise _err("cases.glob must be a glob pattern under the data directory, e.g. phantom/test/*")
    base = pattern if Path(pattern).is_absolute() else str(data_dir / pattern)
    folders = sorted(Path(p) for p in globlib.glob(base) if Path(p).is_dir())
    limit = raw.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or limit < 1:
            raise _err("cases.limit must be a positive integer")
        folders = folders[:limit]
    if not folders:
        raise VCEInputError(f"study spec: no case folder matches {pattern!r}", path=data_dir)
    return folders


def _listed_cases(raw: list[Any], data_dir: Path) -> list[Path]:
    folders = []
    for entry in raw:
        p = Path(str(entry))
        p = p if p.is_absolute() else data_dir / p
        if not p.is_dir():
            raise VCEInputError(
                "study spec: case folder not found", path=p, expected="a case folder with case.json"
            )
        folders.append(p)
    if len(set(folders)) != len(folders):
        raise _err("cases lists the same folder twice")
    return folders


def resolve_cases(raw: Any, data_dir: Path) -> list[Path]:
    """Case folders of a spec: a list of folders or ``{glob: pattern, limit: n}`` under ``data_dir``."""
    if isinstance(raw, dict):
        return _glob_cases(raw, data_dir)
    if isinstance(raw, list) and raw:
        return _listed_cases(raw, data_dir)
    raise _err("cases must be a list of case folders or {glob: pattern}")


# ------------------------------------------------------------------------------------------ the whole spec
def _top_level(source: str | dict[str, Any]) -> dict[str, Any]:
    """The spec as a mapping (YAML text is parsed) with known keys only."""
    if isinstance(source, str):
        try:
            raw = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise _err(f"not valid YAML ({exc})") from None
    else:
        raw = source
    if not isinstance(raw, dict):
        raise _err("the top level must be a mapping (name, cases, conditions, ...)")
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise _err(f"unknown keys {sorted(unknown)}")
    return raw


def _name(raw: dict[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise _err("name must be a non-empty string (≤ 200 characters)")
    return name.strip()


def _seed(raw: dict[str, Any]) -> int:
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _err(f"seed {seed!r} must be an integer")
    return seed


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    """:data:`OPTION_DEFAULTS` updated with the given options, each checked (``washout_days`` as float)."""
    options = dict(OPTION_DEFAULTS)
    given = raw.get("options") or {}
    if not isinstance(given, dict) or set(given) - set(OPTION_DEFAULTS):
        raise _err(f"options must be a mapping with keys from {sorted(OPTION_DEFAULTS)}")
    options.update(given)
    for key in ("allow_back", "show_reference"):
        if not isinstance(options[key], bool):
            raise _err(f"options.{key} must be true or false")
    for key, low in (("repeat_reads", 1), ("min_distance", 0)):
        if isinstance(options[key], bool) or not isinstance(options[key], int) or options[key] < low:
            raise _err(f"options.{key} must be an integer ≥ {low}")
    wash = options["washout_days"]
    if isinstance(wash, bool) or not isinstance(wash, int | float) or wash < 0:
        raise _err("options.washout_days must be a number ≥ 0")
    options["washout_days"] = float(wash)
    return options


def _readers(raw: dict[str, Any]) -> list[str]:
    """Display names of the readers to create (entries are names or ``{name: ...}``)."""
    entries = raw.get("readers", [])
    if not isinstance(entries, list):
        raise _err("readers must be a list of display names")
    return [str(r["name"]) if isinstance(r, dict) and "name" in r else str(r) for r in entries]


def _status(raw: dict[str, Any]) -> str:
    status = raw.get("status", "draft")
    if status not in ("draft", "open"):
        raise _err(f"status {status!r} must be draft or open")
    return status


def _slices(raw: dict[str, Any]) -> dict[str, Any]:
    slices = raw.get("slices") or dict(DEFAULT_SLICES)
    if not isinstance(slices, dict):
        raise _err("slices must be a mapping, e.g. {select: most_enhancing, count: 5}")
    return slices


def parse_spec(source: str | dict[str, Any], data_dir: Path) -> StudySpec:
    """Validate a study spec given as YAML text or an already-parsed mapping.

    Relative case folders and globs are resolved under ``data_dir``.

    Raises
    ------
    VCEInputError
        Any problem, with the offending entry named.
    """
    raw = _top_level(source)
    return StudySpec(  # checked in this order: the cheap entries first, the case folders on disk last
        name=_name(raw),
        seed=_seed(raw),
        questions=_questions(raw),
        options=_options(raw),
        readers=_readers(raw),
        status=_status(raw),
        slices=_slices(raw),
        instructions=str(raw.get("instructions", "") or "").strip(),
        case_folders=resolve_cases(raw.get("cases"), data_dir),
        conditions=_conditions(raw),
        raw=raw,
    )
