"""reader_study: blinded reader studies of dose-reduced brain MRI (storage, service, exports, statistics, UI).

Imports vce_core, never the reverse; no Gradio outside :mod:`reader_study.ui`; no torch (images come from
vce_core). One module per concept:

``spec``      study specs (YAML) validated into a :class:`~reader_study.spec.StudySpec`
``order``     seeded reading orders that keep the items of one case apart
``auth``      access tokens, the :class:`~reader_study.auth.Actor` of a call, access checks
``errors``    refusals (:class:`~reader_study.errors.AccessDenied`, ...)
``models``    the SQLAlchemy schema; ``db``: engine, sessions, schema version
``render``    items → blinded uint8 PNG images
``service``   :class:`~reader_study.service.ReaderStudyService` (admin, reading, answering, results)
``export``    long CSV, wide CSV, iMRMC; ``analysis``: score summaries, agreement, Turing test
``ui``        the Reader and Study-admin tabs; ``demo``: the demo study; ``python -m reader_study``: the CLI
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
