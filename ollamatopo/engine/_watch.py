"""Container events as waitable facts: a container that dies wakes whoever waits on it.

The engine's event stream is read in one worker thread for the whole run; each
event is handed to the event loop, which sets the waiters' `anyio.Event`s. No
polling: a crash is seen within milliseconds of the engine reporting it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.from_thread
import anyio.to_thread

from ollamatopo.engine._docker import ContainerEvent, Engine


@dataclass
class _Exit:
    event: anyio.Event = field(default_factory=anyio.Event)
    exit_code: int | None = None
    oom_killed: bool = False


class ContainerWatch:
    """Which containers of the project have died during this run, and their exit codes."""

    def __init__(self) -> None:
        self._exits: dict[str, _Exit] = {}
        self._starts: dict[str, anyio.Event] = {}

    def _entry(self, container_id: str) -> _Exit:
        return self._exits.setdefault(container_id, _Exit())

    def dispatch(self, event: ContainerEvent) -> None:
        entry = self._entry(event.container_id)
        if event.action == "oom":
            entry.oom_killed = True
        elif event.action == "die":
            entry.exit_code = event.exit_code
            entry.event.set()
        elif event.action == "start":
            if entry.event.is_set():
                # Restarted by its restart policy: alive again; wait for the next death.
                self._exits[event.container_id] = _Exit()
            if event.container_id in self._starts:
                self._starts.pop(event.container_id).set()

    def forget(self, container_id: str) -> None:
        """Drop what is known of a container (it is about to be started anew)."""
        self._exits.pop(container_id, None)

    async def wait_started(self, container_id: str) -> None:
        """Return once the container is started again (by anyone)."""
        await self._starts.setdefault(container_id, anyio.Event()).wait()

    async def wait_exit(self, container_id: str) -> tuple[int | None, bool]:
        """Return (exit code, OOM-killed) once the container dies."""
        entry = self._entry(container_id)
        await entry.event.wait()
        return entry.exit_code, entry.oom_killed


@asynccontextmanager
async def watch_containers(engine: Engine, project: str) -> AsyncIterator[ContainerWatch]:
    """Subscribe to the project's container events for the duration of the block."""
    watch = ContainerWatch()
    with engine.event_stream(project) as events:
        async with anyio.create_task_group() as group:
            group.start_soon(_pump, events, watch.dispatch)
            try:
                yield watch
            finally:
                group.cancel_scope.cancel()


async def _pump(events: Callable[[], Iterator[ContainerEvent]],
                deliver: Callable[[ContainerEvent], None]) -> None:
    def read() -> None:
        for event in events():
            try:
                anyio.from_thread.run_sync(deliver, event)
            except RuntimeError:  # the event loop is gone: the run is over
                return

    # The thread ends when the stream is closed on the way out of `watch_containers`.
    await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
