"""When a swarm task counts as ready: pure logic, with a stand-in for the swarm facade that
counts the execs it is asked for."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest

from ollamatopo.engine._swarm import Swarm, TaskState
from ollamatopo.plan._loading import load_plan
from ollamatopo.plan._model import HealthcheckSpec
from ollamatopo.run._swarm import OverlayProbes, SwarmReadiness, TaskBoard

PLAN = """
services:
  db:
    image: x:1
    healthcheck: {test: [CMD-SHELL, pg_isready -q], interval: 10s}
  probed:
    image: x:1
    healthcheck: {test: [CMD, "true"], interval: 10s}
    x-ollamatopo: {ready: {exec: [check-more]}}
"""


class _Engine:
    def __init__(self) -> None:
        self.execs: list[list[str]] = []

    async def exec(self, container_id: str, argv: list[str]) -> tuple[int, str]:
        self.execs.append(argv)
        return 0, ""


class _Swarm:
    local_node = "manager"

    def __init__(self) -> None:
        self.engine = _Engine()


class _NoOverlay:
    def applies(self, ready: object) -> bool:
        return False


def _task(state: str) -> TaskState:
    return TaskState(id="t1", slot=1, node="manager", state=state, desired="running",
                     message="", error="", container_id="c1", exit_code=None)


@pytest.mark.parametrize(("test", "command"), [
    (["CMD", "pg_isready", "-q"], ["pg_isready", "-q"]),
    (["CMD-SHELL", "pg_isready -q"], ["/bin/sh", "-c", "pg_isready -q"]),
    (["NONE"], None),
])
def test_a_healthcheck_names_the_command_the_engine_runs(test: list[str],
                                                         command: list[str] | None) -> None:
    assert HealthcheckSpec(test=test).command == command


def test_running_is_the_verdict_of_a_healthcheck_that_is_the_readiness(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(PLAN, encoding="utf-8")
    plan = load_plan(tmp_path / "compose.yaml", environ={}, on_swarm=True).plan
    swarm = _Swarm()
    one_replica = {name: SimpleNamespace(replicas=1) for name in plan.services}
    readiness = SwarmReadiness(cast(Swarm, swarm), plan, cast(Any, one_replica),
                               cast(OverlayProbes, _NoOverlay()))

    async def holds(name: str, state: str) -> bool:
        return await readiness.holds(name, [_task(state)])

    # db's readiness is its healthcheck: the swarm runs a task with one only once it
    # passed, so no exec follows `running`.
    assert not anyio.run(holds, "db", "starting")
    assert anyio.run(holds, "db", "running")
    assert swarm.engine.execs == []
    # A probe of its own is run in the container after `running`.
    assert anyio.run(holds, "probed", "running")
    assert swarm.engine.execs == [["check-more"]]


class _Listing:
    """Lists tasks as the swarm facade does, counting the calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def tasks_by_service(self, service_ids: list[str]) -> dict[str, list[TaskState]]:
        self.calls.append(list(service_ids))
        await anyio.sleep(0.01)  # a call takes time: waiters arriving meanwhile share it
        return {sid: [TaskState(id=f"t-{sid}", slot=1, node="n", state="running",
                                desired="running", message="", error="", container_id=None,
                                exit_code=None, service_id=sid)] for sid in service_ids}


def test_the_task_board_serves_every_waiter_from_one_listing() -> None:
    listing = _Listing()
    board = TaskBoard(cast(Swarm, listing), fresh_s=60)
    seen: dict[str, list[str]] = {}

    async def wait_for(service_id: str) -> None:
        with board.watching(service_id):
            seen[service_id] = [task.id for task in await board.tasks(service_id)]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for service_id in ("a", "b", "c"):
                group.start_soon(wait_for, service_id)

    anyio.run(main)
    assert seen == {"a": ["t-a"], "b": ["t-b"], "c": ["t-c"]}  # each its own tasks
    assert len(listing.calls) == 1 and sorted(listing.calls[0]) == ["a", "b", "c"]


def test_the_task_board_lists_again_when_stale_or_asked_for_another() -> None:
    listing = _Listing()
    board = TaskBoard(cast(Swarm, listing), fresh_s=0.05)

    async def main() -> None:
        with board.watching("a"):
            await board.tasks("a")
            await board.tasks("a")  # fresh: no call
            assert len(listing.calls) == 1
            await board.tasks("b")  # not in the listing: listed with a
            assert sorted(listing.calls[-1]) == ["a", "b"]
            await anyio.sleep(0.06)
            await board.tasks("a")  # stale
        assert len(listing.calls) == 3
        await board.tasks("c")  # nobody waits for a any more: c alone
        assert listing.calls[-1] == ["c"]

    anyio.run(main)
