"""Reading order: a seeded shuffle that keeps the items of one case apart.

Each reader gets their own order per iteration (seed ``"<study seed>:<reader id>:<iteration>"``), stored
as :class:`reader_study.models.Assignment` rows when the reader is enrolled.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

GREEDY_ATTEMPTS = 200
"""Randomised attempts before falling back to the max-remaining greedy."""


def _attempt(
    by_case: dict[int, list[int]], distance: int, rng: random.Random, strict_max: bool
) -> list[int] | None:
    """One greedy pass; None on a dead end (only when not ``strict_max``, which always completes)."""
    n = sum(len(ids) for ids in by_case.values())
    remaining = {c: rng.sample(ids, len(ids)) for c, ids in sorted(by_case.items())}
    last: dict[int, int] = {}
    out: list[int] = []
    for pos in range(n):
        allowed = [c for c, ids in remaining.items() if ids and (c not in last or pos - last[c] >= distance)]
        if not allowed:
            if not strict_max:
                return None
            allowed = [c for c, ids in remaining.items() if ids]
            allowed = [min(allowed, key=lambda c: last.get(c, -n))]
        if strict_max:
            top = max(len(remaining[c]) for c in allowed)
            choice = rng.choice([c for c in allowed if len(remaining[c]) == top])
        else:
            choice = rng.choices(allowed, weights=[len(remaining[c]) ** 2 for c in allowed])[0]
        out.append(remaining[choice].pop())
        last[choice] = pos
    return out


def reading_order(items: Sequence[tuple[int, int]], seed: str, min_distance: int) -> list[int]:
    """Seeded shuffle of ``(item_id, case_id)`` pairs keeping items of the same case apart.

    Two items of the same case end up at positions at least ``min_distance`` apart (1 or 0: no
    constraint) whenever that is possible; the distance is capped at the number of cases (the most any
    order can achieve). Randomised greedy: at each position pick, among the cases allowed there, one at
    random weighted by its squared number of remaining items; on a dead end retry with the next random
    state; after :data:`GREEDY_ATTEMPTS` dead ends use the max-remaining greedy (random tie-break), which is
    optimal for the "k apart" scheduling problem. Deterministic for a given ``seed`` and item set.

    Returns
    -------
    item ids in reading order.
    """
    rng = random.Random(seed)
    by_case: dict[int, list[int]] = {}
    for item_id, case_id in sorted(items):
        by_case.setdefault(case_id, []).append(item_id)
    distance = max(0, min(int(min_distance), len(by_case)))
    for _ in range(GREEDY_ATTEMPTS):
        order = _attempt(by_case, distance, rng, strict_max=False)
        if order is not None:
            return order
    order = _attempt(by_case, distance, rng, strict_max=True)
    assert order is not None
    return order


def min_case_distance(case_sequence: Sequence[Any]) -> int | None:
    """Smallest position difference between two equal entries (None if all differ)."""
    last: dict[Any, int] = {}
    best: int | None = None
    for pos, c in enumerate(case_sequence):
        if c in last:
            gap = pos - last[c]
            best = gap if best is None else min(best, gap)
        last[c] = pos
    return best
