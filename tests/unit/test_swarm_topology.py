"""config/topology-swarm.yaml is the seed topology of config/topology.yaml on a swarm: the
same services, images, graph and phases, every key one the swarm backend carries out,
model nodes and data stores placed by node label."""

from __future__ import annotations

from pathlib import Path

from ollamatopo.engine._swarm_payloads import service_config, swarm_problems
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.run._swarm import one_service_each

CONFIG = Path(__file__).resolve().parents[2] / "config"
SECRETS = {"JWT_SECRET": "test-only", "MINIO_ROOT_USER": "admin",
           "MINIO_ROOT_PASSWORD": "test-only-password"}


def load(name: str) -> LoadedPlan:
    return one_service_each(load_plan(CONFIG / name, environ=SECRETS))


def test_the_same_services_images_graph_and_phases_as_the_one_host_file() -> None:
    host, swarm = load("topology.yaml"), load("topology-swarm.yaml")
    assert {n: s.image for n, s in swarm.plan.services.items()} == \
        {n: s.image for n, s in host.plan.services.items()}
    assert swarm.graph.dependencies == host.graph.dependencies
    assert [(p.name, p.services) for p in swarm.plan.phases] == \
        [(p.name, p.services) for p in host.plan.phases]
    assert {n: s.optional for n, s in swarm.plan.services.items()} == \
        {n: s.optional for n, s in host.plan.services.items()}


def test_every_key_is_carried_out_on_a_swarm_and_placed_by_label() -> None:
    loaded = load("topology-swarm.yaml")
    assert swarm_problems(loaded.plan) == []
    constraints = {name: service_config(loaded.plan, name, CONFIG).create_kwargs[
        "task_template"].get("Placement", {}).get("Constraints", [])
        for name in loaded.plan.services}
    assert all(constraints[f"ollama-node-{i}"] == ["node.labels.role == gpu"]
               for i in (1, 2, 3))
    assert all(constraints[name] == ["node.labels.role == data"]
               for name in ("postgres", "redis", "minio"))
