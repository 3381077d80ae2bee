"""Published ports on the real two-node swarm of tests/swarm_bed.py (issue 14): a host-mode
port answers on the node its task was placed on (the bed's worker, 10.99.0.2); an ingress
port with a fixed published port is the service's, whatever its replicas; a fixed
host-mode port with replicas that could share a node is refused before anything is made.
The ingress routing mesh itself does not answer on these machines (no IPVS:
docs/swarm.md), so only its spec is checked."""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request

import pytest

from tests.test_swarm_up import SwarmProject, on_swarm, roles_of

pytest_plugins = ["tests.swarm_bed"]
pytestmark = pytest.mark.swarm
__all__ = ["on_swarm"]  # the fixture, used by name

PORTS = """
services:
  web:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    ports: [{target: 8080, published: "HOSTPORT", mode: host}]
    deploy:
      placement: {constraints: [node.labels.role == gpu]}
  api:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    ports: ["INGRESSPORT:8080"]
    deploy:
      replicas: 2
      placement: {constraints: [node.labels.role == gpu]}
"""
# Nothing else listens in the worker's namespace but its dockerd; the manager's engine is
# the host's, where the ingress port is bound: a port from the dynamic range, by chance.
PORT_RANGE = (20000, 29999)
ANSWER_TIMEOUT_S = 30.0


def _health(address: str, port: int) -> int | None:
    """The status of GET /health, None while nothing answers (no proxy in between)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}:{port}/health", timeout=2) as answer:
            return int(answer.status)
    except (urllib.error.URLError, OSError):
        return None


def test_a_host_mode_port_answers_on_the_node_of_its_task(on_swarm: SwarmProject) -> None:
    host_port, ingress_port = random.sample(range(*PORT_RANGE), 2)
    plan = PORTS.replace("HOSTPORT", str(host_port)).replace("INGRESSPORT",
                                                              str(ingress_port))
    up = on_swarm.run("up", plan=plan)
    assert up.code == 0, up.stderr
    services = on_swarm.services()
    assert roles_of(on_swarm, "web") == ["gpu"]  # the worker
    assert services["web"].attrs["Endpoint"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": host_port,
         "PublishMode": "host"}]
    # one engine would refuse two replicas of one fixed host port; a swarm publishes it once
    assert roles_of(on_swarm, "api") == ["gpu", "gpu"]
    (ingress,) = services["api"].attrs["Endpoint"]["Ports"]
    assert (ingress["PublishedPort"], ingress["PublishMode"]) == (ingress_port, "ingress")
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while (status := _health(on_swarm.bed.worker.address, host_port)) is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


def test_a_fixed_host_mode_port_with_replicas_that_could_share_a_node_is_refused(
        on_swarm: SwarmProject) -> None:
    plan = PORTS.replace("HOSTPORT", "8080").replace("INGRESSPORT", "8081").replace(
        "      placement: {constraints: [node.labels.role == gpu]}\n  api:",
        "      replicas: 2\n      placement: {constraints: [node.labels.role == gpu]}\n  api:")
    refused = on_swarm.run("up", plan=plan)
    assert refused.code == 2, refused.stderr
    assert "services.web.ports[0]" in refused.stderr
    assert "max_replicas_per_node: 1" in refused.stderr
    assert on_swarm.services() == {}
    # The load for a swarm leaves replicas' ports to the swarm's check, which `up` makes.
    printed = on_swarm.run("config", plan=plan)
    assert printed.code == 0, printed.stderr
    assert "mode: host" in printed.stdout and "replicas: 2" in printed.stdout
