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
from ollamatopo.run._swarm import OverlayProbes, SwarmReadiness

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
