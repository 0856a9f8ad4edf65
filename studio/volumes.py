"""Whole synthetic volumes for coronal and sagittal views, computed by one worker thread, newest first.

A slice-wise (2-D) generator sees axial slices only, and its GroupNorm layers normalise over the whole
slice, so one coronal or sagittal slice needs the full forward pass of every axial slice: a whole
volume per dose, whatever part of it is shown. :class:`VolumeJobs` makes that bearable:

* **cached**: finished volumes are kept (LRU, ``capacity`` volumes) by key ``(case, generator, dose)``;
* **stale requests dropped**: each browser session waits for at most one volume; when it asks for
  another, its earlier request is withdrawn and a job nobody waits for any more stops at its next batch;
* **precomputation while idle**: :meth:`prefetch` queues volumes (the current dose of an axial view, the
  neighbouring doses of a coronal view) that run only while no interactive job is waiting and pause
  (between batches) while an interactive slice is being synthesized (:meth:`foreground`);
* **progress**: :meth:`progress` tells how far a volume is, for the busy message.

No Gradio here; ``compute(key, progress)`` is given by the explorer and calls ``progress(done, total)``
after every batch, which raises :class:`Stopped` when the job should stop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vce_core.cache import LRU

Compute = Callable[[Hashable, Callable[[int, int], None]], np.ndarray]
"""``compute(key, progress)``: the volume of ``key``; ``progress(done, total)`` after every batch."""

IDLE = "<idle>"
"""Waiter name of precomputation jobs."""


class Stopped(Exception):
    """Raised inside ``compute`` (through its progress callback) when the job is no longer wanted."""


@dataclass
class _Job:
    key: Hashable
    waiters: Counter[str] = field(default_factory=Counter)
    done: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    result: np.ndarray | None = None
    error: BaseException | None = None

    @property
    def idle(self) -> bool:
        return set(self.waiters) <= {IDLE}

    def drop(self, waiter: str) -> None:
        """One wait of ``waiter`` ended (a session can wait twice for one volume: viewer and metrics)."""
        self.waiters[waiter] -= 1
        if self.waiters[waiter] <= 0:
            del self.waiters[waiter]


class VolumeJobs:
    """One worker computing volumes by key: interactive requests first, idle precomputation otherwise."""

    def __init__(self, compute: Compute, capacity: int = 8) -> None:
        self._compute = compute
        self._cache: LRU[np.ndarray] = LRU(capacity)
        self._lock = threading.Condition()
        self._jobs: OrderedDict[Hashable, _Job] = OrderedDict()
        self._wanted: dict[str, Hashable] = {}
        self._tickets: dict[str, int] = {}
        self._foreground = 0
        self._running: _Job | None = None
        self._thread = threading.Thread(target=self._work, name="vce-volumes", daemon=True)
        self._thread.start()

    # -- asking ----------------------------------------------------------------------------------

    def cached(self, key: Hashable) -> np.ndarray | None:
        """The finished volume of ``key``, or None."""
        return self._cache.get(key)

    def get(self, key: Hashable, session: str, timeout: float | None = None) -> np.ndarray | None:
        """Wait for the volume of ``key`` (computing it if needed); None when ``session`` asked for
        another volume meanwhile (its request was dropped) or ``timeout`` (s) passed."""
        volume = self._cache.get(key)
        if volume is not None:
            return volume
        with self._lock:
            if self._wanted.get(session) != key:  # a new wish: earlier waits of this session are dropped
                self._withdraw(session)
                self._tickets[session] = self._tickets.get(session, 0) + 1
                self._wanted[session] = key
                self._forget_old_sessions()
            ticket = self._tickets[session]
            job = self._jobs.get(key) or self._jobs.setdefault(key, _Job(key))
            job.waiters[session] += 1
            if job is not self._running:
                self._jobs.move_to_end(key, last=False)  # the newest request goes first
            self._lock.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.done.wait(0.2):  # wake up now and then: the session may have moved on
            with self._lock:
                if self._tickets.get(session) != ticket:
                    break
            if deadline is not None and time.monotonic() > deadline:
                break
        with self._lock:
            if session in job.waiters:
                job.drop(session)
            superseded = self._tickets.get(session) != ticket
        if superseded:
            return None
        if job.error is not None and not isinstance(job.error, Stopped):
            raise job.error
        return job.result

    def supersede(self, session: str, keep: Hashable | None = None) -> None:
        """``session`` moved on to ``keep`` (or nothing): its waits for any other volume end now (they
        return None) and a job nobody else waits for stops at its next batch."""
        with self._lock:
            if keep is not None and self._wanted.get(session) == keep:
                return
            self._withdraw(session)
            self._tickets[session] = self._tickets.get(session, 0) + 1
            self._wanted.pop(session, None)
            self._lock.notify_all()

    def prefetch(self, keys: list[Hashable]) -> None:
        """Compute ``keys`` in this order while nothing interactive waits (replaces earlier prefetches)."""
        with self._lock:
            for key, job in list(self._jobs.items()):
                if set(job.waiters) == {IDLE} and job is not self._running:
                    del self._jobs[key]
            for key in keys:
                if self._cache.get(key) is None:
                    self._jobs.setdefault(key, _Job(key)).waiters[IDLE] = 1
            self._lock.notify_all()

    def progress(self, key: Hashable) -> float | None:
        """Fraction done of the volume of ``key`` (1 when cached, None when nobody computes it)."""
        if self._cache.get(key) is not None:
            return 1.0
        with self._lock:
            job = self._jobs.get(key)
            return None if job is None else job.fraction

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Mark interactive work: precomputation pauses at its next batch until the block ends."""
        with self._lock:
            self._foreground += 1
        try:
            yield
        finally:
            with self._lock:
                self._foreground -= 1
                self._lock.notify_all()

    # -- the worker ------------------------------------------------------------------------------

    def _withdraw(self, session: str) -> None:
        """Remove every wait of ``session`` from the job it wanted before (locked)."""
        old = self._wanted.get(session)
        if old is not None and old in self._jobs:
            self._jobs[old].waiters.pop(session, None)

    def _forget_old_sessions(self, keep: int = 4096) -> None:
        """Bound the per-session bookkeeping (locked): the oldest sessions are forgotten."""
        while len(self._wanted) > keep:
            oldest = next(iter(self._wanted))
            self._wanted.pop(oldest, None)
            self._tickets.pop(oldest, None)

    def _next(self) -> _Job:
        """The next job to run: the first one somebody waits for, else the first idle one (locked)."""
        while True:
            for key, job in list(self._jobs.items()):
                if not job.waiters:
                    del self._jobs[key]
                    job.error = Stopped()
                    job.done.set()
            interactive = [j for j in self._jobs.values() if not j.idle]
            idle = [j for j in self._jobs.values() if j.idle]
            if interactive:
                return interactive[0]
            if idle and not self._foreground:
                return idle[0]
            self._lock.wait()

    def _should_stop(self, job: _Job) -> None:
        """Called between batches: stop a job nobody wants; let an idle job yield to interactive work."""
        with self._lock:
            if not job.waiters:
                raise Stopped()
            if job.idle:
                if any(not j.idle for j in self._jobs.values()):
                    raise Stopped()
                while self._foreground and job.idle:
                    self._lock.wait(0.5)

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._next()
                self._running = job

            def progress(done: int, total: int, job: _Job = job) -> None:
                job.fraction = done / max(total, 1)
                self._should_stop(job)

            try:
                result = self._compute(job.key, progress)
            except Stopped as exc:
                with self._lock:
                    self._running = None
                    if job.waiters:  # preempted idle job: it goes back to the queue, from scratch
                        job.fraction = 0.0
                        continue
                    self._jobs.pop(job.key, None)
                job.error = exc
                job.done.set()
                continue
            except Exception as exc:  # noqa: BLE001 - handed to the waiters, who report it
                job.error = exc
            else:
                self._cache.put(job.key, result)
                job.result = result
            with self._lock:
                self._running = None
                self._jobs.pop(job.key, None)
            job.done.set()

    def stats(self) -> dict[str, Any]:
        """Queue and cache sizes (for tests and the benchmark)."""
        with self._lock:
            return {"queued": len(self._jobs), "cached": len(self._cache)}
