"""The compose file the benchmark generates from the seed plan (no Docker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bench._compose import (
    HEALTH_COMMAND,
    Healthcheck,
    compose_file,
    fast_healthchecks,
    seed_healthchecks,
)
from bench._plans import SeedTopology, load_seed

REPO = Path(__file__).resolve().parents[2]
LABELS = {"ollamatopo-bench": "1"}


@pytest.fixture(scope="module")
def seed() -> SeedTopology:
    return load_seed(REPO / "config" / "topology.yaml")


@pytest.fixture(scope="module")
def document(seed: SeedTopology) -> dict[str, Any]:
    ports = {name: 21000 + index for index, name in enumerate(seed.names)}
    return compose_file(seed, image="standin:test", ports=ports, labels=LABELS,
                        healthchecks=seed_healthchecks(seed.names))


def test_format_2_4_with_every_service_network_and_volume(seed: SeedTopology,
                                                          document: dict[str, Any]) -> None:
    assert document["version"] == "2.4"
    services = document["services"]
    assert list(services) == seed.names
    assert set(document["networks"]) == set(seed.networks)
    assert set(document["volumes"]) == set(seed.volumes)


def test_depends_on_follows_the_plans_conditions(document: dict[str, Any]) -> None:
    services = document["services"]
    assert services["ollama-node-1"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"}}
    assert services["load-balancer"]["depends_on"] == {
        "ollama-node-1": {"condition": "service_started"}}
    assert "depends_on" not in services["jaeger"]


def test_same_stand_in_ports_and_delays(document: dict[str, Any]) -> None:
    services = document["services"]
    postgres = services["postgres"]
    assert postgres["image"] == "standin:test"
    assert postgres["ports"] == ["127.0.0.1:21000:8080"]
    assert postgres["environment"] == {"STANDIN_DELAY": "3"}
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]


def test_seed_healthchecks_gate_on_10_to_15_second_intervals(
        document: dict[str, Any]) -> None:
    services = document["services"]
    assert services["postgres"]["healthcheck"] == {
        "test": HEALTH_COMMAND, "interval": "10s", "timeout": "5s", "retries": 3,
        "start_period": "10s"}
    assert services["ollama-node-2"]["healthcheck"]["interval"] == "15s"
    assert services["ollama-node-2"]["healthcheck"]["start_period"] == "20s"
    assert HEALTH_COMMAND[:2] == ["CMD", "wget"]


def test_fast_healthchecks_change_only_interval_and_timeout(seed: SeedTopology) -> None:
    fast = fast_healthchecks(seed.names)
    assert fast["ollama-node-1"] == Healthcheck(interval_s=1, timeout_s=1, retries=2,
                                                start_period_s=20)
    assert Healthcheck(0.5, 0.25, 1, 0).compose()["interval"] == "500ms"


def test_the_document_is_plain_yaml(document: dict[str, Any]) -> None:
    assert yaml.safe_load(yaml.safe_dump(document)) == document
