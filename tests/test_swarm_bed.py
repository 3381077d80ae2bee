"""The two-node swarm test bed (tests/swarm_bed.py) does what the swarm backend will rely on:
both nodes Ready, placement by node label, an overlay where a task on the manager reaches a
task on the worker by `tasks.NAME`, a host-mode port on the worker at its address; and the
figures of a lone service (create to started, to healthy). The bed's teardown checks the
host afterwards (not in a swarm, docker0 present, the namespace gone) and fails if not."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bench._plans import HEALTH_PATH, SEED_DELAYS, STANDIN_PORT
from tests.swarm_bed import FIGURES, SwarmBed

pytest_plugins = ["tests.swarm_bed"]
pytestmark = pytest.mark.swarm

IMAGE = "ollamatopo-standin:latest"
HOST_PORT = 18080  # published in the worker's own namespace: no clash with the host's ports
TIMEOUT = 60.0
SECOND = 1_000_000_000  # the Engine API's durations are nanoseconds
# GET /health by name from inside the stand-in. Its busybox is static glibc: `wget` there
# segfaults (getaddrinfo wants NSS modules the image lacks), so busybox's own resolver
# (`nslookup`, asking the swarm's DNS at 127.0.0.11) and `nc` do it. The last "Address:"
# line is the answer (the first names the server).
HTTP_BY_NAME = (
    'address=$(nslookup "$1" | sed -n "s/^Address: *//p" | tail -n 1) && '
    f'printf "GET {HEALTH_PATH} HTTP/1.0\\r\\n\\r\\n" | nc -w 2 "$address" {STANDIN_PORT}')


class OnBed:
    """Services and overlay networks a test makes on the bed, named after it; removed after
    the test (services first: a network stays in use until their tasks are gone)."""

    def __init__(self, bed: SwarmBed) -> None:
        self.bed = bed
        self.client = bed.client(bed.manager)
        self.services: list[Any] = []
        self.networks: list[Any] = []

    def service(self, suffix: str, role: str, *, env: dict[str, str] | None = None,
                networks: tuple[str, ...] = (), ports: tuple[dict[str, Any], ...] = (),
                healthcheck: Any = None) -> Any:
        import docker.types

        # dnsrr: no virtual IPs here (no IPVS in this kernel), see docs/swarm-bed.md.
        service = self.client.services.create(
            IMAGE, name=self.bed.name(suffix), env=[f"{k}={v}" for k, v in (env or {}).items()],
            constraints=[f"node.labels.role == {role}"], networks=list(networks),
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr", ports=list(ports)),
            healthcheck=healthcheck, labels=self.bed.labels, container_labels=self.bed.labels)
        self.services.append(service)
        return service

    def overlay(self, suffix: str) -> Any:
        network = self.client.networks.create(self.bed.name(suffix), driver="overlay",
                                              attachable=True, labels=self.bed.labels)
        self.networks.append(network)
        return network

    def clean(self) -> None:
        for service in self.services:
            service.remove()
        for network in self.networks:
            _remove_when_free(network)
        self.client.close()


def _remove_when_free(network: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            network.remove()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def on_bed(swarm_bed: SwarmBed) -> Iterator[OnBed]:
    made = OnBed(swarm_bed)
    try:
        yield made
    finally:
        made.clean()


def running_task(service: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in service.tasks():
            if task["Status"]["State"] == "running":
                return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"{service.name}: no task running after {timeout:g} s: {service.tasks()}")


def role_of(bed: SwarmBed, task: dict[str, Any]) -> str:
    return next(role for role, node_id in bed.node_ids.items() if node_id == task["NodeID"])


def get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode().strip())


def test_both_nodes_are_ready_with_their_role_labels(swarm_bed: SwarmBed) -> None:
    client = swarm_bed.client(swarm_bed.manager)
    nodes = {node.id: node.attrs for node in client.nodes.list()}
    client.close()
    assert set(nodes) == set(swarm_bed.node_ids.values())
    for role, node_id in swarm_bed.node_ids.items():
        node = nodes[node_id]
        assert node["Status"]["State"] == "ready"
        assert node["Spec"]["Role"] == role
        assert node["Spec"]["Labels"]["role"] == {"manager": "data", "worker": "gpu"}[role]
    assert nodes[swarm_bed.node_ids["worker"]]["Status"]["Addr"] == swarm_bed.worker.address


def test_a_manager_task_reaches_a_worker_task_by_tasks_name_on_an_overlay(
        on_bed: OnBed) -> None:
    network = on_bed.overlay("overlay")
    server = on_bed.service("server", "gpu", networks=(network.name,))
    caller = on_bed.service("caller", "data", networks=(network.name,))
    server_task, caller_task = running_task(server), running_task(caller)
    assert role_of(on_bed.bed, server_task) == "worker"  # node.labels.role == gpu
    assert role_of(on_bed.bed, caller_task) == "manager"
    network.reload()
    assert network.attrs["IPAM"]["Config"][0]["Subnet"].startswith("10.97.")  # the bed's pool
    container = on_bed.client.containers.get(
        caller_task["Status"]["ContainerStatus"]["ContainerID"])
    deadline = time.monotonic() + TIMEOUT
    while True:  # the task is running once healthy, but DNS may lag a little
        code, output = container.exec_run(["sh", "-c", HTTP_BY_NAME, "-", f"tasks.{server.name}"])
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == 0, output.decode()
    assert output.decode().startswith("HTTP/1.1 200 OK") and output.decode().endswith("ok\n")


def test_a_host_mode_port_on_the_worker_answers_at_its_address(on_bed: OnBed) -> None:
    port = {"Protocol": "tcp", "TargetPort": STANDIN_PORT, "PublishedPort": HOST_PORT,
            "PublishMode": "host"}
    service = on_bed.service("hostport", "gpu", ports=(port,))
    assert role_of(on_bed.bed, running_task(service)) == "worker"
    url = f"http://{on_bed.bed.worker.address}:{HOST_PORT}{HEALTH_PATH}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            assert get(url) == "ok"
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize(("seed_name", "role"), [("ollama-node-1", "gpu"), ("postgres", "data")])
def test_a_lone_service_create_to_started_answering_and_healthy(
        on_bed: OnBed, seed_name: str, role: str) -> None:
    """The critical-path bound's unit on the swarm: one stand-in with its tenth of the seed's
    delay. Started: its container's StartedAt (both engines share this machine's clock).
    Answering: GET /health at its host-mode port, polled every 50 ms (what ollamatopo's own
    probe can see). Healthy: the task `running`, since the swarm keeps a task `starting`
    until its container's healthcheck passes (1 s interval here; a start period, because a
    swarm kills a task whose container turns unhealthy, and the image's own healthcheck has
    one retry and no start period)."""
    import docker.types

    delay = SEED_DELAYS[seed_name]
    node = on_bed.bed.worker if role == "gpu" else on_bed.bed.manager
    engine = on_bed.bed.client(node)
    # A port known before the task runs (a task's PortStatus shows only once it is running).
    published = HOST_PORT + 1 if role == "gpu" else _free_port()
    port = {"Protocol": "tcp", "TargetPort": STANDIN_PORT, "PublishedPort": published,
            "PublishMode": "host"}
    healthcheck = docker.types.Healthcheck(
        test=["CMD", "test", "-f", "/tmp/ready"], interval=SECOND, timeout=SECOND, retries=1,
        start_period=int(TIMEOUT * SECOND))
    created = time.time()
    service = on_bed.service(f"lone-{role}", role, env={"STANDIN_DELAY": f"{delay:g}"},
                             ports=(port,), healthcheck=healthcheck)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + TIMEOUT
    while not {"running", "answering"} <= set(seen) and time.monotonic() < deadline:
        for task in service.tasks():
            _observe(task, seen, created, engine)
        if "answering" not in seen:
            with contextlib.suppress(OSError):
                if get(f"http://{node.address}:{published}{HEALTH_PATH}", 0.5) == "ok":
                    seen["answering"] = time.time() - created
        time.sleep(0.05)
    engine.close()
    assert {"started", "running", "answering"} <= set(seen), f"{service.name}: {seen}"
    where = f"lone service on the {node.role} ({seed_name}, delay {delay:g} s)"
    FIGURES[f"{where}: create to started"] = seen["started"]
    FIGURES[f"{where}: create to answering HTTP"] = seen["answering"]
    FIGURES[f"{where}: create to healthy (1 s healthcheck)"] = seen["running"]
    print(f"{where}: first seen at {seen}")
    assert seen["started"] + delay <= seen["answering"] < seen["started"] + delay + 1.0
    assert seen["running"] < seen["answering"] + 2.0  # within the 1 s interval, and slack


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _observe(task: dict[str, Any], seen: dict[str, float], created: float, engine: Any) -> None:
    """Note when a task's states and its container's start are first seen."""
    status = task["Status"]
    seen.setdefault(status["State"], time.time() - created)
    container_id = status.get("ContainerStatus", {}).get("ContainerID")
    if container_id and "started" not in seen:
        attrs = engine.api.inspect_container(container_id)
        if attrs["State"]["Running"]:
            seen["started"] = _epoch(attrs["State"]["StartedAt"]) - created


def _epoch(stamp: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds, Z) as seconds since the epoch."""
    from datetime import datetime

    whole, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole + "+00:00").timestamp()
    return moment + float(f"0.{fraction or '0'}")
