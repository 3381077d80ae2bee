"""The traversal of the dependency graph (`run._scheduler.traverse`), without an engine: each
node waits inside its visit for what it needs, failures travel to dependents, and a
required failure cancels what is still in flight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import anyio
import pytest

from ollamatopo._errors import EngineError, ServiceFailed
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._model import Condition
from ollamatopo.run._scheduler import DependencyFailed, NodeContext, traverse

pytestmark = pytest.mark.anyio

STARTED, HEALTHY = Condition.STARTED, Condition.HEALTHY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def graph(edges: Mapping[str, Mapping[str, Condition]]) -> DependencyGraph:
    return DependencyGraph({name: dict(deps) for name, deps in edges.items()})


class Failures:
    """The `on_failure` callback: every failure reported, by service."""

    def __init__(self) -> None:
        self.by_service: dict[str, ServiceFailed] = {}

    def __call__(self, name: str, failure: ServiceFailed) -> None:
        assert name not in self.by_service, f"{name} reported twice"
        self.by_service[name] = failure


def never(_: str) -> bool:
    return False


def always(_: str) -> bool:
    return True


async def test_a_started_dependency_releases_its_dependent_before_its_visit_ends() -> None:
    """`started`: the dependent goes on as soon as the dependency says it has started,
    while the dependency's visit is still running (it waits for the dependent here)."""
    dependent_holds = anyio.Event()
    order: list[str] = []

    async def visit(name: str, context: NodeContext) -> None:
        if name == "db":
            context.started()
            await dependent_holds.wait()
            order.append("db done")
        else:
            await context.dependencies_hold()
            order.append("api holds")
            dependent_holds.set()

    with anyio.fail_after(2):
        fatal = await traverse(graph({"db": {}, "api": {"db": STARTED}}), visit,
                               required=always, on_failure=Failures())
    assert fatal == []
    assert order == ["api holds", "db done"]


async def test_a_healthy_dependency_holds_only_once_its_visit_has_returned() -> None:
    """`healthy`: having started is not enough, the dependency's whole visit must end."""
    order: list[str] = []

    async def visit(name: str, context: NodeContext) -> None:
        if name == "db":
            context.started()
            await anyio.wait_all_tasks_blocked()  # the dependent had every chance to go on
            order.append("db done")
        else:
            await context.dependencies_hold()
            order.append("api holds")

    with anyio.fail_after(2):
        await traverse(graph({"db": {}, "api": {"db": HEALTHY}}), visit,
                       required=always, on_failure=Failures())
    assert order == ["db done", "api holds"]


async def test_a_node_with_several_dependencies_waits_for_each_on_its_own_condition() -> None:
    """api needs db healthy and cache started; cache ends only once api holds, so api
    waiting for cache's whole visit would hang."""
    order: list[str] = []
    api_holds = anyio.Event()

    async def visit(name: str, context: NodeContext) -> None:
        if name == "cache":
            context.started()
            await api_holds.wait()
        elif name == "api":
            await context.dependencies_hold()
            order.append("api holds")
            api_holds.set()
        else:  # db
            context.started()
            await anyio.wait_all_tasks_blocked()
            order.append("db done")

    with anyio.fail_after(2):
        await traverse(graph({"db": {}, "cache": {}, "api": {"db": HEALTHY, "cache": STARTED}}),
                       visit, required=always, on_failure=Failures())
    assert order == ["db done", "api holds"]


async def test_every_node_is_visited_exactly_once() -> None:
    visits: Counter[str] = Counter()
    edges = {"db": {}, "cache": {}, "api": {"db": HEALTHY, "cache": STARTED},
             "worker": {"db": STARTED}, "web": {"api": HEALTHY, "worker": HEALTHY}}

    async def visit(name: str, context: NodeContext) -> None:
        visits[name] += 1
        await context.dependencies_hold()
        context.started()

    with anyio.fail_after(2):
        await traverse(graph(edges), visit, required=always, on_failure=Failures())
    assert visits == Counter(dict.fromkeys(edges, 1))


async def test_independent_nodes_run_at_the_same_time() -> None:
    """Each visit waits until all three are inside their visits: one at a time would hang."""
    names = ["db", "cache", "queue"]
    inside: set[str] = set()
    all_inside = anyio.Event()

    async def visit(name: str, context: NodeContext) -> None:
        inside.add(name)
        if len(inside) == len(names):
            all_inside.set()
        await all_inside.wait()

    with anyio.fail_after(2):
        await traverse(graph({name: {} for name in names}), visit, required=always,
                       on_failure=Failures())
    assert inside == set(names)


async def test_a_dependent_does_not_wait_for_an_unrelated_slow_node() -> None:
    slow_may_end = anyio.Event()

    async def visit(name: str, context: NodeContext) -> None:
        if name == "slow":
            await slow_may_end.wait()
        elif name == "api":
            await context.dependencies_hold()
            slow_may_end.set()  # only reached if api never waited for slow

    with anyio.fail_after(2):
        await traverse(graph({"slow": {}, "db": {}, "api": {"db": HEALTHY}}), visit,
                       required=always, on_failure=Failures())
    assert slow_may_end.is_set()


async def test_a_failed_node_fails_its_dependents_with_dependency_failed() -> None:
    failures = Failures()
    reached: list[str] = []

    async def visit(name: str, context: NodeContext) -> None:
        if name == "db":
            raise ServiceFailed("db", "container exited with code 1")
        await context.dependencies_hold()
        reached.append(name)
        context.started()

    edges = {"db": {}, "api": {"db": HEALTHY}, "worker": {"db": STARTED},
             "web": {"api": STARTED}, "docs": {}}
    with anyio.fail_after(2):
        fatal = await traverse(graph(edges), visit, required=never, on_failure=failures)
    assert fatal == []  # nothing was required
    assert reached == ["docs"]
    assert set(failures.by_service) == {"db", "api", "worker", "web"}
    assert type(failures.by_service["db"]) is ServiceFailed
    for name, cause in (("api", "'db'"), ("worker", "'db'"), ("web", "'api'")):
        failure = failures.by_service[name]
        assert isinstance(failure, DependencyFailed)
        assert failure.service == name
        assert cause in failure.cause


async def test_an_engine_error_in_a_visit_fails_that_service() -> None:
    failures = Failures()

    async def visit(name: str, context: NodeContext) -> None:
        raise EngineError("start: no such image")

    with anyio.fail_after(2):
        fatal = await traverse(graph({"api": {}}), visit, required=always,
                               on_failure=failures)
    assert [(f.service, f.cause) for f in fatal] == [("api", "start: no such image")]
    assert failures.by_service["api"] is fatal[0]


async def test_a_required_failure_cancels_what_is_still_in_flight() -> None:
    failures = Failures()
    cancelled: list[str] = []
    slow_is_waiting = anyio.Event()

    async def visit(name: str, context: NodeContext) -> None:
        if name == "slow":
            try:
                slow_is_waiting.set()
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(name)
                raise
        await slow_is_waiting.wait()
        raise ServiceFailed("db", "never ready")

    with anyio.fail_after(2):
        fatal = await traverse(graph({"slow": {}, "db": {}}), visit,
                               required=lambda name: name == "db", on_failure=failures)
    assert [f.service for f in fatal] == ["db"]
    assert cancelled == ["slow"]
    assert list(failures.by_service) == ["db"]  # a cancelled node is no failure


async def test_an_optional_failure_cancels_nothing() -> None:
    failures = Failures()
    finished: list[str] = []
    db_failed = anyio.Event()

    def on_failure(name: str, failure: ServiceFailed) -> None:
        failures(name, failure)
        db_failed.set()

    async def visit(name: str, context: NodeContext) -> None:
        if name == "db":
            raise ServiceFailed("db", "never ready")
        await db_failed.wait()  # still in flight when the optional node fails
        finished.append(name)

    with anyio.fail_after(2):
        fatal = await traverse(graph({"db": {}, "slow": {}}), visit,
                               required=lambda name: name != "db", on_failure=on_failure)
    assert fatal == []
    assert finished == ["slow"]
    assert list(failures.by_service) == ["db"]


async def test_a_required_dependent_of_an_optional_failure_is_a_fatal_failure() -> None:
    async def visit(name: str, context: NodeContext) -> None:
        if name == "metrics":
            raise ServiceFailed("metrics", "exited")
        await context.dependencies_hold()

    with anyio.fail_after(2):
        fatal = await traverse(graph({"metrics": {}, "api": {"metrics": HEALTHY}}), visit,
                               required=lambda name: name == "api", on_failure=Failures())
    assert [type(f) for f in fatal] == [DependencyFailed]
    assert fatal[0].service == "api"
