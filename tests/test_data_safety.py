"""Data in named volumes outlives everything but `down --volumes` (issue 6), with real
PostgreSQL (`ollamatopo-postgres:demo`, built from Debian's packages by images/build.py).

One walk through the life of a project: before each step a row is written, after it
every row written so far is read back. The steps: `down`; a config change that
recreates postgres; a failed run whose rollback removes the postgres container it
created; a supervising daemon stopped by SIGTERM (stopping the containers) and the next
`up`; and last `down --volumes`, which removes the volume and names it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import LABEL, ROOT, Project

PLAN = """
project: PROJECT
volumes:
  pgdata: {}
services:
  postgres:
    image: ollamatopo-postgres:demo
    environment:
      POSTGRES_USER: ollama
      POSTGRES_DB: ollama
      POSTGRES_PASSWORD: development
      MARK: "${MARK:-1}"
    volumes: ["pgdata:/var/lib/postgresql/data"]
    stop_grace_period: 10s
    ready: {exec: [pg_isready, -U, ollama, -h, 127.0.0.1], timeout: 90s}
  app:
    image: ollamatopo-standin:latest
    environment: {STANDIN_MODE: "${APP_MODE:-ready}", STANDIN_EXIT_CODE: "4"}
    ready: {log: standin ready, timeout: 30s}
phases:
  - {name: data, services: [postgres]}
  - {name: app, services: [app]}
"""


@pytest.fixture(scope="module")
def postgres_image(docker_client: Any) -> str:
    from build import ensure_image  # images/build.py

    return ensure_image("postgres", docker_client)


def sql(project: Project, statement: str) -> str:
    container = project.containers()["postgres"]
    code, output = container.exec_run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U",
                                       "ollama", "-d", "ollama", "-tAc", statement])
    text = output.decode(errors="replace")
    assert code == 0, text
    return text.strip()


class Ledger:
    """Rows written so far, one per step, and the check that all of them are there."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.written: list[str] = []

    def write(self, step: str) -> None:
        sql(self.project, "CREATE TABLE IF NOT EXISTS steps (name text PRIMARY KEY)")
        sql(self.project, f"INSERT INTO steps VALUES ('{step}')")
        self.written.append(step)

    def check(self) -> None:
        rows = sql(self.project, "SELECT name FROM steps ORDER BY name").splitlines()
        assert sorted(rows) == sorted(self.written)


def volume_names(project: Project) -> list[str]:
    return sorted(v.name for v in project.volumes())


def up(project: Project, **env: str) -> None:
    result = project.run("up", env=env, timeout=180)
    assert result.code == 0, result.stderr


def test_rows_in_a_named_volume_survive_everything_but_down_volumes(
        project: Project, postgres_image: str) -> None:
    project.write(PLAN)
    volume = f"{project.name}_pgdata"
    ledger = Ledger(project)
    up(project)
    assert volume_names(project) == [volume]

    # 1. down, then up: the volume stays, down says so and names it.
    ledger.write("before down")
    result = project.run("down")
    assert result.code == 0, result.stderr
    done = result.named("down completed")[0]
    assert done["volumes"] == [] and done["kept_volumes"] == [volume]
    assert f"named volumes kept: {volume}" in done["note"]
    assert project.containers() == {} and volume_names(project) == [volume]
    up(project)
    ledger.check()

    # 2. A config change recreates postgres on the same volume.
    ledger.write("before recreate")
    before = project.containers()["postgres"].id
    result = project.run("up", env={"MARK": "2"}, timeout=180)
    assert result.code == 0, result.stderr
    assert project.containers()["postgres"].id != before
    assert "config changed" in result.named("container created", "postgres")[0]["cause"]
    ledger.check()

    # 3. A failed run: postgres is created and ready, then app crashes; the rollback
    #    removes both containers this run created (postgres is killed, not stopped).
    ledger.write("before failed run")
    assert project.run("down").code == 0
    result = project.run("up", env={"MARK": "2", "APP_MODE": "crash"}, timeout=180)
    assert result.code == 1
    assert "service 'app' failed: container exited with code 4" in result.stderr
    assert result.named("service healthy", "postgres")
    assert project.containers() == {} and volume_names(project) == [volume]
    up(project, MARK="2")
    ledger.check()

    # 4. A supervising daemon, stopped by SIGTERM (--on-stop stop stops the containers),
    #    then a plain up.
    daemon_log = project.folder / "daemon.log"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "MARK": "2",
                   "OLLAMATOPO_STATE_DIR": str(project.folder / "state")}
    with daemon_log.open("w") as out, subprocess.Popen(
            [sys.executable, "-m", "ollamatopo", "up", "--supervise", "--on-stop", "stop",
             "--plan", str(project.folder / "plan.yaml"), "--log-format", "json"],
            stdout=out, stderr=subprocess.STDOUT, env=environment) as daemon:
        try:
            deadline = time.monotonic() + 120
            while '"supervising"' not in daemon_log.read_text():
                assert daemon.poll() is None and time.monotonic() < deadline, \
                    daemon_log.read_text()[-3000:]
                time.sleep(0.1)
            ledger.write("while supervised")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, daemon_log.read_text()[-3000:]
        finally:
            daemon.kill()
    assert project.containers()["postgres"].status == "exited"
    up(project, MARK="2")
    ledger.check()

    # 5. Only down --volumes removes the volume, and it names what it removed.
    result = project.run("down", "--volumes")
    assert result.code == 0, result.stderr
    assert [e["volume"] for e in result.named("volume removed")] == [volume]
    assert result.named("down completed")[0]["volumes"] == [volume]
    assert volume_names(project) == []
    found = project.client.volumes.list(filters={"name": volume})
    assert [v for v in found if v.name == volume] == []
    assert project.client.containers.list(all=True,
                                          filters={"label": f"{LABEL}={project.name}"}) == []
