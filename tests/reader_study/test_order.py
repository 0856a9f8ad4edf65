"""Reading order: seeded, deterministic, items of one case kept apart."""

from __future__ import annotations

import pytest

from reader_study.order import min_case_distance, reading_order


@pytest.mark.parametrize(("cases", "conditions", "distance"), [(10, 4, 4), (6, 5, 6), (3, 3, 3), (2, 3, 1)])
def test_reading_order_keeps_conditions_of_a_case_apart(cases: int, conditions: int, distance: int) -> None:
    items = [(c * 100 + k, c) for c in range(cases) for k in range(conditions)]
    for seed in range(20):
        order = reading_order(items, f"seed{seed}", distance)
        assert sorted(order) == sorted(i for i, _ in items)
        case_of = dict(items)
        assert (min_case_distance([case_of[i] for i in order]) or 99) >= distance
        assert order == reading_order(list(reversed(items)), f"seed{seed}", distance)  # deterministic
    assert (
        reading_order(items, "a", distance) != reading_order(items, "b", distance) or cases * conditions < 4
    )
    # an impossible distance is capped at the number of cases (round robin)
    capped = reading_order(items, "x", cases + 5)
    assert min_case_distance([dict(items)[i] for i in capped]) == cases


def test_min_case_distance() -> None:
    assert min_case_distance([]) is None and min_case_distance(["a", "b", "c"]) is None
    assert min_case_distance(["a", "b", "a", "c", "c"]) == 1
    assert min_case_distance([1, 2, 3, 1, 2, 3]) == 3
