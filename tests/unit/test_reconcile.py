"""What `up` must do, given the desired configs and what the engine holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo.engine._payloads import (
    ContainerConfig,
    NetworkConfig,
    container_config,
    network_config,
    plan_networks,
)
from ollamatopo.engine._snapshot import ObservedContainer, ObservedNetwork, Snapshot
from ollamatopo.plan._model import Plan
from ollamatopo.run._reconcile import Reconciliation, Verb, reconcile


@pytest.fixture
def plan(build_plan: Callable[..., Plan]) -> Plan:
    return build_plan(
        {"db": {"image": "postgres:16", "networks": ["back"]},
         "api": {"image": "api:1", "networks": ["back", "front"]},
         "web": {"image": "nginx", "networks": ["front"]}},
        networks={"back": {}, "front": {}})


@pytest.fixture
def containers(plan: Plan) -> dict[str, ContainerConfig]:
    return {name: container_config(plan, name, Path("/srv")) for name in plan.services}


@pytest.fixture
def networks(plan: Plan) -> list[NetworkConfig]:
    return [network_config(plan.project, key, spec) for key, spec in plan_networks(plan).items()]


def observed(config: ContainerConfig, state: str = "running", exit_code: int = 0,
             config_hash: str | None = None, image_id: str = "sha256:1") -> ObservedContainer:
    return ObservedContainer(id=f"id-{config.service}", name=config.name, service=config.service,
                             config_hash=config_hash or config.config_hash, state=state,
                             exit_code=exit_code, image_id=image_id)


def network_seen(config: NetworkConfig, config_hash: str | None = None) -> ObservedNetwork:
    return ObservedNetwork(id=f"net-{config.key}", name=config.name, key=config.key,
                           config_hash=config_hash or config.config_hash)


def up_to_date(containers: dict[str, ContainerConfig],
               networks: list[NetworkConfig]) -> Snapshot:
    return Snapshot("shop", tuple(observed(c) for c in containers.values()),
                    tuple(network_seen(n) for n in networks))


def verbs(result: Reconciliation) -> dict[str, tuple[Verb, str]]:
    return {name: (action.verb, action.cause) for name, action in result.services.items()}


def test_empty_engine_creates_everything(containers: dict[str, ContainerConfig],
                                         networks: list[NetworkConfig]) -> None:
    result = reconcile(containers, networks, Snapshot("shop"))
    assert [(a.config.name, a.verb, a.cause) for a in result.networks] == [
        ("shop_back", Verb.CREATE, "missing"), ("shop_front", Verb.CREATE, "missing")]
    assert verbs(result) == {name: (Verb.CREATE, "missing") for name in containers}
    assert result.orphans == ()
    assert not result.changes_nothing
    assert "create db: missing" in result.lines()


def test_everything_up_to_date_is_kept(containers: dict[str, ContainerConfig],
                                       networks: list[NetworkConfig]) -> None:
    result = reconcile(containers, networks, up_to_date(containers, networks))
    assert {a.verb for a in result.networks} == {Verb.KEEP}
    assert verbs(result) == {name: (Verb.KEEP, "running, up to date") for name in containers}
    assert result.changes_nothing
    assert result.services["db"].existing is not None
    assert result.services["db"].existing.id == "id-db"


def test_changed_hash_recreates(containers: dict[str, ContainerConfig],
                                networks: list[NetworkConfig]) -> None:
    snapshot = up_to_date(containers, networks)
    stale = observed(containers["api"], config_hash="0" * 16)
    snapshot = Snapshot("shop", (stale, *(c for c in snapshot.containers if c.service != "api")),
                        snapshot.networks)
    result = reconcile(containers, networks, snapshot)
    assert verbs(result)["api"] == (Verb.RECREATE, "config changed")
    assert verbs(result)["db"][0] is Verb.KEEP
    assert str(result.services["api"]) == "recreate api: config changed"


def test_changed_image_recreates(containers: dict[str, ContainerConfig],
                                 networks: list[NetworkConfig]) -> None:
    snapshot = up_to_date(containers, networks)
    snapshot = Snapshot("shop", snapshot.containers, snapshot.networks,
                        image_ids={"nginx": "sha256:2", "api:1": "sha256:1"})
    result = reconcile(containers, networks, snapshot)
    assert verbs(result)["web"] == (Verb.RECREATE, "image changed")
    assert verbs(result)["api"][0] is Verb.KEEP


@pytest.mark.parametrize(
    ("state", "exit_code", "verb", "cause"),
    [
        ("exited", 137, Verb.START, "exited (137)"),
        ("exited", 0, Verb.START, "exited (0)"),
        ("created", 0, Verb.START, "created"),
        ("dead", 1, Verb.RECREATE, "dead (1)"),
        ("paused", 0, Verb.RECREATE, "paused"),
        ("restarting", 0, Verb.RECREATE, "restarting"),
    ],
)
def test_container_not_running(containers: dict[str, ContainerConfig],
                               networks: list[NetworkConfig], state: str, exit_code: int,
                               verb: Verb, cause: str) -> None:
    snapshot = up_to_date(containers, networks)
    others = tuple(c for c in snapshot.containers if c.service != "db")
    snapshot = Snapshot("shop", (observed(containers["db"], state, exit_code), *others),
                        snapshot.networks)
    assert verbs(reconcile(containers, networks, snapshot))["db"] == (verb, cause)


def test_container_not_in_the_plan_is_removed(containers: dict[str, ContainerConfig],
                                              networks: list[NetworkConfig]) -> None:
    snapshot = up_to_date(containers, networks)
    ghost = ObservedContainer("id-ghost", "shop-ghost", "ghost", "abc", "running", 0, "sha256:9")
    snapshot = Snapshot("shop", (*snapshot.containers, ghost), snapshot.networks)
    result = reconcile(containers, networks, snapshot)
    assert [(a.service, a.verb, a.cause, a.existing) for a in result.orphans] == [
        ("ghost", Verb.REMOVE, "not in the plan", ghost)]
    assert "ghost" not in result.services
    assert not result.changes_nothing
    assert result.lines()[-1] == "remove ghost: not in the plan"


def test_changed_network_recreates_it_and_its_services(containers: dict[str, ContainerConfig],
                                                        networks: list[NetworkConfig]) -> None:
    snapshot = up_to_date(containers, networks)
    seen = tuple(network_seen(n, "f" * 16 if n.key == "back" else None) for n in networks)
    result = reconcile(containers, networks, Snapshot("shop", snapshot.containers, seen))
    assert [(a.config.key, a.verb, a.cause) for a in result.networks] == [
        ("back", Verb.RECREATE, "config changed"), ("front", Verb.KEEP, "up to date")]
    assert verbs(result) == {
        "db": (Verb.RECREATE, "network shop_back changed"),
        "api": (Verb.RECREATE, "network shop_back changed"),
        "web": (Verb.KEEP, "running, up to date"),
    }


def test_changed_network_does_not_recreate_a_missing_service(
        containers: dict[str, ContainerConfig], networks: list[NetworkConfig]) -> None:
    snapshot = up_to_date(containers, networks)
    present = tuple(c for c in snapshot.containers if c.service != "db")
    seen = tuple(network_seen(n, "f" * 16 if n.key == "back" else None) for n in networks)
    result = reconcile(containers, networks, Snapshot("shop", present, seen))
    assert verbs(result)["db"] == (Verb.CREATE, "missing")
    assert verbs(result)["api"] == (Verb.RECREATE, "network shop_back changed")


def test_reconcile_with_a_changed_environment(build_plan: Callable[..., Plan]) -> None:
    before = build_plan({"app": {"image": "x", "environment": {"MODE": "a"}}})
    after = build_plan({"app": {"image": "x", "environment": {"MODE": "b"}}})
    old = container_config(before, "app", Path("/srv"))
    new = container_config(after, "app", Path("/srv"))
    snapshot = Snapshot("shop", (observed(old),))
    assert verbs(reconcile({"app": new}, [], snapshot)) == {
        "app": (Verb.RECREATE, "config changed")}
    assert verbs(reconcile({"app": old}, [], snapshot)) == {
        "app": (Verb.KEEP, "running, up to date")}
