"""Held-out evaluation: reports under ``reports/`` with the command that wrote them.

* :mod:`vce_core.evaluate.lowdose` — low-dose synthesis (seed 000): ``python -m vce_core.evaluate``;
* :mod:`vce_core.evaluate.heldout` — held-out cases: phantom truth, repeat scans, lesion regions, slices;
* :mod:`vce_core.evaluate.enhancement` — lesion enhancement, enhancement ratio and CNR against the truth;
* :mod:`vce_core.evaluate.noise` — noise realism: pooled σ̂, local SD, noise power spectrum;
* :mod:`vce_core.evaluate.virtual_contrast` — virtual contrast (seeds 001–004):
  ``python -m vce_core.evaluate.virtual_contrast``;
* :mod:`vce_core.evaluate.report` — the low-dose report files (CSV, Markdown, HTML);
* :mod:`vce_core.evaluate.common` — what the reports share: method labels, CSV tables, mean/SD/n, the
  command line and its error exit;
* :mod:`vce_core.evaluate.stats` — the statistics every report uses (paired tests, bootstrap confidence
  intervals over cases, Holm adjustment).
"""

from __future__ import annotations

from .lowdose import BASELINES, METRICS, REFERENCE, case_metrics, evaluate, main, update_card

__all__ = ["BASELINES", "METRICS", "REFERENCE", "case_metrics", "evaluate", "main", "update_card"]
