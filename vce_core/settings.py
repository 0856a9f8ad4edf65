"""Where the project keeps its things: one settings object for paths and the database URL.

Every entry point (``app.py``, ``python -m reader_study``, the benchmarks) builds a :class:`Settings` with
:meth:`Settings.resolve`: a command-line flag wins over an environment variable, which wins over the
default.

=================  ======================  =====================================================
setting            environment variable    default
=================  ======================  =====================================================
``data_dir``       ``VCE_DATA_DIR``        ``data/`` in the current working directory
``models_dir``     ``VCE_MODELS_DIR``      the bundled generators, ``assets/models/`` of the repository
``db_url``         ``VCE_DB_URL``          SQLite file ``<data_dir>/reader_study.db``
=================  ======================  =====================================================

Paths are made absolute when the settings are built, so a later ``chdir`` changes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository (or source tree) that holds ``vce_core``; ``assets/`` and ``configs/`` live here."""

BUNDLED_MODELS = REPO_ROOT / "assets" / "models"
CONFIGS_DIR = REPO_ROOT / "configs"

ENV_DATA_DIR = "VCE_DATA_DIR"
ENV_MODELS_DIR = "VCE_MODELS_DIR"
ENV_DB_URL = "VCE_DB_URL"

GRADIO_ENV: dict[str, str] = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_ANALYTICS_CACHE_FREQUENCY": "500",
    "GRADIO_ANALYTICS_MAX_EVENTS": "2000",
}
"""Process environment of every Gradio server of the project (defaults; a value already set wins):

* no usage-analytics requests from Gradio (the machines may have no internet access);
* Gradio's queue summarises its event log (a pandas DataFrame of up to ``GRADIO_ANALYTICS_MAX_EVENTS``
  events) after every ``GRADIO_ANALYTICS_CACHE_FREQUENCY`` events; its defaults (after every event, up to
  10,000 events) made that summary one of the reader server's largest costs at 20 submits/s. The summary
  only feeds Gradio's monitoring page, which the project does not use. The queue reads these variables when
  the ``gr.Blocks`` are built, so :func:`configure_server_process` must run before that. Measured with
  ``python -m benchmarks.reader_load --handler-times`` (50 readers, 2026-12-03, quiet host): submit p95
  158–159 ms with the settings in effect, 309–1244 ms over 8 earlier runs without them.
"""


SWITCH_INTERVAL_S = 0.001
"""Python's thread switch interval in the server processes (default 0.005 s). A reader's submit runs 19
SQLite statements (24 when measured below) inside one write transaction, and each statement releases and
re-takes the GIL; with 50 readers submitting, a thread that wants the GIL back waits up to the switch interval
behind the other request threads, and every submit queued behind the write lock waits with it. Measured with
``python -m benchmarks.reader_load --handler-times [--switch-interval 0.005]`` (2026-12-03, back to back,
while Gradio's queue still summarised its event log after every event, see :data:`GRADIO_ENV`): handler wall
time p50 94 ms at 0.001 s vs 175 ms at 0.005 s, for 18–19 ms of CPU."""


def configure_server_process() -> None:
    """Set :data:`GRADIO_ENV` in ``os.environ`` where unset and the thread switch interval
    (:data:`SWITCH_INTERVAL_S`); call before building the ``gr.Blocks`` of a server: Gradio creates the
    queue, which reads ``GRADIO_ANALYTICS_*``, when the Blocks are built, not at ``launch``."""
    for key, value in GRADIO_ENV.items():
        os.environ.setdefault(key, value)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def sqlite_url(path: str | os.PathLike) -> str:
    """SQLAlchemy URL of the SQLite file ``path`` (made absolute)."""
    return f"sqlite:///{Path(path).resolve()}"


@dataclass(frozen=True)
class Settings:
    """Paths and database URL of one running studio (see the module docstring for the defaults)."""

    data_dir: Path
    models_dir: Path
    db_url: str

    @property
    def uploads_dir(self) -> Path:
        """Per-session upload folders live here (deleted when the session ends)."""
        return self.data_dir / "uploads"

    @property
    def demo_dir(self) -> Path:
        """The demo phantom cases that ``python app.py`` builds on its first start."""
        return self.data_dir / "demo"

    @classmethod
    def resolve(
        cls,
        *,
        data_dir: str | os.PathLike | None = None,
        models_dir: str | os.PathLike | None = None,
        db_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from explicit values (flags), else the environment, else the defaults."""
        env = os.environ if environ is None else environ
        data = Path(data_dir or env.get(ENV_DATA_DIR) or "data").expanduser().resolve()
        models = Path(models_dir or env.get(ENV_MODELS_DIR) or BUNDLED_MODELS).expanduser().resolve()
        url = db_url or env.get(ENV_DB_URL) or sqlite_url(data / "reader_study.db")
        return cls(data_dir=data, models_dir=models, db_url=url)
