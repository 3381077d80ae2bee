"""The benchmark's own readiness poller, independent of what ollamatopo or compose log.

An asyncio loop in one thread sends `GET /health` over raw sockets to every target
about every 10 ms and records the wall-clock time (epoch seconds, so it compares with
log timestamps) when each first answers 200; a target that answered is not polled again.

A target may be gated: it is polled only once `open_gate` is called for it, which the
benchmark does on the engine's `start` event for the target's container. Probing
earlier stalls: a bridge address probed before its container is up (directly, or
through the docker-proxy of a published port, which listens before the container's
interface answers) leaves the kernel's neighbour entry waiting on ARP, and the first
real answer comes up to a second late (measured: a zero-delay stand-in polled from
before its creation answered at 1.1 s, polled from its start at 0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    path: str = "/health"


@dataclass
class TargetState:
    first_ready: float | None = None  # epoch seconds of the first 200
    probes: int = 0
    gate_opened: float | None = None


class ReadinessPoller:
    """Poll targets until each answers 200; use as a context manager (starts and stops)."""

    def __init__(self, targets: Iterable[Target], *, interval_s: float = 0.01,
                 timeout_s: float = 0.5, max_rate: float = 1000.0, gated: bool = False) -> None:
        self.targets = {target.name: target for target in targets}
        self.states = {name: TargetState() for name in self.targets}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_rate = max_rate  # probes per second over all active targets, at most
        self.gated = gated
        self._loop = asyncio.new_event_loop()
        self._gates: dict[str, asyncio.Event] = {}
        self._running = threading.Event()
        self._all_ready = threading.Event()
        self._active = 0 if gated else len(self.targets)
        self._pending = len(self.targets)
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)

    # --- the caller's side ------------------------------------------------------------------

    def __enter__(self) -> ReadinessPoller:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._running.wait()

    def open_gate(self, name: str) -> None:
        """Start polling `name` (thread-safe); unknown names are ignored."""
        if name in self.targets and self.states[name].gate_opened is None:
            self.states[name].gate_opened = time.time()
            self._loop.call_soon_threadsafe(self._open, name)

    def wait(self, timeout_s: float) -> bool:
        """Block until every target answered, or the timeout; True if all did."""
        return self._all_ready.wait(timeout_s)

    def stop(self) -> None:
        if self._thread.is_alive():
            task = self._task
            if task is not None:
                with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                    self._loop.call_soon_threadsafe(task.cancel)
            self._thread.join(timeout=5)

    def first_ready(self) -> dict[str, float | None]:
        return {name: state.first_ready for name, state in self.states.items()}

    def probes(self) -> dict[str, int]:
        return {name: state.probes for name, state in self.states.items()}

    # --- the loop's side --------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._task = self._loop.create_task(self._main())
            self._loop.call_soon(self._running.set)
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(self._task)
        finally:
            self._running.set()
            self._loop.close()

    def _open(self, name: str) -> None:
        self._active += 1
        self._gates[name].set()

    async def _main(self) -> None:
        if self.gated:
            self._gates = {name: asyncio.Event() for name in self.targets}
        if not self.targets:
            self._all_ready.set()
            return
        async with asyncio.TaskGroup() as group:
            for target in self.targets.values():
                group.create_task(self._watch(target, self.states[target.name]))

    async def _watch(self, target: Target, state: TargetState) -> None:
        if self.gated:
            await self._gates[target.name].wait()
        request = (f"GET {target.path} HTTP/1.0\r\nHost: {target.host}\r\n"
                   "Connection: close\r\n\r\n").encode()
        while True:
            state.probes += 1
            if await self._probe(target, request):
                state.first_ready = time.time()
                self._active -= 1
                self._pending -= 1
                if self._pending == 0:
                    self._all_ready.set()
                return
            await asyncio.sleep(max(self.interval_s, self._active / self.max_rate))

    async def _probe(self, target: Target, request: bytes) -> bool:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_connection(target.host, target.port)
                writer.write(request)
                status = await reader.readline()
        except (OSError, TimeoutError, ValueError):
            return False
        finally:
            if writer is not None:
                writer.close()
        parts = status.split(b" ", 2)
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"
