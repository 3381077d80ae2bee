"""`up`, `status` and `down --backend swarm` on the real two-node swarm of tests/swarm_bed.py
(issue 14): services made in dependency order, each after its dependencies are ready by
the swarm's own account (tasks running once healthy), placed by node label; a second `up`
changes nothing, a changed spec updates that service alone; a failed run removes what it
made; `down` removes services and networks."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
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

    def command(self, *args: str, plan: str = PLAN) -> list[str]:
        path = self.folder / "compose.yaml"
        path.write_text(plan, encoding="utf-8")
        command = [sys.executable, "-m", "ollamatopo", *args, "--backend", "swarm",
                   "-f", str(path), "-p", self.name]
        if args[0] in ("up", "down"):
            command += ["--log-format", "json"]
        return command

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT),
                "OLLAMATOPO_STATE_DIR": str(self.folder / "state"),
                "OLLAMATOPO_SWARM_PROBE_IMAGE": PROBE_IMAGE}

    def run(self, *args: str, plan: str = PLAN) -> Result:
        done = subprocess.run(self.command(*args, plan=plan), capture_output=True, text=True,
                              timeout=180, cwd=self.folder, check=False, env=self.env)
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
        for _ in range(100):  # a task the swarm is still removing holds its network
            try:
                for network in project.networks():
                    network.remove()
                break
            except docker.errors.APIError:
                time.sleep(0.2)


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

    # The probers went with each run (this project's: the bed is shared by the session).
    left = on_swarm.bed.client(on_swarm.bed.manager).containers.list(all=True, filters={
        "label": [f"ollamatopo.project={on_swarm.name}", "ollamatopo.prober"]})
    assert not left, ([(c.short_id, c.status, c.labels) for c in left],
                      [run.named("prober left") for run in (first, again, changed)])

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


ZERO = """
services:
  db:
    image: ollamatopo-standin:latest
    deploy: {replicas: 0}
  api:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    depends_on:
      db: {condition: service_healthy}
"""


def test_a_service_with_zero_replicas_is_made_with_no_task_and_not_waited_for(
        on_swarm: SwarmProject) -> None:
    """As docker stack deploy makes it, and as compose's up does not wait for it."""
    up = on_swarm.run("up", plan=ZERO)
    assert up.code == 0, up.stderr
    services = on_swarm.services()
    assert set(services) == {"db", "api"}
    assert services["db"].attrs["Spec"]["Mode"] == {"Replicated": {"Replicas": 0}}
    assert services["db"].tasks() == []
    (ready,) = up.named("service healthy", "db")
    assert ready["replicas"] == 0
    assert up.named("container created", "api")[0]["elapsed_s"] >= ready["elapsed_s"]
    scaled = on_swarm.run("scale", "api=0", plan=ZERO)  # as `docker service scale api=0`
    assert scaled.code == 0, scaled.stderr
    assert on_swarm.services()["api"].attrs["Spec"]["Mode"] == {"Replicated": {"Replicas": 0}}
    down = on_swarm.run("down", plan=ZERO)
    assert down.code == 0, down.stderr
    assert on_swarm.services() == {}


def test_keys_the_swarm_backend_does_not_carry_out_are_named(on_swarm: SwarmProject) -> None:
    refused = on_swarm.run("up", plan=PLAN + "    shm_size: 64m\n")
    assert refused.code == 2
    assert "services.api.shm_size" in refused.stderr
    assert "not supported yet on a swarm" in refused.stderr
    assert on_swarm.services() == {}


def test_supervise_tells_a_failed_task_and_reprobes_dependents_once_it_is_back(
        on_swarm: SwarmProject) -> None:
    """`up --supervise --backend swarm`: the swarm restarts a killed task by itself; the
    daemon tells the failure, the service unhealthy, then healthy once its replacement
    runs and answers, and re-probes the dependent at once. SIGTERM leaves the services."""
    # stdout has one reader, the thread below (communicate() would read and close it too,
    # and the thread then fail on the closed file); stderr goes to a file.
    errors = on_swarm.folder / "daemon.stderr"
    with errors.open("w") as stderr:
        daemon = subprocess.Popen(on_swarm.command("up", "--supervise"),
                                  stdout=subprocess.PIPE, stderr=stderr, text=True,
                                  cwd=on_swarm.folder, env=on_swarm.env)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in daemon.stdout or ()],
                              daemon=True)
    reader.start()

    def until(event: str, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if f'"event": "{event}"' in seen[-1]:
                return True
        return False

    try:
        assert until("supervising", 120), "".join(seen)
        manager = on_swarm.bed.client(on_swarm.bed.manager)
        db_task = on_swarm.services()["db"].tasks(filters={"desired-state": "running"})[0]
        manager.api.kill(db_task["Status"]["ContainerStatus"]["ContainerID"])
        assert until("dependent re-probed", 60), "".join(seen)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        reader.join(timeout=10)  # it ends at the pipe's end, then the pipe is closed
        if daemon.stdout is not None:
            daemon.stdout.close()
        err = errors.read_text(encoding="utf-8")
    while not lines.empty():
        seen.append(lines.get())
    told = Result(daemon.returncode, "".join(seen), err)
    assert told.code == 0, err[-2000:]
    assert told.named("task failed", "db")[0]["exit_code"] == 137
    order = [(e["event"], e.get("service")) for e in told.events]
    unhealthy = order.index(("service unhealthy", "db"))
    assert ("service healthy", "db") in order[unhealthy:], told.stdout[-3000:]
    reprobed = told.named("dependent re-probed", "api")
    assert reprobed and reprobed[0]["dependency"] == "db" and reprobed[0]["ready"] is True
    assert set(on_swarm.services()) == {"db", "api"}  # SIGTERM left them to the swarm


JOBS = """
services:
  migrate:
    image: ollamatopo-standin:latest
    entrypoint: [sh, -c]
    command: ["sleep 1; echo migrated STEP; exit CODE"]
    healthcheck: {disable: true}
  app:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    depends_on:
      migrate: {condition: service_completed_successfully}
"""


def test_a_one_shot_job_runs_to_completion_before_its_dependent(
        on_swarm: SwarmProject) -> None:
    """`service_completed_successfully` on a swarm: the job is a swarm job (ReplicatedJob);
    its dependent is made only once it completed; a job that exits non-zero fails the run
    with its last log lines, and the run is rolled back."""
    done = on_swarm.run("up", plan=JOBS.replace("STEP", "1").replace("CODE", "0"))
    assert done.code == 0, done.stderr
    completed = done.named("service healthy", "migrate")[0]
    assert completed["completed"] is True
    assert done.named("container created", "app")[0]["elapsed_s"] >= completed["elapsed_s"]
    mode = on_swarm.services()["migrate"].attrs["Spec"]["Mode"]
    assert mode == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    status = on_swarm.run("status", "--json", plan=JOBS.replace("STEP", "1").replace("CODE", "0"))
    rows = {row["service"]: row for row in json.loads(status.stdout)["services"]}
    assert rows["migrate"]["state"] == "completed" and rows["migrate"]["ready"], rows
    assert on_swarm.run("down").code == 0

    failed = on_swarm.run("up", plan=JOBS.replace("STEP", "2").replace("CODE", "3"))
    assert failed.code == 1
    assert "exit code 3" in failed.stderr and "migrated 2" in failed.stderr, failed.stderr
    assert on_swarm.services() == {}  # rolled back; app was never made
