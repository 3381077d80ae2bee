"""The engine queue: a bounded number of engine steps, the earliest deadline first."""

from __future__ import annotations

import anyio
import pytest

from ollamatopo.run._queue import EngineQueue

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_waiting_steps_go_in_order_of_deadline_within_the_slots() -> None:
    queue = EngineQueue(2, {"jaeger": 6.0, "grafana": 3.0, "minio": 0.0, "postgres": 0.0,
                           "redis": 2.0})
    order: list[str] = []
    running = 0
    most = 0

    async def start(name: str) -> None:
        nonlocal running, most
        async with queue.slot(name):
            running += 1
            most = max(most, running)
            order.append(name)
            await anyio.sleep(0.01)
            running -= 1

    async with anyio.create_task_group() as group:
        for name in ("jaeger", "grafana", "redis", "minio", "postgres"):
            group.start_soon(start, name)
            await anyio.sleep(0)  # arrive in this order
    assert most == 2
    assert order[:2] == ["jaeger", "grafana"]  # free slots are taken by whoever comes
    assert order[2:] == ["minio", "postgres", "redis"]  # then the earliest deadline first


async def test_a_cancelled_waiter_gives_up_its_place_and_slots_are_not_lost() -> None:
    queue = EngineQueue(1, {})
    async with queue.slot("a"):
        with anyio.move_on_after(0.01):
            async with queue.slot("b"):
                pytest.fail("b must not get the slot while a holds it")
    with anyio.fail_after(1):
        async with queue.slot("c"):
            pass


async def test_a_free_slot_waits_for_an_expected_step_with_an_earlier_deadline() -> None:
    queue = EngineQueue(2, {"jaeger": 6.0, "postgres": 0.0, "redis": 0.0},
                       expected={"postgres", "redis"})
    order: list[str] = []

    async def start(name: str) -> None:
        async with queue.slot(name):
            order.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(start, "jaeger")
        await anyio.sleep(0.01)
        assert order == []  # jaeger came first, yet the critical ones are still expected
        group.start_soon(start, "postgres")
        await anyio.sleep(0.01)
        assert order == ["postgres"]
        queue.withdraw("redis")  # kept running: it will not come
    assert order == ["postgres", "jaeger"]


class HeldSteps:
    """Steps that hold their slot until released; who ran beside whom."""

    def __init__(self, queue: EngineQueue) -> None:
        self.queue = queue
        self.running: set[str] = set()
        self.seen_with: dict[str, set[str]] = {}
        self.release = anyio.Event()

    async def step(self, name: str) -> None:
        async with self.queue.slot(name):
            self.seen_with[name] = set(self.running)
            self.running.add(name)
            await self.release.wait()
            self.running.discard(name)


async def test_alike_services_start_together_and_others_wait_for_the_critical_ones() -> None:
    steps = HeldSteps(EngineQueue(8, {"db": 0.0, "api-1": 0.0, "api-2": 0.0, "ui": 2.0}))
    async with anyio.create_task_group() as group:
        for name in ("db", "api-1", "api-2", "ui"):
            group.start_soon(steps.step, name)
        await anyio.sleep(0.01)
        assert steps.running == {"db", "api-1", "api-2"}  # same deadline: all at once
        steps.release.set()
    assert steps.seen_with["ui"] == set()  # ui (later deadline) waited until they had started


async def test_a_create_followed_by_its_start_keeps_its_place_between_the_two() -> None:
    queue = EngineQueue(4, {"db": 0.0, "cache": 2.0}, expected={"db", "cache"})
    order: list[str] = []

    async def create_then_start(name: str) -> None:
        async with queue.slot(name, again=True):
            order.append(f"create {name}")
        await anyio.sleep(0.01)  # between the two steps the slot is free, db still comes
        async with queue.slot(name):
            order.append(f"start {name}")

    async with anyio.create_task_group() as group:
        group.start_soon(create_then_start, "cache")
        group.start_soon(create_then_start, "db")
    assert order == ["create db", "start db", "create cache", "start cache"]


async def test_without_again_a_finished_step_no_longer_holds_others_back() -> None:
    queue = EngineQueue(4, {"db": 0.0, "cache": 2.0}, expected={"db"})
    async with queue.slot("db"):
        pass
    with anyio.fail_after(1):
        async with queue.slot("cache"):
            pass


async def test_deadlines_closer_than_the_tie_count_as_the_same() -> None:
    steps = HeldSteps(EngineQueue(4, {"postgres": 0.0, "minio": 0.3, "redis": 2.0}, tie_s=0.5,
                                  expected={"postgres", "minio", "redis"}))
    async with anyio.create_task_group() as group:
        for name in ("redis", "minio", "postgres"):
            group.start_soon(steps.step, name)
        await anyio.sleep(0.01)
        assert steps.running == {"postgres", "minio"}  # 0.3 s apart: together
        steps.release.set()
    assert steps.seen_with["redis"] == set()  # 2 s later: after them
