"""Held-out evaluation: reports under ``reports/`` with the command that wrote them.

* :mod:`vce_core.evaluate.lowdose` — low-dose synthesis (seed 000): ``python -m vce_core.evaluate``;
* :mod:`vce_core.evaluate.stats` — the statistics every report uses (paired tests, bootstrap confidence
  intervals over cases).
"""

from __future__ import annotations

from .lowdose import METRICS, case_metrics, evaluate, main, summarize, update_card

__all__ = ["METRICS", "case_metrics", "evaluate", "main", "summarize", "update_card"]
