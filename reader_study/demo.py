"""The demo study: ``configs/studies/demo.yaml`` over the demo phantom cases, with documented tokens.

Demo tokens (for the demo database only — never use them for a real study):

``demo-admin``      the study administrator (Study admin tab)
``demo-reader-1``   Reader 1 (Reader tab); likewise ``demo-reader-2`` and ``demo-reader-3``

:func:`ensure_demo_study` is idempotent: the first call renders and stores the study, later calls (or a
second process racing the first) only report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from vce_core.errors import VCEInputError

from .auth import SYSTEM
from .errors import AccessDenied
from .service import ReaderStudyService
from .spec import resolve_cases

DEMO_SPEC = Path(__file__).resolve().parent.parent / "configs" / "studies" / "demo.yaml"
DEMO_ADMIN_TOKEN = "demo-admin"
DEMO_READER_TOKENS = ("demo-reader-1", "demo-reader-2", "demo-reader-3")


def demo_spec(case_folders: Sequence[str | Path], with_generator: bool = True) -> dict[str, Any]:
    """The demo spec over ``case_folders`` (no readers: the demo readers get the documented tokens).

    ``with_generator=False`` drops the synthetic arm (no trained generator yet).
    """
    spec = yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8"))
    spec["cases"] = [str(Path(p).resolve()) for p in case_folders]
    spec["readers"] = []
    if not with_generator:
        spec["conditions"] = [c for c in spec["conditions"] if c != "synthetic_low_dose"]
    return spec


def _ensure_admin(service: ReaderStudyService) -> None:
    try:
        service.authenticate(DEMO_ADMIN_TOKEN)
    except AccessDenied:
        service.create_admin(SYSTEM, "Demo admin", token=DEMO_ADMIN_TOKEN)


def ensure_demo_study(
    service: ReaderStudyService,
    case_folders: Iterable[str | Path] | None = None,
    models_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build the demo study once (idempotent) and return what the app should print.

    Parameters
    ----------
    service:
        The app's service.
    case_folders:
        Demo phantom case folders; None: the ``cases`` glob of ``demo.yaml`` under the data directory.
    models_dir:
        Generator checkpoints (default: the service's); the synthetic arm uses ``default`` (the first one)
        and is left out when there is no generator yet.

    Returns
    -------
    ``{"study", "created", "items", "admin_token", "reader_tokens", "message"}``.
    """
    spec = yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8"))
    name = spec["name"]
    _ensure_admin(service)
    existing = {s["name"]: s for s in service.list_studies(SYSTEM)}
    created = False
    if name not in existing:
        if case_folders is not None:
            case_folders = list(case_folders)
        else:
            case_folders = resolve_cases(spec["cases"], service.data_root)
        if not case_folders:
            raise VCEInputError("the demo study needs at least one demo case folder")
        with_generator = service.has_generator("default", models_dir)
        full = demo_spec(case_folders, with_generator)
        try:
            service.create_study(SYSTEM, full)
            created = True
        except VCEInputError:
            if name not in {s["name"] for s in service.list_studies(SYSTEM)}:
                raise
    for k, token in enumerate(DEMO_READER_TOKENS, start=1):
        try:
            service.authenticate(token)
        except AccessDenied:
            service.enroll_reader(SYSTEM, name, f"Reader {k}", token=token)
    service.open_study(SYSTEM, name)
    info = {s["name"]: s for s in service.list_studies(SYSTEM)}[name]
    message = (
        f"Reader study {name!r}: {info['items']} images, {info['readers']} readers "
        f"({'created now' if created else 'already there'}).\n"
        f"  Study admin tab: token {DEMO_ADMIN_TOKEN}\n"
        f"  Reader tab: tokens {', '.join(DEMO_READER_TOKENS)} (demo only)"
    )
    return {
        "study": name, "created": created, "items": info["items"],
        "admin_token": DEMO_ADMIN_TOKEN, "reader_tokens": list(DEMO_READER_TOKENS), "message": message,
    }  # fmt: skip
