"""The packages depend on each other one way only (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "vce_core": {"gradio", "gradio_client", "sqlalchemy", "studio", "reader_study", "app"},
    "reader_study": {"torch", "studio", "app"},
    "studio": {"app"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports, also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_depend_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package} must not import these: {offenders}"


def test_reader_study_core_has_no_gradio() -> None:
    core = [p for p in (ROOT / "reader_study").rglob("*.py") if "ui" not in p.relative_to(ROOT).parts]
    assert core and not [str(p) for p in core if "gradio" in imported_modules(p)]


def test_app_is_thin() -> None:
    assert len((ROOT / "app.py").read_text(encoding="utf-8").splitlines()) <= 200
