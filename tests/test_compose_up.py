"""Compose files brought up on the real engine (issue 12): one-shot jobs
(`service_completed_successfully`), the container's own healthcheck, container_name."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import Project
from tests.test_compose_service_keys import free_port

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


EXTERNAL = """
services:
  app:
    image: ollamatopo-standin:latest
    networks: [shared, own]
    volumes: [data:/data, kept:/kept]
networks:
  shared: {external: true, name: PROJECT-shared}
  own: {name: PROJECT-own-net}
volumes:
  data: {external: true, name: PROJECT-data}
  kept: {name: PROJECT-kept}
"""


def test_external_networks_and_volumes_are_used_never_made_or_removed(project: Project) -> None:
    project.write(EXTERNAL, "compose.yaml")
    argv = ("--plan", str(project.folder / "compose.yaml"), "--project", project.name)
    missing = project.run("up", *argv)
    assert missing.code == 2
    assert f"network '{project.name}-shared'" in missing.stderr
    assert f"volume '{project.name}-data'" in missing.stderr
    assert f"docker network create {project.name}-shared" in missing.stderr
    assert project.containers() == {} and project.networks() == []  # nothing made

    mark = {"ollamatopo.test-external": project.name}  # not the project's label
    network = project.client.networks.create(f"{project.name}-shared", labels=mark)
    volume = project.client.volumes.create(f"{project.name}-data", labels=mark)
    try:
        up = project.run("up", *argv)
        assert up.code == 0, up.stderr
        attrs = project.containers()["app"].attrs
        assert set(attrs["NetworkSettings"]["Networks"]) == {f"{project.name}-shared",
                                                             f"{project.name}-own-net"}
        sources = {m["Destination"]: m["Name"] for m in attrs["Mounts"]}
        assert sources == {"/data": f"{project.name}-data", "/kept": f"{project.name}-kept"}
        # `name:` objects are the project's own: made with its labels, as written
        assert [n.name for n in project.networks()] == [f"{project.name}-own-net"]
        assert [v.name for v in project.volumes()] == [f"{project.name}-kept"]

        down = project.run("down", *argv, "--volumes")
        assert down.code == 0, down.stderr
        network.reload()
        volume.reload()  # both still there
        assert project.networks() == [] and project.volumes() == []
    finally:
        project.clean()
        network.remove()
        volume.remove(force=True)


HOST_MODE = """
services:
  web:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    ports: [{target: 8080, published: "HOSTPORT", host_ip: 127.0.0.1, mode: host}]
    x-ollamatopo: {ready: {http: {port: 8080, path: /health}}}
"""


def test_a_host_mode_port_is_published_as_usual_on_one_engine(project: Project) -> None:
    """compose's `mode: host` means where a swarm publishes; one engine has one host."""
    port = free_port()
    path = project.write(HOST_MODE.replace("HOSTPORT", str(port)), "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    bindings = project.containers()["web"].attrs["HostConfig"]["PortBindings"]
    assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        assert answer.status == 200


SCALED = """
name: PROJECT
services:
  db:
    image: ollamatopo-standin:latest
    scale: COUNT
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 1s}
  api:
    image: ollamatopo-standin:latest
    depends_on:
      db: {condition: service_healthy}
"""


def test_a_service_scaled_to_zero_has_no_container_and_is_not_waited_for(
        project: Project) -> None:
    """compose's rule: replicas 0 runs nothing, and a dependent starts without it."""
    plan = project.write(SCALED.replace("COUNT", "0"), "compose.yaml")
    result = project.run("up", "--plan", str(plan))
    assert result.code == 0, result.stderr
    assert set(project.containers()) == {"api"}
    assert not events_of(result, "container created", "db")
    # Given replicas, db comes up first; scaled to 0 again by `scale`, its containers go
    # and api stays as it was.
    plan.write_text(plan.read_text().replace("scale: 0", "scale: 2"))
    grown = project.run("up", "--plan", str(plan))
    assert grown.code == 0, grown.stderr
    before = project.containers()
    assert set(before) == {"api", "db", "db-2"}
    shrunk = project.run("scale", "db=0", "--plan", str(plan))
    assert shrunk.code == 0, shrunk.stderr
    after = project.containers()
    assert set(after) == {"api"} and after["api"].id == before["api"].id
    assert after["api"].status == "running"


HOOKS = """
version: "3.9"
name: PROJECT
services:
  app:
    image: ollamatopo-standin:latest
    volumes: ["./out:/out"]
    post_start:
      - command: ["sh", "-c", "sleep 1 && echo $$STAGE > stage && cp stage /out/started"]
        environment: {STAGE: started}
        working_dir: /tmp
        user: "0"
    pre_stop:
      - command: ["sh", "-c", "echo drained >> /out/stopped"]
      - command: ["sh", "-c", "echo STOPHOOK >&2; exit STOPCODE"]
  worker:
    image: ollamatopo-standin:latest
    depends_on: [app]
"""


def hooked_up(project: Project, stop_code: int) -> tuple[Path, Any]:
    """HOOKS brought up, with its last pre_stop hook exiting `stop_code`."""
    (project.folder / "out").mkdir()
    plan = project.write(HOOKS.replace("STOPCODE", str(stop_code)), "compose.yaml")
    result = project.run("up", "--plan", str(plan))
    assert result.code == 0, result.stderr
    return plan, result


def started_at(container: Any) -> datetime:
    return datetime.fromisoformat(container.attrs["State"]["StartedAt"][:26])


def test_post_start_runs_before_dependents_and_pre_stop_before_each_stop(
        project: Project) -> None:
    plan, _ = hooked_up(project, 0)
    assert (project.folder / "out" / "started").read_text() == "started\n"
    # app counts as started once its hook (a second long) passed: worker starts after it.
    containers = project.containers()
    waited = started_at(containers["worker"]) - started_at(containers["app"])
    assert waited.total_seconds() >= 1.0, waited
    # `stop` and `start` run them too; `down` runs pre_stop, each hook in order.
    assert project.run("stop", "app", "--plan", str(plan)).code == 0
    assert (project.folder / "out" / "stopped").read_text() == "drained\n"
    (project.folder / "out" / "started").unlink()
    assert project.run("start", "app", "--plan", str(plan)).code == 0
    assert (project.folder / "out" / "started").read_text() == "started\n"
    down = project.run("down", "--plan", str(plan))
    assert down.code == 0, down.stderr
    assert (project.folder / "out" / "stopped").read_text() == "drained\ndrained\n"
    assert not down.named("plan warning")  # read for its hooks only: `up` said them
    assert project.containers() == {}


def test_a_failing_post_start_fails_the_service_and_a_failing_pre_stop_only_warns(
        project: Project) -> None:
    plan, _ = hooked_up(project, 4)
    down = project.run("down", "--plan", str(plan))
    assert down.code == 0, down.stderr
    (failed,) = down.named("hook failed", "app")
    assert "its pre_stop hook [1] exited with status 4: STOPHOOK" in failed["error"]
    assert project.containers() == {}  # stopped and removed all the same
    broken = plan.read_text().replace("cp stage /out/started", "echo no-out >&2; exit 3")
    plan.write_text(broken)
    result = project.run("up", "--plan", str(plan))
    assert result.code == 1, result.stderr
    assert ("service 'app' failed: its post_start hook [0] exited with status 3: no-out"
            in result.stderr), result.stderr
    assert not events_of(result, "container started", "worker")
    assert project.containers() == {}  # rolled back
    # A user the image does not know: the engine's words when its exec stream has them
    # (not always: they race the attach), else the hint.
    plan.write_text(broken.replace('user: "0"', "user: root"))
    unknown = project.run("up", "--plan", str(plan))
    assert unknown.code == 1
    assert "its post_start hook [0] exited with status 126" in unknown.stderr
    assert "unable to find user root" in unknown.stderr or \
        "its user is not in the image's /etc/passwd" in unknown.stderr, unknown.stderr
