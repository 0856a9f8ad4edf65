"""Dose-reduction review studio: Dose explorer · Virtual contrast · Upload · Reader study · Study admin.

Run ``python app.py`` (no arguments): builds a few demo phantom cases under ``data/demo/`` on the first
run, loads every generator in ``assets/models/``, opens the reader-study database and serves the studio
on http://127.0.0.1:7860. Options: ``--host``, ``--port``, ``--data DIR`` (a folder of case folders, real
or phantom), ``--models DIR``, ``--db URL``, ``--role all|reader|admin`` (``reader``: the blinded reader
view only); ``$VCE_DATA_DIR``, ``$VCE_MODELS_DIR`` and ``$VCE_DB_URL`` stand in for missing flags
(:class:`vce_core.settings.Settings`; the database defaults to SQLite in the data folder).

This file is arguments, wiring and launch only: each tab is its own module in :mod:`studio` (and
:mod:`reader_study.ui`). Tests build the app with :func:`build_app` and launch it themselves; the
benchmarks start ``python app.py``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from vce_core.settings import ENV_DATA_DIR, Settings, configure_server_process

configure_server_process()

import gradio as gr  # noqa: E402

from studio.contrast_tab import ContrastTab  # noqa: E402
from studio.demo import ensure_demo_cases  # noqa: E402
from studio.explorer_tab import ExplorerTab  # noqa: E402
from studio.upload_tab import UploadTab  # noqa: E402
from studio.wiring import build_role_app, load_parts, mount_reader_study_tabs, reader_study_launch  # noqa: E402
from vce_core.viewer import head_html  # noqa: E402

TITLE = "Dose-reduction review studio"

CSS = """
.gradio-container { max-width: 1600px !important; padding-top: 4px !important; }
.vce-caption { font-size: 0.85em; color: var(--body-text-color-subdued); }
.vce-metrics table { font-size: 0.82em; }
.vce-metrics p { margin: 2px 0; }
#plane-radio .wrap { gap: 4px; }
#plane-radio label { padding: 4px 8px; }
footer { display: none !important; }
"""
"""The studio's own styles (the viewer brings its own through ``vce_core.viewer.head_html()``)."""


@dataclass
class Studio:
    """A built (not launched) studio: the Blocks and the tab objects whose handlers tests call directly."""

    blocks: gr.Blocks
    explorer_tab: ExplorerTab
    upload_tab: UploadTab
    contrast_tab: ContrastTab
    max_file_size: int = 1024**3
    reader_study_launch: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the server of a launched studio."""
        self.blocks.close()


def build_app(settings: Settings, *, reader_study: bool = True, demo_study: bool = False) -> Studio:
    """Build the studio (not launched) from one :class:`Settings` (data folder, models folder, database).

    ``reader_study`` mounts the Reader and Study-admin tabs when the ``reader_study`` package is installed;
    ``demo_study`` creates the demo reader study over the demo cases (``python app.py`` without ``--data``).
    Uploads are copied to per-session folders under ``settings.uploads_dir``, which the server never serves
    (downloads go through Gradio's own cache); I/O limits come from ``vce_core.io.Limits.from_env()``.
    """
    configure_server_process()  # Gradio's queue reads its settings when the Blocks are built
    parts = load_parts(settings, reader_study=reader_study, demo_study=demo_study)
    explorer_tab = ExplorerTab(parts.explorer, settings.data_dir)
    upload_tab = UploadTab(parts.uploads, parts.generators)
    contrast_tab = ContrastTab.build(parts.explorer, settings.models_dir)
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as blocks:
        gr.Markdown(f"## {TITLE} · contrast-enhanced brain MRI")
        with gr.Tabs():
            explorer_tab.mount(blocks)
            contrast_tab.mount(blocks)
            upload_tab.mount(blocks)
            mount_reader_study_tabs(parts.study_service, parts.study_message)
    return Studio(
        blocks,
        explorer_tab,
        upload_tab,
        contrast_tab,
        max_file_size=parts.uploads.limits.max_bytes,
        reader_study_launch=reader_study_launch(parts.study_service),
    )


def launch_options(studio: Studio) -> dict[str, Any]:
    """``Blocks.launch`` options of the all-in-one studio: its CSS, the viewer's script, the reader-study
    page script and log-in routes, no footer, errors shown, the upload size limit."""
    options = {"footer_links": [], "show_error": True, "head": head_html(), **studio.reader_study_launch}
    options["css"] = CSS + options.get("css", "")
    options["max_file_size"] = studio.max_file_size
    return options


def launch(studio: Studio, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> tuple[Any, str, str]:
    """Launch a studio built by :func:`build_app` (tests and benchmarks; ``kwargs`` win)."""
    return studio.blocks.launch(server_name=host, server_port=port, **{**launch_options(studio), **kwargs})


def port_problem(host: str, port: int) -> str | None:
    """A one-line reason why the app could not listen on ``host:port`` (None when it can)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; choose another one with --port"
            return f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port"
    return None


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--data",
        default=None,
        help=f"folder of case folders (default ${ENV_DATA_DIR} or ./data, with demo phantom cases built "
        "on the first run)",
    )
    parser.add_argument(
        "--models", default=None, help="folder of generator checkpoints (default the bundled assets/models)"
    )
    parser.add_argument(
        "--db",
        default=None,
        help="reader-study database URL (default $VCE_DB_URL or SQLite in the data folder)",
    )
    parser.add_argument(
        "--role",
        choices=("all", "reader", "admin"),
        default="all",
        help="all: the all-in-one demo (not blinded); reader: the blinded reader view only; "
        "admin: the study-admin view only (default all)",
    )
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command line: build demo data if needed, build the app and serve it."""
    parser, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    settings = Settings.resolve(data_dir=args.data, models_dir=args.models, db_url=args.db)
    demo_mode = args.data is None and not os.environ.get(ENV_DATA_DIR)
    if not demo_mode and not settings.data_dir.is_dir():
        parser.error(f"the data folder {settings.data_dir} does not exist (--data or ${ENV_DATA_DIR})")
    problem = port_problem(args.host, args.port)  # before minutes of building, not after
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if demo_mode:
        ensure_demo_cases(settings.data_dir)
    if args.role == "all":
        studio: Any = build_app(settings, demo_study=demo_mode)
        options = launch_options(studio)
        print("Warning: the all-in-one app is not blinded; use --role reader for readers.", flush=True)
    else:
        studio = build_role_app(settings, args.role, demo_study=demo_mode)
        options = studio.launch_options
    print(f"Built the app in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        _, url, _ = studio.blocks.launch(
            server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True, **options
        )
    except OSError as exc:  # the port was taken while the app was being built
        print(f"error: {port_problem(args.host, args.port) or exc}", file=sys.stderr)
        sys.exit(2)
    print(f"Serving the dose-reduction review studio on {url}", flush=True)
    try:
        studio.blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        studio.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
