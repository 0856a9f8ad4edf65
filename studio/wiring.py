"""Start-up of the studio: what the tabs need, loaded side by side, and the reader-study views per role.

``app.build_app`` calls :func:`load_parts` with the app's :class:`~vce_core.settings.Settings`, builds one
tab object per tab from the parts, and mounts them; :func:`mount_reader_study_tabs` adds the reader-study
tabs (or a tab that says why there are none) with a warning that the all-in-one app is not blinded.
:func:`build_role_app` builds the blinded reader deployment or the admin deployment
(``python app.py --role reader|admin``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.cases import CaseLibrary
from studio.explorer import Explorer
from studio.generators import GeneratorRegistry
from studio.upload import UploadArea
from vce_core.errors import VCEInputError
from vce_core.io import Limits
from vce_core.settings import Settings


@dataclass
class StudioParts:
    """Everything the tabs are built from."""

    explorer: Explorer
    generators: GeneratorRegistry
    uploads: UploadArea
    study_service: Any | None  # reader_study.service.ReaderStudyService
    study_message: str | None  # why there is no reader study (None when there is one or none was asked)


def load_parts(settings: Settings, *, reader_study: bool = True, demo_study: bool = False) -> StudioParts:
    """Load the generators (torch), the first case and the reader-study database side by side.

    Stale upload folders of an earlier run are deleted. ``reader_study`` opens the database at
    ``settings.db_url``; ``demo_study`` also creates the demo study (see :func:`open_reader_study`).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    library = CaseLibrary(settings.data_dir)
    uploads = UploadArea(settings.data_dir, Limits.from_env())
    uploads.clear_stale()
    case_ids = library.case_ids()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vce-start") as pool:
        generators_future = pool.submit(GeneratorRegistry, settings.models_dir)
        if case_ids:
            pool.submit(library.get, case_ids[0])  # errors resurface (and are shown) when the case is used
        service, message = (
            open_reader_study(settings, demo_study=demo_study) if reader_study else (None, None)
        )
        generators = generators_future.result()
    return StudioParts(Explorer(library, generators), generators, uploads, service, message)


def open_reader_study(settings: Settings, *, demo_study: bool = False) -> tuple[Any | None, str | None]:
    """Open the reader-study database and its service (the tabs are mounted later, inside the Blocks).

    With ``demo_study`` the demo study over the demo phantom cases is created once
    (``reader_study.demo.ensure_demo_study``) and its tokens are printed. Returns ``(service, None)``, or
    ``(None, message)`` with a plain-words reason (package not installed, database that cannot be opened).
    """
    try:
        from reader_study import ui  # noqa: F401  (mounted later; fail here, not inside the layout)
        from reader_study.db import SchemaVersionError, open_database
        from reader_study.service import ReaderStudyService
    except ImportError as exc:
        return None, f"The reader study is not available in this installation ({exc})."
    try:
        database = open_database(settings.db_url)
    except (VCEInputError, SchemaVersionError) as exc:
        return None, f"The reader-study database could not be opened: {exc}"
    service = ReaderStudyService(database, data_root=settings.data_dir, models_dir=settings.models_dir)
    if demo_study:
        from reader_study.demo import ensure_demo_study
        from vce_core.io import iter_case_folders

        demo_dir = settings.demo_dir
        demo_cases = iter_case_folders(demo_dir) if demo_dir.is_dir() else None
        try:
            print(ensure_demo_study(service, demo_cases, settings.models_dir)["message"], flush=True)
        except VCEInputError as exc:
            print(f"The demo reader study was not created: {exc}", flush=True)
    return service, None


NOT_BLINDED = (
    "**Demo only — not blinded.** This all-in-one app also serves the Dose explorer, which shows the same "
    "cases with their conditions. For a real study run the reader deployment "
    "(`python app.py --role reader`) for readers and `python app.py --role admin` for the study lead."
)


def mount_reader_study_tabs(service: Any | None, message: str | None) -> None:
    """Inside ``gr.Tabs``: the Reader and Study-admin tabs (each headed by the not-blinded warning), or one
    tab with ``message`` saying why not."""
    if service is not None:
        from reader_study.ui import mount_reader_study

        mount_reader_study(service, notice=NOT_BLINDED)
    elif message:
        with gr.Tab("Reader study"):
            gr.Markdown(message)


def reader_study_launch(service: Any | None, roles: tuple[str, ...] = ("reader", "admin")) -> dict[str, Any]:
    """``launch`` options the reader-study views need (log-in routes of ``roles``, page script and style);
    empty without a service."""
    if service is None:
        return {}
    from reader_study.ui import launch_kwargs

    return launch_kwargs(service, roles)


@dataclass
class RoleApp:
    """A one-role deployment (``python app.py --role reader|admin``): its Blocks and launch options."""

    blocks: gr.Blocks
    launch_options: dict[str, Any]

    def close(self) -> None:
        """Stop the server of a launched app."""
        self.blocks.close()


def build_role_app(settings: Settings, role: str, *, demo_study: bool = False) -> RoleApp:
    """The reader deployment (reader view only: no explorer, no admin endpoint, no generator loaded) or
    the admin deployment (admin view behind its own log-in), over the database of ``settings``."""
    if role not in ("reader", "admin"):
        raise VCEInputError(f"unknown role {role!r}", expected="all, reader or admin")
    service, message = open_reader_study(settings, demo_study=demo_study)
    if service is None:
        raise VCEInputError(message or "the reader study is not available")
    from reader_study.ui import admin_app, reader_app

    blocks = reader_app(service) if role == "reader" else admin_app(service)
    return RoleApp(blocks, reader_study_launch(service, (role,)))
