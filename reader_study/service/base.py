"""What every part of the service shares: the database, the paths and loaders, the decoded-image cache,
the audit trail, and the queries that several parts ask."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vce_core.cache import LRU
from vce_core.errors import VCEInputError
from vce_core.settings import Settings

from .. import render
from ..auth import Actor, token_holder
from ..db import Database
from ..errors import AccessDenied
from ..models import Assignment, AuditEvent, ItemImage, Reader, Study, as_utc

IMAGE_CACHE_ITEMS = 256
"""Items whose decoded slices the service keeps in memory."""
SESSION_CACHE_ENTRIES = 4096
"""Resolved log-in sessions the service remembers for a few seconds (see :mod:`.sessions`)."""


def audit_denials(method: Callable[..., Any]) -> Callable[..., Any]:
    """Record refused calls as ``access_denied`` audit events (after the refused transaction ended)."""

    @functools.wraps(method)
    def wrapper(self: ServiceBase, actor: Actor, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, actor, *args, **kwargs)
        except AccessDenied:
            actor_id = actor.reader_id if isinstance(actor, Actor) else None
            self._audit(actor_id, None, "access_denied", {"call": method.__name__})
            raise

    return wrapper


def study_named(s: Session, name: str) -> Study:
    """The study called ``name``; :class:`VCEInputError` when there is none."""
    study = s.scalar(select(Study).where(Study.name == name))
    if study is None:
        raise VCEInputError(f"there is no study named {name!r}")
    return study


def first_open_position(s: Session, reader_id: int, study_id: int, iteration: int) -> int | None:
    """0-based position of the reader's first unanswered item of ``iteration`` (None: all answered)."""
    return s.scalar(
        select(func.min(Assignment.position)).where(
            Assignment.reader_id == reader_id,
            Assignment.study_id == study_id,
            Assignment.iteration == iteration,
            Assignment.completed_at.is_(None),
        )
    )


def current_iteration(s: Session, study: Study, reader: Reader) -> tuple[int | None, datetime | None]:
    """(first iteration with unanswered items or None if all done, UTC time that iteration opens or None)."""
    pending = s.scalar(
        select(func.min(Assignment.iteration)).where(
            Assignment.reader_id == reader.id,
            Assignment.study_id == study.id,
            Assignment.completed_at.is_(None),
        )
    )
    if pending is None or pending == 1 or study.washout_days <= 0:
        return pending, None
    finished = as_utc(
        s.scalar(
            select(func.max(Assignment.completed_at)).where(
                Assignment.reader_id == reader.id,
                Assignment.study_id == study.id,
                Assignment.iteration == pending - 1,
            )
        )
    )
    return pending, None if finished is None else finished + timedelta(days=study.washout_days)


class ServiceBase:
    """State shared by the parts of :class:`reader_study.service.ReaderStudyService`.

    Parameters
    ----------
    db:
        The open database (see :func:`reader_study.db.open_database`).
    data_root:
        Base of relative case paths in specs (default: the data directory of
        :meth:`vce_core.settings.Settings.resolve`).
    models_dir:
        Where generators live (default: the models directory of the settings, ``assets/models``).
    case_loader:
        ``folder -> Case`` (default :func:`vce_core.io.load_case`).
    generator_loader:
        ``name -> Synthesizer`` (default :func:`reader_study.render.load_generator` under ``models_dir``);
        what it returns must have the task of the condition that names it (its ``task`` attribute,
        ``low_dose`` when absent; ``virtual_contrast`` for virtual-contrast items).
    """

    def __init__(
        self,
        db: Database,
        *,
        data_root: str | Path | None = None,
        models_dir: str | Path | None = None,
        case_loader: Callable[[Path], Any] | None = None,
        generator_loader: Callable[[str], render.SynthesizerLike] | None = None,
    ) -> None:
        settings = Settings.resolve(data_dir=data_root, models_dir=models_dir)
        self.db = db
        self.data_root = Path(data_root) if data_root is not None else settings.data_dir
        self.models_dir = Path(models_dir) if models_dir is not None else settings.models_dir
        self._case_loader = case_loader
        self._generator_loader = generator_loader
        self._images: LRU[list[np.ndarray]] = LRU(IMAGE_CACHE_ITEMS)
        self._sessions: LRU[tuple[Actor, float]] = LRU(SESSION_CACHE_ENTRIES)

    def authenticate(self, token: str) -> Actor:
        """The actor holding ``token``; :class:`AccessDenied` (and an audit event) if none does."""
        with self.db.read() as s:
            reader = token_holder(s, token)
            actor = None if reader is None else Actor(reader.id, reader.role, reader.display_name)
        if actor is None:
            self._audit(None, None, "login_failed", {})
            raise AccessDenied("This access token is not valid.")
        self._audit(actor.reader_id, None, "login", {})
        return actor

    def _audit(self, actor_id: int | None, study_id: int | None, action: str, detail: dict[str, Any]) -> None:
        with self.db.write() as s:
            s.add(AuditEvent(actor_id=actor_id, study_id=study_id, action=action, detail=detail))

    def _decoded(self, s: Session, item_id: int) -> list[np.ndarray]:
        """The item's slices as read-only 2-D uint8 arrays (decoded once, then from the cache)."""

        def decode() -> list[np.ndarray]:
            pngs = s.scalars(
                select(ItemImage.png).where(ItemImage.item_id == item_id).order_by(ItemImage.position)
            )
            stack = [render.decode_png(p) for p in pngs]
            for arr in stack:
                arr.setflags(write=False)
            return stack

        return self._images.get_or_compute(item_id, decode)
