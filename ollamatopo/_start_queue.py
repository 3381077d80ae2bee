"""Which container starts first when the engine is the bottleneck.

Starting a container costs this engine about 0.45 s of work (mount, network, port
proxy); five started at once all finish late. `StartQueue` lets `slots` starts run at
a time and hands the next free slot to the waiting service with the least slack on the
dependency graph, so the services the whole run waits for start first and the ones
with room to spare go after them. At the beginning of a run the services that can
start at once all arrive within a few milliseconds, in whatever order their creates
finished; `expected` names them, and a free slot is not taken while one of them with
less slack has yet to arrive (`withdraw` one that will not come).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import anyio


class StartQueue:
    def __init__(self, slots: int, priority: Mapping[str, float],
                 expected: Iterable[str] = ()) -> None:
        self._free = max(1, slots)
        self._priority = priority
        self._waiting: list[tuple[float, int, anyio.Event]] = []
        self._tie = itertools.count()
        self._expected = set(expected)

    def withdraw(self, service: str) -> None:
        """`service` will not ask for a slot after all (kept, failed, cancelled)."""
        if service in self._expected:
            self._expected.discard(service)
            self._hand_over()

    @asynccontextmanager
    async def slot(self, service: str) -> AsyncIterator[None]:
        await self._acquire(service)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, service: str) -> None:
        self._expected.discard(service)
        granted = anyio.Event()
        entry = (self._priority.get(service, 0.0), next(self._tie), granted)
        heapq.heappush(self._waiting, entry)
        self._hand_over()
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():  # the slot was handed over as it was cancelled: pass it on
                self._release()
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def _release(self) -> None:
        self._free += 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give free slots to the waiters with the least slack, unless an expected service
        with even less slack is still on its way."""
        while self._free > 0 and self._waiting:
            best = self._waiting[0][0]
            if any(self._priority.get(name, 0.0) < best for name in self._expected):
                return
            heapq.heappop(self._waiting)[2].set()
            self._free -= 1
