"""Compose files brought up on the real engine (issue 12): one-shot jobs
(`service_completed_successfully`), the container's own healthcheck, container_name."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Project

JOBS = """
services:
  db:
    image: ollamatopo-standin:latest
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  migrate:
    image: ollamatopo-standin:latest
    environment: {STANDIN_MODE: crash, STANDIN_DELAY: "1", STANDIN_EXIT_CODE: "JOBCODE"}
    depends_on:
      db: {condition: service_healthy}
  api:
    image: ollamatopo-standin:latest
    container_name: PROJECT-the-api
    depends_on:
      migrate: {condition: service_completed_successfully}
"""


def events_of(result: Any, event: str, service: str) -> list[dict[str, Any]]:
    return list(result.named(event, service))


def test_a_job_runs_to_exit_0_before_its_dependents_start(project: Project) -> None:
    project.write(JOBS.replace("JOBCODE", "0"), "compose.yaml")
    result = project.run("up", "--plan", str(project.folder / "compose.yaml"),
                         "--project", project.name)
    assert result.code == 0, result.stderr
    completed = events_of(result, "service healthy", "migrate")[0]
    assert completed["completed"] is True and completed["exit_code"] == 0
    api_started = events_of(result, "container started", "api")[0]["elapsed_s"]
    assert api_started >= completed["elapsed_s"]  # after the job's end, not its start
    containers = project.containers()
    assert containers["migrate"].status == "exited"  # done, not restarted
    assert containers["api"].name == f"{project.name}-the-api"
    health = containers["db"].attrs["Config"]["Healthcheck"]
    assert health["Test"] == ["CMD", "test", "-f", "/tmp/ready"]
    assert health["Interval"] == 1_000_000_000
    report = project.report(result)
    assert report["outcome"] == "succeeded"
    assert json.dumps(report["services"]["migrate"]).count('"ready"') >= 1


def test_a_job_that_fails_fails_the_run_before_its_dependents_start(project: Project) -> None:
    project.write(JOBS.replace("JOBCODE", "3"), "compose.yaml")
    result = project.run("up", "--plan", str(project.folder / "compose.yaml"),
                         "--project", project.name)
    assert result.code == 1
    assert "service 'migrate' failed: container exited with code 3" in result.stderr
    assert "standin crashing with code 3" in result.stderr  # its last log lines
    assert not events_of(result, "container started", "api")
    assert project.containers() == {}  # rolled back
