"""Supervision after `up` (`run._supervisor`): the crash-loop backoff and the restart
policies as pure logic, and the guards of a `Supervisor` driven through a fake engine and a
real `ContainerWatch` fed events by the test (exec readiness checks, answered by the fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from ollamatopo._errors import EngineError
from ollamatopo.engine._docker import ContainerEvent, ContainerState
from ollamatopo.engine._payloads import restart_policy
from ollamatopo.engine._probes import Backoff, HttpClient
from ollamatopo.engine._watch import ContainerWatch
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._model import Plan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run import _supervisor
from ollamatopo.run._supervisor import (
    ENGINE_NEVER_RESTARTS,
    CrashLoopBackoff,
    SuperviseOptions,
    Supervisor,
    wants_restart,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- CrashLoopBackoff --------------------------------------------------------------------------


def test_the_delay_doubles_from_the_initial_one() -> None:
    backoff = CrashLoopBackoff(initial_s=0.5, cap_s=1000.0, stable_s=60.0)
    assert [backoff.next_delay(now) for now in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_the_delay_is_capped() -> None:
    backoff = CrashLoopBackoff(initial_s=1.0, cap_s=5.0, stable_s=60.0)
    assert [backoff.next_delay(now) for now in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_readiness_for_stable_s_forgives_the_earlier_failures() -> None:
    backoff = CrashLoopBackoff(initial_s=0.5, cap_s=60.0, stable_s=30.0)
    for now in range(4):
        backoff.next_delay(now)
    backoff.ready(100.0)
    assert backoff.next_delay(130.0) == 0.5
    assert backoff.next_delay(131.0) == 1.0


def test_readiness_shorter_than_stable_s_forgives_nothing() -> None:
    backoff = CrashLoopBackoff(initial_s=0.5, cap_s=60.0, stable_s=30.0)
    for now in range(3):
        backoff.next_delay(now)
    backoff.ready(100.0)
    assert backoff.next_delay(129.9) == 4.0


def test_a_failure_ends_the_ready_spell() -> None:
    """Ready once, then failing: the readiness before the failure does not count later."""
    backoff = CrashLoopBackoff(initial_s=0.5, cap_s=60.0, stable_s=30.0)
    backoff.ready(0.0)
    assert backoff.next_delay(10.0) == 0.5  # ready for 10 s only
    assert backoff.next_delay(100.0) == 1.0  # not ready since: nothing forgiven


@pytest.mark.parametrize(("policy", "exit_code", "restarts", "wanted"), [
    ("always", 0, 0, True),
    ("always", None, 99, True),
    ("unless-stopped", 0, 0, True),
    ("unless-stopped", 137, 12, True),
    ("on-failure", 1, 0, True),
    ("on-failure", 1, 1000, True),
    ("on-failure", 0, 0, False),
    ("on-failure", None, 0, True),  # alive but not ready counts as a failure
    ("on-failure:3", 1, 2, True),
    ("on-failure:3", 1, 3, False),
    ("on-failure:3", 0, 0, False),
    ("no", 1, 0, False),
    ("no", None, 0, False),
])
def test_wants_restart_follows_the_restart_policy(policy: str, exit_code: int | None,
                                                  restarts: int, wanted: bool) -> None:
    assert wants_restart(policy, exit_code, restarts) is wanted


# --- the guards, through a fake engine ----------------------------------------------------------


@dataclass
class Container:
    running: bool = True
    exit_code: int = 0
    ready: bool = True  # what the exec readiness check answers
    ready_after_start: bool | None = None  # `ready` becomes this when it is started


class Changes:
    """Something the test can wait for: `changed()` after every change."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def changed(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._event.wait()


class FakeEngine(Changes):
    """The engine calls of supervision, on containers held in memory."""

    def __init__(self, containers: dict[str, Container]) -> None:
        super().__init__()
        self.containers = containers
        self.calls: list[tuple[str, str]] = []
        self.policies: list[tuple[str, dict[str, Any]]] = []
        self.refused_starts = 0  # the next starts the engine refuses

    def count(self, verb: str, container_id: str) -> int:
        return self.calls.count((verb, container_id))

    def _record(self, verb: str, container_id: str) -> None:
        self.calls.append((verb, container_id))
        self.changed()

    async def inspect(self, container_id: str) -> ContainerState:
        container = self.containers[container_id]
        status = "running" if container.running else "exited"
        return ContainerState(container_id, status, container.exit_code, False, "", None)

    async def start(self, container_id: str) -> None:
        if self.refused_starts:
            self.refused_starts -= 1
            self._record("refused start", container_id)
            raise EngineError("driver failed programming external connectivity")
        container = self.containers[container_id]
        container.running = True
        if container.ready_after_start is not None:
            container.ready = container.ready_after_start
        self._record("start", container_id)

    async def stop(self, container_id: str, timeout: float | None = None) -> None:
        container = self.containers[container_id]
        container.running, container.exit_code = False, 143
        self._record("stop", container_id)

    async def exec(self, container_id: str, argv: list[str]) -> tuple[int, str]:
        self._record("exec", container_id)
        return (0, "ok") if self.containers[container_id].ready else (1, "not ready yet")

    async def set_restart_policy(self, container_id: str, policy: dict[str, Any]) -> None:
        self.policies.append((container_id, policy))

    @asynccontextmanager
    async def abandon_if_stalled(self, what: str, limit_s: float = 10.0) -> AsyncIterator[None]:
        yield


class Events(Changes):
    """The recorder's events, as a listener sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        self.seen.append((event, fields))
        self.changed()

    def of(self, event: str, service: str = "api") -> list[dict[str, Any]]:
        return [fields for name, fields in self.seen
                if name == event and fields.get("service") == service]

    async def until_seen(self, event: str, count: int = 1, service: str = "api") -> None:
        await self.until(lambda: len(self.of(event, service)) >= count)


FAST = SuperviseOptions(liveness_interval_s=60.0, failure_threshold=2,
                        restart_initial_s=0.004, restart_cap_s=0.01, stable_s=60.0,
                        ready_timeout_s=60.0, probe_backoff=Backoff(0.001, 0.005))


@dataclass
class Supervised:
    supervisor: Supervisor
    engine: FakeEngine
    watch: ContainerWatch
    events: Events

    def die(self, container_id: str, exit_code: int) -> None:
        """The container exits; the engine says so on its event stream."""
        container = self.engine.containers[container_id]
        container.running, container.exit_code = False, exit_code
        self.watch.dispatch(ContainerEvent(container_id, "die", exit_code, None))


@pytest.fixture
def supervised(build_plan: Callable[..., Plan]) -> Callable[..., Any]:
    @asynccontextmanager
    async def supervise(services: dict[str, dict[str, Any]],
                        containers: dict[str, Container],
                        options: SuperviseOptions = FAST) -> AsyncIterator[Supervised]:
        plan = build_plan({name: {"image": f"{name}:1", "ready": {"exec": ["check"]}, **spec}
                           for name, spec in services.items()})
        loaded = LoadedPlan(plan, Path("plan.yaml"), DependencyGraph.from_plan(plan))
        engine = FakeEngine(containers)
        watch = ContainerWatch()
        events = Events()
        recorder = RunRecorder(run_id="r1", project="shop", plan_path="plan.yaml",
                               phases=dict.fromkeys(services, "all"), phase_order=["all"],
                               listeners=[events])
        supervisor = Supervisor(engine, loaded, {name: name for name in services},  # type: ignore[arg-type]
                                watch, HttpClient(), recorder, options)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(supervisor.run)
                yield Supervised(supervisor, engine, watch, events)
                group.cancel_scope.cancel()

    return supervise


async def test_a_container_found_stopped_is_restarted_and_counted_back_up_once_ready(
        supervised: Callable[..., Any]) -> None:
    async with supervised({"api": {"restart": "always"}},
                          {"api": Container(running=False, exit_code=1)}) as s:
        await s.events.until_seen("service healthy")
    assert [f["reason"] for f in s.events.of("service unhealthy")] == ["found stopped"]
    assert [(f["restarts"], f["exit_code"]) for f in s.events.of("service restarting")] == [
        (1, 1)]
    assert s.events.of("service healthy")[0]["restarts"] == 1
    assert s.engine.count("start", "api") == 1


async def test_a_death_while_it_is_probed_after_a_restart_restarts_it_at_once(
        supervised: Callable[..., Any]) -> None:
    """The service's deadline is a minute away: only the death can bring the second start."""
    container = Container(running=False, exit_code=1, ready=False)
    async with supervised({"api": {"restart": "always",
                                   "ready": {"exec": ["check"], "timeout": "60s"}}},
                          {"api": container}) as s:
        await s.engine.until(lambda: s.engine.count("exec", "api") >= 1)  # being probed
        s.die("api", 2)
        await s.engine.until(lambda: s.engine.count("start", "api") >= 2)
    assert [f["reason"] for f in s.events.of("service unhealthy")] == ["found stopped",
                                                                       "container died"]
    assert [f["exit_code"] for f in s.events.of("service restarting")] == [1, 2]
    assert s.events.of("service healthy") == []
    assert ("stop", "api") not in s.engine.calls  # it was dead already


async def test_the_services_own_ready_timeout_applies_after_a_restart(
        supervised: Callable[..., Any]) -> None:
    container = Container(running=False, exit_code=1, ready=False)
    options = replace(FAST, ready_timeout_s=60.0)
    async with supervised({"api": {"restart": "always",
                                   "ready": {"exec": ["check"], "timeout": "200ms"}}},
                          {"api": container}, options) as s:
        await s.engine.until(lambda: s.engine.count("start", "api") >= 2)
    [late] = [f for f in s.events.of("service unhealthy")
              if f["reason"] == "not ready after restart"]
    assert late["deadline_s"] == 0.2
    assert "exec check: exit 1 not ready yet" in late["error"]
    # Alive but never ready: stopped, then started again.
    assert [verb for verb, _ in s.engine.calls if verb != "exec"] == ["start", "stop", "start"]


async def test_a_service_without_its_own_ready_timeout_gets_the_global_one(
        supervised: Callable[..., Any]) -> None:
    container = Container(running=False, exit_code=1, ready=False)
    options = replace(FAST, ready_timeout_s=0.15)
    async with supervised({"api": {"restart": "always"}}, {"api": container}, options) as s:
        await s.engine.until(lambda: s.engine.count("start", "api") >= 2)
    [late] = [f for f in s.events.of("service unhealthy")
              if f["reason"] == "not ready after restart"]
    assert late["deadline_s"] == 0.15


async def test_a_running_container_that_fails_its_liveness_checks_is_restarted(
        supervised: Callable[..., Any]) -> None:
    container = Container(running=True, ready=False, ready_after_start=True)
    options = replace(FAST, liveness_interval_s=0.01, failure_threshold=3)
    async with supervised({"api": {"restart": "always"}}, {"api": container}, options) as s:
        await s.events.until_seen("service healthy")
    assert [f["failures"] for f in s.events.of("liveness check failed")] == [1, 2, 3]
    [unhealthy] = s.events.of("service unhealthy")
    assert (unhealthy["reason"], unhealthy["checks"]) == ("not ready", 3)
    assert [f["exit_code"] for f in s.events.of("service restarting")] == [None]
    assert [verb for verb, _ in s.engine.calls if verb != "exec"] == ["stop", "start"]


async def test_a_policy_of_no_leaves_a_dead_container_until_someone_starts_it(
        supervised: Callable[..., Any]) -> None:
    async with supervised({"api": {"restart": "no"}},
                          {"api": Container(running=False, exit_code=1)}) as s:
        await s.events.until_seen("service not restarted")
        await anyio.wait_all_tasks_blocked()
        assert s.engine.count("start", "api") == 0
        assert s.events.of("service healthy") == []
        s.engine.containers["api"].running = True  # `docker start` by someone
        s.watch.dispatch(ContainerEvent("api", "start", None, "api"))
        await s.events.until_seen("service healthy")
    assert s.events.of("service not restarted")[0]["reason"] == "restart policy 'no'"
    assert s.engine.count("start", "api") == 0
    assert s.events.of("service healthy")[0]["restarts"] == 0


async def test_on_failure_with_a_limit_gives_up_after_that_many_restarts(
        supervised: Callable[..., Any]) -> None:
    container = Container(running=False, exit_code=1, ready=False)
    async with supervised({"api": {"restart": "on-failure:1"}}, {"api": container}) as s:
        await s.engine.until(lambda: s.engine.count("exec", "api") >= 1)  # restarted once
        s.die("api", 1)
        await s.events.until_seen("service not restarted")
        await anyio.wait_all_tasks_blocked()
    assert s.engine.count("start", "api") == 1


async def test_a_clean_exit_is_not_restarted_under_on_failure(
        supervised: Callable[..., Any]) -> None:
    async with supervised({"api": {"restart": "on-failure"}},
                          {"api": Container(running=False, exit_code=0)}) as s:
        await s.events.until_seen("service not restarted")
        await anyio.wait_all_tasks_blocked()
    assert s.engine.count("start", "api") == 0


async def test_the_delay_doubles_while_the_service_crashes_in_a_loop(
        supervised: Callable[..., Any]) -> None:
    container = Container(running=False, exit_code=1, ready=False)
    async with supervised({"api": {"restart": "always"}}, {"api": container}) as s:
        for starts in (1, 2):
            await s.engine.until(lambda n=starts: s.engine.count("start", "api") >= n)
            s.die("api", 1)
        await s.engine.until(lambda: s.engine.count("start", "api") >= 3)
    assert [f["delay_s"] for f in s.events.of("service restarting")] == [0.004, 0.008, 0.01]


@pytest.mark.parametrize(("stable_s", "delays"), [(0.0, [0.004, 0.004]),
                                                  (60.0, [0.004, 0.008])])
async def test_the_delay_is_forgiven_once_the_service_was_ready_for_stable_s(
        supervised: Callable[..., Any], stable_s: float, delays: list[float]) -> None:
    container = Container(running=False, exit_code=1, ready=True)
    options = replace(FAST, stable_s=stable_s)
    async with supervised({"api": {"restart": "always"}}, {"api": container}, options) as s:
        await s.events.until_seen("service healthy")
        s.die("api", 1)
        await s.events.until_seen("service healthy", count=2)
    assert [f["delay_s"] for f in s.events.of("service restarting")] == delays


async def test_a_dependent_is_checked_at_once_when_its_dependency_is_back(
        supervised: Callable[..., Any]) -> None:
    """Its liveness interval is a minute: only the recheck can bring its check."""
    async with supervised({"db": {"restart": "always"},
                           "api": {"restart": "always", "after": {"db": "healthy"}}},
                          {"db": Container(running=False, exit_code=1),
                           "api": Container()}) as s:
        await s.events.until_seen("service healthy", service="db")
        await s.events.until_seen("liveness check passed", service="api")
    assert s.engine.count("exec", "api") == 1
    assert s.engine.count("start", "api") == 0


async def test_supervision_owns_the_restarts_and_gives_the_policies_back_when_it_ends(
        supervised: Callable[..., Any]) -> None:
    async with supervised({"api": {"restart": "on-failure:5"}, "web": {"restart": "always"}},
                          {"api": Container(), "web": Container()}) as s:
        await anyio.wait_all_tasks_blocked()
        assert s.engine.policies == [("api", ENGINE_NEVER_RESTARTS),
                                     ("web", ENGINE_NEVER_RESTARTS)]
    assert s.engine.policies[2:] == [("api", restart_policy("on-failure:5")),
                                     ("web", restart_policy("always"))]


async def test_a_start_the_engine_refuses_is_tried_again_after_the_backoff(
        supervised: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_supervisor, "DEATH_NEWS_S", 0.01)  # no death news will come
    async with supervised({"api": {"restart": "always"}},
                          {"api": Container(running=False, exit_code=1)}) as s:
        s.engine.refused_starts = 1
        await s.events.until_seen("service healthy")
    [failed] = s.events.of("restart failed")
    assert "external connectivity" in failed["error"]
    assert [f["reason"] for f in s.events.of("service unhealthy")] == [
        "found stopped", "not ready after restart"]
    assert s.events.of("service unhealthy")[1]["error"] == "container is exited"
    assert [verb for verb, _ in s.engine.calls if verb != "exec"] == ["refused start", "start"]
    assert s.events.of("service healthy")[0]["restarts"] == 2


async def test_the_guards_own_stop_is_not_taken_for_a_new_death(
        supervised: Callable[..., Any]) -> None:
    """The engine's `die` for the guard's own stop comes through the event thread, after the
    stop's answer; arriving after the restart, it used to count as a second death (found
    by these tests): a second restart, a doubled backoff, the balancers told it was down."""
    container = Container(running=True, ready=False, ready_after_start=True)
    options = replace(FAST, liveness_interval_s=0.01, failure_threshold=1)
    async with supervised({"api": {"restart": "always"}}, {"api": container}, options) as s, \
            anyio.create_task_group() as late:
        plain_stop = s.engine.stop

        async def stop_with_late_news(container_id: str, timeout: float | None = None) -> None:
            await plain_stop(container_id, timeout)

            async def news() -> None:
                await anyio.sleep(0.02)
                s.watch.dispatch(ContainerEvent(container_id, "die", 143, None))

            late.start_soon(news)

        s.engine.stop = stop_with_late_news  # type: ignore[method-assign]
        await s.events.until_seen("service healthy")
        await anyio.sleep(0.1)  # time for a late death to be (mis)taken
    assert len(s.events.of("service restarting")) == 1
    assert [e["reason"] for e in s.events.of("service unhealthy")] == ["not ready"]
