"""The engine's floor for the seed topology: the benchmark drives it itself, through the SDK.

No interpreter start, no plan, no probes of its own: the networks and volumes are made at
once, every container is created at once on them, the roots start at once, and each
other service starts the moment its `after:` conditions hold, as the benchmark's poller
sees them (its 200, every 10 ms) or as its dependency's start returns. This is what the
engine gives any orchestrator on this graph with every step as early as the graph allows;
its excess over the graph bound is the engine's (concurrent starts, two networks on one
container), not ollamatopo's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._docker import BenchError, Engine
from bench._plans import SEED_DELAYS, SeedService, SeedTopology
from bench._poller import ReadinessPoller
from bench._ports import loopback_targets, seed_ports
from bench._stats import all_ready

READY_TIMEOUT_S = 120.0
WATCH_S = 0.005  # how often a waiting service looks at the poller's findings


def run_replay(engine: Engine, image: str, topology: SeedTopology,
               delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    ports = seed_ports(topology)
    prefix = f"bench-{engine.session}-replay"
    started = {service.name: threading.Event() for service in topology.services}
    poller = ReadinessPoller(loopback_targets(ports), gated=True)
    failures: list[str] = []

    def healthy(name: str) -> bool:
        return poller.states[name].first_ready is not None

    def bring_up(service: SeedService, networks: Mapping[str, str],
                 volumes: Mapping[str, str]) -> None:
        names = [networks[key] for key in service.networks]
        container = engine.create_standin(
            f"{prefix}-{service.name}", image=image, network=names[0],
            more_networks=names[1:], host_port=ports[service.name],
            delay_s=delays.get(service.name, 0.0), target=service.name,
            volumes={volumes[volume]: path for volume, path in service.mounts})
        deadline = time.monotonic() + READY_TIMEOUT_S
        for dependency, condition in service.after.items():
            while not (started[dependency].is_set() if condition == "started"
                       else healthy(dependency)):
                if time.monotonic() > deadline or failures:
                    raise BenchError(f"replay: {service.name} waited too long for "
                                     f"{dependency}")
                time.sleep(WATCH_S)
        engine.start(container)
        started[service.name].set()

    try:
        with poller, engine.watch_starts(poller.open_gate), \
                ThreadPoolExecutor(max_workers=16) as pool:
            began = time.time()
            network_ids = list(pool.map(lambda key: engine.create_network(f"{prefix}-{key}"),
                                        topology.networks))
            volume_names = list(pool.map(lambda key: engine.create_volume(f"{prefix}-{key}"),
                                         topology.volumes))
            made = time.time()
            networks = dict(zip(topology.networks, network_ids, strict=True))
            volumes = dict(zip(topology.volumes, volume_names, strict=True))
            futures = [pool.submit(bring_up, service, networks, volumes)
                       for service in topology.services]
            for future in futures:
                try:
                    future.result(timeout=READY_TIMEOUT_S)
                except Exception as error:
                    failures.append(str(error))
                    raise
            finished = poller.wait(READY_TIMEOUT_S)
        if not finished:
            raise BenchError("replay: not every stand-in answered /health")
    finally:
        engine.sweep()
    first_ready = poller.first_ready()
    return {
        "all_ready_s": all_ready(first_ready, began),
        "networks_and_volumes_s": made - began,
        "services": {name: None if at is None else at - began
                     for name, at in first_ready.items()},
    }
