"""Compose's commands on a running project (issue 12): ps, logs, exec, stop, start and
restart in dependency order, down --remove-orphans, against the real engine."""

from __future__ import annotations

import json

from tests.conftest import Project, Result

PLAN = """
services:
  db:
    image: ollamatopo-standin:latest
    healthcheck: {test: [CMD, test, -f, /tmp/ready], interval: 1s}
  api:
    image: ollamatopo-standin:latest
    depends_on:
      db: {condition: service_healthy}
  web:
    image: ollamatopo-standin:latest
    depends_on: [api]
"""


def run(project: Project, command: str, *args: str) -> Result:
    """The command with the plan and project named first (exec takes the rest as its
    command line)."""
    return project.run(command, "--plan", str(project.folder / "compose.yaml"), "--project",
                       project.name, *args)


def test_ps_logs_exec_stop_start_restart(project: Project) -> None:
    project.write(PLAN, "compose.yaml")
    assert run(project, "up").code == 0

    ps = run(project, "ps", "--json")
    rows = {row["service"]: row for row in json.loads(ps.stdout)["services"]}
    assert set(rows) == {"db", "api", "web"} and all(row["ready"] for row in rows.values())

    logs = run(project, "logs", "db", "api", "--tail", "1")
    lines = logs.stdout.splitlines()
    assert lines == ["db  | standin ready", "api | standin ready"]

    done = run(project, "exec", "db", "cat", "/tmp/ready")
    assert done.code == 0
    failed = run(project, "exec", "db", "test", "-f", "/nonexistent")
    assert failed.code == 1  # the command's own exit code

    stopped = run(project, "stop", "api")
    assert stopped.stdout.strip() == "stopped: api"
    assert project.containers()["api"].status == "exited"
    assert project.containers()["web"].status == "running"  # only what was named
    everything = run(project, "stop")
    assert everything.stdout.strip() == "stopped: web, db"  # dependents first
    started = run(project, "start")
    assert started.stdout.strip() == "started: db, api, web"
    assert {c.status for c in project.containers().values()} == {"running"}
    restarted = run(project, "restart", "db", "api")
    assert restarted.stdout.strip() == "restarted: db, api"

    unknown = run(project, "logs", "dbb")
    assert unknown.code == 2 and "no service 'dbb'" in unknown.stderr
    assert run(project, "down", "--remove-orphans").code == 0
    assert project.containers() == {}


def test_up_of_some_services_brings_what_they_wait_for_and_leaves_the_rest(
        project: Project) -> None:
    project.write(PLAN, "compose.yaml")
    first = run(project, "up", "api")
    assert first.code == 0, first.stderr
    assert set(project.containers()) == {"db", "api"}  # api and what it waits for
    everything = run(project, "up")
    assert everything.code == 0 and set(project.containers()) == {"db", "api", "web"}
    again = run(project, "up", "db")
    assert again.code == 0, again.stderr
    assert set(project.containers()) == {"db", "api", "web"}  # the others are no orphans
    assert not again.named("container removed")
    unknown = run(project, "up", "ghost")
    assert unknown.code == 2 and "no service 'ghost'" in unknown.stderr


RESTARTING = """
services:
  db:
    image: ollamatopo-standin:latest
    environment: {GENERATION: "GEN"}
    healthcheck: {test: [CMD, test, -f, /tmp/ready], interval: 1s}
  api:
    image: ollamatopo-standin:latest
    depends_on:
      db: {condition: service_healthy, restart: true}
  web:
    image: ollamatopo-standin:latest
    depends_on: [db]
"""


def started_at(project: Project) -> dict[str, tuple[str, str]]:
    """Each service's container id and when it last started."""
    return {name: (c.id, c.attrs["State"]["StartedAt"])
            for name, c in project.containers().items()}


def test_restart_true_restarts_the_dependent_after_its_dependency_is_recreated_or_restarted(
        project: Project) -> None:
    project.write(RESTARTING.replace("GEN", "1"), "compose.yaml")
    assert run(project, "up").code == 0
    before = started_at(project)

    project.write(RESTARTING.replace("GEN", "2"), "compose.yaml")
    again = run(project, "up")
    assert again.code == 0, again.stderr
    after = started_at(project)
    assert after["db"][0] != before["db"][0]  # recreated: a new container
    assert after["api"][0] == before["api"][0] and after["api"][1] > before["api"][1]
    assert after["web"] == before["web"]  # no restart: true, left running
    api = project.report(again)["services"]["api"]
    assert (api["action"], api["cause"]) == ("restart", "db is recreated (restart: true)")
    # api started again only once db was ready again
    db_ready = again.named("service healthy", "db")[0]["elapsed_s"]
    api_started = again.named("container started", "api")[0]["elapsed_s"]
    assert api_started >= db_ready

    restarted = run(project, "restart", "db")
    assert restarted.stdout.strip() == "restarted: db, api"
    assert started_at(project)["web"] == before["web"]
    assert run(project, "down").code == 0


def test_logs_follow_prints_lines_as_they_come_until_the_containers_stop(
        project: Project) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    project.write(PLAN, "compose.yaml")
    assert run(project, "up").code == 0
    with subprocess.Popen(
            [sys.executable, "-m", "ollamatopo", "logs", "--follow", "--tail", "1", "db", "api",
             "--plan", str(project.folder / "compose.yaml"), "--project", project.name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)}) as follower:
        try:
            assert follower.stdout is not None
            first = {follower.stdout.readline().strip() for _ in range(2)}
            assert first == {"db  | standin ready", "api | standin ready"}
            said = run(project, "exec", "db", "sh", "-c", "echo later line > /proc/1/fd/1")
            assert said.code == 0, said.stderr
            assert follower.stdout.readline().strip() == "db  | later line"  # as it comes
            assert follower.poll() is None
            assert run(project, "stop", "api", "db").code == 0
            assert follower.wait(timeout=30) == 0  # every followed container stopped
        finally:
            follower.kill()
