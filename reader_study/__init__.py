"""reader_study: blinded reader studies of dose-reduced brain MRI (storage, service, exports, statistics, UI).

Imports vce_core, never the reverse; no Gradio outside :mod:`reader_study.ui`; no torch (images come from
vce_core). Entry points: :func:`reader_study.db.open_database`,
:class:`reader_study.service.ReaderStudyService`, :mod:`reader_study.export`,
:mod:`reader_study.analysis`, ``python -m reader_study``.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
