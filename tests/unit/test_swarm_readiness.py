"""When a swarm task counts as ready: pure logic, with a stand-in for the swarm facade that
counts the execs it is asked for."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest
import structlog

from ollamatopo._errors import EngineError, NotFound
from ollamatopo.engine._swarm import Swarm, TaskState
from ollamatopo.plan._loading import load_plan
from ollamatopo.plan._model import HealthcheckSpec
from ollamatopo.run._swarm import OverlayProbes, SwarmReadiness, TaskBoard, container_started

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
    local_container = Swarm.local_container

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


def _task_of(desired: str, state: str) -> TaskState:
    return TaskState(id="t1", slot=1, node="n", state=state, desired=desired, message="",
                     error="", container_id="c1", exit_code=None)


@pytest.mark.parametrize(("desired", "state", "stopping"), [
    ("running", "running", False),  # one the swarm keeps
    ("shutdown", "running", True),  # a scale down's extra replica, still answering
    ("remove", "starting", True),
    ("shutdown", "shutdown", False),  # stopped
    ("shutdown", "complete", False),
    ("shutdown", "failed", False),
])
def test_a_task_the_swarm_removes_is_stopping_while_its_container_runs(
        desired: str, state: str, stopping: bool) -> None:
    assert _task_of(desired, state).stopping is stopping


class _ProberEngine:
    """The engine calls OverlayProbes makes: a prober whose create was abandoned (the
    caller cancelled, the engine's thread made it anyway) is only found by its label."""

    def __init__(self, refuse: set[str]) -> None:
        self.labelled: dict[str, dict[str, str]] = {}
        self.removed: list[str] = []
        self.refuse = refuse

    async def containers_labelled(self, labels: dict[str, str]) -> list[str]:
        return [cid for cid, have in self.labelled.items() if labels.items() <= have.items()]

    async def remove_container(self, container_id: str) -> None:
        if container_id in self.refuse:
            raise EngineError(f"remove container {container_id}: the engine did not answer")
        self.removed.append(container_id)


class _ProberSwarm:
    def __init__(self, engine: _ProberEngine) -> None:
        self.engine = engine
        self.started = 0

    async def start_prober(self, image: str, network: str, labels: dict[str, str]) -> str:
        self.started += 1
        container_id = f"prober-{self.started}"
        self.engine.labelled[container_id] = dict(labels)
        if network == "abandoned":
            await anyio.sleep(60)  # cancelled here: made, but its id never returned
        return container_id


def test_close_removes_the_probers_also_one_whose_create_was_abandoned() -> None:
    engine = _ProberEngine(refuse=set())
    swarm = _ProberSwarm(engine)
    probes = OverlayProbes(cast(Swarm, swarm), "probe:1", {"ollamatopo.project": "p"})
    engine.labelled["other"] = {"ollamatopo.project": "p", "ollamatopo.prober": "x"}

    async def main() -> None:
        await probes._prober("net")
        with anyio.move_on_after(0.05):
            await probes._prober("abandoned")
        await probes.close()

    anyio.run(main)
    # its own two, not another run's prober of the same project
    assert sorted(engine.removed) == ["prober-1", "prober-2"]


def test_a_prober_the_engine_would_not_remove_is_said() -> None:
    engine = _ProberEngine(refuse={"prober-1"})
    probes = OverlayProbes(cast(Swarm, _ProberSwarm(engine)), "probe:1", {})

    async def main() -> None:
        await probes._prober("net")
        await probes.close()

    with structlog.testing.capture_logs() as logs:
        anyio.run(main)
    assert [(log["event"], log["container"], log["fix"]) for log in logs] == [
        ("prober left", "prober-1", "`down` removes it")]


def test_close_asks_the_engine_nothing_when_no_probe_ran() -> None:
    engine = _ProberEngine(refuse=set())
    probes = OverlayProbes(cast(Swarm, _ProberSwarm(engine)), "probe:1", {})

    async def refuse(labels: dict[str, str]) -> list[str]:
        raise AssertionError("listed")

    engine.containers_labelled = refuse  # type: ignore[method-assign]
    anyio.run(probes.close)


class _Inspecting:
    """A manager whose engine has containers in the given states (absent: NotFound)."""

    local_node = "manager"
    local_container = Swarm.local_container

    def __init__(self, states: dict[str, str]) -> None:
        self.states, self.inspected = states, 0
        self.engine = self

    async def inspect(self, container_id: str) -> SimpleNamespace:
        self.inspected += 1
        if container_id not in self.states:
            raise NotFound(f"no such container: {container_id}")
        return SimpleNamespace(status=self.states[container_id])


@pytest.mark.parametrize(("node", "state", "container", "started", "inspects"), [
    ("manager", "starting", "created", False, 1),  # start asked for, not done: wait
    ("manager", "starting", "running", True, 1),
    ("manager", "starting", "exited", True, 1),  # it started (its failure shows apart)
    ("manager", "starting", None, False, 1),  # gone already
    ("manager", "running", "created", True, 0),  # the swarm's word suffices
    ("worker", "starting", "created", True, 0),  # another node: out of this engine's sight
    ("manager", "preparing", "created", False, 0),  # no container yet
])
def test_a_task_on_this_manager_has_started_once_the_engine_says_so(
        node: str, state: str, container: str | None, started: bool, inspects: int) -> None:
    swarm = _Inspecting({} if container is None else {"c1": container})
    task = TaskState(id="t1", slot=1, node=node, state=state, desired="running",
                     message="", error="", container_id="c1", exit_code=None)
    assert anyio.run(container_started, cast(Swarm, swarm), [task]) is started
    assert swarm.inspected == inspects
