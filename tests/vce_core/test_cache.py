"""The one LRU helper: capacity, recency, thread safety."""

from __future__ import annotations

import threading

import pytest

from vce_core.cache import LRU


def test_evicts_least_recently_used() -> None:
    cache: LRU[int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    assert cache.pop("a") == 1 and cache.pop("a") is None
    cache.clear()
    assert len(cache) == 0 and cache.get("c", -1) == -1


def test_get_or_compute_computes_once_per_key() -> None:
    calls: list[str] = []
    cache: LRU[str] = LRU(4)

    def compute(key: str) -> str:
        calls.append(key)
        return key.upper()

    assert cache.get_or_compute("x", lambda: compute("x")) == "X"
    assert cache.get_or_compute("x", lambda: compute("x")) == "X"
    assert calls == ["x"]


def test_threads_never_exceed_capacity() -> None:
    cache: LRU[int] = LRU(8)

    def work(offset: int) -> None:
        for i in range(500):
            cache.get_or_compute((offset + i) % 40, lambda i=i: i)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 8


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_capacity_must_be_positive(capacity: object) -> None:
    with pytest.raises(ValueError):
        LRU(capacity)  # type: ignore[arg-type]
