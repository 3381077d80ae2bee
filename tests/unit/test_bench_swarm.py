"""The v3 compose file `bench swarm` deploys with both `ollamatopo up --backend swarm` and
`docker stack deploy` (no Docker): the seed's graph as ollamatopo reads it, the stand-ins'
needs, placement, dnsrr, overlays in 10.97.x, and what a v3 file cannot say."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench._compose import NODE_HEALTHCHECK, seed_healthchecks
from bench._plans import SEED_DELAYS, SeedTopology, load_seed
from bench._swarm import (
    depends_on,
    deployed_healthcheck,
    file_graph,
    lone_keys,
    phase_default,
    render_swarm,
    role_of,
    swarm_file,
)

REPO = Path(__file__).resolve().parents[2]
LABELS = {"ollamatopo-bench": "1"}


@pytest.fixture(scope="module")
def seed() -> SeedTopology:
    return load_seed(REPO / "config" / "topology.yaml")


@pytest.fixture(scope="module")
def document(seed: SeedTopology) -> dict[str, Any]:
    subnets = {name: f"10.97.{2 + index}.0/24" for index, name in enumerate(seed.networks)}
    return swarm_file(seed, image="standin:test", labels=LABELS,
                      healthchecks=seed_healthchecks(seed.names), subnets=subnets)


def test_ollamatopo_reads_the_seed_graph_from_the_v3_file(seed: SeedTopology,
                                                         document: dict[str, Any],
                                                         tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert file_graph(path, "bench") == seed.dependencies()


def test_depends_on_is_a_list_and_healthy_ones_come_from_the_phases(
        seed: SeedTopology, document: dict[str, Any]) -> None:
    services = document["services"]
    assert document["version"].startswith("3.")
    assert "depends_on" not in services["ollama-node-1"]  # its phase's default: healthy
    assert phase_default(seed, "ollama-node-1") == dict.fromkeys(
        ["postgres", "redis", "minio"], "healthy")
    assert services["ollama-node-2"]["depends_on"] == ["ollama-node-1"]
    assert services["jaeger"]["depends_on"] == [] and services["postgres"]["depends_on"] == []
    assert all(isinstance(entry.get("depends_on", []), list) for entry in services.values())
    assert [phase["name"] for phase in document["x-ollamatopo"]["phases"]] == [
        name for name, _ in seed.phases]


def test_a_healthy_dependency_no_phase_gives_is_refused(seed: SeedTopology) -> None:
    grafana = next(service for service in seed.services if service.name == "grafana")
    odd = dataclasses.replace(grafana, after={"prometheus": "healthy"})
    with pytest.raises(ValueError, match="grafana"):
        depends_on(seed, odd)


def test_needs_placement_endpoints_networks(document: dict[str, Any]) -> None:
    services = document["services"]
    assert services["ollama-node-1"]["environment"] == {
        "STANDIN_DELAY": "4", "STANDIN_NEEDS": "postgres:8080 redis:8080 minio:8080"}
    # a `started` dependency need not answer yet: not checked
    assert "STANDIN_NEEDS" not in services["ollama-node-2"]["environment"]
    constraints = {name: entry["deploy"].get("placement", {}).get("constraints")
                   for name, entry in services.items()}
    assert constraints["postgres"] == ["node.labels.role == data"]
    assert constraints["ollama-node-3"] == ["node.labels.role == gpu"]
    assert constraints["grafana"] is None and role_of("jaeger") is None
    assert {entry["deploy"]["endpoint_mode"] for entry in services.values()} == {"dnsrr"}
    assert services["ollama-node-2"]["x-ollamatopo"] == {"optional": True}
    for network in document["networks"].values():
        assert network["driver"] == "overlay" and network["attachable"] is True
        assert network["ipam"]["config"][0]["subnet"].startswith("10.97.")


def test_lone_services_are_measured_once_per_delay_healthcheck_and_node(
        seed: SeedTopology) -> None:
    keys = lone_keys(seed, seed_healthchecks(seed.names), SEED_DELAYS)
    assert keys["postgres"] == keys["minio"] and keys["ollama-node-2"] == keys["ollama-node-3"]
    assert len(set(keys.values())) == 6


def test_lone_services_are_measured_as_deployed_and_as_written() -> None:
    written = deployed_healthcheck(NODE_HEALTHCHECK, as_written=True, has_start_interval=False)
    ours = deployed_healthcheck(NODE_HEALTHCHECK, as_written=False, has_start_interval=False)
    assert (written["Interval"], written["Retries"]) == (15_000_000_000, 2)
    assert (ours["Interval"], ours["Retries"]) == (1_000_000_000, 30)


def test_the_table_says_why_it_was_not_measured() -> None:
    assert "not measured: skipped: no swarm bed: not root" in render_swarm(
        {"error": "skipped: no swarm bed: not root"})
