"""Command line: ``python -m reader_study COMMAND ...`` (run with ``-h`` for every command's options).

Examples::

    python -m reader_study create configs/studies/demo.yaml --name "My study" --db sqlite:///data/reader_study.db
    python -m reader_study open "Demo reader study"
    python -m reader_study enroll --study "Demo reader study" --name "Dr. Reader"
    python -m reader_study add-admin "Study admin"
    python -m reader_study progress --study "Demo reader study"
    python -m reader_study export --study "Demo reader study" --format long --out answers.csv
    python -m reader_study analyze --study "Demo reader study"
    python -m reader_study demo

Options ``--db``, ``--data-dir`` and ``--models-dir`` go before or after the command. They are resolved by
:meth:`vce_core.settings.Settings.resolve`, as in ``app.py``: a flag wins over ``$VCE_DB_URL``,
``$VCE_DATA_DIR``, ``$VCE_MODELS_DIR``, which win over the defaults (the database
``sqlite:///<data dir>/reader_study.db``, the data directory ``data/`` in the current working directory).
Tokens printed by ``create``, ``enroll`` and ``add-admin`` are shown once; only their hashes are stored.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vce_core.errors import VCEInputError
from vce_core.settings import Settings

from . import analysis, export
from .auth import SYSTEM
from .db import SchemaVersionError, open_database
from .errors import ReaderStudyError
from .service import ReaderStudyService


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="SQLAlchemy URL (default: $VCE_DB_URL or sqlite:///<data dir>/reader_study.db)",
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory: base of relative case paths in specs and home of the default database "
        "(default: $VCE_DATA_DIR or data/)",
    )
    common.add_argument(
        "--models-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="generator checkpoints (default: $VCE_MODELS_DIR or assets/models)",
    )
    p = argparse.ArgumentParser(
        prog="python -m reader_study", description="Blinded reader studies.", parents=[common]
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "create", help="create a study from a YAML spec (renders every item once)", parents=[common]
    )
    c.add_argument("spec", type=Path)
    c.add_argument("--name", help="the study's name (default: the spec's name)")
    for name in ("open", "close"):
        s = sub.add_parser(name, help=f"{name} a study", parents=[common])
        s.add_argument("study")
    e = sub.add_parser(
        "enroll", help="create a reader account in a study; prints its token once", parents=[common]
    )
    e.add_argument("--study", required=True)
    e.add_argument("--name", required=True, help="display name")
    a = sub.add_parser("add-admin", help="create an admin account; prints its token once", parents=[common])
    a.add_argument("name")
    sub.add_parser("list", help="list studies", parents=[common])
    pr = sub.add_parser("progress", help="progress per reader", parents=[common])
    pr.add_argument("--study", required=True)
    x = sub.add_parser("export", help="export answers: long CSV, wide CSV or iMRMC", parents=[common])
    x.add_argument("--study", required=True)
    x.add_argument("--format", choices=export.FORMATS, default="long")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--question", help="real-vs-synthetic question key for iMRMC (if several)")
    n = sub.add_parser(
        "analyze", help="print score summaries, paired tests, agreement and the Turing test", parents=[common]
    )
    n.add_argument("--study", required=True)
    d = sub.add_parser(
        "demo", help="build the demo study over the demo phantom cases (idempotent)", parents=[common]
    )
    d.add_argument("--cases", nargs="+", type=Path, help="case folders (default: the glob in demo.yaml)")
    return p


def _spec(path: Path, name: str | None) -> str | dict[str, Any]:
    """The spec file's text, or its mapping with the name replaced by ``name``."""
    text = path.read_text(encoding="utf-8")
    if not name:
        return text
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VCEInputError(f"study spec: not valid YAML ({exc})", path=path) from None
    if not isinstance(spec, dict):
        raise VCEInputError("study spec: the top level must be a mapping", path=path)
    return {**spec, "name": name}


def _progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


def _print_table(title: str, frame: pd.DataFrame) -> None:
    print(f"\n## {title}")
    print("(none)" if frame.empty else frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input, 3 for a refused operation)."""
    args = _parser().parse_args(argv)
    settings = Settings.resolve(
        data_dir=getattr(args, "data_dir", None),
        models_dir=getattr(args, "models_dir", None),
        db_url=getattr(args, "db", None),
    )
    try:
        db = open_database(settings.db_url)
        svc = ReaderStudyService(db, data_root=settings.data_dir, models_dir=settings.models_dir)
        if args.command == "create":
            if not args.spec.is_file():
                raise VCEInputError("study spec not found", path=args.spec, expected="a YAML file")
            out = svc.create_study(SYSTEM, _spec(args.spec, args.name), progress=_progress)
            print(f"created study {out['study']!r} ({out['status']}): ", end="")
            print(f"{out['cases']} cases, {out['items']} items")
            for r in out["readers"]:
                print(f"reader {r['name']!r} (id {r['reader_id']}): token {r['token']}")
            if out["readers"]:
                print("Tokens are shown once; give each reader their own.")
        elif args.command in ("open", "close"):
            status = svc.set_status(SYSTEM, args.study, "open" if args.command == "open" else "closed")
            print(f"{args.study}: {status}")
        elif args.command == "enroll":
            rid, token = svc.enroll_reader(SYSTEM, args.study, args.name)
            print(f"reader {args.name!r} (id {rid}) enrolled in {args.study!r}: token {token}")
        elif args.command == "add-admin":
            rid, token = svc.create_admin(SYSTEM, args.name)
            print(f"admin {args.name!r} (id {rid}): token {token}")
        elif args.command == "list":
            _print_table("studies", pd.DataFrame(svc.list_studies(SYSTEM)))
        elif args.command == "progress":
            _print_table(f"progress of {args.study}", svc.progress_all(SYSTEM, args.study))
        elif args.command == "export":
            answers = svc.answers_frame(SYSTEM, args.study)
            path = export.export_answers(answers, args.format, args.out, question=args.question)
            print(f"wrote {len(answers)} answers as {args.format} to {path}")
        elif args.command == "analyze":
            result = analysis.summarize(svc.answers_frame(SYSTEM, args.study))
            for key in ("scores", "paired", "alpha", "kappa", "icc", "turing"):
                _print_table(key, result[key])
        elif args.command == "demo":
            from .demo import ensure_demo_study

            info = ensure_demo_study(svc, args.cases)
            print(info["message"])
        return 0
    except (VCEInputError, SchemaVersionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReaderStudyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
