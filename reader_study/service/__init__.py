"""Reader-study service: the only way the UI, the CLI and the benchmarks touch a study (no Gradio here).

Callers identify themselves with an :class:`Actor` obtained from :meth:`ReaderStudyService.authenticate`
(an access token) — or :data:`SYSTEM` for trusted local code (CLI, demo builder). Every method re-reads the
actor's role from the database and checks ownership: a reader reaches only their own queue, images and
answers of studies they are enrolled in; admin functions refuse readers (:class:`AccessDenied`).

The service is composed of one part per job, each in its own module:

==============================  ==============================================================
:class:`admin.StudyAdmin`       create a study from a spec, accounts, enrolment, status, list
:class:`reading.Reading`        study view, next item (exact resume), back navigation, images
:class:`answering.Answering`    submit answers (by ticket and idempotency key), allowed changes
:class:`results.Results`        progress, every answer as a long table, questions, audit log
:class:`sessions.Sessions`      log in (token → session secret), resolve a session, log out
==============================  ==============================================================

Study specs (YAML) are parsed by :mod:`reader_study.spec`, reading orders come from
:mod:`reader_study.order`, tokens and access checks from :mod:`reader_study.auth`. The names they export
that callers use are re-exported here.
"""

from __future__ import annotations

from ..auth import SYSTEM, Actor
from ..errors import AccessDenied, AnswerConflict, ReaderStudyError, StudyStateError
from ..order import min_case_distance, reading_order
from ..spec import StudySpec, parse_spec, resolve_cases
from .admin import StudyAdmin
from .answering import Answering
from .reading import Reading
from .results import Results
from .sessions import SESSION_COOKIE, SESSION_HEADER, Sessions
from .views import QuestionView, ServedItem, SubmitResult

__all__ = [
    "SESSION_COOKIE",
    "SESSION_HEADER",
    "SYSTEM",
    "AccessDenied",
    "Actor",
    "AnswerConflict",
    "QuestionView",
    "ReaderStudyError",
    "ReaderStudyService",
    "ServedItem",
    "StudySpec",
    "StudyStateError",
    "SubmitResult",
    "min_case_distance",
    "parse_spec",
    "reading_order",
    "resolve_cases",
]


class ReaderStudyService(StudyAdmin, Reading, Answering, Results, Sessions):
    """Create and run reader studies over a :class:`reader_study.db.Database`.

    Parameters are those of :class:`reader_study.service.base.ServiceBase`: ``db``, and optionally
    ``data_root``, ``models_dir`` (defaults from :meth:`vce_core.settings.Settings.resolve`),
    ``case_loader`` and ``generator_loader``.
    """
