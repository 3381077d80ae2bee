"""Container events as waitable facts (`engine._watch`): `ContainerWatch` fed events by hand,
and `watch_containers` / `_pump` fed by a fake event stream read in a worker thread."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import pytest

from ollamatopo._errors import EngineUnreachable
from ollamatopo.engine._docker import ContainerEvent
from ollamatopo.engine._watch import ContainerWatch, _pump, watch_containers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def event(action: str, container_id: str = "c1", exit_code: int | None = None) -> ContainerEvent:
    return ContainerEvent(container_id, action, exit_code, "api")


async def still_waiting(wait: Callable[[], object]) -> bool:
    """True if `wait()` does not return once every other task is blocked."""
    returned = False

    async def waiter() -> None:
        nonlocal returned
        await wait()  # type: ignore[misc]
        returned = True

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    return not returned


@asynccontextmanager
async def waiting_for_exit(watch: ContainerWatch,
                           waiters: int = 1) -> AsyncIterator[list[tuple[int | None, bool]]]:
    """`waiters` tasks waiting for c1's exit, all blocked when the block begins; the list
    holds what each got, complete once the block ends."""
    results: list[tuple[int | None, bool]] = []

    async def waiter() -> None:
        results.append(await watch.wait_exit("c1"))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            for _ in range(waiters):
                group.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            yield results


# --- ContainerWatch --------------------------------------------------------------------------


async def test_a_death_wakes_the_waiter_with_its_exit_code() -> None:
    watch = ContainerWatch()
    async with waiting_for_exit(watch) as result:
        assert result == []
        watch.dispatch(event("die", exit_code=3))
    assert result == [(3, False)]


async def test_a_death_before_the_wait_is_not_missed() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("die", exit_code=137))
    with anyio.fail_after(2):
        assert await watch.wait_exit("c1") == (137, False)


async def test_an_oom_event_marks_the_death_as_oom_killed() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("oom"))
    watch.dispatch(event("die", exit_code=137))
    with anyio.fail_after(2):
        assert await watch.wait_exit("c1") == (137, True)


async def test_an_oom_alone_is_no_death() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("oom"))
    assert await still_waiting(lambda: watch.wait_exit("c1"))


async def test_events_of_another_container_or_of_another_kind_wake_nobody() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("die", container_id="c2", exit_code=1))
    watch.dispatch(event("health_status: unhealthy"))
    watch.dispatch(event("stop"))
    assert await still_waiting(lambda: watch.wait_exit("c1"))
    with anyio.fail_after(2):
        assert await watch.wait_exit("c2") == (1, False)


async def test_every_waiter_of_a_container_is_woken() -> None:
    watch = ContainerWatch()
    async with waiting_for_exit(watch, waiters=3) as results:
        watch.dispatch(event("die", exit_code=2))
    assert results == [(2, False)] * 3


async def test_forget_drops_a_stale_death() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("oom"))
    watch.dispatch(event("die", exit_code=137))
    watch.forget("c1")  # about to be started anew
    assert await still_waiting(lambda: watch.wait_exit("c1"))
    watch.dispatch(event("die", exit_code=0))
    with anyio.fail_after(2):
        assert await watch.wait_exit("c1") == (0, False)  # the OOM was the old life's


async def test_forget_of_an_unknown_container_is_harmless() -> None:
    watch = ContainerWatch()
    watch.forget("never-seen")
    watch.dispatch(event("die", container_id="never-seen", exit_code=4))
    with anyio.fail_after(2):
        assert await watch.wait_exit("never-seen") == (4, False)


async def test_a_start_after_a_death_rearms_the_wait() -> None:
    """Restarted by the engine's restart policy: alive again, wait for the next death."""
    watch = ContainerWatch()
    watch.dispatch(event("oom"))
    watch.dispatch(event("die", exit_code=137))
    watch.dispatch(event("start"))
    assert await still_waiting(lambda: watch.wait_exit("c1"))
    watch.dispatch(event("die", exit_code=1))
    with anyio.fail_after(2):
        assert await watch.wait_exit("c1") == (1, False)


async def test_a_start_without_an_earlier_death_leaves_the_waiter_waiting() -> None:
    watch = ContainerWatch()
    async with waiting_for_exit(watch) as result:
        watch.dispatch(event("start"))  # the first start of a fresh container
        await anyio.wait_all_tasks_blocked()
        assert result == []
        watch.dispatch(event("die", exit_code=5))
    assert result == [(5, False)]


async def test_wait_started_returns_on_the_next_start() -> None:
    watch = ContainerWatch()
    started: list[str] = []

    async def waiter(name: str) -> None:
        await watch.wait_started("c1")
        started.append(name)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter, "first")
            group.start_soon(waiter, "second")
            await anyio.wait_all_tasks_blocked()
            watch.dispatch(event("die", exit_code=0))
            watch.dispatch(event("start", container_id="c2"))
            await anyio.wait_all_tasks_blocked()
            assert started == []
            watch.dispatch(event("start"))
    assert sorted(started) == ["first", "second"]


async def test_wait_started_waits_for_a_start_that_comes_after_it() -> None:
    watch = ContainerWatch()
    watch.dispatch(event("start"))  # before anyone waited: not the start waited for
    assert await still_waiting(lambda: watch.wait_started("c1"))


# --- watch_containers and _pump, with a fake event stream --------------------------------------


class FakeStream:
    """The engine's `event_stream`: events given up front, then (if `hold`) nothing until
    the block is left, which closes the stream as the engine facade does."""

    def __init__(self, events: list[ContainerEvent], *, hold: bool = False,
                 error: Exception | None = None) -> None:
        self.events, self.hold, self.error = events, hold, error
        self.projects: list[str] = []
        self.closed = threading.Event()
        self.reading = threading.Event()  # a thread iterates
        self.ended = threading.Event()  # the reading thread left the iterator

    @contextmanager
    def event_stream(self, project: str) -> Iterator[Callable[[], Iterator[ContainerEvent]]]:
        self.projects.append(project)

        def iterate() -> Iterator[ContainerEvent]:
            self.reading.set()
            try:
                yield from self.events
                if self.error is not None:
                    raise self.error
                if self.hold:
                    self.closed.wait(5)
            finally:
                self.ended.set()

        try:
            yield iterate
        finally:
            self.closed.set()


async def test_events_of_the_stream_reach_the_watch() -> None:
    stream = FakeStream([event("oom", "c1"), event("die", "c1", 137),
                         event("die", "c2", 0)], hold=True)
    with anyio.fail_after(5):
        async with watch_containers(stream, "shop") as watch:  # type: ignore[arg-type]
            assert await watch.wait_exit("c1") == (137, True)
            assert await watch.wait_exit("c2") == (0, False)
    assert stream.projects == ["shop"]


async def test_leaving_the_block_closes_the_stream_and_ends_its_thread() -> None:
    stream = FakeStream([], hold=True)
    with anyio.fail_after(5):
        async with watch_containers(stream, "shop"):  # type: ignore[arg-type]
            assert await anyio.to_thread.run_sync(stream.reading.wait, 5)
            assert not stream.closed.is_set()
    assert stream.closed.is_set()
    assert await anyio.to_thread.run_sync(stream.ended.wait, 5)


async def test_a_stream_that_ends_leaves_the_watch_usable() -> None:
    stream = FakeStream([event("die", "c1", 1)])
    with anyio.fail_after(5):
        async with watch_containers(stream, "shop") as watch:  # type: ignore[arg-type]
            assert await watch.wait_exit("c1") == (1, False)
            assert await anyio.to_thread.run_sync(stream.ended.wait, 5)
            await anyio.sleep(0.01)  # the pump has returned: nothing is left to fail
            watch.dispatch(event("die", "c2", 2))
            assert await watch.wait_exit("c2") == (2, False)


async def test_a_lost_stream_ends_the_block_with_its_error() -> None:
    stream = FakeStream([], error=EngineUnreachable("the engine closed its event stream"))
    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as caught:
        async with watch_containers(stream, "shop") as watch:  # type: ignore[arg-type]
            await watch.wait_exit("c1")  # cancelled by the failure
    assert caught.group_contains(EngineUnreachable, match="closed its event stream")


async def test_pump_delivers_every_event_in_order_in_the_event_loop_thread() -> None:
    events = [event("start", "c1"), event("die", "c1", 0), event("start", "c2")]
    delivered: list[tuple[ContainerEvent, int]] = []

    def deliver(item: ContainerEvent) -> None:
        delivered.append((item, threading.get_ident()))

    with anyio.fail_after(5):
        await _pump(lambda: iter(events), deliver)
    assert [item for item, _ in delivered] == events
    assert {thread for _, thread in delivered} == {threading.get_ident()}
