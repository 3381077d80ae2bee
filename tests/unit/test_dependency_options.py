"""compose's `depends_on` options `required: false` and `restart: true`: read from the file,
kept on the graph's edges, carried out by the traversal, `up`'s reconciliation and
`restart` (pure: no engine)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import yaml

from ollamatopo._errors import ServiceFailed
from ollamatopo.engine._payloads import container_config
from ollamatopo.engine._snapshot import ObservedContainer, Snapshot
from ollamatopo.plan._compose_out import to_compose
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import Condition, DependencyOptions
from ollamatopo.run._reconcile import Verb, reconcile
from ollamatopo.run._scheduler import NodeContext, traverse

FILE = """
services:
  db:
    image: postgres:16
  api:
    image: api:1
    depends_on:
      db: {condition: service_healthy, restart: true}
      metrics: {condition: service_started, required: false}
  web:
    image: web:1
    depends_on:
      api: {condition: service_started, restart: true}
  metrics:
    image: metrics:1
    profiles: [monitoring]
"""


def load(tmp_path: Path, profiles: tuple[str, ...] = ()) -> LoadedPlan:
    path = tmp_path / "compose.yaml"
    path.write_text(FILE, encoding="utf-8")
    return load_plan(path, environ={}, profiles=profiles)


def test_a_not_required_dependency_of_an_inactive_profile_is_left_out_with_a_warning(
        tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.plan.dependencies("api") == {"db": Condition.HEALTHY}
    assert any("services.api.depends_on.metrics" in warning and "no active profile" in warning
               for warning in loaded.warnings)


def test_the_options_are_kept_on_the_graphs_edges(tmp_path: Path) -> None:
    loaded = load(tmp_path, ("monitoring",))
    api = loaded.plan.services["api"]
    assert loaded.plan.dependencies("api") == {"db": Condition.HEALTHY,
                                               "metrics": Condition.STARTED}
    assert api.dependency_options == {"db": DependencyOptions(restart=True),
                                      "metrics": DependencyOptions(required=False)}
    assert loaded.graph.not_required == {("api", "metrics")}
    assert loaded.graph.restarting == {("api", "db"), ("web", "api")}


def test_config_prints_the_options_back(tmp_path: Path) -> None:
    loaded = load(tmp_path, ("monitoring",))
    printed = to_compose(loaded.plan, loaded.path.parent)
    assert printed["services"]["api"]["depends_on"] == {
        "db": {"condition": "service_healthy", "restart": True},
        "metrics": {"condition": "service_started", "required": False}}
    again = tmp_path / "again" / "compose.yaml"
    again.parent.mkdir()
    again.write_text(yaml.safe_dump(printed), encoding="utf-8")
    assert load_plan(again, environ={}).graph.restarting == {("api", "db"), ("web", "api")}


def test_restart_takes_the_dependents_that_restart_with_it_transitively() -> None:
    graph = DependencyGraph({"db": {}, "api": {"db": Condition.HEALTHY},
                             "web": {"api": Condition.STARTED}, "job": {"db": Condition.STARTED}},
                            restarting=frozenset({("api", "db"), ("web", "api")}))
    assert graph.restarted_with(["db"]) == ["db", "api", "web"]
    assert graph.restarted_with(["api"]) == ["api", "web"]
    assert graph.restarted_with(["job"]) == ["job"]
    assert graph.subgraph(["db", "api"]).restarting == {("api", "db")}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_failed_dependency_that_is_not_required_lets_its_dependent_start(
        anyio_backend: str) -> None:
    graph = DependencyGraph({"metrics": {}, "db": {},
                             "api": {"metrics": Condition.HEALTHY, "db": Condition.HEALTHY},
                             "web": {"db": Condition.HEALTHY}},
                            not_required=frozenset({("api", "metrics")}))
    unmet: dict[str, list[str]] = {}
    failures: dict[str, ServiceFailed] = {}

    async def visit(name: str, context: NodeContext) -> None:
        if name in ("metrics", "db") and name == failing:
            raise ServiceFailed(name, "unhealthy")
        unmet[name] = await context.dependencies_hold()
        await anyio.lowlevel.checkpoint()

    failing = "metrics"
    assert await traverse(graph, visit, required=lambda _: False,
                          on_failure=failures.__setitem__) == []
    assert unmet["api"] == ["metrics"] and set(failures) == {"metrics"}

    failing, unmet, failures = "db", {}, {}  # a required edge still fails its dependent
    await traverse(graph, visit, required=lambda _: False, on_failure=failures.__setitem__)
    assert set(failures) == {"db", "api", "web"} and "api" not in unmet


def observed(loaded: LoadedPlan, service: str, config_hash: str | None = None) -> ObservedContainer:
    config = container_config(loaded.plan, service, loaded.path.parent)
    return ObservedContainer(id=f"id-{service}", name=config.name, service=service,
                             config_hash=config_hash or config.config_hash, state="running",
                             exit_code=0, image_id="sha256:1")


def test_up_restarts_a_running_dependent_when_its_restart_dependency_is_recreated(
        tmp_path: Path) -> None:
    loaded = load(tmp_path)
    containers = {name: container_config(loaded.plan, name, loaded.path.parent)
                  for name in loaded.plan.services}
    unchanged = Snapshot(loaded.plan.project,
                         tuple(observed(loaded, name) for name in containers))
    kept = reconcile(containers, [], unchanged, loaded.graph.restarting)
    assert {action.verb for action in kept.services.values()} == {Verb.KEEP}

    changed = Snapshot(loaded.plan.project, (observed(loaded, "db", "old-hash"),
                                             observed(loaded, "api"), observed(loaded, "web")))
    actions = reconcile(containers, [], changed, loaded.graph.restarting).services
    assert actions["db"].verb is Verb.RECREATE
    assert (actions["api"].verb, actions["api"].cause) == (
        Verb.RESTART, "db is recreated (restart: true)")
    assert (actions["web"].verb, actions["web"].cause) == (
        Verb.RESTART, "api is restarted (restart: true)")
    without = reconcile(containers, [], changed).services  # no restart edges: kept
    assert without["api"].verb is Verb.KEEP
