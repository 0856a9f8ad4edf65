"""Shared test configuration.

Keeps tests hermetic: Gradio writes into a per-session temp dir, analytics are off, torch uses few threads,
and nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _gradio_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard requirement, but conftest must not fail
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
