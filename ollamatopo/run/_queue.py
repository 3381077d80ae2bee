"""Which engine work goes first when the engine is the bottleneck.

This engine does container starts barely in parallel: one start alone takes about
0.35 s (mount, network namespace, port proxy), three at once take 0.9 s each and five
1.2 s each (bench, 2 cores, Docker 20.10). Creating a network or container costs less but
competes for the same daemon. So the work of a run goes through one `EngineQueue`,
earliest deadline first: the priority of a step (creating a network, volume or
container, starting a container) is the latest moment its service can start without
making the run longer (`DependencyGraph.latest_starts`). A step waits while a step with
an earlier deadline is running, waiting, or expected. `expected` names the work that
will ask within milliseconds: at the beginning of a run every create whose inputs are
at hand, and, after its create, the start of a service that waits for nothing
(`slot(..., again=True)`); `withdraw` one that will not come after all. Work whose
deadlines differ by less than `tie_s` runs together, at most `slots` at once, so a plan
whose services are all alike keeps the engine's full parallelism while a plan with a
critical path gets that path done first. `tie_s` is about one start: making a service
wait for a start that costs more than the difference would make it the late one, and
two starts at once finish sooner than one after the other (three: 0.96 s against 1.16 s).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import anyio


class EngineQueue:
    def __init__(self, slots: int, priority: Mapping[str, float],
                 expected: Iterable[str] = (), tie_s: float = 0.0) -> None:
        self._slots = max(1, slots)
        self._tie_s = tie_s
        self._priority = priority
        self._waiting: list[tuple[float, int, str, anyio.Event]] = []
        self._tie = itertools.count()
        self._expected = set(expected)
        self._running: dict[int, float] = {}

    def withdraw(self, key: str) -> None:
        """`key` will not ask for a slot after all (kept, failed, cancelled)."""
        if key in self._expected:
            self._expected.discard(key)
            self._hand_over()

    @asynccontextmanager
    async def slot(self, key: str, *, again: bool = False) -> AsyncIterator[None]:
        """Hold one slot for one step of `key`; with `again`, `key` asks for another slot
        right after this one (a create followed by its start), so it stays expected."""
        ticket = await self._acquire(key)
        try:
            yield
        finally:
            if again:
                self._expected.add(key)
            self._release(ticket)

    def _rank(self, key: str) -> float:
        return self._priority.get(key, 0.0)

    async def _acquire(self, key: str) -> int:
        self._expected.discard(key)
        granted = anyio.Event()
        ticket = next(self._tie)
        entry = (self._rank(key), ticket, key, granted)
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
        self._running.pop(ticket, None)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and len(self._running) < self._slots:
            rank, ticket, _, granted = self._waiting[0]
            ahead = [self._rank(key) for key in self._expected]
            ahead += self._running.values()
            if any(other < rank - self._tie_s for other in ahead):
                return
            heapq.heappop(self._waiting)
            self._running[ticket] = rank
            granted.set()
