"""`up`, `status` and `down --backend swarm` on the real two-node swarm of tests/swarm_bed.py
(issue 14): services made in dependency order, each after its dependencies are ready by
the swarm's own account (tasks running once healthy), placed by node label; a second `up`
changes nothing, a changed spec updates that service alone; a failed run removes what it
made; `down` removes services and networks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Result
from tests.swarm_bed import SwarmBed

pytest_plugins = ["tests.swarm_bed"]
pytestmark = pytest.mark.swarm
PROBE_IMAGE = "ollamatopo-standin:latest"  # busybox's sh and nc

PLAN = """
services:
  db:
    image: ollamatopo-standin:latest
    environment: {STANDIN_DELAY: "2"}
    healthcheck: {disable: true}  # the stand-in image's own, too
    x-ollamatopo: {ready: {exec: [test, -f, /tmp/ready]}}
    deploy:
      placement: {constraints: [node.labels.role == data]}
  api:
    image: ollamatopo-standin:latest
    environment: {STANDIN_DELAY: "2", GENERATION: "GEN"}
    healthcheck: {disable: true}
    x-ollamatopo: {ready: {http: {port: 8080, path: /health}}}
    depends_on:
      db: {condition: service_healthy}
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
      placement: {constraints: [node.labels.role == gpu]}
"""

BROKEN = """
services:
  never:
    image: ollamatopo-standin:latest
    environment: {STANDIN_MODE: never}
    healthcheck: {test: [CMD, test, -f, /tmp/ready], interval: 1s, retries: 100,
                  start_period: 60s}
    x-ollamatopo: {ready: {none: true, timeout: 4s}}
"""


@dataclass
class SwarmProject:
    bed: SwarmBed
    name: str
    folder: Path

    def run(self, *args: str, plan: str = PLAN) -> Result:
        path = self.folder / "compose.yaml"
        path.write_text(plan, encoding="utf-8")
        command = [sys.executable, "-m", "ollamatopo", *args, "--backend", "swarm",
                   "-f", str(path), "-p", self.name]
        if args[0] in ("up", "down"):
            command += ["--log-format", "json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                              cwd=self.folder, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT),
                                   "OLLAMATOPO_STATE_DIR": str(self.folder / "state"),
                                   "OLLAMATOPO_SWARM_PROBE_IMAGE": PROBE_IMAGE})
        return Result(done.returncode, done.stdout, done.stderr)

    def services(self) -> dict[str, Any]:
        client = self.bed.client(self.bed.manager)
        found = client.services.list(filters={"label": f"ollamatopo.project={self.name}"})
        return {s.attrs["Spec"]["Labels"]["ollamatopo.service"]: s for s in found}

    def networks(self) -> list[Any]:
        client = self.bed.client(self.bed.manager)
        return list(client.networks.list(filters={"label": f"ollamatopo.project={self.name}"}))


@pytest.fixture
def on_swarm(swarm_bed: SwarmBed, tmp_path: Path) -> Iterator[SwarmProject]:
    project = SwarmProject(swarm_bed, f"ots{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield project
    finally:  # by the project's label, also when the test failed
        for service in project.services().values():
            service.remove()
        client = swarm_bed.client(swarm_bed.manager)
        for prober in client.api.containers(all=True, filters={
                "label": f"ollamatopo.project={project.name}"}):
            client.api.remove_container(prober["Id"], force=True)
        for _ in range(100):  # the tasks' containers hold the networks until they stop
            if not client.api.containers(all=True, filters={"name": f"{project.name}_"}):
                break
            time.sleep(0.2)
        for network in project.networks():
            network.remove()


def roles_of(project: SwarmProject, service: str) -> list[str]:
    """The `role` label of the node of each of the service's tasks (both nodes of the bed
    have one hostname: the worker shares the host's)."""
    client = project.bed.client(project.bed.manager)
    roles = {node.id: node.attrs["Spec"]["Labels"].get("role") for node in client.nodes.list()}
    return sorted(roles[task["NodeID"]] for task in project.services()[service].tasks(
        filters={"desired-state": "running"}))


def test_up_places_orders_and_waits_then_keeps_updates_and_takes_down(
        on_swarm: SwarmProject) -> None:
    first = on_swarm.run("up", plan=PLAN.replace("GEN", "1"))
    assert first.code == 0, first.stderr
    assert set(on_swarm.services()) == {"db", "api"}
    assert roles_of(on_swarm, "db") == ["data"]  # the manager
    assert roles_of(on_swarm, "api") == ["gpu", "gpu"]  # the worker, two replicas
    # api is made only once db is ready by the swarm's account (its task running, healthy)
    db_ready = first.named("service healthy", "db")[0]["elapsed_s"]
    api_made = first.named("container created", "api")[0]["elapsed_s"]
    assert api_made >= db_ready
    # Without healthchecks the swarm says `running` at once; readiness is ollamatopo's own:
    # api's HTTP probe through the overlay, db's command run in its container on the
    # manager. Both stand-ins answer 2 s after their start, not before.
    for service in ("api", "db"):
        ready = first.named("service healthy", service)[0]
        assert 2.0 <= ready["start_to_ready_s"] < 6.0, ready

    for _ in range(30):  # status is the swarm's own account
        status = on_swarm.run("status", "--json")
        assert status.code == 0, status.stderr
        rows = {row["service"]: row for row in json.loads(status.stdout)["services"]}
        if rows["api"]["ready"]:
            break
        time.sleep(0.5)
    assert rows["api"]["state"] == "running 2/2" and rows["db"]["ready"], rows

    again = on_swarm.run("up", plan=PLAN.replace("GEN", "1"))
    assert again.code == 0, again.stderr
    assert not again.named("container created")  # nothing made or updated
    versions = {name: s.attrs["Version"]["Index"] for name, s in on_swarm.services().items()}

    changed = on_swarm.run("up", plan=PLAN.replace("GEN", "2"))
    assert changed.code == 0, changed.stderr
    after = {name: s.attrs["Version"]["Index"] for name, s in on_swarm.services().items()}
    assert after["db"] == versions["db"] and after["api"] > versions["api"]

    assert not on_swarm.bed.client(on_swarm.bed.manager).containers.list(
        all=True, filters={"label": "ollamatopo.prober"})  # the probers went with the run

    scaled = on_swarm.run("scale", "api=3", plan=PLAN.replace("GEN", "2"))
    assert scaled.code == 0, scaled.stderr
    assert roles_of(on_swarm, "api") == ["gpu", "gpu", "gpu"]  # the swarm's own replicas
    assert set(on_swarm.services()) == {"db", "api"}
    down = on_swarm.run("down")
    assert down.code == 0, down.stderr
    assert on_swarm.services() == {} and on_swarm.networks() == [], down.stdout


def test_a_service_never_ready_fails_the_run_and_what_it_made_is_removed(
        on_swarm: SwarmProject) -> None:
    failed = on_swarm.run("up", plan=BROKEN)
    assert failed.code == 1
    assert "never" in failed.stderr and "not ready after 4s" in failed.stderr
    assert on_swarm.services() == {}  # rolled back


def test_keys_the_swarm_backend_does_not_carry_out_are_named(on_swarm: SwarmProject) -> None:
    refused = on_swarm.run("up", plan=PLAN + "    shm_size: 64m\n")
    assert refused.code == 2
    assert "services.api.shm_size" in refused.stderr
    assert "not supported yet on a swarm" in refused.stderr
    assert on_swarm.services() == {}
