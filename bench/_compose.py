"""The docker-compose file equivalent to the seed plan: same stand-ins, ports and graph.

Pure: a topology and its ports in, a compose document (a dict) out. The file format is
2.4, which docker-compose v1 (Debian's 1.29) needs for `depends_on` conditions and
`start_period`, and which compose v2 reads too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bench._plans import (
    HEALTH_PATH,
    SEED_DELAYS,
    STANDIN_PORT,
    TARGET_LABEL,
    SeedTopology,
)

COMPOSE_FORMAT = "2.4"
CONDITIONS = {"healthy": "service_healthy", "started": "service_started"}
HEALTH_COMMAND = ["CMD", "wget", "-q", "-O", "/dev/null",
                  f"http://127.0.0.1:{STANDIN_PORT}{HEALTH_PATH}"]


@dataclass(frozen=True)
class Healthcheck:
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float

    def compose(self) -> dict[str, Any]:
        return {"test": list(HEALTH_COMMAND), "interval": _duration(self.interval_s),
                "timeout": _duration(self.timeout_s), "retries": self.retries,
                "start_period": _duration(self.start_period_s)}


def _duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


# The seed's compose file: the nodes had interval 15 s, timeout 3 s, retries 2 and
# start_period 20 s (the implementation guide); the other services 10 s and 10 s.
NODE_HEALTHCHECK = Healthcheck(interval_s=15, timeout_s=3, retries=2, start_period_s=20)
OTHER_HEALTHCHECK = Healthcheck(interval_s=10, timeout_s=5, retries=3, start_period_s=10)


def seed_healthchecks(names: list[str]) -> dict[str, Healthcheck]:
    return {name: NODE_HEALTHCHECK if name.startswith("ollama-node") else OTHER_HEALTHCHECK
            for name in names}


def fast_healthchecks(names: list[str], interval_s: float = 1.0) -> dict[str, Healthcheck]:
    """The seed's healthchecks with the interval (and timeout) brought down to 1 s."""
    return {name: replace(check, interval_s=interval_s, timeout_s=min(check.timeout_s,
                                                                      interval_s))
            for name, check in seed_healthchecks(names).items()}


def compose_file(topology: SeedTopology, *, image: str, ports: Mapping[str, int],
                 labels: Mapping[str, str], healthchecks: Mapping[str, Healthcheck],
                 delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for service in topology.services:
        entry: dict[str, Any] = {
            "image": image,
            "environment": {"STANDIN_DELAY": f"{delays.get(service.name, 0.0):g}"},
            "ports": [f"127.0.0.1:{ports[service.name]}:{STANDIN_PORT}"],
            "networks": list(service.networks) or ["default"],
            "labels": {**labels, TARGET_LABEL: service.name},
            "stop_grace_period": "2s",
            "healthcheck": healthchecks[service.name].compose(),
        }
        if service.mounts:
            entry["volumes"] = [f"{volume}:{target}" for volume, target in service.mounts]
        if service.after:
            entry["depends_on"] = {dependency: {"condition": CONDITIONS[condition]}
                                   for dependency, condition in service.after.items()}
        services[service.name] = entry
    document: dict[str, Any] = {"version": COMPOSE_FORMAT, "services": services}
    if topology.networks:
        document["networks"] = {name: {"labels": dict(labels)} for name in topology.networks}
    if topology.volumes:
        document["volumes"] = {name: {"labels": dict(labels)} for name in topology.volumes}
    return document
