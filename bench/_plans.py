"""The plans the benchmark runs: the seed topology with stand-ins, and one phase of N.

Pure data in, data out: the seed's graph is read from config/topology.yaml through
ollamatopo's own loader, and every plan comes back as a dict ready to be written as YAML.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A tenth of the seed's startup figures (issue 4), in seconds.
SEED_DELAYS: Mapping[str, float] = {
    "postgres": 3.0, "redis": 1.0, "minio": 3.0, "ollama-node-1": 4.0, "prometheus": 2.0,
    "ollama-node-2": 3.0, "ollama-node-3": 3.0, "load-balancer": 1.0, "grafana": 2.0,
    "jaeger": 1.0,
}
SEED_PLAN = Path("config/topology.yaml")
# The required secrets of the seed plan; the benchmark only reads its graph.
DUMMY_SECRETS: Mapping[str, str] = {
    "JWT_SECRET": "bench", "MINIO_ROOT_USER": "bench", "MINIO_ROOT_PASSWORD": "bench-bench",
}
STANDIN_PORT = 8080
HEALTH_PATH = "/health"
TARGET_LABEL = "ollamatopo-bench.target"  # which poller target a container answers for


@dataclass(frozen=True)
class SeedService:
    name: str
    phase: str
    after: Mapping[str, str]  # dependency -> "started" | "healthy"
    optional: bool
    networks: tuple[str, ...]
    mounts: tuple[tuple[str, str], ...]  # (named volume, target path)


@dataclass(frozen=True)
class SeedTopology:
    """The shape of the seed plan: phases, the `after:` graph, networks and volumes."""

    services: tuple[SeedService, ...]
    phases: tuple[tuple[str, tuple[str, ...]], ...]
    networks: tuple[str, ...]
    volumes: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [service.name for service in self.services]

    def dependencies(self) -> dict[str, dict[str, str]]:
        return {service.name: dict(service.after) for service in self.services}


def load_seed(path: Path = SEED_PLAN) -> SeedTopology:
    """The seed plan's graph, as ollamatopo itself resolves it (phase defaults included)."""
    from ollamatopo.plan._loading import load_plan

    plan = load_plan(path, dict(DUMMY_SECRETS)).plan
    services = tuple(
        SeedService(
            name=name,
            phase=plan.phase_of(name),
            after={dep: condition.value for dep, condition in plan.dependencies(name).items()},
            optional=spec.optional,
            networks=tuple(spec.networks),
            mounts=tuple((mount.source, mount.target) for mount in spec.volumes if mount.named),
        )
        for name, spec in plan.ordered_services())
    return SeedTopology(
        services=services,
        phases=tuple((phase.name, tuple(phase.services)) for phase in plan.phases),
        networks=tuple(plan.networks),
        volumes=tuple(plan.volumes),
    )


def _delay_text(seconds: float) -> str:
    return f"{seconds:g}"


def seed_plan(topology: SeedTopology, *, project: str, image: str, ports: Mapping[str, int],
              labels: Mapping[str, str], delays: Mapping[str, float] = SEED_DELAYS
              ) -> dict[str, Any]:
    """An ollamatopo plan: the seed's graph with every image replaced by the stand-in.

    Each service publishes the stand-in's port on 127.0.0.1 at `ports[name]` and is
    probed over HTTP there; every dependency is written out as an explicit `after:`,
    so the graph is the seed's whatever the phase defaults would be.
    """
    services: dict[str, Any] = {}
    for service in topology.services:
        services[service.name] = {
            "image": image,
            "environment": {"STANDIN_DELAY": _delay_text(delays.get(service.name, 0.0))},
            "ports": [f"127.0.0.1:{ports[service.name]}:{STANDIN_PORT}"],
            "networks": list(service.networks),
            "volumes": [f"{volume}:{target}" for volume, target in service.mounts],
            "labels": {**labels, TARGET_LABEL: service.name},
            "stop_grace_period": "2s",
            "ready": {"http": {"port": STANDIN_PORT, "path": HEALTH_PATH}, "timeout": "60s"},
            "after": dict(service.after),
            "optional": service.optional,
        }
    return {
        "project": project,
        "networks": {name: {"labels": dict(labels)} for name in topology.networks},
        "volumes": {name: {"labels": dict(labels)} for name in topology.volumes},
        "services": services,
        "phases": [{"name": name, "services": list(members)} for name, members in topology.phases],
    }


def scale_names(n: int) -> list[str]:
    width = max(3, len(str(n)))
    return [f"s{i:0{width}d}" for i in range(1, n + 1)]


def scale_addresses(subnet: str, n: int) -> list[str]:
    """N container addresses in `subnet`, after its first host (the bridge's gateway)."""
    network = ipaddress.ip_network(subnet)
    hosts = network.hosts()
    next(hosts)  # the gateway
    addresses = []
    for _ in range(n):
        try:
            addresses.append(str(next(hosts)))
        except StopIteration:
            raise ValueError(f"{subnet} holds fewer than {n} containers") from None
    return addresses


def pick_subnet(n: int, taken: Iterable[str], pool: str = "10.213.0.0/16") -> str:
    """The first subnet of `pool` big enough for N containers that overlaps none taken."""
    prefix = 32
    while (2 ** (32 - prefix)) - 3 < n:  # network, gateway and broadcast addresses
        prefix -= 1
    used = [ipaddress.ip_network(item, strict=False) for item in taken]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=max(prefix, 16)):
        if not any(candidate.overlaps(other) for other in used
                   if other.version == candidate.version):
            return str(candidate)
    raise ValueError(f"no free subnet for {n} containers in {pool}")


SCALE_NETWORK = "scale-net"


def scale_plan(n: int, *, project: str, image: str, subnet: str,
               labels: Mapping[str, str]) -> dict[str, Any]:
    """One phase of N zero-delay stand-ins on one network, each at a fixed address,
    probed over HTTP at that address (no published ports)."""
    services: dict[str, Any] = {}
    for name, address in zip(scale_names(n), scale_addresses(subnet, n), strict=True):
        services[name] = {
            "image": image,
            "networks": {SCALE_NETWORK: {"ipv4_address": address}},
            "labels": {**labels, TARGET_LABEL: name},
            "stop_grace_period": "2s",
            "ready": {"http": {"port": STANDIN_PORT, "path": HEALTH_PATH}, "timeout": "120s"},
        }
    return {
        "project": project,
        "networks": {SCALE_NETWORK: {"subnet": subnet, "labels": dict(labels)}},
        "services": services,
        "phases": [{"name": "scale", "services": list(services)}],
    }
