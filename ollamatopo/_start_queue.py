"""Which container starts first when the engine is the bottleneck.

Starting a container costs this engine about 0.45 s of work (mount, network, port
proxy); five started at once all finish late. `StartQueue` orders starts by slack on the
dependency graph: a start waits while a service with less slack is starting, waiting to
start, or expected to ask (`expected`: at the beginning of a run the services that can
start at once all arrive within a few milliseconds, in whatever order their creates
finished; `withdraw` one that will not come). Services with the same slack start
together, up to `slots` at once, so a plan whose services are all alike (one phase of
many) keeps the engine's full parallelism, while a plan with a critical path starts that
path first and the services with room to spare right after it.
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
        self._slots = max(1, slots)
        self._priority = priority
        self._waiting: list[tuple[float, int, str, anyio.Event]] = []
        self._tie = itertools.count()
        self._expected = set(expected)
        self._starting: dict[int, float] = {}

    def withdraw(self, service: str) -> None:
        """`service` will not ask for a start after all (kept, failed, cancelled)."""
        if service in self._expected:
            self._expected.discard(service)
            self._hand_over()

    @asynccontextmanager
    async def slot(self, service: str) -> AsyncIterator[None]:
        ticket = await self._acquire(service)
        try:
            yield
        finally:
            self._release(ticket)

    def _rank(self, service: str) -> float:
        return self._priority.get(service, 0.0)

    async def _acquire(self, service: str) -> int:
        self._expected.discard(service)
        granted = anyio.Event()
        ticket = next(self._tie)
        entry = (self._rank(service), ticket, service, granted)
        heapq.heappush(self._waiting, entry)
        self._hand_over()
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():  # granted as it was cancelled: give the slot back
                self._release(ticket)
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._hand_over()
            raise
        return ticket

    def _release(self, ticket: int) -> None:
        self._starting.pop(ticket, None)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and len(self._starting) < self._slots:
            rank, ticket, _, granted = self._waiting[0]
            ahead = [self._rank(name) for name in self._expected]
            ahead += self._starting.values()
            if any(other < rank for other in ahead):
                return
            heapq.heappop(self._waiting)
            self._starting[ticket] = rank
            granted.set()
