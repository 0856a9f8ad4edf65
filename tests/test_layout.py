"""The layout: packages depend on each other one way only, app.py stays thin, functions stay readable
(docs/architecture.md)."""

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


LONGEST_FUNCTION = 85
"""Lines a function of the product may take, signature and docstring included (the structure issue's ~80:
past that it is split along its seams)."""


def function_lengths(path: Path) -> dict[str, int]:
    """``file:line name`` → lines of every function and method defined in ``path``."""
    return {
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
    }


def test_no_function_of_the_product_is_too_long_to_read() -> None:
    files = [ROOT / "app.py", *(p for package in FORBIDDEN for p in sorted((ROOT / package).rglob("*.py")))]
    lengths = {k: v for path in files for k, v in function_lengths(path).items()}
    assert len(lengths) > 500  # every package was read
    too_long = {k: v for k, v in lengths.items() if v > LONGEST_FUNCTION}
    assert not too_long, f"split these along their seams (at most {LONGEST_FUNCTION} lines): {too_long}"
