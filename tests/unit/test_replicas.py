"""Replicas: stable names, and every reference to a replicated service expanded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import Condition
from ollamatopo.plan._replicas import replica_names

PLAN = """
project: shop
services:
  db: {image: db}
  ollama-node-1: {image: node}
  ollama-node-2:
    image: node
    replicas: 2
    environment: {NODE_ID: "{{replica}}", ROLE: worker}
    after: {ollama-node-1: started}
  lb:
    image: nginx
    after: [ollama-node-2]
    load_balance: {template: lb.tmpl, backends: {ollama-node-1: 3, ollama-node-2: 2}}
phases:
  - {name: base, services: [db]}
  - {name: nodes, services: [ollama-node-1, ollama-node-2]}
  - {name: edge, services: [lb]}
"""


@pytest.fixture
def plan_file(write_plan: Callable[..., Path]) -> Path:
    path = write_plan(PLAN)
    (path.parent / "lb.tmpl").write_text("upstream u {\n{{upstream_servers}}\n}\n")
    return path


@pytest.mark.parametrize(("service", "count", "names"), [
    ("ollama-node-2", 3, ["ollama-node-2", "ollama-node-3", "ollama-node-4"]),
    ("worker", 3, ["worker", "worker-2", "worker-3"]),
    ("worker", 1, ["worker"]),
    ("shard-09", 2, ["shard-9", "shard-10"]),
])
def test_names_are_stable_when_scaling(service: str, count: int, names: list[str]) -> None:
    assert replica_names(service, count) == names
    assert replica_names(service, count + 1)[:count] == names  # scaling up renames nothing


def test_replicas_expand_phases_dependencies_and_backends(plan_file: Path) -> None:
    loaded = load_plan(plan_file, {})
    plan = loaded.plan
    assert list(plan.services) == ["db", "ollama-node-1", "ollama-node-2", "ollama-node-3",
                                   "lb"]
    assert plan.phases[1].services == ["ollama-node-1", "ollama-node-2", "ollama-node-3"]
    assert plan.services["ollama-node-3"].environment == {"NODE_ID": "ollama-node-3",
                                                          "ROLE": "worker"}
    assert plan.services["ollama-node-3"].hostname == "ollama-node-3"
    assert plan.services["ollama-node-2"].hostname == "ollama-node-2"
    assert plan.services["ollama-node-1"].hostname is None  # not replicated: untouched
    assert plan.services["ollama-node-3"].after == {"ollama-node-1": Condition.STARTED}
    assert plan.services["lb"].after == {"ollama-node-2": Condition.HEALTHY,
                                         "ollama-node-3": Condition.HEALTHY}
    balance = plan.services["lb"].load_balance
    assert balance is not None and balance.backends == {
        "ollama-node-1": 3, "ollama-node-2": 2, "ollama-node-3": 2}
    assert loaded.graph.dependencies["lb"] == {"ollama-node-2": Condition.HEALTHY,
                                               "ollama-node-3": Condition.HEALTHY}


def test_scale_overrides_the_plans_count(plan_file: Path) -> None:
    four = load_plan(plan_file, {}, replicas={"ollama-node-2": 4}).plan
    assert [n for n in four.services if n.startswith("ollama-node")] == [
        "ollama-node-1", "ollama-node-2", "ollama-node-3", "ollama-node-4", "ollama-node-5"]
    one = load_plan(plan_file, {}, replicas={"ollama-node-2": 1}).plan
    assert "ollama-node-3" not in one.services
    assert one.services["ollama-node-2"].hostname == "ollama-node-2"


def test_scaling_an_unknown_service_is_a_plan_error(plan_file: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(plan_file, {}, replicas={"ollama-node-9": 2})
    assert "services.ollama-node-9" in str(caught.value)


def test_a_replica_that_takes_another_services_name_is_refused(
        plan_error: Callable[..., PlanError]) -> None:
    error = plan_error(PLAN.replace("  lb:\n", "  ollama-node-3: {image: x, after: {}}\n  lb:\n")
                       .replace("services: [lb]", "services: [lb, ollama-node-3]")
                       .replace("template: lb.tmpl, ", "template: /dev/null, "))
    assert "services.ollama-node-2.replicas" in str(error)
    assert "'ollama-node-3'" in str(error)


def test_replicas_cannot_share_a_fixed_host_port(load: Callable[..., LoadedPlan],
                                                 plan_error: Callable[..., PlanError]) -> None:
    text = """
    project: shop
    services:
      api: {image: api, replicas: 2, ports: ["127.0.0.1:8080:8080"]}
    phases: [{name: all, services: [api]}]
    """
    error = plan_error(text)
    assert "services.api.ports[0]" in str(error) and "127.0.0.1::8080" in str(error)
    assert list(load(text.replace("127.0.0.1:8080:8080", "127.0.0.1::8080")).plan.services) \
        == ["api", "api-2"]


def test_replicas_share_a_range_of_host_ports_while_it_has_one_for_each(
        load: Callable[..., LoadedPlan], plan_error: Callable[..., PlanError]) -> None:
    """Each replica gets the same range and the engine binds a free port of it for each
    (as for compose's replicas): three replicas fit 7000-7002, four do not."""
    text = """
    project: shop
    services:
      api: {image: api, replicas: 3, ports: ["7000-7002:80"]}
      web: {image: web, ports: ["7001:80"]}
    phases: [{name: all, services: [api, web]}]
    """
    plan = load(text).plan
    assert {name: [p.published for p in spec.ports] for name, spec in plan.services.items()} \
        == {"api": ["7000-7002"], "api-2": ["7000-7002"], "api-3": ["7000-7002"],
            "web": ["7001"]}  # a fixed port within a range is no clash: the engine skips it
    error = str(plan_error(text.replace("replicas: 3", "replicas: 4")))
    assert "services.api.ports[0]" in error
    assert "4 replicas cannot each get a host port of 7000-7002 (3 ports)" in error


def test_zero_replicas_leave_the_service_out_and_its_dependents_do_not_wait(
        plan_file: Path) -> None:
    """compose: a service scaled to 0 has no container, and `up` skips waiting for it."""
    assert replica_names("worker", 0) == replica_names("ollama-node-2", 0) == []
    loaded = load_plan(plan_file, {}, replicas={"ollama-node-2": 0})
    plan = loaded.plan
    assert list(plan.services) == ["db", "ollama-node-1", "lb"]
    assert plan.phases[1].services == ["ollama-node-1"]
    assert plan.services["lb"].after == {}  # it waited for ollama-node-2's replicas only
    assert loaded.graph.dependencies["lb"] == {}
    balance = plan.services["lb"].load_balance
    assert balance is not None and balance.backends == {"ollama-node-1": 3}


def test_zero_replicas_in_a_compose_file(write_plan: Callable[..., Path]) -> None:
    path = write_plan("""
        services:
          db: {image: db, deploy: {replicas: 0}}
          tools: {image: tools, scale: 0}
          api: {image: api, depends_on: {db: {condition: service_healthy}}}
          web: {image: web, depends_on: [api]}
        """, "compose.yaml")
    loaded = load_plan(path, {})
    assert list(loaded.plan.services) == ["api", "web"]
    assert loaded.graph.dependencies == {"api": {}, "web": {"api": Condition.STARTED}}


@pytest.mark.parametrize(("text", "words"), [
    ("  side: {image: s, network_mode: 'service:db'}\n",
     "services.side (line 3): uses the container of 'db', which has 0 replicas"),
    ("  lb:\n    image: nginx\n    x-ollamatopo:\n      load_balance: {template: /dev/null, "
     "backends: {db: 1}}\n", "every backend has 0 replicas"),
])
def test_using_a_service_with_zero_replicas_is_refused(write_plan: Callable[..., Path],
                                                       text: str, words: str) -> None:
    path = write_plan("services:\n  db: {image: db, deploy: {replicas: 0}}\n" + text,
                      "compose.yaml")
    with pytest.raises(PlanError) as caught:
        load_plan(path, {})
    assert words in str(caught.value)


def test_a_swarm_keeps_a_service_with_zero_replicas_as_stack_deploy_does(
        write_plan: Callable[..., Path]) -> None:
    """The swarm service is made with no task (its dependents then need not wait: it is
    ready once made); `up SERVICE...` still leaves out the services it does not choose."""
    from ollamatopo.app._up import select
    from ollamatopo.run._swarm import plan_problems

    path = write_plan("""
        services:
          db: {image: db, deploy: {replicas: 0}}
          api: {image: a, depends_on: [db]}
          tools: {image: t, scale: 2}
        """, "compose.yaml")
    loaded = plan_problems(load_plan(path, {}, on_swarm=True))
    assert {name: spec.replicas for name, spec in loaded.plan.services.items()} == {
        "db": 0, "api": 1, "tools": 2}
    assert loaded.graph.dependencies["api"] == {"db": Condition.STARTED}
    chosen = plan_problems(select(load_plan(path, {}, on_swarm=True), ["tools"]))
    assert list(chosen.plan.services) == ["tools"]
