"""The benchmark's plans: the seed graph with stand-ins, and one phase of N (no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench._plans import (
    SEED_DELAYS,
    TARGET_LABEL,
    SeedTopology,
    load_seed,
    pick_subnet,
    scale_addresses,
    scale_names,
    scale_plan,
    seed_plan,
)
from ollamatopo.plan._loading import load_plan

REPO = Path(__file__).resolve().parents[2]
LABELS = {"ollamatopo-bench": "1", "ollamatopo-bench.session": "t"}


@pytest.fixture(scope="module")
def seed() -> SeedTopology:
    return load_seed(REPO / "config" / "topology.yaml")


def test_the_seed_has_ten_services_four_phases_and_its_graph(seed: SeedTopology) -> None:
    assert seed.names == list(SEED_DELAYS)
    assert [name for name, _ in seed.phases] == ["foundation", "core", "workers", "edge"]
    graph = seed.dependencies()
    assert graph["ollama-node-1"] == {"postgres": "healthy", "redis": "healthy",
                                      "minio": "healthy"}
    assert graph["ollama-node-2"] == {"ollama-node-1": "started"}
    assert graph["grafana"] == {"prometheus": "started"}
    assert graph["jaeger"] == {} and graph["prometheus"] == {}


def _write(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_seed_plan_loads_in_ollamatopo_with_the_same_graph(seed: SeedTopology,
                                                          tmp_path: Path) -> None:
    ports = {name: 20000 + index for index, name in enumerate(seed.names)}
    document = seed_plan(seed, project="bench-seed-t", image="standin:test", ports=ports,
                         labels=LABELS)
    loaded = load_plan(_write(tmp_path, document), {})
    plan = loaded.plan
    assert {name: {d: c.value for d, c in plan.dependencies(name).items()}
            for name in plan.services} == seed.dependencies()
    assert [phase.name for phase in plan.phases] == [name for name, _ in seed.phases]
    postgres = plan.services["postgres"]
    assert postgres.image == "standin:test"
    assert postgres.environment["STANDIN_DELAY"] == "3"
    assert [str(port) for port in postgres.ports] == ["127.0.0.1:20000:8080/tcp"]
    assert postgres.ready.http is not None and postgres.ready.http.path == "/health"
    assert postgres.labels[TARGET_LABEL] == "postgres"
    assert plan.services["ollama-node-2"].optional
    assert plan.services["ollama-node-1"].deploy.resources.limits.cpus is None
    assert plan.networks["infra-net"].labels == LABELS


def test_scale_names_sort_in_order() -> None:
    assert scale_names(3) == ["s001", "s002", "s003"]
    assert scale_names(1000)[-1] == "s1000"


def test_scale_addresses_skip_the_gateway() -> None:
    assert scale_addresses("10.213.0.0/24", 3) == ["10.213.0.2", "10.213.0.3", "10.213.0.4"]
    with pytest.raises(ValueError, match="fewer than"):
        scale_addresses("10.213.0.0/30", 2)


def test_pick_subnet_avoids_what_is_taken_and_grows_with_n() -> None:
    assert pick_subnet(10, []) == "10.213.0.0/28"
    assert pick_subnet(200, ["10.213.0.0/24"]) == "10.213.1.0/24"
    with pytest.raises(ValueError, match="no free subnet"):
        pick_subnet(200, ["10.0.0.0/8"])


def test_scale_plan_is_one_phase_probed_at_fixed_addresses(tmp_path: Path) -> None:
    document = scale_plan(5, project="bench-scale-5", image="standin:test",
                          subnet="10.213.0.0/24", labels=LABELS)
    plan = load_plan(_write(tmp_path, document), {}).plan
    assert [phase.name for phase in plan.phases] == ["scale"]
    assert len(plan.services) == 5
    first = plan.services["s001"]
    assert first.ports == []
    assert first.networks["scale-net"].ipv4_address == "10.213.0.2"
    assert first.ready.http is not None and first.ready.http.port == 8080
    assert plan.networks["scale-net"].subnet == "10.213.0.0/24"
