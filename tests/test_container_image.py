"""The container image of ollamatopo itself (the Dockerfile), built offline and run.

The image is built once for this module, under a tag of its own, FROM the offline Debian
base of images/build.py, with the wheelhouse that images/wheels.py makes on the host (no
index is reached inside the build). It is removed at the end. The CLI then runs inside it
with the host's Docker socket mounted and the host's network (http probes reach the ports
published on 127.0.0.1): `plan` of a small plan mounted read-only, then `up` of two
stand-ins as the image's unprivileged user in the socket's group, then `down` as root.
Every container made here carries this run's labels or its unique project's label and is
removed by label afterwards, also when a test fails.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LABEL

pytestmark = pytest.mark.docker

RUN_ID = uuid.uuid4().hex[:10]
LABELS = {"ollamatopo.test": "container-image", "ollamatopo.test-run": RUN_ID}
STANDIN = "ollamatopo-standin:latest"
SOCKET_IN_CONTAINER = "/var/run/docker.sock"
# never through a proxy: the only HTTP here goes to 127.0.0.1
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Two stand-ins, no bind mounts (a plan's paths would be resolved on the host).
PLAN = f"""
project: PROJECT
services:
  api:
    image: {STANDIN}
    ports: ["127.0.0.1::8080"]
    labels: {{selftest.run: "{RUN_ID}"}}
    ready: {{http: {{port: 8080, path: /health, status: 200}}, timeout: 60s}}
  worker:
    image: {STANDIN}
    after: {{api: healthy}}
    environment: {{STANDIN_DELAY: "0.3"}}
    labels: {{selftest.run: "{RUN_ID}"}}
    ready: {{exec: [test, -f, /tmp/ready], timeout: 60s}}
phases:
  - {{name: only, services: [api, worker]}}
"""


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def host_socket(client: Any) -> str:
    """The path of the engine's unix socket on this host, to mount into the container."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the image test mounts the engine's unix socket; DOCKER_HOST is {host}")
    return host.removeprefix("unix://")


@dataclass
class SelfImage:
    client: Any
    reference: str
    socket: str
    plans: Path

    def run(self, *args: str, user: str | None = None, timeout: float = 240) -> Ran:
        """Run the image's entry point (`python -m ollamatopo ARGS`) to its end."""
        options: dict[str, Any] = {}
        if user is not None:
            options["user"] = user
            options["group_add"] = [str(os.stat(self.socket).st_gid)]
        container = self.client.containers.run(
            self.reference, list(args), detach=True, labels=LABELS, network_mode="host",
            volumes={self.socket: {"bind": SOCKET_IN_CONTAINER, "mode": "rw"},
                     str(self.plans): {"bind": "/plans", "mode": "ro"}},
            **options)
        try:
            code = int(container.wait(timeout=timeout)["StatusCode"])
            stdout = container.logs(stdout=True, stderr=False).decode()
            stderr = container.logs(stdout=False, stderr=True).decode()
        finally:
            container.remove(force=True)
        return Ran(code, stdout, stderr)


def remove_labelled(client: Any, labels: dict[str, str]) -> None:
    wanted = {"label": [f"{key}={value}" for key, value in labels.items()]}
    for container in client.containers.list(all=True, filters=wanted):
        container.remove(force=True)
    for network in client.networks.list(filters=wanted):
        network.remove()
    for volume in client.volumes.list(filters=wanted):
        volume.remove(force=True)


@pytest.fixture(scope="module")
def self_image(docker_client: Any, standin: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelfImage]:
    from wheels import build, remove  # images/wheels.py

    socket_path = host_socket(docker_client)
    plans = tmp_path_factory.mktemp("plans")
    plans.chmod(0o755)  # readable by the image's unprivileged user
    reference = f"ollamatopo-selftest:{RUN_ID}"
    try:
        made = build(docker_client, reference, labels=LABELS, cached=False)
        base = docker_client.images.get("ollamatopo-debian:bookworm").attrs["Size"]
        print(f"\nbuilt {reference} in {made.seconds:.1f} s (wheelhouse "
              f"{made.wheelhouse_seconds:.1f} s): {made.size / 1e6:.0f} MB, "
              f"{(made.size - base) / 1e6:.1f} MB over the base", file=sys.stderr)
        yield SelfImage(docker_client, reference, socket_path, plans)
    finally:
        remove_labelled(docker_client, LABELS)
        remove(docker_client, reference)
        for image in docker_client.images.list(all=True,
                                               filters={"label": f"ollamatopo.test-run={RUN_ID}"}):
            remove(docker_client, image.id)


@pytest.fixture
def project_name(docker_client: Any) -> Iterator[str]:
    name = f"otimg{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        remove_labelled(docker_client, {LABEL: name})


def write_plan(image: SelfImage, project: str) -> str:
    path = image.plans / f"{project}.yaml"
    path.write_text(PLAN.replace("PROJECT", project), encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return f"/plans/{path.name}"


def http_status(port: int, path: str) -> int:
    try:
        with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return int(answer.status)
    except OSError:
        return 0


def test_the_image_is_built_offline_as_specified(self_image: SelfImage) -> None:
    image = self_image.client.images.get(self_image.reference)
    config = image.attrs["Config"]
    assert config["Entrypoint"] == ["/opt/ollamatopo/.venv/bin/python", "-m", "ollamatopo"]
    assert image.labels["org.opencontainers.image.title"] == "ollamatopo"
    assert image.labels["ollamatopo.test-run"] == RUN_ID
    assert "OLLAMATOPO_STATE_DIR=/var/lib/ollamatopo" in config["Env"]
    # installed from the wheelhouse only: no pip, no wheelhouse left in the image
    found = self_image.client.containers.run(
        self_image.reference, ["-c", "import importlib.util, os, ollamatopo; print("
                               "ollamatopo.__file__, importlib.util.find_spec('pip'), "
                               "os.path.exists('/wheelhouse'))"],
        entrypoint=["/opt/ollamatopo/.venv/bin/python"], remove=True, network_mode="none",
        labels=LABELS).decode().split()
    assert found[0].startswith("/opt/ollamatopo/.venv/lib/python3")
    assert found[1:] == ["None", "False"]


def test_plan_runs_inside_the_image(self_image: SelfImage, project_name: str) -> None:
    plan = write_plan(self_image, project_name)
    ran = self_image.run("plan", "--plan", plan, "--json")
    assert ran.code == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["project"] == project_name
    assert set(view["services"]) == {"api", "worker"}
    assert view["services"]["worker"]["after"] == {"api": "healthy"}

    broken = self_image.run("plan", "--plan", "/plans/missing.yaml")
    assert broken.code == 2
    assert "missing.yaml" in broken.stderr


def test_up_and_down_from_inside_the_image(self_image: SelfImage, project_name: str) -> None:
    client = self_image.client
    plan = write_plan(self_image, project_name)

    started = time.monotonic()
    up = self_image.run("up", "--plan", plan, "--log-format", "json", user="ollamatopo")
    up_seconds = time.monotonic() - started
    assert up.code == 0, f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    print(f"\nup from inside the image: {up_seconds:.1f} s", file=sys.stderr)
    reports = [event for event in up.events() if event["event"] == "report written"]
    assert reports and reports[-1]["path"].startswith(f"/var/lib/ollamatopo/{project_name}/")

    containers = {c.labels["ollamatopo.service"]: c for c in client.containers.list(
        all=True, filters={"label": f"{LABEL}={project_name}"})}
    assert set(containers) == {"api", "worker"}
    for container in containers.values():
        container.reload()
        assert container.status == "running"
        assert container.labels["selftest.run"] == RUN_ID
    # ready, seen from the host
    api = containers["api"]
    port = int(api.ports["8080/tcp"][0]["HostPort"])
    assert http_status(port, "/health") == 200
    assert containers["worker"].exec_run(["test", "-f", "/tmp/ready"])[0] == 0

    status = self_image.run("status", "--plan", plan, "--json", user="ollamatopo")
    assert status.code == 0, status.stderr
    assert '"ready": false' not in status.stdout and '"ready": true' in status.stdout

    down = self_image.run("down", "--plan", plan, "--log-format", "json")
    assert down.code == 0, f"{down.stdout[-3000:]}\n{down.stderr[-3000:]}"
    assert client.containers.list(all=True, filters={"label": f"{LABEL}={project_name}"}) == []
    assert client.networks.list(filters={"label": f"{LABEL}={project_name}"}) == []
